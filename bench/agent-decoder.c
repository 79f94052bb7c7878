/* SPDX-License-Identifier: MIT */
/*
 * Agent frame decoder throughput (common/agent-proto.c), in CPU time of this process
 * (CLOCK_PROCESS_CPUTIME_ID, so other load on the machine does not count):
 *   normal      a stream of OUTPUT frames (4093 bytes) and HEARTBEATs, fed in 8 KiB reads
 *   small       HEARTBEAT frames only, fed in 8 KiB reads
 *   worst-1     the hostile input: a header claiming 4096 bytes, then a fake header every
 *               8 bytes claiming 2048 (frames that complete with a bad CRC while the first
 *               waits), fed one byte per feed/next call
 *   worst-frag  a header claiming 4096 bytes, then complete valid frames with a bad-CRC
 *               4096-byte header between each, fed one byte at a time
 * Prints MB/s per case. Usage: bench-agent-decoder [MiB per case, default 16]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent-proto.h"

static double cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t put_frame(uint8_t *buf, size_t size, const struct agent_msg *m)
{
	int n = agent_msg_encode(m, buf, size);

	if (n < 0)
		abort();
	return (size_t)n;
}

/* A header claiming plen bytes of payload, whose frame will have a bad CRC. */
static void fake_header(uint8_t *p, unsigned plen)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)AGENT_PROTO_MAGIC[i];
	p[4] = AGENT_PROTO_VERSION;
	p[5] = AGENT_MSG_OUTPUT;
	p[6] = plen & 0xff;
	p[7] = (uint8_t)(plen >> 8);
}

/* Feed data in pieces of step bytes, draining frames after each; returns frames decoded. */
static uint64_t run(const uint8_t *data, size_t len, size_t step, double *secs)
{
	static struct agent_decoder d;
	struct agent_msg m;
	uint64_t frames = 0;
	double t0 = cpu_s();

	agent_decoder_init(&d);
	for (size_t off = 0; off < len;) {
		size_t n = len - off < step ? len - off : step;

		off += agent_decoder_feed(&d, data + off, n);
		while (agent_decoder_next(&d, &m) > 0)
			frames++;
	}
	*secs = cpu_s() - t0;
	return frames;
}

int main(int argc, char **argv)
{
	size_t total = (size_t)(argc > 1 ? atof(argv[1]) : 16) * 1024 * 1024, len;
	static uint8_t chunk[AGENT_FRAME_MAX];
	struct agent_msg out = {.type = AGENT_MSG_OUTPUT}, hb = {.type = AGENT_MSG_HEARTBEAT};
	uint8_t *data = malloc(total + 2 * AGENT_FRAME_MAX);
	const char *names[] = {"normal", "small", "worst-1", "worst-frag"};
	size_t steps[] = {8192, 8192, 1, 1};

	if (!data)
		return 1;
	memset(chunk, 'x', sizeof(chunk));
	out.output.stream = AGENT_STREAM_STDOUT;
	out.output.len = AGENT_OUTPUT_CHUNK;
	out.output.data = chunk;
	hb.heartbeat.seq = 1;
	printf("%-11s %10s %10s %12s %10s\n", "case", "bytes", "frames", "cpu_s", "MB/s");
	for (int c = 0; c < 4; c++) {
		double secs;
		uint64_t frames;
		size_t want = total;
		const char *worst = getenv("BENCH_WORST_BYTES");

		/* The old decoder is quadratic on the hostile cases: keep those short enough to
		 * finish, the rate is what matters. */
		if (c >= 2 && worst)
			want = (size_t)atol(worst);
		len = 0;
		while (len < want) {
			switch (c) {
			case 0:
				len += put_frame(data + len, AGENT_FRAME_MAX, &out);
				len += put_frame(data + len, AGENT_FRAME_MAX, &hb);
				break;
			case 1:
				len += put_frame(data + len, AGENT_FRAME_MAX, &hb);
				break;
			case 2:
				/* every 4 KiB: a pending 4096-byte header, then headers whose
				 * (bad-CRC) frames complete while it waits */
				fake_header(data + len, len % 4096 == 0 ? AGENT_PAYLOAD_MAX : 2048);
				len += 8;
				break;
			case 3:
				fake_header(data + len, AGENT_PAYLOAD_MAX);
				len += 8;
				len += put_frame(data + len, AGENT_FRAME_MAX, &hb);
				break;
			}
		}
		frames = run(data, len, steps[c], &secs);
		printf("%-11s %10zu %10llu %12.4f %10.2f\n", names[c], len,
		       (unsigned long long)frames, secs, secs > 0 ? (double)len / secs / 1e6 : 0.0);
	}
	free(data);
	return 0;
}
