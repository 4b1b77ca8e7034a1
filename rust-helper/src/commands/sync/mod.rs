//! `sync`: makes this host's containers those of a list. The missing are
//! created (and started where they start with the host), those that changed
//! updated, the others left alone: a container is not even evaluated while
//! what its generation depends on is as when sync last made it: of a
//! flake's source, or of the directory a container file is named in, the
//! files its evaluation read (source_reads.rs, files.rs), and this toolkit,
//! busybox, `<nixpkgs>`, the host file and root's decisions; any other is
//! evaluated and, where its generation is the one it has, neither built
//! nor switched. With --prune the containers this source created (or took
//! over with --adopt) that it no longer names are destroyed: never one made
//! by hand, nor one of another source (list.rs `SyncSource`). One sync runs
//! at a time (state.rs `lock_sync`).
//!
//! Each container is created or updated by a helper process of its own
//! (`create`, `update`), so that one container's evaluation never sees
//! another's and one that fails fails alone; -j of them run side by side,
//! and their live switches one at a time (the activation lock).

mod carry_out;
mod files;
mod flakes;
mod list;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::context::Context;
use files::ContainerFiles;
use flakes::Flakes;
use list::{fingerprints, read_list, source_of, List};

/// What `sync` was asked.
pub struct Request {
    pub file: Option<PathBuf>,
    pub flake: Option<String>,
    pub prune: bool,
    /// The name of the list's source, for a list whose file moves (the
    /// host module's, in the store); None: the list file's real path.
    pub source: Option<String>,
    /// Take over the listed containers made by hand or by another source.
    pub adopt: bool,
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
    /// Taken over by this source (--adopt): its --prune may remove them.
    adopted: Vec<String>,
    failed: BTreeMap<String, String>,
}

pub fn sync(ctx: &Context, request: Request) -> Result<ExitCode> {
    let busybox = ctx.nix().busybox_in_store(&ctx.settings.busybox()?)?;
    let mut flakes = Flakes::default();
    let list = read_list(ctx, &request, &busybox, &mut flakes)?;
    let files = ContainerFiles::new(ctx, list.listed.values().filter_map(|e| e.file.as_deref()))?;
    let fingerprints = fingerprints(ctx, &list.listed, &busybox, &files);
    // A second sync plans from what the first made.
    let _one_sync = if request.dry_run { None } else { Some(ctx.store.lock_sync()?) };
    let steps = plan(ctx, &request, &list, &fingerprints, &flakes, &files)?;
    if request.dry_run {
        for (name, why) in &list.refused {
            println!("{name}: would fail: {why}");
        }
        for Step { name, action, adopt } in &steps {
            let said = match action {
                Action::Create => "create",
                Action::Update => "evaluate, and update if it changed",
                Action::Unchanged => {
                    "leave alone (its system, or what its evaluation read, is as it was)"
                }
                Action::Remove => "destroy (no longer listed)",
            };
            let adopt = if *adopt { ", and take it over" } else { "" };
            println!("{name}: would {said}{adopt}");
        }
        return Ok(ExitCode::SUCCESS);
    }

    let mut summary = Summary::default();
    for (name, why) in &list.refused {
        eprintln!("{name}: {why}");
        summary.failed.insert(name.clone(), why.clone());
    }
    // An entry refused as listed stops the others as any failure does.
    if !summary.failed.is_empty() && !request.keep_going {
        return report(summary, steps.len(), request.json);
    }
    // Each job's Nix processes may take builds.memory: -j N of them take N
    // times that (build_limits.rs).
    let limits = crate::nix::build_limits::Limits::of(&ctx.settings.host.builds);
    let (jobs, fewer) = limits.parallel(request.jobs);
    if let Some(why) = fewer {
        eprintln!("sync: runs {why}");
    }
    let summary = Mutex::new(summary);
    let queue = Mutex::new(steps.into_iter().collect::<VecDeque<_>>());
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Some(step) = queue.lock().expect("the queue").pop_front() else {
                    break;
                };
                let outcome = carry_out::carry_out(
                    ctx,
                    &request,
                    &step,
                    list.listed.get(&step.name),
                    fingerprints.get(&step.name),
                    (&flakes, &files),
                );
                let mut summary = summary.lock().expect("the summary");
                let name = step.name;
                match outcome {
                    Ok(done) => {
                        if step.adopt {
                            summary.adopted.push(name.clone());
                        }
                        match done {
                            Action::Create => summary.created.push(name),
                            Action::Update => summary.updated.push(name),
                            Action::Unchanged => summary.unchanged.push(name),
                            Action::Remove => summary.removed.push(name),
                        }
                    }
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

/// What to do with one container, and whether this source takes it over
/// (--adopt).
struct Step {
    name: String,
    action: Action,
    adopt: bool,
}

/// What to do with each container: those of the list, and with --prune
/// those this source created that the list no longer names.
fn plan(
    ctx: &Context,
    request: &Request,
    list: &List,
    fingerprints: &BTreeMap<String, String>,
    flakes: &Flakes,
    files: &ContainerFiles,
) -> Result<Vec<Step>> {
    let state = ctx.store.read()?;
    let mut steps = Vec::new();
    for (name, entry) in &list.listed {
        let mut adopt = false;
        let action = match state.containers.get(name).filter(|record| record.exists()) {
            None => Action::Create,
            Some(record) => {
                if record.sync_source.as_ref() != Some(&entry.source) {
                    if request.adopt {
                        adopt = true;
                    } else {
                        let made_by = record.sync_source.as_deref().unwrap_or("hand");
                        eprintln!(
                            "note: {name} was made by {made_by}, not by this sync's {}: it is \
                             kept as listed, and never pruned by it (--adopt takes it over)",
                            entry.source
                        );
                    }
                }
                let synced = record.synced.as_ref().filter(|synced| {
                    fingerprints.contains_key(name)
                        && synced.fingerprint.as_ref() == fingerprints.get(name)
                        && record.source == source_of(entry)
                        && ctx.profile(name).current_number().ok().flatten().is_some()
                });
                let unchanged = match (synced, &entry.file) {
                    // The same store path (source_of), the same system.
                    (Some(_), _) if entry.system.is_some() => true,
                    (Some(synced), Some(file)) => files.unchanged(ctx, name, file, synced)?,
                    (Some(synced), None) => {
                        flakes.source_unchanged(entry.flake.as_deref(), synced)?
                    }
                    (None, _) => false,
                };
                if unchanged {
                    Action::Unchanged
                } else {
                    Action::Update
                }
            }
        };
        steps.push(Step { name: name.clone(), action, adopt });
    }
    if request.prune {
        for (name, record) in &state.containers {
            let ours = record.sync_source.as_ref().is_some_and(|made| list.sources.contains(made));
            let listed = list.listed.contains_key(name) || list.refused.contains_key(name);
            if ours && !listed {
                steps.push(Step { name: name.clone(), action: Action::Remove, adopt: false });
            }
        }
    }
    Ok(steps)
}

/// Says what became of each container (`skipped`: not tried), and fails
/// where any failed.
fn report(mut summary: Summary, skipped: usize, json: bool) -> Result<ExitCode> {
    for list in [
        &mut summary.created,
        &mut summary.updated,
        &mut summary.unchanged,
        &mut summary.removed,
        &mut summary.adopted,
    ] {
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
        if !summary.adopted.is_empty() {
            line.push_str(&format!(", {} adopted", summary.adopted.len()));
        }
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
