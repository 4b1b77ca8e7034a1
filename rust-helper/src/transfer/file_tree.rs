//! A container's own files (its writable root, its data directory) as a tar
//! stream, with ownership relative to the container's id range, and back
//! into a directory with the ids of another range (export, import).
//!
//! The tree is the container's: anything in it may have been put there to
//! trick root, who reads and writes it. So both ways every name is opened
//! relative to a directory already open, never following a link (`openat`
//! with O_NOFOLLOW when reading; `openat2` with RESOLVE_BENEATH and
//! RESOLVE_NO_SYMLINKS when writing), a file that changes its kind while
//! read is not followed, and what is written carries only what a container
//! can make: directories, files, links, symbolic links and FIFOs, owned by
//! ids of its range. Device nodes (which a container's root cannot make) and
//! sockets are left out when reading and refused when writing.
//!
//! The format is POSIX ustar with pax extended headers where a value does
//! not fit (docs/export-format.md); it is written and read here, for exactly
//! what this helper writes.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};

use crate::ids::IdMap;

const BLOCK: usize = 512;
/// The id a file owned by an id outside the range is stored as: how the
/// container sees such a file (the kernel's overflow id, nobody).
pub const OVERFLOW_ID: u32 = 65534;
/// How much of a file is read at a time.
const CHUNK: usize = 1 << 20;

/// What a tree held, and what of it was left out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub entries: u64,
    pub bytes: u64,
    /// Device nodes and sockets, left out.
    pub skipped_special: u64,
    /// Entries owned by ids outside the range, stored as nobody's.
    pub foreign_owners: u64,
    /// Files that changed while they were read (a running container's).
    pub changed: u64,
    /// Directories on another file system, left out.
    pub other_filesystems: u64,
}

impl Summary {
    /// What export should say about the tree `what`, if anything.
    pub fn notes(&self, what: &str) -> Vec<String> {
        let mut notes = Vec::new();
        if self.skipped_special > 0 {
            notes.push(format!(
                "{what}: left out {} device nodes and sockets (a container cannot make devices; \
                 sockets are made again by what listens on them)",
                self.skipped_special
            ));
        }
        if self.foreign_owners > 0 {
            notes.push(format!(
                "{what}: {} entries owned by host ids outside the container's range are stored as \
                 its nobody ({OVERFLOW_ID}), as the container sees them",
                self.foreign_owners
            ));
        }
        if self.changed > 0 {
            notes.push(format!("{what}: {} files changed while they were read", self.changed));
        }
        if self.other_filesystems > 0 {
            notes.push(format!(
                "{what}: left out {} directories on other file systems (mounts)",
                self.other_filesystems
            ));
        }
        notes
    }
}

/// The kinds of entry this format carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    HardLink,
    Symlink,
    Directory,
    Fifo,
}

impl Kind {
    fn flag(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::HardLink => b'1',
            Kind::Symlink => b'2',
            Kind::Directory => b'5',
            Kind::Fifo => b'6',
        }
    }
}

/// One entry's header.
#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    path: Vec<u8>,
    link: Vec<u8>,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
}

// --- Writing ---------------------------------------------------------------

/// Writes the tree below `dir` (not `dir` itself) to `out` as a tar
/// stream, ids relative to `ids`.
pub fn write_tree(dir: &Path, ids: IdMap, out: &mut impl Write) -> Result<Summary> {
    let root = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", dir.display()))?;
    let device = rustix::fs::fstat(&root)?.st_dev;
    let mut walk = Walk {
        ids,
        device,
        out,
        summary: Summary::default(),
        links: HashMap::new(),
        buffer: vec![0; CHUNK],
    };
    walk.directory(&root, &mut Vec::new())
        .with_context(|| format!("cannot read {}", dir.display()))?;
    walk.out.write_all(&[0; 2 * BLOCK])?;
    Ok(walk.summary)
}

struct Walk<'a, W: Write> {
    ids: IdMap,
    device: u64,
    out: &'a mut W,
    summary: Summary,
    /// Files with more than one name: the path of the first one written.
    links: HashMap<(u64, u64), Vec<u8>>,
    buffer: Vec<u8>,
}

