//! neopro-backup: argument parsing and dispatch only. Each command calls the same domain
//! functions as the HTTP API.

mod alerts;
#[allow(dead_code)] // until the alerts send mail
mod alerts_mail;
mod archive;
mod backup;
mod clock;
mod command;
mod config;
mod daemon;
mod fleet;
mod fsutil;
mod http;
mod httpc;
mod httpd;
mod inventory;
mod listing;
mod offsite;
mod restore;
mod retention;
mod s3;
mod schedule;
#[allow(dead_code)] // until the alerts send mail
mod smtp;
mod status;
mod sysinfo;
mod ui;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use config::{Config, ConfigError};

const HELP: &str = "\
neopro-backup — backups of a Neopro kiosk (configuration, sync-agent .env, site.conf)

Usage: neopro-backup [--config PATH] COMMAND [OPTIONS]

Commands:
  run                        make one backup now, apply retention, write the status
                             (also accepted as --run)
  serve                      the daemon: HTTP API on LISTEN and the daily backup at
                             BACKUP_TIME (what systemd runs)
  list [--json]              list the archives, newest first
  status [--json]            show the last run's status
  verify ARCHIVE             check an archive (gzip, tar, MANIFEST.sha256); ARCHIVE is a
                             name in BACKUP_DIR or a path
  restore ARCHIVE [--dry-run] [--only FILE,...]
                             put the archive's files back (configuration.json,
                             sync-agent.env, site.conf) after a safety backup
  check [--max-age-hours N]  monitoring: exit 0 `OK: …` if the last success is fresher
                             than N hours (default 25), else exit 2 `CRITICAL: …`
  fleet [--json]             every site's last status, from the S3 bucket; sites whose
                             last success is over 25 h old are marked STALE

Options:
  --config PATH   config file (default /etc/neopro/backup.conf); the environment wins
  -h, --help      this help
  -V, --version   the version

Configuration keys (environment, then the config file, KEY=VALUE lines):
  NEOPRO_DIR=/home/pi/neopro  BACKUP_DIR=/home/pi/neopro-backups
  SITE_CONF=/etc/neopro/site.conf  RETENTION_DAYS=7  BACKUP_TIME=03:00
  LISTEN=127.0.0.1:8081  API_TOKEN=  INCLUDE_VIDEOS=false
  SERVICES=\"neopro-app neopro-sync-agent nginx\"
Offsite copies and alerts (offsite is off while S3_ENDPOINT is unset):
  S3_ENDPOINT=  S3_BUCKET=  S3_REGION=us-east-1  S3_PREFIX=neopro  S3_ACCESS_KEY=
  S3_SECRET_KEY=  SITE_ID=(hostname)  S3_RETENTION_DAYS=30  ENCRYPT_TO=(age1… keys)
  ALERT_WEBHOOK=  PING_URL=  ON_FAILURE_CMD=

Exit codes: 0 success, 1 failed backup or damaged archive, 2 usage or configuration error.
";

/// A command-line or configuration error: exit 2.
struct Usage(String);

impl From<lexopt::Error> for Usage {
    fn from(e: lexopt::Error) -> Usage {
        Usage(e.to_string())
    }
}

impl From<ConfigError> for Usage {
    fn from(e: ConfigError) -> Usage {
        Usage(e.0)
    }
}

enum Cmd {
    Run,
    Serve,
    Restore {
        archive: PathBuf,
        dry_run: bool,
        only: Option<Vec<String>>,
    },
    List {
        json: bool,
    },
    Status {
        json: bool,
    },
    Verify {
        archive: PathBuf,
    },
    Check {
        max_age_hours: u32,
    },
    Fleet {
        json: bool,
    },
    Help,
    Version,
}

