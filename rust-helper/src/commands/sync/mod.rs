//! `sync`: makes this host's containers those of a list. The missing are
//! created (and started where they start with the host), those that changed
//! updated, the others left alone: a flake's container is not even
//! evaluated while what its generation depends on is as when it was last
//! synced: the flake's source, or of it the files its evaluation read
//! (source_reads.rs), and this toolkit, busybox, the host file and root's
//! decisions; any other is evaluated and, where its generation is the one
//! it has, neither built nor switched. With --prune the containers
//! sync made that the list no longer names are destroyed.
//!
//! Each container is created or updated by a helper process of its own
//! (`create`, `update`), so that one container's evaluation never sees
//! another's and one that fails fails alone; -j of them run side by side,
//! and their live switches one at a time (the activation lock).

mod carry_out;
mod flakes;
mod list;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::context::Context;
use flakes::Flakes;
use list::{fingerprints, read_list, source_of, Listed};

/// What `sync` was asked.
pub struct Request {
    pub file: Option<PathBuf>,
    pub flake: Option<String>,
    pub prune: bool,
    pub jobs: usize,
    pub keep_going: bool,
    pub dry_run: bool,
    pub json: bool,
    /// What create and update get besides the container: -n.
    pub nix_args: Vec<String>,
    /// What update gets besides: the activation flags.
    pub activation_args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Create,
    Update,
    Unchanged,
    Remove,
}

/// What became of each container.
#[derive(Debug, Default, Serialize)]
struct Summary {
    created: Vec<String>,
    updated: Vec<String>,
    unchanged: Vec<String>,
    removed: Vec<String>,
    failed: BTreeMap<String, String>,
}

pub fn sync(ctx: &Context, request: Request) -> Result<ExitCode> {
    let busybox = ctx.nix().busybox_in_store(&ctx.settings.busybox()?)?;
    let mut flakes = Flakes::default();
    let listed = read_list(ctx, &request, &busybox, &mut flakes)?;
    let fingerprints = fingerprints(ctx, &listed, &busybox);
    let plan = plan(ctx, &request, &listed, &fingerprints, &flakes)?;
    if request.dry_run {
        for (name, action) in &plan {
            let said = match action {
                Action::Create => "create",
                Action::Update => "evaluate, and update if it changed",
                Action::Unchanged => {
                    "leave alone (its system, or what it reads of its flake, is as it was)"
                }
                Action::Remove => "destroy (no longer listed)",
            };
            println!("{name}: would {said}");
        }
        return Ok(ExitCode::SUCCESS);
    }

    // Each job's Nix processes may take builds.memory: -j N of them take N
    // times that (build_limits.rs).
    let limits = crate::nix::build_limits::Limits::of(&ctx.settings.host.builds);
    let (jobs, fewer) = limits.parallel(request.jobs.max(1));
    if let Some(why) = fewer {
        eprintln!("sync: runs {why}");
    }
    let summary = Mutex::new(Summary::default());
    let queue = Mutex::new(plan.into_iter().collect::<VecDeque<_>>());
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Some((name, action)) = queue.lock().expect("the queue").pop_front() else {
                    break;
                };
                let outcome = carry_out::carry_out(
                    ctx,
                    &request,
                    &name,
                    action,
                    listed.get(&name),
                    fingerprints.get(&name),
                    &flakes,
                );
                let mut summary = summary.lock().expect("the summary");
                match outcome {
                    Ok(done) => match done {
                        Action::Create => summary.created.push(name),
                        Action::Update => summary.updated.push(name),
                        Action::Unchanged => summary.unchanged.push(name),
                        Action::Remove => summary.removed.push(name),
                    },
                    Err(err) => {
                        eprintln!("{name}: {}", crate::error::one_line(&err));
                        summary.failed.insert(name, crate::error::one_line(&err));
                        if !request.keep_going {
                            stop.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                }
            });
        }
    });
    let summary = summary.into_inner().expect("the summary");
    let skipped = queue.into_inner().expect("the queue").len();
    report(summary, skipped, request.json)
}

/// What to do with each container: those of the list, and with --prune
/// those sync made that the list no longer names.
fn plan(
    ctx: &Context,
    request: &Request,
    listed: &BTreeMap<String, Listed>,
    fingerprints: &BTreeMap<String, String>,
    flakes: &Flakes,
) -> Result<Vec<(String, Action)>> {
    let state = ctx.store.read()?;
    let mut plan: Vec<(String, Action)> = Vec::new();
    for (name, entry) in listed {
        let action = match state.containers.get(name).filter(|record| record.exists()) {
            None => Action::Create,
            Some(record) => {
                let synced = record.synced.as_ref().filter(|synced| {
                    fingerprints.contains_key(name)
                        && synced.fingerprint.as_ref() == fingerprints.get(name)
                        && record.source == source_of(entry)
                        && ctx.profile(name).current_number().ok().flatten().is_some()
                });
                let unchanged = match synced {
                    // The same store path (source_of), the same system.
                    Some(_) if entry.system.is_some() => true,
                    Some(synced) => flakes.source_unchanged(entry.flake.as_deref(), synced)?,
                    None => false,
                };
                if unchanged {
                    Action::Unchanged
                } else {
                    Action::Update
                }
            }
        };
        plan.push((name.clone(), action));
    }
    if request.prune {
        for (name, record) in &state.containers {
            if record.synced.is_some() && !listed.contains_key(name) {
                plan.push((name.clone(), Action::Remove));
            }
        }
    }
    Ok(plan)
}

/// Says what became of each container (`skipped`: not tried), and fails
/// where any failed.
fn report(mut summary: Summary, skipped: usize, json: bool) -> Result<ExitCode> {
    for list in
        [&mut summary.created, &mut summary.updated, &mut summary.unchanged, &mut summary.removed]
    {
        list.sort();
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let mut line = format!(
            "sync: {} created, {} updated, {} unchanged, {} removed, {} failed",
            summary.created.len(),
            summary.updated.len(),
            summary.unchanged.len(),
            summary.removed.len(),
            summary.failed.len()
        );
        if skipped > 0 {
            line.push_str(&format!(
                ", {skipped} not tried (stopped at the first failure; --keep-going goes on)"
            ));
        }
        println!("{line}");
    }
    if summary.failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        let failed: Vec<&String> = summary.failed.keys().collect();
        bail!(
            "sync failed for {}",
            failed.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
        )
    }
}
