//! list, state, show-ip, exists: reading, never changing.

use std::net::Ipv4Addr;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::context::Context;
use crate::error::EXIT_FAILURE;
use crate::names;
use crate::spec::GenerationMeta;
use crate::state::{ContainerRecord, Phase};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    name: String,
    state: String,
    ipv4: Option<Ipv4Addr>,
    /// The address of the current generation, where the running container
    /// still has another one (it gets this one at its next start).
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv4_next_start: Option<Ipv4Addr>,
    generation: Option<u64>,
    autostart: Option<bool>,
}

/// The current generation's metadata, or None before the first build.
fn current_meta(ctx: &Context, name: &str) -> Result<Option<(u64, GenerationMeta)>> {
    match ctx.profile(name).current()? {
        Some(generation) => Ok(Some((generation.number, generation.meta()?))),
        None => Ok(None),
    }
}

/// The address a container has now, and the one its current generation
/// gives it if that differs (until its next start).
fn addresses(
    entry: &ContainerRecord,
    running: bool,
    current: Option<&GenerationMeta>,
) -> (Option<Ipv4Addr>, Option<Ipv4Addr>) {
    let configured = current.map(|meta| meta.params.hostonly.address);
    match entry.started_with {
        Some(started) if running && Some(started.address) != configured => {
            (Some(started.address), configured)
        }
        _ => (configured, None),
    }
}

pub fn list(ctx: &Context, json: bool) -> Result<()> {
    let state = ctx.store.read()?;
    let lxc = ctx.lxc();
    // -l: lxc-ls's own selection (a regular expression, --active, -g ...)
    // picks the containers listed.
    let selected = if ctx.lxc_args.is_empty() { None } else { Some(lxc.names(&ctx.lxc_args)?) };
    let active =
        if state.containers.is_empty() { Default::default() } else { lxc.active_states(&[])? };
    let mut rows = Vec::new();
    for (name, entry) in &state.containers {
        if selected.as_ref().is_some_and(|names| !names.contains(name)) {
            continue;
        }
        let lxc_state = match entry.phase {
            Phase::Creating => "CREATING",
            Phase::Destroying => "DESTROYING",
            Phase::Ready | Phase::Updating => match active.get(name) {
                Some(state) => state,
                None if lxc.is_defined(name) => "STOPPED",
                None => "MISSING",
            },
        };
        let current = current_meta(ctx, name).unwrap_or(None);
        let meta = current.as_ref().map(|(_, meta)| meta);
        let (ipv4, ipv4_next_start) = addresses(entry, lxc_state == "RUNNING", meta);
        rows.push(Row {
            name: name.clone(),
            state: lxc_state.to_string(),
            ipv4,
            ipv4_next_start,
            generation: current.as_ref().map(|(number, _)| *number),
            autostart: meta.map(|meta| meta.spec.autostart),
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let table: Vec<[String; 5]> = rows
        .into_iter()
        .map(|row| {
            let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_string());
            let ipv4 = match (row.ipv4, row.ipv4_next_start) {
                (Some(now), Some(next)) => Some(format!("{now} ({next} at next start)")),
                (now, _) => now.map(|ip| ip.to_string()),
            };
            [
                row.name,
                row.state,
                or_dash(ipv4),
                or_dash(row.generation.map(|n| n.to_string())),
                or_dash(row.autostart.map(|a| if a { "yes" } else { "no" }.to_string())),
            ]
        })
        .collect();
    print_table(["NAME", "STATE", "IPV4", "GENERATION", "AUTOSTART"], &table);
    Ok(())
}

fn print_table(header: [&str; 5], rows: &[[String; 5]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let padded: Vec<String> =
            cells.iter().zip(widths).map(|(cell, width)| format!("{cell:width$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header);
    for row in rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
}

pub fn state(ctx: &Context, name: &str, json: bool) -> Result<()> {
    ctx.existing(name)?;
    let state = ctx.lxc().state(name).with_context(|| format!("container '{name}'"))?;
    if json {
        println!("{}", serde_json::json!({ "name": name, "state": state }));
    } else {
        println!("{state}");
    }
    Ok(())
}

pub fn show_ip(ctx: &Context, name: &str, json: bool) -> Result<()> {
    let entry = ctx.existing(name)?;
    let (_, meta) = current_meta(ctx, name)?
        .with_context(|| format!("container '{name}' has no current generation"))?;
    // LXC is asked only when the container was started with another address.
    let differs = entry.started_with.is_some_and(|s| s.address != meta.params.hostonly.address);
    let running = differs && ctx.lxc().is_running(name)?;
    let (now, next) = addresses(&entry, running, Some(&meta));
    let hostonly = meta.params.hostonly;
    if json {
        let mut shown = serde_json::json!({
            "name": name,
            "ipv4": now,
            "prefixLength": hostonly.prefix_length,
            "bridge": hostonly.bridge,
        });
        if let Some(next) = next {
            shown["ipv4NextStart"] = serde_json::json!(next);
        }
        println!("{shown}");
    } else if let Some(next) = next {
        println!("{} ({next} at next start)", now.unwrap_or(hostonly.address));
    } else {
        println!("{}", hostonly.address);
    }
    Ok(())
}

/// Exit 0 when the container exists, 1 when not; says nothing either way.
pub fn exists(ctx: &Context, name: &str) -> Result<ExitCode> {
    names::validate(name)?;
    let found = ctx.store.read()?.containers.get(name).is_some_and(|e| e.exists());
    Ok(if found { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILURE) })
}