impl<W: Write> Walk<'_, W> {
    fn relative(&mut self, id: u32) -> u64 {
        if id >= self.ids.host_id && u64::from(id) < self.ids.end() {
            u64::from(id - self.ids.host_id)
        } else {
            self.summary.foreign_owners += 1;
            u64::from(OVERFLOW_ID)
        }
    }

    fn entry(&mut self, kind: Kind, path: &[u8], stat: &rustix::fs::Stat) -> Entry {
        Entry {
            kind,
            path: path.to_vec(),
            link: Vec::new(),
            mode: stat.st_mode & 0o7777,
            uid: self.relative(stat.st_uid),
            gid: self.relative(stat.st_gid),
            size: 0,
            mtime: stat.st_mtime,
        }
    }

    /// Writes what is in the open directory `dir`, whose path is `prefix`
    /// (empty for the top).
    fn directory(&mut self, dir: &OwnedFd, prefix: &mut Vec<u8>) -> Result<()> {
        let mut names: Vec<Vec<u8>> = Vec::new();
        for entry in rustix::fs::Dir::read_from(dir)? {
            let name = entry?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(name);
            }
        }
        names.sort();
        for name in names {
            let start = prefix.len();
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(&name);
            let done = self.one(dir, OsStr::from_bytes(&name), prefix);
            prefix.truncate(start);
            done?;
        }
        Ok(())
    }

    fn one(&mut self, dir: &OwnedFd, name: &OsStr, path: &mut Vec<u8>) -> Result<()> {
        let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            // Gone meanwhile (a running container's).
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(err) => return Err(err.into()),
        };
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => {
                if stat.st_dev != self.device {
                    self.summary.other_filesystems += 1;
                    return Ok(());
                }
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let Some(child) = self.reopen(dir, name, flags, &stat)? else { return Ok(()) };
                let mut entry = self.entry(Kind::Directory, path, &stat);
                entry.path.push(b'/');
                self.header(&entry)?;
                self.directory(&child, path)
            }
            FileType::RegularFile => {
                if stat.st_nlink > 1 {
                    if let Some(first) = self.links.get(&(stat.st_dev, stat.st_ino)).cloned() {
                        let mut entry = self.entry(Kind::HardLink, path, &stat);
                        entry.link = first;
                        return self.header(&entry);
                    }
                }
                // O_NONBLOCK: a FIFO put in its place would not hold us up.
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
                let Some(file) = self.reopen(dir, name, flags, &stat)? else { return Ok(()) };
                let stat = rustix::fs::fstat(&file)?;
                let mut entry = self.entry(Kind::File, path, &stat);
                entry.size = stat.st_size as u64;
                self.header(&entry)?;
                self.contents(&file, entry.size)?;
                if stat.st_nlink > 1 {
                    self.links.insert((stat.st_dev, stat.st_ino), path.clone());
                }
                Ok(())
            }
            FileType::Symlink => {
                let target = match rustix::fs::readlinkat(dir, name, Vec::new()) {
                    Ok(target) => target.into_bytes(),
                    Err(rustix::io::Errno::NOENT | rustix::io::Errno::INVAL) => {
                        self.summary.changed += 1;
                        return Ok(());
                    }
                    Err(err) => return Err(err.into()),
                };
                let mut entry = self.entry(Kind::Symlink, path, &stat);
                entry.link = target;
                self.header(&entry)
            }
            FileType::Fifo => {
                let entry = self.entry(Kind::Fifo, path, &stat);
                self.header(&entry)
            }
            _ => {
                self.summary.skipped_special += 1;
                Ok(())
            }
        }
    }

    /// Opens `name` in `dir` with `flags`; None (and counted) when it is no
    /// longer the entry `stat` describes.
    fn reopen(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        flags: OFlags,
        stat: &rustix::fs::Stat,
    ) -> Result<Option<OwnedFd>> {
        let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                self.summary.changed += 1;
                return Ok(None);
            }
            Err(err) => return Err(err.into()),
        };
        let now = rustix::fs::fstat(&fd)?;
        if now.st_ino != stat.st_ino || now.st_dev != stat.st_dev {
            self.summary.changed += 1;
            return Ok(None);
        }
        Ok(Some(fd))
    }

    /// Copies `size` bytes of `file`; what it lost meanwhile is written as
    /// zeros, what it gained is left out.
    fn contents(&mut self, file: &OwnedFd, size: u64) -> Result<()> {
        let mut left = size;
        let mut short = false;
        while left > 0 {
            let wanted = (left as usize).min(self.buffer.len());
            let got = if short { 0 } else { rustix::io::read(file, &mut self.buffer[..wanted])? };
            if got == 0 {
                short = true;
                self.buffer[..wanted].fill(0);
                self.out.write_all(&self.buffer[..wanted])?;
                left -= wanted as u64;
                continue;
            }
            self.out.write_all(&self.buffer[..got])?;
            left -= got as u64;
        }
        if short {
            self.summary.changed += 1;
        }
        let padding = padding(size);
        self.out.write_all(&[0; BLOCK][..padding])?;
        self.summary.bytes += size;
        Ok(())
    }

    fn header(&mut self, entry: &Entry) -> Result<()> {
        self.summary.entries += 1;
        write_header(self.out, entry)
    }
}

