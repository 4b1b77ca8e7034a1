//! `nixcloud-container help`: the manual, made of the command line's
//! definition (cli/mod.rs: the synopsis, the commands, the options) and the
//! prose below; the same as a man page (`help --man`); `help <command>`
//! prints that command's --help; and the shells' completions.

use anyhow::Result;
use clap::CommandFactory;

use super::Cli;
use crate::error::usage;

/// The manual's own sections, in a small format: a line in capitals is a
/// section's title; a paragraph runs to a blank line; lines indented by four
/// spaces are shown as they are; a line starting with ": " is a term, and
/// the paragraph after it its description. `@COMMANDS@` and `@OPTIONS@`
/// stand for what the command line defines.
const PROSE: &str = r#"DESCRIPTION
Manage unprivileged LXC containers running NixOS that share the host's
/nix/store. Run all commands on the host as root. Containers are started by
root and drop privileges: each container's ids are a range of 65536 host
ids of its own from 100000 up (lxc.idmap), fixed for its life and given
out again when it is destroyed; `list --columns name,uids` shows them.

A container is built from a container file into a generation: a store path
holding the guest system, the container's LXC settings and its spec.
Generations live in a Nix profile per container, so they are listed,
switched, rolled back and deleted exactly as nix-env does it, and each
container is rebuilt on its own, without a global nixos-rebuild switch.

CONTAINER FILES
A NixOS module:

    { pkgs, ip, name, ... }: { environment.systemPackages = [ pkgs.vim ]; }

or a container attribute set:

    {
      autostart = false;         # start with the host (lxc-autostart)
      nixDaemon = false;         # Nix inside through the host's nix-daemon,
                                 # where the host allows it (allowNixDaemon)
      wholeStore = false;        # the host's whole store inside, not only
                                 # the closure, where the host allows it
                                 # (allowWholeStore; nixDaemon implies it)
      ephemeral = false;         # its root starts empty at every start
                                 # (its data and bind mounts stay)
      network = {
        bridge = "brNC-hostonly"; # or a bridge of the host's extraBridges
        ip = "10.101.0.5";        # fixed address; default: allocated
        prefixLength = 16;        # default and only value: the bridge's
        gateway = null;           # default: the host, unless enableNat
        enableNat = false;        # add an `internet` interface on brNC-internet
        peers = [ ];              # containers it may reach, and be reached
                                  # by, where they name it too
      };
      limits = {                  # cgroup2 limits; the host's are ceilings
        memory = { max = "2G"; high = "1536M"; };  # bytes, or K M G T
        cpu = { weight = 100; max = 1.5; };       # share; CPUs
        pids.max = 4096;
        io.weight = 100;
      };
      bindMounts."/var/lib/app" = {   # host paths inside, where allowed
        hostPath = "app";        # relative: its own data directory;
        isReadOnly = false;      # absolute: allowedHostPaths
      };
      forwardPorts = [           # host ports of allowedForwardPorts
        { hostPort = 8080; containerPort = 80; protocol = "tcp"; }
      ];
      devices = [ "tun" ];       # "tun", "fuse": where allowedDevices says
      configuration = { pkgs, ip, name, ... }: { ... };
    }

or the same attribute set with `system = <store path or derivation>`
instead of `configuration`: a ready system with an executable `init` (and
bin/switch-to-configuration for live updates).

`ip` and `name` reach the configuration as module arguments. A NixOS
configuration needs nixpkgs: on NixOS <nixpkgs> from NIX_PATH, or pass -n
"-I nixpkgs=/path/to/nixpkgs".

A flake can hold containers too, as its output nixcloudContainers.<name>
(each in the format above); --flake <ref>#<name> builds one, with the
flake's input `nixpkgs`:

    outputs = { self, nixpkgs }: {
      nixcloudContainers.web = { autostart = true; configuration = ./web.nix; };
    };

Its flake.lock must lock every input; an input that names a host path
outside the flake's directory (and the host's allowedFlakeInputPaths) is
refused before anything is fetched.

A NixOS container keeps the nixpkgs release it was created with as its
system.stateVersion, unless its configuration sets one (state --json shows
it).

