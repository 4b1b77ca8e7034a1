//! The command line: the seed's commands with the seed's argument shapes.
//! This is the one definition of the commands: `help`, the man page, the
//! completions and the table of docs/commands.md (checked by a test) come
//! from it.

use std::path::PathBuf;

pub mod dispatch;
pub mod manual;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands::list;
use crate::commands::update::UpdateTargets;
use crate::error::UsageError;
use crate::settings::Locations;

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
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,

    /// Show no progress line while Nix builds.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// Where things live. Each falls back to the host configuration file, then to
/// the seed's default; tests and packagers move them with a flag or a variable.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Locations")]
pub struct LocationArgs {
    /// LXC's container directory [default: /var/lib/lxc].
    #[arg(
        long,
        global = true,
        env = "NIXCLOUD_CONTAINER_LXC_PATH",
        value_name = "dir",
        value_parser = utf8_path
    )]
    pub lxc_path: Option<PathBuf>,

    /// Root of the per-container Nix profiles
    /// [default: /nix/var/nix/profiles/nixcloud-container].
    #[arg(
        long,
        global = true,
        env = "NIXCLOUD_CONTAINER_PROFILES_DIR",
        value_name = "dir",
        value_parser = utf8_path
    )]
    pub profiles_dir: Option<PathBuf>,

    /// Directory of the state file, its locks and scratch space
    /// [default: /var/lib/nixcloud-container].
    #[arg(
        long,
        global = true,
        env = "NIXCLOUD_CONTAINER_STATE_DIR",
        value_name = "dir",
        value_parser = utf8_path
    )]
    pub state_dir: Option<PathBuf>,

    /// The host's settings (bridges, subnets, uid range), written by the NixOS
    /// module [default: /etc/nixcloud-container/host.json].
    #[arg(
        long,
        global = true,
        env = "NIXCLOUD_CONTAINER_HOST_CONFIG",
        value_name = "file",
        value_parser = utf8_path
    )]
    pub host_config: Option<PathBuf>,

    /// The Nix library of this toolkit (its `lib` directory).
    #[arg(
        long,
        global = true,
        env = "NIXCLOUD_CONTAINER_NIX_LIB",
        value_name = "dir",
        value_parser = utf8_path
    )]
    pub nix_lib: Option<PathBuf>,

    /// A busybox binary that builds generations where no nixpkgs is at hand
    /// [default: `busybox` on PATH].
    #[arg(
        long,
        global = true,
        env = "NIXCLOUD_CONTAINER_BUSYBOX",
        value_name = "file",
        value_parser = utf8_path
    )]
    pub busybox: Option<PathBuf>,
}

impl From<LocationArgs> for Locations {
    fn from(args: LocationArgs) -> Locations {
        Locations {
            lxc_path: args.lxc_path,
            profiles_dir: args.profiles_dir,
            state_dir: args.state_dir,
            host_config: args.host_config,
            nix_lib: args.nix_lib,
            busybox: args.busybox,
        }
    }
}

/// `-n "<nix parameters>"`: split as a shell would, never run through one.
#[derive(Args, Debug, Clone, Default)]
pub struct NixParams {
    /// Parameters for Nix, as one string split like a shell would
    /// (e.g. -n "-I nixpkgs=/nixpkgs --show-trace").
    #[arg(
        short = 'n',
        long = "nix-params",
        value_name = "nix parameters",
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
        value_name = "lxc parameters",
        allow_hyphen_values = true
    )]
    pub lxc_params: Vec<String>,
}

/// A number of things done side by side: 0 would do nothing.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{text:?} is not a number from 1 up")),
    }
}

/// A container name, checked before anything else is looked at.
fn container_name(text: &str) -> Result<String, String> {
    crate::names::validate(text).map(|()| text.to_string()).map_err(|err| err.0)
}

