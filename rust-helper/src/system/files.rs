//! Files replaced whole.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Replaces `file` with `text` so that a reader or a crash sees the old or
/// the new file, never a mix: write beside it, sync, rename.
pub fn write_atomically(file: &Path, text: &str) -> Result<()> {
    write_atomically_with_mode(file, text, 0o600)
}

/// Replaces `file` with `text` (mode 0600) so that a reader sees the old or
/// the new file, never a mix, without waiting for the disk: for records
/// that mean nothing after the host went down (write beside it, rename).
pub fn replace_unsynced(file: &Path, text: &str) -> Result<()> {
    write_beside(file, text, 0o600, false)
}

/// `write_atomically`, the new file having permissions `mode` from the start.
pub fn write_atomically_with_mode(file: &Path, text: &str, mode: u32) -> Result<()> {
    write_beside(file, text, mode, true)
}

/// Writes `text` into a new file beside `file` with permissions `mode`,
/// synced to disk with its directory if `sync`, and renames it to `file`.
fn write_beside(file: &Path, text: &str, mode: u32, sync: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = file.parent().expect("the file is in a directory");
    let mut temp = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    temp.write_all(text.as_bytes())
        .and_then(|()| if sync { temp.as_file().sync_all() } else { Ok(()) })
        .with_context(|| format!("cannot write {}", file.display()))?;
    temp.persist(file).with_context(|| format!("cannot replace {}", file.display()))?;
    if sync {
        File::open(dir).and_then(|d| d.sync_all()).ok();
    }
    Ok(())
}
