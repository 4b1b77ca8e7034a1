//! Activation: a running container switches to its current generation as
//! `nixos-rebuild switch` would switch a host, and goes back to the previous
//! one when that fails.

use std::ffi::OsStr;

use anyhow::{bail, Context as _, Result};

use crate::capabilities::{self, Switch};
use crate::context::Context;
use crate::engine::guest_lock::{self, Lock};
use crate::engine::readiness::{self, Booted, SystemdTools};
use crate::profile::Generation;
use crate::system::process::describe_status;

/// What to do when an activation fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Make the previous generation current and activate it again.
    RollBack,
    /// Keep the failed generation current (--no-rollback), as nixos-rebuild does.
    Keep,
}

/// After the profile switched away from generation `previous`: activates the
/// current generation in the container when it runs (a stopped container
/// boots it at its next start). A guest still booting is switched once it
/// has booted (waiting as long as the health gate would; one that does not
/// boot by then is not switched at all). When the activation fails,
/// generation `previous` is made current and activated again, unless
/// `on_failure` keeps the new one, and the error says which. `lxc_args` go
/// to lxc-attach.
pub fn activate_current(
    ctx: &Context,
    name: &str,
    previous: u64,
    lxc_args: &[String],
    on_failure: OnFailure,
) -> Result<()> {
    if !ctx.lxc().is_running(name)? {
        return Ok(());
    }
    let profile = ctx.profile(name);
    let current = profile.current()?.context("the container has no current generation")?;
    let old = profile.generation(previous)?;
    if lxc_settings(&old) != lxc_settings(&current) {
        eprintln!(
            "note: generation {} changes the container's LXC settings; they apply when \
             '{name}' is next started (stop and start it)",
            current.number
        );
    }
    // Its store first: the new system's tools (systemctl too) are there.
    // Then what a switch waits for, before the one live switch at a time
    // is ours: the guest's boot, and a switch still running inside.
    let ids = ctx.existing(name)?.ids(&ctx.settings.host.idmap);
    let ready = init_of(ctx, name).and_then(|init_pid| {
        let switch = Switch { name, ids, init_pid, from: &old, to: &current };
        for capability in capabilities::ALL {
            capability.prepare_switch(ctx, &switch)?;
        }
        let gate = until_booted(ctx, name, &current)?;
        wait_for_running_switch(name, init_pid)?;
        Ok((init_pid, gate))
    });
    let (init_pid, gate) = match ready {
        Ok(ready) => ready,
        Err(err) => return not_switched(ctx, name, previous, &current, on_failure, err),
    };
    let switch = Switch { name, ids, init_pid, from: &old, to: &current };
    for capability in capabilities::ALL {
        capability.switch(ctx, &switch)?;
    }
    // One live switch at a time (sync builds containers side by side).
    let _one_at_a_time = ctx.store.lock_activation()?;
    let switched = activate(ctx, name, init_pid, &current, lxc_args)
        .and_then(|()| gate.map_or(Ok(()), |gate| gate.check(ctx, name, &current)));
    let Err(err) = switched else {
        return Ok(());
    };
    if on_failure == OnFailure::Keep {
        return Err(err.context(format!(
            "generation {} of '{name}' stays current, as --no-rollback asks",
            current.number
        )));
    }
    ctx.plain_nix().switch_generation(&profile, previous)?;
    let back = Switch { name, ids, init_pid, from: &current, to: &old };
    for capability in capabilities::ALL {
        capability.switch(ctx, &back)?;
    }
    if let Err(again) = activate(ctx, name, init_pid, &old, lxc_args) {
        eprintln!("warning: re-activating generation {previous} failed too: {again:#}");
    }
    Err(err.context(format!("generation {previous} of '{name}' is current again")))
}

/// The host pid of running container `name`'s init: from its monitor's
/// pidfile, else (a start in the foreground writes none) from LXC.
fn init_of(ctx: &Context, name: &str) -> Result<u32> {
    let lxc = ctx.lxc();
    match lxc.running_init(name) {
        Some(pid) => Ok(pid),
        None => lxc.init_pid(name)?.with_context(|| format!("container '{name}' stopped")),
    }
}

