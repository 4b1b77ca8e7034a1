//! A tenant's flake, fetched so that nothing of it reads the host outside its
//! own directory (lib/tenant-flake.nix says why builtins.getFlake cannot be
//! used for that, and what the two steps below do in Nix).
//!
//! 1. The fetch step (`Nix::fetch_flake`): a Nix process with the flakes
//!    feature and no restricted evaluation, which evaluates no code of the
//!    flake, fetches its source from where root's reference says
//!    (`FetchFrom`), reads its flake.lock as data, refuses every locked input
//!    that names a host path outside the flake's own directory and the host's
//!    `allowedFlakeInputPaths` before fetching any, then fetches the rest.
//! 2. Every later evaluation of the flake (its spec, its generation, sync's
//!    list of its containers) gets what the fetch gave (`Fetched`), the
//!    fetched sources being the only store paths it may read besides
//!    nixpkgs' and this toolkit's, and runs without Nix's experimental
//!    features: no code of a tenant can call builtins.getFlake or
//!    builtins.fetchTree, which restricted evaluation does not check.
//!
//! A command fetches each flake once (`Fetches`); `sync` hands its fetch to
//! the helper processes it starts for the flake's containers (`HANDED_ENV`),
//! so that all of them are built from the one fetch it recorded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::formats::AbsolutePath;

/// Where root's flake reference says a flake's source is, as
/// lib/tenant-flake.nix's `fetch` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchFrom {
    /// What builtins.fetchTree fetches: a URL, or a local path's attributes
    /// (Nix 2.8's fetchTree takes no `path:` URL).
    pub url: serde_json::Value,
    /// Where flake.nix is in the source ("" for its top): the reference's
    /// `dir`, or a local flake's place in its git repository.
    pub dir: String,
    /// The flake's own directory on this host (its real path): a local
    /// flake's directory, or the top of its git repository; None for any
    /// other flake.
    pub own_dir: Option<PathBuf>,
    /// Host paths root allows for flake inputs, by their real paths.
    pub allowed_paths: Vec<PathBuf>,
}

impl FetchFrom {
    /// Where `reference` (a flake reference without `#<name>`, root's)
    /// says the flake is, with the host paths `allowed` for its inputs.
    pub fn new(reference: &str, allowed: &[AbsolutePath]) -> Result<FetchFrom> {
        let mut from = if reference.starts_with('/') || reference.starts_with('.') {
            local_path(reference)?
        } else {
            url(reference)?
        };
        // Paths that are not there allow nothing.
        from.allowed_paths =
            allowed.iter().filter_map(|path| std::fs::canonicalize(path.as_str()).ok()).collect();
        Ok(from)
    }
}

/// A flake named by its path: in a git repository (found as Nix finds it,
/// through the directories above), the repository's tracked files; else the
/// directory.
fn local_path(reference: &str) -> Result<FetchFrom> {
    let (path, query) = reference.split_once('?').unwrap_or((reference, ""));
    let mut dir = dir_parameter(reference, query)?;
    let real = std::fs::canonicalize(path)
        .with_context(|| format!("flake {reference}: cannot find {path}"))?;
    let repository = real.ancestors().find(|candidate| candidate.join(".git").exists());
    let Some(repository) = repository else {
        return Ok(FetchFrom {
            url: serde_json::json!({ "type": "path", "path": real }),
            dir,
            own_dir: Some(real),
            allowed_paths: Vec::new(),
        });
    };
    let inside = real.strip_prefix(repository).expect("an ancestor is a prefix");
    if !inside.as_os_str().is_empty() {
        let inside = inside.to_str().context("a flake's path is not UTF-8")?;
        dir = if dir.is_empty() { inside.to_string() } else { format!("{inside}/{dir}") };
    }
    Ok(FetchFrom {
        url: serde_json::Value::String(format!("git+file://{}", repository.display())),
        dir,
        own_dir: Some(repository.to_path_buf()),
        allowed_paths: Vec::new(),
    })
}

