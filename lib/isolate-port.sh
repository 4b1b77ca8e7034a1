#!/bin/sh
# LXC's lxc.net.<n>.script.up for a container's veth (lib/lxc-config.nix):
# makes the host's end an isolated port of its bridge before the container's
# init runs, so that the container reaches the host and no other isolated
# port: no other container, unless both are peers (rust-helper/src/peers.rs).
# LXC gives the port as $6 (hook version 0) or in LXC_NET_PEER (version 1).
echo 1 >"/sys/class/net/${LXC_NET_PEER:-$6}/brport/isolated"
