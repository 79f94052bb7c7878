/* SPDX-License-Identifier: MIT */
/*
 * Booted templates through the daemon on real QEMU (docs/template.md): the daemon's start builds
 * the template of the node's device layout in the background (its own template VM); a start
 * before it is ready cold-boots at once; later starts restore it. Each VM
 * shows its own hostname, MAC, address, environment and random bytes; the same VM cold-booted
 * (--no-template) shows the same identity (the boot id differs by design); a corrupt template
 * costs a cold boot that works and is rebuilt in the background; the daemon's start removes
 * templates of an older version, unfinished builds and templates of other node inputs (another
 * vCPU count); a daemon SIGKILLed during a build leaves nothing once restarted (its QEMU, host
 * dir, netns go); the image's root disk is padded to 1 GiB. Runs in its own PID,
 * network and mount namespaces. MVMFS_TEMPLATE_BENCH=N makes it a benchmark instead (see
 * bench()).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon-vm.h"
#include "fileio.h"
#include "sys.h"
#include "test.h"

static char T[64], MNT[128];

static const char app_sh[] =
	"#!/bin/sh\n"
	"mkdir -p /tmp/www\n"
	"echo \"name=$(hostname) mac=$(cat /sys/class/net/eth0/address) who=$WHO uid=$(id -u) "
	"cwd=$(pwd) root=$(grep -c ' / ' /proc/mounts) "
	"rnd=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n') "
	"boot=$(cat /proc/sys/kernel/random/boot_id)\" > /tmp/www/index.html\n"
	/* The guest's uptime as httpd starts (shell builtins only): the bench's breakdown. */
	"read up rest < /proc/uptime; echo \"up=$up\" >> /tmp/www/index.html\n"
	"exec httpd -f -p 8080 -h /tmp/www\n";

static pid_t start_daemon_with(const char *guest, const char *opt, const char *arg)
{
	const char *opts[] = {"--vmm",
			      "qemu",
			      "--insecure-registry",
			      "127.0.0.1:5055",
			      "--bridge",
			      "ttbr0",
			      "--ipv6-prefix",
			      "fd42:7e6::/64",
			      "--app-grace",
			      "1s",
			      opt,
			      arg,
			      NULL};

	(void)guest;
	return dvm_daemon(T, MNT, opts, 10000);
}

static pid_t start_daemon(const char *guest, bool no_template)
{
	return start_daemon_with(guest, no_template ? "--no-template" : NULL, NULL);
}

static void stop_daemon(pid_t d)
{
	int status = 0;

	kill(d, SIGTERM);
	ASSERT_EQ(waitpid(d, &status, 0), d);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		sh("tail -20 %s/daemon.log", T);
		TEST_FAIL("daemon exit status 0x%x", status);
	}
}

static double last_start_s; /* CLOCK_MONOTONIC of the last start_vm's write */

/* One GET of http://[ip]:8080/ without a process per try: connect within connect_ms (a SYN lost
 * while the guest was not up yet costs that, not TCP's 1 s retransmission), the answer within
 * 2 s. Whether a 200 with a non-empty body came; the body into page. */
static bool http_get_once(const char *ip, unsigned connect_ms, char *page, size_t size)
{
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(8080)};
	static const char req[] = "GET / HTTP/1.0\r\nHost: vm\r\n\r\n";
	char buf[4096];
	size_t got = 0;
	double end;
	int fd, err = 0;
	const char *body;
	socklen_t el = sizeof(err);
	struct pollfd p;

	if (inet_pton(AF_INET6, ip, &sa.sin6_addr) != 1)
		return false;
	fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
		goto fail;
	p = (struct pollfd){.fd = fd, .events = POLLOUT};
	if (poll(&p, 1, (int)connect_ms) != 1 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err)
		goto fail;
	if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1)
		goto fail;
	end = now_s() + 2.0;
	while (got < sizeof(buf) - 1 && now_s() < end) {
		ssize_t n;

		p = (struct pollfd){.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 100) < 0)
			goto fail;
		n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
		if (n == 0)
			break;
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			goto fail;
		if (n > 0)
			got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	body = strstr(buf, "\r\n\r\n");
	if (strncmp(buf, "HTTP/1.", 7) != 0 || strncmp(buf + 8, " 200", 4) != 0 || !body ||
	    !body[4])
		return false;
	snprintf(page, size, "%s", body + 4);
	return true;
fail:
	close(fd);
	return false;
}