/// The name of a sync's source: a word of letters, digits, '-', '_' and
/// '.', as the state records it beside the container.
fn source_name(text: &str) -> Result<String, String> {
    let word = text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if word && !text.is_empty() && text.len() <= 100 {
        Ok(text.to_string())
    } else {
        Err(format!(
            "invalid source name {}: use 1 to 100 letters, digits, '-', '_' and '.'",
            crate::formats::show(text)
        ))
    }
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

/// `list --format`: the names of `list::Format`.
fn list_format() -> impl TypedValueParser<Value = list::Format> {
    PossibleValuesParser::new(list::Format::ALL.map(list::Format::key)).map(|key| {
        *list::Format::ALL.iter().find(|format| format.key() == key).expect("a possible value")
    })
}

/// `list --columns`: the names of `list::Column`.
fn list_column() -> impl TypedValueParser<Value = list::Column> {
    PossibleValuesParser::new(list::Column::ALL.map(list::Column::key)).map(|key| {
        *list::Column::ALL.iter().find(|column| column.key() == key).expect("a possible value")
    })
}

/// A SHA-256 as `export` prints it: 64 hexadecimal digits.
fn sha256_hex(text: &str) -> Result<String, String> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!("{} is not a SHA-256 (64 hexadecimal digits)", crate::formats::show(text)))
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
    #[arg(long, value_name = "store path", conflicts_with = "flake", value_parser = utf8_path)]
    pub system: Option<PathBuf>,
    /// Build the flake's output nixcloudContainers.<name> (default: the
    /// container's name) instead of a container file.
    #[arg(long, value_name = "flake ref[#name]")]
    pub flake: Option<String>,
}

/// Whether a container starts with the host, as root decides it.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutostartChoice {
    Yes,
    No,
    /// As the container file says (autostart).
    File,
}

impl AutostartChoice {
    pub fn decided(self) -> Option<bool> {
        match self {
            AutostartChoice::Yes => Some(true),
            AutostartChoice::No => Some(false),
            AutostartChoice::File => None,
        }
    }
}

/// What root decides for one container besides its file (create, update).
#[derive(Args, Debug, Clone)]
pub struct RootSettingsFlags {
    /// Root's extra LXC settings for this container (lxc.container.conf(5)
    /// lines), from this file, now and at later updates; copied into each
    /// generation, applied at its next start. Never from a container file.
    #[arg(long, value_name = "file", value_parser = utf8_path)]
    pub lxc_config: Option<PathBuf>,
    /// Drop the extra LXC settings --lxc-config gave (update).
    #[arg(long, conflicts_with = "lxc_config")]
    pub no_lxc_config: bool,
    /// Whether it starts with the host, whatever its file says (yes, no), or
    /// as its file says (file, the default); kept for later updates.
    #[arg(long, value_enum, value_name = "yes|no|file")]
    pub autostart: Option<AutostartChoice>,
}

impl SourceFlags {
    fn given(&self) -> bool {
        self.system.is_some() || self.flake.is_some()
    }
}

/// The containers a command acts on: names, or all of them.
#[derive(Args, Debug)]
pub struct Targets {
    /// The containers.
    #[arg(
        value_name = "container-name",
        required_unless_present = "all",
        value_parser = container_name
    )]
    pub names: Vec<String>,
    /// Every container.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
}

/// Waiting for a started guest to boot.
#[derive(Args, Debug, Clone, Copy)]
pub struct Wait {
    /// Return when the guest has booted: when its systemd says running, or
    /// degraded (the failed units are named). A guest that has not within
    /// --timeout is a failure that names what is still starting.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, value_name = "seconds", default_value_t = 120, requires = "wait")]
    pub timeout: u64,
}

impl Wait {
    /// How long to wait, if at all.
    pub fn limit(self) -> Option<std::time::Duration> {
        self.wait.then(|| std::time::Duration::from_secs(self.timeout))
    }
}

/// How a live switch is judged, and what one that fails leaves current.
#[derive(Args, Debug, Clone, Copy)]
pub struct ActivationFlags {
    /// Keep a generation whose activation failed current, as nixos-rebuild
    /// does, instead of going back to the one before.
    #[arg(long)]
    pub no_rollback: bool,
    /// Before a live switch, wait this long for a guest that still boots
    /// (it is not switched if it does not finish); after it, wait this long
    /// for the guest to report that it runs (systemctl is-system-running
    /// --wait): units that failed since, or a guest still starting then,
    /// fail the switch. 0: do not wait.
    #[arg(long, value_name = "seconds", default_value_t = 120)]
    pub health_timeout: u64,
}

