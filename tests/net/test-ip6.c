/* SPDX-License-Identifier: MIT */
/* Unit tests: IPv6 math (net/ip6.c) and the node prefix (net/prefix.c). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "fileio.h"
#include "ip6.h"
#include "ipam-internal.h"
#include "test.h"

static struct in6_addr A(const char *s) {
	struct in6_addr a;

	if (inet_pton(AF_INET6, s, &a) != 1)
		TEST_FAIL("bad test address %s", s);
	return a;
}

static const char *
fmt(const struct in6_addr *a)
{
	static char buf[INET6_ADDRSTRLEN];

	return ip6_format(a, buf, sizeof(buf));
}

/* xorshift64*: reproducible draws for the property tests. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static void rnd16(uint8_t b[16])
{
	uint64_t x = rng(), y = rng();

	memcpy(b, &x, 8);
	memcpy(b + 8, &y, 8);
}

static void test_format_rfc5952(void)
{
	static const char *const cases[][2] = {
		{"2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"}, /* 4.1, 4.2.1 */
		{"2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"}, /* 4.2.2: no :: for one 0 */
		{"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},	  /* 4.2.3: first of equal runs */
		{"2001:db8:0:0:1:0:0:0", "2001:db8:0:0:1::"},	  /* 4.2.3: longest run */
		{"2001:DB8::ABCD:EF", "2001:db8::abcd:ef"},	  /* 4.3: lower case */
		{"0:0:0:0:0:0:0:0", "::"},
		{"0:0:0:0:0:0:0:1", "::1"},
		{"fe80:0:0:0:0:0:0:0", "fe80::"},
		{"2001:db8:aaaa:bbbb:cccc:dddd:eeee:1", "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1"},
		{"::ffff:c000:0201", "::ffff:192.0.2.1"}, /* 5: mapped IPv4 */
	};
	char buf[INET6_ADDRSTRLEN];

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		struct in6_addr a = A(cases[i][0]);

		ASSERT_STREQ(ip6_format(&a, buf, sizeof(buf)), cases[i][1]);
	}
	struct in6_addr p = A("2001:db8::");
	char pb[IP6_PREFIX_STRLEN];
	ASSERT_STREQ(ip6_prefix_format(&p, 64, pb, sizeof(pb)), "2001:db8::/64");
}

static void test_prefix_parse(void)
{
	static const char *const bad[] = {
		"",
		"/",
		"/64",
		"2001:db8::",
		"2001:db8::/",
		"2001:db8::/129",
		"2001:db8::/064",
		"2001:db8::/+64",
		"2001:db8::/-1",
		"2001:db8::/1000",
		"2001:db8::1/64",
		"2001:db8::/63/64",
		"2001:db8::/6 4",
		" 2001:db8::/64",
		"2001:db8::/64 ",
		"2001:db8::/64\n",
		"2001:db8:: /64",
		"fe80::%eth0/64",
		"10.0.0.0/8",
		"0.0.0.0/0",
		"2001:db8:::/64",
		"2001:db8::g/64",
		"2001:db8:0:0:0:0:0:0:0/64",
		"::/0x40",
		"2001:db8::/ 64",
		"2001:db8::/64a",
		"::ffff:10.0.0.1/64",
	};
	struct in6_addr p;
	unsigned len;

	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		if (ip6_prefix_parse(bad[i], &p, &len) != -EINVAL)
			TEST_FAIL("accepted '%s'", bad[i]);
	ASSERT_ERRNO(ip6_prefix_parse(NULL, &p, &len), EINVAL);

	ASSERT_OK(ip6_prefix_parse("2001:DB8::/32", &p, &len));
	ASSERT_EQ(len, 32);
	ASSERT_STREQ(fmt(&p), "2001:db8::");
	ASSERT_OK(ip6_prefix_parse("::/0", &p, &len));
	ASSERT_EQ(len, 0);
	ASSERT_OK(ip6_prefix_parse("2001:db8::1/128", &p, &len));
	ASSERT_EQ(len, 128);
	ASSERT_OK(ip6_prefix_parse("fd12:3456:789a:1::/64", &p, &len));
	ASSERT_EQ(len, 64);
	ASSERT_OK(ip6_prefix_parse("2001:db8::100/120", &p, &len));
	ASSERT_EQ(len, 120);
}

