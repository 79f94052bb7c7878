/* SPDX-License-Identifier: MIT */
/* net: pure IPv6 address math: strict parsing, RFC 5952 text, prefixes, pools, ULA. */
#include "ip6.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The address as two host-order halves, for shifts and comparisons. */
static void ip6_split(const struct in6_addr *a, uint64_t *hi, uint64_t *lo)
{
	uint64_t h = 0, l = 0;

	for (int i = 0; i < 8; i++) {
		h = (h << 8) | a->s6_addr[i];
		l = (l << 8) | a->s6_addr[8 + i];
	}
	*hi = h;
	*lo = l;
}

static void ip6_join(uint64_t hi, uint64_t lo, struct in6_addr *a)
{
	for (int i = 7; i >= 0; i--) {
		a->s6_addr[i] = (uint8_t)hi;
		a->s6_addr[8 + i] = (uint8_t)lo;
		hi >>= 8;
		lo >>= 8;
	}
}

/* Host-bit masks of a prefix length for the high and low halves. */
static void ip6_host_masks(unsigned len, uint64_t *mhi, uint64_t *mlo)
{
	if (len >= 128) {
		*mhi = *mlo = 0;
	} else if (len >= 64) {
		*mhi = 0;
		*mlo = len == 64 ? UINT64_MAX : (UINT64_C(1) << (128 - len)) - 1;
	} else {
		*mlo = UINT64_MAX;
		*mhi = len == 0 ? UINT64_MAX : (UINT64_C(1) << (64 - len)) - 1;
	}
}

int ip6_addr_parse(const char *s, struct in6_addr *ret)
{
	struct in6_addr a;
	size_t n;

	if (!s)
		return -EINVAL;
	n = strlen(s);
	if (n == 0 || n >= INET6_ADDRSTRLEN)
		return -EINVAL;
	/* inet_pton is already strict; this also keeps zones ("%eth0") and spaces out. */
	if (strspn(s, "0123456789abcdefABCDEF:.") != n)
		return -EINVAL;
	if (inet_pton(AF_INET6, s, &a) != 1)
		return -EINVAL;
	*ret = a;
	return 0;
}

/* "0".."128", no sign, no leading zeros. */
static int parse_prefix_len(const char *s, unsigned *ret)
{
	unsigned v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 3 || strspn(s, "0123456789") != n || (n > 1 && s[0] == '0'))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (unsigned)(s[i] - '0');
	if (v > 128)
		return -EINVAL;
	*ret = v;
	return 0;
}

int ip6_prefix_parse(const char *s, struct in6_addr *ret_prefix, unsigned *ret_len)
{
	char buf[INET6_ADDRSTRLEN];
	struct in6_addr a, m;
	const char *slash;
	unsigned len;
	size_t n;

	if (!s)
		return -EINVAL;
	slash = strchr(s, '/');
	if (!slash)
		return -EINVAL;
	n = (size_t)(slash - s);
	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (ip6_addr_parse(buf, &a) < 0 || parse_prefix_len(slash + 1, &len) < 0)
		return -EINVAL;
	m = a;
	ip6_mask(&m, len);
	if (memcmp(&m, &a, sizeof(a)) != 0)
		return -EINVAL; /* host bits set: ambiguous, refuse rather than guess */
	*ret_prefix = a;
	*ret_len = len;
	return 0;
}

const char *ip6_format(const struct in6_addr *a, char *buf, size_t size)
{
	/* glibc's inet_ntop follows RFC 5952 (lower case, longest zero run, no lone "::" for one
	 * group); the tests pin that down. */
	if (!inet_ntop(AF_INET6, a, buf, (socklen_t)size)) {
		if (size > 0)
			buf[0] = '\0';
	}
	return buf;
}

const char *ip6_prefix_format(const struct in6_addr *p, unsigned len, char *buf, size_t size)
{
	char a[INET6_ADDRSTRLEN];

	(void)snprintf(buf, size, "%s/%u", ip6_format(p, a, sizeof(a)), len);
	return buf;
}

void ip6_mask(struct in6_addr *a, unsigned len)
{
	uint64_t hi, lo, mhi, mlo;

	ip6_split(a, &hi, &lo);
	ip6_host_masks(len, &mhi, &mlo);
	ip6_join(hi & ~mhi, lo & ~mlo, a);
}

