/* SPDX-License-Identifier: MIT */
/* Unit tests: the embedded allocator (net/ipam-local.c) through the ipam.h interface. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fileio.h"
#include "ip6.h"
#include "ipam-internal.h"
#include "ipam.h"
#include "test.h"

static char dir[128];

/* tmpfs when available: the journal fdatasyncs every record and these tests make thousands. */
static void make_tmp(void)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

	(void)snprintf(dir, sizeof(dir), "%s/test-ipam-local-XXXXXX", base);
	ASSERT_TRUE(mkdtemp(dir) != NULL);
}

static struct ipam *open_ipam(const char *prefix)
{
	struct net_config cfg = {.state_dir = dir, .ipv6_prefix = prefix};
	struct err err = {0};
	struct ipam *ipam = NULL;
	int r = ipam_new(&cfg, &ipam, &err);

	if (r < 0)
		TEST_FAIL("ipam_new: %d %s", r, err.msg);
	return ipam;
}

static int cmp_addr(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct in6_addr));
}

/* Sort and check there are no duplicates. */
static void assert_distinct(struct in6_addr *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_addr);
	for (size_t i = 1; i < n; i++)
		if (memcmp(&v[i - 1], &v[i], sizeof(*v)) == 0) {
			char b[INET6_ADDRSTRLEN];

			TEST_FAIL("duplicate %s", ip6_format(&v[i], b, sizeof(b)));
		}
}

static void assign_many(const char *prefix, size_t n)
{
	struct ipam *ipam = open_ipam(prefix);
	struct in6_addr p, *v = calloc(n, sizeof(*v));
	struct err err = {0};
	unsigned len;
	char name[32];

	ASSERT_TRUE(v != NULL);
	ASSERT_OK(ipam_prefix(ipam, &p, &len, NULL));
	for (size_t i = 0; i < n; i++) {
		(void)snprintf(name, sizeof(name), "vm-%zu", i);
		int r = ipam_assign(ipam, name, &v[i], &err);
		if (r < 0)
			TEST_FAIL("assign %zu: %d %s", i, r, err.msg);
		ASSERT_TRUE(ip6_in_prefix(&v[i], &p, len));
		ASSERT_FALSE(ip6_is_excluded(&v[i], &p, len));
	}
	assert_distinct(v, n);
	free(v);
	ipam_free(ipam);
}

static void test_unique_10k_small_prefix(void)
{
	make_tmp();
	assign_many("2001:db8::/112", 10000); /* exhaustive-search path, 15% full */
	ASSERT_OK(rm_rf(dir));
}

static void test_unique_10k_64(void)
{
	make_tmp();
	assign_many("2001:db8:1::/64", 10000); /* random-draw path */
	ASSERT_OK(rm_rf(dir));
}

static void test_full_pool_enospc(void)
{
	struct in6_addr a, again, freed;
	struct err err = {0};
	struct ipam *ipam;
	char name[32];
	uint64_t n = ip6_pool_size(120);

	make_tmp();
	ipam = open_ipam("2001:db8::100/120");
	for (uint64_t i = 0; i < n; i++) {
		(void)snprintf(name, sizeof(name), "vm-%llu", (unsigned long long)i);
		ASSERT_OK(ipam_assign(ipam, name, &a, &err));
	}
	ASSERT_ERRNO(ipam_assign(ipam, "one-more", &a, &err), ENOSPC);
	ASSERT_TRUE(strstr(err.msg, "exhausted") != NULL);
	/* An existing name still gets its address when the pool is full. */
	ASSERT_OK(ipam_assign(ipam, "vm-7", &freed, &err));
	ASSERT_OK(ipam_release(ipam, "vm-7", &err));
	ASSERT_OK(ipam_release(ipam, "vm-7", &err)); /* idempotent */
	ASSERT_OK(ipam_release(ipam, "never-assigned", &err));
	ASSERT_OK(ipam_assign(ipam, "one-more", &a, &err));
	ASSERT_EQ(memcmp(&a, &freed, sizeof(a)), 0); /* the only free one */
	ASSERT_OK(ipam_assign(ipam, "one-more", &again, &err));
	ASSERT_EQ(memcmp(&a, &again, sizeof(a)), 0);
	ASSERT_ERRNO(ipam_assign(ipam, "vm-7", &a, &err), ENOSPC);
	ipam_free(ipam);

	/* A prefix without any allocatable address. */
	ipam = open_ipam("2001:db8::80/121");
	ASSERT_ERRNO(ipam_assign(ipam, "x", &a, &err), ENOSPC);
	ipam_free(ipam);
	ASSERT_OK(rm_rf(dir));
}

