//! Scratch space of one helper process, under `<state dir>/tmp`: the TMPDIR
//! of the Nix commands it runs, removed when the command ends, or by the
//! next command when this one was killed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rustix::fs::{flock, FlockOperation};

/// A directory of this helper's process under `<state dir>/tmp`, so that
/// what a killed command leaves (nix-build-* directories) is found and
/// removed: by this value when it is dropped, or by a later command when the
/// process died first. The process holds a lock on the directory for its
/// life, which tells the two apart.
pub struct Scratch {
    dir: PathBuf,
    _lock: File,
}

/// How old an unlocked scratch directory must be before it counts as
/// abandoned: its process locks it right after making it.
const ABANDONED_AFTER: Duration = Duration::from_secs(5);

impl Scratch {
    pub fn new(state_dir: &Path) -> Result<Scratch> {
        let root = state_dir.join(crate::layout::SCRATCH);
        crate::system::host_dirs::root_dir(&root)?;
        remove_abandoned(&root);
        let dir = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&root)
            .with_context(|| format!("cannot create a directory in {}", root.display()))?
            .keep();
        let lock = File::open(&dir).with_context(|| format!("cannot open {}", dir.display()))?;
        flock(&lock, FlockOperation::LockExclusive).context("cannot lock a scratch directory")?;
        Ok(Scratch { dir, _lock: lock })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the scratch directories under `root` whose process is gone.
fn remove_abandoned(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let old = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age > ABANDONED_AFTER));
        if !old {
            continue;
        }
        let Ok(lock) = File::open(&dir) else {
            continue;
        };
        if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_ok() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
