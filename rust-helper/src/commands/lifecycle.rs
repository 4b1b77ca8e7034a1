//! create, update, destroy, and the repair of what a crashed command left.
//!
//! Each of them holds the container's lock throughout and records in the
//! state what it is doing (phase) before it touches anything, so that the
//! next command can tell a crash from work in progress and finish or undo it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};

use super::generations::switch_live;
use super::Context;
use crate::names;
use crate::network;
use crate::spec::{Params, Source, Spec};
use crate::state::{Address, Entry, Locked, Phase};

pub fn create(
    ctx: &Context,
    name: &str,
    source: Source,
    nix_args: &[String],
    lxc_args: &[String],
) -> Result<()> {
    names::validate(name)?;
    let _lock = ctx.store.lock_container(name)?;
    {
        let mut locked = ctx.store.lock()?;
        repair_all(ctx, &mut locked, name)?;
        ensure_name_is_free(ctx, &locked, name)?;
    }
    create_locked(ctx, name, source, nix_args, lxc_args)
}

/// Creates container `name`, whose lock the caller holds and whose name is free.
fn create_locked(
    ctx: &Context,
    name: &str,
    source: Source,
    nix_args: &[String],
    lxc_args: &[String],
) -> Result<()> {
    ctx.check_reachable(name)?;
    let tools = BuildTools::find(ctx)?;
    let spec = ctx.nix(nix_args).eval_spec(&source)?;
    let wanted =
        network::wanted(&spec.network, &ctx.settings.host).with_context(|| source.to_string())?;

    // Reserve the name and the address before anything is built.
    let params = {
        let mut locked = ctx.store.lock()?;
        repair_all(ctx, &mut locked, name)?;
        ensure_name_is_free(ctx, &locked, name)?;
        locked.state.containers.insert(
            name.to_string(),
            Entry {
                phase: Phase::Creating,
                source: source.clone(),
                automatic_ip: None,
                addresses: BTreeSet::new(),
                switched_from: None,
            },
        );
        let params = reserve(ctx, &mut locked, name, &source, &spec, wanted)?;
        locked.save()?;
        params
    };

    if let Err(err) = build_and_register(ctx, name, &params, &tools, nix_args, lxc_args) {
        let mut locked = ctx.store.lock()?;
        if let Err(cleanup) = teardown(ctx, &mut locked, name) {
            eprintln!("warning: cleaning up after the failed create: {cleanup:#}");
        }
        return Err(err);
    }

    let mut locked = ctx.store.lock()?;
    locked.state.containers.get_mut(name).expect("the entry was reserved").phase = Phase::Ready;
    locked.save()?;
    println!(
        "created container '{name}' ({} on {}), generation 1",
        params.hostonly.address, params.hostonly.bridge
    );
    Ok(())
}

/// Claims the address `wanted` names for `name` and resolves what a build needs.
fn reserve(
    ctx: &Context,
    locked: &mut Locked,
    name: &str,
    source: &Source,
    spec: &Spec,
    wanted: network::Wanted,
) -> Result<Params> {
    let host = &ctx.settings.host;
    let bridge = network::bridge(&spec.network, host);
    let address =
        locked.state.claim(host, name, bridge, wanted).with_context(|| source.to_string())?;
    let (hostonly, internet) =
        network::interfaces(&spec.network, host, address).with_context(|| source.to_string())?;
    Ok(Params {
        name: name.to_string(),
        source: source.clone(),
        profile_dir: ctx.profile(name).dir().to_path_buf(),
        rootfs: ctx.lxc().rootfs(name),
        idmap: host.idmap,
        hostonly,
        internet,
    })
}

/// What building and registering need from the host, found before anything
/// is reserved, so that a missing tool fails a command before it starts.
struct BuildTools {
    busybox: PathBuf,
    lxc_config_dir: PathBuf,
}

impl BuildTools {
    fn find(ctx: &Context) -> Result<BuildTools> {
        Ok(BuildTools {
            busybox: ctx.settings.busybox()?,
            lxc_config_dir: ctx.settings.lxc_config_dir()?,
        })
    }
}

