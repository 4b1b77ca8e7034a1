//! The capabilities a container file can ask for, each in a home of its
//! own: its part of the spec and of the host file (the types in its
//! `types.rs`, which spec.rs and settings.rs read), the host's permission
//! for it, what it adds to or accepts in the LXC settings, and its work at
//! create, start, a live switch, stop and destroy.
//!
//! The lifecycle (commands/ and engine/) calls every capability through one
//! interface, `Capability`, visiting `ALL` in order at each step; each
//! capability implements only the steps it takes part in. Incus's device
//! drivers (validateConfig, Add, Start, Stop, Remove) are the model.

pub mod bind_mounts;
pub mod devices;
pub mod ephemeral;
pub mod forward_ports;
pub mod limits;
pub mod lxc_conf;
pub mod network;
pub mod store;

use std::path::Path;

use anyhow::Result;

use crate::context::Context;
use crate::ids::IdMap;
use crate::lxc::mounts::Mounter;
use crate::profile::Generation;
use crate::settings::HostConfig;
use crate::spec::{GenerationMeta, Spec};
use crate::state::{ContainerRecord, State};
use lxc_conf::{Rules, Setting};

/// Every capability, in the order each step visits them: the ephemeral
/// root first, emptied before any other puts something into it.
pub const ALL: [&dyn Capability; 7] = [
    &ephemeral::Ephemeral,
    &bind_mounts::BindMounts,
    &forward_ports::ForwardPorts,
    &devices::Devices,
    &network::Network,
    &store::NixStore,
    &limits::ResourceLimits,
];

/// One container at a step of its life (its start), as its capabilities
/// see it.
pub struct Container<'a> {
    pub name: &'a str,
    pub ids: IdMap,
    /// Its entry in the state.
    pub entry: &'a ContainerRecord,
    /// The generation concerned (the one that starts), and its metadata.
    pub generation: &'a Generation,
    pub meta: &'a GenerationMeta,
}

/// A running container's live switch from one generation to another.
pub struct Switch<'a> {
    pub name: &'a str,
    pub ids: IdMap,
    /// The host pid of its init.
    pub init_pid: u32,
    pub from: &'a Generation,
    pub to: &'a Generation,
}

/// What a capability does at each step of a container's life; a step it
/// takes no part in does nothing.
pub trait Capability: Sync {
    /// Fails where `spec` asks of the host what `host` does not allow: at
    /// create and update before anything is built, and at start again,
    /// where the host may have taken it back.
    fn permit(&self, _spec: &Spec, _host: &HostConfig) -> Result<()> {
        Ok(())
    }

    /// Claims in `state` what container `name`'s next generation, of
    /// `spec`, holds of the host (addresses, host ports), before it is
    /// built; nothing is saved where a claim fails.
    fn claim(
        &self,
        _state: &mut State,
        _host: &HostConfig,
        _name: &str,
        _spec: &Spec,
    ) -> Result<()> {
        Ok(())
    }

    /// Sets what `entry` holds of the host to what `generations` (every
    /// generation of its container) use.
    fn recount(
        &self,
        _host: &HostConfig,
        _entry: &mut ContainerRecord,
        _generations: &[GenerationMeta],
    ) {
    }

    /// Whether `key` of a generation's lxc.conf is one of its keys
    /// (lib/lxc-config.nix writes it).
    fn owns_lxc_key(&self, _key: &str) -> bool {
        false
    }

    /// Checks the lines of a generation's lxc.conf with its keys against
    /// `rules`: before LXC ever reads them.
    fn check_lxc_settings(&self, _settings: &[Setting], _rules: &Rules) -> Result<()> {
        Ok(())
    }

    /// What it adds to the container's own LXC config (written at create
    /// and at each start, engine/lxc_settings.rs) for `spec`.
    fn own_config(&self, _spec: &Spec) -> String {
        String::new()
    }

    /// Fails where the generation at `path` may not be container `name`'s
    /// (before it is made current, started or switched to).
    fn check_generation(&self, _name: &str, _path: &Path) -> Result<()> {
        Ok(())
    }

    /// When container `name` is made (create): what it keeps on the host.
    fn add(&self, _ctx: &Context, _name: &str) -> Result<()> {
        Ok(())
    }

    /// Before a container starts and before its mounts: what it needs on
    /// the host.
    fn prepare_start(&self, _ctx: &Context, _container: &Container) -> Result<()> {
        Ok(())
    }

    /// Mounts what the container sees of it, in the helper's mount
    /// namespace, which lxc-start inherits.
    fn mount(&self, _ctx: &Context, _container: &Container, _mounter: &Mounter) -> Result<()> {
        Ok(())
    }

    /// Just before lxc-start: the host's rules for it in place.
    fn before_start(&self, _ctx: &Context, _container: &Container) -> Result<()> {
        Ok(())
    }

    /// Once LXC started it.
    fn started(&self, _ctx: &Context, _container: &Container) -> Result<()> {
        Ok(())
    }

    /// Once container `name` stopped (or did not start after all).
    fn stopped(&self, _ctx: &Context, _name: &str) -> Result<()> {
        Ok(())
    }

    /// Before a running container is asked anything for a live switch.
    fn prepare_switch(&self, _ctx: &Context, _switch: &Switch) -> Result<()> {
        Ok(())
    }

    /// Just before the live switch's activation (and the other way, where
    /// it fails and the switch goes back).
    fn switch(&self, _ctx: &Context, _switch: &Switch) -> Result<()> {
        Ok(())
    }

    /// After container `name`'s current generation changed (update,
    /// switch-generation, rollback) to one with `current`; `activated`:
    /// whether it runs now, where the container runs.
    fn current_changed(
        &self,
        _ctx: &Context,
        _name: &str,
        _current: &GenerationMeta,
        _activated: bool,
    ) -> Result<()> {
        Ok(())
    }

    /// After container `name`'s entry in the state changed from `before` to
    /// `after` (None: it was not there; it is gone).
    fn entry_changed(
        &self,
        _ctx: &Context,
        _name: &str,
        _before: Option<&ContainerRecord>,
        _after: Option<&ContainerRecord>,
    ) -> Result<()> {
        Ok(())
    }

    /// When container `name` (with `entry`, if it has one) goes: what it
    /// keeps on the host for it goes too, before its entry.
    fn remove(&self, _ctx: &Context, _name: &str, _entry: Option<&ContainerRecord>) -> Result<()> {
        Ok(())
    }
}

/// Fails with the first request of `spec` that `host` does not allow.
pub fn permit(spec: &Spec, host: &HostConfig) -> Result<()> {
    ALL.iter().try_for_each(|capability| capability.permit(spec, host))
}

/// Tells every capability that container `name`'s entry changed.
pub fn entry_changed(
    ctx: &Context,
    name: &str,
    before: Option<&ContainerRecord>,
    after: Option<&ContainerRecord>,
) -> Result<()> {
    ALL.iter().try_for_each(|capability| capability.entry_changed(ctx, name, before, after))
}

/// Tells every capability that container `name`'s current generation changed.
pub fn current_changed(
    ctx: &Context,
    name: &str,
    current: &GenerationMeta,
    activated: bool,
) -> Result<()> {
    ALL.iter().try_for_each(|capability| capability.current_changed(ctx, name, current, activated))
}

/// Tells every capability that container `name` stopped.
pub fn stopped(ctx: &Context, name: &str) -> Result<()> {
    ALL.iter().try_for_each(|capability| capability.stopped(ctx, name))
}
