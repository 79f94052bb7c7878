/* SPDX-License-Identifier: MIT */
/* Fuzz the `log` neutraliser: whatever the guest wrote, the output is safe text (see
 * log-text-check.h), never longer than the input, the same in place, and the same whether the
 * bytes come in one piece or in many. */
#include <stdlib.h>
#include <string.h>

#include "log-text-check.h"
#include "log-text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct log_text t;
	char *whole = malloc(size + 8), *pieces = malloc(size + 8), *inplace = malloc(size + 8);
	size_t nw, np = 0, ni, step = 1;

	if (!whole || !pieces || !inplace)
		abort();
	log_text_init(&t);
	nw = log_text_feed(&t, data, size, whole);
	if (nw > size)
		abort();
	nw += log_text_finish(&t, whole + nw);
	if (!log_text_output_ok(whole, nw))
		abort();

	log_text_init(&t);
	for (size_t off = 0; off < size; off += step, step = step * 2 + 1) {
		size_t n = size - off < step ? size - off : step;

		np += log_text_feed(&t, data + off, n, pieces + np);
	}
	np += log_text_finish(&t, pieces + np);
	if (np != nw || memcmp(whole, pieces, nw) != 0)
		abort();

	memcpy(inplace, data, size);
	log_text_init(&t);
	ni = log_text_feed(&t, (const uint8_t *)inplace, size, inplace);
	ni += log_text_finish(&t, inplace + ni);
	if (ni != nw || memcmp(whole, inplace, nw) != 0)
		abort();
	free(whole);
	free(pieces);
	free(inplace);
	return 0;
}
