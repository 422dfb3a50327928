//! HTTP adapters, knowing nothing of backups: the bounded server the daemon's API runs on
//! (`server`) and the small client for S3, webhooks and pings (`client`).

pub mod client;
pub mod head;
pub mod response;
pub mod server;
