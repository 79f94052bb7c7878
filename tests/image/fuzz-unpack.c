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
#include "fuzz-rootfs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct img_unpack_limits lim = {16u << 20, 10000};
	struct img_unpack u;
	struct err err = {0};
	int fd;

	fuzz_rootfs_setup("unpack");
	(void)rm_rf(fuzz_rootfs);
	if (mkdir(fuzz_rootfs, 0755) < 0)
		abort();
	fd = memfd_create("layer", MFD_CLOEXEC);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size || lseek(fd, 0, SEEK_SET) != 0)
		abort();
	if (img_unpack_init(&u, fuzz_rootfs, &lim, &err) < 0)
		abort();
	(void)img_unpack_layer(&u, fd, "sha256:fuzz", NULL, &err);
	img_unpack_done(&u);
	close(fd);
	if (!fuzz_rootfs_contained())
		__builtin_trap();
	return 0;
}
