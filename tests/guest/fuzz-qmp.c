/* SPDX-License-Identifier: MIT */
/* Fuzz the QMP reply parsers (runtime/qmp.c): a line from QEMU and a query-status return. */
#include <stdint.h>
#include <stdlib.h>

#include "qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum vmm_run_state st;
	json_t *v = NULL;
	char desc[64];
	int r;

	r = qmp_parse_line((const char *)data, size, &v, desc, sizeof(desc));
	if (r != 2 && v)
		abort(); /* a value only comes with a "return" */
	json_decref(v);
	(void)qmp_parse_status((const char *)data, size, &st);
	return 0;
}
