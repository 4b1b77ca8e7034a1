//! start, restart: a container's life under LXC begins.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use super::{exit_code, for_each, Targets};
use crate::capabilities::{self, Container};
use crate::context::Context;
use crate::engine::readiness::{self, Booted, SystemdTools};
use crate::engine::{lxc_settings, opening};
use crate::error::usage;
use crate::layout::PROFILE_MOUNT;
use crate::lxc::mounts::{self, HostMount, MountSource, Mounter};
use crate::lxc::Started;
use crate::profile::Generation;
use crate::spec::Params;
use crate::state::{ContainerRecord, StartedWith};

/// `start`: `targets` (with --all those that are stopped), each waited for
/// at most `wait` to boot.
pub fn start_all(ctx: &Context, targets: Targets, wait: Option<Duration>) -> Result<ExitCode> {
    let names = super::targets(ctx, targets, Some(false))?;
    if names.len() > 1 && in_foreground(ctx) {
        return Err(usage("-l -F starts one container in the foreground, not several"));
    }
    if wait.is_some() && in_foreground(ctx) {
        return Err(usage("--wait returns when a container has booted, -l -F when it stops"));
    }
    for_each(names, "start", |name| start(ctx, name, wait))
}

/// `restart`: `targets`, each waited for at most `wait` to boot.
pub fn restart_all(ctx: &Context, targets: Targets, wait: Option<Duration>) -> Result<ExitCode> {
    let names = super::targets(ctx, targets, None)?;
    for_each(names, "restart", |name| restart(ctx, name, wait))
}

/// Whether -l starts the container in the foreground, on this terminal.
pub fn in_foreground(ctx: &Context) -> bool {
    ctx.lxc_args.iter().any(|arg| arg == "-F" || arg == "--foreground")
}

/// Starts container `name`, and with `wait` waits at most that long for its
/// guest to boot.
pub(super) fn start(ctx: &Context, name: &str, wait: Option<Duration>) -> Result<ExitCode> {
    let started = start_unwaited(ctx, name)?;
    if let (Some(limit), true) = (wait, started == ExitCode::SUCCESS) {
        let current =
            ctx.profile(name).current()?.context("the container has no current generation")?;
        let Some(tools) = SystemdTools::of(&current)? else {
            bail!(
                "container '{name}' started, but its system has no systemd/bin/systemctl to say \
                 when it has booted"
            );
        };
        match readiness::wait_until_booted(ctx, name, &tools, limit, || {})? {
            Booted::Running => println!("container '{name}' has booted"),
            Booted::Degraded(units) => eprintln!(
                "warning: container '{name}' has booted, degraded: {} failed",
                if units.is_empty() { "units".to_string() } else { units.join(", ") }
            ),
        }
    }
    Ok(started)
}

/// Stops container `name` cleanly where it runs, and starts it.
fn restart(ctx: &Context, name: &str, wait: Option<Duration>) -> Result<ExitCode> {
    super::stop::stop(ctx, name)?;
    start(ctx, name, wait)
}

