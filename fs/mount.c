/* SPDX-License-Identifier: MIT */
/* Mountpoint hygiene before mounting: a crashed daemon leaves a FUSE mount whose requests fail
 * with ENOTCONN; detach it. A live mvmfs at the same place is an error. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include "err.h"
#include "fs.h"
#include "macro.h"

/* Undo mountinfo's octal escapes (\040 for space...) in place. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* Is path the mount point of a fuse.mvmfs mount in this namespace? */
static int is_mvmfs_mount(const char *path)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	_cleanup_free_ char *line = NULL;
	size_t n = 0;
	int found = 0;

	if (!f)
		return -errno;
	while (getline(&line, &n, f) > 0) {
		char *save = NULL, *mp = NULL, *tok, *sep;
		int i = 0;

		sep = strstr(line, " - ");
		if (!sep)
			continue;
		*sep = '\0';
		for (tok = strtok_r(line, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
			if (++i == 5)
				mp = tok;
		if (!mp)
			continue;
		unescape(mp);
		if (strcmp(mp, path) == 0)
			found = strncmp(sep + 3, "fuse.mvmfs ", 11) == 0;
	}
	return found;
}

int fs_cleanup_stale_mount(const char *mountpoint, struct err *err)
{
	char real[PATH_MAX];
	struct statfs sfs;
	struct stat st;
	int r;

	/* statfs always reaches the FUSE daemon; stat may be answered from the attribute cache
	 * even when the connection is dead. */
	if (statfs(mountpoint, &sfs) < 0) {
		if (errno != ENOTCONN && errno != ECONNABORTED)
			return err_set(err, -errno, "cannot access mountpoint '%s'", mountpoint);
		if (umount2(mountpoint, MNT_DETACH) < 0)
			return err_set(err, -errno, "cannot detach the stale mount at '%s'",
				       mountpoint);
		return 1;
	}
	if (stat(mountpoint, &st) < 0)
		return err_set(err, -errno, "cannot access mountpoint '%s'", mountpoint);
	if (!S_ISDIR(st.st_mode))
		return err_set(err, -ENOTDIR, "mountpoint '%s' is not a directory", mountpoint);
	if (!realpath(mountpoint, real))
		return err_set(err, -errno, "cannot resolve mountpoint '%s'", mountpoint);
	r = is_mvmfs_mount(real);
	if (r < 0)
		return err_set(err, r, "cannot read /proc/self/mountinfo");
	if (r > 0)
		return err_set(err, -EBUSY, "a running mvmfs is already mounted on '%s'", real);
	return 0;
}
