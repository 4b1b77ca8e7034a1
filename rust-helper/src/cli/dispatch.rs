//! From the command line to the commands: each of clap's commands, its
//! options turned into the plain ones its command takes, run in a context
//! made from the host's settings.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use super::manual;
use super::{update_targets, ActivationFlags, Cli, Command, RootSettingsFlags, SourceFlags};
use crate::commands::{self, list, SourceOptions, Targets};
use crate::context::Context;
use crate::engine::activation::OnFailure;
use crate::engine::generation::{RootSays, RootSettings};
use crate::error::usage;
use crate::settings::{Settings, Verbosity};

/// Runs the command `cli` names.
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
    let settings = Settings::load(&cli.locations.into(), verbosity)?;
    let health = match &cli.command {
        Command::Update { activation, .. }
        | Command::SwitchGeneration { activation, .. }
        | Command::Rollback { activation, .. } => health_timeout(*activation),
        _ => None,
    };
    let ctx = Context::new(settings, nix_args, lxc_args, health);
    let ctx = &ctx;
    match cli.command {
        Command::Create { name, config, source, root_settings, .. } => commands::create::run(
            ctx,
            &name,
            source_options(config, source),
            root_says(root_settings),
        )?,
        Command::Update { name, more, all, source, root_settings, activation, .. } => {
            let targets = update_targets(name, more, all, &source)?;
            let options = source_options(None, source);
            let root = root_says(root_settings);
            return commands::update::run(ctx, targets, options, root, on_failure(activation));
        }
        Command::Destroy { name, force, keep_data, .. } => {
            commands::destroy::destroy(ctx, &name, force, keep_data)?
        }
        Command::ListGenerations { name, json } => {
            commands::generations::list(ctx, &name, json.json)?
        }
        Command::DeleteGenerations { name, generations } => {
            commands::generations::delete(ctx, &name, &generations)?
        }
        Command::SwitchGeneration { name, generation, activation, .. } => {
            commands::generations::switch(ctx, &name, generation, on_failure(activation))?
        }
        Command::Rollback { name, activation, .. } => {
            commands::generations::rollback(ctx, &name, on_failure(activation))?
        }
        Command::Start { targets, wait, .. } => {
            return commands::start::start_all(ctx, plain(targets), wait.limit())
        }
        Command::Restart { targets, wait } => {
            return commands::start::restart_all(ctx, plain(targets), wait.limit())
        }
        Command::Autostart { jobs } => return commands::autostart::run(ctx, jobs),
        Command::Logs { name, follow, lines } => {
            return commands::attach::logs(ctx, &name, follow, lines)
        }
        Command::Login { name, .. } => return commands::attach::login(ctx, &name),
        Command::Run { name, command, .. } => return commands::attach::run(ctx, &name, &command),
        Command::Stop { targets, .. } => return commands::stop::stop_all(ctx, plain(targets)),
        Command::Terminate { targets, .. } => {
            return commands::stop::terminate_all(ctx, plain(targets))
        }
        Command::List { format, json, columns, no_header, .. } => {
            let format = if json { list::Format::Json } else { format };
            list::list(ctx, format, &columns, no_header)?
        }
        Command::ShowIp { name, json } => commands::show::show_ip(ctx, &name, json.json)?,
        Command::Exists { name } => return commands::show::exists(ctx, &name),
        Command::State { name, json } => commands::show::state(ctx, &name, json.json)?,
        Command::Export { name, file, running } => {
            let target = commands::export::Target::from_argument(&file);
            commands::export::export(ctx, &name, target, running)?
        }
        Command::Import { file, name, sha256, plan, root_settings, .. } => {
            let input = commands::import::Input::from_argument(&file);
            let root = root_says(root_settings);
            commands::import::import(
                ctx,
                commands::import::Request { input, name, root, sha256, plan },
            )?
        }
        Command::Move { name, destination, ssh, remote } => {
            let request = commands::move_::Request {
                ssh: command_words("--ssh", &ssh)?,
                remote: command_words("--remote", &remote)?,
                name,
                destination,
            };
            commands::move_::move_container(ctx, &request)?
        }
        Command::RepairState => commands::repair::repair_state(ctx)?,
        Command::RepairNetwork => commands::repair::repair_network(ctx)?,
        Command::RepairNames => commands::repair::repair_names(ctx)?,
        Command::Sync {
            file,
            flake,
            prune,
            source,
            adopt,
            jobs,
            keep_going,
            dry_run,
            json,
            activation,
            nix,
        } => {
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
            let request = commands::sync::Request {
                file,
                flake,
                prune,
                source,
                adopt,
                jobs,
                keep_going,
                dry_run,
                json: json.json,
                nix_args,
                activation_args,
            };
            return commands::sync::sync(ctx, request);
        }
        Command::Help { .. } | Command::Completions { .. } => unreachable!("answered above"),
    }
    Ok(ExitCode::SUCCESS)
}

fn plain(targets: super::Targets) -> Targets {
    Targets { names: targets.names, all: targets.all }
}

fn source_options(file: Option<std::path::PathBuf>, flags: SourceFlags) -> SourceOptions {
    SourceOptions { file, system: flags.system, flake: flags.flake }
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

/// The words of a command given as `flag` (`move --ssh`), split as a shell
/// would.
fn command_words(flag: &str, text: &str) -> Result<Vec<String>> {
    let words = shell_words::split(text)
        .map_err(|err| usage(format!("cannot split {flag} {text:?}: {err}")))?;
    if words.is_empty() {
        return Err(usage(format!("{flag} names no command")));
    }
    Ok(words)
}

/// How long a live switch waits for the guest's health (None: not at all).
fn health_timeout(flags: ActivationFlags) -> Option<Duration> {
    (flags.health_timeout > 0).then(|| Duration::from_secs(flags.health_timeout))
}
