/* SPDX-License-Identifier: MIT */
/*
 * The host <-> guest agent protocol: versioned binary frames over a byte stream (virtio-serial
 * port, vsock, or a pipe in test mode). Pure encode/decode, no I/O, no allocation; shared by the
 * static guest agent (guest/) and the host client (runtime/agent.c). Fuzzed.
 *
 * Frame (all integers little-endian):
 *   magic "mvA1" (4) | version u8 | type u8 | length u16 | payload[length] | crc32 u32
 * The CRC (IEEE 802.3, as zlib's crc32) covers version, type, length and payload. A decoder
 * that sees a bad magic, an oversized length or a bad CRC drops one byte and searches for the
 * next magic, so lost or corrupted bytes cost at most the frames they touch; it does so in time
 * linear in the bytes received, whatever they are (see struct agent_decoder).
 *
 * Conversation: the host sends HELLO (repeatedly, every ~0.5 s, until the guest answers: bytes
 * sent before the guest opens its end are lost) carrying the heartbeat period it expects; the
 * guest adopts it (bounded to 50 ms..600 s) and the host never takes a period from the guest,
 * so a guest cannot make itself "never stale". The guest answers HELLO and then replays its
 * current state (NET_CONFIGURED, APP_STARTED, APP_EXITED as applicable), then sends HEARTBEAT
 * every period, OUTPUT as the app writes, APP_EXITED when it ends. The host may send STOP
 * (grace): the guest SIGTERMs the app, waits up to grace, SIGKILLs, sends APP_EXITED and
 * SHUTDOWN, syncs, unmounts and powers off.
 *
 * Suspend and resume: every HELLO answer is followed by BOOT_ID (the guest kernel's boot id),
 * so a host that reconnects after a restore knows whether it talks to the same boot (a
 * restored guest) or a new one. After a restore the host sends SET_CLOCK with its wall-clock
 * time: the guest's clock resumed at the moment of the snapshot; the guest steps
 * CLOCK_REALTIME and answers CLOCK_SET with the step.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_PROTO_VERSION 1
#define AGENT_PROTO_MAGIC "mvA1"
#define AGENT_FRAME_HEADER 8 /* magic + version + type + length */
#define AGENT_FRAME_OVERHEAD (AGENT_FRAME_HEADER + 4)
#define AGENT_PAYLOAD_MAX 4096
#define AGENT_FRAME_MAX (AGENT_FRAME_OVERHEAD + AGENT_PAYLOAD_MAX)
#define AGENT_TEXT_MAX 256 /* strings inside HELLO / SHUTDOWN */
#define AGENT_DEFAULT_VSOCK_PORT 1024

enum agent_msg_type {
	AGENT_MSG_HELLO = 1,	      /* both ways: version, heartbeat period, agent name */
	AGENT_MSG_HEARTBEAT = 2,      /* guest -> host: seq, uptime, dropped output bytes */
	AGENT_MSG_APP_STARTED = 3,    /* guest -> host: pid */
	AGENT_MSG_APP_EXITED = 4,     /* guest -> host: exit code or signal */
	AGENT_MSG_OUTPUT = 5,	      /* guest -> host: stream + bytes */
	AGENT_MSG_NET_CONFIGURED = 6, /* guest -> host: address/prefix (or an error) */
	AGENT_MSG_STOP = 7,	      /* host -> guest: grace period */
	AGENT_MSG_SHUTDOWN = 8,	      /* guest -> host: powering off now, with a reason */
	/* 20-29: suspend and resume */
	AGENT_MSG_SET_CLOCK = 20, /* host -> guest: step CLOCK_REALTIME to this time */
	AGENT_MSG_CLOCK_SET = 21, /* guest -> host: the step it applied (or why not) */
	AGENT_MSG_BOOT_ID = 22,	  /* guest -> host: the boot it is (after each HELLO answer) */
	/* 30-39: storage */
	AGENT_MSG_DISK_USAGE = 30, /* guest -> host: statfs of the writable layer and volumes */
	/* 40-49: booted templates (docs/template.md) */
	AGENT_MSG_IDENTITY_WAIT = 40, /* guest -> host: a template, waiting for its identity */
	AGENT_MSG_IDENTITY = 41,      /* host -> guest: one piece of the VM's vm.json */
	AGENT_MSG_IDENTITY_END = 42,  /* host -> guest: identity complete; the time, entropy */
	AGENT_MSG_IDENTITY_ACK = 43,  /* guest -> host: identity taken (or the errno and why) */
	_AGENT_MSG_MAX,
};

