/* SPDX-License-Identifier: MIT */
/* Host side of the guest-agent channel: one thread per VM that (re)connects, says HELLO until
 * the guest answers, tracks heartbeats and the app, keeps output in a ring (see agent.h). */
#include "agent.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "jail-path.h"
#include "log-text.h"
#include "macro.h"

/* HELLO until the guest answers: every HELLO_FAST_MS for the first HELLO_FAST_FOR_MS of a
 * connection (a restored guest answers within milliseconds), then every HELLO_RETRY_MS. */
#define HELLO_RETRY_MS 200
#define HELLO_FAST_MS 20
#define HELLO_FAST_FOR_MS 1000
#define RECONNECT_MS 100
#define STOP_RESEND_MS 1000
#define VSOCK_REPLY_MS 1500
#define SEND_WAIT_MS 1000

/* The read budget (see agent.h): a token bucket of read_rate bytes/s holding at most
 * READ_BURST_MS worth, read passes at least READ_PASS_GAP_MS apart and each at most
 * READ_PASS_MAX bytes, in recv()s of READ_CHUNK. */
#define READ_RATE_DEFAULT (512u * 1024)
#define READ_BURST_MS 250
#define READ_PASS_GAP_MS 10
/* The first READ_FREE_PASSES passes of a connection have no gap: a start's handshake (HELLO,
 * identity, network, app) is a few small messages answered at once; a flood still meets the
 * gap after them, and the bucket throughout. */
#define READ_FREE_PASSES 32
#define READ_PASS_MAX (64 * 1024)
#define READ_CHUNK 8192

struct agent {
	/* immutable after agent_start */
	enum agent_transport transport;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	uint32_t vsock_port;
	unsigned heartbeat_ms; /* decided here and sent to the guest; never taken from it */
	unsigned read_rate;
	agent_event_cb cb;
	void *ud;
	char *identity; /* a template's VM: its vm.json (NULL: a cold boot) */
	size_t identity_len;
	pthread_t thread;
	int wake_fd; /* eventfd: quit or a queued stop */
	atomic_bool quit;

	/* thread-only */
	int fd;
	struct agent_decoder dec;
	struct log_text text[4]; /* per stream: the output neutraliser's state */
	uint64_t last_hello_sent, last_stop_sent;
	uint64_t conn_at;		 /* when this connection was made */
	int64_t read_tokens;		 /* bytes the guest may still make us read */
	uint64_t read_refilled, read_at; /* last refill; no read pass before read_at */
	unsigned free_passes;		 /* passes left without READ_PASS_GAP_MS */

	pthread_mutex_t lock;	/* protects everything below; never held across I/O */
	pthread_cond_t cond;	/* signalled on every status change (agent_wait) */
	struct agent_status st; /* heartbeat_fresh/age computed at read time */
	bool stop_pending;
	unsigned stop_grace_ms;
	bool clock_pending;    /* send SET_CLOCK once the guest answers HELLO */
	bool identity_pending; /* send the identity: the guest is a template waiting for it */
	bool reconnect;	       /* drop the connection and connect again (agent_resume) */
	char *ring;	       /* log ring */
	size_t ring_size, ring_head, ring_len;
	bool line_start[4]; /* per stream: the next byte starts a line */
};

enum agent_transport agent_transport_for_vmm(const char *vmm_name)
{
	return vmm_name && strcmp(vmm_name, "qemu") == 0 ? AGENT_TRANSPORT_SERIAL
							 : AGENT_TRANSPORT_VSOCK;
}

uint64_t agent_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void ring_put(struct agent *a, const char *data, size_t len)
{
	if (len >= a->ring_size) {
		data += len - a->ring_size;
		len = a->ring_size;
	}
	while (len > 0) {
		size_t at = (a->ring_head + a->ring_len) % a->ring_size;
		size_t n = a->ring_size - at < len ? a->ring_size - at : len;
		size_t over;

		memcpy(a->ring + at, data, n);
		data += n;
		len -= n;
		a->ring_len += n;
		over = a->ring_len > a->ring_size ? a->ring_len - a->ring_size : 0;
		a->ring_len -= over;
		a->ring_head = (a->ring_head + over) % a->ring_size;
	}
}

