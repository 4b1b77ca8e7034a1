//! Ephemeral roots (`ephemeral`): the container's root starts empty at
//! every start; its data directory and bind mounts stay, as does whatever
//! the helper mounts (its profile, the store). NixOS's
//! `containers.<name>.ephemeral` is the model (nixpkgs
//! nixos/modules/virtualisation/nixos-containers.nix): there the root is
//! the unit's runtime directory /run/nixos-containers/<name>, gone when the
//! unit stops, and systemd-nspawn runs with --ephemeral, while the bind
//! mounts and the per-container profiles under /nix/var/nix stay.
//!
//! Here the rootfs in LXC's directory is emptied in place before the
//! helper's mounts (`prepare_start`), so that LXC finds it where its config
//! says, owned and with the mode LXC gave it; the mount points LXC and the
//! helper need in it (proc, sys, dev, init, nix) are made again by the
//! mounts (lxc/mounts.rs), as after a crash that removed them. Every start
//! is then a first start: `create` makes the rootfs empty too
//! (commands/create.rs), and the guest's init makes the rest at boot (a
//! NixOS guest's stage 2, nixpkgs nixos/modules/system/boot/stage-2-init.sh,
//! makes /etc, /tmp, /var, /root, /bin and /home where they are missing, and
//! its activation fills /etc and links /bin/sh).
//!
//! No host permission: it asks nothing of the host (no path, port, device
//! or store path) and takes from the container only what it wrote into its
//! own root.

use anyhow::{Context as _, Result};

use super::{Capability, Container};
use crate::context::Context;

/// The capability.
pub struct Ephemeral;

impl Capability for Ephemeral {
    /// Empties the rootfs of a stopped container that asks for it, without
    /// following the links the container left there (system/host_dirs.rs
    /// `empty`). A running container's root is in use and stays: lxc-start
    /// then says that it runs.
    fn prepare_start(&self, ctx: &Context, container: &Container) -> Result<()> {
        if !container.meta.spec.ephemeral {
            return Ok(());
        }
        let lxc = ctx.lxc();
        if lxc.state(container.name)? != "STOPPED" {
            return Ok(());
        }
        crate::system::host_dirs::empty(&lxc.rootfs(container.name))
            .with_context(|| format!("cannot empty the root of '{}'", container.name))
    }
}
