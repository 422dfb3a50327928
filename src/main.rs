//! neopro-backup: one static binary that backs up a Neopro kiosk. Dispatch only: the
//! command line lives in `cli/`, the daemon in `serve/`.
//!
//! The house, every arrow pointing down:
//! - surfaces: `cli/` (the commands), `serve/` (the daemon: schedule loop, API, page)
//! - domain: `backup/` (one run, the archive format, system info), `restore/`,
//!   `offsite/` (queue, S3 copies, fleet), `videos/` (inventory, hash cache),
//!   `retention`, `schedule`, `status`, `store` (BACKUP_DIR), `alerts/`, `config/`,
//!   `clock`, `error_words` (error codes with plain French words)
//! - adapters: `bucket/` (the offsite store: S3, in memory for tests), `http/` (server,
//!   client), `smtp/` (the mail client), `shell` (operator commands), `fsutil`, `host`,
//!   `units`
//!
//! The formats are written down in docs/format.md.

mod alerts;
mod backup;
mod bucket;
mod cli;
mod clock;
mod config;
mod drill;
mod error_words;
mod fsutil;
mod host;
mod http;
mod json;
mod offsite;
mod recover;
mod restore;
mod retention;
mod schedule;
mod serve;
mod shell;
mod smtp;
mod status;
mod store;
mod units;
mod videos;

fn main() -> std::process::ExitCode {
    cli::main()
}
