//! The network of evaluations and builds of container files
//! (build_network.rs): a fixed-output build or Nix's own fetchers reach
//! neither the host (its loopback, its addresses, its bridges) nor other
//! containers nor private networks; the public internet only where the host
//! allows builds it, while Nix itself substitutes from binary caches.
//!
//! The "internet" is a network namespace of the test's own (`World`), behind
//! the test host's uplink: 198.51.100.0/24 is TEST-NET-2, documentation
//! space (RFC 5737) and not a private network, so it counts as public here;
//! the host's uplink address is 203.0.113.2 (TEST-NET-3), one of the
//! host's own addresses.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::{path_str, Host};

/// The public server of the tests.
const PUBLIC: &str = "198.51.100.1";
/// The host's address on its uplink, and the world's.
const UPLINK: &str = "203.0.113.2";
const WORLD_ROUTER: &str = "203.0.113.1";

/// Another network namespace, reached through the test host's uplink
/// (`up0`), where the "internet" lives.
struct World {
    netns: String,
}

impl World {
    fn new(host: &Host) -> World {
        let world = World { netns: format!("{}w", host.netns) };
        let w = &world.netns;
        sh(&format!("ip netns add {w} && ip -n {w} link set lo up"));
        host.ns_ok(&format!(
            "ip link add up0 type veth peer name wan0 netns {w} && \
             ip addr add {UPLINK}/24 dev up0 && ip link set up0 up && \
             ip route add default via {WORLD_ROUTER} && \
             sysctl -qw net.ipv4.conf.up0.forwarding=1"
        ));
        sh(&format!(
            "ip -n {w} addr add {WORLD_ROUTER}/24 dev wan0 && ip -n {w} link set wan0 up && \
             ip -n {w} addr add {PUBLIC}/32 dev lo"
        ));
        world
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
    }
}

/// TCP listeners in a namespace, each recording who connected.
struct Listeners {
    child: Child,
    log: PathBuf,
}

/// Listens on each address:port given after the log file, writes
/// "listening" to the log once all are bound, then a line per connection.
const LISTENER: &str = r#"
import socket, sys, threading
log = open(sys.argv[1], "a", buffering=1)
def serve(server, spec):
    while True:
        connection, peer = server.accept()
        log.write(f"{spec} reached from {peer[0]}\n")
        connection.close()
servers = []
for spec in sys.argv[2:]:
    address, port = spec.rsplit(":", 1)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, int(port)))
    server.listen(16)
    servers.append((server, spec))
for server, spec in servers:
    threading.Thread(target=serve, args=(server, spec), daemon=True).start()
log.write("listening\n")
threading.Event().wait()
"#;

impl Listeners {
    fn start(host: &Host, netns: &str, name: &str, targets: &[String]) -> Listeners {
        let log = host.dir.path().join(format!("{name}.log"));
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "python3", "-c", LISTENER])
            .arg(&log)
            .args(targets)
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let listeners = Listeners { child, log };
        host.wait_for(&format!("the listeners {name}"), || listeners.log().contains("listening"));
        listeners
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The lines of connections, one per connection.
    fn reached(&self) -> Vec<String> {
        self.log().lines().filter(|line| line.contains(" reached ")).map(str::to_string).collect()
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets `key` of the test host's host file to `value`, keeping the rest.
fn set_host_option(host: &Host, key: &str, value: serde_json::Value) {
    let file = host.dir.path().join("host.json");
    let mut settings: serde_json::Value = std::fs::read_to_string(&file)
        .map(|text| serde_json::from_str(&text).expect("host.json is JSON"))
        .unwrap_or_else(|_| serde_json::json!({}));
    settings[key] = value;
    std::fs::write(&file, settings.to_string()).expect("host.json written");
}

/// Something no earlier run of a test built: a fixed-output derivation
/// whose output is this is built again.
fn nonce(host: &Host) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("{}-{}", host.netns, now.as_nanos())
}

