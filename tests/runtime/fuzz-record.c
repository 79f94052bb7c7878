/* SPDX-License-Identifier: MIT */
/* VM record parsing; an accepted record must encode and decode to the same fields. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vm_record a, b;
	struct err err = {};
	char *s = NULL;

	if (record_decode((const char *)data, size, &a, &err) < 0)
		return 0;
	if (!vm_name_is_valid(a.name) || a.h.pidfd >= 0)
		__builtin_trap();
	if (record_encode(&a, &s) < 0)
		return 0;
	if (record_decode(s, strlen(s), &b, &err) < 0 || strcmp(a.name, b.name) != 0 ||
	    a.state != b.state || a.h.pid != b.h.pid || strcmp(a.image, b.image) != 0)
		__builtin_trap();
	free(s);
	return 0;
}
