/* SPDX-License-Identifier: MIT */
/*
 * Two real VMs (daemon, --vmm qemu, one registry image) and their network, proven with packets
 * sent from inside the guests. The app serves HTTP on 8080
 * and a CGI, /cgi-bin/probe?OP,ADDR,ARG, that runs busybox ping6 / wget / ip in the guest and
 * answers "rc=N" and the output. Checked:
 *   - each guest reaches the gateway (ping6) and a host beyond it (TCP, a routed netns "ext");
 *   - neither guest reaches the other (ping6, TCP 8080), on the link or routed via the gateway
 *     (a /128 route via the gateway in the guest; the host's noreflect rule counts the drops);
 *   - the host reaches both apps; health says the guest configured its address;
 *   - after stop + rmdir nothing of either VM is left (netns, links, nft chains, dirs, QEMU).
 * Both VMs start from the node's booted template (one boot: A's start builds it).
 * Runs in its own PID, network and mount namespaces.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon-vm.h"
#include "macro.h"
#include "sys.h"
#include "test.h"

#define GW "fd42:7e5::1"
#define EXT "fd99::2"

/* VM names carry the temp dir's suffix: cgroups are host-wide, and another run of this test
 * (another build dir) may be going on at the same time. */
static char T[64], MNT[128], NA[32], NB[32];

static bool wait_health(const char *vm, const char *word, unsigned timeout_ms)
{
	char dir[256];

	snprintf(dir, sizeof(dir), "%s/vms/%s", MNT, vm);
	return dvm_wait_health(dir, word, timeout_ms);
}

/* Wait for state to read want, woken by poll() (POLLPRI) as a client would:
 * what it does next (rmdir) must be allowed the moment it sees the state. */
static bool wait_state(const char *vm, const char *want, unsigned timeout_ms)
{
	double end = now_s() + timeout_ms / 1000.0;
	char p[256], buf[64] = "";
	bool ok = false;
	int fd;

	snprintf(p, sizeof(p), "%s/vms/%s/state", MNT, vm);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	do {
		struct pollfd pfd = {.fd = fd, .events = POLLPRI};
		ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		ok = strcmp(buf, want) == 0;
		if (!ok)
			(void)poll(&pfd, 1, 200);
	} while (!ok && now_s() < end);
	close(fd);
	if (!ok)
		printf("# state of %s: %s, not %s\n", vm, buf, want);
	return ok;
}

/* GET http://[ip]:8080/path from the host (this test's network namespace). */
static int http_get(const char *ip, const char *path, char *page, size_t size)
{
	return sh_out(page, size, "curl -sf -g -m 12 'http://[%s]:8080/%s' 2>/dev/null", ip, path);
}

/* A probe run inside the guest at `from` through its CGI: rc is the probe's exit code (the
 * "rc=" line), -1 when the CGI did not answer; out its output. */
struct probe {
	const char *from, *op, *dst, *arg;
	unsigned secs; /* a ping or wget is killed after that long; 0: 3 s */
	int rc;
	char out[512];
	FILE *p;
};

/* Run the probes concurrently (a failing probe waits for its timeout: a few seconds). */
static void probes_run(struct probe *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char cmd[512];

		snprintf(cmd, sizeof(cmd),
			 "curl -sf -g -m 20 'http://[%s]:8080/cgi-bin/probe?%s,%s,%s,%u' "
			 "2>/dev/null",
			 v[i].from, v[i].op, v[i].dst, v[i].arg, v[i].secs ? v[i].secs : 3);
		v[i].p = popen(cmd, "r");
		ASSERT_TRUE(v[i].p != NULL);
	}
	for (size_t i = 0; i < n; i++) {
		char page[1024];
		const char *nl;
		size_t len = fread(page, 1, sizeof(page) - 1, v[i].p);
		int st = pclose(v[i].p);

		page[len] = '\0';
		v[i].rc = -1;
		if (st != 0 || sscanf(page, "rc=%d", &v[i].rc) != 1) {
			printf("# probe %s %s %s from %s: no answer: %s\n", v[i].op, v[i].dst,
			       v[i].arg, v[i].from, page);
			v[i].rc = -1;
		}
		nl = strchr(page, '\n');
		snprintf(v[i].out, sizeof(v[i].out), "%s", nl ? nl + 1 : "");
		printf("# probe from %s: %s %s %s -> rc=%d %.*s\n", v[i].from, v[i].op, v[i].dst,
		       v[i].arg, v[i].rc, (int)strcspn(v[i].out, "\n"), v[i].out);
	}
}