static void test_host_parse(void)
{
	static const char *const bad[] = {
		"",
		"hello",
		"2001:db8::5/64",
		"2001:db8::5/0",
		"10.0.0.1",
		"10.0.0.1/32",
		"::ffff:10.0.0.1",
		"::",
		"::1",
		"ff02::1",
		"fe80::1",
		"2001:db8::5 ",
		" 2001:db8::5",
		"2001:db8::5/128/128",
		"2001:db8::5/",
		"2001:db8::5/0128",
		"2001:db8::5%eth0",
		"2001:db8::5/12a",
		"fe80::1/128",
		"febf:ffff::1",
		"fec0::1",
		"feff::1",
		"100::1",
		"64:ff9b::a00:1",
		"64:ff9b:1::5",
		"2001::1",
		"2001:0:ffff::1",
		"2002:a00:1::1",
		"2001:10::1",
		"2001:20::1",
		"2001:2::1",
		"::a00:1",
	};
	/* Global unicast and unique-local, documentation included; neighbours of the ranges. */
	static const char *const good[] = {
		"2001:db8::5", "fd00::1",      "fc00::1",      "2001:1::1", "2001:30::1", "2003::1",
		"2a00:1::1",   "100:0:0:1::1", "64:ff9b:2::1", "2001:3::1", "fbff::1",	  "4000::1",
	};
	char why[128];
	struct in6_addr a;

	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		if (ip6_host_parse(bad[i], strlen(bad[i]), &a, why, sizeof(why)) != -EINVAL)
			TEST_FAIL("accepted '%s'", bad[i]);
	for (size_t i = 0; i < ELEMENTSOF(good); i++)
		if (ip6_host_parse(good[i], strlen(good[i]), &a, why, sizeof(why)) != 0)
			TEST_FAIL("refused '%s': %s", good[i], why);
	ASSERT_ERRNO(ip6_host_parse("2002::1", 7, &a, why, sizeof(why)), EINVAL);
	ASSERT_TRUE(strstr(why, "6to4 address (2002::/16)") != NULL);
	ASSERT_ERRNO(ip6_host_parse("fec0::1", 7, &a, why, sizeof(why)), EINVAL);
	ASSERT_TRUE(strstr(why, "site-local") != NULL);
	ASSERT_ERRNO(ip6_host_parse("2001:db8::\0"
				    "5",
				    12, &a, why, sizeof(why)),
		     EINVAL);
	ASSERT_ERRNO(ip6_host_parse("10.0.0.1/32", 11, &a, why, sizeof(why)), EINVAL);
	ASSERT_TRUE(strstr(why, "IPv4") != NULL);
	ASSERT_ERRNO(ip6_host_parse("2001:db8::5/64", 14, &a, why, sizeof(why)), EINVAL);
	ASSERT_TRUE(strstr(why, "/64") != NULL);

	ASSERT_OK(ip6_host_parse("2001:db8::5", 11, &a, why, sizeof(why)));
	ASSERT_STREQ(fmt(&a), "2001:db8::5");
	ASSERT_OK(ip6_host_parse("2001:DB8:0::0005/128", 20, &a, why, sizeof(why)));
	ASSERT_STREQ(fmt(&a), "2001:db8::5");
	/* length-bounded: the bytes after len are not looked at */
	ASSERT_OK(ip6_host_parse("fd00::7garbage", 7, &a, why, sizeof(why)));
	ASSERT_STREQ(fmt(&a), "fd00::7");
}

