/* SPDX-License-Identifier: MIT */
/* agent-proto framing: round trips, resynchronisation after garbage and corruption, limits, and
 * the decoder's cost on hostile input (steps and CPU time per byte). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent-hostile.h"
#include "agent-proto.h"
#include "test.h"

static int encode(const struct agent_msg *m, uint8_t *buf, size_t size)
{
	int n = agent_msg_encode(m, buf, size);

	ASSERT_OK(n);
	return n;
}

/* Copy the characters of s (no NUL); returns how many. */
static size_t put_text(uint8_t *buf, const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		buf[n] = (uint8_t)s[n];
	return n;
}

/* Feed everything, collect decoded messages. */
static int decode_all(struct agent_decoder *d, const uint8_t *data, size_t len,
		      struct agent_msg *out, int max)
{
	int n = 0;

	for (size_t off = 0; off < len;) {
		off += agent_decoder_feed(d, data + off, len - off);
		while (n < max && agent_decoder_next(d, &out[n]) > 0)
			n++;
	}
	return n;
}

static void test_roundtrip_all_types(void)
{
	static const uint8_t out_data[] = "hello\nworld";
	struct agent_msg m[8], got[8];
	uint8_t buf[8 * AGENT_FRAME_MAX];
	struct agent_decoder d;
	size_t len = 0;
	int n;

	memset(m, 0, sizeof(m));
	m[0].type = AGENT_MSG_HELLO;
	m[0].hello.version = AGENT_PROTO_VERSION;
	m[0].hello.heartbeat_ms = 1000;
	strcpy(m[0].hello.name, "mvmfs-agent 0.1.0");
	m[1].type = AGENT_MSG_HEARTBEAT;
	m[1].heartbeat.seq = 7;
	m[1].heartbeat.uptime_ms = 123456789012ull;
	m[1].heartbeat.dropped_bytes = 42;
	m[1].heartbeat.app_running = 1;
	m[2].type = AGENT_MSG_APP_STARTED;
	m[2].pid = 4242;
	m[3].type = AGENT_MSG_APP_EXITED;
	m[3].exited.code = -1;
	m[3].exited.signal = 9;
	m[4].type = AGENT_MSG_OUTPUT;
	m[4].output.stream = AGENT_STREAM_STDERR;
	m[4].output.len = sizeof(out_data) - 1;
	m[4].output.data = out_data;
	m[5].type = AGENT_MSG_NET_CONFIGURED;
	m[5].net.ok = 1;
	m[5].net.prefix_len = 64;
	m[5].net.addr[0] = 0xfd;
	m[5].net.addr[15] = 0x10;
	m[6].type = AGENT_MSG_STOP;
	m[6].grace_ms = 5000;
	m[7].type = AGENT_MSG_SHUTDOWN;
	strcpy(m[7].reason, "stop requested");
	for (int i = 0; i < 8; i++)
		len += (size_t)encode(&m[i], buf + len, sizeof(buf) - len);

	agent_decoder_init(&d);
	n = decode_all(&d, buf, len, got, 8);
	ASSERT_EQ(n, 8);
	ASSERT_STREQ(got[0].hello.name, "mvmfs-agent 0.1.0");
	ASSERT_EQ(got[0].hello.heartbeat_ms, 1000);
	ASSERT_EQ(got[1].heartbeat.uptime_ms, 123456789012ull);
	ASSERT_EQ(got[1].heartbeat.dropped_bytes, 42);
	ASSERT_EQ(got[2].pid, 4242);
	ASSERT_EQ(got[3].exited.code, -1);
	ASSERT_EQ(got[3].exited.signal, 9);
	ASSERT_EQ(got[5].net.prefix_len, 64);
	ASSERT_EQ(got[5].net.addr[15], 0x10);
	ASSERT_EQ(got[6].grace_ms, 5000);
	ASSERT_STREQ(got[7].reason, "stop requested");
	ASSERT_EQ(d.skipped_bytes, 0);
	ASSERT_EQ(d.bad_frames, 0);
}

