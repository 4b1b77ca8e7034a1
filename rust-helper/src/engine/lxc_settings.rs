//! The check of a generation's LXC settings (`<generation>/lxc.conf`) before
//! LXC ever reads them.
//!
//! lib/lxc-config.nix writes them from values the helper resolved and
//! checked, but a generation is a store path that anything built before (an
//! older helper, a tampered profile) may have made. LXC runs hooks as root,
//! mounts host paths and grants devices on a config's say, so a generation
//! is made current, started or switched to only when every line is one this
//! helper generates: a key of a fixed list, with a value of that key's form
//! for this container, on one line. No mount among them: the helper mounts
//! what a container sees itself (mounts.rs).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use ipnet::Ipv4Net;

use crate::capabilities::network::addresses::{mac_address, port_name, Port};
use crate::context::Context;
use crate::formats::{show, InterfaceName};
use crate::ids::IdMap;
use crate::layout::GUEST_INIT;

/// What the settings of container `name` may say.
pub struct Rules<'a> {
    pub name: &'a str,
    /// `dir:` and this is `lxc.rootfs.path`.
    pub rootfs: PathBuf,
    /// Its id range; `lxc.idmap` must map exactly this for users and groups.
    pub idmap: IdMap,
    /// The bridges its interfaces may join.
    pub bridges: Vec<&'a InterfaceName>,
    /// Where the scripts LXC runs (`script.up`, the stop hook) must be: the store.
    pub store: &'a Path,
}

/// What each veth's `script.up` must be: lib/isolate-port.sh, in the store.
const ISOLATE_PORT: StoreScript =
    StoreScript { file: "isolate-port.sh", text: include_str!("../../../lib/isolate-port.sh") };

/// What `lxc.hook.stop` must be: lib/drop-forwards.sh, in the store
/// (it empties the stopped container's chain of forwards, commands/
/// network_rules.rs).
pub const DROP_FORWARDS: StoreScript =
    StoreScript { file: "drop-forwards.sh", text: include_str!("../../../lib/drop-forwards.sh") };

/// A script of lib/ that LXC runs as root on the host: its file name there
/// and its text.
pub struct StoreScript {
    file: &'static str,
    pub text: &'static str,
}

/// The ports of the interfaces, by index.
const PORTS: [Port; 2] = [Port::Hostonly, Port::Internet];

/// The names LXC gives the container's interfaces inside, by index.
const INTERFACE_NAMES: [&str; 2] = ["hostonly", "internet"];

/// The terminals LXC gives the container (lib/lxc-config.nix): pts/1 to
/// pts/4, named to systemd in $container_ttys.
const TTYS: &str = "4";
const CONTAINER_TTYS: &str = "container_ttys=pts/1 pts/2 pts/3 pts/4";

/// Checks the text of a generation's lxc.conf against `rules`.
pub fn check(text: &str, rules: &Rules) -> Result<()> {
    let mut seen = Seen::default();
    for (index, line) in text.split('\n').enumerate() {
        check_line(line, rules, &mut seen).with_context(|| format!("line {}", index + 1))?;
    }
    for index in 0..PORTS.len() {
        if seen.veths[index] && !seen.isolated[index] {
            bail!("lxc.net.{index} has no script.up: its port would not be isolated");
        }
        // The port guard knows a port by its name and its MAC address.
        if seen.veths[index] && !(seen.named[index] && seen.addressed[index]) {
            bail!(
                "lxc.net.{index} has no veth.pair or no hwaddr: the port guard would not let \
                 its port pass (a generation older than fixed MAC addresses: update the container)"
            );
        }
    }
    let idmaps = seen.idmaps;
    let wanted = [
        format!("u 0 {} {}", rules.idmap.host_id, rules.idmap.count),
        format!("g 0 {} {}", rules.idmap.host_id, rules.idmap.count),
    ];
    if idmaps != wanted {
        bail!("lxc.idmap must map exactly {} (users and groups), not {idmaps:?}", wanted[0]);
    }
    Ok(())
}

/// Checks `<generation>/lxc.conf`.
pub fn check_file(file: &Path, rules: &Rules) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    check(&text, rules)
        .with_context(|| format!("{} is not LXC settings this helper generates", file.display()))
}

/// What the lines said that the whole must agree with.
#[derive(Default)]
struct Seen {
    idmaps: Vec<String>,
    /// Which interfaces are veths, and which have the isolation script,
    /// their port's name and their MAC address.
    veths: [bool; 2],
    isolated: [bool; 2],
    named: [bool; 2],
    addressed: [bool; 2],
}

