/* SPDX-License-Identifier: MIT */
/*
 * net: the host bridge. Created if missing (forward_delay 0, STP off), marked with the alias
 * "mvmfs:bridge", up, holding the gateway address of the node prefix (nodad; the kernel adds the
 * prefix route with it), IPv6 forwarding on, and the nftables tables in place. An existing
 * bridge without our mark is refused rather than adopted: it belongs to someone else.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "net.h"
#include "plumbing.h"

int net_bridge_ensure(struct net_ctx *ctx, struct err *err)
{
	struct nlw_link_info li;
	char path[96];
	int r;

	if (ctx->no_host_plumbing)
		return 0;
	r = nlw_link_get(ctx->nl, ctx->bridge, &li);
	if (r == -ENODEV) {
		uint8_t mac[6];

		net_bridge_mac(ctx->bridge, mac);
		r = nlw_bridge_add(ctx->nl, ctx->bridge, mac, ctx->mtu, false);
		if (r < 0 && r != -EEXIST)
			return err_set(err, r, "cannot create bridge '%s': %s", ctx->bridge,
				       strerror(-r));
		struct nlw_change mark = NLW_CHANGE_INIT;

		mark.alias = NET_BRIDGE_MARK;
		r = nlw_link_modify(ctx->nl, ctx->bridge, &mark);
		if (r < 0)
			return err_set(err, r, "cannot mark bridge '%s': %s", ctx->bridge,
				       strerror(-r));
		r = nlw_link_get(ctx->nl, ctx->bridge, &li);
	}
	if (r < 0)
		return err_set(err, r, "cannot look up bridge '%s': %s", ctx->bridge, strerror(-r));
	if (strcmp(li.kind, "bridge") != 0 || strcmp(li.alias, NET_BRIDGE_MARK) != 0)
		return err_set(
			err, -EEXIST,
			"interface '%s' exists and is not a bridge made by mvmfs (alias '%s')",
			ctx->bridge, li.alias);

	/* Addresses on a bridge port are pointless; on the bridge the gateway is all we want. */
	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/forwarding", ctx->bridge);
	r = net_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1");
	if (r >= 0)
		r = net_sysctl(path, "1");
	if (r < 0)
		return err_set(err, r, "cannot enable IPv6 forwarding: %s", strerror(-r));
	r = nlw_link_modify(ctx->nl, ctx->bridge,
			    &(struct nlw_change){
				    .mtu = ctx->mtu, .up = true, .isolated = -1, .port_state = -1});
	if (r < 0)
		return err_set(err, r, "cannot bring bridge '%s' up: %s", ctx->bridge,
			       strerror(-r));
	r = nlw_addr6_add(ctx->nl, li.ifindex, &ctx->gateway, ctx->prefix_len);
	if (r < 0)
		return err_set(err, r, "cannot add the gateway address to '%s': %s", ctx->bridge,
			       strerror(-r));
	r = nftw_bridge_tables(ctx->nft, ctx->bridge, err);
	if (r < 0)
		return r;
	ctx->bridge_ready = true;
	return 0;
}
