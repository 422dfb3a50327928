//! The black-box tests of the built binary, in one test binary (`cargo test --test it`):
//! one link of the shared helpers instead of one per file, and one run in which the
//! groups' tests share the threads. A group is a module: `cargo test --test it api::`
//! runs the API tests only (docs/testing.md).

#[path = "../common/mod.rs"]
mod common;
#[path = "../fieldkit/mod.rs"]
mod fieldkit;

mod api;
mod blank_pi;
mod drill;
mod email;
mod engine;
mod error_words;
mod field;
mod field_archives;
mod field_clock;
mod fleet;
mod gdrive;
mod gdrive_api;
mod hostile_peers;
mod offsite;
mod recover;
mod recover_api;
mod restore;
mod videos;
