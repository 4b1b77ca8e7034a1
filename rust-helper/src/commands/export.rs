//! export: a container as one file (transfer/archive.rs;
//! docs/export-format.md):
//! its generations, the store paths they need, its writable root and its
//! data directory, to be brought back by `import` here or on another host.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::context::Context;
use crate::engine::opening;
use crate::formats::show_size;
use crate::nix::store_paths::{self, StorePath};
use crate::state::ContainerRecord;
use crate::transfer::archive::{ExportedGeneration, Header, Section, Writer};
use crate::transfer::file_tree;

/// Where an export goes.
pub enum Target {
    File(PathBuf),
    Stdout,
}

impl Target {
    /// `-` is standard output.
    pub fn from_argument(argument: &Path) -> Target {
        if argument == Path::new("-") {
            Target::Stdout
        } else {
            Target::File(argument.to_path_buf())
        }
    }
}

/// What writing an export gave.
pub struct Written {
    pub digest: [u8; 32],
    pub bytes: u64,
    /// Bytes of the container's own files (root and data).
    pub file_bytes: u64,
}

/// `export`: container `name` to `target`; a running one only with `running`.
pub fn export(ctx: &Context, name: &str, target: Target, running: bool) -> Result<()> {
    if matches!(target, Target::Stdout) && rustix::termios::isatty(std::io::stdout()) {
        bail!("an export is binary: give a file, or send standard output to one");
    }
    let (_lock, entry) = opening::lock_existing(ctx, name)?;
    let header = header(ctx, name, &entry, running, None)?;
    if header.running {
        eprintln!(
            "note: container '{name}' runs: its files are copied as they are while it writes \
             them, not as one moment"
        );
    }
    let written = match &target {
        Target::Stdout => write(ctx, name, &header, &mut std::io::stdout().lock())?,
        Target::File(file) => {
            // Beside it until it is whole: a failed export leaves no file.
            let dir =
                std::path::absolute(file)?.parent().map(Path::to_path_buf).unwrap_or_default();
            let mut temporary = tempfile::Builder::new()
                .prefix(".nixcloud-container-export-")
                .tempfile_in(&dir)
                .with_context(|| format!("cannot write in {}", dir.display()))?;
            // Not synced to disk, as tar and cp leave a file: one that a
            // crash cut short is refused at import by its digest.
            let written = write(ctx, name, &header, temporary.as_file_mut())?;
            temporary.persist(file).with_context(|| format!("cannot write {}", file.display()))?;
            written
        }
    };
    let said = format!(
        "exported container '{name}': {} generations (current {}), {} store paths, {} of files, \
         {}; sha256 {}",
        header.generations.len(),
        header.current,
        header.included.len(),
        show_size(written.file_bytes),
        match &target {
            Target::File(file) => format!("to {} ({})", file.display(), show_size(written.bytes)),
            Target::Stdout => format!("{} to standard output", show_size(written.bytes)),
        },
        crate::transfer::sha256::hex(&written.digest)
    );
    // Standard output may be the export itself.
    match target {
        Target::File(_) => println!("{said}"),
        Target::Stdout => eprintln!("{said}"),
    }
    Ok(())
}

/// The header of container `name` (`entry` its record, its lock held):
/// its generations, and of the store paths they need those in `carried`
/// (None: all). A running container is refused unless `running`.
pub fn header(
    ctx: &Context,
    name: &str,
    entry: &ContainerRecord,
    running: bool,
    carried: Option<&[StorePath]>,
) -> Result<Header> {
    let is_running = ctx.lxc().is_defined(name) && ctx.lxc().is_running(name)?;
    if is_running && !running {
        bail!(
            "container '{name}' is running: stop it first, or give --running to copy its files as \
             they are while it runs"
        );
    }
    let profile = ctx.profile(name);
    let current = profile.current_number()?.context("the container has no current generation")?;
    let mut generations = Vec::new();
    for generation in profile.generations()? {
        let meta = generation.meta()?;
        let created = generation
            .created
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs() as i64);
        generations.push(ExportedGeneration {
            number: generation.number,
            created,
            system: StorePath::containing(&meta.system)?,
            spec: meta.spec,
            params: meta.params,
        });
    }
    let mut systems: Vec<StorePath> = generations.iter().map(|g| g.system.clone()).collect();
    systems.sort();
    systems.dedup();
    let needed = store_paths::closure(&systems)?;
    let included = match carried {
        Some(carried) => needed.iter().filter(|path| carried.contains(path)).cloned().collect(),
        None => needed.clone(),
    };
    let root_settings = match &entry.root_settings {
        Some(file) => std::fs::read_to_string(file).ok(),
        None => None,
    };
    Ok(Header {
        name: name.to_string(),
        exported: jiff::Timestamp::now().to_string(),
        running: is_running,
        ids: entry.ids(&ctx.settings.host.idmap),
        automatic_ip: entry.automatic_ip,
        state_version: entry.state_version.clone(),
        source: entry.source.clone(),
        autostart: entry.autostart,
        root_settings,
        current,
        generations,
        store_paths: needed,
        included,
        data: ctx.settings.data_dir(name).is_dir(),
    })
}

/// Writes container `name`'s export with `header` to `out`.
pub fn write(ctx: &Context, name: &str, header: &Header, out: &mut impl Write) -> Result<Written> {
    let mut writer = Writer::new(out)?;
    serde_json::to_writer(&mut writer, header).context("cannot write the export's header")?;
    writer.start(Section::StorePaths)?;
    store_paths::export(&header.included, &mut writer)?;
    writer.start(Section::Root)?;
    let root = file_tree::write_tree(&ctx.lxc().rootfs(name), header.ids, &mut writer)
        .context("cannot export the container's root")?;
    let mut file_bytes = root.bytes;
    let mut notes = root.notes("its root");
    if header.data {
        writer.start(Section::Data)?;
        let data = file_tree::write_tree(&ctx.settings.data_dir(name), header.ids, &mut writer)
            .context("cannot export the container's data directory")?;
        file_bytes += data.bytes;
        notes.extend(data.notes("its data directory"));
    }
    let (digest, bytes) = writer.finish()?;
    for note in notes {
        eprintln!("note: {note}");
    }
    Ok(Written { digest, bytes, file_bytes })
}
