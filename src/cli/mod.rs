//! The command line: parse the arguments (`args`, a pure function), load the
//! configuration, call the domain, print. One file per command group: `backup` (run,
//! list, status, check), `restore` (verify, restore), `recover`, `fleet`, `gdrive`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{self, Config};
use crate::serve;
use crate::store;

mod args;
mod backup;
pub mod fleet;
mod gdrive;
mod recover;
mod restore;

use args::{Cmd, HELP, Usage};

pub fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // `check` is a Nagios plugin: its usage and configuration errors are one
    // `UNKNOWN: …` line on stdout and exit 3 (docs/format.md, Exit codes).
    let is_check = args::command_word(&argv).as_deref() == Some("check");
    let parsed = args::parse(argv);
    match parsed.and_then(|(cmd, config)| dispatch(cmd, config.as_deref())) {
        Ok(code) => code,
        Err(Usage(msg)) if is_check => {
            println!("{}", backup::one_line(&format!("UNKNOWN: {msg}")));
            ExitCode::from(3)
        }
        Err(Usage(msg)) => {
            eprintln!("neopro-backup: {msg}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cmd: Cmd, cfg_path: Option<&Path>) -> Result<ExitCode, Usage> {
    match cmd {
        Cmd::Help => {
            print!("{HELP}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Version => {
            println!("neopro-backup {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run => Ok(backup::run(&load(cfg_path)?)),
        Cmd::Serve => {
            let cfg = load(cfg_path)?;
            cfg.check_listen_security()?;
            Ok(ExitCode::from(serve::serve(cfg)))
        }
        Cmd::List { json } => Ok(backup::list(&load(cfg_path)?, json)),
        Cmd::Status { json } => Ok(backup::status(&load(cfg_path)?, json)),
        Cmd::Check { max_age_hours } => Ok(backup::check(&load(cfg_path)?, max_age_hours)),
        Cmd::Verify { archive } => {
            let cfg = load(cfg_path)?;
            let (path, in_store) = resolve_archive(&cfg, &archive);
            Ok(restore::verify(&path, in_store))
        }
        Cmd::Restore {
            archive,
            dry_run,
            only,
        } => {
            let cfg = load(cfg_path)?;
            let (path, in_store) = resolve_archive(&cfg, &archive);
            Ok(ExitCode::from(restore::cli(
                &cfg, &path, in_store, dry_run, only,
            )))
        }
        Cmd::RestoreVideos {
            archive,
            dry_run,
            identity,
        } => {
            let cfg = load(cfg_path)?;
            let (path, in_store) = resolve_archive(&cfg, &archive);
            Ok(ExitCode::from(restore::cli_videos(
                &cfg,
                &path,
                in_store,
                dry_run,
                identity.as_deref(),
            )))
        }
        Cmd::Recover {
            archive,
            site,
            identity,
            dry_run,
            no_videos,
            from,
        } => {
            let cfg = load(cfg_path)?;
            let a = recover::Args {
                archive,
                site,
                identity: identity.as_deref(),
                dry_run,
                no_videos,
                from,
            };
            Ok(ExitCode::from(recover::cli(&cfg, &a)))
        }
        Cmd::NewStart => Ok(ExitCode::from(recover::new_start(&load(cfg_path)?))),
        Cmd::GdriveLogin => Ok(gdrive::login(&load(cfg_path)?)),
        Cmd::GdriveStatus { json } => Ok(gdrive::status(&load(cfg_path)?, json)),
        Cmd::GdriveLogout { revoke } => Ok(gdrive::logout(&load(cfg_path)?, revoke)),
        Cmd::Fleet { json } => fleet::fleet(&load(cfg_path)?, json),
        Cmd::FleetServe { listen } => fleet::serve(load(cfg_path)?, listen),
        Cmd::FleetGc { apply } => fleet::fleet_gc(&load(cfg_path)?, apply),
        Cmd::FleetDrill {
            identity,
            site,
            deep,
        } => fleet::fleet_drill(&load(cfg_path)?, identity.as_deref(), site, deep),
    }
}

fn load(config: Option<&Path>) -> Result<Config, Usage> {
    let cfg = Config::load(config)?;
    // Secrets read from the environment are not passed on to the processes we start
    // (systemctl, ON_FAILURE_CMD, RESTART_CMD): they would show in their environ.
    for k in config::SECRET_KEYS {
        // SAFETY: remove_var races only with another thread using the environment;
        // this runs in main before any thread is started.
        unsafe { std::env::remove_var(k) };
    }
    for k in &cfg.unknown_keys {
        eprintln!(
            "neopro-backup: warning: unknown key {} in the config file (ignored)",
            config::shown(k)
        );
    }
    for w in &cfg.warnings {
        eprintln!("neopro-backup: warning: {w}");
    }
    Ok(cfg)
}

/// A bare archive name is looked up in BACKUP_DIR (true: a symlink there is not an
/// archive, as in the list and the API); anything else is a path the operator chose.
fn resolve_archive(cfg: &Config, arg: &Path) -> (PathBuf, bool) {
    match arg.to_str() {
        Some(s) if store::is_archive_name(s) && std::fs::symlink_metadata(arg).is_err() => {
            (cfg.backup_dir.join(s), true)
        }
        _ => (arg.to_path_buf(), false),
    }
}