/* The suspend/resume messages (types 20-22): round trip and strict lengths and ranges. */
static void test_suspend_messages(void)
{
	struct agent_msg m[3], got[3];
	uint8_t buf[3 * AGENT_FRAME_MAX], p[16] = {0};
	struct agent_decoder d;
	size_t len = 0;

	memset(m, 0, sizeof(m));
	m[0].type = AGENT_MSG_SET_CLOCK;
	m[0].clock.sec = 1796601600;
	m[0].clock.nsec = 999999999;
	m[1].type = AGENT_MSG_CLOCK_SET;
	m[1].clock_set.step_ns = -3600ll * 1000000000;
	m[1].clock_set.error = 0;
	m[2].type = AGENT_MSG_BOOT_ID;
	for (int i = 0; i < AGENT_BOOT_ID_LEN; i++)
		m[2].boot_id[i] = (uint8_t)(0xa0 + i);
	for (int i = 0; i < 3; i++)
		len += (size_t)encode(&m[i], buf + len, sizeof(buf) - len);
	agent_decoder_init(&d);
	ASSERT_EQ(decode_all(&d, buf, len, got, 3), 3);
	ASSERT_EQ(got[0].type, AGENT_MSG_SET_CLOCK);
	ASSERT_EQ(got[0].clock.sec, 1796601600);
	ASSERT_EQ(got[0].clock.nsec, 999999999);
	ASSERT_EQ(got[1].clock_set.step_ns, -3600ll * 1000000000);
	ASSERT_EQ(got[1].clock_set.error, 0);
	ASSERT_EQ(memcmp(got[2].boot_id, m[2].boot_id, AGENT_BOOT_ID_LEN), 0);
	ASSERT_STREQ(agent_msg_type_to_string(AGENT_MSG_SET_CLOCK), "set-clock");
	ASSERT_STREQ(agent_msg_type_to_string(AGENT_MSG_BOOT_ID), "boot-id");
	ASSERT_STREQ(agent_msg_type_to_string(19), "unknown");

	/* Encoding refuses what decoding would refuse. */
	m[0].clock.nsec = 1000000000;
	ASSERT_ERRNO(agent_msg_encode(&m[0], buf, sizeof(buf)), EINVAL);
	m[0].clock.nsec = 0;
	m[0].clock.sec = -1;
	ASSERT_ERRNO(agent_msg_encode(&m[0], buf, sizeof(buf)), EINVAL);
	m[1].clock_set.error = -5;
	ASSERT_ERRNO(agent_msg_encode(&m[1], buf, sizeof(buf)), EINVAL);

	/* Decoding: exact lengths, nsec < 1e9, sec >= 0, error a small positive errno. */
	ASSERT_ERRNO(agent_msg_decode(AGENT_MSG_SET_CLOCK, p, 11, &m[0]), EBADMSG);
	ASSERT_ERRNO(agent_msg_decode(AGENT_MSG_SET_CLOCK, p, 13, &m[0]), EBADMSG);
	p[8] = 0x00, p[9] = 0xca, p[10] = 0x9a, p[11] = 0x3b; /* 1e9 */
	ASSERT_ERRNO(agent_msg_decode(AGENT_MSG_SET_CLOCK, p, 12, &m[0]), EBADMSG);
	memset(p, 0, sizeof(p));
	p[7] = 0x80; /* negative seconds */
	ASSERT_ERRNO(agent_msg_decode(AGENT_MSG_SET_CLOCK, p, 12, &m[0]), EBADMSG);
	memset(p, 0, sizeof(p));
	ASSERT_OK(agent_msg_decode(AGENT_MSG_SET_CLOCK, p, 12, &m[0]));
	p[8] = 0xff, p[9] = 0xff, p[10] = 0xff, p[11] = 0xff; /* error -1 */
	ASSERT_ERRNO(agent_msg_decode(AGENT_MSG_CLOCK_SET, p, 12, &m[1]), EBADMSG);
	p[8] = 0x00, p[9] = 0x10, p[10] = 0, p[11] = 0; /* error 4096 */
	ASSERT_ERRNO(agent_msg_decode(AGENT_MSG_CLOCK_SET, p, 12, &m[1]), EBADMSG);
	p[8] = 1, p[9] = 0; /* EPERM */
	ASSERT_OK(agent_msg_decode(AGENT_MSG_CLOCK_SET, p, 12, &m[1]));
	ASSERT_EQ(m[1].clock_set.error, 1);
	ASSERT_ERRNO(agent_msg_decode(AGENT_MSG_BOOT_ID, p, 15, &m[2]), EBADMSG);
	ASSERT_ERRNO(agent_msg_decode(AGENT_MSG_BOOT_ID, p, 0, &m[2]), EBADMSG);
	ASSERT_OK(agent_msg_decode(AGENT_MSG_BOOT_ID, p, 16, &m[2]));
}