fn padding(size: u64) -> usize {
    (BLOCK - (size % BLOCK as u64) as usize) % BLOCK
}

/// Writes `entry`'s header, preceded by a pax header for the values that do
/// not fit ustar's fields.
fn write_header(out: &mut impl Write, entry: &Entry) -> Result<()> {
    let mut pax = Vec::new();
    let mut record = |key: &str, value: &[u8]| {
        // "<length> <key>=<value>\n", the length counting itself.
        let rest = key.len() + value.len() + 3;
        let mut length = rest + 1;
        while length != rest + length.to_string().len() {
            length = rest + length.to_string().len();
        }
        pax.extend_from_slice(format!("{length} {key}=").as_bytes());
        pax.extend_from_slice(value);
        pax.push(b'\n');
    };
    if entry.path.len() > 100 {
        record("path", &entry.path);
    }
    if entry.link.len() > 100 {
        record("linkpath", &entry.link);
    }
    for (key, value, width) in
        [("uid", entry.uid, 8), ("gid", entry.gid, 8), ("size", entry.size, 12)]
    {
        if !fits_octal(value, width) {
            record(key, value.to_string().as_bytes());
        }
    }
    if entry.mtime < 0 || !fits_octal(entry.mtime as u64, 12) {
        record("mtime", entry.mtime.to_string().as_bytes());
    }
    if !pax.is_empty() {
        let pax_entry = Entry {
            kind: Kind::File,
            path: b"pax".to_vec(),
            link: Vec::new(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: pax.len() as u64,
            mtime: 0,
        };
        out.write_all(&ustar_block(&pax_entry, b'x'))?;
        out.write_all(&pax)?;
        out.write_all(&[0; BLOCK][..padding(pax.len() as u64)])?;
    }
    out.write_all(&ustar_block(entry, entry.kind.flag()))?;
    Ok(())
}

/// Whether `value` fits a ustar field of `width` bytes (octal digits and a NUL).
fn fits_octal(value: u64, width: usize) -> bool {
    value < 1 << (3 * (width - 1))
}

/// A ustar header block; values that do not fit are cut (a pax header
/// before it has them).
fn ustar_block(entry: &Entry, flag: u8) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    let put = |block: &mut [u8; BLOCK], offset: usize, bytes: &[u8], width: usize| {
        let length = bytes.len().min(width);
        block[offset..offset + length].copy_from_slice(&bytes[..length]);
    };
    let octal = |block: &mut [u8; BLOCK], offset: usize, value: u64, width: usize| {
        let value = if fits_octal(value, width) { value } else { 0 };
        let text = format!("{value:0digits$o}", digits = width - 1);
        block[offset..offset + width - 1].copy_from_slice(text.as_bytes());
    };
    put(&mut block, 0, &entry.path, 100);
    octal(&mut block, 100, u64::from(entry.mode), 8);
    octal(&mut block, 108, entry.uid, 8);
    octal(&mut block, 116, entry.gid, 8);
    octal(&mut block, 124, entry.size, 12);
    octal(&mut block, 136, entry.mtime.max(0) as u64, 12);
    block[156] = flag;
    put(&mut block, 157, &entry.link, 100);
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(text.as_bytes());
    block
}

