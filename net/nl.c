/* SPDX-License-Identifier: MIT */
/*
 * net: libnl-3 / libnl-route-3 wrappers. The only place that sees -NLE_* codes: everything
 * leaves as -errno. Attributes libnl 3.7 has no setter for (bridge options, IFLA_BRPORT_ISOLATED)
 * are put with nla_put into raw messages.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "plumbing.h"

#ifndef IFF_LOWER_UP
#define IFF_LOWER_UP 0x10000 /* <linux/if.h>, which clashes with <net/if.h> */
#endif

DEFINE_CLEANUP_FUNC(struct nl_sock, nl_socket_free)
DEFINE_CLEANUP_FUNC(struct nl_msg, nlmsg_free)
DEFINE_CLEANUP_FUNC(struct rtnl_link, rtnl_link_put)
DEFINE_CLEANUP_FUNC(struct rtnl_addr, rtnl_addr_put)
DEFINE_CLEANUP_FUNC(struct rtnl_route, rtnl_route_put)
DEFINE_CLEANUP_FUNC(struct nl_addr, nl_addr_put)
DEFINE_CLEANUP_FUNC(struct nl_cache, nl_cache_free)

int nl_to_errno(int nle)
{
	static const struct {
		int nle, e;
	} map[] = {
		{NLE_INTR, EINTR},
		{NLE_BAD_SOCK, EBADF},
		{NLE_AGAIN, EAGAIN},
		{NLE_NOMEM, ENOMEM},
		{NLE_EXIST, EEXIST},
		{NLE_INVAL, EINVAL},
		{NLE_RANGE, ERANGE},
		{NLE_MSGSIZE, EMSGSIZE},
		{NLE_OPNOTSUPP, EOPNOTSUPP},
		{NLE_AF_NOSUPPORT, EAFNOSUPPORT},
		{NLE_OBJ_NOTFOUND, ENOENT},
		{NLE_NOATTR, ENOENT},
		{NLE_MISSING_ATTR, EINVAL},
		{NLE_AF_MISMATCH, EAFNOSUPPORT},
		{NLE_SEQ_MISMATCH, EPROTO},
		{NLE_MSG_OVERFLOW, EOVERFLOW},
		{NLE_MSG_TRUNC, EMSGSIZE},
		{NLE_NOADDR, EADDRNOTAVAIL},
		{NLE_SRCRT_NOSUPPORT, EOPNOTSUPP},
		{NLE_MSG_TOOSHORT, EPROTO},
		{NLE_MSGTYPE_NOSUPPORT, EOPNOTSUPP},
		{NLE_OBJ_MISMATCH, EINVAL},
		{NLE_NOCACHE, ENOENT},
		{NLE_BUSY, EBUSY},
		{NLE_PROTO_MISMATCH, EPROTONOSUPPORT},
		{NLE_NOACCESS, EACCES},
		{NLE_PERM, EPERM},
		{NLE_PKTLOC_FILE, ENOENT},
		{NLE_PARSE_ERR, EINVAL},
		{NLE_NODEV, ENODEV},
		{NLE_IMMUTABLE, EPERM},
		{NLE_DUMP_INTR, EINTR},
		{NLE_ATTRSIZE, EINVAL},
	};

	if (nle >= 0)
		return nle;
	for (size_t i = 0; i < ELEMENTSOF(map); i++)
		if (map[i].nle == -nle)
			return -map[i].e;
	return -EIO;
}

int nlw_open(struct nl_sock **ret)
{
	_cleanup_(nl_socket_freep) struct nl_sock *sk = nl_socket_alloc();
	int r;

	if (!sk)
		return -ENOMEM;
	r = nl_connect(sk, NETLINK_ROUTE);
	if (r < 0)
		return nl_to_errno(r);
	/* The fd must not leak into VMM children. */
	if (fcntl(nl_socket_get_fd(sk), F_SETFD, FD_CLOEXEC) < 0)
		return negative_errno();
	*ret = TAKE_PTR(sk);
	return 0;
}

void nlw_close(struct nl_sock *sk)
{
	if (sk)
		nl_socket_free(sk);
}

/* Send msg and wait for the kernel's ack. */
static int send_ack(struct nl_sock *sk, struct nl_msg *msg)
{
	int r = nl_send_auto(sk, msg);

	if (r < 0)
		return nl_to_errno(r);
	return nl_to_errno(nl_wait_for_ack(sk));
}

static int link_get(struct nl_sock *sk, const char *name, struct rtnl_link **ret)
{
	int r = rtnl_link_get_kernel(sk, 0, name, ret);

	r = nl_to_errno(r);
	return r == -ENOENT ? -ENODEV : r;
}

