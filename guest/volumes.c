/* SPDX-License-Identifier: MIT */
/*
 * Volumes inside the guest: each volume's disk is found by its ext4 UUID (vm.json names it; the
 * order of virtio devices differs between VMMs), mounted at /mnt/vol/N, filled from the image's
 * directory when fresh and empty (Docker's rule: content, owner, mode and times of the image's
 * directory at that path), then moved to its path inside the container root. The path is
 * resolved inside the root (openat2 RESOLVE_IN_ROOT), so a symlink in the image cannot place a
 * volume outside it. statfs of the writable layer and of every volume goes to the host as
 * DISK_USAGE.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define MNT_VOL "/mnt/vol"
#define MNT_DATA "/mnt/data"
#define DEVS_MAX 26	   /* vda..vdz */
#define DEVS_WAIT_MS 10000 /* all disks attached at boot appear within this */
#define COPY_DEPTH_MAX 256 /* directories deep, for the copy of a fresh volume */

/* Found by volumes_scan: the device of each volume ("vdc"), and what the host reports. */
static char vol_dev[GUEST_VOLUMES_MAX][8];
static int vol_fd[GUEST_VOLUMES_MAX] = {-1, -1, -1, -1, -1, -1, -1, -1,
					-1, -1, -1, -1, -1, -1, -1, -1};
static unsigned n_vols;

static int ext4_uuid(const char *dev, uint8_t uuid[16])
{
	uint8_t sb[2];
	char path[32];
	int fd, r = 0;

	snprintf(path, sizeof(path), "/dev/%s", dev);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* The superblock is at 1024; its magic at +56, its UUID at +104. */
	if (pread(fd, sb, 2, 1024 + 56) != 2 || sb[0] != 0x53 || sb[1] != 0xef ||
	    pread(fd, uuid, 16, 1024 + 104) != 16)
		r = -ENODATA;
	close(fd);
	return r;
}

int volumes_scan(const struct guest_vm *vm, char others[2][8], unsigned *n_others)
{
	char last[16];
	int missing = 0;

	*n_others = 0;
	n_vols = vm->n_volumes;
	memset(vol_dev, 0, sizeof(vol_dev));
	/* Every disk: root, writable layer, volumes; virtio-blk names them vda, vdb, ... */
	snprintf(last, sizeof(last), "/dev/vd%c",
		 'a' + (int)MIN_INT(DEVS_MAX - 1, 1 + (int)n_vols));
	if (wait_for_path(last, DEVS_WAIT_MS) < 0)
		agent_log("%s did not appear within %d s", last, DEVS_WAIT_MS / 1000);
	for (int i = 0; i < DEVS_MAX; i++) {
		char dev[8], path[16];
		uint8_t uuid[16];
		bool is_vol = false;

		snprintf(dev, sizeof(dev), "vd%c", 'a' + i);
		snprintf(path, sizeof(path), "/dev/%s", dev);
		if (access(path, F_OK) < 0)
			break;
		if (ext4_uuid(dev, uuid) == 0)
			for (unsigned v = 0; v < n_vols; v++)
				if (memcmp(uuid, vm->volumes[v].uuid, 16) == 0 && !vol_dev[v][0]) {
					snprintf(vol_dev[v], sizeof(vol_dev[v]), "%s", dev);
					is_vol = true;
					break;
				}
		if (!is_vol && *n_others < 2)
			snprintf(others[(*n_others)++], 8, "%s", dev);
	}
	for (unsigned v = 0; v < n_vols; v++)
		if (!vol_dev[v][0]) {
			agent_log("volume for %s: no disk with its UUID", vm->volumes[v].path);
			missing++;
		}
	return missing ? -ENODEV : 0;
}

static int openat2_in(int dfd, const char *path, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)flags | O_CLOEXEC,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};

	return (int)syscall(SYS_openat2, dfd, path, &how, sizeof(how));
}

/* Open path inside root as a directory (O_PATH), creating missing components (0755, root's).
 * *ret_created: the last component did not exist. */
int volume_dir_in_root(int root_fd, const char *path, bool *ret_created)
{
	char buf[1024];
	int fd;

	*ret_created = false;
	fd = openat2_in(root_fd, path, O_PATH | O_DIRECTORY);
	if (fd >= 0)
		return fd;
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1;; p++) {
		bool end = *p == '\0';

		if (*p != '/' && !end)
			continue;
		*p = '\0';
		fd = openat2_in(root_fd, buf, O_PATH | O_DIRECTORY);
		if (fd < 0) {
			/* Create the component inside its (resolved) parent. */
			char *slash = strrchr(buf, '/');
			int pfd;

			*slash = '\0';
			pfd = openat2_in(root_fd, buf[0] ? buf : "/", O_PATH | O_DIRECTORY);
			*slash = '/';
			if (pfd < 0)
				return -errno;
			if (mkdirat(pfd, slash + 1, 0755) < 0 && errno != EEXIST) {
				int r = -errno;

				close(pfd);
				return r;
			}
			close(pfd);
			*ret_created = end;
			fd = openat2_in(root_fd, buf, O_PATH | O_DIRECTORY);
			if (fd < 0)
				return -errno;
		}
		if (end)
			return fd;
		close(fd);
		*p = '/';
	}
}

