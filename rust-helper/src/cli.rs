//! The command line: the seed's commands with the seed's argument shapes.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::UsageError;

#[derive(Parser, Debug)]
#[command(
    name = "nixcloud-container",
    version,
    about = "Manage unprivileged LXC containers running NixOS that share the host's /nix/store",
    long_about = None,
    disable_help_subcommand = true,
    after_help = "Run `nixcloud-container help` for the full manual: files, defaults, exit codes, examples."
)]
pub struct Cli {
    #[command(flatten)]
    pub locations: LocationArgs,

    /// Show the output of Nix and LXC as they run, not only when they fail.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// Where things live. Each falls back to the host configuration file, then to
/// the seed's default; tests and packagers move them with a flag or a variable.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Locations")]
pub struct LocationArgs {
    /// LXC's container directory [default: /var/lib/lxc].
    #[arg(long, global = true, env = "NIXCLOUD_CONTAINER_LXC_PATH", value_name = "DIR", value_parser = utf8_path)]
    pub lxc_path: Option<PathBuf>,

    /// Root of the per-container Nix profiles
    /// [default: /nix/var/nix/profiles/nixcloud-container].
    #[arg(long, global = true, env = "NIXCLOUD_CONTAINER_PROFILES_DIR", value_name = "DIR", value_parser = utf8_path)]
    pub profiles_dir: Option<PathBuf>,

    /// Directory of the state file and its locks [default: /var/lib/nixcloud-container].
    #[arg(long, global = true, env = "NIXCLOUD_CONTAINER_STATE_DIR", value_name = "DIR", value_parser = utf8_path)]
    pub state_dir: Option<PathBuf>,

    /// The host's settings (bridges, subnets, uid range), written by the NixOS
    /// module [default: /etc/nixcloud-container/host.json].
    #[arg(long, global = true, env = "NIXCLOUD_CONTAINER_HOST_CONFIG", value_name = "FILE", value_parser = utf8_path)]
    pub host_config: Option<PathBuf>,

    /// The Nix library of this toolkit (the `lib` directory).
    #[arg(long, global = true, env = "NIXCLOUD_CONTAINER_NIX_LIB", value_name = "DIR", value_parser = utf8_path)]
    pub nix_lib: Option<PathBuf>,

    /// A busybox binary that builds generations where no nixpkgs is at hand
    /// [default: `busybox` on PATH].
    #[arg(long, global = true, env = "NIXCLOUD_CONTAINER_BUSYBOX", value_name = "FILE", value_parser = utf8_path)]
    pub busybox: Option<PathBuf>,
}

/// `-n "<nix parameters>"`: split as a shell would, never run through one.
#[derive(Args, Debug, Clone, Default)]
pub struct NixParams {
    /// Parameters for Nix, as one string split like a shell would
    /// (e.g. -n "-I nixpkgs=/nixpkgs --show-trace").
    #[arg(
        short = 'n',
        long = "nix-params",
        value_name = "NIX_PARAMETERS",
        allow_hyphen_values = true
    )]
    pub nix_params: Vec<String>,
}

/// `-l "<lxc parameters>"`: split as a shell would, never run through one.
#[derive(Args, Debug, Clone, Default)]
pub struct LxcParams {
    /// Parameters for the lxc-* command this runs, as one string split like a
    /// shell would (e.g. -l "-F" or -l "--logfile /tmp/web.log -l DEBUG").
    #[arg(
        short = 'l',
        long = "lxc-params",
        value_name = "LXC_PARAMETERS",
        allow_hyphen_values = true
    )]
    pub lxc_params: Vec<String>,
}

/// A container name, checked before anything else is looked at.
fn container_name(text: &str) -> Result<String, String> {
    crate::names::validate(text).map(|()| text.to_string()).map_err(|err| err.0)
}

/// A generation number as nix-env writes them: digits only, 32 bits.
fn generation_number(text: &str) -> Result<u64, String> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u32>() {
        Ok(number) if digits && number > 0 => Ok(u64::from(number)),
        _ => Err(format!(
            "invalid generation {}: a generation number is 1 or more",
            crate::formats::show(text)
        )),
    }
}

