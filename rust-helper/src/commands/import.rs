//! import: a container from an export (transfer/archive.rs), made on this
//! host as `create` makes one, with its steps (engine/new_container.rs,
//! engine/generation.rs): its name checked and reserved, what its
//! generations ask for checked against this host's permissions (the same
//! step as for a container file: `BuildInputs::checked`, which asks every
//! capability's `permit`), an id range and addresses allocated here,
//! recorded as Creating until it is whole, so that a failure or a kill
//! leaves nothing of it.
//!
//! Its generations keep their numbers, dates and systems; each is built
//! again around its system for this host (the rootfs, ids, addresses, port
//! names and MACs in its LXC settings are this container's here). A NixOS
//! system knows its container's name and address (lib/nixos-system.nix
//! gives them to the guest module), so a NixOS generation comes over only
//! where both stay the same; a system container's (`system = ...`) comes
//! over under any name. The files of its root and data directory are
//! written with its new range's ids. Nothing is made current, and no store
//! path is added, before the export's closing digest has been checked.
//!
//! An export's store paths become this host's (as `nix-store --import`
//! makes them): import one only from where you would copy a closure from.
//! Root's own LXC settings in it are not applied: they could run anything
//! on the host; root gives them here again (--lxc-config).

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};

use crate::capabilities::{self, network::addresses};
use crate::context::Context;
use crate::engine::generation::{reserve, BuildInputs, RootSays, RootSettings};
use crate::engine::lxc_settings;
use crate::engine::new_container::{self, ensure_name_is_free};
use crate::engine::opening::{self, Opened};
use crate::engine::recovery::teardown;
use crate::error::usage;
use crate::ids::IdMap;
use crate::names;
use crate::nix::store_paths;
use crate::spec::{Kind, Params};
use crate::state::{ContainerRecord, Phase};
use crate::system::scratch::Scratch;
use crate::transfer::archive::{ExportedGeneration, Header, Reader, Section};
use crate::transfer::file_tree;

/// Where an export is read from.
pub enum Input {
    File(PathBuf),
    Stdin,
}

impl Input {
    /// `-` is standard input.
    pub fn from_argument(argument: &std::path::Path) -> Input {
        if argument == std::path::Path::new("-") {
            Input::Stdin
        } else {
            Input::File(argument.to_path_buf())
        }
    }

    fn open(&self) -> Result<Box<dyn Read>> {
        Ok(match self {
            Input::Stdin => Box::new(std::io::stdin()),
            Input::File(file) => Box::new(
                std::fs::File::open(file)
                    .with_context(|| format!("cannot read {}", file.display()))?,
            ),
        })
    }
}

/// What `import` was asked.
pub struct Request {
    pub input: Input,
    /// The container's name here (None: the name it had).
    pub name: Option<String>,
    /// Root's LXC settings and autostart choice for it here.
    pub root: RootSays,
    /// The digest `export` printed, which the export must have.
    pub sha256: Option<String>,
    /// Only read the header, check it against this host and print the
    /// store paths this host lacks (`move` asks so before it sends).
    pub plan: bool,
}

/// `import`: the container of `request`'s export, made here.
pub fn import(ctx: &Context, request: Request) -> Result<()> {
    if matches!(request.root.settings, RootSettings::Drop) {
        return Err(usage("--no-lxc-config drops what an update kept: import has nothing to drop"));
    }
    let mut archive = Reader::new(request.input.open()?)?;
    let header: Header = serde_json::from_slice(&archive.header_bytes()?)
        .map_err(|err| anyhow::anyhow!("{err}"))
        .context("the export's header is not one this helper reads")?;
    header.check()?;
    let name = match request.name {
        Some(name) => name,
        None => {
            names::validate(&header.name).context("the export names its container")?;
            header.name.clone()
        }
    };
    if request.plan {
        return plan(ctx, &name, &header, &request.root);
    }
    let Opened { lock, locked, .. } = opening::open(ctx, &name)?;
    let free = ensure_name_is_free(ctx, &locked, &name);
    let known = locked.state.containers.contains_key(&name);
    drop(locked);
    let reserved =
        free.and_then(|()| generation_inputs(ctx, &header, &request.root)).and_then(|inputs| {
            // LXC's own settings are there (lxc_settings::own_config reads them).
            ctx.settings.lxc_config_dir()?;
            let (ids, params, entry) = reserve_all(ctx, &name, &header, &inputs)?;
            Ok((inputs, ids, params, entry))
        });
    let (inputs, ids, params, reserved_entry) = match reserved {
        Ok(reserved) => reserved,
        Err(err) => {
            // Nothing was recorded: no lock file stays for the name.
            if !known {
                lock.remove();
            }
            return Err(err);
        }
    };
    let current = header.current_index();
    // What its capabilities keep for what it holds (its ports' guard) first,
    // as for a create: a failed import takes it away with the rest.
    let filled = capabilities::entry_changed(ctx, &name, None, Some(&reserved_entry))
        .and_then(|()| {
            fill(ctx, &name, archive, &header, ids, &inputs, &params, request.sha256.as_deref())
        })
        .and_then(|()| {
            let root_settings =
                inputs[current].root_settings.as_ref().map(|(_, text)| text.as_str());
            new_container::register(ctx, &name, ids.host_id, &inputs[current].spec, root_settings)
        });
    if let Err(err) = filled {
        let mut locked = ctx.store.lock()?;
        // The lock file goes with the rest (held until `lock` is dropped).
        if let Err(cleanup) = teardown(ctx, &mut locked, &name) {
            eprintln!("warning: cleaning up after the failed import: {cleanup:#}");
        }
        drop(lock);
        return Err(err);
    }

    let mut locked = ctx.store.lock()?;
    let entry = locked.state.containers.get_mut(&name).expect("the entry was reserved");
    entry.phase = Phase::Ready;
    // As create records them: root's choices for it here.
    let chosen = &inputs[current];
    entry.root_settings = chosen.root_settings.as_ref().map(|(file, _)| file.clone());
    entry.autostart = chosen.autostart;
    locked.save()?;
    let current = &params[current];
    let numbers: Vec<String> = header.generations.iter().map(|g| g.number.to_string()).collect();
    println!(
        "imported container '{name}' ({} on {}, ids {ids}): generations {} (current {})",
        current.hostonly.address,
        current.hostonly.bridge,
        numbers.join(", "),
        header.current
    );
    Ok(())
}

