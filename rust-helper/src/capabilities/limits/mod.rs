//! Resource limits (`limits`): what a container file asks for, capped by
//! the host's (`limits` in the host file), written as LXC's cgroup2 keys
//! into the generation (lib/lxc-config.nix), changed in a running
//! container with lxc-cgroup where LXC can.

pub mod types;

use anyhow::{anyhow, Result};

use super::lxc_conf::{self, Rules, Setting};
use super::{Capability, Container, Switch};
use crate::context::Context;
use crate::profile::Generation;
use types::Limits;

/// The capability.
pub struct ResourceLimits;

impl Capability for ResourceLimits {
    fn owns_lxc_key(&self, key: &str) -> bool {
        key.starts_with(CGROUP2)
    }

    fn check_lxc_settings(&self, settings: &[Setting], _rules: &Rules) -> Result<()> {
        lxc_conf::each(settings, |setting| {
            types::check_setting(&setting.key[CGROUP2.len()..], setting.value)
                .map_err(|err| anyhow!(err))
        })
    }

    /// Warns where this host cannot enforce them.
    fn prepare_start(&self, _ctx: &Context, container: &Container) -> Result<()> {
        if let Some(gap) = enforcement_gap(&container.meta.params.limits) {
            eprintln!("warning: the limits of '{}' are not enforced: {gap}", container.name);
        }
        Ok(())
    }

    fn switch(&self, ctx: &Context, switch: &Switch) -> Result<()> {
        change_limits(ctx, switch.name, switch.from, switch.to)
    }
}

/// What the LXC keys of the limits begin with.
const CGROUP2: &str = "lxc.cgroup2.";

/// Why this host cannot enforce `limits` (LXC then ignores them), if it
/// cannot: cgroup2 must be mounted at /sys/fs/cgroup (not a v1 or hybrid
/// layout) with the controllers they need.
pub fn enforcement_gap(limits: &Limits) -> Option<String> {
    if limits.is_empty() {
        return None;
    }
    let file = "/sys/fs/cgroup/cgroup.controllers";
    let Ok(available) = std::fs::read_to_string(file) else {
        return Some(
            "this host has no cgroup2 hierarchy at /sys/fs/cgroup (cgroup v1 or hybrid), where \
             LXC ignores cgroup2 limits"
                .to_string(),
        );
    };
    let available: Vec<&str> = available.split_whitespace().collect();
    let missing: Vec<&str> =
        limits.controllers().into_iter().filter(|needed| !available.contains(needed)).collect();
    (!missing.is_empty()).then(|| {
        format!(
            "this host's cgroup2 has no {} controller ({file}: {})",
            missing.join(", "),
            available.join(" ")
        )
    })
}

/// Changes the running container's limits from `old`'s to `new`'s with
/// lxc-cgroup, and says so; where LXC cannot, says that they apply at the
/// next start.
fn change_limits(ctx: &Context, name: &str, old: &Generation, new: &Generation) -> Result<()> {
    let (old, new) = (old.meta()?.params.limits, new.meta()?.params.limits);
    let changes = old.changes_to(&new);
    if changes.is_empty() {
        return Ok(());
    }
    let lxc = ctx.lxc();
    for (file, value) in &changes {
        if let Err(err) = lxc.set_cgroup(name, file, value) {
            eprintln!(
                "note: the new limits of '{name}' apply when it is next started (stop and start \
                 it): {err:#}"
            );
            return Ok(());
        }
    }
    let changed: Vec<String> =
        changes.iter().map(|(file, value)| format!("{file} {value}")).collect();
    println!("changed the limits of running container '{name}': {}", changed.join(", "));
    Ok(())
}
