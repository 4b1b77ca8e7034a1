//! Whether a running container's guest has booted: what its systemd says
//! (`systemctl is-system-running --wait`: running, or degraded with units
//! that failed), within a time limit. For `start --wait`, `restart --wait`
//! and the health gate of activations.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::context::Context;

/// A guest that finished booting.
#[derive(Debug, PartialEq, Eq)]
pub enum Booted {
    Running,
    /// Up, with these units failed.
    Degraded(Vec<String>),
}

/// Waits until the guest of running container `name` has booted, for at
/// most `timeout`; a guest that has not by then is an error that says how
/// far it got and which jobs are still running.
pub fn wait_until_booted(ctx: &Context, name: &str, timeout: Duration) -> Result<Booted> {
    let deadline = Instant::now() + timeout;
    let lxc = ctx.lxc();
    let query = ["systemctl", "is-system-running", "--wait"].map(OsStr::new);
    let mut last = String::from("nothing yet");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let jobs = list(ctx, name, &["systemctl", "list-jobs", "--no-legend", "--plain"]);
            let waiting = if jobs.is_empty() {
                String::new()
            } else {
                format!("; still starting: {}", jobs.join(", "))
            };
            bail!(
                "container '{name}' did not finish booting within {} s: its systemd says {last}{waiting}",
                timeout.as_secs()
            );
        }
        // Before its init has set up /run/current-system the guest has no
        // systemctl yet: such a failure only means "not yet".
        if let Some(finished) = lxc.attach_with_timeout(name, &ctx.lxc_args, &query, left)? {
            let said = finished.stdout.trim().to_string();
            match said.as_str() {
                "running" => return Ok(Booted::Running),
                "degraded" => return Ok(Booted::Degraded(failed_units(ctx, name))),
                "" => {}
                other => last = format!("'{other}'"),
            }
        }
        std::thread::sleep(Duration::from_millis(100).min(left));
    }
}

/// The units the container's systemd lists as failed.
pub fn failed_units(ctx: &Context, name: &str) -> Vec<String> {
    list(ctx, name, &["systemctl", "--failed", "--plain", "--no-legend", "--no-pager"])
}

/// Whether the guest has a systemctl to ask (a NixOS guest, the tiny one).
pub fn has_systemctl(ctx: &Context, name: &str) -> bool {
    let probe = ["sh", "-c", "command -v systemctl"].map(OsStr::new);
    ctx.lxc()
        .attach_captured(name, &ctx.lxc_args, &probe)
        .is_ok_and(|finished| finished.status.success())
}

/// The first word of each line a command inside prints (unit names).
fn list(ctx: &Context, name: &str, command: &[&str]) -> Vec<String> {
    let command: Vec<&OsStr> = command.iter().map(OsStr::new).collect();
    ctx.lxc()
        .attach_captured(name, &ctx.lxc_args, &command)
        .map(|finished| {
            finished
                .stdout
                .lines()
                .filter_map(|line| line.split_whitespace().next())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
