/* SPDX-License-Identifier: MIT */
/* Stray-process matching on untrusted /proc text: the input is split at the first byte 0x01
 * into an argv image (NUL-separated, as /proc/PID/cmdline) and a root link. Must never read
 * out of bounds; a match must be explainable by one of the two rules. The argv image is also
 * read as an environment (/proc/PID/environ) for the QEMU rule: a match needs the exact entry. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ROOT "/srv/jailer/firecracker/web-1/root"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *sep = memchr(data, 1, size);
	size_t argv_len = sep ? (size_t)(sep - data) : size;
	char *argv = malloc(argv_len ? argv_len : 1), *root = NULL;
	bool m, by_root;

	if (!argv)
		return 0;
	memcpy(argv, data, argv_len);
	if (sep) {
		size_t rl = size - argv_len - 1;
		root = malloc(rl + 1);
		if (!root) {
			free(argv);
			return 0;
		}
		memcpy(root, sep + 1, rl);
		root[rl] = '\0';
	}
	m = stray_matches(argv, argv_len, root, "web-1", "/srv/jailer", ROOT);
	by_root = root && (strcmp(root, ROOT) == 0 || strcmp(root, ROOT " (deleted)") == 0);
	/* A match that is not by root needs the two pairs inside a NUL-terminated argv. */
	if (m && !by_root &&
	    (argv_len == 0 || argv[argv_len - 1] != '\0' || !memmem(argv, argv_len, "web-1", 5) ||
	     !memmem(argv, argv_len, "/srv/jailer", 11)))
		__builtin_trap();
	if (by_root && !m)
		__builtin_trap();
	{
		static const char mark[] = "MVMFS_QEMU_DIR=/var/lib/mvmfs/qemu/web-1";
		bool e = stray_env_matches(argv, argv_len, mark);
		const char *hit = memmem(argv, argv_len, mark, sizeof(mark));

		/* the entry, NUL-terminated, at the start or right after a NUL */
		if (e && (!hit || (hit != argv && hit[-1] != '\0') || argv[argv_len - 1] != '\0'))
			__builtin_trap();
	}
	free(argv);
	free(root);
	return 0;
}