/// Builds generation 1 and registers the container with LXC.
fn build_and_register(
    ctx: &Context,
    name: &str,
    params: &Params,
    tools: &BuildTools,
    nix_args: &[String],
    lxc_args: &[String],
) -> Result<()> {
    let profile = ctx.profile(name);
    std::fs::create_dir_all(profile.dir())
        .with_context(|| format!("cannot create {}", profile.dir().display()))?;
    ctx.nix(nix_args).build_generation(&profile, params, &tools.busybox)?;

    let lxc = ctx.lxc();
    let dir = lxc.container_dir(name);
    std::fs::create_dir_all(&ctx.settings.lxc_path)
        .with_context(|| format!("cannot create {}", ctx.settings.lxc_path.display()))?;
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::create_dir(lxc.rootfs(name))
        .with_context(|| format!("cannot create {}", lxc.rootfs(name).display()))?;

    let config = tempfile::Builder::new()
        .prefix(&format!("{name}.config."))
        .tempfile_in(&ctx.settings.state_dir)
        .context("cannot write the container's LXC config")?;
    std::fs::write(config.path(), crate::lxc::config_text(&tools.lxc_config_dir, &profile.link()))
        .context("cannot write the container's LXC config")?;
    lxc.create(name, config.path(), lxc_args)?;
    lxc.make_mount_points(name, ctx.settings.host.idmap.host_id)
}

pub fn update(
    ctx: &Context,
    name: &str,
    source: Option<Source>,
    nix_args: &[String],
    lxc_args: &[String],
) -> Result<()> {
    names::validate(name)?;
    let _lock = ctx.store.lock_container(name)?;
    let entry = {
        let mut locked = ctx.store.lock()?;
        repair_all(ctx, &mut locked, name)?;
        match locked.state.containers.get(name) {
            Some(entry) => entry.clone(),
            None => {
                let Some(source) = source else {
                    bail!("no container named '{name}': give a container file to create it");
                };
                ensure_name_is_free(ctx, &locked, name)?;
                drop(locked);
                return create_locked(ctx, name, source, nix_args, lxc_args);
            }
        }
    };
    let source = source.unwrap_or(entry.source);
    let busybox = ctx.settings.busybox()?;
    let spec = ctx.nix(nix_args).eval_spec(&source)?;
    let wanted =
        network::wanted(&spec.network, &ctx.settings.host).with_context(|| source.to_string())?;

    let profile = ctx.profile(name);
    let before = profile.generations()?;
    let previous = profile.current_number()?.context("the container has no current generation")?;
    let params = {
        let mut locked = ctx.store.lock()?;
        let params = reserve(ctx, &mut locked, name, &source, &spec, wanted)?;
        locked
            .state
            .containers
            .get_mut(name)
            .expect("checked above")
            .mark_switching(Some(previous));
        locked.save()?;
        params
    };

    let built = ctx.nix(nix_args).build_generation(&profile, &params, &busybox);
    let current = profile.current_number()?.unwrap_or(previous);
    let activated = match built {
        Ok(()) if current != previous => switch_live(ctx, name, previous, lxc_args),
        other => other,
    };
    if activated.is_err() && current != previous && before.iter().all(|g| g.number != current) {
        // The failed generation was new: take it away again, so that the
        // profile is as it was.
        let removal = ctx.nix(&[]).delete_generations(&profile, &[current.to_string()]);
        if let Err(err) = removal {
            eprintln!("warning: cannot delete the failed generation {current}: {err:#}");
        }
    }

    let mut locked = ctx.store.lock()?;
    let entry = locked.state.containers.get_mut(name).expect("held under the container lock");
    if activated.is_ok() {
        entry.source = source;
    }
    entry.mark_switching(None);
    entry.addresses = addresses_in_use(ctx, name, entry.automatic_ip)?;
    locked.save()?;
    activated?;

    if current == previous {
        println!("container '{name}' is unchanged: generation {current} stays current");
    } else {
        println!("container '{name}': generation {current} is current");
    }
    Ok(())
}

