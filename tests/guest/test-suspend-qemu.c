/* SPDX-License-Identifier: MIT */
/*
 * Pause, suspend and resume of a real QEMU VM through the daemon (docs/suspend.md): an app that
 * counts requests in a shell variable (busybox nc) keeps its count across pause/resume, across a
 * suspend (while suspended no QEMU runs and the VM's cgroup is gone) and its restore, across a
 * daemon SIGKILL + restart and a simulated host reboot (VMMs killed, namespaces and links gone,
 * daemon restarted) while suspended; a corrupt saved state makes the restore fail (failed, the
 * reason in error) instead of booting the VM afresh. Prints the times against the cold boot of
 * the same run (bench/suspend reads them). Runs in its own network and mount namespaces.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon-vm.h"
#include "macro.h"
#include "sys.h"
#include "test.h"

static char T[64], MNT[128], VM[160], IP[64], NAME[16];

static void expect_state(const char *want)
{
	char st[64] = "";

	ASSERT_TRUE(dvm_rd(VM, "state", st, sizeof(st)) > 0);
	if (strcmp(st, want) != 0) {
		char err[512] = "";

		dvm_rd(VM, "error", err, sizeof(err));
		sh("tail -30 %s/daemon.log", T);
		TEST_FAIL("state %s, want %s (error: %s)", st, want, err);
	}
}

/* The app's count: one request answered "count=N" (polled until deadline); -1 on timeout. */
static int count(unsigned timeout_ms)
{
	double end = now_s() + timeout_ms / 1000.0;
	char cmd[256], page[128];

	snprintf(cmd, sizeof(cmd), "curl -sf -g -m 2 'http://[%s]:8080/' 2>/dev/null", IP);
	do {
		FILE *p = popen(cmd, "r");
		size_t n = p ? fread(page, 1, sizeof(page) - 1, p) : 0;
		int c;

		page[n] = '\0';
		if (p && pclose(p) == 0 && sscanf(page, "count=%d", &c) == 1)
			return c;
		usleep(20000);
	} while (now_s() < end);
	return -1;
}

static int qemu_running(void)
{
	return sh("pgrep -f 'name mvmfs-%s( |$)' >/dev/null", NAME) == 0;
}

static pid_t spawn_daemon(void)
{
	return dvm_daemon(T, MNT,
			  (const char *[]){"--vmm", "qemu", "--insecure-registry", "127.0.0.1:5056",
					   "--bridge", "mvmsus0", "--ipv6-prefix", "fd42:5a5::/64",
					   "--app-grace", "2s", NULL},
			  10000);
}

static void make_image(const char *guest, pid_t *reg)
{
	*reg = dvm_registry(T, 5056);
	/* The app: a request counter kept in a shell variable (memory only). */
	dvm_bundle(T, guest);
	ASSERT_EQ(sh("set -e; cd %s; R=bundle/rootfs; "
		     "printf 'root:x:0:0:root:/root:/bin/sh\\n' > $R/etc/passwd; "
		     "printf 'root:x:0:\\n' > $R/etc/group; "
		     "printf '%%s\\n' '#!/bin/sh' 'n=0' 'echo app: counting on 8080' "
		     "'while true; do n=$((n+1)); "
		     "printf \"HTTP/1.0 200 OK\\r\\n\\r\\ncount=%%s\\n\" $n | nc -l -p 8080 "
		     ">/dev/null; done' > $R/srv/app.sh; chmod 755 $R/srv/app.sh; "
		     "umoci repack --image oci:1 bundle >/dev/null; "
		     "umoci config --image oci:1 --config.entrypoint /bin/sh --config.cmd "
		     "/srv/app.sh >/dev/null; umoci gc --layout oci; "
		     "skopeo copy -q --dest-tls-verify=false oci:oci:1 "
		     "docker://127.0.0.1:5056/count:1",
		     T),
		  0);
}

/* suspend: the write returns once saved; nothing of the VM runs or holds memory. */
static double suspend_vm(void)
{
	double t = now_s();
	char buf[4096];

	if (dvm_wr(VM, "state", "suspend\n", 0) < 0) {
		dvm_rd(VM, "error", buf, sizeof(buf));
		sh("tail -30 %s/daemon.log", T);
		TEST_FAIL("suspend failed: %s", buf);
	}
	t = now_s() - t;
	expect_state("suspended\n");
	ASSERT_FALSE(qemu_running());
	/* The VM's cgroups are gone: no memory charged to it. */
	ASSERT_EQ(sh("for c in /sys/fs/cgroup/*/mvmfs/*/%s /sys/fs/cgroup/*/mvmfs/%s "
		     "/sys/fs/cgroup/mvmfs/*/%s; do [ -e \"$c\" ] && exit 1; done; exit 0",
		     NAME, NAME, NAME),
		  0);
	ASSERT_TRUE(dvm_rd(VM, "health", buf, sizeof(buf)) > 0);
	ASSERT_TRUE(strncmp(buf, "suspended\n", 10) == 0);
	ASSERT_TRUE(strstr(buf, "\nsaved: suspended ") != NULL);
	return t;
}

