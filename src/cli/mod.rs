//! The command line: parse the arguments (`args`, a pure function), load the
//! configuration, call the domain, print. One file per command group: `backup` (run,
//! list, status, check), `restore` (verify, restore), `fleet`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{self, Config};
use crate::serve;
use crate::store;

mod args;
mod backup;
pub mod fleet;
mod restore;

use args::{Cmd, HELP, Usage};

pub fn main() -> ExitCode {
    let parsed = args::parse(std::env::args_os().skip(1));
    match parsed.and_then(|(cmd, config)| dispatch(cmd, config.as_deref())) {
        Ok(code) => code,
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
            Ok(restore::verify(&resolve_archive(&cfg, &archive)))
        }
        Cmd::Restore {
            archive,
            dry_run,
            only,
        } => {
            let cfg = load(cfg_path)?;
            let path = resolve_archive(&cfg, &archive);
            Ok(ExitCode::from(restore::cli(&cfg, &path, dry_run, only)))
        }
        Cmd::RestoreVideos {
            archive,
            dry_run,
            identity,
        } => {
            let cfg = load(cfg_path)?;
            let path = resolve_archive(&cfg, &archive);
            Ok(ExitCode::from(restore::cli_videos(
                &cfg,
                &path,
                dry_run,
                identity.as_deref(),
            )))
        }
        Cmd::Fleet { json } => fleet::fleet(&load(cfg_path)?, json),
        Cmd::FleetGc { apply } => fleet::fleet_gc(&load(cfg_path)?, apply),
    }
}

fn load(config: Option<&Path>) -> Result<Config, Usage> {
    let cfg = Config::load(config)?;
    // Secrets read from the environment are not passed on to the processes we start
    // (systemctl, ON_FAILURE_CMD, RESTART_CMD): they would show in their environ.
    for k in config::SECRET_KEYS {
        // SAFETY: called from main before any thread is started.
        unsafe { std::env::remove_var(k) };
    }
    for k in &cfg.unknown_keys {
        eprintln!("neopro-backup: warning: unknown key {k} in the config file (ignored)");
    }
    Ok(cfg)
}

/// A bare archive name is looked up in BACKUP_DIR; anything else is a path.
fn resolve_archive(cfg: &Config, arg: &Path) -> PathBuf {
    match arg.to_str() {
        Some(s) if store::is_archive_name(s) && !arg.exists() => cfg.backup_dir.join(s),
        _ => arg.to_path_buf(),
    }
}
