/* SPDX-License-Identifier: MIT */
/*
 * net: the context (netlink socket, nftables context, address allocator), names derived from a
 * VM name, the address wrappers over ipam, and the reaper of marked leftovers.
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ip6.h"
#include "ipam.h"
#include "parse.h"
#include "plumbing.h"

/* FNV-1a then a splitmix64 finaliser; seed separates the uses (names vs MAC). Not
 * cryptographic: a collision only makes setup fail with -EEXIST (the alias is checked). */
static uint64_t name_hash(const char *s, uint64_t seed)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ seed;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return h;
}

void net_bridge_mac(const char *bridge, uint8_t ret[6])
{
	uint64_t h = name_hash(bridge, 0x6272);

	ret[0] = 0x02; /* locally administered, unicast */
	for (int i = 1; i < 6; i++)
		ret[i] = (uint8_t)(h >> (8 * (i - 1)));
}

bool net_node_valid(const char *node)
{
	size_t n = node ? strlen(node) : 0;

	return n <= NET_NODE_MAX && strspn(node ? node : "", "0123456789abcdef") == n;
}

int net_names_derive(const char *node, const char *name, struct net_names *ret)
{
	/* The node id salts the link and chain names: two daemons' VMs of one name differ. */
	uint64_t salt = node && *node ? name_hash(node, 0x6e6f6465) : 0;
	uint64_t h = name_hash(name, salt), m = name_hash(name, 0x6d6163);
	int r;

	if (!vmm_id_is_valid(name) || !net_node_valid(node))
		return -EINVAL;
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->host_veth, sizeof(ret->host_veth), "mv%010llx",
		 (unsigned long long)(h & 0xffffffffffULL));
	snprintf(ret->chain, sizeof(ret->chain), "vm_%012llx", (unsigned long long)(h >> 16));
	if (node && *node)
		snprintf(ret->alias, sizeof(ret->alias), NET_MARK_PREFIX "%s:%s", node, name);
	else
		snprintf(ret->alias, sizeof(ret->alias), NET_MARK_PREFIX "%s", name);
	r = netns_path(node, name, ret->netns_path, sizeof(ret->netns_path));
	if (r < 0)
		return r;
	ret->mac[0] = 0x02; /* locally administered, unicast */
	for (int i = 1; i < 6; i++)
		ret->mac[i] = (uint8_t)(m >> (8 * (i - 1)));
	return 0;
}

int net_ctx_new(const struct net_config *cfg, struct net_ctx **ret, struct err *err)
{
	struct net_ctx *ctx;
	const char *br = cfg->bridge ? cfg->bridge : DEFAULT_BRIDGE;
	int r;

	/* It also goes into nftables commands: letters, digits, '.', '_', '-' only. */
	if (strlen(br) >= IFNAMSIZ || !*br ||
	    strspn(br, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
		       "OPQRSTUVWXYZ0123456789._-") != strlen(br))
		return err_set(err, -EINVAL, "bridge name '%s' is not a valid interface name", br);
	if (cfg->mtu && (cfg->mtu < 1280 || cfg->mtu > 65535))
		return err_set(err, -EINVAL, "MTU %u is out of range (IPv6 needs >= 1280)",
			       cfg->mtu);
	if (!net_node_valid(cfg->node_id))
		return err_set(err, -EINVAL, "node id '%s' is not 1-%d of [0-9a-f]", cfg->node_id,
			       NET_NODE_MAX);
	if (cfg->database_timeout_ms &&
	    (cfg->database_timeout_ms < 100 || cfg->database_timeout_ms > 60000))
		return err_set(err, -EINVAL, "database timeout %u ms is out of range (100ms-60s)",
			       cfg->database_timeout_ms);
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	snprintf(ctx->bridge, sizeof(ctx->bridge), "%s", br);
	snprintf(ctx->node, sizeof(ctx->node), "%s", cfg->node_id ? cfg->node_id : "");
	if (ctx->node[0]) {
		snprintf(ctx->mark, sizeof(ctx->mark), NET_MARK_PREFIX "%s:", ctx->node);
		snprintf(ctx->ns_prefix, sizeof(ctx->ns_prefix), NET_NETNS_PREFIX "%s.", ctx->node);
	} else {
		snprintf(ctx->mark, sizeof(ctx->mark), NET_MARK_PREFIX);
		snprintf(ctx->ns_prefix, sizeof(ctx->ns_prefix), NET_NETNS_PREFIX);
	}
	ctx->mtu = cfg->mtu ? cfg->mtu : 1500;
	ctx->no_host_plumbing = cfg->no_host_plumbing;

	r = ipam_new(cfg, &ctx->ipam, err);
	if (r < 0)
		goto out_free;
	r = ipam_prefix(ctx->ipam, &ctx->prefix, &ctx->prefix_len, &ctx->gateway);
	if (r < 0) {
		err_set(err, r, "no node prefix");
		goto out_free;
	}
	if (!ctx->no_host_plumbing) {
		r = nlw_open(&ctx->nl);
		if (r < 0) {
			err_set(err, r, "cannot open a netlink socket");
			goto out_free;
		}
		r = nftw_new(&ctx->nft);
		if (r < 0) {
			err_set(err, r, "cannot create an nftables context");
			goto out_free;
		}
	}
	*ret = ctx;
	return 0;

out_free:
	net_ctx_free(ctx);
	return r;
}

