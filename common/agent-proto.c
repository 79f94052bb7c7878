/* SPDX-License-Identifier: MIT */
/* Agent protocol framing: pure encode/decode with resynchronisation (see agent-proto.h). */
#include "agent-proto.h"

#include <errno.h>
#include <string.h>

static const char *const type_names[_AGENT_MSG_MAX] = {
	[AGENT_MSG_HELLO] = "hello",
	[AGENT_MSG_HEARTBEAT] = "heartbeat",
	[AGENT_MSG_APP_STARTED] = "app-started",
	[AGENT_MSG_APP_EXITED] = "app-exited",
	[AGENT_MSG_OUTPUT] = "output",
	[AGENT_MSG_NET_CONFIGURED] = "net-configured",
	[AGENT_MSG_STOP] = "stop",
	[AGENT_MSG_SHUTDOWN] = "shutdown",
};

const char *agent_msg_type_to_string(int type)
{
	if (type <= 0 || type >= _AGENT_MSG_MAX)
		return "unknown";
	return type_names[type];
}

/* Table-less bitwise CRC-32 (reflected, poly 0xEDB88320): frames are small and rare. */
uint32_t agent_crc32(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;

	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
	}
	return ~crc;
}

static void put_u16(uint8_t *p, uint16_t v)
{
	p[0] = v & 0xff;
	p[1] = v >> 8;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (v >> (8 * i)) & 0xff;
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (v >> (8 * i)) & 0xff;
}

static uint16_t get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static uint64_t get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) | ((uint64_t)get_u32(p + 4) << 32);
}

/* Bounded text: length of s up to max, -EINVAL if it does not end within max. */
static int text_len(const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	return n >= max ? -EINVAL : (int)n;
}

/* Serialise msg's payload into p (room for AGENT_PAYLOAD_MAX). Returns its length. */
static int encode_payload(const struct agent_msg *m, uint8_t *p)
{
	int n;

	switch (m->type) {
	case AGENT_MSG_HELLO:
		n = text_len(m->hello.name, sizeof(m->hello.name));
		if (n < 0)
			return n;
		put_u32(p, m->hello.version);
		put_u32(p + 4, m->hello.heartbeat_ms);
		memcpy(p + 8, m->hello.name, (size_t)n);
		return 8 + n;
	case AGENT_MSG_HEARTBEAT:
		put_u32(p, m->heartbeat.seq);
		put_u64(p + 4, m->heartbeat.uptime_ms);
		put_u64(p + 12, m->heartbeat.dropped_bytes);
		p[20] = m->heartbeat.app_running ? 1 : 0;
		return 21;
	case AGENT_MSG_APP_STARTED:
		put_u32(p, m->pid);
		return 4;
	case AGENT_MSG_APP_EXITED:
		put_u32(p, (uint32_t)m->exited.code);
		put_u32(p + 4, (uint32_t)m->exited.signal);
		p[8] = m->exited.start_failed ? 1 : 0;
		return 9;
	case AGENT_MSG_OUTPUT:
		if (m->output.len > AGENT_OUTPUT_CHUNK || (m->output.len && !m->output.data))
			return -EINVAL;
		if (m->output.stream < AGENT_STREAM_STDOUT || m->output.stream > AGENT_STREAM_AGENT)
			return -EINVAL;
		p[0] = m->output.stream;
		put_u16(p + 1, m->output.len);
		if (m->output.len)
			memcpy(p + 3, m->output.data, m->output.len);
		return 3 + m->output.len;
	case AGENT_MSG_NET_CONFIGURED:
		if (m->net.prefix_len > 128)
			return -EINVAL;
		p[0] = m->net.ok ? 1 : 0;
		p[1] = m->net.prefix_len;
		memcpy(p + 2, m->net.addr, 16);
		return 18;
	case AGENT_MSG_STOP:
		put_u32(p, m->grace_ms);
		return 4;
	case AGENT_MSG_SHUTDOWN:
		n = text_len(m->reason, sizeof(m->reason));
		if (n < 0)
			return n;
		memcpy(p, m->reason, (size_t)n);
		return n;
	default:
		return -EINVAL;
	}
}

