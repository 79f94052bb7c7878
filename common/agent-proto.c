/* SPDX-License-Identifier: MIT */
/* Agent protocol framing: pure encode/decode with resynchronisation in linear time (see
 * agent-proto.h). */
#include "agent-proto.h"

#include <errno.h>
#include <stdbool.h>
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
	[AGENT_MSG_SET_CLOCK] = "set-clock",
	[AGENT_MSG_CLOCK_SET] = "clock-set",
	[AGENT_MSG_BOOT_ID] = "boot-id",
	[AGENT_MSG_DISK_USAGE] = "disk-usage",
	[AGENT_MSG_IDENTITY_WAIT] = "identity-wait",
	[AGENT_MSG_IDENTITY] = "identity",
	[AGENT_MSG_IDENTITY_END] = "identity-end",
	[AGENT_MSG_IDENTITY_ACK] = "identity-ack",
};

const char *agent_msg_type_to_string(int type)
{
	if (type <= 0 || type >= _AGENT_MSG_MAX || !type_names[type])
		return "unknown";
	return type_names[type];
}

#define CRC_POLY 0xEDB88320u /* CRC-32, reflected */

static uint32_t crc_table[256];
/* x^(8n) mod the CRC polynomial (reflected: bit 31 is x^0): multiplying a CRC by it appends n
 * zero bytes, which is how the decoder gets a span's CRC from two prefix CRCs. */
static uint32_t crc_x8n[AGENT_PAYLOAD_MAX + 5];

__attribute__((constructor)) static void crc_tables_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (CRC_POLY & (0u - (c & 1u)));
		crc_table[i] = c;
	}
	crc_x8n[0] = 1u << 31;
	for (size_t n = 1; n < sizeof(crc_x8n) / sizeof(crc_x8n[0]); n++) {
		uint32_t b = crc_x8n[n - 1];

		for (int k = 0; k < 8; k++)
			b = (b >> 1) ^ (CRC_POLY & (0u - (b & 1u)));
		crc_x8n[n] = b;
	}
}

/* a * b modulo the CRC polynomial (as zlib's multmodp). */
static uint32_t multmodp(uint32_t a, uint32_t b)
{
	uint32_t p = 0;

	for (uint32_t m = 1u << 31; m; m >>= 1) {
		if (a & m) {
			p ^= b;
			if ((a & (m - 1)) == 0)
				break;
		}
		b = (b >> 1) ^ (CRC_POLY & (0u - (b & 1u)));
	}
	return p;
}

