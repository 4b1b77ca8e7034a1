# The seed's test scenario on a NixOS VM (needs KVM):
#
#   nix build .#checks.x86_64-linux.vm-test            # flake
#   nix-build tests/vm-test.nix                          # <nixpkgs> from NIX_PATH
#   nix-build tests/vm-test.nix -A driverInteractive     # to poke at it
#
# machine: a NixOS host with nixcloud.containers (NAT and IPv6 on eth1) and
#   the custom bridge of examples/networkExample.nix;
# outside: a second host on eth1's network, routing the hostonly subnet back
#   through machine, so that forwarding from and to brNC-hostonly would work
#   if the host allowed it.
#
# The VM has no network to fetch or build from. Every container here has a
# fixed address (or, for autostartExample.nix, the first one the helper
# allocates), so the test evaluates each container's system outside the VM,
# exactly as the helper will inside it, and puts it into the VM's store; the
# helper then finds everything built. The test checks that prediction first,
# so that a mismatch says so instead of failing in a build. The containers
# made with `--system` get a system each, with its own name and no address
# of its own (LXC's is the helper's).
#
# Not here: idmapped mounts. The VM's store is an overlay on the host's 9p
# share, on which the kernel allows no idmapped mount (nor on the overlay
# above it), so the host sets idmappedMounts = false; the helper's tests
# (rust-helper/tests/integration/guests.rs) show them on ext4.
{
  pkgs ? import <nixpkgs> { },
  # The nftables backend instead of iptables.
  nftables ? false,
}:
let
  inherit (pkgs) lib;
  specs = import ../lib/spec.nix;
  defaults = builtins.fromJSON (builtins.readFile ../lib/host-defaults.json);

  # What lib/nixos-system.nix is given inside the VM, by the helper's rules
  # (rust-helper/src/capabilities/network/addresses.rs): on the hostonly bridge without NAT the
  # gateway is the host; with NAT or on another bridge there is none.
  guestSystem =
    { file, name, address, onHostonly ? true, nat ? false }:
    import ../lib/nixos-system.nix {
      nixpkgs = pkgs.path;
      system = pkgs.stdenv.hostPlatform.system;
      configuration = (specs.fromValue "container file ${toString file}" (import file)).configuration;
      params = {
        inherit name;
        nixDaemon = false;
        # The release the helper fixes at create: this nixpkgs' own.
        stateVersion = lib.trivial.release;
        hostonly = if address == null then { address = null; } else {
          inherit address;
          prefixLength = defaults.hostonly.prefixLength;
          gateway = if onHostonly && !nat then defaults.hostonly.address else null;
        };
        internet = if nat then { bridge = defaults.internet.bridge; } else null;
      };
    };

  systems = {
    probe1 = guestSystem { file = ./vm/probe-v1.nix; name = "probe"; address = "10.101.0.10"; };
    probe2 = guestSystem { file = ./vm/probe-v2.nix; name = "probe"; address = "10.101.0.10"; };
    nat = guestSystem { file = ./vm/nat.nix; name = "nat"; address = "10.101.0.20"; nat = true; };
    net = guestSystem { file = ../examples/networkExample.nix; name = "net"; address = "10.10.1.2"; onHostonly = false; };
    # No fixed address: the first free one, as nothing else is on brNC-hostonly then.
    auto = guestSystem { file = ../examples/autostartExample.nix; name = "auto"; address = "10.101.0.2"; };
    web = guestSystem { file = ./vm/web.nix; name = "web"; address = "10.101.0.30"; };
    db = guestSystem { file = ./vm/db.nix; name = "db"; address = "10.101.0.31"; };
  } // lib.genAttrs [ "first" "second" "third" "lone" ] (name:
    guestSystem { file = ./vm/probe-anywhere.nix; inherit name; address = null; });

  ipv6Prefix = "fd42:6e63:6c64:0:4000::";