A container file may be someone else's than root's (see SECURITY): it is
evaluated in Nix's restricted mode and reads only files below its own
directory, <nixpkgs>, its flake's inputs and this toolkit as
<nixcloud-container> (e.g. <nixcloud-container/examples/tiny/system.nix>).

COMMANDS
@COMMANDS@

NIX AND LXC PARAMETERS
-n "<nix parameters>" is given to every Nix command that evaluates or
builds (nix-instantiate, nix-build), -l "<lxc parameters>" to the lxc-*
command named above. Each is one string, split into words as a shell would
(quotes and backslashes work), and never run through a shell. Repeat the
flag to add more. Root's -n adds search paths (-I) but cannot turn
restricted evaluation or Nix's sandbox off.

OPTIONS
@OPTIONS@

ENVIRONMENT
: NIXCLOUD_CONTAINER_LXC_PATH, _PROFILES_DIR, _STATE_DIR, _HOST_CONFIG, _NIX_LIB, _BUSYBOX
As the options above.

: NIXCLOUD_CONTAINER_TIMINGS
When set, print how long each Nix and LXC call and the whole command took
("timing: <what> <ms>" on stderr), for bench/.

: NIX_PATH
Where a NixOS configuration finds <nixpkgs> (its nixpkgs entry only).

FILES
: /nix/var/nix/profiles/nixcloud-container/<name>/profile
The container's profile; profile-<N>-link is generation N. The directory
is mounted read-only at /init inside the container, which boots
/init/profile/system/init.

: /var/lib/lxc/<name>/config
The container's LXC config: LXC's common.conf and userns.conf, then
<profile>/lxc.conf, the current generation's settings (idmap, the
read-only /nix/store, /init, the veths, lxc.start.auto). Beside it
root.conf (root's own LXC settings, --lxc-config) and monitor.pid (LXC's
pidfile while it runs). The directory is root's, its group the container
root's gid, mode 0710: the container's root passes through it to its
rootfs, no other host user enters, and only root writes in it. start gives
it that shape (also to a container made before it had it).

: /var/lib/lxc/<name>/rootfs
The container's own files, owned by its root (the first uid of its range);
no host user but root reaches them.

: /var/lib/nixcloud-container/state.json
Which containers exist and which addresses they hold; changed under
state.lock and replaced atomically. locks/<name>.lock serializes the
commands on one container; tmp/ holds the temporary files of the Nix
commands that run, builds/ the links that keep a generation being built
from the garbage collector; data/<name> is the container's data directory
(bindMounts with a relative hostPath), root's and closed to others (0700):
what is mounted from below it is the container's. Root writes only in
directories no other user can change, and refuses one that others can.

: /var/lib/nixcloud-container/dhcp-hosts/<name>
The addresses of a container's internet interface, pinned to its MAC
address for dnsmasq (dhcp-hostsdir), which hands them out by DHCP and
DHCPv6.

: /etc/nixcloud-container/host.json
Bridges (also extraBridges, the other bridges container files may join),
subnets and the ids delegated to containers, written by the NixOS module
(nixcloud.containers.*); the defaults are below.

DEFAULTS
: brNC-hostonly
10.101.0.1/16, never forwarded; containers get the first free address
from 10.101.0.2, fixed for their life.

: brNC-internet
10.202.0.1/16, NATed to the host's internetInterface; containers with
network.enableNat get an `internet` interface there, addressed by DHCP.

: uid/gid ranges
65536000 ids from 100000 delegated to root (root:100000:65536000 in
/etc/subuid and /etc/subgid), 65536 per container: room for 1000
containers (idmap in the host file).