static void test_in_prefix_and_mask(void)
{
	struct in6_addr p = A("2001:db8:1::"), a = A("2001:db8:1::abcd"), b = A("2001:db8:2::1");
	struct in6_addr g;

	ASSERT_TRUE(ip6_in_prefix(&a, &p, 64));
	ASSERT_FALSE(ip6_in_prefix(&b, &p, 64));
	ASSERT_TRUE(ip6_in_prefix(&b, &p, 46));
	ASSERT_TRUE(ip6_in_prefix(&b, &p, 0));
	ASSERT_FALSE(ip6_in_prefix(&a, &p, 128));
	ASSERT_TRUE(ip6_in_prefix(&p, &p, 128));
	ASSERT_FALSE(ip6_in_prefix(&a, &p, 129));
	a = A("2001:db8:1:2:3:4:5:6");
	ip6_mask(&a, 72);
	ASSERT_STREQ(fmt(&a), "2001:db8:1:2::");
	a = A("2001:db8:1:2:3:4:5:6");
	ip6_mask(&a, 67);
	ASSERT_STREQ(fmt(&a), "2001:db8:1:2::");
	a = A("2001:db8:1:2:ffff:4:5:6");
	ip6_mask(&a, 68);
	ASSERT_STREQ(fmt(&a), "2001:db8:1:2:f000::");
	ip6_gateway(&p, 64, &g);
	ASSERT_STREQ(fmt(&g), "2001:db8:1::1");
}

static void test_excluded(void)
{
	struct in6_addr p = A("2001:db8:1::"), q = A("2001:db8::100");
	static const char *const ex64[] = {
		"2001:db8:1::",
		"2001:db8:1::1",
		"2001:db8:1:0:200:5eff:fe00:0",
		"2001:db8:1:0:200:5eff:fe00:5213",
		"2001:db8:1:0:200:5eff:feff:ffff",
		"2001:db8:1:0:fdff:ffff:ffff:ff80",
		"2001:db8:1:0:fdff:ffff:ffff:ffff",
	};
	static const char *const ok64[] = {
		"2001:db8:1::2",
		"2001:db8:1:0:200:5eff:fdff:ffff",
		"2001:db8:1:0:200:5eff:ff00:0",
		"2001:db8:1:0:fdff:ffff:ffff:ff7f",
		"2001:db8:1:0:ffff:ffff:ffff:ffff",
	};

	for (size_t i = 0; i < ELEMENTSOF(ex64); i++) {
		struct in6_addr a = A(ex64[i]);

		if (!ip6_is_excluded(&a, &p, 64))
			TEST_FAIL("%s not excluded", ex64[i]);
	}
	for (size_t i = 0; i < ELEMENTSOF(ok64); i++) {
		struct in6_addr a = A(ok64[i]);

		if (ip6_is_excluded(&a, &p, 64))
			TEST_FAIL("%s excluded", ok64[i]);
	}
	/* /120: iid 0, 1 and the top 128 (RFC 2526) are out */
	struct in6_addr x = A("2001:db8::100"), y = A("2001:db8::101"), z = A("2001:db8::102"),
			w = A("2001:db8::17f"), v = A("2001:db8::180"), u = A("2001:db8::1ff");
	ASSERT_TRUE(ip6_is_excluded(&x, &q, 120));
	ASSERT_TRUE(ip6_is_excluded(&y, &q, 120));
	ASSERT_FALSE(ip6_is_excluded(&z, &q, 120));
	ASSERT_FALSE(ip6_is_excluded(&w, &q, 120));
	ASSERT_TRUE(ip6_is_excluded(&v, &q, 120));
	ASSERT_TRUE(ip6_is_excluded(&u, &q, 120));
	ASSERT_EQ(ip6_pool_size(120), 126);
	ASSERT_EQ(ip6_pool_size(112), 65536 - 130);
	ASSERT_EQ(ip6_pool_size(121), 0);
	ASSERT_EQ(ip6_pool_size(128), 0);
	ASSERT_TRUE(ip6_pool_size(64) == UINT64_MAX);
	ASSERT_TRUE(ip6_pool_size(48) == UINT64_MAX);
}

/* Property: draws are in the prefix and never excluded, for several prefix shapes. */
static void check_draws(const char *prefix_text, unsigned draws)
{
	struct in6_addr p, a;
	unsigned len;
	uint8_t b[16];

	ASSERT_OK(ip6_prefix_parse(prefix_text, &p, &len));
	for (unsigned i = 0; i < draws; i++) {
		rnd16(b);
		ASSERT_OK(ip6_random_in_prefix(&p, len, b, &a));
		if (!ip6_in_prefix(&a, &p, len) || ip6_is_excluded(&a, &p, len))
			TEST_FAIL("%s: drew %s", prefix_text, fmt(&a));
	}
}

