//! bind_mounts

pub mod types;
