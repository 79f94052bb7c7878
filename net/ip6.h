/* SPDX-License-Identifier: MIT */
/* net: pure IPv6 address math (no I/O besides what the caller passes in). Private to net/. */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room for RFC 5952 text plus "/128". */
#define IP6_PREFIX_STRLEN (INET6_ADDRSTRLEN + 4)

/* Strict "ADDR/LEN": the whole string, an IPv6 address (no IPv4, no zone), LEN 0..128 decimal
 * without sign/leading zeros, no host bits set. -EINVAL otherwise. */
int ip6_prefix_parse(const char *s, struct in6_addr *ret_prefix, unsigned *ret_len);
/* Strict single address (no '/', no zone, IPv4-mapped accepted only as IPv6 text). */
int ip6_addr_parse(const char *s, struct in6_addr *ret);
/* RFC 5952 text (inet_ntop). buf >= INET6_ADDRSTRLEN. Returns buf. */
const char *ip6_format(const struct in6_addr *a, char *buf, size_t size);
/* "ADDR/LEN". buf >= IP6_PREFIX_STRLEN. */
const char *ip6_prefix_format(const struct in6_addr *p, unsigned len, char *buf, size_t size);

/* Is a inside prefix/len? */
bool ip6_in_prefix(const struct in6_addr *a, const struct in6_addr *prefix, unsigned len);
/* prefix with the host bits cleared. */
void ip6_mask(struct in6_addr *a, unsigned len);
/* The gateway of a prefix: prefix::1. */
void ip6_gateway(const struct in6_addr *prefix, unsigned len, struct in6_addr *ret);
/* Would an allocator never hand out a inside prefix/len? Excluded: the gateway (prefix::1) and
 * the reserved interface ids of RFC 5453. With len <= 64 (64-bit iids, in every /64): the
 * subnet-router anycast ::0, 0200:5eff:fe00:0-0200:5eff:feff:ffff (ethernet-derived reserved
 * range) and the subnet anycast fdff:ffff:ffff:ff80-fdff:ffff:ffff:ffff (RFC 2526). With len > 64
 * (non-EUI-64 iids): iid 0 and the top 128 addresses of the prefix (RFC 2526 section 2). */
bool ip6_is_excluded(const struct in6_addr *a, const struct in6_addr *prefix, unsigned len);
/* Number of addresses allocatable in prefix/len, saturating at UINT64_MAX. */
uint64_t ip6_pool_size(unsigned len);

/* Strict database value: "ADDR" or "ADDR/128" (inet text output or a text column), at most len
 * bytes (no NUL needed). Fills why (>= 128 bytes) with a reason on -EINVAL. Rejects IPv4 (also
 * IPv4-mapped/compatible), other prefix lengths, unspecified, loopback, multicast, link-local,
 * site-local, discard-only, NAT64, Teredo, 6to4, ORCHID and benchmarking ranges: what is left is
 * global unicast (documentation 2001:db8::/32 included) and unique-local. */
int ip6_host_parse(const char *s, size_t len, struct in6_addr *ret, char *why, size_t why_size);

/* For prefixes with len > 64 and a pool that fits an index: the n-th allocatable address
 * (0 <= n < ip6_pool_size(len)) and the inverse (-ENOENT when a is not allocatable in it). */
int ip6_pool_nth(const struct in6_addr *prefix, unsigned len, uint64_t n, struct in6_addr *ret);
int ip6_pool_index(const struct in6_addr *a, const struct in6_addr *prefix, unsigned len,
		   uint64_t *ret);

/* A random allocatable address in prefix/len from the caller's random bytes (rnd, 16 bytes).
 * -ENOSPC when the prefix has no allocatable address (len >= 127 etc). Deterministic in rnd. */
int ip6_random_in_prefix(const struct in6_addr *prefix, unsigned len, const uint8_t rnd[16],
			 struct in6_addr *ret);
/* An RFC 4193 ULA /64 (fdXX:XXXX:XXXX:SSSS::/64) from 7 random bytes (40-bit global id + 16-bit
 * subnet id). */
void ip6_ula_from_random(const uint8_t rnd[7], struct in6_addr *ret);
