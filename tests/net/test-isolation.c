/* SPDX-License-Identifier: MIT */
/*
 * Isolation proven with real packets. Two "VMs" are set up by net_vm_setup; each gets a guest
 * attached exactly where a VMM would be: a process opens the VM's tap0 (as the VMM does) and
 * shuttles frames to a TAP "eth0" in a fresh "guest" namespace that holds the guest's address
 * and default route. A host "ext" in another namespace sits beyond the bridge host (routed).
 */
#include <arpa/inet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "fileio.h"
#include "plumb-fixture.h"
#include "test.h"

static char state_dir[64];

static int tap_open(const char *name)
{
	struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI};
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -1;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Copy frames between two TAP fds until killed. */
static _noreturn_ void shuttle(int a, int b)
{
	static char buf[65536];
	struct pollfd p[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};

	for (;;) {
		if (poll(p, 2, -1) < 0)
			_exit(errno == EINTR ? 0 : 1);
		for (int i = 0; i < 2; i++) {
			ssize_t n;

			if (!(p[i].revents & POLLIN))
				continue;
			n = read(p[i].fd, buf, sizeof(buf));
			if (n > 0)
				(void)!write(p[1 - i].fd, buf, (size_t)n);
		}
	}
}

/* Start the guest of a VM: returns the shuttle's pid once eth0 is configured. */
static pid_t guest_start(const struct net_vm_info *vm, const char *gname)
{
	char ready, path[128], addr[INET6_ADDRSTRLEN], gw[INET6_ADDRSTRLEN];
	int pfd[2];
	pid_t pid;

	ASSERT_EQ(pipe2(pfd, O_CLOEXEC), 0);
	inet_ntop(AF_INET6, &vm->addr, addr, sizeof(addr));
	inet_ntop(AF_INET6, &vm->gateway, gw, sizeof(gw));
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		int ns, vmfd, gfd;

		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		ns = open(vm->netns_path, O_RDONLY | O_CLOEXEC);
		if (ns < 0 || setns(ns, CLONE_NEWNET) < 0)
			_exit(2);
		vmfd = tap_open(vm->tap_name); /* what the VMM opens */
		if (vmfd < 0 || unshare(CLONE_NEWNET) < 0)
			_exit(3);
		snprintf(path, sizeof(path), "/run/netns/%s", gname);
		close(open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0));
		if (mount("/proc/self/ns/net", path, "none", MS_BIND, NULL) < 0)
			_exit(4);
		gfd = tap_open("eth0");
		if (gfd < 0)
			_exit(5);
		if (plumb_sh("ip link set lo up && ip link set eth0 address %s mtu %u up && "
			     "ip -6 addr add %s/%u dev eth0 nodad && "
			     "ip -6 route add default via %s dev eth0",
			     vm->mac, vm->mtu, addr, vm->prefix_len, gw) != 0)
			_exit(6);
		(void)!write(pfd[1], "r", 1);
		shuttle(vmfd, gfd);
	}
	close(pfd[1]);
	if (read(pfd[0], &ready, 1) != 1)
		TEST_FAIL("guest %s did not start", gname);
	close(pfd[0]);
	return pid;
}

/* Packets counted by the rule of vm's chain whose text contains what. */
static long counter(const char *vm, const char *what)
{
	char out[256];

	if (plumb_sh_out(out, sizeof(out),
			 "c=$(nft list table bridge mvmfs | awk '/chain vm_/{c=$2} "
			 "/comment \"mvmfs:%s\"/{print c}'); "
			 "nft list chain bridge mvmfs $c | grep -F -- '%s' | "
			 "sed -E 's/.*packets ([0-9]+).*/\\1/'",
			 vm, what) != 0)
		return -1;
	return strtol(out, NULL, 10);
}

/* A raw ICMPv6 (or DHCPv6 server) packet from inside a guest, via python. */
static int guest_send(const char *g, const char *py)
{
	return plumb_sh("ip netns exec %s python3 -c '"
			"import socket,struct\n"
			"IF=socket.if_nametoindex(\"eth0\")\n"
			"def icmp(pkt, dst):\n"
			"  s=socket.socket(socket.AF_INET6,socket.SOCK_RAW,socket.IPPROTO_ICMPV6)\n"
			"  s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_MULTICAST_HOPS,255)\n"
			"  s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_UNICAST_HOPS,255)\n"
			"  s.sendto(pkt,(dst,0,0,IF))\n"
			"%s'",
			g, py);
}

