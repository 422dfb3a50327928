//! HTTP adapters, knowing nothing of backups: the bounded server the daemon's API runs on
//! (`server`), the small client for S3, webhooks and pings (`client`), `%XX` decoding
//! (`percent`) and the hint a TLS certificate failure gets (`tls`).

pub mod client;
pub mod head;
pub mod percent;
pub mod response;
pub mod server;
pub mod tls;