uint32_t agent_crc32(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;

	crc = ~crc;
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
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

/* An IDENTITY piece: a non-empty slice of a vm.json of 1..AGENT_IDENTITY_MAX bytes. */
static bool identity_piece_ok(uint32_t total, uint32_t offset, size_t len)
{
	return total >= 1 && total <= AGENT_IDENTITY_MAX && len >= 1 &&
	       len <= AGENT_IDENTITY_CHUNK && offset < total && len <= total - offset;
}

/* Serialise msg's payload into p (room for AGENT_PAYLOAD_MAX). Returns its length. Long: one
 * short case per message type, side by side with agent_msg_decode's, so a layout is read in one
 * place. */
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
	case AGENT_MSG_SET_CLOCK:
		if (m->clock.sec < 0 || m->clock.nsec >= 1000000000u)
			return -EINVAL;
		put_u64(p, (uint64_t)m->clock.sec);
		put_u32(p + 8, m->clock.nsec);
		return 12;
	case AGENT_MSG_CLOCK_SET:
		if (m->clock_set.error < 0 || m->clock_set.error > 4095)
			return -EINVAL;
		put_u64(p, (uint64_t)m->clock_set.step_ns);
		put_u32(p + 8, (uint32_t)m->clock_set.error);
		return 12;
	case AGENT_MSG_BOOT_ID:
		memcpy(p, m->boot_id, AGENT_BOOT_ID_LEN);
		return AGENT_BOOT_ID_LEN;
	case AGENT_MSG_DISK_USAGE:
		if (m->disks.n > AGENT_DISKS_MAX)
			return -EINVAL;
		p[0] = m->disks.n;
		for (unsigned i = 0; i < m->disks.n; i++) {
			const struct agent_disk *d = &m->disks.d[i];
			uint8_t *q = p + 1 + 25 * i;

			q[0] = d->disk;
			put_u64(q + 1, d->size);
			put_u64(q + 9, d->used);
			put_u64(q + 17, d->avail);
		}
		return 1 + 25 * m->disks.n;
	case AGENT_MSG_IDENTITY_WAIT:
		return 0;
	case AGENT_MSG_IDENTITY:
		if (!identity_piece_ok(m->identity.total, m->identity.offset, m->identity.len) ||
		    !m->identity.data)
			return -EINVAL;
		put_u32(p, m->identity.total);
		put_u32(p + 4, m->identity.offset);
		memcpy(p + 8, m->identity.data, m->identity.len);
		return 8 + m->identity.len;
	case AGENT_MSG_IDENTITY_END:
		if (m->identity_end.total < 1 || m->identity_end.total > AGENT_IDENTITY_MAX ||
		    m->identity_end.clock.sec < 0 || m->identity_end.clock.nsec >= 1000000000u)
			return -EINVAL;
		put_u32(p, m->identity_end.total);
		put_u32(p + 4, m->identity_end.crc);
		put_u64(p + 8, (uint64_t)m->identity_end.clock.sec);
		put_u32(p + 16, m->identity_end.clock.nsec);
		memcpy(p + 20, m->identity_end.entropy, AGENT_ENTROPY_LEN);
		return 20 + AGENT_ENTROPY_LEN;
	case AGENT_MSG_IDENTITY_ACK:
		n = text_len(m->identity_ack.reason, sizeof(m->identity_ack.reason));
		if (n < 0 || m->identity_ack.error < 0 || m->identity_ack.error > 4095)
			return -EINVAL;
		put_u32(p, (uint32_t)m->identity_ack.error);
		memcpy(p + 4, m->identity_ack.reason, (size_t)n);
		return 4 + n;
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
	for (int i = 0; i < 4; i++)
		buf[i] = (uint8_t)AGENT_PROTO_MAGIC[i];
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

/* Long: one case per message type, each a strict check of its fixed layout; splitting them
 * into functions would separate each layout from its bounds checks. */
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
	case AGENT_MSG_SET_CLOCK:
		if (len != 12)
			return -EBADMSG;
		m.clock.sec = (int64_t)get_u64(p);
		m.clock.nsec = get_u32(p + 8);
		if (m.clock.sec < 0 || m.clock.nsec >= 1000000000u)
			return -EBADMSG;
		break;
	case AGENT_MSG_CLOCK_SET:
		if (len != 12)
			return -EBADMSG;
		m.clock_set.step_ns = (int64_t)get_u64(p);
		m.clock_set.error = (int32_t)get_u32(p + 8);
		if (m.clock_set.error < 0 || m.clock_set.error > 4095)
			return -EBADMSG;
		break;
	case AGENT_MSG_BOOT_ID:
		if (len != AGENT_BOOT_ID_LEN)
			return -EBADMSG;
		memcpy(m.boot_id, p, AGENT_BOOT_ID_LEN);
		break;
	case AGENT_MSG_DISK_USAGE:
		if (len < 1 || p[0] > AGENT_DISKS_MAX || len != 1 + 25 * (size_t)p[0])
			return -EBADMSG;
		m.disks.n = p[0];
		for (unsigned i = 0; i < m.disks.n; i++) {
			struct agent_disk *d = &m.disks.d[i];
			const uint8_t *q = p + 1 + 25 * i;

			d->disk = q[0];
			d->size = get_u64(q + 1);
			d->used = get_u64(q + 9);
			d->avail = get_u64(q + 17);
			if (d->disk >= AGENT_DISKS_MAX || (i && d->disk <= m.disks.d[i - 1].disk) ||
			    d->used > d->size || d->avail > d->size)
				return -EBADMSG;
		}
		break;
	case AGENT_MSG_IDENTITY_WAIT:
		if (len != 0)
			return -EBADMSG;
		break;
	case AGENT_MSG_IDENTITY:
		if (len < 9)
			return -EBADMSG;
		m.identity.total = get_u32(p);
		m.identity.offset = get_u32(p + 4);
		m.identity.len = (uint16_t)(len - 8);
		m.identity.data = p + 8;
		if (!identity_piece_ok(m.identity.total, m.identity.offset, m.identity.len))
			return -EBADMSG;
		break;
	case AGENT_MSG_IDENTITY_END:
		if (len != 20 + AGENT_ENTROPY_LEN)
			return -EBADMSG;
		m.identity_end.total = get_u32(p);
		m.identity_end.crc = get_u32(p + 4);
		m.identity_end.clock.sec = (int64_t)get_u64(p + 8);
		m.identity_end.clock.nsec = get_u32(p + 16);
		memcpy(m.identity_end.entropy, p + 20, AGENT_ENTROPY_LEN);
		if (m.identity_end.total < 1 || m.identity_end.total > AGENT_IDENTITY_MAX ||
		    m.identity_end.clock.sec < 0 || m.identity_end.clock.nsec >= 1000000000u)
			return -EBADMSG;
		break;
	case AGENT_MSG_IDENTITY_ACK:
		if (len < 4)
			return -EBADMSG;
		m.identity_ack.error = (int32_t)get_u32(p);
		if (m.identity_ack.error < 0 || m.identity_ack.error > 4095 ||
		    decode_text(p + 4, len - 4, m.identity_ack.reason,
				sizeof(m.identity_ack.reason)) < 0)
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
	d->base = 0;
	d->head = d->tail = 0;
	d->crc[0] = 0;
	d->scanned = 0;
	d->npending = d->nvalid = 0;
	d->skipped_bytes = 0;
	d->bad_frames = 0;
	d->work = 0;
}