fn check_line(line: &str, rules: &Rules, seen: &mut Seen) -> Result<()> {
    if let Some(bad) = line.chars().find(|c| c.is_control()) {
        bail!("a control character ({bad:?}) in {}", show(line));
    }
    // As LXC parses a line: blanks around, '#' starts a comment, the key
    // ends at the first '='.
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(());
    }
    let Some((key, value)) = line.split_once('=') else {
        bail!("{} is not `key = value`", show(line));
    };
    let (key, value) = (key.trim(), value.trim());
    let expect = |wanted: &str| -> Result<()> {
        if value == wanted {
            Ok(())
        } else {
            bail!("{key} must be {}, not {}", show(wanted), show(value))
        }
    };
    match key {
        "lxc.uts.name" => expect(rules.name),
        "lxc.rootfs.path" => expect(&format!("dir:{}", rules.rootfs.display())),
        "lxc.init.cmd" => expect(GUEST_INIT),
        "lxc.start.auto" if value == "0" || value == "1" => Ok(()),
        "lxc.start.auto" => bail!("lxc.start.auto must be 0 or 1, not {}", show(value)),
        "lxc.idmap" => {
            seen.idmaps.push(value.to_string());
            Ok(())
        }
        "lxc.tty.max" => expect(TTYS),
        _ if key.starts_with("lxc.cgroup2.") => {
            crate::capabilities::limits::types::check_setting(&key["lxc.cgroup2.".len()..], value)
                .map_err(|err| anyhow!(err))
        }
        "lxc.environment" => expect(CONTAINER_TTYS),
        "lxc.hook.stop" => check_store_script(value, rules.store, &DROP_FORWARDS)
            .with_context(|| format!("lxc.hook.stop {}", show(value))),
        _ => match network_key(key) {
            Some((index, item)) => check_network_item(index, item, value, rules, seen),
            None => bail!("{} is not a key nixcloud-container generates", show(key)),
        },
    }
}

/// `lxc.net.<index>.<item>`, for the interfaces the helper gives containers.
fn network_key(key: &str) -> Option<(usize, &str)> {
    let rest = key.strip_prefix("lxc.net.")?;
    let (index, item) = rest.split_once('.')?;
    let index: usize = match index {
        "0" => 0,
        "1" => 1,
        _ => return None,
    };
    Some((index, item))
}

fn check_network_item(
    index: usize,
    item: &str,
    value: &str,
    rules: &Rules,
    seen: &mut Seen,
) -> Result<()> {
    let ipv4 = |text: &str| -> Result<Ipv4Addr> {
        text.parse().map_err(|_| anyhow!("{} is not an IPv4 address", show(text)))
    };
    match item {
        "type" if value == "veth" => {
            seen.veths[index] = true;
            Ok(())
        }
        "veth.pair" => {
            let port = port_name(rules.name, PORTS[index]);
            if value == port.as_str() {
                seen.named[index] = true;
                Ok(())
            } else {
                bail!("lxc.net.{index}.veth.pair must be {port}, not {}", show(value))
            }
        }
        "hwaddr" => {
            let address = mac_address(rules.name, PORTS[index]);
            if value == address {
                seen.addressed[index] = true;
                Ok(())
            } else {
                bail!("lxc.net.{index}.hwaddr must be {address}, not {}", show(value))
            }
        }
        "script.up" => {
            check_store_script(value, rules.store, &ISOLATE_PORT)
                .with_context(|| format!("lxc.net.{index}.script.up {}", show(value)))?;
            seen.isolated[index] = true;
            Ok(())
        }
        "flags" if value == "up" => Ok(()),
        "name" if value == INTERFACE_NAMES[index] => Ok(()),
        "link" => {
            if rules.bridges.iter().any(|bridge| *bridge == value) {
                Ok(())
            } else {
                bail!("lxc.net.{index}.link {} is not a bridge of this host", show(value))
            }
        }
        "ipv4.address" => {
            // "<address>/<length> <broadcast>"
            let (net, broadcast) = value.split_once(' ').unwrap_or((value, ""));
            let net: Ipv4Net =
                net.parse().map_err(|_| anyhow!("{} is not an address", show(net)))?;
            if net.broadcast() != ipv4(broadcast)? {
                bail!("lxc.net.{index}.ipv4.address has a wrong broadcast address");
            }
            Ok(())
        }
        "ipv4.gateway" => ipv4(value).map(drop),
        _ => bail!(
            "lxc.net.{index}.{item} = {} is not a setting nixcloud-container generates",
            show(value)
        ),
    }
}

