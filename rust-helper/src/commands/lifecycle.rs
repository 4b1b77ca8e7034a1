//! create, update, destroy.
//!
//! Each holds the container's lock throughout and records in the state what
//! it is doing (the phase) before it touches anything, so that the next
//! command can tell a crash from work in progress (recovery.rs).

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};

use super::activation::{activate_current, OnFailure};
use super::context::Context;
use super::opening::{self, Opened};
use super::recovery::{refresh_claims, teardown};
use super::{grants, network_rules, port_guard};
use crate::network;
use crate::settings::IdMap;
use crate::spec::{NixosRelease, Params, Source, Spec};
use crate::state::{ContainerLock, ContainerRecord, LockedState, Phase};

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
    fn file(&self, had: Option<&PathBuf>) -> Option<PathBuf> {
        match self {
            RootSettings::Keep => had.cloned(),
            RootSettings::From(file) => Some(file.clone()),
            RootSettings::Drop => None,
        }
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

pub fn create(ctx: &Context, name: &str, source: Source, root: RootSays) -> Result<()> {
    let Opened { lock, locked, .. } = opening::open(ctx, name)?;
    if let Err(err) = ensure_name_is_free(ctx, &locked, name) {
        if !locked.state.containers.contains_key(name) {
            lock.remove();
        }
        return Err(err);
    }
    drop(locked);
    create_locked(ctx, name, source, root, lock)
}

/// What building a container's generations needs from the host, found
/// before anything is reserved, so that a missing tool fails a command
/// before it starts.
struct BuildInputs {
    /// The busybox that builds generations, in the store.
    busybox: PathBuf,
    spec: Spec,
    address: network::AddressRequest,
    /// The container's stateVersion, if it has one (a new NixOS container's
    /// is its nixpkgs' release, which its first generation records).
    state_version: Option<NixosRelease>,
    /// Root's own LXC settings: the file, and what it says.
    root_settings: Option<(PathBuf, String)>,
    /// Whether it starts with the host, as root decided (None: its file).
    autostart: Option<bool>,
}

impl BuildInputs {
    /// For a container that had `had` (None: a new one), with what root
    /// says now.
    fn find(
        ctx: &Context,
        source: &Source,
        had: Option<&ContainerRecord>,
        root: RootSays,
    ) -> Result<BuildInputs> {
        let state_version = had.and_then(|entry| entry.state_version.clone());
        let autostart = root.autostart.unwrap_or_else(|| had.and_then(|entry| entry.autostart));
        let root_settings = root
            .settings
            .file(had.and_then(|entry| entry.root_settings.as_ref()))
            .map(|file| {
                let text = std::fs::read_to_string(&file).with_context(|| {
                    format!("cannot read the LXC settings {} (--lxc-config)", file.display())
                })?;
                anyhow::Ok((file, text))
            })
            .transpose()?;
        let nix = ctx.nix();
        let busybox = nix.busybox_in_store(&ctx.settings.busybox()?)?;
        let spec = nix.eval_spec(source, &busybox)?;
        grants::check(&spec, &ctx.settings.host).with_context(|| source.to_string())?;
        let address = network::address_request(&spec.network, &ctx.settings.host)
            .with_context(|| source.to_string())?;
        if spec.nix_daemon && !ctx.settings.host.allow_nix_daemon {
            bail!(
                "{source} asks for the host's nix-daemon (nixDaemon = true), which this host does \
                 not allow (nixcloud.containers.allowNixDaemon, or allowNixDaemon in the host file)"
            );
        }
        if spec.whole_store && !ctx.settings.host.allow_whole_store {
            bail!(
                "{source} asks for the host's whole store (wholeStore = true), which this host \
                 does not allow (nixcloud.containers.allowWholeStore, or allowWholeStore in the \
                 host file)"
            );
        }
        Ok(BuildInputs { busybox, spec, address, state_version, root_settings, autostart })
    }
}

/// Creates container `name`, whose lock the caller holds and whose name is
/// free. On failure nothing of it stays, not even its lock file.
fn create_locked(
    ctx: &Context,
    name: &str,
    source: Source,
    root: RootSays,
    lock: ContainerLock,
) -> Result<()> {
    let prepared = ctx
        .settings
        .lxc_config_dir()
        .and_then(|dir| Ok((dir, BuildInputs::find(ctx, &source, None, root)?)));
    let (lxc_config_dir, inputs) = match prepared {
        Ok(prepared) => prepared,
        Err(err) => {
            lock.remove();
            return Err(err);
        }
    };

    // Reserve the name and the address before anything is built.
    let reserved = (|| {
        let mut locked = ctx.store.lock()?;
        ensure_name_is_free(ctx, &locked, name)?;
        locked.state.containers.insert(
            name.to_string(),
            ContainerRecord {
                state_version: inputs.state_version.clone(),
                ..ContainerRecord::new(Phase::Creating, source.clone())
            },
        );
        let ids = locked.state.allocate_ids(&ctx.settings.host.idmap, name)?;
        let params = reserve(ctx, &mut locked, name, &source, &inputs, ids)?;
        locked.save()?;
        Ok((params, locked.state.containers[name].clone()))
    })();
    let (params, reserved_entry) = match reserved {
        Ok(reserved) => reserved,
        Err(err) => {
            lock.remove();
            return Err(err);
        }
    };

    // Its ports' guard first: a failed create takes it away with the rest.
    let made = port_guard::follow(ctx, name, None, Some(&reserved_entry))
        .and_then(|()| build_and_register(ctx, name, &params, &inputs, &lxc_config_dir));
    if let Err(err) = made {
        let mut locked = ctx.store.lock()?;
        // The lock file goes with the rest (held until `lock` is dropped).
        if let Err(cleanup) = teardown(ctx, &mut locked, name) {
            eprintln!("warning: cleaning up after the failed create: {cleanup:#}");
        }
        drop(lock);
        return Err(err);
    }

    let mut locked = ctx.store.lock()?;
    let entry = locked.state.containers.get_mut(name).expect("the entry was reserved");
    entry.phase = Phase::Ready;
    entry.root_settings = inputs.root_settings.map(|(file, _)| file);
    entry.autostart = inputs.autostart;
    entry.state_version = fixed_state_version(ctx, name, inputs.state_version)?;
    locked.save()?;
    println!(
        "created container '{name}' ({} on {}), generation 1",
        params.hostonly.address, params.hostonly.bridge
    );
    Ok(())
}

/// Claims the address `inputs.address` asks for for `name` and resolves what a
/// build needs; `ids` are the container's.
fn reserve(
    ctx: &Context,
    locked: &mut LockedState,
    name: &str,
    source: &Source,
    inputs: &BuildInputs,
    ids: IdMap,
) -> Result<Params> {
    let host = &ctx.settings.host;
    let bridge =
        network::joined(&inputs.spec.network, host).with_context(|| source.to_string())?.bridge;
    let address = locked
        .state
        .claim(host, name, bridge, inputs.address)
        .with_context(|| source.to_string())?;
    // An internet interface's address, pinned for DHCP and the port guard.
    let internet_address = if inputs.spec.network.enable_nat {
        Some(locked.state.claim_internet(host, name).with_context(|| source.to_string())?)
    } else {
        None
    };
    let (hostonly, internet) =
        network::interfaces(name, &inputs.spec.network, host, address, internet_address)
            .with_context(|| source.to_string())?;
    locked
        .state
        .claim_forwards(name, &inputs.spec.forward_ports)
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
fn fixed_state_version(
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
fn build_current(ctx: &Context, name: &str, params: &Params, inputs: &BuildInputs) -> Result<()> {
    let built = ctx.nix().build_generation(&inputs.spec, params, &inputs.busybox)?;
    ctx.check_generation(name, params.idmap, &built.path)
        .with_context(|| format!("refusing the generation built from {}", params.source))?;
    let profile = ctx.profile(name);
    ctx.plain_nix().set_profile(&profile, &built)?;
    // Whether the update changed anything is read from the profile
    // (update): it must hold what was built, whatever nix-env found there.
    match profile.current()? {
        Some(current) if current.path == built.path => Ok(()),
        current => bail!(
            "nix-env did not make the generation built from {} current: the profile {} leads to {}",
            params.source,
            profile.link().display(),
            current.map_or("nothing".to_string(), |g| format!("generation {}", g.number)),
        ),
    }
}

/// Builds generation 1 and registers the container with LXC.
fn build_and_register(
    ctx: &Context,
    name: &str,
    params: &Params,
    inputs: &BuildInputs,
    lxc_config_dir: &std::path::Path,
) -> Result<()> {
    ctx.check_reachable(name, params.idmap)?;
    crate::host_dirs::root_dir(&ctx.settings.lxc_path)?;
    let profile = ctx.profile(name);
    crate::host_dirs::root_dir(profile.dir())?;
    build_current(ctx, name, params, inputs)?;

    let lxc = ctx.lxc();
    let dir = lxc.container_dir(name);
    let host_id = params.idmap.host_id;
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    lxc.secure(name, host_id)?;
    std::fs::create_dir(lxc.rootfs(name))
        .with_context(|| format!("cannot create {}", lxc.rootfs(name).display()))?;
    // lxc-create copies it to <dir>/config; a crash leaves it where the
    // teardown of the half-made container removes it.
    let given = dir.join("config.given");
    let root_settings =
        lxc.keep_root_settings(name, inputs.root_settings.as_ref().map(|(_, text)| text.as_str()))?;
    let config = crate::lxc::OwnConfig {
        lxc_config_dir,
        profile_link: &profile.link(),
        app_armor: ctx.settings.app_armor(),
        devices: &inputs.spec.devices,
        root_settings: root_settings.as_deref(),
    }
    .text();
    std::fs::write(&given, &config).context("cannot write the container's LXC config")?;
    lxc.create(name, &given, &ctx.lxc_args)?;
    // LXC gave the directory to the container's root: back to the gate.
    lxc.secure(name, host_id)?;
    std::fs::remove_file(&given).context("cannot remove the given LXC config")?;
    lxc.keep_config(name, &config)?;
    grants::make_data_dir(&ctx.settings, name)
}

pub fn update(
    ctx: &Context,
    name: &str,
    source: Option<Source>,
    root: RootSays,
    on_failure: OnFailure,
) -> Result<()> {
    let Opened { lock, locked, .. } = opening::open(ctx, name)?;
    let had = match locked.state.containers.get(name) {
        Some(entry) => entry.clone(),
        None => {
            let created = source
                .context(format!("no container named '{name}': give a container file to create it"))
                .and_then(|source| {
                    ensure_name_is_free(ctx, &locked, name)?;
                    Ok(source)
                });
            let source = match created {
                Ok(source) => source,
                Err(err) => {
                    lock.remove();
                    return Err(err);
                }
            };
            drop(locked);
            return create_locked(ctx, name, source, root, lock);
        }
    };
    drop(locked);
    let ids = had.ids(&ctx.settings.host.idmap);
    let source = source.unwrap_or_else(|| had.source.clone());
    let inputs = BuildInputs::find(ctx, &source, Some(&had), root)?;

    let profile = ctx.profile(name);
    let before = profile.generations()?;
    let previous = profile.current_number()?.context("the container has no current generation")?;
    let params = {
        let mut locked = ctx.store.lock()?;
        let params = reserve(ctx, &mut locked, name, &source, &inputs, ids)?;
        locked
            .state
            .containers
            .get_mut(name)
            .expect("checked above")
            .mark_switching(Some(previous));
        locked.save()?;
        params
    };

    let built = build_current(ctx, name, &params, &inputs);
    let current = profile.current_number()?.unwrap_or(previous);
    let activated = match built {
        Ok(()) if current != previous => {
            activate_current(ctx, name, previous, &ctx.lxc_args, on_failure)
        }
        other => other,
    };
    let kept = on_failure == OnFailure::Keep && current != previous;
    let failed_new =
        activated.is_err() && current != previous && before.iter().all(|g| g.number != current);
    if failed_new && !kept {
        // The failed generation was new: take it away again, so that the
        // profile is as it was.
        let removal = ctx.plain_nix().delete_generations(&profile, &[current.to_string()]);
        if let Err(err) = removal {
            eprintln!("warning: cannot delete the failed generation {current}: {err:#}");
        }
    }

    let mut locked = ctx.store.lock()?;
    let entry = locked.state.containers.get_mut(name).expect("held under the container lock");
    if activated.is_ok() || kept {
        entry.source = source;
        entry.state_version = fixed_state_version(ctx, name, inputs.state_version)?;
        entry.root_settings = inputs.root_settings.map(|(file, _)| file);
        entry.autostart = inputs.autostart;
    }
    entry.mark_switching(None);
    refresh_claims(ctx, name, entry)?;
    let after = entry.clone();
    locked.save()?;
    drop(locked);
    // Its ports pass the addresses it holds now.
    port_guard::follow(ctx, name, Some(&had), Some(&after))?;
    network_rules::refresh(
        ctx,
        !inputs.spec.network.peers.is_empty() || !inputs.spec.forward_ports.is_empty(),
    )?;
    activated?;
    network_rules::note_waiting_forwards(ctx, name)?;

    if current == previous {
        println!("container '{name}' is unchanged: generation {current} stays current");
    } else {
        println!("container '{name}': generation {current} is current");
    }
    Ok(())
}

pub fn destroy(ctx: &Context, name: &str, force: bool, keep_data: bool) -> Result<()> {
    let Opened { lock, mut locked, repaired } = opening::open(ctx, name)?;
    if !locked.state.containers.contains_key(name) {
        lock.remove();
        if repaired == Some(Phase::Destroying) {
            println!("destroyed container '{name}' (an interrupted destroy is finished)");
            return Ok(());
        }
        bail!("no container named '{name}' (see `nixcloud-container list`)");
    }
    let lxc = ctx.lxc();
    if lxc.container_dir(name).exists() {
        lxc.secure(name, locked.state.containers[name].ids(&ctx.settings.host.idmap).host_id)?;
    }
    // From here on LXC reads none of the container's own settings, which a
    // tampered generation may have written: no hook of theirs runs.
    let original = lxc.write_bare_config(name)?;
    let running = lxc.is_defined(name) && lxc.is_running(name)?;
    if running && !force {
        lxc.restore_config(name, original)?;
        bail!("container '{name}' is running: stop it first, or use `destroy --force`");
    }
    let entry = locked.state.containers.get_mut(name).expect("checked above");
    entry.phase = Phase::Destroying;
    entry.keep_data = keep_data;
    locked.save()?;
    if running {
        // Nothing inside outlives the destroy, so there is no shutdown to wait for.
        lxc.kill(name, &[]).with_context(|| format!("cannot stop container '{name}'"))?;
    }
    if lxc.is_defined(name) {
        if let Err(err) = lxc.destroy(name, &ctx.lxc_args) {
            // Nothing was removed: the container stays as it was (stopped).
            lxc.restore_config(name, original)?;
            let entry = locked.state.containers.get_mut(name).expect("still there");
            entry.phase = Phase::Ready;
            entry.keep_data = false;
            locked.save()?;
            return Err(err).with_context(|| format!("cannot destroy container '{name}'"));
        }
    }
    let freed = locked.state.containers[name].addresses.clone();
    // The lock file goes with the rest (held until `lock` is dropped).
    teardown(ctx, &mut locked, name)?;
    drop(lock);
    let freed: Vec<String> = freed.iter().map(|a| a.ip.to_string()).collect();
    println!("destroyed container '{name}'; freed {}", freed.join(", "));
    let data = ctx.settings.data_dir(name);
    if keep_data && data.exists() {
        println!("its data stays in {}", data.display());
    }
    Ok(())
}

/// Refuses a name that is taken: by a container of ours (also in another
/// case: names are host names), or by anything else in LXC's directory or
/// the profiles directory. The advice never risks a container's data.
fn ensure_name_is_free(ctx: &Context, locked: &LockedState, name: &str) -> Result<()> {
    if let Some(taken) = locked.state.containers.keys().find(|k| k.eq_ignore_ascii_case(name)) {
        if taken == name {
            bail!(
                "container '{name}' already exists (change it with `nixcloud-container update {name}`)"
            );
        }
        bail!("container '{taken}' already exists, and names are host names, the same in any case");
    }
    // The host's ends of its veths are named after it (network::port_name).
    let port = network::port_name(name, network::Port::Hostonly);
    let same_ports = locked
        .state
        .containers
        .keys()
        .find(|other| network::port_name(other, network::Port::Hostonly) == port);
    if let Some(other) = same_ports {
        bail!("container '{other}' has the interface names ({port}) that '{name}' would get: choose another name");
    }
    let lost = "the state does not know it: run `nixcloud-container repair-state` to recover it";
    let lxc = ctx.lxc();
    let dir = lxc.container_dir(name);
    if lxc.is_ours(name) {
        bail!("{} is a container of nixcloud-container, but {lost}", dir.display());
    }
    if dir.exists() {
        bail!(
            "{} exists and is not a container of nixcloud-container: choose another name",
            dir.display()
        );
    }
    let profile = ctx.profile(name);
    if profile.dir().exists() {
        bail!("profile directory {} exists, but {lost}", profile.dir().display());
    }
    let data = ctx.settings.data_dir(name);
    if data.exists() {
        bail!(
            "{} holds the data of an earlier container named '{name}' (destroy --keep-data): \
             move it away or remove it first",
            data.display()
        );
    }
    Ok(())
}
