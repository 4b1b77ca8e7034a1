//! The spec and the generation metadata, as lib/spec.nix and
//! lib/generation.nix write them. This is the only place that parses them.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::settings::IdMap;

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
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a source serializes")
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

/// The `network` attribute set of a container file, normalized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSpec {
    pub bridge: Option<String>,
    pub ip: Option<String>,
    pub prefix_length: Option<u8>,
    pub gateway: Option<String>,
    pub enable_nat: bool,
}

/// A container file's settings, normalized by lib/spec.nix (what it builds,
/// a configuration or a system, is left to the build).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    pub kind: Kind,
    pub autostart: bool,
    pub network: NetworkSpec,
}

/// The container's interface on its main bridge (called `hostonly` inside,
/// whichever bridge it is on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostonlyInterface {
    pub bridge: String,
    pub address: Ipv4Addr,
    pub prefix_length: u8,
    pub broadcast: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
}

/// The container's NATed interface (called `internet` inside); addressed by DHCP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InternetInterface {
    pub bridge: String,
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
        let file = generation.join("spec.json");
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
        assert_eq!(Source::File("/a b/c.nix".into()).to_json(), r#"{"file":"/a b/c.nix"}"#);
        assert_eq!(Source::System("/nix/store/x".into()).to_json(), r#"{"system":"/nix/store/x"}"#);
    }

    #[test]
    fn spec_with_unknown_fields_is_refused() {
        let text = r#"{"kind":"nixos","autostart":false,"extra":1,
            "network":{"bridge":null,"ip":null,"prefixLength":null,"gateway":null,"enableNat":false}}"#;
        assert!(serde_json::from_str::<Spec>(text).is_err());
    }
}
