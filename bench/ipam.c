/* SPDX-License-Identifier: MIT */
/*
 * Benchmark: address allocation latency (ipam_assign of a new VM name: insert the
 * row, lock, read the table, pick, write back, commit) against PostgreSQL 15 on loopback TCP,
 * with one allocator and with two concurrent ones (separate processes and connections, as two
 * daemons would be). Also: lookups of existing names, and allocation with 20k rows already in
 * the table (every allocation reads every address). Prints a table of p50/p99.
 * Usage: bench-ipam SCHEMA.sql [N]   (run through bench/ipam)
 */
#include "ipam.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fileio.h"
#include "pg-fixture.h"

static struct pg_fixture fx;
static char url[256], state_dir[128];

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);

	return v[i < n ? i : n - 1];
}

static struct ipam *open_ipam(void)
{
	struct net_config cfg = {
		.state_dir = state_dir, .database_url = url, .ipv6_prefix = "2001:db8:1::/64"};
	struct err err = {0};
	struct ipam *ipam = NULL;

	if (ipam_new(&cfg, &ipam, &err) < 0) {
		fprintf(stderr, "ipam_new: %s\n", err.msg);
		exit(1);
	}
	return ipam;
}

/* n assigns of names tag-0..tag-(n-1) into v[] (microseconds each). */
static void run(struct ipam *ipam, const char *tag, size_t n, double *v)
{
	struct err err = {0};
	struct in6_addr a;
	char name[40];

	for (size_t i = 0; i < n; i++) {
		double t0;

		(void)snprintf(name, sizeof(name), "%s-%zu", tag, i);
		t0 = now_us();
		if (ipam_assign(ipam, name, &a, &err) < 0) {
			fprintf(stderr, "assign %s: %s\n", name, err.msg);
			exit(1);
		}
		v[i] = now_us() - t0;
	}
}

static void row(const char *what, double *v, size_t n, double wall_us)
{
	qsort(v, n, sizeof(*v), cmp_double);
	printf("%-44s %7zu %9.3f %9.3f %9.0f\n", what, n, pct(v, n, 0.50) / 1e3,
	       pct(v, n, 0.99) / 1e3, (double)n / (wall_us / 1e6));
}

/* Two processes at once, each n allocations; latencies of both combined. */
static void concurrent(const char *tag, size_t n, double *v, double *wall)
{
	int fds[2][2];
	pid_t pids[2];
	double t0 = now_us();

	for (int d = 0; d < 2; d++) {
		if (pipe(fds[d]) < 0)
			exit(1);
		pids[d] = fork();
		if (pids[d] == 0) {
			struct ipam *ipam = open_ipam();
			double *mine = calloc(n, sizeof(*mine));
			char t[32];

			(void)snprintf(t, sizeof(t), "%s%d", tag, d);
			run(ipam, t, n, mine);
			if (write(fds[d][1], mine, n * sizeof(*mine)) !=
			    (ssize_t)(n * sizeof(*mine)))
				_exit(1);
			_exit(0);
		}
		close(fds[d][1]);
	}
	for (int d = 0; d < 2; d++) {
		size_t got = 0, want = n * sizeof(double);
		char *p = (char *)(v + (size_t)d * n);

		while (got < want) {
			ssize_t k = read(fds[d][0], p + got, want - got);

			if (k <= 0)
				exit(1);
			got += (size_t)k;
		}
		(void)waitpid(pids[d], NULL, 0);
	}
	*wall = now_us() - t0;
}

int main(int argc, char **argv)
{
	size_t n = argc > 2 ? (size_t)atol(argv[2]) : 1000;
	_cleanup_free_ char *schema = NULL;
	char why[256], count[64];
	double *v, wall, t0;
	struct ipam *ipam;
	size_t len;

	if (argc < 2 || n == 0) {
		fprintf(stderr, "usage: %s SCHEMA.sql [N]\n", argv[0]);
		return 2;
	}
	if (read_file_bounded(argv[1], 1 << 20, &schema, &len) < 0) {
		fprintf(stderr, "cannot read %s\n", argv[1]);
		return 1;
	}
	v = calloc(2 * n, sizeof(*v));
	if (!v || pgf_setup(&fx, true, why, sizeof(why)) < 0) {
		fprintf(stderr, "PostgreSQL fixture: %s\n", why);
		pgf_teardown(&fx);
		return 1;
	}
	(void)snprintf(state_dir, sizeof(state_dir), "%s/state", fx.dir);
	if (pgf_sql(&fx, "postgres", "CREATE DATABASE bench") < 0)
		goto fail;
	pgf_conninfo(&fx, "bench", url, sizeof(url));
	if (pgf_sql(&fx, "bench", schema) < 0)
		goto fail;

	printf("PostgreSQL 15 on 127.0.0.1:%d (fsync=off), schema %s, prefix /64\n", fx.port,
	       argv[1]);
	printf("%-44s %7s %9s %9s %9s\n", "scenario", "allocs", "p50 ms", "p99 ms", "allocs/s");
	ipam = open_ipam();
	run(ipam, "warm", 10, v); /* connection, plan caches */
	t0 = now_us();
	run(ipam, "one", n, v);
	row("1 allocator, new VMs (table 10 -> N rows)", v, n, now_us() - t0);
	t0 = now_us();
	run(ipam, "one", n, v);
	row("1 allocator, existing VMs (lookup only)", v, n, now_us() - t0);
	concurrent("two", n, v, &wall);
	row("2 concurrent allocators, new VMs (combined)", v, 2 * n, wall);
	/* A large table: 20k rows of other nodes, each node with its own /64 (the usual case):
	 * the server filters them out of the collision scan. */
	if (pgf_sql(&fx, "bench",
		    "INSERT INTO instances SELECT 'other-' || g, ('2001:db8:' || to_hex(2 + g / "
		    "100) "
		    "|| '::' || to_hex(g) || ':1')::inet FROM generate_series(1, 20000) g") < 0)
		goto fail;
	t0 = now_us();
	run(ipam, "o20k", n, v);
	row("1 allocator, +20k rows in other prefixes", v, n, now_us() - t0);
	concurrent("twoo20k", n, v, &wall);
	row("2 concurrent, +20k rows in other prefixes", v, 2 * n, wall);
	/* Worst case: 20k more rows inside our own prefix (every allocation reads them all). */
	if (pgf_sql(&fx, "bench",
		    "INSERT INTO instances SELECT 'big-' || g, "
		    "('2001:db8:1:0:' || to_hex(g) || '::1')::inet FROM generate_series(1, 20000) "
		    "g") < 0)
		goto fail;
	t0 = now_us();
	run(ipam, "new20k", n, v);
	row("1 allocator, +20k rows in our prefix", v, n, now_us() - t0);
	concurrent("twonew20k", n, v, &wall);
	row("2 concurrent, +20k rows in our prefix", v, 2 * n, wall);
	ipam_free(ipam);
	if (pgf_query1(&fx, "bench",
		       "SELECT count(*) || ' rows, ' || count(DISTINCT ip_address) "
		       "|| ' distinct addresses' FROM instances",
		       count, sizeof(count)) == 0)
		printf("final table: %s\n", count);
	pgf_teardown(&fx);
	free(v);
	return 0;
fail:
	pgf_teardown(&fx);
	return 1;
}