pub fn destroy(ctx: &Context, name: &str, force: bool, lxc_args: &[String]) -> Result<()> {
    names::validate(name)?;
    let _lock = ctx.store.lock_container(name)?;
    let mut locked = ctx.store.lock()?;
    let interrupted =
        locked.state.containers.get(name).is_some_and(|e| e.phase == Phase::Destroying);
    repair_all(ctx, &mut locked, name)?;
    let Some(entry) = locked.state.containers.get_mut(name) else {
        if interrupted {
            println!("destroyed container '{name}' (an interrupted destroy is finished)");
            return Ok(());
        }
        bail!("no container named '{name}' (see `nixcloud-container list`)");
    };
    let lxc = ctx.lxc();
    if lxc.is_defined(name) && lxc.is_running(name)? {
        if !force {
            bail!("container '{name}' is running: stop it first, or use `destroy --force`");
        }
        // Nothing inside outlives the destroy, so there is no shutdown to wait for.
        lxc.kill(name, &[]).with_context(|| format!("cannot stop container '{name}'"))?;
    }
    entry.phase = Phase::Destroying;
    locked.save()?;

    if lxc.is_defined(name) {
        if let Err(err) = lxc.destroy(name, lxc_args) {
            // Nothing was removed: the container stays as it was.
            locked.state.containers.get_mut(name).expect("still there").phase = Phase::Ready;
            locked.save()?;
            return Err(err).with_context(|| format!("cannot destroy container '{name}'"));
        }
    }
    let freed = locked.state.containers[name].addresses.clone();
    teardown(ctx, &mut locked, name)?;
    let freed: Vec<String> = freed.iter().map(|a| a.ip.to_string()).collect();
    println!("destroyed container '{name}'; freed {}", freed.join(", "));
    Ok(())
}

/// Refuses a name that is taken: by a container of ours, or by anything else
/// in LXC's directory or the profiles directory.
fn ensure_name_is_free(ctx: &Context, locked: &Locked, name: &str) -> Result<()> {
    if locked.state.containers.contains_key(name) {
        bail!(
            "container '{name}' already exists (change it with `nixcloud-container update {name}`)"
        );
    }
    let dir = ctx.lxc().container_dir(name);
    if dir.exists() {
        bail!(
            "{} exists but is not a container of nixcloud-container: choose another name or \
             remove it (lxc-destroy -n {name})",
            dir.display()
        );
    }
    let profile = ctx.profile(name);
    if profile.dir().exists() {
        bail!(
            "profile directory {} exists but belongs to no container: choose another name or remove it",
            profile.dir().display()
        );
    }
    Ok(())
}

/// Removes what exists of container `name`: its LXC directory, its profile
/// and its state entry. The caller holds the container's lock.
fn teardown(ctx: &Context, locked: &mut Locked, name: &str) -> Result<()> {
    let dir = ctx.lxc().container_dir(name);
    match std::fs::remove_dir_all(&dir) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(err).with_context(|| format!("cannot remove {}", dir.display()));
        }
        _ => {}
    }
    ctx.profile(name).remove()?;
    locked.state.containers.remove(name);
    locked.save()
}

/// Every address container `name`'s generations use, and its automatic one.
fn addresses_in_use(
    ctx: &Context,
    name: &str,
    automatic_ip: Option<std::net::Ipv4Addr>,
) -> Result<BTreeSet<Address>> {
    let hostonly_bridge = &ctx.settings.host.hostonly.bridge;
    let mut addresses: BTreeSet<Address> = automatic_ip
        .map(|ip| Address { bridge: hostonly_bridge.clone(), ip })
        .into_iter()
        .collect();
    for generation in ctx.profile(name).generations()? {
        let hostonly = generation.meta()?.params.hostonly;
        addresses.insert(Address { bridge: hostonly.bridge, ip: hostonly.address });
    }
    Ok(addresses)
}

/// Recomputes container `name`'s addresses from its generations, after
/// generations were deleted.
pub fn refresh_addresses(ctx: &Context, name: &str) -> Result<()> {
    let mut locked = ctx.store.lock()?;
    let Some(entry) = locked.state.containers.get_mut(name) else {
        return Ok(());
    };
    entry.addresses = addresses_in_use(ctx, name, entry.automatic_ip)?;
    locked.save()
}

/// Records that container `name`'s profile is about to switch away from
/// generation `from` (Ready again: `None`), so that a crash in between is
/// finished by the next command.
pub fn record_switch(ctx: &Context, name: &str, from: Option<u64>) -> Result<()> {
    let mut locked = ctx.store.lock()?;
    locked.state.containers.get_mut(name).context("the container is gone")?.mark_switching(from);
    locked.save()
}

