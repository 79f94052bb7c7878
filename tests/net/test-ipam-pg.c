/* SPDX-License-Identifier: MIT */
/*
 * PostgreSQL tests of net/ipam-pg.c against a real throwaway PostgreSQL 15 cluster
 * (pg-fixture.h). Each case gets its own database. Exits 77 without the server binaries.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>

#include "fileio.h"
#include "ip6.h"
#include "ipam.h"
#include "pg-fixture.h"
#include "tcp-proxy.h"
#include "test.h"

static struct pg_fixture fx;
static char state_dir[128];

static const char schema_inet[] = "CREATE TABLE instances (id text PRIMARY KEY, ip_address inet);";
static const char schema_text[] = "CREATE TABLE instances (id text PRIMARY KEY, ip_address text);";

/* A fresh database named after the case, with schema. */
static void new_db(const char *db, const char *schema)
{
	char sql[256];

	(void)snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", db);
	ASSERT_OK(pgf_sql(&fx, "postgres", sql));
	(void)snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db);
	ASSERT_OK(pgf_sql(&fx, "postgres", sql));
	if (schema)
		ASSERT_OK(pgf_sql(&fx, db, schema));
}

static struct ipam *open_ipam_url(const char *url, const char *prefix)
{
	struct net_config cfg = {
		.state_dir = state_dir, .database_url = url, .ipv6_prefix = prefix};
	struct err err = {0};
	struct ipam *ipam = NULL;
	int r = ipam_new(&cfg, &ipam, &err);

	if (r < 0)
		TEST_FAIL("ipam_new: %d %s", r, err.msg);
	return ipam;
}

static struct ipam *open_ipam(const char *db, const char *prefix)
{
	static char url[256];

	pgf_conninfo(&fx, db, url, sizeof(url));
	return open_ipam_url(url, prefix);
}

static const char *fmt(const struct in6_addr *a)
{
	static char buf[INET6_ADDRSTRLEN];

	return ip6_format(a, buf, sizeof(buf));
}

static void query(const char *db, const char *sql, char *buf, size_t size)
{
	ASSERT_OK(pgf_query1(&fx, db, sql, buf, size));
}

static void test_insert_and_generate(void)
{
	struct in6_addr a, b, p;
	struct err err = {0};
	struct ipam *x, *y;
	char v[128];

	new_db("t_gen", schema_inet);
	ASSERT_OK(pgf_sql(&fx, "t_gen", "CREATE UNIQUE INDEX ON instances (ip_address)"));
	x = open_ipam("t_gen", "2001:db8:1::/64");
	ASSERT_OK(ipam_prefix(x, &p, NULL, NULL));
	ASSERT_OK(ipam_assign(x, "web-1", &a, &err));
	ASSERT_TRUE(ip6_in_prefix(&a, &p, 64));
	ASSERT_FALSE(ip6_is_excluded(&a, &p, 64));
	query("t_gen", "SELECT host(ip_address) FROM instances WHERE id = 'web-1'", v, sizeof(v));
	ASSERT_STREQ(v, fmt(&a));
	query("t_gen",
	      "SELECT family(ip_address)::text || '/' || masklen(ip_address) "
	      "FROM instances WHERE id = 'web-1'",
	      v, sizeof(v));
	ASSERT_STREQ(v, "6/128");
	/* Same name again, same object and another connection: same address. */
	ASSERT_OK(ipam_assign(x, "web-1", &b, &err));
	ASSERT_EQ(memcmp(&a, &b, sizeof(a)), 0);
	y = open_ipam("t_gen", "2001:db8:1::/64");
	ASSERT_OK(ipam_assign(y, "web-1", &b, &err));
	ASSERT_EQ(memcmp(&a, &b, sizeof(a)), 0);
	/* Release leaves the platform's row and address alone. */
	ASSERT_OK(ipam_release(y, "web-1", &err));
	query("t_gen", "SELECT host(ip_address) FROM instances WHERE id = 'web-1'", v, sizeof(v));
	ASSERT_STREQ(v, fmt(&a));
	ASSERT_OK(ipam_assign(y, "web-2", &b, &err));
	ASSERT_NE(memcmp(&a, &b, sizeof(a)), 0);
	query("t_gen", "SELECT count(*) FROM instances", v, sizeof(v));
	ASSERT_STREQ(v, "2");
	/* A row the platform created with NULL gets filled. */
	ASSERT_OK(pgf_sql(&fx, "t_gen", "INSERT INTO instances (id) VALUES ('pre-null')"));
	ASSERT_OK(ipam_assign(y, "pre-null", &b, &err));
	query("t_gen", "SELECT host(ip_address) FROM instances WHERE id = 'pre-null'", v,
	      sizeof(v));
	ASSERT_STREQ(v, fmt(&b));
	/* A name that is not a VM name never reaches the database. */
	ASSERT_ERRNO(ipam_assign(y, "x'; DROP TABLE instances; --", &b, &err), EINVAL);
	ipam_free(x);
	ipam_free(y);
}

