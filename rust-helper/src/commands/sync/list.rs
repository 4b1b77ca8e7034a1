//! The list sync makes the host's containers: a list file's, and a
//! flake's containers; and what else a flake's container's generation
//! depends on (its fingerprint).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

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
}

/// The containers to have: the list file's, and those of --flake.
pub(super) fn read_list(
    ctx: &Context,
    request: &Request,
    busybox: &Path,
    flakes: &mut Flakes,
) -> Result<BTreeMap<String, Listed>> {
    let mut listed = BTreeMap::new();
    if let Some(file) = &request.file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the list of containers {}", file.display()))?;
        listed = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a list of containers (name: {{ file, flake or system, autostart }})",
                file.display()
            )
        })?;
    }
    if let Some(reference) = &request.flake {
        for name in flakes.read(ctx, reference, busybox)?.containers.clone() {
            let entry = Listed {
                file: None,
                flake: Some(format!("{reference}#{name}")),
                system: None,
                autostart: None,
            };
            if listed.insert(name.clone(), entry).is_some() {
                bail!("container '{name}' is in the list file and in flake {reference}");
            }
        }
    }
    for (name, entry) in &listed {
        names::validate(name)?;
        match (&entry.file, &entry.flake, &entry.system) {
            (Some(file), None, None) if file.is_absolute() => {}
            (Some(file), None, None) => {
                bail!("{name}: the file {} is not an absolute path", file.display())
            }
            (None, Some(flake), None) if flake.contains('#') => {
                flakes.read(ctx, flake_reference(flake), busybox)?;
            }
            (None, Some(flake), None) => {
                bail!("{name}: flake {flake} does not name a container (<ref>#<name>)")
            }
            (None, None, Some(system)) if system.starts_with(crate::layout::NIX_STORE) => {}
            (None, None, Some(system)) => {
                bail!(
                    "{name}: the system {} is not in {}",
                    system.display(),
                    crate::layout::NIX_STORE
                )
            }
            _ => bail!("{name}: name a file, a flake or a system, one of them"),
        }
    }
    Ok(listed)
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

/// For each flake's container and each built system: what its generation
/// depends on besides its flake's source (which locks the flake's inputs)
/// or its system (a store path, which never changes): this toolkit, the
/// busybox that builds generations, the host file, root's autostart and
/// -n. A flake's source is `Flakes::source_unchanged`'s.
pub(super) fn fingerprints(
    ctx: &Context,
    listed: &BTreeMap<String, Listed>,
    busybox: &Path,
) -> BTreeMap<String, String> {
    let host = std::fs::read_to_string(&ctx.settings.host_file).unwrap_or_default();
    listed
        .iter()
        .filter(|(_, entry)| entry.flake.is_some() || entry.system.is_some())
        .map(|(name, entry)| {
            let inputs = format!(
                "{} {} {} {:?} {}",
                ctx.settings.nix_lib.display(),
                busybox.display(),
                crate::lxc::digest(&host),
                entry.autostart,
                ctx.nix_args.join(" ")
            );
            (name.clone(), crate::lxc::digest(&inputs))
        })
        .collect()
}
