/* SPDX-License-Identifier: MIT */
/* Fuzz the agent frame decoder: arbitrary bytes, fed in irregular pieces; every decoded message
 * must re-encode and decode to the same message, and the decoder's steps must stay within
 * AGENT_DECODER_MAX_WORK (linear in the bytes whatever they are: a throughput check, not only a
 * crash check). The input is fed twice: in growing pieces, and one byte per call (the worst
 * case for a decoder that rescans). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent-proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_reencode(const struct agent_msg *m)
{
	uint8_t buf[AGENT_FRAME_MAX];
	struct agent_decoder d;
	struct agent_msg again;
	int n = agent_msg_encode(m, buf, sizeof(buf));

	if (n < 0)
		abort(); /* whatever decodes must encode */
	agent_decoder_init(&d);
	if (agent_decoder_feed(&d, buf, (size_t)n) != (size_t)n ||
	    agent_decoder_next(&d, &again) != 1)
		abort();
	if (again.type != m->type)
		abort();
	if (m->type == AGENT_MSG_OUTPUT &&
	    (again.output.len != m->output.len ||
	     memcmp(again.output.data, m->output.data, m->output.len) != 0))
		abort();
	if (m->type == AGENT_MSG_IDENTITY &&
	    (again.identity.len != m->identity.len || again.identity.total != m->identity.total ||
	     again.identity.offset != m->identity.offset ||
	     memcmp(again.identity.data, m->identity.data, m->identity.len) != 0))
		abort();
	if (m->type == AGENT_MSG_IDENTITY_END &&
	    memcmp(&again.identity_end, &m->identity_end, sizeof(m->identity_end)) != 0)
		abort();
}

static void feed_all(const uint8_t *data, size_t size, bool one_by_one)
{
	static struct agent_decoder d;
	struct agent_msg m;
	size_t off = 0, step = 1;
	uint64_t calls = 0;

	agent_decoder_init(&d);
	while (off < size) {
		size_t n = size - off < step ? size - off : step;

		n = agent_decoder_feed(&d, data + off, n);
		off += n;
		calls++;
		while (calls++, agent_decoder_next(&d, &m) > 0)
			check_reencode(&m);
		if (!one_by_one)
			step = step * 3 + 1;
		if (step > 5000)
			step = 1;
	}
	if (d.work > AGENT_DECODER_MAX_WORK(size, calls))
		abort(); /* superlinear: some bytes were looked at too often */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct agent_msg m;

	feed_all(data, size, false);
	feed_all(data, size, true);
	/* Payload decoder directly on the raw input, for every type. */
	if (size > 0)
		for (uint8_t t = 0; t < 12; t++)
			if (agent_msg_decode(t, data + 1, size - 1, &m) == 0)
				check_reencode(&m);
	return 0;
}