/* Preset addresses are kept (also outside the prefix) and avoided by generation. */
static void test_preset_kept(void)
{
	struct in6_addr a, p;
	struct err err = {0};
	struct ipam *x;
	char v[128], sql[256];

	new_db("t_preset", schema_inet);
	ASSERT_OK(pgf_sql(&fx, "t_preset",
			  "INSERT INTO instances VALUES ('inside', '2001:db8::177'), "
			  "('outside', '2001:db8:ffff::5'), ('ula', 'fd00:1::9/128')"));
	x = open_ipam("t_preset", "2001:db8::100/120");
	ASSERT_OK(ipam_prefix(x, &p, NULL, NULL));
	ASSERT_OK(ipam_assign(x, "inside", &a, &err));
	ASSERT_STREQ(fmt(&a), "2001:db8::177");
	ASSERT_OK(ipam_assign(x, "outside", &a, &err));
	ASSERT_STREQ(fmt(&a), "2001:db8:ffff::5");
	ASSERT_FALSE(ip6_in_prefix(&a, &p, 120));
	ASSERT_OK(ipam_assign(x, "ula", &a, &err));
	ASSERT_STREQ(fmt(&a), "fd00:1::9");

	/* Fill all of the /120 pool but one address with preset rows owned by "other nodes". */
	for (unsigned i = 2; i < 128; i++) {
		if (i == 0x77 || i == 0x42)
			continue; /* 0x177 is "inside"'s; 0x142 stays free */
		/* One as a (bad) /64 value: its address still counts as taken. */
		(void)snprintf(sql, sizeof(sql),
			       "INSERT INTO instances VALUES ('o-%u', '2001:db8::%x%s')", i,
			       0x100 + i, i == 0x50 ? "/64" : "");
		ASSERT_OK(pgf_sql(&fx, "t_preset", sql));
	}
	ASSERT_OK(ipam_assign(x, "new-vm", &a, &err));
	ASSERT_STREQ(fmt(&a), "2001:db8::142");
	/* Full now: ENOSPC and the inserted row is rolled back. */
	ASSERT_ERRNO(ipam_assign(x, "no-room", &a, &err), ENOSPC);
	query("t_preset", "SELECT count(*) FROM instances WHERE id = 'no-room'", v, sizeof(v));
	ASSERT_STREQ(v, "0");
	ipam_free(x);
}

static void expect_einval(struct ipam *x, const char *name, const char *needle)
{
	struct err err = {0};
	struct in6_addr a;
	int r = ipam_assign(x, name, &a, &err);

	if (r != -EINVAL)
		TEST_FAIL("%s: expected -EINVAL, got %d (%s) %s", name, r, err.msg, fmt(&a));
	if (!strstr(err.msg, needle))
		TEST_FAIL("%s: message '%s' lacks '%s'", name, err.msg, needle);
	printf("# %s: %s\n", name, err.msg);
}

