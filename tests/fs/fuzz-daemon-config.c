/* SPDX-License-Identifier: MIT */
/* Fuzz target: the daemon's --config FILE parser (daemon/options.c). Invariants: never crashes,
 * a failure always carries a message, and every string it keeps is freed by
 * daemon_options_done() (the leak checker of the ASan build sees the rest). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct daemon_options o = {};
	struct err err = {};
	char *buf;
	int r;

	if (size > 1 << 16)
		return 0;
	buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	r = daemon_config_parse(&o, buf, size, "fuzz.conf", &err);
	if (r < 0 && (err.code != r || err.msg[0] == '\0'))
		__builtin_trap();
	if (r == 0 && o.rt.insecure_registries && o.rt.insecure_registries[o.n_insecure] != NULL)
		__builtin_trap();
	daemon_options_done(&o);
	free(buf);
	return 0;
}