int nlw_ifindex(struct nl_sock *sk, const char *name)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *l = NULL;
	int r = link_get(sk, name, &l);

	return r < 0 ? r : rtnl_link_get_ifindex(l);
}

int nlw_link_get(struct nl_sock *sk, const char *name, struct nlw_link_info *ret)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *l = NULL;
	const char *s;
	int r = link_get(sk, name, &l);

	if (r < 0)
		return r;
	memset(ret, 0, sizeof(*ret));
	ret->ifindex = rtnl_link_get_ifindex(l);
	ret->master = rtnl_link_get_master(l);
	ret->up = rtnl_link_get_flags(l) & IFF_UP;
	ret->lower_up = rtnl_link_get_flags(l) & IFF_LOWER_UP;
	s = rtnl_link_get_type(l);
	if (s)
		snprintf(ret->kind, sizeof(ret->kind), "%s", s);
	s = rtnl_link_get_ifalias(l);
	if (s)
		snprintf(ret->alias, sizeof(ret->alias), "%s", s);
	return 0;
}

int nlw_link_del(struct nl_sock *sk, const char *name)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *l = rtnl_link_alloc();
	int r;

	if (!l)
		return -ENOMEM;
	rtnl_link_set_name(l, name);
	r = nl_to_errno(rtnl_link_delete(sk, l));
	return r == -ENOENT ? -ENODEV : r;
}

int nlw_bridge_add(struct nl_sock *sk, const char *name, const uint8_t *mac, unsigned mtu, bool up)
{
	_cleanup_(nlmsg_freep) struct nl_msg *msg = NULL;
	struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
	struct nlattr *info, *data;

	if (up) {
		ifi.ifi_flags = IFF_UP;
		ifi.ifi_change = IFF_UP;
	}
	msg = nlmsg_alloc_simple(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
	if (!msg)
		return -ENOMEM;
	if (nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0 ||
	    nla_put_string(msg, IFLA_IFNAME, name) < 0 ||
	    (mtu && nla_put_u32(msg, IFLA_MTU, mtu) < 0) ||
	    (mac && nla_put(msg, IFLA_ADDRESS, 6, mac) < 0))
		return -EMSGSIZE;
	info = nla_nest_start(msg, IFLA_LINKINFO);
	if (!info || nla_put_string(msg, IFLA_INFO_KIND, "bridge") < 0)
		return -EMSGSIZE;
	data = nla_nest_start(msg, IFLA_INFO_DATA);
	/* No 15 s listening/learning delay, no STP; flood multicast (ND) to every port. */
	if (!data || nla_put_u32(msg, IFLA_BR_FORWARD_DELAY, 0) < 0 ||
	    nla_put_u32(msg, IFLA_BR_STP_STATE, 0) < 0 ||
	    nla_put_u8(msg, IFLA_BR_MCAST_SNOOPING, 0) < 0)
		return -EMSGSIZE;
	nla_nest_end(msg, data);
	nla_nest_end(msg, info);
	return send_ack(sk, msg);
}

int nlw_link_modify(struct nl_sock *sk, const char *name, const struct nlw_change *c)
{
	_cleanup_(nlmsg_freep) struct nl_msg *msg = NULL;
	struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
	struct nlattr *nest, *inner;

	/* One RTM_NEWLINK addressed by name: no lookup round trip, and no sysctl (whose handler
	 * spins on rtnl_trylock while other namespaces are being set up or destroyed). */
	if (c->up) {
		ifi.ifi_flags = IFF_UP;
		ifi.ifi_change = IFF_UP;
	}
	msg = nlmsg_alloc_simple(RTM_NEWLINK, 0);
	if (!msg)
		return -ENOMEM;
	if (nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0 ||
	    nla_put_string(msg, IFLA_IFNAME, name) < 0 ||
	    (c->master > 0 && nla_put_u32(msg, IFLA_MASTER, (uint32_t)c->master) < 0) ||
	    (c->mtu && nla_put_u32(msg, IFLA_MTU, c->mtu) < 0) ||
	    (c->alias && nla_put_string(msg, IFLA_IFALIAS, c->alias) < 0))
		return -EMSGSIZE;
	if (c->no_ipv6_addrs) {
		/* No link-local address, hence no DAD, RS or MLD from a link that only carries
		 * the guest's frames. Applied after the flags: send it while the link is down. */
		nest = nla_nest_start(msg, IFLA_AF_SPEC);
		inner = nest ? nla_nest_start(msg, AF_INET6) : NULL;
		if (!inner || nla_put_u8(msg, IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE) < 0)
			return -EMSGSIZE;
		nla_nest_end(msg, inner);
		nla_nest_end(msg, nest);
	}
	if (c->isolated >= 0 || c->port_state >= 0) {
		/* "ip link set X type bridge_slave isolated on": the bridge's slave_changelink
		 * (libnl 3.7 has no setter for IFLA_BRPORT_ISOLATED). */
		nest = nla_nest_start(msg, IFLA_LINKINFO);
		if (!nest || nla_put_string(msg, IFLA_INFO_SLAVE_KIND, "bridge") < 0)
			return -EMSGSIZE;
		inner = nla_nest_start(msg, IFLA_INFO_SLAVE_DATA);
		if (!inner ||
		    (c->isolated >= 0 &&
		     nla_put_u8(msg, IFLA_BRPORT_ISOLATED, (uint8_t) !!c->isolated) < 0) ||
		    (c->port_state >= 0 &&
		     nla_put_u8(msg, IFLA_BRPORT_STATE, (uint8_t)c->port_state) < 0))
			return -EMSGSIZE;
		nla_nest_end(msg, inner);
		nla_nest_end(msg, nest);
	}
	return send_ack(sk, msg);
}

int nlw_veth_add(struct nl_sock *sk, const char *name, const char *peer_name, int ns_fd,
		 unsigned mtu)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *l = rtnl_link_veth_alloc();
	struct rtnl_link *peer;

	if (!l)
		return -ENOMEM;
	peer = rtnl_link_veth_get_peer(l);
	rtnl_link_set_name(l, name);
	rtnl_link_set_name(peer, peer_name);
	if (mtu) {
		rtnl_link_set_mtu(l, mtu);
		rtnl_link_set_mtu(peer, mtu);
	}
	rtnl_link_set_ns_fd(peer, ns_fd);
	rtnl_link_put(peer);
	return nl_to_errno(rtnl_link_add(sk, l, NLM_F_CREATE | NLM_F_EXCL));
}

