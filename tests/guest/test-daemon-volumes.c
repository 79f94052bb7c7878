/* SPDX-License-Identifier: MIT */
/*
 * Volumes end to end through the daemon with --vmm qemu and a local registry. The image
 * declares VOLUME /data (owned by its user, with a seed file) and runs as that user; its app
 * counts its boots in /data/count and marks the writable layer (/scratch/mark) with its
 * version. Checked over HTTP from inside the guest:
 *   - the declared volume appears by itself (volumes/data, path /data), filled from the image
 *     (seed) and writable by the image's user; a volume made with mkdir is mounted too;
 *   - restart: the volume and the writable layer keep their data;
 *   - a new image version: the volume keeps its data, the writable layer is fresh;
 *   - daemon restart: re-adopted, the volumes still listed, the data still there;
 *   - suspend and resume: the guest continues with its volumes, their data kept;
 *   - disk-usage reports the volumes; rmdir of the VM removes its volumes from the state dir.
 * MVMFS_VOLUMES_BENCH=N (bench/volumes): instead, N starts each with 0, 1 and 4 volumes,
 * printing the time from `echo start` to the app answering.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon-vm.h"
#include "macro.h"
#include "sys.h"
#include "test.h"

static char T[64], MNT[128], VM[160], IP[64];

/* mkdir / rmdir of a path inside the VM's directory: 0 or -errno. */
static int mk(const char *rel)
{
	char p[300];

	snprintf(p, sizeof(p), "%s/%s", VM, rel);
	return mkdir(p, 0755) < 0 ? -errno : 0;
}

static int rm(const char *rel)
{
	char p[300];

	snprintf(p, sizeof(p), "%s/%s", VM, rel);
	return rmdir(p) < 0 ? -errno : 0;
}

static void must_wr(const char *file, const char *val)
{
	char buf[1024] = "";

	if (dvm_wr(VM, file, val, 0) < 0) {
		dvm_rd(VM, "error", buf, sizeof(buf));
		sh("tail -30 %s/daemon.log", T);
		TEST_FAIL("write %s '%s' failed: %s; error: %s", file, val, strerror(errno), buf);
	}
}

/* The app's page, once it answers; fails the case after timeout_ms. */
static void page(char *out, size_t size, unsigned timeout_ms)
{
	double end = now_s() + timeout_ms / 1000.0;
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "curl -sf -g -m 2 'http://[%s]:8080/' 2>/dev/null", IP);
	do {
		FILE *p = popen(cmd, "r");
		size_t n = p ? fread(out, 1, size - 1, p) : 0;

		out[n] = '\0';
		if (p && pclose(p) == 0 && n > 0)
			return;
		usleep(100000);
	} while (now_s() < end);
	{
		char buf[8192] = "";

		dvm_rd(VM, "log", buf, sizeof(buf));
		printf("# log:\n%s", buf);
	}
	TEST_FAIL("the app did not answer within %u ms", timeout_ms);
}

static void expect(const char *pg, const char *want)
{
	if (!strstr(pg, want))
		TEST_FAIL("page '%s' lacks '%s'", pg, want);
}

static pid_t spawn_daemon(void)
{
	return dvm_daemon(T, MNT,
			  (const char *[]){"--vmm", "qemu", "--insecure-registry", "127.0.0.1:5055",
					   "--bridge", "mvmvol0", "--ipv6-prefix", "fd42:e2f::/64",
					   "--app-grace", "2s", "--volume-size", "64M", NULL},
			  10000);
}

