//! `nixcloud-container help`: the manual. `help <command>` prints that
//! command's --help.

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::usage;

pub const MANUAL: &str = r#"NIXCLOUD-CONTAINER(1)

NAME
    nixcloud-container - unprivileged LXC containers running NixOS, sharing
    the host's /nix/store

SYNOPSIS
    nixcloud-container create <container-name> <config-path> [-n <nix parameters>] [-l <lxc parameters>]
    nixcloud-container create <container-name> --system <store path> [-n ...] [-l ...]
    nixcloud-container create <container-name> --flake <flake ref>[#<name>] [-n ...] [-l ...]
    nixcloud-container update <container-name> [<config-path>] [-n <nix parameters>] [-l <lxc parameters>]
    nixcloud-container destroy <container-name> [--force] [-l <lxc parameters>]
    nixcloud-container list-generations <container-name> [--json]
    nixcloud-container delete-generations <container-name> <generations>...
    nixcloud-container switch-generation <container-name> <generation id> [-l ...]
    nixcloud-container rollback <container-name> [-l ...]
    nixcloud-container start <container-name> [-l <lxc parameters>]
    nixcloud-container login <container-name> [-l <lxc parameters>]
    nixcloud-container run <container-name> [-l ...] [--] <command>...
    nixcloud-container stop <container-name> [-l <lxc parameters>]
    nixcloud-container terminate <container-name> [-l <lxc parameters>]
    nixcloud-container list [-l <lxc parameters>] [--json]
    nixcloud-container show-ip <container-name> [--json]
    nixcloud-container exists <container-name>
    nixcloud-container state <container-name> [--json]
    nixcloud-container repair-state
    nixcloud-container help [<command>]

    Run all commands on the host as root. Containers are started by root and
    drop privileges: root inside is uid 100000 outside (lxc.idmap).

DESCRIPTION
    A container is built from a container file into a generation: a store
    path holding the guest system, the container's LXC settings and its spec.
    Generations live in a Nix profile per container, so they are listed,
    switched, rolled back and deleted exactly as nix-env does it, and each
    container is rebuilt on its own, without a global nixos-rebuild switch.

CONTAINER FILES
    A NixOS module:

        { pkgs, ip, name, ... }: { environment.systemPackages = [ pkgs.vim ]; }

    or a container attribute set:

        {
          autostart = false;         # start with the host (lxc-autostart)
          network = {
            bridge = "brNC-hostonly"; # the bridge of the `hostonly` interface
            ip = "10.101.0.5";        # fixed address; default: allocated
            prefixLength = 16;        # default: the hostonly subnet's
            gateway = null;           # default: the host, unless enableNat
            enableNat = false;        # add an `internet` interface on brNC-internet
          };
          configuration = { pkgs, ip, name, ... }: { ... };
        }

    or the same attribute set with `system = <store path or derivation>`
    instead of `configuration`: a ready system with an executable `init` (and
    bin/switch-to-configuration for live updates).

    `ip` and `name` reach the configuration as module arguments. A NixOS
    configuration needs nixpkgs: on NixOS <nixpkgs> from NIX_PATH, or pass
    -n "-I nixpkgs=/path/to/nixpkgs".

    A flake can hold containers too, as its output nixcloudContainers.<name>
    (each in the format above); --flake <ref>#<name> builds one, with the
    flake's input `nixpkgs`:

        outputs = { self, nixpkgs }: {
          nixcloudContainers.web = { autostart = true; configuration = ./web.nix; };
        };

COMMANDS
    create <name> <config-path>
        Build generation 1 and register the container with LXC (lxc-create;
        -l goes there). Names are hostnames: 1 to 63 letters, digits and
        '-'. Fails, changing nothing, if the name is taken. With --system
        <store path>, deploy a prebuilt system instead of a container file;
        with --flake <ref>[#<name>], the flake's nixcloudContainers.<name>
        (<name> defaults to the container's name).

    update <name> [<config-path>]
        Build a new generation and make it current. Without a config path,
        the file the container was last built from is used; a container that
        does not exist is created. If the container runs, the new generation
        is activated inside it (switch-to-configuration switch, through
        lxc-attach; -l goes there), as nixos-rebuild switch would do on a
        host; if activation fails, the previous generation is current and
        active again. A stopped container boots the current generation at its
        next start. Changed LXC settings apply at the next start.

    destroy <name> [--force]
        Remove the container's LXC directory (lxc-destroy; -l goes there), its
        generations and its addresses. Refused while the container runs,
        unless --force, which kills it first.

    list-generations <name>
        The generations, oldest first: number, date, address, system; the
        current one is marked.

    delete-generations <name> <generations>...
        Delete generations, as nix-env --delete-generations takes them:
        numbers, +N (keep the last N), Nd (older than N days), old. The
        current generation is never deleted.

    switch-generation <name> <id>, rollback <name>
        Make generation <id>, or the one before the current, current, and
        activate it when the container runs.

    start <name>
        Start the container (lxc-start). -l "-F" boots it in the foreground,
        its console on your terminal.

    login <name>
        A root shell inside the running container (lxc-attach).

    run <name> <command>...
        Run a command inside the running container (lxc-attach, with a clean
        environment and the guest's PATH); exits with its status.

    stop <name>, terminate <name>
        Shut the container down cleanly (lxc-stop), or kill it (lxc-stop -k).

    list
        One line per container: name, state, IPv4 address, current generation,
        autostart (lxc-ls --active and --frozen; -l goes to both).

    show-ip <name>, state <name>, exists <name>
        The container's IPv4 address; its state (RUNNING, STOPPED, ...); exit
        status 0 if it exists, 1 if not.

    repair-state
        Rebuild the state file from the containers' generations and LXC
        directories, when a command reports it damaged. The old file is kept
        beside it. Nothing else ever resets the state.

NIX AND LXC PARAMETERS
    -n "<nix parameters>" is given to every Nix command (nix-instantiate,
    nix-env), -l "<lxc parameters>" to the lxc-* command named above. Each is
    one string, split into words as a shell would (quotes and backslashes
    work), and never run through a shell. Repeat the flag to add more.

OPTIONS
    --lxc-path <dir>        LXC's container directory
                            [$NIXCLOUD_CONTAINER_LXC_PATH; /var/lib/lxc]
    --profiles-dir <dir>    the containers' Nix profiles
                            [$NIXCLOUD_CONTAINER_PROFILES_DIR;
                             /nix/var/nix/profiles/nixcloud-container]
    --state-dir <dir>       state file and locks
                            [$NIXCLOUD_CONTAINER_STATE_DIR; /var/lib/nixcloud-container]
    --host-config <file>    the host's settings
                            [$NIXCLOUD_CONTAINER_HOST_CONFIG; /etc/nixcloud-container/host.json]
    --nix-lib <dir>         this toolkit's Nix library [$NIXCLOUD_CONTAINER_NIX_LIB]
    --busybox <file>        the busybox that builds generations
                            [$NIXCLOUD_CONTAINER_BUSYBOX; busybox on PATH]
    -v, --verbose           show Nix's and LXC's output as they run
    --json                  (list, list-generations, state, show-ip) JSON output

ENVIRONMENT
    NIXCLOUD_CONTAINER_LXC_PATH, _PROFILES_DIR, _STATE_DIR, _HOST_CONFIG,
    _NIX_LIB, _BUSYBOX     as the options above
    NIXCLOUD_CONTAINER_TIMINGS
                           when set, print how long each Nix and LXC call and
                           the whole command took ("timing: <what> <ms>" on
                           stderr), for bench/
    NIX_PATH               where a NixOS configuration finds <nixpkgs>

FILES
    /nix/var/nix/profiles/nixcloud-container/<name>/profile
        The container's profile; profile-<N>-link is generation N. The
        directory is mounted read-only at /init inside the container, which
        boots /init/profile/system/init.
    /var/lib/lxc/<name>/config
        The container's LXC config: LXC's common.conf and userns.conf, then
        <profile>/lxc.conf, the current generation's settings (idmap, the
        read-only /nix/store, /init, the veths, lxc.start.auto).
    /var/lib/lxc/<name>/rootfs
        The container's own files, owned by uid 100000.
    /var/lib/nixcloud-container/state.json
        Which containers exist and which addresses they hold; changed under
        state.lock and replaced atomically. locks/<name>.lock serializes the
        commands on one container.
    /etc/nixcloud-container/host.json
        Bridges, subnets and the uid range, written by the NixOS module
        (nixcloud.containers.*); the defaults are below.

DEFAULTS
    brNC-hostonly   10.101.0.1/16, never forwarded; containers get the first
                    free address from 10.101.0.2, fixed for their life.
    brNC-internet   10.202.0.1/16, NATed to the host's internetInterface;
                    containers with network.enableNat get an `internet`
                    interface there, addressed by DHCP.
    uid/gid range   100000, 65536 ids (root:100000:65536 in /etc/subuid and
                    /etc/subgid).

EXIT STATUS
    0   success (exists: the container exists)
    1   the command could not be carried out: unknown container, a Nix or LXC
        failure, an address in use, a failed activation (exists: no such
        container)
    2   bad input: unknown command or option, invalid name or generation,
        parameters that cannot be split
    run and login exit with the status of what ran inside.

    Every error is one line on stderr, starting with "error:". A command that
    fails leaves the host as it was: nothing half-created, no address held.

EXAMPLES
    nixcloud-container create example example.nix
    nixcloud-container start example
    nixcloud-container login example
    nixcloud-container update example example.nix
    nixcloud-container create test ./containerConfig.nix -n "-I nixpkgs=/nixpkgs"
    nixcloud-container start test -l "-F"
    nixcloud-container run example -- systemctl status
    nixcloud-container rollback example
    nixcloud-container delete-generations example +3
"#;

pub fn print(command: Option<&str>) -> Result<()> {
    let Some(name) = command else {
        print!("{MANUAL}");
        return Ok(());
    };
    let mut cli = Cli::command();
    cli.build();
    match cli.find_subcommand_mut(name) {
        Some(subcommand) => {
            subcommand.print_help()?;
            Ok(())
        }
        None => Err(usage(format!("no command named {name:?}: see `nixcloud-container help`"))),
    }
}