STORE AND MOUNTS
At each start the helper mounts the container's store and its profile (at
/init) onto its rootfs, in a mount namespace of its own that lxc-start
inherits, idmapped (owned by root inside; idmappedMounts = false in the
host file where the store's filesystem has no idmapped mounts) and locked
read-only. The store inside holds the closure of the current generation and
nothing else: each path is bound from the host's store. A live update,
switch-generation or rollback adds the new closure's paths before it
activates the new system; paths that left the closure go at the next
start. Start containers with this command: a bare lxc-start lacks these
mounts. With wholeStore (where the host allows it) the container sees the
host's whole store. With nixDaemon, the directory of a nix-daemon socket
(nixDaemonSocketDir in the host file; the host's daemon's by default) is
bound too, not idmapped, so that its bits for others decide, and the whole
store: Nix inside builds through that daemon as an untrusted user.

SECURITY
Root runs this command and writes the host's configuration; a container
file, a flake's output and what they import may be written by someone who
is not root, and gain nothing on the host. They are evaluated in Nix's
restricted mode without experimental features (their own directory,
nixpkgs, their flake's fetched sources and this toolkit; builtins.getEnv
fails in a container file), built in Nix's sandbox as the build users of
group nixbld, in a network of their own (the public internet only, never
the host, its bridges or private networks; fixed-output builds not even
that unless builds.allowInternet), within the host's limits of memory
and time (builds.* in the host file), and every value of theirs that reaches
LXC is typed and checked. A flake's sources are fetched by a step that runs
none of its code and refuses inputs that read the host outside its
directory. Before a generation is current, started or
switched to, its lxc.conf is checked line by line: only the keys this
helper writes, with values of their form for the container, and its
closure must hold no other container's generation. Containers join only the
bridges the host names.

ISOLATION
Each container has a range of host uids of its own, and sees only the
closure of its own generation in /nix/store. Its ports on the bridges are
isolated: it reaches the host, never another container, unless both name
each other in network.peers (a bridge filter, the nftables table bridge
nixcloud-container-peers, lets such pairs through; repair-network puts it
back after a firewall reload). Its ports pass only frames from its own MAC
addresses and its own IP addresses, and no router advertisements or DHCP
servers' answers (the port guard, the nftables table bridge
nixcloud-container-guard; antiSpoofing in the host file): it cannot pose as
another container or the host's router. What it sends through the host
reaches the internet, not the host's private networks or link-local
addresses (169.254.169.254 among them) unless allowedEgress in the host file
allows them (the nftables table inet nixcloud-container-egress). Its
forwarded ports go when it stops, whatever stopped it (LXC's stop hook
empties their chain). Its limits are cgroup2 keys that LXC
applies at start; update changes them in a running container with
lxc-cgroup where LXC can, and says when they wait for the next start.

BACKUPS AND MOVES
export writes a container to one file (docs/export-format.md): its
generations with their numbers, dates and systems, the store paths they
need, root's choices for it, its writable root and its data directory with
owners relative to its id range, and a SHA-256 of it all, which it prints.
import makes it on this host as create would: what its generations ask for
is checked against this host's permissions, it gets ids and addresses of
its own here (its allocated and static addresses kept where they are free),
the store paths this host lacks are added, its generations are built again
for this host with their numbers, and its files are owned by its range here.
Another name makes a clone. A NixOS container comes over only under its
name where its address is free (its system configures both). Nothing is
made, and no store path added, unless the file is whole: its digest, and
the one given with --sha256. An export's store paths become this host's:
import only what you would copy a closure from. Root's LXC settings in an
export are never applied; --lxc-config gives this host's. move runs ssh
<destination> nixcloud-container import: the other side says which store
paths it lacks, only those travel; a running container is stopped, started
there, and destroyed here once the other side has it.

EXIT STATUS
: 0
Success (exists: the container exists).

: 1
The command could not be carried out: unknown container, a Nix or LXC
failure, an address in use, a refused generation, a failed activation or
health gate (exists: no such container); with several containers (sync
too), any of them.

: 2
Bad input: unknown command or option, invalid name or generation,
parameters that cannot be split, a path that is not UTF-8.

run and login exit with the status of what ran inside. Every error is one
line on stderr, starting with "error:". A command that fails leaves the host
as it was: nothing half-created, no address held.

