/* SPDX-License-Identifier: MIT */
/*
 * Real VMs through the QEMU backend (runtime/qemu.c) and the real guest (tools/build-guest):
 * a busybox app image that serves HTTP on port 8080 showing its Env, WorkingDir and User, boots
 * under TCG in the test's own network namespace (bridge + TAP), answers curl from the host,
 * its output reaches the log ring, and a stop through the agent (or the ACPI power button)
 * runs the app's SIGTERM handler, reports its exit code and powers the guest off.
 *
 * With MVMFS_VM_BENCH=N in the environment the binary instead boots N times and prints the
 * phase timings (bench/vm-boot drives it). With MVMFS_GUEST_KERNEL=tailored it boots the tailored
 * kernel (tools/build-guest --kernel tailored) instead of Debian's, and skips when that kernel is
 * not built (bench/guest-kernel compares the two).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "backend.h"
#include "fileio.h"
#include "guest-config.h"
#include "guest-test.h"
#include "parse.h"
#include "runtime.h"
#include "sys.h"
#include "test.h"

#define ADDR "fd42:feed::10"
#define GW "fd42:feed::1"
#define APP_JSON                                                   \
	"{\"entrypoint\":[\"/bin/sh\"],\"cmd\":[\"/srv/app.sh\"]," \
	"\"env\":[\"GREETING=hello-env\",\"PATH=/bin\"],\"workdir\":\"/srv\",\"user\":\"app\"}"
/* The same app, after four 100 MiB allocations filled at once (for a 256 MiB guest). */
#define HOG_JSON                                                   \
	"{\"entrypoint\":[\"/bin/sh\"],\"cmd\":[\"/srv/hog.sh\"]," \
	"\"env\":[\"GREETING=hello-env\",\"PATH=/bin\"],\"workdir\":\"/srv\",\"user\":\"app\"}"

struct fixture {
	char dir[64];
	char guest_dir[512];
	char kernel[600], base_initrd[600], busybox[600];
	char rootfs[128], data[128], initrd[128], console[128];
	char netns[64], netns_path[128];
	char name[32];
	uid_t uid;
	const char *app_json; /* NULL: APP_JSON */
	unsigned mem_mib;     /* 0: 2048 */
};

/* Preconditions, guest build (cached), app image, network namespace. */
static void fixture_setup(struct fixture *f, const char *tag)
{
	const char *src = getenv("MVMFS_SRCDIR"), *bld = getenv("MVMFS_BUILDDIR"), *kern;
	int r;

	if (geteuid() != 0)
		test_skip("needs root (netns, TAP, cgroups)");
	if (!have("qemu-system-x86_64") || !have("mkfs.ext4") || !have("ip") || !have("curl"))
		test_skip("qemu-system-x86_64, mkfs.ext4, ip or curl missing");
	if (!src || !bld)
		test_skip("MVMFS_SRCDIR/MVMFS_BUILDDIR not set");
	kern = getenv("MVMFS_GUEST_KERNEL");
	if (kern && strcmp(kern, "tailored") == 0) {
		snprintf(f->guest_dir, sizeof(f->guest_dir), "%s/guest-tailored", bld);
		r = sh("%s/tools/build-guest --kernel tailored --cached-only --out %s "
		       ">%s/build-guest-tailored.log 2>&1",
		       src, f->guest_dir, bld);
		if (r == 3)
			test_skip("the tailored kernel is not built (tools/build-guest --kernel "
				  "tailored)");
	} else {
		snprintf(f->guest_dir, sizeof(f->guest_dir), "%s/guest-out", bld);
		r = sh("%s/tools/build-guest --out %s >%s/build-guest.log 2>&1", src, f->guest_dir,
		       bld);
	}
	if (r != 0)
		test_skip("tools/build-guest failed (no network for apt-get download?); see "
			  "build-guest.log");
	/* The bench loops in one process: isolate only test cases (forked by the harness). */
	if (!getenv("MVMFS_VM_BENCH"))
		isolate(0);
	snprintf(f->kernel, sizeof(f->kernel), "%s/vmlinux", f->guest_dir);
	snprintf(f->base_initrd, sizeof(f->base_initrd), "%s/initramfs.cpio.gz", f->guest_dir);
	snprintf(f->busybox, sizeof(f->busybox), "%s/busybox", f->guest_dir);

	snprintf(f->dir, sizeof(f->dir), "/tmp/test-vm-qemu.XXXXXX");
	ASSERT_TRUE(mkdtemp(f->dir) != NULL);
	ASSERT_OK(chmod(f->dir, 0755));
	snprintf(f->name, sizeof(f->name), "gt%s-%d", tag, (int)getpid());
	f->uid = 41000 + (uid_t)(getpid() % 1000);
	snprintf(f->rootfs, sizeof(f->rootfs), "%s/rootfs.ext4", f->dir);
	snprintf(f->data, sizeof(f->data), "%s/data.ext4", f->dir);
	snprintf(f->initrd, sizeof(f->initrd), "%s/initrd", f->dir);
	snprintf(f->console, sizeof(f->console), "%s/console.log", f->dir);

	/* The app image: busybox, a user "app" with a supplementary group, an HTTP app whose
	 * page shows Env, WorkingDir and User, and a SIGTERM trap. */
	ASSERT_EQ(sh("set -e; R=%s/rootfs; mkdir -p $R/bin $R/etc $R/srv $R/tmp $R/proc $R/sys "
		     "$R/dev $R/run $R/home/app; cp %s $R/bin/busybox; "
		     "for a in $($R/bin/busybox --list); do [ -e $R/bin/$a ] || ln -s busybox "
		     "$R/bin/$a; done; "
		     "printf "
		     "'root:x:0:0:root:/root:/bin/sh\\napp:x:1000:1000:app:/home/app:/bin/sh\\n' > "
		     "$R/etc/passwd; "
		     "printf 'root:x:0:\\napp:x:1000:\\nweb:x:2000:app\\n' > $R/etc/group; "
		     "printf '%%s\\n' '#!/bin/sh' "
		     "'trap \"echo app: got SIGTERM; exit 42\" TERM' "
		     "'mkdir -p /tmp/www' "
		     "'echo \"greeting=$GREETING workdir=$(pwd) user=$(id -u):$(id -g) groups=$(id "
		     "-G) name=$(id -un)\" > /tmp/www/index.html' "
		     "'echo app: serving on 8080' "
		     "'httpd -f -p 8080 -h /tmp/www &' "
		     "'while true; do sleep 1 & wait $!; done' > $R/srv/app.sh; chmod 755 "
		     "$R/srv/app.sh; "
		     "printf '%%s\\n' '#!/bin/sh' "
		     "'sleep 1; for i in 1 2 3 4; do (dd if=/dev/zero of=/dev/null bs=100M count=1 "
		     "2>/dev/null; echo \"hog: dd exit $?\") & done' 'exec /srv/app.sh' > "
		     "$R/srv/hog.sh; chmod 755 $R/srv/hog.sh; "
		     "mkfs.ext4 -q -F -d $R -L root %s 64M; truncate -s 256M %s; mkfs.ext4 -q -F "
		     "-L data %s",
		     f->dir, f->busybox, f->rootfs, f->data, f->data),
		  0);

	snprintf(f->netns, sizeof(f->netns), "mvmfs-%s", f->name);
	snprintf(f->netns_path, sizeof(f->netns_path), "/run/netns/%s", f->netns);
	ASSERT_EQ(sh("set -e; ip netns add %s; ip -n %s link set lo up; "
		     "ip -n %s link add br0 type bridge; "
		     "ip -n %s link set br0 type bridge forward_delay 0 stp_state 0; "
		     "ip -n %s -6 addr add " GW "/64 dev br0 nodad; ip -n %s link set br0 up; "
		     "ip -n %s tuntap add dev tap0 mode tap user %u group %u; "
		     "ip -n %s link set tap0 master br0; ip -n %s link set tap0 up",
		     f->netns, f->netns, f->netns, f->netns, f->netns, f->netns, f->netns,
		     (unsigned)f->uid, (unsigned)f->uid, f->netns, f->netns),
		  0);
}

