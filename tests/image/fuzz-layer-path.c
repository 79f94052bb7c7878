/* SPDX-License-Identifier: MIT */
/* img_path_map: whatever the name, a success is a clean relative path inside the root. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "build.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *name = malloc(size + 1), out[IMG_PATH_MAX + 1];
	enum img_path_kind kind;
	const char *why = NULL;

	if (!name)
		return 0;
	memcpy(name, data, size);
	name[size] = '\0';
	if (img_path_map(name, out, sizeof(out), &kind, &why) == 0) {
		size_t n = strlen(out);

		if (out[0] == '/' || (n > 0 && out[n - 1] == '/') || strstr(out, "//"))
			__builtin_trap();
		for (const char *p = out; *p;) {
			const char *e = strchrnul(p, '/');
			if ((e - p == 1 && p[0] == '.') ||
			    (e - p == 2 && p[0] == '.' && p[1] == '.'))
				__builtin_trap();
			p = *e ? e + 1 : e;
		}
		if ((kind == IMG_PATH_WHITEOUT && n == 0) || (kind == IMG_PATH_ROOT && n != 0) ||
		    n > strlen(name))
			__builtin_trap();
	} else if (!why) {
		__builtin_trap();
	}
	free(name);
	return 0;
}
