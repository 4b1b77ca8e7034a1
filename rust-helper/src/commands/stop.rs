//! stop, terminate: a container's life under LXC ends.

use std::process::ExitCode;

use anyhow::{Context as _, Result};

use super::{for_each, Targets};
use crate::context::Context;
use crate::engine::opening;
use crate::lxc::{Halted, Lxc};

/// `stop`: `targets` (with --all those that run), shut down cleanly.
pub fn stop_all(ctx: &Context, targets: Targets) -> Result<ExitCode> {
    for_each(super::targets(ctx, targets, Some(true))?, "stop", |name| stop(ctx, name))
}

/// `terminate`: `targets` (with --all those that run), killed.
pub fn terminate_all(ctx: &Context, targets: Targets) -> Result<ExitCode> {
    for_each(super::targets(ctx, targets, Some(true))?, "terminate", |name| terminate(ctx, name))
}

/// Shuts container `name` down cleanly (restart too).
pub fn stop(ctx: &Context, name: &str) -> Result<ExitCode> {
    halt(ctx, name, "stop", |lxc| lxc.stop(name, &ctx.lxc_args))
}

fn terminate(ctx: &Context, name: &str) -> Result<ExitCode> {
    halt(ctx, name, "terminate", |lxc| lxc.kill(name, &ctx.lxc_args))
}

/// Stops a container with `how`; one that is not running is no error.
fn halt(
    ctx: &Context,
    name: &str,
    verb: &str,
    how: impl FnOnce(&Lxc) -> Result<Halted>,
) -> Result<ExitCode> {
    let (_lock, _) = opening::lock_existing(ctx, name)?;
    match how(&ctx.lxc()).with_context(|| format!("cannot {verb} container '{name}'"))? {
        Halted::Now => {}
        Halted::WasNotRunning => println!("container '{name}' is not running"),
    }
    super::stopped(ctx, name)?;
    Ok(ExitCode::SUCCESS)
}
