//! The host's settings and where things live.
//!
//! The defaults are the seed's and live in one file, `lib/host-defaults.json`,
//! which the NixOS host module reads too. On a NixOS host the module writes
//! the host file (/etc/nixcloud-container/host.json) from its options, so the
//! helper and the host's bridges never disagree. Flags and environment
//! variables move each location for tests and packagers.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use serde::Deserialize;
use serde_json::Value;

use crate::capabilities::bind_mounts::types::AllowedHostPath;
use crate::capabilities::devices::types::Device;
use crate::capabilities::forward_ports::types::PortRange;
use crate::capabilities::limits::types::{Limits, Positive, Size};
use crate::capabilities::network::types::{
    AllowedEgress, HostAddress, HostBridge, HostNames, Ipv6Prefix,
};
use crate::formats::{AbsolutePath, InterfaceName, PrefixLength};
use crate::ids::HostIds;
use crate::ranges::Range;

const HOST_DEFAULTS: &str = include_str!("../../lib/host-defaults.json");

pub const DEFAULT_HOST_CONFIG: &str = "/etc/nixcloud-container/host.json";

/// The Nix library: set at build time by packages (the flake points it into
/// the store), else the `lib` directory beside this crate.
const BUILT_IN_NIX_LIB: &str = match option_env!("NIXCLOUD_CONTAINER_NIX_LIB") {
    Some(dir) => dir,
    None => concat!(env!("CARGO_MANIFEST_DIR"), "/../lib"),
};

/// The host file's contents (lib/host-defaults.json has every key). It is
/// root's: written by the NixOS module or by hand, never by a container file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostConfig {
    pub hostonly: HostBridge,
    pub internet: HostBridge,
    /// Other bridges of the host that container files may name as
    /// `network.bridge`, with the host's address on each.
    pub extra_bridges: BTreeMap<InterfaceName, HostAddress>,
    pub idmap: HostIds,
    /// Whether the host's files (the store, /init) show as owned by root
    /// inside: idmapped mounts, which some filesystems lack.
    pub idmapped_mounts: bool,
    /// Whether container files may ask for Nix inside, through the host's
    /// nix-daemon (as an untrusted user).
    pub allow_nix_daemon: bool,
    /// The directory of the nix-daemon socket those containers get (at
    /// /nix/var/nix/daemon-socket inside): the host's daemon's, or one the
    /// host runs for containers.
    pub nix_daemon_socket_dir: AbsolutePath,
    /// Whether container files may ask to see the host's whole store
    /// rather than their closure.
    pub allow_whole_store: bool,
    /// The most any container gets of each resource, and what one that
    /// asks for nothing gets: written as the module's options are
    /// (`memory.max = "512M"`), read into lib/spec.nix's numbers.
    #[serde(deserialize_with = "crate::capabilities::limits::types::deserialize_written")]
    pub limits: Limits,
    /// Whether containers run under AppArmor (LXC's generated profile);
    /// null: where the kernel has AppArmor on.
    pub app_armor: Option<bool>,
    /// Where containers' own data directories are (`<dir>/<name>`); null:
    /// `<stateDir>/data`.
    pub data_dir: Option<PathBuf>,
    /// Host paths container files may bind (at or below each), and whether
    /// writable.
    pub allowed_host_paths: BTreeMap<AbsolutePath, AllowedHostPath>,
    /// Host ports container files may have forwarded to them.
    pub allowed_forward_ports: Vec<PortRange>,
    /// Private networks and link-local addresses that containers'
    /// forwarded traffic may reach, which it may not by default
    /// (capabilities/network/egress.rs).
    pub allowed_egress: Vec<AllowedEgress>,
    /// Host devices container files may ask for.
    pub allowed_devices: Vec<Device>,
    /// Whether each container's ports pass only frames from its own MAC
    /// address and its own addresses (capabilities/network/port_guard.rs).
    pub anti_spoofing: bool,
    /// The IPv6 prefix routed to the internet bridge, from which DHCPv6
    /// gives containers their addresses; null: no IPv6 there.
    #[serde(rename = "internetIPv6")]
    pub internet_ipv6: Option<Ipv6Prefix>,
    /// Host paths a tenant's flake may name as inputs (at or below each),
    /// besides what is inside its own directory (flake_inputs.rs).
    pub allowed_flake_input_paths: Vec<AbsolutePath>,
    /// The host's names for its containers.
    pub names: HostNames,
    /// How evaluations and builds of container files reach the network, and
    /// the limits they run under.
    pub builds: Builds,
    pub lxc_path: PathBuf,
    pub profiles_dir: PathBuf,
    pub state_dir: PathBuf,
    /// Where LXC's common.conf and userns.conf are; null: found beside lxc-start.
    pub lxc_config_dir: Option<PathBuf>,
}

