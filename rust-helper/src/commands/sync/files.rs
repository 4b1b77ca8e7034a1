//! The container files of sync's list, and what each one's evaluation read
//! of the directory it is named in (nix/source_reads.rs): a container file
//! is evaluated again only when a file it read there changed, or what the
//! directory holds. What else it may read is in its fingerprint (list.rs
//! `fingerprints`): this toolkit, busybox, the host file, `<nixpkgs>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context as _, Result};

use crate::context::Context;
use crate::nix::source_reads::{self, Recording};
use crate::spec::{Kind, Source};
use crate::state::{SourceReads, Synced};

/// The container files of the list: the shape of each directory they are
/// named in, once it is needed, and where `<nixpkgs>` is.
pub(super) struct ContainerFiles {
    shapes: Mutex<BTreeMap<PathBuf, String>>,
    /// Where `<nixpkgs>` is for root (None: nowhere, or no container file
    /// listed): a NixOS configuration reads it.
    pub(super) nixpkgs: Option<String>,
}

/// A container file as its evaluation reads it: the real path of the
/// directory it was named in, which restricted evaluation lets it read
/// (`Source::resolved`), and the file it opens there (where the name is a
/// link within the directory, the file the link leads to).
pub(super) struct Named {
    pub(super) dir: PathBuf,
    opened: String,
}

impl Named {
    pub(super) fn of(file: &Path) -> Result<Named> {
        let Source::File(resolved) = Source::File(file.to_path_buf()).resolved()? else {
            unreachable!("a file resolves to a file")
        };
        let dir = resolved.parent().expect("a resolved file is in a directory").to_path_buf();
        let target = std::fs::canonicalize(&resolved)
            .with_context(|| format!("cannot read container file {}", file.display()))?;
        let opened = target.strip_prefix(&dir).expect("Source::resolved checked it").to_owned();
        Ok(Named { dir, opened: opened.to_string_lossy().into_owned() })
    }
}

impl ContainerFiles {
    /// The container files of a list whose entries `files` are.
    pub(super) fn new<'a>(
        ctx: &Context,
        mut files: impl Iterator<Item = &'a Path>,
    ) -> Result<ContainerFiles> {
        let nixpkgs = match files.next() {
            Some(_) => ctx.nix().find_nixpkgs()?,
            None => None,
        };
        Ok(ContainerFiles { shapes: Mutex::default(), nixpkgs })
    }

    fn shape(&self, dir: &Path) -> Result<String> {
        if let Some(shape) = self.shapes.lock().expect("the shapes").get(dir) {
            return Ok(shape.clone());
        }
        let shape = source_reads::shape(dir)?;
        self.shapes.lock().expect("the shapes").insert(dir.to_path_buf(), shape.clone());
        Ok(shape)
    }

    /// Whether what container `name`'s file read when sync last evaluated
    /// it is as it was, and it has the generation that evaluation made.
    pub(super) fn unchanged(
        &self,
        ctx: &Context,
        name: &str,
        file: &Path,
        synced: &Synced,
    ) -> Result<bool> {
        let Some(reads) = &synced.reads else { return Ok(false) };
        let current = ctx.profile(name).current()?.map(|generation| generation.path);
        if current.as_ref() != Some(&reads.generation) {
            return Ok(false);
        }
        // Gone, or a link out of its directory now: its update says so.
        let Ok(named) = Named::of(file) else { return Ok(false) };
        Ok(source_reads::digest(&self.shape(&named.dir)?, &named.dir, &reads.files) == reads.digest)
    }

    /// What sync records of container `name` of container file `named`
    /// that a helper process of its own evaluated, `record` holding what
    /// that read of its directory since `since`. Nothing is known of what it
    /// read where anything in the directory changed meanwhile (what it read
    /// may not be what is there), or where its generation is a NixOS
    /// configuration and `<nixpkgs>` is not in the store (a change there is
    /// not seen): it is evaluated again next time.
    pub(super) fn synced(
        &self,
        ctx: &Context,
        name: &str,
        named: &Named,
        fingerprint: Option<String>,
        record: &Path,
        since: libc::timespec,
    ) -> Result<Synced> {
        let generation = ctx.profile(name).current()?;
        let reads = match (Recording::read_record(record, &named.opened), generation) {
            (Some(files), Some(generation)) => {
                let nixos = generation.meta()?.spec.kind == Kind::Nixos;
                let nixpkgs_moves = self
                    .nixpkgs
                    .as_deref()
                    .is_some_and(|nixpkgs| !nixpkgs.starts_with(crate::layout::NIX_STORE));
                if (nixos && nixpkgs_moves) || source_reads::changed_since(&named.dir, since) {
                    None
                } else {
                    let shape = source_reads::shape(&named.dir)?;
                    let digest = source_reads::digest(&shape, &named.dir, &files);
                    Some(SourceReads { files, digest, generation: generation.path })
                }
            }
            _ => None,
        };
        Ok(Synced { fingerprint, source_hash: None, reads })
    }
}