size_t agent_decoder_feed(struct agent_decoder *d, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t room = AGENT_DECODER_WINDOW - (d->tail - d->head);

	if (len > room)
		len = room;
	if (d->tail + len > sizeof(d->buf)) {
		/* At most one window moved per window's worth of bytes fed. */
		size_t keep = d->tail - d->head;

		memmove(d->buf, d->buf + d->head, keep);
		memmove(d->crc, d->crc + d->head, (keep + 1) * sizeof(d->crc[0]));
		d->base += d->head;
		d->tail = keep;
		d->head = 0;
		d->work += keep;
	}
	for (size_t i = 0; i < len; i++) {
		uint32_t c = ~d->crc[d->tail];

		c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
		d->buf[d->tail++] = p[i];
		d->crc[d->tail] = ~c;
	}
	d->work += len;
	return len;
}

/* CRC-32 of buf[from..to) from the prefix CRCs: crc[to] = combine(crc[from], span). */
static uint32_t span_crc(const struct agent_decoder *d, size_t from, size_t to)
{
	return d->crc[to] ^ multmodp(crc_x8n[to - from], d->crc[from]);
}

enum start {
	START_NONE, /* no magic here */
	START_BAD,  /* a header with a bad version or length, or a frame with a bad CRC/payload */
	START_PENDING, /* a plausible header whose frame is not complete yet */
	START_VALID,
};

/* What begins at buf[i] (at least AGENT_FRAME_HEADER bytes there). O(1) but for the payload
 * check of a CRC-valid frame, which is bounded (AGENT_TEXT_MAX). */
static enum start classify(struct agent_decoder *d, size_t i, size_t *flen, struct agent_msg *m)
{
	const uint8_t *p = d->buf + i;
	size_t plen;

	if (memcmp(p, AGENT_PROTO_MAGIC, 4) != 0)
		return START_NONE;
	plen = get_u16(p + 6);
	if (p[4] != AGENT_PROTO_VERSION || plen > AGENT_PAYLOAD_MAX)
		return START_BAD;
	*flen = plen + AGENT_FRAME_OVERHEAD;
	if (d->tail - i < *flen)
		return START_PENDING;
	d->work += 32;
	if (get_u32(p + AGENT_FRAME_HEADER + plen) !=
	    span_crc(d, i + 4, i + AGENT_FRAME_HEADER + plen))
		return START_BAD;
	d->work += 8 + (plen < AGENT_TEXT_MAX ? plen : AGENT_TEXT_MAX) / 8; /* a byte loop */
	if (agent_msg_decode(p[5], p + AGENT_FRAME_HEADER, plen, m) < 0)
		return START_BAD;
	return START_VALID;
}

/* Binary min-heaps of stream offsets (pending: by frame end). Capacity: a window holds at
 * most AGENT_DECODER_STARTS frame starts and stale entries are dropped before pushing. */
static bool pending_less(const struct agent_decoder *d, size_t a, size_t b)
{
	return d->pending[a].end < d->pending[b].end;
}

static void pending_push(struct agent_decoder *d, uint64_t at, uint64_t end)
{
	size_t i = d->npending;

	if (i == AGENT_DECODER_STARTS)
		return; /* cannot happen (see above); losing a start only delays resync */
	d->pending[d->npending++] = (struct agent_decoder_pending){at, end};
	while (i > 0 && pending_less(d, i, (i - 1) / 2)) {
		struct agent_decoder_pending t = d->pending[i];

		d->pending[i] = d->pending[(i - 1) / 2];
		d->pending[(i - 1) / 2] = t;
		i = (i - 1) / 2;
		d->work++;
	}
}

static struct agent_decoder_pending pending_pop(struct agent_decoder *d)
{
	struct agent_decoder_pending top = d->pending[0];
	size_t i = 0;

	d->pending[0] = d->pending[--d->npending];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, min = i;
		struct agent_decoder_pending t;

		if (l < d->npending && pending_less(d, l, min))
			min = l;
		if (r < d->npending && pending_less(d, r, min))
			min = r;
		if (min == i)
			break;
		t = d->pending[i];
		d->pending[i] = d->pending[min];
		d->pending[min] = t;
		i = min;
		d->work++;
	}
	return top;
}