static void test_random_never_excluded(void)
{
	static const char *const iids[] = {
		"::",
		"::1",
		"::200:5eff:fe00:0",
		"::200:5eff:fe12:3456",
		"::200:5eff:feff:ffff",
		"::fdff:ffff:ffff:ff80",
		"::fdff:ffff:ffff:ffff",
	};
	struct in6_addr p, a, r;
	unsigned len;

	check_draws("2001:db8:1::/64", 200000);
	check_draws("2001:db8::/48", 100000);
	check_draws("fd00::/8", 100000);
	check_draws("2001:db8::100/120", 100000);
	check_draws("2001:db8::/112", 100000);
	check_draws("2001:db8::/80", 100000);
	/* Random bytes that land exactly on each excluded iid are remapped, not returned. */
	ASSERT_OK(ip6_prefix_parse("2001:db8:1::/64", &p, &len));
	for (size_t i = 0; i < ELEMENTSOF(iids); i++) {
		r = A(iids[i]);
		ASSERT_OK(ip6_random_in_prefix(&p, len, r.s6_addr, &a));
		if (!ip6_in_prefix(&a, &p, len) || ip6_is_excluded(&a, &p, len))
			TEST_FAIL("iid %s gave %s", iids[i], fmt(&a));
	}
	/* No pool at all. */
	ASSERT_OK(ip6_prefix_parse("2001:db8::80/121", &p, &len));
	ASSERT_ERRNO(ip6_random_in_prefix(&p, len, r.s6_addr, &a), ENOSPC);
}

static void test_pool_index(void)
{
	struct in6_addr p = A("2001:db8::100"), a;
	uint64_t n, seen = 0;

	for (uint64_t i = 0; i < ip6_pool_size(120); i++) {
		ASSERT_OK(ip6_pool_nth(&p, 120, i, &a));
		ASSERT_FALSE(ip6_is_excluded(&a, &p, 120));
		ASSERT_OK(ip6_pool_index(&a, &p, 120, &n));
		ASSERT_EQ(n, i);
		seen++;
	}
	ASSERT_EQ(seen, 126);
	/* index defined exactly where the address is allocatable */
	for (unsigned i = 0; i < 256; i++) {
		a = p;
		a.s6_addr[15] = (uint8_t)i;
		ASSERT_EQ(ip6_pool_index(&a, &p, 120, &n) == 0, !ip6_is_excluded(&a, &p, 120));
	}
	ASSERT_ERRNO(ip6_pool_nth(&p, 120, 126, &a), ENOSPC);
	a = A("2001:db8::101");
	ASSERT_ERRNO(ip6_pool_index(&a, &p, 120, &n), ENOENT);
	a = A("2001:db8::1:102");
	ASSERT_ERRNO(ip6_pool_index(&a, &p, 120, &n), ENOENT);
}

static void test_ula(void)
{
	const uint8_t r[7] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde};
	char buf[IP6_PREFIX_STRLEN];
	struct in6_addr u, p;
	unsigned len;

	ip6_ula_from_random(r, &u);
	ASSERT_STREQ(ip6_prefix_format(&u, 64, buf, sizeof(buf)), "fd12:3456:789a:bcde::/64");
	ASSERT_OK(ip6_prefix_parse(buf, &p, &len));
	ASSERT_EQ(len, 64);
	for (int i = 0; i < 1000; i++) {
		uint8_t b[16];

		rnd16(b);
		ip6_ula_from_random(b, &u);
		ASSERT_EQ(u.s6_addr[0], 0xfd); /* fc00::/7 with L=1 */
		for (int k = 8; k < 16; k++)
			ASSERT_EQ(u.s6_addr[k], 0);
	}
}

static void make_tmp(char *dir, size_t size)
{
	(void)snprintf(dir, size, "/tmp/test-ip6-XXXXXX");
	ASSERT_TRUE(mkdtemp(dir) != NULL);
}