// --- Reading ---------------------------------------------------------------

/// Writes the tar stream `input` into the empty directory `dir`, each
/// relative id as the host id of `ids` it stands for. Refuses what this
/// helper does not write, and anything that would leave `dir`: an absolute
/// path, `..`, a path through a symbolic link, a link to a file outside.
pub fn extract_tree(input: &mut impl BufRead, dir: &Path, ids: IdMap) -> Result<Summary> {
    let root = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", dir.display()))?;
    let mut extraction = Extraction {
        root,
        ids,
        summary: Summary::default(),
        parent: None,
        directory_times: Vec::new(),
    };
    extraction
        .run(input)
        .with_context(|| format!("cannot write the files into {}", dir.display()))?;
    Ok(extraction.summary)
}

struct Extraction {
    root: OwnedFd,
    ids: IdMap,
    summary: Summary,
    /// The directory the last entry went into, by path, open.
    parent: Option<(PathBuf, OwnedFd)>,
    /// Directories' times, set once nothing more goes into them.
    directory_times: Vec<(PathBuf, i64)>,
}

/// How `openat2` resolves paths below the directory written into.
fn beneath() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

impl Extraction {
    fn run(&mut self, input: &mut impl BufRead) -> Result<()> {
        let mut extended: Option<Vec<(String, Vec<u8>)>> = None;
        loop {
            let mut block = [0u8; BLOCK];
            read_full(input, &mut block)?;
            if block.iter().all(|&b| b == 0) {
                read_full(input, &mut block)?;
                if block.iter().any(|&b| b != 0) {
                    bail!("the tar stream has a lone empty block");
                }
                // tar pads to its record size with more empty blocks.
                let mut rest = Vec::new();
                input.read_to_end(&mut rest)?;
                if rest.iter().any(|&b| b != 0) {
                    bail!("the tar stream goes on after its end");
                }
                break;
            }
            let (mut entry, flag) = parse_block(&block)?;
            if flag == b'x' {
                if extended.is_some() {
                    bail!("two pax headers in a row");
                }
                let mut records = vec![
                    0u8;
                    usize::try_from(entry.size)
                        .ok()
                        .filter(|&s| s <= CHUNK)
                        .context("a pax header too large")?
                ];
                read_full(input, &mut records)?;
                skip(input, padding(entry.size) as u64)?;
                extended = Some(parse_pax(&records)?);
                continue;
            }
            for (key, value) in extended.take().unwrap_or_default() {
                let number = || -> Result<i64> {
                    std::str::from_utf8(&value)
                        .ok()
                        .and_then(|text| text.parse().ok())
                        .with_context(|| format!("pax {key} is not a number"))
                };
                match key.as_str() {
                    "path" => entry.path = value,
                    "linkpath" => entry.link = value,
                    "uid" => entry.uid = u64::try_from(number()?)?,
                    "gid" => entry.gid = u64::try_from(number()?)?,
                    "size" => entry.size = u64::try_from(number()?)?,
                    "mtime" => entry.mtime = number()?,
                    other => bail!("a pax header with {other:?}, which this helper does not write"),
                }
            }
            self.entry(&entry, input)?;
        }
        for (path, mtime) in self.directory_times.drain(..).rev() {
            let dir = rustix::fs::openat2(
                &self.root,
                &path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                beneath(),
            )?;
            rustix::fs::futimens(&dir, &times(mtime))?;
        }
        Ok(())
    }

    /// A host id for relative id `id`.
    fn host_id(&self, id: u64, path: &Path) -> Result<u32> {
        if id >= u64::from(self.ids.count) {
            bail!(
                "{} is owned by id {id}, outside a container's {} ids",
                path.display(),
                self.ids.count
            );
        }
        Ok(self.ids.host_id + id as u32)
    }

