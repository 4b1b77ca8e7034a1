//! nixcloud-container: manage unprivileged LXC containers running NixOS that
//! share the host's /nix/store. Run `nixcloud-container help` for the manual.

mod cli;
mod commands;
mod error;
mod lxc;
mod manual;
mod names;
mod network;
mod nix;
mod process;
mod profile;
mod settings;
mod spec;
mod state;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", error::one_line(&err));
            ExitCode::from(error::exit_code(&err))
        }
    }
}