struct net_ctx *net_ctx_free(struct net_ctx *ctx)
{
	if (!ctx)
		return NULL;
	ipam_free(ctx->ipam);
	nlw_close(ctx->nl);
	nftw_free(ctx->nft);
	free(ctx);
	return NULL;
}

int net_prefix(struct net_ctx *ctx, struct in6_addr *ret_prefix, unsigned *ret_len,
	       struct in6_addr *ret_gateway)
{
	if (ret_prefix)
		*ret_prefix = ctx->prefix;
	if (ret_len)
		*ret_len = ctx->prefix_len;
	if (ret_gateway)
		*ret_gateway = ctx->gateway;
	return 0;
}

int net_ip_assign(struct net_ctx *ctx, const char *name, struct in6_addr *ret, struct err *err)
{
	return ipam_assign(ctx->ipam, name, ret, err);
}

int net_ip_release(struct net_ctx *ctx, const char *name, struct err *err)
{
	return ipam_release(ctx->ipam, name, err);
}

void net_ip_cancel(struct net_ctx *ctx)
{
	ipam_cancel(ctx->ipam);
}

int net_ip_list(struct net_ctx *ctx, char ***ret, struct err *err)
{
	return ipam_list(ctx->ipam, ret, err);
}

struct reap {
	struct net_ctx *ctx;
	bool (*is_known)(const char *name, void *ud);
	void *ud;
};

static int reap_name(const char *name, void *p)
{
	struct reap *rp = p;
	struct net_names n;

	if (rp->is_known(name, rp->ud))
		return 0;
	/* Only what carries our mark for this name: the teardown removes nothing else. */
	if (net_names_derive(rp->ctx->node, name, &n) < 0)
		return 0;
	return net_vm_teardown(rp->ctx, name, NULL) < 0 ? 0 : 1;
}

static int reap_link(const char *name, const char *alias, void *p)
{
	struct reap *rp = p;
	const size_t plen = strlen(rp->ctx->mark);
	struct net_names n;

	char vm[NET_NAME_MAX + 1];
	size_t len;

	/* Only our node's marks: another daemon's links are not ours to judge. */
	if (!alias || strncmp(alias, rp->ctx->mark, plen) != 0)
		return 0;
	/* "<mark><name>" or "<mark><name> <routed address>" */
	len = strcspn(alias + plen, " ");
	if (len == 0 || len > NET_NAME_MAX)
		return 0;
	memcpy(vm, alias + plen, len);
	vm[len] = '\0';
	/* A host veth end is marked with its VM; the mark must match the derived name. */
	if (net_names_derive(rp->ctx->node, vm, &n) < 0 || strcmp(n.host_veth, name) != 0)
		return 0;
	return reap_name(vm, rp);
}

/* Routed addresses still claimed by the mark of a live host veth. */
struct claimed {
	struct in6_addr a[256];
	size_t n;
	bool overflow;
};

static int claim_link(const char *name, const char *alias, void *p)
{
	struct claimed *c = p;
	const char *sp;

	if (!alias || strncmp(alias, NET_MARK_PREFIX, strlen(NET_MARK_PREFIX)) != 0)
		return 0;
	sp = strchr(alias, ' ');
	if (!sp)
		return 0;
	if (c->n == ELEMENTSOF(c->a)) {
		c->overflow = true;
		return 0;
	}
	if (inet_pton(AF_INET6, sp + 1, &c->a[c->n]) == 1)
		c->n++;
	return 0;
}

struct route_reap {
	struct net_ctx *ctx;
	struct claimed *claimed;
	int br;
};

static int reap_route(const struct in6_addr *dst, void *p)
{
	struct route_reap *rr = p;

	for (size_t i = 0; i < rr->claimed->n; i++)
		if (memcmp(&rr->claimed->a[i], dst, sizeof(*dst)) == 0)
			return 0;
	return nlw_route6_del(rr->ctx->nl, rr->br, dst, 128) < 0 ? 0 : 1;
}

/* Our /128 routes whose VM link is gone (a crash between removing the link and the route). */
static int reap_routes(struct net_ctx *ctx)
{
	_cleanup_free_ struct claimed *c = calloc(1, sizeof(*c));
	struct route_reap rr = {.ctx = ctx, .claimed = c};
	int r;

	if (!c)
		return -ENOMEM;
	rr.br = nlw_ifindex(ctx->nl, ctx->bridge);
	if (rr.br < 0)
		return 0;
	r = nlw_link_foreach(ctx->nl, claim_link, c);
	if (r < 0)
		return r;
	if (c->overflow)
		return 0; /* cannot tell which are claimed: keep them all */
	return nlw_route6_foreach(ctx->nl, rr.br, reap_route, &rr);
}

int net_reap(struct net_ctx *ctx, bool (*is_known)(const char *name, void *ud), void *ud)
{
	struct reap rp = {.ctx = ctx, .is_known = is_known, .ud = ud};
	int r, n = 0;

	if (ctx->no_host_plumbing)
		return 0;
	r = netns_foreach(ctx->ns_prefix, reap_name, &rp);
	if (r < 0)
		return r;
	n += r;
	r = nlw_link_foreach(ctx->nl, reap_link, &rp);
	if (r < 0)
		return r;
	n += r;
	r = nftw_vm_foreach(ctx->nft, ctx->mark, reap_name, &rp);
	if (r < 0)
		return r;
	n += r;
	r = reap_routes(ctx);
	if (r < 0)
		return r;
	return n + r;
}
