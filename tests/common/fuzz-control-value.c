/* SPDX-License-Identifier: MIT */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char buf[4097];

	if (parse_control_value((const char *)data, size, 4096, buf, sizeof(buf)) == 0) {
		/* Invariant: the result is a NUL-terminated string with no control characters. */
		for (size_t i = 0; buf[i]; i++)
			if ((unsigned char)buf[i] < 0x20)
				__builtin_trap();
		(void)vm_name_is_valid(buf);
	}
	return 0;
}