/// LXC runs `script.up` and hooks as root on the host: each must be
/// `script`, a file in the store (which nothing changes) with its text.
fn check_store_script(value: &str, store: &Path, script: &StoreScript) -> Result<()> {
    let path = Path::new(value);
    let suffix = format!("-{}", script.file);
    let in_store = path.parent() == Some(store)
        && path.file_name().and_then(|name| name.to_str()).is_some_and(|name| {
            name.len() == 32 + suffix.len() && name.ends_with(&suffix) && !name.starts_with('.')
        });
    if !in_store {
        bail!("is not lib/{} in {}", script.file, store.display());
    }
    match std::fs::read_to_string(path) {
        Ok(text) if text == script.text => Ok(()),
        Ok(_) => bail!("is not lib/{}", script.file),
        Err(err) => Err(err).context("cannot be read"),
    }
}

/// What the LXC settings of container `name`, whose ids are `ids`, may
/// say (lxc_conf.rs).
pub fn rules<'a>(ctx: &'a Context, name: &'a str, ids: IdMap) -> Rules<'a> {
    let host = &ctx.settings.host;
    Rules {
        name,
        rootfs: ctx.lxc().rootfs(name),
        idmap: ids,
        bridges: [&host.hostonly.bridge, &host.internet.bridge]
            .into_iter()
            .chain(host.extra_bridges.keys())
            .collect(),
        store: std::path::Path::new(crate::layout::NIX_STORE),
    }
}