    /// The open directory that `path` is in, and `path`'s last component.
    fn parent_of<'p>(&mut self, path: &'p Path) -> Result<(&OwnedFd, &'p OsStr)> {
        let name = path.file_name().context("an entry without a name")?;
        let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
        if self.parent.as_ref().map(|(open, _)| open) != Some(&parent) {
            let dir = if parent.as_os_str().is_empty() {
                rustix::io::dup(&self.root)?
            } else {
                rustix::fs::openat2(
                    &self.root,
                    &parent,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    beneath(),
                )
                .with_context(|| {
                    format!("{} is not in a directory written before it", path.display())
                })?
            };
            self.parent = Some((parent, dir));
        }
        Ok((&self.parent.as_ref().expect("just set").1, name))
    }

    fn entry(&mut self, entry: &Entry, input: &mut impl BufRead) -> Result<()> {
        let path = plain_path(&entry.path)?;
        let uid = rustix::fs::Uid::from_raw(self.host_id(entry.uid, &path)?);
        let gid = rustix::fs::Gid::from_raw(self.host_id(entry.gid, &path)?);
        let mode = Mode::from_raw_mode(entry.mode & 0o7777);
        if entry.kind != Kind::File && entry.size != 0 {
            bail!("{} has content, which its kind has not", path.display());
        }
        self.summary.entries += 1;
        let taken = |err: rustix::io::Errno| -> anyhow::Error {
            if err == rustix::io::Errno::EXIST {
                anyhow::anyhow!("{} comes twice", path.display())
            } else {
                anyhow::Error::new(err).context(format!("cannot make {}", path.display()))
            }
        };
        match entry.kind {
            Kind::Directory => {
                let (parent, name) = self.parent_of(&path)?;
                rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)).map_err(taken)?;
                let dir = rustix::fs::openat2(
                    parent,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    beneath(),
                )?;
                rustix::fs::fchown(&dir, Some(uid), Some(gid))?;
                rustix::fs::fchmod(&dir, mode)?;
                self.directory_times.push((path, entry.mtime));
            }
            Kind::File => {
                let (parent, name) = self.parent_of(&path)?;
                let file = rustix::fs::openat(
                    parent,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(taken)?;
                self.contents(input, &file, entry.size)?;
                // After the owner: chown clears the set-id bits.
                rustix::fs::fchown(&file, Some(uid), Some(gid))?;
                rustix::fs::fchmod(&file, mode)?;
                rustix::fs::futimens(&file, &times(entry.mtime))?;
            }
            Kind::HardLink => {
                let target = plain_path(&entry.link)?;
                let existing = rustix::fs::openat2(
                    &self.root,
                    &target,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    beneath(),
                )
                .with_context(|| {
                    format!("{} links to {}, which is not there", path.display(), target.display())
                })?;
                if FileType::from_raw_mode(rustix::fs::fstat(&existing)?.st_mode)
                    != FileType::RegularFile
                {
                    bail!("{} links to {}, which is not a file", path.display(), target.display());
                }
                let (parent, name) = self.parent_of(&path)?;
                rustix::fs::linkat(&existing, "", parent, name, AtFlags::EMPTY_PATH)
                    .map_err(taken)?;
            }
            Kind::Symlink => {
                let (parent, name) = self.parent_of(&path)?;
                rustix::fs::symlinkat(OsStr::from_bytes(&entry.link), parent, name)
                    .map_err(taken)?;
                rustix::fs::chownat(parent, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)?;
                rustix::fs::utimensat(
                    parent,
                    name,
                    &times(entry.mtime),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            Kind::Fifo => {
                let (parent, name) = self.parent_of(&path)?;
                rustix::fs::mknodat(parent, name, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                    .map_err(taken)?;
                // Made just now in a directory nothing else writes in: the
                // name is the FIFO (chmod has no flag to not follow a link).
                rustix::fs::chownat(parent, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)?;
                rustix::fs::chmodat(parent, name, mode, AtFlags::empty())?;
            }
        }
        Ok(())
    }

    /// Writes `size` bytes of `input` into `file`, straight from the
    /// input's buffer.
    fn contents(&mut self, input: &mut impl BufRead, file: &OwnedFd, size: u64) -> Result<()> {
        let mut left = size;
        while left > 0 {
            let available = input.fill_buf().map_err(read_error)?;
            if available.is_empty() {
                bail!("the tar stream ends too early");
            }
            let wanted = available
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX))
                .min(super::archive::WRITE_SIZE);
            let written = rustix::io::write(file, &available[..wanted])?;
            input.consume(written);
            left -= written as u64;
        }
        skip(input, padding(size) as u64)?;
        self.summary.bytes += size;
        Ok(())
    }
}

