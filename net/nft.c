/* SPDX-License-Identifier: MIT */
/*
 * net: isolation and anti-spoofing with nftables (libnftables, one atomic batch per change).
 *
 *   table bridge mvmfs
 *     map ports  { ifname : verdict }           host veth end -> jump vm_<hash>
 *     chain guard (prerouting)                   iifname vmap @ports
 *     chain vm_<hash> comment "mvmfs:<node>:<name>"  what a VM may send, then accept
 *   table inet mvmfs
 *     chain noreflect_<bridge> (forward)         nothing routed from the bridge back into it
 *
 * Several daemons (each with its own bridge) share both tables: a daemon flushes and refills only
 * its own bridge's noreflect chain and its own VMs' chains and map elements (names salted with
 * its node id); the guard chain's single rule is the same for all of them.
 * Port isolation already stops VM<->VM frames at L2; noreflect stops the same through the host's
 * IPv6 forwarding (a guest could send to another VM's address via the gateway MAC).
 * Deletion is made idempotent without listing: the batch first "adds" what it deletes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <nftables/libnftables.h>
#include <stdio.h>
#include <string.h>

#include "parse.h"
#include "plumbing.h"

#define NFT_CMDS_MAX 4096

int nftw_new(struct nft_ctx **ret)
{
	struct nft_ctx *nft = nft_ctx_new(NFT_CTX_DEFAULT);

	if (!nft)
		return -ENOMEM;
	if (nft_ctx_buffer_output(nft) < 0 || nft_ctx_buffer_error(nft) < 0) {
		nft_ctx_free(nft);
		return -ENOMEM;
	}
	*ret = nft;
	return 0;
}

void nftw_free(struct nft_ctx *nft)
{
	if (nft)
		nft_ctx_free(nft);
}

int nftw_run(struct nft_ctx *nft, const char *cmds, struct err *err)
{
	const char *msg;

	if (nft_run_cmd_from_buffer(nft, cmds) == 0) {
		(void)nft_ctx_get_error_buffer(nft); /* drain warnings */
		return 0;
	}
	msg = nft_ctx_get_error_buffer(nft);
	return err_set(err, -EIO, "nftables: %s", msg && *msg ? msg : "batch failed");
}

static const char *const table_header =
	"add table bridge " NET_NFT_TABLE "\n"
	"add map bridge " NET_NFT_TABLE " ports { type ifname : verdict; }\n";

int nftw_bridge_tables(struct nft_ctx *nft, const char *bridge, struct err *err)
{
	char cmds[NFT_CMDS_MAX];
	int n;

	n = snprintf(cmds, sizeof(cmds),
		     "%s"
		     "add chain bridge %s guard { type filter hook prerouting priority -200; "
		     "policy accept; }\n"
		     "flush chain bridge %s guard\n"
		     "add rule bridge %s guard iifname vmap @ports\n"
		     "add table inet %s\n"
		     "add chain inet %s noreflect_%s { type filter hook forward priority 0; "
		     "policy accept; }\n"
		     "flush chain inet %s noreflect_%s\n"
		     "add rule inet %s noreflect_%s iifname \"%s\" oifname \"%s\" counter drop\n",
		     table_header, NET_NFT_TABLE, NET_NFT_TABLE, NET_NFT_TABLE, NET_NFT_TABLE,
		     NET_NFT_TABLE, bridge, NET_NFT_TABLE, bridge, NET_NFT_TABLE, bridge, bridge,
		     bridge);
	if (n < 0 || (size_t)n >= sizeof(cmds))
		return -ENAMETOOLONG;
	return nftw_run(nft, cmds, err);
}

/* The EUI-64 link-local address of mac, the kernel's default for the guest. */
static void mac_link_local(const uint8_t mac[6], struct in6_addr *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->s6_addr[0] = 0xfe;
	ret->s6_addr[1] = 0x80;
	ret->s6_addr[8] = mac[0] ^ 0x02;
	ret->s6_addr[9] = mac[1];
	ret->s6_addr[10] = mac[2];
	ret->s6_addr[11] = 0xff;
	ret->s6_addr[12] = 0xfe;
	ret->s6_addr[13] = mac[3];
	ret->s6_addr[14] = mac[4];
	ret->s6_addr[15] = mac[5];
}

/* 128-bit integer literal for a raw @th match (nft 1.0.6 has no "icmpv6 taddr"). */
static void addr_hex(const struct in6_addr *a, char buf[35])
{
	buf[0] = '0';
	buf[1] = 'x';
	for (int i = 0; i < 16; i++)
		sprintf(buf + 2 + 2 * i, "%02x", a->s6_addr[i]);
}

