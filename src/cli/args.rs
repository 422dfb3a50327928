//! Argument parsing: a pure function from the words after the program name to a
//! command, unit-tested below. Nothing here reads a file or prints.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::ConfigError;

pub const HELP: &str = "\
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
  restore ARCHIVE --videos [--dry-run] [--identity FILE]
                             fetch the archive's videos that are missing or differ
                             back from the bucket (VIDEOS_OFFSITE), each checked by
                             its SHA-256; --identity: age key of an encrypted site
  recover [ARCHIVE] [--site ID] [--identity FILE] [--dry-run] [--no-videos]
                             the SD card died: fetch the site's newest archive that
                             verifies (or ARCHIVE, a name in the bucket) into
                             BACKUP_DIR, restore its files, then fetch its videos;
                             --site: the site's folder in the bucket (default SITE_ID)
                             --from gdrive|s3: where the copies are read when both
                             S3 and Google Drive are set (default s3)
  recover --new-start        this Pi starts a new history under SITE_ID: its copies go
                             to the bucket beside the old ones (never deleted by it)
  gdrive login               connect the club's Google Drive: shows a link and a code
                             to enter on a phone, waits for the approval, keeps the
                             token in BACKUP_DIR/gdrive-token.json
  gdrive status [--json]     connected or not, the folder, the space left (and whether
                             the copies kept would fit)
  gdrive logout [--revoke]   forget the token on this Pi; --revoke also revokes the
                             grant at Google (every Pi of the same account and client)
  check [--max-age-hours N]  monitoring (a Nagios plugin, one line): exit 0 `OK: …` if
                             the last success is fresher than N hours (default 25),
                             else exit 2 `CRITICAL: …`; exit 3 `UNKNOWN: …` on a usage
                             or configuration error
  fleet [--json]             every site's last status, from the S3 bucket; sites whose
                             last success is over 25 h old are marked STALE
  fleet serve [--listen ADDR]
                             the central dashboard of every site (page, /api/fleet,
                             /metrics) on ADDR (default 127.0.0.1:8090); read-only S3
                             keys are enough; off loopback it needs API_TOKEN
  fleet gc [--apply]         (operator) remove the video objects no site references
                             any more and older than S3_RETENTION_DAYS; a dry run
                             without --apply
  fleet drill [--identity FILE] [--site ID] [--deep]
                             (operator) restore drill: stream each site's newest
                             archive copy (decrypted with FILE's age identities),
                             verify it and check its videos are in the bucket at
                             their size (--deep: hash them); records SITE/drill.json

Options:
  --config PATH   config file (default /etc/neopro/backup.conf); the environment wins
  -h, --help      this help
  -V, --version   the version

Configuration keys (environment, then the config file, KEY=VALUE lines; the README's
table says what each one does):
  NEOPRO_DIR=/home/pi/neopro  BACKUP_DIR=/home/pi/neopro-backups
  SITE_CONF=/etc/neopro/site.conf  RETENTION_DAYS=7  BACKUP_TIME=03:00
  LISTEN=127.0.0.1:8081  API_TOKEN=  FRAME_ANCESTORS=(https://host[:port] …)
  INCLUDE_VIDEOS=false  VIDEOS_OFFSITE=false  RESTART_CMD=(run after a restore)
  SERVICES=\"neopro-app neopro-sync-agent nginx\"
Offsite copies (off while S3_ENDPOINT is unset):
  S3_ENDPOINT=  S3_BUCKET=  S3_REGION=us-east-1  S3_PREFIX=neopro  S3_ACCESS_KEY=
  S3_SECRET_KEY=  SITE_ID=(hostname)  S3_RETENTION_DAYS=30  ENCRYPT_TO=(age1… keys)
Google Drive (off while GDRIVE_CLIENT_ID is unset; README, Google Drive):
  GDRIVE_CLIENT_ID=  GDRIVE_CLIENT_SECRET=  GDRIVE_FOLDER=neopro-backups
  GDRIVE_RETENTION_DAYS=30
Alerts (mail is off while SMTP_URL is unset):
  ALERT_WEBHOOK=  PING_URL=  ON_FAILURE_CMD=
  SMTP_URL=(smtps://user:password@host:465)  ALERT_EMAIL_TO=  ALERT_EMAIL_FROM=
The fleet (the operator's machine):
  FLEET_DRILL_MAX_DAYS=8 (a site whose last restore drill is older is flagged)

Exit codes: 0 success, 1 failed backup or damaged archive, 2 usage or configuration error
(`check`: 0 OK, 2 CRITICAL, 3 UNKNOWN).
";

/// Where `fleet serve` listens by default.
pub const FLEET_LISTEN: &str = "127.0.0.1:8090";

/// A command-line or configuration error: exit 2.
pub struct Usage(pub String);

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

#[derive(Debug, PartialEq)]
pub enum Cmd {
    Run,
    Serve,
    Restore {
        archive: PathBuf,
        dry_run: bool,
        only: Option<Vec<String>>,
    },
    /// `restore ARCHIVE --videos`.
    RestoreVideos {
        archive: PathBuf,
        dry_run: bool,
        identity: Option<PathBuf>,
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
    FleetServe {
        listen: SocketAddr,
    },
    FleetGc {
        apply: bool,
    },
    /// `fleet drill`.
    FleetDrill {
        identity: Option<PathBuf>,
        site: Option<String>,
        deep: bool,
    },
    /// `recover`.
    Recover {
        archive: Option<String>,
        site: Option<String>,
        identity: Option<PathBuf>,
        dry_run: bool,
        no_videos: bool,
        /// `--from`: where the copies are read.
        from: Option<Source>,
    },
    /// `recover --new-start`.
    NewStart,
    /// `gdrive login`.
    GdriveLogin,
    /// `gdrive status`.
    GdriveStatus {
        json: bool,
    },
    /// `gdrive logout`.
    GdriveLogout {
        revoke: bool,
    },
    Help,
    Version,
}

pub use crate::offsite::Source;

/// The command word of a command line, as `parse` would find it (the first word that
/// is not an option or an option's value), even when the line has an error: `check`
/// reports its own usage errors as a Nagios plugin does.
pub fn command_word(args: &[std::ffi::OsString]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_str()?;
        match s {
            "--config" | "--only" | "--max-age-hours" | "--site" | "--identity" | "--listen"
            | "--from" => {
                it.next();
            }
            "--run" => return Some("run".into()),
            "--" => return it.next().and_then(|a| a.to_str()).map(str::to_string),
            _ if s.starts_with('-') => {}
            _ => return Some(s.to_string()),
        }
    }
    None
}

/// Parses the command line (without the program name): a pure function.
pub fn parse(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<(Cmd, Option<PathBuf>), Usage> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut config = None;
    let mut cmd_name: Option<String> = None;
    let mut json = false;
    let mut max_age: Option<String> = None;
    let mut dry_run = false;
    let mut only: Option<Vec<String>> = None;
    let mut listen: Option<String> = None;
    let mut videos = false;
    let mut identity: Option<PathBuf> = None;
    let mut apply = false;
    let mut site: Option<String> = None;
    let mut no_videos = false;
    let mut new_start = false;
    let mut deep = false;
    let mut revoke = false;
    let mut from: Option<String> = None;
    let mut positional: Vec<PathBuf> = Vec::new();
    while let Some(arg) = p.next()? {
        match arg {
            Long("config") => config = Some(PathBuf::from(p.value()?)),
            Short('h') | Long("help") => return Ok((Cmd::Help, config)),
            Short('V') | Long("version") => return Ok((Cmd::Version, config)),
            Long("run") if cmd_name.is_none() => cmd_name = Some("run".into()),
            Long("json") => json = true,
            Long("dry-run") => dry_run = true,
            Long("videos") => videos = true,
            Long("identity") => identity = Some(PathBuf::from(p.value()?)),
            Long("apply") => apply = true,
            Long("site") => site = Some(p.value()?.string()?),
            Long("no-videos") => no_videos = true,
            Long("new-start") => new_start = true,
            Long("deep") => deep = true,
            Long("revoke") => revoke = true,
            Long("from") => from = Some(p.value()?.string()?),
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
            Long("listen") => listen = Some(p.value()?.string()?),
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
    // `fleet drill` takes --site and --identity too (checked with its other options).
    let drill = name == "fleet" && positional.first().is_some_and(|p| p.as_os_str() == "drill");
    if (no_videos || new_start) && name != "recover" {
        return Err(Usage(format!(
            "--no-videos and --new-start are options of `recover`, not `{name}`"
        )));
    }
    if site.is_some() && name != "recover" && !drill {
        return Err(Usage(format!(
            "--site is an option of `recover` and `fleet drill`, not `{name}`"
        )));
    }
    if dry_run && name != "restore" && name != "recover" {
        return Err(Usage(format!(
            "--dry-run is an option of `restore` and `recover`, not `{name}`"
        )));
    }
    if identity.is_some() && name != "restore" && name != "recover" && !drill {
        return Err(Usage(format!(
            "--identity is an option of `restore`, `recover` and `fleet drill`, not `{name}`"
        )));
    }
    if from.is_some() && name != "recover" {
        return Err(Usage(format!(
            "--from is an option of `recover`, not `{name}`"
        )));
    }
    if revoke && name != "gdrive" {
        return Err(Usage(format!(
            "--revoke is an option of `gdrive logout`, not `{name}`"
        )));
    }
    if deep && !drill {
        return Err(Usage(format!(
            "--deep is an option of `fleet drill`, not `{name}`"
        )));
    }
    if (only.is_some() || videos) && name != "restore" {
        return Err(Usage(format!(
            "--only and --videos are options of `restore`, not `{name}`"
        )));
    }
    if apply && name != "fleet" {
        return Err(Usage(format!(
            "--apply is an option of `fleet gc`, not `{name}`"
        )));
    }
    if listen.is_some()
        && (name != "fleet" || positional.first().is_none_or(|p| p.as_os_str() != "serve"))
    {
        return Err(Usage("--listen is an option of `fleet serve`".into()));
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
            if videos {
                only_for(only.is_some(), "--only", "restore --videos")?;
                Cmd::RestoreVideos {
                    archive,
                    dry_run,
                    identity,
                }
            } else {
                if identity.is_some() {
                    return Err(Usage(
                        "--identity goes with --videos (the age key of encrypted videos)".into(),
                    ));
                }
                Cmd::Restore {
                    archive,
                    dry_run,
                    only,
                }
            }
        }
        "recover" => {
            only_for(json || max_age.is_some(), "this option", "recover")?;
            let mut it = positional.into_iter();
            let archive = it.next();
            if let Some(x) = it.next() {
                return Err(Usage(format!(
                    "unexpected argument {x:?}: recover takes at most one ARCHIVE"
                )));
            }
            let from = match from.as_deref() {
                None => None,
                Some("s3") => Some(Source::S3),
                Some("gdrive") => Some(Source::Gdrive),
                Some(x) => {
                    return Err(Usage(format!(
                        "invalid --from {x:?}: expected s3 or gdrive"
                    )));
                }
            };
            if new_start {
                if archive.is_some()
                    || site.is_some()
                    || identity.is_some()
                    || dry_run
                    || no_videos
                    || from.is_some()
                {
                    return Err(Usage(
                        "--new-start stands alone: it recovers nothing, it lets this Pi start a new history under SITE_ID".into(),
                    ));
                }
                Cmd::NewStart
            } else {
                let archive = match archive {
                    None => None,
                    Some(a) => {
                        let a = a.to_str().map(str::to_string).unwrap_or_default();
                        if !crate::recover::is_remote_name(&a) {
                            return Err(Usage(format!(
                                "invalid ARCHIVE {a:?}: expected a name in the bucket, backup-YYYYMMDD-HHMMSS.tar.gz (or .tar.gz.age)"
                            )));
                        }
                        Some(a)
                    }
                };
                if let Some(s) = &site
                    && !crate::config::valid_site_id(s)
                {
                    return Err(Usage(format!(
                        "invalid --site {s:?}: a site is a SITE_ID (letters, digits, '.', '_', '-')"
                    )));
                }
                Cmd::Recover {
                    archive,
                    site,
                    identity,
                    dry_run,
                    no_videos,
                    from,
                }
            }
        }
        "gdrive" => {
            only_for(max_age.is_some(), "--max-age-hours", "gdrive")?;
            let words: Vec<String> = positional
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                ["login"] => {
                    only_for(json || revoke, "this option", "gdrive login")?;
                    Cmd::GdriveLogin
                }
                ["status"] => {
                    only_for(revoke, "--revoke", "gdrive status")?;
                    Cmd::GdriveStatus { json }
                }
                ["logout"] => {
                    only_for(json, "--json", "gdrive logout")?;
                    Cmd::GdriveLogout { revoke }
                }
                _ => {
                    return Err(Usage(
                        "gdrive takes one of: login, status [--json], logout [--revoke]".into(),
                    ));
                }
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
        "fleet" if positional.first().is_some_and(|p| p.as_os_str() == "serve") => {
            only_for(json || max_age.is_some(), "this option", "fleet serve")?;
            let v = listen.as_deref().unwrap_or(FLEET_LISTEN);
            let listen = v.parse::<SocketAddr>().map_err(|_| {
                Usage(format!(
                    "invalid --listen {v:?}: expected an IP address and port, e.g. 127.0.0.1:8090 or [::1]:8090"
                ))
            })?;
            no_extra(Cmd::FleetServe { listen }, &positional[1..])?
        }
        "fleet" => {
            only_for(max_age.is_some(), "--max-age-hours", "fleet")?;
            only_for(
                listen.is_some(),
                "--listen",
                "fleet (it belongs to `fleet serve`)",
            )?;
            if positional.first().is_some_and(|p| p.as_os_str() == "gc") {
                only_for(json, "--json", "fleet gc")?;
                no_extra(Cmd::FleetGc { apply }, &positional[1..])?
            } else if drill {
                only_for(json, "--json", "fleet drill")?;
                only_for(apply, "--apply", "fleet drill (it belongs to `fleet gc`)")?;
                if let Some(s) = &site
                    && !crate::config::valid_site_id(s)
                {
                    return Err(Usage(format!(
                        "invalid --site {s:?}: a site is a SITE_ID (letters, digits, '.', '_', '-')"
                    )));
                }
                no_extra(
                    Cmd::FleetDrill {
                        identity,
                        site,
                        deep,
                    },
                    &positional[1..],
                )?
            } else {
                only_for(apply, "--apply", "fleet (it belongs to `fleet gc`)")?;
                no_extra(Cmd::Fleet { json }, &positional)?
            }
        }
        other => return Err(Usage(format!("unknown command {other:?} (try --help)"))),
    };
    Ok((cmd, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(words: &[&str]) -> Result<(Cmd, Option<PathBuf>), String> {
        parse(words.iter().map(std::ffi::OsString::from)).map_err(|Usage(m)| m)
    }

    #[test]
    fn commands_and_their_options() {
        assert_eq!(p(&["run"]), Ok((Cmd::Run, None)));
        assert_eq!(p(&["--run"]), Ok((Cmd::Run, None)));
        assert_eq!(p(&["serve"]), Ok((Cmd::Serve, None)));
        assert_eq!(
            p(&["--config", "/tmp/b.conf", "list", "--json"]),
            Ok((Cmd::List { json: true }, Some(PathBuf::from("/tmp/b.conf"))))
        );
        assert_eq!(p(&["status"]), Ok((Cmd::Status { json: false }, None)));
        assert_eq!(
            p(&["verify", "backup-20241218-030000.tar.gz"]),
            Ok((
                Cmd::Verify {
                    archive: PathBuf::from("backup-20241218-030000.tar.gz")
                },
                None
            ))
        );
        assert_eq!(
            p(&[
                "restore",
                "a.tar.gz",
                "--dry-run",
                "--only",
                "site.conf, configuration.json,"
            ]),
            Ok((
                Cmd::Restore {
                    archive: PathBuf::from("a.tar.gz"),
                    dry_run: true,
                    only: Some(vec!["site.conf".into(), "configuration.json".into()]),
                },
                None
            ))
        );
        assert_eq!(p(&["check"]), Ok((Cmd::Check { max_age_hours: 25 }, None)));
        assert_eq!(
            p(&["check", "--max-age-hours", "8760"]),
            Ok((
                Cmd::Check {
                    max_age_hours: 8760
                },
                None
            ))
        );
        assert_eq!(
            p(&["fleet", "--json"]),
            Ok((Cmd::Fleet { json: true }, None))
        );
        assert_eq!(
            p(&["fleet", "serve"]),
            Ok((
                Cmd::FleetServe {
                    listen: SocketAddr::from(([127, 0, 0, 1], 8090))
                },
                None
            ))
        );
        assert_eq!(
            p(&["restore", "a.tar.gz", "--videos", "--identity", "k.txt"]),
            Ok((
                Cmd::RestoreVideos {
                    archive: PathBuf::from("a.tar.gz"),
                    dry_run: false,
                    identity: Some(PathBuf::from("k.txt")),
                },
                None
            ))
        );
        assert_eq!(
            p(&["fleet", "serve", "--listen", "[::]:9000"]),
            Ok((
                Cmd::FleetServe {
                    listen: "[::]:9000".parse().unwrap()
                },
                None
            ))
        );
        assert_eq!(
            p(&["fleet", "gc"]),
            Ok((Cmd::FleetGc { apply: false }, None))
        );
        assert_eq!(
            p(&["fleet", "gc", "--apply"]),
            Ok((Cmd::FleetGc { apply: true }, None))
        );
        assert_eq!(p(&["-h"]), Ok((Cmd::Help, None)));
        assert_eq!(p(&["list", "--help"]), Ok((Cmd::Help, None)));
        assert_eq!(p(&["-V"]), Ok((Cmd::Version, None)));
    }

    /// The help's `KEY=` words are the keys config/ reads, no more, no fewer (and
    /// tests/engine.rs holds the help to README.md's table).
    #[test]
    fn recover_and_its_options() {
        let rec = |archive: Option<&str>, site: Option<&str>, dry_run, no_videos| Cmd::Recover {
            from: None,
            archive: archive.map(str::to_string),
            site: site.map(str::to_string),
            identity: None,
            dry_run,
            no_videos,
        };
        assert_eq!(p(&["recover"]), Ok((rec(None, None, false, false), None)));
        assert_eq!(
            p(&[
                "recover",
                "backup-20260101-030000.tar.gz.age",
                "--site",
                "club-1",
                "--dry-run",
                "--no-videos"
            ]),
            Ok((
                rec(
                    Some("backup-20260101-030000.tar.gz.age"),
                    Some("club-1"),
                    true,
                    true
                ),
                None
            ))
        );
        assert_eq!(
            p(&["recover", "--identity", "/k.txt"]).map(|(c, _)| c),
            Ok(Cmd::Recover {
                archive: None,
                site: None,
                identity: Some(PathBuf::from("/k.txt")),
                dry_run: false,
                no_videos: false,
                from: None,
            })
        );
        assert_eq!(p(&["recover", "--new-start"]), Ok((Cmd::NewStart, None)));
        // --from, and the gdrive commands.
        assert!(matches!(
            p(&["recover", "--from", "gdrive"]),
            Ok((
                Cmd::Recover {
                    from: Some(Source::Gdrive),
                    ..
                },
                None
            ))
        ));
        assert!(matches!(
            p(&["recover", "--from", "s3"]),
            Ok((
                Cmd::Recover {
                    from: Some(Source::S3),
                    ..
                },
                None
            ))
        ));
        assert_eq!(p(&["gdrive", "login"]), Ok((Cmd::GdriveLogin, None)));
        assert_eq!(
            p(&["gdrive", "status", "--json"]),
            Ok((Cmd::GdriveStatus { json: true }, None))
        );
        assert_eq!(
            p(&["gdrive", "logout", "--revoke"]),
            Ok((Cmd::GdriveLogout { revoke: true }, None))
        );
        for bad in [
            &["recover", "--from", "ftp"][..],
            &["recover", "--new-start", "--from", "s3"],
            &["run", "--from", "s3"],
            &["gdrive"],
            &["gdrive", "login", "--revoke"],
            &["gdrive", "status", "--revoke"],
            &["gdrive", "logout", "--json"],
            &["gdrive", "connect"],
            &["list", "--revoke"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
        for bad in [
            &["recover", "--new-start", "--site", "x"][..],
            &["recover", "../etc/passwd"],
            &["recover", "backup-20260101-030000.tar.gz", "again"],
            &["recover", "--site", "../x"],
            &["recover", "--videos"],
            &["recover", "--only", "site.conf"],
            &["run", "--site", "x"],
            &["list", "--no-videos"],
            &["status", "--new-start"],
        ] {
            assert!(p(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn fleet_drill_and_its_options() {
        let drill = |identity: Option<&str>, site: Option<&str>, deep| Cmd::FleetDrill {
            identity: identity.map(PathBuf::from),
            site: site.map(str::to_string),
            deep,
        };
        assert_eq!(p(&["fleet", "drill"]), Ok((drill(None, None, false), None)));
        assert_eq!(
            p(&[
                "fleet",
                "drill",
                "--identity",
                "/keys.txt",
                "--site",
                "club-1",
                "--deep"
            ]),
            Ok((drill(Some("/keys.txt"), Some("club-1"), true), None))
        );
        assert_eq!(
            p(&["--deep", "fleet", "--site", "a", "drill"]).map(|(c, _)| c),
            Ok(drill(None, Some("a"), true))
        );
        // --site and --identity still belong to recover and restore.
        assert!(p(&["recover", "--site", "a", "--identity", "k"]).is_ok());
        let err = |w: &[&str]| p(w).err().unwrap_or_default();
        assert!(err(&["fleet", "drill", "--site", "../x"]).contains("invalid --site"));
        assert!(err(&["fleet", "drill", "x"]).contains("unexpected argument"));
        assert!(err(&["fleet", "drill", "--json"]).contains("not an option of `fleet drill`"));
        assert!(err(&["fleet", "drill", "--apply"]).contains("fleet gc"));
        assert!(err(&["fleet", "drill", "--dry-run"]).contains("--dry-run"));
        assert!(err(&["fleet", "drill", "--no-videos"]).contains("of `recover`"));
        assert!(err(&["fleet", "drill", "--listen", "127.0.0.1:1"]).contains("`fleet serve`"));
        assert!(err(&["fleet", "--site", "a"]).contains("`recover` and `fleet drill`"));
        assert!(err(&["fleet", "gc", "--identity", "k"]).contains("`fleet drill`"));
        assert!(err(&["fleet", "--deep"]).contains("--deep is an option of `fleet drill`"));
        assert!(err(&["recover", "--deep"]).contains("--deep"));
        assert!(err(&["list", "--identity", "k"]).contains("not `list`"));
        // The help names the command and its options.
        assert!(HELP.contains("fleet drill [--identity FILE] [--site ID] [--deep]"));
    }

    #[test]
    fn help_names_every_key_the_config_reads() {
        let section = HELP
            .split_once("Configuration keys")
            .and_then(|(_, rest)| rest.split_once('\n'))
            .map_or("", |(_, keys)| keys);
        let mut named = std::collections::BTreeSet::new();
        let mut word = String::new();
        for c in section.chars() {
            if c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' {
                word.push(c);
            } else {
                if c == '=' && !word.is_empty() {
                    named.insert(word.clone());
                }
                word.clear();
            }
        }
        let read: std::collections::BTreeSet<String> =
            crate::config::KEYS.iter().map(|k| k.to_string()).collect();
        assert_eq!(named, read);
    }

    #[test]
    fn the_command_word_is_found_even_in_a_bad_line() {
        let w = |v: &[&str]| {
            let v: Vec<std::ffi::OsString> = v.iter().map(|s| (*s).into()).collect();
            command_word(&v)
        };
        assert_eq!(
            w(&["check", "--max-age-hours", "0"]).as_deref(),
            Some("check")
        );
        assert_eq!(w(&["--config", "check", "list"]).as_deref(), Some("list"));
        assert_eq!(
            w(&["--max-age-hours", "x", "check"]).as_deref(),
            Some("check")
        );
        assert_eq!(w(&["--bogus", "check", "extra"]).as_deref(), Some("check"));
        assert_eq!(w(&["--run"]).as_deref(), Some("run"));
        assert_eq!(w(&["--config"]), None);
    }

    #[test]
    fn usage_errors_say_what_is_wrong() {
        let err = |w: &[&str]| p(w).err().unwrap_or_default();
        assert!(err(&[]).contains("no command"));
        assert!(err(&["backup"]).contains("unknown command \"backup\""));
        assert!(err(&["run", "--json"]).contains("--json is not an option of `run`"));
        assert!(err(&["list", "--dry-run"]).contains("option of `restore`"));
        assert!(err(&["run", "--videos"]).contains("options of `restore`"));
        assert!(err(&["restore", "a", "--videos", "--only", "site.conf"]).contains("--only"));
        assert!(err(&["restore", "a", "--identity", "k"]).contains("--videos"));
        assert!(err(&["fleet", "--apply"]).contains("fleet gc"));
        assert!(err(&["run", "--apply"]).contains("fleet gc"));
        assert!(err(&["fleet", "gc", "x"]).contains("unexpected argument"));
        assert!(err(&["restore"]).contains("exactly one ARCHIVE"));
        assert!(err(&["restore", "a", "b"]).contains("exactly one ARCHIVE"));
        assert!(err(&["verify"]).contains("exactly one ARCHIVE"));
        assert!(err(&["list", "extra"]).contains("unexpected argument"));
        assert!(err(&["serve", "--json"]).contains("not an option of `serve`"));
        for bad in ["0", "8761", "-1", "1.5", "x"] {
            assert!(
                err(&["check", "--max-age-hours", bad]).contains("invalid --max-age-hours"),
                "{bad}"
            );
        }
        assert!(err(&["status", "--max-age-hours", "3"]).contains("--max-age-hours"));
        assert!(err(&["run", "--bogus"]).contains("--bogus"));
        assert!(err(&["--config"]).contains("--config"));
        assert!(err(&["fleet", "serve", "--listen", "8090"]).contains("invalid --listen"));
        assert!(err(&["fleet", "--listen", "127.0.0.1:1"]).contains("`fleet serve`"));
        assert!(err(&["serve", "--listen", "127.0.0.1:1"]).contains("`fleet serve`"));
        assert!(err(&["fleet", "serve", "--json"]).contains("not an option of `fleet serve`"));
        assert!(err(&["fleet", "serve", "x"]).contains("unexpected argument"));
        assert!(err(&["fleet", "gc", "x"]).contains("unexpected argument"));
    }
}
