"""Where the repository keeps what the bench uses: the helper it builds,
the toolkit's Nix entry point, and the scaffolding it shares with the tests
and the demo."""

import os

REPO = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
HELPER = os.path.join(REPO, "rust-helper/target/release/nixcloud-container")
# The same helper without the build network, for section 8 (bench/run builds
# it with cargo's feature bench-without-build-network, apart from the other).
WITHOUT_BUILD_NETWORK_TARGET = os.path.join(REPO, "rust-helper/target/bench-without-build-network")
HELPER_WITHOUT_BUILD_NETWORK = os.path.join(WITHOUT_BUILD_NETWORK_TARGET, "release/nixcloud-container")
CLI_NIX = os.path.join(REPO, "lib/cli.nix")
# The network namespace with the host's two bridges: `add <name>`, `del <name>`.
NETNS_SCRIPT = os.path.join(REPO, "scripts/netns")
# A stand-in nixpkgs whose eval-config evaluates a NixOS configuration with
# nixpkgs' lib (<nixpkgs-lib>) and traces each evaluation.
FAKE_NIXPKGS = os.path.join(REPO, "tests/fake-nixpkgs")
NIXOS_EVALUATION_TRACE = "trace: nixos-evaluation of"
# modules/host/services.nix's autostart service, evaluated to the shell it runs.
AUTOSTART_SERVICE = os.path.join(REPO, "tests/nix/autostart-service.nix")
# How container files reach the toolkit under the helper's restricted
# evaluation; the search path entry that provides it outside the helper.
TINY_SYSTEM = "<nixcloud-container/examples/tiny/system.nix>"
TOOLKIT_SEARCH_PATH = ["-I", f"nixcloud-container={REPO}"]


def nixpkgs_lib():
    """nixpkgs' lib from NIXPKGS_LIB, as tests/nix/run takes it (a directory
    with lib's default.nix, or one holding lib/), resolved; None when unset
    or when it holds no lib."""
    lib = os.environ.get("NIXPKGS_LIB")
    if not lib:
        return None
    if not os.path.isfile(os.path.join(lib, "default.nix")) and os.path.isfile(
            os.path.join(lib, "lib", "default.nix")):
        lib = os.path.join(lib, "lib")
    if not all(os.path.isfile(os.path.join(lib, f)) for f in ("default.nix", "modules.nix")):
        return None
    return os.path.realpath(lib)


def fake_nixpkgs_args(lib):
    """The helper's -n value for a NixOS configuration file: the stand-in
    nixpkgs and the lib it evaluates with."""
    return f"-I nixpkgs={FAKE_NIXPKGS} -I nixpkgs-lib={lib}"