/// The health gate of a live switch: its limit, the systemd tools that
/// tell, and the units that had failed before the switch.
struct Gate {
    limit: std::time::Duration,
    tools: SystemdTools,
    failed_before: Vec<String>,
}

/// Waits until the guest has booted, for as long as the health gate would
/// wait (and says so when it does), and returns the gate. None: no gate
/// (--health-timeout 0, or a system without systemctl), and no wait.
fn until_booted(ctx: &Context, name: &str, generation: &Generation) -> Result<Option<Gate>> {
    let (Some(limit), Some(tools)) = (ctx.health_timeout, SystemdTools::of(generation)?) else {
        return Ok(None);
    };
    let number = generation.number;
    let booted = readiness::wait_until_booted(ctx, name, &tools, limit, || {
        eprintln!(
            "waiting for '{name}' to finish booting before it switches to generation {number} \
             (at most {} s, --health-timeout)",
            limit.as_secs()
        );
    })
    // A guest that stays "starting" (a unit that never finishes) is
    // switched by a switch that does not wait.
    .map_err(|err| anyhow::anyhow!("{err:#} (--health-timeout 0 switches without waiting)"))?;
    let failed_before = match booted {
        Booted::Running => Vec::new(),
        Booted::Degraded(failed) => failed,
    };
    Ok(Some(Gate { limit, tools, failed_before }))
}

/// For a switch that did not begin (the guest did not boot, or its store
/// could not take the new generation): generation `previous` is made
/// current again, unless `on_failure` keeps the new one; nothing was
/// activated, and the guest goes on with what it runs.
fn not_switched(
    ctx: &Context,
    name: &str,
    previous: u64,
    current: &Generation,
    on_failure: OnFailure,
    err: anyhow::Error,
) -> Result<()> {
    let err = err.context(format!("generation {} was not activated in '{name}'", current.number));
    if on_failure == OnFailure::Keep {
        return Err(err.context(format!(
            "generation {} of '{name}' stays current, as --no-rollback asks; it runs from the \
             container's next start",
            current.number
        )));
    }
    ctx.plain_nix().switch_generation(&ctx.profile(name), previous)?;
    Err(err.context(format!("generation {previous} of '{name}' is current again")))
}

impl Gate {
    /// After a live switch to `generation`: waits (at most the limit) until
    /// the guest says it runs; units that failed since the switch began (not
    /// those failed before), or a guest still starting, fail the switch.
    fn check(&self, ctx: &Context, name: &str, generation: &Generation) -> Result<()> {
        let number = generation.number;
        match readiness::wait_until_booted(ctx, name, &self.tools, self.limit, || {})
            .with_context(|| format!("generation {number} of '{name}' is not healthy"))?
        {
            Booted::Running => Ok(()),
            Booted::Degraded(failed) => {
                let new: Vec<String> =
                    failed.into_iter().filter(|unit| !self.failed_before.contains(unit)).collect();
                if new.is_empty() {
                    Ok(())
                } else {
                    bail!(
                        "generation {number} of '{name}' is not healthy: units failed after the \
                         switch: {}",
                        new.join(", ")
                    )
                }
            }
        }
    }
}