static void fixture_teardown(struct fixture *f)
{
	sh("ip netns del %s 2>/dev/null", f->netns);
	sh("rm -rf %s", f->dir);
}

static void write_initrd(struct fixture *f)
{
	struct guest_config gc = {
		.name = f->name,
		.prefix_len = 64,
		.mac = "02:00:00:00:00:10",
		.image_config_json = f->app_json ? f->app_json : APP_JSON,
		.transport = AGENT_TRANSPORT_SERIAL,
		.heartbeat_ms = 500,
		.grace_ms = 3000,
	};
	struct err err = {};

	inet_pton(AF_INET6, ADDR, &gc.addr);
	inet_pton(AF_INET6, GW, &gc.gateway);
	if (guest_config_write_initrd(&gc, f->base_initrd, f->initrd, &err) < 0)
		TEST_FAIL("guest_config_write_initrd: %s", err.msg);
}

struct booted {
	void *priv;
	struct vmm_handle h;
	struct agent *agent;
	struct runtime_config cfg;
	double t_start, t_vmm, t_hello, t_app, t_http;
	double cpu_hello; /* QEMU's CPU seconds (user + system) when the agent said hello */
};

/* A process's CPU seconds (user + system), from /proc/PID/stat; -1 when unreadable. */
static double proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* After "pid (comm) ": state is field 3, utime 14, stime 15. */
	p = strrchr(buf, ')');
	if (!p ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static bool p_connected(const struct agent_status *s, void *ud)
{
	(void)ud;
	return s->connected;
}

static bool p_app(const struct agent_status *s, void *ud)
{
	(void)ud;
	return s->app != AGENT_APP_UNKNOWN && s->net_configured;
}

static bool p_exited(const struct agent_status *s, void *ud)
{
	(void)ud;
	return s->app == AGENT_APP_EXITED || s->app == AGENT_APP_START_FAILED;
}

static int curl_addr(struct fixture *f, const char *addr, char *buf, size_t size)
{
	char cmd[512];
	FILE *p;
	size_t n;

	snprintf(cmd, sizeof(cmd),
		 "ip netns exec %s curl -sf -g -m 2 'http://[%s]:8080/' 2>/dev/null", f->netns,
		 addr);
	p = popen(cmd, "r");
	if (!p)
		return -errno;
	n = fread(buf, 1, size - 1, p);
	buf[n] = '\0';
	return pclose(p) == 0 && n > 0 ? 0 : -EIO;
}

static int curl_page(struct fixture *f, char *buf, size_t size)
{
	return curl_addr(f, ADDR, buf, size);
}

static void boot(struct fixture *f, struct booted *b, char *page, size_t pagesz)
{
	struct vmm_launch p = {0};
	struct agent_config ac = {0};
	struct err err = {};
	char pidbuf[32];

	b->cfg = (struct runtime_config){.state_dir = f->dir, .vcpus = 2, .mem_mib = 2048};
	if (vmm_qemu_ops.init(&b->cfg, &b->priv, &err) < 0)
		TEST_FAIL("qemu init: %s", err.msg);
	vmm_handle_init(&b->h);
	b->t_start = now_s();
	write_initrd(f);
	p.name = f->name;
	p.uid = f->uid;
	p.gid = f->uid;
	p.netns_path = f->netns_path;
	p.tap_name = "tap0";
	p.mac = "02:00:00:00:00:10";
	p.kernel = f->kernel;
	p.initrd = f->initrd;
	p.rootfs = f->rootfs;
	p.data_disk = f->data;
	p.vcpus = 2;
	p.mem_mib = f->mem_mib ? f->mem_mib : 2048;
	p.run_dir = f->dir;
	p.console_log = f->console;
	if (vmm_qemu_ops.launch(b->priv, &p, &b->h, &err) < 0) {
		sh("tail -5 %s", f->console);
		TEST_FAIL("launch: %s", err.msg);
	}
	b->t_vmm = now_s();
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)b->h.pid);
	(void)pidbuf;
	ac.transport = AGENT_TRANSPORT_SERIAL;
	ac.socket_path = b->h.agent_socket;
	ac.heartbeat_ms = 500;
	ASSERT_OK(agent_start(&ac, &b->agent));
	if (agent_wait(b->agent, p_connected, NULL, 20000) < 0) {
		sh("tail -20 %s", f->console);
		TEST_FAIL("no agent hello within 20 s");
	}
	b->t_hello = now_s();
	b->cpu_hello = proc_cpu_s(b->h.pid);
	ASSERT_OK(agent_wait(b->agent, p_app, NULL, 20000));
	b->t_app = now_s();
	for (int i = 0; i < 200; i++) {
		if (curl_page(f, page, pagesz) == 0)
			break;
		usleep(20000);
	}
	b->t_http = now_s();
}

