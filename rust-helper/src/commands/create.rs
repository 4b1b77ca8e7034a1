//! create: a new container, as generation 1 of a container file.
//!
//! It holds the container's lock throughout and records in the state what
//! it is doing (the phase) before it touches anything, so that the next
//! command can tell a crash from work in progress (engine/recovery.rs).

use anyhow::Result;

use super::SourceOptions;
use crate::capabilities;
use crate::context::Context;
use crate::engine::generation::{
    build_current, fixed_state_version, reserve, BuildInputs, RootSays, RootSettings,
};
use crate::engine::new_container::{self, ensure_name_is_free};
use crate::engine::opening::{self, Opened};
use crate::engine::recovery::teardown;
use crate::error::usage;
use crate::spec::{Params, Source};
use crate::state::{ContainerLock, ContainerRecord, Phase};

/// `create`: container `name` from what `options` name, with what root says.
pub fn run(ctx: &Context, name: &str, options: SourceOptions, root: RootSays) -> Result<()> {
    let source = super::source_of(name, options)?.expect("the command line requires a source");
    if matches!(root.settings, RootSettings::Drop) {
        return Err(usage("--no-lxc-config drops what an update kept: create has nothing to drop"));
    }
    create(ctx, name, source, root)
}

fn create(ctx: &Context, name: &str, source: Source, root: RootSays) -> Result<()> {
    let Opened { lock, locked, .. } = opening::open(ctx, name)?;
    if let Err(err) = ensure_name_is_free(ctx, &locked, name) {
        if !locked.state.containers.contains_key(name) {
            lock.remove();
        }
        return Err(err);
    }
    drop(locked);
    create_locked(ctx, name, source, root, lock)
}

/// Creates container `name`, whose lock the caller holds and whose name is
/// free. On failure nothing of it stays, not even its lock file.
pub(super) fn create_locked(
    ctx: &Context,
    name: &str,
    source: Source,
    root: RootSays,
    lock: ContainerLock,
) -> Result<()> {
    // LXC's own settings are there (lxc_settings::own_config reads them).
    let prepared =
        ctx.settings.lxc_config_dir().and_then(|_| BuildInputs::find(ctx, &source, None, root));
    let inputs = match prepared {
        Ok(prepared) => prepared,
        Err(err) => {
            lock.remove();
            return Err(err);
        }
    };

    // Reserve the name and the address before anything is built.
    let reserved = (|| {
        let mut locked = ctx.store.lock()?;
        ensure_name_is_free(ctx, &locked, name)?;
        locked.state.containers.insert(
            name.to_string(),
            ContainerRecord {
                state_version: inputs.state_version.clone(),
                ..ContainerRecord::new(Phase::Creating, source.clone())
            },
        );
        let ids = locked.state.allocate_ids(&ctx.settings.host.idmap, name)?;
        let params = reserve(ctx, &mut locked, name, &source, &inputs, ids)?;
        locked.save()?;
        Ok((params, locked.state.containers[name].clone()))
    })();
    let (params, reserved_entry) = match reserved {
        Ok(reserved) => reserved,
        Err(err) => {
            lock.remove();
            return Err(err);
        }
    };

    // What its capabilities keep for what it holds (its ports' guard) first:
    // a failed create takes it away with the rest.
    let made = capabilities::entry_changed(ctx, name, None, Some(&reserved_entry))
        .and_then(|()| build_and_register(ctx, name, &params, &inputs));
    if let Err(err) = made {
        let mut locked = ctx.store.lock()?;
        // The lock file goes with the rest (held until `lock` is dropped).
        if let Err(cleanup) = teardown(ctx, &mut locked, name) {
            eprintln!("warning: cleaning up after the failed create: {cleanup:#}");
        }
        drop(lock);
        return Err(err);
    }

    let mut locked = ctx.store.lock()?;
    let entry = locked.state.containers.get_mut(name).expect("the entry was reserved");
    entry.phase = Phase::Ready;
    entry.root_settings = inputs.root_settings.map(|(file, _)| file);
    entry.autostart = inputs.autostart;
    entry.state_version = fixed_state_version(ctx, name, inputs.state_version)?;
    locked.save()?;
    println!(
        "created container '{name}' ({} on {}), generation 1",
        params.hostonly.address, params.hostonly.bridge
    );
    Ok(())
}

/// Builds generation 1 and registers the container with LXC.
fn build_and_register(
    ctx: &Context,
    name: &str,
    params: &Params,
    inputs: &BuildInputs,
) -> Result<()> {
    new_container::prepare_directories(ctx, name, params.idmap)?;
    build_current(ctx, name, params, inputs)?;
    new_container::make_container_directory(ctx, name, params.idmap.host_id)?;
    let root_settings = inputs.root_settings.as_ref().map(|(_, text)| text.as_str());
    new_container::register(ctx, name, params.idmap.host_id, &inputs.spec, root_settings)?;
    new_container::add(ctx, name)
}
