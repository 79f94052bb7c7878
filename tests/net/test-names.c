/* SPDX-License-Identifier: MIT */
/* Names derived from a VM name (no privileges): deterministic, bounded, valid. */
#include <net/if.h>

#include "plumbing.h"
#include "test.h"

/* Names are derived only from valid VM names (vm_name_is_valid, tested in tests/common): the
 * longest one fits every derived name, one longer or with a foreign character is refused. */
static void test_valid_names(void)
{
	char longname[NET_NAME_MAX + 2];
	struct net_names n;

	memset(longname, 'a', sizeof(longname));
	longname[NET_NAME_MAX] = '\0';
	ASSERT_OK(net_names_derive("0123abcd", longname, &n));
	longname[NET_NAME_MAX] = 'a';
	longname[NET_NAME_MAX + 1] = '\0';
	ASSERT_ERRNO(net_names_derive(NULL, longname, &n), EINVAL);
	ASSERT_ERRNO(net_names_derive(NULL, "a/b", &n), EINVAL);
	ASSERT_ERRNO(net_names_derive(NULL, "-a", &n), EINVAL);
}

static bool all_hex(const char *s)
{
	return *s && strspn(s, "0123456789abcdef") == strlen(s);
}

static void test_derive(void)
{
	struct net_names a, b, c;

	ASSERT_OK(net_names_derive(NULL, "web-1", &a));
	ASSERT_OK(net_names_derive(NULL, "web-1", &b));
	ASSERT_OK(net_names_derive(NULL, "web-2", &c));
	ASSERT_EQ(memcmp(&a, &b, sizeof(a)), 0);
	ASSERT_TRUE(strcmp(a.host_veth, c.host_veth) != 0);
	ASSERT_TRUE(strcmp(a.chain, c.chain) != 0);
	ASSERT_TRUE(memcmp(a.mac, c.mac, 6) != 0);

	ASSERT_EQ(strlen(a.host_veth), 12);
	ASSERT_TRUE(strlen(a.host_veth) < IFNAMSIZ);
	ASSERT_TRUE(strncmp(a.host_veth, "mv", 2) == 0 && all_hex(a.host_veth + 2));
	ASSERT_TRUE(strncmp(a.chain, "vm_", 3) == 0 && all_hex(a.chain + 3));
	ASSERT_STREQ(a.alias, "mvmfs:web-1");
	ASSERT_STREQ(a.netns_path, "/run/netns/mvmfs-web-1");
	/* Locally administered unicast. */
	ASSERT_EQ(a.mac[0], 0x02);

	ASSERT_ERRNO(net_names_derive(NULL, "", &a), EINVAL);
	ASSERT_ERRNO(net_names_derive(NULL, "../x", &a), EINVAL);
}

/* With a node id every host name and mark carries it: two daemons' VMs of one name share
 * nothing, and neither form of a mark parses as the other. */
static void test_derive_node(void)
{
	struct net_names a, b, u;

	ASSERT_OK(net_names_derive("0a1b2c3d", "web-1", &a));
	ASSERT_OK(net_names_derive("ffff0000", "web-1", &b));
	ASSERT_OK(net_names_derive("", "web-1", &u));
	ASSERT_STREQ(a.alias, "mvmfs:0a1b2c3d:web-1");
	ASSERT_STREQ(a.netns_path, "/run/netns/mvmfs-0a1b2c3d.web-1");
	ASSERT_STREQ(u.alias, "mvmfs:web-1");
	ASSERT_STREQ(u.netns_path, "/run/netns/mvmfs-web-1");
	ASSERT_TRUE(strcmp(a.host_veth, b.host_veth) != 0 && strcmp(a.host_veth, u.host_veth) != 0);
	ASSERT_TRUE(strcmp(a.chain, b.chain) != 0 && strcmp(a.chain, u.chain) != 0);
	ASSERT_STREQ(b.alias, "mvmfs:ffff0000:web-1");
	ASSERT_EQ(strlen(a.host_veth), 12);
	/* The unmarked form's name part of a node mark is no VM name. */
	ASSERT_FALSE(vm_name_is_valid(a.alias + strlen("mvmfs:")));
	ASSERT_FALSE(vm_name_is_valid(a.netns_path + strlen("/run/netns/mvmfs-")));
	ASSERT_ERRNO(net_names_derive("0A1B", "web-1", &a), EINVAL);
	ASSERT_ERRNO(net_names_derive("123456789", "web-1", &a), EINVAL);
	ASSERT_ERRNO(net_names_derive("ab:c", "web-1", &a), EINVAL);
}

/* Over many names: no two host links or MACs alike (a collision would make setup refuse). */
static void test_spread(void)
{
	enum { N = 4096 };
	static struct net_names n[N];
	char name[32];

	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "vm-%d", i);
		ASSERT_OK(net_names_derive(NULL, name, &n[i]));
	}
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N; j++) {
			ASSERT_TRUE(strcmp(n[i].host_veth, n[j].host_veth) != 0);
			ASSERT_TRUE(memcmp(n[i].mac, n[j].mac, 6) != 0);
		}
}

static void test_bridge_mac(void)
{
	uint8_t a[6], b[6], c[6];

	net_bridge_mac("mvmbr0", a);
	net_bridge_mac("mvmbr0", b);
	net_bridge_mac("mvmbr1", c);
	ASSERT_EQ(memcmp(a, b, 6), 0);
	ASSERT_TRUE(memcmp(a, c, 6) != 0);
	ASSERT_EQ(a[0], 0x02);
}

TEST_MAIN(TEST(test_valid_names), TEST(test_derive), TEST(test_derive_node), TEST(test_spread),
	  TEST(test_bridge_mac))
