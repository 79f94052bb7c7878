/* SPDX-License-Identifier: MIT */
/* The agent reading a "#!" line from the head of the image's program (guest/warm.c): the image
 * comes from the registry. Input: the head (at most WARM_HEAD bytes are looked at).
 * Invariants: an accepted interpreter is absolute, NUL-terminated inside out, has no blank or
 * newline, and was in the input. */
#include <stdint.h>
#include <string.h>

#include "agent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[64];
	size_t n;

	memset(out, 'x', sizeof(out));
	if (warm_shebang(data, size, out, sizeof(out)) < 0)
		return 0;
	if (size > WARM_HEAD || out[0] != '/' || !memchr(out, '\0', sizeof(out)))
		__builtin_trap();
	n = strlen(out);
	if (strpbrk(out, " \t\n") || !memmem(data, size, out, n))
		__builtin_trap();
	return 0;
}