static void test_bad_values_inet(void)
{
	struct ipam *x;

	new_db("t_bad", schema_inet);
	ASSERT_OK(
		pgf_sql(&fx, "t_bad",
			"INSERT INTO instances VALUES ('net64', '2001:db8::5/64'), "
			"('v4', '10.0.0.1'), ('v4net', '10.0.0.0/8'), "
			"('mapped', '::ffff:10.0.0.1'), ('mcast', 'ff02::1'), ('lo', '::1'), "
			"('ll', 'fe80::5'), ('site', 'fec0::5'), ('nat64', '64:ff9b::a00:1'), "
			"('sixtofour', '2002:a00:1::1'), ('teredo', '2001::5'), "
			"('gw', '2001:db8::1'), ('anycast', '2001:db8::'), "
			"('reserved', '2001:db8::200:5eff:fe00:5'), ('gw128', '2001:db8::1/128'), "
			"('othergw', '2001:db8:1::1'), ('unspec', '::')"));
	x = open_ipam("t_bad", "2001:db8::/64");
	expect_einval(x, "ll", "instances.ip_address of 'll' is 'fe80::5/128'");
	expect_einval(x, "site", "site-local");
	expect_einval(x, "nat64", "NAT64");
	expect_einval(x, "sixtofour", "6to4");
	expect_einval(x, "teredo", "Teredo");
	expect_einval(x, "gw",
		      "instances.ip_address of 'gw' is '2001:db8::1': the node bridge's "
		      "gateway");
	expect_einval(x, "gw128", "gateway");
	expect_einval(x, "anycast", "reserved address of the node prefix");
	expect_einval(x, "reserved", "reserved address of the node prefix");
	expect_einval(x, "unspec", "unicast");
	{
		/* Another prefix's gateway is an ordinary (routed) address for us. */
		struct err err = {0};
		struct in6_addr a;

		ASSERT_OK(ipam_assign(x, "othergw", &a, &err));
		ASSERT_STREQ(fmt(&a), "2001:db8:1::1");
	}
	expect_einval(x, "net64", "/64");
	expect_einval(x, "v4", "IPv4");
	expect_einval(x, "v4net", "IPv4");
	expect_einval(x, "mapped", "IPv4");
	expect_einval(x, "mcast", "unicast");
	expect_einval(x, "lo", "unicast");
	expect_einval(x, "net64", "instances.ip_address of 'net64'");
	ipam_free(x);
}

/* A text column: values that inet would refuse reach us and are refused strictly. */
static void test_bad_values_text(void)
{
	struct in6_addr a, b;
	struct err err = {0};
	struct ipam *x;
	char v[128];

	new_db("t_text", schema_text);
	ASSERT_OK(
		pgf_sql(&fx, "t_text",
			"INSERT INTO instances VALUES ('word', 'hello'), ('empty', ''), "
			"('space', '2001:db8::5 '), ('v4', '10.0.0.1'), ('net', '2001:db8::5/64'), "
			"('zone', 'fe80::1%eth0'), ('ctrl', E'2001:db8::5\\n'), "
			"('long', repeat('a', 5000)), ('good', '2001:DB8:0::0007'), "
			"('good128', '2001:db8::8/128')"));
	x = open_ipam("t_text", "2001:db8::/64");
	expect_einval(x, "word", "not an IPv6 address");
	expect_einval(x, "word", "'hello'");
	expect_einval(x, "empty", "empty");
	expect_einval(x, "space", "not an IPv6 address");
	expect_einval(x, "v4", "IPv4");
	expect_einval(x, "net", "/64");
	expect_einval(x, "zone", "not an IPv6 address");
	expect_einval(x, "ctrl", "not an IPv6 address");
	expect_einval(x, "long", "...");
	ASSERT_OK(ipam_assign(x, "good", &a, &err));
	ASSERT_STREQ(fmt(&a), "2001:db8::7");
	ASSERT_OK(ipam_assign(x, "good128", &a, &err));
	ASSERT_STREQ(fmt(&a), "2001:db8::8");
	/* Generation writes RFC 5952 text into a text column and reads it back. */
	ASSERT_OK(ipam_assign(x, "fresh", &a, &err));
	query("t_text", "SELECT ip_address FROM instances WHERE id = 'fresh'", v, sizeof(v));
	ASSERT_STREQ(v, fmt(&a));
	ASSERT_OK(ipam_assign(x, "fresh", &b, &err));
	ASSERT_EQ(memcmp(&a, &b, sizeof(a)), 0);
	ipam_free(x);
}

