/* SPDX-License-Identifier: MIT */
/*
 * End to end through the daemon with --vmm qemu: an app image pushed to
 * a local registry (docker-registry + umoci + skopeo) starts with one `echo start`, reaches
 * `healthy`, answers curl on port 8080 with content that proves Env, WorkingDir and User, its
 * output is in `log`, `echo stop` runs its SIGTERM handler and stops the VM, a second start
 * (image cached) is timed, and after `rmdir` nothing of the VM is left on the host.
 * Runs in its own network and mount namespaces. Two boots.
 */
#include <errno.h>
#include <fcntl.h>
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

static char T[64], MNT[128], VM[160];

static int qemu_pid(const char *vm)
{
	char cmd[128];
	int pid = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "pgrep -f 'name mvmfs-[%c]%s' | head -1", vm[0], vm + 1);
	p = popen(cmd, "r");
	if (p && fscanf(p, "%d", &pid) != 1)
		pid = 0;
	if (p)
		pclose(p);
	return pid;
}

static pid_t spawn_daemon(void)
{
	return dvm_daemon(T, MNT,
			  (const char *[]){"--vmm", "qemu", "--insecure-registry", "127.0.0.1:5055",
					   "--bridge", "mvme2e0", "--ipv6-prefix", "fd42:e2e::/64",
					   "--app-grace", "3s", NULL},
			  5000);
}