static int copy_attrs(int dfd, const char *name, const struct stat *st, bool link)
{
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	int flags = link ? AT_SYMLINK_NOFOLLOW : 0;

	if (fchownat(dfd, name, st->st_uid, st->st_gid, flags) < 0)
		return -errno;
	if (!link && fchmodat(dfd, name, st->st_mode & 07777, 0) < 0)
		return -errno;
	(void)utimensat(dfd, name, ts, flags);
	return 0;
}

static int copy_file(int sdfd, int ddfd, const char *name, const struct stat *st)
{
	char buf[65536];
	int in, out, r = 0;

	in = openat(sdfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0)
		return -errno;
	out = openat(ddfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0) {
		r = -errno;
		close(in);
		return r;
	}
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf)), w = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0)
				r = -errno;
			break;
		}
		while (w < n) {
			ssize_t k = write(out, buf + w, (size_t)(n - w));

			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				r = k < 0 ? -errno : -EIO;
				break;
			}
			w += k;
		}
		if (r < 0)
			break;
	}
	close(in);
	close(out);
	return r < 0 ? r : copy_attrs(ddfd, name, st, false);
}

/* Copy the tree of sdfd into ddfd: files, directories, symlinks, devices and fifos with their
 * owners, modes and times (hard links become copies). */