static int wait_vmm_exit(struct booted *b, unsigned timeout_ms, struct vmm_exit *ex)
{
	struct pollfd p = {.fd = b->h.pidfd, .events = POLLIN};

	if (poll(&p, 1, (int)timeout_ms) <= 0)
		return -ETIMEDOUT;
	return vmm_handle_reap(&b->h, ex);
}

static void shutdown_booted(struct fixture *f, struct booted *b)
{
	struct stat st;

	if (b->h.pidfd >= 0) {
		vmm_qemu_ops.kill(b->priv, &b->h);
		struct vmm_exit ex;
		wait_vmm_exit(b, 5000, &ex);
	}
	b->agent = agent_free(b->agent);
	vmm_qemu_ops.cleanup(b->priv, f->name, &b->h);
	ASSERT_TRUE(stat(b->h.jail_dir, &st) < 0 || b->h.jail_dir[0] == '\0');
	vmm_qemu_ops.free(b->priv);
}

/* The VMM runs as the VM's uid and inside the VM's cgroups. */
static void check_process(struct fixture *f, struct booted *b)
{
	char path[64], *text = NULL, needle[64];
	FILE *fp;
	size_t n = 0;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)b->h.pid);
	fp = fopen(path, "r");
	ASSERT_TRUE(fp != NULL);
	while (getline(&text, &n, fp) > 0) {
		unsigned r, e;

		if (sscanf(text, "Uid: %u %u", &r, &e) == 2) {
			ASSERT_EQ(r, f->uid);
			ASSERT_EQ(e, f->uid);
		}
	}
	fclose(fp);
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)b->h.pid);
	fp = fopen(path, "r");
	ASSERT_TRUE(fp != NULL);
	snprintf(needle, sizeof(needle), "/mvmfs/%s", f->name);
	bool in_cg = false;
	while (getline(&text, &n, fp) > 0)
		if (strstr(text, needle))
			in_cg = true;
	fclose(fp);
	free(text);
	if (b->h.cgroup[0][0])
		ASSERT_TRUE(in_cg);
	/* The limits are there (cgroup v1 on these machines): 2048 MiB + QEMU's overhead. */
	for (int i = 0; i < 4 && b->h.cgroup_version == 1 && b->h.cgroup[i][0]; i++) {
		char p2[sizeof(b->h.cgroup[0]) + 32], *v = NULL;

		snprintf(p2, sizeof(p2), "%s/memory.limit_in_bytes", b->h.cgroup[i]);
		if (read_file_bounded(p2, 64, &v, NULL) >= 0)
			ASSERT_STREQ(v, "2684354560\n");
		free(v);
		v = NULL;
		snprintf(p2, sizeof(p2), "%s/cpu.cfs_quota_us", b->h.cgroup[i]);
		if (read_file_bounded(p2, 64, &v, NULL) >= 0)
			ASSERT_STREQ(v, "200000\n");
		free(v);
	}
}

/* fds the "daemon" holds while it launches a VMM, none of them close-on-exec (the worst case:
 * libcurl's sockets were not): an established TCP connection (a live report connection), a
 * pipe, a host file. The VMM must hold none of them. */
struct sentinels {
	int fds[5];
	char links[5][64];
	int n;
};

static void sentinel_add(struct sentinels *sn, int fd)
{
	char path[64];
	ssize_t k;

	ASSERT_TRUE(fd >= 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	k = readlink(path, sn->links[sn->n], sizeof(sn->links[0]) - 1);
	ASSERT_TRUE(k > 0);
	sn->links[sn->n][k] = '\0';
	sn->fds[sn->n++] = fd;
}

static void sentinels_open(struct sentinels *sn)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int l, c, p[2];

	memset(sn, 0, sizeof(*sn));
	l = socket(AF_INET, SOCK_STREAM, 0);
	ASSERT_TRUE(l >= 0);
	ASSERT_OK(bind(l, (struct sockaddr *)&sa, sizeof(sa)));
	ASSERT_OK(listen(l, 1));
	ASSERT_OK(getsockname(l, (struct sockaddr *)&sa, &len));
	c = socket(AF_INET, SOCK_STREAM, 0);
	ASSERT_OK(connect(c, (struct sockaddr *)&sa, sizeof(sa)));
	sentinel_add(sn, c);
	sentinel_add(sn, accept(l, NULL, NULL));
	close(l);
	ASSERT_OK(pipe(p));
	sentinel_add(sn, p[0]);
	sentinel_add(sn, p[1]);
	sentinel_add(sn, open("/etc/hostname", O_RDONLY));
}

static void sentinels_close(struct sentinels *sn)
{
	for (int i = 0; i < sn->n; i++)
		close(sn->fds[i]);
}

/* The VMM's fds: only what it was given (0-2, the two listening sockets, the disks, the
 * console) and what QEMU opens itself in its sandbox (anonymous inodes, its own sockets and
 * pipes, the TAP, the guest's RAM file bound at /vm/ram). Anything of the daemon's is a
 * failure. */
static void check_fds(struct fixture *f, struct booted *b, const struct sentinels *sn)
{
	const char *allowed[] = {"/dev/null", "/dev/urandom", "/dev/net/tun", "/dev/kvm",
				 "/vm/ram",   f->rootfs,      f->data,	      f->console};
	char dir[64];
	DIR *d;
	struct dirent *de;
	int n = 0;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)b->h.pid);
	d = opendir(dir);
	ASSERT_TRUE(d != NULL);
	while ((de = readdir(d))) {
		char path[400], link[512];
		bool ok = false;
		ssize_t k;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		k = readlink(path, link, sizeof(link) - 1);
		if (k <= 0)
			continue;
		link[k] = '\0';
		n++;
		for (int i = 0; i < sn->n; i++)
			if (strcmp(link, sn->links[i]) == 0)
				TEST_FAIL("the VMM holds the daemon's fd %s -> %s", de->d_name,
					  link);
		ok = strncmp(link, "anon_inode:", 11) == 0 || strncmp(link, "socket:[", 8) == 0 ||
		     strncmp(link, "pipe:[", 6) == 0;
		for (size_t i = 0; i < ELEMENTSOF(allowed) && !ok; i++)
			ok = strcmp(link, allowed[i]) == 0;
		if (!ok)
			TEST_FAIL("unexpected fd of the VMM: %s -> %s", de->d_name, link);
	}
	closedir(d);
	printf("# the VMM holds %d fds, none of the daemon's\n", n);
}