/// Finishes or undoes what crashed commands left behind: container `own`
/// (whose lock the caller holds) and every other one whose lock is free.
pub fn repair_all(ctx: &Context, locked: &mut Locked, own: &str) -> Result<()> {
    let unfinished: Vec<String> = locked
        .state
        .containers
        .iter()
        .filter(|(_, entry)| entry.phase != Phase::Ready)
        .map(|(name, _)| name.clone())
        .collect();
    for name in unfinished {
        if name == own {
            repair(ctx, locked, &name)?;
        } else if let Some(_lock) = ctx.store.try_lock_container(&name)? {
            repair(ctx, locked, &name)?;
        }
    }
    Ok(())
}

/// Repairs container `name`, whose command crashed (nobody holds its lock).
fn repair(ctx: &Context, locked: &mut Locked, name: &str) -> Result<()> {
    let phase = locked.state.containers[name].phase;
    match phase {
        Phase::Ready => Ok(()),
        // A half-made container is undone; a half-destroyed one is finished.
        Phase::Creating | Phase::Destroying => {
            eprintln!("note: removing what an interrupted command left of container '{name}'");
            teardown(ctx, locked, name)
        }
        // The profile switch is atomic, but the activation that follows it
        // may not have happened, and an address claim may be stale.
        Phase::Updating => {
            let from = locked.state.containers[name].switched_from;
            let current = ctx.profile(name).current_number()?;
            if let Some(from) = from.filter(|&from| Some(from) != current) {
                eprintln!(
                    "note: finishing the interrupted switch of '{name}' from generation {from}"
                );
                if let Err(err) = switch_live(ctx, name, from, &[]) {
                    eprintln!("warning: {err:#}");
                }
            }
            let entry = locked.state.containers.get_mut(name).expect("listed above");
            entry.addresses = addresses_in_use(ctx, name, entry.automatic_ip)?;
            entry.mark_switching(None);
            locked.save()
        }
    }
}

/// Rebuilds the state from what is on disk: each profile with a current
/// generation is a container; its generations name its addresses and its
/// source. A profile without an LXC directory is a half-made container,
/// recorded as such so that the next command removes it.
pub fn repair_state(ctx: &Context) -> Result<()> {
    let (mut locked, kept) = ctx.store.lock_for_rebuild()?;
    let profiles_dir = &ctx.settings.profiles_dir;
    let hostonly_bridge = &ctx.settings.host.hostonly.bridge;
    let entries = match std::fs::read_dir(profiles_dir) {
        Ok(entries) => entries.collect::<std::io::Result<Vec<_>>>()?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => {
            return Err(err).with_context(|| format!("cannot read {}", profiles_dir.display()))
        }
    };
    for dir in entries {
        let Some(name) = dir.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if names::validate(&name).is_err() {
            continue;
        }
        let profile = ctx.profile(&name);
        let Some(current) = profile.current()? else {
            eprintln!("note: {} has no generation; left out", profile.dir().display());
            continue;
        };
        // An address no generation asked for on the hostonly bridge was allocated.
        let mut automatic_ip = None;
        for generation in profile.generations()? {
            let meta = generation.meta()?;
            let hostonly = meta.params.hostonly;
            if meta.spec.network.ip.is_none() && &hostonly.bridge == hostonly_bridge {
                automatic_ip = Some(hostonly.address);
            }
        }
        let addresses = addresses_in_use(ctx, &name, automatic_ip)?;
        let phase = if ctx.lxc().is_defined(&name) { Phase::Ready } else { Phase::Creating };
        let source = current.meta()?.params.source;
        locked.state.containers.insert(
            name.clone(),
            Entry { phase, source, automatic_ip, addresses, switched_from: None },
        );
        println!(
            "{name}: {}",
            if phase == Phase::Ready {
                "recovered"
            } else {
                "half-made, removed by the next command"
            }
        );
    }
    locked.save()?;
    match kept {
        Some(old) => println!("rebuilt the state file; the old one is kept as {}", old.display()),
        None => println!("rebuilt the state file"),
    }
    Ok(())
}
