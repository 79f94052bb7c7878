/* SPDX-License-Identifier: MIT */
/*
 * runtime/agent: the host side of one VM's guest-agent channel (common/agent-proto.h).
 *
 * An agent client owns one background thread that connects to the VM's channel socket
 * (QEMU: the virtio-serial chardev Unix socket; Firecracker: the vsock Unix socket with the
 * hybrid "CONNECT <port>\n" / "OK <hostport>\n" handshake of docs/firecracker.md E), reconnects
 * when it drops, sends HELLO until the guest answers, tracks heartbeats and the app's state, and
 * keeps the app's output in a bounded log ring. Everything below is thread-safe and never blocks on
 * the guest (agent_stop_request only queues the request; the thread sends it).
 *
 * The guest is untrusted input. Its bytes go through a decoder that is linear in them
 * (common/agent-proto.h), are decoded outside the lock (which is held only to apply one message),
 * and are read on a budget: a token bucket of read_rate bytes/s (bursts of 250 ms worth), read
 * passes at least 10 ms apart (after the first 32 of a connection: a handshake answers at once)
 * and at most 64 KiB each. A flooding guest therefore costs the
 * host a bounded share of one core (a few percent at the default) and only delays its own
 * channel: each VM has its own thread and lock. The heartbeat period is the host's (sent in
 * HELLO; the guest's claim is ignored). App output reaches the log ring neutralised by
 * common/log-text.h. Every wait has a deadline and ends at once on agent_free: connect is
 * non-blocking, the vsock handshake waits 1.5 s, a send 1 s.
 *
 * Lifecycle: agent_start() when the VMM has been started (the socket may not exist yet: the
 * client retries), agent_free() when the VMM is gone (joins the thread).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent-proto.h"

struct agent;

enum agent_transport {
	AGENT_TRANSPORT_SERIAL, /* plain Unix stream socket (QEMU virtio-serial chardev) */
	AGENT_TRANSPORT_VSOCK,	/* Firecracker hybrid vsock: CONNECT <port> first */
};

/* Things the caller may want to react to (health/log poll notifications, state changes). */
enum agent_event {
	AGENT_EVENT_CONNECTED, /* guest answered HELLO */
	AGENT_EVENT_DISCONNECTED,
	AGENT_EVENT_APP_STARTED,
	AGENT_EVENT_APP_EXITED,
	AGENT_EVENT_OUTPUT, /* new bytes in the log ring */
	AGENT_EVENT_NET,
	AGENT_EVENT_SHUTDOWN,  /* the guest announced it is powering off */
	AGENT_EVENT_HEARTBEAT, /* only when it changes liveness (late -> fresh) */
	AGENT_EVENT_REBOOTED,  /* the guest reports a boot id other than the one it had */
	AGENT_EVENT_CLOCK,     /* the guest answered SET_CLOCK */
	AGENT_EVENT_IDENTITY,  /* a template's guest answered its identity (IDENTITY_ACK) */
	_AGENT_EVENT_MAX,
};

/* Called from the agent thread with no agent lock held; must be quick and must not call
 * agent_free on the same agent. */
typedef void (*agent_event_cb)(void *ud, struct agent *agent, enum agent_event ev);

struct agent_config {
	/* A socket_path ending in ".serial" (the QEMU backend's chardev) is always SERIAL. */
	enum agent_transport transport;
	const char *socket_path; /* copied; <= 107 bytes */
	uint32_t vsock_port;	 /* guest port for AGENT_TRANSPORT_VSOCK */
	unsigned heartbeat_ms;	 /* the period, sent to the guest in HELLO (default 1000) */
	unsigned log_bytes;	 /* log ring size (default 64 KiB) */
	unsigned read_rate;	 /* read budget in bytes/s (default 512 KiB/s, see above) */
	agent_event_cb cb;	 /* may be NULL */
	void *ud;
	/* A restored guest must be the boot it was (AGENT_BOOT_ID_LEN bytes, or NULL): another
	 * boot id is reported as AGENT_EVENT_REBOOTED (boots_seen 2). */
	const uint8_t *expect_boot_id;
	/* A guest restored from a booted template (docs/template.md): the VM's vm.json (copied;
	 * 1..AGENT_IDENTITY_MAX bytes), sent with the time and fresh entropy each time the guest
	 * says IDENTITY_WAIT, until it takes it. NULL: a cold boot. */
	const char *identity;
	size_t identity_len;
};

enum agent_app_state {
	AGENT_APP_UNKNOWN, /* no agent yet */
	AGENT_APP_RUNNING,
	AGENT_APP_EXITED,
	AGENT_APP_START_FAILED,
};

