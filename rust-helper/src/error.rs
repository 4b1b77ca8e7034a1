//! The two kinds of failure and their exit codes.

use std::fmt;

/// Exit code of a command that could not be carried out (unknown container,
/// Nix or LXC failed, an address is taken, ...).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of bad input: arguments that no command could accept.
pub const EXIT_USAGE: u8 = 2;

/// Bad input: an invalid name, unsplittable parameters, a malformed
/// generation specifier. Reported with exit code 2, like clap's own errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand for a usage error as an `anyhow::Error`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// The exit code for an error: 2 when any cause is a usage error, else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|cause| cause.is::<UsageError>()) {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

/// The error as the single line the user sees: its causes joined by ": ",
/// with any line breaks (from Nix or LXC output) folded into spaces.
pub fn one_line(err: &anyhow::Error) -> String {
    let joined = format!("{err:#}");
    joined.split_whitespace().collect::<Vec<_>>().join(" ")
}