/// A path that Nix and JSON can carry: clap refuses one that is not UTF-8.
fn utf8_path(text: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(text))
}

fn split_params(flag: &str, raw: &[String]) -> Result<Vec<String>, UsageError> {
    let mut words = Vec::new();
    for value in raw {
        let parsed = shell_words::split(value).map_err(|err| {
            UsageError(format!("cannot split {flag} {value:?} into parameters: {err}"))
        })?;
        words.extend(parsed);
    }
    Ok(words)
}

impl NixParams {
    pub fn words(&self) -> Result<Vec<String>, UsageError> {
        split_params("-n", &self.nix_params)
    }
}

impl LxcParams {
    pub fn words(&self) -> Result<Vec<String>, UsageError> {
        split_params("-l", &self.lxc_params)
    }
}

/// What `create` and `update` can build from instead of a container file.
#[derive(Args, Debug)]
pub struct SourceFlags {
    /// Deploy a prebuilt system (a store path with an executable `init`)
    /// instead of a container file, like nixos-container's --system-path.
    #[arg(long, value_name = "STORE_PATH", conflicts_with_all = ["config", "flake"], value_parser = utf8_path)]
    pub system: Option<PathBuf>,
    /// Build the flake's output nixcloudContainers.<NAME> (default: the
    /// container's name) instead of a container file.
    #[arg(long, value_name = "FLAKE_REF[#NAME]", conflicts_with = "config")]
    pub flake: Option<String>,
}

