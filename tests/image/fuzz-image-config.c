/* SPDX-License-Identifier: MIT */
/* img_config_parse over arbitrary bytes: no crash, and a success is well-formed. */
#include <stdint.h>
#include <string.h>

#include "build.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct img_config c = {0};

	if (img_config_parse((const char *)data, size, &c, NULL) == 0) {
		if (!c.guest_json || c.guest_json[0] != '{')
			__builtin_trap();
		for (size_t i = 0; i < c.n_volumes; i++)
			if (c.volumes[i][0] != '/' || strlen(c.volumes[i]) < 2 ||
			    strlen(c.volumes[i]) > 1023 || strstr(c.volumes[i], "//") ||
			    strstr(c.volumes[i], "/../") ||
			    (i && strcmp(c.volumes[i - 1], c.volumes[i]) >= 0))
				__builtin_trap();
		for (size_t i = 0; i < c.n_diff_ids; i++)
			if (strncmp(c.diff_ids[i], "sha256:", 7) != 0 ||
			    strlen(c.diff_ids[i]) != 71)
				__builtin_trap();
		img_config_done(&c);
	}
	return 0;
}
