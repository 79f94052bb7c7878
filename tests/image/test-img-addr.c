/* SPDX-License-Identifier: MIT */
/* img_addr_class: which addresses a redirect or token realm of a public registry may reach. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "fetch.h"
#include "test.h"

static int cls(const char *text)
{
	struct sockaddr_in in = {.sin_family = AF_INET};
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};

	if (inet_pton(AF_INET, text, &in.sin_addr) == 1)
		return img_addr_class((struct sockaddr *)&in, sizeof(in));
	if (inet_pton(AF_INET6, text, &in6.sin6_addr) == 1)
		return img_addr_class((struct sockaddr *)&in6, sizeof(in6));
	TEST_FAIL("bad address %s", text);
}

static void test_internal(void)
{
	static const char *const internal[] = {
		"127.0.0.1",
		"127.255.0.9",
		"10.0.0.1",
		"172.16.0.1",
		"172.31.255.255",
		"192.168.1.1",
		"169.254.169.254",
		"0.0.0.0",
		"100.64.0.1",
		"224.0.0.1",
		"255.255.255.255",
		"::1",
		"::",
		"fe80::1",
		"fc00::1",
		"fd12:3456::1",
		"fec0::1",
		"ff02::1",
		"::ffff:127.0.0.1",
		"::ffff:10.1.2.3",
		"::ffff:169.254.169.254",
	};

	for (size_t i = 0; i < ELEMENTSOF(internal); i++)
		if (cls(internal[i]) != IMG_ADDR_INTERNAL)
			TEST_FAIL("%s should be internal", internal[i]);
}

static void test_public(void)
{
	static const char *const public[] = {
		"8.8.8.8",	  "172.15.255.255", "172.32.0.1", "192.169.0.1",
		"100.63.255.255", "100.128.0.1",    "1.1.1.1",	  "2001:db8::1",
		"2a00:1450::1",	  "::ffff:8.8.8.8", "fbff::1",
	};

	for (size_t i = 0; i < ELEMENTSOF(public); i++)
		if (cls(public[i]) != IMG_ADDR_PUBLIC)
			TEST_FAIL("%s should be public", public[i]);
}

static void test_other_family(void)
{
	struct sockaddr sa = {.sa_family = AF_UNIX};

	ASSERT_EQ(img_addr_class(&sa, sizeof(sa)), IMG_ADDR_INTERNAL);
	/* A truncated address is never taken for a public one. */
	{
		struct sockaddr_in in = {.sin_family = AF_INET};
		inet_pton(AF_INET, "8.8.8.8", &in.sin_addr);
		ASSERT_EQ(img_addr_class((struct sockaddr *)&in, 4), IMG_ADDR_INTERNAL);
	}
}

TEST_MAIN(TEST(test_internal), TEST(test_public), TEST(test_other_family))
