//! Running the tools this helper wraps (nix-*, lxc-*): arguments are passed
//! as a list, never through a shell.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A command about to run, remembered by name for error messages.
pub struct Tool {
    command: Command,
    program: String,
    /// What runs `program`, if not this helper itself.
    wrapper: Option<String>,
    /// How long it may run before it is killed (`time_limit`).
    time_limit: Option<Duration>,
    /// What its stdin reads instead of /dev/null (`stdin_from`).
    stdin: Option<std::fs::File>,
}

/// Where a tool may be made to run (`Tool::in_namespace`): what moves the
/// tool's process there, between fork and exec.
pub trait Namespace: Send + Sync {
    /// Moves the calling process in. It runs in the forked child before
    /// exec, so it must only make system calls and allocate nothing.
    fn enter(&self) -> std::io::Result<()>;
}

/// What a finished tool left behind.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Whether it was killed for running longer than its time limit.
    pub timed_out: bool,
}

impl Tool {
    pub fn new(program: &str) -> Tool {
        Tool {
            command: Command::new(program),
            program: program.to_string(),
            wrapper: None,
            time_limit: None,
            stdin: None,
        }
    }

    /// `program` run by `wrapper` with `wrapper_args` before it (unshare
    /// ... -- nix-build): errors and timings name the program.
    pub fn wrapped(wrapper: &str, wrapper_args: &[&str], program: &str) -> Tool {
        let mut command = Command::new(wrapper);
        command.args(wrapper_args).arg(program);
        Tool {
            command,
            program: program.to_string(),
            wrapper: Some(wrapper.to_string()),
            time_limit: None,
            stdin: None,
        }
    }

    /// Kills the tool (SIGKILL, which a busy Nix evaluation cannot put off
    /// as it does SIGTERM) when it runs longer than `limit`; it then
    /// finishes `timed_out`. Honoured by `output` and `output_streaming`:
    /// the one time limit of every tool this helper runs.
    pub fn time_limit(mut self, limit: Duration) -> Tool {
        self.time_limit = Some(limit);
        self
    }

    /// Limits the data (heap) of the tool and of every process it starts
    /// to `bytes` (RLIMIT_DATA; see build_limits.rs).
    pub fn memory_limit(mut self, bytes: u64) -> Tool {
        let limit = rustix::process::Rlimit { current: Some(bytes), maximum: Some(bytes) };
        // SAFETY: the closure only makes one async-signal-safe system call.
        unsafe {
            self.command.pre_exec(move || {
                rustix::process::setrlimit(rustix::process::Resource::Data, limit)
                    .map_err(std::io::Error::from)
            });
        }
        self
    }

