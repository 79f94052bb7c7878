/* SPDX-License-Identifier: MIT */
/* eth0: no DAD, up, the VM's address, default route via the gateway. Raw NETLINK_ROUTE (libnl
 * has no static build here); every request is acked and checked. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "netmsg.h"

#define add_attr netmsg_add_attr

/* Send one request and wait for its ack. */
static int nl_talk(int fd, struct nlreq *req)
{
	static unsigned seq;
	char buf[4096];
	ssize_t n;

	req->nh.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	req->nh.nlmsg_seq = ++seq;
	if (send(fd, req, req->nh.nlmsg_len, 0) < 0)
		return -errno;
	for (;;) {
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0)
			return -errno;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != seq)
				continue;
			if (h->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *e = NLMSG_DATA(h);

				return e->error;
			}
		}
	}
}

/* An RTM_NEWLINK request for ifindex, its attributes to be added. */
static void link_req(struct nlreq *req, int ifindex)
{
	memset(req, 0, sizeof(*req));
	req->nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
	req->nh.nlmsg_type = RTM_NEWLINK;
	req->ifi.ifi_family = AF_UNSPEC;
	req->ifi.ifi_index = ifindex;
}

static int link_up(int fd, int ifindex, unsigned mtu)
{
	struct nlreq req;

	link_req(&req, ifindex);
	req.ifi.ifi_flags = IFF_UP;
	req.ifi.ifi_change = IFF_UP;
	if (mtu)
		add_attr(&req, IFLA_MTU, &mtu, sizeof(mtu));
	return nl_talk(fd, &req);
}

static int addr_add(int fd, int ifindex, const struct in6_addr *addr, unsigned plen)
{
	struct nlreq req;

	netmsg_addr_req(&req, ifindex, addr, plen);
	return nl_talk(fd, &req);
}

static int route_add(int fd, int ifindex, const struct in6_addr *dst, unsigned dlen,
		     const struct in6_addr *gw)
{
	struct nlreq req;
	uint32_t oif = (uint32_t)ifindex;

	memset(&req, 0, sizeof(req));
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
	req.nh.nlmsg_type = RTM_NEWROUTE;
	req.nh.nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
	req.rt.rtm_family = AF_INET6;
	req.rt.rtm_dst_len = (unsigned char)dlen;
	req.rt.rtm_table = RT_TABLE_MAIN;
	req.rt.rtm_protocol = RTPROT_STATIC;
	req.rt.rtm_scope = RT_SCOPE_UNIVERSE;
	req.rt.rtm_type = RTN_UNICAST;
	if (dlen)
		add_attr(&req, RTA_DST, dst, 16);
	if (gw)
		add_attr(&req, RTA_GATEWAY, gw, 16);
	add_attr(&req, RTA_OIF, &oif, sizeof(oif));
	return nl_talk(fd, &req);
}

static void sysctl_write(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (write(fd, val, strlen(val)) < 0)
		agent_log("%s: %s", path, strerror(errno));
	close(fd);
}

/* "02:00:00:00:00:01" -> 6 bytes; lowercase or uppercase hex, colons only. */
static int parse_mac(const char *text, uint8_t mac[6])
{
	for (int i = 0; i < 6; i++) {
		const char *p = text + 3 * i;
		int v = 0;

		for (int k = 0; k < 2; k++) {
			char c = p[k];

			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= c - '0';
			else if (c >= 'a' && c <= 'f')
				v |= c - 'a' + 10;
			else if (c >= 'A' && c <= 'F')
				v |= c - 'A' + 10;
			else
				return -EINVAL;
		}
		if (p[2] != (i == 5 ? '\0' : ':'))
			return -EINVAL;
		mac[i] = (uint8_t)v;
	}
	return 0;
}

/* The VM's MAC on eth0 while it is down: a guest restored from a template has the template's
 * (the VMM restores the device with it); a cold boot already has it, and this changes nothing. */
static int link_mac(int fd, int ifindex, const uint8_t mac[6])
{
	struct nlreq req;

	link_req(&req, ifindex);
	add_attr(&req, IFLA_ADDRESS, mac, 6);
	return nl_talk(fd, &req);
}

/* Announce the address with an unsolicited neighbour advertisement to all nodes: a host that
 * tried to reach the VM before it was up (its neighbour entry incomplete, the first packets
 * queued) learns the MAC at once instead of at its next solicitation, up to a second later,
 * and the bridges learn the MAC's port. The kernel sends none for a NODAD address. */
static void announce(int ifindex, const struct in6_addr *addr, const uint8_t mac[6])
{
	struct sockaddr_in6 src = {.sin6_family = AF_INET6, .sin6_addr = *addr};
	struct sockaddr_in6 dst = {.sin6_family = AF_INET6, .sin6_scope_id = (uint32_t)ifindex};
	uint8_t buf[64];
	int hops = 255, n, fd;

	n = netmsg_unsol_na(addr, mac, buf, sizeof(buf));
	inet_pton(AF_INET6, "ff02::1", &dst.sin6_addr);
	fd = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6);
	if (fd < 0 || n < 0 || bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
	    setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof(hops)) < 0 ||
	    setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof(ifindex)) < 0 ||
	    sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&dst, sizeof(dst)) != n)
		agent_log("eth0: unsolicited neighbour advertisement: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
}

void net_announce(const struct guest_vm *vm)
{
	uint8_t mac[6];
	int eth = (int)if_nametoindex("eth0");

	if (eth > 0 && vm->have_addr && vm->mac[0] && parse_mac(vm->mac, mac) == 0)
		announce(eth, &vm->addr, mac);
}

int net_configure(const struct guest_vm *vm)
{
	uint8_t mac[6] = {0};
	int fd, lo, eth, r;

	if (wait_for_path("/sys/class/net/eth0", 5000) < 0) {
		agent_log("no eth0 after 5 s");
		return -ENODEV;
	}
	/* No DAD delay, and no router advertisements deciding our addresses or routes. */
	sysctl_write("/proc/sys/net/ipv6/conf/eth0/accept_dad", "0");
	sysctl_write("/proc/sys/net/ipv6/conf/eth0/accept_ra", "0");
	sysctl_write("/proc/sys/net/ipv6/conf/eth0/autoconf", "0");
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	lo = (int)if_nametoindex("lo");
	eth = (int)if_nametoindex("eth0");
	if (lo > 0)
		(void)link_up(fd, lo, 0);
	if (eth > 0 && vm->mac[0]) {
		r = parse_mac(vm->mac, mac);
		if (r >= 0)
			r = link_mac(fd, eth, mac);
		if (r < 0) {
			agent_log("eth0 MAC %s: %s", vm->mac, strerror(-r));
			goto out;
		}
	}
	r = eth > 0 ? link_up(fd, eth, vm->mtu) : -ENODEV;
	if (r < 0) {
		agent_log("eth0 up: %s", strerror(-r));
		goto out;
	}
	if (vm->have_addr) {
		r = addr_add(fd, eth, &vm->addr, vm->prefix_len);
		if (r < 0) {
			agent_log("eth0 address: %s", strerror(-r));
			goto out;
		}
		if (vm->mac[0])
			announce(eth, &vm->addr, mac);
	}
	if (vm->have_gateway) {
		/* An address outside the node prefix is a /128: reach the gateway on-link. */
		if (vm->prefix_len == 128)
			(void)route_add(fd, eth, &vm->gateway, 128, NULL);
		r = route_add(fd, eth, &in6addr_any, 0, &vm->gateway);
		if (r < 0)
			agent_log("default route: %s", strerror(-r));
	}
out:
	close(fd);
	return r;
}
