/* SPDX-License-Identifier: MIT */
/*
 * Host plumbing against the real kernel: namespaces, bridges, veths, TAPs, nftables. Every case
 * runs in its own private network + mount namespace (plumb-fixture.h).
 */
#include <arpa/inet.h>
#include <grp.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <signal.h>
#include <sys/ioctl.h>

#include "fileio.h"
#include "plumb-fixture.h"
#include "plumbing.h"
#include "test.h"

static char state_dir[64];

static struct net_ctx *setup_ctx(void)
{
	struct net_ctx *ctx = NULL;
	struct err err = {0};
	const char *why = plumb_enter_private();
	int r;

	if (why)
		test_skip(why);
	snprintf(state_dir, sizeof(state_dir), "/tmp/netplumb-XXXXXX");
	ASSERT_TRUE(mkdtemp(state_dir) != NULL);
	r = plumb_ctx(state_dir, &ctx, &err);
	if (r < 0)
		TEST_FAIL("net_ctx_new: %s", err.msg);
	r = net_bridge_ensure(ctx, &err);
	if (r < 0)
		TEST_FAIL("net_bridge_ensure: %s", err.msg);
	return ctx;
}

static void vm_up(struct net_ctx *ctx, const char *name, uid_t uid, gid_t gid,
		  struct net_vm_info *info)
{
	struct in6_addr a;
	struct err err = {0};
	int r;

	r = net_ip_assign(ctx, name, &a, &err);
	if (r < 0)
		TEST_FAIL("net_ip_assign(%s): %s", name, err.msg);
	r = net_vm_setup(ctx, name, &a, uid, gid, info, &err);
	if (r < 0)
		TEST_FAIL("net_vm_setup(%s): %s", name, err.msg);
}

/* Nothing of ours left in this namespace (links, netns, nft chains, map elements). */
static void assert_clean(void)
{
	char out[16384];

	ASSERT_EQ(plumb_sh_out(out, sizeof(out), "ls /run/netns"), 0);
	if (strstr(out, "mvmfs-"))
		TEST_FAIL("netns left: %s", out);
	/* The kernel removes the links of a dead namespace in its cleanup worker. */
	ASSERT_EQ(plumb_sh("for i in $(seq 50); do ip -d -o link show | "
			   "grep -qE ': mv[0-9a-f]{10}[:@]|alias mvmfs:[^b]' || exit 0; sleep 0.1; "
			   "done; exit 1"),
		  0);
	ASSERT_EQ(plumb_sh_out(out, sizeof(out), "nft list table bridge mvmfs"), 0);
	if (strstr(out, "vm_") || strstr(out, "\"mv"))
		TEST_FAIL("nft left: %s", out);
	ASSERT_EQ(plumb_sh_out(out, sizeof(out), "ip -6 route show"), 0);
	if (strstr(out, "fd77::"))
		TEST_FAIL("route left: %s", out);
}

/* Attach to the VM's TAP as uid:gid (the jailed VMM's view). 0 or -errno. */
static int tap_attach_as(const char *netns_path, uid_t uid, gid_t gid)
{
	pid_t pid = fork();
	int st;

	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR};
		int ns = open(netns_path, O_RDONLY | O_CLOEXEC), fd;

		if (ns < 0 || setns(ns, CLONE_NEWNET) < 0)
			_exit(100);
		/* The jailer gives the VMM its own /dev/net/tun node; here: open, then drop. */
		fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
		if (fd < 0)
			_exit(102);
		if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 ||
		    setresuid(uid, uid, uid) < 0)
			_exit(101);
		strcpy(ifr.ifr_name, "tap0");
		_exit(ioctl(fd, TUNSETIFF, &ifr) < 0 ? errno : 0);
	}
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT_TRUE(WIFEXITED(st));
	return -WEXITSTATUS(st);
}