/// `import --plan`: checks what can be checked without the export's content
/// (the name, what each generation asks of this host) and prints the store
/// paths the export's generations need and this host lacks, one a line.
fn plan(ctx: &Context, name: &str, header: &Header, root: &RootSays) -> Result<()> {
    {
        let locked = ctx.store.lock()?;
        ensure_name_is_free(ctx, &locked, name)?;
    }
    generation_inputs(ctx, header, root)?;
    for path in store_paths::missing(&header.store_paths)? {
        println!("{path}");
    }
    Ok(())
}

/// What building each generation of `header` here needs, in its order: its
/// spec checked against this host, root's settings and choice for it here.
fn generation_inputs(ctx: &Context, header: &Header, root: &RootSays) -> Result<Vec<BuildInputs>> {
    let busybox = ctx.nix().busybox_in_store(&ctx.settings.busybox()?)?;
    // A new container here: it had none.
    let root_settings = root.settings.read(None)?;
    if root_settings.is_none() && header.root_settings.is_some() {
        eprintln!(
            "note: the export holds root's own LXC settings for '{}' on its host; they are not \
             applied here (they could run anything on this host): give them with --lxc-config",
            header.name
        );
    }
    let autostart = root.autostart.unwrap_or(header.autostart);
    header
        .generations
        .iter()
        .map(|generation| {
            BuildInputs::checked(
                ctx,
                &header.source,
                generation.spec.clone(),
                busybox.clone(),
                generation.params.state_version.clone(),
                root_settings.clone(),
                autostart,
            )
            .with_context(|| format!("generation {} of the export", generation.number))
        })
        .collect()
}

/// Records container `name` as Creating with an id range and the addresses
/// its generations ask for (an allocated one kept where it is free here);
/// returns the range, each generation's parameters and its entry.
fn reserve_all(
    ctx: &Context,
    name: &str,
    header: &Header,
    inputs: &[BuildInputs],
) -> Result<(IdMap, Vec<Params>, ContainerRecord)> {
    let host = &ctx.settings.host;
    let mut locked = ctx.store.lock()?;
    ensure_name_is_free(ctx, &locked, name)?;
    locked.state.containers.insert(
        name.to_string(),
        ContainerRecord {
            state_version: header.state_version.clone(),
            ..ContainerRecord::new(Phase::Creating, header.source.clone())
        },
    );
    let ids = locked.state.allocate_ids(&host.idmap, name)?;
    if let Some(ip) = header.automatic_ip {
        if !addresses::keep_allocated(&mut locked.state, host, name, ip) {
            eprintln!("note: {ip}, the address it had where it was exported, is not free here");
        }
    }
    let mut all = Vec::new();
    for (generation, inputs) in header.generations.iter().zip(inputs) {
        let params = reserve(ctx, &mut locked, name, &header.source, inputs, ids)
            .with_context(|| format!("generation {} of the export", generation.number))?;
        check_guest(name, generation, &params)?;
        all.push(params);
    }
    locked.save()?;
    Ok((ids, all, locked.state.containers[name].clone()))
}

