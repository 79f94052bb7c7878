/* SPDX-License-Identifier: MIT */
/*
 * net: per-VM plumbing. Host side: veth end "mv<hash>" marked "mvmfs:<node>:<name>[ <routed
 * addr>]", an isolated port of the host bridge. VM namespace /run/netns/mvmfs-<node>.<name>
 * (plumbing.h has the forms without a node id): the veth peer
 * "uplink0" and the TAP "tap0" (owned by the VM's uid:gid) joined by a bridge "br0" (tc is not
 * an option, a namespace bridge is the plain L2 forward). IPv6 is disabled on every one of these
 * links: they only carry the guest's frames, so nothing of ours speaks on the wire with a MAC
 * that the guards would drop. The guards are in nft.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_bridge.h>
#include <stdio.h>
#include <string.h>

#include "ip6.h"
#include "net.h"
#include "plumbing.h"

struct ns_work {
	uid_t uid;
	gid_t gid;
	struct nl_sock *nl; /* out: a netlink socket bound to the VM namespace */
	bool tap_only;	    /* status: only report */
	bool tap_up;
};

/* On a thread inside the VM namespace. */
static int ns_setup(void *p)
{
	struct ns_work *w = p;
	int r;

	/* New links in this namespace (the veth peer arrives later) start without IPv6. */
	r = net_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
	if (r < 0)
		return r;
	r = tap_create(NET_TAP_NAME, w->uid, w->gid);
	if (r < 0)
		return r;
	return nlw_open(&w->nl);
}

static int ns_status(void *p)
{
	struct ns_work *w = p;
	struct nlw_link_info li;
	int r = nlw_open(&w->nl);

	if (r < 0)
		return r;
	w->tap_up = nlw_link_get(w->nl, NET_TAP_NAME, &li) >= 0 && li.up;
	return 0;
}

/* Is alias our mark for name (n->alias, alone or followed by " <addr>")? Sets *ret_routed. */
static bool alias_is(const char *alias, const struct net_names *n, struct in6_addr *ret_routed,
		     bool *has_route)
{
	size_t len = strlen(n->alias);

	*has_route = false;
	if (strncmp(alias, n->alias, len) != 0)
		return false;
	if (alias[len] == '\0')
		return true;
	if (alias[len] != ' ')
		return false;
	*has_route = inet_pton(AF_INET6, alias + len + 1, ret_routed) == 1;
	return true;
}

static int host_link(struct net_ctx *ctx, const struct net_names *n, int ns_fd, bool ns_new,
		     const char *alias, int br, struct err *err)
{
	struct nlw_link_info li;
	struct in6_addr a;
	bool routed;
	int r;

	r = nlw_link_get(ctx->nl, n->host_veth, &li);
	if (r >= 0 && !alias_is(li.alias, n, &a, &routed))
		return err_set(err, -EEXIST, "interface '%s' exists and is not ours (alias '%s')",
			       n->host_veth, li.alias);
	if (r >= 0 && ns_new) {
		/* Its peer went with an old namespace: start over. */
		r = nlw_link_del(ctx->nl, n->host_veth);
		if (r < 0 && r != -ENODEV)
			return err_set(err, r, "cannot delete stale '%s': %s", n->host_veth,
				       strerror(-r));
		r = -ENODEV;
	}
	if (r == -ENODEV) {
		r = nlw_veth_add(ctx->nl, n->host_veth, NET_NS_VETH, ns_fd, ctx->mtu);
		if (r < 0)
			return err_set(err, r, "cannot create veth '%s': %s", n->host_veth,
				       strerror(-r));
	} else if (r < 0) {
		return err_set(err, r, "cannot look up '%s': %s", n->host_veth, strerror(-r));
	}
	/* Enslave while down (no IPv6 on it), then isolate and bring it up. */
	r = nlw_link_modify(ctx->nl, n->host_veth,
			    &(struct nlw_change){.master = br,
						 .mtu = ctx->mtu,
						 .alias = alias,
						 .no_ipv6_addrs = true,
						 .isolated = -1,
						 .port_state = -1});
	if (r >= 0)
		r = nlw_link_modify(
			ctx->nl, n->host_veth,
			&(struct nlw_change){.up = true, .isolated = 1, .port_state = -1});
	if (r < 0)
		return err_set(err, r, "cannot attach '%s' to '%s': %s", n->host_veth, ctx->bridge,
			       strerror(-r));
	return 0;
}

