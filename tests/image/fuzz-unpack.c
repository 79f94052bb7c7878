/* SPDX-License-Identifier: MIT */
/* Arbitrary bytes as a layer, unpacked into a fresh rootfs in a temp dir: no crash, and nothing
 * appears beside the rootfs (a canary directory must stay as it was). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build.h"
#include "fileio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *tmp;

static void cleanup(void)
{
	if (tmp)
		(void)rm_rf(tmp);
}

static int count(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char rootfs[4096], canary[4096];
	struct img_unpack_limits lim = {16u << 20, 10000};
	struct img_unpack u;
	struct err err = {0};
	int fd;

	if (!tmp) {
		const char *base = getenv("TMPDIR");
		if (asprintf(&tmp, "%s/mvmfs-fuzz-unpack.XXXXXX", base ? base : "/tmp") < 0 ||
		    !mkdtemp(tmp))
			abort();
		atexit(cleanup);
		snprintf(rootfs, sizeof(rootfs), "%s/rootfs", tmp);
		snprintf(canary, sizeof(canary), "%s/canary", tmp);
		if (mkdir(canary, 0755) < 0)
			abort();
	}
	(void)rm_rf(rootfs);
	if (mkdir(rootfs, 0755) < 0)
		abort();
	fd = memfd_create("layer", MFD_CLOEXEC);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size || lseek(fd, 0, SEEK_SET) != 0)
		abort();
	if (img_unpack_init(&u, rootfs, &lim, &err) < 0)
		abort();
	(void)img_unpack_layer(&u, fd, "sha256:fuzz", NULL, &err);
	img_unpack_done(&u);
	close(fd);
	if (count(tmp) != 2 || count(canary) != 0)
		__builtin_trap();
	return 0;
}
