//! What this helper asks of the host's system, below Nix and LXC: running
//! tools, its scratch space, netlink and nftables, root's directories and
//! the subordinate ids.

pub mod files;
pub mod host_dirs;
pub mod netlink;
pub mod nft;
pub mod process;
pub mod scratch;
pub mod subids;
