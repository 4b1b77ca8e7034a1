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

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use rustix::fs::{Mode, OFlags};

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
