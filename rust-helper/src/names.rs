//! Container names: what LXC, hostnames, file names and lock names can all carry.

use crate::error::UsageError;
use crate::formats::{show, Format};

/// Accepts a name that is a valid hostname label (lib/formats.json): 1 to 63
/// ASCII letters, digits and '-', not starting or ending with '-'. Such a
/// name is also a safe file name (no '/', no '.', no spaces) and cannot be
/// taken for an option.
pub fn validate(name: &str) -> Result<(), UsageError> {
    if Format::ContainerName.matches(name) {
        Ok(())
    } else {
        Err(UsageError(format!(
            "invalid container name {}: use {} (the name is also the container's hostname)",
            show(name),
            Format::ContainerName.description()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hostname_labels() {
        for name in ["web", "a", "web-1", "0db", "Web2", &"x".repeat(63)] {
            assert!(validate(name).is_ok(), "{name} should be accepted");
        }
    }

    #[test]
    fn refuses_what_lxc_hostnames_or_paths_cannot_carry() {
        let long = "x".repeat(64);
        for name in [
            "", "-web", "web-", "a/b", "..", ".", "a b", "a.b", "a_b", "a\nb", "a\u{7}b", "wéb",
            "$(id)", "web;rm", &long,
        ] {
            let err = validate(name).expect_err(name);
            assert!(err.0.starts_with("invalid container name"), "{}", err.0);
            assert!(!err.0.contains('\n'), "one line: {}", err.0);
        }
    }
}
