//! LXC: the container's directory and config, and the lxc-* tools.
//!
//! Every lxc-* call gets `-P <lxc path>` and the user's `-l` parameters.
//! Note that LXC's command socket is per network namespace: lxc-info,
//! lxc-attach and lxc-stop reach a container only from the namespace that
//! started it.

pub mod active;
pub mod mounts;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::LazyLock;

use anyhow::{anyhow, bail, Context, Result};
use regex::Regex;

use crate::layout;
use crate::system::process::{describe_status, Finished, Tool};

/// The first line of every config this helper writes for LXC: how a
/// container of nixcloud-container is told from others in LXC's directory.
pub const CONFIG_HEADER: &str = "# Written by nixcloud-container.";

/// What lxc-start did.
#[derive(Debug, PartialEq, Eq)]
pub enum Started {
    Now,
    AlreadyRunning,
}

/// What lxc-stop did.
#[derive(Debug, PartialEq, Eq)]
pub enum Halted {
    Now,
    WasNotRunning,
}

/// The PATH commands get inside a container: NixOS's, then the usual places.
pub const GUEST_PATH: &str =
    "/run/wrappers/bin:/run/current-system/sw/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

pub struct Lxc<'a> {
    pub path: &'a Path,
    pub verbose: bool,
}

impl Lxc<'_> {
    /// `<lxc path>/<name>`.
    pub fn container_dir(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn rootfs(&self, name: &str) -> PathBuf {
        self.container_dir(name).join(layout::ROOTFS)
    }

    fn config_file(&self, name: &str) -> PathBuf {
        self.container_dir(name).join(layout::LXC_CONFIG)
    }

    /// Where root's own settings for the container are copied from its
    /// generation when it starts: LXC reads them from there, so that a
    /// switch to a generation without them leaves the config whole.
    pub fn root_settings_file(&self, name: &str) -> PathBuf {
        self.container_dir(name).join(layout::ROOT_SETTINGS)
    }

    /// Puts root's settings `text` where the container's config includes
    /// them (None: removes them); returns the file, if any.
    pub fn keep_root_settings(&self, name: &str, text: Option<&str>) -> Result<Option<PathBuf>> {
        let file = self.root_settings_file(name);
        match text {
            Some(text) => {
                crate::system::files::write_atomically(&file, text)?;
                Ok(Some(file))
            }
            None => match std::fs::remove_file(&file) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    Err(err).with_context(|| format!("cannot remove {}", file.display()))
                }
                _ => Ok(None),
            },
        }
    }

    /// Whether LXC knows a container of this name (its config exists).
    pub fn is_defined(&self, name: &str) -> bool {
        self.config_file(name).exists()
    }

    /// Whether LXC's container `name` is one of this helper's: its config
    /// is one this helper wrote.
    pub fn is_ours(&self, name: &str) -> bool {
        std::fs::read_to_string(self.config_file(name))
            .is_ok_and(|text| text.lines().next() == Some(CONFIG_HEADER))
    }

    /// Replaces the container's config with one that names it and its
    /// rootfs and says nothing else, for a container about to be removed:
    /// LXC can then still stop and destroy it, and no setting of its own (a
    /// hook, an include that is gone) runs or stands in the way. Returns
    /// what was there, for `restore_config`.
    pub fn write_bare_config(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let file = self.config_file(name);
        let before = match std::fs::read(&file) {
            Ok(bytes) => Some(bytes),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", file.display())),
        };
        if before.is_some() {
            let bare = format!(
                "{CONFIG_HEADER} Being removed.\nlxc.uts.name = {name}\nlxc.rootfs.path = dir:{}\n",
                self.rootfs(name).display()
            );
            crate::system::files::write_atomically(&file, &bare)?;
        }
        Ok(before)
    }

    /// Makes the container's config `text` (an `OwnConfig`'s)
    /// where it is not, so that it follows the host's settings (its LXC, its
    /// AppArmor) rather than those of the day it was created.
    pub fn keep_config(&self, name: &str, text: &str) -> Result<()> {
        let file = self.config_file(name);
        if std::fs::read_to_string(&file).is_ok_and(|current| current == text) {
            return Ok(());
        }
        crate::system::files::write_atomically(&file, text)
    }

    /// Puts back the config `write_bare_config` replaced.
    pub fn restore_config(&self, name: &str, before: Option<Vec<u8>>) -> Result<()> {
        let Some(bytes) = before else {
            return Ok(());
        };
        let text = String::from_utf8_lossy(&bytes);
        crate::system::files::write_atomically(&self.config_file(name), &text)
    }

    fn tool(&self, program: &str, name: Option<&str>, extra: &[String]) -> Tool {
        let tool = Tool::new(program).arg("-P").arg(self.path);
        let tool = match name {
            Some(name) => tool.args(["-n", name]),
            None => tool,
        };
        tool.args(extra)
    }

    /// Runs an lxc-* tool, turning failure into an error that says why.
    fn run(&self, program: &str, name: &str, extra: &[String]) -> Result<String> {
        let finished = self.tool(program, Some(name), extra).output(self.verbose)?;
        check(program, &finished, "")?;
        Ok(finished.stdout)
    }

    /// Gives container `name`'s directory its shape (see
    /// `CONTAINER_DIR_MODE`): root's, entered by the container's root
    /// (`host_id`, its gid too) on its way to the rootfs and by no other host
    /// user, and written by root alone. LXC hands the directory to the
    /// container's root when it creates it, and versions of this helper
    /// before the gate left it so: whatever that owner put in the place of
    /// root's files (the config, root's settings, the pidfile), a link
    /// included, goes; `start` writes them again.
    pub fn secure(&self, name: &str, host_id: u32) -> Result<()> {
        crate::system::host_dirs::gate(&self.container_dir(name), host_id, CONTAINER_DIR_MODE)?;
        let roots =
            [self.config_file(name), self.root_settings_file(name), self.monitor_pidfile(name)];
        for file in roots {
            if crate::system::host_dirs::keep_only_roots(&file)? {
                eprintln!(
                    "note: removed {}, which was not root's: the container's root could change it",
                    file.display()
                );
            }
        }
        Ok(())
    }

    /// Registers the container with LXC (`lxc-create -t none`) from the
    /// config at `config`; the rootfs directory must exist. LXC writes
    /// `<lxc path>/<name>/config` and hands the directories to the uid range.
    pub fn create(&self, name: &str, config: &Path, extra: &[String]) -> Result<()> {
        let mut args = vec!["-t".to_string(), "none".to_string(), "-f".to_string()];
        args.push(config.display().to_string());
        args.extend(extra.iter().cloned());
        self.run("lxc-create", name, &args).map(drop)
    }

    pub fn destroy(&self, name: &str, extra: &[String]) -> Result<()> {
        self.run("lxc-destroy", name, extra).map(drop)
    }

    /// Starts the container in the background. Unless `extra` names a log
    /// of its own, LXC logs its errors where a failure's cause is found
    /// (lxc-start itself only says that it failed): into a memory file
    /// handed to lxc-start as its stdin and named to LXC by its
    /// /proc/self/fd path, which LXC opens as its log (its daemon, which
    /// goes on logging, holds it open, and then puts /dev/null on its
    /// stdin). Nothing is written on the host's disk for it, and nothing
    /// is left to remove.
    pub fn start(&self, name: &str, extra: &[String]) -> Result<Started> {
        let user_logs = extra.iter().any(|arg| {
            ["-o", "--logfile", "-l", "--logpriority"]
                .iter()
                .any(|option| arg == option || arg.starts_with(&format!("{option}=")))
        });
        // The monitor's pid, for `running_init`; LXC removes the file when
        // the container stops. A --pidfile of the user's comes later and wins.
        let mut args = vec![format!("--pidfile={}", self.monitor_pidfile(name).display())];
        let log = if user_logs {
            None
        } else {
            args.push("--logfile=/proc/self/fd/0".to_string());
            args.push("--logpriority=ERROR".to_string());
            let memory = rustix::fs::memfd_create("lxc-start.log", rustix::fs::MemfdFlags::CLOEXEC)
                .context("cannot make a memory file for lxc-start's log")?;
            Some(std::fs::File::from(memory))
        };
        args.extend(extra.iter().cloned());
        let mut tool = self.tool("lxc-start", Some(name), &args);
        if let Some(log) = &log {
            tool = tool.stdin_from(log.try_clone().context("cannot pass lxc-start its log")?);
        }
        let finished = tool.output(self.verbose)?;
        let logged = log.map(|log| read_from_start(&log)).unwrap_or_default();
        check("lxc-start", &finished, &logged)?;
        if finished.stderr.contains("is already running") {
            Ok(Started::AlreadyRunning)
        } else {
            Ok(Started::Now)
        }
    }

    /// `lxc-start -F`: the container's console on our terminal until it stops.
    pub fn start_foreground(&self, name: &str, extra: &[String]) -> Result<ExitStatus> {
        self.tool("lxc-start", Some(name), extra).interactive()
    }

    /// Shuts the container down cleanly.
    pub fn stop(&self, name: &str, extra: &[String]) -> Result<Halted> {
        self.halt(name, extra)
    }

    /// Kills the container.
    pub fn kill(&self, name: &str, extra: &[String]) -> Result<Halted> {
        let mut args = vec!["--kill".to_string()];
        args.extend(extra.iter().cloned());
        self.halt(name, &args)
    }

    fn halt(&self, name: &str, args: &[String]) -> Result<Halted> {
        let finished = self.tool("lxc-stop", Some(name), args).output(self.verbose)?;
        // lxc-stop exits with 2 when the container is not running, after it
        // took its options (a bad option exits with 1).
        if finished.status.code() == Some(2) && finished.stderr.contains("is not running") {
            return Ok(Halted::WasNotRunning);
        }
        check("lxc-stop", &finished, "")?;
        Ok(Halted::Now)
    }

    /// The container's state as LXC names it (RUNNING, STOPPED, FROZEN, ...).
    pub fn state(&self, name: &str) -> Result<String> {
        let out =
            self.run("lxc-info", name, &["--state".to_string(), "--no-humanize".to_string()])?;
        Ok(out.trim().to_string())
    }

    /// Writes `value` into the running container's cgroup2 file `file`.
    pub fn set_cgroup(&self, name: &str, file: &str, value: &str) -> Result<()> {
        self.run("lxc-cgroup", name, &[file.to_string(), value.to_string()]).map(drop)
    }

    /// The host pids of the inits of this LXC path's running containers, by
    /// name, found in /proc without asking LXC, which would cost a process
    /// per container (see `monitored`).
    pub fn init_pids(&self) -> BTreeMap<String, u32> {
        let our_network = std::fs::read_link("/proc/self/ns/net").ok();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return BTreeMap::new();
        };
        entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            // Monitors are lxc-start processes; reading comm is cheaper than cmdline.
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "lxc-start")
            })
            .filter_map(|pid| self.monitored(pid, our_network.as_deref()))
            .collect()
    }

    /// Where `start` has lxc-start write the pid of container `name`'s monitor.
    fn monitor_pidfile(&self, name: &str) -> PathBuf {
        self.container_dir(name).join(layout::MONITOR_PID)
    }

    /// The host pid of container `name`'s init while it runs, from its
    /// monitor's pidfile (see `start`), without asking LXC or looking
    /// through every process as `init_pids` does.
    pub fn running_init(&self, name: &str) -> Option<u32> {
        let pid = std::fs::read_to_string(self.monitor_pidfile(name)).ok()?.trim().parse().ok()?;
        let our_network = std::fs::read_link("/proc/self/ns/net").ok();
        let (monitored, init) = self.monitored(pid, our_network.as_deref())?;
        (monitored == name).then_some(init)
    }

    /// The pid of container `name`'s monitor when it runs in another
    /// network namespace than this helper's. LXC's commands (lxc-info,
    /// lxc-start's own check) reach a monitor through an abstract socket,
    /// which belongs to a network namespace: from here such a container
    /// looks STOPPED, and starting it again would start a second one on the
    /// same root.
    pub fn monitor_elsewhere(&self, name: &str) -> Option<u32> {
        let pid = std::fs::read_to_string(self.monitor_pidfile(name)).ok()?.trim().parse().ok()?;
        let our_network = std::fs::read_link("/proc/self/ns/net").ok();
        let network = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        (self.monitor_of(pid)? == name && network != our_network).then_some(pid)
    }

    /// When process `pid` is LXC's monitor of one of this LXC path's
    /// containers ("[lxc monitor] <path> <name>"): that container's name.
    fn monitor_of(&self, pid: u32) -> Option<String> {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        let prefix = format!("[lxc monitor] {} ", self.path.display());
        Some(cmdline.trim_end_matches('\0').strip_prefix(&prefix)?.to_string())
    }

    /// When process `pid` is LXC's monitor of one of this LXC path's
    /// containers in `our_network` (where LXC's commands reach, see above):
    /// that container's name, and its init (the monitor's child).
    fn monitored(&self, pid: u32, our_network: Option<&Path>) -> Option<(String, u32)> {
        let name = self.monitor_of(pid)?;
        if std::fs::read_link(format!("/proc/{pid}/ns/net")).ok().as_deref() != our_network {
            return None;
        }
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        Some((name, children.split_whitespace().next()?.parse().ok()?))
    }

    /// The host pid of the container's init, None while it is stopped.
    pub fn init_pid(&self, name: &str) -> Result<Option<u32>> {
        let out =
            self.run("lxc-info", name, &["--pid".to_string(), "--no-humanize".to_string()])?;
        let pid = out.trim();
        if pid.is_empty() {
            return Ok(None);
        }
        pid.parse().map(Some).with_context(|| format!("lxc-info printed {pid:?} as the pid"))
    }

    pub fn is_running(&self, name: &str) -> Result<bool> {
        Ok(self.state(name)? == "RUNNING")
    }

    /// The containers `lxc-ls` lists with `extra` (its filters: a regular
    /// expression, --active, --stopped, -g <groups>, ...).
    pub fn names(&self, extra: &[String]) -> Result<BTreeSet<String>> {
        let mut args = vec!["-1".to_string()];
        args.extend(extra.iter().cloned());
        let finished = self.tool("lxc-ls", None, &args).output(self.verbose)?;
        check("lxc-ls", &finished, "")?;
        Ok(finished.stdout.split_whitespace().map(str::to_string).collect())
    }

    /// A command inside the container, with a clean environment and the
    /// guest's PATH, attached to our terminal.
    pub fn attach(&self, name: &str, extra: &[String], command: &[String]) -> Result<ExitStatus> {
        self.attach_tool(name, extra).arg("--").args(command).interactive()
    }

    /// Like `attach`, but with the output captured for the caller to report.
    pub fn attach_captured(
        &self,
        name: &str,
        extra: &[String],
        command: &[&OsStr],
    ) -> Result<Finished> {
        self.attach_tool(name, extra).arg("--").args(command).output(false)
    }

    /// Like `attach_captured`, but killed after `limit` (None then).
    pub fn attach_with_timeout(
        &self,
        name: &str,
        extra: &[String],
        command: &[&OsStr],
        limit: std::time::Duration,
    ) -> Result<Option<Finished>> {
        let finished = self
            .attach_tool(name, extra)
            .arg("--")
            .args(command)
            .time_limit(limit)
            .output(false)?;
        Ok((!finished.timed_out).then_some(finished))
    }

    /// A shell inside the container: lxc-attach without a command runs root's
    /// login shell as the container's /etc/passwd names it (/bin/sh without one).
    pub fn login(&self, name: &str, extra: &[String]) -> Result<ExitStatus> {
        self.attach_tool(name, extra).interactive()
    }

    fn attach_tool(&self, name: &str, extra: &[String]) -> Tool {
        let term = std::env::var("TERM").unwrap_or_else(|_| "dumb".to_string());
        self.tool("lxc-attach", Some(name), extra)
            .arg("--clear-env")
            .args(["--set-var", &format!("PATH={GUEST_PATH}")])
            .args(["--set-var", &format!("TERM={term}")])
            .args(["--set-var", "HOME=/root"])
    }
}

