/* SPDX-License-Identifier: MIT */
/* net: struct ipam, dispatching to the PostgreSQL or the local backend; free-address picking. */
#include "ipam.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ip6.h"
#include "ipam-internal.h"
#include "parse.h"

struct ipam {
	struct in6_addr prefix, gateway;
	unsigned len;
	struct ipam_pg *pg; /* exactly one of pg and local is set; pg is thread-safe */
	struct ipam_local *local;
	pthread_mutex_t local_lock; /* serialises the local allocator's in-memory state */
};

static int random_bytes(void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n > 0) {
		ssize_t r = getrandom(p, n, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static bool addr_in(const struct in6_addr *a, const struct in6_addr *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (memcmp(a, &set[i], sizeof(*a)) == 0)
			return true;
	return false;
}

/* Exhaustive search of a small pool: mark the used indexes, then scan from a random start. */
static int pick_bitmap(const struct in6_addr *prefix, unsigned len, uint64_t pool,
		       const struct in6_addr *used, size_t n, struct in6_addr *ret, struct err *err)
{
	_cleanup_free_ uint8_t *bits = NULL;
	uint64_t taken = 0, start, idx;
	int r;

	bits = calloc((size_t)(pool / 8 + 1), 1);
	if (!bits)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (ip6_pool_index(&used[i], prefix, len, &idx) < 0)
			continue;
		if (!(bits[idx / 8] & (1u << (idx % 8)))) {
			bits[idx / 8] |= (uint8_t)(1u << (idx % 8));
			taken++;
		}
	}
	if (taken >= pool)
		return err_set(err, -ENOSPC, "address pool exhausted (%llu of %llu in use)",
			       (unsigned long long)taken, (unsigned long long)pool);
	r = random_bytes(&start, sizeof(start));
	if (r < 0)
		return err_set(err, r, "getrandom failed");
	start %= pool;
	for (uint64_t i = 0; i < pool; i++) {
		idx = (start + i) % pool;
		if (!(bits[idx / 8] & (1u << (idx % 8))))
			return ip6_pool_nth(prefix, len, idx, ret);
	}
	return err_set(err, -ENOSPC, "address pool exhausted");
}

int ipam_pick(const struct in6_addr *prefix, unsigned len, const struct in6_addr *used, size_t n,
	      struct in6_addr *ret, struct err *err)
{
	uint64_t pool = ip6_pool_size(len);
	uint8_t rnd[16];
	struct in6_addr a;
	int r;

	if (pool == 0)
		return err_set(err, -ENOSPC, "prefix /%u has no allocatable addresses", len);
	if (len > 64 && pool <= IPAM_PICK_BITMAP_MAX)
		return pick_bitmap(prefix, len, pool, used, n, ret, err);
	/* Huge pool: a random draw almost never collides, so a few tries settle it. */
	for (unsigned t = 0; t < IPAM_PICK_TRIES; t++) {
		r = random_bytes(rnd, sizeof(rnd));
		if (r < 0)
			return err_set(err, r, "getrandom failed");
		r = ip6_random_in_prefix(prefix, len, rnd, &a);
		if (r < 0)
			return err_set(err, r, "no allocatable address in prefix /%u", len);
		if (!addr_in(&a, used, n)) {
			*ret = a;
			return 0;
		}
	}
	return err_set(err, -ENOSPC, "no free address found after %u random tries (%zu in use)",
		       IPAM_PICK_TRIES, n);
}

int ipam_new(const struct net_config *cfg, struct ipam **ret, struct err *err)
{
	_cleanup_free_ struct ipam *ipam = NULL;
	int r;

	if (!cfg || !cfg->state_dir)
		return err_set(err, -EINVAL, "ipam: no state directory configured");
	ipam = calloc(1, sizeof(*ipam));
	if (!ipam)
		return -ENOMEM;
	r = ipam_prefix_load(cfg, &ipam->prefix, &ipam->len, err);
	if (r < 0)
		return r;
	ip6_gateway(&ipam->prefix, ipam->len, &ipam->gateway);
	if (cfg->database_url)
		r = ipam_pg_new(cfg->database_url, cfg->database_timeout_ms, &ipam->pg, err);
	else
		r = ipam_local_new(cfg->state_dir, &ipam->local, err);
	if (r < 0)
		return r;
	pthread_mutex_init(&ipam->local_lock, NULL);
	*ret = TAKE_PTR(ipam);
	return 0;
}

struct ipam *ipam_free(struct ipam *ipam)
{
	if (!ipam)
		return NULL;
	ipam_pg_free(ipam->pg);
	ipam_local_free(ipam->local);
	pthread_mutex_destroy(&ipam->local_lock);
	free(ipam);
	return NULL;
}

int ipam_prefix(struct ipam *ipam, struct in6_addr *ret_prefix, unsigned *ret_len,
		struct in6_addr *ret_gateway)
{
	if (ret_prefix)
		*ret_prefix = ipam->prefix;
	if (ret_len)
		*ret_len = ipam->len;
	if (ret_gateway)
		*ret_gateway = ipam->gateway;
	return 0;
}

/* A stored address inside our prefix must be one the allocator could have handed out: not the
 * bridge's gateway, not the subnet-router anycast or another reserved interface id. */
static int check_in_prefix(struct ipam *ipam, const char *name, const struct in6_addr *a,
			   struct err *err)
{
	char text[INET6_ADDRSTRLEN];

	if (!ip6_in_prefix(a, &ipam->prefix, ipam->len) ||
	    !ip6_is_excluded(a, &ipam->prefix, ipam->len))
		return 0;
	ip6_format(a, text, sizeof(text));
	if (memcmp(a, &ipam->gateway, sizeof(*a)) == 0)
		return err_set(err, -EINVAL,
			       "instances.ip_address of '%s' is '%s': the node bridge's gateway "
			       "address",
			       name, text);
	return err_set(err, -EINVAL,
		       "instances.ip_address of '%s' is '%s': a reserved address of the node "
		       "prefix (subnet-router anycast or reserved interface id)",
		       name, text);
}

int ipam_assign(struct ipam *ipam, const char *name, struct in6_addr *ret, struct err *err)
{
	struct in6_addr a;
	int r;

	if (!name || !vm_name_is_valid(name))
		return err_set(err, -EINVAL, "invalid VM name");
	if (ipam->pg) {
		r = ipam_pg_assign(ipam->pg, &ipam->prefix, ipam->len, name, &a, err);
		if (r >= 0)
			r = check_in_prefix(ipam, name, &a, err);
	} else {
		pthread_mutex_lock(&ipam->local_lock);
		r = ipam_local_assign(ipam->local, &ipam->prefix, ipam->len, name, &a, err);
		pthread_mutex_unlock(&ipam->local_lock);
	}
	if (r < 0)
		return r;
	*ret = a;
	return 0;
}

int ipam_release(struct ipam *ipam, const char *name, struct err *err)
{
	int r;

	if (!name || !vm_name_is_valid(name))
		return err_set(err, -EINVAL, "invalid VM name");
	/* With a database the platform owns the instances row and its address: the next mkdir
	 * of the same name must get the same address back, so nothing is freed here. */
	if (ipam->pg)
		return 0;
	pthread_mutex_lock(&ipam->local_lock);
	r = ipam_local_release(ipam->local, name, err);
	pthread_mutex_unlock(&ipam->local_lock);
	return r;
}

void ipam_cancel(struct ipam *ipam)
{
	if (ipam->pg)
		ipam_pg_cancel(ipam->pg);
}

int ipam_list(struct ipam *ipam, char ***ret, struct err *err)
{
	int r;

	if (ipam->pg) {
		char **none = calloc(1, sizeof(char *));

		if (!none)
			return -ENOMEM;
		*ret = none;
		return 0;
	}
	pthread_mutex_lock(&ipam->local_lock);
	r = ipam_local_list(ipam->local, ret, err);
	pthread_mutex_unlock(&ipam->local_lock);
	return r;
}
