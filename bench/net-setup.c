/* SPDX-License-Identifier: MIT */
/*
 * Benchmark: network setup + teardown per VM, p50 over N VMs (default 100), net/
 * (libnl + libnftables) against bench/net-setup-baseline.sh (ip, bridge, nft commands) doing
 * the same plumbing. Runs in a private network + mount namespace; the host is not touched.
 * Setups accumulate (VM i is set up while 0..i-1 exist), then all are torn down; a VM's cost is
 * its setup plus its teardown. Blocks of the two implementations alternate (ours, shell, ours,
 * shell) so both sample the same stretch of machine load. Usage: bench-net-setup SCRIPT [N]
 */
#include <arpa/inet.h>
#include <time.h>

#include "fileio.h"
#include "plumb-fixture.h"
#include "plumbing.h"

#define ROUNDS 2

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double percentile(double *v, int n, double p)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[(int)((n - 1) * p + 0.5)];
}

static void vm_addr(int i, struct in6_addr *a)
{
	inet_pton(AF_INET6, "fd42:1::1000", a);
	a->s6_addr[14] = (uint8_t)(0x10 + (i >> 8));
	a->s6_addr[15] = (uint8_t)i;
}

static void hex128(const struct in6_addr *a, char *buf)
{
	buf[0] = '0';
	buf[1] = 'x';
	for (int i = 0; i < 16; i++)
		sprintf(buf + 2 + 2 * i, "%02x", a->s6_addr[i]);
}

/* One step of ours: pass 0 sets VM i up, pass 1 tears it down. */
static int step_ours(struct net_ctx *ctx, int pass, int i, double *ms)
{
	struct net_vm_info info;
	struct err err = {0};
	struct in6_addr a;
	char name[32];
	double t0;
	int r;

	snprintf(name, sizeof(name), "ours-%d", i);
	vm_addr(i, &a);
	t0 = now_ms();
	r = pass == 0 ? net_vm_setup(ctx, name, &a, 1000, 1000, &info, &err)
		      : net_vm_teardown(ctx, name, &err);
	*ms = now_ms() - t0;
	if (r < 0)
		fprintf(stderr, "%s %s: %s\n", pass ? "teardown" : "setup", name, err.msg);
	return r;
}

/* The same step done by the baseline script (names differ, addresses in another range). */
static int step_shell(const char *script, int pass, int i, double *ms)
{
	char name[32], a[INET6_ADDRSTRLEN], ll[INET6_ADDRSTRLEN], ah[35], lh[35], mac[18];
	struct in6_addr addr, lla = {.s6_addr = {0xfe, 0x80}};
	struct net_names nm;
	double t0;
	int r;

	snprintf(name, sizeof(name), "shell-%d", i);
	if (net_names_derive(NULL, name, &nm) < 0)
		return -1;
	vm_addr(i + 2048, &addr);
	memcpy(&lla.s6_addr[8],
	       (uint8_t[]){nm.mac[0] ^ 2, nm.mac[1], nm.mac[2], 0xff, 0xfe, nm.mac[3], nm.mac[4],
			   nm.mac[5]},
	       8);
	inet_ntop(AF_INET6, &addr, a, sizeof(a));
	inet_ntop(AF_INET6, &lla, ll, sizeof(ll));
	hex128(&addr, ah);
	hex128(&lla, lh);
	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", nm.mac[0], nm.mac[1], nm.mac[2],
		 nm.mac[3], nm.mac[4], nm.mac[5]);
	t0 = now_ms();
	if (pass == 0)
		r = plumb_sh("%s setup %s %s %s %s %s %s %s %s 1000 1000", script, name,
			     nm.host_veth, nm.chain, mac, a, ll, ah, lh);
	else
		r = plumb_sh("%s teardown %s %s %s", script, name, nm.host_veth, nm.chain);
	*ms = now_ms() - t0;
	if (r != 0) {
		fprintf(stderr, "baseline %s %s failed (%d)\n", pass ? "teardown" : "setup", name,
			r);
		return -1;
	}
	return 0;
}

/* One block: N setups (accumulating), then N teardowns, all by one implementation. Blocks of
 * the two alternate: interleaving single steps would make each pay for the namespace cleanup
 * the other just started (the kernel does it asynchronously, holding the rtnl lock). */
static int block(struct net_ctx *ctx, const char *script, bool shell, int n, double *cost,
		 double *setup)
{
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < n; i++) {
			double t;
			int r = shell ? step_shell(script, pass, i, &t)
				      : step_ours(ctx, pass, i, &t);

			if (r < 0)
				return -1;
			if (pass == 0)
				cost[i] = setup[i] = t;
			else
				cost[i] += t;
		}
	sleep(1); /* let the kernel finish destroying the namespaces */
	return 0;
}

int main(int argc, char **argv)
{
	struct net_ctx *ctx = NULL;
	struct err err = {0};
	char dir[] = "/tmp/netbench-XXXXXX";
	const char *why;
	double *ours, *shell, *so, *ss, p50o, p50s;
	int n = argc > 2 ? atoi(argv[2]) : 100;

	if (argc < 2 || n < 1 || n > 4000) {
		fprintf(stderr, "usage: %s BASELINE_SCRIPT [N]\n", argv[0]);
		return 2;
	}
	why = plumb_enter_private();
	if (why) {
		fprintf(stderr, "cannot run: %s\n", why);
		return 77;
	}
	if (!mkdtemp(dir) || plumb_ctx(dir, &ctx, &err) < 0 || net_bridge_ensure(ctx, &err) < 0) {
		fprintf(stderr, "context: %s\n", err.msg);
		return 1;
	}
	ours = calloc((size_t)n * ROUNDS, sizeof(double));
	shell = calloc((size_t)n * ROUNDS, sizeof(double));
	so = calloc((size_t)n * ROUNDS, sizeof(double));
	ss = calloc((size_t)n * ROUNDS, sizeof(double));
	if (!ours || !shell || !so || !ss)
		return 1;
	/* ours, shell, ours, shell: samples of both spread over the same stretch of time. */
	for (int round = 0; round < ROUNDS; round++) {
		int off = round * n;

		if (block(ctx, argv[1], false, n, ours + off, so + off) < 0 ||
		    block(ctx, argv[1], true, n, shell + off, ss + off) < 0)
			return 1;
	}
	n *= ROUNDS;
	p50o = percentile(ours, n, 0.5);
	p50s = percentile(shell, n, 0.5);
	printf("net-setup: %d VMs x %d rounds, setup+teardown per VM\n", n / ROUNDS, ROUNDS);
	printf("  net/ (libnl, libnftables): p50 %.2f ms  p90 %.2f ms  (setup alone: p50 %.2f "
	       "ms)\n",
	       p50o, percentile(ours, n, 0.9), percentile(so, n, 0.5));
	printf("  shell (ip, bridge, nft):   p50 %.2f ms  p90 %.2f ms  (setup alone: p50 %.2f "
	       "ms)\n",
	       p50s, percentile(shell, n, 0.9), percentile(ss, n, 0.5));
	printf("  ratio (shell p50 / net p50): %.1fx\n", p50s / p50o);
	net_ctx_free(ctx);
	(void)rm_rf(dir);
	free(ours);
	free(shell);
	free(so);
	free(ss);
	return 0;
}