/* The VMM's confinement: its credentials and seccomp, and a guest escape simulated by a shell
 * with the VMM's uid in its mount and network namespaces (nsenter + setpriv; a shell cannot
 * take over QEMU's seccomp filter, which /proc shows in force instead): it sees only the
 * sandbox root, no host file, no /proc, and can write nowhere. */
static void check_confined(struct fixture *f, struct booted *b)
{
	char path[64], *text = NULL, out[4096], canary[256];
	const char *want[][2] = {{"NoNewPrivs:", "1"},
				 {"Seccomp:", "2"},
				 {"CapInh:", "0000000000000000"},
				 {"CapPrm:", "0000000000000000"},
				 {"CapEff:", "0000000000000000"},
				 {"CapBnd:", "0000000000000000"},
				 {"CapAmb:", "0000000000000000"},
				 {"Groups:", ""}};
	bool seen[ELEMENTSOF(want)] = {0};
	size_t n = 0;
	FILE *fp;
	int r;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)b->h.pid);
	fp = fopen(path, "r");
	ASSERT_TRUE(fp != NULL);
	while (getline(&text, &n, fp) > 0) {
		text[strcspn(text, "\n")] = '\0';
		for (size_t i = 0; i < ELEMENTSOF(want); i++) {
			size_t l = strlen(want[i][0]);
			const char *v = text + l;

			if (strncmp(text, want[i][0], l) != 0)
				continue;
			while (*v == ' ' || *v == '\t')
				v++;
			if (strcmp(v, want[i][1]) != 0)
				TEST_FAIL("VMM %s '%s', want '%s'", want[i][0], v, want[i][1]);
			seen[i] = true;
		}
	}
	fclose(fp);
	free(text);
	for (size_t i = 0; i < ELEMENTSOF(want); i++)
		if (!seen[i])
			TEST_FAIL("no %s line in %s", want[i][0], path);
	if (!have("nsenter") || !have("setpriv")) {
		printf("# nsenter/setpriv missing: no escape simulation\n");
		return;
	}
	snprintf(canary, sizeof(canary), "%s/canary", f->dir);
	ASSERT_OK(write_file_atomic(canary, "secret", 6, 0644));
	r = sh_out(out, sizeof(out),
		   "nsenter -t %d -m -n setpriv --reuid %u --regid %u --clear-groups "
		   "--no-new-privs --inh-caps=-all --bounding-set=-all /bin/sh -c '"
		   "echo root: $(ls / | tr \"\\n\" \" \"); "
		   "cat %s 2>/dev/null && echo CANARY-READ; "
		   "ls %s 2>/dev/null && echo HOST-DIR-SEEN; "
		   "ls /proc/1 >/dev/null 2>&1 && echo PROC-SEEN; "
		   "ls /tmp /root /home /var /srv /work >/dev/null 2>&1 && echo HOST-SEEN; "
		   "cat /etc/passwd /etc/shadow 2>/dev/null && echo ETC-READ; "
		   "touch /x /vm/x /dev/x /usr/x 2>/dev/null && echo WROTE; "
		   "ip -o link 2>/dev/null | grep -q \" tap0\" && echo NETNS-OK; "
		   "echo done'",
		   (int)b->h.pid, (unsigned)f->uid, (unsigned)f->uid, canary, f->dir);
	printf("# escape shell (exit %d): %s", r, out);
	ASSERT_TRUE(strstr(out, "done") != NULL);
	ASSERT_TRUE(strstr(out, "root: bin dev etc lib") != NULL);
	ASSERT_TRUE(strstr(out, " usr vm\n") != NULL);
	ASSERT_TRUE(strstr(out, "CANARY-READ") == NULL);
	ASSERT_TRUE(strstr(out, "HOST-DIR-SEEN") == NULL);
	ASSERT_TRUE(strstr(out, "PROC-SEEN") == NULL);
	ASSERT_TRUE(strstr(out, "HOST-SEEN") == NULL);
	ASSERT_TRUE(strstr(out, "ETC-READ") == NULL);
	ASSERT_TRUE(strstr(out, "WROTE") == NULL);
}

static void test_boot_http_log_stop(void)
{
	struct fixture f = {0};
	struct booted b = {0};
	struct agent_status s;
	struct vmm_exit ex;
	enum vmm_run_state st;
	struct err err = {};
	char page[512], buf[256];
	struct sentinels sn;

	fixture_setup(&f, "a");
	sentinels_open(&sn);
	boot(&f, &b, page, sizeof(page));
	printf("# vmm %.2fs, hello +%.2fs, app +%.2fs, http +%.2fs (total %.2fs)\n",
	       b.t_vmm - b.t_start, b.t_hello - b.t_vmm, b.t_app - b.t_hello, b.t_http - b.t_app,
	       b.t_http - b.t_start);
	printf("# page: %s", page);
	ASSERT_TRUE(strstr(page, "greeting=hello-env") != NULL);
	ASSERT_TRUE(strstr(page, "workdir=/srv") != NULL);
	ASSERT_TRUE(strstr(page, "user=1000:1000 groups=1000 2000 name=app") != NULL);
	ASSERT_OK(vmm_qemu_ops.query(b.priv, &b.h, &st, &err));
	ASSERT_EQ(st, VMM_RUN_RUNNING);
	check_process(&f, &b);
	check_fds(&f, &b, &sn);
	sentinels_close(&sn);
	check_confined(&f, &b);
	agent_get_status(b.agent, &s);
	ASSERT_TRUE(s.net_configured);
	ASSERT_STREQ(s.net_addr, ADDR "/64");
	ASSERT_EQ(s.app, AGENT_APP_RUNNING);
	ASSERT_TRUE(log_has(b.agent, "[stdout] app: serving on 8080\n", 3000));
	agent_format_health_agent(&s, buf, sizeof(buf));
	ASSERT_TRUE(strncmp(buf, "ok ", 3) == 0);

	/* The host goes away and comes back (daemon restart): the agent reopens its port and
	 * replays its state to the new client. */
	uint32_t pid = s.app_pid;
	b.agent = agent_free(b.agent);
	usleep(300000);
	{
		struct agent_config ac = {.transport = AGENT_TRANSPORT_SERIAL,
					  .socket_path = b.h.agent_socket,
					  .heartbeat_ms = 500};
		ASSERT_OK(agent_start(&ac, &b.agent));
	}
	ASSERT_OK(agent_wait(b.agent, p_app, NULL, 10000));
	agent_get_status(b.agent, &s);
	ASSERT_EQ(s.app, AGENT_APP_RUNNING);
	ASSERT_EQ(s.app_pid, pid);

	/* Graceful stop through the agent: SIGTERM handler, exit code, power-off, QEMU exits 0. */
	ASSERT_OK(agent_stop_request(b.agent, 3000));
	ASSERT_OK(agent_wait(b.agent, p_exited, NULL, 10000));
	agent_get_status(b.agent, &s);
	ASSERT_EQ(s.exit_code, 42);
	ASSERT_TRUE(log_has(b.agent, "[stdout] app: got SIGTERM\n", 3000));
	ASSERT_OK(wait_vmm_exit(&b, 10000, &ex));
	ASSERT_TRUE(ex.known);
	ASSERT_EQ(ex.signal, 0);
	ASSERT_EQ(ex.code, 0);
	ASSERT_TRUE(s.shutdown || log_has(b.agent, "shutting down", 1000));
	shutdown_booted(&f, &b);
	fixture_teardown(&f);
}

