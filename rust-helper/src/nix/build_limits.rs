//! The memory and time that evaluating and building a container's code may
//! take (the host's `builds.memory`, `builds.evaluationTimeout` and
//! `builds.buildTimeout`): a container file may be anyone's, and an endless
//! loop or a string that doubles itself would otherwise run until someone
//! kills it, or take the host's memory.
//!
//! They need no cgroup (hosts with a hybrid or v1 hierarchy have none to
//! give):
//! - memory: the data limit (RLIMIT_DATA) of the Nix process, which each of
//!   its builders inherits: a heap that grows past it gets no more memory,
//!   and Nix says "out of memory". Not the address-space limit (RLIMIT_AS):
//!   glibc reserves 64 MiB of address space per thread for its arenas and
//!   each thread's stack, which RLIMIT_AS counts and RLIMIT_DATA does not
//!   (they are not writable until used). Nix's garbage collector (Boehm)
//!   starts by asking for a heap of a quarter of the host's memory, up to
//!   384 MiB, which does count: under a small limit it fails to and warns,
//!   so GC_INITIAL_HEAP_SIZE asks for a quarter of the limit instead.
//! - time: the helper kills the Nix process when its time is up (SIGKILL:
//!   a busy evaluation ignored SIGTERM for minutes here). It is PID 1 of a
//!   PID namespace of its own (nix/mod.rs), so every build dies with it. Nix's
//!   own `timeout` gives each build the same limit and names the build.
//!   Not the CPU-time limit (RLIMIT_CPU): it counts each process's threads
//!   together (a parallel compiler, the collector's marker threads), so it
//!   would cut a build off before its wall-clock time is up.
//!
//! What is created or updated is then as before: a create that fails leaves
//! nothing, an update keeps its current generation (commands/create.rs, commands/update.rs).

use std::time::Duration;

use crate::formats::show_size;
use crate::settings::Builds;
use crate::system::process::{Finished, Tool};

/// What a confined Nix command does, which decides its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Evaluates a container's spec, or a flake's list of containers.
    Evaluation,
    /// Fetches a flake's inputs, or evaluates and builds a generation.
    Build,
}

/// The host's limits for evaluations and builds, as they apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of data each process may have.
    pub memory: u64,
    pub evaluation: Duration,
    pub build: Duration,
}

/// Boehm GC's initial heap in Nix 2.8 when nothing says otherwise: a
/// quarter of the host's memory, up to this.
const NIX_INITIAL_HEAP: u64 = 384 << 20;

/// Where host option `option` (`builds.memory`) is set, for the error that
/// names it.
fn set_by(option: &str) -> String {
    format!("{option} in the host file, nixcloud.containers.{option} on NixOS")
}

impl Limits {
    /// The host's limits: `builds.memory`, or a quarter of the host's memory
    /// (4 GiB where /proc/meminfo does not say); the timeouts.
    pub fn of(builds: &Builds) -> Limits {
        let memory = match builds.memory {
            Some(size) => size.bytes(),
            None => host_memory().map_or(4 << 30, |total| total / 4),
        };
        Limits {
            memory,
            evaluation: Duration::from_secs(builds.evaluation_timeout.0),
            build: Duration::from_secs(builds.build_timeout.0),
        }
    }

    pub fn time(&self, step: Step) -> Duration {
        match step {
            Step::Evaluation => self.evaluation,
            Step::Build => self.build,
        }
    }

    /// `tool` (a Nix command of `step`) under these limits.
    pub fn apply(&self, tool: Tool, step: Step) -> Tool {
        let heap = (self.memory / 4).min(NIX_INITIAL_HEAP);
        let tool = tool
            .memory_limit(self.memory)
            .time_limit(self.time(step))
            .env("GC_INITIAL_HEAP_SIZE", heap.to_string());
        match step {
            Step::Evaluation => tool,
            Step::Build => tool.args(["--option", "timeout"]).arg(self.build.as_secs().to_string()),
        }
    }

