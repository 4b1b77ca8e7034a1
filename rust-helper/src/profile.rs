//! A container's Nix profile: `<profiles dir>/<name>/profile` and its
//! `profile-N-link` generations, as nix-env writes them. Reading them needs
//! no Nix process; changing them is left to nix-env (see nix.rs).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::error::UsageError;
use crate::spec::GenerationMeta;

pub struct Profile {
    dir: PathBuf,
}

/// One generation: its number, the store path it links to, when it was made.
#[derive(Debug, Clone)]
pub struct Generation {
    pub number: u64,
    pub path: PathBuf,
    pub created: SystemTime,
}

impl Generation {
    pub fn meta(&self) -> Result<GenerationMeta> {
        GenerationMeta::read(&self.path)
    }
}

/// Parses nix-env's generation link names, `profile-<N>-link`.
fn generation_number(file_name: &str) -> Option<u64> {
    file_name.strip_prefix("profile-")?.strip_suffix("-link")?.parse().ok()
}

impl Profile {
    pub fn new(profiles_dir: &Path, name: &str) -> Profile {
        Profile { dir: profiles_dir.join(name) }
    }

    /// The directory holding the profile and its generations (bound to /init
    /// inside the container).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The profile link nix-env switches.
    pub fn link(&self) -> PathBuf {
        self.dir.join("profile")
    }

    /// The current generation's number, or None before the first build.
    pub fn current_number(&self) -> Result<Option<u64>> {
        match std::fs::read_link(self.link()) {
            Ok(target) => Ok(target.to_str().and_then(generation_number)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("cannot read {}", self.link().display())),
        }
    }

    /// The current generation.
    pub fn current(&self) -> Result<Option<Generation>> {
        let Some(number) = self.current_number()? else {
            return Ok(None);
        };
        self.generation(number).map(Some)
    }

    pub fn generation(&self, number: u64) -> Result<Generation> {
        let link = self.dir.join(format!("profile-{number}-link"));
        let created = std::fs::symlink_metadata(&link)
            .map_err(|_| UsageError(format!("generation {number} does not exist")))?
            .modified()?;
        let path =
            std::fs::read_link(&link).with_context(|| format!("cannot read {}", link.display()))?;
        Ok(Generation { number, path, created })
    }

    /// All generations, oldest first.
    pub fn generations(&self) -> Result<Vec<Generation>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => {
                return Err(err).with_context(|| format!("cannot read {}", self.dir.display()))
            }
        };
        let mut numbers = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", self.dir.display()))?;
            if let Some(number) = entry.file_name().to_str().and_then(generation_number) {
                numbers.push(number);
            }
        }
        numbers.sort_unstable();
        numbers.into_iter().map(|number| self.generation(number)).collect()
    }

    /// Removes the profile and all its generations (their GC roots with them).
    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(err).with_context(|| format!("cannot remove {}", self.dir.display()))
            }
            _ => Ok(()),
        }
    }
}

/// Accepts what `nix-env --delete-generations` takes: generation numbers,
/// `+N` (keep the last N), `Nd` (older than N days) and `old`. Anything else
/// is refused here, so no value can reach nix-env as an option.
pub fn check_specifier(specifier: &str) -> Result<(), UsageError> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let valid = specifier == "old"
        || digits(specifier)
        || specifier.strip_prefix('+').is_some_and(digits)
        || specifier.strip_suffix('d').is_some_and(digits);
    if valid {
        Ok(())
    } else {
        Err(UsageError(format!(
            "invalid generation {specifier:?}: give generation numbers, +N (keep the last N), \
             Nd (older than N days) or old"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_generation_links() {
        assert_eq!(generation_number("profile-12-link"), Some(12));
        assert_eq!(generation_number("profile-link"), None);
        assert_eq!(generation_number("profile-x-link"), None);
        assert_eq!(generation_number("profile"), None);
    }

    #[test]
    fn specifiers_as_nix_env_takes_them() {
        for ok in ["1", "42", "+3", "30d", "old"] {
            assert!(check_specifier(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-1", "--dry-run", "+", "d", "3x", "+3d", "1 2", "all"] {
            assert!(check_specifier(bad).is_err(), "{bad}");
        }
    }
}
