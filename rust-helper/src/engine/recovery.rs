//! Recovery: what a crashed command left behind is finished or undone by the
//! next one, and the state is kept in step with what is on disk.
//!
//! create, update, destroy, switch-generation and rollback record what they
//! are doing (the entry's phase) before they touch anything, and hold the
//! container's lock throughout; a phase other than Ready whose lock is free
//! is what a crash left.

use anyhow::{Context as _, Result};

use crate::capabilities;
use crate::context::Context;
use crate::engine::activation::{activate_current, OnFailure};
use crate::state::{ContainerRecord, LockedState, Phase};

/// Finishes or undoes what crashed commands left behind: container `own`
/// (whose lock the caller holds) and every other one whose lock is free.
pub fn repair_all(ctx: &Context, locked: &mut LockedState, own: &str) -> Result<()> {
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

/// Gives entries made before each container had an id range of its own the
/// range their current generation maps, which they keep.
pub fn record_missing_ids(ctx: &Context, locked: &mut LockedState) -> Result<()> {
    let host = &ctx.settings.host.idmap;
    let missing: Vec<String> = locked
        .state
        .containers
        .iter()
        .filter(|(_, entry)| entry.ids.is_none())
        .map(|(name, _)| name.clone())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    for name in missing {
        let mapped = ctx.profile(&name).current()?.map(|current| current.meta()).transpose()?;
        let ids = mapped.map_or_else(|| host.first(), |meta| meta.params.idmap);
        locked.state.containers.get_mut(&name).expect("listed above").ids = Some(ids);
    }
    locked.save()
}

/// Removes the links a killed nix-env left in container `name`'s profile
/// (`Profile::interrupted_links`) and the GC roots Nix made for them, and
/// says so. The caller holds the container's lock, which every nix-env on
/// the profile runs under.
pub fn remove_interrupted_links(ctx: &Context, name: &str) -> Result<()> {
    let links = ctx.profile(name).remove_interrupted_links()?;
    for link in &links {
        eprintln!(
            "note: removed {}, which an interrupted nix-env left in the profile of '{name}'",
            link.display()
        );
    }
    crate::nix::forget_roots(&links);
    Ok(())
}

/// Repairs container `name`, whose command crashed (nobody holds its lock).
fn repair(ctx: &Context, locked: &mut LockedState, name: &str) -> Result<()> {
    remove_interrupted_links(ctx, name)?;
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
                if let Err(err) = activate_current(ctx, name, from, &[], OnFailure::RollBack) {
                    eprintln!("warning: {err:#}");
                }
            }
            let entry = locked.state.containers.get_mut(name).expect("listed above");
            let before = entry.clone();
            refresh_claims(ctx, name, entry)?;
            entry.mark_switching(None);
            let after = entry.clone();
            locked.save()?;
            capabilities::entry_changed(ctx, name, Some(&before), Some(&after))
        }
    }
}

/// Removes whatever exists of container `name`, running or not, whole or
/// half-made: its LXC directory, its profile, the GC roots Nix keeps for
/// them, its lock file, its state entry. LXC is given a config of the
/// container's name alone first, so that nothing of the container's own
/// settings (a hook of a tampered generation, an include that is gone) runs
/// or stands in the way. The caller holds the container's lock, whose file
/// goes first: a crash after this leaves the entry, whose repair makes and
/// removes it again.
pub fn teardown(ctx: &Context, locked: &mut LockedState, name: &str) -> Result<()> {
    ctx.store.forget_container_lock(name);
    let lxc = ctx.lxc();
    let dir = lxc.container_dir(name);
    if dir.exists() {
        let ids =
            locked.state.containers.get(name).map(|entry| entry.ids(&ctx.settings.host.idmap));
        lxc.secure(name, ids.unwrap_or_else(|| ctx.settings.host.idmap.first()).host_id)?;
        lxc.write_bare_config(name)?;
        if lxc.is_running(name).unwrap_or(false) {
            lxc.kill(name, &[]).with_context(|| format!("cannot stop container '{name}'"))?;
        }
        match std::fs::remove_dir_all(&dir) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(err).with_context(|| format!("cannot remove {}", dir.display()));
            }
            _ => {}
        }
    }
    let profile = ctx.profile(name);
    // Nix's roots for its generation links and its build link.
    let mut links = profile.links();
    links.push(ctx.settings.state_dir.join(crate::layout::BUILDS).join(name));
    profile.remove()?;
    crate::nix::forget_roots(&links);
    let gone = locked.state.containers.get(name).cloned();
    for capability in capabilities::ALL {
        capability.remove(ctx, name, gone.as_ref())?;
    }
    locked.state.containers.remove(name);
    locked.save()?;
    if let Err(err) = capabilities::entry_changed(ctx, name, gone.as_ref(), None) {
        eprintln!("warning: {err:#}");
    }
    Ok(())
}

/// Sets what container `name` (its `entry`) holds to what its generations
/// use: what each capability claims (its addresses, its host ports), and
/// the text of root's settings each has.
pub fn refresh_claims(ctx: &Context, name: &str, entry: &mut ContainerRecord) -> Result<()> {
    let generations = ctx
        .profile(name)
        .generations()?
        .iter()
        .map(|generation| generation.meta())
        .collect::<Result<Vec<_>>>()?;
    for capability in capabilities::ALL {
        capability.recount(&ctx.settings.host, entry, &generations);
    }
    for meta in &generations {
        if let Some(text) = &meta.params.root_settings {
            entry.root_settings_digests.insert(crate::lxc::digest(text));
        }
    }
    Ok(())
}

/// Recomputes what container `name` holds from its generations, after
/// generations were deleted.
pub fn refresh_addresses(ctx: &Context, name: &str) -> Result<()> {
    let mut locked = ctx.store.lock()?;
    let Some(entry) = locked.state.containers.get_mut(name) else {
        return Ok(());
    };
    let before = entry.clone();
    refresh_claims(ctx, name, entry)?;
    let after = entry.clone();
    locked.save()?;
    drop(locked);
    // A freed address is no longer its own to send from.
    capabilities::entry_changed(ctx, name, Some(&before), Some(&after))
}

/// Records that container `name`'s profile is about to switch away from
/// generation `from` (Ready again: `None`), so that a crash in between is
/// finished by the next command.
pub fn record_switch(ctx: &Context, name: &str, from: Option<u64>) -> Result<()> {
    let mut locked = ctx.store.lock()?;
    locked.state.containers.get_mut(name).context("the container is gone")?.mark_switching(from);
    locked.save()
}
