#!/bin/sh
# Baseline for bench/net-setup: the same per-VM plumbing as net/ (veth.c, tap.c, nft.c), done
# with the ip, bridge and nft commands. Usage:
#   net-setup-baseline.sh setup NAME HOSTVETH CHAIN MAC ADDR LINKLOCAL ADDRHEX LLHEX UID GID
#   net-setup-baseline.sh teardown NAME HOSTVETH CHAIN
set -e
op=$1 name=$2 veth=$3 chain=$4
ns=mvmfs-$name
if [ "$op" = setup ]; then
	mac=$5 addr=$6 ll=$7 ahex=$8 lhex=$9 uid=${10} gid=${11}
	ip netns add "$ns"
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
	ip -n "$ns" tuntap add dev tap0 mode tap vnet_hdr user "$uid" group "$gid"
	ip link add "$veth" mtu 1500 type veth peer name uplink0 netns "$ns" mtu 1500
	sysctl -qw "net.ipv6.conf.$veth.disable_ipv6=1"
	ip link set "$veth" master mvmbr0 alias "mvmfs:$name" up
	bridge link set dev "$veth" isolated on
	ip -n "$ns" link add br0 mtu 1500 up type bridge forward_delay 0 stp_state 0 mcast_snooping 0
	ip -n "$ns" link set tap0 master br0 mtu 1500 up
	ip -n "$ns" link set uplink0 master br0 mtu 1500 up
	nft -f - <<NFT
add chain bridge mvmfs $chain { comment "mvmfs:$name"; }
add rule bridge mvmfs $chain ether saddr != $mac counter drop
add rule bridge mvmfs $chain ether type != ip6 counter drop
add rule bridge mvmfs $chain ip6 saddr != { $addr, $ll, :: } counter drop
add rule bridge mvmfs $chain icmpv6 type { nd-router-advert, nd-redirect } counter drop
add rule bridge mvmfs $chain udp sport 547 counter drop
add rule bridge mvmfs $chain icmpv6 type nd-neighbor-advert @th,64,128 != { $ahex, $lhex } counter drop
add element bridge mvmfs ports { "$veth" : jump $chain }
NFT
else
	nft -f - <<NFT
delete element bridge mvmfs ports { "$veth" }
flush chain bridge mvmfs $chain
delete chain bridge mvmfs $chain
NFT
	# Like net/: the namespace's destruction removes the TAP and both veth ends.
	ip netns del "$ns"
fi
