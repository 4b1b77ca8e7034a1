//! Which files of its source a container's evaluation read, so that `sync`
//! evaluates again only the containers whose files changed: a flake's
//! source when a flake holding many of them changes (issue 13), and the
//! directory a container file is named in, which its evaluation may read
//! (nix.rs `evaluating`), when files there change (issue 22).
//!
//! Nix says nothing of what an evaluation read, so the kernel does: while a
//! Nix process of this helper evaluates a container, a fanotify watch on
//! the directories of its source sees every file opened there, and keeps
//! those that this helper's own processes opened. What they read, with the
//! shape of the whole source, makes the container's digest of its source
//! (`digest`): the next sync compares it with the source as it is then and
//! leaves the container alone where it is the same.
//!
//! A flake's source is a store path, which never changes; a container
//! file's directory may change while it is evaluated, so that what was
//! read is not what is there after: a source in which anything changed
//! since the evaluation started (`changed_since`) is not recorded, and the
//! container is evaluated again next time.
//!
//! What the watch cannot see makes the container depend on all of the
//! source, as before: a generation whose derivations name the source's
//! store path, or its hash, revision or modification time (`"${self}"`,
//! `self.rev`) (`names_whole_source`). Adding, removing, renaming or
//! relinking any file of the source changes the shape and so every digest:
//! what `builtins.pathExists` or `readDir` saw is covered that way.

use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};

use crate::system::process::Tool;

/// The environment variable through which `sync` asks the helper process it
/// starts for a container to record what that container's evaluations read:
/// `<source directory>=<file to append the paths to>` (a flake's source in
/// the store, or a container file's directory).
pub const RECORD_ENV: &str = "NIXCLOUD_CONTAINER_RECORD_READS";

/// Where reads are being recorded: RECORD_ENV, when this process has it.
pub struct Recording {
    pub source: PathBuf,
    pub file: PathBuf,
}

impl Recording {
    pub fn from_env() -> Option<Recording> {
        let value = std::env::var_os(RECORD_ENV)?;
        let (source, file) = value.to_str()?.split_once('=')?;
        Some(Recording { source: source.into(), file: file.into() })
    }

    pub fn env_value(source: &Path, file: &Path) -> String {
        format!("{}={}", source.display(), file.display())
    }

    /// Runs `evaluate` (which starts a Nix process of this helper) while
    /// watching, and adds the source's files it read to the record. A
    /// watch that fails marks the record as such (a line starting with
    /// `!`): sync then depends on the whole source.
    pub fn around<T>(&self, evaluate: impl FnOnce() -> Result<T>) -> Result<T> {
        let watch = Watch::start(&self.source);
        let result = evaluate();
        let read = watch.and_then(Watch::finish);
        let lines = match read {
            Ok(files) => files.into_iter().map(|file| file + "\n").collect::<String>(),
            Err(err) => format!("!{}\n", crate::error::one_line(&err)),
        };
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
            .and_then(|mut record| record.write_all(lines.as_bytes()))
            .with_context(|| format!("cannot record reads in {}", self.file.display()))?;
        result
    }

    /// The files recorded, relative to the source; None when a watch
    /// failed or none was recorded (the container then depends on the
    /// whole source). Every evaluation opens its `first` file (a flake's
    /// flake.nix, the container file): a record without it watched another
    /// source than the one evaluated.
    pub fn read_record(file: &Path, first: &str) -> Option<BTreeSet<String>> {
        let text = std::fs::read_to_string(file).ok()?;
        let files: BTreeSet<String> = text.lines().map(str::to_string).collect();
        (files.contains(first) && !files.iter().any(|line| line.starts_with('!'))).then_some(files)
    }
}

/// A fanotify watch of the files opened below one directory of the store:
/// each directory of it is marked, so that only opens of its files make
/// events (marks on inodes hold in every mount namespace: Nix runs in one
/// of its own, nix/mod.rs).
struct Watch {
    /// A pipe's write end, closed when the Nix process has ended: the
    /// reader then empties the queue and stops.
    stop: OwnedFd,
    reader: JoinHandle<Result<BTreeSet<String>>>,
}