/// A container file (`<name>.nix`) for the tiny system, with a fixed-output
/// derivation among its paths whose builder runs `script` (busybox as
/// `$bb`) and must then print `output` to `$out`.
fn with_fixed_output(host: &Host, name: &str, script: &str, output: &str) -> PathBuf {
    host.file(
        &format!("{name}.nix"),
        &format!(
            "let\n\
             \x20 bb = import <nixcloud-container/lib/host-busybox.nix>;\n\
             \x20 fetched = derivation {{\n\
             \x20   name = \"fetched\";\n\
             \x20   system = builtins.currentSystem;\n\
             \x20   builder = bb;\n\
             \x20   args = [ \"sh\" \"-c\" ''\n\
             \x20     bb=${{bb}}\n{script}\n\
             \x20     printf %s '{output}' > $out\n\
             \x20   '' ];\n\
             \x20   outputHashMode = \"flat\";\n\
             \x20   outputHashAlgo = \"sha256\";\n\
             \x20   outputHash = builtins.hashString \"sha256\" \"{output}\";\n\
             \x20 }};\n\
             in {{\n\
             \x20 system = import <nixcloud-container/examples/tiny/system.nix> {{\n\
             \x20   version = \"{name}\"; extraPaths = [ fetched ];\n\
             \x20 }};\n\
             }}\n"
        ),
    )
}

/// The links the helper made on the host's side (none once it exited).
fn build_links(host: &Host) -> Vec<String> {
    let links = host.ns_ok("ip -o link show");
    links
        .lines()
        .filter_map(|line| line.split(':').nth(1))
        .map(|name| name.trim().split('@').next().unwrap_or("").to_string())
        .filter(|name| name.starts_with("nxcb"))
        .collect()
}

#[test]
fn fixed_output_builds_reach_the_internet_and_not_the_host_its_bridges_or_containers() {
    let host = Host::new();
    let _world = World::new(&host);
    set_host_option(&host, "builds", serde_json::json!({ "allowInternet": true }));
    // A container that listens on its hostonly address.
    host.ok(&["create", "other", path_str(&host.tiny("other.nix", "1", ""))]);
    host.start_booted("other");
    let listener = host.listen_in("other", 7000);
    let other = host.ok(&["show-ip", "other"]).trim().to_string();
    // The host's loopback, its bridge, its own uplink address; the internet.
    let on_host = Listeners::start(
        &host,
        &host.netns,
        "host",
        &["127.0.0.1:7001".to_string(), "10.101.0.1:7002".to_string(), format!("{UPLINK}:7003")],
    );
    let internet = Listeners::start(
        &host,
        &format!("{}w", host.netns),
        "internet",
        &[format!("{PUBLIC}:7004")],
    );
    let targets = format!(
        "127.0.0.1:7001 10.101.0.1:7002 {UPLINK}:7003 {other}:7000 {PUBLIC}:7004 localhost:7001"
    );
    let script = format!(
        "for target in {targets}; do\n\
         \x20 if echo probe | $bb nc -w 3 ''${{target%:*}} ''${{target#*:}}; then echo \"reached $target\"; \
         else echo \"did not reach $target\"; fi\n\
         done"
    );
    let file = with_fixed_output(&host, "probe", &script, &nonce(&host));
    let run = host.helper(&["-v", "create", "probe", path_str(&file)]);
    assert_eq!(run.code, 0, "{run:?}");
    // The build ran and got out: the internet was reached.
    assert_eq!(internet.reached().len(), 1, "the public listener: {}", internet.log());
    assert!(run.stderr.contains(&format!("reached {PUBLIC}:7004")), "{}", run.stderr);
    // Nothing of the host, nor the other container; not even the build
    // namespace's own loopback, where builds running at the same time meet.
    assert_eq!(on_host.reached(), Vec::<String>::new(), "the build log: {}", run.stderr);
    assert!(run.stderr.contains("(127.0.0.1): Permission denied"), "{}", run.stderr);
    assert!(listener.untouched(), "{}", run.stderr);
    // The listener in the container works: the host reaches it.
    host.ns_ok(&format!("echo hello | busybox nc -w 3 {other} 7000"));
    assert_eq!(listener.received("hello"), "hello");
    // The helper left no link behind: its build namespace went with its
    // mount namespace (`ip netns exec`), and the veth with it.
    host.wait_for("the build link to go", || build_links(&host).is_empty());
}