fn times(mtime: i64) -> Timestamps {
    let at = Timespec { tv_sec: mtime, tv_nsec: 0 };
    Timestamps { last_access: at, last_modification: at }
}

/// `bytes` as a path of plain names below the directory (a trailing '/'
/// allowed): no absolute path, no `.` or `..`, no empty name, no NUL.
fn plain_path(bytes: &[u8]) -> Result<PathBuf> {
    let trimmed = bytes.strip_suffix(b"/").unwrap_or(bytes);
    let path = Path::new(OsStr::from_bytes(trimmed));
    let shown = || String::from_utf8_lossy(bytes).into_owned();
    if trimmed.is_empty()
        || trimmed.contains(&0)
        || trimmed.split(|&b| b == b'/').any(|part| matches!(part, b"" | b"." | b".."))
        || !path.components().all(|part| matches!(part, Component::Normal(_)))
    {
        bail!("the tar stream names {:?}, which is not a path below the directory", shown());
    }
    Ok(path.to_path_buf())
}

/// Parses a ustar header block written by `ustar_block`.
fn parse_block(block: &[u8; BLOCK]) -> Result<(Entry, u8)> {
    let mut unsigned = 0u32;
    for (index, &byte) in block.iter().enumerate() {
        unsigned += if (148..156).contains(&index) { u32::from(b' ') } else { u32::from(byte) };
    }
    if octal_field(&block[148..156])? != u64::from(unsigned) {
        bail!("the tar stream is damaged: a header's checksum does not match");
    }
    if &block[257..263] != b"ustar\0" || &block[263..265] != b"00" {
        bail!("the tar stream has a header that is not ustar");
    }
    if block[345..500].iter().any(|&b| b != 0) {
        bail!("the tar stream has a header with a prefix, which this helper does not write");
    }
    let text = |field: &[u8]| field.split(|&b| b == 0).next().unwrap_or_default().to_vec();
    let flag = block[156];
    let kind = match flag {
        b'0' | b'x' => Kind::File,
        b'1' => Kind::HardLink,
        b'2' => Kind::Symlink,
        b'5' => Kind::Directory,
        b'6' => Kind::Fifo,
        b'3' | b'4' => bail!("the tar stream holds a device node, which no container can make"),
        other => bail!(
            "the tar stream holds an entry of type {:?}, which this helper does not write",
            other as char
        ),
    };
    let entry = Entry {
        kind,
        path: text(&block[0..100]),
        link: text(&block[157..257]),
        mode: octal_field(&block[100..108])? as u32 & 0o7777,
        uid: octal_field(&block[108..116])?,
        gid: octal_field(&block[116..124])?,
        size: octal_field(&block[124..136])?,
        mtime: octal_field(&block[136..148])? as i64,
    };
    Ok((entry, flag))
}

/// An octal number field: digits, ended by NUL or space.
fn octal_field(field: &[u8]) -> Result<u64> {
    let digits: &[u8] = field.split(|&b| b == 0 || b == b' ').next().unwrap_or_default();
    if digits.is_empty() || digits.len() > 11 || !digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
        bail!(
            "the tar stream is damaged: a header's number field is {:?}",
            String::from_utf8_lossy(field)
        );
    }
    Ok(u64::from_str_radix(std::str::from_utf8(digits).expect("octal digits"), 8).expect("fits"))
}

