/* SPDX-License-Identifier: MIT */
/* Load the kernel modules shipped in the initramfs, in the dependency order tools/build-guest
 * computed. A kernel with the drivers built in ships no list, and EEXIST means built in/loaded. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"

static int load_one(const char *path)
{
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* glibc has no finit_module wrapper. */
	r = (int)syscall(SYS_finit_module, fd, "", 0);
	r = r < 0 ? -errno : 0;
	close(fd);
	return r == -EEXIST ? 0 : r;
}

int modules_load_list(const char *path)
{
	char line[512];
	FILE *f;
	int n = 0;

	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	while (fgets(line, sizeof(line), f)) {
		size_t len = strcspn(line, "\r\n");
		int r;

		line[len] = '\0';
		if (len == 0 || line[0] == '#')
			continue;
		r = load_one(line);
		if (r < 0)
			agent_log("module %s: %s", line, strerror(-r));
		else
			n++;
	}
	fclose(f);
	return n;
}