static void test_prefix_file(void)
{
	char dir[64], path[128], text[128];
	struct net_config cfg = {0};
	struct in6_addr p1, p2;
	unsigned l1, l2;
	struct err err = {0};
	_cleanup_free_ char *data = NULL;
	size_t n;

	make_tmp(dir, sizeof(dir));
	(void)snprintf(path, sizeof(path), "%s/sub/prefix", dir);
	(void)snprintf(text, sizeof(text), "%s/sub", dir);
	cfg.state_dir = text;
	ASSERT_OK(ipam_prefix_load(&cfg, &p1, &l1, &err));
	ASSERT_EQ(l1, 64);
	ASSERT_EQ(p1.s6_addr[0], 0xfd);
	ASSERT_OK(read_file_bounded(path, 128, &data, &n));
	ASSERT_TRUE(n > 0 && data[n - 1] == '\n');
	ASSERT_OK(ipam_prefix_load(&cfg, &p2, &l2, &err)); /* kept, not regenerated */
	ASSERT_EQ(memcmp(&p1, &p2, sizeof(p1)), 0);

	/* A configured prefix wins over the file. */
	cfg.ipv6_prefix = "2001:db8:7::/64";
	ASSERT_OK(ipam_prefix_load(&cfg, &p2, &l2, &err));
	ASSERT_STREQ(fmt(&p2), "2001:db8:7::");
	cfg.ipv6_prefix = "2001:db8:7::1/64";
	ASSERT_ERRNO(ipam_prefix_load(&cfg, &p2, &l2, &err), EINVAL);
	cfg.ipv6_prefix = "ff00::/8";
	ASSERT_ERRNO(ipam_prefix_load(&cfg, &p2, &l2, &err), EINVAL);
	cfg.ipv6_prefix = NULL;

	/* Corrupt file: a clear error, not a new prefix. */
	ASSERT_OK(write_file_atomic(path, "fd00::1/64\n", 11, 0644));
	ASSERT_ERRNO(ipam_prefix_load(&cfg, &p2, &l2, &err), EINVAL);
	ASSERT_TRUE(strstr(err.msg, "corrupt") != NULL);
	ASSERT_OK(write_file_atomic(path, "fd00::/64\n\n", 11, 0644));
	ASSERT_ERRNO(ipam_prefix_load(&cfg, &p2, &l2, &err), EINVAL);
	ASSERT_OK(write_file_atomic(path, "fd00:1::/48", 11, 0644));
	ASSERT_OK(ipam_prefix_load(&cfg, &p2, &l2, &err));
	ASSERT_EQ(l2, 48);
	ASSERT_OK(rm_rf(dir));
}

/* Several processes creating the prefix at once agree on one. */
static void test_prefix_race(void)
{
	char dir[64];
	struct net_config cfg = {0};
	struct in6_addr mine, other;
	unsigned len;
	int pipes[8][2];
	pid_t pids[8];

	make_tmp(dir, sizeof(dir));
	cfg.state_dir = dir;
	for (int i = 0; i < 8; i++) {
		ASSERT_OK(pipe(pipes[i]));
		pids[i] = fork();
		ASSERT_TRUE(pids[i] >= 0);
		if (pids[i] == 0) {
			struct in6_addr p;

			if (ipam_prefix_load(&cfg, &p, &len, NULL) < 0)
				_exit(1);
			(void)!write(pipes[i][1], &p, sizeof(p));
			_exit(0);
		}
		close(pipes[i][1]);
	}
	ASSERT_OK(ipam_prefix_load(&cfg, &mine, &len, NULL));
	for (int i = 0; i < 8; i++) {
		int st;

		ASSERT_EQ(read(pipes[i][0], &other, sizeof(other)), sizeof(other));
		ASSERT_EQ(memcmp(&mine, &other, sizeof(mine)), 0);
		ASSERT_EQ(waitpid(pids[i], &st, 0), pids[i]);
		ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	ASSERT_OK(rm_rf(dir));
}

TEST_MAIN(TEST(test_format_rfc5952), TEST(test_prefix_parse), TEST(test_host_parse),
	  TEST(test_in_prefix_and_mask), TEST(test_excluded), TEST(test_random_never_excluded),
	  TEST(test_pool_index), TEST(test_ula), TEST(test_prefix_file), TEST(test_prefix_race))