int nftw_vm_add(struct nft_ctx *nft, const struct net_names *n, const char *name,
		const struct in6_addr *addr, struct err *err)
{
	char cmds[NFT_CMDS_MAX], a[INET6_ADDRSTRLEN], ll[INET6_ADDRSTRLEN], mac[18];
	char ahex[35], llhex[35];
	struct in6_addr lla;
	const char *t = NET_NFT_TABLE, *c = n->chain;
	int k;

	mac_link_local(n->mac, &lla);
	inet_ntop(AF_INET6, addr, a, sizeof(a));
	inet_ntop(AF_INET6, &lla, ll, sizeof(ll));
	addr_hex(addr, ahex);
	addr_hex(&lla, llhex);
	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", n->mac[0], n->mac[1], n->mac[2],
		 n->mac[3], n->mac[4], n->mac[5]);
	/* Order matters: the first matching drop wins, everything else is accepted. ND target
	 * sits 8 bytes into the ICMPv6 header. */
	k = snprintf(cmds, sizeof(cmds),
		     "%s"
		     "add chain bridge %s %s { comment \"%s\"; }\n"
		     "flush chain bridge %s %s\n"
		     "add rule bridge %s %s ether saddr != %s counter drop\n"
		     "add rule bridge %s %s ether type != ip6 counter drop\n"
		     "add rule bridge %s %s ip6 saddr != { %s, %s, :: } counter drop\n"
		     "add rule bridge %s %s icmpv6 type { nd-router-advert, nd-redirect } "
		     "counter drop\n"
		     "add rule bridge %s %s udp sport 547 counter drop\n"
		     "add rule bridge %s %s icmpv6 type nd-neighbor-advert "
		     "@th,64,128 != { %s, %s } counter drop\n"
		     "add rule bridge %s %s accept\n"
		     "add element bridge %s ports { \"%s\" : jump %s }\n",
		     table_header, t, c, n->alias, t, c, t, c, mac, t, c, t, c, a, ll, t, c, t, c,
		     t, c, ahex, llhex, t, c, t, n->host_veth, c);
	if (k < 0 || (size_t)k >= sizeof(cmds))
		return -ENAMETOOLONG;
	return nftw_run(nft, cmds, err);
}

int nftw_vm_del(struct nft_ctx *nft, const struct net_names *n, struct err *err)
{
	char cmds[NFT_CMDS_MAX];
	const char *t = NET_NFT_TABLE, *c = n->chain;
	int k;

	k = snprintf(cmds, sizeof(cmds),
		     "%s"
		     "add chain bridge %s %s\n"
		     "add element bridge %s ports { \"%s\" : jump %s }\n"
		     "delete element bridge %s ports { \"%s\" }\n"
		     "flush chain bridge %s %s\n"
		     "delete chain bridge %s %s\n",
		     table_header, t, c, t, n->host_veth, c, t, n->host_veth, t, c, t, c);
	if (k < 0 || (size_t)k >= sizeof(cmds))
		return -ENAMETOOLONG;
	return nftw_run(nft, cmds, err);
}

int nftw_vm_foreach(struct nft_ctx *nft, const char *mark, int (*cb)(const char *vm_name, void *ud),
		    void *ud)
{
	char needle[64];
	char names[256][NET_NAME_MAX + 1];
	size_t count = 0;
	const char *out, *p;
	int r, total = 0;

	if (nft_run_cmd_from_buffer(nft, "list table bridge " NET_NFT_TABLE "\n") != 0) {
		(void)nft_ctx_get_error_buffer(nft);
		return 0; /* no table: nothing of ours */
	}
	out = nft_ctx_get_output_buffer(nft);
	/* Our own comments: `comment "<mark><name>"`; copy first, cb runs more nft commands.
	 * Another node's comments do not start with our mark (a name has no ':'). */
	if (snprintf(needle, sizeof(needle), "comment \"%s", mark) >= (int)sizeof(needle))
		return -ENAMETOOLONG;
	for (p = out; p && (p = strstr(p, needle)) && count < 256;) {
		const char *s = p + strlen(needle), *e = strchr(s, '"');

		p = s;
		if (!e || (size_t)(e - s) > NET_NAME_MAX)
			continue;
		memcpy(names[count], s, (size_t)(e - s));
		names[count][e - s] = '\0';
		if (vm_name_is_valid(names[count]))
			count++;
	}
	for (size_t i = 0; i < count; i++) {
		r = cb(names[i], ud);
		if (r < 0)
			return r;
		total += r;
	}
	return total;
}