EXAMPLES
    nixcloud-container create example example.nix
    nixcloud-container start example
    nixcloud-container login example
    nixcloud-container update example example.nix
    nixcloud-container create test ./containerConfig.nix -n "-I nixpkgs=/nixpkgs"
    nixcloud-container start test -l "-F"
    nixcloud-container run example -- systemctl status
    nixcloud-container rollback example
    nixcloud-container update example example.nix --no-rollback
    nixcloud-container delete-generations example +3
    nixcloud-container stop --all
    nixcloud-container list --format csv --columns name,ipv4 --no-header
    nixcloud-container export example /backup/example.export
    nixcloud-container import /backup/example.export example-copy
    nixcloud-container move example root@host2
"#;

/// A piece of a section.
#[derive(Debug, PartialEq)]
enum Block {
    /// A command's usage: its words, wrapped between arguments.
    Usage(Vec<String>),
    /// Running text, wrapped to the page.
    Paragraph(String),
    /// Lines shown as they are.
    Verbatim(Vec<String>),
    /// A term and its description.
    Item(String, String),
}

struct Section {
    title: String,
    blocks: Vec<Block>,
}

/// The sections of PROSE, with the command line's parts put in.
fn sections() -> Vec<Section> {
    let mut cli = Cli::command();
    cli.build();
    let mut sections = vec![
        Section {
            title: "NAME".into(),
            blocks: vec![Block::Paragraph(format!(
                "nixcloud-container - {}",
                cli.get_about().map(|a| a.to_string()).unwrap_or_default()
            ))],
        },
        Section { title: "SYNOPSIS".into(), blocks: synopsis(&cli) },
    ];
    for section in parse(PROSE) {
        let blocks = match &section.blocks[..] {
            [Block::Paragraph(text)] if text == "@COMMANDS@" => commands(&cli),
            [Block::Paragraph(text)] if text == "@OPTIONS@" => options(&cli),
            _ => section.blocks,
        };
        sections.push(Section { title: section.title, blocks });
    }
    sections
}

fn parse(prose: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    let mut lines = prose.lines().peekable();
    while let Some(line) = lines.next() {
        let is_title = !line.is_empty() && line.chars().all(|c| c.is_ascii_uppercase() || c == ' ');
        if is_title {
            sections.push(Section { title: line.to_string(), blocks: Vec::new() });
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let section = sections.last_mut().expect("the manual starts with a title");
        if let Some(verbatim) = line.strip_prefix("    ") {
            let mut shown = vec![verbatim.to_string()];
            while let Some(next) = lines.next_if(|l| l.starts_with("    ") || l.is_empty()) {
                shown.push(next.strip_prefix("    ").unwrap_or("").to_string());
            }
            while shown.last().is_some_and(String::is_empty) {
                shown.pop();
            }
            section.blocks.push(Block::Verbatim(shown));
            continue;
        }
        let mut text = line.strip_prefix(": ").unwrap_or(line).to_string();
        if line.starts_with(": ") {
            let mut description = Vec::new();
            while let Some(next) = lines.next_if(|l| !l.trim().is_empty()) {
                description.push(next);
            }
            section.blocks.push(Block::Item(text, description.join(" ")));
            continue;
        }
        while let Some(next) = lines
            .next_if(|l| !l.trim().is_empty() && !l.starts_with("    ") && !l.starts_with(": "))
        {
            text.push(' ');
            text.push_str(next);
        }
        section.blocks.push(Block::Paragraph(text));
    }
    sections
}

/// How an argument is written in a usage line: `<container-name>`,
/// `[-n <nix parameters>]`, `[--json]`, `[--format <table|json|csv>]`.
fn argument_usage(arg: &clap::Arg) -> String {
    let takes_value = arg.get_action().takes_values();
    let value = || {
        let values: Vec<String> =
            arg.get_possible_values().iter().map(|v| v.get_name().to_string()).collect();
        if values.is_empty() {
            let names = arg.get_value_names().map(|n| n.join(" ")).unwrap_or_default();
            format!("<{names}>")
        } else {
            format!("<{}>", values.join("|"))
        }
    };
    let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1);
    if arg.is_positional() {
        let shown = format!("{}{}", value(), if many { "..." } else { "" });
        if arg.is_trailing_var_arg_set() {
            format!("[--] {shown}")
        } else if arg.is_required_set() {
            shown
        } else {
            format!("[{shown}]")
        }
    } else {
        let flag = match (arg.get_short(), arg.get_long()) {
            (Some(short), _) => format!("-{short}"),
            (None, Some(long)) => format!("--{long}"),
            (None, None) => String::new(),
        };
        if takes_value {
            format!("[{flag} {}]", value())
        } else {
            format!("[{flag}]")
        }
    }
}