static int ns_links(struct net_ctx *ctx, struct nl_sock *nl, struct err *err)
{
	int br, r;

	r = nlw_bridge_add(nl, NET_NS_BRIDGE, NULL, ctx->mtu, true);
	if (r < 0 && r != -EEXIST)
		return err_set(err, r, "cannot create the namespace bridge: %s", strerror(-r));
	br = nlw_ifindex(nl, NET_NS_BRIDGE);
	if (br < 0)
		return err_set(err, br, "namespace bridge missing: %s", strerror(-br));
	struct nlw_change port = {
		.master = br, .mtu = ctx->mtu, .up = true, .isolated = -1, .port_state = -1};

	r = nlw_link_modify(nl, NET_TAP_NAME, &port);
	if (r >= 0)
		r = nlw_link_modify(nl, NET_NS_VETH, &port);
	if (r < 0)
		return err_set(err, r, "cannot join the TAP and the veth in the namespace: %s",
			       strerror(-r));
	return 0;
}

static int vm_setup(struct net_ctx *ctx, const char *name, const struct net_names *n,
		    const struct in6_addr *addr, uid_t uid, gid_t gid, struct err *err)
{
	struct ns_work w = {.uid = uid, .gid = gid};
	_cleanup_close_ int ns_fd = -EBADF;
	char alias[sizeof(n->alias) + INET6_ADDRSTRLEN + 1];
	bool routed = !ip6_in_prefix(addr, &ctx->prefix, ctx->prefix_len), ns_new = false;
	int br, r;

	br = nlw_ifindex(ctx->nl, ctx->bridge);
	if (br < 0)
		return err_set(err, br, "bridge '%s' missing: %s", ctx->bridge, strerror(-br));
	r = netns_run(n->netns_path, true, ns_setup, &w, &ns_new);
	if (r < 0) {
		nlw_close(w.nl);
		return err_set(err, r, "cannot set up namespace %s: %s", n->netns_path,
			       strerror(-r));
	}
	ns_fd = netns_open(n->netns_path);
	if (ns_fd < 0) {
		nlw_close(w.nl);
		return err_set(err, ns_fd, "cannot open %s: %s", n->netns_path, strerror(-ns_fd));
	}
	/* The route, if any, is recorded in the mark so teardown finds it without the address. */
	if (routed) {
		char a[INET6_ADDRSTRLEN];

		snprintf(alias, sizeof(alias), "%s %s", n->alias,
			 inet_ntop(AF_INET6, addr, a, sizeof(a)));
	} else {
		snprintf(alias, sizeof(alias), "%s", n->alias);
	}
	r = host_link(ctx, n, ns_fd, ns_new, alias, br, err);
	if (r >= 0)
		r = ns_links(ctx, w.nl, err);
	nlw_close(w.nl);
	if (r < 0)
		return r;
	r = nftw_vm_add(ctx->nft, n, name, addr, err);
	if (r < 0)
		return r;
	if (routed) {
		r = nlw_route6_add(ctx->nl, br, addr, 128);
		if (r < 0)
			return err_set(err, r, "cannot route %s to '%s': %s", alias, ctx->bridge,
				       strerror(-r));
	}
	/* The host's neighbour entry of the address from an earlier run (same address, same MAC)
	 * would have the host send to a VM that is not up yet, and the packets are lost (TCP
	 * retries after 1 s). Without it the host solicits and queues them, and the guest's
	 * unsolicited advertisement, sent once its address is up, releases them at once. Best
	 * effort: a stale entry costs time, never correctness. */
	(void)nlw_neigh6_del(ctx->nl, br, addr);
	return 0;
}

/* What a VM's VMM is given of its network: namespace, TAP, MAC, MTU (the address is the
 * caller's). */
static void vm_info_fill(const struct net_ctx *ctx, const struct net_names *n,
			 struct net_vm_info *ret)
{
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->netns_path, sizeof(ret->netns_path), "%s", n->netns_path);
	snprintf(ret->tap_name, sizeof(ret->tap_name), "%s", NET_TAP_NAME);
	snprintf(ret->mac, sizeof(ret->mac), "%02x:%02x:%02x:%02x:%02x:%02x", n->mac[0], n->mac[1],
		 n->mac[2], n->mac[3], n->mac[4], n->mac[5]);
	ret->mtu = ctx->mtu;
}

int net_vm_setup(struct net_ctx *ctx, const char *name, const struct in6_addr *addr, uid_t uid,
		 gid_t gid, struct net_vm_info *ret, struct err *err)
{
	struct net_names n;
	bool routed;
	int r;

	r = net_names_derive(ctx->node, name, &n);
	if (r < 0)
		return err_set(err, r, "invalid VM name for networking");
	routed = !ip6_in_prefix(addr, &ctx->prefix, ctx->prefix_len);
	if (!ctx->no_host_plumbing) {
		if (!ctx->bridge_ready) {
			r = net_bridge_ensure(ctx, err);
			if (r < 0)
				return r;
		}
		r = vm_setup(ctx, name, &n, addr, uid, gid, err);
		if (r < 0) {
			/* Nothing half-made stays behind. */
			(void)net_vm_teardown(ctx, name, NULL);
			return err_prefix(err, "network of '%s': ", name);
		}
	}
	vm_info_fill(ctx, &n, ret);
	ret->addr = *addr;
	ret->gateway = ctx->gateway;
	ret->prefix_len = routed ? 128 : ctx->prefix_len;
	return 0;
}