/// The network of the helper's Nix processes, which evaluate and build
/// container files (build_network.rs).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Builds {
    /// Whether fixed-output builds (the only builds Nix lets out of the
    /// sandbox's network) may reach the public internet. Nix itself reaches
    /// it either way, to substitute and to fetch a flake's inputs.
    pub allow_internet: bool,
    /// The addresses of the links between the host and the helper's build
    /// namespaces: each helper process takes a /30 of this subnet.
    pub network: BuildLinks,
    /// The memory each Nix process of an evaluation or build, and each of
    /// its builders, may take: bytes or a size with a unit ("4G"); null: a
    /// quarter of the host's (build_limits.rs).
    pub memory: Option<Size>,
    /// How long evaluating a container's spec or a flake's containers may
    /// take, in seconds.
    pub evaluation_timeout: Positive,
    /// How long fetching a flake's inputs, or evaluating and building a
    /// generation, may take, in seconds.
    pub build_timeout: Positive,
}

/// A subnet by its network address (`builds.network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildLinks {
    pub address: Ipv4Addr,
    pub prefix_length: PrefixLength,
}

impl BuildLinks {
    pub fn subnet(&self) -> Ipv4Net {
        Ipv4Net::new(self.address, self.prefix_length.get())
            .expect("a PrefixLength is a valid IPv4 prefix length")
    }
}

/// How much of what Nix and LXC say the user sees (-q, -v).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Nothing while it runs (-q).
    Quiet,
    /// A progress line on a terminal, nothing elsewhere.
    Normal,
    /// Nix's messages and build logs as they come (-v).
    Verbose,
}

/// Where things live, where a flag or a variable moves them (for tests and
/// packagers); each left out is the host file's.
#[derive(Debug, Clone, Default)]
pub struct Locations {
    pub lxc_path: Option<PathBuf>,
    pub profiles_dir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub host_config: Option<PathBuf>,
    pub nix_lib: Option<PathBuf>,
    pub busybox: Option<PathBuf>,
}

/// Everything a command needs to know about the host.
#[derive(Debug, Clone)]
pub struct Settings {
    pub host: HostConfig,
    /// The host file `host` was read from.
    pub host_file: PathBuf,
    pub lxc_path: PathBuf,
    pub profiles_dir: PathBuf,
    pub state_dir: PathBuf,
    pub nix_lib: PathBuf,
    pub busybox: Option<PathBuf>,
    pub verbosity: Verbosity,
}

