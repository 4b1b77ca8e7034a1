//! The commands, grouped by what they touch, and what they share.

mod activation;
mod context;
mod generations;
mod lifecycle;
mod opening;
mod query;
mod recovery;
mod runtime;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};

use crate::cli::{Cli, Command, SourceFlags};
use crate::manual;
use crate::settings::Settings;
use crate::spec::Source;
use crate::state::Store;
pub use context::Context;

/// What a command names to build from: a container file, a system store
/// path (--system) or a flake's container (--flake); clap allows one at most.
fn source_of(name: &str, config: Option<PathBuf>, instead: SourceFlags) -> Result<Option<Source>> {
    if let Some(file) = config {
        return container_file(&file).map(Some);
    }
    if let Some(system) = instead.system {
        let real = std::fs::canonicalize(&system)
            .with_context(|| format!("system {} does not exist", system.display()))?;
        return Ok(Some(Source::System(real)));
    }
    Ok(instead.flake.map(|reference| {
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

pub fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Help { command } = &cli.command {
        manual::print(command.as_deref())?;
        return Ok(ExitCode::SUCCESS);
    }
    let (nix_args, lxc_args) = cli.command.parameters()?;
    let settings = Settings::load(&cli.locations, cli.verbose)?;
    let ctx = Context { store: Store::new(&settings.state_dir), settings, nix_args, lxc_args };
    match cli.command {
        Command::Create { name, config, instead, .. } => {
            let source = source_of(&name, config, instead)?.expect("clap requires a source");
            lifecycle::create(&ctx, &name, source)?;
        }
        Command::Update { name, config, instead, .. } => {
            let source = source_of(&name, config, instead)?;
            lifecycle::update(&ctx, &name, source)?;
        }
        Command::Destroy { name, force, .. } => lifecycle::destroy(&ctx, &name, force)?,
        Command::ListGenerations { name, json } => generations::list(&ctx, &name, json.json)?,
        Command::DeleteGenerations { name, generations } => {
            generations::delete(&ctx, &name, &generations)?
        }
        Command::SwitchGeneration { name, generation, .. } => {
            generations::switch(&ctx, &name, generation)?
        }
        Command::Rollback { name, .. } => generations::rollback(&ctx, &name)?,
        Command::Start { name, .. } => return runtime::start(&ctx, &name),
        Command::Login { name, .. } => return runtime::login(&ctx, &name),
        Command::Run { name, command, .. } => return runtime::run(&ctx, &name, &command),
        Command::Stop { name, .. } => runtime::stop(&ctx, &name)?,
        Command::Terminate { name, .. } => runtime::terminate(&ctx, &name)?,
        Command::List { json, .. } => query::list(&ctx, json.json)?,
        Command::ShowIp { name, json } => query::show_ip(&ctx, &name, json.json)?,
        Command::Exists { name } => return query::exists(&ctx, &name),
        Command::State { name, json } => query::state(&ctx, &name, json.json)?,
        Command::RepairState => recovery::repair_state(&ctx)?,
        Command::Help { .. } => unreachable!("answered above"),
    }
    Ok(ExitCode::SUCCESS)
}