/* Polls http_get_once every 10 ms up to timeout_ms: whether the page came.
 * MVMFS_TEMPLATE_POLL=curl polls with curl instead (a process per try, 20 ms apart, TCP's own
 * connect timeout: how the bench measured before). */
static bool wait_http_fast(const char *ip, char *page, size_t size, unsigned timeout_ms)
{
	double end = now_s() + timeout_ms / 1000.0;
	const char *poll_with = getenv("MVMFS_TEMPLATE_POLL");

	if (poll_with && strcmp(poll_with, "curl") == 0)
		return dvm_wait_http(ip, page, size, timeout_ms, 5, 20);

	do {
		if (http_get_once(ip, 100, page, size))
			return true;
		usleep(10000);
	} while (now_s() < end);
	return false;
}

/* Start vm and wait for its app's page; returns seconds from the write to the page. */
static double start_vm(const char *vm, const char *ip, char *page, size_t size)
{
	double t0 = last_start_s = now_s();

	ASSERT_OK(dvm_wr_vm(MNT, vm, "state", "start\n", 0));
	if (!wait_http_fast(ip, page, size, 40000)) {
		char h[2048] = "";

		dvm_rd_vm(MNT, vm, "health", h, sizeof(h));
		sh("grep -v DEBUG %s/daemon.log | tail -15", T);
		TEST_FAIL("%s never answered HTTP; health:\n%s", vm, h);
	}
	return now_s() - t0;
}

static void stop_vm(const char *vm)
{
	ASSERT_OK(dvm_wr_vm(MNT, vm, "state", "stop\n", 0));
}

/* The value of "key=" in page (up to the next space or newline), into out. */
static const char *field(const char *page, const char *key, char *out, size_t size)
{
	const char *p = strstr(page, key);
	size_t n;

	ASSERT_TRUE(p != NULL);
	p += strlen(key);
	n = strcspn(p, " \n");
	snprintf(out, size, "%.*s", (int)n, p);
	return out;
}

static int log_count(const char *needle)
{
	char out[32] = "";

	sh_out(out, sizeof(out), "grep -c -- '%s' %s/daemon.log", needle, T);
	return atoi(out);
}

/* The bench's breakdown of the last start of vm, answered after http_s: the daemon's timing lines
 * ("launch timing", "guest timing": CLOCK_MONOTONIC ms, the clock of now_s()) and the agent's
 * ("boot timing", guest ms after the identity), as ms after the `echo start`. */
static void breakdown(const char *vm, double http_s, const char *page)
{
	char l1[512] = "", l2[512] = "", l3[1024] = "", l4[512] = "";
	unsigned long long begin = 0, ran = 0;
	long long vmm = 0, hello = -1, ident = -1, net = -1, app = -1, copy = 0;
	const char *p;
	double t0 = last_start_s * 1000.0, up = 0, gstart = 0;

	sh_out(l1, sizeof(l1), "grep '%s: launch timing:' %s/daemon.log | tail -1", vm, T);
	sh_out(l2, sizeof(l2), "grep '%s: guest timing:' %s/daemon.log | tail -1", vm, T);
	sh_out(l3, sizeof(l3),
	       "grep 'boot timing:' %s/vms/%s/log | tail -1 | sed 's/.*boot timing: //'", MNT, vm);
	if ((p = strstr(l1, "template copy ")))
		sscanf(p,
		       "template copy %lld), VMM running +%lld ms after the job began (monotonic "
		       "ms "
		       "%llu)",
		       &copy, &vmm, &begin);
	if ((p = strstr(l2, "agent answered ")))
		sscanf(p,
		       "agent answered +%lld ms, identity taken +%lld, network +%lld, app started "
		       "+%lld after the VMM ran (monotonic ms %llu)",
		       &hello, &ident, &net, &app, &ran);
	/* httpd's exec in the guest's clock (uptime), after the guest's boot steps began. */
	if ((p = strstr(page, "up=")))
		up = strtod(p + 3, NULL) * 1000.0;
	if ((p = strstr(l3, "guest monotonic ms ")))
		gstart = strtod(p + strlen("guest monotonic ms "), NULL);
	printf("# BENCH %s (ms after echo start): job began %.0f, VMM running %.0f (template copy "
	       "%lld), agent answered %.0f, identity taken %.0f, network %.0f, app started %.0f, "
	       "httpd exec'd +%.0f after the guest's boot steps began, HTTP answered %.0f; guest: "
	       "%s",
	       vm, begin - t0, ran - t0, copy, ran + hello - t0,
	       ident < 0 ? -1.0 : ran + ident - t0, net < 0 ? -1.0 : ran + net - t0,
	       app < 0 ? -1.0 : ran + app - t0, up > 0 && gstart > 0 ? up - gstart : -1.0,
	       http_s * 1000.0, l3[0] ? l3 : "(no boot timing line)\n");
	if ((p = strstr(l1, "launch timing: ")))
		printf("# BENCH   %s", p);
	sh_out(l4, sizeof(l4),
	       "grep 'app start timing:' %s/vms/%s/log | tail -1 | sed 's/.*app start timing: //'",
	       MNT, vm);
	if (l4[0])
		printf("# BENCH   app start: %s", l4);
}

