/* SPDX-License-Identifier: MIT */
/*
 * net: address management (private to net/). net.c's net_prefix/net_ip_assign/net_ip_release are
 * thin wrappers over these.
 *
 * Two backends behind one struct ipam:
 *  - cfg->database_url set: PostgreSQL (ipam-pg.c), table instances(id text, ip_address inet),
 *    see net/schema.sql;
 *  - otherwise: an embedded allocator in <cfg->state_dir>/ipam/ (ipam-local.c).
 * The node prefix (prefix.c) is cfg->ipv6_prefix, or a ULA /64 generated once and kept in
 * <cfg->state_dir>/prefix.
 *
 * Threading: a struct ipam belongs to one thread at a time (it may own a PGconn). Several
 * processes (daemons) may share a state dir or a database: that is handled inside.
 */
#pragma once

#include <netinet/in.h>

#include "err.h"
#include "net.h"

struct ipam;

/* Resolve the prefix (generating/persisting the ULA if needed) and open the backend. With a
 * database the connection is made lazily at the first assign, so an unreachable database does
 * not fail here. -EINVAL bad cfg->ipv6_prefix or a corrupt prefix file. */
int ipam_new(const struct net_config *cfg, struct ipam **ret, struct err *err);
struct ipam *ipam_free(struct ipam *ipam);

/* The node's prefix (host bits zero), its length and the gateway (prefix::1). Any may be NULL. */
int ipam_prefix(struct ipam *ipam, struct in6_addr *ret_prefix, unsigned *ret_len,
		struct in6_addr *ret_gateway);

/* Address of VM name: the existing one, or a new unique one (recorded before returning).
 * With a database the address may lie outside the node prefix (a preset value); test with
 * ip6_in_prefix() (ip6.h) to decide between on-link and a /128 route.
 * -EIO database unreachable/failed (server message in err, nothing left behind), -ENOSPC pool
 * full, -EINVAL bad name or bad stored value. */
int ipam_assign(struct ipam *ipam, const char *name, struct in6_addr *ret, struct err *err);

/* Forget name's local allocation; 0 also when it had none. With a database this is a no-op:
 * the platform owns the instances row and its address. */
int ipam_release(struct ipam *ipam, const char *name, struct err *err);

/* Shutdown: database calls in flight end at once with -EIO, later ones too. No-op locally. */
void ipam_cancel(struct ipam *ipam);

/* Names with a local allocation (net_ip_list); an empty list with a database. */
int ipam_list(struct ipam *ipam, char ***ret, struct err *err);
