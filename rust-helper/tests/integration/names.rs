//! Names: the host reaches a container as `<name>.<suffix>`, kept in step
//! with create, destroy and address changes (the helper's block of the
//! host's hosts file), and a container reaches its peers by name through
//! a DNS server that reads the helper's hosts directory (dnsmasq, as the
//! NixOS module runs it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::common::{path_str, Host};

/// A host whose helper keeps its block of names in the namespace's own
/// hosts file, /etc/netns/<namespace>/hosts, which `ip netns exec` mounts
/// over /etc/hosts for whatever runs in the namespace (ip-netns(8)): the
/// host's resolver there (getent) reads it as a host's /etc/hosts.
struct NamedHost {
    host: Host,
    hosts: PathBuf,
}

impl NamedHost {
    fn new(names: serde_json::Value) -> NamedHost {
        let host = Host::new();
        let dir = PathBuf::from("/etc/netns").join(&host.netns);
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, "127.0.0.1 localhost\n10.9.9.9 keep.example\n").unwrap();
        let mut names = names;
        names["hostsFile"] = serde_json::json!(path_str(&hosts));
        let json = serde_json::json!({ "names": names });
        std::fs::write(host.dir.path().join("host.json"), json.to_string()).unwrap();
        NamedHost { host, hosts }
    }

    /// The address the host's resolver gives `name`, if any.
    fn resolves(&self, name: &str) -> Option<String> {
        let run = self.host.ns(&format!("getent hosts {name}"));
        run.stdout.split_whitespace().next().map(str::to_string)
    }
}

impl Drop for NamedHost {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.hosts.parent().unwrap());
    }
}

#[test]
fn the_host_reaches_containers_by_name_from_create_to_destroy() {
    let named = NamedHost::new(serde_json::json!({}));
    let host = &named.host;
    host.ok(&["create", "web", path_str(&host.tiny("web.nix", "1", ""))]);
    host.ok(&["create", "DB", path_str(&host.tiny("db.nix", "1", ""))]);
    assert_eq!(named.resolves("web.containers").as_deref(), Some("10.101.0.2"));
    // Names are host names, the same in any case.
    assert_eq!(named.resolves("db.containers").as_deref(), Some("10.101.0.3"));
    assert_eq!(named.resolves("keep.example").as_deref(), Some("10.9.9.9"));

    // An address change (a fixed address in its file) moves the name.
    host.ok(&[
        "update",
        "web",
        path_str(&host.tiny("web2.nix", "2", "network.ip = \"10.101.0.50\";")),
    ]);
    assert_eq!(named.resolves("web.containers").as_deref(), Some("10.101.0.50"));
    // A rollback moves it back with the generation.
    host.ok(&["rollback", "web"]);
    assert_eq!(named.resolves("web.containers").as_deref(), Some("10.101.0.2"));

    host.ok(&["destroy", "web", "--force"]);
    assert_eq!(named.resolves("web.containers"), None);
    assert_eq!(named.resolves("db.containers").as_deref(), Some("10.101.0.3"));

    // The host's own lines stay as they were; the block goes with the last
    // container, and a repair writes what the state says.
    host.ok(&["destroy", "DB", "--force"]);
    let text = std::fs::read_to_string(&named.hosts).unwrap();
    assert_eq!(text, "127.0.0.1 localhost\n10.9.9.9 keep.example\n");
    host.ok(&["create", "web", path_str(&host.tiny("web3.nix", "1", ""))]);
    std::fs::write(&named.hosts, "127.0.0.1 localhost\n").unwrap();
    assert_eq!(named.resolves("web.containers"), None);
    host.ok(&["repair-names"]);
    assert_eq!(named.resolves("web.containers").as_deref(), Some("10.101.0.2"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&named.hosts).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o644, "the hosts file stays readable by all");
}

