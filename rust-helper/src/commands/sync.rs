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

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::context::Context;
use crate::names;
use crate::nix::source_reads::{self, Recording};
use crate::nix::FlakeInfo;
use crate::state::{SourceReads, Synced};

/// One container of the list: a container file or a flake's container, and
/// whether it starts with the host (null: as its file says).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listed {
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(default)]
    pub flake: Option<String>,
    #[serde(default)]
    pub autostart: Option<bool>,
}

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
    let state = ctx.store.read()?;
    let mut plan: Vec<(String, Action)> = Vec::new();
    for (name, entry) in &listed {
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
                    Some(synced) => flakes.source_unchanged(entry, synced)?,
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
    if request.dry_run {
        for (name, action) in &plan {
            let said = match action {
                Action::Create => "create",
                Action::Update => "evaluate, and update if it changed",
                Action::Unchanged => "leave alone (what it reads of its flake is as it was)",
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
                let outcome = carry_out(
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
    let mut summary = summary.into_inner().expect("the summary");
    for list in
        [&mut summary.created, &mut summary.updated, &mut summary.unchanged, &mut summary.removed]
    {
        list.sort();
    }
    let skipped = queue.into_inner().expect("the queue").len();
    if request.json {
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

/// The containers to have: the list file's, and those of --flake.
fn read_list(
    ctx: &Context,
    request: &Request,
    busybox: &Path,
    flakes: &mut Flakes,
) -> Result<BTreeMap<String, Listed>> {
    let mut listed = BTreeMap::new();
    if let Some(file) = &request.file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the list of containers {}", file.display()))?;
        listed = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a list of containers (name: {{ file or flake, autostart }})",
                file.display()
            )
        })?;
    }
    if let Some(reference) = &request.flake {
        for name in flakes.read(ctx, reference, busybox)?.containers.clone() {
            let entry =
                Listed { file: None, flake: Some(format!("{reference}#{name}")), autostart: None };
            if listed.insert(name.clone(), entry).is_some() {
                bail!("container '{name}' is in the list file and in flake {reference}");
            }
        }
    }
    for (name, entry) in &listed {
        names::validate(name)?;
        match (&entry.file, &entry.flake) {
            (Some(file), None) if file.is_absolute() => {}
            (Some(file), None) => {
                bail!("{name}: the file {} is not an absolute path", file.display())
            }
            (None, Some(flake)) if flake.contains('#') => {
                flakes.read(ctx, flake_reference(flake), busybox)?;
            }
            (None, Some(flake)) => {
                bail!("{name}: flake {flake} does not name a container (<ref>#<name>)")
            }
            _ => bail!("{name}: name a file or a flake, one of them"),
        }
    }
    Ok(listed)
}

/// The source an entry of the list names.
fn source_of(entry: &Listed) -> crate::spec::Source {
    match (&entry.file, &entry.flake) {
        (Some(file), _) => crate::spec::Source::File(file.clone()),
        (_, Some(flake)) => crate::spec::Source::Flake(flake.clone()),
        _ => unreachable!("read_list checked each entry"),
    }
}

/// The reference of a flake's container without its `#<name>`.
fn flake_reference(flake: &str) -> &str {
    flake.split_once('#').map_or(flake, |(reference, _)| reference)
}

/// For each flake's container: what its generation depends on besides its
/// flake's source (which locks the flake's inputs): this toolkit, the
/// busybox that builds generations, the host file, root's autostart and
/// -n. The source is `Flakes::source_unchanged`'s.
fn fingerprints(
    ctx: &Context,
    listed: &BTreeMap<String, Listed>,
    busybox: &Path,
) -> BTreeMap<String, String> {
    let host = std::fs::read_to_string(&ctx.settings.host_file).unwrap_or_default();
    listed
        .iter()
        .filter(|(_, entry)| entry.flake.is_some())
        .map(|(name, entry)| {
            let inputs = format!(
                "{} {} {} {:?} {}",
                ctx.settings.nix_lib.display(),
                busybox.display(),
                crate::lxc::digest(&host),
                entry.autostart,
                ctx.nix_args.join(" ")
            );
            (name.clone(), crate::lxc::digest(&inputs))
        })
        .collect()
}

/// The flakes of the list, each read once (lib/cli.nix's flakeInfo: one
/// Nix process, none of their containers evaluated).
#[derive(Default)]
struct Flakes {
    read: BTreeMap<String, Flake>,
}

/// A flake as sync read it, and the shape of its source once it is needed
/// (by any of the worker threads).
struct Flake {
    info: FlakeInfo,
    shape: std::sync::OnceLock<String>,
}

impl Flake {
    fn shape(&self) -> Result<&str> {
        if let Some(shape) = self.shape.get() {
            return Ok(shape);
        }
        let shape = source_reads::shape(&self.info.path)?;
        Ok(self.shape.get_or_init(|| shape))
    }

    /// The digest of `files` of this source (source_reads.rs).
    fn digest(&self, files: &std::collections::BTreeSet<String>) -> Result<String> {
        Ok(source_reads::digest(self.shape()?, &self.info.path, files))
    }
}

impl Flakes {
    fn read(&mut self, ctx: &Context, reference: &str, busybox: &Path) -> Result<&FlakeInfo> {
        if !self.read.contains_key(reference) {
            let info = ctx.nix().flake_info(reference, busybox)?;
            let flake = Flake { info, shape: std::sync::OnceLock::new() };
            self.read.insert(reference.to_string(), flake);
        }
        Ok(&self.read[reference].info)
    }

    fn of(&self, entry: &Listed) -> Option<&Flake> {
        entry.flake.as_deref().and_then(|flake| self.read.get(flake_reference(flake)))
    }

    /// Whether a flake's container's source is, for it, as when sync last
    /// evaluated it: the same source, or one in which what its evaluation
    /// read is the same (source_reads.rs).
    fn source_unchanged(&self, entry: &Listed, synced: &Synced) -> Result<bool> {
        let Some(flake) = self.of(entry) else { return Ok(false) };
        if synced.source_hash.as_ref() == Some(&flake.info.nar_hash) {
            return Ok(true);
        }
        let Some(reads) = &synced.reads else { return Ok(false) };
        Ok(flake.digest(&reads.files)? == reads.digest)
    }
}

/// What sync records of container `name` of `flake` that a helper process
/// of its own evaluated, `record` holding what that read of the source. A
/// generation that sync found before not to depend on all of the source
/// (`previous`) is not looked at again.
fn synced_from_flake(
    ctx: &Context,
    name: &str,
    flake: &Flake,
    fingerprint: Option<String>,
    record: &Path,
    previous: Option<&SourceReads>,
) -> Result<Synced> {
    let info = &flake.info;
    let generation = ctx.profile(name).current()?.map(|g| g.path);
    let reads = match (Recording::read_record(record), generation) {
        (Some(files), Some(generation)) => {
            let known = previous.is_some_and(|reads| reads.generation == generation);
            let whole = !known
                && source_reads::names_whole_source(&generation, &info.path, &info.identifiers)?;
            if whole {
                None
            } else {
                Some(SourceReads { digest: flake.digest(&files)?, files, generation })
            }
        }
        _ => None,
    };
    Ok(Synced { fingerprint, source_hash: Some(info.nar_hash.clone()), reads })
}

/// Does `action` for container `name` through a helper process of its own,
/// and records what sync did.
fn carry_out(
    ctx: &Context,
    request: &Request,
    name: &str,
    action: Action,
    entry: Option<&Listed>,
    fingerprint: Option<&String>,
    flakes: &Flakes,
) -> Result<Action> {
    let helper = std::env::current_exe().context("cannot find this helper's program")?;
    // The flake as this sync fetched it, for the helper to build from
    // (flake_inputs.rs).
    let handed = match entry.and_then(|entry| entry.flake.as_deref()) {
        Some(flake) => {
            ctx.flake_fetches.hand_down(flake_reference(flake), &ctx.settings.state_dir)?
        }
        None => None,
    };
    let handed = handed.as_ref().map(|file| (crate::nix::flake_inputs::HANDED_ENV, file.path()));
    let run_with = |args: &[String], record: Option<String>| -> Result<()> {
        let output = Command::new(&helper)
            .args(args)
            .envs(location_env(ctx))
            .envs(handed)
            .envs(record.map(|value| (source_reads::RECORD_ENV, value)))
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", helper.display()))?;
        // One container's output together, each line named.
        for line in String::from_utf8_lossy(&output.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&output.stderr).lines())
        {
            if !line.starts_with("error:") {
                eprintln!("{name}: {line}");
            }
        }
        if output.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let said =
                stderr.lines().rev().find(|line| line.starts_with("error:")).unwrap_or("failed");
            bail!("{}", said.trim_start_matches("error:").trim())
        }
    };
    let run = |args: &[String]| run_with(args, None);
    match action {
        Action::Unchanged => return Ok(Action::Unchanged),
        Action::Remove => {
            run(&["destroy".into(), name.into(), "--force".into()])?;
            return Ok(Action::Remove);
        }
        Action::Create | Action::Update => {}
    }
    let entry = entry.expect("listed containers are created or updated");
    let before = ctx.profile(name).current_number().ok().flatten();
    let mut args = vec![
        if action == Action::Create { "create" } else { "update" }.to_string(),
        name.to_string(),
    ];
    match (&entry.file, &entry.flake) {
        (Some(file), _) => args.push(file.display().to_string()),
        (_, Some(flake)) => args.extend(["--flake".to_string(), flake.clone()]),
        _ => unreachable!("read_list checked each entry"),
    }
    let autostart = match entry.autostart {
        Some(true) => "yes",
        Some(false) => "no",
        None => "file",
    };
    args.extend(["--autostart".to_string(), autostart.to_string()]);
    args.extend(request.nix_args.iter().cloned());
    if action == Action::Update {
        args.extend(request.activation_args.iter().cloned());
    }
    // A flake's container: what its evaluations read of the flake's source.
    let flake = flakes.of(entry);
    let record = flake
        .map(|_| tempfile::Builder::new().prefix("reads-").tempfile_in(&ctx.settings.state_dir))
        .transpose()
        .context("cannot make a file in the state directory")?;
    run_with(
        &args,
        flake.zip(record.as_ref()).map(|(flake, record)| {
            source_reads::Recording::env_value(&flake.info.path, record.path())
        }),
    )?;
    let synced = match flake.zip(record.as_ref()) {
        Some((flake, record)) => {
            let previous = ctx.existing(name)?.synced.and_then(|synced| synced.reads);
            let fingerprint = fingerprint.cloned();
            synced_from_flake(ctx, name, flake, fingerprint, record.path(), previous.as_ref())?
        }
        None => Synced { fingerprint: fingerprint.cloned(), source_hash: None, reads: None },
    };
    record_synced(ctx, name, synced)?;
    if action == Action::Create {
        let record = ctx.existing(name)?;
        let starts = ctx
            .profile(name)
            .current()?
            .map(|g| g.meta())
            .transpose()?
            .is_some_and(|meta| meta.autostart());
        if starts && record.exists() {
            run(&["start".into(), name.into()])?;
        }
        return Ok(Action::Create);
    }
    let after = ctx.profile(name).current_number().ok().flatten();
    Ok(if after == before { Action::Unchanged } else { Action::Update })
}

