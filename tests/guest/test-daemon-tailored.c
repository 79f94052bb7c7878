/* SPDX-License-Identifier: MIT */
/*
 * The tailored guest kernel (tools/build-guest --kernel tailored: Debian's linux-source-6.1 with
 * Firecracker's CI configuration, everything built in) booted through the daemon with
 * --vmm qemu: the app of a local registry's image reaches `healthy` and answers HTTP with its
 * Env, WorkingDir and User, the guest runs the tailored kernel (its release, no module support),
 * `echo stop` stops it through the agent, and QEMU's system_powerdown reaches the agent as the
 * ACPI power button (CONFIG_ACPI_BUTTON, one of the kernel's adjustments). A second case boots
 * the kernel on the bare QEMU command line with -M microvm,acpi=off, where QEMU describes the
 * virtio-mmio devices only as virtio_mmio.device= words on the kernel command line (as
 * Firecracker without ACPI does): the disk is found (CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES), and
 * is not with those words turned off. Exits 77 when the tailored kernel is not built: this test
 * never builds it (the first build takes long).
 */
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
#include "sys.h"
#include "test.h"

static char T[64], MNT[128], VM[160];

static bool wait_for(const char *file, const char *text, unsigned timeout_ms)
{
	double end = now_s() + timeout_ms / 1000.0;
	char buf[8192] = "";

	do {
		if (dvm_rd(VM, file, buf, sizeof(buf)) > 0 && strstr(buf, text))
			return true;
		usleep(50000);
	} while (now_s() < end);
	printf("# %s (waiting for \"%s\"):\n%s\n", file, text, buf);
	return false;
}

/* The tailored guest (cached) into dir, or skip: this test never builds the kernel. */
static void tailored_guest(char *dir, size_t size)
{
	const char *bld = getenv("MVMFS_BUILDDIR"), *src = getenv("MVMFS_SRCDIR");
	int rc;

	if (!bld || !src)
		test_skip("MVMFS_BUILDDIR/MVMFS_SRCDIR not set");
	snprintf(dir, size, "%s/guest-tailored", bld);
	rc = sh("%s/tools/build-guest --kernel tailored --cached-only --out %s "
		">%s/build-guest-tailored.log 2>&1",
		src, dir, bld);
	if (rc == 3)
		test_skip("the tailored kernel is not built: tools/build-guest --kernel tailored "
			  "builds it (the first build takes about 20 min of CPU on 2 cores)");
	if (rc != 0)
		test_skip("tools/build-guest --kernel tailored --cached-only failed (apt-get "
			  "download of busybox-static needs the network); see "
			  "build-guest-tailored.log");
}

