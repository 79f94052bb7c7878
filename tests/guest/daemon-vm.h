/* SPDX-License-Identifier: MIT */
/*
 * The common pieces of the tests that boot real VMs through the daemon (test-daemon-qemu,
 * test-daemon-volumes, test-suspend-qemu, test-daemon-tailored, test-daemon-template,
 * test-two-vms): the case's start and end, the local registry and the test image's base, the
 * daemon, a VM's control files, the waits for its health and its app's HTTP page. Everything
 * that differs between the tests (ports, bridges, image names, options, deadlines) is a
 * parameter.
 */
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "macro.h"
#include "sys.h"
#include "test.h"

/*
 * Skips the case unless it runs as root with MVMFS_BUILDDIR and MVMFS_SRCDIR set, every program
 * of progs (space separated) on PATH, /dev/fuse and a guest that tools/build-guest builds into
 * guest (<build dir>/guest-out). Then moves the rest of the case into new PID, mount and network
 * namespaces (lo up, a private /run/netns), creates the case's temp dir tmp (a mkdtemp()
 * template, 0755 so the VMs' uids can enter) and names the daemon's mount point <tmp>/mnt in
 * mnt (not created).
 */
static inline void daemon_vm_begin(const char *progs, char *guest, size_t guest_size, char *tmp,
				   char *mnt, size_t mnt_size)
{
	const char *bld = getenv("MVMFS_BUILDDIR"), *src = getenv("MVMFS_SRCDIR");
	char missing[512];

	if (geteuid() != 0)
		test_skip("needs root (FUSE, namespaces, TAP, cgroups)");
	if (!bld || !src)
		test_skip("MVMFS_BUILDDIR/MVMFS_SRCDIR not set");
	if (sh_out(missing, sizeof(missing),
		   "for p in %s; do command -v $p >/dev/null || printf '%%s ' $p; done",
		   progs) != 0 ||
	    missing[0]) {
		char why[600];

		snprintf(why, sizeof(why), "missing on PATH: %s", missing);
		test_skip(why);
	}
	if (access("/dev/fuse", R_OK | W_OK) < 0)
		test_skip("no /dev/fuse");
	snprintf(guest, guest_size, "%s/guest-out", bld);
	if (sh("%s/tools/build-guest --out %s >%s/build-guest.log 2>&1", src, guest, bld) != 0)
		test_skip("tools/build-guest failed (apt-get download needs the network)");

	isolate(CLONE_NEWNET);
	ASSERT_EQ(sh("ip link set lo up && mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns"),
		  0);
	ASSERT_TRUE(mkdtemp(tmp) != NULL);
	ASSERT_OK(chmod(tmp, 0755));
	snprintf(mnt, mnt_size, "%s/mnt", tmp);
}

/* Control file file of the VM directory dir (<mount>/vms/<name>), read whole (small):
 * read_small()'s result. */
static inline int dvm_rd(const char *dir, const char *file, char *buf, size_t size)
{
	char p[320];

	snprintf(p, sizeof(p), "%s/%s", dir, file);
	return read_small(p, buf, size);
}

/* Writes val to control file file of the VM directory dir, open(2) flags added to O_WRONLY:
 * write_str()'s result. */
static inline int dvm_wr(const char *dir, const char *file, const char *val, int flags)
{
	char p[320];

	snprintf(p, sizeof(p), "%s/%s", dir, file);
	return write_str(p, val, flags);
}

/* The same for VM vm of the daemon mounted at mnt. */
static inline int dvm_rd_vm(const char *mnt, const char *vm, const char *file, char *buf,
			    size_t size)
{
	char p[320];

	snprintf(p, sizeof(p), "%s/vms/%s/%s", mnt, vm, file);
	return read_small(p, buf, size);
}

static inline int dvm_wr_vm(const char *mnt, const char *vm, const char *file, const char *val,
			    int flags)
{
	char p[320];

	snprintf(p, sizeof(p), "%s/vms/%s/%s", mnt, vm, file);
	return write_str(p, val, flags);
}

