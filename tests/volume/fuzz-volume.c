/* SPDX-License-Identifier: MIT */
/* The volume parsers: the first byte picks one, the rest is its input. An accepted config must
 * encode and decode to the same fields; an accepted path must give a valid volume name; an
 * accepted size is in bounds and a multiple of 4096. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "volume.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct volume a, b;
	struct err err = {};
	char *s = NULL, name[VOLUME_NAME_MAX + 1];
	uint64_t v;

	if (size < 1)
		return 0;
	switch (data[0] % 4) {
	case 0:
		if (volume_config_decode((const char *)data + 1, size - 1, &a, &err) < 0)
			return 0;
		snprintf(a.name, sizeof(a.name), "x");
		if (volume_config_encode(&a, &s) < 0)
			return 0;
		if (volume_config_decode(s, strlen(s), &b, &err) < 0 ||
		    strcmp(a.path, b.path) != 0 || a.size != b.size || a.fresh != b.fresh ||
		    a.growing != b.growing)
			__builtin_trap();
		free(s);
		return 0;
	default:
		break;
	}
	/* The string cases take a NUL-terminated copy. */
	s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	switch (data[0] % 4) {
	case 1:
		if (volume_size_parse(s, &v, NULL) == 0 &&
		    (v < VOLUME_SIZE_MIN || v > VOLUME_SIZE_MAX || v % 4096))
			__builtin_trap();
		break;
	case 2:
		if (volume_path_check(s, NULL) == 0) {
			if (volume_name_from_path(s, name) < 0 || !volume_name_is_valid(name) ||
			    !volume_paths_overlap(s, s))
				__builtin_trap();
		} else if (volume_name_from_path(s, name) == 0)
			__builtin_trap();
		break;
	default:
		(void)volume_name_is_valid(s);
		break;
	}
	free(s);
	return 0;
}
