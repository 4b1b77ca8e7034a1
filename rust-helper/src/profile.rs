//! A container's Nix profile: `<profiles dir>/<name>/profile` and its
//! `profile-N-link` generations, as nix-env writes them. Reading them needs
//! no Nix process; changing them is left to nix-env (see nix/mod.rs).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

use crate::error::UsageError;
use crate::layout::PROFILE_LINK;
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
    let digits = file_name.strip_prefix(PROFILE_LINK)?.strip_prefix('-')?.strip_suffix("-link")?;
    digits.parse().ok()
}

/// Whether `file_name`, in a profile's directory, is one of the temporary
/// links nix-env makes and then renames into place (Nix 2.8's profiles.cc
/// and util.cc, seen with strace): `profile-<N>-link.tmp-<pid>-<random>` on
/// its way to generation link N (makeSymlink), `.<n>_profile` on its way to
/// the profile link (replaceSymlink). Only a nix-env killed between the
/// two steps leaves one behind.
fn is_nix_env_temporary(file_name: &str) -> bool {
    let for_generation =
        file_name.split_once(".tmp-").is_some_and(|(link, _)| generation_number(link).is_some());
    let for_profile = file_name
        .strip_prefix('.')
        .and_then(|rest| rest.split_once('_'))
        .is_some_and(|(n, link)| {
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && link == PROFILE_LINK
        });
    for_generation || for_profile
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
        self.dir.join(PROFILE_LINK)
    }

    /// The current generation's number, or None before the first build. A
    /// profile link that leads to anything but a generation link is an
    /// error: no command may take it for "no generation" or for another one.
    pub fn current_number(&self) -> Result<Option<u64>> {
        match std::fs::read_link(self.link()) {
            Ok(target) => match target.to_str().and_then(generation_number) {
                Some(number) => Ok(Some(number)),
                None => bail!(
                    "{} leads to {}, which is not one of its generations",
                    self.link().display(),
                    target.display()
                ),
            },
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

    /// The link of generation `number`, as nix-env names it.
    pub fn generation_link(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{PROFILE_LINK}-{number}-link"))
    }

    /// Dates generation `number` `created`: nix-env takes a generation's
    /// date from its link's modification time.
    pub fn set_created(&self, number: u64, created: SystemTime) -> Result<()> {
        let link = self.generation_link(number);
        let since = created.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let at = rustix::fs::Timespec { tv_sec: since.as_secs() as i64, tv_nsec: 0 };
        let times = rustix::fs::Timestamps { last_access: at, last_modification: at };
        rustix::fs::utimensat(rustix::fs::CWD, &link, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .with_context(|| format!("cannot date {}", link.display()))
    }

    pub fn generation(&self, number: u64) -> Result<Generation> {
        let link = self.generation_link(number);
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

    /// Every link in the profile's directory (the profile and its
    /// generations), each by its full path; none where it is gone.
    pub fn links(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.dir)
            .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
            .unwrap_or_default()
    }

    /// The links a killed nix-env left in the profile's directory
    /// (`is_nix_env_temporary`), each by its full path, but the one the
    /// profile leads to (`current_number` reports that one). Left behind,
    /// each keeps its generation from the garbage collector, and nix-env 2.8
    /// misreads `profile-<N>-link.tmp-...` as generation N (findGenerations
    /// parses the number up to the first "-link"): deleting N then unlinks
    /// "N" twice and fails, and the next `--set P` of a killed `--set P`
    /// makes no new generation (createGeneration reuses the newest one when
    /// it holds the same path) but points the profile at the temporary
    /// link, so that an update that built a new system would find none.
    /// recovery.rs removes them before any nix-env runs on the profile.
    pub fn interrupted_links(&self) -> Vec<PathBuf> {
        let current = std::fs::read_link(self.link()).ok();
        self.links()
            .into_iter()
            .filter(|link| {
                link.file_name().and_then(|name| name.to_str()).is_some_and(|name| {
                    is_nix_env_temporary(name) && current.as_deref() != Some(Path::new(name))
                })
            })
            .collect()
    }

    /// Removes `interrupted_links`; what it removed.
    pub fn remove_interrupted_links(&self) -> Result<Vec<PathBuf>> {
        let links = self.interrupted_links();
        for link in &links {
            match std::fs::remove_file(link) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    return Err(err).with_context(|| format!("cannot remove {}", link.display()));
                }
                _ => {}
            }
        }
        Ok(links)
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

/// What `delete-generations` takes, as `nix-env --delete-generations` does:
/// generation numbers, or one of `+N`, `Nd` (older than N days) and `old`
/// (all but the current one) alone. `+N` keeps the last N counted from the
/// current generation, and every one after it (a rolled-back profile keeps
/// what it may switch to again): nix-env 2.8's deleteGenerationsGreaterThan
/// (src/libstore/profiles.cc) walks from the newest, deletes nothing until
/// it meets the current one, counts that and the N-1 before it, and
/// deletes the older ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    Numbers(Vec<u64>),
    KeepLast(u64),
    OlderThanDays(u64),
    Old,
}

impl Deletion {
    pub fn parse(specifiers: &[String]) -> Result<Deletion, UsageError> {
        let positive = |digits: &str| -> Option<u64> {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // nix-env's generation numbers are 32 bits wide.
            digits.parse::<u32>().ok().filter(|&n| n > 0).map(u64::from)
        };
        let invalid = |specifier: &str| {
            UsageError(format!(
                "invalid generation {}: give generation numbers, or one of +N (keep the \
                 current one and the N-1 before it), Nd (older than N days) and old, with N \
                 from 1 to {}",
                crate::formats::show(specifier),
                u32::MAX
            ))
        };
        if let [single] = specifiers {
            if single == "old" {
                return Ok(Deletion::Old);
            }
            if let Some(keep) = single.strip_prefix('+') {
                return positive(keep).map(Deletion::KeepLast).ok_or_else(|| invalid(single));
            }
            if let Some(days) = single.strip_suffix('d') {
                return positive(days).map(Deletion::OlderThanDays).ok_or_else(|| invalid(single));
            }
        }
        let mut numbers = Vec::new();
        for specifier in specifiers {
            match positive(specifier) {
                Some(number) => numbers.push(number),
                None if ["old"].contains(&specifier.as_str())
                    || specifier.starts_with('+')
                    || specifier.ends_with('d') =>
                {
                    return Err(UsageError(format!(
                        "{} must be given alone, without generation numbers",
                        crate::formats::show(specifier)
                    )))
                }
                None => return Err(invalid(specifier)),
            }
        }
        Ok(Deletion::Numbers(numbers))
    }

    /// The arguments of `nix-env --delete-generations`.
    pub fn nix_env_args(&self) -> Vec<String> {
        match self {
            Deletion::Numbers(numbers) => numbers.iter().map(u64::to_string).collect(),
            Deletion::KeepLast(n) => vec![format!("+{n}")],
            Deletion::OlderThanDays(n) => vec![format!("{n}d")],
            Deletion::Old => vec!["old".to_string()],
        }
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
    fn knows_the_temporary_links_of_nix_env() {
        for temporary in ["profile-10-link.tmp-6202-16749160", ".0_profile", ".12_profile"] {
            assert!(is_nix_env_temporary(temporary), "{temporary}");
        }
        for other in [
            "profile",
            "profile-10-link",
            "profile.lock",
            "profile-x-link.tmp-1-2",
            "._profile",
            ".0_profile-1-link",
            ".0_other",
        ] {
            assert!(!is_nix_env_temporary(other), "{other}");
        }
    }

    /// A profile directory as a killed `nix-env --set` leaves it: the
    /// temporary links are found, the generations and the profile are not.
    #[test]
    fn finds_what_a_killed_nix_env_left() {
        let dir = tempfile::tempdir().unwrap();
        let profile = Profile::new(dir.path(), "c");
        std::fs::create_dir(profile.dir()).unwrap();
        let link = |name: &str, target: &str| {
            std::os::unix::fs::symlink(target, profile.dir().join(name)).unwrap()
        };
        link("profile-1-link", "/nix/store/a");
        link("profile-2-link", "/nix/store/b");
        link("profile", "profile-2-link");
        link("profile-3-link.tmp-77-123", "/nix/store/c");
        link(".0_profile", "profile-3-link");
        let mut found: Vec<String> = profile
            .interrupted_links()
            .iter()
            .map(|l| l.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        found.sort();
        assert_eq!(found, [".0_profile", "profile-3-link.tmp-77-123"]);
        assert_eq!(profile.current_number().unwrap(), Some(2));
    }

    /// A profile that leads to a temporary link keeps it, and says so.
    #[test]
    fn a_profile_leading_to_no_generation_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let profile = Profile::new(dir.path(), "c");
        std::fs::create_dir(profile.dir()).unwrap();
        assert_eq!(profile.current_number().unwrap(), None);
        std::os::unix::fs::symlink("/nix/store/c", profile.dir().join("profile-3-link.tmp-7-1"))
            .unwrap();
        std::os::unix::fs::symlink("profile-3-link.tmp-7-1", profile.link()).unwrap();
        assert!(profile.interrupted_links().is_empty(), "the one it leads to is not taken away");
        let err = profile.current_number().unwrap_err().to_string();
        assert!(
            err.ends_with("leads to profile-3-link.tmp-7-1, which is not one of its generations"),
            "{err}"
        );
    }

    fn parse(args: &[&str]) -> Result<Deletion, UsageError> {
        Deletion::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn deletions_as_nix_env_takes_them() {
        assert_eq!(parse(&["1", "42"]).unwrap(), Deletion::Numbers(vec![1, 42]));
        assert_eq!(parse(&["+3"]).unwrap(), Deletion::KeepLast(3));
        assert_eq!(parse(&["+3"]).unwrap().nix_env_args(), ["+3"]);
        assert_eq!(parse(&["30d"]).unwrap(), Deletion::OlderThanDays(30));
        assert_eq!(parse(&["old"]).unwrap(), Deletion::Old);
        for bad in [
            &[""][..],
            &["-1"],
            &["--dry-run"],
            &["+"],
            &["d"],
            &["3x"],
            &["+3d"],
            &["1 2"],
            &["all"],
            &["0d"],
            &["+0"],
            &["0"],
            &["99999999999999999999"],
            &["4294967296"],
            &["+3", "4"],
            &["old", "2"],
            &["1", "30d"],
        ] {
            let err = parse(bad).unwrap_err();
            assert!(!err.0.contains('\n'), "{bad:?}: {}", err.0);
        }
    }
}