#[test]
fn without_builds_allow_internet_a_download_fails_naming_it_and_nothing_is_created() {
    let host = Host::new();
    let world = World::new(&host);
    let content = nonce(&host);
    let served = host.dir.path().join("served");
    std::fs::create_dir(&served).unwrap();
    std::fs::write(served.join("source"), &content).unwrap();
    let _server = HttpServer::start(&host, &world, &served, 8000);
    let script = format!("$bb wget -q -O - http://{PUBLIC}:8000/source > /dev/null || exit 1");
    let file = with_fixed_output(&host, "fetch", &script, &content);
    let error = host.fails(&["create", "fetch", path_str(&file)], 1);
    assert!(
        error.contains("fixed-output derivation") && error.contains("builds.allowInternet"),
        "{error}"
    );
    eprintln!("{error}");
    host.assert_nothing_created();
    // Where the host allows it, the same download works.
    set_host_option(&host, "builds", serde_json::json!({ "allowInternet": true }));
    host.ok(&["create", "fetch", path_str(&file)]);
}

/// A static HTTP server in the world: a binary cache or a download.
struct HttpServer {
    child: Child,
    log: PathBuf,
}

impl HttpServer {
    fn start(host: &Host, world: &World, directory: &Path, port: u16) -> HttpServer {
        let log = host.dir.path().join(format!("http-{port}.log"));
        let output = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &world.netns, "python3", "-u", "-m", "http.server"])
            .args(["--bind", PUBLIC, "--directory"])
            .arg(directory)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("python3 runs");
        let server = HttpServer { child, log };
        host.wait_for("the HTTP server", || {
            std::fs::read_to_string(&server.log).is_ok_and(|log| log.contains("Serving HTTP"))
        });
        server
    }

    /// The paths asked for, in order.
    fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter_map(|line| line.split("\"GET ").nth(1))
            .filter_map(|request| request.split(' ').next())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn nix_substitutes_from_a_binary_cache_while_builds_have_no_network() {
    let host = Host::new();
    let world = World::new(&host);
    // A system built once, put into a binary cache and removed from the store.
    let file = host.tiny("cached.nix", &nonce(&host), "");
    host.ok(&["create", "first", path_str(&file)]);
    let generations = host.ok(&["list-generations", "first", "--json"]);
    let generations: serde_json::Value = serde_json::from_str(&generations).unwrap();
    let system = PathBuf::from(generations[0]["system"].as_str().expect("a system"));
    let generation = std::fs::read_link(host.profiles_dir().join("first/profile-1-link")).unwrap();
    let generation = generation.display();
    let cache = host.dir.path().join("cache");
    sh(&format!(
        "nix --extra-experimental-features nix-command copy --to file://{} {}",
        cache.display(),
        system.display()
    ));
    host.ok(&["destroy", "first"]);
    sh(&format!("nix-store --delete {generation} {} >/dev/null 2>&1", system.display()));
    assert!(!system.exists(), "{} is gone from the store", system.display());
    let server = HttpServer::start(&host, &world, &cache, 8001);
    let substituters =
        format!("--option substituters http://{PUBLIC}:8001 --option require-sigs false");
    host.ok(&["create", "second", path_str(&file), "-n", &substituters]);
    assert!(system.exists(), "{} came back", system.display());
    let hash = system.file_name().unwrap().to_string_lossy()[..32].to_string();
    let requests = server.requests();
    assert!(requests.contains(&format!("/{hash}.narinfo")), "{requests:?}");
    assert!(requests.iter().any(|path| path.starts_with("/nar/")), "{requests:?}");
}