static void test_daemon_tailored_kernel(void)
{
	char guest[300], tailored[300], p[512], page[1024], buf[8192], ip[64], state[64];
	char release[128] = "";
	pid_t reg, daemon;
	double t0;

	/* Before daemon_vm_begin moves the case into a network namespace of its own. */
	tailored_guest(tailored, sizeof(tailored));
	snprintf(T, sizeof(T), "/tmp/test-tailored.XXXXXX");
	daemon_vm_begin("qemu-system-x86_64 docker-registry umoci skopeo curl socat", guest,
			sizeof(guest), T, MNT, sizeof(MNT));
	snprintf(p, sizeof(p), "%s/kernel-version", tailored);
	ASSERT_TRUE(read_small(p, release, sizeof(release)) > 0);
	release[strcspn(release, " \n")] = '\0';
	printf("# tailored kernel %s\n", release);
	snprintf(VM, sizeof(VM), "%s/vms/tk", MNT);

	/* Registry + an HTTP app image that reports its kernel and environment. */
	reg = dvm_registry(T, 5055);
	dvm_bundle(T, tailored);
	ASSERT_EQ(
		sh("set -e; cd %s; R=bundle/rootfs; "
		   "printf 'root:x:0:0:root:/root:/bin/sh\\napp:x:1000:1000::/srv:/bin/sh\\n' > "
		   "$R/etc/passwd; printf 'root:x:0:\\napp:x:1000:\\n' > $R/etc/group; "
		   "printf '%%s\\n' '#!/bin/sh' 'mkdir -p /tmp/www' "
		   "'m=no; [ -e /proc/modules ] && m=yes' "
		   "'echo \"kernel=$(uname -r) modules=$m greeting=$GREETING workdir=$(pwd) "
		   "user=$(id -u):$(id -g)\" > /tmp/www/index.html' "
		   "'echo app: serving on 8080' 'exec httpd -f -p 8080 -h /tmp/www' > "
		   "$R/srv/app.sh; chmod 755 $R/srv/app.sh; "
		   "umoci repack --image oci:1 bundle >/dev/null; "
		   "umoci config --image oci:1 --config.entrypoint /bin/sh --config.cmd "
		   "/srv/app.sh --config.env GREETING=hello-tailored --config.workingdir /srv "
		   "--config.user app >/dev/null; umoci gc --layout oci; "
		   "skopeo copy -q --dest-tls-verify=false oci:oci:1 docker://127.0.0.1:5055/tk:1",
		   T),
		0);

	/* The daemon's default guest is the tailored kernel and its module-less initramfs. */
	dvm_state_guest(T, MNT, tailored);
	daemon =
		dvm_daemon(T, MNT,
			   (const char *[]){"--vmm", "qemu", "--insecure-registry",
					    "127.0.0.1:5055", "--bridge", "mvmtk0", "--ipv6-prefix",
					    "fd42:7e::/64", "--app-grace", "3s", NULL},
			   10000);
	ASSERT_OK(mkdir(VM, 0755));
	ASSERT_OK(dvm_wr(VM, "image", "127.0.0.1:5055/tk:1\n", 0));
	ASSERT_TRUE(dvm_rd(VM, "ip", ip, sizeof(ip)) > 0);
	ip[strcspn(ip, "\n")] = '\0';

	/* Boot: the agent says hello (agent: ok), the app runs and answers. */
	t0 = now_s();
	if (dvm_wr(VM, "state", "start\n", 0) < 0) {
		dvm_rd(VM, "error", buf, sizeof(buf));
		sh("tail -20 %s/daemon.log", T);
		TEST_FAIL("start failed: %s", buf);
	}
	ASSERT_TRUE(wait_for("health", "\nagent: ok ", 30000));
	ASSERT_TRUE(wait_for("health", "\napp: running ", 10000));
	ASSERT_TRUE(dvm_wait_http(ip, page, sizeof(page), 10000, 2, 50));
	printf("# start to HTTP %.2fs (wall, loaded machine); page: %s", now_s() - t0, page);
	snprintf(p, sizeof(p), "kernel=%s modules=no ", release);
	ASSERT_TRUE(strstr(page, p) != NULL);
	ASSERT_TRUE(strstr(page, "greeting=hello-tailored workdir=/srv user=1000:1000") != NULL);
	ASSERT_TRUE(wait_for("log", "app: serving on 8080", 3000));
	/* No module list to load: the agent never complains about one. */
	ASSERT_TRUE(dvm_rd(VM, "log", buf, sizeof(buf)) > 0);
	ASSERT_TRUE(strstr(buf, "module ") == NULL);

	/* Graceful stop through the agent. */
	ASSERT_OK(dvm_wr(VM, "state", "stop\n", 0));
	ASSERT_TRUE(dvm_rd(VM, "state", state, sizeof(state)) > 0);
	ASSERT_STREQ(state, "stopped\n");

	/* Again, and this time QEMU's power button: the ACPI button driver is built in. */
	ASSERT_OK(dvm_wr(VM, "state", "start\n", 0));
	ASSERT_TRUE(dvm_wait_http(ip, page, sizeof(page), 30000, 2, 50));
	ASSERT_EQ(sh("printf '%%s\\n' '{\"execute\":\"qmp_capabilities\"}' "
		     "'{\"execute\":\"system_powerdown\"}' | "
		     "timeout 5 socat -t 1 - UNIX-CONNECT:%s/state/qemu/tk/qmp.sock >/dev/null",
		     T),
		  0);
	ASSERT_TRUE(wait_for("log", "power button", 10000));
	ASSERT_TRUE(wait_for("state", "stopped", 15000));

	ASSERT_OK(rmdir(VM));
	dvm_stop(daemon);
	dvm_stop(reg);
	dvm_end(MNT, T);
}