/* Registry on 127.0.0.1:5055 with app:1 and app:2 (VERSION differs: two digests). */
static pid_t registry_and_images(const char *guest)
{
	pid_t reg;

	reg = dvm_registry(T, 5055);
	dvm_bundle(T, guest);
	ASSERT_EQ(
		sh("set -e; cd %s; R=bundle/rootfs; mkdir -p $R/data $R/scratch; "
		   "printf 'root:x:0:0:root:/root:/bin/sh\\napp:x:1000:1000:app:/srv:/bin/sh\\n' "
		   "> $R/etc/passwd; printf 'root:x:0:\\napp:x:1000:\\n' > $R/etc/group; "
		   "echo seed-from-image > $R/data/seed; chown -R 1000:1000 $R/data $R/scratch; "
		   "chmod 0750 $R/data; "
		   "printf '%%s\\n' '#!/bin/sh' 'trap \"exit 0\" TERM' "
		   "'n=$(cat /data/count 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "
		   "/data/count' "
		   "'[ -e /scratch/mark ] || echo v$VERSION > /scratch/mark' "
		   "'mkdir -p /tmp/www' "
		   "'echo \"count=$n mark=$(cat /scratch/mark) seed=$(cat /data/seed) "
		   "owner=$(stat -c %%u:%%g /data) extra=$(grep -c -w extra /proc/mounts) "
		   "version=$VERSION\" > /tmp/www/index.html' "
		   "'httpd -f -p 8080 -h /tmp/www &' "
		   "'while true; do sleep 1 & wait $!; done' > $R/srv/app.sh; "
		   "chmod 755 $R/srv/app.sh; "
		   "umoci repack --image oci:1 bundle >/dev/null; "
		   "umoci config --image oci:1 --config.entrypoint /bin/sh --config.cmd "
		   "/srv/app.sh --config.env VERSION=1 --config.user app --config.volume /data "
		   ">/dev/null; "
		   "umoci config --image oci:1 --tag 2 --config.env VERSION=2 >/dev/null; "
		   "umoci gc --layout oci; "
		   "skopeo copy -q --dest-tls-verify=false oci:oci:1 "
		   "docker://127.0.0.1:5055/app:1; "
		   "skopeo copy -q --dest-tls-verify=false oci:oci:2 docker://127.0.0.1:5055/app:2",
		   T),
		0);
	return reg;
}

static void setup(char *guest, size_t size)
{
	snprintf(T, sizeof(T), "/tmp/test-volumes.XXXXXX");
	daemon_vm_begin("qemu-system-x86_64 docker-registry umoci skopeo curl mkfs.ext4 "
			"resize2fs",
			guest, size, T, MNT, sizeof(MNT));
	dvm_state_guest(T, MNT, guest);
}

static void define_vm(const char *name)
{
	snprintf(VM, sizeof(VM), "%s/vms/%s", MNT, name);
	ASSERT_OK(mkdir(VM, 0755));
	ASSERT_TRUE(dvm_rd(VM, "ip", IP, sizeof(IP)) > 0);
	IP[strcspn(IP, "\n")] = '\0';
}

static void test_volumes_e2e(void)
{
	char guest[300], pg[1024], buf[4096];
	pid_t reg, daemon;
	double t0;

	if (getenv("MVMFS_VOLUMES_BENCH"))
		test_skip("benchmark mode: see test_volumes_bench");
	setup(guest, sizeof(guest));
	reg = registry_and_images(guest);
	daemon = spawn_daemon();
	define_vm("web");
	must_wr("image", "127.0.0.1:5055/app:1\n");
	/* A volume of the user's, besides the one the image declares. */
	ASSERT_OK(mk("volumes/extra"));
	must_wr("volumes/extra/path", "/extra\n");

	/* First start: the image's /data becomes volume "data", filled from the image. */
	t0 = now_s();
	must_wr("state", "start\n");
	page(pg, sizeof(pg), 60000);
	printf("# first start: %.1fs: %s", now_s() - t0, pg);
	expect(pg, "count=1 mark=v1 seed=seed-from-image owner=1000:1000 extra=1 version=1");
	ASSERT_TRUE(dvm_rd(VM, "volumes/data/path", buf, sizeof(buf)) > 0);
	ASSERT_STREQ(buf, "/data\n");
	ASSERT_TRUE(dvm_rd(VM, "volumes/data/size", buf, sizeof(buf)) > 0);
	ASSERT_STREQ(buf, "67108864\n");
	/* Changes wait for a stop. */
	ASSERT_EQ(dvm_wr(VM, "volumes/data/size", "128M", 0), -EBUSY);
	{
		double end = now_s() + 20;

		do {
			dvm_rd(VM, "disk-usage", buf, sizeof(buf));
			if (strstr(buf, "volume data: used "))
				break;
			usleep(200000);
		} while (now_s() < end);
		printf("# disk-usage:\n%s", buf);
		ASSERT_TRUE(strstr(buf, "writable: used ") != NULL);
		ASSERT_TRUE(strstr(buf, "volume data: used ") != NULL);
		ASSERT_TRUE(strstr(buf, "volume extra: used ") != NULL);
	}

	/* Restart, same image: both the volume and the writable layer keep their data. */
	must_wr("state", "restart\n");
	page(pg, sizeof(pg), 60000);
	expect(pg, "count=2 mark=v1 ");

	/* A new version of the image: the volume keeps its data, the writable layer is new. */
	must_wr("state", "stop\n");
	must_wr("volumes/data/size", "128M\n");
	must_wr("image", "127.0.0.1:5055/app:2\n");
	must_wr("state", "start\n");
	page(pg, sizeof(pg), 60000);
	printf("# new image: %s", pg);
	expect(pg, "count=3 mark=v2 seed=seed-from-image owner=1000:1000 extra=1 version=2");
	ASSERT_TRUE(dvm_rd(VM, "volumes/data/size", buf, sizeof(buf)) > 0);
	ASSERT_STREQ(buf, "134217728\n");

	/* The daemon restarts: the VM is re-adopted, its volumes still there. */
	dvm_stop(daemon);
	daemon = spawn_daemon();
	ASSERT_TRUE(dvm_rd(VM, "state", buf, sizeof(buf)) > 0);
	ASSERT_STREQ(buf, "running\n");
	ASSERT_TRUE(dvm_rd(VM, "volumes/data/path", buf, sizeof(buf)) > 0);
	ASSERT_STREQ(buf, "/data\n");
	must_wr("state", "restart\n");
	page(pg, sizeof(pg), 60000);
	expect(pg, "count=4 mark=v2 ");

	/* Suspend and resume with volumes attached: the restored guest continues (the page its app
	 * wrote at boot, count 4: no new boot), its volume drives are back in the same order; the
	 * next boot below counts 5 from the volume. */
	must_wr("state", "suspend\n");
	ASSERT_TRUE(dvm_rd(VM, "state", buf, sizeof(buf)) > 0);
	ASSERT_STREQ(buf, "suspended\n");
	must_wr("state", "resume\n");
	page(pg, sizeof(pg), 60000);
	expect(pg, "count=4 mark=v2 ");

	/* A volume removed by the user stays removed at the next start of the same image. */
	must_wr("state", "stop\n");
	ASSERT_OK(rm("volumes/extra"));
	must_wr("state", "start\n");
	page(pg, sizeof(pg), 60000);
	expect(pg, "count=5 mark=v2 seed=seed-from-image owner=1000:1000 extra=0");

	/* rmdir of the VM takes its volumes. */
	must_wr("state", "stop\n");
	ASSERT_OK(rmdir(VM));
	ASSERT_EQ(sh("for i in $(seq 50); do [ -e %s/state/volumes/web ] || exit 0; sleep 0.1; "
		     "done; ls -R %s/state/volumes; exit 1",
		     T, T),
		  0);
	dvm_stop(daemon);
	dvm_stop(reg);
	dvm_end(MNT, T);
}