/* Packets the host's noreflect rule of tvbr0 (routed from the bridge back into it) dropped. */
static long noreflect_drops(void)
{
	char out[256];

	if (sh_out(out, sizeof(out),
		   "nft list chain inet mvmfs noreflect_tvbr0 | "
		   "sed -nE 's/.*counter packets ([0-9]+).*/\\1/p' | head -1") != 0 ||
	    !out[0])
		return -1;
	return strtol(out, NULL, 10);
}

/* The CGI: OP,ADDR,ARG[,SECONDS] in QUERY_STRING; only hex, ':' and '.' get through to the
 * commands. (busybox 1.35 wget -T segfaults: timeout(1) bounds it instead.) */
static const char probe_cgi[] =
	"#!/bin/sh\n"
	"printf 'Content-Type: text/plain\\r\\n\\r\\n'\n"
	"IFS=,\n"
	"set -- $QUERY_STRING\n"
	"IFS=' '\n"
	"op=$1 dst=$2 arg=$3 t=${4:-3}\n"
	"case \"$dst$arg\" in *[!0-9a-fA-F:.]*) echo rc=2; echo bad query; exit 0;; esac\n"
	"case \"$t\" in *[!0-9]*) echo rc=2; echo bad timeout; exit 0;; esac\n"
	"case $op in\n"
	"ping) out=$(timeout $t ping6 -c 1 -W $t \"$dst\" 2>&1); rc=$? ;;\n"
	"tcp) out=$(timeout $t wget -q -O - \"http://[$dst]:$arg/\" 2>&1); rc=$? ;;\n"
	"via) echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_redirects && "
	"ip -6 route replace \"$dst/128\" via \"$arg\" dev eth0 && "
	"out=$(ip -6 route get \"$dst\" 2>&1); rc=$? ;;\n"
	"unvia) out=$(ip -6 route del \"$dst/128\" 2>&1); rc=$? ;;\n"
	"show) out=$(ip -6 addr show dev eth0; ip -6 route show); rc=$? ;;\n"
	"*) out='unknown op'; rc=2 ;;\n"
	"esac\n"
	"echo rc=$rc\n"
	"echo \"$out\"\n";

static const char app_sh[] = "#!/bin/sh\n"
			     "mkdir -p /srv/www/cgi-bin\n"
			     "cp /srv/probe /srv/www/cgi-bin/probe\n"
			     "echo \"app on $(hostname)\" > /srv/www/index.html\n"
			     "echo app: serving on 8080\n"
			     "exec httpd -f -p 8080 -h /srv/www\n";

static int write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
	char p[256];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	f = fopen(p, "we");
	if (!f)
		return -errno;
	fputs(text, f);
	if (fclose(f) != 0)
		return -errno;
	return chmod(p, mode) < 0 ? -errno : 0;
}

/* Image app:1 in a local registry: busybox, the probe CGI, httpd on 8080 as root (the probes
 * change the guest's routes). */
static void push_image(const char *guest)
{
	char root[128];

	dvm_bundle(T, guest);
	ASSERT_EQ(sh("set -e; cd %s; R=bundle/rootfs; "
		     "printf 'root:x:0:0:root:/root:/bin/sh\\n' > $R/etc/passwd; "
		     "printf 'root:x:0:\\n' > $R/etc/group",
		     T),
		  0);
	snprintf(root, sizeof(root), "%s/bundle/rootfs/srv", T);
	ASSERT_OK(write_file(root, "probe", probe_cgi, 0755));
	ASSERT_OK(write_file(root, "app.sh", app_sh, 0755));
	ASSERT_EQ(sh("set -e; cd %s; umoci repack --image oci:1 bundle >/dev/null; "
		     "umoci config --image oci:1 --config.entrypoint /bin/sh --config.cmd "
		     "/srv/app.sh --config.workingdir /srv >/dev/null; umoci gc --layout oci; "
		     "skopeo copy -q --dest-tls-verify=false oci:oci:1 "
		     "docker://127.0.0.1:5055/app:1",
		     T),
		  0);
}