/* A copy of what the client knows, for health rendering. Times are CLOCK_MONOTONIC ms. */
struct agent_status {
	bool connected; /* socket connected and guest answered HELLO */
	bool ever_connected;
	bool heartbeat_fresh; /* last heartbeat within 3 periods */
	uint32_t version;     /* guest protocol version */
	char agent_name[64];
	uint64_t last_heartbeat_ms; /* 0: never */
	uint64_t heartbeat_age_ms;  /* now - last heartbeat, UINT64_MAX when never */
	uint32_t heartbeat_seq;
	uint64_t guest_uptime_ms;
	uint64_t dropped_output_bytes; /* reported by the guest */
	enum agent_app_state app;
	uint32_t app_pid;
	int32_t exit_code; /* valid when app == EXITED: code, or -1 when signalled */
	int32_t exit_signal;
	unsigned app_starts; /* APP_STARTED messages seen (restarts of the agent/app) */
	bool net_configured;
	char net_addr[64];	    /* "fd42::10/64" */
	bool shutdown;		    /* guest announced power-off */
	uint64_t started_at_ms;	    /* monotonic time of agent_start */
	uint64_t connected_at_ms;   /* monotonic time of the first HELLO answer */
	uint64_t identity_at_ms;    /* monotonic time of the first IDENTITY_ACK 0 (0: none) */
	uint64_t net_at_ms;	    /* monotonic time of the first NET_CONFIGURED (0: none) */
	uint64_t app_started_at_ms; /* monotonic time of APP_STARTED */
	uint64_t frames_bad;	    /* decoder resync statistics */
	uint64_t bytes_skipped;
	/* Suspend and resume (agent_pause / agent_resume). */
	bool paused;		/* the VM is paused or suspended: no heartbeats expected */
	uint64_t resumed_at_ms; /* staleness counts from here, not from the gap */
	bool have_boot_id;
	uint8_t boot_id[AGENT_BOOT_ID_LEN];
	unsigned boots_seen;  /* distinct boot ids this client has seen (1: one boot) */
	unsigned clock_steps; /* CLOCK_SET answers */
	int64_t last_clock_step_ns;
	int32_t last_clock_error;
	/* The last DISK_USAGE: disk 0 the writable layer, disk i the i-th volume of vm.json. */
	struct agent_disk_usage disks;
	uint64_t disks_at_ms; /* 0: none yet */
	/* Templates: the guest said IDENTITY_WAIT (and has not taken an identity since); how
	 * often the identity was sent; its answer (-1 none yet, 0 taken, else the errno). */
	bool identity_waiting;
	unsigned identity_sent;
	int32_t identity_error;
	char identity_reason[AGENT_TEXT_MAX];
};

/* Start the client thread. -EINVAL for a bad config, -ENOMEM, or a pthread error. */
int agent_start(const struct agent_config *cfg, struct agent **ret);
/* Stop the thread, close the socket, free. Accepts NULL; returns NULL. */
struct agent *agent_free(struct agent *agent);

void agent_get_status(struct agent *agent, struct agent_status *ret);
/* The VM is paused (or being suspended): heartbeats stop without the agent being late, and
 * the channel may drop (a snapshot resets Firecracker's vsock transport; a suspended QEMU is
 * gone). Health keeps the last values; nothing counts as missed until agent_resume. */
void agent_pause(struct agent *agent);
/* The VM runs again (resumed, or restored from a saved state: restored = true). Heartbeat
 * staleness counts from now. After a restore (restored = true) the channel is dropped and
 * re-connected (the socket behind it is a new process, or a reset vsock transport) and the
 * guest's wall clock is stepped to the host's (SET_CLOCK after the guest's next HELLO answer). */
void agent_resume(struct agent *agent, bool restored);

/* Queue a stop request with the in-guest grace period; the thread (re)sends it while connected
 * until the guest shuts down. Returns 0, or -ENOTCONN when the guest has never answered (the
 * request still stays queued for when it does). */
int agent_stop_request(struct agent *agent, unsigned grace_ms);
/* The log ring (app stdout/stderr, one "[stdout] "/"[stderr] "/"[agent] " prefix per line) into
 * a malloc'd NUL-terminated buffer. Returns 0 or -ENOMEM. */
int agent_log_copy(struct agent *agent, char **ret, size_t *ret_len);
/* Wait (up to timeout_ms) until pred holds on the status; for tests and the graceful-stop path
 * of backends. Returns 0 when it holds, -ETIMEDOUT otherwise. */
int agent_wait(struct agent *agent, bool (*pred)(const struct agent_status *s, void *ud), void *ud,
	       unsigned timeout_ms);

/* One health line value for "agent:" and "app:" (e.g. "ok heartbeat 0.4s ago",
 * "late no heartbeat for 4.2s", "running pid 42", "exited code 3"). Returns snprintf's count. */
int agent_format_health_agent(const struct agent_status *s, char *buf, size_t size);
int agent_format_health_app(const struct agent_status *s, char *buf, size_t size);

uint64_t agent_now_ms(void);

/* The channel a backend gives the agent, by struct vmm_ops name: "qemu" -> SERIAL (virtio-serial
 * chardev socket, h->agent_socket), anything else -> VSOCK (Firecracker's vsock uds). Use the
 * same value for agent_config.transport and guest_config.transport. */
enum agent_transport agent_transport_for_vmm(const char *vmm_name);