/* Append neutralised stream output (log_text: no control or escape sequences), one
 * "[stream] " prefix per line. Under the lock. */
static void ring_output(struct agent *a, uint8_t stream, const char *text, size_t len)
{
	static const char *const prefix[] = {"", "[stdout] ", "[stderr] ", "[agent] "};

	while (len > 0) {
		const char *nl = memchr(text, '\n', len);
		size_t n = nl ? (size_t)(nl - text) + 1 : len;

		if (a->line_start[stream]) {
			ring_put(a, prefix[stream], strlen(prefix[stream]));
			a->line_start[stream] = false;
		}
		ring_put(a, text, n);
		if (nl)
			a->line_start[stream] = true;
		text += n;
		len -= n;
	}
}

static void emit(struct agent *a, unsigned events)
{
	if (!a->cb)
		return;
	for (int ev = AGENT_EVENT_CONNECTED; ev < _AGENT_EVENT_MAX; ev++)
		if (events & (1u << ev))
			a->cb(a->ud, a, (enum agent_event)ev);
}

/* Wait until fd has events, up to deadline (agent_now_ms() time); the quit flag ends the wait
 * at once. 0, -ETIMEDOUT or -ECANCELED. */
static int wait_fd(struct agent *a, int fd, short events, uint64_t deadline)
{
	for (;;) {
		struct pollfd p[2] = {{.fd = fd, .events = events},
				      {.fd = a->wake_fd, .events = POLLIN}};
		uint64_t now = agent_now_ms();
		int r;

		if (atomic_load(&a->quit))
			return -ECANCELED;
		if (now >= deadline)
			return -ETIMEDOUT;
		r = poll(p, 2, (int)(deadline - now));
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r > 0 && p[1].revents) {
			uint64_t v; /* a queued stop: the caller's loop sends it next */

			(void)!read(a->wake_fd, &v, sizeof(v));
		}
		if (r > 0 && p[0].revents)
			return 0;
	}
}

static int send_msg(struct agent *a, const struct agent_msg *m)
{
	uint8_t frame[AGENT_FRAME_MAX];
	int n = agent_msg_encode(m, frame, sizeof(frame));
	size_t off = 0;

	if (n < 0)
		return n;
	while (off < (size_t)n) {
		ssize_t w = send(a->fd, frame + off, (size_t)n - off, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			/* Small control frames: a short wait is fine, a stuck guest is not. */
			int r = wait_fd(a, a->fd, POLLOUT, agent_now_ms() + SEND_WAIT_MS);

			if (r < 0)
				return r;
			continue;
		}
		if (w < 0)
			return -errno;
		off += (size_t)w;
	}
	return 0;
}

/* Handle one guest message under the lock; returns the events to emit. OUTPUT comes as text
 * already neutralised (outside the lock). Long: one short case per message type, all updating
 * the one status under one lock. */