/* A text column holding an address in a non-canonical spelling still blocks that address. */
static void test_text_collision_canonical(void)
{
	struct err err = {0};
	struct in6_addr a;
	struct ipam *x;
	char sql[256];

	new_db("t_canon", schema_text);
	/* Every pool address of a /120 but 2001:db8::1fe... is written in upper case, long form. */
	for (unsigned i = 2; i < 128; i++) {
		if (i == 0x55)
			continue;
		(void)snprintf(sql, sizeof(sql),
			       "INSERT INTO instances VALUES ('o-%u', '2001:0DB8:0:0:0:0:0:%X')", i,
			       0x100 + i);
		ASSERT_OK(pgf_sql(&fx, "t_canon", sql));
	}
	x = open_ipam("t_canon", "2001:db8::100/120");
	ASSERT_OK(ipam_assign(x, "vm", &a, &err));
	ASSERT_STREQ(fmt(&a), "2001:db8::155");
	ipam_free(x);
}

static void test_database_down(void)
{
	char url[256], v[128];
	struct err err = {0};
	struct in6_addr a;
	struct ipam *x;

	/* Malformed: refused when the allocator is created, not at the first mkdir. */
	{
		struct net_config cfg = {.state_dir = state_dir,
					 .database_url = "postgresql://u:secret@[::1/db",
					 .ipv6_prefix = "2001:db8::/64"};

		x = NULL;
		ASSERT_ERRNO(ipam_new(&cfg, &x, &err), EINVAL);
		ASSERT_TRUE(x == NULL);
		printf("# %s\n", err.msg);
		ASSERT_TRUE(strstr(err.msg, "secret") == NULL);
		cfg.database_url = "host=/tmp nosuchoption=1";
		ASSERT_ERRNO(ipam_new(&cfg, &x, &err), EINVAL);
		printf("# %s\n", err.msg);
	}

	/* Nobody listening at all. */
	(void)snprintf(url, sizeof(url), "host=%s port=1 user=postgres dbname=x connect_timeout=2",
		       fx.dir);
	x = open_ipam_url(url, "2001:db8::/64"); /* lazy: creating works */
	ASSERT_ERRNO(ipam_assign(x, "vm", &a, &err), EIO);
	printf("# %s\n", err.msg);
	ASSERT_TRUE(strstr(err.msg, "database connection failed") != NULL);
	ASSERT_TRUE(strstr(err.msg, ".s.PGSQL.1") != NULL); /* libpq's own words */
	ipam_free(x);

	/* A real server that goes away: EIO, and after it is back nothing was left behind. */
	new_db("t_down", schema_inet);
	x = open_ipam("t_down", "2001:db8::/64");
	ASSERT_OK(ipam_assign(x, "before", &a, &err));
	ASSERT_OK(pgf_stop(&fx));
	ASSERT_ERRNO(ipam_assign(x, "during", &a, &err), EIO);
	printf("# %s\n", err.msg);
	ASSERT_OK(pgf_start(&fx));
	query("t_down", "SELECT count(*) FROM instances WHERE id = 'during'", v, sizeof(v));
	ASSERT_STREQ(v, "0");
	ipam_free(x);

	/* No table: the server's message. */
	new_db("t_notable", NULL);
	x = open_ipam("t_notable", "2001:db8::/64");
	ASSERT_ERRNO(ipam_assign(x, "vm", &a, &err), EIO);
	ASSERT_TRUE(strstr(err.msg, "instances") != NULL);
	ipam_free(x);
}

