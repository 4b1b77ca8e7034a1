//! A test host: a private network namespace with the seed's two bridges
//! (scripts/netns, as the demo and the benchmarks make it), and the helper's
//! LXC path, profiles and state in a temporary directory. The helper, LXC and
//! Nix are the real ones. Every lxc-* call of a test runs in its namespace,
//! since LXC's command socket is per network namespace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const HELPER: &str = env!("CARGO_BIN_EXE_nixcloud-container");
pub const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

static NEXT_HOST: AtomicUsize = AtomicUsize::new(0);

pub struct Host {
    pub netns: String,
    pub dir: tempfile::TempDir,
}

/// What a finished command left: its exit code and output.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Fails the test with what it needs when the machine lacks it; the README's
/// test command sets all of it up.
fn check_prerequisites() {
    let is_root = rustix::process::geteuid().is_root();
    assert!(is_root, "the integration tests need root (LXC containers, network namespaces)");
    for tool in
        ["lxc-start", "lxc-attach", "nix-env", "nix-instantiate", "busybox", "ip", "newuidmap"]
    {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "{tool} is missing: run `tests/run --install` once as root");
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        assert!(
            text.lines().any(|l| l == "root:100000:65536000"),
            "{file} does not delegate 100000-65635999 to root (an id range per container): \
             run `tests/run --install` once as root"
        );
    }
}

impl Host {
    pub fn new() -> Host {
        check_prerequisites();
        let netns =
            format!("nct{}x{}", std::process::id(), NEXT_HOST.fetch_add(1, Ordering::SeqCst));
        let host = Host { netns, dir: tempfile::tempdir().expect("a temporary directory") };
        // Containers' root (uid 100000 and up) must reach their rootfs and profile
        // below it, whatever the umask made of it.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(host.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("the temporary directory is ours");
        sh(&format!("{REPO}/scripts/netns add {}", host.netns));
        host
    }

    pub fn add_bridge(&self, bridge: &str, address: &str) {
        self.ns_ok(&format!("ip link add {bridge} type bridge"));
        self.ns_ok(&format!("ip addr add {address} dev {bridge}"));
        self.ns_ok(&format!("ip link set {bridge} up"));
    }

    /// Lets containers join `bridge` (host.json's extraBridges), with the
    /// host's address on it; the bridge itself is not made.
    pub fn allow_bridge(&self, bridge: &str, address: &str, prefix_length: u8) {
        let file = self.dir.path().join("host.json");
        let mut host: serde_json::Value = std::fs::read_to_string(&file)
            .map(|text| serde_json::from_str(&text).expect("host.json is JSON"))
            .unwrap_or_else(|_| serde_json::json!({}));
        host["extraBridges"][bridge] =
            serde_json::json!({ "address": address, "prefixLength": prefix_length });
        std::fs::write(&file, host.to_string()).expect("host.json written");
    }

    pub fn lxc_path(&self) -> PathBuf {
        self.dir.path().join("lxc")
    }

