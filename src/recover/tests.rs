//! The recovery on the in-memory store (bucket/mem.rs): real archives of a real tree.