/// Fails unless the generation at `path` has LXC settings this helper
/// generates for container `name` (whose ids are `ids`), and its store
/// holds no other container's generation: before it is made current,
/// started or switched to.
pub fn check_generation(ctx: &Context, name: &str, ids: IdMap, path: &Path) -> Result<()> {
    check_file(&path.join(crate::layout::LXC_CONF), &rules(ctx, name, ids))?;
    crate::capabilities::store::view::StoreView::of_path(path)?.check_no_other_generation(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store holding the isolation script, the stop hook, and another file.
    fn store() -> tempfile::TempDir {
        let store = tempfile::tempdir().unwrap();
        std::fs::write(store.path().join(SCRIPT), ISOLATE_PORT.text).unwrap();
        std::fs::write(store.path().join(HOOK), DROP_FORWARDS.text).unwrap();
        for evil in [
            "00000000000000000000000000000000-evil-isolate-port.sh",
            "11111111111111111111111111111111-isolate-port.sh",
            "11111111111111111111111111111111-drop-forwards.sh",
        ] {
            std::fs::write(store.path().join(evil), "#!/bin/sh\nreboot\n").unwrap();
        }
        store
    }

    const SCRIPT: &str = "r9zgkzc5zab416qddj283jlsvp18ydzr-isolate-port.sh";
    const HOOK: &str = "0ah4d8b3hqgyqk2k6i3hmr2jx0a5lgyx-drop-forwards.sh";

    fn rules_for<'a>(bridges: &'a [InterfaceName], store: &'a Path) -> Rules<'a> {
        Rules {
            name: "web",
            rootfs: "/var/lib/lxc/web/rootfs".into(),
            idmap: IdMap { host_id: 100000, count: 65536 },
            bridges: bridges.iter().collect(),
            store,
        }
    }

    /// What lib/lxc-config.nix writes, with the store at `store`.
    fn good(store: &Path) -> String {
        GOOD.replace("@SCRIPT@", &store.join(SCRIPT).display().to_string())
            .replace("@HOOK@", &store.join(HOOK).display().to_string())
            .replace("@MAC@", &mac_address("web", Port::Hostonly))
    }

    const GOOD: &str = "# nixcloud-container generation of 'web'. Generated; do not edit.
lxc.uts.name = web
lxc.rootfs.path = dir:/var/lib/lxc/web/rootfs
lxc.idmap = u 0 100000 65536
lxc.idmap = g 0 100000 65536
lxc.init.cmd = /init/profile/system/init
lxc.tty.max = 4
lxc.environment = container_ttys=pts/1 pts/2 pts/3 pts/4
lxc.start.auto = 0
lxc.hook.stop = @HOOK@
lxc.net.0.type = veth
lxc.net.0.name = hostonly
lxc.net.0.link = brNC-hostonly
lxc.net.0.flags = up
lxc.net.0.script.up = @SCRIPT@
lxc.net.0.veth.pair = nc9d9qbul6sh
lxc.net.0.hwaddr = @MAC@
lxc.net.0.ipv4.address = 10.101.0.2/16 10.101.255.255
lxc.net.0.ipv4.gateway = 10.101.0.1
";

    fn bridges() -> Vec<InterfaceName> {
        vec![InterfaceName::try_from("brNC-hostonly".to_string()).unwrap()]
    }

    #[test]
    fn what_lib_lxc_config_nix_writes_passes() {
        let store = store();
        check(&good(store.path()), &rules_for(&bridges(), store.path())).unwrap();
    }

    #[test]
    fn a_generation_without_forwarded_ports_has_no_stop_hook() {
        let store = store();
        let without: String = good(store.path())
            .lines()
            .filter(|l| !l.contains("lxc.hook.stop"))
            .map(|l| l.to_string() + "\n")
            .collect();
        check(&without, &rules_for(&bridges(), store.path())).unwrap();
    }

    #[test]
    fn a_veth_without_the_isolation_script_is_refused() {
        let store = store();
        let without: String = good(store.path())
            .lines()
            .filter(|l| !l.contains("script.up"))
            .map(|l| l.to_string() + "\n")
            .collect();
        let err = check(&without, &rules_for(&bridges(), store.path())).unwrap_err();
        assert!(err.to_string().contains("no script.up"), "{err}");
    }

    #[test]
    fn a_veth_the_port_guard_would_not_know_is_refused() {
        let store = store();
        for left_out in ["veth.pair", "hwaddr"] {
            let without: String = good(store.path())
                .lines()
                .filter(|l| !l.contains(left_out))
                .map(|l| l.to_string() + "\n")
                .collect();
            let err = check(&without, &rules_for(&bridges(), store.path())).unwrap_err();
            assert!(err.to_string().contains("no veth.pair or no hwaddr"), "{left_out}: {err}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        let bridges = bridges();
        let store = store();
        let rules = rules_for(&bridges, store.path());
        let evil = store.path().join("00000000000000000000000000000000-evil-isolate-port.sh");
        let evil_hook = format!("lxc.hook.stop = {}", evil.display());
        let evil = format!("lxc.net.0.script.up = {}", evil.display());
        let other_script = store.path().join("11111111111111111111111111111111-isolate-port.sh");
        let other_script = format!("lxc.net.0.script.up = {}", other_script.display());
        let other_hook = store.path().join("11111111111111111111111111111111-drop-forwards.sh");
        let other_hook = format!("lxc.hook.stop = {}", other_hook.display());
        let swapped = format!("lxc.hook.stop = {}", store.path().join(SCRIPT).display());
        for (added, message) in [
            ("lxc.hook.pre-start = /some/script.sh", "not a key"),
            ("lxc.include = /etc/shadow", "not a key"),
            ("lxc.hook.start-host=/x", "not a key"),
            ("  lxc.apparmor.profile = unconfined", "not a key"),
            ("lxc.cap.keep = sys_admin", "not a key"),
            ("lxc.mount.entry = /root root none ro,bind,create=dir 0 0", "not a key"),
            ("lxc.mount.entry = /nix/store nix/store none ro,bind 0 0", "not a key"),
            ("lxc.mount.auto = proc:rw", "not a key"),
            ("lxc.environment = LD_PRELOAD=/x", "lxc.environment must be"),
            ("lxc.tty.max = 1024", "lxc.tty.max must be"),
            ("lxc.net.0.link = br0", "not a bridge of this host"),
            ("lxc.net.0.script.up = /x", "not lib/isolate-port.sh"),
            (evil.as_str(), "not lib/isolate-port.sh"),
            ("lxc.hook.stop = /bin/sh -c reboot", "not lib/drop-forwards.sh"),
            (evil_hook.as_str(), "not lib/drop-forwards.sh"),
            (other_script.as_str(), "is not lib/isolate-port.sh"),
            (other_hook.as_str(), "is not lib/drop-forwards.sh"),
            (swapped.as_str(), "not lib/drop-forwards.sh"),
            ("lxc.hook.post-stop = /x", "not a key"),
            ("lxc.hook.stop.extra = /x", "not a key"),
            ("lxc.net.0.script.down = /x", "not a setting"),
            ("lxc.net.0.veth.pair = eth0", "must be nc9d9qbul6sh"),
            ("lxc.net.2.type = veth", "not a key"),
            ("lxc.net.0.type = phys", "not a setting"),
            ("lxc.init.cmd = /bin/sh", "must be"),
            ("lxc.rootfs.path = dir:/", "must be"),
            ("lxc.uts.name = other", "must be"),
            ("lxc.idmap = u 0 0 1", "lxc.idmap must map exactly"),
            ("lxc.start.auto = 1\r", "control character"),
            ("lxc.start.auto 1", "not `key = value`"),
        ] {
            let text = format!("{}{added}\n", good(store.path()));
            let err = format!("{:#}", check(&text, &rules).unwrap_err());
            assert!(err.contains(message), "{added:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }
}
