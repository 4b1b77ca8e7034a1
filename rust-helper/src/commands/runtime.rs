//! start, stop, terminate, login, run: the container's life under LXC.
//!
//! The common case costs one lxc-* call; the checks that explain a failure
//! (is it running? does its bridge exist?) run when they can help.

use std::process::{ExitCode, ExitStatus};

use anyhow::{bail, Result};

use super::Context;
use crate::error::EXIT_FAILURE;
use crate::lxc::Lxc;

pub fn start(ctx: &Context, name: &str, lxc_args: &[String]) -> Result<ExitCode> {
    let (lock, _) = ctx.lock_existing(name)?;
    check_bridges(ctx, name)?;
    ctx.check_reachable(name)?;
    let lxc = ctx.lxc();
    if lxc_args.iter().any(|arg| arg == "-F" || arg == "--foreground") {
        // The console stays on this terminal until the container stops; other
        // commands (update, stop) must not wait for that.
        drop(lock);
        return Ok(exit_code(lxc.start_foreground(name, lxc_args)?));
    }
    if let Err(err) = lxc.start(name, lxc_args) {
        if lxc.is_running(name)? {
            println!("container '{name}' is already running");
            return Ok(ExitCode::SUCCESS);
        }
        return Err(err.context(format!("cannot start container '{name}'")));
    }
    Ok(ExitCode::SUCCESS)
}

/// A clear error instead of LXC's when a bridge of the current generation is missing.
fn check_bridges(ctx: &Context, name: &str) -> Result<()> {
    let Some(current) = ctx.profile(name).current()? else {
        return Ok(());
    };
    let params = current.meta()?.params;
    let bridges = std::iter::once(params.hostonly.bridge).chain(params.internet.map(|i| i.bridge));
    for bridge in bridges {
        if !std::path::Path::new("/sys/class/net").join(&bridge).join("bridge").exists() {
            bail!(
                "cannot start container '{name}': bridge {bridge} does not exist on this host \
                 (nixcloud.containers.enable = true creates the default ones; a network.bridge of \
                 your own must be set up by the host's configuration)"
            );
        }
    }
    Ok(())
}

pub fn stop(ctx: &Context, name: &str, lxc_args: &[String]) -> Result<()> {
    halt(ctx, name, "stop", |lxc| lxc.stop(name, lxc_args))
}

pub fn terminate(ctx: &Context, name: &str, lxc_args: &[String]) -> Result<()> {
    halt(ctx, name, "terminate", |lxc| lxc.kill(name, lxc_args))
}

/// Stops a container with `how`; one that is not running is no error.
fn halt(ctx: &Context, name: &str, verb: &str, how: impl FnOnce(&Lxc) -> Result<()>) -> Result<()> {
    let (_lock, _) = ctx.lock_existing(name)?;
    let lxc = ctx.lxc();
    if let Err(err) = how(&lxc) {
        if !lxc.is_running(name)? {
            println!("container '{name}' is not running");
            return Ok(());
        }
        return Err(err.context(format!("cannot {verb} container '{name}'")));
    }
    Ok(())
}

pub fn login(ctx: &Context, name: &str, lxc_args: &[String]) -> Result<ExitCode> {
    ctx.existing(name)?;
    let status = ctx.lxc().login(name, lxc_args)?;
    attached(ctx, name, status)
}

pub fn run(ctx: &Context, name: &str, lxc_args: &[String], command: &[String]) -> Result<ExitCode> {
    ctx.existing(name)?;
    let status = ctx.lxc().attach(name, lxc_args, command)?;
    attached(ctx, name, status)
}

/// The exit code of an attached command, unless the failure was lxc-attach's
/// own because the container is not running.
fn attached(ctx: &Context, name: &str, status: ExitStatus) -> Result<ExitCode> {
    if !status.success() && !ctx.lxc().is_running(name)? {
        bail!(
            "container '{name}' is not running (start it with `nixcloud-container start {name}`)"
        );
    }
    Ok(exit_code(status))
}

fn exit_code(status: ExitStatus) -> ExitCode {
    match status.code() {
        Some(code) => ExitCode::from(code.clamp(0, 255) as u8),
        None => ExitCode::from(EXIT_FAILURE),
    }
}
