//! Each container of the plan, created, updated or destroyed by a helper
//! process of its own, and what sync did recorded in the state.

use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};

use super::files::{ContainerFiles, Named};
use super::flakes::{flake_reference, synced_from_flake, Flakes};
use super::list::Listed;
use super::{Action, Request, Step};
use crate::context::Context;
use crate::nix::source_reads;
use crate::state::Synced;

/// Does the `step` for its container through a helper process of its own,
/// and records what sync did.
pub(super) fn carry_out(
    ctx: &Context,
    request: &Request,
    step: &Step,
    entry: Option<&Listed>,
    fingerprint: Option<&String>,
    (flakes, files): (&Flakes, &ContainerFiles),
) -> Result<Action> {
    let Step { name, action, adopt } = step;
    let (name, action, adopt) = (name.as_str(), *action, *adopt);
    let helper = std::env::current_exe().context("cannot find this helper's program")?;
    // The flake as this sync fetched it, for the helper to build from
    // (flake_inputs.rs).
    let handed = match entry.and_then(|entry| entry.flake.as_deref()) {
        Some(flake) => {
            ctx.flake_fetches.hand_down(flake_reference(flake), &ctx.settings.state_dir)?
        }
        None => None,
    };
    let handed = handed.as_ref().map(|file| (crate::nix::flake_inputs::HANDED_ENV, file.path()));
    let run_with = |args: &[String], record: Option<String>| -> Result<()> {
        let output = Command::new(&helper)
            .args(verbosity_flag(ctx))
            .args(args)
            .envs(location_env(ctx))
            .envs(handed)
            .envs(record.map(|value| (source_reads::RECORD_ENV, value)))
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", helper.display()))?;
        // One container's output together, each line named.
        for line in String::from_utf8_lossy(&output.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&output.stderr).lines())
        {
            if !line.starts_with("error:") {
                eprintln!("{name}: {line}");
            }
        }
        if output.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let said =
                stderr.lines().rev().find(|line| line.starts_with("error:")).unwrap_or("failed");
            bail!("{}", said.trim_start_matches("error:").trim())
        }
    };
    let run = |args: &[String]| run_with(args, None);
    if action == Action::Remove {
        run(&["destroy".into(), name.into(), "--force".into()])?;
        return Ok(Action::Remove);
    }
    let entry = entry.expect("listed containers are created, updated or left alone");
    // What this source created, or takes over, is its own to prune.
    let owner = (action == Action::Create || adopt).then_some(entry.source.as_str());
    if action == Action::Unchanged {
        record_synced(ctx, name, None, owner)?;
        return Ok(Action::Unchanged);
    }
    let before = ctx.profile(name).current_number().ok().flatten();
    let mut args = vec![
        if action == Action::Create { "create" } else { "update" }.to_string(),
        name.to_string(),
    ];
    match (&entry.file, &entry.flake, &entry.system) {
        (Some(file), _, _) => args.push(file.display().to_string()),
        (_, Some(flake), _) => args.extend(["--flake".to_string(), flake.clone()]),
        (_, _, Some(system)) => args.extend(["--system".to_string(), system.display().to_string()]),
        _ => unreachable!("read_list checked each entry"),
    }
    let autostart = match entry.autostart {
        Some(true) => "yes",
        Some(false) => "no",
        None => "file",
    };
    args.extend(["--autostart".to_string(), autostart.to_string()]);
    args.extend(request.nix_args.iter().cloned());
    if action == Action::Update {
        args.extend(request.activation_args.iter().cloned());
    }
    // What its evaluations read of its source: a flake's source, or the
    // directory a container file is named in (one it cannot be read from
    // fails in the helper, which says why).
    let flake = flakes.of(entry.flake.as_deref());
    let named = entry.file.as_deref().and_then(|file| Named::of(file).ok());
    let watched =
        flake.map(|flake| flake.info.path.as_path()).or(named.as_ref().map(|n| n.dir.as_path()));
    let record = watched
        .map(|_| tempfile::Builder::new().prefix("reads-").tempfile_in(&ctx.settings.state_dir))
        .transpose()
        .context("cannot make a file in the state directory")?;
    let since = source_reads::coarse_now();
    run_with(
        &args,
        watched
            .zip(record.as_ref())
            .map(|(watched, record)| source_reads::Recording::env_value(watched, record.path())),
    )?;
    let fingerprint = fingerprint.cloned();
    let synced = match (flake, &named, &record) {
        (Some(flake), _, Some(record)) => {
            let previous = ctx.existing(name)?.synced.and_then(|synced| synced.reads);
            synced_from_flake(ctx, name, flake, fingerprint, record.path(), previous.as_ref())?
        }
        (None, Some(named), Some(record)) => {
            files.synced(ctx, name, named, fingerprint, record.path(), since)?
        }
        _ => Synced { fingerprint, source_hash: None, reads: None },
    };
    record_synced(ctx, name, Some(synced), owner)?;
    if action == Action::Create {
        let record = ctx.existing(name)?;
        let starts = ctx
            .profile(name)
            .current()?
            .map(|g| g.meta())
            .transpose()?
            .is_some_and(|meta| meta.autostart());
        if starts && record.exists() {
            run(&["start".into(), name.into()])?;
        }
        return Ok(Action::Create);
    }
    let after = ctx.profile(name).current_number().ok().flatten();
    Ok(if after == before { Action::Unchanged } else { Action::Update })
}

/// Records that sync made or updated container `name`, and from what
/// (`synced`), and the source that owns it from now on (`owner`).
fn record_synced(
    ctx: &Context,
    name: &str,
    synced: Option<Synced>,
    owner: Option<&str>,
) -> Result<()> {
    if synced.is_none() && owner.is_none() {
        return Ok(());
    }
    let mut locked = ctx.store.lock()?;
    if let Some(entry) = locked.state.containers.get_mut(name) {
        if let Some(synced) = synced {
            entry.synced = Some(synced);
        }
        if let Some(owner) = owner {
            entry.sync_source = Some(owner.to_string());
        }
        locked.save()?;
    }
    Ok(())
}

/// This helper's -v or -q, for the helpers it starts: `sync -v` shows
/// what Nix says of each container.
fn verbosity_flag(ctx: &Context) -> Option<&'static str> {
    match ctx.settings.verbosity {
        crate::settings::Verbosity::Verbose => Some("--verbose"),
        crate::settings::Verbosity::Quiet => Some("--quiet"),
        crate::settings::Verbosity::Normal => None,
    }
}

/// The locations this helper runs with, for the helpers it starts.
fn location_env(ctx: &Context) -> Vec<(&'static str, std::ffi::OsString)> {
    let settings = &ctx.settings;
    let mut env = vec![
        ("NIXCLOUD_CONTAINER_LXC_PATH", settings.lxc_path.clone().into_os_string()),
        ("NIXCLOUD_CONTAINER_PROFILES_DIR", settings.profiles_dir.clone().into_os_string()),
        ("NIXCLOUD_CONTAINER_STATE_DIR", settings.state_dir.clone().into_os_string()),
        ("NIXCLOUD_CONTAINER_NIX_LIB", settings.nix_lib.clone().into_os_string()),
        ("NIXCLOUD_CONTAINER_HOST_CONFIG", settings.host_file.clone().into_os_string()),
    ];
    if let Some(busybox) = &settings.busybox {
        env.push(("NIXCLOUD_CONTAINER_BUSYBOX", busybox.clone().into_os_string()));
    }
    env
}
