/* SPDX-License-Identifier: MIT */
/*
 * net: host plumbing internals (private to net/): netlink wrappers, namespaces, links, TAP and
 * nftables. Every function returns >= 0 or -errno; libnl's -NLE_* never leaves nl.c.
 *
 * Ownership marks (what net_reap looks for, nothing else is ever removed), with the daemon's
 * node id <node> (net_config.node_id) so that daemons sharing a host never take each other's
 * resources for their own; without a node id (tests) the marks have no node part:
 *  - interface alias "mvmfs:<node>:<name>" on every host link we create (the bridge:
 *    "mvmfs:bridge");
 *  - network namespaces /run/netns/mvmfs-<node>.<name> ('.' and ':' never occur in VM names,
 *    so a mark of one form never parses as the other);
 *  - nftables tables "mvmfs" (bridge + inet) with per-VM chains "vm_<hash of node and name>"
 *    commented like the alias, and per bridge a forward chain "noreflect_<bridge>".
 */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"
#include "macro.h"
#include "parse.h"

struct nl_sock;
struct nl_msg;
struct nft_ctx;

#define NET_MARK_PREFIX "mvmfs:"
#define NET_BRIDGE_MARK "mvmfs:bridge"
#define NET_NETNS_DIR "/run/netns"
#define NET_NETNS_PREFIX "mvmfs-"
/* A node id is 1-8 of [0-9a-f]. */
#define NET_NODE_MAX 8
#define NET_NFT_TABLE "mvmfs"
#define NET_TAP_NAME "tap0"
#define NET_NS_BRIDGE "br0"
#define NET_NS_VETH "uplink0"
/* A VM's name or a template build's id (vmm_id_is_valid, common/parse.h): netns path, alias and
 * nft comment are bounded by it. */
#define NET_NAME_MAX VMM_ID_MAX
/* rtm_protocol of our /128 routes (a value no routing daemon registers). */
#define NET_RTPROT 0xa7

/* Everything derived from a VM name, deterministically. */
struct net_names {
	char host_veth[16]; /* "mv" + 10 hex */
	char chain[16];	    /* "vm_" + 12 hex */
	char alias[sizeof(NET_MARK_PREFIX) + NET_NODE_MAX + 1 + NET_NAME_MAX];
	char netns_path[108];
	uint8_t mac[6]; /* guest MAC, 02:... */
};

struct ipam;

/* The context behind net.h's struct net_ctx. */
struct net_ctx {
	struct ipam *ipam;
	struct nl_sock *nl; /* host namespace (the creator's) */
	struct nft_ctx *nft;
	char bridge[16];
	char mark[sizeof(NET_MARK_PREFIX) + NET_NODE_MAX + 1];	     /* "mvmfs:<node>:" */
	char ns_prefix[sizeof(NET_NETNS_PREFIX) + NET_NODE_MAX + 1]; /* "mvmfs-<node>." */
	char node[NET_NODE_MAX + 1];				     /* "" without a node id */
	unsigned mtu;
	bool no_host_plumbing;
	struct in6_addr prefix, gateway;
	unsigned prefix_len;
	bool bridge_ready; /* net_bridge_ensure succeeded once */
};

/* net.c: naming */
/* node: the node id, NULL or "" for the unmarked names. */
int net_names_derive(const char *node, const char *name, struct net_names *ret);
/* NULL, "" or 1-NET_NODE_MAX of [0-9a-f]. */
bool net_node_valid(const char *node);
/* The host bridge's fixed MAC, from its name. */
void net_bridge_mac(const char *bridge, uint8_t ret[6]);

/* nl.c: libnl wrappers */
int nl_to_errno(int nle);
int nlw_open(struct nl_sock **ret);
void nlw_close(struct nl_sock *sk);
/* ifindex of name, -ENODEV if absent. */
int nlw_ifindex(struct nl_sock *sk, const char *name);
/* Link facts: kind (e.g. "bridge"/"veth"/"tun", "" unknown), alias, up flag, master. */
struct nlw_link_info {
	int ifindex;
	int master;
	bool up;       /* administratively (IFF_UP) */
	bool lower_up; /* carrier (IFF_LOWER_UP): for a veth, its peer is up too */
	char kind[16];
	char alias[128];
};
int nlw_link_get(struct nl_sock *sk, const char *name, struct nlw_link_info *ret);
/* Change a link, addressed by name, in one RTM_NEWLINK. */
struct nlw_change {
	int master;	    /* > 0: enslave to this ifindex; 0: keep */
	unsigned mtu;	    /* 0: keep */
	const char *alias;  /* NULL: keep */
	bool up;	    /* set IFF_UP */
	bool no_ipv6_addrs; /* IFLA_INET6_ADDR_GEN_MODE none (send while down) */
	int isolated;	    /* bridge port IFLA_BRPORT_ISOLATED 0/1; -1: keep */
	int port_state;	    /* bridge port IFLA_BRPORT_STATE (BR_STATE_*); -1: keep */
};
#define NLW_CHANGE_INIT                          \
	{                                        \
		.isolated = -1, .port_state = -1 \
	}