static void test_persistence(void)
{
	struct in6_addr a[50], b;
	struct err err = {0};
	struct ipam *ipam;
	char name[32];

	make_tmp();
	ipam = open_ipam(NULL); /* generated ULA, kept in the state dir */
	for (int i = 0; i < 50; i++) {
		(void)snprintf(name, sizeof(name), "p-%d", i);
		ASSERT_OK(ipam_assign(ipam, name, &a[i], &err));
	}
	ASSERT_OK(ipam_release(ipam, "p-3", &err));
	ipam = ipam_free(ipam);
	ASSERT_TRUE(ipam == NULL);

	ipam = open_ipam(NULL);
	for (int i = 0; i < 50; i++) {
		(void)snprintf(name, sizeof(name), "p-%d", i);
		ASSERT_OK(ipam_assign(ipam, name, &b, &err));
		if (i != 3)
			ASSERT_EQ(memcmp(&a[i], &b, sizeof(b)), 0);
		else
			ASSERT_NE(memcmp(&a[i], &b, sizeof(b)), 0); /* released, new draw */
	}
	ipam_free(ipam);
	ASSERT_OK(rm_rf(dir));
}

/* ipam_list (net_ip_list): the names with a lease, sorted, also those another process added;
 * with a database nothing (the platform owns the rows), without connecting. */
static void test_list(void)
{
	struct net_config pgcfg = {.database_url = "host=/nonexistent dbname=none"};
	struct ipam *a, *b, *pg = NULL;
	struct err err = {0};
	struct in6_addr x;
	char **names = NULL;

	make_tmp();
	a = open_ipam("fd00:1::/64");
	b = open_ipam("fd00:1::/64");
	ASSERT_EQ(ipam_list(a, &names, &err), 0);
	ASSERT_TRUE(names[0] == NULL);
	free(names);
	ASSERT_OK(ipam_assign(a, "web-2", &x, &err));
	ASSERT_OK(ipam_assign(a, "db", &x, &err));
	ASSERT_OK(ipam_assign(b, "web-10", &x, &err));
	ASSERT_OK(ipam_release(b, "db", &err));
	ASSERT_EQ(ipam_list(a, &names, &err), 2);
	ASSERT_STREQ(names[0], "web-10");
	ASSERT_STREQ(names[1], "web-2");
	ASSERT_TRUE(names[2] == NULL);
	free(names);
	ipam_free(b);
	ipam_free(a);

	pgcfg.state_dir = dir;
	pgcfg.ipv6_prefix = "fd00:1::/64";
	ASSERT_OK(ipam_new(&pgcfg, &pg, &err));
	ASSERT_EQ(ipam_list(pg, &names, &err), 0);
	ASSERT_TRUE(names[0] == NULL);
	free(names);
	ipam_free(pg);
	ASSERT_OK(rm_rf(dir));
}

static void test_bad_names(void)
{
	struct err err = {0};
	struct in6_addr a;
	struct ipam *ipam;

	make_tmp();
	ipam = open_ipam("2001:db8::/64");
	ASSERT_ERRNO(ipam_assign(ipam, "", &a, &err), EINVAL);
	ASSERT_ERRNO(ipam_assign(ipam, "a b", &a, &err), EINVAL);
	ASSERT_ERRNO(ipam_assign(ipam, "a\nA x 2001:db8::5", &a, &err), EINVAL);
	ASSERT_ERRNO(ipam_assign(ipam, "-x", &a, &err), EINVAL);
	ASSERT_ERRNO(ipam_release(ipam, "../x", &err), EINVAL);
	ipam_free(ipam);
	ASSERT_OK(rm_rf(dir));
}

