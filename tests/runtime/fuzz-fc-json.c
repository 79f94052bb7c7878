/* SPDX-License-Identifier: MIT */
/* Firecracker API response decoding: instance state and error bodies. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum vmm_run_state st;
	char buf[ERR_MSG_MAX];

	(void)fc_json_instance_state((const char *)data, size, &st);
	fc_json_fault((const char *)data, size, buf, sizeof(buf));
	if (strlen(buf) >= sizeof(buf))
		__builtin_trap();
	for (const char *p = buf; *p; p++)
		if ((unsigned char)*p < 0x20)
			__builtin_trap(); /* the error file is one line */
	return 0;
}
