/* SPDX-License-Identifier: MIT */
/* Firecracker metrics lines: the file is in the jail, written by the VMM's uid. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fc_metrics m, acc = {}, sum = {};
	uint64_t ts = 0, last = 0;

	if (fc_metrics_parse_line((const char *)data, size, &m, &ts) == 0) {
		fc_metrics_add(&acc, &m);
		if (memcmp(&acc, &m, sizeof(m)) != 0)
			__builtin_trap();
	}
	/* The whole input as a file tail: lines accounted at most once. */
	(void)fc_metrics_account((const char *)data, size, &last, &sum);
	if (fc_metrics_account((const char *)data, size, &last, &acc) != 0 && size)
		__builtin_trap();
	return 0;
}
