//! What capabilities check a generation's lxc.conf with: its lines, the
//! rules for one container, and the scripts of lib/ that LXC may run as
//! root on the host (engine/lxc_settings.rs reads the file and hands each
//! capability the lines with its keys).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::formats::{show, InterfaceName};
use crate::ids::IdMap;

/// A line of a generation's lxc.conf, as LXC reads it.
pub struct Setting<'a> {
    /// Its number in the file, from 1.
    pub line: usize,
    pub key: &'a str,
    pub value: &'a str,
}

impl Setting<'_> {
    /// Fails unless the value is `wanted`.
    pub fn expect(&self, wanted: &str) -> Result<()> {
        if self.value == wanted {
            Ok(())
        } else {
            bail!("{} must be {}, not {}", self.key, show(wanted), show(self.value))
        }
    }
}

/// Runs `check` on each of `settings`, its errors naming the line.
pub fn each<'a>(
    settings: &[Setting<'a>],
    mut check: impl FnMut(&Setting<'a>) -> Result<()>,
) -> Result<()> {
    settings
        .iter()
        .try_for_each(|setting| check(setting).with_context(|| format!("line {}", setting.line)))
}

/// What the settings of container `name` may say.
pub struct Rules<'a> {
    pub name: &'a str,
    /// `dir:` and this is `lxc.rootfs.path`.
    pub rootfs: PathBuf,
    /// Its id range; `lxc.idmap` must map exactly this for users and groups.
    pub idmap: IdMap,
    /// The bridges its interfaces may join.
    pub bridges: Vec<&'a InterfaceName>,
    /// Where the scripts LXC runs (`script.up`, the stop hook) must be: the store.
    pub store: &'a Path,
}

/// A script of lib/ that LXC runs as root on the host: its file name there
/// and its text.
pub struct StoreScript {
    pub file: &'static str,
    pub text: &'static str,
}

impl StoreScript {
    /// LXC runs `script.up` and hooks as root on the host: each must be
    /// this script, a file in the store (which nothing changes) with its
    /// text.
    pub fn check(&self, value: &str, store: &Path) -> Result<()> {
        let path = Path::new(value);
        let suffix = format!("-{}", self.file);
        let in_store = path.parent() == Some(store)
            && path.file_name().and_then(|name| name.to_str()).is_some_and(|name| {
                name.len() == 32 + suffix.len() && name.ends_with(&suffix) && !name.starts_with('.')
            });
        if !in_store {
            bail!("is not lib/{} in {}", self.file, store.display());
        }
        match std::fs::read_to_string(path) {
            Ok(text) if text == self.text => Ok(()),
            Ok(_) => bail!("is not lib/{}", self.file),
            Err(err) => Err(err).context("cannot be read"),
        }
    }
}
