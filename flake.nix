{
  description = "nixcloud-container: unprivileged LXC containers running NixOS that share the host's /nix/store";

  # What the checks, the package and the examples are built with; a system
  # that uses this flake replaces it with its own (`inputs.nixpkgs.follows`,
  # the README's "Add nixcloud-container to the host", which names this URL:
  # tests/nix/docs.nix checks that it does).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        nixcloud-container = pkgs.callPackage ./package.nix { };
        default = nixcloud-container;
      });

      # nix run .#nixcloud-container -- help
      apps = forAllSystems (
        pkgs:
        let
          app = {
            type = "app";
            program = "${self.packages.${pkgs.stdenv.hostPlatform.system}.default}/bin/nixcloud-container";
            meta.description = "Manage unprivileged LXC containers running NixOS (run as root)";
          };
        in
        {
          default = app;
          nixcloud-container = app;
        }
      );

      overlays.default = final: _prev: {
        nixcloud-container = final.callPackage ./package.nix { };
      };

      nixosModules = import ./modules;

      lib = import ./lib;

      # Containers to try without a file of your own (built with this flake's nixpkgs):
      #   nixcloud-container create example --flake github:nixcloud/nixcloud-container#example
      nixcloudContainers = {
        example = import ./examples/example.nix;
        autostartExample = import ./examples/autostartExample.nix;
        fullExample = import ./examples/fullExample.nix;
      };

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.cargo
            pkgs.rustc
            pkgs.clippy
            pkgs.rustfmt
            pkgs.lxc
            pkgs.nix
            pkgs.busybox
          ];
        };
      });

      # What runs anywhere: the helper's package (buildRustPackage's check
      # phase runs its unit tests) and tests/nix/run's evaluation of the host
      # and guest modules (and of docs/ against them), with this flake's
      # nixpkgs lib: evaluating the check runs every evaluation check and
      # fails with those that failed; its build only records how many
      # passed. (tests/nix/nixos-system.nix needs NIX_PATH and the machine's
      # platform, which a flake's pure evaluation has not: tests/nix/run runs
      # it.) And, where there is KVM, the seed's scenario on a NixOS VM, with
      # either firewall backend.
      checks = forAllSystems (
        pkgs:
        let
          inherit (nixpkgs) lib;
          h = import ./tests/nix/harness.nix { inherit lib; };
          evaluation = h.run (
            import ./tests/nix/host.nix { inherit lib h; }
            // import ./tests/nix/guest.nix { inherit lib h; }
            // import ./tests/nix/docs.nix { inherit lib h; }
          );
        in
        {
          package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
          nix-evaluation = pkgs.runCommand "nixcloud-container-nix-evaluation" { inherit evaluation; } ''
            echo "$evaluation" > "$out"
          '';
          vm-test = import ./tests/vm-test.nix { inherit pkgs; };
          vm-test-nftables = import ./tests/vm-test.nix { inherit pkgs; nftables = true; };
        }
      );

      # nix fmt: nixpkgs' nixfmt (the RFC 166 style).
      formatter = forAllSystems (pkgs: pkgs.nixfmt);
    };
}