/*
 * Boots the tailored kernel with -M microvm,acpi=off and one virtio-mmio disk; with_cmdline
 * false adds auto-kernel-cmdline=off (no virtio_mmio.device= words either). Returns whether the
 * console showed the disk before the agent started; fails when the agent never starts.
 */
static bool boots_with_disk(const char *guest, const char *dir, bool with_cmdline)
{
	char console[128], buf[65536];
	int fd;
	ssize_t n;

	snprintf(console, sizeof(console), "%s/console-%d.log", dir, with_cmdline);
	ASSERT_EQ(sh("KHZ=$(awk -F: '/^cpu MHz/{printf \"%%d\",$2*1000; exit}' /proc/cpuinfo); "
		     "timeout 60 qemu-system-x86_64 -accel tcg -M microvm,acpi=off%s -cpu max "
		     "-smp 1 -m 256 -nodefaults -nographic -no-reboot -serial file:%s "
		     "-kernel %s/vmlinux -initrd %s/initramfs.cpio.gz "
		     "-drive file=%s/disk.img,format=raw,if=none,id=d0,readonly=on "
		     "-device virtio-blk-device,drive=d0,serial=root "
		     "-append \"console=ttyS0 rdinit=/init panic=-1 tsc_early_khz=$KHZ "
		     "tsc=reliable mitigations=off cryptomgr.notests\" & q=$!; "
		     "for i in $(seq 600); do grep -q 'mvmfs-agent: starting' %s 2>/dev/null && "
		     "break; kill -0 $q 2>/dev/null || break; sleep 0.1; done; "
		     "kill $q 2>/dev/null; wait $q; exit 0",
		     with_cmdline ? "" : ",auto-kernel-cmdline=off", console, guest, guest, dir,
		     console),
		  0);
	fd = open(console, O_RDONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	ASSERT_TRUE(n > 0);
	buf[n] = '\0';
	if (!strstr(buf, "mvmfs-agent: starting")) {
		printf("# console:\n%s\n", buf);
		TEST_FAIL("the agent did not start (acpi=off%s)",
			  with_cmdline ? "" : ", auto-kernel-cmdline=off");
	}
	/* virtio_blk announces the disk as it probes, before init runs. */
	return strstr(buf, "virtio_blk virtio") && strstr(buf, ": [vda] ");
}

static void test_cmdline_devices(void)
{
	char guest[300], dir[64] = "/tmp/test-tailored-cmdline.XXXXXX";

	if (access("/usr/bin/qemu-system-x86_64", X_OK) < 0 &&
	    sh("command -v qemu-system-x86_64 >/dev/null") != 0)
		test_skip("qemu-system-x86_64 missing");
	tailored_guest(guest, sizeof(guest));
	ASSERT_TRUE(mkdtemp(dir) != NULL);
	ASSERT_EQ(sh("truncate -s 16M %s/disk.img", dir), 0);
	ASSERT_TRUE(boots_with_disk(guest, dir, true));
	ASSERT_FALSE(boots_with_disk(guest, dir, false));
	sh("rm -rf %s", dir);
}

TEST_MAIN(TEST(test_daemon_tailored_kernel), TEST(test_cmdline_devices))