    /// What a Nix command of `step` that failed with `message` ran into, if
    /// it was one of these limits: the limit, its value and its option.
    pub fn blame(&self, step: Step, finished: &Finished, message: &str) -> Option<String> {
        let option = match step {
            Step::Evaluation => "builds.evaluationTimeout",
            Step::Build => "builds.buildTimeout",
        };
        if finished.timed_out {
            return Some(format!(
                "stopped after {} s, the most this host gives it ({})",
                self.time(step).as_secs(),
                set_by(option)
            ));
        }
        let memory = ["out of memory", "std::bad_alloc", "Cannot allocate memory"];
        if memory.iter().any(|said| message.contains(said)) {
            return Some(format!(
                "it ran out of the {} of memory each of its processes may take on this host ({})",
                show_size(self.memory),
                set_by("builds.memory")
            ));
        }
        if message.contains("timed out after") {
            return Some(format!(
                "a build took longer than {} s, the most this host gives it ({})",
                self.build.as_secs(),
                set_by("builds.buildTimeout")
            ));
        }
        None
    }

    /// How many of `asked` evaluations or builds may run at once (sync -j)
    /// so that all of them together stay within half the host's memory; the
    /// reason where that is fewer.
    pub fn parallel(&self, asked: usize) -> (usize, Option<String>) {
        let Some(total) = host_memory() else { return (asked, None) };
        let fit = usize::try_from(total / 2 / self.memory.max(1)).unwrap_or(usize::MAX).max(1);
        if asked <= fit {
            return (asked, None);
        }
        let why = format!(
            "{fit} at once, not {asked}: each evaluation or build may take {} ({}), and together \
             they stay within half of this host's {}",
            show_size(self.memory),
            set_by("builds.memory"),
            show_size(total)
        );
        (fit, Some(why))
    }
}

/// The host's memory (MemTotal), in bytes.
fn host_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(memory: u64) -> Limits {
        Limits { memory, evaluation: Duration::from_secs(300), build: Duration::from_secs(1800) }
    }

    fn failed(timed_out: bool) -> Finished {
        use std::os::unix::process::ExitStatusExt;
        Finished {
            status: std::process::ExitStatus::from_raw(1 << 8),
            stdout: String::new(),
            stderr: String::new(),
            timed_out,
        }
    }

    #[test]
    fn each_limit_reached_is_named_with_its_option() {
        let limits = limits(256 << 20);
        let blame = |step, timed_out, message| limits.blame(step, &failed(timed_out), message);
        let said = blame(Step::Evaluation, true, "").unwrap();
        assert!(said.contains("300 s") && said.contains("builds.evaluationTimeout"), "{said}");
        assert!(said.contains("nixcloud.containers.builds.evaluationTimeout on NixOS"), "{said}");
        let said = blame(Step::Build, true, "").unwrap();
        assert!(said.contains("1800 s") && said.contains("builds.buildTimeout"), "{said}");
        let said = blame(Step::Evaluation, false, "out of memory").unwrap();
        assert!(said.contains("256 MiB") && said.contains("builds.memory"), "{said}");
        let said = blame(
            Step::Build,
            false,
            "building of '/nix/store/x.drv' timed out after 1800 seconds",
        )
        .unwrap();
        assert!(said.contains("builds.buildTimeout"), "{said}");
        assert_eq!(blame(Step::Build, false, "attribute 'x' missing"), None);
    }

    #[test]
    fn the_initial_heap_fits_the_limit() {
        let small = limits(100 << 20);
        assert_eq!((small.memory / 4).min(NIX_INITIAL_HEAP), 25 << 20);
        let large = limits(64 << 30);
        assert_eq!((large.memory / 4).min(NIX_INITIAL_HEAP), NIX_INITIAL_HEAP);
    }

    #[test]
    fn parallel_jobs_fit_into_half_the_memory() {
        let total = host_memory().expect("/proc/meminfo says");
        let quarter = limits(total / 4);
        let (jobs, why) = quarter.parallel(8);
        assert_eq!(jobs, 2);
        assert!(why.unwrap().contains("2 at once, not 8"));
        assert_eq!(quarter.parallel(1), (1, None));
        assert_eq!(limits(total).parallel(4).0, 1, "at least one");
    }
}