bool ip6_in_prefix(const struct in6_addr *a, const struct in6_addr *prefix, unsigned len)
{
	struct in6_addr x = *a, p = *prefix;

	if (len > 128)
		return false;
	ip6_mask(&x, len);
	ip6_mask(&p, len);
	return memcmp(&x, &p, sizeof(x)) == 0;
}

void ip6_gateway(const struct in6_addr *prefix, unsigned len, struct in6_addr *ret)
{
	uint64_t hi, lo;
	struct in6_addr p = *prefix;

	ip6_mask(&p, len);
	ip6_split(&p, &hi, &lo);
	ip6_join(hi, lo | 1, ret);
}

#define RFC5453_ETH_FIRST UINT64_C(0x02005efffe000000)
#define RFC5453_ETH_LAST UINT64_C(0x02005efffeffffff)
#define RFC2526_EUI64_FIRST UINT64_C(0xfdffffffffffff80)
#define RFC2526_EUI64_LAST UINT64_C(0xfdffffffffffffff)

bool ip6_is_excluded(const struct in6_addr *a, const struct in6_addr *prefix, unsigned len)
{
	struct in6_addr gw;
	uint64_t hi, lo;
	unsigned h;

	if (len > 128 || !ip6_in_prefix(a, prefix, len))
		return false;
	ip6_gateway(prefix, len, &gw);
	if (memcmp(a, &gw, sizeof(gw)) == 0)
		return true;
	ip6_split(a, &hi, &lo);
	h = 128 - len;
	if (h >= 64)
		return lo == 0 || (lo >= RFC5453_ETH_FIRST && lo <= RFC5453_ETH_LAST) ||
		       (lo >= RFC2526_EUI64_FIRST && lo <= RFC2526_EUI64_LAST);
	if (h <= 7)
		return true; /* the whole iid is the RFC 2526 anycast id */
	lo &= (UINT64_C(1) << h) - 1;
	return lo == 0 || lo >= (UINT64_C(1) << h) - 128;
}

uint64_t ip6_pool_size(unsigned len)
{
	unsigned h;

	if (len > 128)
		return 0;
	h = 128 - len;
	if (h >= 64)
		return UINT64_MAX;
	if (h <= 7)
		return 0;
	return (UINT64_C(1) << h) - 128 - 2; /* minus iid 0, the gateway and the anycast range */
}

int ip6_pool_nth(const struct in6_addr *prefix, unsigned len, uint64_t n, struct in6_addr *ret)
{
	struct in6_addr p = *prefix;
	uint64_t hi, lo;

	if (len <= 64 || len > 128)
		return -ERANGE;
	if (n >= ip6_pool_size(len))
		return -ENOSPC;
	ip6_mask(&p, len);
	ip6_split(&p, &hi, &lo);
	ip6_join(hi, lo | (n + 2), ret);
	return 0;
}

int ip6_pool_index(const struct in6_addr *a, const struct in6_addr *prefix, unsigned len,
		   uint64_t *ret)
{
	uint64_t ahi, alo, phi, plo, mask, iid;

	/* Hot in ipam_pick (once per used address), so no ip6_is_excluded() round trip:
	 * for len > 64 the allocatable iids are exactly 2 .. 2^h - 129. */
	if (len <= 64 || len > 128)
		return -ERANGE;
	if (128 - len <= 7)
		return -ENOENT;
	ip6_split(a, &ahi, &alo);
	ip6_split(prefix, &phi, &plo);
	mask = (UINT64_C(1) << (128 - len)) - 1;
	if (ahi != phi || (alo & ~mask) != (plo & ~mask))
		return -ENOENT;
	iid = alo & mask;
	if (iid < 2 || iid > mask - 128)
		return -ENOENT;
	*ret = iid - 2;
	return 0;
}

int ip6_random_in_prefix(const struct in6_addr *prefix, unsigned len, const uint8_t rnd[16],
			 struct in6_addr *ret)
{
	struct in6_addr r, p = *prefix, a;
	uint64_t phi, plo, rhi, rlo, mhi, mlo, pool;

	if (len > 128)
		return -EINVAL;
	memcpy(&r, rnd, sizeof(r));
	ip6_split(&r, &rhi, &rlo);
	if (len > 64) {
		pool = ip6_pool_size(len);
		if (pool == 0)
			return -ENOSPC;
		return ip6_pool_nth(prefix, len, rlo % pool, ret);
	}
	ip6_mask(&p, len);
	ip6_split(&p, &phi, &plo);
	ip6_host_masks(len, &mhi, &mlo);
	ip6_join(phi | (rhi & mhi), plo | (rlo & mlo), &a);
	if (ip6_is_excluded(&a, &p, len)) {
		/* Flipping iid bit 59 maps every excluded iid (0, 1, 0200:5eff:fe.., fdff:..:ff8x)
		 * onto an allocatable one, keeping the result a pure function of rnd. */
		ip6_split(&a, &rhi, &rlo);
		ip6_join(rhi, rlo ^ (UINT64_C(1) << 59), &a);
	}
	*ret = a;
	return 0;
}