static int copy_tree(int sdfd, int ddfd, unsigned depth)
{
	DIR *d;
	struct dirent *de;
	int fd, r = 0;

	if (depth > COPY_DEPTH_MAX)
		return -ELOOP;
	fd = openat(sdfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while (r >= 0 && (de = readdir(d))) {
		const char *n = de->d_name;
		struct stat st;

		if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
			continue;
		if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			int s2, d2;

			if (mkdirat(ddfd, n, 0700) < 0) {
				r = -errno;
				break;
			}
			s2 = openat(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			d2 = openat(ddfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			r = s2 < 0 || d2 < 0 ? -errno : copy_tree(s2, d2, depth + 1);
			if (s2 >= 0)
				close(s2);
			if (d2 >= 0)
				close(d2);
			if (r >= 0)
				r = copy_attrs(ddfd, n, &st, false);
		} else if (S_ISREG(st.st_mode)) {
			r = copy_file(dirfd(d), ddfd, n, &st);
		} else if (S_ISLNK(st.st_mode)) {
			char target[4096];
			ssize_t k = readlinkat(dirfd(d), n, target, sizeof(target) - 1);

			if (k < 0) {
				r = -errno;
				break;
			}
			target[k] = '\0';
			r = symlinkat(target, ddfd, n) < 0 ? -errno
							   : copy_attrs(ddfd, n, &st, true);
		} else {
			r = mknodat(ddfd, n, st.st_mode, st.st_rdev) < 0
				    ? -errno
				    : copy_attrs(ddfd, n, &st, false);
		}
	}
	closedir(d);
	return r;
}

bool volume_is_empty(int dfd)
{
	DIR *d;
	struct dirent *de;
	bool empty = true;
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return false;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return false;
	}
	while (empty && (de = readdir(d)))
		empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
			strcmp(de->d_name, "lost+found") == 0;
	closedir(d);
	return empty;
}

/* Fill a fresh volume (mounted at vfd) from the image's directory at path, if any. */
int volume_fill_fresh(int root_fd, const char *path, int vfd)
{
	struct stat st;
	int src, r;

	(void)unlinkat(vfd, "lost+found", AT_REMOVEDIR);
	src = openat2_in(root_fd, path, O_RDONLY | O_DIRECTORY);
	if (src < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(src, &st) < 0) {
		r = -errno;
		close(src);
		return r;
	}
	r = copy_tree(src, vfd, 0);
	close(src);
	if (r < 0)
		return r;
	if (fchown(vfd, st.st_uid, st.st_gid) < 0 || fchmod(vfd, st.st_mode & 07777) < 0)
		return -errno;
	return 0;
}

int volumes_mount(const struct guest_vm *vm, const char *root)
{
	int root_fd, r = 0;

	if (!vm->n_volumes)
		return 0;
	root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0)
		return -errno;
	(void)mkdir(MNT_VOL, 0755);
	for (unsigned i = 0; i < vm->n_volumes && r >= 0; i++) {
		const struct guest_volume *v = &vm->volumes[i];
		char dev[32], stage[32], target[64];
		bool created = false;
		int tfd = -1, vfd = -1;

		if (!vol_dev[i][0]) {
			agent_log("volume %s: its disk was not found", v->path);
			r = -ENODEV;
			break;
		}
		snprintf(dev, sizeof(dev), "/dev/%.7s", vol_dev[i]);
		snprintf(stage, sizeof(stage), MNT_VOL "/%u", i);
		(void)mkdir(stage, 0755);
		if (mount(dev, stage, "ext4", MS_NOATIME | MS_NOSUID | MS_NODEV, NULL) < 0) {
			r = -errno;
			agent_log("volume %s: mount %s: %s", v->path, dev, strerror(-r));
			break;
		}
		vfd = open(stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (vfd < 0) {
			r = -errno;
			break;
		}
		if (v->fresh && volume_is_empty(vfd)) {
			r = volume_fill_fresh(root_fd, v->path, vfd);
			if (r < 0) {
				agent_log("volume %s: copying the image's content: %s", v->path,
					  strerror(-r));
				close(vfd);
				break;
			}
		}
		tfd = volume_dir_in_root(root_fd, v->path, &created);
		if (tfd < 0) {
			r = tfd;
			agent_log("volume %s: cannot make its directory: %s", v->path,
				  strerror(-r));
			close(vfd);
			break;
		}
		snprintf(target, sizeof(target), "/proc/self/fd/%d", tfd);
		if (mount(stage, target, NULL, MS_MOVE, NULL) < 0) {
			r = -errno;
			agent_log("volume %s: move into place: %s", v->path, strerror(-r));
			close(vfd);
		} else {
			vol_fd[i] = vfd; /* the volume's root, for statfs */
			if (created || v->fresh)
				agent_log("volume %s mounted%s", v->path,
					  v->fresh ? " (new: filled from the image)" : "");
		}
		close(tfd);
	}
	close(root_fd);
	return r;
}

static bool usage_of(int fd, const char *path, struct agent_disk *d)
{
	struct statfs sf;
	uint64_t bs;

	if ((fd >= 0 ? fstatfs(fd, &sf) : statfs(path, &sf)) < 0)
		return false;
	bs = (uint64_t)(sf.f_frsize ? sf.f_frsize : sf.f_bsize);
	d->size = (uint64_t)sf.f_blocks * bs;
	d->used = (uint64_t)(sf.f_blocks - sf.f_bfree) * bs;
	d->avail = (uint64_t)sf.f_bavail * bs;
	if (d->used > d->size)
		d->used = d->size;
	if (d->avail > d->size)
		d->avail = d->size;
	return true;
}

void volumes_usage(struct agent_disk_usage *ret)
{
	struct statfs sf;

	memset(ret, 0, sizeof(*ret));
	/* The writable layer: only when it is a disk (a tmpfs fallback says nothing useful). */
	if (statfs(MNT_DATA, &sf) == 0 && sf.f_type == 0xEF53 &&
	    usage_of(-1, MNT_DATA, &ret->d[ret->n]))
		ret->d[ret->n++].disk = 0;
	for (unsigned i = 0; i < n_vols && i < GUEST_VOLUMES_MAX; i++)
		if (vol_fd[i] >= 0 && usage_of(vol_fd[i], NULL, &ret->d[ret->n]))
			ret->d[ret->n++].disk = (uint8_t)(i + 1);
}

/* One mountinfo field (octal escapes of space, tab, newline and backslash decoded). */
static void unescape(const char *in, char *out, size_t size)
{
	size_t n = 0;

	for (; *in && *in != ' ' && n + 1 < size; in++) {
		if (in[0] == '\\' && in[1] >= '0' && in[1] <= '3' && in[2] >= '0' && in[2] <= '7' &&
		    in[3] >= '0' && in[3] <= '7') {
			out[n++] = (char)((in[1] - '0') * 64 + (in[2] - '0') * 8 + (in[3] - '0'));
			in += 3;
		} else
			out[n++] = *in;
	}
	out[n] = '\0';
}

void volumes_unmount(void)
{
	static char points[64][1100];
	char line[4096];
	unsigned n = 0;
	FILE *f;

	for (unsigned i = 0; i < GUEST_VOLUMES_MAX; i++)
		if (vol_fd[i] >= 0) {
			close(vol_fd[i]);
			vol_fd[i] = -1;
		}
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return;
	/* "ID PARENT MAJ:MIN ROOT MOUNTPOINT ...": everything below NEWROOT, children after
	 * their parents; unmounted in reverse. */
	while (n < 64 && fgets(line, sizeof(line), f)) {
		const char *p = line;

		for (int k = 0; k < 4 && p; k++) {
			p = strchr(p, ' ');
			if (p)
				p++;
		}
		if (!p)
			continue;
		unescape(p, points[n], sizeof(points[n]));
		if (strncmp(points[n], NEWROOT "/", sizeof(NEWROOT)) == 0)
			n++;
	}
	fclose(f);
	while (n-- > 0)
		if (umount2(points[n], 0) < 0 && errno != EINVAL && errno != ENOENT)
			(void)umount2(points[n], MNT_DETACH);
}