    pub fn profiles_dir(&self) -> PathBuf {
        self.dir.path().join("profiles")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The variables that put the helper into this host's directories.
    pub fn helper_env(&self) -> [(&'static str, PathBuf); 4] {
        [
            ("NIXCLOUD_CONTAINER_LXC_PATH", self.lxc_path()),
            ("NIXCLOUD_CONTAINER_PROFILES_DIR", self.profiles_dir()),
            ("NIXCLOUD_CONTAINER_STATE_DIR", self.state_dir()),
            ("NIXCLOUD_CONTAINER_HOST_CONFIG", self.dir.path().join("host.json")),
        ]
    }

    /// The helper as a command in this host's namespace and directories.
    pub fn helper_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.netns, HELPER])
            .args(args)
            .envs(self.helper_env())
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        command
    }

    /// A shell command in this host's namespace with the helper on PATH as
    /// `nixcloud-container`, in this host's directories (as the NixOS
    /// module's services run it).
    pub fn ns_with_helper(&self, command: &str) -> Run {
        let helper_dir = Path::new(HELPER).parent().expect("the helper is in a directory");
        let path =
            format!("{}:{}", helper_dir.display(), std::env::var("PATH").unwrap_or_default());
        Command::new("ip")
            .args(["netns", "exec", &self.netns, "sh", "-c", command])
            .envs(self.helper_env())
            .env("PATH", path)
            .output()
            .expect("ip netns exec runs")
            .into()
    }

    /// Runs the helper in this host.
    pub fn helper(&self, args: &[&str]) -> Run {
        self.helper_command(args).output().expect("the helper runs").into()
    }

    /// Runs the helper with `input` on its stdin.
    pub fn helper_with_stdin(&self, args: &[&str], input: &str) -> Run {
        use std::io::Write;
        let mut child = self
            .helper_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the helper starts");
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().expect("the helper runs").into()
    }

    /// Nothing of any container is on disk: no state entry, no LXC
    /// directory, no profile, no lock.
    pub fn assert_nothing_created(&self) {
        if let Ok(state) = std::fs::read_to_string(self.state_dir().join("state.json")) {
            let state: serde_json::Value = serde_json::from_str(&state).unwrap();
            assert_eq!(state["containers"], serde_json::json!({}), "no container is recorded");
        }
        for dir in [self.lxc_path(), self.profiles_dir(), self.state_dir().join("locks")] {
            let entries: Vec<_> =
                std::fs::read_dir(&dir).map(|d| d.flatten().collect()).unwrap_or_default();
            assert!(entries.is_empty(), "{} holds {entries:?}", dir.display());
        }
    }

    /// The container's state as LXC sees it.
    pub fn state(&self, name: &str) -> String {
        self.ok(&["state", name]).trim().to_string()
    }

    /// Starts container `name`, a tiny system, and waits until it has
    /// booted (`wait_booted`); returns the version that booted.
    pub fn start_booted(&self, name: &str) -> String {
        self.forget_boot(name);
        self.ok(&["start", name]);
        self.wait_booted(&[name]).remove(0)
    }

    /// The tiny init's record that it booted (examples/tiny/system.nix:
    /// written last, once /bin and its boot state are there), as the host
    /// sees it in the container's rootfs.
    fn boot_record(&self, name: &str) -> PathBuf {
        self.lxc_path().join(name).join("rootfs/var/lib/tiny/booted")
    }

    /// Removes the record of an earlier boot (it stays in the rootfs), so
    /// that `wait_booted` waits for the next one.
    pub fn forget_boot(&self, name: &str) {
        let _ = std::fs::remove_file(self.boot_record(name));
    }

    /// Waits until the tiny system of each of the started containers
    /// `names` has booted; returns the versions that booted. The one way
    /// the tests wait for a boot, before they run anything inside a
    /// container: a command run earlier would race the guest's init.
    pub fn wait_booted(&self, names: &[&str]) -> Vec<String> {
        names
            .iter()
            .map(|name| {
                let mut booted = String::new();
                self.wait_for(&format!("{name} to boot"), || {
                    booted = std::fs::read_to_string(self.boot_record(name)).unwrap_or_default();
                    booted.ends_with('\n')
                });
                booted.trim().to_string()
            })
            .collect()
    }

    /// Whether the host side reaches `address` (busybox ping, one packet).
    pub fn pings(&self, address: &str) -> bool {
        self.ns(&format!("busybox ping -c 1 -W 2 {address}")).code == 0
    }

    /// Runs the helper and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let run = self.helper(args);
        assert_eq!(run.code, 0, "{args:?} failed: {run:?}");
        run.stdout
    }

    /// Runs the helper and expects failure with exit code `code` and a
    /// single error line; returns that line.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let run = self.helper(args);
        assert_eq!(run.code, code, "{args:?} should fail with {code}: {run:?}");
        let errors: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{args:?} should print one error line: {run:?}");
        assert!(!errors[0].trim_start_matches("error:").trim().is_empty(), "{run:?}");
        errors[0].to_string()
    }

    /// A shell command inside this host's namespace.
    pub fn ns(&self, command: &str) -> Run {
        Command::new("ip")
            .args(["netns", "exec", &self.netns, "sh", "-c", command])
            .output()
            .expect("ip netns exec runs")
            .into()
    }

    pub fn ns_ok(&self, command: &str) -> String {
        let run = self.ns(command);
        assert_eq!(run.code, 0, "{command} failed: {run:?}");
        run.stdout
    }

    /// Writes a container file into the host's directory; returns its path.
    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("container file written");
        path
    }

    /// A container file for the tiny system of examples/tiny, with `attrs`
    /// (Nix attribute definitions) added to the container attribute set.
    pub fn tiny(&self, file: &str, version: &str, attrs: &str) -> PathBuf {
        self.file(file, &tiny_file(version, attrs, ""))
    }

    pub fn lxc(&self, args: &str) -> Run {
        self.ns(&format!("{args} -P {}", self.lxc_path().display()))
    }

    /// Waits until `check` holds, for at most 20 s (a test host is slow at
    /// times); panics with `what` when it never does.
    pub fn wait_for(&self, what: &str, check: impl FnMut() -> bool) {
        self.wait_at_most(Duration::from_secs(20), what, check);
    }

    /// Waits until `check` holds, for at most `bound`, where the helper
    /// promises that bound; panics with `what` when it does not hold by then.
    pub fn wait_at_most(&self, bound: Duration, what: &str, check: impl FnMut() -> bool) {
        assert!(self.holds_within(bound, check), "timed out after {bound:?} waiting for {what}");
    }

    /// Whether `check` holds before `bound` has passed, asking it every 50 ms.
    pub fn holds_within(&self, bound: Duration, mut check: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        while !check() {
            if start.elapsed() >= bound {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// The processes of a running container as the host sees them: each
    /// one's name and real uid, found through the pid namespace of its init.
    pub fn processes(&self, name: &str) -> Vec<(String, u32)> {
        let mut processes = Vec::new();
        for pid in self.pids(name) {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                continue; // it ended meanwhile
            };
            let field = |key: &str| {
                let line = status.lines().find(|l| l.starts_with(key)).expect("a status field");
                line.split_whitespace().nth(1).expect("a value").to_string()
            };
            processes.push((field("Name:"), field("Uid:").parse().expect("a uid")));
        }
        processes
    }

    /// The host pids of the processes in container `name` (its init's pid
    /// namespace).
    pub fn pids(&self, name: &str) -> Vec<u32> {
        let init = self.lxc(&format!("lxc-info -n {name} -pH")).stdout.trim().to_string();
        let namespace = std::fs::read_link(format!("/proc/{init}/ns/pid")).expect("init runs");
        let in_namespace = |dir: &std::path::Path| {
            std::fs::read_link(dir.join("ns/pid")).ok().as_ref() == Some(&namespace)
        };
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|entry| in_namespace(&entry.path()))
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// The host's mounts (of the tests' mount namespace) below this host's
    /// directory: the containers' mounts must not be there.
    pub fn mounts_in_host_table(&self) -> Vec<String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.dir.path().to_string_lossy().into_owned();
        mountinfo
            .lines()
            .filter(|line| line.split(' ').nth(4).is_some_and(|point| point.starts_with(&dir)))
            .map(str::to_string)
            .collect()
    }

    /// The generation number `profile` links to.
    pub fn current_generation(&self, name: &str) -> String {
        let target = std::fs::read_link(self.profiles_dir().join(name).join("profile")).unwrap();
        target
            .to_string_lossy()
            .trim_start_matches("profile-")
            .trim_end_matches("-link")
            .to_string()
    }
}