static unsigned handle_msg(struct agent *a, const struct agent_msg *m, const char *text,
			   size_t text_len, uint64_t now)
{
	struct agent_status *s = &a->st;
	unsigned ev = 0;

	switch (m->type) {
	case AGENT_MSG_HELLO:
		if (!s->connected)
			ev |= 1u << AGENT_EVENT_CONNECTED;
		s->connected = true;
		if (!s->ever_connected)
			s->connected_at_ms = now;
		s->ever_connected = true;
		s->version = m->hello.version;
		snprintf(s->agent_name, sizeof(s->agent_name), "%.63s", m->hello.name);
		/* m->hello.heartbeat_ms is the guest's claim: staleness uses ours. */
		break;
	case AGENT_MSG_BOOT_ID:
		if (!s->have_boot_id || memcmp(s->boot_id, m->boot_id, sizeof(s->boot_id)) != 0) {
			if (s->have_boot_id)
				ev |= 1u << AGENT_EVENT_REBOOTED;
			s->boots_seen++;
		}
		s->have_boot_id = true;
		memcpy(s->boot_id, m->boot_id, sizeof(s->boot_id));
		break;
	case AGENT_MSG_CLOCK_SET:
		s->clock_steps++;
		s->last_clock_step_ns = m->clock_set.step_ns;
		s->last_clock_error = m->clock_set.error;
		ev |= 1u << AGENT_EVENT_CLOCK;
		break;
	case AGENT_MSG_IDENTITY_WAIT:
		s->identity_waiting = true;
		if (a->identity)
			a->identity_pending = true;
		break;
	case AGENT_MSG_IDENTITY_ACK:
		s->identity_error = m->identity_ack.error;
		snprintf(s->identity_reason, sizeof(s->identity_reason), "%s",
			 m->identity_ack.reason);
		if (!m->identity_ack.error) {
			s->identity_waiting = false;
			if (!s->identity_at_ms)
				s->identity_at_ms = now;
		}
		ev |= 1u << AGENT_EVENT_IDENTITY;
		break;
	case AGENT_MSG_HEARTBEAT:
		if (s->last_heartbeat_ms == 0 ||
		    now - s->last_heartbeat_ms > 3ull * a->heartbeat_ms)
			ev |= 1u << AGENT_EVENT_HEARTBEAT;
		s->last_heartbeat_ms = now;
		s->heartbeat_seq = m->heartbeat.seq;
		s->guest_uptime_ms = m->heartbeat.uptime_ms;
		s->dropped_output_bytes = m->heartbeat.dropped_bytes;
		break;
	case AGENT_MSG_APP_STARTED:
		if (s->app != AGENT_APP_RUNNING || s->app_pid != m->pid) {
			ev |= 1u << AGENT_EVENT_APP_STARTED;
			s->app_starts++;
			s->app_started_at_ms = now;
		}
		s->app = AGENT_APP_RUNNING;
		s->app_pid = m->pid;
		break;
	case AGENT_MSG_APP_EXITED:
		if (s->app != AGENT_APP_EXITED && s->app != AGENT_APP_START_FAILED)
			ev |= 1u << AGENT_EVENT_APP_EXITED;
		s->app = m->exited.start_failed ? AGENT_APP_START_FAILED : AGENT_APP_EXITED;
		s->exit_code = m->exited.code;
		s->exit_signal = m->exited.signal;
		break;
	case AGENT_MSG_OUTPUT:
		ring_output(a, m->output.stream, text, text_len);
		ev |= 1u << AGENT_EVENT_OUTPUT;
		break;
	case AGENT_MSG_NET_CONFIGURED: {
		char addr[INET6_ADDRSTRLEN];

		inet_ntop(AF_INET6, m->net.addr, addr, sizeof(addr));
		if (!s->net_configured)
			ev |= 1u << AGENT_EVENT_NET;
		if (!s->net_at_ms)
			s->net_at_ms = now;
		s->net_configured = m->net.ok;
		snprintf(s->net_addr, sizeof(s->net_addr), "%s/%u", addr, m->net.prefix_len);
		break;
	}
	case AGENT_MSG_SHUTDOWN:
		if (!s->shutdown)
			ev |= 1u << AGENT_EVENT_SHUTDOWN;
		s->shutdown = true;
		break;
	case AGENT_MSG_DISK_USAGE:
		/* The guest's statfs: shown as reported (a guest can only lie about itself). */
		s->disks = m->disks;
		s->disks_at_ms = now; /* no event: it changes nothing health shows */
		break;
	default:
		break;
	}
	return ev;
}

/* Firecracker's hybrid vsock: "CONNECT <port>\n", then "OK <hostport>\n" (docs/firecracker.md E).
 */
static int vsock_handshake(struct agent *a)
{
	char cmd[32], reply[64];
	size_t got = 0;
	uint64_t end;
	int n;

	n = snprintf(cmd, sizeof(cmd), "CONNECT %u\n", a->vsock_port);
	if (send(a->fd, cmd, (size_t)n, MSG_NOSIGNAL) != n)
		return -EIO;
	end = agent_now_ms() + VSOCK_REPLY_MS;
	while (got < sizeof(reply) - 1) {
		ssize_t r;
		int w = wait_fd(a, a->fd, POLLIN, end);

		if (w < 0)
			return w;
		/* Byte by byte: what follows the reply line is protocol data. */
		r = recv(a->fd, reply + got, 1, 0);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0)
			return -ECONNRESET;
		if (reply[got++] == '\n')
			break;
	}
	reply[got] = '\0';
	return strncmp(reply, "OK ", 3) == 0 ? 0 : -ECONNREFUSED;
}