/* DISK_USAGE (type 30): round trip, and the decoder's refusals. */
static void test_disk_usage(void)
{
	struct agent_msg m = {.type = AGENT_MSG_DISK_USAGE}, got;
	uint8_t buf[AGENT_FRAME_MAX];
	struct agent_decoder d;
	int n;

	m.disks.n = 3;
	m.disks.d[0] = (struct agent_disk){0, 1ull << 30, 4096, (1ull << 30) - 8192};
	m.disks.d[1] = (struct agent_disk){1, 16ull << 20, 0, 15ull << 20};
	m.disks.d[2] = (struct agent_disk){16, 16ull << 40, 16ull << 40, 0};
	n = encode(&m, buf, sizeof(buf));
	ASSERT_EQ(n, AGENT_FRAME_OVERHEAD + 1 + 3 * 25);
	agent_decoder_init(&d);
	ASSERT_EQ(decode_all(&d, buf, (size_t)n, &got, 1), 1);
	ASSERT_EQ(got.type, AGENT_MSG_DISK_USAGE);
	ASSERT_EQ(got.disks.n, 3);
	ASSERT_EQ(got.disks.d[0].used, 4096);
	ASSERT_TRUE(got.disks.d[2].size == 16ull << 40 && got.disks.d[2].disk == 16);
	ASSERT_STREQ(agent_msg_type_to_string(AGENT_MSG_DISK_USAGE), "disk-usage");
	ASSERT_STREQ(agent_msg_type_to_string(29), "unknown");

	/* Payloads the decoder refuses: length, count, order, used/avail beyond size. */
	{
		uint8_t p[1 + 25 * 2] = {2};

		p[1] = 0;
		p[26] = 1;
		ASSERT_OK(agent_msg_decode(AGENT_MSG_DISK_USAGE, p, sizeof(p), &got));
		ASSERT_ERRNO(agent_msg_decode(AGENT_MSG_DISK_USAGE, p, sizeof(p) - 1, &got),
			     EBADMSG);
		ASSERT_ERRNO(agent_msg_decode(AGENT_MSG_DISK_USAGE, p, 0, &got), EBADMSG);
		p[26] = 0; /* same disk twice */
		ASSERT_ERRNO(agent_msg_decode(AGENT_MSG_DISK_USAGE, p, sizeof(p), &got), EBADMSG);
		p[26] = 17; /* no such disk */
		ASSERT_ERRNO(agent_msg_decode(AGENT_MSG_DISK_USAGE, p, sizeof(p), &got), EBADMSG);
		p[26] = 1;
		p[10] = 1; /* used 1 > size 0 */
		ASSERT_ERRNO(agent_msg_decode(AGENT_MSG_DISK_USAGE, p, sizeof(p), &got), EBADMSG);
		p[10] = 0;
		p[0] = 18;
		ASSERT_ERRNO(agent_msg_decode(AGENT_MSG_DISK_USAGE, p, 1 + 25 * 18, &got), EBADMSG);
	}
	m.disks.n = AGENT_DISKS_MAX + 1;
	ASSERT_ERRNO(agent_msg_encode(&m, buf, sizeof(buf)), EINVAL);
}

