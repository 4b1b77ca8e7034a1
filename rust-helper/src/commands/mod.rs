//! The commands: a file for each verb, or for a few that go together
//! (start and restart, stop and terminate, ...). A verb reads as the steps
//! it takes; what verbs share is in engine/, what a container file asks for
//! in capabilities/. They take plain options: the command line is cli/'s.

pub mod attach;
pub mod autostart;
pub mod create;
pub mod destroy;
pub mod export;
pub mod generations;
pub mod import;
pub mod list;
pub mod move_;
pub mod repair;
pub mod show;
pub mod start;
pub mod stop;
pub mod sync;
pub mod update;

use std::path::PathBuf;
use std::process::{ExitCode, ExitStatus};

use anyhow::{anyhow, Context as _, Result};

use crate::context::Context;
use crate::error::{one_line, EXIT_FAILURE};
use crate::spec::Source;

/// What goes when container `name` has stopped (or did not start): the
/// record of what it was started with, and what its capabilities keep while
/// it runs (its forwarded ports).
fn stopped(ctx: &Context, name: &str) -> Result<()> {
    // Each goes whether or not the other could.
    let capabilities = crate::capabilities::stopped(ctx, name);
    let record = ctx.store.forget_started(name);
    capabilities.and(record)
}

/// The containers a command acts on: these names, or with `all` every one.
pub struct Targets {
    pub names: Vec<String>,
    pub all: bool,
}

/// What create and update build from: a container file, a system store
/// path (--system) or a flake's container (--flake); one at most.
pub struct SourceOptions {
    pub file: Option<PathBuf>,
    pub system: Option<PathBuf>,
    pub flake: Option<String>,
}

/// What container `name` is built from, as `options` name it.
fn source_of(name: &str, options: SourceOptions) -> Result<Option<Source>> {
    if let Some(file) = options.file {
        return container_file(&file).map(Some);
    }
    if let Some(system) = options.system {
        let real = std::fs::canonicalize(&system)
            .with_context(|| format!("system {} does not exist", system.display()))?;
        return Ok(Some(Source::System(real)));
    }
    Ok(options.flake.map(|reference| {
        // nixos-container's convention: the attribute defaults to the container's name.
        if reference.contains('#') {
            Source::Flake(reference)
        } else {
            Source::Flake(format!("{reference}#{name}"))
        }
    }))
}

/// A container file given on the command line, as an absolute path. Symlinks
/// are kept, so a later `update` follows one that was moved.
fn container_file(file: &std::path::Path) -> Result<Source> {
    let absolute = std::path::absolute(file)
        .with_context(|| format!("cannot resolve container file {}", file.display()))?;
    match std::fs::metadata(&absolute) {
        Ok(meta) if meta.is_file() => Ok(Source::File(absolute)),
        Ok(_) => anyhow::bail!("container file {} is not a file", absolute.display()),
        Err(err) => {
            Err(err).with_context(|| format!("cannot read container file {}", absolute.display()))
        }
    }
}

/// The names of every container whose state (running or not) `wanted` accepts.
fn all_containers(ctx: &Context, running: Option<bool>) -> Result<Vec<String>> {
    let names: Vec<String> = ctx
        .store
        .read()?
        .containers
        .into_iter()
        .filter(|(_, record)| record.exists())
        .map(|(name, _)| name)
        .collect();
    let Some(running) = running else {
        return Ok(names);
    };
    let active = ctx.lxc().active_states(names.iter().map(String::as_str))?;
    Ok(names.into_iter().filter(|name| active.contains_key(name) == running).collect())
}

/// Runs `each` on every container named; one failure does not stop the
/// others. With one container its error is the command's; with several,
/// each failure is a line of its own and the error sums them up.
fn for_each(
    names: Vec<String>,
    verb: &str,
    each: impl Fn(&str) -> Result<ExitCode>,
) -> Result<ExitCode> {
    if let [single] = &names[..] {
        return each(single);
    }
    let mut failed = Vec::new();
    for name in &names {
        match each(name) {
            Ok(code) if code == ExitCode::SUCCESS => {}
            Ok(_) => failed.push(name.clone()),
            Err(err) => {
                eprintln!("{name}: {}", one_line(&err));
                failed.push(name.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(anyhow!(
            "{verb} failed for {} of {} containers: {}",
            failed.len(),
            names.len(),
            failed.join(", ")
        ))
    }
}

/// The containers `targets` names: its names, or with --all every container
/// whose running state `all_running` accepts (None: any).
fn targets(ctx: &Context, targets: Targets, all_running: Option<bool>) -> Result<Vec<String>> {
    if targets.all {
        all_containers(ctx, all_running)
    } else {
        Ok(targets.names)
    }
}

/// The exit code of a command that ran inside a container (login, run,
/// start -F): its own.
fn exit_code(status: ExitStatus) -> ExitCode {
    match status.code() {
        Some(code) => ExitCode::from(code.clamp(0, 255) as u8),
        None => ExitCode::from(EXIT_FAILURE),
    }
}
