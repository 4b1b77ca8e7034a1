//! Whether a running container's guest has booted: what its systemd says
//! (`systemctl is-system-running --wait`: running, or degraded with units
//! that failed), within a time limit. For `start --wait`, `restart --wait`,
//! and activations, which wait for a guest still booting and gate a switch
//! on the guest's health.
//!
//! The systemd tools are run inside by their store paths in a generation's
//! system (`SystemdTools`), never looked up in the guest: a guest early in
//! its boot has no /bin and no /run/current-system yet (NixOS makes both in
//! stage 2, after LXC has started its init), and a generation's closure is
//! in the container's store view from its start or live switch on.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::context::Context;
use crate::profile::Generation;

/// A guest that finished booting.
#[derive(Debug, PartialEq, Eq)]
pub enum Booted {
    Running,
    /// Up, with these units failed.
    Degraded(Vec<String>),
}

/// The systemd tools of a generation's system, as paths inside the
/// container: `<system>/systemd/bin/...`, where NixOS's toplevel links the
/// systemd it runs (nixos/modules/system/activation/top-level.nix: `ln -s
/// "$systemd" $out/systemd`, systemd = config.systemd.package).
pub struct SystemdTools {
    bin: PathBuf,
}

impl SystemdTools {
    /// Those of `generation`'s system; None for a system without a
    /// systemctl (nothing in it can say whether it has booted).
    pub fn of(generation: &Generation) -> Result<Option<SystemdTools>> {
        let bin = generation.meta()?.system.join("systemd/bin");
        // A store path: the host reads what the container will run.
        Ok(bin.join("systemctl").is_file().then_some(SystemdTools { bin }))
    }

    pub fn systemctl(&self) -> PathBuf {
        self.bin.join("systemctl")
    }

    /// Its journalctl, if the system has one.
    pub fn journalctl(&self) -> Option<PathBuf> {
        Some(self.bin.join("journalctl")).filter(|path| path.is_file())
    }

    /// `systemctl <args>` as a command line inside the container.
    fn systemctl_command(&self, args: &[&str]) -> Vec<std::ffi::OsString> {
        std::iter::once(self.systemctl().into_os_string())
            .chain(args.iter().map(|arg| OsStr::new(arg).to_os_string()))
            .collect()
    }
}

/// Waits until the guest of running container `name` has booted, for at
/// most `timeout`, asking `tools`; `on_waiting` is called once when the
/// first answer is that it still boots. A guest that has not booted by then
/// is an error that says how far it got and which jobs are still running.
pub fn wait_until_booted(
    ctx: &Context,
    name: &str,
    tools: &SystemdTools,
    timeout: Duration,
    on_waiting: impl FnOnce(),
) -> Result<Booted> {
    let deadline = Instant::now() + timeout;
    let lxc = ctx.lxc();
    // The first question is answered at once; the ones after it wait in
    // the guest until its boot is over (or they are killed at the deadline).
    let now = tools.systemctl_command(&["is-system-running"]);
    let waiting = tools.systemctl_command(&["is-system-running", "--wait"]);
    let mut on_waiting = Some(on_waiting);
    let mut last = String::from("nothing yet");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let jobs = list(ctx, name, tools, &["list-jobs", "--no-legend", "--plain"]);
            let still = if jobs.is_empty() {
                String::new()
            } else {
                format!("; still starting: {}", jobs.join(", "))
            };
            bail!(
                "container '{name}' did not finish booting within {} s: its systemd says {last}{still}",
                timeout.as_secs()
            );
        }
        let query = if on_waiting.is_some() { &now } else { &waiting };
        let query: Vec<&OsStr> = query.iter().map(|arg| arg.as_os_str()).collect();
        // Before its systemd runs, systemctl fails: that only means "not yet".
        if let Some(finished) = lxc.attach_with_timeout(name, &ctx.lxc_args, &query, left)? {
            let said = finished.stdout.trim().to_string();
            match said.as_str() {
                "running" => return Ok(Booted::Running),
                "degraded" => return Ok(Booted::Degraded(failed_units(ctx, name, tools))),
                "" => {}
                other => last = format!("'{other}'"),
            }
        }
        match on_waiting.take() {
            Some(say) => say(),
            None => std::thread::sleep(Duration::from_millis(100).min(left)),
        }
    }
}

/// The units the container's systemd lists as failed.
pub fn failed_units(ctx: &Context, name: &str, tools: &SystemdTools) -> Vec<String> {
    list(ctx, name, tools, &["--failed", "--plain", "--no-legend", "--no-pager"])
}

/// The first word of each line `systemctl <args>` inside prints (unit names).
fn list(ctx: &Context, name: &str, tools: &SystemdTools, args: &[&str]) -> Vec<String> {
    let command = tools.systemctl_command(args);
    let command: Vec<&OsStr> = command.iter().map(|arg| arg.as_os_str()).collect();
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
