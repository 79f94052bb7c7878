/* SPDX-License-Identifier: MIT */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct img_challenge ch;
	char *s = malloc(size + 1);

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (img_auth_parse_challenge(s, &ch) == 0) {
		if (strcmp(ch.scheme, "basic") != 0 && strcmp(ch.scheme, "bearer") != 0)
			__builtin_trap();
		if (strlen(ch.realm) >= sizeof(ch.realm) || strlen(ch.scope) >= sizeof(ch.scope) ||
		    strlen(ch.service) >= sizeof(ch.service))
			__builtin_trap();
		if (strcmp(ch.scheme, "bearer") == 0 && !ch.realm[0])
			__builtin_trap();
	}
	free(s);
	return 0;
}
