/* SPDX-License-Identifier: MIT */
/*
 * The unpack fuzz targets' scratch space: one temp dir per process holding the rootfs they
 * unpack into and an empty canary directory beside it, removed at exit. After each input the
 * temp dir must still hold exactly those two and the canary nothing.
 */
#pragma once

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fileio.h"

static char *fuzz_tmp;
static char fuzz_rootfs[4096], fuzz_canary[4096];

static inline void fuzz_tmp_cleanup(void)
{
	if (fuzz_tmp)
		(void)rm_rf(fuzz_tmp);
}

/* Number of entries in a directory, -1 when it cannot be read. */
static inline int fuzz_dir_count(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

/* Once per process: <TMPDIR>/mvmfs-fuzz-<tag>.XXXXXX with the canary; fuzz_rootfs and
 * fuzz_canary name the two. Aborts on failure (a broken rig, not a finding). */
static inline void fuzz_rootfs_setup(const char *tag)
{
	const char *base = getenv("TMPDIR");

	if (fuzz_tmp)
		return;
	if (asprintf(&fuzz_tmp, "%s/mvmfs-fuzz-%s.XXXXXX", base ? base : "/tmp", tag) < 0 ||
	    !mkdtemp(fuzz_tmp))
		abort();
	atexit(fuzz_tmp_cleanup);
	snprintf(fuzz_rootfs, sizeof(fuzz_rootfs), "%s/rootfs", fuzz_tmp);
	snprintf(fuzz_canary, sizeof(fuzz_canary), "%s/canary", fuzz_tmp);
	if (mkdir(fuzz_canary, 0755) < 0)
		abort();
}

/* Whether the input left the temp dir as it should be: rootfs and an empty canary only. */
static inline bool fuzz_rootfs_contained(void)
{
	return fuzz_dir_count(fuzz_tmp) == 2 && fuzz_dir_count(fuzz_canary) == 0;
}
