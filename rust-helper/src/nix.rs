//! Nix: reading a spec, building a generation into a profile, and nix-env's
//! own generation machinery (switch, rollback, delete).

use std::path::Path;

use anyhow::{anyhow, Context, Result};

use crate::process::{describe_status, Finished, Tool};
use crate::profile::Profile;
use crate::spec::{Params, Source, Spec};

pub struct Nix<'a> {
    /// The toolkit's Nix library (lib/), whose cli.nix is the entry point.
    pub lib: &'a Path,
    /// The user's `-n` parameters, given to every Nix command.
    pub extra_args: &'a [String],
    pub verbose: bool,
}

impl Nix<'_> {
    fn entry(&self) -> std::path::PathBuf {
        self.lib.join("cli.nix")
    }

    /// What Nix must be told for `source`: flakes are experimental in the
    /// Nix versions this runs on.
    fn source_args(source: &Source) -> &'static [&'static str] {
        match source {
            Source::Flake(_) => &["--extra-experimental-features", "nix-command flakes"],
            Source::File(_) | Source::System(_) => &[],
        }
    }

    /// Evaluates the source's spec. Never imports nixpkgs, writes nothing.
    pub fn eval_spec(&self, source: &Source) -> Result<Spec> {
        let finished = Tool::new("nix-instantiate")
            .args(["--eval", "--strict", "--json"])
            .args(Self::source_args(source))
            .args(self.extra_args)
            .arg(self.entry())
            .args(["-A", "spec", "--argstr", "source"])
            .arg(source.to_json())
            .dies_with_helper()
            .output(self.verbose)?;
        check(&finished, || format!("cannot evaluate {source}"))?;
        serde_json::from_str(finished.stdout.trim())
            .with_context(|| format!("{source} gave a spec this helper cannot read"))
    }

    /// Builds a generation for `params` and makes it the profile's current
    /// one, in a single nix-env call (evaluation, build, profile switch). Nix
    /// reuses the last generation when the result is the same store path.
    pub fn build_generation(
        &self,
        profile: &Profile,
        params: &Params,
        busybox: &Path,
    ) -> Result<()> {
        let finished = Tool::new("nix-env")
            .arg("--profile")
            .arg(profile.link())
            .args(Self::source_args(&params.source))
            .args(self.extra_args)
            .arg("--file")
            .arg(self.entry())
            .args(["--argstr", "source"])
            .arg(params.source.to_json())
            .args(["--argstr", "params"])
            .arg(serde_json::to_string(params).expect("params serialize"))
            .args(["--argstr", "busybox"])
            .arg(busybox)
            .args(["--set", "--attr", "generation"])
            .dies_with_helper()
            .output(self.verbose)?;
        check(&finished, || format!("cannot build {}", params.source))
    }

    pub fn switch_generation(&self, profile: &Profile, number: u64) -> Result<()> {
        self.profile_op(profile, &["--switch-generation".to_string(), number.to_string()])
    }

    pub fn rollback(&self, profile: &Profile) -> Result<()> {
        self.profile_op(profile, &["--rollback".to_string()])
    }

    /// `specifiers` were checked by `profile::check_specifier`.
    pub fn delete_generations(&self, profile: &Profile, specifiers: &[String]) -> Result<()> {
        let mut args = vec!["--delete-generations".to_string()];
        args.extend(specifiers.iter().cloned());
        self.profile_op(profile, &args)
    }

    fn profile_op(&self, profile: &Profile, args: &[String]) -> Result<()> {
        let finished = Tool::new("nix-env")
            .arg("--profile")
            .arg(profile.link())
            .args(args)
            .dies_with_helper()
            .output(self.verbose)?;
        check(&finished, || format!("nix-env {}", args.join(" ")))
    }
}

/// Turns a failed Nix command into one error line carrying Nix's message.
fn check(finished: &Finished, what: impl FnOnce() -> String) -> Result<()> {
    if finished.status.success() {
        return Ok(());
    }
    let message = condense(&finished.stderr)
        .unwrap_or_else(|| format!("Nix failed with {}", describe_status(finished.status)));
    Err(anyhow!(message)).context(what())
}

