//! The capabilities a container file can ask for.

pub mod grants;
pub mod limits;
pub mod network;
pub mod store;
