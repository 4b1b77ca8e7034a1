//! The network.

pub mod addresses;
pub mod egress;
pub mod port_guard;
pub mod rules;
pub mod types;
