//! The flakes of sync's list: each read once, and what their containers'
//! evaluations read of a flake's source (nix/source_reads.rs).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use crate::context::Context;
use crate::nix::source_reads::{self, Recording};
use crate::nix::FlakeInfo;
use crate::state::{SourceReads, Synced};

/// The flakes of the list, each read once (lib/cli.nix's flakeInfo: one
/// Nix process, none of their containers evaluated).
#[derive(Default)]
pub(super) struct Flakes {
    read: BTreeMap<String, Flake>,
}

/// A flake as sync read it, and the shape of its source once it is needed
/// (by any of the worker threads).
pub(super) struct Flake {
    pub(super) info: FlakeInfo,
    shape: std::sync::OnceLock<String>,
}

impl Flake {
    fn shape(&self) -> Result<&str> {
        if let Some(shape) = self.shape.get() {
            return Ok(shape);
        }
        let shape = source_reads::shape(&self.info.path)?;
        Ok(self.shape.get_or_init(|| shape))
    }

    /// The digest of `files` of this source (source_reads.rs).
    fn digest(&self, files: &std::collections::BTreeSet<String>) -> Result<String> {
        Ok(source_reads::digest(self.shape()?, &self.info.path, files))
    }
}

impl Flakes {
    pub(super) fn read(
        &mut self,
        ctx: &Context,
        reference: &str,
        busybox: &Path,
    ) -> Result<&FlakeInfo> {
        if !self.read.contains_key(reference) {
            let info = ctx.nix().flake_info(reference, busybox)?;
            let flake = Flake { info, shape: std::sync::OnceLock::new() };
            self.read.insert(reference.to_string(), flake);
        }
        Ok(&self.read[reference].info)
    }

    /// The flake of a flake's container `flake` (`<ref>#<name>`), None for a
    /// container file's (`flake` None).
    pub(super) fn of(&self, flake: Option<&str>) -> Option<&Flake> {
        flake.and_then(|flake| self.read.get(flake_reference(flake)))
    }

    /// Whether a flake's container's source is, for it, as when sync last
    /// evaluated it: the same source, or one in which what its evaluation
    /// read is the same (source_reads.rs).
    pub(super) fn source_unchanged(&self, flake: Option<&str>, synced: &Synced) -> Result<bool> {
        let Some(flake) = self.of(flake) else { return Ok(false) };
        if synced.source_hash.as_ref() == Some(&flake.info.nar_hash) {
            return Ok(true);
        }
        let Some(reads) = &synced.reads else { return Ok(false) };
        Ok(flake.digest(&reads.files)? == reads.digest)
    }
}

/// What sync records of container `name` of `flake` that a helper process
/// of its own evaluated, `record` holding what that read of the source. A
/// generation that sync found before not to depend on all of the source
/// (`previous`) is not looked at again.
pub(super) fn synced_from_flake(
    ctx: &Context,
    name: &str,
    flake: &Flake,
    fingerprint: Option<String>,
    record: &Path,
    previous: Option<&SourceReads>,
) -> Result<Synced> {
    let info = &flake.info;
    let generation = ctx.profile(name).current()?.map(|g| g.path);
    let reads = match (Recording::read_record(record, "flake.nix"), generation) {
        (Some(files), Some(generation)) => {
            let known = previous.is_some_and(|reads| reads.generation == generation);
            let whole = !known
                && source_reads::names_whole_source(&generation, &info.path, &info.identifiers)?;
            if whole {
                None
            } else {
                Some(SourceReads { digest: flake.digest(&files)?, files, generation })
            }
        }
        _ => None,
    };
    Ok(Synced { fingerprint, source_hash: Some(info.nar_hash.clone()), reads })
}

/// The reference of a flake's container without its `#<name>`.
pub(super) fn flake_reference(flake: &str) -> &str {
    flake.split_once('#').map_or(flake, |(reference, _)| reference)
}