/* Every probe must succeed (want_ok) or fail for a network reason, never for want of an answer. */
static void expect(const struct probe *v, size_t n, bool want_ok)
{
	for (size_t i = 0; i < n; i++) {
		if (v[i].rc < 0)
			TEST_FAIL("probe %s %s from %s: the CGI did not answer", v[i].op, v[i].dst,
				  v[i].from);
		if ((v[i].rc == 0) != want_ok)
			TEST_FAIL("probe %s %s %s from %s: rc=%d, expected %s: %s", v[i].op,
				  v[i].dst, v[i].arg, v[i].from, v[i].rc,
				  want_ok ? "success" : "failure", v[i].out);
	}
}

/* From inside both guests: the gateway and the host beyond it reachable, the other VM not,
 * neither on the link nor routed via the gateway. */
static void check_network(const char *A, const char *B)
{
	/* What must work gets time enough under TCG and load. */
	struct probe ok[] = {
		{A, "ping", GW, "", 10},  {B, "ping", GW, "", 10},     {A, "ping", EXT, "", 10},
		{B, "ping", EXT, "", 10}, {A, "tcp", EXT, "8081", 10}, {B, "tcp", EXT, "8081", 10},
	};
	/* On the link: port isolation (not even the neighbour solicitation gets through). */
	struct probe link[] = {
		{A, "ping", B, ""},
		{B, "ping", A, ""},
		{A, "tcp", B, "8080"},
		{B, "tcp", A, "8080"},
	};
	struct probe via[] = {{A, "via", B, GW}, {B, "via", A, GW}};
	struct probe routed[2][2] = {{{A, "ping", B, ""}, {A, "tcp", B, "8080"}},
				     {{B, "ping", A, ""}, {B, "tcp", A, "8080"}}};
	struct probe unvia[] = {{A, "unvia", B, ""}, {B, "unvia", A, ""}};
	struct probe after[] = {{A, "ping", GW, "", 10}, {B, "ping", GW, "", 10}};
	struct probe all[ELEMENTSOF(ok) + ELEMENTSOF(link)];

	memcpy(all, ok, sizeof(ok));
	memcpy(all + ELEMENTSOF(ok), link, sizeof(link));
	probes_run(all, ELEMENTSOF(all));
	expect(all, ELEMENTSOF(ok), true);
	for (size_t i = 0; i < 2; i++)
		ASSERT_STREQ(all[4 + i].out, "ext says hi\n");
	expect(all + ELEMENTSOF(ok), ELEMENTSOF(link), false);

	/* Routed via the gateway: the host forwards it back towards the bridge, where its
	 * noreflect rule drops it; the counter proves the packets got that far. The guest ignores
	 * redirects here: the host's redirect ("on-link") would turn the rest back into the
	 * link case. */
	probes_run(via, ELEMENTSOF(via));
	expect(via, ELEMENTSOF(via), true);
	for (size_t i = 0; i < 2; i++)
		if (!strstr(via[i].out, "via " GW))
			TEST_FAIL("route to %s in %s is not via the gateway: %s", via[i].dst,
				  via[i].from, via[i].out);
	for (size_t i = 0; i < 2; i++) {
		long d0 = noreflect_drops(), d1;

		ASSERT_TRUE(d0 >= 0);
		probes_run(routed[i], 2);
		expect(routed[i], 2, false);
		d1 = noreflect_drops();
		printf("# noreflect drops %ld -> %ld\n", d0, d1);
		/* The echo request and at least one SYN reached the gateway and died there. */
		ASSERT_TRUE(d1 >= d0 + 2);
	}
	probes_run(unvia, ELEMENTSOF(unvia));
	expect(unvia, ELEMENTSOF(unvia), true);
	probes_run(after, ELEMENTSOF(after));
	expect(after, ELEMENTSOF(after), true);
}

/* Which kinds of host objects of the two VMs exist: "netns link nft dir cgroup qemu", or ""
 * when nothing is left. Returns the shell's status. */
static int traces(char *out, size_t size)
{
	int r = sh_out(
		out, size,
		"k=; ls /run/netns | grep -Eq '^mvmfs-([0-9a-f]+[.])?vm-' && k=\"$k netns\"; "
		"ip -o link | grep -Eq '^[0-9]+: mv[0-9a-f]{10}[@:]' && k=\"$k link\"; "
		"nft list table bridge mvmfs | grep -Eq 'chain vm_|elements' && k=\"$k nft\"; "
		"find %s/state -name '%s*' -o -name '%s*' | grep -q . && "
		"k=\"$k dir\"; "
		"ls -d /sys/fs/cgroup/*/mvmfs/*/%s /sys/fs/cgroup/*/mvmfs/*/%s >/dev/null 2>&1 && "
		"k=\"$k cgroup\"; "
		"pgrep -x qemu-system-x86 >/dev/null && k=\"$k qemu\"; echo $k",
		T, NA, NB, NA, NB);

	out[strcspn(out, "\n")] = '\0';
	return r;
}