static void test_output_data_stays_valid(void)
{
	struct agent_msg m = {.type = AGENT_MSG_OUTPUT}, got;
	uint8_t buf[AGENT_FRAME_MAX];
	struct agent_decoder d;
	int n;

	m.output.stream = AGENT_STREAM_STDOUT;
	m.output.len = 5;
	m.output.data = (const uint8_t *)"abcde";
	n = encode(&m, buf, sizeof(buf));
	agent_decoder_init(&d);
	ASSERT_EQ(agent_decoder_feed(&d, buf, (size_t)n), (size_t)n);
	ASSERT_EQ(agent_decoder_next(&d, &got), 1);
	ASSERT_EQ(got.output.len, 5);
	ASSERT_TRUE(memcmp(got.output.data, "abcde", 5) == 0);
	ASSERT_EQ(agent_decoder_next(&d, &got), 0);
}

static void test_byte_by_byte(void)
{
	struct agent_msg m = {.type = AGENT_MSG_APP_STARTED, .pid = 99}, got = {0};
	uint8_t buf[AGENT_FRAME_MAX];
	struct agent_decoder d;
	int n, frames = 0;

	n = encode(&m, buf, sizeof(buf));
	agent_decoder_init(&d);
	for (int i = 0; i < n; i++) {
		ASSERT_EQ(agent_decoder_feed(&d, buf + i, 1), 1);
		frames += agent_decoder_next(&d, &got);
		ASSERT_EQ(frames, i == n - 1 ? 1 : 0);
	}
	ASSERT_EQ(got.pid, 99);
}

static void test_resync_after_garbage_and_corruption(void)
{
	struct agent_msg a = {.type = AGENT_MSG_APP_STARTED, .pid = 1};
	struct agent_msg b = {.type = AGENT_MSG_APP_STARTED, .pid = 2};
	struct agent_msg c = {.type = AGENT_MSG_STOP, .grace_ms = 3};
	uint8_t buf[4 * AGENT_FRAME_MAX], got_buf[16];
	struct agent_msg got[4];
	struct agent_decoder d;
	size_t len = 0;
	int nb, n;

	len = put_text(buf, "garbage mvA junk mvA1"); /* includes a false magic */
	len += (size_t)encode(&a, buf + len, sizeof(buf) - len);
	nb = encode(&b, buf + len, sizeof(buf) - len);
	buf[len + 9] ^= 0xff; /* corrupt b's payload: CRC mismatch */
	len += (size_t)nb;
	buf[len++] = 'x';
	len += (size_t)encode(&c, buf + len, sizeof(buf) - len);
	(void)got_buf;

	agent_decoder_init(&d);
	n = decode_all(&d, buf, len, got, 4);
	ASSERT_EQ(n, 2);
	ASSERT_EQ(got[0].pid, 1);
	ASSERT_EQ(got[1].type, AGENT_MSG_STOP);
	ASSERT_EQ(got[1].grace_ms, 3);
	ASSERT_TRUE(d.skipped_bytes >= 21);
	ASSERT_TRUE(d.bad_frames >= 1);
}

static void test_truncated_frame_then_new_frame(void)
{
	/* A host that went away mid-frame: the next connection's frames still decode. */
	struct agent_msg a = {.type = AGENT_MSG_HEARTBEAT},
			 b = {.type = AGENT_MSG_APP_STARTED, .pid = 5};
	uint8_t buf[2 * AGENT_FRAME_MAX];
	struct agent_msg got[2];
	struct agent_decoder d;
	int na, nb, n;

	na = encode(&a, buf, sizeof(buf));
	nb = encode(&b, buf + na / 2, sizeof(buf) - (size_t)na / 2);
	agent_decoder_init(&d);
	n = decode_all(&d, buf, (size_t)na / 2 + (size_t)nb, got, 2);
	ASSERT_EQ(n, 1);
	ASSERT_EQ(got[0].pid, 5);
}

