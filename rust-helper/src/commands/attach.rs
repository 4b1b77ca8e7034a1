//! login, run, logs: into a running container.

use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};

use super::exit_code;
use crate::context::Context;
use crate::engine::readiness::SystemdTools;

pub fn login(ctx: &Context, name: &str) -> Result<ExitCode> {
    ensure_running(ctx, name)?;
    Ok(exit_code(ctx.lxc().login(name, &ctx.lxc_args)?))
}

pub fn run(ctx: &Context, name: &str, command: &[String]) -> Result<ExitCode> {
    ensure_running(ctx, name)?;
    Ok(exit_code(ctx.lxc().attach(name, &ctx.lxc_args, command)?))
}

/// Shows container `name`'s journal, as `journalctl` inside does.
pub fn logs(ctx: &Context, name: &str, follow: bool, lines: Option<u64>) -> Result<ExitCode> {
    ensure_running(ctx, name)?;
    let current =
        ctx.profile(name).current()?.context("the container has no current generation")?;
    let Some(journalctl) = SystemdTools::of(&current)?.and_then(|tools| tools.journalctl()) else {
        bail!(
            "container '{name}' has no journal: its system has no systemd/bin/journalctl (a NixOS \
             guest has; see `nixcloud-container run {name} ...` for the logs of other systems)"
        );
    };
    let mut command = vec![journalctl.display().to_string(), "--no-pager".to_string()];
    if let Some(lines) = lines {
        command.push(format!("--lines={lines}"));
    }
    if follow {
        command.push("--follow".to_string());
    }
    Ok(exit_code(ctx.lxc().attach(name, &ctx.lxc_args, &command)?))
}

/// Fails, in one line, unless container `name` exists and runs: lxc-attach
/// would say it on our terminal in words of its own.
fn ensure_running(ctx: &Context, name: &str) -> Result<()> {
    ctx.existing(name)?;
    if !ctx.lxc().is_running(name)? {
        bail!(
            "container '{name}' is not running (start it with `nixcloud-container start {name}`)"
        );
    }
    Ok(())
}
