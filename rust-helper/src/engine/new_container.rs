//! The steps that make a new container on this host, which create and
//! import share: its name checked free, root's directories that will hold
//! it, its directory in LXC's (a gate) with an empty rootfs, its
//! registration with LXC, and what its capabilities keep for it.

use anyhow::{bail, Context as _, Result};

use crate::capabilities;
use crate::capabilities::network::addresses as network;
use crate::context::Context;
use crate::engine::lxc_settings;
use crate::ids::IdMap;
use crate::spec::Spec;
use crate::state::LockedState;

/// Checks that container `name`'s root (`ids`) will reach its rootfs and
/// profile, and makes root's directories they are in.
pub fn prepare_directories(ctx: &Context, name: &str, ids: IdMap) -> Result<()> {
    ctx.check_reachable(name, ids)?;
    crate::system::host_dirs::root_dir(&ctx.settings.lxc_path)?;
    crate::system::host_dirs::root_dir(ctx.profile(name).dir())
}

/// Makes container `name`'s directory in LXC's (its gate, for the
/// container's root `host_id`) and its empty rootfs.
pub fn make_container_directory(ctx: &Context, name: &str, host_id: u32) -> Result<()> {
    let lxc = ctx.lxc();
    let dir = lxc.container_dir(name);
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    lxc.secure(name, host_id)?;
    std::fs::create_dir(lxc.rootfs(name))
        .with_context(|| format!("cannot create {}", lxc.rootfs(name).display()))
}

/// Registers container `name` (its directory made, its current generation
/// of `spec`) with LXC, with root's own `root_settings`.
pub fn register(
    ctx: &Context,
    name: &str,
    host_id: u32,
    spec: &Spec,
    root_settings: Option<&str>,
) -> Result<()> {
    let lxc = ctx.lxc();
    // lxc-create copies it to <dir>/config; a crash leaves it where the
    // teardown of the half-made container removes it.
    let given = lxc.container_dir(name).join(crate::layout::GIVEN_LXC_CONFIG);
    let config = lxc_settings::own_config(ctx, name, spec, root_settings)?;
    std::fs::write(&given, &config).context("cannot write the container's LXC config")?;
    lxc.create(name, &given, &ctx.lxc_args)?;
    // LXC gave the directory to the container's root: back to the gate.
    lxc.secure(name, host_id)?;
    std::fs::remove_file(&given).context("cannot remove the given LXC config")?;
    lxc.keep_config(name, &config)
}

/// What every capability keeps on the host for new container `name` (its
/// data directory among them).
pub fn add(ctx: &Context, name: &str) -> Result<()> {
    capabilities::ALL.iter().try_for_each(|capability| capability.add(ctx, name))
}

/// Refuses a name that is taken: by a container of ours (also in another
/// case: names are host names), or by anything else in LXC's directory or
/// the profiles directory. The advice never risks a container's data.
pub fn ensure_name_is_free(ctx: &Context, locked: &LockedState, name: &str) -> Result<()> {
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