/// A generation's LXC settings but its limits (`change_limits` changes
/// those while the container runs).
fn lxc_settings(generation: &Generation) -> Option<String> {
    let text = std::fs::read_to_string(generation.path.join(crate::layout::LXC_CONF)).ok()?;
    Some(
        text.lines()
            .filter(|line| !line.starts_with("lxc.cgroup2."))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// switch-to-configuration's exit code when the new system's init needs a
/// restart (NixOS's switch-to-configuration-ng): nothing was switched yet.
const NEEDS_RESTART: i32 = 100;

/// The lock NixOS's switch-to-configuration takes, without waiting: a
/// second one exits (code 11) while the first runs ("Could not acquire
/// lock"; nixos/tests/switch-test.nix, "aborts on already locked lock file").
const SWITCH_LOCK: &str = "/run/nixos/switch-to-configuration.lock";

/// How long an activation waits for one that is still running in the
/// container: one that a killed helper started goes on inside, and the
/// next command's switch must come after it, not fail beside it.
const SWITCH_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Waits (and says so) until no switch-to-configuration holds the guest's
/// lock, watched from the host (guest_lock.rs): the guest needs no tool
/// for it, and may be a system without flock.
fn wait_for_running_switch(name: &str, init_pid: u32) -> Result<()> {
    let lock = std::path::Path::new(SWITCH_LOCK);
    if guest_lock::wait_until_free(init_pid, lock, std::time::Duration::ZERO)? == Lock::Free {
        return Ok(());
    }
    eprintln!(
        "waiting for the switch-to-configuration still running in '{name}' to finish (at most {} s)",
        SWITCH_LOCK_WAIT.as_secs()
    );
    match guest_lock::wait_until_free(init_pid, lock, SWITCH_LOCK_WAIT)? {
        Lock::Free => Ok(()),
        Lock::Held => bail!(
            "a switch-to-configuration in '{name}' still holds {SWITCH_LOCK} after {} s",
            SWITCH_LOCK_WAIT.as_secs()
        ),
    }
}

/// Runs the generation's `switch-to-configuration switch` inside the
/// container whose init is `init_pid` (after any that still runs there), by
/// its store path, and says what went wrong by its exit code: 1 it could
/// not switch, 2 an activation snippet failed, 4 units failed.
fn activate(
    ctx: &Context,
    name: &str,
    init_pid: u32,
    generation: &Generation,
    lxc_args: &[String],
) -> Result<()> {
    let system = generation.meta()?.system;
    let program = system.join("bin/switch-to-configuration");
    if !program.exists() {
        println!(
            "note: {} has no bin/switch-to-configuration: '{name}' runs generation {} from its next start",
            system.display(),
            generation.number
        );
        return Ok(());
    }
    wait_for_running_switch(name, init_pid)?;
    let command = [program.as_os_str(), OsStr::new("switch")];
    let finished = ctx.lxc().attach_captured(name, lxc_args, &command)?;
    for output in [&finished.stdout, &finished.stderr] {
        if !output.trim().is_empty() {
            eprintln!("{}", output.trim_end());
        }
    }
    let number = generation.number;
    let said = || {
        [&finished.stderr, &finished.stdout]
            .into_iter()
            .find_map(|out| out.lines().rev().find(|line| !line.trim().is_empty()))
            .unwrap_or("no output")
            .trim()
            .to_string()
    };
    match finished.status.code() {
        Some(0) => {
            println!("activated generation {number} in running container '{name}'");
            Ok(())
        }
        Some(NEEDS_RESTART) => {
            println!(
                "note: generation {number} of '{name}' has a new init: it runs from the container's \
                 next start (stop and start it)"
            );
            Ok(())
        }
        Some(2) => {
            let snippets = failed_snippets(&finished.stderr);
            let what = if snippets.is_empty() { said() } else { snippets.join(", ") };
            bail!("activating generation {number} in '{name}': activation snippets failed: {what}")
        }
        Some(4) => {
            let units = match SystemdTools::of(generation)? {
                Some(tools) => readiness::failed_units(ctx, name, &tools),
                None => Vec::new(),
            };
            let what = if units.is_empty() { said() } else { units.join(", ") };
            bail!("activating generation {number} in '{name}': units failed: {what}")
        }
        Some(1) => bail!(
            "activating generation {number} in '{name}': switch-to-configuration could not switch: {}",
            said()
        ),
        _ => bail!(
            "activating generation {number} in '{name}' failed with {}: {}",
            describe_status(finished.status),
            said()
        ),
    }
}

/// The snippets that NixOS's activation script says failed
/// ("Activation script snippet 'users' failed (1)").
fn failed_snippets(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| line.split("Activation script snippet '").nth(1))
        .filter_map(|rest| rest.split('\'').next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn failed_snippets_are_named() {
        let output = "setting up /etc...\nActivation script snippet 'users' failed (1)\nActivation script snippet 'specialfs' failed (32)\n";
        assert_eq!(super::failed_snippets(output), ["users", "specialfs"]);
    }
}