/* The VMM-level stop (QMP system_powerdown -> ACPI button -> agent) also runs the handler. */
static void test_powerdown_button(void)
{
	struct fixture f = {0};
	struct booted b = {0};
	struct agent_status s;
	struct vmm_exit ex;
	struct err err = {};
	char page[512];

	fixture_setup(&f, "b");
	boot(&f, &b, page, sizeof(page));
	ASSERT_TRUE(strstr(page, "greeting=hello-env") != NULL);
	if (vmm_qemu_ops.request_stop(b.priv, &b.h, &err) < 0)
		TEST_FAIL("request_stop: %s", err.msg);
	ASSERT_OK(agent_wait(b.agent, p_exited, NULL, 10000));
	agent_get_status(b.agent, &s);
	ASSERT_EQ(s.exit_code, 42);
	ASSERT_TRUE(log_has(b.agent, "stop requested (power button)", 3000));
	ASSERT_OK(wait_vmm_exit(&b, 10000, &ex));
	ASSERT_EQ(ex.code, 0);
	shutdown_booted(&f, &b);
	fixture_teardown(&f);
}

/* A guest that fills its RAM meets its own OOM killer: the memory hog in the guest is killed,
 * QEMU (limited to the guest's RAM plus its allowance) keeps running and the app keeps
 * answering. */
static void test_guest_oom(void)
{
	struct fixture f = {0};
	struct booted b = {0};
	enum vmm_run_state st;
	struct err err = {};
	char page[512], path[VMM_DIR_MAX + 64], *v = NULL;
	bool killed;

	fixture_setup(&f, "c");
	f.app_json = HOG_JSON;
	f.mem_mib = 256;
	boot(&f, &b, page, sizeof(page));
	killed = log_has(b.agent, "hog: dd exit 137", 60000);
	sh("grep -a -m2 -i 'out of memory\\|oom' %s | sed 's/^/# /'", f.console);
	if (!killed) {
		sh("tail -5 %s", f.console);
		TEST_FAIL("the guest's OOM killer did not end the hog (no 'hog: dd exit 137')");
	}
	ASSERT_OK(vmm_qemu_ops.query(b.priv, &b.h, &st, &err));
	ASSERT_EQ(st, VMM_RUN_RUNNING);
	ASSERT_EQ(curl_page(&f, page, sizeof(page)), 0);
	for (int i = 0; i < 4 && b.h.cgroup_version == 1 && b.h.cgroup[i][0]; i++) {
		snprintf(path, sizeof(path), "%s/memory.max_usage_in_bytes", b.h.cgroup[i]);
		if (read_file_bounded(path, 64, &v, NULL) >= 0)
			printf("# QEMU cgroup peak %llu MiB of a (256 + 512) MiB limit\n",
			       strtoull(v, NULL, 10) >> 20);
		free(v);
		v = NULL;
	}
	shutdown_booted(&f, &b);
	fixture_teardown(&f);
}

/* A launch that QEMU refuses fails with QEMU's own words, and cleanup leaves nothing. */
static void test_launch_failure_message_and_cleanup(void)
{
	char dir[] = "/tmp/test-vm-fail.XXXXXX", rootfs[128], console[128];
	struct runtime_config cfg = {.state_dir = dir, .vcpus = 2, .mem_mib = 256};
	struct vmm_launch p = {0};
	struct vmm_handle h;
	struct err err = {};
	struct stat st;
	void *priv = NULL;
	int fd;

	if (geteuid() != 0)
		test_skip("needs root (cgroups, mount namespace, uid switch)");
	if (!have("qemu-system-x86_64"))
		test_skip("qemu-system-x86_64 missing");
	ASSERT_TRUE(mkdtemp(dir) != NULL);
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs.ext4", dir);
	snprintf(console, sizeof(console), "%s/console.log", dir);
	fd = open(rootfs, O_WRONLY | O_CREAT, 0644);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(ftruncate(fd, 1 << 20));
	close(fd);
	if (vmm_qemu_ops.init(&cfg, &priv, &err) < 0)
		TEST_FAIL("init: %s", err.msg);
	vmm_handle_init(&h);
	p.name = "gtfail";
	p.uid = p.gid = 41999;
	p.kernel = "/nonexistent/vmlinux";
	p.rootfs = rootfs;
	p.vcpus = 2;
	p.mem_mib = 256;
	p.console_log = console;
	/* A missing kernel is found before anything is spawned. */
	ASSERT_ERRNO(vmm_qemu_ops.launch(priv, &p, &h, &err), ENOENT);
	printf("# %s\n", err.msg);
	ASSERT_TRUE(strstr(err.msg, "/nonexistent/vmlinux") != NULL);
	ASSERT_EQ(h.pid, 0);
	vmm_qemu_ops.cleanup(priv, p.name, &h);
	/* A kernel QEMU cannot load (zeros, with an initrd): QEMU's own message from inside its
	 * sandbox. */
	vmm_handle_init(&h);
	p.kernel = rootfs;
	p.initrd = rootfs;
	ASSERT_ERRNO(vmm_qemu_ops.launch(priv, &p, &h, &err), EIO);
	printf("# %s\n", err.msg);
	ASSERT_TRUE(strstr(err.msg, "QEMU exited (exit code 1)") != NULL);
	ASSERT_TRUE(strstr(err.msg, "kernel") != NULL);
	vmm_qemu_ops.cleanup(priv, p.name, &h);
	snprintf(rootfs, sizeof(rootfs), "%s/qemu/gtfail", dir);
	ASSERT_TRUE(stat(rootfs, &st) < 0);
	ASSERT_TRUE(stat("/sys/fs/cgroup/cpu/mvmfs/gtfail", &st) < 0);
	ASSERT_TRUE(stat("/sys/fs/cgroup/memory/mvmfs/gtfail", &st) < 0);
	vmm_qemu_ops.free(priv);

	/* cgroup limits fail closed: a hierarchy the host does not run (v2 with cpu and memory
	 * on these v1 machines) -> the backend still initialises, but no VM starts, with EIO
	 * and the reason, and nothing is spawned. */
	if (stat("/sys/fs/cgroup/memory/memory.limit_in_bytes", &st) == 0) {
		cfg.cgroup_version = 2;
		ASSERT_OK(vmm_qemu_ops.init(&cfg, &priv, &err));
		vmm_handle_init(&h);
		p.initrd = NULL;
		snprintf(rootfs, sizeof(rootfs), "%s/rootfs.ext4", dir);
		p.kernel = rootfs;
		ASSERT_ERRNO(vmm_qemu_ops.launch(priv, &p, &h, &err), EIO);
		printf("# %s\n", err.msg);
		ASSERT_TRUE(strstr(err.msg, "cgroup limits cannot be applied") != NULL);
		ASSERT_EQ(h.pid, 0);
		vmm_qemu_ops.cleanup(priv, p.name, &h);
		vmm_qemu_ops.free(priv);
	} else {
		printf("# no cgroup v1 memory hierarchy: the fail-closed case is not checked\n");
	}
	sh("rm -rf %s", dir);
}