static void test_setup_teardown(void)
{
	struct net_ctx *ctx = setup_ctx();
	struct net_vm_info info;
	struct net_vm_status st;
	char out[8192], gw[INET6_ADDRSTRLEN];

	char mac0[64], mac1[64];

	/* The gateway's MAC must not follow the ports (guests cache it). */
	ASSERT_EQ(plumb_sh_out(mac0, sizeof(mac0), "cat /sys/class/net/mvmbr0/address"), 0);
	ASSERT_TRUE(strncmp(mac0, "02:", 3) == 0);
	vm_up(ctx, "vm-a", 4321, 8765, &info);
	ASSERT_EQ(plumb_sh_out(mac1, sizeof(mac1), "cat /sys/class/net/mvmbr0/address"), 0);
	ASSERT_STREQ(mac0, mac1);
	ASSERT_STREQ(info.netns_path, "/run/netns/mvmfs-vm-a");
	ASSERT_STREQ(info.tap_name, "tap0");
	ASSERT_EQ(info.mtu, 1500);
	ASSERT_EQ(info.prefix_len, 64);
	ASSERT_STREQ(inet_ntop(AF_INET6, &info.gateway, gw, sizeof(gw)), "fd42:1::1");
	ASSERT_TRUE(strncmp(info.mac, "02:", 3) == 0 && strlen(info.mac) == 17);

	/* Host bridge: up, gateway address, prefix route, forwarding. */
	ASSERT_EQ(plumb_sh_out(out, sizeof(out), "ip -d link show mvmbr0"), 0);
	ASSERT_TRUE(strstr(out, "state UP") || strstr(out, ",UP"));
	ASSERT_TRUE(strstr(out, "forward_delay 0") && strstr(out, "stp_state 0"));
	ASSERT_EQ(plumb_sh("ip -6 addr show dev mvmbr0 | grep -q 'fd42:1::1/64'"), 0);
	ASSERT_EQ(plumb_sh("ip -6 route show fd42:1::/64 | grep -q mvmbr0"), 0);
	ASSERT_EQ(plumb_sh("grep -qx 1 /proc/sys/net/ipv6/conf/all/forwarding"), 0);

	/* Host veth: isolated port of the bridge, marked. */
	ASSERT_EQ(plumb_sh_out(out, sizeof(out), "ip -d -o link show master mvmbr0"), 0);
	ASSERT_TRUE(strstr(out, "isolated on") != NULL);
	ASSERT_TRUE(strstr(out, "alias mvmfs:vm-a") != NULL);
	/* No IPv6 of ours on the links that only carry the guest's frames. */
	{
		struct net_names n;

		ASSERT_OK(net_names_derive(NULL, "vm-a", &n));
		ASSERT_EQ(plumb_sh_out(out, sizeof(out), "ip -6 -o addr show dev %s", n.host_veth),
			  0);
		ASSERT_STREQ(out, "");
		ASSERT_EQ(plumb_sh_out(out, sizeof(out), "ip -n mvmfs-vm-a -6 -o addr show"), 0);
		ASSERT_STREQ(out, "");
	}

	/* Inside the namespace: tap0 owned by the VM, bridged with the veth peer, MTU. */
	ASSERT_EQ(plumb_sh("ip netns exec mvmfs-vm-a sh -c 'test $(cat /sys/class/net/tap0/owner) "
			   "= 4321 && test $(cat /sys/class/net/tap0/group) = 8765'"),
		  0);
	ASSERT_EQ(plumb_sh_out(out, sizeof(out), "ip -n mvmfs-vm-a -o link show master br0"), 0);
	ASSERT_TRUE(strstr(out, "tap0") && strstr(out, "uplink0") && strstr(out, "mtu 1500"));
	ASSERT_EQ(tap_attach_as(info.netns_path, 4321, 8765), 0);
	ASSERT_EQ(tap_attach_as(info.netns_path, 4322, 8766), -EPERM);

	/* Guards: the chain exists and the port jumps to it. */
	ASSERT_EQ(plumb_sh_out(out, sizeof(out), "nft list table bridge mvmfs"), 0);
	ASSERT_TRUE(strstr(out, "comment \"mvmfs:vm-a\"") && strstr(out, ": jump vm_"));
	ASSERT_TRUE(strstr(out, info.mac) != NULL);

	ASSERT_OK(net_vm_status(ctx, "vm-a", &st));
	ASSERT_TRUE(st.netns_present && st.tap_up && st.veth_up && st.bridge_up);

	ASSERT_OK(net_vm_teardown(ctx, "vm-a", NULL));
	assert_clean();
	ASSERT_OK(net_vm_status(ctx, "vm-a", &st));
	ASSERT_FALSE(st.netns_present || st.tap_up || st.veth_up);
	net_ctx_free(ctx);
	(void)rm_rf(state_dir);
}

