//! A lock file inside a running container, waited for from the host.
//!
//! flock(2) locks belong to the open file, whoever opened it: the host
//! opening a guest's lock file and taking the lock conflicts with a process
//! inside that holds it, as another process inside would. The file is
//! reached through the root of the container's init (`/proc/<pid>/root`,
//! the guest's own mount tree) without following any symbolic link and
//! without leaving that root (openat2 with RESOLVE_IN_ROOT and
//! RESOLVE_NO_SYMLINKS), and only a regular file is opened for reading: the
//! container may have put a link, a fifo or a device there.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::fs::{FlockOperation, Mode, OFlags, ResolveFlags};

/// How often a held lock is tried again.
const RETRY: Duration = Duration::from_millis(50);

/// What a wait for a lock found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lock {
    /// Nobody holds it (any more), or there is no such regular file.
    Free,
    /// It was still held after the time allowed.
    Held,
}

/// Waits, for at most `limit`, until nobody inside the container whose
/// init is host process `init_pid` holds the lock file at `path` (an
/// absolute path inside it).
pub fn wait_until_free(init_pid: u32, path: &Path, limit: Duration) -> Result<Lock> {
    let root = format!("/proc/{init_pid}/root");
    let root = rustix::fs::open(
        root.as_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open {root}"))?;
    let Some(file) = open_regular_file(&root, path)
        .with_context(|| format!("cannot open {} in the container", path.display()))?
    else {
        return Ok(Lock::Free);
    };
    let deadline = Instant::now() + limit;
    loop {
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared) {
            // Ours goes with the descriptor, at once.
            Ok(()) => return Ok(Lock::Free),
            Err(rustix::io::Errno::WOULDBLOCK) if Instant::now() < deadline => {
                std::thread::sleep(RETRY.min(deadline.saturating_duration_since(Instant::now())));
            }
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(Lock::Held),
            Err(err) => {
                return Err(err).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
    }
}

/// `path` below `root` opened for reading when it is a regular file; None
/// when there is none (or something else is there).
fn open_regular_file(root: &OwnedFd, path: &Path) -> Result<Option<OwnedFd>> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let found = match rustix::fs::openat2(
        root,
        relative,
        OFlags::PATH | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        resolve,
    ) {
        Ok(found) => found,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
            return Ok(None)
        }
        Err(err) => return Err(err.into()),
    };
    if rustix::fs::fstat(&found)?.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(None);
    }
    // A path descriptor takes no lock: the same file, opened for reading
    // through it (not through its name again).
    let reopened = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&found.as_fd()));
    Ok(Some(rustix::fs::open(
        reopened.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
    )?))
}

#[cfg(test)]
mod tests {
    use super::{wait_until_free, Lock};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// The "container" of these tests is this process: its root is the
    /// root the paths are looked up in.
    fn own_pid() -> u32 {
        std::process::id()
    }

    /// A directory for lock files, by a path without links (links are
    /// refused on the way).
    fn lock_dir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().canonicalize().unwrap();
        (dir, path)
    }

    /// Another process that holds `file` locked (util-linux flock, as a
    /// switch inside would hold its lock) until its stdin closes.
    fn hold(file: &Path) -> Child {
        let holder = Command::new("flock")
            .arg(file)
            .args(["head", "-c", "1"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while Command::new("flock").arg("-n").arg(file).arg("true").status().unwrap().success() {
            assert!(started.elapsed() < Duration::from_secs(20), "flock never took {file:?}");
            std::thread::yield_now();
        }
        holder
    }

    fn release(mut holder: Child) {
        drop(holder.stdin.take());
        assert!(holder.wait().unwrap().success());
    }

    #[test]
    fn a_held_lock_is_waited_for_until_it_is_free() {
        let (_dir, dir) = lock_dir();
        let lock = dir.join("switch.lock");
        std::fs::write(&lock, "").unwrap();
        let holder = hold(&lock);
        let short = Duration::from_millis(200);
        assert_eq!(wait_until_free(own_pid(), &lock, short).unwrap(), Lock::Held);
        let waiter = std::thread::spawn({
            let lock = lock.clone();
            move || wait_until_free(own_pid(), &lock, Duration::from_secs(60)).unwrap()
        });
        release(holder);
        assert_eq!(waiter.join().unwrap(), Lock::Free);
    }

    #[test]
    fn links_and_what_is_not_a_file_are_neither_followed_nor_opened() {
        let (_dir, dir) = lock_dir();
        let target = dir.join("held");
        std::fs::write(&target, "").unwrap();
        let link = dir.join("link.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let fifo = dir.join("fifo.lock");
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let holder = hold(&target);
        let short = Duration::from_millis(100);
        assert_eq!(wait_until_free(own_pid(), &target, short).unwrap(), Lock::Held);
        // The link leads to the held file, but is not followed; a fifo
        // would block an open for reading, and is not opened.
        for path in [&link, &fifo, &dir.join("missing")] {
            assert_eq!(wait_until_free(own_pid(), path, short).unwrap(), Lock::Free, "{path:?}");
        }
        release(holder);
    }
}