/// Fails where `generation` is a NixOS system that `params` would give
/// another name or address than it was built with: what lib/nixos-system.nix
/// hands the guest module is in the system itself.
fn check_guest(name: &str, generation: &ExportedGeneration, params: &Params) -> Result<()> {
    if generation.spec.kind != Kind::Nixos {
        return Ok(());
    }
    let guest = |params: &Params| {
        (
            params.name.clone(),
            params.hostonly.address,
            params.hostonly.prefix_length,
            params.hostonly.gateway,
            params.internet.is_some(),
            params.nix_daemon,
        )
    };
    let before = &generation.params;
    if guest(before) != guest(params) {
        bail!(
            "generation {} is a NixOS system built for container '{}' at {}/{}: as '{name}' at \
             {}/{} it would configure the old name and address inside; import it under its name \
             where its address is free, or create '{name}' from its container file ({})",
            generation.number,
            before.name,
            before.hostonly.address,
            before.hostonly.prefix_length,
            params.hostonly.address,
            params.hostonly.prefix_length,
            before.source
        );
    }
    Ok(())
}

/// Makes container `name` (reserved) from the export's content: its
/// directories and files, its store paths, its generations.
#[allow(clippy::too_many_arguments)]
fn fill(
    ctx: &Context,
    name: &str,
    mut archive: Reader<Box<dyn Read>>,
    header: &Header,
    ids: IdMap,
    inputs: &[BuildInputs],
    params: &[Params],
    sha256: Option<&str>,
) -> Result<()> {
    new_container::prepare_directories(ctx, name, ids)?;
    new_container::make_container_directory(ctx, name, ids.host_id)?;
    let rootfs = ctx.lxc().rootfs(name);
    // The rootfs is its root's, as LXC hands it over.
    let owner = Some(rustix::fs::Uid::from_raw(ids.host_id));
    let group = Some(rustix::fs::Gid::from_raw(ids.host_id));
    rustix::fs::chown(&rootfs, owner, group)
        .with_context(|| format!("cannot give {} to the container", rootfs.display()))?;
    // Its data directory now, for the export's data; what else the
    // capabilities keep for a new container once it has its generations.
    crate::capabilities::bind_mounts::make_data_dir(&ctx.settings, name)?;

    // The store paths this host lacks wait beside until the digest is
    // checked; those it has are read past (and hashed).
    let lacking = store_paths::missing(&header.store_paths)?;
    if let Some(first) = lacking.iter().find(|path| !header.included.contains(path)) {
        bail!(
            "this host lacks store paths that the export's generations need and that it does \
             not carry, {first} among them"
        );
    }
    let scratch = Scratch::new(&ctx.settings.state_dir)?;
    let spool = scratch.dir().join("store-paths");
    archive.start(Section::StorePaths)?;
    if lacking.is_empty() {
        copy(&mut archive, &mut std::io::sink())
    } else {
        let mut file = std::fs::File::create(&spool)
            .with_context(|| format!("cannot write {}", spool.display()))?;
        copy(&mut archive, &mut file)
    }
    .context("cannot read the export's store paths")?;
    archive.start(Section::Root)?;
    file_tree::extract_tree(&mut archive, &rootfs, ids).context("the export's root")?;
    archive.start(Section::Data)?;
    if header.data {
        file_tree::extract_tree(&mut archive, &ctx.settings.data_dir(name), ids)
            .context("the export's data directory")?;
    }
    let digest = crate::transfer::sha256::hex(&archive.finish()?);
    if let Some(expected) = sha256 {
        if !expected.eq_ignore_ascii_case(&digest) {
            bail!("the export's digest is {digest}, not {expected} (--sha256): it is another file");
        }
    }

    if !lacking.is_empty() {
        let mut added = store_paths::import(&spool)?;
        let mut expected = header.included.clone();
        added.sort();
        expected.sort();
        if added != expected {
            bail!("the export's store paths are not those its header names");
        }
        // A garbage collection between the import and the builds below
        // takes unrooted paths away: the build then fails, and so does this
        // import (whole), which can be run again.
        if let Some(first) = store_paths::missing(&header.store_paths)?.first() {
            bail!("{first} is not in the store after the export's store paths were added");
        }
    }

    let profile = ctx.profile(name);
    for ((generation, inputs), params) in header.generations.iter().zip(inputs).zip(params) {
        let built = ctx.nix().build_around_system(
            &inputs.spec,
            params,
            generation.system.as_path(),
            &inputs.busybox,
        )?;
        lxc_settings::check_generation(ctx, name, ids, &built.path).with_context(|| {
            format!("refusing generation {} built from the export", generation.number)
        })?;
        store_paths::add_root(&built.path, &profile.generation_link(generation.number))?;
        let created = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(generation.created.max(0) as u64);
        profile.set_created(generation.number, created)?;
    }
    ctx.plain_nix().switch_generation(&profile, header.current)?;
    new_container::add(ctx, name)
}

/// Copies all of `input` to `out`, a frame at a time.
fn copy(input: &mut impl Read, out: &mut impl std::io::Write) -> Result<u64> {
    let mut buffer = vec![0u8; crate::transfer::archive::FRAME_SIZE];
    let mut total = 0;
    loop {
        let got = input.read(&mut buffer)?;
        if got == 0 {
            return Ok(total);
        }
        out.write_all(&buffer[..got])?;
        total += got as u64;
    }
}
