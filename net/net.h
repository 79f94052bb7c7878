/* SPDX-License-Identifier: MIT */
/*
 * net: per-VM networking on the host (libnl-3 netlink, nftables) and address management
 * (libpq or a local allocator). Public interface; everything else in net/ is private.
 *
 * Threading: a struct net_ctx belongs to one thread at a time for host plumbing (it owns an
 * nl_sock and an nftables context): callers serialise net_bridge_ensure, net_vm_*, net_reap.
 * The address calls (net_prefix, net_ip_*) are thread-safe and may run at the same time as
 * plumbing and as each other: they must not be serialised with plumbing, since with a database
 * they wait on the network (each bounded by net_config.database_timeout_ms).
 */
#pragma once

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/types.h>

#include "err.h"

struct net_ctx;

struct net_config {
	const char *state_dir;	      /* for the local allocator and the generated prefix */
	const char *database_url;     /* NULL: local allocator in state_dir */
	unsigned database_timeout_ms; /* bound of one address assignment with a database, 0: 5 s */
	const char *bridge;	      /* host bridge name, e.g. "mvmbr0" */
	const char *ipv6_prefix; /* "PREFIX/LEN" or NULL: generated ULA /64 kept in state_dir */
	/* This daemon's identity (1-8 of [0-9a-f]): it goes into every host resource's name and
	 * mark, and the reaper touches only resources carrying it. NULL: the unmarked names of
	 * a lone daemon (tests). */
	const char *node_id;
	unsigned mtu;	       /* 0: 1500 */
	bool no_host_plumbing; /* tests of IPAM alone: never touch links */
};

/* What the VMM and the guest need to know about a VM's network. */
struct net_vm_info {
	char netns_path[108];	 /* /run/netns/mvmfs-NODE.NAME, for jailer --netns */
	char tap_name[IFNAMSIZ]; /* the TAP inside the namespace */
	char mac[18];		 /* guest MAC, "02:xx:xx:xx:xx:xx" */
	unsigned mtu;
	struct in6_addr addr;	 /* the VM's address */
	struct in6_addr gateway; /* bridge address, the guest's default route */
	unsigned prefix_len;	 /* on-link prefix for the guest, 128 when outside ours */
};

struct net_vm_status {
	bool netns_present, tap_up, veth_up, bridge_up;
};

int net_ctx_new(const struct net_config *cfg, struct net_ctx **ret, struct err *err);
struct net_ctx *net_ctx_free(struct net_ctx *ctx);

/* The node's prefix and gateway (after net_ctx_new). */
int net_prefix(struct net_ctx *ctx, struct in6_addr *ret_prefix, unsigned *ret_len,
	       struct in6_addr *ret_gateway);

/* Address of VM name: existing one, or a new unique one written back. -EIO database down,
 * silent past the deadline or failing, -ENOSPC pool full, -EINVAL bad stored value: not a
 * global-scope or unique-local unicast address, the gateway or a reserved address of the node
 * prefix (the message names the row and the reason). Thread-safe. */
int net_ip_assign(struct net_ctx *ctx, const char *name, struct in6_addr *ret, struct err *err);
/* Forget the local allocation of name (no-op with a database: the platform owns the row). */
int net_ip_release(struct net_ctx *ctx, const char *name, struct err *err);
/* Names holding a local allocation, sorted; *ret is a NULL-terminated array (one block, the
 * caller frees it with free()). Returns the count. With a database the platform owns the rows:
 * an empty list. Lets the runtime reap the leases of names it does not know. */
int net_ip_list(struct net_ctx *ctx, char ***ret, struct err *err);

/* Shutdown: address calls waiting on the database end at once with -EIO ("cancelled"), and so
 * does every later one. Thread-safe; a no-op with the local allocator. */
void net_ip_cancel(struct net_ctx *ctx);

/* Host bridge: create if missing, gateway address, forwarding, isolation table. Idempotent. */
int net_bridge_ensure(struct net_ctx *ctx, struct err *err);

/* Namespace, veth pair, TAP owned by uid:gid, nft guards, route. Idempotent per name. */
int net_vm_setup(struct net_ctx *ctx, const char *name, const struct in6_addr *addr, uid_t uid,
		 gid_t gid, struct net_vm_info *ret, struct err *err);
/* A namespace holding only the TAP (owned by uid:gid, down): no uplink, no bridge port, no
 * guards, no address. For a guest that configures no network (a template build, whose id may
 * be longer than a VM name: common/parse.h vmm_id_is_valid) but whose VMM needs its NIC's TAP.
 * ret gets the netns path, the TAP name and a MAC. net_vm_teardown removes it; net_reap
 * removes it when is_known rejects name. */
int net_vm_setup_unplugged(struct net_ctx *ctx, const char *name, uid_t uid, gid_t gid,
			   struct net_vm_info *ret, struct err *err);
/* Remove everything net_vm_setup created for name; missing pieces are not errors. */
int net_vm_teardown(struct net_ctx *ctx, const char *name, struct err *err);
int net_vm_status(struct net_ctx *ctx, const char *name, struct net_vm_status *ret);

/* Remove marked leftovers whose VM name is_known() rejects. Returns the number removed. */
int net_reap(struct net_ctx *ctx, bool (*is_known)(const char *name, void *ud), void *ud);
