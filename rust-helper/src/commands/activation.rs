//! Activation: a running container switches to its current generation as
//! `nixos-rebuild switch` would switch a host, and goes back to the previous
//! one when that fails.

use std::ffi::OsStr;

use anyhow::{bail, Context as _, Result};

use super::context::Context;
use crate::process::describe_status;
use crate::profile::Generation;

/// After the profile switched away from generation `previous`: activates the
/// current generation in the container when it runs (a stopped container
/// boots it at its next start). When the activation fails, generation
/// `previous` is made current and activated again, and the error says so.
/// `lxc_args` go to lxc-attach.
pub fn activate_current(
    ctx: &Context,
    name: &str,
    previous: u64,
    lxc_args: &[String],
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
    let Err(err) = activate(ctx, name, &current, lxc_args) else {
        return Ok(());
    };
    ctx.plain_nix().switch_generation(&profile, previous)?;
    if let Err(again) = activate(ctx, name, &old, lxc_args) {
        eprintln!("warning: re-activating generation {previous} failed too: {again:#}");
    }
    Err(err.context(format!("generation {previous} of '{name}' is current again")))
}

fn lxc_settings(generation: &Generation) -> Option<String> {
    std::fs::read_to_string(generation.path.join(crate::layout::LXC_CONF)).ok()
}

/// Runs the generation's `switch-to-configuration switch` inside the container.
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
    let finished =
        ctx.lxc().attach_captured(name, lxc_args, &[program.as_os_str(), OsStr::new("switch")])?;
    for output in [&finished.stdout, &finished.stderr] {
        if !output.trim().is_empty() {
            eprintln!("{}", output.trim_end());
        }
    }
    if !finished.status.success() {
        let last = [&finished.stderr, &finished.stdout]
            .into_iter()
            .find_map(|out| out.lines().rev().find(|line| !line.trim().is_empty()))
            .unwrap_or("no output");
        bail!(
            "activating generation {} in '{name}' failed with {}: {}",
            generation.number,
            describe_status(finished.status),
            last.trim()
        );
    }
    println!("activated generation {} in running container '{name}'", generation.number);
    Ok(())
}