enum agent_stream {
	AGENT_STREAM_STDOUT = 1,
	AGENT_STREAM_STDERR = 2,
	AGENT_STREAM_AGENT = 3, /* the agent's own messages (errors before/around the app) */
};

struct agent_hello {
	uint32_t version;
	uint32_t heartbeat_ms;	   /* host -> guest: the period to use (0: keep vm.json's);
				    * guest -> host: its period, informative only */
	char name[AGENT_TEXT_MAX]; /* "mvmfs-agent 0.1.0" / "mvmfs-host" */
};

struct agent_heartbeat {
	uint32_t seq;
	uint64_t uptime_ms;
	uint64_t dropped_bytes; /* output bytes dropped because the host was slow/absent */
	uint8_t app_running;
};

struct agent_app_exited {
	int32_t code;	      /* exit status, or -1 when killed by a signal */
	int32_t signal;	      /* terminating signal, 0 when it exited */
	uint8_t start_failed; /* exec failed (code 127/126) */
};

struct agent_output {
	uint8_t stream; /* enum agent_stream */
	uint16_t len;
	const uint8_t *data; /* points into the decoded frame payload */
};

/* SET_CLOCK: the host's CLOCK_REALTIME when it sent the message. */
struct agent_clock {
	int64_t sec;   /* >= 0 */
	uint32_t nsec; /* < 1e9 */
};

/* CLOCK_SET: how far the guest's wall clock moved (new - old), or the errno that stopped it. */
struct agent_clock_set {
	int64_t step_ns;
	int32_t error; /* 0, or a positive errno (the clock was left alone) */
};

#define AGENT_BOOT_ID_LEN 16

struct agent_net {
	uint8_t ok;
	uint8_t prefix_len;
	uint8_t addr[16];
};

/* DISK_USAGE: one entry per mounted disk; disk 0 is the writable layer, disk i (1..16) the
 * i-th volume of vm.json. Bytes as statfs says: size (f_blocks), used (f_blocks - f_bfree),
 * avail (f_bavail), each times f_frsize. Payload: n u8, then n x {disk u8, size, used, avail
 * u64}; disks strictly increasing, used and avail at most size. */
#define AGENT_DISKS_MAX 17
struct agent_disk {
	uint8_t disk;
	uint64_t size, used, avail;
};
struct agent_disk_usage {
	uint8_t n;
	struct agent_disk d[AGENT_DISKS_MAX];
};

/* Templates: a guest booted from a template's vm.json ("template": true) answers every HELLO
 * with HELLO, BOOT_ID and IDENTITY_WAIT, and touches no disk, address or app until the host
 * sends the VM's own vm.json in IDENTITY pieces (in order, offsets contiguous from 0) and then
 * IDENTITY_END with the whole text's length and CRC-32, the host's CLOCK_REALTIME and fresh
 * entropy. The guest answers IDENTITY_ACK (error 0: it boots on as a cold boot would). */
#define AGENT_IDENTITY_MAX (128 * 1024) /* vm.json bytes at most */
#define AGENT_IDENTITY_CHUNK (AGENT_PAYLOAD_MAX - 8)
#define AGENT_ENTROPY_LEN 64
struct agent_identity {
	uint32_t total;	     /* the whole vm.json's length: 1..AGENT_IDENTITY_MAX */
	uint32_t offset;     /* of this piece: offset + len <= total */
	uint16_t len;	     /* 1..AGENT_IDENTITY_CHUNK */
	const uint8_t *data; /* points into the decoded frame payload */
};
struct agent_identity_end {
	uint32_t total; /* the whole vm.json's length */
	uint32_t crc;	/* agent_crc32(0, vm.json, total) */
	struct agent_clock clock;
	uint8_t entropy[AGENT_ENTROPY_LEN];
};
struct agent_identity_ack {
	int32_t error; /* 0, or a positive errno (< 4096): the identity was refused */
	char reason[AGENT_TEXT_MAX];
};

struct agent_msg {
	uint8_t type; /* enum agent_msg_type */
	union {
		struct agent_hello hello;
		struct agent_heartbeat heartbeat;
		uint32_t pid; /* APP_STARTED */
		struct agent_app_exited exited;
		struct agent_output output;
		struct agent_net net;
		uint32_t grace_ms;		    /* STOP */
		char reason[AGENT_TEXT_MAX];	    /* SHUTDOWN */
		struct agent_clock clock;	    /* SET_CLOCK */
		struct agent_clock_set clock_set;   /* CLOCK_SET */
		uint8_t boot_id[AGENT_BOOT_ID_LEN]; /* BOOT_ID: the guest kernel's boot_id */
		struct agent_disk_usage disks;	    /* DISK_USAGE */
		struct agent_identity identity;	    /* IDENTITY */
		struct agent_identity_end identity_end;
		struct agent_identity_ack identity_ack;
	};
};

