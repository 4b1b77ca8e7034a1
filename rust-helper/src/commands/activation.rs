//! Activation: a running container switches to its current generation as
//! `nixos-rebuild switch` would switch a host, and goes back to the previous
//! one when that fails.

use std::ffi::OsStr;

use anyhow::{bail, Context as _, Result};

use super::context::Context;
use super::readiness::{self, Booted};
use crate::mounts::Mounter;
use crate::process::describe_status;
use crate::profile::Generation;
use crate::store_view::StoreView;

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
/// boots it at its next start). When the activation fails, generation
/// `previous` is made current and activated again, unless `on_failure`
/// keeps the new one, and the error says which. `lxc_args` go to lxc-attach.
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
    change_limits(ctx, name, &old, &current)?;
    // One live switch at a time (sync builds containers side by side).
    let _one_at_a_time = ctx.store.lock_activation()?;
    // Its store first: the new system's tools (systemctl too) are there.
    let switched = show_closure(ctx, name, &current).and_then(|()| {
        let gated = ctx.health_timeout.filter(|_| readiness::has_systemctl(ctx, name));
        let failed_before =
            if gated.is_some() { readiness::failed_units(ctx, name) } else { Vec::new() };
        activate(ctx, name, &current, lxc_args)?;
        gated.map_or(Ok(()), |limit| health_gate(ctx, name, &current, &failed_before, limit))
    });
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
    if let Err(again) = activate(ctx, name, &old, lxc_args) {
        eprintln!("warning: re-activating generation {previous} failed too: {again:#}");
    }
    Err(err.context(format!("generation {previous} of '{name}' is current again")))
}

/// Adds what `generation` needs to the running container's store view, so
/// that its activation finds its closure.
fn show_closure(ctx: &Context, name: &str, generation: &Generation) -> Result<()> {
    let params = generation.meta()?.params;
    if params.sees_whole_store() {
        return Ok(());
    }
    let Some(init_pid) = ctx.lxc().init_pid(name)? else {
        return Ok(());
    };
    let ids = ctx.existing(name)?.ids(&ctx.settings.host.idmap);
    let rootfs = ctx.lxc().rootfs(name);
    let mounter = Mounter::new(&rootfs, ids, ctx.settings.host.idmapped_mounts)?;
    let view = StoreView::of(generation)?;
    let added = view.add_to_running(&mounter, &rootfs, init_pid).with_context(|| {
        format!("cannot show generation {}'s store paths in '{name}'", generation.number)
    })?;
    if added > 0 && ctx.settings.verbosity == crate::nix_log::Verbosity::Verbose {
        eprintln!(
            "{added} store paths of generation {} are now visible in '{name}'",
            generation.number
        );
    }
    Ok(())
}

/// After a live switch to `generation`: waits (at most `limit`) until the
/// guest says it runs; units that failed since the switch began (not those
/// `failed_before`), or a guest still starting, fail the switch.
fn health_gate(
    ctx: &Context,
    name: &str,
    generation: &Generation,
    failed_before: &[String],
    limit: std::time::Duration,
) -> Result<()> {
    let number = generation.number;
    match readiness::wait_until_booted(ctx, name, limit)
        .with_context(|| format!("generation {number} of '{name}' is not healthy"))?
    {
        Booted::Running => Ok(()),
        Booted::Degraded(failed) => {
            let new: Vec<String> =
                failed.into_iter().filter(|unit| !failed_before.contains(unit)).collect();
            if new.is_empty() {
                Ok(())
            } else {
                bail!("generation {number} of '{name}' is not healthy: units failed after the switch: {}", new.join(", "))
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

/// switch-to-configuration's exit code when the new system's init needs a
/// restart (NixOS's switch-to-configuration-ng): nothing was switched yet.
const NEEDS_RESTART: i32 = 100;

/// The lock NixOS's switch-to-configuration takes, without waiting: a
/// second one exits while the first runs ("Could not acquire lock").
const SWITCH_LOCK: &str = "/run/nixos/switch-to-configuration.lock";

/// How long an activation waits for one that is still running in the
/// container: one that a killed helper started goes on inside, and the
/// next command's switch must come after it, not fail beside it.
const SWITCH_LOCK_WAIT_SECONDS: u32 = 300;

/// The command that runs `program switch` inside the container once no
/// other switch-to-configuration holds `lock` (SWITCH_LOCK; where the guest
/// has flock, as NixOS has util-linux's; the switch then takes the lock
/// itself).
fn after_running_switch(program: &std::path::Path, lock: &str) -> Vec<std::ffi::OsString> {
    let script = format!(
        "if [ -e {lock} ] && command -v flock >/dev/null 2>&1; then \
         flock -w {SWITCH_LOCK_WAIT_SECONDS} {lock} true; fi; exec \"$0\" switch"
    );
    vec!["/bin/sh".into(), "-c".into(), script.into(), program.into()]
}

/// Runs the generation's `switch-to-configuration switch` inside the
/// container (after any that still runs there), and says what went wrong
/// by its exit code: 1 it could not switch, 2 an activation snippet
/// failed, 4 units failed.
fn activate(ctx: &Context, name: &str, generation: &Generation, lxc_args: &[String]) -> Result<()> {
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
    let command = after_running_switch(&program, SWITCH_LOCK);
    let command: Vec<&OsStr> = command.iter().map(|arg| arg.as_os_str()).collect();
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
            let units = readiness::failed_units(ctx, name);
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
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    /// Runs what `activate` runs inside, here, for a stand-in switch that
    /// takes `lock` as NixOS's does (without waiting, exit 11 when held) and
    /// succeeds only where `earlier_done` exists and it is asked to switch.
    fn switch_after(
        dir: &std::path::Path,
        lock: &std::path::Path,
        earlier_done: &std::path::Path,
    ) -> bool {
        let program = dir.join("switch-to-configuration");
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\nexec 9>>{}\nflock -n 9 || exit 11\n[ -e {} ] && [ \"$1\" = switch ]\n",
                lock.display(),
                earlier_done.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let command = super::after_running_switch(&program, lock.to_str().unwrap());
        Command::new(&command[0]).args(&command[1..]).status().unwrap().success()
    }

    #[test]
    fn a_switch_comes_after_the_one_that_still_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let (lock, done) = (dir.path().join("switch.lock"), dir.path().join("earlier-done"));
        std::fs::write(&lock, "").unwrap();
        // The earlier switch (of a killed helper): holds the lock a while.
        let mut earlier = Command::new("flock")
            .arg(&lock)
            .args(["sh", "-c", &format!("sleep 1; touch {}", done.display())])
            .spawn()
            .unwrap();
        while Command::new("flock").arg("-n").arg(&lock).arg("true").status().unwrap().success() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(switch_after(dir.path(), &lock, &done), "it waited, then switched");
        assert!(earlier.wait().unwrap().success());
    }

    #[test]
    fn a_switch_without_a_lock_file_runs_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (lock, done) = (dir.path().join("switch.lock"), dir.path().join("earlier-done"));
        std::fs::write(&done, "").unwrap();
        assert!(switch_after(dir.path(), &lock, &done));
    }

    #[test]
    fn failed_snippets_are_named() {
        let output = "setting up /etc...\nActivation script snippet 'users' failed (1)\nActivation script snippet 'specialfs' failed (32)\n";
        assert_eq!(super::failed_snippets(output), ["users", "specialfs"]);
    }
}
