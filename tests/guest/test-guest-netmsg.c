/* SPDX-License-Identifier: MIT */
/* The agent's network messages (guest/netmsg.c): eth0's address is added with IFA_F_NODAD (in
 * the header and in IFA_FLAGS: usable at once, no DAD delay), and the unsolicited neighbour
 * advertisement that announces it is what RFC 4861 7.2.6 asks for. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/icmp6.h>
#include <stdbool.h>
#include <string.h>

#include "netmsg.h"
#include "test.h"

static void test_addr_nodad(void)
{
	struct in6_addr a;
	struct nlreq req;
	bool local = false, address = false, flags = false;
	int len;

	ASSERT_EQ(inet_pton(AF_INET6, "fd42:7e6::10", &a), 1);
	netmsg_addr_req(&req, 7, &a, 64);
	ASSERT_EQ(req.nh.nlmsg_type, RTM_NEWADDR);
	ASSERT_TRUE(req.nh.nlmsg_flags & NLM_F_CREATE);
	ASSERT_EQ(req.ifa.ifa_family, AF_INET6);
	ASSERT_EQ(req.ifa.ifa_prefixlen, 64);
	ASSERT_EQ(req.ifa.ifa_index, 7u);
	ASSERT_TRUE(req.ifa.ifa_flags & IFA_F_NODAD);
	ASSERT_TRUE(req.nh.nlmsg_len <= sizeof(req));
	len = (int)(req.nh.nlmsg_len - NLMSG_LENGTH(sizeof(struct ifaddrmsg)));
	for (struct rtattr *rta = IFA_RTA(&req.ifa); RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
		if (rta->rta_type == IFA_LOCAL || rta->rta_type == IFA_ADDRESS) {
			ASSERT_EQ(RTA_PAYLOAD(rta), 16u);
			ASSERT_TRUE(memcmp(RTA_DATA(rta), &a, 16) == 0);
			*(rta->rta_type == IFA_LOCAL ? &local : &address) = true;
		} else if (rta->rta_type == IFA_FLAGS) {
			uint32_t f;

			ASSERT_EQ(RTA_PAYLOAD(rta), sizeof(f));
			memcpy(&f, RTA_DATA(rta), sizeof(f));
			ASSERT_TRUE(f & IFA_F_NODAD);
			ASSERT_FALSE(f & IFA_F_OPTIMISTIC);
			flags = true;
		}
	}
	ASSERT_EQ(len, 0);
	ASSERT_TRUE(local && address && flags);
}

static void test_unsolicited_na(void)
{
	static const uint8_t mac[6] = {0x02, 0x98, 0x72, 0x2c, 0xba, 0x4e};
	struct nd_neighbor_advert na;
	struct in6_addr a;
	uint8_t buf[64];
	int n;

	ASSERT_EQ(inet_pton(AF_INET6, "fd42:7e6::10", &a), 1);
	ASSERT_EQ(netmsg_unsol_na(&a, mac, buf, 10), -ENOBUFS);
	n = netmsg_unsol_na(&a, mac, buf, sizeof(buf));
	ASSERT_EQ(n, 32); /* 24 bytes of advertisement, one 8-byte option */
	memcpy(&na, buf, sizeof(na));
	ASSERT_EQ(na.nd_na_type, ND_NEIGHBOR_ADVERT);
	ASSERT_EQ(na.nd_na_code, 0);
	/* Override set (it replaces a stale entry), solicited and router clear. */
	ASSERT_EQ(ntohl(na.nd_na_flags_reserved), 0x20000000u);
	ASSERT_TRUE(memcmp(&na.nd_na_target, &a, 16) == 0);
	ASSERT_EQ(buf[24], ND_OPT_TARGET_LINKADDR);
	ASSERT_EQ(buf[25], 1); /* in units of 8 bytes */
	ASSERT_TRUE(memcmp(buf + 26, mac, 6) == 0);
}

TEST_MAIN(TEST(test_addr_nodad), TEST(test_unsolicited_na))