int agent_msg_encode(const struct agent_msg *msg, uint8_t *buf, size_t size)
{
	uint8_t payload[AGENT_PAYLOAD_MAX];
	int n;

	n = encode_payload(msg, payload);
	if (n < 0)
		return n;
	if (size < (size_t)n + AGENT_FRAME_OVERHEAD)
		return -ENOBUFS;
	memcpy(buf, AGENT_PROTO_MAGIC, 4);
	buf[4] = AGENT_PROTO_VERSION;
	buf[5] = msg->type;
	put_u16(buf + 6, (uint16_t)n);
	memcpy(buf + AGENT_FRAME_HEADER, payload, (size_t)n);
	put_u32(buf + AGENT_FRAME_HEADER + n, agent_crc32(0, buf + 4, 4 + (size_t)n));
	return n + AGENT_FRAME_OVERHEAD;
}

/* Copy len bytes of text into a fixed buffer, rejecting NULs and control bytes. */
static int decode_text(const uint8_t *p, size_t len, char *out, size_t size)
{
	if (len >= size)
		return -EBADMSG;
	for (size_t i = 0; i < len; i++)
		if (p[i] < 0x20 || p[i] == 0x7f)
			return -EBADMSG;
	memcpy(out, p, len);
	out[len] = '\0';
	return 0;
}

int agent_msg_decode(uint8_t type, const uint8_t *p, size_t len, struct agent_msg *ret)
{
	struct agent_msg m;

	if (len > AGENT_PAYLOAD_MAX)
		return -EBADMSG;
	memset(&m, 0, sizeof(m));
	m.type = type;
	switch (type) {
	case AGENT_MSG_HELLO:
		if (len < 8)
			return -EBADMSG;
		m.hello.version = get_u32(p);
		m.hello.heartbeat_ms = get_u32(p + 4);
		if (decode_text(p + 8, len - 8, m.hello.name, sizeof(m.hello.name)) < 0)
			return -EBADMSG;
		break;
	case AGENT_MSG_HEARTBEAT:
		if (len != 21 || p[20] > 1)
			return -EBADMSG;
		m.heartbeat.seq = get_u32(p);
		m.heartbeat.uptime_ms = get_u64(p + 4);
		m.heartbeat.dropped_bytes = get_u64(p + 12);
		m.heartbeat.app_running = p[20];
		break;
	case AGENT_MSG_APP_STARTED:
		if (len != 4)
			return -EBADMSG;
		m.pid = get_u32(p);
		break;
	case AGENT_MSG_APP_EXITED:
		if (len != 9 || p[8] > 1)
			return -EBADMSG;
		m.exited.code = (int32_t)get_u32(p);
		m.exited.signal = (int32_t)get_u32(p + 4);
		m.exited.start_failed = p[8];
		if (m.exited.signal < 0 || m.exited.signal > 64)
			return -EBADMSG;
		break;
	case AGENT_MSG_OUTPUT:
		if (len < 3 || p[0] < AGENT_STREAM_STDOUT || p[0] > AGENT_STREAM_AGENT)
			return -EBADMSG;
		m.output.stream = p[0];
		m.output.len = get_u16(p + 1);
		if ((size_t)m.output.len != len - 3)
			return -EBADMSG;
		m.output.data = p + 3;
		break;
	case AGENT_MSG_NET_CONFIGURED:
		if (len != 18 || p[0] > 1 || p[1] > 128)
			return -EBADMSG;
		m.net.ok = p[0];
		m.net.prefix_len = p[1];
		memcpy(m.net.addr, p + 2, 16);
		break;
	case AGENT_MSG_STOP:
		if (len != 4)
			return -EBADMSG;
		m.grace_ms = get_u32(p);
		break;
	case AGENT_MSG_SHUTDOWN:
		if (decode_text(p, len, m.reason, sizeof(m.reason)) < 0)
			return -EBADMSG;
		break;
	default:
		return -EPROTONOSUPPORT;
	}
	*ret = m;
	return 0;
}