static void check_health(const char *vm, const char *ip)
{
	char buf[2048], want[128];

	ASSERT_TRUE(dvm_rd_vm(MNT, vm, "health", buf, sizeof(buf)) > 0);
	snprintf(want, sizeof(want), ", guest address %s/64 configured\n", ip);
	if (!strstr(buf, "\nnet: up ") || !strstr(buf, want))
		TEST_FAIL("health of %s lacks 'net: up ...%s':\n%s", vm, want, buf);
}

static void test_two_vms(void)
{
	char guest[300], page[512], out[4096], A[64], B[64], log[160], bin[400];
	char ext_dir[160], ext_addr[64], want[64];
	double t0, t_boot, t_probe, t_stop;
	pid_t reg, daemon, ext;

	snprintf(T, sizeof(T), "/tmp/test-2vm.XXXXXX");
	daemon_vm_begin("qemu-system-x86_64 docker-registry umoci skopeo curl mkfs.ext4 nft", guest,
			sizeof(guest), T, MNT, sizeof(MNT));
	snprintf(NA, sizeof(NA), "vm-a-%.6s", T + strlen("/tmp/test-2vm."));
	snprintf(NB, sizeof(NB), "vm-b-%.6s", T + strlen("/tmp/test-2vm."));

	/* Registry and image. */
	reg = dvm_registry(T, 5055);
	push_image(guest);

	/* A host beyond the gateway, routed (like tests/net/test-isolation.c), serving TCP 8081
	 * with the guest build's busybox httpd. */
	ASSERT_EQ(
		sh("set -e; ip netns add ext; ip link add exth type veth peer name eth0 netns ext;"
		   " ip addr add fd99::1/64 dev exth nodad; ip link set exth up; "
		   "ip -n ext link set lo up; ip -n ext link set eth0 up; "
		   "ip -n ext addr add " EXT "/64 dev eth0 nodad; "
		   "ip -n ext -6 route add default via fd99::1; "
		   "mkdir %s/ext; echo 'ext says hi' > %s/ext/index.html",
		   T, T),
		0);
	snprintf(ext_dir, sizeof(ext_dir), "%s/ext", T);
	snprintf(ext_addr, sizeof(ext_addr), "[" EXT "]:8081");
	snprintf(bin, sizeof(bin), "%s/busybox", guest);
	snprintf(log, sizeof(log), "%s/ext.log", T);
	ext = dvm_spawn_logged(log, (char *[]){"ip", "netns", "exec", "ext", bin, "httpd", "-f",
					       "-p", ext_addr, "-h", ext_dir, NULL});

	/* The daemon: QEMU backend, local allocator, its own bridge. */
	dvm_state_guest(T, MNT, guest);
	daemon = dvm_daemon(T, MNT,
			    (const char *[]){"--vmm", "qemu", "--insecure-registry",
					     "127.0.0.1:5055", "--bridge", "tvbr0", "--ipv6-prefix",
					     "fd42:7e5::/64", "--app-grace", "2s", NULL},
			    5000);
	ASSERT_EQ(sh("ip netns exec ext wget -q -O - 'http://[" EXT "]:8081/' | "
		     "grep -q 'ext says hi'"),
		  0);

	/* Two VMs of the same image, both started from the node's booted template, which the
	 * daemon builds in the background at its start (docs/template.md): what follows holds
	 * for template starts. */
	dvm_create_vm(MNT, NA, "127.0.0.1:5055/app:1\n", A, sizeof(A));
	dvm_create_vm(MNT, NB, "127.0.0.1:5055/app:1\n", B, sizeof(B));
	ASSERT_TRUE(strcmp(A, B) != 0);
	for (int i = 0; i < 600 && sh("grep -q 'template: built' %s/daemon.log", T) != 0; i++)
		usleep(100000);
	ASSERT_EQ(sh("grep -q 'template: built' %s/daemon.log", T), 0);
	t0 = now_s();
	ASSERT_OK(dvm_wr_vm(MNT, NA, "state", "start\n", O_NONBLOCK));
	ASSERT_TRUE(wait_health(NA, "healthy", 40000));
	ASSERT_OK(dvm_wr_vm(MNT, NB, "state", "start\n", O_NONBLOCK));
	ASSERT_TRUE(wait_health(NB, "healthy", 40000));
	ASSERT_EQ(sh("test $(grep -c 'template: started from' %s/daemon.log) = 2", T), 0);
	/* Each answers as itself (hostname = VM name). */
	ASSERT_TRUE(dvm_wait_http(A, page, sizeof(page), 15000, 12, 50));
	snprintf(want, sizeof(want), "app on %s\n", NA);
	ASSERT_STREQ(page, want);
	ASSERT_TRUE(dvm_wait_http(B, page, sizeof(page), 15000, 12, 50));
	snprintf(want, sizeof(want), "app on %s\n", NB);
	ASSERT_STREQ(page, want);
	t_boot = now_s();
	printf("# both apps answer the host after %.2fs (A %s, B %s)\n", t_boot - t0, A, B);
	check_health(NA, A);
	check_health(NB, B);
	ASSERT_TRUE(dvm_rd_vm(MNT, NA, "log", out, sizeof(out)) > 0);
	ASSERT_TRUE(strstr(out, "app: serving on 8080") != NULL);

	/* The guest's own view of eth0 (for the record), then the probes both ways. */
	{
		struct probe show = {A, "show", "", ""};

		probes_run(&show, 1);
		expect(&show, 1, true);
		ASSERT_TRUE(strstr(show.out, A) != NULL);
		ASSERT_TRUE(strstr(show.out, "default via " GW) != NULL);
	}
	check_network(A, B);
	/* Still both reachable from the host (the probes broke nothing). */
	ASSERT_EQ(http_get(A, "", page, sizeof(page)), 0);
	ASSERT_EQ(http_get(B, "", page, sizeof(page)), 0);
	t_probe = now_s();
	printf("# probes: %.2fs\n", t_probe - t_boot);

	/* What the VMs have on the host, so the check after rmdir looks for real things. */
	ASSERT_EQ(traces(out, sizeof(out)), 0);
	ASSERT_STREQ(out, "netns link nft dir cgroup qemu");

	/* Stop and destroy both; nothing of them is left. */
	t_stop = now_s();
	ASSERT_OK(dvm_wr_vm(MNT, NA, "state", "stop\n", O_NONBLOCK));
	ASSERT_OK(dvm_wr_vm(MNT, NB, "state", "stop\n", 0));
	ASSERT_TRUE(wait_state(NA, "stopped", 15000));
	for (size_t i = 0; i < 2; i++) {
		const char *vm = i ? NB : NA;

		snprintf(out, sizeof(out), "%s/vms/%s", MNT, vm);
		if (rmdir(out) < 0) {
			int e = errno;

			sh("ls -la %s/vms %s; cat %s/state %s/health; tail %s/daemon.log", MNT, out,
			   out, out, T);
			TEST_FAIL("rmdir %s: %s", vm, strerror(e));
		}
	}
	{
		double end = now_s() + 10;

		int r;

		while (((r = traces(out, sizeof(out))) != 0 || out[0]) && now_s() < end)
			usleep(100000);
		if (r != 0 || out[0]) {
			sh("ls /run/netns; ip -o link; nft list table bridge mvmfs; find %s/state "
			   "| "
			   "grep vm-; ls -d /sys/fs/cgroup/*/mvmfs/*/vm-*; pgrep -ax "
			   "qemu-system-x86",
			   T);
			TEST_FAIL("left of the VMs after rmdir: %s", out);
		}
	}
	printf("# stop + rmdir + teardown: %.2fs; total %.2fs\n", now_s() - t_stop, now_s() - t0);
	/* The daemon ends cleanly (a sanitizer report would make this fail). */
	{
		int status = 0;

		kill(daemon, SIGTERM);
		ASSERT_EQ(waitpid(daemon, &status, 0), daemon);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			sh("tail -20 %s/daemon.log", T);
			TEST_FAIL("daemon exit status 0x%x", status);
		}
	}
	dvm_stop(ext);
	dvm_stop(reg);
	dvm_end(MNT, T);
}

TEST_MAIN(TEST(test_two_vms))
