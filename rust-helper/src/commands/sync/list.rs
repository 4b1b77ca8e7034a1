//! The list sync makes the host's containers: a list file's, and a
//! flake's containers; and what else a flake's container's generation
//! depends on (its fingerprint).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

use super::files::ContainerFiles;
use super::flakes::{flake_reference, Flakes};
use super::Request;
use crate::context::Context;
use crate::names;

/// One container of the list: a container file, a flake's container or a
/// built system (an inline instance of the host module, built by the host),
/// and whether it starts with the host (null: as its file says).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listed {
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(default)]
    pub flake: Option<String>,
    #[serde(default)]
    pub system: Option<PathBuf>,
    #[serde(default)]
    pub autostart: Option<bool>,
    /// The source that lists it (`SyncSource::id`): the one whose --prune
    /// may destroy it once sync created it.
    #[serde(skip)]
    pub source: String,
}

/// Where a sync's containers come from: a list file (by its real path, or
/// the name --source gives it, as the host module's instances have), or a
/// flake (by its reference). A container records the source that created
/// it (state.rs `sync_source`), and only that source's --prune removes it.
pub(super) enum SyncSource<'a> {
    ListFile(&'a Path),
    Named(&'a str),
    Flake(&'a str),
}

impl SyncSource<'_> {
    /// The source as the state records it.
    pub(super) fn id(&self) -> String {
        match self {
            SyncSource::ListFile(path) => format!("list {}", path.display()),
            SyncSource::Named(name) => format!("named {name}"),
            SyncSource::Flake(reference) => format!("flake {reference}"),
        }
    }
}

/// The containers a sync is to have, and the entries refused one by one
/// (name → why), which fail alone.
#[derive(Default)]
pub(super) struct List {
    pub listed: BTreeMap<String, Listed>,
    pub refused: BTreeMap<String, String>,
    /// The sources this sync speaks for (`SyncSource::id`).
    pub sources: Vec<String>,
}

/// The entries of a list file in their order, each name as often as the
/// file says it (serde_json keeps the last of keys said twice).
struct Entries(Vec<(String, Listed)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Entries, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object: container name → { file or flake, autostart }")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Listed>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Adds `name` to `listed`, refusing a name that is there already in any
/// case: names are host names (create.rs refuses a case twin too), and a
/// list that says one twice means two things.
fn add_once(
    listed: &mut BTreeMap<String, Listed>,
    name: String,
    entry: Listed,
    whence: &str,
) -> Result<()> {
    if let Some(twin) = listed.keys().find(|known| known.eq_ignore_ascii_case(&name)) {
        if *twin == name {
            bail!("container '{name}' is named twice ({whence}): say it once");
        }
        bail!(
            "containers '{twin}' and '{name}' are one name ({whence}): names are host names, \
             the same in any case"
        );
    }
    listed.insert(name, entry);
    Ok(())
}

/// The containers to have: the list file's, and those of --flake. What the
/// list says twice is one error before anything is done; an entry that is
/// wrong by itself (its name, its file or flake) is refused alone.
pub(super) fn read_list(
    ctx: &Context,
    request: &Request,
    busybox: &Path,
    flakes: &mut Flakes,
) -> Result<List> {
    let mut list = List::default();
    if let Some(file) = &request.file {
        let real = std::fs::canonicalize(file)
            .with_context(|| format!("cannot read the list of containers {}", file.display()))?;
        let text = std::fs::read_to_string(&real)
            .with_context(|| format!("cannot read the list of containers {}", file.display()))?;
        let entries: Entries = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a list of containers (name: {{ file, flake or system, autostart }})",
                file.display()
            )
        })?;
        let source = match &request.source {
            Some(name) => SyncSource::Named(name),
            None => SyncSource::ListFile(&real),
        }
        .id();
        let whence = format!("in {}", file.display());
        let beside = real.parent().expect("a file's real path has a directory");
        for (name, mut entry) in entries.0 {
            // A relative path is the list's own: beside the list file.
            entry.file = entry.file.map(|path| beside.join(path));
            entry.source = source.clone();
            add_once(&mut list.listed, name, entry, &whence)?;
        }
        list.sources.push(source);
    }
    if let Some(reference) = &request.flake {
        let source = SyncSource::Flake(reference).id();
        for name in flakes.read(ctx, reference, busybox)?.containers.clone() {
            let entry = Listed {
                file: None,
                flake: Some(format!("{reference}#{name}")),
                system: None,
                autostart: None,
                source: source.clone(),
            };
            let whence = format!("in the list file and in flake {reference}");
            add_once(&mut list.listed, name, entry, &whence)?;
        }
        list.sources.push(source);
    }
    let mut refused = BTreeMap::new();
    for (name, entry) in &list.listed {
        if let Err(err) = check_entry(ctx, name, entry, busybox, flakes) {
            refused.insert(name.clone(), crate::error::one_line(&err));
        }
    }
    for name in refused.keys() {
        list.listed.remove(name);
    }
    list.refused = refused;
    Ok(list)
}

/// Whether one entry of the list can be carried out: a valid name, and one
/// file, one flake's container whose flake can be read, or one built system
/// in the store.
fn check_entry(
    ctx: &Context,
    name: &str,
    entry: &Listed,
    busybox: &Path,
    flakes: &mut Flakes,
) -> Result<()> {
    names::validate(name)?;
    match (&entry.file, &entry.flake, &entry.system) {
        (Some(_), None, None) => Ok(()),
        (None, Some(flake), None) if flake.contains('#') => {
            flakes.read(ctx, flake_reference(flake), busybox).map(|_| ())
        }
        (None, Some(flake), None) => {
            bail!("flake {flake} does not name a container (<ref>#<name>)")
        }
        (None, None, Some(system)) if system.starts_with(crate::layout::NIX_STORE) => Ok(()),
        (None, None, Some(system)) => {
            bail!("the system {} is not in {}", system.display(), crate::layout::NIX_STORE)
        }
        _ => bail!("name a file, a flake or a system, one of them"),
    }
}

/// The source an entry of the list names.
pub(super) fn source_of(entry: &Listed) -> crate::spec::Source {
    match (&entry.file, &entry.flake, &entry.system) {
        (Some(file), _, _) => crate::spec::Source::File(file.clone()),
        (_, Some(flake), _) => crate::spec::Source::Flake(flake.clone()),
        (_, _, Some(system)) => crate::spec::Source::System(system.clone()),
        _ => unreachable!("read_list checked each entry"),
    }
}

/// For each container: what its generation depends on besides its source
/// (a flake's, which locks the flake's inputs; a container file's
/// directory; a built system, a store path that never changes): this toolkit, the busybox that builds generations, the host
/// file, root's autostart and -n, and for a container file `<nixpkgs>`.
/// The source is `Flakes::source_unchanged`'s and
/// `ContainerFiles::unchanged`'s.
pub(super) fn fingerprints(
    ctx: &Context,
    listed: &BTreeMap<String, Listed>,
    busybox: &Path,
    files: &ContainerFiles,
) -> BTreeMap<String, String> {
    let host = std::fs::read_to_string(&ctx.settings.host_file).unwrap_or_default();
    listed
        .iter()
        .map(|(name, entry)| {
            let mut inputs = format!(
                "{} {} {} {:?} {}",
                ctx.settings.nix_lib.display(),
                busybox.display(),
                crate::lxc::digest(&host),
                entry.autostart,
                ctx.nix_args.join(" ")
            );
            if entry.file.is_some() {
                inputs.push_str(&format!(" nixpkgs={:?}", files.nixpkgs));
            }
            (name.clone(), crate::lxc::digest(&inputs))
        })
        .collect()
}