/* A failure after our INSERT (the UPDATE violates a constraint) rolls the row back. */
static void test_rollback_after_insert(void)
{
	struct err err = {0};
	struct in6_addr a;
	struct ipam *x;
	char v[128];

	new_db("t_rollback", "CREATE TABLE instances (id text PRIMARY KEY, ip_address inet "
			     "CONSTRAINT only_v4 CHECK (family(ip_address) = 4))");
	x = open_ipam("t_rollback", "2001:db8::/64");
	ASSERT_ERRNO(ipam_assign(x, "vm", &a, &err), EIO);
	printf("# %s\n", err.msg);
	ASSERT_TRUE(strstr(err.msg, "only_v4") != NULL);
	query("t_rollback", "SELECT count(*) FROM instances", v, sizeof(v));
	ASSERT_STREQ(v, "0");
	/* The connection is still usable afterwards (no transaction left open). */
	ASSERT_OK(pgf_sql(&fx, "t_rollback", "ALTER TABLE instances DROP CONSTRAINT only_v4"));
	ASSERT_OK(ipam_assign(x, "vm", &a, &err));
	ipam_free(x);
}

static void test_reconnect(void)
{
	struct in6_addr a, b;
	struct err err = {0};
	struct ipam *x;

	new_db("t_reconnect", schema_inet);
	x = open_ipam("t_reconnect", "2001:db8::/64");
	ASSERT_OK(ipam_assign(x, "one", &a, &err));
	ASSERT_OK(pgf_stop(&fx));
	ASSERT_OK(pgf_start(&fx));
	/* Same ipam object: the dead connection is noticed, reset and the assignment retried. */
	if (ipam_assign(x, "two", &b, &err) < 0)
		TEST_FAIL("after restart: %s", err.msg);
	ASSERT_OK(ipam_assign(x, "one", &b, &err));
	ASSERT_EQ(memcmp(&a, &b, sizeof(a)), 0);
	ipam_free(x);
}

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct silent_call {
	struct ipam *x;
	const char *name;
	int r;
	double secs;
	struct err err;
};

static void *silent_call_run(void *p)
{
	struct silent_call *c = p;
	struct in6_addr a;
	double t0 = mono_s();

	c->r = ipam_assign(c->x, c->name, &a, &c->err);
	c->secs = mono_s() - t0;
	return NULL;
}

static struct ipam *open_ipam_timeout(const char *url, unsigned ms)
{
	struct net_config cfg = {.state_dir = state_dir,
				 .database_url = url,
				 .ipv6_prefix = "2001:db8::/64",
				 .database_timeout_ms = ms};
	struct err err = {0};
	struct ipam *ipam = NULL;

	if (ipam_new(&cfg, &ipam, &err) < 0)
		TEST_FAIL("ipam_new: %s", err.msg);
	return ipam;
}

/* A server that completes the handshake and then says nothing (a frozen primary, a black-holed
 * link), behind a proxy that stops forwarding: every assignment fails with -EIO at its own
 * deadline, concurrent ones in parallel (not one after the other), the connection that missed it
 * is dropped, and after the proxy resumes assignments work again and nothing was left behind. */
