//! Which containers of the LXC path are not stopped, and which of those are
//! frozen, without lxc-ls: `lxc-ls --active` asks every running container's
//! monitor through its command socket, a connection and a reply each, and
//! `--frozen` does it again (docs/performance.md has the figures).
//!
//! LXC's own rule for "active" is cheap: a container is active while its
//! monitor listens on its command socket. lxc-ls finds those sockets in
//! /proc/net/unix (list_active_containers in LXC's lxccontainer.c), which
//! lists the abstract unix sockets of the reader's network namespace, the
//! one LXC's commands reach. The socket is named, as
//! lxc_make_abstract_socket_name (LXC's commands_utils.c) makes it,
//! `@<lxc path>/<name>/command`, or, where that does not fit into a
//! sockaddr_un (108 bytes, less the leading and the trailing NUL),
//! `@lxc/<FNV-1a 64 of "<lxc path>/<name>", 16 hex digits>/command`.
//!
//! Frozen is the freezer's word (lxc-freeze writes it into the container's
//! cgroup; LXC's state asks the same cgroup before the monitor): read from
//! the cgroup of the container's init, found through the monitor's pidfile
//! that `Lxc::start` asks for. Where that is not at hand (a container
//! started by hand with lxc-start, or one just starting), lxc-info says it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::Lxc;

/// A container that is not stopped, as `list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Active {
    /// FROZEN, or RUNNING (which includes starting and stopping, as
    /// `lxc-ls --active` does).
    pub state: &'static str,
    /// The host pid of its init, where known.
    pub init: Option<u32>,
}

/// The longest abstract socket name LXC uses unhashed: sun_path's 108
/// bytes less a leading and a trailing NUL.
const SOCKET_NAME_ROOM: usize = 108 - 2;

impl Lxc<'_> {
    /// Of the containers `names`, those that are not stopped, with their
    /// state and init: from their command sockets and their cgroups, without
    /// running a process for each (see the module's comment).
    pub fn active_states<'n>(
        &self,
        names: impl IntoIterator<Item = &'n str>,
    ) -> Result<BTreeMap<String, Active>> {
        let listening = listening_sockets();
        let freezer = Freezer::of_this_host();
        let mut active = BTreeMap::new();
        for name in names {
            if !listening.contains(&self.command_socket(name)) {
                continue;
            }
            let found = match self.running_init(name) {
                Some(init) => match freezer.is_frozen(init) {
                    Some(frozen) => Some(Active::of(frozen, Some(init))),
                    None => self.asked(name, Some(init))?,
                },
                None => self.asked(name, None)?,
            };
            if let Some(found) = found {
                active.insert(name.to_string(), found);
            }
        }
        Ok(active)
    }

    /// The state of container `name` as lxc-info gives it, None where it
    /// stopped meanwhile; its init from lxc-info too where `init` is None.
    fn asked(&self, name: &str, init: Option<u32>) -> Result<Option<Active>> {
        let state = self.state(name)?;
        if state == "STOPPED" {
            return Ok(None);
        }
        let init = match init {
            Some(init) => Some(init),
            None => self.init_pid(name)?,
        };
        Ok(Some(Active::of(state == "FROZEN", init)))
    }

    /// The name of container `name`'s command socket, as /proc/net/unix
    /// shows it (without the leading '@').
    fn command_socket(&self, name: &str) -> String {
        let path = self.path.to_string_lossy();
        let plain = format!("{path}/{name}/command");
        if plain.len() < SOCKET_NAME_ROOM {
            return plain;
        }
        format!("lxc/{:016x}/command", fnv1a_64(format!("{path}/{name}").as_bytes()))
    }
}

impl Active {
    fn of(frozen: bool, init: Option<u32>) -> Active {
        Active { state: if frozen { "FROZEN" } else { "RUNNING" }, init }
    }
}

/// The names of the abstract unix sockets of this network namespace
/// (without '@'). The path is the last field of a /proc/net/unix line; the
/// fields before it are numbers, so the first " @" starts it.
fn listening_sockets() -> BTreeSet<String> {
    let text = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    text.lines().filter_map(|line| Some(line.split_once(" @")?.1.to_string())).collect()
}

/// FNV-1a, 64 bits: how LXC hashes a socket name too long to keep.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Where this host's freezer is: cgroup v1's freezer hierarchy (LXC uses it
/// where it is mounted, as on hybrid hosts), and the unified hierarchy.
struct Freezer {
    /// The v1 freezer hierarchy's mount: its root and where it is mounted.
    v1: Option<(PathBuf, PathBuf)>,
    /// The same for cgroup2.
    unified: Option<(PathBuf, PathBuf)>,
}

