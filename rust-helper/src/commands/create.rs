//! create: a new container, as generation 1 of a container file.
//!
//! It holds the container's lock throughout and records in the state what
//! it is doing (the phase) before it touches anything, so that the next
//! command can tell a crash from work in progress (engine/recovery.rs).

use anyhow::{bail, Context as _, Result};

use super::SourceOptions;
use crate::capabilities;
use crate::capabilities::network::addresses as network;
use crate::context::Context;
use crate::engine::generation::{
    build_current, fixed_state_version, reserve, BuildInputs, RootSays, RootSettings,
};
use crate::engine::lxc_settings;
use crate::engine::opening::{self, Opened};
use crate::engine::recovery::teardown;
use crate::error::usage;
use crate::spec::{Params, Source};
use crate::state::{ContainerLock, ContainerRecord, LockedState, Phase};

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
    ctx.check_reachable(name, params.idmap)?;
    crate::system::host_dirs::root_dir(&ctx.settings.lxc_path)?;
    let profile = ctx.profile(name);
    crate::system::host_dirs::root_dir(profile.dir())?;
    build_current(ctx, name, params, inputs)?;

    let lxc = ctx.lxc();
    let dir = lxc.container_dir(name);
    let host_id = params.idmap.host_id;
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    lxc.secure(name, host_id)?;
    std::fs::create_dir(lxc.rootfs(name))
        .with_context(|| format!("cannot create {}", lxc.rootfs(name).display()))?;
    // lxc-create copies it to <dir>/config; a crash leaves it where the
    // teardown of the half-made container removes it.
    let given = dir.join(crate::layout::GIVEN_LXC_CONFIG);
    let root_settings = inputs.root_settings.as_ref().map(|(_, text)| text.as_str());
    let config = lxc_settings::own_config(ctx, name, &inputs.spec, root_settings)?;
    std::fs::write(&given, &config).context("cannot write the container's LXC config")?;
    lxc.create(name, &given, &ctx.lxc_args)?;
    // LXC gave the directory to the container's root: back to the gate.
    lxc.secure(name, host_id)?;
    std::fs::remove_file(&given).context("cannot remove the given LXC config")?;
    lxc.keep_config(name, &config)?;
    capabilities::ALL.iter().try_for_each(|capability| capability.add(ctx, name))
}

/// Refuses a name that is taken: by a container of ours (also in another
/// case: names are host names), or by anything else in LXC's directory or
/// the profiles directory. The advice never risks a container's data.
pub(super) fn ensure_name_is_free(ctx: &Context, locked: &LockedState, name: &str) -> Result<()> {
    if let Some(taken) = locked.state.containers.keys().find(|k| k.eq_ignore_ascii_case(name)) {
        if taken == name {
            bail!(
                "container '{name}' already exists (change it with `nixcloud-container update {name}`)"
            );
        }
        bail!("container '{taken}' already exists, and names are host names, the same in any case");
    }
    // The host's ends of its veths are named after it (network::port_name).
    let port = network::port_name(name, network::Port::Hostonly);
    let same_ports = locked
        .state
        .containers
        .keys()
        .find(|other| network::port_name(other, network::Port::Hostonly) == port);
    if let Some(other) = same_ports {
        bail!("container '{other}' has the interface names ({port}) that '{name}' would get: choose another name");
    }
    let lost = "the state does not know it: run `nixcloud-container repair-state` to recover it";
    let lxc = ctx.lxc();
    let dir = lxc.container_dir(name);
    if lxc.is_ours(name) {
        bail!("{} is a container of nixcloud-container, but {lost}", dir.display());
    }
    if dir.exists() {
        bail!(
            "{} exists and is not a container of nixcloud-container: choose another name",
            dir.display()
        );
    }
    let profile = ctx.profile(name);
    if profile.dir().exists() {
        bail!("profile directory {} exists, but {lost}", profile.dir().display());
    }
    let data = ctx.settings.data_dir(name);
    if data.exists() {
        bail!(
            "{} holds the data of an earlier container named '{name}' (destroy --keep-data): \
             move it away or remove it first",
            data.display()
        );
    }
    Ok(())
}
