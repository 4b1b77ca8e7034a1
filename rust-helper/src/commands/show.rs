//! state, show-ip, exists: one container, looked at, never changed.

use std::net::Ipv4Addr;
use std::process::ExitCode;

use anyhow::{Context as _, Result};

use crate::capabilities::network::addresses as network;
use crate::context::Context;
use crate::error::EXIT_FAILURE;
use crate::names;
use crate::spec::GenerationMeta;
use crate::state::StartedWith;

/// The current generation's metadata, or None before the first build.
pub(super) fn current_meta(ctx: &Context, name: &str) -> Result<Option<(u64, GenerationMeta)>> {
    match ctx.profile(name).current()? {
        Some(generation) => Ok(Some((generation.number, generation.meta()?))),
        None => Ok(None),
    }
}

/// The address a container has now, and the one its current generation
/// gives it if that differs (until its next start). `started`: what it was
/// started with, asked only while it runs.
pub(super) fn addresses(
    started: impl FnOnce() -> Option<StartedWith>,
    running: bool,
    current: Option<&GenerationMeta>,
) -> (Option<Ipv4Addr>, Option<Ipv4Addr>) {
    let configured = current.map(|meta| meta.params.hostonly.address);
    match running.then(started).flatten() {
        Some(started) if Some(started.address) != configured => (Some(started.address), configured),
        _ => (configured, None),
    }
}

pub fn state(ctx: &Context, name: &str, json: bool) -> Result<()> {
    let record = ctx.existing(name)?;
    let state = ctx.lxc().state(name).with_context(|| format!("container '{name}'"))?;
    if json {
        let uids = record.ids(&ctx.settings.host.idmap).to_string();
        let mut shown = serde_json::json!({ "name": name, "state": state, "uids": uids });
        if let Some(release) = record.state_version {
            shown["stateVersion"] = serde_json::json!(release);
        }
        // The limits of the current generation, as LXC's cgroup2 keys take them.
        if let Some(current) = ctx.profile(name).current()? {
            let limits = current.meta()?.params.limits;
            shown["limits"] = serde_json::json!(limits);
        }
        println!("{shown}");
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
    let started = ctx.store.started_with(name, &entry);
    let differs = started.is_some_and(|s| s.address != meta.params.hostonly.address);
    let running = differs && ctx.lxc().is_running(name)?;
    let (now, next) = addresses(|| started, running, Some(&meta));
    let ipv6 = ctx.lxc().running_init(name).map(network::global_ipv6_addresses).unwrap_or_default();
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
        shown["ipv6"] = serde_json::json!(ipv6);
        // The address DHCP gives its internet interface (pinned to it).
        if let Some(internet) = meta.params.internet.as_ref().and_then(|i| i.address) {
            shown["internet"] = serde_json::json!(internet);
        }
        println!("{shown}");
    } else {
        match next {
            Some(next) => println!("{} ({next} at next start)", now.unwrap_or(hostonly.address)),
            None => println!("{}", hostonly.address),
        }
        // One line each after the IPv4 address, which stays the first line.
        for address in &ipv6 {
            println!("{address}");
        }
    }
    Ok(())
}

/// Exit 0 when the container exists, 1 when not; says nothing either way.
pub fn exists(ctx: &Context, name: &str) -> Result<ExitCode> {
    names::validate(name)?;
    let found = ctx.store.read()?.containers.get(name).is_some_and(|e| e.exists());
    Ok(if found { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILURE) })
}