int nlw_link_modify(struct nl_sock *sk, const char *name, const struct nlw_change *c);
int nlw_link_del(struct nl_sock *sk, const char *name);
/* Create a bridge (forward_delay 0, STP off, multicast snooping off), optionally up. -EEXIST.
 * mac: a fixed address (else the bridge takes its lowest port's, which changes as ports come
 * and go and would make the guests' neighbour entry of the gateway stale); NULL: kernel's. */
int nlw_bridge_add(struct nl_sock *sk, const char *name, const uint8_t *mac, unsigned mtu, bool up);
/* Veth pair: host end name (down) in sk's namespace, peer peer_name in the netns ns_fd. */
int nlw_veth_add(struct nl_sock *sk, const char *name, const char *peer_name, int ns_fd,
		 unsigned mtu);
/* IPv6 address addr/len on ifindex, nodad; existing is fine. */
int nlw_addr6_add(struct nl_sock *sk, int ifindex, const struct in6_addr *addr, unsigned len);
/* Route dst/len dev ifindex (replace); delete: missing is fine. */
int nlw_route6_add(struct nl_sock *sk, int ifindex, const struct in6_addr *dst, unsigned len);
int nlw_route6_del(struct nl_sock *sk, int ifindex, const struct in6_addr *dst, unsigned len);
/* Forget the neighbour entry of dst on ifindex; none is fine. */
int nlw_neigh6_del(struct nl_sock *sk, int ifindex, const struct in6_addr *dst);
/* Forget every neighbour entry on ifindex that names the link-layer address mac. */
int nlw_neigh_del_lladdr(struct nl_sock *sk, int ifindex, const uint8_t mac[6]);
/* Iterate our (NET_RTPROT) IPv6 /128 routes through ifindex. */
int nlw_route6_foreach(struct nl_sock *sk, int ifindex,
		       int (*cb)(const struct in6_addr *dst, void *ud), void *ud);
/* Iterate the links of sk's namespace: cb(name, alias, ud); alias may be NULL. */
int nlw_link_foreach(struct nl_sock *sk, int (*cb)(const char *name, const char *alias, void *ud),
		     void *ud);
/* Write a sysctl under /proc/sys/net of the calling thread's namespace. */
int net_sysctl(const char *path, const char *value);

/* netns.c */
/* /run/netns/mvmfs-<node>.<name> (node NULL or "": /run/netns/mvmfs-<name>). */
int netns_path(const char *node, const char *name, char *buf, size_t size);
/* Create (or open) a namespace at path and run fn(ud) on a thread inside it.
 * ret_created tells whether it was new. */
int netns_run(const char *path, bool create, int (*fn)(void *ud), void *ud, bool *ret_created);
int netns_open(const char *path);
/* Unmount and unlink; 1 if a namespace was mounted there, 0 if not. */
int netns_remove(const char *path);
/* Iterate VM names of the /run/netns entries named prefix<name> ("mvmfs-<node>."). */
int netns_foreach(const char *prefix, int (*cb)(const char *vm_name, void *ud), void *ud);

/* tap.c: inside the VM namespace (calling thread is in it). */
int tap_create(const char *name, uid_t uid, gid_t gid);

/* nft.c */
int nftw_new(struct nft_ctx **ret);
void nftw_free(struct nft_ctx *nft);
/* Run a batch (atomic); error text in err. */
int nftw_run(struct nft_ctx *nft, const char *cmds, struct err *err);
int nftw_bridge_tables(struct nft_ctx *nft, const char *bridge, struct err *err);
int nftw_vm_add(struct nft_ctx *nft, const struct net_names *n, const char *name,
		const struct in6_addr *addr, struct err *err);
int nftw_vm_del(struct nft_ctx *nft, const struct net_names *n, struct err *err);
/* VM names of per-VM chains present (from their comments). cb may remove them. */
int nftw_vm_foreach(struct nft_ctx *nft, const char *mark, int (*cb)(const char *vm_name, void *ud),
		    void *ud);