static int try_connect(struct agent *a)
{
	int r;

	/* The socket sits in a dir the VM's uid owns (Firecracker's jail root): never through a
	 * symlink, and only a socket of that uid (runtime/jail-path.h). One attempt: a listener
	 * with a full backlog is retried after RECONNECT_MS, never waited for here, so agent_free
	 * stays prompt. */
	a->fd = jail_connect(a->path, 0);
	if (a->fd < 0)
		return a->fd;
	/* Non-blocking from here on: the handshake and the reader poll with deadlines, so a
	 * guest that stops reading cannot block this thread (and so agent_free). */
	if (fcntl(a->fd, F_SETFL, O_NONBLOCK) < 0) {
		r = -errno;
		goto fail;
	}
	if (a->transport == AGENT_TRANSPORT_VSOCK) {
		r = vsock_handshake(a);
		if (r < 0)
			goto fail;
	}
	agent_decoder_init(&a->dec);
	for (size_t i = 0; i < ELEMENTSOF(a->text); i++)
		log_text_init(&a->text[i]);
	a->last_hello_sent = 0;
	a->conn_at = agent_now_ms();
	a->free_passes = READ_FREE_PASSES;
	a->last_stop_sent = 0;
	return 0;
fail:
	a->fd = safe_close(a->fd);
	return r;
}

static void disconnect(struct agent *a)
{
	bool was;

	a->fd = safe_close(a->fd);
	pthread_mutex_lock(&a->lock);
	was = a->st.connected;
	a->st.connected = false;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
	if (was)
		emit(a, 1u << AGENT_EVENT_DISCONNECTED);
}

/* Apply one decoded message: OUTPUT is neutralised here, outside the lock; the lock is held
 * only to update the status and the ring. */
static unsigned apply_msg(struct agent *a, const struct agent_msg *m)
{
	char text[AGENT_OUTPUT_CHUNK + 8];
	size_t n = 0;
	unsigned ev;

	if (m->type == AGENT_MSG_OUTPUT)
		n = log_text_feed(&a->text[m->output.stream], m->output.data, m->output.len, text);
	pthread_mutex_lock(&a->lock);
	ev = handle_msg(a, m, text, n, agent_now_ms());
	pthread_mutex_unlock(&a->lock);
	return ev;
}

/* One read pass of at most budget bytes: decode outside the lock, apply frame by frame.
 * Returns the bytes read (0: nothing there), or -errno when the connection ended. */
static ssize_t read_frames(struct agent *a, size_t budget)
{
	uint8_t buf[READ_CHUNK];
	size_t total = 0;

	while (total < budget && !atomic_load(&a->quit)) {
		size_t want = budget - total < sizeof(buf) ? budget - total : sizeof(buf);
		ssize_t n = recv(a->fd, buf, want, 0);
		unsigned ev = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0)
			return n == 0 ? -ECONNRESET : -errno;
		total += (size_t)n;
		for (size_t off = 0; off < (size_t)n;) {
			struct agent_msg m;

			off += agent_decoder_feed(&a->dec, buf + off, (size_t)n - off);
			while (agent_decoder_next(&a->dec, &m) > 0)
				ev |= apply_msg(a, &m);
		}
		pthread_mutex_lock(&a->lock);
		a->st.frames_bad = a->dec.bad_frames;
		a->st.bytes_skipped = a->dec.skipped_bytes;
		pthread_cond_broadcast(&a->cond);
		pthread_mutex_unlock(&a->lock);
		emit(a, ev);
		if ((size_t)n < want)
			break; /* drained */
	}
	return (ssize_t)total;
}

