//! The store paths an export carries: which a system needs, which this
//! host lacks, and moving them with `nix-store --export` and `--import`
//! (Nix 2.8's own format for that). Checked with Nix 2.8 here:
//! `--query --requisites` lists a closure with every path after those it
//! refers to; `--export` writes the paths given, `--import` (as root, on
//! the local store) adds those of them the store lacks without asking for a
//! signature, keeps those it has as they are, and prints every path of the
//! stream; `--check-validity --print-invalid` prints the paths the store
//! lacks; `--realise <path> --add-root <link>` makes `link` and the
//! indirect root that keeps it (as nix-env does for a generation).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::system::process::{describe_status, Tool};

/// A store path as Nix names them: `/nix/store/<32 characters of Nix's
/// base32>-<name>`, its name of letters, digits and `+-._?=`, not starting
/// with a dot. An export may come from anywhere: nothing else reaches a Nix
/// command line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StorePath(String);

impl TryFrom<String> for StorePath {
    type Error = String;

    fn try_from(text: String) -> Result<StorePath, String> {
        let valid = text
            .strip_prefix(crate::layout::NIX_STORE)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(is_store_path_name);
        if valid {
            Ok(StorePath(text))
        } else {
            Err(format!("{} is not a store path", crate::formats::show(&text)))
        }
    }
}

/// Nix's rule for the name of a path in the store (`<hash>-<name>`): a
/// 32-character hash in Nix's base32, '-', a name of at most 211 letters,
/// digits and `+-._?=`, not starting with a dot.
pub fn is_store_path_name(base: &str) -> bool {
    // Checked: a name with a multi-byte character across its 32nd byte is
    // refused, not a panic.
    let Some((hash, name)) = base.split_at_checked(32) else {
        return false;
    };
    hash.bytes().all(|b| b"0123456789abcdfghijklmnpqrsvwxyz".contains(&b))
        && name.strip_prefix('-').is_some_and(|name| {
            !name.is_empty()
                && name.len() <= 211
                && !name.starts_with('.')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-._?=".contains(&b))
        })
}

impl From<StorePath> for String {
    fn from(path: StorePath) -> String {
        path.0
    }
}

impl StorePath {
    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }

    /// The store path that `path` (a store path, or a path inside one) is.
    pub fn containing(path: &Path) -> Result<StorePath> {
        let text = path.to_str().context("a store path is UTF-8")?;
        let base = text
            .strip_prefix(crate::layout::NIX_STORE)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|rest| rest.split('/').next())
            .with_context(|| format!("{text} is not in the store"))?;
        StorePath::try_from(format!("{}/{base}", crate::layout::NIX_STORE))
            .map_err(|err| anyhow::anyhow!(err))
    }
}

impl std::fmt::Display for StorePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn parse_paths(output: &str) -> Result<Vec<StorePath>> {
    output
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| StorePath::try_from(line.to_string()).map_err(|err| anyhow::anyhow!(err)))
        .collect()
}

fn run(tool: Tool, what: &str) -> Result<String> {
    let finished = tool.dies_with_helper().output(false)?;
    if !finished.status.success() {
        bail!(
            "{what}: nix-store failed ({}): {}",
            describe_status(finished.status),
            finished.stderr.trim()
        );
    }
    Ok(finished.stdout)
}

/// The closure of `paths`: every path they need, each after the paths it
/// refers to.
pub fn closure(paths: &[StorePath]) -> Result<Vec<StorePath>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let tool = Tool::new("nix-store")
        .args(["--query", "--requisites"])
        .args(paths.iter().map(StorePath::as_path));
    parse_paths(&run(tool, "cannot list the store paths the generations need")?)
}

/// Those of `paths` that this host's store lacks.
pub fn missing(paths: &[StorePath]) -> Result<Vec<StorePath>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let tool = Tool::new("nix-store")
        .args(["--check-validity", "--print-invalid"])
        .args(paths.iter().map(StorePath::as_path));
    parse_paths(&run(tool, "cannot ask the store which paths it has")?)
}

/// Writes `paths` in `nix-store --export`'s format to `out`.
pub fn export(paths: &[StorePath], out: &mut impl Write) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let mut child = Command::new("nix-store")
        .arg("--export")
        .args(paths.iter().map(StorePath::as_path))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nix-store: is it installed and on PATH?")?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let copied = std::io::copy(&mut stdout, out);
    drop(stdout);
    let mut stderr = String::new();
    child.stderr.take().expect("stderr is piped").read_to_string(&mut stderr).ok();
    let status = child.wait().context("cannot run nix-store")?;
    if !status.success() {
        bail!(
            "cannot export the store paths: nix-store failed ({}): {}",
            describe_status(status),
            stderr.trim()
        );
    }
    copied.context("cannot write the store paths into the export")?;
    Ok(())
}

/// Adds the store paths of `file` (`nix-store --export`'s format) to the
/// store; returns every path the stream held.
pub fn import(file: &Path) -> Result<Vec<StorePath>> {
    let input =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let output = Command::new("nix-store")
        .arg("--import")
        .stdin(input)
        .output()
        .context("cannot run nix-store: is it installed and on PATH?")?;
    if !output.status.success() {
        bail!(
            "cannot add the export's store paths: nix-store failed ({}): {}",
            describe_status(output.status),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse_paths(&String::from_utf8_lossy(&output.stdout))
}

/// Makes `link` point to `path`, rooted as nix-env roots a generation.
pub fn add_root(path: &Path, link: &PathBuf) -> Result<()> {
    let tool = Tool::new("nix-store").arg("--realise").arg(path).arg("--add-root").arg(link);
    run(tool, &format!("cannot make {}", link.display())).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_paths_are_checked() {
        let good = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-busybox-1.36";
        assert!(StorePath::try_from(good.to_string()).is_ok());
        for bad in [
            "/nix/store/0123456789abcdfghijklmnpqrsvwxyz",
            "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-",
            "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-.hidden",
            "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-a b",
            "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-a/b",
            "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-e",
            "/nix/store/0123456789abcdfghijklmnpqrsvwxy-short",
            "/nix/store/0123456789abcdfghijklmnpqrsvwxyé-multi-byte-across-the-hash",
            "--delete",
            "/etc/shadow",
        ] {
            assert!(StorePath::try_from(bad.to_string()).is_err(), "{bad}");
        }
        assert_eq!(
            StorePath::containing(Path::new(&format!("{good}/bin/sh"))).unwrap().to_string(),
            good
        );
    }
}