/// A flake named by a URL (`github:o/r`, `git+file:///x?ref=main`), or by
/// a registry's name (`nixpkgs`).
fn url(reference: &str) -> Result<FetchFrom> {
    let Some((scheme, _)) = reference.split_once(':') else {
        return Ok(FetchFrom {
            url: serde_json::Value::String(format!("flake:{reference}")),
            dir: String::new(),
            own_dir: None,
            allowed_paths: Vec::new(),
        });
    };
    let (base, query) = reference.split_once('?').unwrap_or((reference, ""));
    let dir = dir_parameter(reference, query)?;
    let others: Vec<&str> =
        query.split('&').filter(|pair| !pair.is_empty() && !pair.starts_with("dir=")).collect();
    let local = |rest: &str| {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        (path.starts_with('/') && !path.contains('%'))
            .then(|| std::fs::canonicalize(path))
            .transpose()
            .with_context(|| format!("flake {reference}: cannot find {path}"))
    };
    match scheme {
        "path" => {
            if !others.is_empty() {
                bail!("flake {reference}: a path: reference takes no parameters but dir");
            }
            let path = local(&base["path:".len()..])?
                .with_context(|| format!("flake {reference}: not an absolute path"))?;
            Ok(FetchFrom {
                url: serde_json::json!({ "type": "path", "path": path }),
                dir,
                own_dir: Some(path),
                allowed_paths: Vec::new(),
            })
        }
        _ => {
            let own_dir = match scheme {
                "git+file" => local(&base["git+file:".len()..])?,
                _ => None,
            };
            let url = if others.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", others.join("&"))
            };
            Ok(FetchFrom {
                url: serde_json::Value::String(url),
                dir,
                own_dir,
                allowed_paths: Vec::new(),
            })
        }
    }
}

/// The `dir` parameter of a flake reference's query, or "".
fn dir_parameter(reference: &str, query: &str) -> Result<String> {
    let mut dirs = query.split('&').filter_map(|pair| pair.strip_prefix("dir="));
    let dir = dirs.next().unwrap_or("").trim_matches('/').to_string();
    if dirs.next().is_some() {
        bail!("flake {reference}: dir is given twice");
    }
    if dir.split('/').any(|part| part == ".." || part == ".") || dir.contains('%') {
        bail!("flake {reference}: dir={dir} is not a plain directory below the flake's source");
    }
    Ok(dir)
}

/// What the fetch step gave: lib/tenant-flake.nix's `fetch`, as JSON for
/// the later evaluations (cli.nix's `fetched`), with the store paths of the
/// sources, which restricted evaluation must let them read.
#[derive(Debug)]
pub struct Fetched {
    pub json: String,
    pub sources: Vec<PathBuf>,
}

impl Fetched {
    /// Reads the fetch step's output: every source must be a store path.
    pub fn parse(json: &str) -> Result<Fetched> {
        #[derive(Deserialize)]
        struct Output {
            sources: BTreeMap<String, Source>,
        }
        #[derive(Deserialize)]
        struct Source {
            path: PathBuf,
        }
        let output: Output = serde_json::from_str(json)
            .context("the flake's fetch gave what this helper cannot read")?;
        let sources: Vec<PathBuf> =
            output.sources.into_values().map(|source| source.path).collect();
        if let Some(odd) = sources.iter().find(|path| !is_store_path(path)) {
            bail!("the flake's fetch gave {}, which is not a store path", odd.display());
        }
        Ok(Fetched { json: json.trim().to_string(), sources })
    }
}

fn is_store_path(path: &Path) -> bool {
    path.parent() == Some(Path::new(crate::layout::NIX_STORE))
}

/// The flakes one command fetched, by reference: its evaluations of one
/// flake (spec, then generation) all get the one fetch.
#[derive(Debug, Default)]
pub struct Fetches {
    fetched: Mutex<BTreeMap<String, Arc<Fetched>>>,
}

impl Fetches {
    /// The fetch of `reference`: the one this process made or was handed
    /// (`HANDED_ENV`), else made by `fetch` now.
    pub fn get(
        &self,
        reference: &str,
        fetch: impl FnOnce() -> Result<Fetched>,
    ) -> Result<Arc<Fetched>> {
        if let Some(fetched) = self.fetched.lock().expect("the fetches").get(reference) {
            return Ok(fetched.clone());
        }
        let fetched = Arc::new(match handed_down(reference)? {
            Some(fetched) => fetched,
            None => fetch()?,
        });
        self.fetched.lock().expect("the fetches").insert(reference.to_string(), fetched.clone());
        Ok(fetched)
    }

    /// Writes the fetch of `reference`, where this process made one, into a
    /// file in `dir` for a helper process it starts (`HANDED_ENV`: the
    /// file's path), which is removed when the value is dropped.
    pub fn hand_down(
        &self,
        reference: &str,
        dir: &Path,
    ) -> Result<Option<tempfile::NamedTempFile>> {
        let Some(fetched) = self.fetched.lock().expect("the fetches").get(reference).cloned()
        else {
            return Ok(None);
        };
        let handed = Handed { reference: reference.to_string(), fetched: fetched.json.clone() };
        let mut file = tempfile::Builder::new()
            .prefix("flake-")
            .tempfile_in(dir)
            .with_context(|| format!("cannot make a file in {}", dir.display()))?;
        use std::io::Write;
        file.write_all(serde_json::to_string(&handed).expect("a Handed serializes").as_bytes())
            .with_context(|| format!("cannot write {}", file.path().display()))?;
        Ok(Some(file))
    }
}