/// A container file (written as `<name>.nix`) whose system is a derivation
/// named `name` that busybox (`${bb}` in it) builds with the shell `script`,
/// which must make $out; the helper's own tests of builds.
pub fn built_by_script(host: &Host, name: &str, script: &str) -> PathBuf {
    host.file(
        &format!("{name}.nix"),
        &format!(
            "let bb = import <nixcloud-container/lib/host-busybox.nix>; in {{\n\
             \x20 system = derivation {{\n\
             \x20   name = \"{name}\";\n\
             \x20   system = builtins.currentSystem;\n\
             \x20   builder = bb;\n\
             \x20   args = [ \"sh\" \"-c\" ''\n{script}\n  '' ];\n\
             \x20 }};\n\
             }}\n"
        ),
    )
}

/// The text of a container file for the tiny system.
pub fn tiny_file(version: &str, attrs: &str, system_args: &str) -> String {
    format!(
        "{{\n  {attrs}\n  system = import <nixcloud-container/examples/tiny/system.nix> {{ version = \"{version}\"; {system_args} }};\n}}\n"
    )
}

impl Drop for Host {
    fn drop(&mut self) {
        // Kill what still runs, then the namespace with its bridges and veths.
        if let Ok(entries) = std::fs::read_dir(self.lxc_path()) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                self.lxc(&format!("lxc-stop -k -n {name} 2>/dev/null"));
            }
        }
        let _ = Command::new(format!("{REPO}/scripts/netns")).args(["del", &self.netns]).status();
    }
}

