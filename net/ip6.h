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
/* Would an allocator never hand out a inside prefix/len? (subnet-router anycast = all-zero iid,
 * the gateway ::1, the RFC 5453 reserved interface ids of a /64, the all-ones iid.) */
bool ip6_is_excluded(const struct in6_addr *a, const struct in6_addr *prefix, unsigned len);
/* Number of addresses allocatable in prefix/len, saturating at UINT64_MAX. */
uint64_t ip6_pool_size(unsigned len);

/* A random allocatable address in prefix/len from the caller's random bytes (rnd, 16 bytes).
 * -ENOSPC when the prefix has no allocatable address (len >= 127 etc). Deterministic in rnd. */
int ip6_random_in_prefix(const struct in6_addr *prefix, unsigned len, const uint8_t rnd[16],
			 struct in6_addr *ret);
/* An RFC 4193 ULA /64 (fdXX:XXXX:XXXX:SSSS::/64) from 7 random bytes (40-bit global id + 16-bit
 * subnet id). */
void ip6_ula_from_random(const uint8_t rnd[7], struct in6_addr *ret);
