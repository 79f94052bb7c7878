/* SPDX-License-Identifier: MIT */
/* guest/netmsg.c: the rtnetlink and neighbour-discovery messages of netcfg.c, built without I/O
 * (unit-tested by tests/guest/test-guest-netmsg.c). */
#pragma once

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

struct nlreq {
	struct nlmsghdr nh;
	union {
		struct ifinfomsg ifi;
		struct ifaddrmsg ifa;
		struct rtmsg rt;
	};
	char attrs[256];
};

void netmsg_add_attr(struct nlreq *req, unsigned short type, const void *data, size_t len);
void netmsg_addr_req(struct nlreq *req, int ifindex, const struct in6_addr *addr, unsigned plen);
int netmsg_unsol_na(const struct in6_addr *target, const uint8_t mac[6], uint8_t *buf, size_t size);