/// Runs the shell command `command` as host uid and gid `id` with no other
/// group (`setpriv`): what a host user of that id could do.
pub fn as_host_user(id: u32, command: &str) -> Run {
    Command::new("setpriv")
        .args([&format!("--reuid={id}"), &format!("--regid={id}"), "--clear-groups", "sh", "-c"])
        .arg(command)
        .output()
        .expect("setpriv runs")
        .into()
}

/// The uid and gid of an unprivileged host user, nobody.
pub const NOBODY: u32 = 65534;

fn sh(command: &str) {
    let status = Command::new("sh").args(["-c", command]).status().expect("sh runs");
    assert!(status.success(), "{command} failed");
}

/// A TCP listener in a running container (busybox `nc -l`), which keeps
/// what its one connection sends in /tmp/received-<port>.
///
/// Its input is a FIFO it holds open at both ends, so it never reads an end
/// of input. busybox nc (networking/nc.c of 1.35, Debian's busybox-static
/// here) shuts down its sending side when its input ends, and a busybox nc
/// client that sees that end of the connection before its own input is
/// ready exits 0 without sending anything (its poll loop reads the socket's
/// end of file first). A listener started in the background of `sh -c` has
/// /dev/null for input: on a loaded host the client's `echo` came after the
/// listener's end, and what the test sent was lost though the client
/// succeeded.
pub struct Listener<'h> {
    host: &'h Host,
    container: String,
    port: u16,
}

impl Host {
    /// Starts a [`Listener`] on `port` in container `container`, ending one
    /// this started there before on that port; returns once it listens.
    pub fn listen_in(&self, container: &str, port: u16) -> Listener<'_> {
        let listening = listens_on(port);
        let script = format!(
            "cd /tmp\n\
             old=$(cat listener-{port}.pid 2>/dev/null)\n\
             [ -n \"$old\" ] && [ \"$(cat /proc/$old/comm 2>/dev/null)\" = nc ] && kill $old\n\
             for i in $(seq 1000); do {listening} || break; sleep 0.02; done\n\
             {listening} && {{ echo 'port {port} is taken' >&2; exit 1; }}\n\
             rm -f received-{port} input-{port} && mkfifo input-{port} || exit 1\n\
             nc -l -p {port} <>input-{port} >received-{port} 2>&1 &\n\
             echo $! >listener-{port}.pid\n\
             for i in $(seq 1000); do {listening} && exit 0; sleep 0.02; done\n\
             echo 'nothing listens on port {port}' >&2; exit 1"
        );
        self.ok(&["run", container, "sh", "-c", &script]);
        Listener { host: self, container: container.to_string(), port }
    }
}

impl Listener<'_> {
    /// What has arrived so far, without surrounding white space.
    pub fn arrived(&self) -> String {
        let file = format!("/tmp/received-{}", self.port);
        self.host.ok(&["run", &self.container, "cat", &file]).trim().to_string()
    }

    /// What has arrived once `expected` did, or after 20 s (a client that
    /// finished has sent it, but the listener may write it later on a busy
    /// host); the caller compares.
    pub fn received(&self, expected: &str) -> String {
        let mut got = String::new();
        self.host.holds_within(Duration::from_secs(20), || {
            got = self.arrived();
            got == expected
        });
        got
    }

    /// Whether it still listens and nothing has arrived.
    pub fn untouched(&self) -> bool {
        let port = self.port;
        let check = format!("[ ! -s /tmp/received-{port} ] && {}", listens_on(port));
        self.host.helper(&["run", &self.container, "sh", "-c", &check]).code == 0
    }
}

/// A shell command, for a container, that succeeds when something there
/// listens on TCP `port` (busybox nc listens on IPv6's any address where it
/// can, which /proc/net/tcp6 shows; the port is in hex, 0A is LISTEN).
pub fn listens_on(port: u16) -> String {
    format!("grep -qE ':{port:04X} [0-9A-F]+:0000 0A' /proc/net/tcp /proc/net/tcp6")
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}