fn parse_args() -> Result<(Cmd, Option<PathBuf>), Usage> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut config = None;
    let mut cmd_name: Option<String> = None;
    let mut json = false;
    let mut max_age: Option<String> = None;
    let mut dry_run = false;
    let mut only: Option<Vec<String>> = None;
    let mut positional: Vec<PathBuf> = Vec::new();
    while let Some(arg) = p.next()? {
        match arg {
            Long("config") => config = Some(PathBuf::from(p.value()?)),
            Short('h') | Long("help") => return Ok((Cmd::Help, config)),
            Short('V') | Long("version") => return Ok((Cmd::Version, config)),
            Long("run") if cmd_name.is_none() => cmd_name = Some("run".into()),
            Long("json") => json = true,
            Long("dry-run") => dry_run = true,
            Long("only") => {
                let v = p.value()?.string()?;
                only = Some(
                    v.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect(),
                );
            }
            Long("max-age-hours") => max_age = Some(p.value()?.string()?),
            Value(v) if cmd_name.is_none() => cmd_name = Some(v.string()?),
            Value(v) => positional.push(PathBuf::from(v)),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let Some(name) = cmd_name else {
        return Err(Usage("no command given (try --help)".into()));
    };
    let no_extra = |cmd: Cmd, positional: &[PathBuf]| match positional.first() {
        Some(x) => Err(Usage(format!("unexpected argument {:?}", x))),
        None => Ok(cmd),
    };
    let only_for = |flag: bool, what: &str, cmd: &str| {
        if flag {
            Err(Usage(format!("{what} is not an option of `{cmd}`")))
        } else {
            Ok(())
        }
    };
    if (dry_run || only.is_some()) && name != "restore" {
        return Err(Usage(format!(
            "--dry-run and --only are options of `restore`, not `{name}`"
        )));
    }
    let cmd = match name.as_str() {
        "serve" => {
            only_for(json || max_age.is_some(), "this option", "serve")?;
            no_extra(Cmd::Serve, &positional)?
        }
        "restore" => {
            only_for(json || max_age.is_some(), "this option", "restore")?;
            let mut it = positional.into_iter();
            let (Some(archive), None) = (it.next(), it.next()) else {
                return Err(Usage("restore takes exactly one ARCHIVE".into()));
            };
            Cmd::Restore {
                archive,
                dry_run,
                only,
            }
        }
        "run" => {
            only_for(json, "--json", "run")?;
            only_for(max_age.is_some(), "--max-age-hours", "run")?;
            no_extra(Cmd::Run, &positional)?
        }
        "list" | "status" => {
            only_for(max_age.is_some(), "--max-age-hours", &name)?;
            let cmd = if name == "list" {
                Cmd::List { json }
            } else {
                Cmd::Status { json }
            };
            no_extra(cmd, &positional)?
        }
        "verify" => {
            only_for(json || max_age.is_some(), "this option", "verify")?;
            let mut it = positional.into_iter();
            let (Some(archive), None) = (it.next(), it.next()) else {
                return Err(Usage("verify takes exactly one ARCHIVE".into()));
            };
            Cmd::Verify { archive }
        }
        "check" => {
            only_for(json, "--json", "check")?;
            let max_age_hours = match max_age {
                None => 25,
                Some(v) => match v.parse::<u32>() {
                    Ok(n) if (1..=8760).contains(&n) => n,
                    _ => {
                        return Err(Usage(format!(
                            "invalid --max-age-hours {v:?}: expected a whole number of hours from 1 to 8760"
                        )));
                    }
                },
            };
            no_extra(Cmd::Check { max_age_hours }, &positional)?
        }
        "fleet" => {
            only_for(max_age.is_some(), "--max-age-hours", "fleet")?;
            no_extra(Cmd::Fleet { json }, &positional)?
        }
        other => return Err(Usage(format!("unknown command {other:?} (try --help)"))),
    };
    Ok((cmd, config))
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

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(Usage(msg)) => {
            eprintln!("neopro-backup: {msg}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<ExitCode, Usage> {
    let (cmd, config) = parse_args()?;
    let cfg_path = config.as_deref();
    match cmd {
        Cmd::Help => {
            print!("{HELP}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Version => {
            println!("neopro-backup {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run => {
            let cfg = load(cfg_path)?;
            let tz = clock::Tz::local();
            let never = AtomicBool::new(false);
            let Ok(out) = backup::run(&cfg, &tz, fsutil::LockWait::Block, &never) else {
                // Cannot happen with a blocking lock, but say so rather than panic.
                return Err(Usage("another backup holds the lock".into()));
            };
            let st = &out.status;
            if st.success {
                println!(
                    "Backup created: {} ({}, {} ms, {} archive(s) kept)",
                    cfg.backup_dir
                        .join(st.archive.as_deref().unwrap_or_default())
                        .display(),
                    st.size.as_deref().unwrap_or("?"),
                    st.duration_ms,
                    st.backups_count
                );
                for w in &st.warnings {
                    println!("warning: {w}");
                }
                offsite::after_run(&cfg, &tz); // the lock is released; never fails the run
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "neopro-backup: backup failed: {}",
                    st.error.as_deref().unwrap_or("unknown error")
                );
                offsite::after_run(&cfg, &tz); // sends the status (and older copies)
                Ok(ExitCode::from(1))
            }
        }
        Cmd::Serve => {
            let cfg = load(cfg_path)?;
            cfg.check_listen_security()?;
            Ok(ExitCode::from(daemon::serve(cfg)))
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
        Cmd::List { json } => {
            let cfg = load(cfg_path)?;
            let tz = clock::Tz::local();
            match listing::build(&cfg.backup_dir, clock::now_unix(), &tz) {
                Ok(l) if json => println!("{}", nanoserde::SerJson::serialize_json(&l)),
                Ok(l) => print!("{}", listing::table(&l)),
                Err(e) => {
                    eprintln!(
                        "neopro-backup: cannot list {}: {e}",
                        cfg.backup_dir.display()
                    );
                    return Ok(ExitCode::from(1));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { json } => {
            let cfg = load(cfg_path)?;
            match status::read(&cfg.backup_dir) {
                Ok(st) if json => {
                    println!("{}", st.map_or("null".to_string(), |s| s.to_json()));
                }
                Ok(None) => println!("no backup has run yet in {}", cfg.backup_dir.display()),
                Ok(Some(st)) => {
                    println!("last run:      {}", st.timestamp);
                    println!(
                        "result:        {}",
                        if st.success { "success" } else { "FAILED" }
                    );
                    if let Some(e) = &st.error {
                        println!("error:         {e}");
                    }
                    if let Some(a) = &st.archive {
                        println!("archive:       {a} ({})", st.size.as_deref().unwrap_or("?"));
                    }
                    if let Some(ls) = &st.last_success {
                        println!("last success:  {ls}");
                    }
                    println!(
                        "archives kept: {} (retention {} days)",
                        st.backups_count, st.retention_days
                    );
                    println!("duration:      {} ms", st.duration_ms);
                    for w in &st.warnings {
                        println!("warning:       {w}");
                    }
                }
                Err(e) => {
                    eprintln!("neopro-backup: {e}");
                    return Ok(ExitCode::from(1));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Verify { archive } => {
            let cfg = load(cfg_path)?;
            let path = resolve_archive(&cfg, &archive);
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("neopro-backup: cannot open {}: {e}", path.display());
                    return Ok(ExitCode::from(1));
                }
            };
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let top = archive::is_archive_name(name).then(|| archive::stem_of(name));
            let report = archive::verify(file, top);
            for f in &report.files {
                println!(
                    "{}  {}  {}",
                    if f.ok { "OK    " } else { "FAILED" },
                    f.sha256,
                    f.name
                );
            }
            match &report.error {
                None => {
                    println!(
                        "{}: OK ({} files match MANIFEST.sha256)",
                        path.display(),
                        report.files.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Some(e) => {
                    println!("{}: DAMAGED: {e}", path.display());
                    Ok(ExitCode::from(1))
                }
            }
        }
        Cmd::Fleet { json } => {
            let cfg = load(cfg_path)?;
            if cfg.offsite.is_none() {
                return Err(Usage(
                    "fleet reads the S3 bucket: set S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY and S3_SECRET_KEY".into(),
                ));
            }
            match fleet::build(&cfg, clock::now_unix()) {
                Ok(f) if json => println!("{}", nanoserde::SerJson::serialize_json(&f)),
                Ok(f) => print!("{}", fleet::table(&f)),
                Err(e) => {
                    eprintln!("neopro-backup: fleet: {e}");
                    return Ok(ExitCode::from(1));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { max_age_hours } => {
            let cfg = load(cfg_path)?;
            let st = match status::read(&cfg.backup_dir) {
                Ok(st) => st,
                Err(e) => {
                    println!("CRITICAL: cannot read the status: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let (ok, line) = status::check(st.as_ref(), clock::now_unix(), max_age_hours);
            println!("{line}");
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
    }
}

/// A bare archive name is looked up in BACKUP_DIR; anything else is a path.
fn resolve_archive(cfg: &Config, arg: &Path) -> PathBuf {
    match arg.to_str() {
        Some(s) if archive::is_archive_name(s) && !arg.exists() => cfg.backup_dir.join(s),
        _ => arg.to_path_buf(),
    }
}