/* start of a suspended VM: running when the write returns, the count goes on. */
static int restore_vm(int before, double *t_run, double *t_app)
{
	double t = now_s();
	char buf[512];
	int c;

	if (dvm_wr(VM, "state", "start\n", 0) < 0) {
		dvm_rd(VM, "error", buf, sizeof(buf));
		sh("tail -30 %s/daemon.log", T);
		TEST_FAIL("restore failed: %s", buf);
	}
	*t_run = now_s() - t;
	expect_state("running\n");
	c = count(10000);
	*t_app = now_s() - t;
	printf("# count %d -> %d\n", before, c);
	ASSERT_TRUE(c > before); /* a cold boot would count from 1 again */
	return c;
}

static int grow_root_disks(void)
{
	return sh("set -e; ls %s/state/images/images/*/rootfs.ext4 >/dev/null; "
		  "for f in %s/state/images/images/*/rootfs.ext4; do truncate -s +1G $f; done",
		  T, T);
}

static void test_suspend_qemu(void)
{
	char guest[300], buf[8192];
	double t0, t_cold, t_pause, t_resume, t_susp, t_run, t_app;
	long disk_kib = -1, rss_kib = -1;
	int c;
	pid_t reg, daemon;

	snprintf(T, sizeof(T), "/tmp/test-suspend.XXXXXX");
	daemon_vm_begin("qemu-system-x86_64 docker-registry umoci skopeo curl mkfs.ext4", guest,
			sizeof(guest), T, MNT, sizeof(MNT));
	snprintf(NAME, sizeof(NAME), "sus%d", (int)(getpid() % 100000));
	snprintf(VM, sizeof(VM), "%s/vms/%s", MNT, NAME);
	make_image(guest, &reg);
	dvm_state_guest(T, MNT, guest);
	daemon = spawn_daemon();
	ASSERT_OK(mkdir(VM, 0755));
	ASSERT_OK(dvm_wr(VM, "image", "127.0.0.1:5056/count:1\n", 0));
	ASSERT_TRUE(dvm_rd(VM, "ip", IP, sizeof(IP)) > 0);
	IP[strcspn(IP, "\n")] = '\0';

	/* EINVAL before it runs; the cold boot is the reference. */
	ASSERT_ERRNO(dvm_wr(VM, "state", "pause\n", 0), EINVAL);
	ASSERT_ERRNO(dvm_wr(VM, "state", "suspend\n", 0), EINVAL);
	t0 = now_s();
	ASSERT_OK(dvm_wr(VM, "state", "start\n", 0));
	c = count(60000);
	t_cold = now_s() - t0;
	ASSERT_EQ(c, 1);
	ASSERT_EQ(count(5000), 2);
	/* The root disk file grows while the VM runs, and again while it is suspended (below):
	 * what padding a root disk an older version built does (image/README.md). The guest keeps
	 * the device size it probed and goes on. */
	ASSERT_EQ(grow_root_disks(), 0);

	/* pause / resume: the app answers afterwards with its count. */
	t0 = now_s();
	ASSERT_OK(dvm_wr(VM, "state", "pause\n", 0));
	t_pause = now_s() - t0;
	expect_state("paused\n");
	ASSERT_TRUE(dvm_rd(VM, "health", buf, sizeof(buf)) > 0);
	ASSERT_TRUE(strncmp(buf, "paused\n", 7) == 0);
	ASSERT_OK(dvm_wr(VM, "state", "pause\n", 0)); /* no-op */
	ASSERT_ERRNO(dvm_wr(VM, "image", "127.0.0.1:5056/count:1\n", 0), EBUSY);
	ASSERT_ERRNO(rmdir(VM) < 0 ? -errno : 0, EBUSY);
	t0 = now_s();
	ASSERT_OK(dvm_wr(VM, "state", "resume\n", 0));
	t_resume = now_s() - t0;
	expect_state("running\n");
	ASSERT_OK(dvm_wr(VM, "state", "resume\n", 0)); /* no-op */
	c = count(5000);
	ASSERT_EQ(c, 3);

	/* suspend from running, restore. */
	t_susp = suspend_vm();
	ASSERT_ERRNO(rmdir(VM) < 0 ? -errno : 0, EBUSY);
	ASSERT_OK(dvm_wr(VM, "state", "suspend\n", 0)); /* no-op */
	{
		char m[256];

		snprintf(m, sizeof(m), "%s/metrics", VM);
		ASSERT_EQ(sh("grep -q 'mvmfs_vm_saved_state_bytes{vm=\"%s\"} [1-9]' %s", NAME, m),
			  0);
		printf("# saved state on disk (apparent, used): ");
		fflush(stdout);
		sh("du -sh --apparent-size %s/state/vms/%s/suspend | cut -f1; du -sh "
		   "%s/state/vms/%s/suspend | cut -f1",
		   T, NAME, T, NAME);
	}
	{
		char cmd[256];
		FILE *p;

		snprintf(cmd, sizeof(cmd), "du -sk %s/state/vms/%s/suspend | cut -f1", T, NAME);
		p = popen(cmd, "r");
		if (!p || fscanf(p, "%ld", &disk_kib) != 1)
			disk_kib = -1;
		if (p)
			pclose(p);
		/* No process of the VM: its host RSS is what the VMM's would be, 0. */
		snprintf(
			cmd, sizeof(cmd),
			"for p in $(pgrep -f 'name mvmfs-%s( |$)'); do grep VmRSS /proc/$p/status; "
			"done | awk '{s+=$2} END {print s+0}'",
			NAME);
		p = popen(cmd, "r");
		if (!p || fscanf(p, "%ld", &rss_kib) != 1)
			rss_kib = -1;
		if (p)
			pclose(p);
	}
	ASSERT_EQ(grow_root_disks(), 0);
	c = restore_vm(c, &t_run, &t_app);
	printf("# BENCH cold_to_app %.3f suspend %.3f restore_to_running %.3f restore_to_app "
	       "%.3f pause %.4f resume %.4f disk_kib %ld rss_suspended_kib %ld\n",
	       t_cold, t_susp, t_run, t_app, t_pause, t_resume, disk_kib, rss_kib);
	/* The restored guest's agent stepped its wall clock (it resumed at the snapshot's time)
	 * and is healthy again, not late for the time it was suspended. */
	{
		double end = now_s() + 10;
		bool stepped = false, healthy = false;

		while ((!stepped || !healthy) && now_s() < end) {
			stepped = dvm_rd(VM, "log", buf, sizeof(buf)) > 0 &&
				  strstr(buf, "clock: wall clock stepped by ") != NULL;
			healthy = dvm_rd(VM, "health", buf, sizeof(buf)) > 0 &&
				  strncmp(buf, "healthy\n", 8) == 0;
			if (!stepped || !healthy)
				usleep(100000);
		}
		if (!stepped || !healthy)
			printf("# log/health:\n%s", buf);
		ASSERT_TRUE(stepped);
		ASSERT_TRUE(healthy);
	}

	/* paused across a daemon SIGKILL and restart: re-adopted paused, then resumed. */
	ASSERT_OK(dvm_wr(VM, "state", "pause\n", 0));
	kill(daemon, SIGKILL);
	waitpid(daemon, NULL, 0);
	sh("umount -l %s 2>/dev/null", MNT);
	daemon = spawn_daemon();
	expect_state("paused\n");
	ASSERT_TRUE(qemu_running());
	ASSERT_OK(dvm_wr(VM, "state", "resume\n", 0));
	expect_state("running\n");
	{
		int c2 = count(5000);

		printf("# count %d -> %d (paused across a daemon restart)\n", c, c2);
		ASSERT_TRUE(c2 > c);
		c = c2;
	}

	/* suspended across a daemon SIGKILL and restart. */
	suspend_vm();
	kill(daemon, SIGKILL);
	waitpid(daemon, NULL, 0);
	sh("umount -l %s 2>/dev/null", MNT);
	daemon = spawn_daemon();
	expect_state("suspended\n");
	c = restore_vm(c, &t_run, &t_app);

	/* A simulated host reboot: daemon and VMMs killed, namespaces and links gone. */
	suspend_vm();
	kill(daemon, SIGKILL);
	waitpid(daemon, NULL, 0);
	sh("umount -l %s 2>/dev/null; pkill -9 -f 'name mvmfs-%s( |$)'; "
	   "for n in $(ls /run/netns); do ip netns del $n; done; ip link del mvmsus0 2>/dev/null",
	   MNT, NAME);
	daemon = spawn_daemon();
	expect_state("suspended\n");
	c = restore_vm(c, &t_run, &t_app);

	/* A corrupt saved state: the restore fails with the reason, no cold boot instead. */
	suspend_vm();
	ASSERT_EQ(sh("f=%s/state/vms/%s/suspend/state; printf 'X' | dd of=$f bs=1 seek=100 "
		     "conv=notrunc 2>/dev/null",
		     T, NAME),
		  0);
	ASSERT_ERRNO(dvm_wr(VM, "state", "start\n", 0), EIO);
	expect_state("failed\n");
	ASSERT_TRUE(dvm_rd(VM, "error", buf, sizeof(buf)) > 0);
	printf("# corrupt: %s", buf);
	ASSERT_TRUE(strstr(buf, "saved state corrupt") != NULL);
	ASSERT_FALSE(qemu_running());
	ASSERT_EQ(count(1500), -1);
	/* stop discards the saved state; then it boots afresh. */
	ASSERT_OK(dvm_wr(VM, "state", "stop\n", 0));
	expect_state("stopped\n");
	ASSERT_EQ(sh("for i in $(seq 50); do [ -e %s/state/vms/%s/suspend/state ] || exit 0; "
		     "sleep 0.1; done; exit 1",
		     T, NAME),
		  0);
	ASSERT_OK(dvm_wr(VM, "state", "start\n", 0));
	ASSERT_EQ(count(60000), 1);
	ASSERT_OK(dvm_wr(VM, "state", "kill\n", 0));
	ASSERT_OK(rmdir(VM));

	dvm_stop(daemon);
	dvm_stop(reg);
	dvm_end(MNT, T);
}

TEST_MAIN(TEST(test_suspend_qemu))