static int addr6_new(const struct in6_addr *a, unsigned len, struct nl_addr **ret)
{
	struct nl_addr *na = nl_addr_build(AF_INET6, a, sizeof(*a));

	if (!na)
		return -ENOMEM;
	nl_addr_set_prefixlen(na, (int)len);
	*ret = na;
	return 0;
}

int nlw_addr6_add(struct nl_sock *sk, int ifindex, const struct in6_addr *addr, unsigned len)
{
	_cleanup_(rtnl_addr_putp) struct rtnl_addr *ra = rtnl_addr_alloc();
	_cleanup_(nl_addr_putp) struct nl_addr *local = NULL;
	int r;

	if (!ra)
		return -ENOMEM;
	r = addr6_new(addr, len, &local);
	if (r < 0)
		return r;
	rtnl_addr_set_ifindex(ra, ifindex);
	rtnl_addr_set_family(ra, AF_INET6);
	r = rtnl_addr_set_local(ra, local);
	if (r < 0)
		return nl_to_errno(r);
	rtnl_addr_set_flags(ra, IFA_F_NODAD);
	r = nl_to_errno(rtnl_addr_add(sk, ra, NLM_F_REPLACE));
	return r == -EEXIST ? 0 : r;
}

static int route6_build(int ifindex, const struct in6_addr *dst, unsigned len,
			struct rtnl_route **ret)
{
	_cleanup_(rtnl_route_putp) struct rtnl_route *rt = rtnl_route_alloc();
	_cleanup_(nl_addr_putp) struct nl_addr *d = NULL;
	struct rtnl_nexthop *nh;
	int r;

	if (!rt)
		return -ENOMEM;
	r = addr6_new(dst, len, &d);
	if (r < 0)
		return r;
	rtnl_route_set_family(rt, AF_INET6);
	rtnl_route_set_table(rt, RT_TABLE_MAIN);
	rtnl_route_set_scope(rt, RT_SCOPE_UNIVERSE);
	rtnl_route_set_protocol(rt, NET_RTPROT); /* our mark, for net_reap */
	r = rtnl_route_set_dst(rt, d);
	if (r < 0)
		return nl_to_errno(r);
	nh = rtnl_route_nh_alloc();
	if (!nh)
		return -ENOMEM;
	rtnl_route_nh_set_ifindex(nh, ifindex);
	rtnl_route_add_nexthop(rt, nh);
	*ret = TAKE_PTR(rt);
	return 0;
}