/* The host's neighbour entry of a VM from an earlier run goes at teardown (by the VM's MAC) and
 * at setup (by its address): a start begins with none, so the host queues its first packets
 * until the guest announces itself instead of sending them to a VM that is not up yet. */
static void test_neighbour_reset(void)
{
	struct net_ctx *ctx = setup_ctx();
	struct net_vm_info info;
	char a[INET6_ADDRSTRLEN], out[4096];

	vm_up(ctx, "vm-n", 4321, 8765, &info);
	inet_ntop(AF_INET6, &info.addr, a, sizeof(a));
	/* As the host leaves it after talking to the VM; another host's entry stays. */
	ASSERT_EQ(plumb_sh("ip -6 neigh replace %s lladdr %s dev mvmbr0 nud stale && "
			   "ip -6 neigh replace fd42:1::99 lladdr 02:00:00:00:00:99 dev mvmbr0 "
			   "nud stale",
			   a, info.mac),
		  0);
	ASSERT_EQ(plumb_sh_out(out, sizeof(out), "ip -6 neigh show dev mvmbr0"), 0);
	ASSERT_TRUE(strstr(out, a) != NULL);
	ASSERT_OK(net_vm_teardown(ctx, "vm-n", NULL));
	ASSERT_EQ(plumb_sh_out(out, sizeof(out), "ip -6 neigh show dev mvmbr0"), 0);
	if (strstr(out, info.mac) || !strstr(out, "fd42:1::99"))
		TEST_FAIL("after teardown: %s", out);
	/* An entry made while the VM was down (a client that tried) goes at setup. */
	ASSERT_EQ(
		plumb_sh("ip -6 neigh replace %s lladdr 02:00:00:00:00:42 dev mvmbr0 nud stale", a),
		0);
	vm_up(ctx, "vm-n", 4321, 8765, &info);
	ASSERT_EQ(plumb_sh_out(out, sizeof(out), "ip -6 neigh show dev mvmbr0"), 0);
	if (strstr(out, "02:00:00:00:00:42") || !strstr(out, "fd42:1::99"))
		TEST_FAIL("after setup: %s", out);
	ASSERT_OK(net_vm_teardown(ctx, "vm-n", NULL));
	assert_clean();
	net_ctx_free(ctx);
	(void)rm_rf(state_dir);
}