/* Until the daemon log has n lines "template: built" (60 s at most). */
static void wait_built(int n)
{
	for (int i = 0; i < 600 && log_count("template: built") < n; i++)
		usleep(100000);
	if (log_count("template: built") < n) {
		sh("grep -v DEBUG %s/daemon.log | tail -15", T);
		TEST_FAIL("template not built in the background within 60 s");
	}
}

/* Nothing of a template VM on the host: QEMU process, host dir, netns, build dir. ('[m]' keeps
 * pgrep from finding the shell that runs it: no literal id in its command line.) */
static void assert_no_build_left(void)
{
	for (int i = 0; i < 100 && sh("pgrep -f '[m]vmfs-template-build-' >/dev/null") == 0; i++)
		usleep(100000);
	ASSERT_EQ(sh("pgrep -fa '[m]vmfs-template-build-' && exit 1; "
		     "ls %s/state/qemu 2>/dev/null | grep '[m]vmfs-template-build-' && exit 1; "
		     "ls /run/netns 2>/dev/null | grep '[m]vmfs-template-build-' && exit 1; "
		     "ls %s/state/templates | grep '[.]build$' && exit 1; exit 0",
		     T, T),
		  0);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* MVMFS_TEMPLATE_BENCH=N (bench/template): N restarts of one VM from the template and N cold
 * (after a daemon restart with --no-template), p50 of echo start -> HTTP; then
 * MVMFS_TEMPLATE_PARALLEL VMs (default 10) started at once from the template: the time until
 * all answer, and each QEMU's RSS. */
static void bench(const char *guest, const char *vm, const char *ip, pid_t *d, int runs)
{
	int par = getenv("MVMFS_TEMPLATE_PARALLEL") ? atoi(getenv("MVMFS_TEMPLATE_PARALLEL")) : 10;
	double tpl[32], cold[32], t0;
	char page[512], names[32][32], ips[32][64], out[4096] = "";

	runs = runs > 32 ? 32 : runs;
	par = par > 32 ? 32 : par < 1 ? 1 : par;
	for (int i = 0; i < runs; i++) {
		tpl[i] = start_vm(vm, ip, page, sizeof(page));
		breakdown(vm, tpl[i], page);
		stop_vm(vm);
	}
	for (int i = 0; i < par; i++) {
		snprintf(names[i], sizeof(names[i]), "p%d-%.6s", i, T + strlen("/tmp/test-tpl."));
		dvm_create_vm(MNT, names[i], "127.0.0.1:5055/app:1\n", ips[i], sizeof(ips[i]));
	}
	t0 = now_s();
	for (int i = 0; i < par; i++) {
		char p[512];

		snprintf(p, sizeof(p), "%s/vms/%.31s/state", MNT, names[i]);
		ASSERT_OK(write_str(p, "start\n", O_NONBLOCK));
	}
	for (int i = 0; i < par; i++)
		ASSERT_TRUE(wait_http_fast(ips[i], page, sizeof(page), 120000));
	printf("# BENCH %d VMs started at once from the template: all answering after %.2f s\n",
	       par, now_s() - t0);
	sh_out(out, sizeof(out),
	       "for p in $(pgrep -f 'mvmfs-p[0-9]*-%.6s'); do awk '/VmRSS/ {printf \"%%d \", "
	       "$2/1024}' "
	       "/proc/$p/status; done",
	       T + strlen("/tmp/test-tpl."));
	printf("# BENCH QEMU RSS MiB each: %s\n", out);
	/* Host disk: the templates (one here: every VM has the same layout), and each running
	 * VM's own sparse copy of the template's RAM (where a cold boot keeps its RAM too). */
	sh_out(out, sizeof(out),
	       "cd %s/state && printf '%%s templates, %%s MiB allocated (%%s MiB apparent)' "
	       "$(ls templates | wc -l) $(( $(du -sk templates | cut -f1) / 1024 )) "
	       "$(( $(du -sk --apparent-size templates | cut -f1) / 1024 ))",
	       T);
	printf("# BENCH host disk used by templates: %s\n", out);
	sh_out(out, sizeof(out),
	       "cd %s/state/vms && for v in p*-%.6s; do printf '%%s ' $(( $(du -sk $v/suspend "
	       "| cut -f1) / 1024 )); done",
	       T, T + strlen("/tmp/test-tpl."));
	printf("# BENCH host disk per running VM, its RAM copy, MiB allocated: %s\n", out);
	for (int i = 0; i < par; i++)
		stop_vm(names[i]);
	stop_daemon(*d);
	*d = start_daemon(guest, true);
	for (int i = 0; i < runs; i++) {
		cold[i] = start_vm(vm, ip, page, sizeof(page));
		breakdown(vm, cold[i], page);
		stop_vm(vm);
	}
	qsort(tpl, (size_t)runs, sizeof(double), cmp_double);
	qsort(cold, (size_t)runs, sizeof(double), cmp_double);
	printf("# BENCH echo start -> HTTP p50 of %d: template %.2f s (%.2f-%.2f), cold %.2f s "
	       "(%.2f-%.2f), ratio %.2f\n",
	       runs, tpl[runs / 2], tpl[0], tpl[runs - 1], cold[runs / 2], cold[0], cold[runs - 1],
	       tpl[runs / 2] / cold[runs / 2]);
}

static void test_template_starts(void)
{
	char guest[300], root[160], A[64], B[64], C[64];
	char pa[512], pb[512], pc[512], pb2[512], pc2[512], f1[128], f2[128], want[160];
	char na[32], nb[32], nc[32];
	double ta, tb, tc, tcold, tcorrupt, td0, tready;
	pid_t reg, d;

	snprintf(T, sizeof(T), "/tmp/test-tpl.XXXXXX");
	daemon_vm_begin("qemu-system-x86_64 docker-registry umoci skopeo curl mkfs.ext4 nft", guest,
			sizeof(guest), T, MNT, sizeof(MNT));
	snprintf(na, sizeof(na), "ta-%.6s", T + strlen("/tmp/test-tpl."));
	snprintf(nb, sizeof(nb), "tb-%.6s", T + strlen("/tmp/test-tpl."));
	snprintf(nc, sizeof(nc), "tc-%.6s", T + strlen("/tmp/test-tpl."));

	/* Registry and an image whose page shows what differs between VMs. */
	reg = dvm_registry(T, 5055);
	dvm_state_guest(T, MNT, guest);
	dvm_bundle(T, guest);
	ASSERT_EQ(sh("set -e; cd %s; R=bundle/rootfs; printf 'root:x:0:0:root:/root:/bin/sh\\n' > "
		     "$R/etc/passwd; "
		     "printf 'root:x:0:\\n' > $R/etc/group",
		     T),
		  0);
	snprintf(root, sizeof(root), "%s/bundle/rootfs/srv/app.sh", T);
	ASSERT_OK(write_file_atomic(root, app_sh, strlen(app_sh), 0755));
	ASSERT_EQ(sh("set -e; cd %s; umoci repack --image oci:1 bundle >/dev/null; "
		     "umoci config --image oci:1 --config.entrypoint /bin/sh --config.cmd "
		     "/srv/app.sh --config.workingdir /srv --config.env WHO=from-image "
		     ">/dev/null; umoci gc --layout oci; skopeo copy -q --dest-tls-verify=false "
		     "oci:oci:1 docker://127.0.0.1:5055/app:1",
		     T),
		  0);

	td0 = now_s();
	d = start_daemon(guest, false);
	dvm_create_vm(MNT, na, "127.0.0.1:5055/app:1\n", A, sizeof(A));
	dvm_create_vm(MNT, nb, "127.0.0.1:5055/app:1\n", B, sizeof(B));
	dvm_create_vm(MNT, nc, "127.0.0.1:5055/app:1\n", C, sizeof(C));

	/* The daemon's start builds the template in the background: a start meanwhile
	 * cold-boots at once (or restores it, if it was ready first); the next two restore it. */
	ta = start_vm(na, A, pa, sizeof(pa));
	if (log_count("template: none yet for this layout, building it in the background: cold "
		      "boot") == 1)
		printf("# BENCH first start after the daemon's start (the template not ready: a "
		       "cold boot, not delayed): echo start -> HTTP %.2f s\n",
		       ta);
	else
		ASSERT_EQ(log_count("template: started from"), 1);
	wait_built(1);
	tready = now_s() - td0;
	{
		char line[256] = "";

		sh_out(line, sizeof(line),
		       "grep -o 'template: built .* in [0-9.]* s' %s/daemon.log | grep -o "
		       "'[0-9.]* s$'",
		       T);
		printf("# BENCH daemon start -> template ready: %.1f s (the build job itself: "
		       "%.*s, "
		       "next to the first start)\n",
		       tready, (int)strcspn(line, "\n"), line);
	}
	ASSERT_EQ(log_count("template: building "), 1);
	assert_no_build_left();
	tb = start_vm(nb, B, pb, sizeof(pb));
	tc = start_vm(nc, C, pc, sizeof(pc));
	ASSERT_TRUE(log_count("template: started from") >= 2);
	/* One template, with its inputs; the image's root disk is padded to the fixed device
	 * size (each guest mounted it read-only with the overlay on it: the apps answered). */
	ASSERT_EQ(sh("set -e; cd %s/state; test $(ls templates | wc -l) = 1; "
		     "grep -q '^root 1073741824$' templates/*/inputs; "
		     "ls images/images/*/rootfs.ext4 >/dev/null; "
		     "for f in images/images/*/rootfs.ext4; do "
		     "test $(stat -c %%s $f) = 1073741824; done",
		     T),
		  0);
	printf("# echo start -> HTTP: %s (first) %.2f s, %s %.2f s, %s %.2f s\n# %s# %s# %s", na,
	       ta, nb, tb, nc, tc, pa, pb, pc);
	snprintf(want, sizeof(want), "name=%s ", nb);
	ASSERT_TRUE(strncmp(pb, want, strlen(want)) == 0);
	snprintf(want, sizeof(want), "name=%s ", nc);
	ASSERT_TRUE(strncmp(pc, want, strlen(want)) == 0);
	ASSERT_TRUE(strstr(pb, " who=from-image uid=0 cwd=/srv ") != NULL);
	ASSERT_TRUE(strstr(pc, " who=from-image uid=0 cwd=/srv ") != NULL);
	ASSERT_TRUE(strcmp(A, B) != 0 && strcmp(B, C) != 0);
	ASSERT_TRUE(strcmp(field(pb, "mac=", f1, sizeof(f1)), field(pc, "mac=", f2, sizeof(f2))));
	ASSERT_TRUE(strcmp(field(pb, "rnd=", f1, sizeof(f1)), field(pc, "rnd=", f2, sizeof(f2))));
	ASSERT_TRUE(strcmp(field(pa, "rnd=", f1, sizeof(f1)), field(pc, "rnd=", f2, sizeof(f2))));
	/* One template, one kernel boot: the boot id is the template's (by design). */
	ASSERT_STREQ(field(pb, "boot=", f1, sizeof(f1)), field(pc, "boot=", f2, sizeof(f2)));
	stop_vm(nb);
	stop_vm(nc);
	stop_vm(na);

	if (getenv("MVMFS_TEMPLATE_BENCH")) {
		bench(guest, nb, B, &d, atoi(getenv("MVMFS_TEMPLATE_BENCH")));
		stop_daemon(d);
		dvm_stop(reg);
		dvm_end(MNT, T);
		return;
	}

	/* The same VM cold-booted (--no-template): the same identity; another boot id and
	 * random bytes. */
	stop_daemon(d);
	d = start_daemon(guest, true);
	tcold = start_vm(nb, B, pb2, sizeof(pb2));
	printf("# %s cold (--no-template): %.2f s\n# %s", nb, tcold, pb2);
	ASSERT_EQ(log_count("template: off (--no-template): cold boot"), 1);
	ASSERT_STREQ(field(pb, "mac=", f1, sizeof(f1)), field(pb2, "mac=", f2, sizeof(f2)));
	ASSERT_STREQ(field(pb, "name=", f1, sizeof(f1)), field(pb2, "name=", f2, sizeof(f2)));
	ASSERT_STREQ(field(pb, "who=", f1, sizeof(f1)), field(pb2, "who=", f2, sizeof(f2)));
	ASSERT_STREQ(field(pb, "uid=", f1, sizeof(f1)), field(pb2, "uid=", f2, sizeof(f2)));
	ASSERT_STREQ(field(pb, "cwd=", f1, sizeof(f1)), field(pb2, "cwd=", f2, sizeof(f2)));
	ASSERT_STREQ(field(pb, "root=", f1, sizeof(f1)), field(pb2, "root=", f2, sizeof(f2)));
	ASSERT_TRUE(
		strcmp(field(pb, "boot=", f1, sizeof(f1)), field(pb2, "boot=", f2, sizeof(f2))));
	stop_vm(nb);
	stop_daemon(d);

	/* A corrupt template: that start cold-boots and works; it is rebuilt in the background
	 * for the next. */
	ASSERT_EQ(sh("set -e; f=$(ls -d %s/state/templates/*/state | head -1); "
		     "printf 'X' | dd of=$f bs=1 seek=100 conv=notrunc 2>/dev/null",
		     T),
		  0);
	/* A template of an older version (no inputs) and a build a killed daemon left: the
	 * daemon's start removes them. */
	ASSERT_EQ(sh("set -e; cd %s/state/templates; mkdir 0123456789abcdef "
		     "0123456789abcdef.build; echo x > 0123456789abcdef/state; "
		     "echo x > 0123456789abcdef/state.sum; "
		     "touch -d '1 hour ago' 0123456789abcdef.build",
		     T),
		  0);
	d = start_daemon(guest, false);
	ASSERT_EQ(log_count("template: removed .*/0123456789abcdef: no inputs file"), 1);
	ASSERT_EQ(log_count("template: removed .*/0123456789abcdef.build: an unfinished build"), 1);
	ASSERT_EQ(sh("test ! -e %s/state/templates/0123456789abcdef", T), 0);
	tcorrupt = start_vm(nc, C, pc2, sizeof(pc2));
	printf("# %s with a corrupt template: %.2f s\n", nc, tcorrupt);
	ASSERT_EQ(log_count("template: corrupt: checksum mismatch: cold boot"), 1);
	snprintf(want, sizeof(want), "name=%s ", nc);
	ASSERT_TRUE(strncmp(pc2, want, strlen(want)) == 0);
	stop_vm(nc);
	wait_built(2);
	(void)start_vm(nb, B, pb2, sizeof(pb2));
	ASSERT_EQ(sh("test $(ls %s/state/templates | wc -l) = 1", T), 0);
	stop_vm(nb);
	stop_daemon(d);
	/* Another vCPU count: the daemon's start removes the template made for 2 and builds one
	 * for 1; the daemon stopped during that build exits (status 0) within its bounded stop
	 * and leaves nothing of it. */
	d = start_daemon_with(guest, "--vcpus", "1");
	ASSERT_EQ(log_count("template: removed .*its .vcpus. differs"), 1);
	ASSERT_EQ(sh("test $(ls %s/state/templates | grep -v '[.]build$' | wc -l) = 0", T), 0);
	for (int i = 0; i < 100 && sh("pgrep -f '[m]vmfs-template-build-' >/dev/null") != 0; i++)
		usleep(100000);
	{
		double t0 = now_s();

		stop_daemon(d);
		printf("# daemon stopped during a template build in %.2f s\n", now_s() - t0);
		ASSERT_TRUE(now_s() - t0 < 5);
	}
	assert_no_build_left();
	/* SIGKILL during a build: its QEMU, host dir, netns and build dir are left; the next
	 * daemon's start removes them all and builds again. */
	d = start_daemon_with(guest, "--vcpus", "1");
	for (int i = 0; i < 200 && sh("pgrep -f 'qemu.*[m]vmfs-template-build-' >/dev/null") != 0;
	     i++)
		usleep(100000);
	ASSERT_EQ(sh("pgrep -f 'qemu.*[m]vmfs-template-build-' > %s/old-qemu", T), 0);
	kill(d, SIGKILL);
	ASSERT_EQ(waitpid(d, NULL, 0), d);
	sh("umount -l %s 2>/dev/null", MNT);
	ASSERT_EQ(sh("ls %s/state/qemu | grep -q mvmfs-template-build-", T), 0);
	d = start_daemon_with(guest, "--vcpus", "1");
	wait_built(3);
	ASSERT_EQ(
		sh("test -s %s/old-qemu || exit 1; for p in $(cat %s/old-qemu); do "
		   "if kill -0 $p 2>/dev/null && ! grep -q ') Z ' /proc/$p/stat; then exit 1; fi; "
		   "done; exit 0",
		   T, T),
		0);
	assert_no_build_left();
	stop_daemon(d);
	dvm_stop(reg);
	dvm_end(MNT, T);
}

TEST_MAIN(TEST(test_template_starts))