static void test_limits(void)
{
	struct agent_msg m = {.type = AGENT_MSG_OUTPUT};
	static uint8_t big[AGENT_PAYLOAD_MAX];
	uint8_t buf[AGENT_FRAME_MAX], small[16];

	m.output.stream = AGENT_STREAM_STDOUT;
	m.output.data = big;
	m.output.len = AGENT_OUTPUT_CHUNK;
	ASSERT_EQ(agent_msg_encode(&m, buf, sizeof(buf)), AGENT_FRAME_MAX);
	m.output.len = AGENT_OUTPUT_CHUNK + 1;
	ASSERT_ERRNO(agent_msg_encode(&m, buf, sizeof(buf)), EINVAL);
	m.output.len = 10;
	ASSERT_ERRNO(agent_msg_encode(&m, small, sizeof(small)), ENOBUFS);
	m.output.stream = 9;
	ASSERT_ERRNO(agent_msg_encode(&m, buf, sizeof(buf)), EINVAL);
	m = (struct agent_msg){.type = 77};
	ASSERT_ERRNO(agent_msg_encode(&m, buf, sizeof(buf)), EINVAL);
	/* Decoding: wrong lengths and values */
	ASSERT_ERRNO(agent_msg_decode(AGENT_MSG_APP_STARTED, buf, 3, &m), EBADMSG);
	memset(buf, 0, sizeof(buf));
	buf[0] = 1;
	buf[1] = 200; /* prefix length > 128 */
	ASSERT_ERRNO(agent_msg_decode(AGENT_MSG_NET_CONFIGURED, buf, 18, &m), EBADMSG);
	ASSERT_ERRNO(agent_msg_decode(99, buf, 4, &m), EPROTONOSUPPORT);
	memset(buf, 0, 8);
	buf[0] = 1; /* version 1, period 0, then a name with a newline */
	put_text(buf + 8, "bad\nname");
	ASSERT_ERRNO(agent_msg_decode(AGENT_MSG_HELLO, buf, 16, &m), EBADMSG);
}

static void test_crc_known_value(void)
{
	/* The standard CRC-32 check value. */
	ASSERT_EQ(agent_crc32(0, "123456789", 9), 0xCBF43926u);
}

/* Frames cut out of a stream by where a valid frame begins: the CRC of every span comes from
 * prefix CRCs, so check it against the plain CRC on random spans of random data. */
static void test_span_crc_random(void)
{
	static uint8_t buf[256 * 1024], data[AGENT_OUTPUT_CHUNK];
	struct agent_decoder *d = malloc(sizeof(*d));
	struct agent_msg m, got;
	unsigned seed = 12345;
	size_t len = 0;
	int frames = 0, want = 0;

	ASSERT_TRUE(d != NULL);
	while (len + AGENT_FRAME_MAX + 40 < sizeof(buf)) {
		size_t garbage = (size_t)(rand_r(&seed) % 40);

		for (size_t i = 0; i < garbage; i++)
			buf[len++] = (uint8_t)('A' + rand_r(&seed) % 26);
		m = (struct agent_msg){.type = AGENT_MSG_OUTPUT};
		m.output.stream = AGENT_STREAM_STDERR;
		m.output.len = (uint16_t)(rand_r(&seed) % 1200);
		for (size_t i = 0; i < m.output.len; i++)
			data[i] = (uint8_t)rand_r(&seed);
		m.output.data = data;
		len += (size_t)encode(&m, buf + len, sizeof(buf) - len);
		want++;
	}
	agent_decoder_init(d);
	for (size_t off = 0; off < len;) {
		size_t n = 1 + (size_t)(rand_r(&seed) % 3000);

		off += agent_decoder_feed(d, buf + off, n < len - off ? n : len - off);
		while (agent_decoder_next(d, &got) > 0) {
			ASSERT_EQ(got.type, AGENT_MSG_OUTPUT);
			frames++;
		}
	}
	ASSERT_EQ(frames, want);
	ASSERT_EQ(d->bad_frames, 0);
	free(d);
}

/* A pending header gives way to the earliest complete valid frame inside its span, however the
 * bytes arrive; and a frame that completes and is valid at the head is taken as it is. */
