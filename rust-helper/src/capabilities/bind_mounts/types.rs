//! Bind mounts' part of a container file (`bindMounts`) and of the host
//! file (`allowedHostPaths`): their types, each value checked as it is
//! read.

use serde::{Deserialize, Serialize};

use crate::formats::{AbsolutePath, RelativePath};

/// A host path at `mount_point` inside (`bindMounts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BindMount {
    pub mount_point: AbsolutePath,
    pub host_path: HostPath,
    pub is_read_only: bool,
}

/// Where a bind mount's source is: below the container's own data
/// directory (a relative path), or a host path the host allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HostPath {
    Own(RelativePath),
    Host(AbsolutePath),
}

impl TryFrom<String> for HostPath {
    type Error = String;

    fn try_from(text: String) -> Result<HostPath, String> {
        if text.starts_with('/') {
            AbsolutePath::try_from(text).map(HostPath::Host)
        } else {
            RelativePath::try_from(text).map(HostPath::Own)
        }
    }
}

impl From<HostPath> for String {
    fn from(path: HostPath) -> String {
        match path {
            HostPath::Own(relative) => relative.into(),
            HostPath::Host(absolute) => absolute.into(),
        }
    }
}

/// A host path the host lets containers bind (`allowedHostPaths`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllowedHostPath {
    pub writable: bool,
}
