//! repair-state, repair-network: the state and the network rules, made
//! again from what is on disk and in the host file.

use anyhow::{Context as _, Result};

use crate::capabilities::network::{egress, port_guard, rules as network_rules};
use crate::context::Context;
use crate::engine::recovery::{refresh_claims, remove_interrupted_links, teardown};
use crate::names;
use crate::state::{ContainerRecord, Phase, State};

/// Rebuilds the state from what is on disk: each profile with a current
/// generation is a container; its generations name its addresses and its
/// source; what no disk shows (sync's records, root's decisions, what a
/// running container was started with) is carried over from the old state
/// file where it still parses. The links a killed nix-env left go. A profile without an LXC directory is a half-made container,
/// recorded as such so that the next command removes it; an LXC directory of
/// ours without generations is removed, as nothing can start it.
pub fn repair_state(ctx: &Context) -> Result<()> {
    let (mut locked, kept) = ctx.store.lock_for_rebuild()?;
    let old = old_records(kept.as_deref());
    let hostonly_bridge = &ctx.settings.host.hostonly.bridge;
    for name in names_in(&ctx.settings.profiles_dir)? {
        let profile = ctx.profile(&name);
        let Some(current) = profile.current()? else {
            eprintln!("note: {} has no generation; left out", profile.dir().display());
            continue;
        };
        // Not while a command on it runs: its nix-env's link may be on its
        // way into place.
        if let Some(_running) = ctx.store.try_lock_container(&name)? {
            remove_interrupted_links(ctx, &name)?;
        }
        // An address no generation asked for on the hostonly bridge was
        // allocated; so was every internet address, the newest one kept.
        let mut automatic_ip = None;
        let mut internet_ip = None;
        for generation in profile.generations()? {
            let meta = generation.meta()?;
            let hostonly = meta.params.hostonly;
            if meta.spec.network.ip.is_none() && &hostonly.bridge == hostonly_bridge {
                automatic_ip = Some(hostonly.address);
            }
            internet_ip =
                meta.params.internet.and_then(|internet| internet.address).or(internet_ip);
        }
        let phase = if ctx.lxc().is_defined(&name) { Phase::Ready } else { Phase::Creating };
        let params = current.meta()?.params;
        let mut entry = ContainerRecord {
            automatic_ip,
            internet_ip,
            state_version: params.state_version,
            ids: Some(params.idmap),
            ..ContainerRecord::new(phase, params.source)
        };
        // What root set is on disk: root runs repair-state.
        refresh_claims(ctx, &name, &mut entry)?;
        if let Some(old) = old.as_ref().and_then(|old| old.containers.get(&name)) {
            carry_over(ctx, &name, old, &mut entry);
        }
        locked.state.containers.insert(name.clone(), entry);
        println!(
            "{name}: {}",
            if phase == Phase::Ready {
                "recovered"
            } else {
                "half-made, removed by the next command"
            }
        );
    }
    for name in names_in(&ctx.settings.lxc_path)? {
        if ctx.lxc().is_ours(&name) && !locked.state.containers.contains_key(&name) {
            teardown(ctx, &mut locked, &name)?;
            println!("{name}: its generations are gone; removed its LXC directory");
        }
    }
    locked.save()?;
    drop(locked);
    // The ports' guard and the DHCP addresses, as the state now says.
    port_guard::write_all(ctx)?;
    match &kept {
        Some(kept) => println!("rebuilt the state file; the old one is kept as {}", kept.display()),
        None => println!("rebuilt the state file"),
    }
    if kept.is_some() && old.is_none() {
        println!(
            "the old state file does not parse: which sync source made each container (so \
             sync --prune leaves them all; sync --adopt takes them over) and what a running \
             container was started with are not known (its next start records it)"
        );
    }
    Ok(())
}

/// The containers of the state file `kept` aside, where it still parses:
/// what no disk shows is carried over from it.
fn old_records(kept: Option<&std::path::Path>) -> Option<State> {
    let text = std::fs::read(kept?).ok()?;
    serde_json::from_slice(&text).ok()
}

/// What the old entry `old` of container `name` knew that its generations
/// do not show: which sync source made it and from what (sync's records),
/// root's decisions, and what an earlier helper recorded in it of its
/// start (`Store::record_started` keeps that in a file of its own now).
fn carry_over(ctx: &Context, name: &str, old: &ContainerRecord, entry: &mut ContainerRecord) {
    entry.synced = old.synced.clone();
    entry.sync_source = old.sync_source.clone();
    entry.autostart = old.autostart;
    entry.root_settings = old.root_settings.clone();
    if ctx.lxc().is_running(name).unwrap_or(false) {
        // An earlier helper's record of its start, given a file at the save.
        entry.started_with_before = old.started_with_before;
    }
}

/// The entries of `dir` that are container names.
fn names_in(dir: &std::path::Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries.collect::<std::io::Result<Vec<_>>>()?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", dir.display())),
    };
    Ok(entries
        .into_iter()
        .filter_map(|entry| entry.file_name().to_str().map(str::to_string))
        .filter(|name| names::validate(name).is_ok())
        .collect())
}

/// `repair-network`: the guard of the containers' ports, the egress policy,
/// the rules between peers and of forwarded ports, and the containers'
/// names, written again.
pub fn repair_network(ctx: &Context) -> Result<()> {
    port_guard::write_all(ctx)?;
    egress::repair(ctx)?;
    network_rules::repair(ctx)?;
    repair_names(ctx)
}

/// `repair-names`: the containers' names written again.
pub fn repair_names(ctx: &Context) -> Result<()> {
    crate::capabilities::network::names::write_all(ctx)
}