/// Overlays `overrides` onto `base`, object by object.
fn merge(base: &mut Value, overrides: Value) {
    match (base, overrides) {
        (Value::Object(base), Value::Object(overrides)) => {
            for (key, value) in overrides {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

impl HostConfig {
    /// The defaults, overlaid with the host file when it exists. A missing
    /// file is normal (a host set up by hand); an unreadable one is an error.
    pub fn load(path: &Path) -> Result<HostConfig> {
        let mut value: Value =
            serde_json::from_str(HOST_DEFAULTS).expect("lib/host-defaults.json is valid JSON");
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let overrides: Value = serde_json::from_str(&text)
                    .with_context(|| format!("host file {} is not valid JSON", path.display()))?;
                merge(&mut value, overrides);
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("cannot read host file {}", path.display()))
            }
        }
        let host: HostConfig = serde_json::from_value(value).with_context(|| {
            format!("host file {} does not fit lib/host-defaults.json", path.display())
        })?;
        host.check().with_context(|| format!("host file {}", path.display()))?;
        Ok(host)
    }

    /// What the types cannot say: distinct bridges, host addresses that are
    /// hosts of their subnets, and build links apart from all of them.
    fn check(&self) -> Result<()> {
        let named = [("hostonly", &self.hostonly), ("internet", &self.internet)];
        if self.hostonly.bridge == self.internet.bridge {
            bail!("hostonly and internet are both bridge {}", self.hostonly.bridge);
        }
        for bridge in self.extra_bridges.keys() {
            if let Some((role, _)) = named.iter().find(|(_, b)| &b.bridge == bridge) {
                bail!("extraBridges names {bridge}, the {role} bridge");
            }
        }
        let links = self.builds.network.subnet();
        let Range { min, max } = crate::ranges::RANGES.builds_prefix_length;
        if !(min..=max).contains(&u32::from(links.prefix_len())) {
            bail!(
                "builds.network: prefix length {} is not from {min} to {max}",
                links.prefix_len()
            );
        }
        if links.trunc() != links {
            bail!(
                "builds.network: {} is not the network address of {}",
                links.addr(),
                links.trunc()
            );
        }
        let all = named
            .iter()
            .map(|(_, b)| (&b.bridge, b.host()))
            .chain(self.extra_bridges.iter().map(|(bridge, host)| (bridge, *host)));
        for (bridge, host) in all {
            let subnet = host.subnet();
            if host.address == subnet.network() || host.address == subnet.broadcast() {
                bail!(
                    "the host's address {} on {bridge} is the network or broadcast address of {subnet}",
                    host.address
                );
            }
            if links.contains(&subnet) || subnet.contains(&links) {
                bail!("builds.network {links} overlaps the subnet {subnet} of {bridge}");
            }
        }
        let ipv6_range = crate::ranges::RANGES.ipv6_prefix_length;
        if let Some(ipv6) =
            self.internet_ipv6.filter(|ipv6| !ipv6_range.contains(ipv6.prefix_length.into()))
        {
            let Range { min, max } = ipv6_range;
            bail!("internetIPv6: prefix length {} is not from {min} to {max}", ipv6.prefix_length);
        }
        if let Some(range) = self.allowed_forward_ports.iter().find(|range| range.from > range.to) {
            bail!("allowedForwardPorts: {} is above {}", range.from.0, range.to.0);
        }
        let mut egress_ports = self.allowed_egress.iter().flat_map(|allowed| &allowed.ports);
        if let Some(range) = egress_ports.find(|range| range.from > range.to) {
            bail!("allowedEgress: port {} is above {}", range.from.0, range.to.0);
        }
        self.idmap.check()
    }
}

impl Settings {
    /// The host's settings, each location where `args` moves it, else
    /// where the host file (or its default) has it.
    pub fn load(args: &Locations, verbosity: Verbosity) -> Result<Settings> {
        let host_file = args.host_config.clone().unwrap_or_else(|| DEFAULT_HOST_CONFIG.into());
        let host = HostConfig::load(&host_file)?;
        Ok(Settings {
            lxc_path: absolute(args.lxc_path.clone().unwrap_or_else(|| host.lxc_path.clone()))?,
            profiles_dir: absolute(
                args.profiles_dir.clone().unwrap_or_else(|| host.profiles_dir.clone()),
            )?,
            state_dir: absolute(args.state_dir.clone().unwrap_or_else(|| host.state_dir.clone()))?,
            nix_lib: nix_lib(args.nix_lib.clone().unwrap_or_else(|| BUILT_IN_NIX_LIB.into()))?,
            busybox: args.busybox.clone(),
            host,
            host_file,
            verbosity,
        })
    }

    /// Container `name`'s own data directory, for its bind mounts.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.host
            .data_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join(crate::layout::DATA))
            .join(name)
    }

    /// Whether containers run under LXC's generated AppArmor profile.
    pub fn app_armor(&self) -> bool {
        self.host.app_armor.unwrap_or_else(|| {
            std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
                .is_ok_and(|enabled| enabled.trim() == "Y")
        })
    }

    /// LXC's distribution config directory (common.conf, userns.conf): from
    /// the host file, else `share/lxc/config` of the installation whose
    /// lxc-start is on PATH.
    pub fn lxc_config_dir(&self) -> Result<PathBuf> {
        let dir = match &self.host.lxc_config_dir {
            Some(dir) => dir.clone(),
            None => {
                let lxc_start = find_on_path("lxc-start").context(
                    "lxc-start is not on PATH: install LXC (NixOS: nixcloud.containers.enable = true; \
                     Debian: apt-get install lxc)",
                )?;
                let real = std::fs::canonicalize(&lxc_start)
                    .with_context(|| format!("cannot resolve {}", lxc_start.display()))?;
                let prefix = real.parent().and_then(Path::parent).unwrap_or(Path::new("/"));
                prefix.join("share/lxc/config")
            }
        };
        if !dir.join("common.conf").is_file() {
            bail!(
                "LXC's common.conf is not in {}: set lxcConfigDir in the host file",
                dir.display()
            );
        }
        Ok(dir)
    }

    /// The busybox that builds generations: the one configured, else the one
    /// on PATH, with symlinks resolved (lib/busybox.nix needs the real file).
    pub fn busybox(&self) -> Result<PathBuf> {
        let configured = match &self.busybox {
            Some(path) => path.clone(),
            None => find_on_path("busybox").context(
                "no busybox to build generations with: install one (Debian: apt-get install \
                 busybox-static) or name it with --busybox / NIXCLOUD_CONTAINER_BUSYBOX",
            )?,
        };
        std::fs::canonicalize(&configured)
            .with_context(|| format!("busybox {} is not usable", configured.display()))
    }
}

