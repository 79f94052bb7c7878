/* SPDX-License-Identifier: MIT */
/*
 * daemon: one node, one daemon. STATE_DIR/daemon.lock carries an open-file-description lock
 * (fcntl F_OFD_SETLK) for the daemon's whole life, so a second daemon on the same state dir
 * refuses to start instead of undoing the first one's work; the kernel drops the lock when the
 * daemon dies however it dies (no stale lock after a kill -9). The file's text names the holder
 * (pid, mount point) for the refusal message; it is advice, the lock is the truth.
 *
 * STATE_DIR/node-id holds the node identity: 8 lowercase hex digits generated once. Every host
 * resource the daemon creates carries it (net/: namespace names, link aliases, nft chains), so
 * daemons with different state dirs on one host never take each other's resources for their own.
 */
#include "node.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "fileio.h"
#include "macro.h"

#define LOCK_FILE "daemon.lock"
#define NODE_ID_FILE "node-id"

/* The holder's advice text on one printable line ("pid N, mount M"), for the refusal message. */
static void holder_text(int fd, char *buf, size_t size)
{
	char raw[256];
	ssize_t n = pread(fd, raw, sizeof(raw), 0);
	size_t o = 0;

	while (n > 0 && raw[n - 1] == '\n')
		n--;
	for (ssize_t i = 0; i < n && o + 3 < size; i++) {
		if (raw[i] == '\n') {
			buf[o++] = ',';
			buf[o++] = ' ';
		} else {
			buf[o++] = raw[i] >= 0x20 && raw[i] <= 0x7e ? raw[i] : '?';
		}
	}
	buf[o] = '\0';
	if (o == 0)
		(void)snprintf(buf, size, "unknown holder");
}

/* Lock dir/name for the daemon's life; what names dir in the refusal ("state dir"). */
static int lock_in(const char *dir, mode_t mode, const char *name, const char *what,
		   const char *mountpoint, int *ret_fd, struct err *err)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	_cleanup_close_ int fd = -1;
	char path[4200], text[4400];
	int r, n;

	r = mkdir_p(dir, mode);
	if (r < 0)
		return err_set(err, r, "cannot create the %s %s: %s", what, dir, strerror(-r));
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return err_set(err, -ENAMETOOLONG, "%s path too long", what);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return err_set(err, -errno, "cannot open %s: %m", path);
	if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		if (errno != EAGAIN && errno != EACCES)
			return err_set(err, -errno, "cannot lock %s: %m", path);
		holder_text(fd, text, 256);
		return err_set(
			err, -EBUSY,
			"%s %s is in use by another mvmfs daemon (%s); one daemon per state "
			"dir and jail base: stop it first, or give this one its own "
			"--state-dir, --chroot-base, --bridge, --ipv6-prefix, --uid-base and "
			"mount point",
			what, dir, text);
	}
	n = snprintf(text, sizeof(text), "pid %ld\nmount %s\n", (long)getpid(), mountpoint);
	if (n < 0 || (size_t)n >= sizeof(text))
		n = snprintf(text, sizeof(text), "pid %ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, text, (size_t)n, 0) != n)
		return err_set(err, -errno ? -errno : -EIO, "cannot write %s: %m", path);
	*ret_fd = TAKE_FD(fd);
	return 0;
}

int node_lock(const char *state_dir, const char *mountpoint, int *ret_fd, struct err *err)
{
	return lock_in(state_dir, 0700, LOCK_FILE, "state dir", mountpoint, ret_fd, err);
}

int node_lock_jails(const char *chroot_base, const char *mountpoint, int *ret_fd, struct err *err)
{
	/* Jail dirs are named after VMs and reaped by their mark: two daemons on one base would
	 * take each other's for leftovers. The file is no VM name, so no reaper touches it. */
	return lock_in(chroot_base, 0755, ".mvmfs-" LOCK_FILE, "jail base", mountpoint, ret_fd,
		       err);
}

int node_id_parse(const char *s, size_t len, char ret[NODE_ID_LEN + 1])
{
	if (len == NODE_ID_LEN + 1 && s[NODE_ID_LEN] == '\n')
		len--;
	if (len != NODE_ID_LEN)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return -EINVAL;
	memcpy(ret, s, NODE_ID_LEN);
	ret[NODE_ID_LEN] = '\0';
	return 0;
}

int node_id_load(const char *state_dir, char ret[NODE_ID_LEN + 1], struct err *err)
{
	_cleanup_free_ char *text = NULL;
	uint8_t rnd[NODE_ID_LEN / 2];
	char path[4200], line[NODE_ID_LEN + 2];
	size_t len;
	int r;

	if (snprintf(path, sizeof(path), "%s/" NODE_ID_FILE, state_dir) >= (int)sizeof(path))
		return err_set(err, -ENAMETOOLONG, "state dir path too long");
	r = read_file_bounded(path, 64, &text, &len);
	if (r >= 0) {
		/* Never replaced silently: a new identity would disown every live resource. */
		if (node_id_parse(text, len, ret) < 0)
			return err_set(
				err, -EINVAL,
				"%s is corrupt (expected %d lowercase hex digits); restore it "
				"or remove it only when no VM of this node exists",
				path, NODE_ID_LEN);
		return 0;
	}
	if (r != -ENOENT)
		return err_set(err, r, "cannot read %s: %s", path, strerror(-r));
	/* First start on this state dir (under the daemon lock: nobody races us). */
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return err_set(err, -EIO, "getrandom failed: %m");
	for (size_t i = 0; i < sizeof(rnd); i++)
		(void)snprintf(line + 2 * i, 3, "%02x", rnd[i]);
	line[NODE_ID_LEN] = '\n';
	line[NODE_ID_LEN + 1] = '\0';
	r = write_file_atomic(path, line, NODE_ID_LEN + 1, 0644);
	if (r < 0)
		return err_set(err, r, "cannot write %s: %s", path, strerror(-r));
	memcpy(ret, line, NODE_ID_LEN);
	ret[NODE_ID_LEN] = '\0';
	return 0;
}