static void test_silent_database(void)
{
	struct silent_call c[3] = {};
	pthread_t th[3];
	char sock[128], url[256], v[128];
	struct tcp_proxy px;
	struct err err = {0};
	struct in6_addr a;
	struct ipam *x;
	double t0, el;
	unsigned conns;

	new_db("t_silent", schema_inet);
	(void)snprintf(sock, sizeof(sock), "%s/.s.PGSQL.%d", fx.dir, fx.port);
	ASSERT_OK(tpx_start(&px, sock));
	(void)snprintf(url, sizeof(url), "host=127.0.0.1 port=%d user=postgres dbname=t_silent",
		       px.port);
	x = open_ipam_timeout(url, 2000);
	ASSERT_OK(ipam_assign(x, "before", &a, &err)); /* leaves an idle pooled connection */

	tpx_silent(&px, true);
	/* Two callers on the pooled connection's object at once, plus the pooled one: each
	 * fails within its own 2 s, and together they take 2 s, not 4 s or 6 s. */
	t0 = mono_s();
	for (int i = 0; i < 3; i++) {
		c[i].x = x;
		c[i].name = i == 0 ? "during-a" : i == 1 ? "during-b" : "during-c";
		ASSERT_EQ(pthread_create(&th[i], NULL, silent_call_run, &c[i]), 0);
	}
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(pthread_join(th[i], NULL), 0);
	el = mono_s() - t0;
	for (int i = 0; i < 3; i++) {
		printf("# %s: %.2f s: %s\n", c[i].name, c[i].secs, c[i].err.msg);
		ASSERT_EQ(c[i].r, -EIO);
		ASSERT_TRUE(c[i].secs >= 1.9 && c[i].secs < 3.5);
		ASSERT_TRUE(strstr(c[i].err.msg, "database did not answer within 2.0 s") != NULL);
		ASSERT_TRUE(strstr(c[i].err.msg, "connection dropped") != NULL);
		ASSERT_TRUE(strstr(c[i].err.msg, "127.0.0.1") != NULL);
	}
	printf("# three concurrent assignments against a silent database: %.2f s in all\n", el);
	ASSERT_TRUE(el < 3.5);

	/* The dropped connections are not reused: the next call connects afresh, and the
	 * startup exchange itself goes unanswered. The database is known silent now: the call
	 * gets a 1 s probe, not the full deadline (mkdirs queued behind it fail fast). */
	conns = atomic_load(&px.accepted);
	t0 = mono_s();
	ASSERT_ERRNO(ipam_assign(x, "during-d", &a, &err), EIO);
	el = mono_s() - t0;
	printf("# new connection, %.2f s: %s\n", el, err.msg);
	ASSERT_TRUE(el >= 0.9 && el < 1.8);
	ASSERT_TRUE(strstr(err.msg, "within 1.0 s while connecting") != NULL);
	ASSERT_TRUE(strstr(err.msg, "short probe") != NULL);
	ASSERT_TRUE(atomic_load(&px.accepted) == conns + 1);

	/* Back: the next assignment works on a fresh connection, and the transactions cut off
	 * above were rolled back by the server (no row of theirs stays). */
	tpx_silent(&px, false);
	t0 = mono_s();
	if (ipam_assign(x, "after", &a, &err) < 0)
		TEST_FAIL("after resuming: %s", err.msg);
	printf("# after resuming: %.3f s\n", mono_s() - t0);
	for (int i = 0; i < 50; i++) {
		query("t_silent", "SELECT count(*) FROM instances WHERE id LIKE 'during-%'", v,
		      sizeof(v));
		if (strcmp(v, "0") == 0)
			break;
		usleep(100 * 1000);
	}
	ASSERT_STREQ(v, "0");
	ASSERT_OK(ipam_assign(x, "during-a", &a, &err));
	query("t_silent", "SELECT count(*) FROM instances", v, sizeof(v));
	ASSERT_STREQ(v, "3");
	/* It answered: the next outage gets the full deadline again. */
	tpx_silent(&px, true);
	t0 = mono_s();
	ASSERT_ERRNO(ipam_assign(x, "again", &a, &err), EIO);
	el = mono_s() - t0;
	printf("# silent again, %.2f s: %s\n", el, err.msg);
	ASSERT_TRUE(el >= 1.9 && el < 3.5 && strstr(err.msg, "within 2.0 s") != NULL);
	tpx_silent(&px, false);
	ipam_free(x);
	tpx_stop(&px);
}

/* Shutdown: a call waiting on a silent database ends at once when cancelled, and so does every
 * later one, without waiting for the deadline. */
static void test_cancel(void)
{
	struct silent_call c = {};
	char sock[128], url[256];
	struct tcp_proxy px;
	struct err err = {0};
	struct in6_addr a;
	pthread_t th;
	double t0;

	new_db("t_cancel", schema_inet);
	(void)snprintf(sock, sizeof(sock), "%s/.s.PGSQL.%d", fx.dir, fx.port);
	ASSERT_OK(tpx_start(&px, sock));
	(void)snprintf(url, sizeof(url), "host=127.0.0.1 port=%d user=postgres dbname=t_cancel",
		       px.port);
	c.x = open_ipam_timeout(url, 8000);
	c.name = "waiting";
	ASSERT_OK(ipam_assign(c.x, "before", &a, &err));
	tpx_silent(&px, true);
	ASSERT_EQ(pthread_create(&th, NULL, silent_call_run, &c), 0);
	usleep(300 * 1000);
	t0 = mono_s();
	ipam_cancel(c.x);
	ASSERT_EQ(pthread_join(th, NULL), 0);
	printf("# cancelled after %.3f s: %s\n", mono_s() - t0, c.err.msg);
	ASSERT_EQ(c.r, -EIO);
	ASSERT_TRUE(mono_s() - t0 < 0.5);
	ASSERT_TRUE(strstr(c.err.msg, "cancelled") != NULL);
	tpx_silent(&px, false);
	t0 = mono_s();
	ASSERT_ERRNO(ipam_assign(c.x, "later", &a, &err), EIO);
	ASSERT_TRUE(mono_s() - t0 < 0.5);
	ASSERT_TRUE(strstr(err.msg, "shutting down") != NULL);
	ipam_free(c.x);
	tpx_stop(&px);
}

