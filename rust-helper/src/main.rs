//! nixcloud-container: manage unprivileged LXC containers running NixOS that
//! share the host's /nix/store. Run `nixcloud-container help` for the manual.

mod capabilities;
mod cli;
mod commands;
mod context;
mod engine;
mod error;
mod formats;
mod ids;
mod layout;
mod lxc;
mod names;
mod nix;
mod profile;
mod ranges;
mod settings;
mod spec;
mod state;
mod system;
mod transfer;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

fn main() -> ExitCode {
    let started = std::time::Instant::now();
    let code = run();
    system::process::report_timing("total", started.elapsed());
    code
}

fn run() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            err.exit()
        }
        Err(err) => {
            eprintln!("{}", usage_line(&err.render().to_string()));
            return ExitCode::from(error::EXIT_USAGE);
        }
    };
    match cli::dispatch::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", error::one_line(&err));
            ExitCode::from(error::exit_code(&err))
        }
    }
}

/// clap's usage error as one line: its message (which may go on over a few
/// lines) and the usage of the command concerned.
fn usage_line(rendered: &str) -> String {
    let message: Vec<&str> =
        rendered.lines().map(str::trim).take_while(|line| !line.is_empty()).collect();
    let usage = rendered
        .lines()
        .find_map(|line| line.trim().strip_prefix("Usage: "))
        .map(|usage| format!(" (usage: {usage})"))
        .unwrap_or_default();
    format!("{}{usage}", message.join(" "))
}

#[cfg(test)]
mod tests {
    #[test]
    fn usage_errors_fold_into_one_line() {
        let rendered = "error: the following required arguments were not provided:\n  <NAME>\n\nUsage: nixcloud-container create <NAME> [CONFIG_PATH]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            super::usage_line(rendered),
            "error: the following required arguments were not provided: <NAME> (usage: nixcloud-container create <NAME> [CONFIG_PATH])"
        );
    }
}