/// Records that sync made or updated container `name`, and from what.
fn record_synced(ctx: &Context, name: &str, synced: Synced) -> Result<()> {
    let mut locked = ctx.store.lock()?;
    if let Some(entry) = locked.state.containers.get_mut(name) {
        entry.synced = Some(synced);
        locked.save()?;
    }
    Ok(())
}

/// The locations this helper runs with, for the helpers it starts.
fn location_env(ctx: &Context) -> Vec<(&'static str, std::ffi::OsString)> {
    let settings = &ctx.settings;
    let mut env = vec![
        ("NIXCLOUD_CONTAINER_LXC_PATH", settings.lxc_path.clone().into_os_string()),
        ("NIXCLOUD_CONTAINER_PROFILES_DIR", settings.profiles_dir.clone().into_os_string()),
        ("NIXCLOUD_CONTAINER_STATE_DIR", settings.state_dir.clone().into_os_string()),
        ("NIXCLOUD_CONTAINER_NIX_LIB", settings.nix_lib.clone().into_os_string()),
        ("NIXCLOUD_CONTAINER_HOST_CONFIG", settings.host_file.clone().into_os_string()),
    ];
    if let Some(busybox) = &settings.busybox {
        env.push(("NIXCLOUD_CONTAINER_BUSYBOX", busybox.clone().into_os_string()));
    }
    env
}