#[test]
fn nix_itself_fetches_nothing_from_the_host_for_a_flake() {
    let host = Host::new();
    // A GitLab instance on the host's bridge address, as a flake input
    // names it: Nix downloads https://<host>/api/v4/... itself.
    let listeners = Listeners::start(&host, &host.netns, "host", &["10.101.0.1:443".to_string()]);
    let flake = host.dir.path().join("flake");
    std::fs::create_dir(&flake).unwrap();
    std::fs::write(
        flake.join("flake.nix"),
        "{ inputs.data = { url = \"gitlab:owner/repo?host=10.101.0.1\"; flake = false; };\n\
         \x20 outputs = { self, data }: { nixcloudContainers.web = {\n\
         \x20   system = import <nixcloud-container/examples/tiny/system.nix> { version = data.outPath; };\n\
         \x20 }; }; }\n",
    )
    .unwrap();
    // Locked, as a tenant would hand it in: Nix fetches it to compare its hash.
    let original = serde_json::json!({
        "type": "gitlab", "owner": "owner", "repo": "repo", "host": "10.101.0.1"
    });
    let mut locked = original.clone();
    locked["rev"] = "0123456789abcdef0123456789abcdef01234567".into();
    locked["narHash"] = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
    let lock = serde_json::json!({
        "nodes": {
            "data": { "flake": false, "locked": locked, "original": original },
            "root": { "inputs": { "data": "data" } }
        },
        "root": "root",
        "version": 7
    });
    std::fs::write(flake.join("flake.lock"), lock.to_string()).unwrap();
    let run = host.helper(&[
        "create",
        "web",
        "--flake",
        path_str(&flake),
        "-n",
        "--option download-attempts 1",
    ]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("unable to download"), "{run:?}");
    assert_eq!(listeners.reached(), Vec::<String>::new(), "{run:?}");
}

#[test]
fn the_build_network_is_kept_between_commands_and_made_again_when_the_host_changes() {
    let host = Host::new();
    let file = host.tiny("kept.nix", "1", "");
    let record = host.state_dir().join("build-network/record");
    // One shell, one mount namespace, as on a host: the commands share it.
    let script = format!(
        "nixcloud-container create a {file} && cat {record} && echo && \
         nixcloud-container create b {file} && cat {record} && echo && \
         ip -o link | grep -c nxcb && \
         echo '{{\"builds\": {{\"allowInternet\": true}}}}' > {host_file} && \
         nixcloud-container create c {file} && cat {record}",
        file = file.display(),
        record = record.display(),
        host_file = host.dir.path().join("host.json").display()
    );
    let run = host.ns_with_helper(&script);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().filter(|line| !line.starts_with("created")).collect();
    let records: Vec<serde_json::Value> = [lines[0], lines[1], lines[3]]
        .iter()
        .map(|line| serde_json::from_str(line).expect("a record"))
        .collect();
    assert_eq!(records[0], records[1], "b used a's build namespace: {run:?}");
    assert_eq!(lines[2], "1", "one build link for both: {run:?}");
    assert_ne!(records[2]["plan"], records[1]["plan"], "{run:?}");
    assert_ne!(records[2]["link"], records[1]["link"], "a new namespace for the new setting");
    // The kept namespace lived in the shell's mount namespace, and went with it.
    host.wait_for("the build links to go", || build_links(&host).is_empty());
}

/// A name server answering every A query with `PUBLIC` (and nothing else).
const NAME_SERVER: &str = r#"
import socket, struct, sys
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind((sys.argv[1], 53))
answer = socket.inet_aton(sys.argv[2])
log = open(sys.argv[3], "a", buffering=1)
log.write("listening\n")
while True:
    query, peer = server.recvfrom(512)
    end = 12
    while query[end] != 0:
        end += query[end] + 1
    qtype = struct.unpack("!H", query[end + 1:end + 3])[0]
    question = query[12:end + 5]
    records = struct.pack("!HHHLH", 0xC00C, 1, 1, 60, 4) + answer if qtype == 1 else b""
    header = query[:2] + struct.pack("!HHHHH", 0x8180, 1, 1 if records else 0, 0, 0)
    server.sendto(header + question + records, peer)
    log.write(f"asked {qtype} from {peer[0]}\n")
