//! start, restart: a container's life under LXC begins.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use super::{exit_code, for_each, Targets};
use crate::capabilities::grants;
use crate::capabilities::network::{egress, port_guard, rules as network_rules};
use crate::capabilities::store::view::StoreView;
use crate::context::Context;
use crate::engine::opening;
use crate::engine::readiness::{self, Booted, SystemdTools};
use crate::error::usage;
use crate::layout::{NIX_STORE, PROFILE_MOUNT};
use crate::lxc::mounts::{self, HostMount, MountSource, Mounter};
use crate::lxc::Started;
use crate::profile::Generation;
use crate::spec::{GenerationMeta, Params};
use crate::state::{ContainerRecord, StartedWith};
use crate::system::scratch::Scratch;

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
fn start(ctx: &Context, name: &str, wait: Option<Duration>) -> Result<ExitCode> {
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
    let ids = entry.ids(&ctx.settings.host.idmap);
    let current = ctx
        .profile(name)
        .current()?
        .with_context(|| format!("container '{name}' has no current generation"))?;
    // What LXC reads: nothing of an older or tampered generation that this
    // helper would not write.
    crate::engine::lxc_settings::check_generation(ctx, name, ids, &current.path)
        .with_context(|| format!("refusing to start '{name}'"))?;
    let meta = current.meta()?;
    let names_peers = !meta.spec.network.peers.is_empty();
    let params = meta.params.clone();
    check_bridges(name, &params)?;
    if let Some(gap) = crate::capabilities::limits::types::enforcement_gap(&params.limits) {
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