#[derive(Args, Debug)]
pub struct JsonFlag {
    /// Print JSON for scripts instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container from a container file (or a ready system) as generation 1.
    Create {
        /// Name of the new container (letters, digits and '-'; at most 63).
        #[arg(value_parser = container_name)]
        name: String,
        /// The container file: a NixOS module or a container attribute set.
        #[arg(
            value_name = "CONFIG_PATH",
            required_unless_present_any = ["system", "flake"],
            value_parser = utf8_path
        )]
        config: Option<PathBuf>,
        #[command(flatten)]
        instead: SourceFlags,
        #[command(flatten)]
        nix: NixParams,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// Build a new generation from the container file and make it current
    /// (creates the container when it does not exist; activates it when running).
    Update {
        #[arg(value_parser = container_name)]
        name: String,
        /// The container file; without it, the one the container was last built from.
        #[arg(value_name = "CONFIG_PATH", value_parser = utf8_path)]
        config: Option<PathBuf>,
        #[command(flatten)]
        instead: SourceFlags,
        #[command(flatten)]
        nix: NixParams,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// Remove a container: its LXC directory, its generations and its address.
    Destroy {
        #[arg(value_parser = container_name)]
        name: String,
        /// Kill a running container first instead of refusing.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// List a container's generations, marking the current one.
    ListGenerations {
        #[arg(value_parser = container_name)]
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Delete generations: numbers, `+N` (keep the last N), `Nd` (older than N days) or `old`.
    DeleteGenerations {
        #[arg(value_parser = container_name)]
        name: String,
        #[arg(required = true, value_name = "GENERATIONS", allow_hyphen_values = true)]
        generations: Vec<String>,
    },
    /// Make generation ID current (and activate it when the container runs).
    SwitchGeneration {
        #[arg(value_parser = container_name)]
        name: String,
        #[arg(value_name = "GENERATION_ID", value_parser = generation_number)]
        generation: u64,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// Make the previous generation current (and activate it when the container runs).
    Rollback {
        #[arg(value_parser = container_name)]
        name: String,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// Start a container (`-l -F` boots it in the foreground).
    Start {
        #[arg(value_parser = container_name)]
        name: String,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// Open a root shell inside a running container.
    Login {
        #[arg(value_parser = container_name)]
        name: String,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// Run a command inside a running container; exits with its status.
    Run {
        #[arg(value_parser = container_name)]
        name: String,
        #[command(flatten)]
        lxc: LxcParams,
        /// The command and its arguments (put `--` before a command that starts with '-').
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "COMMAND"
        )]
        command: Vec<String>,
    },
    /// Shut a container down cleanly.
    Stop {
        #[arg(value_parser = container_name)]
        name: String,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// Kill a container at once.
    Terminate {
        #[arg(value_parser = container_name)]
        name: String,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// One line per container: name, state, IPv4, current generation, autostart.
    List {
        #[command(flatten)]
        lxc: LxcParams,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Print a container's IPv4 address.
    ShowIp {
        #[arg(value_parser = container_name)]
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Exit 0 when the container exists, 1 when it does not.
    Exists {
        #[arg(value_parser = container_name)]
        name: String,
    },
    /// Print a container's state (RUNNING, STOPPED, ...).
    State {
        #[arg(value_parser = container_name)]
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Rebuild the state file from the containers' generations and LXC
    /// directories, after it was damaged (the old file is kept aside).
    RepairState,
    /// Print the manual, or the help of one command.
    Help {
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
}

impl Command {
    /// The words of the command's -n and -l parameters (none where it takes none).
    pub fn parameters(&self) -> Result<(Vec<String>, Vec<String>), UsageError> {
        let (nix, lxc) = match self {
            Command::Create { nix, lxc, .. } | Command::Update { nix, lxc, .. } => {
                (Some(nix), Some(lxc))
            }
            Command::Destroy { lxc, .. }
            | Command::SwitchGeneration { lxc, .. }
            | Command::Rollback { lxc, .. }
            | Command::Start { lxc, .. }
            | Command::Login { lxc, .. }
            | Command::Run { lxc, .. }
            | Command::Stop { lxc, .. }
            | Command::Terminate { lxc, .. }
            | Command::List { lxc, .. } => (None, Some(lxc)),
            Command::ListGenerations { .. }
            | Command::DeleteGenerations { .. }
            | Command::ShowIp { .. }
            | Command::Exists { .. }
            | Command::State { .. }
            | Command::RepairState
            | Command::Help { .. } => (None, None),
        };
        Ok((
            nix.map(NixParams::words).transpose()?.unwrap_or_default(),
            lxc.map(LxcParams::words).transpose()?.unwrap_or_default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("nixcloud-container").chain(args.iter().copied()))
            .unwrap_or_else(|err| panic!("{args:?}: {err}"))
    }

    #[test]
    fn the_seeds_argument_shapes_parse() {
        parse(&["create", "test", "./containerConfig.nix", "-n", "-I nixpkgs=/nixpkgs"]);
        parse(&["update", "test", "./containerConfig.nix", "-n", "-I nixpkgs=/nixpkgs"]);
        parse(&["start", "test", "-l", "-F"]);
        parse(&["delete-generations", "test", "+3", "30d", "4"]);
        parse(&["create", "web", "--flake", "/etc/containers#web"]);
        parse(&["update", "web", "--system", "/nix/store/x"]);
        parse(&["switch-generation", "test", "2"]);
        parse(&["list", "-l", "--active"]);
        let Command::Run { command, .. } = parse(&["run", "web", "ls", "-la"]).command else {
            panic!("not run")
        };
        assert_eq!(command, ["ls", "-la"]);
    }

    #[test]
    fn parameters_split_like_a_shell_without_one() {
        let Command::Create { nix, .. } =
            parse(&["create", "a", "f.nix", "-n", "-I 'nixpkgs=/a b' --arg x \"$(id)\""]).command
        else {
            panic!("not create")
        };
        assert_eq!(nix.words().unwrap(), ["-I", "nixpkgs=/a b", "--arg", "x", "$(id)"]);
        let Command::Start { lxc, .. } = parse(&["start", "a", "-l", "-F 'unclosed"]).command
        else {
            panic!("not start")
        };
        assert!(lxc.words().unwrap_err().0.contains("cannot split -l"));
    }
}