/// The records of a pax header: "<length> <key>=<value>\n" each.
fn parse_pax(mut records: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut parsed = Vec::new();
    while !records.is_empty() {
        let space = records.iter().position(|&b| b == b' ').context("a damaged pax header")?;
        let length: usize = std::str::from_utf8(&records[..space])
            .ok()
            .and_then(|text| text.parse().ok())
            .filter(|&length| length > space + 2 && length <= records.len())
            .context("a damaged pax header")?;
        let record = &records[space + 1..length];
        let record = record.strip_suffix(b"\n").context("a damaged pax header")?;
        let equals = record.iter().position(|&b| b == b'=').context("a damaged pax header")?;
        let key = String::from_utf8(record[..equals].to_vec()).context("a damaged pax header")?;
        parsed.push((key, record[equals + 1..].to_vec()));
        records = &records[length..];
    }
    Ok(parsed)
}

fn read_full(input: &mut impl Read, buf: &mut [u8]) -> Result<()> {
    input.read_exact(buf).map_err(read_error)
}

/// A read error as one message: the export's own (it says what is
/// damaged), or that the stream ends too early.
fn read_error(err: std::io::Error) -> anyhow::Error {
    match err.kind() {
        std::io::ErrorKind::UnexpectedEof => anyhow::anyhow!("the tar stream ends too early"),
        _ => match err.into_inner() {
            Some(inner) => anyhow::anyhow!("{inner}"),
            None => anyhow::anyhow!("cannot read the tar stream"),
        },
    }
}

