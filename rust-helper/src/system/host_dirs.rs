//! The directories root keeps on the host for containers, and the gates in
//! front of what is theirs.
//!
//! Root writes a container's LXC config, its own LXC settings for it, LXC's
//! pidfile, the state, the locks and the build links, and Nix builds in the
//! helper's scratch space: always in directories that only root can write
//! (`root_dir`), so that neither a container's host uid nor another host
//! user can put, replace or link a file there for root to follow.
//!
//! What belongs to a container (its rootfs, its data) lies behind a gate
//! (`gate`): a directory of root's that no other host user may enter, so
//! that nothing the container leaves there (a setuid program, a directory
//! open to all) is reachable through the host's filesystem, and that the
//! container, not being its owner, cannot open it up. LXD keeps its
//! containers the same way (their directories are root's, 0100 or 0700).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags};
use rustix::io::Errno;

/// Makes `dir` and its parents where they are missing (0755, root's), and
/// fails unless only root can change what is in it or in any directory
/// above it: each is root's and writable by its group or others only where
/// that group is root's or the sticky bit keeps others from replacing
/// root's entries (/tmp). The helper runs as root; its unit tests also run
/// as Nix's build user (the package's check phase), whose own directories
/// are as safe for it as root's are for root.
pub fn root_dir(dir: &Path) -> Result<()> {
    let us = rustix::process::geteuid().as_raw();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    for each in dir.ancestors() {
        let meta = std::fs::metadata(each)
            .with_context(|| format!("cannot look at {}", each.display()))?;
        let sticky = meta.mode() & 0o1000 != 0;
        let group_writes = meta.mode() & 0o020 != 0 && meta.gid() != 0;
        let others_write = meta.mode() & 0o002 != 0;
        if (meta.uid() != 0 && meta.uid() != us) || (!sticky && (group_writes || others_write)) {
            bail!(
                "{} (owner uid {}, group {}, mode {:o}) can be changed by others than root, and \
                 root keeps what it writes for containers in {}: make it root's and writable by \
                 root only",
                each.display(),
                meta.uid(),
                meta.gid(),
                meta.mode() & 0o7777,
                dir.display()
            );
        }
    }
    Ok(())
}

/// Makes the existing directory `dir` a gate: root's, of group `group`,
/// with `mode` (nothing for others), whoever had it before (LXC hands a new
/// container's directory to its root; so did versions of this helper
/// before the gates). The directory is opened without following a link,
/// and changed through that descriptor.
pub fn gate(dir: &Path, group: u32, mode: u32) -> Result<()> {
    assert_eq!(mode & 0o007, 0, "a gate lets no other host user in");
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", dir.display()))?;
    let stat =
        rustix::fs::fstat(&fd).with_context(|| format!("cannot look at {}", dir.display()))?;
    if stat.st_uid != 0 || stat.st_gid != group {
        // The former owner can change nothing in it from here on.
        rustix::fs::fchown(
            &fd,
            Some(rustix::fs::Uid::ROOT),
            Some(rustix::fs::Gid::from_raw(group)),
        )
        .with_context(|| format!("cannot give {} to root", dir.display()))?;
    }
    if stat.st_mode & 0o7777 != mode {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
            .with_context(|| format!("cannot close {} to other users", dir.display()))?;
    }
    Ok(())
}

/// Removes `file` (in a directory only root can change) unless it is a
/// plain file of root's with no other name: one that another user made
/// there, or turned into a link to a file of its own or of root's, while
/// the directory was theirs. Returns whether it removed something.
pub fn keep_only_roots(file: &Path) -> Result<bool> {
    let meta = match std::fs::symlink_metadata(file) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err).with_context(|| format!("cannot look at {}", file.display())),
    };
    if meta.file_type().is_file() && meta.uid() == 0 && meta.nlink() == 1 {
        return Ok(false);
    }
    // Neither removal follows a link.
    let removed =
        if meta.is_dir() { std::fs::remove_dir_all(file) } else { std::fs::remove_file(file) };
    removed.with_context(|| format!("cannot remove {}", file.display()))?;
    Ok(true)
}

/// How many directories deep `empty` goes below the directory it empties
/// before it lifts what is deeper up to that directory: each level holds a
/// descriptor open, and the helper has 1024 (the usual soft limit) in all.
const EMPTY_DEPTH: usize = 128;

/// Removes everything in the directory `dir`, which stays: without
/// following a link (a link is removed, never what it names) and without
/// entering a filesystem mounted below it (an error, which leaves that
/// filesystem as it is). What it holds was made by someone else (a
/// container's root, who may have planted links to host paths in it);
/// nothing may change it meanwhile (its container is stopped, and it lies
/// behind a gate). A directory nested deeper than `EMPTY_DEPTH` is moved
/// up into `dir` and removed from there, however deep the tree. An error
/// leaves it part emptied; emptying it again goes on from there.
pub fn empty(dir: &Path) -> Result<()> {
    let top = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", dir.display()))?;
    let tree = Tree { top: &top, shown: dir };
    // Each round removes what is not too deep, and lifts the rest up.
    loop {
        let names = entries(&top, dir)?;
        if names.is_empty() {
            return Ok(());
        }
        for name in names {
            tree.remove(top.as_fd(), &name, &dir.join(&name), 0)?;
        }
    }
}