/* Forks and execs argv (on PATH) with stdout and stderr appended to log: the child's pid. */
static inline pid_t dvm_spawn_logged(const char *log, char *const argv[])
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		dup2(fd, 1);
		dup2(fd, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/*
 * Starts docker-registry serving 127.0.0.1:port from tmp/reg (created: config.yml, data/, the
 * registry's output in log) and waits up to 5 s for its /v2/ to answer (a registry that does
 * not fails the push that follows): the registry's pid.
 */
static inline pid_t dvm_registry(const char *tmp, int port)
{
	char cfg[160], log[160];
	pid_t pid;

	ASSERT_EQ(sh("mkdir %s/reg && printf 'version: 0.1\\nstorage: { filesystem: { "
		     "rootdirectory: %s/reg/data } }\\nhttp: { addr: 127.0.0.1:%d }\\n' > "
		     "%s/reg/config.yml",
		     tmp, tmp, port, tmp),
		  0);
	snprintf(cfg, sizeof(cfg), "%s/reg/config.yml", tmp);
	snprintf(log, sizeof(log), "%s/reg/log", tmp);
	pid = dvm_spawn_logged(log, (char *[]){"docker-registry", "serve", cfg, NULL});
	ASSERT_TRUE(pid > 0);
	sh("for i in $(seq 100); do curl -sf http://127.0.0.1:%d/v2/ >/dev/null && break; "
	   "sleep 0.05; done",
	   port);
	return pid;
}

/*
 * Polls http://[ip]:8080/ with curl (each try bounded by curl_s seconds, poll_ms between tries)
 * until it answers with a non-empty page, read into page (size bytes), or timeout_ms pass:
 * whether it answered.
 */
static inline bool dvm_wait_http(const char *ip, char *page, size_t size, unsigned timeout_ms,
				 int curl_s, unsigned poll_ms)
{
	double end = now_s() + timeout_ms / 1000.0;

	do {
		if (sh_out(page, size, "curl -sf -g -m %d 'http://[%s]:8080/' 2>/dev/null", curl_s,
			   ip) == 0 &&
		    page[0])
			return true;
		usleep(poll_ms * 1000);
	} while (now_s() < end);
	return false;
}

/*
 * Starts the daemon under test ($MVMFS_BUILDDIR/daemon/mvmfs --state-dir tmp/state, then the
 * options in opts (NULL-terminated, at most 24), then mnt), its output appended to
 * tmp/daemon.log, and waits up to wait_ms for mnt/vms to appear (fails the case if it does
 * not): the daemon's pid.
 */
static inline pid_t dvm_daemon(const char *tmp, const char *mnt, const char *const opts[],
			       unsigned wait_ms)
{
	char bin[320], st[160], log[160], vms[160];
	char *argv[32];
	size_t n = 0;
	double end;
	pid_t pid;

	snprintf(bin, sizeof(bin), "%s/daemon/mvmfs", getenv("MVMFS_BUILDDIR"));
	snprintf(st, sizeof(st), "%s/state", tmp);
	snprintf(log, sizeof(log), "%s/daemon.log", tmp);
	snprintf(vms, sizeof(vms), "%s/vms", mnt);
	argv[n++] = bin;
	argv[n++] = (char *)"--state-dir";
	argv[n++] = st;
	for (size_t i = 0; opts[i]; i++) {
		ASSERT_TRUE(n < ELEMENTSOF(argv) - 2);
		argv[n++] = (char *)opts[i];
	}
	argv[n++] = (char *)mnt;
	argv[n] = NULL;
	pid = dvm_spawn_logged(log, argv);
	ASSERT_TRUE(pid > 0);
	end = now_s() + wait_ms / 1000.0;
	while (access(vms, F_OK) < 0 && now_s() < end)
		usleep(50000);
	if (access(vms, F_OK) < 0) {
		sh("tail -20 %s", log);
		TEST_FAIL("the daemon did not mount %s within %u ms", mnt, wait_ms);
	}
	return pid;
}

/* SIGTERM to pid (the daemon, the registry...) and waits for it to exit. */
static inline void dvm_stop(pid_t pid)
{
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

/* The case's end: the mount mnt (lazily) and the temp dir tmp go. */
static inline void dvm_end(const char *mnt, const char *tmp)
{
	sh("umount -l %s 2>/dev/null; rm -rf %s", mnt, tmp);
}

/* Polls the health file of the VM directory dir every 50 ms until its first line is word, for
 * at most timeout_ms: whether it was (the last health read is printed when not). */
static inline bool dvm_wait_health(const char *dir, const char *word, unsigned timeout_ms)
{
	double end = now_s() + timeout_ms / 1000.0;
	char buf[2048] = "";

	do {
		if (dvm_rd(dir, "health", buf, sizeof(buf)) > 0 &&
		    strncmp(buf, word, strlen(word)) == 0 && buf[strlen(word)] == '\n')
			return true;
		usleep(50000);
	} while (now_s() < end);
	printf("# health of %s:\n%s", dir, buf);
	return false;
}

/*
 * The start of a test image in tmp: an OCI layout tmp/oci with an empty image oci:1 unpacked
 * into tmp/bundle, whose rootfs has /bin (busybox from the guest build dir guest, with a link
 * per applet), /etc, /srv and /tmp. The test adds its files, then repacks and pushes.
 */
static inline void dvm_bundle(const char *tmp, const char *guest)
{
	ASSERT_EQ(sh("set -e; cd %s; "
		     "umoci init --layout oci >/dev/null; umoci new --image oci:1 >/dev/null; "
		     "umoci unpack --image oci:1 bundle >/dev/null; R=bundle/rootfs; "
		     "mkdir -p $R/bin $R/etc $R/srv $R/tmp; cp %s/busybox $R/bin/busybox; "
		     "for a in $($R/bin/busybox --list); do [ -e $R/bin/$a ] || ln -s busybox "
		     "$R/bin/$a; done",
		     tmp, guest),
		  0);
}

/* The daemon's state dir tmp/state with the guest build's kernel and initramfs (from guest) as
 * its default guest, and the mount point mnt. */
static inline void dvm_state_guest(const char *tmp, const char *mnt, const char *guest)
{
	ASSERT_EQ(sh("mkdir -p %s/state/guest %s && cp %s/vmlinux %s/initramfs.cpio.gz "
		     "%s/state/guest/",
		     tmp, mnt, guest, guest, tmp),
		  0);
}

/* Defines VM vm of the daemon mounted at mnt (mkdir) with image image; its address into ip. */
static inline void dvm_create_vm(const char *mnt, const char *vm, const char *image, char *ip,
				 size_t size)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/vms/%s", mnt, vm);
	ASSERT_OK(mkdir(p, 0755));
	ASSERT_OK(dvm_wr_vm(mnt, vm, "image", image, 0));
	ASSERT_TRUE(dvm_rd_vm(mnt, vm, "ip", ip, size) > 0);
	ip[strcspn(ip, "\n")] = '\0';
}
