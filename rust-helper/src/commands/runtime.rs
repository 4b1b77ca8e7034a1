//! start, stop, terminate, login, run: the container's life under LXC.

use std::path::Path;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use super::context::Context;
use super::readiness::{self, Booted, SystemdTools};
use super::{egress, grants, network_rules, opening, port_guard};
use crate::error::EXIT_FAILURE;
use crate::layout::PROFILE_MOUNT;
use crate::lxc::mounts::{self, HostMount, MountSource, Mounter};
use crate::lxc::{Halted, Lxc, Started};
use crate::profile::Generation;
use crate::spec::GenerationMeta;
use crate::spec::Params;
use crate::state::{ContainerRecord, StartedWith};
use crate::store_view::{StoreView, NIX_STORE};
use crate::system::scratch::Scratch;

/// Whether -l starts the container in the foreground, on this terminal.
pub fn in_foreground(ctx: &Context) -> bool {
    ctx.lxc_args.iter().any(|arg| arg == "-F" || arg == "--foreground")
}

/// Starts container `name`, and with `wait` waits at most that long for its
/// guest to boot.
pub fn start(ctx: &Context, name: &str, wait: Option<Duration>) -> Result<ExitCode> {
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
pub fn restart(ctx: &Context, name: &str, wait: Option<Duration>) -> Result<ExitCode> {
    stop(ctx, name)?;
    start(ctx, name, wait)
}

/// Shows container `name`'s journal, as `journalctl` inside does.
pub fn logs(ctx: &Context, name: &str, follow: bool, lines: Option<u64>) -> Result<ExitCode> {
    ensure_running(ctx, name)?;
    let current =
        ctx.profile(name).current()?.context("the container has no current generation")?;
    let Some(journalctl) = SystemdTools::of(&current)?.and_then(|tools| tools.journalctl()) else {
        bail!(
            "container '{name}' has no journal: its system has no systemd/bin/journalctl (a NixOS \
             guest has; see `nixcloud-container run {name} ...` for the logs of other systems)"
        );
    };
    let mut command = vec![journalctl.display().to_string(), "--no-pager".to_string()];
    if let Some(lines) = lines {
        command.push(format!("--lines={lines}"));
    }
    if follow {
        command.push("--follow".to_string());
    }
    Ok(exit_code(ctx.lxc().attach(name, &ctx.lxc_args, &command)?))
}

fn start_unwaited(ctx: &Context, name: &str) -> Result<ExitCode> {
    let (lock, entry) = opening::lock_existing(ctx, name)?;
    let ids = entry.ids(&ctx.settings.host.idmap);
    let current = ctx
        .profile(name)
        .current()?
        .with_context(|| format!("container '{name}' has no current generation"))?;
    // What LXC reads: nothing of an older or tampered generation that this
    // helper would not write.
    ctx.check_generation(name, ids, &current.path)
        .with_context(|| format!("refusing to start '{name}'"))?;
    let meta = current.meta()?;
    let names_peers = !meta.spec.network.peers.is_empty();
    let params = meta.params.clone();
    check_bridges(name, &params)?;
    if let Some(gap) = crate::limits::enforcement_gap(&params.limits) {
        eprintln!("warning: the limits of '{name}' are not enforced: {gap}");
    }
    // Root's files in its directory, which a container made before the gate
    // owned, are root's alone before any is written or read.
    ctx.lxc().secure(name, ids.host_id)?;
    ctx.check_reachable(name, ids)?;
    // The host's part of its LXC config, as the host is today.
    let root_settings =
        ctx.lxc().keep_root_settings(name, root_settings(&entry, &current)?.as_deref())?;
    let config = crate::lxc::OwnConfig {
        lxc_config_dir: &ctx.settings.lxc_config_dir()?,
        profile_link: &ctx.profile(name).link(),
        app_armor: ctx.settings.app_armor(),
        devices: &meta.spec.devices,
        root_settings: root_settings.as_deref(),
    }
    .text();
    ctx.lxc().keep_config(name, &config)?;
    // What the container sees of the host, mounted where lxc-start (run
    // from this process) finds it, and nowhere else.
    let mounts = host_mounts(ctx, name, &meta)?;
    let view = if params.sees_whole_store() { None } else { Some(StoreView::of(&current)?) };
    mounts::enter_private_namespace()?;
    // The rootfs as this namespace has it: mounts go there.
    let mounter = Mounter::new(&ctx.lxc().rootfs(name), ids, ctx.settings.host.idmapped_mounts)?;
    mounter
        .make_lxc_mount_points()
        .and_then(|()| view.map_or(Ok(()), |view| view.mount(&mounter)))
        .and_then(|()| mounter.mount_all(&mounts))
        .with_context(|| format!("cannot start container '{name}'"))?;
    let lxc = ctx.lxc();
    // Its ports' guard, which LXC's new ports meet at once.
    port_guard::before_start(ctx, name, &entry, &params)?;
    // Where what it sends through the host may go.
    egress::before_start(ctx)?;
    // The filter between peers first: its ports start isolated, and stop
    // being so only with their pairs in place; and its forwarded ports.
    network_rules::before_start(ctx, name, network_rules::needs_rules(&meta))?;
    if in_foreground(ctx) {
        record_started(ctx, name, &current, &params)?;
        if names_peers {
            eprintln!(
                "note: started in the foreground, '{name}' reaches its peers only after \
                 `nixcloud-container repair-network`"
            );
        }
        // The console stays on this terminal until the container stops; other
        // commands (update, stop) must not wait for that.
        drop(lock);
        let status = lxc.start_foreground(name, &ctx.lxc_args);
        network_rules::refresh(ctx, false)?;
        return Ok(exit_code(status?));
    }
    let scratch = Scratch::new(&ctx.settings.state_dir)?;
    let started = match lxc.start(name, &ctx.lxc_args, scratch.dir()) {
        Ok(started) => started,
        Err(err) => {
            // What was put in place for it goes again.
            if let Err(undo) = network_rules::refresh(ctx, false) {
                eprintln!("warning: {undo:#}");
            }
            return Err(err.context(format!("cannot start container '{name}'")));
        }
    };
    match started {
        Started::Now => {
            record_started(ctx, name, &current, &params)?;
            network_rules::after_start(name, &params, names_peers)?;
        }
        Started::AlreadyRunning => println!("container '{name}' is already running"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The host paths container `name` sees besides its store view: its
/// profile (at /init), read-only; the whole store where it asks for it and
/// the host allows it, instead of the view; the host's nix-daemon socket
/// likewise; its bind mounts, where the host still allows them.
fn host_mounts(ctx: &Context, name: &str, meta: &GenerationMeta) -> Result<Vec<HostMount>> {
    let params = &meta.params;
    let read_only = |source: &Path, target: &str| HostMount {
        source: MountSource::Host(source.to_path_buf()),
        target: target.into(),
        writable: false,
        idmapped: true,
    };
    let mut mounts = vec![read_only(ctx.profile(name).dir(), PROFILE_MOUNT)];
    if params.whole_store && !ctx.settings.host.allow_whole_store {
        bail!(
            "container '{name}' asks for the host's whole store, which this host no longer \
             allows (allowWholeStore): update it without wholeStore"
        );
    }
    if params.sees_whole_store() {
        mounts.push(read_only(Path::new(NIX_STORE), NIX_STORE.trim_start_matches('/')));
    }
    if params.nix_daemon {
        if !ctx.settings.host.allow_nix_daemon {
            bail!(
                "container '{name}' asks for the host's nix-daemon, which this host no longer \
                 allows (allowNixDaemon): update it without nixDaemon"
            );
        }
        let socket_dir = Path::new(ctx.settings.host.nix_daemon_socket_dir.as_str());
        if !socket_dir.is_dir() {
            bail!("{} is not there: start the host's nix-daemon", socket_dir.display());
        }
        if let Some(closed) = daemon_socket_closed(socket_dir) {
            eprintln!("warning: Nix inside '{name}' cannot reach the nix-daemon: {closed}");
        }
        // Not idmapped: the directory's owner and group are not the
        // container's, so its bits for others decide, as for any user the
        // host has not let in (Debian makes it root:nix-users 0770).
        mounts.push(HostMount {
            idmapped: false,
            ..read_only(socket_dir, NIX_DAEMON_SOCKET_DIR.trim_start_matches('/'))
        });
    }
    grants::check(&meta.spec, &ctx.settings.host).with_context(|| {
        format!("container '{name}' asks for what this host no longer allows: update it")
    })?;
    grants::check_devices(name, &meta.spec)?;
    // Made (or, made before the gate, closed) also where no bind mount needs it now.
    grants::make_data_dir(&ctx.settings, name)?;
    mounts.extend(grants::bind_mounts(&ctx.settings, name, &meta.spec)?);
    Ok(mounts)
}

/// Where Nix inside looks for the daemon's socket (Nix's default).
const NIX_DAEMON_SOCKET_DIR: &str = "/nix/var/nix/daemon-socket";

/// Why a container, to which `dir` and its socket are nobody's, could not
/// connect to the daemon's socket there; None where it can (or where no
/// daemon listens yet, whose socket nix-daemon makes writable by all).
fn daemon_socket_closed(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let shown = |meta: &std::fs::Metadata| {
        format!("owner uid {}, group {}, mode {:o}", meta.uid(), meta.gid(), meta.mode() & 0o7777)
    };
    let meta = std::fs::metadata(dir).ok()?;
    if meta.mode() & 0o001 == 0 {
        return Some(format!(
            "{} ({}) does not let others in: give containers a directory that does \
             (nixDaemonSocketDir)",
            dir.display(),
            shown(&meta)
        ));
    }
    let socket = dir.join("socket");
    let meta = std::fs::metadata(&socket).ok()?;
    (meta.mode() & 0o002 == 0)
        .then(|| format!("{} ({}) is not writable by others", socket.display(), shown(&meta)))
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
/// its next start), for `list` and `show-ip`.
fn record_started(ctx: &Context, name: &str, current: &Generation, params: &Params) -> Result<()> {
    let mut locked = ctx.store.lock()?;
    let entry = locked.state.containers.get_mut(name).context("the container is gone")?;
    entry.started_with =
        Some(StartedWith { generation: current.number, address: params.hostonly.address });
    locked.save()
}

/// A clear error instead of LXC's when a bridge of the generation is missing.
fn check_bridges(name: &str, params: &Params) -> Result<()> {
    let bridges =
        std::iter::once(&params.hostonly.bridge).chain(params.internet.as_ref().map(|i| &i.bridge));
    for bridge in bridges {
        if !std::path::Path::new("/sys/class/net").join(bridge.as_str()).join("bridge").exists() {
            bail!(
                "cannot start container '{name}': bridge {bridge} does not exist on this host \
                 (nixcloud.containers.enable = true creates the default ones, \
                 nixcloud.containers.extraBridges the others)"
            );
        }
    }
    Ok(())
}

pub fn stop(ctx: &Context, name: &str) -> Result<ExitCode> {
    halt(ctx, name, "stop", |lxc| lxc.stop(name, &ctx.lxc_args))
}

pub fn terminate(ctx: &Context, name: &str) -> Result<ExitCode> {
    halt(ctx, name, "terminate", |lxc| lxc.kill(name, &ctx.lxc_args))
}

/// Stops a container with `how`; one that is not running is no error.
fn halt(
    ctx: &Context,
    name: &str,
    verb: &str,
    how: impl FnOnce(&Lxc) -> Result<Halted>,
) -> Result<ExitCode> {
    let (_lock, _) = opening::lock_existing(ctx, name)?;
    match how(&ctx.lxc()).with_context(|| format!("cannot {verb} container '{name}'"))? {
        Halted::Now => {}
        Halted::WasNotRunning => println!("container '{name}' is not running"),
    }
    // Its forwarded ports go with it.
    network_rules::refresh(ctx, false)?;
    Ok(ExitCode::SUCCESS)
}

pub fn login(ctx: &Context, name: &str) -> Result<ExitCode> {
    ensure_running(ctx, name)?;
    Ok(exit_code(ctx.lxc().login(name, &ctx.lxc_args)?))
}

pub fn run(ctx: &Context, name: &str, command: &[String]) -> Result<ExitCode> {
    ensure_running(ctx, name)?;
    Ok(exit_code(ctx.lxc().attach(name, &ctx.lxc_args, command)?))
}

/// Fails, in one line, unless container `name` exists and runs: lxc-attach
/// would say it on our terminal in words of its own.
fn ensure_running(ctx: &Context, name: &str) -> Result<()> {
    ctx.existing(name)?;
    if !ctx.lxc().is_running(name)? {
        bail!(
            "container '{name}' is not running (start it with `nixcloud-container start {name}`)"
        );
    }
    Ok(())
}

fn exit_code(status: ExitStatus) -> ExitCode {
    match status.code() {
        Some(code) => ExitCode::from(code.clamp(0, 255) as u8),
        None => ExitCode::from(EXIT_FAILURE),
    }
}