fn skip(input: &mut impl Read, count: u64) -> Result<()> {
    let mut pad = [0u8; BLOCK];
    read_full(input, &mut pad[..count as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    const FROM: IdMap = IdMap { host_id: 300000, count: 65536 };
    const TO: IdMap = IdMap { host_id: 500000, count: 65536 };

    fn chown(path: &Path, id: u32) {
        std::os::unix::fs::lchown(path, Some(id), Some(id)).unwrap();
    }

    /// A tree with every kind of entry, owned by `FROM`'s ids.
    fn sample(dir: &Path) {
        let deep = dir.join("var/lib/app");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("data"), vec![5u8; 3 * CHUNK + 17]).unwrap();
        std::fs::write(dir.join("setuid"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(dir.join("setuid"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        std::fs::hard_link(deep.join("data"), dir.join("second-name")).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", dir.join("shadow")).unwrap();
        let long = "n".repeat(150);
        std::fs::write(dir.join(&long), b"long").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o640),
            0,
        )
        .unwrap();
        for path in ["var", "var/lib", "var/lib/app", "var/lib/app/data", "shadow", "fifo", &long] {
            chown(&dir.join(path), FROM.host_id + 1000);
        }
        chown(&dir.join("setuid"), FROM.host_id);
        std::fs::set_permissions(dir.join("setuid"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
    }

    #[test]
    fn a_tree_comes_back_with_the_other_ranges_ids() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root (chown)");
            return;
        }
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        sample(from.path());
        let mut stream = Vec::new();
        let written = write_tree(from.path(), FROM, &mut stream).unwrap();
        assert_eq!(written.foreign_owners, 0);
        let read = extract_tree(&mut stream.as_slice(), to.path(), TO).unwrap();
        assert_eq!(read.entries, written.entries);
        let data = std::fs::metadata(to.path().join("var/lib/app/data")).unwrap();
        assert_eq!(data.len(), 3 * CHUNK as u64 + 17);
        assert_eq!((data.uid(), data.gid()), (TO.host_id + 1000, TO.host_id + 1000));
        assert_eq!(data.nlink(), 2, "the second name is a link again");
        let setuid = std::fs::metadata(to.path().join("setuid")).unwrap();
        assert_eq!(setuid.mode() & 0o7777, 0o4755);
        assert_eq!(setuid.uid(), TO.host_id);
        assert_eq!(std::fs::read_link(to.path().join("shadow")).unwrap(), Path::new("/etc/shadow"));
        assert_eq!(
            std::fs::symlink_metadata(to.path().join("shadow")).unwrap().uid(),
            TO.host_id + 1000
        );
        assert_eq!(std::fs::read(to.path().join("n".repeat(150))).unwrap(), b"long");
        let fifo = std::fs::symlink_metadata(to.path().join("fifo")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
        assert_eq!((fifo.mode() & 0o777, fifo.uid()), (0o640, TO.host_id + 1000));
    }

    fn stream_of(entries: &[(Entry, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (entry, content) in entries {
            write_header(&mut out, entry).unwrap();
            out.extend_from_slice(content);
            out.extend_from_slice(&[0; BLOCK][..padding(content.len() as u64)]);
        }
        out.extend_from_slice(&[0; 2 * BLOCK]);
        out
    }

    fn entry(kind: Kind, path: &str, link: &str, size: u64) -> Entry {
        Entry {
            kind,
            path: path.into(),
            link: link.into(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            size,
            mtime: 0,
        }
    }

    #[test]
    fn what_would_leave_the_directory_is_refused() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root (chown)");
            return;
        }
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"host").unwrap();
        let secret = outside.path().join("secret").display().to_string();
        type Case<'a> = (Vec<(Entry, &'a [u8])>, &'a str);
        let cases: Vec<Case> = vec![
            (vec![(entry(Kind::File, "../escape", "", 1), b"x")], "not a path below"),
            (vec![(entry(Kind::File, "/etc/escape", "", 1), b"x")], "not a path below"),
            (vec![(entry(Kind::File, "a/./b", "", 1), b"x")], "not a path below"),
            (
                vec![
                    (entry(Kind::Symlink, "link", outside.path().to_str().unwrap(), 0), b""),
                    (entry(Kind::File, "link/planted", "", 1), b"x"),
                ],
                "not in a directory written before it",
            ),
            (vec![(entry(Kind::HardLink, "copy", &secret, 0), b"")], "not a path below"),
            (
                vec![
                    (entry(Kind::Symlink, "up", "..", 0), b""),
                    (entry(Kind::HardLink, "copy", "up/secret", 0), b""),
                ],
                "which is not there",
            ),
            (
                vec![
                    (entry(Kind::File, "twice", "", 0), b""),
                    (entry(Kind::File, "twice", "", 0), b""),
                ],
                "comes twice",
            ),
            (
                vec![(Entry { uid: 70000, ..entry(Kind::File, "mine", "", 0) }, b"")],
                "outside a container's",
            ),
        ];
        for (entries, message) in cases {
            let into = tempfile::tempdir().unwrap();
            let stream = stream_of(&entries);
            let err =
                format!("{:#}", extract_tree(&mut stream.as_slice(), into.path(), TO).unwrap_err());
            assert!(err.contains(message), "{message}: {err}");
        }
        assert_eq!(std::fs::read(outside.path().join("secret")).unwrap(), b"host");
        assert!(!outside.path().join("planted").exists());
        // A device node: its type alone is refused.
        let mut stream = stream_of(&[(entry(Kind::File, "sda", "", 0), b"")]);
        stream[156] = b'4';
        stream[148..156].fill(b' ');
        let sum: u32 = stream[..BLOCK].iter().map(|&b| u32::from(b)).sum();
        stream[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let into = tempfile::tempdir().unwrap();
        let err =
            format!("{:#}", extract_tree(&mut stream.as_slice(), into.path(), TO).unwrap_err());
        assert!(err.contains("device node"), "{err}");
        assert!(!into.path().join("sda").exists());
    }

    #[test]
    fn large_values_go_into_a_pax_header() {
        let mut out = Vec::new();
        let big =
            Entry { uid: 3_000_000, mtime: -5, ..entry(Kind::Directory, &"d".repeat(120), "", 0) };
        write_header(&mut out, &big).unwrap();
        let mut input = out.as_slice();
        let mut block = [0u8; BLOCK];
        input.read_exact(&mut block).unwrap();
        let (pax, flag) = parse_block(&block).unwrap();
        assert_eq!(flag, b'x');
        let mut records = vec![0; pax.size as usize];
        input.read_exact(&mut records).unwrap();
        let parsed = parse_pax(&records).unwrap();
        assert_eq!(parsed[0], ("path".to_string(), "d".repeat(120).into_bytes()));
        assert!(parsed.contains(&("uid".to_string(), b"3000000".to_vec())));
        assert!(parsed.contains(&("mtime".to_string(), b"-5".to_vec())));
    }
}
