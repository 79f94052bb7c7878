/* SPDX-License-Identifier: MIT */
/* The health file's text (its check details carry what the guest agent said) into a report
 * document, then the JSON the reporter sends. Invariant: encoding succeeds or fails cleanly, and
 * what it produces is JSON that parses back. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct report_doc d = {
		.name = "vm1",
		.node = "node1",
		.state = "running",
		.ip = "",
		.image = "",
		.image_digest = "",
		.error = "",
	};
	char *text, *out = NULL;
	uint64_t hash;

	if (size > 65536)
		return 0;
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (report_parse_health(text, &d) == 0) {
		if (d.n_checks > REPORT_CHECKS_MAX || !memchr(d.verdict, '\0', sizeof(d.verdict)))
			__builtin_trap();
		if (report_doc_encode(&d, &out, &hash) == 0) {
			json_t *j = json_loads(out, 0, NULL);
			if (!j)
				__builtin_trap();
			json_decref(j);
			free(out);
		}
	}
	free(text);
	return 0;
}