in
pkgs.testers.runNixOSTest {
  name = "nixcloud-container${lib.optionalString nftables "-nftables"}";

  nodes.machine =
    { ... }:
    {
      imports = [ ../modules/host ];

      nixcloud.containers = {
        enable = true;
        internetInterface = "eth1";
        ipv6 = {
          enable = true;
          ipv6InternetInterfaceAddress = "${ipv6Prefix}1";
          ipv6Prefix = ipv6Prefix;
          # Longer than 64 bits, as in the seed: DHCPv6, not SLAAC.
          ipv6PrefixLength = 66;
        };
      };
      networking.nftables.enable = nftables;

      # The VM's store is an overlay, which has no idmapped mounts: the store
      # shows as owned by nobody inside (the helper's tests show the rest).
      nixcloud.containers.idmappedMounts = false;

      # examples/networkExample.nix's bridge, made by hand as the seed did;
      # containers may join it because the host says so.
      nixcloud.containers.extraBridges.myOwnBridge = { address = "10.10.0.1"; prefixLength = 16; };
      networking.bridges.myOwnBridge.interfaces = [ ];
      networking.interfaces.myOwnBridge = {
        ipv4.addresses = [ { address = "10.10.0.1"; prefixLength = 16; } ];
        useDHCP = false;
      };

      # A name only the host's dnsmasq knows (it serves /etc/hosts).
      networking.hosts."10.202.0.1" = [ "host.nixcloud.test" ];

      # What web.nix asks of the host: a directory to bind, a port to forward.
      nixcloud.containers.allowedHostPaths."/srv/shared" = { };
      nixcloud.containers.allowedForwardPorts = [ { from = 8080; to = 8080; } ];
      systemd.tmpfiles.rules = [ "d /srv/shared/www 0755 root root -" ];

      environment.etc."nixcloud-test".source = ./vm;
      environment.etc."nixcloud-examples".source = ../examples;

      # A declared container, made by nixcloud-container-sync at boot.
      nixcloud.containers.instances.net.file = "/etc/nixcloud-examples/networkExample.nix";
      nixcloud.containers.sync.nixParams = "-I nixpkgs=${pkgs.path}";

      # Everything the containers need is in the store already (see above);
      # nothing is fetched. The generations are built in Nix's sandbox, as
      # the helper demands of every host.
      virtualisation.additionalPaths = lib.attrValues systems;
      nix.settings.substituters = lib.mkForce [ ];
      # Generations must survive the reboot of the autostart test.
      virtualisation.writableStore = true;
      virtualisation.writableStoreUseTmpfs = false;
      virtualisation.memorySize = 3072;
      virtualisation.diskSize = 4096;
    };

  nodes.outside =
    { nodes, ... }:
    {
      networking.firewall.enable = false;
      # Without the host's rules, this would make the hostonly subnet reachable.
      networking.interfaces.eth1.ipv4.routes = [
        { address = "10.101.0.0"; prefixLength = 16; via = nodes.machine.networking.primaryIPAddress; }
      ];
    };

  testScript =
    { nodes, ... }:
    let
      outsideAddress = nodes.outside.networking.primaryIPAddress;
      nodesMachineAddress = nodes.machine.networking.primaryIPAddress;
    in
    ''
      import json

      nix = "-n \"-I nixpkgs=${pkgs.path}\""
      systems = json.loads("""${builtins.toJSON (lib.mapAttrs (_: toString) systems)}""")


      def nc(args):
          return machine.succeed(f"nixcloud-container {args}").strip()


      def inside(name, command):
          return nc(f"run {name} -- {command}")


      def expect(what, got, wanted):
          assert got == wanted, f"{what}: expected {wanted!r}, got {got!r}"


      def expect_system(name, key):
          expect(
              f"system of {name}",
              machine.succeed(f"readlink -f /nix/var/nix/profiles/nixcloud-container/{name}/profile/system").strip(),
              systems[key],
          )


      def listed():
          return {row["name"]: row for row in json.loads(nc("list --json"))}


      start_all()
      machine.wait_for_unit("multi-user.target")
      machine.wait_for_unit("nixcloud-container-autostart.service")
      outside.wait_for_unit("network.target")

      with subtest("the host is prepared"):
          host = json.loads(machine.succeed("cat /etc/nixcloud-container/host.json"))
          expect("host.json keys", sorted(host), sorted(${builtins.toJSON (lib.attrNames defaults)}))
          expect("hostonly bridge", host["hostonly"]["bridge"], "brNC-hostonly")
          machine.succeed("grep -qx 'root:100000:65536000' /etc/subuid")
          machine.succeed("grep -qx 'root:100000:65536000' /etc/subgid")
          machine.succeed("ip -4 -o addr show dev brNC-hostonly | grep -q 10.101.0.1/16")
          machine.succeed("ip -4 -o addr show dev brNC-internet | grep -q 10.202.0.1/16")
          machine.wait_until_succeeds("ip -6 route show dev brNC-internet | grep -q '${ipv6Prefix}/66'", timeout=60)
          machine.wait_for_unit("dnsmasq.service")
          machine.succeed("test -e ${nodes.machine.virtualisation.lxc.package}/share/lxc/config/common.conf")
          machine.succeed("nixcloud-container help | grep -q NIXCLOUD-CONTAINER")

      with subtest("list has the declared container only"):
          machine.wait_for_unit("nixcloud-container-sync.service")
          expect("containers", list(listed()), ["net"])

      with subtest("create"):
          nc(f"create probe /etc/nixcloud-test/probe-v1.nix {nix}")
          expect_system("probe", "probe1")
          expect("state", listed()["probe"]["state"], "STOPPED")
          nc("exists probe")

      with subtest("create again fails"):
          machine.fail(f"nixcloud-container create probe /etc/nixcloud-test/probe-v1.nix {nix}")
          expect("generation", listed()["probe"]["generation"], 1)

      with subtest("start: a systemd service runs inside"):
          nc("start probe")
          expect("state", nc("state probe"), "RUNNING")
          machine.wait_until_succeeds("nixcloud-container run probe -- systemctl is-active probe.service")
          machine.wait_until_succeeds("nixcloud-container run probe -- cat /run/probe | grep -qx 1")
          expect("hostname", inside("probe", "hostname"), "probe")
          expect("show-ip", nc("show-ip probe"), "10.101.0.10")
          machine.succeed("ping -c1 -W5 10.101.0.10")
          inside("probe", "ping -c1 -W5 10.101.0.1")
          # The container's processes are host uids from 100000 up.
          pid = machine.succeed("lxc-info -n probe -pH").strip()
          expect("uid of init", machine.succeed(f"ps -o uid= -p {pid}").strip(), "100000")
          machine.succeed("ps -o uid= --ppid " + pid + " | awk '$1 < 100000 { exit 1 }'")
          # Its limits are its cgroup's (lxc-cgroup reads the container's own).
          expect("memory.max", machine.succeed("lxc-cgroup -n probe memory.max").strip(), "536870912")
          expect("pids.max", machine.succeed("lxc-cgroup -n probe pids.max").strip(), "2048")
          # Its store is the closure of its generation and nothing else.
          generation = machine.succeed("readlink -f /nix/var/nix/profiles/nixcloud-container/probe/profile").strip()
          closure = set(machine.succeed(f"nix-store --query --requisites {generation}/system").split())
          seen = {"/nix/store/" + entry for entry in inside("probe", "ls /nix/store").split()}
          expect("the store inside", seen, closure | {generation})
          # The release the container was created with, kept for its life.
          expect("stateVersion", json.loads(nc("state probe --json"))["stateVersion"], "${lib.trivial.release}")
          # start on a running container says so.
          assert "is already running" in nc("start probe")
          # A file put into the rootfs is there for login.
          machine.succeed("echo hello-from-the-host > /var/lib/lxc/probe/rootfs/root/hello")
          expect("login", machine.succeed("echo 'cat /root/hello; exit' | nixcloud-container login probe").strip(), "hello-from-the-host")
          # Root logs in by itself, one getty per terminal: the console and LXC's pts/1 to pts/4.
          machine.wait_until_succeeds(
              "nixcloud-container run probe -- systemctl is-active console-getty.service container-getty@1.service",
              timeout=120,
          )
          machine.fail("nixcloud-container run probe -- systemctl is-active getty@tty1.service")
          machine.wait_until_succeeds("nixcloud-container run probe -- who | grep -q '^root  *pts/1 '", timeout=120)

      with subtest("commands on a container that does not exist fail"):
          for command in ["stop ghost", "terminate ghost", "start ghost", "state ghost"]:
              machine.fail(f"nixcloud-container {command}")

      with subtest("the hostonly bridge is never forwarded"):
          outside.fail("ping -c1 -W2 10.101.0.10")
          machine.fail("nixcloud-container run probe -- ping -c1 -W2 ${outsideAddress}")

      with subtest("update while running changes it"):
          # A live update of a real NixOS guest: switch-to-configuration exits 0.
          assert "activated generation 2" in nc(f"update probe /etc/nixcloud-test/probe-v2.nix {nix}")
          expect_system("probe", "probe2")
          machine.wait_until_succeeds("nixcloud-container run probe -- cat /run/probe | grep -qx 2")
          inside("probe", "systemctl is-active probe.service")
          expect("generation", listed()["probe"]["generation"], 2)
          generations = json.loads(nc("list-generations probe --json"))
          expect("generations", [(g["generation"], g["current"]) for g in generations], [(1, False), (2, True)])

      with subtest("rollback and switch-generation go back and forth"):
          nc("rollback probe")
          expect_system("probe", "probe1")
          machine.wait_until_succeeds("nixcloud-container run probe -- cat /run/probe | grep -qx 1")
          nc("switch-generation probe 2")
          expect_system("probe", "probe2")
          machine.wait_until_succeeds("nixcloud-container run probe -- cat /run/probe | grep -qx 2")
          nc("switch-generation probe 1")
          machine.wait_until_succeeds("nixcloud-container run probe -- cat /run/probe | grep -qx 1")
          # Both closures were added while it ran; at the next start only the current one is there.
          nc("stop probe")
          nc("start probe")
          machine.wait_until_succeeds("nixcloud-container run probe -- systemctl is-active probe.service", timeout=120)
          seen = {"/nix/store/" + entry for entry in inside("probe", "ls /nix/store").split()}
          expect("the store after a restart", seen, closure | {generation})

      with subtest("stop and destroy"):
          nc("stop probe")
          expect("state", nc("state probe"), "STOPPED")
          nc("destroy probe")
          machine.fail("nixcloud-container exists probe")
          expect("containers", list(listed()), ["net"])

      with subtest("addresses go .2 then .3, and a freed one is given again"):
          nc(f"create first --system {systems['first']}")
          nc(f"create second --system {systems['second']}")
          expect("first", nc("show-ip first"), "10.101.0.2")
          expect("second", nc("show-ip second"), "10.101.0.3")
          nc("destroy first")
          nc(f"create third --system {systems['third']}")
          expect("third reuses .2", nc("show-ip third"), "10.101.0.2")
          # Each holds the address the helper gave it, and no other.
          nc("start third")
          machine.wait_until_succeeds("nixcloud-container run third -- systemctl is-active probe.service", timeout=120)
          expect("addresses of third", inside("third", "ip -4 -o addr show dev hostonly | awk '{print $4}'"), "10.101.0.2/16")
          expect("hostname of third", inside("third", "hostname"), "third")
          # The host reaches it by name (the helper's block of /etc/hosts).
          machine.succeed("getent hosts third.containers | grep -q '^10\\.101\\.0\\.2 '")
          nc("destroy second")
          nc("destroy third --force")
          machine.fail("getent hosts third.containers")

      with subtest("a declared container with a fixed address on a custom bridge"):
          # nixcloud.containers.instances made it at boot; a second sync changes nothing.
          machine.wait_for_unit("nixcloud-container-sync.service")
          expect_system("net", "net")
          assert "0 created, 0 updated, 1 unchanged" in nc(f"sync --file /etc/nixcloud-container/instances.json {nix}")
          nc("start net")
          machine.wait_until_succeeds("ping -c1 -W2 10.10.1.2")
          expect("show-ip", nc("show-ip net"), "10.10.1.2")
          inside("net", "ip -4 -o addr show dev hostonly | grep -q 10.10.1.2/16")
          expect("hostname", inside("net", "hostname"), "10-10-1-2")
          machine.succeed("bridge link show master myOwnBridge | grep -q .")
          nc("destroy net --force")

      with subtest("a NAT container gets addresses and reaches the host's DNS"):
          nc(f"create nat /etc/nixcloud-test/nat.nix {nix}")
          expect_system("nat", "nat")
          nc("start nat")
          machine.wait_until_succeeds(
              "nixcloud-container run nat -- ip -4 -o addr show dev internet | grep -q 'inet 10\\.202\\.'"
          )
          machine.wait_until_succeeds(
              "nixcloud-container run nat -- getent hosts host.nixcloud.test | grep -q '^10\\.202\\.0\\.1 '",
              timeout=120,
          )
          # NAT to the outside, and IPv6 from the prefix by DHCPv6.
          inside("nat", "ping -c1 -W5 ${outsideAddress}")
          machine.wait_until_succeeds(
              "nixcloud-container run nat -- ip -6 -o addr show dev internet scope global | grep -q '${ipv6Prefix}'"
          )

      with subtest("containers reach the host, not each other, nor through the host"):
          nc(f"create lone --system {systems['lone']}")
          nc("start lone")
          lone, nat = nc("show-ip lone"), nc("show-ip nat")
          machine.wait_until_succeeds("nixcloud-container run lone -- systemctl is-active probe.service", timeout=120)
          expect("addresses of lone", inside("lone", f"ip -4 -o addr show dev hostonly | awk '{{print $4}}'"), f"{lone}/16")
          machine.wait_until_succeeds(f"ping -c1 -W2 {lone}")
          machine.wait_until_succeeds("nixcloud-container run lone -- ping -c1 -W2 10.101.0.1")
          machine.fail(f"nixcloud-container run lone -- ping -c1 -W2 {nat}")
          machine.fail(f"nixcloud-container run nat -- ping -c1 -W2 {lone}")
          # A route through the host changes nothing: it forwards nothing between them.
          inside("lone", f"ip route add {nat}/32 via 10.101.0.1")
          inside("nat", f"ip route add {lone}/32 via 10.101.0.1")
          machine.fail(f"nixcloud-container run lone -- ping -c1 -W2 {nat}")
          machine.succeed("for flag in /sys/class/net/nc*/brport/isolated; do grep -qx 1 $flag; done")
          nc("destroy lone --force")

      with subtest("a bound host directory served on a forwarded port, to the second VM"):
          machine.succeed("echo served-from-the-host > /srv/shared/www/index.html")
          nc(f"create web /etc/nixcloud-test/web.nix {nix}")
          expect_system("web", "web")
          nc("start web")
          machine.wait_until_succeeds("nixcloud-container run web -- systemctl is-active web.service", timeout=120)
          expect("the bound directory inside", inside("web", "cat /srv/www/index.html"), "served-from-the-host")
          # Read-only: the host did not allow writing.
          machine.fail("nixcloud-container run web -- touch /srv/www/written")
          outside.wait_until_succeeds(
              "curl -sf http://${nodesMachineAddress}:8080/ | grep -qx served-from-the-host", timeout=60
          )
          nc("stop web")
          outside.fail("curl -sf --max-time 5 http://${nodesMachineAddress}:8080/")

      with subtest("peers reach each other, by name where dnsmasq serves them"):
          nc(f"create db /etc/nixcloud-test/db.nix {nix}")
          expect_system("db", "db")
          nc("start web")
          nc("start db")
          machine.wait_until_succeeds("nixcloud-container run db -- systemctl is-active probe.service", timeout=120)
          machine.wait_until_succeeds("nixcloud-container run web -- ping -c1 -W2 10.101.0.31")
          machine.wait_until_succeeds("nixcloud-container run db -- ping -c1 -W2 10.101.0.30")
          machine.fail("nixcloud-container run nat -- ping -c1 -W2 10.101.0.31")
          # The host by name; the NAT container, whose DNS server is the
          # host's dnsmasq, by name too (its hostsdir).
          machine.succeed("getent hosts web.containers | grep -q '^10\\.101\\.0\\.30 '")
          machine.wait_until_succeeds(
              "nixcloud-container run nat -- getent hosts db.containers | grep -q '^10\\.101\\.0\\.31 '", timeout=60
          )
          nc("destroy web --force")
          nc("destroy db --force")
          machine.wait_until_succeeds("! nixcloud-container run nat -- getent hosts db.containers", timeout=60)

      with subtest("autostart after a reboot"):
          nc(f"create auto /etc/nixcloud-examples/autostartExample.nix {nix}")
          expect_system("auto", "auto")
          expect("autostart", listed()["auto"]["autostart"], True)
          machine.shutdown()
          machine.start()
          machine.wait_for_unit("nixcloud-container-autostart.service")
          machine.wait_until_succeeds("nixcloud-container state auto | grep -qx RUNNING")
          machine.wait_until_succeeds("nixcloud-container run auto -- hostname | grep -qx autostartExample")
          # The NAT container was shut down with the host and is not autostart.
          expect("state of nat", nc("state nat"), "STOPPED")
    '';
}