void ip6_ula_from_random(const uint8_t rnd[7], struct in6_addr *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->s6_addr[0] = 0xfd;		      /* FC00::/7 with L = 1: locally assigned */
	memcpy(&ret->s6_addr[1], rnd, 5);     /* 40-bit global id */
	memcpy(&ret->s6_addr[6], rnd + 5, 2); /* subnet id */
}

/* Special-purpose unicast ranges a VM may not hold: they are not one host's global address
 * (site-local is deprecated and ambiguous, discard-only is a sink, the translation and tunnel
 * ranges stand for IPv4 hosts or tunnel endpoints, so a guest holding one could pose as them).
 * Documentation (2001:db8::/32) is accepted: labs and tests number their nodes with it. */
static const struct {
	const char *prefix;
	unsigned len;
	const char *what;
} special[] = {
	{"fec0::", 10, "site-local"},	  {"100::", 64, "discard-only"},
	{"64:ff9b::", 96, "NAT64"},	  {"64:ff9b:1::", 48, "local-use NAT64"},
	{"2001::", 32, "Teredo"},	  {"2002::", 16, "6to4"},
	{"2001:10::", 28, "ORCHID"},	  {"2001:20::", 28, "ORCHIDv2"},
	{"2001:2::", 48, "benchmarking"},
};

int ip6_host_parse(const char *s, size_t len, struct in6_addr *ret, char *why, size_t why_size)
{
	char buf[IP6_PREFIX_STRLEN + 1];
	struct in_addr v4;
	struct in6_addr a;
	char *slash;

	if (len == 0) {
		(void)snprintf(why, why_size, "empty value");
		return -EINVAL;
	}
	if (len >= sizeof(buf) || memchr(s, '\0', len)) {
		(void)snprintf(why, why_size, "not an IPv6 address (too long or binary)");
		return -EINVAL;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	slash = strchr(buf, '/');
	if (slash) {
		unsigned plen;

		*slash = '\0';
		if (parse_prefix_len(slash + 1, &plen) < 0) {
			(void)snprintf(why, why_size, "bad prefix length");
			return -EINVAL;
		}
		if (inet_pton(AF_INET, buf, &v4) == 1) {
			(void)snprintf(why, why_size, "an IPv4 address, expected IPv6");
			return -EINVAL;
		}
		if (plen != 128) {
			(void)snprintf(why, why_size,
				       "a /%u network, expected a single IPv6 address (/128)",
				       plen);
			return -EINVAL;
		}
	}
	if (inet_pton(AF_INET, buf, &v4) == 1) {
		(void)snprintf(why, why_size, "an IPv4 address, expected IPv6");
		return -EINVAL;
	}
	if (ip6_addr_parse(buf, &a) < 0) {
		(void)snprintf(why, why_size, "not an IPv6 address");
		return -EINVAL;
	}
	if (IN6_IS_ADDR_V4MAPPED(&a) || IN6_IS_ADDR_V4COMPAT(&a)) {
		(void)snprintf(why, why_size,
			       "an IPv4-mapped or IPv4-compatible address, expected native IPv6");
		return -EINVAL;
	}
	if (IN6_IS_ADDR_UNSPECIFIED(&a) || IN6_IS_ADDR_LOOPBACK(&a) || IN6_IS_ADDR_MULTICAST(&a) ||
	    IN6_IS_ADDR_LINKLOCAL(&a)) {
		(void)snprintf(why, why_size, "not a global or unique-local unicast address");
		return -EINVAL;
	}
	for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++) {
		struct in6_addr p;

		if (inet_pton(AF_INET6, special[i].prefix, &p) == 1 &&
		    ip6_in_prefix(&a, &p, special[i].len)) {
			(void)snprintf(
				why, why_size,
				"a %s address (%s/%u), expected global or unique-local unicast",
				special[i].what, special[i].prefix, special[i].len);
			return -EINVAL;
		}
	}
	*ret = a;
	return 0;
}
