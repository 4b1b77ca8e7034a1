//! What the commands share that is no capability of a container: opening a
//! container (its lock, the state, recovery), the steps that make a new
//! one (create, import), the build of a generation, its activation in a running guest and the guest's readiness, and the LXC
//! settings (the container's own config, and the check of a generation's).

pub mod activation;
pub mod generation;
pub mod guest_lock;
pub mod lxc_settings;
pub mod new_container;
pub mod opening;
pub mod readiness;
pub mod recovery;
