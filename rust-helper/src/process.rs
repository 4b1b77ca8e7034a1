//! Running the tools this helper wraps (nix-*, lxc-*): arguments are passed
//! as a list, never through a shell.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::build_network::BuildNetwork;

/// A command about to run, remembered by name for error messages.
pub struct Tool {
    command: Command,
    program: String,
    /// What runs `program`, if not this helper itself.
    wrapper: Option<String>,
    /// How long it may run before it is killed (`time_limit`).
    time_limit: Option<Duration>,
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
        }
    }

    /// Kills the tool (SIGKILL, which a busy Nix evaluation cannot put off
    /// as it does SIGTERM) when it runs longer than `limit`; it then
    /// finishes `timed_out`. Honoured by `output` and `output_streaming`.
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
    /// orphaned build writes a generation after the next command cleaned up.
    pub fn dies_with_helper(mut self) -> Tool {
        // SAFETY: the closure only makes one async-signal-safe system call.
        unsafe {
            self.command.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)
            });
        }
        self
    }

    /// Runs the tool in the build network (build_network.rs).
    pub fn in_build_network(mut self, network: std::sync::Arc<BuildNetwork>) -> Tool {
        // SAFETY: `enter` only makes system calls, allocating nothing.
        unsafe {
            self.command.pre_exec(move || network.enter());
        }
        self
    }

    /// Runs with captured output; `verbose` also copies stderr to ours.
    pub fn output(mut self, verbose: bool) -> Result<Finished> {
        self.command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let child = self.command.spawn().with_context(|| self.spawn_error())?;
        let watchdog = Watchdog::start(&child, self.time_limit)?;
        let output = child.wait_with_output().with_context(|| self.spawn_error())?;
        let timed_out = watchdog.fired();
        report_timing(&self.program, started.elapsed());
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if verbose {
            eprint!("{stderr}");
        }
        Ok(Finished {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr,
            timed_out,
        })
    }

    /// Runs with stdout captured and each line of stderr handed to
    /// `on_stderr_line` as it comes (a progress display).
    pub fn output_streaming(mut self, mut on_stderr_line: impl FnMut(&str)) -> Result<Finished> {
        use std::io::{BufRead, Read};
        self.command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = self.command.spawn().with_context(|| self.spawn_error())?;
        let watchdog = Watchdog::start(&child, self.time_limit)?;
        let mut stdout_pipe = child.stdout.take().expect("stdout is piped");
        let reader = std::thread::spawn(move || {
            let mut stdout = Vec::new();
            stdout_pipe.read_to_end(&mut stdout).map(|_| stdout)
        });
        let mut stderr = String::new();
        let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr is piped"));
        let mut line = Vec::new();
        while lines.read_until(b'\n', &mut line).context("cannot read a tool's output")? > 0 {
            let text = String::from_utf8_lossy(&line);
            on_stderr_line(text.trim_end_matches('\n'));
            stderr.push_str(&text);
            line.clear();
        }
        let status = child.wait().with_context(|| self.spawn_error())?;
        let timed_out = watchdog.fired();
        let stdout = reader
            .join()
            .expect("reading stdout does not panic")
            .context("cannot read a tool's output")?;
        report_timing(&self.program, started.elapsed());
        Ok(Finished {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr,
            timed_out,
        })
    }

    /// Runs with captured output for at most `limit`; None when it had to be
    /// killed then. For tools whose output is small (it is read at the end).
    pub fn output_within(mut self, limit: Duration) -> Result<Option<Finished>> {
        use std::io::Read;
        self.command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = self.command.spawn().with_context(|| self.spawn_error())?;
        let status = loop {
            if let Some(status) = child.try_wait().with_context(|| self.spawn_error())? {
                break status;
            }
            if started.elapsed() >= limit {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        report_timing(&self.program, started.elapsed());
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        child.stdout.take().expect("stdout is piped").read_to_end(&mut stdout)?;
        child.stderr.take().expect("stderr is piped").read_to_end(&mut stderr)?;
        Ok(Some(Finished {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            timed_out: false,
        }))
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

/// Kills a child that runs longer than its time limit. It holds a pidfd of
/// the child, so that it can never kill another process that got the
/// child's pid after the child was reaped.
struct Watchdog {
    /// Set when the child has finished; the thread then stops waiting.
    finished: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<bool>>,
}

impl Watchdog {
    fn start(child: &std::process::Child, limit: Option<Duration>) -> Result<Watchdog> {
        let finished =
            std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let Some(limit) = limit else { return Ok(Watchdog { finished, thread: None }) };
        let pid = rustix::process::Pid::from_child(child);
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            .context("cannot watch a tool's time (pidfd_open)")?;
        let done = finished.clone();
        let thread = std::thread::spawn(move || {
            let (lock, finished) = &*done;
            let deadline = Instant::now() + limit;
            let mut over = lock.lock().expect("the watchdog's flag");
            while !*over {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return rustix::process::pidfd_send_signal(
                        &pidfd,
                        rustix::process::Signal::KILL,
                    )
                    .is_ok();
                }
                over = finished.wait_timeout(over, left).expect("the watchdog's flag").0;
            }
            false
        });
        Ok(Watchdog { finished, thread: Some(thread) })
    }

    /// Stops watching the child, which has finished; whether it was killed.
    fn fired(mut self) -> bool {
        let (lock, finished) = &*self.finished;
        *lock.lock().expect("the watchdog's flag") = true;
        finished.notify_all();
        self.thread.take().is_some_and(|thread| thread.join().expect("the watchdog does not panic"))
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