/* Refill the read budget; true when a read pass may run now. */
static bool read_allowed(struct agent *a, uint64_t now)
{
	int64_t burst = (int64_t)a->read_rate * READ_BURST_MS / 1000;
	int64_t add = (int64_t)((now - a->read_refilled) * a->read_rate / 1000);

	if (add > 0) {
		a->read_tokens = a->read_tokens + add > burst ? burst : a->read_tokens + add;
		a->read_refilled = now;
	}
	return now >= a->read_at && a->read_tokens > 0;
}

/* After a pass that read n bytes: charge them, and space the next pass (at least
 * READ_PASS_GAP_MS, longer until the bucket holds a chunk again). */
static void read_charge(struct agent *a, uint64_t now, size_t n)
{
	if (n == 0)
		return;
	a->read_tokens -= (int64_t)n;
	if (a->free_passes > 0) {
		a->free_passes--;
		a->read_at = now;
	} else {
		a->read_at = now + READ_PASS_GAP_MS;
	}
	if (a->read_tokens < READ_CHUNK) {
		uint64_t wait = (uint64_t)(READ_CHUNK - a->read_tokens) * 1000 / a->read_rate + 1;

		if (now + wait > a->read_at)
			a->read_at = now + wait;
	}
}

/* A template's guest waits: the VM's vm.json in pieces, then the time and fresh entropy (a new
 * draw each time, so no two clones of one template share random state). */
static int send_identity(struct agent *a)
{
	struct agent_msg m = {.type = AGENT_MSG_IDENTITY_END};
	struct timespec ts;
	int r;

	for (size_t off = 0; off < a->identity_len; off += AGENT_IDENTITY_CHUNK) {
		struct agent_msg p = {.type = AGENT_MSG_IDENTITY};
		size_t n = a->identity_len - off;

		p.identity.total = (uint32_t)a->identity_len;
		p.identity.offset = (uint32_t)off;
		p.identity.len = (uint16_t)(n < AGENT_IDENTITY_CHUNK ? n : AGENT_IDENTITY_CHUNK);
		p.identity.data = (const uint8_t *)a->identity + off;
		r = send_msg(a, &p);
		if (r < 0)
			return r;
	}
	m.identity_end.total = (uint32_t)a->identity_len;
	m.identity_end.crc = agent_crc32(0, a->identity, a->identity_len);
	if (getrandom(m.identity_end.entropy, sizeof(m.identity_end.entropy), 0) !=
	    (ssize_t)sizeof(m.identity_end.entropy))
		return -EIO; /* never send predictable entropy */
	clock_gettime(CLOCK_REALTIME, &ts);
	m.identity_end.clock.sec = ts.tv_sec < 0 ? 0 : (int64_t)ts.tv_sec;
	m.identity_end.clock.nsec = (uint32_t)ts.tv_nsec;
	r = send_msg(a, &m);
	explicit_bzero(&m, sizeof(m));
	return r;
}

static unsigned hello_every(const struct agent *a, uint64_t now)
{
	return now - a->conn_at < HELLO_FAST_FOR_MS ? HELLO_FAST_MS : HELLO_RETRY_MS;
}

/* Periodic sends: HELLO until answered, STOP until the guest shuts down; a template's
 * identity when it asks. */
