/* SPDX-License-Identifier: MIT */
/*
 * Hostile agent-channel byte streams for the decoder's throughput checks (test-agent-proto,
 * fuzz-agent-proto's corpus, the flood test): the inputs that made the old decoder rescan its
 * whole buffer per byte, and ones built to hit every path of the new one.
 */
#pragma once

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent-proto.h"

enum hostile_kind {
	HOSTILE_FAKE_HEADERS, /* a 4096-byte header, then bad-CRC 2048-byte headers every 8 B */
	HOSTILE_PENDING_THEN_VALID, /* 4096-byte header, a valid heartbeat, again and again */
	HOSTILE_OVERLAPPING_VALID,  /* a 4 KiB CRC-valid OUTPUT frame starting every 16 bytes */
	HOSTILE_RANDOM_HEADERS,	    /* magic at random spots with random lengths and types */
	_HOSTILE_MAX,
};

static inline const char *hostile_name(enum hostile_kind k)
{
	static const char *const n[] = {"fake-headers", "pending-then-valid", "overlapping-valid",
					"random-headers"};

	return n[k];
}

static inline void hostile_header(uint8_t *p, uint8_t type, unsigned plen)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)AGENT_PROTO_MAGIC[i];
	p[4] = AGENT_PROTO_VERSION;
	p[5] = type;
	p[6] = plen & 0xff;
	p[7] = (uint8_t)(plen >> 8);
}

static inline void hostile_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Fill buf[0..len) with a stream of that kind (len a multiple of 16 for OVERLAPPING_VALID). */
static inline void hostile_fill(enum hostile_kind k, uint8_t *buf, size_t len, unsigned seed)
{
	size_t off = 0;

	memset(buf, 'x', len);
	switch (k) {
	case HOSTILE_FAKE_HEADERS:
		for (off = 0; off + 8 <= len; off += 8)
			hostile_header(buf + off, AGENT_MSG_OUTPUT,
				       off % 4096 == 0 ? AGENT_PAYLOAD_MAX : 2048);
		break;
	case HOSTILE_PENDING_THEN_VALID:
		while (off + 8 + 33 <= len) {
			struct agent_msg hb = {.type = AGENT_MSG_HEARTBEAT};

			hostile_header(buf + off, AGENT_MSG_OUTPUT, AGENT_PAYLOAD_MAX);
			off += 8;
			off += (size_t)agent_msg_encode(&hb, buf + off, len - off);
		}
		break;
	case HOSTILE_OVERLAPPING_VALID: {
		/* Slot s (16 bytes): header | stream, len, 1 spare | CRC of the frame that
		 * started D slots earlier. Every frame spans D slots; all are CRC-valid. */
		const size_t D = 255, slots = len / 16;

		for (size_t s = 0; s < slots; s++) {
			unsigned plen = 16 * D + 4;

			hostile_header(buf + 16 * s, AGENT_MSG_OUTPUT, plen);
			buf[16 * s + 8] = AGENT_STREAM_STDOUT;
			buf[16 * s + 9] = (plen - 3) & 0xff;
			buf[16 * s + 10] = (uint8_t)((plen - 3) >> 8);
		}
		/* CRCs in order of frame end: each covers only earlier CRC fields. */
		for (size_t s = 0; s + D < slots; s++)
			hostile_put32(buf + 16 * (s + D) + 12,
				      agent_crc32(0, buf + 16 * s + 4, 4 + 16 * D + 4));
		break;
	}
	case HOSTILE_RANDOM_HEADERS:
		srand(seed);
		while (off + 8 <= len) {
			hostile_header(buf + off, (uint8_t)(1 + rand() % 8),
				       (unsigned)(rand() % (AGENT_PAYLOAD_MAX + 1)));
			off += 8 + (size_t)(rand() % 12);
		}
		break;
	default:
		break;
	}
}
