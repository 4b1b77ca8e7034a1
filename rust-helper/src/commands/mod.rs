//! The commands, grouped by what they touch, and what they share.

mod generations;
mod lifecycle;
mod query;
mod runtime;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};

use crate::cli::{Cli, Command, InsteadOfFile};
use crate::lxc::Lxc;
use crate::manual;
use crate::names;
use crate::nix::Nix;
use crate::profile::Profile;
use crate::settings::Settings;
use crate::spec::Source;
use crate::state::{ContainerLock, Entry, Store};

/// What every command works with.
pub struct Context {
    pub settings: Settings,
    pub store: Store,
}

impl Context {
    pub fn lxc(&self) -> Lxc<'_> {
        Lxc { path: &self.settings.lxc_path, verbose: self.settings.verbose }
    }

    pub fn profile(&self, name: &str) -> Profile {
        Profile::new(&self.settings.profiles_dir, name)
    }

    pub fn nix<'a>(&'a self, extra_args: &'a [String]) -> Nix<'a> {
        Nix { lib: &self.settings.nix_lib, extra_args, verbose: self.settings.verbose }
    }

    /// Fails unless the container's root can reach its rootfs and its profile.
    pub fn check_reachable(&self, name: &str) -> Result<()> {
        let host_id = self.settings.host.idmap.host_id;
        crate::lxc::check_reachable(&self.lxc().rootfs(name), host_id)?;
        crate::lxc::check_reachable(self.profile(name).dir(), host_id)
    }

    /// The entry of an existing container, read without locking: for
    /// commands that only look.
    pub fn existing(&self, name: &str) -> Result<Entry> {
        names::validate(name)?;
        let entry = self.store.read()?.containers.remove(name);
        known(name, entry)
    }

    /// For commands that change a container: takes its lock, repairs what
    /// crashed commands left behind, and returns the lock with the entry.
    pub fn lock_existing(&self, name: &str) -> Result<(ContainerLock, Entry)> {
        names::validate(name)?;
        let lock = self.store.lock_container(name)?;
        let mut locked = self.store.lock()?;
        lifecycle::repair_all(self, &mut locked, name)?;
        let entry = locked.state.containers.remove(name);
        Ok((lock, known(name, entry)?))
    }
}

fn known(name: &str, entry: Option<Entry>) -> Result<Entry> {
    match entry {
        Some(entry) if entry.exists() => Ok(entry),
        _ => bail!("no container named '{name}' (see `nixcloud-container list`)"),
    }
}

/// What a command names to build from: a container file, a system store
/// path (--system) or a flake's container (--flake); clap allows one at most.
fn source_of(
    name: &str,
    config: Option<PathBuf>,
    instead: InsteadOfFile,
) -> Result<Option<Source>> {
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
fn container_file(file: &Path) -> Result<Source> {
    let absolute = std::path::absolute(file)
        .with_context(|| format!("cannot resolve container file {}", file.display()))?;
    match std::fs::metadata(&absolute) {
        Ok(meta) if meta.is_file() => Ok(Source::File(absolute)),
        Ok(_) => bail!("container file {} is not a file", absolute.display()),
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
    let settings = Settings::load(&cli.locations, cli.verbose)?;
    let ctx = Context { store: Store::new(&settings.state_dir), settings };
    match cli.command {
        Command::Create { name, config, instead, nix, lxc } => {
            let source = source_of(&name, config, instead)?.expect("clap requires a source");
            lifecycle::create(&ctx, &name, source, &nix.words()?, &lxc.words()?)?;
        }
        Command::Update { name, config, instead, nix, lxc } => {
            let source = source_of(&name, config, instead)?;
            lifecycle::update(&ctx, &name, source, &nix.words()?, &lxc.words()?)?;
        }
        Command::Destroy { name, force, lxc } => {
            lifecycle::destroy(&ctx, &name, force, &lxc.words()?)?
        }
        Command::ListGenerations { name, json } => generations::list(&ctx, &name, json.json)?,
        Command::DeleteGenerations { name, generations } => {
            generations::delete(&ctx, &name, &generations)?
        }
        Command::SwitchGeneration { name, generation, lxc } => {
            generations::switch(&ctx, &name, generation, &lxc.words()?)?
        }
        Command::Rollback { name, lxc } => generations::rollback(&ctx, &name, &lxc.words()?)?,
        Command::Start { name, lxc } => return runtime::start(&ctx, &name, &lxc.words()?),
        Command::Login { name, lxc } => return runtime::login(&ctx, &name, &lxc.words()?),
        Command::Run { name, lxc, command } => {
            return runtime::run(&ctx, &name, &lxc.words()?, &command)
        }
        Command::Stop { name, lxc } => runtime::stop(&ctx, &name, &lxc.words()?)?,
        Command::Terminate { name, lxc } => runtime::terminate(&ctx, &name, &lxc.words()?)?,
        Command::List { lxc, json } => query::list(&ctx, &lxc.words()?, json.json)?,
        Command::ShowIp { name, json } => query::show_ip(&ctx, &name, json.json)?,
        Command::Exists { name } => return query::exists(&ctx, &name),
        Command::State { name, json } => query::state(&ctx, &name, json.json)?,
        Command::RepairState => lifecycle::repair_state(&ctx)?,
        Command::Help { .. } => unreachable!("answered above"),
    }
    Ok(ExitCode::SUCCESS)
}