fn start_unwaited(ctx: &Context, name: &str) -> Result<ExitCode> {
    let (lock, entry) = opening::lock_existing(ctx, name)?;
    if let Some(monitor) = ctx.lxc().monitor_elsewhere(name) {
        bail!(
            "container '{name}' runs in another network namespace (its LXC monitor is pid \
             {monitor}), where LXC's commands reach it: run this command there"
        );
    }
    let ids = entry.ids(&ctx.settings.host.idmap);
    let current = ctx
        .profile(name)
        .current()?
        .with_context(|| format!("container '{name}' has no current generation"))?;
    // What LXC reads: nothing of an older or tampered generation that this
    // helper would not write.
    lxc_settings::check_generation(ctx, name, ids, &current.path)
        .with_context(|| format!("refusing to start '{name}'"))?;
    let meta = current.meta()?;
    capabilities::permit(&meta.spec, &ctx.settings.host).with_context(|| {
        format!("container '{name}' asks for what this host no longer allows: update it")
    })?;
    let container = Container { name, ids, entry: &entry, generation: &current, meta: &meta };
    // Root's files in its directory, which a container made before the gate
    // owned, are root's alone before any is written or read.
    ctx.lxc().secure(name, ids.host_id)?;
    ctx.check_reachable(name, ids)?;
    for capability in capabilities::ALL {
        capability.prepare_start(ctx, &container)?;
    }
    // The host's part of its LXC config, as the host is today.
    let root_settings = root_settings(&entry, &current)?;
    let config = lxc_settings::own_config(ctx, name, &meta.spec, root_settings.as_deref())?;
    ctx.lxc().keep_config(name, &config)?;
    mount(ctx, &container).with_context(|| format!("cannot start container '{name}'"))?;
    for capability in capabilities::ALL {
        capability.before_start(ctx, &container)?;
    }
    let lxc = ctx.lxc();
    if in_foreground(ctx) {
        record_started(ctx, name, &current, &meta.params)?;
        if !meta.spec.network.peers.is_empty() {
            eprintln!(
                "note: started in the foreground, '{name}' reaches its peers only after \
                 `nixcloud-container repair-network`"
            );
        }
        // The console stays on this terminal until the container stops; other
        // commands (update, stop) must not wait for that.
        drop(lock);
        let status = lxc.start_foreground(name, &ctx.lxc_args);
        // Under its lock again: another command may have started it since.
        let (_lock, _) = opening::lock_existing(ctx, name)?;
        stopped_unless_running(ctx, name)?;
        return Ok(exit_code(status?));
    }
    let started = match lxc.start(name, &ctx.lxc_args) {
        Ok(started) => started,
        Err(err) => {
            // What was put in place for it goes again.
            if let Err(undo) = stopped_unless_running(ctx, name) {
                eprintln!("warning: {undo:#}");
            }
            return Err(err.context(format!("cannot start container '{name}'")));
        }
    };
    match started {
        Started::Now => {
            record_started(ctx, name, &current, &meta.params)?;
            for capability in capabilities::ALL {
                capability.started(ctx, &container)?;
            }
        }
        Started::AlreadyRunning => println!("container '{name}' is already running"),
    }
    Ok(ExitCode::SUCCESS)
}

/// What goes when a container stops (`super::stopped`), unless it runs: a
/// start that failed for one already running (a bad option of LXC's fails
/// before lxc-start's own check), or a foreground start that ended after
/// another command started it again, leaves that run its record and its
/// forwarded ports.
fn stopped_unless_running(ctx: &Context, name: &str) -> Result<()> {
    if ctx.lxc().is_running(name).unwrap_or(false) {
        return Ok(());
    }
    super::stopped(ctx, name)
}

/// What `container` sees of the host, mounted onto its rootfs where
/// lxc-start (run from this process) finds it, and nowhere else: in a mount
/// namespace of this process's own. Its profile (at /init), read-only, then
/// what each capability mounts.
fn mount(ctx: &Context, container: &Container) -> Result<()> {
    mounts::enter_private_namespace()?;
    // The rootfs as this namespace has it: mounts go there.
    let rootfs = ctx.lxc().rootfs(container.name);
    let mounter = Mounter::new(&rootfs, container.ids, ctx.settings.host.idmapped_mounts)?;
    mounter.make_lxc_mount_points()?;
    let profile = HostMount {
        source: MountSource::Host(ctx.profile(container.name).dir().to_path_buf()),
        target: PROFILE_MOUNT.into(),
        writable: false,
        idmapped: true,
    };
    mounter.mount_all(&[profile])?;
    capabilities::ALL.iter().try_for_each(|capability| capability.mount(ctx, container, &mounter))
}

/// Root's own LXC settings in `generation`, which root gave for this
/// container (nothing else can have put them there: a generation that has
/// others is refused).
fn root_settings(entry: &ContainerRecord, generation: &Generation) -> Result<Option<String>> {
    let file = generation.path.join(crate::layout::ROOT_LXC_CONF);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", file.display())),
    };
    if !entry.root_settings_digests.contains(&crate::lxc::digest(&text)) {
        bail!(
            "refusing to start: {} holds LXC settings that root did not give for this container",
            file.display()
        );
    }
    Ok(Some(text))
}

/// Records which generation's LXC settings the container runs with (until
/// its next start), for `list`, `show-ip` and the network rules.
fn record_started(ctx: &Context, name: &str, current: &Generation, params: &Params) -> Result<()> {
    let started = StartedWith { generation: current.number, address: params.hostonly.address };
    ctx.store.record_started(name, started)
}