/// Nix's error, shortened to what a single line can say: the `error:`
/// message, where it happened (`at file:line:col`), and for a failed build
/// the last line of the builder's log.
fn condense(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().map(str::trim).collect();
    let start = lines.iter().position(|line| line.starts_with("error:"))?;
    let mut message = lines[start].trim_start_matches("error:").trim().to_string();
    let rest = &lines[start + 1..];
    // A message that goes on over several lines ends at the first blank one.
    for line in rest.iter().take_while(|line| !line.is_empty()) {
        let noise = ["last ", "For full logs", "(use '--show-trace'"];
        if !line.starts_with('>') && !noise.iter().any(|prefix| line.starts_with(prefix)) {
            message.push(' ');
            message.push_str(line);
        }
    }
    if let Some(at) = rest.iter().find(|line| line.starts_with("at ") && line.ends_with(':')) {
        message.push_str(&format!(" ({})", at.trim_end_matches(':')));
    }
    let mut message = message.trim_end_matches(';').to_string();
    // A failed build's last words: newer Nix quotes the log after the error
    // ("> ..." lines), Nix 2.8 without a terminal prints it before.
    let quoted = rest.iter().rev().find(|line| line.starts_with('>') && line.len() > 1);
    let printed = || {
        let progress = ["building '", "these ", "this derivation", "/nix/store/", "warning:"];
        lines[..start]
            .iter()
            .rev()
            .find(|line| !line.is_empty() && !progress.iter().any(|p| line.starts_with(p)))
    };
    let log = match quoted {
        Some(line) => Some(line.trim_start_matches('>').trim()),
        None if message.starts_with("builder for") => printed().copied(),
        None => None,
    };
    if let Some(log) = log {
        message.push_str(&format!("; the build said: {log}"));
    }
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::condense;

    #[test]
    fn keeps_message_and_location_of_a_syntax_error() {
        let stderr = "error: syntax error, unexpected '}', expecting ';'\n\n       at /c/web.nix:3:1:\n\n            2| { autostart = true\n            3| }\n             | ^\n";
        assert_eq!(
            condense(stderr).unwrap(),
            "syntax error, unexpected '}', expecting ';' (at /c/web.nix:3:1)"
        );
    }

    #[test]
    fn keeps_a_thrown_message() {
        let stderr = "error: container file /c/web.nix: network: ip must be an IPv4 address, got int\n(use '--show-trace' to show detailed location information)\n";
        assert_eq!(
            condense(stderr).unwrap(),
            "container file /c/web.nix: network: ip must be an IPv4 address, got int"
        );
    }

    #[test]
    fn keeps_the_last_log_line_of_a_failed_build() {
        let stderr = "this derivation will be built:\n  /nix/store/x.drv\nbuilding '/nix/store/x.drv'...\nerror: builder for '/nix/store/x.drv' failed with exit code 1;\n       last 2 log lines:\n       > checking\n       > the system /nix/store/y has no executable init\n       For full logs, run 'nix log /nix/store/x.drv'.\n";
        assert_eq!(
            condense(stderr).unwrap(),
            "builder for '/nix/store/x.drv' failed with exit code 1; the build said: the system /nix/store/y has no executable init"
        );
    }

    #[test]
    fn keeps_the_log_line_that_nix_2_8_prints_before_the_error() {
        let stderr = "this derivation will be built:\n  /nix/store/x.drv\nbuilding '/nix/store/x.drv'...\nthe system /nix/store/y has no executable init\nerror: builder for '/nix/store/x.drv' failed with exit code 1\n";
        assert_eq!(
            condense(stderr).unwrap(),
            "builder for '/nix/store/x.drv' failed with exit code 1; the build said: the system /nix/store/y has no executable init"
        );
    }

    #[test]
    fn nothing_without_an_error_line() {
        assert_eq!(condense("warning: something\n"), None);
    }
}
