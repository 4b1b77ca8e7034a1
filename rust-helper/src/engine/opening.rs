//! The opening that commands changing a container share: its lock, then
//! the state's, with what crashed commands left behind repaired first.

use anyhow::Result;

use crate::context::{unknown, Context};
use crate::engine::recovery;
use crate::names;
use crate::state::{ContainerLock, ContainerRecord, LockedState, Phase};

/// A container's lock and the state, taken in that order, with what crashed
/// commands left behind repaired.
pub struct Opened {
    pub lock: ContainerLock,
    pub locked: LockedState,
    /// The phase the container was repaired from, if a crash left it unfinished.
    pub repaired: Option<Phase>,
}

/// Takes container `name`'s lock, then the state's, and repairs what
/// crashed commands left behind.
pub fn open(ctx: &Context, name: &str) -> Result<Opened> {
    let lock = lock_named(ctx, name)?;
    open_locked(ctx, name, lock)
}

/// Container `name`'s lock, the name checked first.
fn lock_named(ctx: &Context, name: &str) -> Result<ContainerLock> {
    names::validate(name)?;
    ctx.store.lock_container(name)
}

/// `open`, container `name`'s lock taken.
fn open_locked(ctx: &Context, name: &str, lock: ContainerLock) -> Result<Opened> {
    let mut locked = ctx.store.lock()?;
    let repaired = locked
        .state
        .containers
        .get(name)
        .map(|entry| entry.phase)
        .filter(|&phase| phase != Phase::Ready);
    recovery::repair_all(ctx, &mut locked, name)?;
    // Its own profile, whatever its phase: a nix-env killed with a command
    // that recorded none (delete-generations) leaves links too.
    recovery::remove_interrupted_links(ctx, name)?;
    recovery::record_missing_ids(ctx, &mut locked)?;
    Ok(Opened { lock, locked, repaired })
}

/// For commands that change an existing container: `open`, and its
/// entry. For a name no container has, the lock file goes again.
pub fn lock_existing(ctx: &Context, name: &str) -> Result<(ContainerLock, ContainerRecord)> {
    let lock = lock_named(ctx, name)?;
    // Usually nothing is left to repair: then its own entry is all this
    // needs, and the state of every other container is only glanced at
    // (`start` pays for the state's size otherwise).
    if let Some(entry) = ctx.store.settled_entry(name) {
        recovery::remove_interrupted_links(ctx, name)?;
        return Ok((lock, entry));
    }
    let Opened { lock, locked, .. } = open_locked(ctx, name, lock)?;
    match locked.state.containers.get(name).filter(|entry| entry.exists()) {
        Some(entry) => Ok((lock, entry.clone())),
        None => {
            if !locked.state.containers.contains_key(name) {
                lock.remove();
            }
            Err(unknown(name))
        }
    }
}
