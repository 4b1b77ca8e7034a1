//! The commands, grouped by what they touch, and what they share.

mod activation;
mod context;
mod egress;
mod generations;
mod grants;
mod lifecycle;
mod network_rules;
mod opening;
mod port_guard;
mod query;
mod readiness;
mod recovery;
mod runtime;
mod sync;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context as _, Result};

use crate::cli::{
    update_targets, ActivationFlags, Cli, Command, RootSettingsFlags, SourceFlags, Targets,
    UpdateTargets,
};
use crate::error::{one_line, usage};
use crate::manual;
use crate::nix::log::Verbosity;
use crate::settings::Settings;
use crate::spec::Source;
use crate::state::Store;
use activation::OnFailure;
pub use context::Context;
use lifecycle::{RootSays, RootSettings};

/// What a command names to build from: a container file, a system store
/// path (--system) or a flake's container (--flake); clap allows one at most.
fn source_of(name: &str, config: Option<PathBuf>, flags: SourceFlags) -> Result<Option<Source>> {
    if let Some(file) = config {
        return container_file(&file).map(Some);
    }
    if let Some(system) = flags.system {
        let real = std::fs::canonicalize(&system)
            .with_context(|| format!("system {} does not exist", system.display()))?;
        return Ok(Some(Source::System(real)));
    }
    Ok(flags.flake.map(|reference| {
        // nixos-container's convention: the attribute defaults to the container's name.
        if reference.contains('#') {
            Source::Flake(reference)
        } else {
            Source::Flake(format!("{reference}#{name}"))
        }
    }))
}

/// A container file given on the command line, as an absolute path. Symlinks
/// are kept, so a later `update` follows one that was moved.
fn container_file(file: &std::path::Path) -> Result<Source> {
    let absolute = std::path::absolute(file)
        .with_context(|| format!("cannot resolve container file {}", file.display()))?;
    match std::fs::metadata(&absolute) {
        Ok(meta) if meta.is_file() => Ok(Source::File(absolute)),
        Ok(_) => anyhow::bail!("container file {} is not a file", absolute.display()),
        Err(err) => {
            Err(err).with_context(|| format!("cannot read container file {}", absolute.display()))
        }
    }
}

/// The names of every container whose state (running or not) `wanted` accepts.
fn all_containers(ctx: &Context, running: Option<bool>) -> Result<Vec<String>> {
    let names: Vec<String> = ctx
        .store
        .read()?
        .containers
        .into_iter()
        .filter(|(_, record)| record.exists())
        .map(|(name, _)| name)
        .collect();
    let Some(running) = running else {
        return Ok(names);
    };
    let active = if names.is_empty() { Default::default() } else { ctx.lxc().active_states()? };
    Ok(names.into_iter().filter(|name| active.contains_key(name) == running).collect())
}