/// The environment variable through which `sync` hands the helper process
/// it starts for a flake's container its fetch of the flake: a file of
/// root's, in the state directory, holding a `Handed`.
pub const HANDED_ENV: &str = "NIXCLOUD_CONTAINER_FETCHED_FLAKE";

/// A fetch handed down: of which flake, and what it gave.
#[derive(Serialize, Deserialize)]
struct Handed {
    reference: String,
    fetched: String,
}

/// The fetch of `reference` that this process was handed, if it was.
fn handed_down(reference: &str) -> Result<Option<Fetched>> {
    let Some(file) = std::env::var_os(HANDED_ENV) else { return Ok(None) };
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read the flake's fetch {}", Path::new(&file).display()))?;
    let handed: Handed = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a flake's fetch", Path::new(&file).display()))?;
    if handed.reference != reference {
        return Ok(None);
    }
    Fetched::parse(&handed.fetched).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(reference: &str) -> FetchFrom {
        FetchFrom::new(reference, &[]).unwrap()
    }

    #[test]
    fn a_local_directory_is_a_path_and_its_own_directory() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        let reference = dir.path().to_str().unwrap();
        let expected = FetchFrom {
            url: serde_json::json!({ "type": "path", "path": real }),
            dir: String::new(),
            own_dir: Some(real.clone()),
            allowed_paths: Vec::new(),
        };
        assert_eq!(from(reference), expected);
        assert_eq!(from(&format!("path:{reference}")), expected);
        assert_eq!(from(&format!("{reference}?dir=sub")).dir, "sub");
    }

    #[test]
    fn a_directory_in_a_git_repository_is_the_repository_with_a_dir() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let found = from(dir.path().join("a/b").to_str().unwrap());
        assert_eq!(found.url, serde_json::json!(format!("git+file://{}", real.display())));
        assert_eq!(found.dir, "a/b");
        assert_eq!(found.own_dir, Some(real));
    }

    #[test]
    fn urls_keep_their_parameters_but_dir() {
        let found = from("github:o/r/main?dir=containers");
        assert_eq!(found.url, serde_json::json!("github:o/r/main"));
        assert_eq!(found.dir, "containers");
        assert_eq!(found.own_dir, None);
        let found = from("git+https://example.org/r.git?ref=main&dir=c&rev=abc");
        assert_eq!(found.url, serde_json::json!("git+https://example.org/r.git?ref=main&rev=abc"));
        assert_eq!(from("nixpkgs").url, serde_json::json!("flake:nixpkgs"));
    }

    #[test]
    fn a_local_git_url_has_its_own_directory() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        let found = from(&format!("git+file://{}?ref=main", dir.path().display()));
        assert_eq!(found.own_dir, Some(real));
    }

    #[test]
    fn odd_references_are_refused() {
        for reference in [
            "github:o/r?dir=../x",
            "github:o/r?dir=a&dir=b",
            "path:relative",
            "path:/tmp?narHash=x",
            "/nonexistent/flake",
        ] {
            assert!(FetchFrom::new(reference, &[]).is_err(), "{reference}");
        }
    }

    #[test]
    fn allowed_paths_are_real_paths_and_missing_ones_allow_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        let allowed = [
            AbsolutePath::try_from(link.to_str().unwrap().to_string()).unwrap(),
            AbsolutePath::try_from("/nonexistent/x".to_string()).unwrap(),
        ];
        let found = FetchFrom::new("github:o/r", &allowed).unwrap();
        assert_eq!(found.allowed_paths, [std::fs::canonicalize(dir.path()).unwrap()]);
    }

    #[test]
    fn a_fetch_gives_store_paths_only() {
        let good =
            r#"{"dir":"","lock":{},"sources":{"root":{"info":{},"path":"/nix/store/abc-source"}}}"#;
        assert_eq!(Fetched::parse(good).unwrap().sources, [PathBuf::from("/nix/store/abc-source")]);
        let bad = r#"{"sources":{"root":{"info":{},"path":"/etc"}}}"#;
        assert!(Fetched::parse(bad).is_err());
    }
}