/* bench/volumes: seconds from `echo start` (image cached) to the app answering, with 0, 1 and
 * 4 volumes, MVMFS_VOLUMES_BENCH times each. */
static void test_volumes_bench(void)
{
	static const int counts[] = {0, 1, 4};
	const char *env = getenv("MVMFS_VOLUMES_BENCH");
	int rounds = env ? atoi(env) : 0;
	char guest[300], pg[1024], path[64];
	pid_t reg, daemon;

	if (rounds <= 0)
		test_skip("set MVMFS_VOLUMES_BENCH=N (bench/volumes)");
	setup(guest, sizeof(guest));
	reg = registry_and_images(guest);
	daemon = spawn_daemon();
	for (size_t c = 0; c < ELEMENTSOF(counts); c++) {
		char name[16];
		double sum = 0, best = 1e9;

		snprintf(name, sizeof(name), "b%d", counts[c]);
		define_vm(name);
		/* The first start pulls and makes the image's /data: removed, so the volumes
		 * counted are the bench's own (a start of the same image does not bring it back).
		 */
		must_wr("image", "127.0.0.1:5055/app:1\n");
		must_wr("state", "start\n");
		page(pg, sizeof(pg), 60000);
		must_wr("state", "stop\n");
		ASSERT_OK(rm("volumes/data"));
		for (int v = 0; v < counts[c]; v++) {
			char val[32];

			snprintf(path, sizeof(path), "volumes/v%d", v);
			ASSERT_OK(mk(path));
			snprintf(path, sizeof(path), "volumes/v%d/path", v);
			snprintf(val, sizeof(val), "/vol%d\n", v);
			must_wr(path, val);
		}
		for (int i = 0; i < rounds; i++) {
			double t0 = now_s(), dt;

			must_wr("state", "start\n");
			page(pg, sizeof(pg), 60000);
			dt = now_s() - t0;
			sum += dt;
			best = dt < best ? dt : best;
			must_wr("state", "stop\n");
		}
		printf("# %d volumes: start to HTTP mean %.2fs best %.2fs over %d starts "
		       "(wall clock, 2 shared cores)\n",
		       counts[c], sum / rounds, best, rounds);
		ASSERT_OK(rmdir(VM));
	}
	dvm_stop(daemon);
	dvm_stop(reg);
	dvm_end(MNT, T);
}

TEST_MAIN(TEST(test_volumes_e2e), TEST(test_volumes_bench))
