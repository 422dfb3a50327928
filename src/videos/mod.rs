//! The club's videos as every part of the program sees them: the inventory of
//! NEOPRO_DIR/videos and its `videos-inventory.txt` form (`inventory`), and the SHA-256 of
//! each video with the cache that spares reading them again (`hashes`).
//!
//! The backup writes both into an archive, the offsite copy uploads by hash, restore
//! fetches by hash: all three stand on this module, which stands on none of them.

pub mod hashes;
pub mod inventory;
