//! The store a container sees (its store view, view.rs), and what a
//! container file may ask instead where the host allows it: the host's
//! whole store (`wholeStore`, `allowWholeStore`), and Nix inside through the
//! host's nix-daemon (`nixDaemon`, `allowNixDaemon`), which needs the whole
//! store too (the daemon adds paths it must see).

pub mod view;

use std::path::Path;

use anyhow::{bail, Context as _, Result};

use super::{Capability, Container, Switch};
use crate::context::Context;
use crate::layout::NIX_STORE;
use crate::lxc::mounts::{HostMount, MountSource, Mounter};
use crate::settings::HostConfig;
use crate::spec::Spec;
use view::StoreView;

/// The capability.
pub struct NixStore;

impl Capability for NixStore {
    /// Refuses Nix inside and the whole store where the host does not
    /// allow them.
    fn permit(&self, spec: &Spec, host: &HostConfig) -> Result<()> {
        if spec.nix_daemon && !host.allow_nix_daemon {
            bail!(
                "nixDaemon = true asks for the host's nix-daemon, which this host does not allow \
                 (nixcloud.containers.allowNixDaemon, or allowNixDaemon in the host file)"
            );
        }
        if spec.whole_store && !host.allow_whole_store {
            bail!(
                "wholeStore = true asks for the host's whole store, which this host does not \
                 allow (nixcloud.containers.allowWholeStore, or allowWholeStore in the host file)"
            );
        }
        Ok(())
    }

    /// A container's store holds no other container's generation.
    fn check_generation(&self, name: &str, path: &Path) -> Result<()> {
        StoreView::of_path(path)?.check_no_other_generation(name)
    }

    /// The daemon's socket directory, where Nix inside reaches it.
    fn prepare_start(&self, ctx: &Context, container: &Container) -> Result<()> {
        if !container.meta.params.nix_daemon {
            return Ok(());
        }
        let socket_dir = Path::new(ctx.settings.host.nix_daemon_socket_dir.as_str());
        if !socket_dir.is_dir() {
            bail!("{} is not there: start the host's nix-daemon", socket_dir.display());
        }
        if let Some(closed) = daemon_socket_closed(socket_dir) {
            eprintln!(
                "warning: Nix inside '{}' cannot reach the nix-daemon: {closed}",
                container.name
            );
        }
        Ok(())
    }

    /// Its store view, or the whole store where it asks for it; the
    /// daemon's socket directory where it has Nix inside.
    fn mount(&self, ctx: &Context, container: &Container, mounter: &Mounter) -> Result<()> {
        let params = &container.meta.params;
        let read_only = |source: &Path, target: &str| HostMount {
            source: MountSource::Host(source.to_path_buf()),
            target: target.trim_start_matches('/').into(),
            writable: false,
            idmapped: true,
        };
        if params.sees_whole_store() {
            mounter.mount_all(&[read_only(Path::new(NIX_STORE), NIX_STORE)])?;
        } else {
            StoreView::of(container.generation)?.mount(mounter)?;
        }
        if params.nix_daemon {
            let socket_dir = Path::new(ctx.settings.host.nix_daemon_socket_dir.as_str());
            // Not idmapped: the directory's owner and group are not the
            // container's, so its bits for others decide, as for any user the
            // host has not let in (Debian makes it root:nix-users 0770).
            let socket =
                HostMount { idmapped: false, ..read_only(socket_dir, NIX_DAEMON_SOCKET_DIR) };
            mounter.mount_all(&[socket])?;
        }
        Ok(())
    }

    /// What the new generation needs, added to the running container's view
    /// before anything of it runs there.
    fn prepare_switch(&self, ctx: &Context, switch: &Switch) -> Result<()> {
        show_closure(ctx, switch)
    }
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

/// Adds what the generation switched to needs to the store view of the
/// running container, so that its activation finds its closure.
fn show_closure(ctx: &Context, switch: &Switch) -> Result<()> {
    let (name, generation, init_pid) = (switch.name, switch.to, switch.init_pid);
    let params = generation.meta()?.params;
    if params.sees_whole_store() {
        return Ok(());
    }
    let ids = switch.ids;
    let rootfs = ctx.lxc().rootfs(name);
    let mounter = Mounter::new(&rootfs, ids, ctx.settings.host.idmapped_mounts)?;
    let view = StoreView::of(generation)?;
    let added = view.add_to_running(&mounter, &rootfs, init_pid).with_context(|| {
        format!("cannot show generation {}'s store paths in '{name}'", generation.number)
    })?;
    if added > 0 && ctx.settings.verbosity == crate::settings::Verbosity::Verbose {
        eprintln!(
            "{added} store paths of generation {} are now visible in '{name}'",
            generation.number
        );
    }
    Ok(())
}
