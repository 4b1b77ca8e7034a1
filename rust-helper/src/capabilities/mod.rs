//! The capabilities a container file can ask for.

pub mod bind_mounts;
pub mod devices;
pub mod forward_ports;
pub mod grants;
pub mod limits;
pub mod network;
pub mod store;