static void test_idempotent(void)
{
	struct net_ctx *ctx = setup_ctx();
	struct net_vm_info i1, i2;
	struct in6_addr out6;
	struct err err = {0};
	char out[8192];

	ASSERT_OK(net_bridge_ensure(ctx, &err));
	vm_up(ctx, "vm-a", 1000, 1000, &i1);
	vm_up(ctx, "vm-a", 1000, 1000, &i2);
	ASSERT_EQ(memcmp(&i1, &i2, sizeof(i1)), 0);
	ASSERT_EQ(plumb_sh_out(out, sizeof(out), "ip -o link show master mvmbr0 | wc -l"), 0);
	ASSERT_STREQ(out, "1\n");
	ASSERT_EQ(
		plumb_sh_out(out, sizeof(out), "nft list table bridge mvmfs | grep -c 'chain vm_'"),
		0);
	ASSERT_STREQ(out, "1\n");
	/* Deterministic per name. */
	{
		struct net_vm_info ib;

		vm_up(ctx, "vm-b", 1000, 1000, &ib);
		ASSERT_TRUE(strcmp(ib.mac, i1.mac) != 0);
		ASSERT_OK(net_vm_teardown(ctx, "vm-b", NULL));
	}
	/* An address outside the prefix is routed as a /128 and the route goes with the VM. */
	ASSERT_EQ(inet_pton(AF_INET6, "fd77::5", &out6), 1);
	ASSERT_OK(net_vm_setup(ctx, "vm-c", &out6, 1000, 1000, &i2, &err));
	ASSERT_EQ(i2.prefix_len, 128);
	ASSERT_EQ(plumb_sh("ip -6 route show fd77::5 | grep -q mvmbr0"), 0);
	ASSERT_OK(net_vm_teardown(ctx, "vm-c", NULL));

	ASSERT_OK(net_vm_teardown(ctx, "vm-a", NULL));
	ASSERT_OK(net_vm_teardown(ctx, "vm-a", NULL));
	ASSERT_OK(net_vm_teardown(ctx, "never-existed", NULL));
	assert_clean();
	/* The bridge is reusable (marked); a foreign one is refused. */
	ASSERT_OK(net_bridge_ensure(ctx, &err));
	net_ctx_free(ctx);
	ASSERT_EQ(plumb_sh("ip link add mvmbr1 type bridge"), 0);
	{
		struct net_config bad = {.state_dir = state_dir,
					 .bridge = "br\"; flush ruleset",
					 .ipv6_prefix = "fd42:1::/64"};

		ASSERT_ERRNO(net_ctx_new(&bad, &ctx, &err), EINVAL);
		bad.bridge = "averyveryverylongname";
		ASSERT_ERRNO(net_ctx_new(&bad, &ctx, &err), EINVAL);
	}
	{
		struct net_config cfg = {
			.state_dir = state_dir, .bridge = "mvmbr1", .ipv6_prefix = "fd42:1::/64"};

		ASSERT_OK(net_ctx_new(&cfg, &ctx, &err));
		ASSERT_ERRNO(net_bridge_ensure(ctx, &err), EEXIST);
		net_ctx_free(ctx);
	}
	(void)rm_rf(state_dir);
}

static bool known_a(const char *name, void *ud)
{
	return strcmp(name, "vm-a") == 0;
}

static void test_reap(void)
{
	struct net_ctx *ctx = setup_ctx();
	struct net_vm_info info;
	char out[16384];
	int n;

	struct in6_addr out6;
	struct err err = {0};

	/* vm-a (known) has an address outside the prefix: its route must stay. */
	ASSERT_EQ(inet_pton(AF_INET6, "fd77::5", &out6), 1);
	ASSERT_OK(net_vm_setup(ctx, "vm-a", &out6, 1000, 1000, &info, &err));
	vm_up(ctx, "vm-b", 1000, 1000, &info);
	/* Our route left without its VM, and someone else's route. */
	ASSERT_EQ(plumb_sh("ip -6 route add fd77::9/128 dev mvmbr0 proto 167 && "
			   "ip -6 route add fd77::10/128 dev mvmbr0"),
		  0);
	/* Unmarked look-alikes that must survive. */
	ASSERT_EQ(plumb_sh("ip netns add other && ip netns add mvmfsx"), 0);
	ASSERT_EQ(
		plumb_sh("ip link add mv0000000000 type veth peer name mvpeer0 && "
			 "ip link set mv0000000000 master mvmbr0 && "
			 "ip link add foreign7 type bridge && ip link set foreign7 alias foreign"),
		0);
	/* A leftover with only its nft chain (links and netns lost), one with only its netns. */
	vm_up(ctx, "vm-c", 1000, 1000, &info);
	ASSERT_EQ(plumb_sh("ip link del $(ip -o link show master mvmbr0 | grep 'alias mvmfs:vm-c' "
			   "| cut -d: -f2 | cut -d@ -f1) && ip netns del mvmfs-vm-c"),
		  0);
	ASSERT_EQ(plumb_sh("ip netns add mvmfs-vm-d"), 0);

	n = net_reap(ctx, known_a, NULL);
	ASSERT_TRUE(n >= 3);
	ASSERT_EQ(plumb_sh("test -e /run/netns/mvmfs-vm-a && test ! -e /run/netns/mvmfs-vm-b && "
			   "test ! -e /run/netns/mvmfs-vm-d && test -e /run/netns/other && "
			   "test -e /run/netns/mvmfsx"),
		  0);
	ASSERT_EQ(plumb_sh_out(out, sizeof(out), "ip -o link show"), 0);
	ASSERT_TRUE(strstr(out, "mv0000000000") && strstr(out, "foreign7"));
	ASSERT_EQ(plumb_sh_out(out, sizeof(out),
			       "ip -d -o link show master mvmbr0 | grep -c 'alias mvmfs:'"),
		  0);
	ASSERT_STREQ(out, "1\n");
	ASSERT_EQ(plumb_sh_out(out, sizeof(out), "nft list table bridge mvmfs"), 0);
	ASSERT_TRUE(strstr(out, "mvmfs:vm-a") && !strstr(out, "mvmfs:vm-b") &&
		    !strstr(out, "mvmfs:vm-c"));
	ASSERT_EQ(plumb_sh("ip -6 route show fd77::5 | grep -q mvmbr0 && "
			   "ip -6 route show fd77::10 | grep -q mvmbr0 && "
			   "! ip -6 route show fd77::9 | grep -q mvmbr0"),
		  0);
	ASSERT_EQ(net_reap(ctx, known_a, NULL), 0);
	net_ctx_free(ctx);
	(void)rm_rf(state_dir);
}