int net_vm_setup_unplugged(struct net_ctx *ctx, const char *name, uid_t uid, gid_t gid,
			   struct net_vm_info *ret, struct err *err)
{
	struct ns_work w = {.uid = uid, .gid = gid};
	struct net_names n;
	bool ns_new = false;
	int r;

	r = net_names_derive(ctx->node, name, &n);
	if (r < 0)
		return err_set(err, r, "invalid VMM id for networking");
	if (!ctx->no_host_plumbing) {
		r = netns_run(n.netns_path, true, ns_setup, &w, &ns_new);
		nlw_close(w.nl);
		if (r < 0) {
			(void)net_vm_teardown(ctx, name, NULL);
			return err_set(err, r, "cannot set up namespace %s: %s", n.netns_path,
				       strerror(-r));
		}
	}
	vm_info_fill(ctx, &n, ret);
	ret->prefix_len = 128;
	return 0;
}

int net_vm_teardown(struct net_ctx *ctx, const char *name, struct err *err)
{
	struct nlw_link_info li = {0};
	struct net_names n;
	struct in6_addr a;
	bool ours, routed = false, ns_mounted;
	int r, first = 0;

	r = net_names_derive(ctx->node, name, &n);
	if (r < 0)
		return err_set(err, r, "invalid VM name for networking");
	if (ctx->no_host_plumbing)
		return 0;
	ours = nlw_link_get(ctx->nl, n.host_veth, &li) >= 0 && alias_is(li.alias, &n, &a, &routed);
	/* Stop the port first (a state change, no RCU wait): with the guards gone, nothing it
	 * receives is forwarded while the kernel is still removing it. */
	if (ours && li.master > 0)
		(void)nlw_link_modify(
			ctx->nl, n.host_veth,
			&(struct nlw_change){.isolated = -1, .port_state = BR_STATE_DISABLED});
	/* The route before the link: the link's mark is what remembers it. */
	if (ours && routed) {
		int br = nlw_ifindex(ctx->nl, ctx->bridge);

		r = br < 0 ? 0 : nlw_route6_del(ctx->nl, br, &a, 128);
		if (r < 0)
			first = err_set(err, r, "cannot remove the route: %s", strerror(-r));
	}
	/* The host's neighbour entries of the VM (its MAC): its next start begins without one,
	 * see vm_setup. Best effort: a stale entry costs time, never correctness. */
	{
		int br = nlw_ifindex(ctx->nl, ctx->bridge);

		if (br > 0)
			(void)nlw_neigh_del_lladdr(ctx->nl, br, n.mac);
	}
	r = nftw_vm_del(ctx->nft, &n, first ? NULL : err);
	if (r < 0 && !first)
		first = r;
	r = netns_remove(n.netns_path);
	if (r < 0 && !first)
		first = err_set(err, r, "cannot remove %s: %s", n.netns_path, strerror(-r));
	ns_mounted = r > 0;
	/* Unmounting the namespace destroys it once its last user is gone, and with it the TAP
	 * and both veth ends, in the kernel's cleanup worker: deleting the veth here would wait
	 * for an RCU grace period (tens of ms). Meanwhile the disabled port forwards nothing.
	 * Without a namespace (a leftover, or a peer in a stray one), delete it now. */
	if (ours && !ns_mounted) {
		r = nlw_link_del(ctx->nl, n.host_veth);
		if (r < 0 && r != -ENODEV && !first)
			first = err_set(err, r, "cannot delete '%s': %s", n.host_veth,
					strerror(-r));
	}
	return first;
}

int net_vm_status(struct net_ctx *ctx, const char *name, struct net_vm_status *ret)
{
	struct ns_work w = {.tap_only = true};
	struct nlw_link_info li;
	struct net_names n;
	struct in6_addr a;
	bool routed;
	int r;

	r = net_names_derive(ctx->node, name, &n);
	if (r < 0)
		return r;
	memset(ret, 0, sizeof(*ret));
	if (ctx->no_host_plumbing)
		return 0;
	r = netns_run(n.netns_path, false, ns_status, &w, NULL);
	nlw_close(w.nl);
	ret->netns_present = r >= 0;
	ret->tap_up = r >= 0 && w.tap_up;
	ret->veth_up = nlw_link_get(ctx->nl, n.host_veth, &li) >= 0 &&
		       alias_is(li.alias, &n, &a, &routed) && li.up && li.lower_up;
	ret->bridge_up = nlw_link_get(ctx->nl, ctx->bridge, &li) >= 0 && li.up;
	return 0;
}