#[derive(Args, Debug)]
pub struct JsonFlag {
    /// Print JSON for scripts instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum Command {
    /// Create a container from a container file as generation 1.
    ///
    /// Build generation 1 of the container and register it with LXC
    /// (lxc-create; -l goes there). Names are host names: 1 to 63 letters,
    /// digits and '-', the same in any case. Fails, changing nothing, if the
    /// name is taken. With --system, deploy a prebuilt system instead of a
    /// container file; with --flake, the flake's nixcloudContainers.<name>.
    Create {
        #[arg(value_name = "container-name", value_parser = container_name)]
        name: String,
        /// The container file: a NixOS module or a container attribute set.
        #[arg(
            value_name = "config-path",
            required_unless_present_any = ["system", "flake"],
            conflicts_with_all = ["system", "flake"],
            value_parser = utf8_path
        )]
        config: Option<PathBuf>,
        #[command(flatten)]
        source: SourceFlags,
        #[command(flatten)]
        root_settings: RootSettingsFlags,
        #[command(flatten)]
        nix: NixParams,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// Build a new generation and make it current.
    ///
    /// Build a new generation of the container from the container file, or,
    /// without one, from the file it was last built from, and make it
    /// current; a container that does not exist is created. If the container
    /// runs, the new generation is activated inside it (switch-to-configuration
    /// switch, through lxc-attach; -l goes there), as nixos-rebuild switch
    /// would on a host, once its guest has booted; if activation fails, the
    /// previous generation is current and active again. A stopped container boots the current
    /// generation at its next start; changed LXC settings apply at the next
    /// start. Several containers (or --all) are each rebuilt from their last
    /// file; a path has a '/' or a '.', which no name has.
    Update {
        #[arg(
            value_name = "container-name",
            required_unless_present = "all",
            value_parser = container_name
        )]
        name: Option<String>,
        /// The container file; or more containers to update.
        #[arg(value_name = "config-path|container-name")]
        more: Vec<String>,
        /// Every container, each from the file it was last built from.
        #[arg(long, conflicts_with_all = ["name", "more", "system", "flake", "lxc_config", "no_lxc_config", "autostart"])]
        all: bool,
        #[command(flatten)]
        activation: ActivationFlags,
        #[command(flatten)]
        source: SourceFlags,
        #[command(flatten)]
        root_settings: RootSettingsFlags,
        #[command(flatten)]
        nix: NixParams,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// Remove a container: its LXC directory, its generations and its address.
    ///
    /// Remove the container's LXC directory (lxc-destroy; -l goes there), its
    /// generations and its addresses, also what is left of a container whose
    /// generations are gone. Refused while the container runs, unless
    /// --force, which kills it first.
    Destroy {
        #[arg(value_name = "container-name", value_parser = container_name)]
        name: String,
        /// Kill a running container first instead of refusing.
        #[arg(long)]
        force: bool,
        /// Keep the container's data directory (its bind mounts' own host
        /// paths); a new container of its name is refused while it is there.
        #[arg(long)]
        keep_data: bool,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// List a container's generations, marking the current one.
    ///
    /// The generations, oldest first: number, date, address, system; the
    /// current one is marked.
    ListGenerations {
        #[arg(value_name = "container-name", value_parser = container_name)]
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Delete generations, as nix-env --delete-generations does.
    ///
    /// Delete generations: numbers, or one of +N (keep the current one and
    /// the N-1 before it, and any after it: nix-env's last N, counted from
    /// the current one), Nd (older than N days) and old (all but the
    /// current one), alone. The current generation is never deleted.
    DeleteGenerations {
        #[arg(value_name = "container-name", value_parser = container_name)]
        name: String,
        #[arg(required = true, value_name = "generations", allow_hyphen_values = true)]
        generations: Vec<String>,
    },
    /// Make a generation current (and activate it when the container runs).
    ///
    /// Make generation <generation id> current, after checking its LXC
    /// settings, and activate it when the container runs.
    SwitchGeneration {
        #[arg(value_name = "container-name", value_parser = container_name)]
        name: String,
        #[arg(value_name = "generation id", value_parser = generation_number)]
        generation: u64,
        #[command(flatten)]
        activation: ActivationFlags,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// Make the previous generation current (and activate it when the container runs).
    ///
    /// Make the generation before the current one current, after checking
    /// its LXC settings, and activate it when the container runs.
    Rollback {
        #[arg(value_name = "container-name", value_parser = container_name)]
        name: String,
        #[command(flatten)]
        activation: ActivationFlags,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// Start containers.
    ///
    /// Start the containers (lxc-start), after checking the current
    /// generation's LXC settings. -l "-F" boots one container in the
    /// foreground, its console on your terminal.
    Start {
        #[command(flatten)]
        targets: Targets,
        #[command(flatten)]
        wait: Wait,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// Stop containers cleanly and start them again.
    ///
    /// Shut the containers down cleanly (lxc-stop) and start their current
    /// generation; a container that is not running is started.
    Restart {
        #[command(flatten)]
        targets: Targets,
        #[command(flatten)]
        wait: Wait,
    },
    /// Start the containers that start with the host, side by side.
    ///
    /// Start every container whose settings say lxc.start.auto = 1 (its
    /// file's autostart, or --autostart), as lxc-autostart --all would, in
    /// the order of lxc.start.order (lower first): the containers of one
    /// order start side by side, --jobs at a time, after those of the order
    /// before have started and their longest lxc.start.delay has passed.
    /// Those that did not start are named; the others start regardless. The
    /// NixOS module's boot service runs it.
    Autostart {
        /// How many containers start at once (at least 1; by default twice
        /// the host's CPUs: more only make the starts wait on each other in
        /// the kernel).
        #[arg(short = 'j', long, value_name = "N", value_parser = at_least_one)]
        jobs: Option<usize>,
    },
    /// Print a running container's journal.
    ///
    /// The guest's systemd journal (journalctl inside), all of it or its
    /// last lines, and with -f what comes after. A guest without a journal
    /// (a system without journalctl, as the tiny example) says so.
    Logs {
        #[arg(value_name = "container-name", value_parser = container_name)]
        name: String,
        /// Keep printing what the journal gets.
        #[arg(short, long)]
        follow: bool,
        /// Only the last lines.
        #[arg(short = 'n', long, value_name = "lines")]
        lines: Option<u64>,
    },
    /// Open a root shell inside a running container.
    ///
    /// A root shell inside the running container (lxc-attach).
    Login {
        #[arg(value_name = "container-name", value_parser = container_name)]
        name: String,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// Run a command inside a running container; exits with its status.
    ///
    /// Run a command inside the running container (lxc-attach, with a clean
    /// environment and the guest's PATH); exits with its status.
    Run {
        #[arg(value_name = "container-name", value_parser = container_name)]
        name: String,
        #[command(flatten)]
        lxc: LxcParams,
        /// The command and its arguments (put `--` before a command that starts with '-').
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "command"
        )]
        command: Vec<String>,
    },
    /// Shut containers down cleanly.
    ///
    /// Shut the containers down cleanly (lxc-stop).
    Stop {
        #[command(flatten)]
        targets: Targets,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// Kill containers at once.
    ///
    /// Kill the containers at once (lxc-stop --kill).
    Terminate {
        #[command(flatten)]
        targets: Targets,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// One line per container: name, state, IPv4, current generation, autostart.
    ///
    /// One row per container: name, state, IPv4 address, current generation,
    /// autostart (from LXC's command sockets and the containers' cgroups,
    /// without lxc-ls). -l selects the containers as lxc-ls would (-l
    /// "--filter ^web", -l --stopped).
    List {
        #[command(flatten)]
        lxc: LxcParams,
        /// How to print the rows.
        #[arg(long, value_parser = list_format(), default_value = "table")]
        format: list::Format,
        /// Shorthand for --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// The columns to print, comma-separated, in order [default:
        /// name,state,ipv4,ipv6,generation,autostart]. `ipv6`: global IPv6
        /// addresses of running containers; `uids`: the host uids (and
        /// gids) the container's ids are.
        #[arg(long, value_parser = list_column(), value_delimiter = ',')]
        columns: Vec<list::Column>,
        /// Print no header line (table and csv).
        #[arg(long)]
        no_header: bool,
    },
    /// Print a container's IPv4 address.
    ///
    /// The container's IPv4 address; while it runs with another one than
    /// its current generation gives it, both.
    ShowIp {
        #[arg(value_name = "container-name", value_parser = container_name)]
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Exit 0 when the container exists, 1 when it does not.
    Exists {
        #[arg(value_name = "container-name", value_parser = container_name)]
        name: String,
    },
    /// Print a container's state (RUNNING, STOPPED, ...).
    State {
        #[arg(value_name = "container-name", value_parser = container_name)]
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Make this host's containers those of a list.
    ///
    /// Create the containers of the list that are missing (and start those
    /// that start with the host), update those that changed, and leave the
    /// others alone: a container is not even evaluated while the files its
    /// evaluation read (of a flake: flake.nix, flake.lock, its own files; of
    /// a container file: the file and what it imports from its directory),
    /// the shape of that source (which files there are), this toolkit,
    /// <nixpkgs> and the host file are as when sync last made it; any other
    /// is evaluated, and neither built nor switched where its generation is
    /// the one it has. Each container is built by a helper process of its
    /// own: one that fails fails alone. Ends with a summary; exits 1 if any
    /// failed.
    Sync {
        /// The list, JSON: container name → {"file": "/abs/web.nix"},
        /// {"flake": "<ref>#<name>"} or {"system": "/nix/store/..."} (a
        /// built system, left alone while its path is the same), with
        /// "autostart": true or false where the host decides that rather
        /// than the container file.
        #[arg(long, value_name = "list.json", required_unless_present = "flake", value_parser = utf8_path)]
        file: Option<PathBuf>,
        /// Also every nixcloudContainers.<name> of this flake.
        #[arg(long, value_name = "flake ref")]
        flake: Option<String>,
        /// Destroy the containers this source created (or took over with
        /// --adopt) that it no longer names (with their data directories);
        /// never one made by hand or by another source.
        #[arg(long)]
        prune: bool,
        /// Name the list's source (default: the list file's real path), for
        /// a list whose file moves: the host module's, in the store, is
        /// `nixos-module`. Only the source that created a container prunes it.
        #[arg(long, value_name = "name", requires = "file", value_parser = source_name)]
        source: Option<String>,
        /// Take over the listed containers made by hand or by another
        /// source: from now on this source's --prune may destroy them.
        #[arg(long)]
        adopt: bool,
        /// How many containers are evaluated and built side by side; their
        /// live switches run one at a time.
        #[arg(short = 'j', long, value_name = "N", default_value_t = 1, value_parser = at_least_one)]
        jobs: usize,
        /// Go on after a container fails (without: start no other).
        #[arg(long)]
        keep_going: bool,
        /// Say what would be done, and do nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        json: JsonFlag,
        #[command(flatten)]
        activation: ActivationFlags,
        #[command(flatten)]
        nix: NixParams,
    },
    /// Write a container to one file: its generations, store paths and files.
    ///
    /// Write the container to one file (- for standard output): its
    /// generations (numbers, dates, specs, systems) and every store path
    /// they need, root's choices for it, its writable root and its data
    /// directory, with ownership relative to its id range (format:
    /// docs/export-format.md), ending with a SHA-256 of all of it, which it
    /// prints. Refused while the container runs, unless --running.
    Export {
        #[arg(value_name = "container-name", value_parser = container_name)]
        name: String,
        /// The file to write; - for standard output.
        #[arg(value_name = "file", value_parser = utf8_path)]
        file: PathBuf,
        /// Copy a running container's files as they are while it runs (not
        /// one moment of them) instead of refusing.
        #[arg(long)]
        running: bool,
    },
    /// Make a container from an export; another name makes a clone.
    ///
    /// Make the container of an export (- reads standard input) on this
    /// host, under the name it had or another (a clone): its name, and
    /// what its generations ask of the host, checked as create checks a
    /// container file; its own id range and addresses here (its allocated
    /// address and static ones kept where they are free); the store paths
    /// this host lacks added; its generations built again for this host
    /// with their numbers and dates, the current one current; its files
    /// owned by its range here. Nothing is made, and no store path added,
    /// unless the export is whole (its digest, and --sha256). A NixOS
    /// generation is taken only under its name and address. Root's own LXC
    /// settings in an export are not applied: --lxc-config gives them here.
    Import {
        /// The export; - for standard input.
        #[arg(value_name = "file", value_parser = utf8_path)]
        file: PathBuf,
        /// The container's name here [default: its name in the export].
        #[arg(value_name = "container-name", value_parser = container_name)]
        name: Option<String>,
        /// The SHA-256 that export printed: an export with another is refused.
        #[arg(long, value_name = "hex", value_parser = sha256_hex)]
        sha256: Option<String>,
        /// Read only the export's header, check it against this host, and
        /// print the store paths this host lacks, one a line (move asks so
        /// before it sends anything).
        #[arg(long)]
        plan: bool,
        #[command(flatten)]
        root_settings: RootSettingsFlags,
        #[command(flatten)]
        lxc: LxcParams,
    },
    /// Move a container to another host over SSH.
    ///
    /// Move the container to the host <destination> (as ssh names it,
    /// root@host2): the helper there (--remote) says which store paths it
    /// lacks, a running container is stopped cleanly, its export goes to
    /// `import -` there with just those store paths, and once that says it
    /// has it, it is started there (if it ran here) and destroyed here.
    /// Until then it stays here as it was.
    Move {
        #[arg(value_name = "container-name", value_parser = container_name)]
        name: String,
        /// The other host, as ssh takes it.
        #[arg(value_name = "destination")]
        destination: String,
        /// The ssh command, split as a shell would (e.g. --ssh "ssh -p 2222").
        #[arg(long, value_name = "command", default_value = "ssh")]
        ssh: String,
        /// The helper's command on the other host, split as a shell would.
        #[arg(long, value_name = "command", default_value = "nixcloud-container")]
        remote: String,
    },
    /// Rebuild the state file from what is on disk.
    ///
    /// Rebuild the state file from the containers' generations and LXC
    /// directories, when a command reports it damaged. The old file is kept
    /// beside it. An LXC directory of ours whose generations are gone is
    /// removed. Nothing else ever resets the state.
    RepairState,
    /// Re-apply the containers' network rules.
    ///
    /// Write the guard of the containers' ports (nftables table bridge
    /// nixcloud-container-guard), the egress policy (inet
    /// nixcloud-container-egress), the filter between peers (bridge
    /// nixcloud-container-peers) and the forwarded ports (ip
    /// nixcloud-container-forwards) again from the state and the host file,
    /// and make the ports of running containers isolated again, except those
    /// of containers that name peers. Needed after a firewall reload that
    /// flushed the whole ruleset; the NixOS module runs it then.
    RepairNetwork,
    /// Write the containers' names again.
    ///
    /// Write `<name>.<suffix>` (host file names.suffix) for every container
    /// again, from the state: the hosts line per container in the state
    /// directory's hosts/ (dnsmasq's hostsdir) and the helper's block of
    /// the hosts file the host file names (names.hostsFile). Needed where
    /// something else rewrote that file; the NixOS module runs it after each
    /// activation, which copies /etc/hosts afresh.
    RepairNames,
    /// Print shell completions.
    ///
    /// Print the completions of this command for a shell, e.g.
    /// `source <(nixcloud-container completions bash)`.
    Completions {
        #[arg(value_name = "shell")]
        shell: clap_complete::Shell,
    },
    /// Print the manual, or the help of one command.
    Help {
        #[arg(value_name = "command")]
        command: Option<String>,
        /// The manual as a man page (roff), for `man -l -`.
        #[arg(long, conflicts_with = "command")]
        man: bool,
    },
}

impl Command {
    /// The words of the command's -n and -l parameters (none where it takes none).
    pub fn parameters(&self) -> Result<(Vec<String>, Vec<String>), UsageError> {
        let (nix, lxc) = match self {
            Command::Create { nix, lxc, .. } | Command::Update { nix, lxc, .. } => {
                (Some(nix), Some(lxc))
            }
            Command::Sync { nix, .. } => (Some(nix), None),
            Command::Destroy { lxc, .. }
            | Command::SwitchGeneration { lxc, .. }
            | Command::Rollback { lxc, .. }
            | Command::Start { lxc, .. }
            | Command::Login { lxc, .. }
            | Command::Run { lxc, .. }
            | Command::Stop { lxc, .. }
            | Command::Terminate { lxc, .. }
            | Command::List { lxc, .. }
            | Command::Import { lxc, .. } => (None, Some(lxc)),
            Command::ListGenerations { .. }
            | Command::DeleteGenerations { .. }
            | Command::ShowIp { .. }
            | Command::Restart { .. }
            | Command::Autostart { .. }
            | Command::Logs { .. }
            | Command::Exists { .. }
            | Command::State { .. }
            | Command::Export { .. }
            | Command::Move { .. }
            | Command::RepairState
            | Command::RepairNetwork
            | Command::RepairNames
            | Command::Completions { .. }
            | Command::Help { .. } => (None, None),
        };
        Ok((
            nix.map(NixParams::words).transpose()?.unwrap_or_default(),
            lxc.map(LxcParams::words).transpose()?.unwrap_or_default(),
        ))
    }
}

/// Tells `update`'s containers from its container file: a path holds a '/'
/// or a '.', which no container name does.
pub fn update_targets(
    name: Option<String>,
    more: Vec<String>,
    all: bool,
    source: &SourceFlags,
) -> Result<UpdateTargets, UsageError> {
    let Some(name) = name else {
        return if all {
            Ok(UpdateTargets::All)
        } else {
            Err(UsageError("name a container to update, or give --all".to_string()))
        };
    };
    let is_path = |arg: &String| arg.contains('/') || arg.contains('.');
    match &more[..] {
        [] => Ok(UpdateTargets::One(name, None)),
        [file] if is_path(file) && !source.given() => {
            Ok(UpdateTargets::One(name, Some(PathBuf::from(file))))
        }
        _ if source.given() => Err(UsageError(
            "--system and --flake build one container: name only that one".to_string(),
        )),
        others => {
            let mut names = vec![name];
            for other in others {
                if is_path(other) {
                    return Err(UsageError(format!(
                        "{} is a container file, which only a single container takes",
                        crate::formats::show(other)
                    )));
                }
                names.push(container_name(other).map_err(UsageError)?);
            }
            Ok(UpdateTargets::Several(names))
        }
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

    fn targets(args: &[&str]) -> Result<UpdateTargets, UsageError> {
        let Command::Update { name, more, all, source, .. } = parse(args).command else {
            panic!("not update")
        };
        update_targets(name, more, all, &source)
    }

    #[test]
    fn update_tells_names_from_a_file() {
        assert!(
            matches!(targets(&["update", "web"]), Ok(UpdateTargets::One(n, None)) if n == "web")
        );
        assert!(matches!(
            targets(&["update", "web", "web.nix"]),
            Ok(UpdateTargets::One(n, Some(f))) if n == "web" && f.as_os_str() == "web.nix"
        ));
        assert!(matches!(targets(&["update", "web", "./config"]), Ok(UpdateTargets::One(..))));
        assert!(matches!(
            targets(&["update", "a", "b", "c"]),
            Ok(UpdateTargets::Several(names)) if names == ["a", "b", "c"]
        ));
        assert!(matches!(targets(&["update", "--all"]), Ok(UpdateTargets::All)));
        assert!(targets(&["update", "a", "b", "c.nix"]).is_err());
        assert!(targets(&["update", "a", "b c"]).is_err());
        assert!(targets(&["update", "a", "b", "--system", "/nix/store/x"]).is_err());
    }
}
