/* SPDX-License-Identifier: MIT */
/* net: host name lookups with a deadline (private to net/). */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_RESOLVE_MAX 8	 /* addresses kept per name */
#define NET_RESOLVE_HOST_MAX 253 /* longest DNS name */

/* Is host a single DNS name (not empty, not an IPv4/IPv6 literal, not a Unix socket directory
 * or abstract socket, not a list)? Only those need net_resolve(). */
bool net_resolve_needed(const char *host);

/* The addresses of host (at most NET_RESOLVE_MAX, as numeric text, in getaddrinfo's order),
 * looked up on a helper thread; gives up at deadline (CLOCK_MONOTONIC ms) or when cancel_fd
 * (-1: none) becomes readable, leaving the lookup to finish on its own. 0, -ETIMEDOUT,
 * -ECANCELED, -ENOENT (no such name or no address; why says so), -errno. */
int net_resolve(const char *host, int64_t deadline, int cancel_fd,
		char ret[NET_RESOLVE_MAX][INET6_ADDRSTRLEN], unsigned *ret_n, char *why,
		size_t why_size);