impl Watch {
    fn start(source: &Path) -> Result<Watch> {
        // Unlimited: a lost event would be a file missing from the record.
        let flags = libc::FAN_CLASS_NOTIF
            | libc::FAN_CLOEXEC
            | libc::FAN_UNLIMITED_QUEUE
            | libc::FAN_UNLIMITED_MARKS;
        let event_flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_LARGEFILE) as u32;
        // SAFETY: plain system calls; the descriptor is owned from here on.
        let raw = unsafe { libc::fanotify_init(flags, event_flags) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error()).context("fanotify_init");
        }
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        for dir in directories(source)? {
            let path = CString::new(dir.as_os_str().as_bytes())?;
            // SAFETY: fd is a fanotify descriptor, path a C string.
            let marked = unsafe {
                libc::fanotify_mark(
                    fd.as_raw_fd(),
                    libc::FAN_MARK_ADD | libc::FAN_MARK_DONT_FOLLOW,
                    libc::FAN_OPEN | libc::FAN_EVENT_ON_CHILD,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                )
            };
            if marked < 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("fanotify_mark on {}", dir.display()));
            }
        }
        let mut pipe = [0; 2];
        // SAFETY: two descriptors written into `pipe`, owned from here on.
        if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error()).context("pipe2");
        }
        let (stopped, stop) =
            unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
        let source = source.to_path_buf();
        let reader = std::thread::spawn(move || read_events(&fd, &source, &stopped));
        Ok(Watch { stop, reader })
    }

    /// The files read below the source, relative to it. Events are queued
    /// when a file is opened, so once the Nix process has ended, what is
    /// left in the queue is all there is.
    fn finish(self) -> Result<BTreeSet<String>> {
        drop(self.stop);
        self.reader.join().map_err(|_| anyhow::anyhow!("the fanotify reader panicked"))?
    }
}

/// The most directories a watch marks: a container file named in a
/// directory with more below it (a home directory) is evaluated every time.
const MOST_DIRECTORIES: usize = 10_000;

/// `root` and every directory below it (symlinks not followed).
fn directories(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = vec![root.to_path_buf()];
    let mut at = 0;
    while at < found.len() {
        if found.len() > MOST_DIRECTORIES {
            bail!("{} holds more than {MOST_DIRECTORIES} directories", root.display());
        }
        let dir = found[at].clone();
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
            if entry.file_type()?.is_dir() {
                found.push(entry.path());
            }
        }
        at += 1;
    }
    Ok(found)
}

/// Reads the watch's events until `stopped` (the pipe's read end) reports
/// its write end closed and the queue is empty.
fn read_events(fd: &OwnedFd, source: &Path, stopped: &OwnedFd) -> Result<BTreeSet<String>> {
    let mut files = BTreeSet::new();
    let mut ours = Ancestry::default();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut stopping = false;
    loop {
        let mut polled = [
            libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: stopped.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        let watched = if stopping { 1 } else { 2 };
        // SAFETY: `watched` valid pollfds.
        let ready =
            unsafe { libc::poll(polled.as_mut_ptr(), watched, if stopping { 0 } else { -1 }) };
        if ready < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err).context("poll on fanotify");
        }
        if polled[1].revents != 0 {
            stopping = true;
        }
        if polled[0].revents & libc::POLLIN == 0 {
            if stopping && ready == 0 {
                return Ok(files);
            }
            continue;
        }
        // SAFETY: the buffer is ours and as long as said.
        let len = unsafe { libc::read(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
        if len < 0 {
            return Err(std::io::Error::last_os_error()).context("read from fanotify");
        }
        let mut at = 0;
        let header = std::mem::size_of::<libc::fanotify_event_metadata>();
        while at + header <= len as usize {
            // SAFETY: the kernel wrote whole events; read_unaligned copes with the offset.
            let event: libc::fanotify_event_metadata =
                unsafe { std::ptr::read_unaligned(buffer[at..].as_ptr().cast()) };
            at += event.event_len as usize;
            if event.mask & libc::FAN_Q_OVERFLOW != 0 {
                bail!("fanotify lost events");
            }
            if event.fd < 0 {
                continue;
            }
            // SAFETY: the event's descriptor is ours to close.
            let opened = unsafe { OwnedFd::from_raw_fd(event.fd) };
            let Ok(path) = std::fs::read_link(format!("/proc/self/fd/{}", opened.as_raw_fd()))
            else {
                continue;
            };
            if let Ok(relative) = path.strip_prefix(source) {
                if ours.descends(event.pid as u32) {
                    files.insert(relative.to_string_lossy().into_owned());
                }
            }
        }
    }
}

/// Whether a process is this helper or one it started (its Nix processes
/// and theirs), remembered per PID.
#[derive(Default)]
struct Ancestry {
    known: HashMap<u32, bool>,
}

impl Ancestry {
    /// A process already gone when its event is read counts as ours: the
    /// record may then hold more than the container read, never less.
    fn descends(&mut self, pid: u32) -> bool {
        let me = std::process::id();
        let mut chain = Vec::new();
        let mut at = pid;
        let found = loop {
            if at == me {
                break true;
            }
            if let Some(&known) = self.known.get(&at) {
                break known;
            }
            chain.push(at);
            match parent_of(at) {
                Some(0 | 1) => break false,
                Some(parent) => at = parent,
                None => break true,
            }
        };
        for pid in chain {
            self.known.insert(pid, found);
        }
        found
    }
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold anything but its last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// The time as the kernel stamps files' changes (their ctime): the coarse
/// clock, which lags the precise one by up to a tick, so that a file
/// changed after this was taken has a ctime not before it.
pub fn coarse_now() -> libc::timespec {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) };
    now
}