const char *agent_msg_type_to_string(int type);

uint32_t agent_crc32(uint32_t crc, const void *data, size_t len);

/* Encode msg as one frame into buf. Returns the frame length, -ENOBUFS if size is too small,
 * -EINVAL for an unknown type or an over-long field. OUTPUT longer than fits is an error (split
 * it first: at most AGENT_OUTPUT_CHUNK bytes per frame). */
#define AGENT_OUTPUT_CHUNK (AGENT_PAYLOAD_MAX - 3)
int agent_msg_encode(const struct agent_msg *msg, uint8_t *buf, size_t size);

/* Decode a frame's payload of the given type into ret (OUTPUT data points into payload).
 * -EBADMSG on a short/long payload or bad field, -EPROTONOSUPPORT for an unknown type. */
int agent_msg_decode(uint8_t type, const uint8_t *payload, size_t len, struct agent_msg *ret);

/*
 * Streaming decoder with resync, linear in the bytes received whatever they are.
 *
 * A frame is returned when it is complete and valid (magic, version, length, CRC, payload).
 * Bytes that belong to no valid frame are skipped and counted. A header whose frame is still
 * incomplete is given up as soon as a complete valid frame starts inside its span (bytes lost
 * mid-frame, e.g. a host that reconnected, must not hold back the frames that follow), and the
 * earliest such frame is returned next.
 *
 * Cost: every stream offset is looked at as a possible frame start a bounded number of times.
 * Checking one start is O(1): the CRC of any span comes from running prefix CRCs (combined as
 * zlib's crc32_combine does), never from rehashing the span; pending headers wait in a heap
 * keyed by where they end. A bounded payload check (at most AGENT_TEXT_MAX bytes) follows only
 * for CRC-valid starts. So a hostile peer cannot make a byte cost more than a constant, however
 * it cuts and forges frames (see bench/agent-decoder and the throughput tests).
 * The state is about 64 KiB (two windows of bytes and their prefix CRCs, two heaps): allocate
 * it, or keep it static, rather than on a small stack.
 */
#define AGENT_DECODER_WINDOW AGENT_FRAME_MAX /* unresolved bytes held at most */
#define AGENT_DECODER_BUF (2 * AGENT_DECODER_WINDOW)
/* Frame starts ("mvA1") are at least 4 bytes apart, so a window holds at most this many. */
#define AGENT_DECODER_STARTS (AGENT_DECODER_WINDOW / 4 + 4)

struct agent_decoder_pending {
	uint64_t at, end; /* stream offsets of a header and of its frame's end */
};

struct agent_decoder {
	uint8_t buf[AGENT_DECODER_BUF];
	uint32_t crc[AGENT_DECODER_BUF + 1]; /* crc[i]: CRC-32 of the stream up to buf[i] */
	uint64_t base;			     /* stream offset of buf[0] */
	size_t head, tail;		     /* unresolved bytes: buf[head..tail) */
	uint64_t scanned;		     /* later starts registered below this offset */
	struct agent_decoder_pending pending[AGENT_DECODER_STARTS]; /* min-heap by end */
	uint64_t valid[AGENT_DECODER_STARTS]; /* min-heap: complete valid frames seen early */
	size_t npending, nvalid;
	uint64_t skipped_bytes; /* bytes dropped while resynchronising */
	uint64_t bad_frames;	/* frames with a bad CRC, length or payload */
	uint64_t work;		/* steps taken, for the throughput checks (fuzz, tests) */
};

/* The bound on d->work after feeding `bytes` bytes over `calls` feed/next calls, whatever the
 * bytes are (checked by the tests and the fuzz target). A frame start costs a few checks of
 * ~32 steps and heap moves of ~10, and starts are 8 bytes apart or more. */
#define AGENT_DECODER_MAX_WORK(bytes, calls) (64ull * (bytes) + 4ull * (calls) + 1024)

void agent_decoder_init(struct agent_decoder *d);
/* Copy up to len bytes into the decoder; returns how many were taken (0 when full: call
 * agent_decoder_next first). */
size_t agent_decoder_feed(struct agent_decoder *d, const void *data, size_t len);
/* Next complete, valid frame: returns 1 and fills ret (OUTPUT data stays valid until the next
 * feed call), 0 when more bytes are needed. Never fails: garbage is skipped and counted. */
int agent_decoder_next(struct agent_decoder *d, struct agent_msg *ret);
