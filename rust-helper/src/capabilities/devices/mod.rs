//! devices

pub mod types;