/* The bare QEMU command line (plus the data disk the overlay needs) booting the
 * same kernel and initramfs: seconds from exec to the app answering HTTP. */
static double bare_boot(struct fixture *f)
{
	char cmd[4096], page[512];
	double t0, t1 = 0;
	pid_t pid;

	write_initrd(f);
	snprintf(cmd, sizeof(cmd),
		 "KHZ=$(awk -F: '/^cpu MHz/{printf \"%%d\",$2*1000; exit}' /proc/cpuinfo); "
		 "exec ip netns exec %s qemu-system-x86_64 -accel tcg -M microvm -cpu max -smp 1 "
		 "-m 256 -nodefaults -nographic -no-reboot -serial file:%s/bare-console.log "
		 "-kernel %s -initrd %s "
		 "-drive file=%s,format=raw,if=none,id=d0,cache=unsafe,readonly=on "
		 "-device virtio-blk-device,drive=d0,serial=root "
		 "-drive file=%s,format=raw,if=none,id=d1,cache=unsafe "
		 "-device virtio-blk-device,drive=d1,serial=data "
		 "-netdev tap,id=n0,ifname=tap0,script=no,downscript=no "
		 "-device virtio-net-device,netdev=n0,mac=02:00:00:00:00:10 "
		 "-append \"console=ttyS0 rdinit=/init panic=-1 quiet tsc_early_khz=$KHZ "
		 "tsc=reliable mitigations=off cryptomgr.notests\"",
		 f->netns, f->dir, f->kernel, f->initrd, f->rootfs, f->data);
	t0 = now_s();
	pid = fork();
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1000; i++) {
		if (curl_page(f, page, sizeof(page)) == 0) {
			t1 = now_s();
			break;
		}
		usleep(20000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return t1 ? t1 - t0 : -1;
}

/* bench/vm-boot: N boots, phase timings, graceful stop time, QEMU RSS. */
/* Booted templates on real QEMU (docs/template.md): a template guest boots with a template's
 * vm.json and waits for its identity; it is saved as suspend saves a VM (the RAM in its file,
 * the device state streamed with x-ignore-shared) and its QEMU killed. Each clone gets a sparse
 * copy of the template's RAM and state in its own dir, is restored by the backend's restore
 * path with its own data disk copy, TAP and console, and is handed its identity by the host
 * client: its app then answers with its own hostname, MAC, environment and random bytes. A
 * clone then suspends and resumes with suspend's own save and restore. */
#define CLONE_APP(who)                                                             \
	"{\"entrypoint\":[\"/bin/sh\",\"-c\"],\"cmd\":[\"mkdir -p /tmp/www; echo " \
	"\\\"name=$(hostname) "                                                    \
	"mac=$(cat /sys/class/net/eth0/address) who=$WHO "                         \
	"rnd=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\\\n') "           \
	"boot=$(cat /proc/sys/kernel/random/boot_id)\\\" > /tmp/www/index.html; "  \
	"exec httpd -f -p 8080 -h /tmp/www\"],\"env\":[\"WHO=" who "\",\"PATH=/bin\"]}"

static bool p_identity_waiting(const struct agent_status *s, void *ud)
{
	(void)ud;
	return s->connected && s->identity_waiting;
}

/* The template: booted, waiting for its identity, saved into tdir (state + ram), QEMU gone. */
static void template_build(struct fixture *f, const char *tdir, double *t_boot)
{
	struct guest_config gc = {
		.template = true, .transport = AGENT_TRANSPORT_SERIAL, .heartbeat_ms = 500};
	struct runtime_config cfg = {.state_dir = f->dir, .vcpus = 2, .mem_mib = 2048};
	struct vmm_launch p = {0};
	struct agent_config ac = {0};
	struct agent *a = NULL;
	struct vmm_handle h;
	struct vmm_exit ex;
	struct err err = {};
	char path[300], to[300], initrd[200];
	void *priv = NULL;
	double t0 = now_s();

	snprintf(initrd, sizeof(initrd), "%s/template-initrd", f->dir);
	if (guest_config_write_initrd(&gc, f->base_initrd, initrd, &err) < 0)
		TEST_FAIL("template initrd: %s", err.msg);
	ASSERT_OK(mkdir(tdir, 0700));
	if (vmm_qemu_ops.init(&cfg, &priv, &err) < 0)
		TEST_FAIL("qemu init: %s", err.msg);
	vmm_handle_init(&h);
	p = (struct vmm_launch){.name = f->name,
				.uid = f->uid,
				.gid = f->uid,
				.netns_path = f->netns_path,
				.tap_name = "tap0",
				.mac = "02:00:00:00:00:99",
				.kernel = f->kernel,
				.initrd = initrd,
				.rootfs = f->rootfs,
				.data_disk = f->data,
				.vcpus = 2,
				.mem_mib = 2048,
				.run_dir = tdir,
				.console_log = f->console};
	if (vmm_qemu_ops.launch(priv, &p, &h, &err) < 0)
		TEST_FAIL("template launch: %s", err.msg);
	ac = (struct agent_config){.transport = AGENT_TRANSPORT_SERIAL,
				   .socket_path = h.agent_socket,
				   .heartbeat_ms = 500};
	ASSERT_OK(agent_start(&ac, &a));
	if (agent_wait(a, p_identity_waiting, NULL, 30000) < 0) {
		sh("tail -20 %s", f->console);
		TEST_FAIL("the template never said IDENTITY_WAIT");
	}
	*t_boot = now_s() - t0;
	snprintf(path, sizeof(path), "%s/suspend", tdir);
	if (vmm_qemu_ops.pause(priv, &h, &err) < 0 ||
	    vmm_qemu_ops.save(priv, f->name, &h, path, &err) < 0)
		TEST_FAIL("template save: %s", err.msg);
	a = agent_free(a);
	vmm_qemu_ops.kill(priv, &h);
	{
		struct pollfd pf = {.fd = h.pidfd, .events = POLLIN};

		ASSERT_TRUE(poll(&pf, 1, 5000) == 1);
		vmm_handle_reap(&h, &ex);
	}
	vmm_qemu_ops.cleanup(priv, f->name, &h);
	vmm_qemu_ops.free(priv);
	snprintf(path, sizeof(path), "%s/suspend/state.tmp", tdir);
	snprintf(to, sizeof(to), "%s/suspend/state", tdir);
	ASSERT_OK(rename(path, to));
}

/* The files of clone name: its run dir, the suspend dir it restores from, its data disk, and the
 * template's initrd it boots with. */
struct clone_paths {
	char dir[200], sdir[220], data[220], initrd[200];
};

static void clone_paths(struct fixture *f, const char *name, struct clone_paths *cp)
{
	snprintf(cp->dir, sizeof(cp->dir), "%s/%s", f->dir, name);
	snprintf(cp->sdir, sizeof(cp->sdir), "%s/suspend", cp->dir);
	snprintf(cp->data, sizeof(cp->data), "%s/data.ext4", cp->dir);
	snprintf(cp->initrd, sizeof(cp->initrd), "%s/template-initrd", f->dir);
}

/* Launches clone name (mac) restored from cp->sdir into b: the backend's launch result. */
static int clone_launch(struct fixture *f, const char *name, const char *mac,
			const struct clone_paths *cp, struct booted *b, struct err *err)
{
	struct vmm_launch p = {.name = name,
			       .uid = f->uid,
			       .gid = f->uid,
			       .netns_path = f->netns_path,
			       .tap_name = "tap0",
			       .mac = mac,
			       .kernel = f->kernel,
			       .initrd = cp->initrd,
			       .rootfs = f->rootfs,
			       .data_disk = cp->data,
			       .vcpus = 2,
			       .mem_mib = 2048,
			       .run_dir = cp->dir,
			       .console_log = f->console,
			       .restore_dir = cp->sdir};

	return vmm_qemu_ops.launch(b->priv, &p, &b->h, err);
}

/* One clone: the template's saved state and RAM copied (sparse) into its own dir, a copy of
 * the template's writable disk, restored, handed its identity; returns its page. */
static void clone_start(struct fixture *f, const char *tdir, const char *name, const char *addr,
			const char *mac, const char *app, struct booted *b, char *page,
			size_t pagesz)
{
	struct guest_config gc = {.name = name,
				  .prefix_len = 64,
				  .mac = mac,
				  .image_config_json = app,
				  .transport = AGENT_TRANSPORT_SERIAL,
				  .heartbeat_ms = 500,
				  .grace_ms = 3000};
	struct agent_config ac = {0};
	struct clone_paths cp;
	struct err err = {};
	char *identity = NULL;

	clone_paths(f, name, &cp);
	inet_pton(AF_INET6, addr, &gc.addr);
	inet_pton(AF_INET6, GW, &gc.gateway);
	ASSERT_OK(guest_config_json(&gc, &identity, &err));
	b->cfg = (struct runtime_config){.state_dir = f->dir, .vcpus = 2, .mem_mib = 2048};
	if (vmm_qemu_ops.init(&b->cfg, &b->priv, &err) < 0)
		TEST_FAIL("qemu init: %s", err.msg);
	vmm_handle_init(&b->h);
	b->t_start = now_s();
	ASSERT_EQ(sh("set -e; mkdir -p %s; cp --sparse=always %s/suspend/ram %s/suspend/state %s/; "
		     "cp --sparse=always %s %s",
		     cp.sdir, tdir, tdir, cp.sdir, f->data, cp.data),
		  0);
	if (clone_launch(f, name, mac, &cp, b, &err) < 0) {
		sh("tail -5 %s", f->console);
		TEST_FAIL("clone launch: %s", err.msg);
	}
	b->t_vmm = now_s();
	ac = (struct agent_config){.transport = AGENT_TRANSPORT_SERIAL,
				   .socket_path = b->h.agent_socket,
				   .heartbeat_ms = 500,
				   .identity = identity,
				   .identity_len = strlen(identity)};
	ASSERT_OK(agent_start(&ac, &b->agent));
	free(identity);
	if (agent_wait(b->agent, p_app, NULL, 20000) < 0) {
		sh("tail -20 %s", f->console);
		TEST_FAIL("clone %s: no app within 20 s", name);
	}
	b->t_app = now_s();
	for (int i = 0; i < 200; i++) {
		if (curl_addr(f, addr, page, pagesz) == 0)
			break;
		usleep(20000);
	}
	b->t_http = now_s();
}

static void clone_stop(struct fixture *f, const char *name, struct booted *b)
{
	struct vmm_exit ex;

	if (b->h.pidfd >= 0) {
		vmm_qemu_ops.kill(b->priv, &b->h);
		wait_vmm_exit(b, 5000, &ex);
	}
	b->agent = agent_free(b->agent);
	vmm_qemu_ops.cleanup(b->priv, name, &b->h);
	vmm_qemu_ops.free(b->priv);
}

/* A clone is an ordinary QEMU VM of this runtime: its RAM is in its own file, so suspend's
 * save and restore work on it unchanged; the app answers the same page afterwards. */
static void clone_suspend_restore(struct fixture *f, const char *name, const char *addr,
				  const char *mac, struct booted *b, const char *page)
{
	struct agent_config ac = {0};
	struct clone_paths cp;
	struct vmm_exit ex;
	struct err err = {};
	char from[240], to[240], again[512] = "";

	clone_paths(f, name, &cp);
	if (vmm_qemu_ops.pause(b->priv, &b->h, &err) < 0 ||
	    vmm_qemu_ops.save(b->priv, name, &b->h, cp.sdir, &err) < 0)
		TEST_FAIL("suspending the clone: %s", err.msg);
	b->agent = agent_free(b->agent);
	vmm_qemu_ops.kill(b->priv, &b->h);
	wait_vmm_exit(b, 5000, &ex);
	vmm_qemu_ops.cleanup(b->priv, name, &b->h);
	snprintf(from, sizeof(from), "%s/state.tmp", cp.sdir);
	snprintf(to, sizeof(to), "%s/state", cp.sdir);
	ASSERT_OK(rename(from, to));
	vmm_handle_init(&b->h);
	if (clone_launch(f, name, mac, &cp, b, &err) < 0)
		TEST_FAIL("restoring the suspended clone: %s", err.msg);
	ac = (struct agent_config){.transport = AGENT_TRANSPORT_SERIAL,
				   .socket_path = b->h.agent_socket,
				   .heartbeat_ms = 500};
	ASSERT_OK(agent_start(&ac, &b->agent));
	for (int i = 0; i < 200 && curl_addr(f, addr, again, sizeof(again)) < 0; i++)
		usleep(20000);
	ASSERT_STREQ(again, page);
}

static void test_template_clones(void)
{
	struct fixture f = {0};
	struct booted a = {0}, c = {0};
	struct agent_status s;
	char tdir[200], na[40], nc[40], pa[512], pc[512], *ra, *rc, *ba, *bc;
	double t_boot;

	fixture_setup(&f, "tp");
	snprintf(tdir, sizeof(tdir), "%s/template", f.dir);
	template_build(&f, tdir, &t_boot);
	snprintf(na, sizeof(na), "%s-a", f.name);
	snprintf(nc, sizeof(nc), "%s-b", f.name);

	clone_start(&f, tdir, na, "fd42:feed::21", "02:00:00:00:00:21", CLONE_APP("clone-a"), &a,
		    pa, sizeof(pa));
	agent_get_status(a.agent, &s);
	ASSERT_EQ(s.identity_error, 0);
	ASSERT_EQ(s.boots_seen, 1);
	printf("# template boot to IDENTITY_WAIT %.2f s; clone a: copy+restore %.3f s, to app "
	       "%.3f s, to HTTP %.3f s\n# a: %s",
	       t_boot, a.t_vmm - a.t_start, a.t_app - a.t_start, a.t_http - a.t_start, pa);
	clone_suspend_restore(&f, na, "fd42:feed::21", "02:00:00:00:00:21", &a, pa);
	clone_stop(&f, na, &a);

	clone_start(&f, tdir, nc, "fd42:feed::22", "02:00:00:00:00:22", CLONE_APP("clone-b"), &c,
		    pc, sizeof(pc));
	printf("# clone b: to HTTP %.3f s\n# b: %s", c.t_http - c.t_start, pc);
	clone_stop(&f, nc, &c);

	/* Each its own hostname, MAC, environment; different random streams; one boot id (the
	 * template's kernel booted once: a difference by design). */
	{
		char want[128];

		snprintf(want, sizeof(want), "name=%s mac=02:00:00:00:00:21 who=clone-a rnd=", na);
		ASSERT_TRUE(strstr(pa, want) != NULL);
		snprintf(want, sizeof(want), "name=%s mac=02:00:00:00:00:22 who=clone-b rnd=", nc);
		ASSERT_TRUE(strstr(pc, want) != NULL);
	}
	ra = strstr(pa, "rnd=");
	rc = strstr(pc, "rnd=");
	ba = strstr(pa, "boot=");
	bc = strstr(pc, "boot=");
	ASSERT_TRUE(ra && rc && ba && bc);
	ASSERT_TRUE(ba - ra == 4 + 32 + 1 && bc - rc == 4 + 32 + 1); /* 16 random bytes each */
	ASSERT_TRUE(memcmp(ra, rc, 4 + 32) != 0);
	ASSERT_STREQ(ba, bc);
	/* The template's files are untouched by the clones (each restored its own copy). */
	{
		char path[300];
		struct stat st;

		snprintf(path, sizeof(path), "%s/suspend/state", tdir);
		ASSERT_OK(stat(path, &st));
	}
	fixture_teardown(&f);
}

static int bench(int runs)
{
	for (int i = 0; i < runs; i++) {
		struct fixture f = {0};

		fixture_setup(&f, "bare");
		printf("bare %d: exec->http %.3f\n", i + 1, bare_boot(&f));
		fflush(stdout);
		fixture_teardown(&f);
	}
	for (int i = 0; i < runs; i++) {
		struct fixture f = {0};
		struct booted b = {0};
		struct vmm_exit ex;
		char page[512];
		long rss_kb;
		double t0, t1;

		fixture_setup(&f, "bench");
		boot(&f, &b, page, sizeof(page));
		if (!strstr(page, "greeting=hello-env"))
			TEST_FAIL("app did not answer");
		rss_kb = proc_rss_kb(b.h.pid);
		t0 = now_s();
		agent_stop_request(b.agent, 3000);
		wait_vmm_exit(&b, 15000, &ex);
		t1 = now_s();
		printf("run %d: initrd+vmm %.3f kernel->hello %.3f hello->app %.3f "
		       "app->http %.3f total %.3f stop %.3f rss_mib %.0f qemu_cpu->hello %.2f\n",
		       i + 1, b.t_vmm - b.t_start, b.t_hello - b.t_vmm, b.t_app - b.t_hello,
		       b.t_http - b.t_app, b.t_http - b.t_start, t1 - t0, (double)rss_kb / 1024.0,
		       b.cpu_hello);
		fflush(stdout);
		shutdown_booted(&f, &b);
		fixture_teardown(&f);
	}
	return 0;
}

int main(void)
{
	static const struct test_case cases[] = {
		TEST(test_boot_http_log_stop), TEST(test_powerdown_button),
		TEST(test_guest_oom),	       TEST(test_launch_failure_message_and_cleanup),
		TEST(test_template_clones),
	};
	const char *b = getenv("MVMFS_VM_BENCH");
	uint32_t runs = 3;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (b) {
		if (parse_u32(b, &runs) < 0 || runs == 0)
			runs = 3;
		return bench((int)runs);
	}
	return test_run(cases, ELEMENTSOF(cases));
}