#[test]
fn the_suffix_is_the_hosts_and_only_a_host_name_label() {
    let named = NamedHost::new(serde_json::json!({ "suffix": "lan" }));
    let host = &named.host;
    host.ok(&["create", "web", path_str(&host.tiny("web.nix", "1", ""))]);
    assert_eq!(named.resolves("web.lan").as_deref(), Some("10.101.0.2"));
    assert_eq!(named.resolves("web.containers"), None);

    // What a suffix could smuggle into the hosts file is refused, with one
    // line, before anything is made.
    for suffix in ["a.b", "lan\n10.6.6.6 bank.example", "Lan", "-lan", "", "lan "] {
        let json = serde_json::json!({ "names": { "suffix": suffix, "hostsFile": path_str(&named.hosts) } });
        std::fs::write(host.dir.path().join("host.json"), json.to_string()).unwrap();
        let err = host.fails(&["create", "other", path_str(&host.tiny("o.nix", "1", ""))], 1);
        assert!(
            err.contains("names.suffix") || err.contains("one label of a host name"),
            "{suffix:?}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert_eq!(host.helper(&["exists", "other"]).code, 1);
    }
    assert!(!std::fs::read_to_string(&named.hosts).unwrap().contains("bank"));
}

#[test]
fn a_hosts_file_that_is_a_link_is_never_written_and_the_create_is_undone() {
    let named = NamedHost::new(serde_json::json!({}));
    let host = &named.host;
    let target = host.file("elsewhere", "127.0.0.1 localhost\n");
    std::fs::remove_file(&named.hosts).unwrap();
    std::os::unix::fs::symlink(&target, &named.hosts).unwrap();
    let err = host.fails(&["create", "web", path_str(&host.tiny("web.nix", "1", ""))], 1);
    assert!(err.contains("is not a regular file"), "{err}");
    host.assert_nothing_created();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "127.0.0.1 localhost\n");
}

/// dnsmasq in the host's namespace, answering on the hostonly bridge from
/// the helper's hosts directory as the NixOS module configures it
/// (modules/host/network.nix: hostsdir), and nothing else.
struct Dnsmasq(Child);

impl Dnsmasq {
    fn start(host: &Host) -> Dnsmasq {
        let hosts_dir = host.state_dir().join("hosts");
        let child = Command::new("ip")
            .args(["netns", "exec", &host.netns, "dnsmasq", "--keep-in-foreground"])
            .args(["--no-resolv", "--no-hosts", "--user=root", "--bind-interfaces"])
            .args(["--listen-address=10.101.0.1", "--pid-file=", "--log-facility=-"])
            .arg(format!("--hostsdir={}", hosts_dir.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq runs (scripts/setup-debian installs dnsmasq-base)");
        Dnsmasq(child)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What `name` resolves to for container `from`, asking the host's DNS
/// server on the hostonly bridge.
fn resolved_in(host: &Host, from: &str, name: &str) -> Option<String> {
    let run = host.helper(&["run", from, "nslookup", name, "10.101.0.1"]);
    // busybox's nslookup: the answer's "Address: <ip>" after "Name: <name>".
    let answer = run.stdout.split(&format!("Name:\t{name}")).nth(1)?;
    answer.lines().find_map(|line| line.strip_prefix("Address: ")).map(|a| a.trim().to_string())
}

#[test]
fn a_container_reaches_its_peer_by_name() {
    let host = Host::new();
    let with_peers =
        |file: &str, peers: &str| host.tiny(file, "1", &format!("network.peers = [ {peers} ];"));
    host.ok(&["create", "web", path_str(&with_peers("web.nix", "\"db\""))]);
    host.ok(&["create", "db", path_str(&with_peers("db.nix", "\"web\""))]);
    let _dnsmasq = Dnsmasq::start(&host);
    host.start_booted("web");
    host.start_booted("db");
    host.wait_for("the peer's name to resolve", || {
        resolved_in(&host, "web", "db.containers").is_some()
    });
    assert_eq!(resolved_in(&host, "web", "db.containers").as_deref(), Some("10.101.0.3"));
    assert_eq!(resolved_in(&host, "db", "web.containers").as_deref(), Some("10.101.0.2"));
    // And reaches it at what its name resolved to.
    let db = resolved_in(&host, "web", "db.containers").unwrap();
    host.ok(&["run", "web", "ping", "-c", "1", "-W", "2", &db]);

    // A destroyed peer's name goes from the DNS server too (dnsmasq follows
    // the directory's removed files).
    host.ok(&["destroy", "db", "--force"]);
    host.wait_for("the destroyed peer's name to go", || {
        resolved_in(&host, "web", "db.containers").is_none()
    });
}