/// A command's own arguments (not the global ones, not --help).
fn own_arguments(command: &clap::Command) -> impl Iterator<Item = &clap::Arg> {
    command.get_arguments().filter(|arg| !arg.is_global_set() && arg.get_id() != "help")
}

fn synopsis(cli: &clap::Command) -> Vec<Block> {
    cli.get_subcommands()
        .filter(|command| !command.is_hide_set())
        .map(|command| {
            let mut words = vec![format!("nixcloud-container {}", command.get_name())];
            let (positional, options): (Vec<_>, Vec<_>) =
                own_arguments(command).partition(|arg| arg.is_positional());
            let (trailing, leading): (Vec<_>, Vec<_>) =
                positional.into_iter().partition(|arg| arg.is_trailing_var_arg_set());
            words.extend(leading.into_iter().chain(options).chain(trailing).map(argument_usage));
            Block::Usage(words)
        })
        .collect()
}

fn commands(cli: &clap::Command) -> Vec<Block> {
    cli.get_subcommands()
        .filter(|command| !command.is_hide_set())
        .map(|command| {
            let mut term = command.get_name().to_string();
            for arg in own_arguments(command).filter(|a| a.is_positional()) {
                term.push(' ');
                term.push_str(&argument_usage(arg));
            }
            // The long help says it all; the one-line summary is its first paragraph.
            let about = command.get_about().map(|t| t.to_string()).unwrap_or_default();
            let long = command.get_long_about().map(|t| t.to_string());
            let text = match long {
                Some(long) => {
                    let rest = long.strip_prefix(&about).unwrap_or(&long);
                    rest.trim_start_matches('.').trim().to_string()
                }
                None => about,
            };
            Block::Item(term, text.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect()
}

fn options(cli: &clap::Command) -> Vec<Block> {
    cli.get_arguments()
        .filter(|arg| arg.get_id() != "help" && arg.get_id() != "version")
        .map(|arg| {
            let mut term = match (arg.get_short(), arg.get_long()) {
                (Some(short), Some(long)) => format!("-{short}, --{long}"),
                (None, Some(long)) => format!("--{long}"),
                (Some(short), None) => format!("-{short}"),
                (None, None) => String::new(),
            };
            if arg.get_action().takes_values() {
                let names = arg.get_value_names().map(|n| n.join(" ")).unwrap_or_default();
                term.push_str(&format!(" <{names}>"));
            }
            let mut text = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if let Some(env) = arg.get_env() {
                text.push_str(&format!(" (${})", env.to_string_lossy()));
            }
            Block::Item(term, text.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect()
}

const WIDTH: usize = 78;

/// `text` wrapped to WIDTH, each line indented by `indent` spaces.
fn wrap(text: &str, indent: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent + line.len() + 1 + word.len() > WIDTH {
            out.push_str(&format!("{:indent$}{line}\n", ""));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!("{:indent$}{line}\n", ""));
    }
    out
}

/// The manual as text for a terminal.
pub fn text() -> String {
    let mut out = String::from("NIXCLOUD-CONTAINER(1)\n");
    for section in sections() {
        out.push('\n');
        out.push_str(&section.title);
        out.push('\n');
        for (index, block) in section.blocks.iter().enumerate() {
            let both_usage = matches!(block, Block::Usage(_))
                && matches!(section.blocks.get(index.wrapping_sub(1)), Some(Block::Usage(_)));
            if index > 0 && !both_usage {
                out.push('\n');
            }
            match block {
                Block::Usage(words) => {
                    let mut line = format!("    {}", words[0]);
                    for word in &words[1..] {
                        if line.len() + 1 + word.len() > WIDTH {
                            out.push_str(&line);
                            out.push('\n');
                            line = format!("{:8}", "");
                        } else {
                            line.push(' ');
                        }
                        line.push_str(word);
                    }
                    out.push_str(&line);
                    out.push('\n');
                }
                Block::Paragraph(text) => out.push_str(&wrap(text, 4)),
                Block::Verbatim(lines) => {
                    for line in lines {
                        out.push_str(format!("        {line}").trim_end());
                        out.push('\n');
                    }
                }
                Block::Item(term, text) => {
                    out.push_str(&format!("    {term}\n"));
                    out.push_str(&wrap(text, 8));
                }
            }
        }
    }
    out
}

/// The manual as a man page (roff).
pub fn man_page() -> String {
    use roff::{bold, roman, Roff};
    let version = env!("CARGO_PKG_VERSION");
    let mut page = Roff::new();
    page.control("TH", ["NIXCLOUD-CONTAINER", "1", "", &format!("nixcloud-container {version}")]);
    for section in sections() {
        page.control("SH", [section.title.as_str()]);
        for block in &section.blocks {
            match block {
                Block::Usage(words) => {
                    page.control("PP", []).text([
                        bold(words[0].as_str()),
                        roman(" "),
                        roman(words[1..].join(" ")),
                    ]);
                }
                Block::Paragraph(text) => {
                    page.control("PP", []).text([roman(text.as_str())]);
                }
                Block::Verbatim(lines) => {
                    page.control("PP", []).control("RS", ["4"]).control("nf", []);
                    for line in lines {
                        page.text([roman(line.as_str())]);
                    }
                    page.control("fi", []).control("RE", []);
                }
                Block::Item(term, text) => {
                    page.control("TP", []).text([bold(term.as_str())]).text([roman(text.as_str())]);
                }
            }
        }
    }
    page.render()
}

pub fn print(command: Option<&str>, man: bool) -> Result<()> {
    if man {
        print!("{}", man_page());
        return Ok(());
    }
    let Some(name) = command else {
        print!("{}", text());
        return Ok(());
    };
    if Cli::command().find_subcommand(name).is_none() {
        return Err(usage(format!("no command named {name:?}: see `nixcloud-container help`")));
    }
    // Exactly what `<command> --help` prints.
    match Cli::command().try_get_matches_from(["nixcloud-container", name, "--help"]) {
        Err(shown) => Ok(shown.print()?),
        Ok(_) => unreachable!("--help always ends in the help text"),
    }
}

/// Prints the completions of this command for `shell`.
pub fn completions(shell: clap_complete::Shell) {
    let mut cli = Cli::command();
    clap_complete::generate(shell, &mut cli, "nixcloud-container", &mut std::io::stdout());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prose_format_parses() {
        let sections = parse("ONE\nA paragraph\nthat goes on.\n\n    verbatim\n      indented\n\n: term\nits text\n\nTWO\nx\n");
        assert_eq!(sections.len(), 2);
        assert_eq!(
            sections[0].blocks,
            [
                Block::Paragraph("A paragraph that goes on.".into()),
                Block::Verbatim(vec!["verbatim".into(), "  indented".into()]),
                Block::Item("term".into(), "its text".into()),
            ]
        );
    }

    #[test]
    fn every_command_is_in_the_synopsis_and_the_commands() {
        let manual = text();
        let mut cli = Cli::command();
        cli.build();
        for command in cli.get_subcommands() {
            let name = command.get_name();
            assert!(
                manual.contains(&format!("nixcloud-container {name}")),
                "synopsis lacks {name}"
            );
            assert!(manual.contains(&format!("\n    {name}")), "COMMANDS lacks {name}");
        }
        assert!(
            manual.contains("nixcloud-container create <container-name> [<config-path>]"),
            "{manual}"
        );
        assert!(manual.contains("[-n <nix parameters>]"), "{manual}");
        assert!(!manual.contains("@COMMANDS@") && !manual.contains("@OPTIONS@"));
    }

    #[test]
    fn the_man_page_is_roff() {
        let page = man_page();
        assert!(page.contains("\n.TH NIXCLOUD-CONTAINER 1"), "{page}");
        assert!(page.contains(".SH SYNOPSIS") && page.contains(".SH \"EXIT STATUS\""), "{page}");
    }
}