static int send_due(struct agent *a, uint64_t now)
{
	bool connected, stop, shut, clock, identity;
	unsigned grace;

	pthread_mutex_lock(&a->lock);
	connected = a->st.connected;
	stop = a->stop_pending;
	shut = a->st.shutdown;
	grace = a->stop_grace_ms;
	clock = connected && a->clock_pending;
	if (clock)
		a->clock_pending = false;
	identity = connected && a->identity_pending;
	if (identity) {
		a->identity_pending = false;
		a->st.identity_sent++;
	}
	pthread_mutex_unlock(&a->lock);

	if (identity && send_identity(a) < 0)
		return -EIO; /* the guest says IDENTITY_WAIT again after the next HELLO */

	if (clock) {
		struct agent_msg m = {.type = AGENT_MSG_SET_CLOCK};
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		m.clock.sec = ts.tv_sec < 0 ? 0 : (int64_t)ts.tv_sec;
		m.clock.nsec = (uint32_t)ts.tv_nsec;
		if (send_msg(a, &m) < 0) {
			pthread_mutex_lock(&a->lock);
			a->clock_pending = true; /* again on the next connection */
			pthread_mutex_unlock(&a->lock);
			return -EIO;
		}
	}
	if (!connected && now - a->last_hello_sent >= hello_every(a, now)) {
		struct agent_msg m = {.type = AGENT_MSG_HELLO};

		m.hello.version = AGENT_PROTO_VERSION;
		m.hello.heartbeat_ms = a->heartbeat_ms;
		snprintf(m.hello.name, sizeof(m.hello.name), "mvmfs-host");
		a->last_hello_sent = now;
		if (send_msg(a, &m) < 0)
			return -EIO;
	}
	if (connected && stop && !shut && now - a->last_stop_sent >= STOP_RESEND_MS) {
		struct agent_msg m = {.type = AGENT_MSG_STOP, .grace_ms = grace};

		a->last_stop_sent = now;
		if (send_msg(a, &m) < 0)
			return -EIO;
	}
	return 0;
}

static void *agent_thread(void *arg)
{
	struct agent *a = arg;

	while (!atomic_load(&a->quit)) {
		struct pollfd p[2];
		uint64_t now = agent_now_ms();
		int n = 0, timeout = RECONNECT_MS;
		bool can_read;

		if (a->fd < 0 && try_connect(a) < 0) {
			if (atomic_load(&a->quit))
				break;
			p[0] = (struct pollfd){.fd = a->wake_fd, .events = POLLIN};
			(void)poll(p, 1, RECONNECT_MS);
			if (p[0].revents) {
				uint64_t v;

				(void)!read(a->wake_fd, &v, sizeof(v));
			}
			continue;
		}
		pthread_mutex_lock(&a->lock);
		if (a->reconnect) {
			a->reconnect = false;
			pthread_mutex_unlock(&a->lock);
			disconnect(a);
			continue;
		}
		pthread_mutex_unlock(&a->lock);
		if (send_due(a, now) < 0) {
			disconnect(a);
			continue;
		}
		/* Over budget: leave the socket out of the poll (fd -1) until read_at, so
		 * neither its data nor a hangup can make us spin. */
		can_read = read_allowed(a, now);
		p[n++] = (struct pollfd){.fd = a->wake_fd, .events = POLLIN};
		p[n++] = (struct pollfd){.fd = can_read ? a->fd : -1, .events = POLLIN};
		timeout = (int)hello_every(a, now); /* the next HELLO, while unanswered */
		if (!can_read && a->read_at > now && a->read_at - now < (uint64_t)timeout)
			timeout = (int)(a->read_at - now);
		else if (!can_read && a->read_at <= now)
			timeout = READ_PASS_GAP_MS; /* waiting for tokens */
		if (poll(p, (nfds_t)n, timeout) < 0 && errno != EINTR)
			continue;
		if (p[0].revents) {
			uint64_t v;

			(void)!read(a->wake_fd, &v, sizeof(v));
		}
		if (can_read && p[1].revents) {
			size_t budget = a->read_tokens < READ_PASS_MAX ? (size_t)a->read_tokens
								       : READ_PASS_MAX;
			ssize_t r = read_frames(a, budget);

			if (r < 0)
				disconnect(a);
			else
				read_charge(a, agent_now_ms(), (size_t)r);
		}
	}
	if (a->fd >= 0)
		disconnect(a);
	return NULL;
}

