//! The backups web page served at `GET /`: one self-contained HTML file (CSS and JS
//! inline, no external resources: the Pi is often offline), compiled into the binary.

pub const PAGE: &str = include_str!("page.html");
