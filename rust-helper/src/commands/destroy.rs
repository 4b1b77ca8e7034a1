//! destroy: a container goes, with its generations, its addresses and
//! (unless kept) its data.

use anyhow::{bail, Context as _, Result};

use crate::context::Context;
use crate::engine::opening::{self, Opened};
use crate::engine::recovery::teardown;
use crate::state::Phase;

pub fn destroy(ctx: &Context, name: &str, force: bool, keep_data: bool) -> Result<()> {
    destroy_opened(ctx, name, opening::open(ctx, name)?, force, keep_data)
}

/// `destroy`, with the container's lock and the state taken (`opened`):
/// move destroys what it moved so.
pub(super) fn destroy_opened(
    ctx: &Context,
    name: &str,
    opened: Opened,
    force: bool,
    keep_data: bool,
) -> Result<()> {
    let Opened { lock, mut locked, repaired } = opened;
    if !locked.state.containers.contains_key(name) {
        lock.remove();
        match repaired {
            Some(Phase::Destroying) => {
                println!("destroyed container '{name}' (an interrupted destroy is finished)");
                return Ok(());
            }
            Some(Phase::Creating) => {
                println!("removed what an interrupted create left of container '{name}'");
                return Ok(());
            }
            _ => {}
        }
        bail!("no container named '{name}' (see `nixcloud-container list`)");
    }
    let lxc = ctx.lxc();
    if lxc.container_dir(name).exists() {
        lxc.secure(name, locked.state.containers[name].ids(&ctx.settings.host.idmap).host_id)?;
    }
    // From here on LXC reads none of the container's own settings, which a
    // tampered generation may have written: no hook of theirs runs.
    let original = lxc.write_bare_config(name)?;
    let running = lxc.is_defined(name) && lxc.is_running(name)?;
    if running && !force {
        lxc.restore_config(name, original)?;
        bail!("container '{name}' is running: stop it first, or use `destroy --force`");
    }
    let entry = locked.state.containers.get_mut(name).expect("checked above");
    entry.phase = Phase::Destroying;
    entry.keep_data = keep_data;
    locked.save()?;
    if running {
        // Nothing inside outlives the destroy, so there is no shutdown to wait for.
        lxc.kill(name, &[]).with_context(|| format!("cannot stop container '{name}'"))?;
    }
    if lxc.is_defined(name) {
        if let Err(err) = lxc.destroy(name, &ctx.lxc_args) {
            // Nothing was removed: the container stays as it was (stopped).
            lxc.restore_config(name, original)?;
            let entry = locked.state.containers.get_mut(name).expect("still there");
            entry.phase = Phase::Ready;
            entry.keep_data = false;
            locked.save()?;
            return Err(err).with_context(|| format!("cannot destroy container '{name}'"));
        }
    }
    let freed = locked.state.containers[name].addresses.clone();
    // The lock file goes with the rest (held until `lock` is dropped).
    teardown(ctx, &mut locked, name)?;
    drop(lock);
    let freed: Vec<String> = freed.iter().map(|a| a.ip.to_string()).collect();
    println!("destroyed container '{name}'; freed {}", freed.join(", "));
    let data = ctx.settings.data_dir(name);
    if keep_data && data.exists() {
        println!("its data stays in {}", data.display());
    }
    Ok(())
}