static void test_pending_gives_way(void)
{
	struct agent_msg a = {.type = AGENT_MSG_APP_STARTED, .pid = 1};
	struct agent_msg b = {.type = AGENT_MSG_APP_STARTED, .pid = 2};
	uint8_t buf[256];
	struct agent_msg got[4];
	struct agent_decoder *d = malloc(sizeof(*d));
	size_t len = 0;
	int n;

	ASSERT_TRUE(d != NULL);
	/* a header claiming 200 bytes, then two valid frames */
	hostile_header(buf, AGENT_MSG_OUTPUT, 200);
	len = 8;
	len += (size_t)encode(&a, buf + len, sizeof(buf) - len);
	len += (size_t)encode(&b, buf + len, sizeof(buf) - len);
	for (size_t step = 1; step <= 64; step *= 4) {
		agent_decoder_init(d);
		n = 0;
		for (size_t off = 0; off < len;) {
			size_t k = len - off < step ? len - off : step;

			off += agent_decoder_feed(d, buf + off, k);
			while (n < 4 && agent_decoder_next(d, &got[n]) > 0)
				n++;
		}
		ASSERT_EQ(n, 2);
		ASSERT_EQ(got[0].pid, 1);
		ASSERT_EQ(got[1].pid, 2);
		ASSERT_EQ(d->bad_frames, 1);
		ASSERT_EQ(d->skipped_bytes, 8);
	}
	free(d);
}

static double thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The throughput check: every hostile stream, fed one byte per feed/next call (the worst way),
 * costs a bounded number of decoder steps per byte and keeps a floor in CPU-time bytes/s. The
 * old decoder did ~0.7 KB/s of CPU on FAKE_HEADERS (1.5 ms per byte). */
#define HOSTILE_BYTES (512 * 1024)
#define MIN_BYTES_PER_CPU_S (1.0e6) /* ~40x below what a debugoptimized build does here */

static void test_throughput_hostile(void)
{
	uint8_t *buf = malloc(HOSTILE_BYTES);
	struct agent_decoder *d = malloc(sizeof(*d));

	ASSERT_TRUE(buf && d);
	for (int k = 0; k < _HOSTILE_MAX; k++) {
		struct agent_msg m;
		uint64_t frames = 0;
		double t0, cpu;

		hostile_fill((enum hostile_kind)k, buf, HOSTILE_BYTES, 7);
		agent_decoder_init(d);
		t0 = thread_cpu_s();
		for (size_t off = 0; off < HOSTILE_BYTES;) {
			off += agent_decoder_feed(d, buf + off, 1);
			while (agent_decoder_next(d, &m) > 0)
				frames++;
		}
		cpu = thread_cpu_s() - t0;
		printf("# %-20s %7llu frames, %6.1f steps/byte, %8.2f MB/s CPU\n",
		       hostile_name((enum hostile_kind)k), (unsigned long long)frames,
		       (double)d->work / HOSTILE_BYTES,
		       HOSTILE_BYTES / (cpu > 0 ? cpu : 1e-9) / 1e6);
		ASSERT_TRUE(d->work <= AGENT_DECODER_MAX_WORK(HOSTILE_BYTES, 2 * HOSTILE_BYTES));
		ASSERT_TRUE(HOSTILE_BYTES / (cpu > 0 ? cpu : 1e-9) >= MIN_BYTES_PER_CPU_S);
		if (k == HOSTILE_OVERLAPPING_VALID)
			ASSERT_TRUE(frames > 0); /* the construction is valid */
	}
	free(buf);
	free(d);
}

TEST_MAIN(TEST(test_roundtrip_all_types), TEST(test_suspend_messages), TEST(test_disk_usage),
	  TEST(test_output_data_stays_valid), TEST(test_byte_by_byte),
	  TEST(test_resync_after_garbage_and_corruption), TEST(test_truncated_frame_then_new_frame),
	  TEST(test_limits), TEST(test_crc_known_value), TEST(test_span_crc_random),
	  TEST(test_pending_gives_way), TEST(test_throughput_hostile))
