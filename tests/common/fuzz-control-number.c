/* SPDX-License-Identifier: MIT */
/* A control-file write as the numeric and boolean attributes take it: parse_control_value, then
 * parse_u64/u32/size/bool. Invariants: a parsed number prints back to a value that parses to
 * itself, u32 agrees with u64, and a size is never below the plain number it was written as. */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char buf[4097], again[32];
	uint64_t u64, back, sz;
	uint32_t u32;
	bool b;

	if (parse_control_value((const char *)data, size, 4096, buf, sizeof(buf)) < 0)
		return 0;
	if (parse_u64(buf, &u64) == 0) {
		snprintf(again, sizeof(again), "%" PRIu64, u64);
		if (parse_u64(again, &back) < 0 || back != u64)
			__builtin_trap();
		if (parse_u32(buf, &u32) == 0 ? u32 != u64 : u64 <= UINT32_MAX)
			__builtin_trap();
		if (parse_size(buf, &sz) == 0 && sz < u64)
			__builtin_trap();
	}
	(void)parse_size(buf, &sz);
	(void)parse_bool(buf, &b);
	return 0;
}
