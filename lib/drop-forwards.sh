#!/bin/sh
# LXC's lxc.hook.stop of a container with forwarded ports (lib/lxc-config.nix):
# once its init has ended, whatever ended it (lxc-stop, a killed `stop`, its
# init's exit, a poweroff inside), its forwarded ports go. They are the rules
# of a chain of its own in the forwards' table
# (rust-helper/src/commands/network_rules.rs); this empties that chain, and
# the helper's next command takes the empty chain away. LXC runs it as root
# in the host's namespaces, with the container's name in LXC_NAME (and the
# paths of the container's namespaces as arguments, unused here), before it
# calls the container stopped: lxc-stop waits for it, and so no later start
# of the container can find its new rules emptied by this. A container that
# reboots (LXC_TARGET=reboot) comes back at its address and keeps them.
[ "$LXC_TARGET" = reboot ] && exit 0
nft flush chain ip nixcloud-container-forwards "to-$LXC_NAME" 2>/dev/null
exit 0
