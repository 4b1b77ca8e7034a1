//! The spec and the generation metadata, as lib/spec.nix and
//! lib/generation.nix write them. This is the only place that parses them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::capabilities::bind_mounts::types::BindMount;
use crate::capabilities::devices::types::Device;
use crate::capabilities::forward_ports::types::ForwardPort;
use crate::capabilities::limits::types::Limits;
use crate::capabilities::network::types::{HostonlyInterface, InternetInterface, NetworkSpec};
use crate::ids::IdMap;

/// Where a container's generations come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// A container file (absolute path).
    File(PathBuf),
    /// A prebuilt system (a store path), as `create --system`.
    System(PathBuf),
    /// A flake's `nixcloudContainers.<name>`, as `<flake ref>#<name>`.
    Flake(String),
}

impl Source {
    /// The source as lib/cli.nix takes it (`--argstr source`).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self)
            .map_err(|err| anyhow::anyhow!("{self} cannot be given to Nix: {err}"))
    }

    /// The source as Nix evaluates it: a container file in the real path of
    /// the directory it was named in, which is the directory restricted
    /// evaluation lets it read (nix/mod.rs `confined`). The source stays as
    /// given (recorded for later updates); this is checked at each
    /// evaluation, so `update` of a recorded file and `sync` check it too.
    pub fn resolved(&self) -> Result<Source> {
        match self {
            Source::File(file) => in_named_directory(file).map(Source::File),
            other => Ok(other.clone()),
        }
    }
}

/// Container file `file` as the real path of its directory joined with its
/// own name. The file itself may be a link within that directory; a link
/// leading out of it is refused, since the directory a container file may
/// read is the one it was named in, not the one of another tenant it links
/// to. Nix then follows the link again when it reads the file, and refuses
/// it should it lead out by then (restricted evaluation checks the path
/// with its links resolved: tests/integration/security.rs).
fn in_named_directory(file: &Path) -> Result<PathBuf> {
    let unreadable = || format!("cannot read container file {}", file.display());
    let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
        anyhow::bail!("container file {} names no file in a directory", file.display());
    };
    let dir = std::fs::canonicalize(dir).with_context(unreadable)?;
    let target = std::fs::canonicalize(file).with_context(unreadable)?;
    let resolved = dir.join(name);
    let root = readable_root(&resolved);
    if !target.starts_with(root) {
        let what = if root == resolved { "its own store path" } else { "its directory" };
        anyhow::bail!(
            "container file {} is a link to {}, outside {what} {}: a container file may read \
             only the directory it is named in (a file directly in /nix/store: only itself)",
            file.display(),
            target.display(),
            root.display()
        );
    }
    Ok(resolved)
}

/// What container file `file` (a path Source::resolved gave) may read: its
/// directory, and below it; but a file that lies directly in /nix/store
/// (/nix/store/<hash>-web.nix) is a store path of its own, and reads only
/// itself: the store as its directory would let it read every store path.
pub fn readable_root(file: &Path) -> &Path {
    match file.parent() {
        Some(dir) if dir == Path::new(crate::layout::NIX_STORE) => file,
        Some(dir) => dir,
        None => Path::new("/"),
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(path) => write!(f, "container file {}", path.display()),
            Source::System(path) => write!(f, "system {}", path.display()),
            Source::Flake(reference) => write!(f, "flake {reference}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A NixOS configuration, built through nixpkgs.
    Nixos,
    /// A ready system store path.
    System,
}

/// A container file's settings, normalized by lib/spec.nix (what it builds,
/// a configuration or a system, is left to the build).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    pub kind: Kind,
    pub autostart: bool,
    /// Nix inside through the host's nix-daemon (where the host allows it).
    #[serde(default)]
    pub nix_daemon: bool,
    /// The host's whole store inside instead of the container's closure
    /// (where the host allows it).
    #[serde(default)]
    pub whole_store: bool,
    /// Its root starts empty at every start (capabilities/ephemeral/).
    #[serde(default)]
    pub ephemeral: bool,
    pub network: NetworkSpec,
    /// What the container file asks for; the host may cap it.
    #[serde(default)]
    pub limits: Limits,
    /// Host paths it sees (where the host allows them).
    #[serde(default)]
    pub bind_mounts: Vec<BindMount>,
    /// Host ports forwarded to it.
    #[serde(default)]
    pub forward_ports: Vec<ForwardPort>,
    /// Host devices it sees.
    #[serde(default)]
    pub devices: Vec<Device>,
}

/// What the helper resolves for one build: handed to lib/cli.nix as JSON and
/// recorded in the generation's spec.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    pub name: String,
    pub source: Source,
    pub profile_dir: PathBuf,
    pub rootfs: PathBuf,
    pub idmap: IdMap,
    pub hostonly: HostonlyInterface,
    pub internet: Option<InternetInterface>,
    /// The host's nix-daemon inside (the spec asks, the host allows).
    #[serde(default)]
    pub nix_daemon: bool,
    /// The host's whole store inside (the spec asks, the host allows).
    #[serde(default)]
    pub whole_store: bool,
    /// The spec's limits, capped by the host's.
    #[serde(default)]
    pub limits: Limits,
    /// Root's own LXC settings for the container (--lxc-config), as text.
    #[serde(default)]
    pub root_settings: Option<String>,
    /// Whether it starts with the host, where the host decides that rather
    /// than the container file (--autostart).
    #[serde(default)]
    pub autostart: Option<bool>,
    /// The container's system.stateVersion unless its configuration sets
    /// one: the nixpkgs release it was created with (NixOS containers).
    #[serde(default)]
    pub state_version: Option<NixosRelease>,
}

