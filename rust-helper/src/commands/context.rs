//! What every command works with: the host's settings, the state, the
//! user's -n and -l parameters; and the opening that commands changing a
//! container share.

use std::path::Path;

use anyhow::{anyhow, Result};

use super::recovery;
use crate::lxc::Lxc;
use crate::lxc_conf::{self, Rules};
use crate::names;
use crate::nix::Nix;
use crate::profile::Profile;
use crate::settings::Settings;
use crate::state::{ContainerLock, Entry, Locked, Phase, Store};

pub struct Context {
    pub settings: Settings,
    pub store: Store,
    /// `-n`: parameters for every Nix command that evaluates or builds.
    pub nix_args: Vec<String>,
    /// `-l`: parameters for the lxc-* command the command is named after.
    pub lxc_args: Vec<String>,
}

/// A container's lock and the state, taken in that order, with what crashed
/// commands left behind repaired.
pub struct Opened {
    pub lock: ContainerLock,
    pub locked: Locked,
    /// The phase the container was repaired from, if a crash left it unfinished.
    pub repaired: Option<Phase>,
}

impl Context {
    pub fn lxc(&self) -> Lxc<'_> {
        Lxc { path: &self.settings.lxc_path, verbose: self.settings.verbose }
    }

    pub fn profile(&self, name: &str) -> Profile {
        Profile::new(&self.settings.profiles_dir, name)
    }

    /// Nix, with the user's -n parameters.
    pub fn nix(&self) -> Nix<'_> {
        Nix { settings: &self.settings, extra_args: &self.nix_args }
    }

    /// Nix without them: for nix-env's own generation commands.
    pub fn plain_nix(&self) -> Nix<'_> {
        Nix { settings: &self.settings, extra_args: &[] }
    }

    /// Fails unless the container's root can reach its rootfs and its profile.
    pub fn check_reachable(&self, name: &str) -> Result<()> {
        let host_id = self.settings.host.idmap.host_id;
        crate::lxc::check_reachable(&self.lxc().rootfs(name), host_id)?;
        crate::lxc::check_reachable(self.profile(name).dir(), host_id)
    }

    /// What the LXC settings of container `name` may say (lxc_conf.rs).
    pub fn lxc_rules<'a>(&'a self, name: &'a str) -> Rules<'a> {
        let host = &self.settings.host;
        Rules {
            name,
            rootfs: self.lxc().rootfs(name),
            mount_sources: vec!["/nix/store".into(), self.profile(name).dir().to_path_buf()],
            idmap: host.idmap,
            bridges: [&host.hostonly.bridge, &host.internet.bridge]
                .into_iter()
                .chain(host.extra_bridges.keys())
                .collect(),
        }
    }

    /// Fails unless the generation at `path` has LXC settings this helper
    /// generates for container `name`: before it is made current, started
    /// or switched to.
    pub fn check_generation(&self, name: &str, path: &Path) -> Result<()> {
        lxc_conf::check_file(&path.join(crate::profile::LXC_CONF), &self.lxc_rules(name))
    }

    /// The entry of an existing container, read without locking: for
    /// commands that only look.
    pub fn existing(&self, name: &str) -> Result<Entry> {
        names::validate(name)?;
        match self.store.read()?.containers.remove(name) {
            Some(entry) if entry.exists() => Ok(entry),
            _ => Err(unknown(name)),
        }
    }

    /// Takes container `name`'s lock, then the state's, and repairs what
    /// crashed commands left behind.
    pub fn open(&self, name: &str) -> Result<Opened> {
        names::validate(name)?;
        let lock = self.store.lock_container(name)?;
        let mut locked = self.store.lock()?;
        let repaired = locked
            .state
            .containers
            .get(name)
            .map(|entry| entry.phase)
            .filter(|&phase| phase != Phase::Ready);
        recovery::repair_all(self, &mut locked, name)?;
        Ok(Opened { lock, locked, repaired })
    }

    /// For commands that change an existing container: `open`, and its
    /// entry. For a name no container has, the lock file goes again.
    pub fn lock_existing(&self, name: &str) -> Result<(ContainerLock, Entry)> {
        let Opened { lock, locked, .. } = self.open(name)?;
        match locked.state.containers.get(name).filter(|entry| entry.exists()) {
            Some(entry) => Ok((lock, entry.clone())),
            None => {
                if !locked.state.containers.contains_key(name) {
                    lock.remove();
                }
                Err(unknown(name))
            }
        }
    }
}

fn unknown(name: &str) -> anyhow::Error {
    anyhow!("no container named '{name}' (see `nixcloud-container list`)")
}