/// The toolkit's Nix library, by its real path: restricted evaluation
/// allows exactly the directory around it.
fn nix_lib(path: PathBuf) -> Result<PathBuf> {
    std::fs::canonicalize(&path).with_context(|| {
        format!("the toolkit's Nix library {} is not there (--nix-lib)", path.display())
    })
}

fn absolute(path: PathBuf) -> Result<PathBuf> {
    if path.is_absolute() {
        Ok(path)
    } else {
        Ok(std::env::current_dir().context("cannot read the current directory")?.join(path))
    }
}

/// The first executable called `program` in PATH.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| {
        use std::os::unix::fs::PermissionsExt;
        candidate.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds() {
        let host = HostConfig::load(Path::new("/nonexistent/host.json")).unwrap();
        assert_eq!(host.hostonly.bridge.as_str(), "brNC-hostonly");
        assert_eq!(host.hostonly.address, Ipv4Addr::new(10, 101, 0, 1));
        assert_eq!(host.hostonly.prefix_length.get(), 16);
        assert_eq!(host.internet.bridge.as_str(), "brNC-internet");
        assert!(host.extra_bridges.is_empty());
        assert_eq!(host.idmap.first(), crate::ids::IdMap { host_id: 100000, count: 65536 });
        assert_eq!(host.idmap.count, 1000 * 65536);
        assert!(host.idmap.isolated);
        assert_eq!(host.lxc_path, PathBuf::from("/var/lib/lxc"));
        assert_eq!(host.profiles_dir, PathBuf::from("/nix/var/nix/profiles/nixcloud-container"));
    }

    #[test]
    fn host_file_overrides_single_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("host.json");
        std::fs::write(&file, r#"{"hostonly": {"bridge": "brX"}, "idmap": {"hostId": 200000}}"#)
            .unwrap();
        let host = HostConfig::load(&file).unwrap();
        assert_eq!(host.hostonly.bridge.as_str(), "brX");
        assert_eq!(host.hostonly.prefix_length.get(), 16, "untouched keys keep their defaults");
        assert_eq!(host.idmap.host_id, 200000);
        assert_eq!(host.idmap.per_container, 65536);
    }

    #[test]
    fn host_file_with_unknown_keys_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("host.json");
        std::fs::write(&file, r#"{"hostOnly": {}}"#).unwrap();
        let err = HostConfig::load(&file).unwrap_err();
        assert!(format!("{err:#}").contains("hostOnly"), "{err:#}");
    }

    #[test]
    fn host_file_values_are_checked_and_blamed_on_the_host_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("host.json");
        for (text, message) in [
            (r#"{"hostonly": {"prefixLength": 40}}"#, "prefix length 40"),
            (r#"{"hostonly": {"bridge": "br/x"}}"#, "is not an interface name"),
            (r#"{"internet": {"bridge": "brNC-hostonly"}}"#, "both bridge brNC-hostonly"),
            (r#"{"hostonly": {"address": "10.101.0.0"}}"#, "network or broadcast"),
            (
                r#"{"extraBridges": {"brNC-internet": {"address": "10.5.0.1", "prefixLength": 24}}}"#,
                "the internet bridge",
            ),
            (
                r#"{"extraBridges": {"br0": {"address": "10.5.0.255", "prefixLength": 24}}}"#,
                "network or broadcast",
            ),
            (r#"{"idmap": {"hostId": 1000}}"#, "below 100000"),
            (r#"{"idmap": {"perContainer": 1000}}"#, "below 65536"),
            (r#"{"idmap": {"count": 65535}}"#, "no container fits"),
            (r#"{"idmap": {"hostId": 4294000000}}"#, "beyond the largest uid"),
            (r#"{"allowedEgress": [{"network": "10.1.2.3"}]}"#, "is not a network like"),
            (
                r#"{"allowedEgress": [{"network": "10.1.2.3/16"}]}"#,
                "beyond its prefix: 10.1.0.0/16?",
            ),
            (r#"{"allowedEgress": [{"network": "fd00::1/8"}]}"#, "beyond its prefix: fd00::/8?"),
            (
                r#"{"allowedEgress": [{"network": "10.1.0.0/16", "ports": [{"from": 90, "to": 80}]}]}"#,
                "allowedEgress: port 90 is above 80",
            ),
            (r#"{"allowedEgress": [{"network": "10.1.0.0/16", "protocol": "tcp"}]}"#, "protocol"),
            (
                r#"{"internetIPv6": {"prefix": "2001:db8::", "prefixLength": 48}}"#,
                "prefix length 48 is not from 64 to 112",
            ),
            (r#"{"internetIPv6": {"prefix": "10.0.0.0", "prefixLength": 64}}"#, "invalid IPv6"),
            (r#"{"builds": {"network": {"address": "10.203.0.1"}}}"#, "not the network address"),
            (r#"{"builds": {"network": {"address": "10.0.0.0", "prefixLength": 8}}}"#, "overlaps"),
            (
                r#"{"builds": {"network": {"address": "10.0.0.0", "prefixLength": 7}}}"#,
                "builds.network: prefix length 7 is not from 8 to 30",
            ),
            (r#"{"builds": {"allowInternet": "yes"}}"#, "expected a boolean"),
            (r#"{"builds": {"memory": 0}}"#, "not a positive number"),
            (r#"{"builds": {"memory": "4 GB"}}"#, "\"4 GB\" is not a size"),
            (r#"{"limits": {"memoryMax": 1073741824}}"#, "unknown field `memoryMax`"),
            (r#"{"builds": {"evaluationTimeout": 0}}"#, "not a positive number"),
            (r#"{"allowedFlakeInputPaths": ["srv/flakes"]}"#, "absolute path"),
            (r#"{"allowedFlakeInputPaths": ["/srv/../etc"]}"#, "absolute path"),
            (r#"{"names": {"suffix": "a.b"}}"#, "one label of a host name"),
            (r#"{"names": {"suffix": "x\n1.2.3.4 bank"}}"#, "one label of a host name"),
            (r#"{"names": {"hostsFile": "etc/hosts"}}"#, "absolute path"),
        ] {
            std::fs::write(&file, text).unwrap();
            let err = format!("{:#}", HostConfig::load(&file).unwrap_err());
            assert!(err.contains("host file") && err.contains(message), "{text}: {err}");
        }
        // The module's shapes: sizes with units, limits grouped as its options.
        std::fs::write(
            &file,
            r#"{"builds": {"memory": "4G"}, "limits": {"memory": {"max": "512M"}, "cpu": {"max": 1.5}}}"#,
        )
        .unwrap();
        let host = HostConfig::load(&file).unwrap();
        assert_eq!(host.builds.memory.map(Size::bytes), Some(4 << 30));
        assert_eq!(host.limits.memory_max, Some(Positive(512 << 20)));
        std::fs::write(
            &file,
            r#"{"extraBridges": {"myOwnBridge": {"address": "10.10.0.1", "prefixLength": 16}}}"#,
        )
        .unwrap();
        let host = HostConfig::load(&file).unwrap();
        let own = &host.extra_bridges[&InterfaceName::try_from("myOwnBridge".to_string()).unwrap()];
        assert_eq!(own.subnet().to_string(), "10.10.0.0/16");
    }
}