void agent_decoder_init(struct agent_decoder *d)
{
	d->len = 0;
	d->consumed = 0;
	d->skipped_bytes = 0;
	d->bad_frames = 0;
}

/* Drop the frame returned last time, keeping the rest of the buffer. */
static void decoder_compact(struct agent_decoder *d)
{
	if (d->consumed == 0)
		return;
	memmove(d->buf, d->buf + d->consumed, d->len - d->consumed);
	d->len -= d->consumed;
	d->consumed = 0;
}

size_t agent_decoder_feed(struct agent_decoder *d, const void *data, size_t len)
{
	size_t room;

	decoder_compact(d);
	room = sizeof(d->buf) - d->len;
	if (len > room)
		len = room;
	memcpy(d->buf + d->len, data, len);
	d->len += len;
	return len;
}

/* Skip n bytes of garbage. */
static void decoder_skip(struct agent_decoder *d, size_t n)
{
	memmove(d->buf, d->buf + n, d->len - n);
	d->len -= n;
	d->skipped_bytes += n;
}

/* Offset of the first complete frame with a valid CRC and payload after offset 0, or 0. */
static size_t later_valid_frame(const struct agent_decoder *d)
{
	for (size_t i = 1; i + AGENT_FRAME_HEADER <= d->len; i++) {
		struct agent_msg m;
		size_t plen;

		if (memcmp(d->buf + i, AGENT_PROTO_MAGIC, 4) != 0 ||
		    d->buf[i + 4] != AGENT_PROTO_VERSION)
			continue;
		plen = get_u16(d->buf + i + 6);
		if (plen > AGENT_PAYLOAD_MAX || i + plen + AGENT_FRAME_OVERHEAD > d->len)
			continue;
		if (get_u32(d->buf + i + AGENT_FRAME_HEADER + plen) ==
			    agent_crc32(0, d->buf + i + 4, 4 + plen) &&
		    agent_msg_decode(d->buf[i + 5], d->buf + i + AGENT_FRAME_HEADER, plen, &m) == 0)
			return i;
	}
	return 0;
}

int agent_decoder_next(struct agent_decoder *d, struct agent_msg *ret)
{
	decoder_compact(d);
	for (;;) {
		size_t i, plen, flen;

		/* Find the magic (or a prefix of it at the end of the buffer). */
		for (i = 0; i < d->len; i++) {
			size_t k = d->len - i < 4 ? d->len - i : 4;

			if (memcmp(d->buf + i, AGENT_PROTO_MAGIC, k) == 0)
				break;
		}
		if (i > 0)
			decoder_skip(d, i);
		if (d->len < AGENT_FRAME_HEADER)
			return 0;
		plen = get_u16(d->buf + 6);
		if (d->buf[4] != AGENT_PROTO_VERSION || plen > AGENT_PAYLOAD_MAX) {
			d->bad_frames++;
			decoder_skip(d, 1);
			continue;
		}
		flen = plen + AGENT_FRAME_OVERHEAD;
		if (d->len < flen) {
			/* Bytes lost mid-frame leave a header whose length swallows the frames
			 * that follow: rather than wait for that many bytes, give up on it as
			 * soon as a complete valid frame starts inside its span. */
			size_t at = later_valid_frame(d);

			if (at == 0)
				return 0;
			d->bad_frames++;
			decoder_skip(d, at);
			continue;
		}
		if (get_u32(d->buf + AGENT_FRAME_HEADER + plen) !=
			    agent_crc32(0, d->buf + 4, 4 + plen) ||
		    agent_msg_decode(d->buf[5], d->buf + AGENT_FRAME_HEADER, plen, ret) < 0) {
			d->bad_frames++;
			decoder_skip(d, 1);
			continue;
		}
		d->consumed = flen;
		return 1;
	}
}
