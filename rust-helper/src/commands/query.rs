//! list, state, show-ip, exists: reading, never changing.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::Context;
use crate::error::EXIT_FAILURE;
use crate::names;
use crate::spec::GenerationMeta;
use crate::state::Phase;

#[derive(Serialize)]
struct Row {
    name: String,
    state: String,
    ipv4: Option<String>,
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

pub fn list(ctx: &Context, lxc_args: &[String], json: bool) -> Result<()> {
    let state = ctx.store.read()?;
    let lxc = ctx.lxc();
    let active =
        if state.containers.is_empty() { Default::default() } else { lxc.active_states(lxc_args)? };
    let mut rows = Vec::new();
    for (name, entry) in &state.containers {
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
        rows.push(Row {
            name: name.clone(),
            state: lxc_state.to_string(),
            ipv4: current.as_ref().map(|(_, meta)| meta.params.hostonly.address.to_string()),
            generation: current.as_ref().map(|(number, _)| *number),
            autostart: current.as_ref().map(|(_, meta)| meta.spec.autostart),
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
            [
                row.name,
                row.state,
                or_dash(row.ipv4),
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
    ctx.existing(name)?;
    let (_, meta) = current_meta(ctx, name)?
        .with_context(|| format!("container '{name}' has no current generation"))?;
    let hostonly = meta.params.hostonly;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "name": name,
                "ipv4": hostonly.address,
                "prefixLength": hostonly.prefix_length,
                "bridge": hostonly.bridge,
            })
        );
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
