//! list-generations, delete-generations, switch-generation, rollback.

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use crate::capabilities;
use crate::context::Context;
use crate::engine::activation::{activate_current, OnFailure};
use crate::engine::opening;
use crate::engine::recovery::{record_switch, refresh_addresses};
use crate::nix::Nix;
use crate::profile::Deletion;

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
    let deletion = Deletion::parse(specifiers)?;
    let (_lock, _) = opening::lock_existing(ctx, name)?;
    let profile = ctx.profile(name);
    let current = profile.current_number()?;
    if let Deletion::Numbers(numbers) = &deletion {
        for &number in numbers {
            if Some(number) == current {
                bail!("generation {number} of '{name}' is current: switch to another one before deleting it");
            }
            profile.generation(number).with_context(|| format!("container '{name}'"))?;
        }
    }
    ctx.plain_nix().delete_generations(&profile, &deletion.nix_env_args())?;
    // Addresses only a deleted generation used are free again.
    refresh_addresses(ctx, name)?;
    let left: Vec<String> = profile.generations()?.iter().map(|g| g.number.to_string()).collect();
    println!("container '{name}' keeps generations {}", left.join(", "));
    Ok(())
}

pub fn switch(ctx: &Context, name: &str, number: u64, on_failure: OnFailure) -> Result<()> {
    let (_lock, entry) = opening::lock_existing(ctx, name)?;
    let profile = ctx.profile(name);
    let target = profile.generation(number).with_context(|| format!("container '{name}'"))?;
    let previous = profile.current_number()?.context("the container has no current generation")?;
    crate::engine::lxc_settings::check_generation(
        ctx,
        name,
        entry.ids(&ctx.settings.host.idmap),
        &target.path,
    )
    .with_context(|| format!("refusing to switch '{name}' to generation {number}"))?;
    switch_recorded(ctx, name, previous, on_failure, |nix| {
        nix.switch_generation(&profile, number)
    })?;
    println!("container '{name}': generation {number} is current");
    Ok(())
}

pub fn rollback(ctx: &Context, name: &str, on_failure: OnFailure) -> Result<()> {
    let (_lock, entry) = opening::lock_existing(ctx, name)?;
    let profile = ctx.profile(name);
    let previous = profile.current_number()?.context("the container has no current generation")?;
    // The generation nix-env --rollback goes to: the newest older one.
    let Some(target) = profile.generations()?.into_iter().rev().find(|g| g.number < previous)
    else {
        bail!("container '{name}' has no generation older than {previous} to roll back to");
    };
    crate::engine::lxc_settings::check_generation(
        ctx,
        name,
        entry.ids(&ctx.settings.host.idmap),
        &target.path,
    )
    .with_context(|| format!("refusing to roll '{name}' back to generation {}", target.number))?;
    switch_recorded(ctx, name, previous, on_failure, |nix| nix.rollback(&profile))?;
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
    on_failure: OnFailure,
    switch: impl FnOnce(&Nix) -> Result<()>,
) -> Result<()> {
    record_switch(ctx, name, Some(previous))?;
    let switched = switch(&ctx.plain_nix())
        .and_then(|()| activate_current(ctx, name, previous, &ctx.lxc_args, on_failure));
    record_switch(ctx, name, None)?;
    let current =
        ctx.profile(name).current()?.context("the container has no current generation")?;
    capabilities::current_changed(ctx, name, &current.meta()?, switched.is_ok())?;
    switched
}