impl Freezer {
    /// From /proc/self/mountinfo ("id parent major:minor root mount-point
    /// options ... - fstype source super-options").
    fn of_this_host() -> Freezer {
        let mut freezer = Freezer { v1: None, unified: None };
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(dash) = fields.iter().position(|field| *field == "-") else { continue };
            let (Some(root), Some(point)) = (fields.get(3), fields.get(4)) else { continue };
            let mount = Some((PathBuf::from(root), PathBuf::from(unescape(point))));
            match (fields.get(dash + 1), fields.get(dash + 3)) {
                (Some(&"cgroup2"), _) if freezer.unified.is_none() => freezer.unified = mount,
                (Some(&"cgroup"), Some(options))
                    if freezer.v1.is_none() && options.split(',').any(|o| o == "freezer") =>
                {
                    freezer.v1 = mount
                }
                _ => {}
            }
        }
        freezer
    }

    /// Whether the cgroup of process `pid` is frozen (also where an
    /// ancestor is, as the container's is when lxc-freeze froze it); None
    /// where that cannot be read.
    fn is_frozen(&self, pid: u32) -> Option<bool> {
        if self.v1.is_none() && self.unified.is_none() {
            // No freezer mounted here (as under `ip netns exec`, which mounts
            // a /sys of its own): neither can LXC's tools freeze what they
            // start from here.
            return Some(false);
        }
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        // "hierarchy-id:controllers:path"; the unified one has no controllers.
        let path_of = |wanted: &dyn Fn(&str) -> bool| {
            cgroups.lines().find_map(|line| {
                let mut fields = line.splitn(3, ':');
                let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
                wanted(controllers).then(|| path.to_string())
            })
        };
        if let (Some((root, point)), Some(path)) =
            (&self.v1, path_of(&|c: &str| c.split(',').any(|c| c == "freezer")))
        {
            let state = read_control(&below(point, root, &path).join("freezer.state"))?;
            return Some(state.trim() == "FROZEN");
        }
        let ((root, point), path) = (self.unified.as_ref()?, path_of(&|c: &str| c.is_empty())?);
        let events = read_control(&below(point, root, &path).join("cgroup.events"))?;
        Some(events.lines().any(|line| line == "frozen 1"))
    }
}

/// A cgroup's control file; empty where the cgroup has none, as a root
/// cgroup, which cannot be frozen (a container runs in one where LXC made
/// no cgroup of its own); None where it cannot be read.
fn read_control(file: &Path) -> Option<String> {
    match std::fs::read_to_string(file) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Some(String::new()),
        Err(_) => None,
    }
}

/// Where cgroup `path` (as /proc/<pid>/cgroup names it) is, in a hierarchy
/// whose `root` is mounted at `point`.
fn below(point: &Path, root: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    let inside = path.strip_prefix(root).unwrap_or(path);
    point.join(inside.strip_prefix("/").unwrap_or(inside))
}

/// A mountinfo field with its octal escapes (\040 for a blank, ...) undone.
fn unescape(field: &str) -> String {
    let mut out = Vec::new();
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_socket_name_is_hashed_as_lxc_hashes_it() {
        // FNV-1a's published test values.
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        let lxc = Lxc { path: Path::new("/var/lib/lxc"), verbose: false };
        assert_eq!(lxc.command_socket("web"), "/var/lib/lxc/web/command");
        let long = "x".repeat(100);
        let hashed = lxc.command_socket(&long);
        let hash = fnv1a_64(format!("/var/lib/lxc/{long}").as_bytes());
        assert_eq!(hashed, format!("lxc/{hash:016x}/command"));
    }

    #[test]
    fn a_cgroup_is_found_below_its_hierarchys_mount() {
        let point = Path::new("/sys/fs/cgroup/freezer");
        assert_eq!(
            below(point, Path::new("/"), "/lxc.payload.web"),
            Path::new("/sys/fs/cgroup/freezer/lxc.payload.web")
        );
        assert_eq!(
            below(point, Path::new("/lxc"), "/lxc/web"),
            Path::new("/sys/fs/cgroup/freezer/web")
        );
        assert_eq!(unescape(r"/mnt/a\040b"), "/mnt/a b");
    }
}