static void test_isolation(void)
{
	struct net_vm_info a, b;
	struct net_ctx *ctx = NULL;
	struct in6_addr ia, ib;
	struct err err = {0};
	char A[INET6_ADDRSTRLEN], B[INET6_ADDRSTRLEN], out[4096];
	const char *why = plumb_enter_private();
	pid_t ga, gb, listener;
	long c0, c1;

	if (why)
		test_skip(why);
	if (plumb_sh("command -v python3 socat ping >/dev/null") != 0)
		test_skip("needs python3, socat and ping");
	snprintf(state_dir, sizeof(state_dir), "/tmp/netiso-XXXXXX");
	ASSERT_TRUE(mkdtemp(state_dir) != NULL);
	if (plumb_ctx(state_dir, &ctx, &err) < 0 || net_bridge_ensure(ctx, &err) < 0)
		TEST_FAIL("%s", err.msg);
	ASSERT_OK(net_ip_assign(ctx, "vm-a", &ia, &err));
	ASSERT_OK(net_ip_assign(ctx, "vm-b", &ib, &err));
	if (net_vm_setup(ctx, "vm-a", &ia, 0, 0, &a, &err) < 0 ||
	    net_vm_setup(ctx, "vm-b", &ib, 0, 0, &b, &err) < 0)
		TEST_FAIL("%s", err.msg);
	inet_ntop(AF_INET6, &ia, A, sizeof(A));
	inet_ntop(AF_INET6, &ib, B, sizeof(B));
	ga = guest_start(&a, "guest-a");
	gb = guest_start(&b, "guest-b");

	/* A host beyond the gateway, routed. */
	ASSERT_EQ(plumb_sh("ip netns add ext && ip link add exth type veth peer name eth0 netns ext"
			   " && ip addr add fd99::1/64 dev exth nodad && ip link set exth up && "
			   "ip -n ext link set lo up && ip -n ext link set eth0 up && "
			   "ip -n ext addr add fd99::2/64 dev eth0 nodad && "
			   "ip -n ext -6 route add default via fd99::1"),
		  0);

	/* Both reach the gateway and the host beyond it. */
	ASSERT_EQ(plumb_sh("ip netns exec guest-a ping -6 -q -c 1 -w 5 fd42:1::1 >/dev/null"), 0);
	ASSERT_EQ(plumb_sh("ip netns exec guest-b ping -6 -q -c 1 -w 5 fd42:1::1 >/dev/null"), 0);
	ASSERT_EQ(plumb_sh("ip netns exec guest-a ping -6 -q -c 1 -w 5 fd99::2 >/dev/null"), 0);
	ASSERT_EQ(plumb_sh("ip netns exec guest-b ping -6 -q -c 1 -w 5 fd99::2 >/dev/null"), 0);

	/* TCP works from outside (the listener is real) but not between the VMs. */
	ASSERT_EQ(plumb_sh_out(out, sizeof(out),
			       "ip netns exec guest-b socat TCP6-LISTEN:7000,reuseaddr,fork "
			       "SYSTEM:'echo hi' >/dev/null 2>&1 & echo $!; sleep 0.3"),
		  0);
	listener = (pid_t)strtol(out, NULL, 10);
	ASSERT_TRUE(listener > 0);
	ASSERT_EQ(plumb_sh_out(out, sizeof(out),
			       "ip netns exec ext socat -T 3 - TCP6:[%s]:7000,connect-timeout=3 "
			       "</dev/null",
			       B),
		  0);
	ASSERT_STREQ(out, "hi\n");
	ASSERT_NE(plumb_sh("ip netns exec guest-a ping -6 -q -c 1 -w 2 %s >/dev/null", B), 0);
	ASSERT_NE(plumb_sh("ip netns exec guest-b ping -6 -q -c 1 -w 2 %s >/dev/null", A), 0);
	ASSERT_NE(plumb_sh("ip netns exec guest-a socat -T 2 - TCP6:[%s]:7000,connect-timeout=2 "
			   "</dev/null >/dev/null 2>&1",
			   B),
		  0);
	/* Port isolation alone stops them at L2 (without the forward rule, which also sees
	 * bridged frames when br_netfilter is on). */
	ASSERT_EQ(plumb_sh("nft flush chain inet mvmfs noreflect_mvmbr0"), 0);
	ASSERT_NE(plumb_sh("ip netns exec guest-a ping -6 -q -c 1 -w 2 %s >/dev/null", B), 0);
	ASSERT_OK(net_bridge_ensure(ctx, &err));
	/* Not even through the gateway (routed back into the bridge). */
	ASSERT_EQ(plumb_sh("ip netns exec guest-a ip -6 route add %s/128 via fd42:1::1", B), 0);
	ASSERT_NE(plumb_sh("ip netns exec guest-a ping -6 -q -c 1 -w 2 %s >/dev/null", B), 0);
	ASSERT_NE(plumb_sh("ip netns exec guest-a socat -T 2 - TCP6:[%s]:7000,connect-timeout=2 "
			   "</dev/null >/dev/null 2>&1",
			   B),
		  0);
	ASSERT_EQ(plumb_sh("ip netns exec guest-a ip -6 route del %s/128", B), 0);

	/* Forged neighbour advertisement: a claims b's address (override). The host keeps b's
	 * MAC and the guard counts the drop. */
	ASSERT_EQ(plumb_sh("ping -6 -q -c 1 -w 5 %s >/dev/null", B), 0);
	c0 = counter("vm-a", "nd-neighbor-advert");
	ASSERT_TRUE(c0 >= 0);
	{
		char py[512];

		snprintf(py, sizeof(py),
			 "t=socket.inet_pton(socket.AF_INET6,\"%s\")\n"
			 "m=bytes.fromhex(\"%s\".replace(\":\",\"\"))\n"
			 "for i in range(3): icmp(struct.pack(\"!BBHI\",136,0,0,0x20000000)+t+"
			 "bytes([2,1])+m, \"ff02::1\")\n",
			 B, a.mac);
		ASSERT_EQ(guest_send("guest-a", py), 0);
	}
	ASSERT_EQ(plumb_sh_out(out, sizeof(out), "ip -6 neigh show %s dev mvmbr0", B), 0);
	if (strstr(out, a.mac) || !strstr(out, b.mac))
		TEST_FAIL("neighbour entry of b poisoned: %s", out);
	c1 = counter("vm-a", "nd-neighbor-advert");
	ASSERT_TRUE(c1 >= c0 + 3);

	/* Router advertisement and DHCPv6 server traffic from a VM are dropped. */
	c0 = counter("vm-a", "nd-router-advert");
	ASSERT_EQ(guest_send("guest-a", "icmp(struct.pack(\"!BBHBBHII\",134,0,0,64,0,1800,0,0),"
					" \"ff02::1\")\n"),
		  0);
	c1 = counter("vm-a", "nd-router-advert");
	ASSERT_TRUE(c1 >= c0 + 1);
	c0 = counter("vm-a", "udp sport 547");
	ASSERT_EQ(guest_send("guest-a", "u=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n"
					"u.bind((\"::\",547))\n"
					"u.sendto(b\"\\x07\"*8,(\"ff02::1:2\",546,0,IF))\n"),
		  0);
	c1 = counter("vm-a", "udp sport 547");
	ASSERT_TRUE(c1 >= c0 + 1);

	/* A spoofed source address: dropped (and not answered). */
	c0 = counter("vm-a", "ip6 saddr");
	ASSERT_EQ(plumb_sh("ip netns exec guest-a ip -6 addr add fd42:1::dead/128 dev eth0 nodad"),
		  0);
	ASSERT_NE(plumb_sh("ip netns exec guest-a ping -6 -q -c 1 -w 2 -I fd42:1::dead fd42:1::1 "
			   ">/dev/null 2>&1"),
		  0);
	c1 = counter("vm-a", "ip6 saddr");
	ASSERT_TRUE(c1 >= c0 + 1);
	/* A spoofed source MAC: dropped. */
	c0 = counter("vm-a", "ether saddr");
	ASSERT_EQ(plumb_sh("ip netns exec guest-a ip link set eth0 address 02:00:00:00:00:99"), 0);
	ASSERT_NE(plumb_sh("ip netns exec guest-a ping -6 -q -c 1 -w 2 fd42:1::1 >/dev/null"), 0);
	c1 = counter("vm-a", "ether saddr");
	ASSERT_TRUE(c1 >= c0 + 1);
	ASSERT_EQ(plumb_sh("ip netns exec guest-a ip link set eth0 address %s", a.mac), 0);
	/* b is unaffected by all of it. */
	ASSERT_EQ(plumb_sh("ip netns exec guest-b ping -6 -q -c 1 -w 5 fd99::2 >/dev/null"), 0);

	kill(listener, SIGKILL);
	kill(ga, SIGKILL);
	kill(gb, SIGKILL);
	waitpid(ga, NULL, 0);
	waitpid(gb, NULL, 0);
	ASSERT_OK(net_vm_teardown(ctx, "vm-a", NULL));
	ASSERT_OK(net_vm_teardown(ctx, "vm-b", NULL));
	net_ctx_free(ctx);
	(void)rm_rf(state_dir);
}

TEST_MAIN(TEST(test_isolation))