/// The mode of a container's directory `<lxc path>/<name>` (root's, its
/// group the container root's gid): LXC sets a root-started unprivileged
/// container's rootfs up in the container's first process after that has
/// become root of the container's user namespace (LXC 5.0's start.c,
/// do_start: lxc_switch_uid_gid, then lxc_setup), that is host uid and gid
/// `host_id`, without capabilities over host files; so that gid must pass
/// through the directory to `rootfs/` (group x), and nobody else may (none
/// for others). Everything else in it (the config, root's settings, the
/// pidfile) is read and written by root: lxc-start, lxc-attach, lxc-stop,
/// lxc-info, lxc-console and lxc-destroy need nothing more (the
/// integration tests run each).
const CONTAINER_DIR_MODE: u32 = 0o710;

/// Fails unless root inside the container (host uid and gid `host_id`) can
/// reach `path`: LXC mounts the rootfs as that uid (see
/// `CONTAINER_DIR_MODE`), and a directory on the way that it may not enter
/// makes lxc-start fail with an error that does not say so.
pub fn check_reachable(path: &Path, host_id: u32) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    for dir in path.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        // The kernel looks at the owner's bits if the uid owns it, else at
        // the group's if the gid is its group, else at the others'.
        let search_bit = if meta.uid() == host_id {
            0o100
        } else if meta.gid() == host_id {
            0o010
        } else {
            0o001
        };
        if meta.mode() & search_bit == 0 {
            bail!(
                "{} has mode {:o}: the container's root (uid {host_id}) cannot reach {}; \
                 allow it with `chmod o+x {}`",
                dir.display(),
                meta.mode() & 0o7777,
                path.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// The SHA-1 of `text`, in hex: how the state knows root's LXC settings.
pub fn digest(text: &str) -> String {
    use sha1::{Digest, Sha1};
    Sha1::digest(text.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// What LXC logged into `log` (see `Lxc::start`), read from its beginning
/// at explicit offsets: the descriptor's own offset is shared with
/// lxc-start's stdin, which nothing promises stays at 0.
fn read_from_start(log: &std::fs::File) -> String {
    use std::os::unix::fs::FileExt;
    let (mut bytes, mut chunk) = (Vec::new(), [0u8; 8192]);
    while let Ok(read @ 1..) = log.read_at(&mut chunk, bytes.len() as u64) {
        bytes.extend_from_slice(&chunk[..read]);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Turns a failed lxc-* tool into an error that says why it failed.
fn check(program: &str, finished: &Finished, log: &str) -> Result<()> {
    if finished.status.success() {
        return Ok(());
    }
    Err(anyhow!("{}", why_it_failed(&finished.stderr, log)))
        .context(format!("{program} failed with {}", describe_status(finished.status)))
}

/// Lines in which LXC says that something failed, not why.
const LXC_ADVICE: [&str; 6] = [
    "To get more details, run the container in foreground mode",
    "Additional information can be obtained by setting the --logfile and --logpriority options",
    "Received container state",
    "An error occurred in another process",
    "Failed to spawn container",
    "Failed to start container",
];

/// The message of an lxc-* tool's line: without LXC's program, container
/// and source location (`lxc-start: web: ../src/lxc/start.c: main: 306 `
/// on stderr, `lxc-start web 2026... ERROR start - ../src/lxc/start.c:f:1 - `
/// in a log).
fn lxc_message(line: &str) -> &str {
    static STDERR: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^lxc-[a-z-]+: [^:]*: \S+: \S+: \d+ (.*)$").unwrap());
    static LOG: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^lxc-[a-z-]+ \S+ \d+\.\d+ [A-Z]+ +\S+ - \S+ - (.*)$").unwrap()
    });
    for pattern in [&*STDERR, &*LOG] {
        if let Some(captures) = pattern.captures(line) {
            return captures.get(1).map_or(line, |m| m.as_str());
        }
    }
    line
}

/// Why an lxc-* tool failed: the first line of its log and its stderr that
/// says more than that it failed (LXC logs the cause first), or its last
/// line of output when none does.
fn why_it_failed(stderr: &str, log: &str) -> String {
    let lines: Vec<&str> =
        log.lines().chain(stderr.lines()).map(str::trim).filter(|l| !l.is_empty()).collect();
    let telling = lines.iter().copied().map(lxc_message).find(|message| {
        !LXC_ADVICE.iter().any(|advice| message.starts_with(advice))
            && !message.starts_with("Usage:")
    });
    match telling.or_else(|| lines.last().copied().map(lxc_message)) {
        Some(message) => message.to_string(),
        None => "it said nothing".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::why_it_failed;

    #[test]
    fn the_cause_of_a_failed_start_comes_from_the_log() {
        let stderr = "lxc-start: t: ../src/lxc/lxccontainer.c: wait_on_daemonized_start: 878 Received container state \"ABORTING\" instead of \"RUNNING\"
lxc-start: t: ../src/lxc/tools/lxc_start.c: main: 306 The container failed to start
lxc-start: t: ../src/lxc/tools/lxc_start.c: main: 309 To get more details, run the container in foreground mode
lxc-start: t: ../src/lxc/tools/lxc_start.c: main: 311 Additional information can be obtained by setting the --logfile and --logpriority options
";
        let log = "lxc-start t 20261129215425.515 ERROR    start - ../src/lxc/start.c:start:2197 - No such file or directory - Failed to exec \"junk\"
lxc-start t 20261129215425.515 ERROR    sync - ../src/lxc/sync.c:sync_wait:34 - An error occurred in another process (expected sequence number 7)
";
        assert_eq!(
            why_it_failed(stderr, log),
            "No such file or directory - Failed to exec \"junk\""
        );
        assert_eq!(why_it_failed(stderr, ""), "The container failed to start");
    }

    #[test]
    fn a_bad_option_is_named() {
        let stderr = "lxc-stop: unrecognized option '--bogus'\nUsage: lxc-stop --name=NAME\n\nlxc-stop stops a container\n";
        assert_eq!(why_it_failed(stderr, ""), "lxc-stop: unrecognized option '--bogus'");
    }
}