int agent_start(const struct agent_config *cfg, struct agent **ret)
{
	struct agent *a;
	int r;

	if (!cfg || !cfg->socket_path || strlen(cfg->socket_path) >= sizeof(a->path))
		return -EINVAL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->transport = cfg->transport;
	/* The QEMU backend names its chardev socket "*.serial": no vsock handshake there, even if
	 * the caller asked for one. */
	if (strlen(cfg->socket_path) > 7 &&
	    strcmp(cfg->socket_path + strlen(cfg->socket_path) - 7, ".serial") == 0)
		a->transport = AGENT_TRANSPORT_SERIAL;
	snprintf(a->path, sizeof(a->path), "%s", cfg->socket_path);
	a->vsock_port = cfg->vsock_port ? cfg->vsock_port : AGENT_DEFAULT_VSOCK_PORT;
	a->heartbeat_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : 1000;
	a->read_rate = cfg->read_rate ? cfg->read_rate : READ_RATE_DEFAULT;
	a->read_refilled = agent_now_ms();
	a->st.started_at_ms = a->read_refilled;
	a->read_tokens = (int64_t)a->read_rate * READ_BURST_MS / 1000;
	a->cb = cfg->cb;
	a->ud = cfg->ud;
	a->fd = -EBADF;
	a->st.identity_error = -1;
	if (cfg->identity) {
		if (cfg->identity_len < 1 || cfg->identity_len > AGENT_IDENTITY_MAX) {
			free(a);
			return -EINVAL;
		}
		a->identity = malloc(cfg->identity_len);
		if (!a->identity) {
			free(a);
			return -ENOMEM;
		}
		memcpy(a->identity, cfg->identity, cfg->identity_len);
		a->identity_len = cfg->identity_len;
	}
	if (cfg->expect_boot_id) {
		a->st.have_boot_id = true;
		a->st.boots_seen = 1;
		memcpy(a->st.boot_id, cfg->expect_boot_id, sizeof(a->st.boot_id));
	}
	a->ring_size = cfg->log_bytes ? cfg->log_bytes : 64 * 1024;
	a->ring = malloc(a->ring_size);
	for (size_t i = 0; i < ELEMENTSOF(a->line_start); i++)
		a->line_start[i] = true;
	a->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!a->ring || a->wake_fd < 0) {
		r = a->ring ? -errno : -ENOMEM;
		goto fail;
	}
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	agent_decoder_init(&a->dec);
	r = -pthread_create(&a->thread, NULL, agent_thread, a);
	if (r < 0) {
		pthread_cond_destroy(&a->cond);
		pthread_mutex_destroy(&a->lock);
		goto fail;
	}
	*ret = a;
	return 0;
fail:
	safe_close(a->wake_fd);
	free(a->ring);
	free(a->identity);
	free(a);
	return r;
}

struct agent *agent_free(struct agent *a)
{
	uint64_t one = 1;

	if (!a)
		return NULL;
	atomic_store(&a->quit, true);
	(void)!write(a->wake_fd, &one, sizeof(one));
	pthread_join(a->thread, NULL);
	safe_close(a->wake_fd);
	pthread_cond_destroy(&a->cond);
	pthread_mutex_destroy(&a->lock);
	free(a->ring);
	free(a->identity);
	free(a);
	return NULL;
}

static void status_locked(struct agent *a, struct agent_status *ret, uint64_t now)
{
	*ret = a->st;
	if (ret->last_heartbeat_ms) {
		ret->heartbeat_age_ms = now - ret->last_heartbeat_ms;
		/* Paused: no heartbeat is missed. Resumed: the gap does not count, the guest has
		 * three periods from the resume (plus reconnecting) like a fresh heartbeat. */
		ret->heartbeat_fresh =
			ret->paused || ret->heartbeat_age_ms <= 3ull * a->heartbeat_ms ||
			(ret->resumed_at_ms &&
			 now - ret->resumed_at_ms <= 3ull * a->heartbeat_ms + HELLO_RETRY_MS);
	} else {
		ret->heartbeat_age_ms = UINT64_MAX;
		ret->heartbeat_fresh = false;
	}
}

void agent_get_status(struct agent *a, struct agent_status *ret)
{
	pthread_mutex_lock(&a->lock);
	status_locked(a, ret, agent_now_ms());
	pthread_mutex_unlock(&a->lock);
}

void agent_pause(struct agent *a)
{
	pthread_mutex_lock(&a->lock);
	a->st.paused = true;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
}

