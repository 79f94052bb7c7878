/* SPDX-License-Identifier: MIT */
/* net: what the ipam backends share (private to net/ipam*.c, prefix.c and their tests). */
#pragma once

#include <netinet/in.h>
#include <stddef.h>

#include "err.h"
#include "net.h"

/* Give up on random draws after this many collisions (pools too large for a bitmap). */
#define IPAM_PICK_TRIES 4096
/* Pools up to this size are searched exhaustively, so -ENOSPC is exact. */
#define IPAM_PICK_BITMAP_MAX (UINT64_C(1) << 22)

/* A free allocatable address of prefix/len, not among used[0..n) (which may hold anything,
 * also addresses outside the prefix). Pools up to IPAM_PICK_BITMAP_MAX: the first free one after
 * a random start (exact -ENOSPC); larger ones: uniform random draws (getrandom), -ENOSPC after
 * IPAM_PICK_TRIES collisions. */
int ipam_pick(const struct in6_addr *prefix, unsigned len, const struct in6_addr *used, size_t n,
	      struct in6_addr *ret, struct err *err);

/* The node prefix: cfg->ipv6_prefix, else <state_dir>/prefix, else a new ULA /64 written there
 * (first writer wins when several processes race). */
int ipam_prefix_load(const struct net_config *cfg, struct in6_addr *ret_prefix, unsigned *ret_len,
		     struct err *err);

/* Embedded allocator: journal <state_dir>/ipam/leases, flock on <state_dir>/ipam/lock. */
struct ipam_local;
int ipam_local_new(const char *state_dir, struct ipam_local **ret, struct err *err);
struct ipam_local *ipam_local_free(struct ipam_local *l);
int ipam_local_assign(struct ipam_local *l, const struct in6_addr *prefix, unsigned len,
		      const char *name, struct in6_addr *ret, struct err *err);
int ipam_local_release(struct ipam_local *l, const char *name, struct err *err);
/* Names with a lease, sorted, as one NULL-terminated block (free()). Returns the count. */
int ipam_local_list(struct ipam_local *l, char ***ret, struct err *err);

/* PostgreSQL: table instances(id, ip_address). Connects lazily. Thread-safe: concurrent
 * assignments use separate connections (a few are kept open between calls). timeout_ms bounds
 * one whole assignment, connecting included (0: IPAM_PG_TIMEOUT_MS); a connection that misses it
 * is dropped and the next call connects afresh. */
#define IPAM_PG_TIMEOUT_MS 5000
struct ipam_pg;
int ipam_pg_new(const char *conninfo, unsigned timeout_ms, struct ipam_pg **ret, struct err *err);
/* Make every call in flight, and every later one, fail at once with -EIO (shutdown). */
void ipam_pg_cancel(struct ipam_pg *pg);
struct ipam_pg *ipam_pg_free(struct ipam_pg *pg);
int ipam_pg_assign(struct ipam_pg *pg, const struct in6_addr *prefix, unsigned len,
		   const char *name, struct in6_addr *ret, struct err *err);
