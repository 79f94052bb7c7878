/* SPDX-License-Identifier: MIT */
/* Early mounts, the overlay root (image disk read-only + writable data disk; the volumes are
 * volumes.c's), /etc files, and the orderly unmount + power-off at shutdown. The agent itself stays
 * in the initramfs; only the app is chrooted into NEWROOT, so everything can be unmounted cleanly
 * at the end. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define MNT_ROOT "/mnt/root"
#define MNT_DATA "/mnt/data"

/* Each mount's own time in the boot (guest monotonic us), for the "boot timing" line. */
static char mount_times[512];
static size_t mount_times_len;

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void mount_time(const char *dst, uint64_t us)
{
	const char *name = strncmp(dst, NEWROOT, strlen(NEWROOT)) == 0 && dst[strlen(NEWROOT)]
				   ? dst + strlen(NEWROOT)
				   : dst;
	int n = snprintf(mount_times + mount_times_len, sizeof(mount_times) - mount_times_len,
			 "%s%s %.1f", mount_times_len ? ", " : "", name, (double)us / 1000.0);

	if (n > 0 && (size_t)n < sizeof(mount_times) - mount_times_len)
		mount_times_len += (size_t)n;
}

const char *mounts_timing(void)
{
	return mount_times;
}

static int do_mount(const char *src, const char *dst, const char *type, unsigned long flags,
		    const char *data)
{
	uint64_t t0 = now_us();

	(void)mkdir(dst, 0755);
	if (mount(src, dst, type, flags, data) < 0) {
		int r = -errno;

		agent_log("mount %s on %s (%s): %s", src, dst, type, strerror(-r));
		return r;
	}
	mount_time(dst, now_us() - t0);
	return 0;
}

int wait_for_path(const char *path, unsigned timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;

	for (;;) {
		if (access(path, F_OK) == 0)
			return 0;
		if (now_ms() >= end)
			return -ETIMEDOUT;
		/* virtio devices probe asynchronously after their module loads */
		nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
	}
}

int mounts_early(void)
{
	int fd;

	(void)do_mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	(void)do_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	(void)do_mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	return 0;
}

/* Read a short sysfs attribute of block device dev ("vda") into buf. */
static void sysfs_attr(const char *dev, const char *attr, char *buf, size_t size)
{
	char path[128];
	ssize_t n;
	int fd;

	buf[0] = '\0';
	snprintf(path, sizeof(path), "/sys/block/%s/%s", dev, attr);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		n = 0;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
}

/* Which of a/b (the two disks that are not volumes, "vda"/"vdb" without volumes) is the image
 * root: by serial ("root"/"data", QEMU), else by the read-only flag, else the first one
 * (Firecracker attaches the root drive first). b may be NULL: no writable disk. */
static void pick_disks(const char *a, const char *b, const char **root, const char **data)
{
	char sa[32], sb[32], ra[8], rb[8];

	*root = a;
	*data = b;
	if (!b)
		return;
	sysfs_attr(a, "serial", sa, sizeof(sa));
	sysfs_attr(b, "serial", sb, sizeof(sb));
	if (strcmp(sa, "data") == 0 || strcmp(sb, "root") == 0) {
		*root = b;
		*data = a;
		return;
	}
	if (strcmp(sa, "root") == 0 || strcmp(sb, "data") == 0)
		return;
	sysfs_attr(a, "ro", ra, sizeof(ra));
	sysfs_attr(b, "ro", rb, sizeof(rb));
	if (strcmp(ra, "0") == 0 && strcmp(rb, "1") == 0) {
		*root = b;
		*data = a;
	}
}

