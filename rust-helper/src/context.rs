//! What every command works with: the host's settings, the state, the
//! user's -n and -l parameters.

use anyhow::{anyhow, Result};

use crate::ids::IdMap;
use crate::lxc::Lxc;
use crate::names;
use crate::nix::Nix;
use crate::profile::Profile;
use crate::settings::Settings;
use crate::state::{ContainerRecord, Store};

pub struct Context {
    pub settings: Settings,
    pub store: Store,
    /// `-n`: parameters for every Nix command that evaluates or builds.
    pub nix_args: Vec<String>,
    /// `-l`: parameters for the lxc-* command the command is named after.
    pub lxc_args: Vec<String>,
    /// How long a live switch waits for the guest to report its health
    /// (None: it does not).
    pub health_timeout: Option<std::time::Duration>,
    /// The network namespace of this process's Nix commands, once one needs it.
    pub build_network: crate::nix::build_network::Shared,
    /// The flakes this process fetched, each once (flake_inputs.rs).
    pub flake_fetches: crate::nix::flake_inputs::Fetches,
}

impl Context {
    /// A command's context on the host that `settings` describe, with the
    /// user's -n and -l parameters, and for live switches `health_timeout`.
    pub fn new(
        settings: Settings,
        nix_args: Vec<String>,
        lxc_args: Vec<String>,
        health_timeout: Option<std::time::Duration>,
    ) -> Context {
        Context {
            store: Store::new(&settings.state_dir),
            settings,
            nix_args,
            lxc_args,
            health_timeout,
            build_network: Default::default(),
            flake_fetches: Default::default(),
        }
    }

    pub fn lxc(&self) -> Lxc<'_> {
        Lxc {
            path: &self.settings.lxc_path,
            verbose: self.settings.verbosity == crate::settings::Verbosity::Verbose,
        }
    }

    pub fn profile(&self, name: &str) -> Profile {
        Profile::new(&self.settings.profiles_dir, name)
    }

    /// Nix, with the user's -n parameters.
    pub fn nix(&self) -> Nix<'_> {
        Nix {
            settings: &self.settings,
            extra_args: &self.nix_args,
            network: &self.build_network,
            flakes: &self.flake_fetches,
        }
    }

    /// Nix without them: for nix-env's own generation commands.
    pub fn plain_nix(&self) -> Nix<'_> {
        Nix {
            settings: &self.settings,
            extra_args: &[],
            network: &self.build_network,
            flakes: &self.flake_fetches,
        }
    }

    /// Fails unless the container's root (host uid `ids.host_id`) can reach
    /// its rootfs and its profile, and its ids are delegated to root.
    pub fn check_reachable(&self, name: &str, ids: IdMap) -> Result<()> {
        crate::system::subids::check_delegated(ids, &self.settings.host.idmap)?;
        crate::lxc::check_reachable(&self.lxc().rootfs(name), ids.host_id)?;
        crate::lxc::check_reachable(self.profile(name).dir(), ids.host_id)
    }

    /// The entry of an existing container, read without locking: for
    /// commands that only look.
    pub fn existing(&self, name: &str) -> Result<ContainerRecord> {
        names::validate(name)?;
        match self.store.read()?.containers.remove(name) {
            Some(entry) if entry.exists() => Ok(entry),
            _ => Err(unknown(name)),
        }
    }
}

/// The error for a name no container has.
pub fn unknown(name: &str) -> anyhow::Error {
    anyhow!("no container named '{name}' (see `nixcloud-container list`)")
}