"#;

#[test]
fn builds_resolve_names_where_the_hosts_resolver_is_on_its_loopback() {
    let host = Host::new();
    let world = World::new(&host);
    set_host_option(&host, "builds", serde_json::json!({ "allowInternet": true }));
    // The world's name server, which the host's systemd-resolved would use.
    let dns_log = host.dir.path().join("dns.log");
    sh(&format!("ip -n {} addr add 198.51.100.53/32 dev lo", world.netns));
    let mut name_server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &world.netns,
            "python3",
            "-c",
            NAME_SERVER,
            "198.51.100.53",
            PUBLIC,
        ])
        .arg(&dns_log)
        .stdin(Stdio::null())
        .spawn()
        .expect("python3 runs");
    host.wait_for("the name server", || {
        std::fs::read_to_string(&dns_log).is_ok_and(|log| log.contains("listening"))
    });
    let content = nonce(&host);
    let served = host.dir.path().join("served");
    std::fs::create_dir(&served).unwrap();
    std::fs::write(served.join("source"), &content).unwrap();
    let _server = HttpServer::start(&host, &world, &served, 8002);
    let script = "$bb wget -q -O - http://downloads.example:8002/source > /dev/null || exit 1";
    let file = with_fixed_output(&host, "named", script, &content);
    // As on Ubuntu: /etc/resolv.conf names systemd-resolved's stub on the
    // loopback, /run/systemd/resolve/resolv.conf the servers it asks; both
    // only for the helper (a mount namespace of its own).
    let stub = host.file("stub-resolv.conf", "nameserver 127.0.0.53\noptions edns0\n");
    let upstreams = host.file("upstream-resolv.conf", "nameserver 198.51.100.53\n");
    let command = format!(
        "mount --bind {} /etc/resolv.conf && mount -t tmpfs tmpfs /run/systemd && \
         mkdir /run/systemd/resolve && cp {} /run/systemd/resolve/resolv.conf && \
         exec ip netns exec {} {} create named {}",
        stub.display(),
        upstreams.display(),
        host.netns,
        crate::common::HELPER,
        file.display()
    );
    let run: crate::common::Run = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &command])
        .envs(host.helper_env())
        .current_dir(host.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("unshare runs")
        .into();
    let _ = name_server.kill();
    let _ = name_server.wait();
    assert_eq!(run.code, 0, "{run:?}");
    let asked = std::fs::read_to_string(&dns_log).unwrap();
    assert!(asked.contains("asked 1 from"), "{asked}");
}

#[test]
fn builds_run_in_the_helper_even_where_root_has_nix_remote_daemon() {
    let host = Host::new();
    // A nix-daemon of this test's own (Debian's), in the host's network.
    let socket = host.dir.path().join("daemon-socket");
    let mut daemon = Command::new("ip")
        .args(["netns", "exec", &host.netns, "nix-daemon"])
        .env("NIX_DAEMON_SOCKET_PATH", &socket)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Debian's nix-daemon starts");
    host.wait_for("the nix-daemon's socket", || socket.exists());
    let listeners = Listeners::start(&host, &host.netns, "host", &["127.0.0.1:7006".to_string()]);
    let script = "echo probe | $bb nc -w 3 127.0.0.1 7006 && echo reached || echo did not reach";
    let file = with_fixed_output(&host, "probe", script, &nonce(&host));
    let run: crate::common::Run = host
        .helper_command(&["create", "probe", path_str(&file)])
        .env("NIX_REMOTE", "daemon")
        .env("NIX_DAEMON_SOCKET_PATH", &socket)
        .output()
        .unwrap()
        .into();
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(listeners.reached(), Vec::<String>::new(), "{run:?}");
}

fn sh(command: &str) {
    let status = Command::new("sh").args(["-c", command]).status().expect("sh runs");
    assert!(status.success(), "{command} failed");
}
