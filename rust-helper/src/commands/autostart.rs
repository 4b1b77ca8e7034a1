//! autostart: the containers that start with the host, side by side, in
//! LXC's order.
//!
//! What lxc-autostart promises, kept: the containers whose settings say
//! lxc.start.auto = 1 start in the order of their lxc.start.order (lower
//! first); those of one order are a group, which starts only after the group
//! before it has started (each of its lxc-start returned); and a group waits
//! the longest lxc.start.delay of the group before it. Unlike lxc-autostart,
//! the containers of a group start side by side, `jobs` at a time, each as
//! `nixcloud-container start` starts it (its own mount namespace, checks and
//! records), in a thread of this process.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use crate::context::Context;
use crate::engine::lxc_settings::{self, StartSettings};
use crate::error::one_line;

/// `autostart`: starts every container whose settings say it starts with
/// the host, `jobs` at a time, in LXC's order; names those that did not.
pub fn run(ctx: &Context, jobs: Option<usize>) -> Result<ExitCode> {
    let jobs = jobs.unwrap_or_else(default_jobs);
    let (groups, mut failed) = groups(ctx)?;
    let count = groups.values().map(|group| group.names.len()).sum::<usize>() + failed.len();
    let mut groups = groups.into_values().peekable();
    while let Some(group) = groups.next() {
        failed.extend(start_side_by_side(ctx, &group.names, jobs));
        if group.delay > 0 && groups.peek().is_some() {
            // lxc.start.delay: the time these containers are given before
            // the next ones start.
            std::thread::sleep(Duration::from_secs(group.delay.into()));
        }
    }
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    failed.sort();
    bail!("{} of {count} autostart containers did not start: {}", failed.len(), failed.join(", "))
}

/// Twice the CPUs this process may use. A start mostly waits on the kernel
/// (namespaces, the veth and its bridge port); with many more at once they
/// wait on each other, and LXC's network hook spins on the lock the others
/// hold (docs/performance.md, finding 14: on 2 CPUs, 500 tiny containers
/// started in 4.9 to 5.1 s 4 at a time, 5.7 to 6.3 s 32 at a time).
fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |cpus| 2 * cpus.get())
}

/// The containers of one lxc.start.order, and the longest delay they ask.
#[derive(Default)]
struct Group {
    names: Vec<String>,
    delay: u32,
}

/// The autostart containers by their order (names sorted within a group),
/// and those whose settings could not be read (said on stderr).
fn groups(ctx: &Context) -> Result<(BTreeMap<i32, Group>, Vec<String>)> {
    let mut groups = BTreeMap::<i32, Group>::new();
    let mut failed = Vec::new();
    for name in super::all_containers(ctx, None)? {
        match start_settings(ctx, &name) {
            Ok(Some(start)) if start.auto => {
                let group = groups.entry(start.order).or_default();
                group.names.push(name);
                group.delay = group.delay.max(start.delay);
            }
            Ok(_) => {}
            Err(err) => {
                eprintln!("{name}: {}", one_line(&err));
                failed.push(name);
            }
        }
    }
    Ok((groups, failed))
}

/// The start settings of container `name`'s current generation; None
/// without one.
fn start_settings(ctx: &Context, name: &str) -> Result<Option<StartSettings>> {
    let Some(current) = ctx.profile(name).current()? else { return Ok(None) };
    lxc_settings::start_settings(&current.path).map(Some)
}

/// Starts `names`, at most `jobs` at once, each in a thread of this
/// process (a start moves only its thread into the container's mount
/// namespace, lxc/mounts.rs); returns those that did not start (each start
/// says why on stderr). One process rather than a helper per container: a
/// start then pays neither the helper's own start nor its settings again.
fn start_side_by_side(ctx: &Context, names: &[String], jobs: usize) -> Vec<String> {
    let next = Mutex::new(names.iter());
    let failed = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(names.len()) {
            scope.spawn(|| loop {
                let Some(name) = next.lock().expect("no start panics").next() else { break };
                // A start that panics fails alone, as a process of its own
                // did, and the others go on.
                let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    super::start::start(ctx, name, None)
                }))
                .unwrap_or_else(|_| Err(anyhow!("its start ended in a panic")));
                if let Err(err) = started.and_then(|code| check_code(code, name)) {
                    eprintln!("{name}: {}", one_line(&err));
                    failed.lock().expect("no start panics").push(name.clone());
                }
            });
        }
    });
    failed.into_inner().expect("no start panics")
}

fn check_code(code: ExitCode, name: &str) -> Result<()> {
    if code != ExitCode::SUCCESS {
        bail!("'{name}' did not start");
    }
    Ok(())
}