/// Runs `each` on every container named; one failure does not stop the
/// others. With one container its error is the command's; with several,
/// each failure is a line of its own and the error sums them up.
fn for_each(
    names: Vec<String>,
    verb: &str,
    each: impl Fn(&str) -> Result<ExitCode>,
) -> Result<ExitCode> {
    if let [single] = &names[..] {
        return each(single);
    }
    let mut failed = Vec::new();
    for name in &names {
        match each(name) {
            Ok(code) if code == ExitCode::SUCCESS => {}
            Ok(_) => failed.push(name.clone()),
            Err(err) => {
                eprintln!("{name}: {}", one_line(&err));
                failed.push(name.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(anyhow!(
            "{verb} failed for {} of {} containers: {}",
            failed.len(),
            names.len(),
            failed.join(", ")
        ))
    }
}

/// The containers `targets` names: its names, or with --all every container
/// whose running state `all_running` accepts (None: any).
fn targets(ctx: &Context, targets: Targets, all_running: Option<bool>) -> Result<Vec<String>> {
    if targets.all {
        all_containers(ctx, all_running)
    } else {
        Ok(targets.names)
    }
}

fn on_failure(flags: ActivationFlags) -> OnFailure {
    if flags.no_rollback {
        OnFailure::Keep
    } else {
        OnFailure::RollBack
    }
}

/// What root says for one container with these flags.
fn root_says(flags: RootSettingsFlags) -> RootSays {
    let settings = match (flags.lxc_config, flags.no_lxc_config) {
        (Some(file), _) => RootSettings::From(file),
        (None, true) => RootSettings::Drop,
        (None, false) => RootSettings::Keep,
    };
    RootSays { settings, autostart: flags.autostart.map(|choice| choice.decided()) }
}

/// How long a live switch waits for the guest's health (None: not at all).
fn health_timeout(flags: ActivationFlags) -> Option<std::time::Duration> {
    (flags.health_timeout > 0).then(|| std::time::Duration::from_secs(flags.health_timeout))
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Help { command, man } => {
            manual::print(command.as_deref(), *man)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Completions { shell } => {
            manual::completions(*shell);
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let (nix_args, lxc_args) = cli.command.parameters()?;
    let verbosity = match (cli.verbose, cli.quiet) {
        (true, _) => Verbosity::Verbose,
        (_, true) => Verbosity::Quiet,
        _ => Verbosity::Normal,
    };
    let settings = Settings::load(&cli.locations, verbosity)?;
    let health = match &cli.command {
        Command::Update { activation, .. }
        | Command::SwitchGeneration { activation, .. }
        | Command::Rollback { activation, .. } => health_timeout(*activation),
        _ => None,
    };
    let ctx = Context {
        store: Store::new(&settings.state_dir),
        settings,
        nix_args,
        lxc_args,
        health_timeout: health,
        build_network: Default::default(),
        flake_fetches: Default::default(),
    };
    match cli.command {
        Command::Create { name, config, source, root_settings, .. } => {
            let source = source_of(&name, config, source)?.expect("clap requires a source");
            if root_settings.no_lxc_config {
                return Err(usage(
                    "--no-lxc-config drops what an update kept: create has nothing to drop",
                ));
            }
            lifecycle::create(&ctx, &name, source, root_says(root_settings))?;
        }
        Command::Update { name, more, all, source, root_settings, activation, .. } => {
            let on_failure = on_failure(activation);
            let root = root_says(root_settings);
            let from_last_file = |name: &str| {
                lifecycle::update(&ctx, name, None, RootSays::NOTHING, on_failure)
                    .map(|()| ExitCode::SUCCESS)
            };
            return match update_targets(name, more, all, &source)? {
                UpdateTargets::One(name, file) => {
                    let source = source_of(&name, file, source)?;
                    lifecycle::update(&ctx, &name, source, root, on_failure)
                        .map(|()| ExitCode::SUCCESS)
                }
                UpdateTargets::Several(_) if !root.says_nothing() => Err(usage(
                    "--lxc-config, --no-lxc-config and --autostart change one container: name only that one",
                )),
                UpdateTargets::Several(names) => for_each(names, "update", from_last_file),
                UpdateTargets::All => {
                    for_each(all_containers(&ctx, None)?, "update", from_last_file)
                }
            };
        }
        Command::Destroy { name, force, keep_data, .. } => {
            lifecycle::destroy(&ctx, &name, force, keep_data)?
        }
        Command::ListGenerations { name, json } => generations::list(&ctx, &name, json.json)?,
        Command::DeleteGenerations { name, generations } => {
            generations::delete(&ctx, &name, &generations)?
        }
        Command::SwitchGeneration { name, generation, activation, .. } => {
            generations::switch(&ctx, &name, generation, on_failure(activation))?
        }
        Command::Rollback { name, activation, .. } => {
            generations::rollback(&ctx, &name, on_failure(activation))?
        }
        Command::Start { targets: named, wait, .. } => {
            let names = targets(&ctx, named, Some(false))?;
            if names.len() > 1 && runtime::in_foreground(&ctx) {
                return Err(usage("-l -F starts one container in the foreground, not several"));
            }
            if wait.wait && runtime::in_foreground(&ctx) {
                return Err(usage(
                    "--wait returns when a container has booted, -l -F when it stops",
                ));
            }
            return for_each(names, "start", |name| runtime::start(&ctx, name, wait.limit()));
        }
        Command::Restart { targets: named, wait } => {
            let names = targets(&ctx, named, None)?;
            return for_each(names, "restart", |name| runtime::restart(&ctx, name, wait.limit()));
        }
        Command::Logs { name, follow, lines } => return runtime::logs(&ctx, &name, follow, lines),
        Command::Login { name, .. } => return runtime::login(&ctx, &name),
        Command::Run { name, command, .. } => return runtime::run(&ctx, &name, &command),
        Command::Stop { targets: named, .. } => {
            let names = targets(&ctx, named, Some(true))?;
            return for_each(names, "stop", |name| runtime::stop(&ctx, name));
        }
        Command::Terminate { targets: named, .. } => {
            let names = targets(&ctx, named, Some(true))?;
            return for_each(names, "terminate", |name| runtime::terminate(&ctx, name));
        }
        Command::List { format, json, columns, no_header, .. } => {
            let format = if json { crate::cli::ListFormat::Json } else { format };
            query::list(&ctx, format, &columns, no_header)?
        }
        Command::ShowIp { name, json } => query::show_ip(&ctx, &name, json.json)?,
        Command::Exists { name } => return query::exists(&ctx, &name),
        Command::State { name, json } => query::state(&ctx, &name, json.json)?,
        Command::RepairState => recovery::repair_state(&ctx)?,
        Command::RepairNetwork => {
            port_guard::write_all(&ctx)?;
            egress::repair(&ctx)?;
            network_rules::repair(&ctx)?
        }
        Command::Sync { file, flake, prune, jobs, keep_going, dry_run, json, activation, nix } => {
            let mut activation_args =
                vec![format!("--health-timeout={}", activation.health_timeout)];
            if activation.no_rollback {
                activation_args.push("--no-rollback".to_string());
            }
            let nix_args = nix
                .nix_params
                .iter()
                .flat_map(|params| ["-n".to_string(), params.clone()])
                .collect();
            let request = sync::Request {
                file,
                flake,
                prune,
                jobs,
                keep_going,
                dry_run,
                json: json.json,
                nix_args,
                activation_args,
            };
            return sync::sync(&ctx, request);
        }
        Command::Help { .. } | Command::Completions { .. } => unreachable!("answered above"),
    }
    Ok(ExitCode::SUCCESS)
}
