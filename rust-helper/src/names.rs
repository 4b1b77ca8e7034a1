//! Container names: what LXC, hostnames, file names and lock names can all carry.

use crate::error::UsageError;

/// The longest name: a hostname label (RFC 1123) has at most 63 characters.
pub const MAX_NAME_LEN: usize = 63;

/// Accepts a name that is a valid hostname label: 1 to 63 ASCII letters,
/// digits and '-', not starting or ending with '-'. Such a name is also a safe
/// file name (no '/', no '.', no spaces) and cannot be taken for an option.
pub fn validate(name: &str) -> Result<(), UsageError> {
    let fits = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if fits {
        Ok(())
    } else {
        Err(UsageError(format!(
            "invalid container name {name:?}: use 1 to {MAX_NAME_LEN} letters, digits and '-', \
             not starting or ending with '-' (the name is also the container's hostname)"
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
