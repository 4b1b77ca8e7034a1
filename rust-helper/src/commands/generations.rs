//! list-generations, delete-generations, switch-generation, rollback, and
//! activating the current generation in a running container.

use std::ffi::OsStr;

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use super::lifecycle::{record_switch, refresh_addresses};
use super::Context;
use crate::nix::Nix;
use crate::process::describe_status;
use crate::profile::{check_specifier, Generation};

#[derive(Serialize)]
struct GenerationRow {
    generation: u64,
    created: String,
    current: bool,
    system: String,
    ipv4: String,
}

pub fn list(ctx: &Context, name: &str, json: bool) -> Result<()> {
    ctx.existing(name)?;
    let profile = ctx.profile(name);
    let current = profile.current_number()?;
    let mut rows = Vec::new();
    for generation in profile.generations()? {
        let meta = generation.meta()?;
        rows.push(GenerationRow {
            generation: generation.number,
            created: local_time(generation.created),
            current: Some(generation.number) == current,
            system: meta.system.display().to_string(),
            ipv4: meta.params.hostonly.address.to_string(),
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    // nix-env --list-generations' layout, with each generation's system and address.
    for row in rows {
        let marker = if row.current { "   (current)" } else { "" };
        println!("{:4}   {}   {}   {}{marker}", row.generation, row.created, row.ipv4, row.system);
    }
    Ok(())
}

fn local_time(time: std::time::SystemTime) -> String {
    jiff::Timestamp::try_from(time)
        .map(|ts| {
            ts.to_zoned_datetime(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| "?".to_string())
}

pub fn delete(ctx: &Context, name: &str, specifiers: &[String]) -> Result<()> {
    for specifier in specifiers {
        check_specifier(specifier)?;
    }
    let (_lock, _) = ctx.lock_existing(name)?;
    let profile = ctx.profile(name);
    let current = profile.current_number()?;
    for number in specifiers.iter().filter_map(|s| s.parse::<u64>().ok()) {
        if Some(number) == current {
            bail!("generation {number} of '{name}' is current: switch to another one before deleting it");
        }
        profile.generation(number).with_context(|| format!("container '{name}'"))?;
    }
    ctx.nix(&[]).delete_generations(&profile, specifiers)?;
    // Addresses only a deleted generation used are free again.
    refresh_addresses(ctx, name)?;
    let left: Vec<String> = profile.generations()?.iter().map(|g| g.number.to_string()).collect();
    println!("container '{name}' keeps generations {}", left.join(", "));
    Ok(())
}

pub fn switch(ctx: &Context, name: &str, number: u64, lxc_args: &[String]) -> Result<()> {
    let (_lock, _) = ctx.lock_existing(name)?;
    let profile = ctx.profile(name);
    profile.generation(number).with_context(|| format!("container '{name}'"))?;
    let previous = profile.current_number()?.context("the container has no current generation")?;
    switch_recorded(ctx, name, previous, lxc_args, |nix| nix.switch_generation(&profile, number))?;
    println!("container '{name}': generation {number} is current");
    Ok(())
}

pub fn rollback(ctx: &Context, name: &str, lxc_args: &[String]) -> Result<()> {
    let (_lock, _) = ctx.lock_existing(name)?;
    let profile = ctx.profile(name);
    let previous = profile.current_number()?.context("the container has no current generation")?;
    if profile.generations()?.iter().all(|g| g.number >= previous) {
        bail!("container '{name}' has no generation older than {previous} to roll back to");
    }
    switch_recorded(ctx, name, previous, lxc_args, |nix| nix.rollback(&profile))?;
    let current = profile.current_number()?.unwrap_or(previous);
    println!("container '{name}': rolled back from generation {previous} to {current}");
    Ok(())
}

/// Switches container `name`'s profile away from its current generation
/// `previous` with `switch` (a nix-env call) and activates the result, with
/// the switch recorded in the state meanwhile, so that a crash in between is
/// finished by the next command.
fn switch_recorded(
    ctx: &Context,
    name: &str,
    previous: u64,
    lxc_args: &[String],
    switch: impl FnOnce(&Nix) -> Result<()>,
) -> Result<()> {
    record_switch(ctx, name, Some(previous))?;
    let switched = switch(&ctx.nix(&[])).and_then(|()| switch_live(ctx, name, previous, lxc_args));
    record_switch(ctx, name, None)?;
    switched
}

/// After the profile switched away from generation `previous`: activates the
/// current generation in the container when it runs, as `nixos-rebuild
/// switch` would (a stopped container boots it at its next start). When the
/// activation fails, generation `previous` is made current and activated
/// again, and the error says so.
pub fn switch_live(ctx: &Context, name: &str, previous: u64, lxc_args: &[String]) -> Result<()> {
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
    ctx.nix(&[]).switch_generation(&profile, previous)?;
    if let Err(again) = activate(ctx, name, &old, lxc_args) {
        eprintln!("warning: re-activating generation {previous} failed too: {again:#}");
    }
    Err(err.context(format!("generation {previous} of '{name}' is current again")))
}

fn lxc_settings(generation: &Generation) -> Option<String> {
    std::fs::read_to_string(generation.path.join("lxc.conf")).ok()
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
