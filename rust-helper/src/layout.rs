//! The names of the files the helper keeps, defined once on the helper's
//! side: a container's generations (lib/layout.nix names those on the Nix
//! side), its LXC directory, and the state directory.

use std::path::Path;

/// The host's store.
pub const NIX_STORE: &str = "/nix/store";

// A container's profile and generations.

/// `<profiles dir>/<name>/profile`, the link nix-env switches; generation N
/// is `profile-<N>-link` beside it.
pub const PROFILE_LINK: &str = "profile";
/// Where the container's profile directory is mounted inside it.
pub const PROFILE_MOUNT: &str = "init";
/// A generation's guest system (a link to its toplevel).
pub const SYSTEM: &str = "system";
/// A generation's LXC settings (lib/lxc-config.nix).
pub const LXC_CONF: &str = "lxc.conf";
/// Root's own LXC settings in a generation (create/update --lxc-config).
pub const ROOT_LXC_CONF: &str = "lxc-root.conf";
/// A generation's spec and parameters (lib/generation.nix).
pub const SPEC_JSON: &str = "spec.json";
/// The store paths of a generation's system's closure, one per line: what
/// the container's store view holds (lib/generation-builder.sh).
pub const CLOSURE: &str = "closure";
/// How a generation's store path is named: this and its container's name
/// (lib/generation.nix).
pub const GENERATION_NAME_PREFIX: &str = "nixcloud-container-";

/// What LXC starts: the current generation's system's init, through the
/// profile mounted inside.
pub fn guest_init() -> String {
    format!("/{PROFILE_MOUNT}/{PROFILE_LINK}/{SYSTEM}/init")
}

// A container's directory in LXC's (`<lxc path>/<name>/`).

/// Its root file system, the container's own.
pub const ROOTFS: &str = "rootfs";
/// Its LXC config (the helper's `OwnConfig`), LXC's name for it.
pub const LXC_CONFIG: &str = "config";
/// The config handed to lxc-create, which copies it to `LXC_CONFIG`.
pub const GIVEN_LXC_CONFIG: &str = "config.given";
/// Root's own settings, copied from the generation it starts with.
pub const ROOT_SETTINGS: &str = "root.conf";
/// The pid of its LXC monitor while it runs (lxc-start --pidfile).
pub const MONITOR_PID: &str = "monitor.pid";

// The state directory (`<state dir>/`).

/// The state: which containers exist and what they hold (state.rs).
pub const STATE_JSON: &str = "state.json";
/// Held while the state is read to be changed.
pub const STATE_LOCK: &str = "state.lock";
/// Where a damaged state goes when `repair-state` rebuilds it, with the
/// time after it.
pub const STATE_JSON_BEFORE_REPAIR: &str = "state.json.before-repair";
/// The containers' locks: `locks/<name>.lock`.
pub const CONTAINER_LOCKS: &str = "locks";
/// What each container was last started with: `started/<name>.json`
/// (state.rs `Store::record_started`).
pub const STARTED: &str = "started";
/// Held by the one live activation at a time.
pub const ACTIVATION_LOCK: &str = "activation.lock";
/// The lock one `sync` holds while it plans and carries out (state.rs
/// `lock_sync`).
pub const SYNC_LOCK: &str = "sync.lock";
/// Held while the network rules are computed and applied.
pub const NETWORK_LOCK: &str = "network.lock";
/// The rules between peers and of forwarded ports applied last.
pub const NETWORK_RULES: &str = "network.nft";
/// The egress policy applied last.
pub const EGRESS_RULES: &str = "egress.nft";
/// dnsmasq's `dhcp-hostsdir`: a file per container with an internet address
/// (the host module's dnsmasq reads it: lib/layout.nix's dhcpHosts).
pub const DHCP_HOSTS: &str = "dhcp-hosts";
/// dnsmasq's `hostsdir`: a hosts line per container, its name
/// (capabilities/network/names.rs).
pub const HOSTS_DIR: &str = "hosts";
/// The build network kept between commands, a directory with the three
/// below.
pub const BUILD_NETWORK: &str = "build-network";
/// The kept build namespace (a bind mount of its nsfs file).
pub const BUILD_NETWORK_NAMESPACE: &str = "namespace";
/// What the kept build namespace was made for (nix/build_network.rs).
pub const BUILD_NETWORK_RECORD: &str = "record";
/// Held shared to use the kept build namespace, exclusive to make one.
pub const BUILD_NETWORK_LOCK: &str = "lock";
/// The out-links of generations being built: `builds/<name>`.
pub const BUILDS: &str = "builds";
/// The scratch directories of running helper processes.
pub const SCRATCH: &str = "tmp";
/// Which busybox was added to the store, for which file.
pub const BUSYBOX_CACHE: &str = "busybox.json";
/// The containers' data directories (`data/<name>`), where the host file
/// names no other place.
pub const DATA: &str = "data";

/// Container `name`'s lock file in the state directory `state_dir`.
pub fn container_lock(state_dir: &Path, name: &str) -> std::path::PathBuf {
    state_dir.join(CONTAINER_LOCKS).join(format!("{name}.lock"))
}

/// The record of container `name`'s last start in the state directory
/// `state_dir`.
pub fn started_record(state_dir: &Path, name: &str) -> std::path::PathBuf {
    state_dir.join(STARTED).join(format!("{name}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_are_named_as_lib_generation_nix_names_them() {
        let nix = include_str!("../../lib/generation.nix");
        assert!(nix.contains(&format!("name = \"{GENERATION_NAME_PREFIX}${{params.name}}\";")));
    }

    #[test]
    fn the_names_are_lib_layouts() {
        let nix = include_str!("../../lib/layout.nix");
        for (key, value) in [
            ("profileLink", PROFILE_LINK),
            ("profileMount", PROFILE_MOUNT),
            ("system", SYSTEM),
            ("lxcConf", LXC_CONF),
            ("rootLxcConf", ROOT_LXC_CONF),
            ("specJson", SPEC_JSON),
            ("closure", CLOSURE),
            ("dhcpHosts", DHCP_HOSTS),
        ] {
            assert!(nix.contains(&format!("  {key} = \"{value}\";")), "{key} = {value}");
        }
        // The guest's init, from the same parts.
        assert!(nix.contains("  guestInit = \"/${profileMount}/${profileLink}/${system}/init\";"));
        assert_eq!(guest_init(), "/init/profile/system/init");
    }
}
