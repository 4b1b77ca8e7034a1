//! A container's next generation, as create and update build it: what
//! root says for it, what the build needs from the host (found before
//! anything is reserved), the reservation in the state of what it holds,
//! and the build, checked before it is made current.

use std::path::PathBuf;

use anyhow::{Context as _, Result};

use crate::capabilities::{self, network::addresses};
use crate::context::Context;
use crate::ids::IdMap;
use crate::spec::{NixosRelease, Params, Source, Spec};
use crate::state::{ContainerRecord, LockedState};

/// Root's own LXC settings for a container, as create and update are told.
pub enum RootSettings {
    /// Those it has (none for a new container).
    Keep,
    /// From this file, now and at later updates.
    From(PathBuf),
    /// None any more.
    Drop,
}

impl RootSettings {
    /// The file that holds them, given the one the container had.
    pub fn file(&self, had: Option<&PathBuf>) -> Option<PathBuf> {
        match self {
            RootSettings::Keep => had.cloned(),
            RootSettings::From(file) => Some(file.clone()),
            RootSettings::Drop => None,
        }
    }

    /// The file that holds them, given the one the container had, and
    /// what it says.
    pub fn read(&self, had: Option<&PathBuf>) -> Result<Option<(PathBuf, String)>> {
        self.file(had)
            .map(|file| {
                let text = std::fs::read_to_string(&file).with_context(|| {
                    format!("cannot read the LXC settings {} (--lxc-config)", file.display())
                })?;
                Ok((file, text))
            })
            .transpose()
    }
}

/// What root decides for a container besides its file (create, update):
/// its own LXC settings, and whether it starts with the host (None: keep
/// what it had; Some(None): as its file says).
pub struct RootSays {
    pub settings: RootSettings,
    pub autostart: Option<Option<bool>>,
}

impl RootSays {
    /// Root says nothing new.
    pub const NOTHING: RootSays = RootSays { settings: RootSettings::Keep, autostart: None };

    pub fn says_nothing(&self) -> bool {
        matches!(self.settings, RootSettings::Keep) && self.autostart.is_none()
    }
}

/// What building a container's generations needs from the host, found
/// before anything is reserved, so that a missing tool fails a command
/// before it starts.
pub struct BuildInputs {
    /// The busybox that builds generations, in the store.
    pub busybox: PathBuf,
    pub spec: Spec,
    /// The container's stateVersion, if it has one (a new NixOS container's
    /// is its nixpkgs' release, which its first generation records).
    pub state_version: Option<NixosRelease>,
    /// Root's own LXC settings: the file, and what it says.
    pub root_settings: Option<(PathBuf, String)>,
    /// Whether it starts with the host, as root decided (None: its file).
    pub autostart: Option<bool>,
}

impl BuildInputs {
    /// For a container that had `had` (None: a new one), with what root
    /// says now.
    pub fn find(
        ctx: &Context,
        source: &Source,
        had: Option<&ContainerRecord>,
        root: RootSays,
    ) -> Result<BuildInputs> {
        let state_version = had.and_then(|entry| entry.state_version.clone());
        let autostart = root.autostart.unwrap_or_else(|| had.and_then(|entry| entry.autostart));
        let root_settings =
            root.settings.read(had.and_then(|entry| entry.root_settings.as_ref()))?;
        let nix = ctx.nix();
        let busybox = nix.busybox_in_store(&ctx.settings.busybox()?)?;
        let spec = nix.eval_spec(source, &busybox)?;
        BuildInputs::checked(ctx, source, spec, busybox, state_version, root_settings, autostart)
    }

    /// For `spec`, once this host allows what it asks for: create and
    /// update check a container file's spec so, import an export's (the
    /// one permission step, capabilities::permit, for both).
    pub fn checked(
        ctx: &Context,
        source: &Source,
        spec: Spec,
        busybox: PathBuf,
        state_version: Option<NixosRelease>,
        root_settings: Option<(PathBuf, String)>,
        autostart: Option<bool>,
    ) -> Result<BuildInputs> {
        // What it asks of the host, before anything is reserved or built.
        capabilities::permit(&spec, &ctx.settings.host).with_context(|| source.to_string())?;
        Ok(BuildInputs { busybox, spec, state_version, root_settings, autostart })
    }
}

/// Claims in the state what container `name`'s next generation holds of
/// the host (every capability's claim: its addresses, its host ports) and
/// resolves what its build needs; `ids` are the container's.
pub fn reserve(
    ctx: &Context,
    locked: &mut LockedState,
    name: &str,
    source: &Source,
    inputs: &BuildInputs,
    ids: IdMap,
) -> Result<Params> {
    let host = &ctx.settings.host;
    for capability in capabilities::ALL {
        capability
            .claim(&mut locked.state, host, name, &inputs.spec)
            .with_context(|| source.to_string())?;
    }
    let (hostonly, internet) =
        addresses::interfaces_claimed(&locked.state, host, name, &inputs.spec)
            .with_context(|| source.to_string())?;
    if let Some((_, text)) = &inputs.root_settings {
        let entry = locked.state.containers.get_mut(name).expect("the entry exists");
        entry.root_settings_digests.insert(crate::lxc::digest(text));
    }
    Ok(Params {
        name: name.to_string(),
        source: source.clone(),
        profile_dir: ctx.profile(name).dir().to_path_buf(),
        rootfs: ctx.lxc().rootfs(name),
        idmap: ids,
        hostonly,
        internet,
        root_settings: inputs.root_settings.as_ref().map(|(_, text)| text.clone()),
        autostart: inputs.autostart,
        nix_daemon: inputs.spec.nix_daemon,
        whole_store: inputs.spec.whole_store,
        limits: inputs.spec.limits.capped_by(&host.limits),
        state_version: inputs.state_version.clone(),
    })
}

/// The stateVersion of container `name`: the one it had, else the one its
/// current generation was built with (the nixpkgs release of a new NixOS
/// container, lib/cli.nix), fixed from then on.
pub fn fixed_state_version(
    ctx: &Context,
    name: &str,
    had: Option<NixosRelease>,
) -> Result<Option<NixosRelease>> {
    if had.is_some() {
        return Ok(had);
    }
    Ok(ctx
        .profile(name)
        .current()?
        .map(|current| current.meta())
        .transpose()?
        .and_then(|meta| meta.params.state_version))
}

/// Builds a generation for `params`, checks its LXC settings and makes it
/// the profile's current one: a generation whose settings this helper would
/// not write is never current, and on success the current generation holds
/// what was built (so an update that finds its previous generation current
/// afterwards built that very system again).
pub fn build_current(
    ctx: &Context,
    name: &str,
    params: &Params,
    inputs: &BuildInputs,
) -> Result<()> {
    let built = ctx.nix().build_generation(&inputs.spec, params, &inputs.busybox)?;
    crate::engine::lxc_settings::check_generation(ctx, name, params.idmap, &built.path)
        .with_context(|| format!("refusing the generation built from {}", params.source))?;
    let profile = ctx.profile(name);
    ctx.plain_nix().set_profile(&profile, &built)?;
    // Whether an update changed anything is read from the profile
    // (commands/update.rs): it must hold what was built, whatever nix-env
    // found there.
    match profile.current()? {
        Some(current) if current.path == built.path => Ok(()),
        current => anyhow::bail!(
            "nix-env did not make the generation built from {} current: the profile {} leads to {}",
            params.source,
            profile.link().display(),
            current.map_or("nothing".to_string(), |g| format!("generation {}", g.number)),
        ),
    }
}