/// Whether anything in `source` (a file's content, or what a directory
/// holds) changed at or after `since` (`coarse_now`): its ctime says so.
/// One that cannot be looked at counts as changed.
pub fn changed_since(source: &Path, since: libc::timespec) -> bool {
    use std::os::unix::fs::MetadataExt;
    let changed = |path: &Path| match std::fs::symlink_metadata(path) {
        Ok(meta) => (meta.ctime(), meta.ctime_nsec()) >= (since.tv_sec, since.tv_nsec),
        Err(_) => true,
    };
    let mut pending = vec![source.to_path_buf()];
    while let Some(dir) = pending.pop() {
        if changed(&dir) {
            return true;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { return true };
        for entry in entries {
            let Ok(entry) = entry else { return true };
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(path),
                Ok(_) if !changed(&path) => {}
                _ => return true,
            }
        }
    }
    false
}

/// The shape of a source: every path in it, its type, and where symlinks
/// point. What `builtins.pathExists` or `readDir` sees is in it.
pub fn shape(source: &Path) -> Result<String> {
    use sha1::Digest;
    let mut hasher = sha1::Sha1::new();
    hash_shape(source, Path::new(""), &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

/// The digest of what a container's evaluation read of `source`: its shape
/// (`shape`) and the content of each file in `files`.
pub fn digest(shape: &str, source: &Path, files: &BTreeSet<String>) -> String {
    use sha1::{Digest, Sha1};
    let mut hasher = Sha1::new();
    hasher.update(shape.as_bytes());
    for file in files {
        hasher.update(file.as_bytes());
        match read_regular(&source.join(file)) {
            Some(content) => hasher.update(Sha1::digest(&content)),
            // Gone, or not a file now: the shape differs anyway.
            None => hasher.update(b"\0missing"),
        }
    }
    hex(&hasher.finalize())
}

/// The content of `path` if it is a regular file. Opened without blocking
/// and looked at before it is read: a named pipe or a device that a
/// container file's directory holds (and its evaluation opened) would
/// otherwise hold sync up.
fn read_regular(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut content = Vec::new();
    file.read_to_end(&mut content).ok()?;
    Some(content)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn hash_shape(root: &Path, relative: &Path, hasher: &mut sha1::Sha1) -> Result<()> {
    use sha1::Digest;
    let dir = root.join(relative);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = relative.join(entry.file_name());
        let kind = entry.file_type()?;
        hasher.update(path.as_os_str().as_bytes());
        if kind.is_symlink() {
            hasher.update(b"\0l\0");
            hasher.update(std::fs::read_link(root.join(&path))?.as_os_str().as_bytes());
        } else if kind.is_dir() {
            hasher.update(b"\0d");
            hash_shape(root, &path, hasher)?;
        } else {
            hasher.update(b"\0f");
        }
        hasher.update(b"\n");
    }
    Ok(())
}

/// Whether the generation `generation` depends on all of the flake's
/// `source` rather than on the files its evaluation read: one of its
/// derivations, or a file they take from the store, holds the hash part of
/// the source's store path or one of `identifiers` (its hash, revision,
/// time).
pub fn names_whole_source(
    generation: &Path,
    source: &Path,
    identifiers: &[String],
) -> Result<bool> {
    let finished =
        Tool::new("nix-store").args(["--query", "--deriver"]).arg(generation).output(false)?;
    let deriver = finished.stdout.trim();
    if !finished.status.success() || !deriver.ends_with(".drv") {
        return Ok(true); // not known: assume the worst
    }
    let store_hash = source.file_name().map(|name| name.to_string_lossy()).unwrap_or_default();
    let store_hash = store_hash.split('-').next().unwrap_or_default().to_string();
    let alternatives: Vec<String> = std::iter::once(&store_hash)
        .chain(identifiers)
        .filter(|id| !id.is_empty())
        .map(|id| regex::escape(id))
        .collect();
    let any = regex::bytes::Regex::new(&alternatives.join("|"))?;
    for path in crate::nix::requisites(Path::new(deriver))?.lines() {
        let path = Path::new(path);
        if path.is_file()
            && any.is_match(
                &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            )
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn a_digest_changes_with_what_was_read_and_with_the_shape_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("flake.nix"), "a").unwrap();
        std::fs::write(root.join("sub/read.nix"), "b").unwrap();
        std::fs::write(root.join("sub/other.nix"), "c").unwrap();
        std::os::unix::fs::symlink("read.nix", root.join("sub/link.nix")).unwrap();
        let read = files(&["flake.nix", "sub/read.nix"]);
        let now = || digest(&shape(root).unwrap(), root, &read);
        let first = now();

        std::fs::write(root.join("sub/other.nix"), "changed").unwrap();
        assert_eq!(now(), first, "a file it did not read");
        std::fs::write(root.join("sub/read.nix"), "changed").unwrap();
        let second = now();
        assert_ne!(second, first, "a file it read");
        std::fs::remove_file(root.join("sub/link.nix")).unwrap();
        std::os::unix::fs::symlink("other.nix", root.join("sub/link.nix")).unwrap();
        let third = now();
        assert_ne!(third, second, "a symlink pointed elsewhere");
        std::fs::write(root.join("sub/new.nix"), "").unwrap();
        assert_ne!(now(), third, "a file added");
        // A named pipe that was read is not read again (it would block).
        let fifo = root.join("sub/pipe");
        let made = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(made.as_ptr(), 0o600) }, 0);
        let with_pipe = files(&["flake.nix", "sub/pipe"]);
        digest(&shape(root).unwrap(), root, &with_pipe);
    }

    #[test]
    fn a_record_without_flake_nix_or_with_a_failed_watch_counts_for_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("reads");
        std::fs::write(&record, "flake.nix\nweb.nix\n").unwrap();
        let read = |first| Recording::read_record(&record, first);
        assert_eq!(read("flake.nix"), Some(files(&["flake.nix", "web.nix"])));
        assert_eq!(read("web.nix"), Some(files(&["flake.nix", "web.nix"])));
        std::fs::write(&record, "web.nix\n").unwrap();
        assert_eq!(read("flake.nix"), None);
        std::fs::write(&record, "flake.nix\n!fanotify_init: Operation not permitted\n").unwrap();
        assert_eq!(read("flake.nix"), None);
    }

    /// The coarse clock's next tick: a time after every change made before.
    fn next_tick() -> libc::timespec {
        let before = coarse_now();
        loop {
            let now = coarse_now();
            if (now.tv_sec, now.tv_nsec) > (before.tv_sec, before.tv_nsec) {
                return now;
            }
            std::hint::spin_loop();
        }
    }

    #[test]
    fn a_change_at_or_after_a_time_is_seen_in_any_file_or_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.nix"), "a").unwrap();
        // A tree that is whole reads as unchanged since a time after its
        // changes (an hour on: filesystems whose clocks are not this
        // kernel's, as a build sandbox's may be, stamp a little ahead).
        let mut later = coarse_now();
        later.tv_sec += 3600;
        assert!(!changed_since(root, later), "nothing changed since");
        // What changes once a time is taken is seen, in a file or a directory.
        let since = next_tick();
        std::fs::write(root.join("sub/a.nix"), "b").unwrap();
        assert!(changed_since(root, since), "a file's content");
        let since = next_tick();
        std::fs::write(root.join("sub/new.nix"), "").unwrap();
        assert!(changed_since(root, since), "a file added");
        assert!(changed_since(&root.join("gone"), since), "what cannot be looked at");
    }

    #[test]
    fn this_process_descends_from_itself_and_init_from_nobody() {
        let mut ancestry = Ancestry::default();
        assert!(ancestry.descends(std::process::id()));
        assert!(!ancestry.descends(1));
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        assert!(ancestry.descends(child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