static void test_daemon_qemu_e2e(void)
{
	char guest[300], page[512], buf[4096], ip[64], state[64];
	double t0, t_ready, t_http, t_stop, t2, t2_http;
	pid_t reg, daemon;

	snprintf(T, sizeof(T), "/tmp/test-e2e.XXXXXX");
	daemon_vm_begin("qemu-system-x86_64 docker-registry umoci skopeo curl mkfs.ext4", guest,
			sizeof(guest), T, MNT, sizeof(MNT));
	snprintf(VM, sizeof(VM), "%s/vms/web", MNT);

	/* Registry + image: busybox, user app (1000, groups app+web), HTTP app with a trap. */
	reg = dvm_registry(T, 5055);
	dvm_bundle(T, guest);
	ASSERT_EQ(
		sh("set -e; cd %s; R=bundle/rootfs; mkdir -p $R/home/app; "
		   "printf "
		   "'root:x:0:0:root:/root:/bin/sh\\napp:x:1000:1000:app:/home/app:/bin/sh\\n' > "
		   "$R/etc/passwd; "
		   "printf 'root:x:0:\\napp:x:1000:\\nweb:x:2000:app\\n' > $R/etc/group; "
		   "printf '%%s\\n' '#!/bin/sh' 'trap \"echo app: got SIGTERM; exit 42\" TERM' "
		   "'mkdir -p /tmp/www' "
		   "'echo \"greeting=$GREETING workdir=$(pwd) user=$(id -u):$(id -g) groups=$(id "
		   "-G) name=$(id -un)\" > /tmp/www/index.html' "
		   "'echo app: serving on 8080' 'httpd -f -p 8080 -h /tmp/www &' "
		   "'while true; do sleep 1 & wait $!; done' > $R/srv/app.sh; chmod 755 "
		   "$R/srv/app.sh; "
		   "umoci repack --image oci:1 bundle >/dev/null; "
		   "umoci config --image oci:1 --config.entrypoint /bin/sh --config.cmd "
		   "/srv/app.sh "
		   "--config.env GREETING=hello-e2e --config.workingdir /srv --config.user app "
		   ">/dev/null; "
		   "umoci gc --layout oci; "
		   "skopeo copy -q --dest-tls-verify=false oci:oci:1 "
		   "docker://127.0.0.1:5055/app:1; "
		   "umoci config --image oci:1 --tag 2 --config.entrypoint /bin/sh "
		   "--config.cmd '' --config.cmd -c --config.cmd 'echo leaving; exit 3' "
		   ">/dev/null; "
		   "skopeo copy -q --dest-tls-verify=false oci:oci:2 docker://127.0.0.1:5055/app:2",
		   T),
		0);

	/* The daemon: QEMU backend, local allocator, its own bridge. */
	dvm_state_guest(T, MNT, guest);
	daemon = spawn_daemon();
	long rss0 = proc_rss_kb(daemon);
	ASSERT_OK(mkdir(VM, 0755));
	ASSERT_OK(dvm_wr(VM, "image", "127.0.0.1:5055/app:1\n", 0));
	ASSERT_TRUE(dvm_rd(VM, "ip", ip, sizeof(ip)) > 0);
	ip[strcspn(ip, "\n")] = '\0';

	/* First start: pulls the image, boots, the app comes up. */
	t0 = now_s();
	ASSERT_OK(dvm_wr(VM, "state", "start\n", 0));
	ASSERT_TRUE(dvm_rd(VM, "state", state, sizeof(state)) > 0);
	ASSERT_STREQ(state, "running\n");
	ASSERT_TRUE(dvm_wait_health(VM, "healthy", 30000));
	t_ready = now_s();
	ASSERT_TRUE(dvm_wait_http(ip, page, sizeof(page), 10000, 2, 50));
	t_http = now_s();
	printf("# first start: healthy %.2fs, HTTP %.2fs; page: %s", t_ready - t0, t_http - t0,
	       page);
	ASSERT_TRUE(strstr(page, "greeting=hello-e2e") != NULL);
	ASSERT_TRUE(strstr(page, "workdir=/srv") != NULL);
	ASSERT_TRUE(strstr(page, "user=1000:1000 groups=1000 2000 name=app") != NULL);
	ASSERT_TRUE(dvm_rd(VM, "health", buf, sizeof(buf)) > 0);
	ASSERT_TRUE(strstr(buf, "\nagent: ok ") != NULL);
	ASSERT_TRUE(strstr(buf, "\napp: running ") != NULL);
	ASSERT_TRUE(dvm_rd(VM, "log", buf, sizeof(buf)) > 0);
	ASSERT_TRUE(strstr(buf, "app: serving on 8080") != NULL);

	/* A hung guest (QEMU stopped) turns the verdict unhealthy within the heartbeat window. */
	{
		int qpid = qemu_pid("web");
		double th;

		ASSERT_TRUE(qpid > 0);
		ASSERT_OK(kill(qpid, SIGSTOP));
		th = now_s();
		ASSERT_TRUE(dvm_wait_health(VM, "unhealthy", 8000));
		printf("# hung guest: unhealthy after %.2fs\n", now_s() - th);
		ASSERT_TRUE(dvm_rd(VM, "health", buf, sizeof(buf)) > 0);
		ASSERT_TRUE(strstr(buf, "\nagent: ") != NULL && strstr(buf, "\nagent: ok") == NULL);
		ASSERT_OK(kill(qpid, SIGCONT));
		ASSERT_TRUE(dvm_wait_health(VM, "healthy", 6000));
	}

	/* Graceful stop through the agent: the app's SIGTERM handler runs. */
	t_stop = now_s();
	ASSERT_OK(dvm_wr(VM, "state", "stop\n", 0));
	printf("# stop: %.2fs\n", now_s() - t_stop);
	ASSERT_TRUE(dvm_rd(VM, "state", state, sizeof(state)) > 0);
	ASSERT_STREQ(state, "stopped\n");
	ASSERT_TRUE(dvm_rd(VM, "log", buf, sizeof(buf)) > 0);
	ASSERT_TRUE(strstr(buf, "got SIGTERM") != NULL || strstr(buf, "app exited with code 42"));

	/* Second start: the image is cached. */
	t2 = now_s();
	ASSERT_OK(dvm_wr(VM, "state", "start\n", 0));
	ASSERT_TRUE(dvm_wait_http(ip, page, sizeof(page), 30000, 2, 50));
	t2_http = now_s();
	ASSERT_TRUE(dvm_wait_health(VM, "healthy", 10000));
	printf("# second start (image cached): HTTP %.2fs\n", t2_http - t2);
	{
		FILE *p = popen("pgrep -f 'name mvmfs-[w]eb' | head -1", "r");
		int qpid = 0;

		if (p && fscanf(p, "%d", &qpid) != 1)
			qpid = 0;
		if (p)
			pclose(p);
		printf("# memory: QEMU RSS %.0f MiB, daemon RSS %.1f MiB (+%.1f MiB with this "
		       "VM)\n",
		       proc_rss_kb(qpid) / 1024.0, proc_rss_kb(daemon) / 1024.0,
		       (proc_rss_kb(daemon) - rss0) / 1024.0);
	}
	/* The daemon restarts: the VM keeps running and is re-adopted (agent reconnected). */
	{
		int qpid = qemu_pid("web");

		dvm_stop(daemon);
		ASSERT_TRUE(qpid > 0 && kill(qpid, 0) == 0);
		daemon = spawn_daemon();
		ASSERT_TRUE(dvm_rd(VM, "state", state, sizeof(state)) > 0);
		ASSERT_STREQ(state, "running\n");
		ASSERT_TRUE(dvm_wait_health(VM, "healthy", 10000));
		ASSERT_EQ(qemu_pid("web"), qpid);
		ASSERT_TRUE(dvm_wait_http(ip, page, sizeof(page), 5000, 2, 50));
	}
	ASSERT_OK(dvm_wr(VM, "state", "stop\n", 0));
	ASSERT_TRUE(dvm_rd(VM, "state", state, sizeof(state)) > 0);
	ASSERT_STREQ(state, "stopped\n");
	ASSERT_TRUE(dvm_rd(VM, "log", buf, sizeof(buf)) > 0);
	ASSERT_TRUE(strstr(buf, "got SIGTERM") != NULL || strstr(buf, "app exited with code 42"));

	ASSERT_OK(rmdir(VM));

	/* An app that exits: `app` reports its exit code, the VM keeps running. */
	snprintf(VM, sizeof(VM), "%s/vms/quit", MNT);
	ASSERT_OK(mkdir(VM, 0755));
	ASSERT_OK(dvm_wr(VM, "image", "127.0.0.1:5055/app:2\n", 0));
	if (dvm_wr(VM, "state", "start\n", 0) < 0) {
		dvm_rd(VM, "error", buf, sizeof(buf));
		sh("tail -20 %s/daemon.log", T);
		TEST_FAIL("start of 'quit' failed: %s", buf);
	}
	{
		double end = now_s() + 30;
		bool seen = false;

		while (!seen && now_s() < end) {
			seen = dvm_rd(VM, "health", buf, sizeof(buf)) > 0 &&
			       strstr(buf, "\napp: exited code 3");
			if (!seen)
				usleep(100000);
		}
		if (!seen)
			printf("# health:\n%s", buf);
		ASSERT_TRUE(seen);
	}
	ASSERT_TRUE(dvm_rd(VM, "log", buf, sizeof(buf)) > 0);
	ASSERT_TRUE(strstr(buf, "leaving") != NULL);
	ASSERT_OK(dvm_wr(VM, "state", "kill\n", 0));
	ASSERT_OK(rmdir(VM));
	/* Nothing of the VM left: no namespace, no QEMU dir, no cgroup, no process. */
	/* Teardown after rmdir is asynchronous: give it a few seconds. */
	ASSERT_EQ(sh("for i in $(seq 100); do ok=1; "
		     "ls /run/netns | grep -q web && ok=0; "
		     "ls %s/state/qemu 2>/dev/null | grep -q web && ok=0; "
		     "node=$(cat %s/state/node-id); "
		     "for c in /sys/fs/cgroup/*/mvmfs/$node/web; do "
		     "[ -e \"$c\" ] && ok=0; done; "
		     "pgrep -f 'name mvmfs-[w]eb' >/dev/null && ok=0; "
		     "[ $ok = 1 ] && exit 0; sleep 0.1; done; "
		     "ls /run/netns %s/state/qemu /sys/fs/cgroup/*/mvmfs/*/; exit 1",
		     T, T, T),
		  0);
	dvm_stop(daemon);
	dvm_stop(reg);
	dvm_end(MNT, T);
}

TEST_MAIN(TEST(test_daemon_qemu_e2e))
