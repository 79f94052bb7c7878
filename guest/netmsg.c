/* SPDX-License-Identifier: MIT */
/* The messages netcfg.c sends, built here without I/O so the unit tests can check them byte by
 * byte: the rtnetlink request that adds eth0's address, and the unsolicited neighbour
 * advertisement that announces it. */
#include "netmsg.h"

#include <errno.h>
#include <netinet/icmp6.h>
#include <string.h>

void netmsg_add_attr(struct nlreq *req, unsigned short type, const void *data, size_t len)
{
	struct rtattr *rta = (struct rtattr *)((char *)req + NLMSG_ALIGN(req->nh.nlmsg_len));

	rta->rta_type = type;
	rta->rta_len = (unsigned short)RTA_LENGTH(len);
	memcpy(RTA_DATA(rta), data, len);
	req->nh.nlmsg_len = NLMSG_ALIGN(req->nh.nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

/* RTM_NEWADDR of addr/plen on ifindex, usable at once: IFA_F_NODAD (the address is unique by
 * construction: the host allocated it), in the header's flags and in IFA_FLAGS. */
void netmsg_addr_req(struct nlreq *req, int ifindex, const struct in6_addr *addr, unsigned plen)
{
	uint32_t flags = IFA_F_NODAD;

	memset(req, 0, sizeof(*req));
	req->nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
	req->nh.nlmsg_type = RTM_NEWADDR;
	req->nh.nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
	req->ifa.ifa_family = AF_INET6;
	req->ifa.ifa_prefixlen = (unsigned char)plen;
	req->ifa.ifa_flags = IFA_F_NODAD;
	req->ifa.ifa_scope = RT_SCOPE_UNIVERSE;
	req->ifa.ifa_index = (unsigned)ifindex;
	netmsg_add_attr(req, IFA_LOCAL, addr, 16);
	netmsg_add_attr(req, IFA_ADDRESS, addr, 16);
	netmsg_add_attr(req, IFA_FLAGS, &flags, sizeof(flags));
}

/* An unsolicited neighbour advertisement of target with our link-layer address mac (RFC 4861
 * 4.4 and 7.2.6: override set, solicited clear, the target link-layer address option), as the
 * ICMPv6 message a raw socket sends (the kernel fills in the checksum). Its length, or -ENOBUFS.
 */
int netmsg_unsol_na(const struct in6_addr *target, const uint8_t mac[6], uint8_t *buf, size_t size)
{
	struct nd_neighbor_advert na = {0};
	struct nd_opt_hdr opt = {.nd_opt_type = ND_OPT_TARGET_LINKADDR, .nd_opt_len = 1};
	size_t n = sizeof(na) + sizeof(opt) + 6;

	if (size < n)
		return -ENOBUFS;
	na.nd_na_type = ND_NEIGHBOR_ADVERT;
	na.nd_na_code = 0;
	na.nd_na_flags_reserved = ND_NA_FLAG_OVERRIDE;
	na.nd_na_target = *target;
	memcpy(buf, &na, sizeof(na));
	memcpy(buf + sizeof(na), &opt, sizeof(opt));
	memcpy(buf + sizeof(na) + sizeof(opt), mac, 6);
	return (int)n;
}