void agent_resume(struct agent *a, bool restored)
{
	uint64_t one = 1;

	pthread_mutex_lock(&a->lock);
	a->st.paused = false;
	a->st.resumed_at_ms = agent_now_ms();
	if (restored) {
		a->reconnect = true;
		a->clock_pending = true;
	}
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
	(void)!write(a->wake_fd, &one, sizeof(one));
}

int agent_stop_request(struct agent *a, unsigned grace_ms)
{
	uint64_t one = 1;
	bool ever;

	pthread_mutex_lock(&a->lock);
	a->stop_pending = true;
	a->stop_grace_ms = grace_ms;
	ever = a->st.ever_connected;
	pthread_mutex_unlock(&a->lock);
	(void)!write(a->wake_fd, &one, sizeof(one));
	return ever ? 0 : -ENOTCONN;
}

int agent_log_copy(struct agent *a, char **ret, size_t *ret_len)
{
	size_t skip = 0, len;
	char *buf;

	pthread_mutex_lock(&a->lock);
	len = a->ring_len;
	buf = malloc(len + 1);
	if (!buf) {
		pthread_mutex_unlock(&a->lock);
		return -ENOMEM;
	}
	for (size_t i = 0; i < len; i++)
		buf[i] = a->ring[(a->ring_head + i) % a->ring_size];
	/* A full ring starts mid-line: start at the first whole line. */
	if (len == a->ring_size) {
		while (skip < len && buf[skip] != '\n')
			skip++;
		if (skip < len)
			skip++;
		memmove(buf, buf + skip, len - skip);
		len -= skip;
	}
	pthread_mutex_unlock(&a->lock);
	buf[len] = '\0';
	*ret = buf;
	if (ret_len)
		*ret_len = len;
	return 0;
}

int agent_wait(struct agent *a, bool (*pred)(const struct agent_status *s, void *ud), void *ud,
	       unsigned timeout_ms)
{
	uint64_t end = agent_now_ms() + timeout_ms;
	struct agent_status s;
	int r = -ETIMEDOUT;

	pthread_mutex_lock(&a->lock);
	for (;;) {
		uint64_t now = agent_now_ms();
		struct timespec ts;

		status_locked(a, &s, now);
		if (pred(&s, ud)) {
			r = 0;
			break;
		}
		if (now >= end)
			break;
		/* Wake at least every 100 ms: heartbeat freshness changes with time alone. */
		ts = clock_after_ms(CLOCK_REALTIME, 100);
		pthread_cond_timedwait(&a->cond, &a->lock, &ts);
	}
	pthread_mutex_unlock(&a->lock);
	return r;
}

int agent_format_health_agent(const struct agent_status *s, char *buf, size_t size)
{
	if (!s->ever_connected)
		return snprintf(buf, size, "waiting no answer from the guest agent yet");
	if (s->paused)
		return snprintf(buf, size,
				"paused no heartbeats while the VM is paused (last %.1fs ago)",
				(double)s->heartbeat_age_ms / 1000.0);
	if (s->heartbeat_fresh)
		return snprintf(buf, size, "ok heartbeat %.1fs ago (%s, protocol %u)",
				(double)s->heartbeat_age_ms / 1000.0, s->agent_name, s->version);
	if (s->last_heartbeat_ms == 0)
		return snprintf(buf, size, "late connected but no heartbeat yet");
	return snprintf(buf, size, "late no heartbeat for %.1fs%s",
			(double)s->heartbeat_age_ms / 1000.0,
			s->connected ? "" : " (channel disconnected)");
}

int agent_format_health_app(const struct agent_status *s, char *buf, size_t size)
{
	switch (s->app) {
	case AGENT_APP_RUNNING:
		return snprintf(buf, size, "running pid %u, starts %u", s->app_pid, s->app_starts);
	case AGENT_APP_EXITED:
		if (s->exit_signal)
			return snprintf(buf, size, "exited signal %d", s->exit_signal);
		return snprintf(buf, size, "exited code %d", s->exit_code);
	case AGENT_APP_START_FAILED:
		return snprintf(buf, size, "failed could not start (code %d)", s->exit_code);
	default:
		return snprintf(buf, size, "unknown no report from the agent yet");
	}
}