impl GenerationMeta {
    /// Whether the container starts with the host: the host's say, else
    /// the container file's.
    pub fn autostart(&self) -> bool {
        self.params.autostart.unwrap_or(self.spec.autostart)
    }
}

impl Params {
    /// Whether the container sees the host's whole store rather than its
    /// closure: where it asks for it, and with Nix inside, whose daemon adds
    /// paths it must see.
    pub fn sees_whole_store(&self) -> bool {
        self.whole_store || self.nix_daemon
    }
}

/// A NixOS release, "25.11": what a nixpkgs' lib/.version says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NixosRelease(String);

impl TryFrom<String> for NixosRelease {
    type Error = String;

    fn try_from(text: String) -> Result<NixosRelease, String> {
        let digits = |part: &str| part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit());
        match text.split_once('.') {
            Some((year, month)) if digits(year) && digits(month) => Ok(NixosRelease(text)),
            _ => Err(format!("{} is not a NixOS release like 25.11", crate::formats::show(&text))),
        }
    }
}

impl From<NixosRelease> for String {
    fn from(release: NixosRelease) -> String {
        release.0
    }
}

impl std::fmt::Display for NixosRelease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A generation's spec.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerationMeta {
    pub version: u32,
    pub spec: Spec,
    pub params: Params,
    pub system: PathBuf,
}

impl GenerationMeta {
    /// Reads `<generation>/spec.json`.
    pub fn read(generation: &Path) -> Result<GenerationMeta> {
        let file = generation.join(crate::layout::SPEC_JSON);
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a generation's spec", file.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_is_tagged_as_lib_cli_nix_expects() {
        assert_eq!(
            Source::File("/a b/c.nix".into()).to_json().unwrap(),
            r#"{"file":"/a b/c.nix"}"#
        );
        assert_eq!(
            Source::System("/nix/store/x".into()).to_json().unwrap(),
            r#"{"system":"/nix/store/x"}"#
        );
    }

    #[test]
    fn a_container_file_is_evaluated_in_the_directory_it_was_named_in() {
        let root = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(root.path()).unwrap();
        for dir in ["tenant1/sub", "tenant2"] {
            std::fs::create_dir_all(real.join(dir)).unwrap();
        }
        std::fs::write(real.join("tenant1/sub/b.nix"), "{}").unwrap();
        std::fs::write(real.join("tenant2/b.nix"), "{}").unwrap();
        let link = |name: &str, target: &str| {
            std::os::unix::fs::symlink(target, real.join("tenant1").join(name)).unwrap();
            Source::File(real.join("tenant1").join(name))
        };
        // A link within its directory: the file as named, in that directory.
        assert_eq!(
            link("inside.nix", "sub/b.nix").resolved().unwrap(),
            Source::File(real.join("tenant1/inside.nix"))
        );
        // The directory named by a link: its real path.
        std::os::unix::fs::symlink(real.join("tenant1"), real.join("named")).unwrap();
        assert_eq!(
            Source::File(real.join("named/sub/../inside.nix")).resolved().unwrap(),
            Source::File(real.join("tenant1/inside.nix"))
        );
        // A link out of it, directly or through another link: refused.
        for out in [link("a.nix", "../tenant2/b.nix"), link("c.nix", "a.nix")] {
            let err = format!("{:#}", out.resolved().unwrap_err());
            assert!(err.contains("outside its directory"), "{err}");
            assert!(err.contains(&real.join("tenant2/b.nix").display().to_string()), "{err}");
        }
    }

    #[test]
    fn spec_values_are_checked_as_lib_spec_nix_checks_them() {
        let spec = |network: &str| {
            serde_json::from_str::<Spec>(&format!(
                r#"{{"kind":"system","autostart":false,"network":{network}}}"#
            ))
        };
        let ok = r#"{"bridge":"br0","ip":"10.1.0.2","prefixLength":16,"gateway":"10.1.0.1","enableNat":false}"#;
        assert!(spec(ok).is_ok());
        for bad in [
            r#"{"bridge":"br2\nlxc.hook.pre-start = /x","ip":null,"prefixLength":null,"gateway":null,"enableNat":false}"#,
            r#"{"bridge":"../br0","ip":null,"prefixLength":null,"gateway":null,"enableNat":false}"#,
            r#"{"bridge":null,"ip":"10.1.0.2/16","prefixLength":null,"gateway":null,"enableNat":false}"#,
            r#"{"bridge":null,"ip":null,"prefixLength":0,"gateway":null,"enableNat":false}"#,
            r#"{"bridge":null,"ip":null,"prefixLength":"16","gateway":null,"enableNat":false}"#,
            r#"{"bridge":null,"ip":null,"prefixLength":null,"gateway":"8.8.8.8 x","enableNat":false}"#,
        ] {
            assert!(spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ephemeral_is_true_or_false() {
        let spec = |ephemeral: &str| {
            serde_json::from_str::<Spec>(&format!(
                r#"{{"kind":"system","autostart":false,"ephemeral":{ephemeral},
                "network":{{"bridge":null,"ip":null,"prefixLength":null,"gateway":null,"enableNat":false}}}}"#
            ))
        };
        assert!(spec("true").unwrap().ephemeral);
        for bad in [r#""yes""#, "1", "null", "[]"] {
            let error = spec(bad).unwrap_err().to_string();
            assert!(error.contains("expected a boolean"), "{bad}: {error}");
        }
    }

    #[test]
    fn spec_with_unknown_fields_is_refused() {
        let text = r#"{"kind":"nixos","autostart":false,"extra":1,
            "network":{"bridge":null,"ip":null,"prefixLength":null,"gateway":null,"enableNat":false}}"#;
        assert!(serde_json::from_str::<Spec>(text).is_err());
    }
}