    /// Gives the tool `file` as its stdin (fd 0, the one descriptor it
    /// inherits; the others this helper has open are close-on-exec) in
    /// place of /dev/null, for `output` and `output_streaming`.
    pub fn stdin_from(mut self, file: std::fs::File) -> Tool {
        self.stdin = Some(file);
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Tool {
        self.command.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Tool
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Tool {
        self.command.env(key, value);
        self
    }

    /// Kill the tool when this helper dies (kill -9 included), so that no
    /// orphaned build writes a generation, and no orphaned nix-env switches
    /// a profile, after the next command has repaired what this one left.
    ///
    /// The kernel sends the signal only for a death after the tool's
    /// process asked for it (prctl(2), PR_SET_PDEATHSIG), and a loaded
    /// machine can keep a forked child from running for milliseconds: a
    /// helper killed in between would leave the tool running. So the child
    /// then checks that its parent is still this helper, and runs nothing
    /// when it is not.
    pub fn dies_with_helper(mut self) -> Tool {
        let helper = rustix::process::getpid();
        // SAFETY: the closure only makes async-signal-safe system calls
        // (prctl, getppid) and builds an io::Error from an errno, which
        // does not allocate.
        unsafe {
            self.command.pre_exec(move || {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)?;
                if rustix::process::getppid() != Some(helper) {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        self
    }

    /// Runs the tool in `namespace` (the build network, nix/build_network.rs).
    pub fn in_namespace(mut self, namespace: std::sync::Arc<dyn Namespace>) -> Tool {
        // SAFETY: `enter` only makes system calls, allocating nothing (the
        // contract of `Namespace`).
        unsafe {
            self.command.pre_exec(move || namespace.enter());
        }
        self
    }

    /// Runs with captured output; `verbose` also copies stderr to ours.
    pub fn output(self, verbose: bool) -> Result<Finished> {
        let finished = self.run_captured(|_| {})?;
        if verbose {
            eprint!("{}", finished.stderr);
        }
        Ok(finished)
    }

    /// Runs with stdout captured and each line of stderr handed to
    /// `on_stderr_line` as it comes (a progress display).
    pub fn output_streaming(self, on_stderr_line: impl FnMut(&str)) -> Result<Finished> {
        self.run_captured(on_stderr_line)
    }

    /// Runs with captured output, each line of stderr handed to
    /// `on_stderr_line` as it comes, and kills the tool at its time limit.
    fn run_captured(mut self, on_stderr_line: impl FnMut(&str)) -> Result<Finished> {
        let stdin = self.stdin.take().map_or_else(Stdio::null, Stdio::from);
        self.command.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = self.command.spawn().with_context(|| self.spawn_error())?;
        let deadline = self.time_limit.map(|limit| started + limit);
        let read = Captured::read(&mut child, deadline, on_stderr_line)
            .and_then(|captured| Ok((captured, child.wait()?)))
            .with_context(|| self.spawn_error());
        let (captured, status) = match read {
            Ok(read) => read,
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err);
            }
        };
        report_timing(&self.program, started.elapsed());
        Ok(Finished {
            status,
            stdout: String::from_utf8_lossy(&captured.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&captured.stderr).into_owned(),
            timed_out: captured.timed_out,
        })
    }

    /// Runs attached to our terminal (login, run, start -F) and returns its status.
    pub fn interactive(mut self) -> Result<ExitStatus> {
        let started = Instant::now();
        let status = self.command.status().with_context(|| self.spawn_error())?;
        report_timing(&self.program, started.elapsed());
        Ok(status)
    }

    fn spawn_error(&self) -> String {
        match &self.wrapper {
            Some(wrapper) => {
                format!("cannot run {wrapper} (for {}): is it installed and on PATH?", self.program)
            }
            None => format!("cannot run {}: is it installed and on PATH?", self.program),
        }
    }
}

/// What a tool wrote, read as it comes from both of its pipes in one
/// thread (poll(2)), until it closes them or its time limit ends: then it
/// is killed (SIGKILL, through a pidfd, which never reaches another process
/// that got its pid after it was reaped), and what its own children still
/// hold open (a command lxc-attach started in a container) is not waited for.
struct Captured {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    timed_out: bool,
}

impl Captured {
    fn read(
        child: &mut std::process::Child,
        deadline: Option<Instant>,
        mut on_stderr_line: impl FnMut(&str),
    ) -> std::io::Result<Captured> {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let pidfd = match deadline {
            Some(_) => Some(rustix::process::pidfd_open(
                rustix::process::Pid::from_child(child),
                rustix::process::PidfdFlags::empty(),
            )?),
            None => None,
        };
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let mut captured = Captured { stdout: Vec::new(), stderr: Vec::new(), timed_out: false };
        let (mut stdout_open, mut stderr_open) = (true, true);
        let mut line_start = 0;
        let mut buffer = [0_u8; 8192];
        while stdout_open || stderr_open {
            let mut fds = Vec::with_capacity(2);
            if stdout_open {
                fds.push(libc::pollfd { fd: stdout.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            }
            if stderr_open {
                fds.push(libc::pollfd { fd: stderr.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            }
            let timeout = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    left.as_millis().min(i32::MAX as u128) as i32
                }
                None => -1,
            };
            // SAFETY: `fds` is a valid array of pollfd, alive for the call.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if ready < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if ready == 0 {
                let pidfd = pidfd.as_ref().expect("only a deadline ends a poll");
                let _ = rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
                captured.timed_out = true;
                break;
            }
            for pollfd in fds.iter().filter(|pollfd| pollfd.revents != 0) {
                let is_stdout = pollfd.fd == stdout.as_raw_fd();
                let count =
                    if is_stdout { stdout.read(&mut buffer)? } else { stderr.read(&mut buffer)? };
                if count == 0 {
                    *(if is_stdout { &mut stdout_open } else { &mut stderr_open }) = false;
                } else if is_stdout {
                    captured.stdout.extend_from_slice(&buffer[..count]);
                } else {
                    captured.stderr.extend_from_slice(&buffer[..count]);
                    while let Some(end) =
                        captured.stderr[line_start..].iter().position(|&byte| byte == b'\n')
                    {
                        let line = &captured.stderr[line_start..line_start + end];
                        on_stderr_line(&String::from_utf8_lossy(line));
                        line_start += end + 1;
                    }
                }
            }
        }
        if line_start < captured.stderr.len() {
            on_stderr_line(&String::from_utf8_lossy(&captured.stderr[line_start..]));
        }
        Ok(captured)
    }
}

/// An exit status as words: "exit code 3" or "signal 9".
pub fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "an unknown status".to_string(),
    }
}

/// With NIXCLOUD_CONTAINER_TIMINGS set, how long each part of a command took
/// goes to stderr: one line per tool run, and the total (see bench/).
pub fn report_timing(what: &str, took: Duration) {
    if std::env::var_os("NIXCLOUD_CONTAINER_TIMINGS").is_some() {
        eprintln!("timing: {what} {:.1} ms", took.as_secs_f64() * 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::Tool;

    /// Where the tool of `a_helper_that_dies_while_its_tool_starts` leaves
    /// its mark if it runs (set by the test that runs it).
    const MARK: &str = "NIXCLOUD_CONTAINER_TEST_TOOL_MARK";

    /// Not a test of its own: the helper process of
    /// `a_tool_whose_helper_died_before_it_could_ask_to_die_with_it_never_runs`,
    /// which runs this test binary with only this test and MARK set. It
    /// starts a tool (`touch <MARK>`) that dies with it, whose child
    /// process, before anything of dies_with_helper runs, waits until this
    /// process is gone (its parent is another one then), as a child that a
    /// loaded machine did not run before the helper was killed.
    #[test]
    #[ignore = "run by a_tool_whose_helper_died_before_it_could_ask_to_die_with_it_never_runs"]
    fn a_helper_that_dies_while_its_tool_starts() {
        let Some(mark) = std::env::var_os(MARK) else {
            return;
        };
        let helper = rustix::process::getpid();
        let mut tool = Tool::new("touch").arg(mark);
        let poll = rustix::thread::Timespec { tv_sec: 0, tv_nsec: 1_000_000 };
        // SAFETY: getppid(2) and nanosleep(2) are async-signal-safe.
        unsafe {
            tool.command.pre_exec(move || {
                while rustix::process::getppid() == Some(helper) {
                    let _ = rustix::thread::nanosleep(&poll);
                }
                Ok(())
            });
        }
        let _ = tool.dies_with_helper().output(false);
    }

    /// The processes whose parent is `parent`.
    fn children_of(parent: u32) -> Vec<u32> {
        let mut children = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue; // it ended meanwhile
            };
            // pid (comm) state ppid ...: comm may hold spaces and parentheses.
            let after_comm = &stat[stat.rfind(')').unwrap() + 1..];
            let ppid: u32 = after_comm.split_whitespace().nth(1).unwrap().parse().unwrap();
            if ppid == parent {
                children.push(pid);
            }
        }
        children
    }

    /// Whether process `pid` has ended (gone, or a zombie nobody reaped yet).
    fn has_ended(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat[stat.rfind(')').unwrap() + 1..].trim_start().starts_with('Z'),
            Err(_) => true,
        }
    }

    /// Waits until `check` holds, for at most 20 s.
    fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
        let start = Instant::now();
        while !check() {
            assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_tool_given_a_limit_says_what_it_did_or_is_killed_at_the_limit() {
        let finished = Tool::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .time_limit(Duration::from_secs(60))
            .output(false)
            .unwrap();
        assert_eq!(
            (finished.status.code(), finished.stdout.as_str(), finished.stderr.as_str()),
            (Some(3), "out\n", "err\n")
        );
        assert!(!finished.timed_out, "it ended within the limit");
        let started = Instant::now();
        let killed =
            Tool::new("sleep").arg("30").time_limit(Duration::from_millis(200)).output(false);
        assert!(killed.unwrap().timed_out, "it did not end within the limit");
        assert!(started.elapsed() < Duration::from_secs(30), "it was killed at the limit");
    }

    #[test]
    fn a_tool_killed_at_its_limit_is_not_waited_for_where_its_children_hold_its_output() {
        // As lxc-attach's command inside a container holds lxc-attach's
        // output open after lxc-attach is killed.
        let killed = Tool::new("sh")
            .args(["-c", "sleep 60 & echo $!; sleep 60"])
            .time_limit(Duration::from_millis(300))
            .output(false)
            .unwrap();
        assert!(killed.timed_out, "it did not end within the limit");
        let holder: u32 = killed.stdout.trim().parse().unwrap();
        let still_holds = !has_ended(holder);
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(holder as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
        assert!(still_holds, "the output was read until the tool's child let it go");
    }

    #[test]
    fn a_tool_whose_helper_died_before_it_could_ask_to_die_with_it_never_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mark: PathBuf = dir.path().join("the-tool-ran");
        let mut helper = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "system::process::tests::a_helper_that_dies_while_its_tool_starts"])
            .args(["--ignored", "--test-threads=1"])
            .env(MARK, &mark)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut tool = None;
        wait_for("the helper to fork its tool", || {
            tool = children_of(helper.id()).first().copied();
            tool.is_some()
        });
        let tool = tool.unwrap();
        helper.kill().unwrap();
        helper.wait().unwrap();
        wait_for("the orphaned tool to end", || has_ended(tool));
        assert!(!mark.exists(), "the tool ran after its helper had died");
    }
}