/// The directory `empty` empties: open at `top`, `shown` in errors.
struct Tree<'a> {
    top: &'a OwnedFd,
    shown: &'a Path,
}

impl Tree<'_> {
    /// Removes `name` in the directory `parent`, `depth` levels below the
    /// top: a directory with all it holds, or lifted to the top where it
    /// lies too deep.
    fn remove(&self, parent: BorrowedFd, name: &OsStr, shown: &Path, depth: usize) -> Result<()> {
        let cannot_remove = || format!("cannot remove {}", shown.display());
        let stat = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(()),
            Err(err) => return Err(err).with_context(cannot_remove),
        };
        if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
            // A link too: unlinkat never follows one.
            return rustix::fs::unlinkat(parent, name, AtFlags::empty())
                .with_context(cannot_remove);
        }
        if depth == EMPTY_DEPTH {
            return self.lift(parent, name).with_context(cannot_remove);
        }
        // Entered only where it is a directory of the same mount: no link on
        // the way (it was one, or became one), no mount point.
        let resolve = ResolveFlags::BENEATH
            | ResolveFlags::NO_SYMLINKS
            | ResolveFlags::NO_MAGICLINKS
            | ResolveFlags::NO_XDEV;
        let dir = rustix::fs::openat2(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        )
        .map_err(|err| match err {
            Errno::XDEV => anyhow!(
                "{} is a mount point: refusing to remove what is mounted there",
                shown.display()
            ),
            err => anyhow::Error::from(err).context(cannot_remove()),
        })?;
        for child in entries(&dir, shown)? {
            self.remove(dir.as_fd(), &child, &shown.join(&child), depth + 1)?;
        }
        drop(dir);
        rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR).with_context(cannot_remove)
    }

    /// Moves directory `name` in `parent` to the top, under a name that no
    /// entry there has, for the next round of `empty`.
    fn lift(&self, parent: BorrowedFd, name: &OsStr) -> Result<()> {
        for number in 0.. {
            let lifted = format!(".lifted-{number}");
            match rustix::fs::renameat_with(parent, name, self.top, &lifted, RenameFlags::NOREPLACE)
            {
                Err(Errno::EXIST) => continue,
                done => {
                    return done.with_context(|| {
                        format!("cannot move it to {}", self.shown.join(&lifted).display())
                    })
                }
            }
        }
        unreachable!("some name is free")
    }
}

/// The names in the directory open at `dir`, without `.` and `..`: read
/// whole before any is removed.
fn entries(dir: &OwnedFd, shown: &Path) -> Result<Vec<OsString>> {
    let unreadable = || format!("cannot read {}", shown.display());
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir).with_context(unreadable)? {
        let name = entry.with_context(unreadable)?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsString::from(OsStr::from_bytes(&name)));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emptying_removes_links_never_what_they_name() {
        let root = tempfile::tempdir().unwrap();
        let (dir, outside) = (root.path().join("rootfs"), root.path().join("host"));
        std::fs::create_dir_all(dir.join("var/lib/deep/er")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("precious"), "kept\n").unwrap();
        std::fs::write(dir.join("var/lib/deep/er/file"), "gone\n").unwrap();
        // Links to the outside directory and file, at the top and below.
        std::os::unix::fs::symlink(&outside, dir.join("escape")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("var/lib/escape")).unwrap();
        std::os::unix::fs::symlink(outside.join("precious"), dir.join("var/file-link")).unwrap();
        // A hard link is a name of its own: the file keeps its other one.
        std::fs::hard_link(outside.join("precious"), dir.join("hard")).unwrap();

        empty(&dir).unwrap();

        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "it is empty");
        assert_eq!(std::fs::read_to_string(outside.join("precious")).unwrap(), "kept\n");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1, "the outside is as it was");
    }

    #[test]
    fn a_link_is_not_emptied_and_a_deep_tree_is() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("file"), "").unwrap();
        std::os::unix::fs::symlink(&target, root.path().join("link")).unwrap();
        assert!(empty(&root.path().join("link")).is_err());
        assert!(target.join("file").exists());

        // Deeper than the descriptors it may hold: lifted up, and removed.
        let deep = root.path().join("deep");
        let mut bottom = deep.join("d");
        for _ in 0..EMPTY_DEPTH * 3 + 5 {
            bottom.push("d");
        }
        std::fs::create_dir_all(&bottom).unwrap();
        std::fs::write(bottom.join("file"), "").unwrap();
        std::fs::create_dir(deep.join(".lifted-0")).unwrap();
        empty(&deep).unwrap();
        assert_eq!(std::fs::read_dir(&deep).unwrap().count(), 0, "it is empty");
    }
}