static void append_raw(const char *text)
{
	char path[192];
	int fd;

	(void)snprintf(path, sizeof(path), "%s/ipam/leases", dir);
	fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void test_torn_and_corrupt_journal(void)
{
	struct in6_addr a, b, c;
	struct err err = {0};
	struct ipam *ipam;

	make_tmp();
	ipam = open_ipam("2001:db8::/64");
	ASSERT_OK(ipam_assign(ipam, "one", &a, &err));
	ipam_free(ipam);
	append_raw("A two 2001:db8::"); /* a crash in the middle of a record */
	ipam = open_ipam("2001:db8::/64");
	ASSERT_OK(ipam_assign(ipam, "one", &b, &err));
	ASSERT_EQ(memcmp(&a, &b, sizeof(a)), 0);
	ASSERT_OK(ipam_assign(ipam, "two", &c, &err)); /* cuts the torn tail, appends */
	ipam_free(ipam);
	ipam = open_ipam("2001:db8::/64");
	ASSERT_OK(ipam_assign(ipam, "two", &b, &err));
	ASSERT_EQ(memcmp(&c, &b, sizeof(c)), 0);
	ipam_free(ipam);

	append_raw("A three not-an-address\n");
	ipam = open_ipam("2001:db8::/64");
	ASSERT_ERRNO(ipam_assign(ipam, "four", &b, &err), EINVAL);
	ASSERT_TRUE(strstr(err.msg, "corrupt") != NULL);
	ipam_free(ipam);
	ASSERT_OK(rm_rf(dir));
}

/* Many assign/release cycles compact the journal; a second instance opened before the
 * compaction follows the file replacement. */
static void test_compaction(void)
{
	struct in6_addr keep, a, b;
	struct err err = {0};
	struct ipam *x, *y;
	char path[192];
	struct stat st;

	make_tmp();
	x = open_ipam("2001:db8::/112");
	y = open_ipam("2001:db8::/112");
	ASSERT_OK(ipam_assign(x, "keep", &keep, &err));
	ASSERT_OK(ipam_assign(y, "keep", &a, &err));
	ASSERT_EQ(memcmp(&keep, &a, sizeof(a)), 0);
	for (int i = 0; i < 3000; i++) {
		ASSERT_OK(ipam_assign(x, "churn", &a, &err));
		ASSERT_OK(ipam_release(x, "churn", &err));
	}
	(void)snprintf(path, sizeof(path), "%s/ipam/leases", dir);
	ASSERT_OK(stat(path, &st));
	ASSERT_TRUE(st.st_size < 4096 * 40); /* 6001 records would be ~200 KiB */
	ASSERT_OK(ipam_assign(x, "late", &a, &err));
	ASSERT_OK(ipam_assign(y, "late", &b, &err));
	ASSERT_EQ(memcmp(&a, &b, sizeof(a)), 0);
	ASSERT_OK(ipam_assign(y, "keep", &b, &err));
	ASSERT_EQ(memcmp(&keep, &b, sizeof(b)), 0);
	ipam_free(x);
	ipam_free(y);
	ASSERT_OK(rm_rf(dir));
}

#define PROCS 4
#define PER_PROC 300

/* Separate processes on one state dir (like daemons restarted over each other): all
 * addresses distinct, in a prefix small enough that unlocked picks would collide. */
static void test_concurrent_processes(void)
{
	struct in6_addr all[PROCS * PER_PROC];
	int pipes[PROCS][2], go[2];
	pid_t pids[PROCS];
	size_t n = 0;

	make_tmp();
	{ /* create the prefix and the directory once, as the daemon would */
		struct ipam *ipam = open_ipam("2001:db8::/116");
		ipam_free(ipam);
	}
	ASSERT_OK(pipe(go));
	for (int p = 0; p < PROCS; p++) {
		ASSERT_OK(pipe(pipes[p]));
		pids[p] = fork();
		ASSERT_TRUE(pids[p] >= 0);
		if (pids[p] == 0) {
			struct ipam *ipam = open_ipam("2001:db8::/116");
			struct err err = {0};
			struct in6_addr a;
			char c, name[32];

			close(go[1]);
			(void)!read(go[0], &c, 1); /* start together */
			for (int i = 0; i < PER_PROC; i++) {
				(void)snprintf(name, sizeof(name), "p%d-%d", p, i);
				if (ipam_assign(ipam, name, &a, &err) < 0) {
					printf("# child %d: %s\n", p, err.msg);
					_exit(1);
				}
				if (write(pipes[p][1], &a, sizeof(a)) != sizeof(a))
					_exit(1);
			}
			ipam_free(ipam);
			_exit(0);
		}
		close(pipes[p][1]);
	}
	close(go[0]);
	close(go[1]);
	for (int p = 0; p < PROCS; p++) {
		int st;

		for (int i = 0; i < PER_PROC; i++)
			ASSERT_EQ(read(pipes[p][0], &all[n++], sizeof(all[0])), sizeof(all[0]));
		ASSERT_EQ(waitpid(pids[p], &st, 0), pids[p]);
		ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	assert_distinct(all, n);

	/* And what a fresh process reads back matches what was handed out. */
	struct ipam *ipam = open_ipam("2001:db8::/116");
	struct err err = {0};
	struct in6_addr a;
	size_t found = 0;
	for (int p = 0; p < PROCS; p++)
		for (int i = 0; i < PER_PROC; i++) {
			char name[32];

			(void)snprintf(name, sizeof(name), "p%d-%d", p, i);
			ASSERT_OK(ipam_assign(ipam, name, &a, &err));
			if (bsearch(&a, all, n, sizeof(a), cmp_addr))
				found++;
		}
	ASSERT_EQ(found, n);
	ipam_free(ipam);
	ASSERT_OK(rm_rf(dir));
}

TEST_MAIN(TEST(test_unique_10k_small_prefix), TEST(test_unique_10k_64), TEST(test_full_pool_enospc),
	  TEST(test_persistence), TEST(test_list), TEST(test_bad_names),
	  TEST(test_torn_and_corrupt_journal), TEST(test_compaction),
	  TEST(test_concurrent_processes))