/* A host name is resolved under the same deadline: by name it works (through the proxy), and
 * with a DNS server that never answers (a silent UDP socket on 127.0.0.1:53 in a private
 * network and mount namespace, /etc/resolv.conf bound over) the call fails at the deadline
 * instead of after the resolver's own retries. */
static void test_dns(void)
{
	char sock[128], url[256];
	struct tcp_proxy px;
	struct err err = {0};
	struct in6_addr a;
	struct ipam *x;
	int st;
	pid_t pid;

	new_db("t_dns", schema_inet);
	(void)snprintf(sock, sizeof(sock), "%s/.s.PGSQL.%d", fx.dir, fx.port);
	ASSERT_OK(tpx_start(&px, sock));
	(void)snprintf(url, sizeof(url), "host=localhost port=%d user=postgres dbname=t_dns",
		       px.port);
	x = open_ipam_timeout(url, 4000);
	if (ipam_assign(x, "by-name", &a, &err) < 0)
		TEST_FAIL("by name: %s", err.msg);
	ipam_free(x);
	tpx_stop(&px);
	if (geteuid() != 0) {
		printf("# silent DNS case skipped: needs root for namespaces\n");
		return;
	}
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_port = htons(53),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		char conf[160];
		double t0, el;
		int u, r;

		(void)snprintf(conf, sizeof(conf), "%s/resolv.conf", fx.dir);
		if (unshare(CLONE_NEWNS | CLONE_NEWNET) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    write_file_atomic(conf, "nameserver 127.0.0.1\noptions timeout:5 attempts:2\n",
				      51, 0644) < 0 ||
		    mount(conf, "/etc/resolv.conf", NULL, MS_BIND, NULL) < 0 ||
		    system("ip link set lo up") != 0)
			_exit(77);
		u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (u < 0 || bind(u, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			_exit(77);
		x = open_ipam_timeout("host=db.mvmfs-test.invalid port=5432 user=postgres "
				      "dbname=x",
				      2000);
		t0 = mono_s();
		r = ipam_assign(x, "vm", &a, &err);
		el = mono_s() - t0;
		printf("# silent DNS: %d after %.2f s: %s\n", r, el, err.msg);
		_exit(r == -EIO && el >= 1.9 && el < 3.5 &&
				      strstr(err.msg, "did not resolve within 2.0 s")
			      ? 0
			      : 1);
	}
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT_TRUE(WIFEXITED(st));
	if (WEXITSTATUS(st) == 77) {
		printf("# silent DNS case skipped: no namespaces here\n");
		return;
	}
	ASSERT_EQ(WEXITSTATUS(st), 0);
}

#define DAEMONS 2
#define PER_DAEMON 50

/* Two "daemons" (processes with their own connections) creating 50 VMs each at once, in a
 * prefix where unsynchronised picks would collide, without any unique index. */
static void concurrent_round(const char *db)
{
	int go[2], res[DAEMONS][2];
	pid_t pids[DAEMONS];
	struct in6_addr got[DAEMONS * PER_DAEMON];
	size_t n = 0;
	char v[128];

	new_db(db, schema_inet); /* no unique index on ip_address */
	/* Other nodes' rows take 22 of the 126 pool addresses: with the 2 warm-up VMs, the 100
	 * just fit, so the last picks have almost no choice and any race shows. */
	for (unsigned i = 2; i < 24; i++) {
		char sql[128];

		(void)snprintf(sql, sizeof(sql),
			       "INSERT INTO instances VALUES ('o-%u', '2001:db8::%x')", i,
			       0x100 + i);
		ASSERT_OK(pgf_sql(&fx, db, sql));
	}
	ASSERT_OK(pipe(go));
	for (int d = 0; d < DAEMONS; d++) {
		ASSERT_OK(pipe(res[d]));
		pids[d] = fork();
		ASSERT_TRUE(pids[d] >= 0);
		if (pids[d] == 0) {
			struct ipam *x = open_ipam(db, "2001:db8::100/120");
			struct err err = {0};
			struct in6_addr a;
			char c, name[32];

			close(go[1]);
			if (ipam_assign(x, d ? "warm-b" : "warm-a", &a, &err) <
			    0) /* connect first */
				_exit(2);
			(void)!read(go[0], &c, 1);
			for (int i = 0; i < PER_DAEMON; i++) {
				(void)snprintf(name, sizeof(name), "d%d-vm%d", d, i);
				if (ipam_assign(x, name, &a, &err) < 0) {
					printf("# daemon %d: %s\n", d, err.msg);
					_exit(1);
				}
				if (write(res[d][1], &a, sizeof(a)) != sizeof(a))
					_exit(1);
			}
			ipam_free(x);
			_exit(0);
		}
		close(res[d][1]);
	}
	close(go[0]);
	usleep(300 * 1000); /* let both connect */
	close(go[1]);
	for (int d = 0; d < DAEMONS; d++) {
		int st;

		for (int i = 0; i < PER_DAEMON; i++)
			ASSERT_EQ(read(res[d][0], &got[n++], sizeof(got[0])), sizeof(got[0]));
		ASSERT_EQ(waitpid(pids[d], &st, 0), pids[d]);
		ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (memcmp(&got[i], &got[j], sizeof(got[i])) == 0)
				TEST_FAIL("duplicate %s", fmt(&got[i]));
	query(db,
	      "SELECT count(*) || ' ' || count(DISTINCT ip_address) FROM instances "
	      "WHERE id LIKE 'd_-vm%'",
	      v, sizeof(v));
	ASSERT_STREQ(v, "100 100");
	query(db, "SELECT count(*) || ' ' || count(DISTINCT ip_address) FROM instances", v,
	      sizeof(v));
	ASSERT_STREQ(v, "124 124");
	query(db,
	      "SELECT count(*) FROM pg_indexes WHERE tablename = 'instances' "
	      "AND indexdef LIKE '%ip_address%'",
	      v, sizeof(v));
	ASSERT_STREQ(v, "0");
}

/* A few rounds: an unsynchronised allocator collides in most rounds, so missing the race in
 * all of them is unlikely (measured: a build without the lock failed 3 of 5 single rounds). */
static void test_two_daemons_concurrent(void)
{
	concurrent_round("t_conc0");
	concurrent_round("t_conc1");
	concurrent_round("t_conc2");
}

int main(void)
{
	static const struct test_case cases[] = {
		TEST(test_insert_and_generate),
		TEST(test_preset_kept),
		TEST(test_bad_values_inet),
		TEST(test_bad_values_text),
		TEST(test_text_collision_canonical),
		TEST(test_database_down),
		TEST(test_rollback_after_insert),
		TEST(test_reconnect),
		TEST(test_two_daemons_concurrent),
		TEST(test_silent_database),
		TEST(test_cancel),
		TEST(test_dns),
	};
	char why[256];
	int r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	r = pgf_setup(&fx, false, why, sizeof(why));
	if (r == -ENOENT) {
		printf("1..0 # SKIP %s\n", why);
		pgf_teardown(&fx);
		return TEST_SKIP_CODE;
	}
	if (r < 0) {
		printf("Bail out! PostgreSQL fixture: %s\n", why);
		pgf_teardown(&fx);
		return 1;
	}
	(void)snprintf(state_dir, sizeof(state_dir), "%s/state", fx.dir);
	r = test_run(cases, ELEMENTSOF(cases));
	pgf_teardown(&fx);
	return r;
}
