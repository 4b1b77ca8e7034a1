//! nftables, where the helper keeps the host's network rules: for its
//! containers (capabilities/network/rules.rs, port_guard.rs, egress.rs) and
//! for their builds (nix/build_network.rs). Its tables (`Table`), the one
//! way they are written (`NetworkLock::apply`: in one transaction by
//! `nft -f`, under the lock that keeps two commands from applying rules
//! computed from different states), and whether a table is there, asked of
//! the kernel without running nft.

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use rustix::fs::{flock, FlockOperation};

use crate::system::netlink::Socket;
use crate::system::process::Tool;

/// Held while a command computes rules from the state and applies them, so
/// that rules computed from an older state never replace newer ones.
pub struct NetworkLock {
    _file: File,
}

impl NetworkLock {
    /// Takes the lock (`<state dir>/network.lock`), waiting for another
    /// command that holds it.
    pub fn take(state_dir: &Path) -> Result<NetworkLock> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("cannot create state directory {}", state_dir.display()))?;
        let path = state_dir.join(crate::layout::NETWORK_LOCK);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock {}", path.display()))?;
        flock(&file, FlockOperation::LockExclusive).context("cannot lock the network rules")?;
        Ok(NetworkLock { _file: file })
    }

    /// Applies `script` (nft's syntax: `Table::replace`, `Table::delete`,
    /// element statements) in one transaction: all of it or none.
    pub fn apply(&self, script: &str) -> Result<()> {
        let file = tempfile::NamedTempFile::new().context("cannot write the network rules")?;
        std::fs::write(file.path(), script).context("cannot write the network rules")?;
        let finished = Tool::new("nft").arg("-f").arg(file.path()).output(false).context(
            "the network rules of containers and of their builds need nftables (nft) on the \
             host: install it (Debian: apt-get install nftables)",
        )?;
        if !finished.status.success() {
            bail!("nft could not set the network rules: {}", finished.stderr.trim());
        }
        Ok(())
    }
}

/// The families of nftables tables the helper keeps (nfgen_family in the
/// kernel's netlink messages: NFPROTO_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Bridge,
    Inet,
    Ip,
}

impl Family {
    fn number(self) -> u8 {
        match self {
            Family::Bridge => 7,
            Family::Inet => 1,
            Family::Ip => 2,
        }
    }

    fn keyword(self) -> &'static str {
        match self {
            Family::Bridge => "bridge",
            Family::Inet => "inet",
            Family::Ip => "ip",
        }
    }
}

/// A table the helper keeps, all of it its own.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub family: Family,
    pub name: &'static str,
}

impl std::fmt::Display for Table {
    /// As nft names it: `<family> <name>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.family.keyword(), self.name)
    }
}

impl Table {
    /// A script that deletes the table, whether or not it is there (it is
    /// declared first, which makes it where it was not).
    pub fn delete(&self) -> String {
        format!("table {self}\ndelete table {self}\n")
    }

    /// A script that replaces the table, whatever is there, with one of
    /// `content` (its chains and sets, each line ending in a newline).
    pub fn replace(&self, content: &str) -> String {
        format!("{}table {self} {{\n{content}}}\n", self.delete())
    }

    /// What the kernel tells of the table (its comment among it), or None
    /// where this network namespace has no such table.
    fn ask(&self) -> Result<Option<Vec<u8>>> {
        Socket::netfilter()?.nft_table(self.family.number(), self.name)
    }

    /// Whether this network namespace has the table.
    pub fn exists(&self) -> Result<bool> {
        Ok(self.ask()?.is_some())
    }

    /// Whether the table is there and what the kernel tells of it holds
    /// `marker` (in its comment).
    pub fn holds(&self, marker: &[u8]) -> Result<bool> {
        Ok(self.ask()?.is_some_and(|told| told.windows(marker.len()).any(|part| part == marker)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_replaced_or_deleted_whether_or_not_it_is_there() {
        let table = Table { family: Family::Bridge, name: "abc" };
        assert_eq!(table.delete(), "table bridge abc\ndelete table bridge abc\n");
        assert_eq!(
            table.replace("  set s { }\n"),
            "table bridge abc\ndelete table bridge abc\ntable bridge abc {\n  set s { }\n}\n"
        );
    }

    #[test]
    fn a_table_of_this_namespace_is_found() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: only root may ask the kernel for nftables tables");
            return;
        }
        for family in [Family::Bridge, Family::Inet, Family::Ip] {
            let table = Table { family, name: "nixcloud-container-no-such-table" };
            assert!(!table.exists().unwrap());
            assert!(!table.holds(b"x").unwrap());
        }
    }
}