/* Setup while a VMM holds the TAP (daemon restart re-adopting a running VM). */
static void test_setup_while_attached(void)
{
	struct net_ctx *ctx = setup_ctx();
	struct net_vm_info i1, i2;
	int pfd[2];
	char c;
	pid_t pid;

	vm_up(ctx, "vm-a", 1000, 1000, &i1);
	ASSERT_EQ(pipe(pfd), 0);
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR};
		int ns = open(i1.netns_path, O_RDONLY | O_CLOEXEC), fd;

		if (ns < 0 || setns(ns, CLONE_NEWNET) < 0)
			_exit(1);
		fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
		strcpy(ifr.ifr_name, "tap0");
		if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0)
			_exit(2);
		(void)!write(pfd[1], "r", 1);
		pause();
		_exit(0);
	}
	close(pfd[1]);
	ASSERT_EQ(read(pfd[0], &c, 1), 1);
	vm_up(ctx, "vm-a", 1000, 1000, &i2);
	ASSERT_EQ(memcmp(&i1, &i2, sizeof(i1)), 0);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	ASSERT_OK(net_vm_teardown(ctx, "vm-a", NULL));
	assert_clean();
	net_ctx_free(ctx);
	(void)rm_rf(state_dir);
}

/* A foreign interface with our derived name: refused, untouched, and nothing of ours stays. */
static void test_failure_leaves_nothing(void)
{
	struct net_ctx *ctx = setup_ctx();
	struct net_vm_info info;
	struct net_names n;
	struct in6_addr a;
	struct err err = {0};

	ASSERT_OK(net_names_derive(NULL, "vm-x", &n));
	ASSERT_EQ(plumb_sh("ip link add %s type veth peer name foreignpeer", n.host_veth), 0);
	ASSERT_OK(net_ip_assign(ctx, "vm-x", &a, &err));
	ASSERT_ERRNO(net_vm_setup(ctx, "vm-x", &a, 1000, 1000, &info, &err), EEXIST);
	ASSERT_TRUE(strstr(err.msg, n.host_veth) != NULL);
	ASSERT_EQ(plumb_sh("test ! -e /run/netns/mvmfs-vm-x"), 0);
	ASSERT_EQ(plumb_sh("ip link show %s >/dev/null && ip link show foreignpeer >/dev/null",
			   n.host_veth),
		  0);
	ASSERT_EQ(plumb_sh("nft list table bridge mvmfs | grep -q mvmfs:vm-x"), 1);
	/* Bad names never reach the kernel. */
	ASSERT_ERRNO(net_vm_setup(ctx, "-bad", &a, 1000, 1000, &info, &err), EINVAL);
	ASSERT_ERRNO(net_vm_setup(ctx, "a/b", &a, 1000, 1000, &info, &err), EINVAL);
	ASSERT_ERRNO(net_vm_teardown(ctx, "../x", &err), EINVAL);
	net_ctx_free(ctx);
	(void)rm_rf(state_dir);
}

TEST_MAIN(TEST(test_setup_teardown), TEST(test_neighbour_reset), TEST(test_idempotent),
	  TEST(test_reap), TEST(test_setup_while_attached), TEST(test_failure_leaves_nothing))