int mounts_root(const struct guest_vm *vm)
{
	static char others[2][8];
	const char *root, *data;
	unsigned n_others = 0;
	char dev[32];
	int r;

	mount_times_len = 0;
	mount_times[0] = '\0';
	r = wait_for_path("/dev/vda", 10000);
	if (r < 0) {
		agent_log("no root disk /dev/vda after 10 s");
		return r;
	}
	if (vm->n_volumes) {
		/* The volumes' disks are told apart by UUID; a missing one fails the app's start
		 * later (volumes_mount), the root and writable layer still come up. */
		(void)volumes_scan(vm, others, &n_others);
		if (n_others == 0) {
			agent_log("no root disk among the disks");
			return -ENODEV;
		}
		pick_disks(others[0], n_others > 1 ? others[1] : NULL, &root, &data);
	} else {
		bool have_b = wait_for_path("/dev/vdb", 2000) == 0;

		pick_disks("vda", have_b ? "vdb" : NULL, &root, &data);
	}

	boot_mark(BT_DISKS);
	snprintf(dev, sizeof(dev), "/dev/%s", root);
	r = do_mount(dev, MNT_ROOT, "ext4", MS_RDONLY, "noload");
	if (r < 0)
		r = do_mount(dev, MNT_ROOT, "ext4", MS_RDONLY, NULL);
	if (r < 0)
		return r;
	boot_mark(BT_IMAGE);
	/* The image's files the start reads first, while the rest is mounted. (The writable disk's
	 * mount beside the image root's gained nothing: under TCG both are CPU-bound.) */
	warm_begin(vm, MNT_ROOT);
	if (data) {
		snprintf(dev, sizeof(dev), "/dev/%s", data);
		r = do_mount(dev, MNT_DATA, "ext4", MS_NOATIME, NULL);
	}
	if (!data || r < 0) {
		agent_log("no writable data disk: changes live in memory");
		r = do_mount("tmpfs", MNT_DATA, "tmpfs", 0, "mode=0755");
		if (r < 0)
			return r;
	}
	boot_mark(BT_DATA);
	(void)mkdir(MNT_DATA "/upper", 0755);
	(void)mkdir(MNT_DATA "/work", 0755);
	r = do_mount("overlay", NEWROOT, "overlay", 0,
		     "lowerdir=" MNT_ROOT ",upperdir=" MNT_DATA "/upper,workdir=" MNT_DATA "/work");
	if (r < 0)
		return r;
	(void)do_mount("proc", NEWROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	(void)do_mount("sysfs", NEWROOT "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	(void)do_mount("devtmpfs", NEWROOT "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	(void)do_mount("devpts", NEWROOT "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		       "newinstance,ptmxmode=0666,mode=0620");
	(void)do_mount("tmpfs", NEWROOT "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	(void)do_mount("tmpfs", NEWROOT "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	(void)do_mount("tmpfs", NEWROOT "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
	return 0;
}

/* Replace path (even a dangling symlink into /run) with a regular file holding text. */
static int write_etc(const char *path, const char *text)
{
	size_t len = strlen(text);
	int fd;

	(void)unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len) {
		close(fd);
		return -EIO;
	}
	close(fd);
	return 0;
}

int mounts_etc(const struct guest_vm *vm)
{
	char buf[1024], addr[INET6_ADDRSTRLEN] = "";

	if (sethostname(vm->name, strlen(vm->name)) < 0)
		agent_log("sethostname: %s", strerror(errno));
	(void)mkdir(NEWROOT "/etc", 0755);
	snprintf(buf, sizeof(buf), "%s\n", vm->name);
	(void)write_etc(NEWROOT "/etc/hostname", buf);
	if (vm->have_addr)
		inet_ntop(AF_INET6, &vm->addr, addr, sizeof(addr));
	snprintf(buf, sizeof(buf),
		 "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s%s%s\n",
		 addr[0] ? addr : "::1", "\t", vm->name);
	(void)write_etc(NEWROOT "/etc/hosts", buf);
	/* Public resolvers over IPv6; the host gateway runs no DNS server. */
	(void)write_etc(NEWROOT "/etc/resolv.conf",
			"nameserver 2001:4860:4860::8888\nnameserver 2606:4700:4700::1111\n"
			"options edns0\n");
	return 0;
}

void mounts_teardown(void)
{
	static const char *const order[] = {
		NEWROOT "/run", NEWROOT "/tmp", NEWROOT "/dev/shm", NEWROOT "/dev/pts",
		NEWROOT "/dev", NEWROOT "/sys", NEWROOT "/proc",    NEWROOT,
		MNT_DATA,	MNT_ROOT,
	};

	/* Everything but us: the app's leftovers hold the overlay busy. */
	kill(-1, SIGKILL);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	sync();
	/* The volumes (and whatever else is below NEWROOT), innermost first. */
	volumes_unmount();
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if (umount2(order[i], 0) < 0 && errno != EINVAL && errno != ENOENT)
			(void)umount2(order[i], MNT_DETACH);
	sync();
}

_Noreturn void power_off(bool vsock)
{
	sync();
	/* Firecracker on x86 has no ACPI power-off: only a reset (reboot=k) ends the VMM. QEMU
	 * exits on the microvm GED power-off, and on a reset thanks to -no-reboot. */
	if (!vsock)
		reboot(RB_POWER_OFF);
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}
