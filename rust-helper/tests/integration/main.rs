//! The helper's integration tests: real Nix, real LXC and the kernel, each
//! test on a host of its own (common.rs), one module per area.

mod anti_spoofing;
mod build_limits;
mod build_network;
mod common;
mod daily;
mod docs;
mod flake_inputs;
mod guests;
mod interface;
mod isolation;
mod lifecycle;
mod names;
mod network_guard;
mod nixos_configuration;
mod reliability;
mod runtime;
mod security;
mod sync;
mod transfer;