static void valid_push(struct agent_decoder *d, uint64_t at)
{
	size_t i = d->nvalid;

	if (i == AGENT_DECODER_STARTS)
		return; /* cannot happen (see above) */
	d->valid[d->nvalid++] = at;
	while (i > 0 && d->valid[i] < d->valid[(i - 1) / 2]) {
		uint64_t t = d->valid[i];

		d->valid[i] = d->valid[(i - 1) / 2];
		d->valid[(i - 1) / 2] = t;
		i = (i - 1) / 2;
		d->work++;
	}
}

static void valid_pop(struct agent_decoder *d)
{
	size_t i = 0;

	d->valid[0] = d->valid[--d->nvalid];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, min = i;
		uint64_t t;

		if (l < d->nvalid && d->valid[l] < d->valid[min])
			min = l;
		if (r < d->nvalid && d->valid[r] < d->valid[min])
			min = r;
		if (min == i)
			break;
		t = d->valid[i];
		d->valid[i] = d->valid[min];
		d->valid[min] = t;
		i = min;
		d->work++;
	}
}

/* Distance from buf[from] to the next 'm' before buf[to], or to - from. */
static size_t to_next_m(struct agent_decoder *d, size_t from, size_t to)
{
	const uint8_t *q = memchr(d->buf + from, AGENT_PROTO_MAGIC[0], to - from);
	size_t n = q ? (size_t)(q - (d->buf + from)) : to - from;

	d->work += n / 16 + 1;
	return n;
}

/* The header at head waits for its frame: is there a complete valid frame after it? Each
 * stream offset is registered once (scanned only grows); a pending one is checked again once,
 * when its end arrives. Returns the buffer index of the earliest such frame, or 0. */
static size_t later_valid_frame(struct agent_decoder *d)
{
	uint64_t head = d->base + d->head, tail = d->base + d->tail;
	struct agent_msg m;
	size_t flen;

	while (d->npending && d->pending[0].end <= tail) {
		struct agent_decoder_pending e = pending_pop(d);

		if (e.at > head && classify(d, (size_t)(e.at - d->base), &flen, &m) == START_VALID)
			valid_push(d, e.at);
	}
	while (d->nvalid && d->valid[0] <= head)
		valid_pop(d);
	if (d->scanned <= head)
		d->scanned = head + 1;
	while (d->scanned + AGENT_FRAME_HEADER <= tail) {
		size_t i = (size_t)(d->scanned - d->base), n;

		d->work++;
		if (d->buf[i] != (uint8_t)AGENT_PROTO_MAGIC[0]) {
			n = to_next_m(d, i, d->tail);
			d->scanned += n;
			continue;
		}
		switch (classify(d, i, &flen, &m)) {
		case START_PENDING:
			pending_push(d, d->scanned, d->scanned + flen);
			break;
		case START_VALID:
			valid_push(d, d->scanned);
			break;
		default:
			break;
		}
		d->scanned++;
	}
	return d->nvalid ? (size_t)(d->valid[0] - d->base) : 0;
}

static void decoder_skip(struct agent_decoder *d, size_t n)
{
	d->head += n;
	d->skipped_bytes += n;
}

int agent_decoder_next(struct agent_decoder *d, struct agent_msg *ret)
{
	for (;;) {
		size_t avail = d->tail - d->head, flen = 0, at;
		const uint8_t *p = d->buf + d->head;

		d->work++;
		if (avail == 0)
			return 0;
		if (p[0] != (uint8_t)AGENT_PROTO_MAGIC[0]) {
			decoder_skip(d, to_next_m(d, d->head, d->tail));
			continue;
		}
		if (avail < AGENT_FRAME_HEADER) {
			/* the magic, or a prefix of it at the end: wait for the rest */
			if (memcmp(p, AGENT_PROTO_MAGIC, avail < 4 ? avail : 4) == 0)
				return 0;
			decoder_skip(d, 1);
			continue;
		}
		switch (classify(d, d->head, &flen, ret)) {
		case START_NONE:
			decoder_skip(d, 1);
			continue;
		case START_BAD:
			d->bad_frames++;
			decoder_skip(d, 1);
			continue;
		case START_VALID:
			d->head += flen;
			return 1;
		case START_PENDING:
			break;
		}
		/* Bytes lost mid-frame leave a header whose length swallows the frames that
		 * follow: rather than wait for that many bytes, give up on it as soon as a
		 * complete valid frame starts inside its span. */
		at = later_valid_frame(d);
		if (at == 0)
			return 0;
		d->bad_frames++;
		decoder_skip(d, at - d->head);
	}
}
