//! limits

pub mod types;