int nlw_route6_add(struct nl_sock *sk, int ifindex, const struct in6_addr *dst, unsigned len)
{
	_cleanup_(rtnl_route_putp) struct rtnl_route *rt = NULL;
	int r = route6_build(ifindex, dst, len, &rt);

	if (r < 0)
		return r;
	r = nl_to_errno(rtnl_route_add(sk, rt, NLM_F_REPLACE));
	return r == -EEXIST ? 0 : r;
}

int nlw_route6_del(struct nl_sock *sk, int ifindex, const struct in6_addr *dst, unsigned len)
{
	_cleanup_(rtnl_route_putp) struct rtnl_route *rt = NULL;
	int r = route6_build(ifindex, dst, len, &rt);

	if (r < 0)
		return r;
	r = nl_to_errno(rtnl_route_delete(sk, rt, 0));
	return r == -ENOENT || r == -ESRCH || r == -ENODEV ? 0 : r;
}

int nlw_neigh6_del(struct nl_sock *sk, int ifindex, const struct in6_addr *dst)
{
	struct rtnl_neigh *n = rtnl_neigh_alloc();
	struct nl_addr *a = nl_addr_build(AF_INET6, dst, sizeof(*dst));
	int r = -ENOMEM;

	if (n && a) {
		rtnl_neigh_set_ifindex(n, ifindex);
		rtnl_neigh_set_family(n, AF_INET6);
		r = rtnl_neigh_set_dst(n, a) < 0 ? -EINVAL
						 : nl_to_errno(rtnl_neigh_delete(sk, n, 0));
	}
	nl_addr_put(a);
	rtnl_neigh_put(n);
	return r == -ENOENT || r == -ESRCH || r == -ENODEV ? 0 : r;
}

int nlw_neigh_del_lladdr(struct nl_sock *sk, int ifindex, const uint8_t mac[6])
{
	_cleanup_(nl_cache_freep) struct nl_cache *cache = NULL;
	int r, first = 0;

	r = nl_to_errno(rtnl_neigh_alloc_cache(sk, &cache));
	if (r < 0)
		return r;
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_neigh *n = (struct rtnl_neigh *)o;
		struct nl_addr *ll = rtnl_neigh_get_lladdr(n);

		if (rtnl_neigh_get_ifindex(n) != ifindex || !ll || nl_addr_get_len(ll) != 6 ||
		    memcmp(nl_addr_get_binary_addr(ll), mac, 6) != 0)
			continue;
		r = nl_to_errno(rtnl_neigh_delete(sk, n, 0));
		if (r < 0 && r != -ENOENT && r != -ESRCH && !first)
			first = r;
	}
	return first;
}

int nlw_route6_foreach(struct nl_sock *sk, int ifindex,
		       int (*cb)(const struct in6_addr *dst, void *ud), void *ud)
{
	_cleanup_(nl_cache_freep) struct nl_cache *cache = NULL;
	int r, n = 0;

	r = nl_to_errno(rtnl_route_alloc_cache(sk, AF_INET6, 0, &cache));
	if (r < 0)
		return r;
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_route *rt = (struct rtnl_route *)o;
		struct nl_addr *dst = rtnl_route_get_dst(rt);
		struct rtnl_nexthop *nh;
		struct in6_addr a;

		if (rtnl_route_get_protocol(rt) != NET_RTPROT || !dst ||
		    nl_addr_get_prefixlen(dst) != 128 || nl_addr_get_len(dst) != sizeof(a) ||
		    rtnl_route_get_nnexthops(rt) != 1)
			continue;
		nh = rtnl_route_nexthop_n(rt, 0);
		if (!nh || rtnl_route_nh_get_ifindex(nh) != ifindex)
			continue;
		memcpy(&a, nl_addr_get_binary_addr(dst), sizeof(a));
		r = cb(&a, ud);
		if (r < 0)
			return r;
		n += r;
	}
	return n;
}

int nlw_link_foreach(struct nl_sock *sk, int (*cb)(const char *name, const char *alias, void *ud),
		     void *ud)
{
	_cleanup_(nl_cache_freep) struct nl_cache *cache = NULL;
	int r, n = 0;

	r = nl_to_errno(rtnl_link_alloc_cache(sk, AF_UNSPEC, &cache));
	if (r < 0)
		return r;
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_link *l = (struct rtnl_link *)o;
		const char *name = rtnl_link_get_name(l);

		if (!name)
			continue;
		r = cb(name, rtnl_link_get_ifalias(l), ud);
		if (r < 0)
			return r;
		n += r;
	}
	return n;
}

int net_sysctl(const char *path, const char *value)
{
	return write_string_file(path, value);
}
