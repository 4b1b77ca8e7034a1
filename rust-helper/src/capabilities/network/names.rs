//! The host's names for its containers: `<name>.<suffix>` (host file
//! `names.suffix`, "containers" by default) is the hostonly address of the
//! container's current generation, kept in step as containers are made,
//! change address and go.
//!
//! Two places say it, both written from here alone:
//! - `<state dir>/hosts/<name>`, a hosts(5) line per container, which
//!   dnsmasq reads as its `hostsdir` where the NixOS module runs it (it
//!   follows new, changed and removed files by itself): containers that use
//!   it as their DNS server reach their peers by name;
//! - where the host file names one (`names.hostsFile`, e.g. /etc/hosts), a
//!   block of that file between two marker lines, which the host's own
//!   resolver reads: replaced whole (written beside it and renamed), the
//!   rest of the file kept as it is.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::context::Context;
use crate::system::nft::NetworkLock;

/// The first and last lines of the block of the hosts file the helper keeps.
const BEGIN: &str = "# nixcloud-container: begin (written by nixcloud-container, edits are lost)";
const END: &str = "# nixcloud-container: end";

/// The directory of a hosts line per container.
pub fn hosts_dir(ctx: &Context) -> PathBuf {
    ctx.settings.state_dir.join(crate::layout::HOSTS_DIR)
}

/// Container `name`'s line: its address and its name under the host's suffix.
fn line(ctx: &Context, name: &str, address: Ipv4Addr) -> String {
    let suffix = &ctx.settings.host.names.suffix;
    format!("{address} {}.{suffix}\n", name.to_ascii_lowercase())
}

/// Container `name` has `address` now (None: it is gone): its name follows.
pub fn follow(ctx: &Context, name: &str, address: Option<Ipv4Addr>) -> Result<()> {
    let _lock = NetworkLock::take(&ctx.settings.state_dir)?;
    let line = address.map(|address| line(ctx, name, address));
    super::port_guard::pin(&hosts_dir(ctx), name, line.as_deref())?;
    publish(ctx)
}

/// Every container's name from the state and its current generation, and
/// none of a container that is gone (`repair-names`, `repair-network`).
pub fn write_all(ctx: &Context) -> Result<()> {
    let _lock = NetworkLock::take(&ctx.settings.state_dir)?;
    let state = ctx.store.read()?;
    let dir = hosts_dir(ctx);
    for name in state.containers.keys() {
        let current = ctx.profile(name).current().ok().flatten();
        let address = current.and_then(|g| g.meta().ok()).map(|m| m.params.hostonly.address);
        super::port_guard::pin(&dir, name, address.map(|a| line(ctx, name, a)).as_deref())?;
    }
    if let Ok(files) = std::fs::read_dir(&dir) {
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if !state.containers.contains_key(&name) && !name.starts_with('.') {
                super::port_guard::pin(&dir, &name, None)?;
            }
        }
    }
    publish(ctx)
}

/// The lines of the hosts directory, sorted, as the block of the host's
/// hosts file (where the host file names one).
fn publish(ctx: &Context) -> Result<()> {
    let Some(file) = &ctx.settings.host.names.hosts_file else {
        return Ok(());
    };
    let mut lines: Vec<String> = std::fs::read_dir(hosts_dir(ctx))
        .map(|files| {
            files
                .flatten()
                .filter(|file| !file.file_name().to_string_lossy().starts_with('.'))
                .filter_map(|file| std::fs::read_to_string(file.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    lines.sort();
    replace_block(Path::new(file.as_str()), &lines.concat())
}

/// Replaces the helper's block of hosts file `file` with `block` (none where
/// it is empty), keeping every other line. Only a regular file is written:
/// a link could lead the write anywhere, and on a host where something else
/// owns the file (NixOS links /etc/hosts into the store unless the host
/// module makes it a file) the block would not last.
fn replace_block(file: &Path, block: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let metadata = std::fs::symlink_metadata(file)
        .with_context(|| format!("cannot read the hosts file {}", file.display()))?;
    if !metadata.file_type().is_file() {
        bail!(
            "the hosts file {} (host file names.hostsFile) is not a regular file: the helper \
             writes its containers' names only into one",
            file.display()
        );
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the hosts file {}", file.display()))?;
    let new = with_block(&text, block);
    if new == text {
        return Ok(());
    }
    // With the mode it had: a hosts file is world-readable.
    let mode = metadata.permissions().mode() & 0o7777;
    crate::system::files::write_atomically_with_mode(file, &new, mode)
}

/// `text` without the helper's block, with `block` as its block at its end.
fn with_block(text: &str, block: &str) -> String {
    let mut kept = String::new();
    let mut inside = false;
    for line in text.lines() {
        match line {
            BEGIN => inside = true,
            END if inside => inside = false,
            _ if !inside => {
                kept.push_str(line);
                kept.push('\n');
            }
            _ => {}
        }
    }
    if !block.is_empty() {
        kept.push_str(&format!("{BEGIN}\n{block}{END}\n"));
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_is_replaced_and_the_rest_kept() {
        let theirs = "127.0.0.1 localhost\n10.9.9.9 keep.example\n";
        let first = with_block(theirs, "10.101.0.2 web.containers\n");
        assert_eq!(first, format!("{theirs}{BEGIN}\n10.101.0.2 web.containers\n{END}\n"));
        let edited = format!("{first}192.168.1.5 printer\n");
        let second = with_block(&edited, "10.101.0.3 db.containers\n");
        assert_eq!(
            second,
            format!("{theirs}192.168.1.5 printer\n{BEGIN}\n10.101.0.3 db.containers\n{END}\n")
        );
        assert_eq!(with_block(&second, ""), format!("{theirs}192.168.1.5 printer\n"));
        // A file without a final newline keeps its last line whole.
        assert_eq!(with_block("127.0.0.1 localhost", ""), "127.0.0.1 localhost\n");
    }
}
