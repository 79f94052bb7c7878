/* SPDX-License-Identifier: MIT */
/*
 * mvmfs guest agent: PID 1 in the initramfs. Boots the guest (mounts, modules, disks, overlay,
 * network), runs the image's process under supervision, and talks to the host over the agent
 * channel (common/agent-proto.h). With --test-mode it runs as an ordinary process: protocol on
 * stdin/stdout, the app run in the current root, no mounts or netlink.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define MAX_INPUTS 8

struct agent_state {
	struct guest_vm vm;
	struct channel *ch;
	struct app app;
	bool test_mode;
	bool app_started;
	bool net_reported, net_ok;
	bool stopping;
	uint64_t kill_at; /* SIGKILL deadline while stopping, 0 none */
	uint64_t next_heartbeat;
	uint32_t hb_seq;
	uint64_t boot_ms;
	int sfd;		/* signalfd */
	int inputs[MAX_INPUTS]; /* ACPI power button event devices */
	int ninputs;
	int ctl_fd;	    /* test mode: "guest control" fd of the Firecracker fake */
	bool hello_pending; /* answer once per batch: HELLOs queue up while we boot */
	uint8_t boot_id[AGENT_BOOT_ID_LEN];
	/* A template (vm.json "template": true) waits for its VM's identity (docs/template.md). */
	bool waiting_identity;
	bool identity_ready; /* taken: boot on as a cold boot would */
	struct identity_asm ident;
};

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A thread other than the main one (the network's, during the boot) must not touch the channel:
 * its lines wait here until the main thread replays them (log_replay). */
struct log_defer {
	char text[2048];
	size_t len;
};
static __thread struct log_defer *log_defer;

void agent_log(const char *fmt, ...)
{
	char buf[512];
	struct agent_msg m = {.type = AGENT_MSG_OUTPUT};
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (log_defer) {
		struct log_defer *d = log_defer;

		if (d->len + (size_t)n < sizeof(d->text)) {
			memcpy(d->text + d->len, buf, (size_t)n);
			d->len += (size_t)n;
		}
		return;
	}
	fprintf(stderr, "mvmfs-agent: %.*s", n, buf);
	m.output.stream = AGENT_STREAM_AGENT;
	m.output.len = (uint16_t)n;
	m.output.data = (const uint8_t *)buf;
	(void)channel_send(agent_channel, &m);
}

static void send_state(struct agent_state *s)
{
	struct agent_msg m;

	if (s->net_reported) {
		m = (struct agent_msg){.type = AGENT_MSG_NET_CONFIGURED};
		m.net.ok = s->net_ok;
		m.net.prefix_len = (uint8_t)s->vm.prefix_len;
		memcpy(m.net.addr, &s->vm.addr, 16);
		channel_send(s->ch, &m);
	}
	if (s->app_started && !s->app.start_failed) {
		m = (struct agent_msg){.type = AGENT_MSG_APP_STARTED, .pid = (uint32_t)s->app.pid};
		channel_send(s->ch, &m);
	}
	if (s->app.exited) {
		m = (struct agent_msg){.type = AGENT_MSG_APP_EXITED};
		m.exited.code = s->app.code;
		m.exited.signal = s->app.signal;
		m.exited.start_failed = s->app.start_failed;
		channel_send(s->ch, &m);
	}
}

/* statfs of the writable layer and the volumes (nothing in test mode: no mounts). */
static void send_disk_usage(struct agent_state *s)
{
	struct agent_msg m = {.type = AGENT_MSG_DISK_USAGE};

	if (s->test_mode)
		return;
	volumes_usage(&m.disks);
	if (m.disks.n)
		channel_send(s->ch, &m);
}

static void send_heartbeat(struct agent_state *s)
{
	struct agent_msg m = {.type = AGENT_MSG_HEARTBEAT};

	m.heartbeat.seq = ++s->hb_seq;
	m.heartbeat.uptime_ms = now_ms() - s->boot_ms;
	m.heartbeat.dropped_bytes = channel_dropped(s->ch);
	m.heartbeat.app_running = s->app.pid > 0 && !s->app.exited;
	channel_send(s->ch, &m);
}

_Noreturn static void shutdown_now(struct agent_state *s, const char *reason)
{
	struct agent_msg m = {.type = AGENT_MSG_SHUTDOWN};

	snprintf(m.reason, sizeof(m.reason), "%s", reason);
	agent_log("shutting down: %s", reason);
	channel_send(s->ch, &m);
	channel_flush(s->ch, 500);
	if (s->test_mode) {
		/* Act as the guest kernel would: a reset (reboot=k) ends Firecracker; QEMU exits on
		 * the power-off. The fake takes these words on its guest control fd. */
		if (s->ctl_fd >= 0) {
			const char *w = s->vm.vsock ? "reboot\n" : "poweroff\n";

			(void)!write(s->ctl_fd, w, strlen(w));
		}
		exit(0);
	}
	mounts_teardown();
	power_off(s->vm.vsock);
}

static void begin_stop(struct agent_state *s, unsigned grace_ms, const char *why)
{
	if (s->stopping)
		return;
	s->stopping = true;
	agent_log("stop requested (%s), grace %u ms", why, grace_ms);
	if (s->app.pid > 0 && !s->app.exited) {
		kill(s->app.pid, SIGTERM);
		s->kill_at = now_ms() + grace_ms;
		return;
	}
	shutdown_now(s, "stop requested");
}

static void answer_hello(struct agent_state *s)
{
	struct agent_msg r = {.type = AGENT_MSG_HELLO};

	if (!s->hello_pending)
		return;
	s->hello_pending = false;
	r.hello.version = AGENT_PROTO_VERSION;
	r.hello.heartbeat_ms = s->vm.heartbeat_ms;
	snprintf(r.hello.name, sizeof(r.hello.name), "%s", AGENT_NAME);
	channel_send(s->ch, &r);
	r = (struct agent_msg){.type = AGENT_MSG_BOOT_ID};
	memcpy(r.boot_id, s->boot_id, sizeof(r.boot_id));
	channel_send(s->ch, &r);
	if (s->waiting_identity) {
		r = (struct agent_msg){.type = AGENT_MSG_IDENTITY_WAIT};
		channel_send(s->ch, &r);
	}
	send_state(s);
	send_disk_usage(s);
	send_heartbeat(s);
}

/* After a restore the guest's wall clock is where it was at the snapshot: step it to the
 * host's. In test mode the agent is an ordinary process sharing the host's clock: it reports
 * the step it would apply and leaves the clock alone. */
static void set_clock(struct agent_state *s, const struct agent_clock *c)
{
	struct agent_msg r = {.type = AGENT_MSG_CLOCK_SET};
	struct timespec now, to = {.tv_sec = (time_t)c->sec, .tv_nsec = (long)c->nsec};

	clock_gettime(CLOCK_REALTIME, &now);
	r.clock_set.step_ns = ((int64_t)to.tv_sec - (int64_t)now.tv_sec) * 1000000000 +
			      ((int64_t)to.tv_nsec - (int64_t)now.tv_nsec);
	if (!s->test_mode && clock_settime(CLOCK_REALTIME, &to) < 0)
		r.clock_set.error = errno;
	if (r.clock_set.error)
		agent_log("clock: cannot step the wall clock: %s", strerror(r.clock_set.error));
	else
		agent_log("clock: wall clock stepped by %+.3fs%s",
			  (double)r.clock_set.step_ns / 1e9,
			  s->test_mode ? " (test mode: not set)" : "");
	channel_send(s->ch, &r);
	/* SET_CLOCK comes after a restore, whose host rebuilt the VM's network: announce the
	 * address again, so packets the host queued for it go at once. */
	if (!s->test_mode && s->net_ok)
		net_announce(&s->vm);
}

/* The boot this agent belongs to: the kernel's boot_id (a restored guest keeps it); in test
 * mode --boot-id, else random (each test-mode agent is a boot of its own). */
static int parse_boot_id(const char *text, uint8_t *out)
{
	size_t n = 0;

	for (const char *p = text; *p; p++) {
		int v;

		if (*p == '-')
			continue;
		if (*p >= '0' && *p <= '9')
			v = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			v = *p - 'a' + 10;
		else if (*p >= 'A' && *p <= 'F')
			v = *p - 'A' + 10;
		else
			return -EINVAL;
		if (n >= 2 * AGENT_BOOT_ID_LEN)
			return -EINVAL;
		if (n % 2 == 0)
			out[n / 2] = (uint8_t)(v << 4);
		else
			out[n / 2] |= (uint8_t)v;
		n++;
	}
	return n == 2 * AGENT_BOOT_ID_LEN ? 0 : -EINVAL;
}

static void load_boot_id(struct agent_state *s)
{
	char buf[64] = "";
	int fd;

	if (!s->test_mode) {
		fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t n = read(fd, buf, sizeof(buf) - 1);

			close(fd);
			if (n > 0) {
				buf[n] = '\0';
				buf[strcspn(buf, "\n")] = '\0';
				if (parse_boot_id(buf, s->boot_id) == 0)
					return;
			}
		}
	}
	if (getrandom(s->boot_id, sizeof(s->boot_id), 0) != (ssize_t)sizeof(s->boot_id))
		for (size_t i = 0; i < sizeof(s->boot_id); i++)
			s->boot_id[i] = (uint8_t)(now_ms() >> (i % 8)) ^ (uint8_t)getpid();
}

static void identity_ack(struct agent_state *s, int error, const char *reason)
{
	struct agent_msg r = {.type = AGENT_MSG_IDENTITY_ACK};

	r.identity_ack.error = error;
	snprintf(r.identity_ack.reason, sizeof(r.identity_ack.reason), "%s", reason);
	channel_send(s->ch, &r);
}

/* The identity is complete: check it, step the wall clock, add the host's entropy, and take the
 * VM's settings in place of the template's. A refused identity leaves the template waiting (the
 * host may send another); the host cold-boots the VM instead. */
static void identity_end(struct agent_state *s, const struct agent_identity_end *e)
{
	struct timespec to = {.tv_sec = (time_t)e->clock.sec, .tv_nsec = (long)e->clock.nsec};
	struct guest_vm vm;
	char err[200] = "";
	int r;

	r = identity_finish(&s->ident, e, s->vm.vsock, &vm, err, sizeof(err));
	if (r < 0) {
		agent_log("template: identity refused: %s", err);
		identity_ack(s, -r, err);
		return;
	}
	if (!s->test_mode) {
		if (clock_settime(CLOCK_REALTIME, &to) < 0)
			agent_log("template: cannot step the wall clock: %s", strerror(errno));
		r = entropy_add(e->entropy, sizeof(e->entropy));
		if (r < 0) {
			/* Without it clones would share the template's random state. */
			agent_log("template: cannot add the host's entropy: %s", strerror(-r));
			guest_vm_done(&vm);
			identity_ack(s, -r, "cannot add the host's entropy");
			return;
		}
	}
	/* The channel stays as the template opened it (same transport and port). */
	vm.port = s->vm.port;
	guest_vm_done(&s->vm);
	s->vm = vm;
	s->waiting_identity = false;
	s->identity_ready = true;
	{
		char addr[INET6_ADDRSTRLEN] = "none";

		if (s->vm.have_addr)
			inet_ntop(AF_INET6, &s->vm.addr, addr, sizeof(addr));
		agent_log("template: identity of '%s' taken (address %s, MAC %s)%s", s->vm.name,
			  addr, s->vm.mac[0] ? s->vm.mac : "none",
			  s->test_mode ? " (test mode: clock and entropy left alone)" : "");
	}
	identity_ack(s, 0, "");
}

static void on_host_msg(void *ud, const struct agent_msg *m)
{
	struct agent_state *s = ud;

	switch (m->type) {
	case AGENT_MSG_HELLO:
		/* The host decides the heartbeat period (it judges staleness by its own value);
		 * same bounds as vm.json's agent.heartbeat_ms. */
		if (m->hello.heartbeat_ms) {
			unsigned ms = m->hello.heartbeat_ms;

			s->vm.heartbeat_ms = ms < 50 ? 50 : ms > 600000 ? 600000 : ms;
			if (s->next_heartbeat > now_ms() + s->vm.heartbeat_ms)
				s->next_heartbeat = now_ms() + s->vm.heartbeat_ms;
		}
		s->hello_pending = true;
		break;
	case AGENT_MSG_STOP:
		begin_stop(s, m->grace_ms, "host");
		break;
	case AGENT_MSG_SET_CLOCK:
		set_clock(s, &m->clock);
		break;
	case AGENT_MSG_IDENTITY:
		if (s->waiting_identity && identity_piece(&s->ident, &m->identity) == -ENOMEM)
			agent_log("template: no memory for the identity");
		break;
	case AGENT_MSG_IDENTITY_END:
		if (s->waiting_identity)
			identity_end(s, &m->identity_end);
		else
			identity_ack(s, EALREADY, "not a template waiting for its identity");
		break;
	default:
		break;
	}
}

/* Forward what the app wrote; returns false at EOF. */
static bool forward_output(struct agent_state *s, int *fd, uint8_t stream)
{
	uint8_t buf[AGENT_OUTPUT_CHUNK < 3072 ? AGENT_OUTPUT_CHUNK : 3072];

	for (;;) {
		ssize_t n = read(*fd, buf, sizeof(buf));
		struct agent_msg m = {.type = AGENT_MSG_OUTPUT};

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return true;
		if (n <= 0) {
			close(*fd);
			*fd = -1;
			return false;
		}
		m.output.stream = stream;
		m.output.len = (uint16_t)n;
		m.output.data = buf;
		channel_send(s->ch, &m);
	}
}

static void reap_children(struct agent_state *s)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct agent_msg m = {.type = AGENT_MSG_APP_EXITED};

		if (pid != s->app.pid)
			continue; /* an orphan re-parented to PID 1 */
		if (s->app.out_fd >= 0)
			forward_output(s, &s->app.out_fd, AGENT_STREAM_STDOUT);
		if (s->app.err_fd >= 0)
			forward_output(s, &s->app.err_fd, AGENT_STREAM_STDERR);
		s->app.exited = true;
		s->app.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		s->app.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
		m.exited.code = s->app.code;
		m.exited.signal = s->app.signal;
		m.exited.start_failed = s->app.start_failed;
		channel_send(s->ch, &m);
		if (s->app.signal)
			agent_log("app exited on signal %d", s->app.signal);
		else
			agent_log("app exited with code %d", s->app.code);
		if (s->stopping)
			shutdown_now(s, "app stopped");
	}
}

static void handle_signals(struct agent_state *s)
{
	struct signalfd_siginfo si;

	while (read(s->sfd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			reap_children(s);
			break;
		case SIGINT: /* Ctrl-Alt-Del (Firecracker SendCtrlAltDel) or ^C in test mode */
		case SIGTERM:
		case SIGPWR:
			begin_stop(s, s->vm.grace_ms, "signal");
			break;
		default:
			break;
		}
	}
}

/* The ACPI power button (QEMU system_powerdown) shows up as KEY_POWER on an evdev node. */
static void open_inputs(struct agent_state *s)
{
	DIR *d = opendir("/dev/input");
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)) && s->ninputs < MAX_INPUTS) {
		char path[300];
		int fd;

		if (strncmp(de->d_name, "event", 5) != 0)
			continue;
		snprintf(path, sizeof(path), "/dev/input/%s", de->d_name);
		fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		if (fd >= 0)
			s->inputs[s->ninputs++] = fd;
	}
	closedir(d);
}

static void handle_input(struct agent_state *s, int fd)
{
	struct input_event ev;

	while (read(fd, &ev, sizeof(ev)) == sizeof(ev))
		if (ev.type == EV_KEY && ev.code == KEY_POWER && ev.value == 1)
			begin_stop(s, s->vm.grace_ms, "power button");
}

/* Serve the channel without blocking between boot steps, so the host hears HELLO (and any
 * boot error) as early as the port exists rather than after the whole boot. */
static void pump(struct agent_state *s)
{
	struct pollfd p[4];
	int fds[4], n;
	short ev[4];
	uint64_t now = now_ms();

	(void)channel_tick(s->ch, now);
	n = channel_poll_fds(s->ch, fds, ev, now);
	for (int i = 0; i < n; i++)
		p[i] = (struct pollfd){.fd = fds[i], .events = ev[i]};
	if (n > 0 && poll(p, (nfds_t)n, 0) > 0)
		for (int i = 0; i < n; i++)
			if (p[i].revents)
				channel_handle(s->ch, p[i].fd, p[i].revents, now, on_host_msg, s);
	answer_hello(s);
}

/* Where a boot's time goes after the identity (or, cold, after the agent started): CLOCK_MONOTONIC
 * ms at the end of each step, logged as one line once the app runs (docs/template.md). */
static uint64_t boot_t[_BT_MAX];

void boot_mark(enum boot_step step)
{
	boot_t[step] = now_ms();
}

static void boot_log_timing(void)
{
	uint64_t t0 = boot_t[BT_BEGIN];

#define BT_REL(x) (boot_t[x] >= t0 ? (unsigned long long)(boot_t[x] - t0) : 0ull)
	agent_log("boot timing: disks +%llu ms, image root +%llu, data disk +%llu, root mounted "
		  "+%llu, /etc +%llu, volumes +%llu, network +%llu, app started +%llu (guest "
		  "monotonic ms %llu at the start); mounts (ms each): %s",
		  BT_REL(BT_DISKS), BT_REL(BT_IMAGE), BT_REL(BT_DATA), BT_REL(BT_ROOT),
		  BT_REL(BT_ETC), BT_REL(BT_VOLUMES), BT_REL(BT_NET), BT_REL(BT_APP),
		  (unsigned long long)t0, mounts_timing());
#undef BT_REL
}

/* The network comes up on a thread of its own while the main thread mounts: neither needs the
 * other, and a mount mostly waits for its disk. Both are done before the app starts. */
struct net_job {
	const struct guest_vm *vm;
	struct log_defer log;
	pthread_t thread;
	bool running;
	int r;
	uint64_t done_ms;
};

static void *net_thread(void *arg)
{
	struct net_job *j = arg;

	log_defer = &j->log;
	j->r = net_configure(j->vm);
	j->done_ms = now_ms();
	return NULL;
}

static void net_begin(struct net_job *j, const struct guest_vm *vm)
{
	*j = (struct net_job){.vm = vm};
	j->running = pthread_create(&j->thread, NULL, net_thread, j) == 0;
	if (!j->running) {
		j->r = net_configure(vm); /* no thread: in line, as before */
		j->done_ms = now_ms();
	}
}

/* The network's result, once: its log lines replayed on the channel, its state sent. */
static int net_end(struct agent_state *s, struct net_job *j)
{
	if (j->running)
		pthread_join(j->thread, NULL);
	j->running = false;
	for (char *p = j->log.text, *e; p < j->log.text + j->log.len; p = e + 1) {
		e = memchr(p, '\n', (size_t)(j->log.text + j->log.len - p));
		if (!e)
			break;
		agent_log("%.*s", (int)(e - p), p);
	}
	j->log.len = 0;
	boot_t[BT_NET] = j->done_ms;
	s->net_ok = j->r >= 0;
	s->net_reported = true;
	send_state(s);
	pump(s);
	return j->r;
}

static int boot_guest(struct agent_state *s)
{
	struct net_job net;
	int r;

	pump(s);
	if (!s->vm.no_network)
		net_begin(&net, &s->vm);
	r = mounts_root(&s->vm);
	boot_mark(BT_ROOT);
	pump(s);
	if (r >= 0) {
		(void)mounts_etc(&s->vm);
		boot_mark(BT_ETC);
		/* Before the app: it must never run without its volumes. */
		r = volumes_mount(&s->vm, NEWROOT);
		boot_mark(BT_VOLUMES);
	}
	warm_end();
	if (!s->vm.no_network)
		(void)net_end(s, &net);
	if (r < 0)
		return r;
	open_inputs(s);
	return 0;
}

static void start_app(struct agent_state *s)
{
	struct agent_msg m;
	int r;

	r = app_start(&s->vm, s->test_mode ? "/" : NEWROOT, &s->app);
	s->app_started = true;
	if (r < 0 && s->app.pid <= 0) {
		s->app.exited = true;
		s->app.start_failed = true;
		s->app.code = 126;
		send_state(s);
		return;
	}
	if (!s->app.start_failed) {
		m = (struct agent_msg){.type = AGENT_MSG_APP_STARTED, .pid = (uint32_t)s->app.pid};
		channel_send(s->ch, &m);
	}
}

static void boot_and_start(struct agent_state *s);

static void loop(struct agent_state *s)
{
	for (;;) {
		if (s->identity_ready) {
			s->identity_ready = false;
			boot_and_start(s);
		}
		struct pollfd p[8 + MAX_INPUTS];
		int fds[4], n = 0, cn, timeout = -1, t;
		short ev[4];
		uint64_t now = now_ms();

		if (s->kill_at && now >= s->kill_at && s->app.pid > 0 && !s->app.exited) {
			agent_log("grace period over: SIGKILL");
			kill(s->app.pid, SIGKILL);
			s->kill_at = 0;
		}
		if (now >= s->next_heartbeat) {
			if (channel_host_present(s->ch)) {
				send_heartbeat(s);
				/* Disk usage every 10th heartbeat (10 s by default). */
				if (s->hb_seq % 10 == 0)
					send_disk_usage(s);
			}
			s->next_heartbeat = now + s->vm.heartbeat_ms;
		}
		timeout = (int)(s->next_heartbeat - now);
		if (s->kill_at)
			timeout = MIN_INT(timeout, (int)(s->kill_at > now ? s->kill_at - now : 0));
		t = channel_tick(s->ch, now);
		if (t >= 0)
			timeout = MIN_INT(timeout, t);

		p[n++] = (struct pollfd){.fd = s->sfd, .events = POLLIN};
		cn = channel_poll_fds(s->ch, fds, ev, now);
		for (int i = 0; i < cn; i++)
			p[n++] = (struct pollfd){.fd = fds[i], .events = ev[i]};
		if (s->app.out_fd >= 0)
			p[n++] = (struct pollfd){.fd = s->app.out_fd, .events = POLLIN};
		if (s->app.err_fd >= 0)
			p[n++] = (struct pollfd){.fd = s->app.err_fd, .events = POLLIN};
		int first_input = n;
		for (int i = 0; i < s->ninputs; i++)
			p[n++] = (struct pollfd){.fd = s->inputs[i], .events = POLLIN};

		if (poll(p, (nfds_t)n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			agent_log("poll: %s", strerror(errno));
			nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
			continue;
		}
		now = now_ms();
		for (int i = 0; i < n; i++) {
			if (!p[i].revents)
				continue;
			if (i == 0)
				handle_signals(s);
			else if (i <= cn) {
				channel_handle(s->ch, p[i].fd, p[i].revents, now, on_host_msg, s);
				answer_hello(s);
			} else if (i >= first_input)
				handle_input(s, p[i].fd);
			else if (p[i].fd == s->app.out_fd)
				forward_output(s, &s->app.out_fd, AGENT_STREAM_STDOUT);
			else if (p[i].fd == s->app.err_fd)
				forward_output(s, &s->app.err_fd, AGENT_STREAM_STDERR);
		}
	}
}

/* The boot proper, the same for a cold boot and a template that took its identity. */
static void boot_and_start(struct agent_state *s)
{
	boot_mark(BT_BEGIN);
	if (!s->test_mode && boot_guest(s) < 0) {
		agent_log("guest boot failed; the app is not started");
		return;
	}
	start_app(s);
	boot_mark(BT_APP);
	if (!s->test_mode)
		boot_log_timing();
}

/* vsock when asked for and the kernel has it (Firecracker guest kernels build it in); else the
 * virtio-serial port (QEMU), so a mislabelled config still finds its host. */
static enum channel_kind pick_channel(struct agent_state *s)
{
	int fd;

	if (!s->vm.vsock)
		return CHANNEL_SERIAL;
	fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		close(fd);
		return CHANNEL_VSOCK;
	}
	fprintf(stderr, "mvmfs-agent: no vsock in this kernel (%s): using the virtio-serial port\n",
		strerror(errno));
	s->vm.vsock = false;
	return CHANNEL_SERIAL;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: mvmfs-agent                 (as PID 1 in the guest initramfs)\n"
		"       mvmfs-agent --test-mode --config VM.JSON | --initrd PER-VM-INITRD\n"
		"  --test-mode   speak the protocol on stdin/stdout, run the app here,\n"
		"                no mounts, modules or network\n"
		"  --initrd      read vm.json from the archive the host appended to an initramfs\n"
		"  --ctl-fd N    at power-off write \"reboot\" (vsock) or \"poweroff\" to fd N\n"
		"                (the Firecracker fake's guest control fd)\n"
		"  --boot-id ID  test mode: the boot id to report (32 hex digits; default "
		"random)\n");
}

/* The command line; -EINVAL for anything else (usage). Outside test mode the agent must be PID 1
 * and its boot id is the kernel's. */
static int parse_args(int argc, char **argv, struct agent_state *s, const char **config,
		      const char **initrd, const char **boot_id)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--test-mode") == 0) {
			s->test_mode = true;
		} else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			*config = argv[++i];
		} else if (strcmp(argv[i], "--initrd") == 0 && i + 1 < argc) {
			*initrd = argv[++i];
		} else if (strcmp(argv[i], "--boot-id") == 0 && i + 1 < argc) {
			*boot_id = argv[++i];
		} else if (strcmp(argv[i], "--ctl-fd") == 0 && i + 1 < argc) {
			const char *a = argv[++i];
			long v = 0;

			for (; *a >= '0' && *a <= '9' && v <= 1024; a++)
				v = v * 10 + (*a - '0');
			if (*a || v < 3 || v > 1024)
				return -EINVAL;
			s->ctl_fd = (int)v;
		} else {
			return -EINVAL;
		}
	}
	if ((!s->test_mode && (getpid() != 1 || *boot_id)) ||
	    (*boot_id && parse_boot_id(*boot_id, s->boot_id) < 0))
		return -EINVAL;
	return 0;
}

int main(int argc, char **argv)
{
	static struct agent_state st = {.ctl_fd = -1};
	struct agent_state *s = &st;
	const char *config = GUEST_CONFIG_PATH, *initrd = NULL, *boot_id = NULL;
	char errbuf[256];
	sigset_t mask;
	int r;

	if (parse_args(argc, argv, s, &config, &initrd, &boot_id) < 0) {
		usage();
		return 2;
	}
	s->boot_ms = now_ms();
	s->app.out_fd = s->app.err_fd = -1;

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGPWR);
	sigaddset(&mask, SIGIO); /* the agent port's host came or went (channel.c) */
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	s->sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

	if (!s->test_mode) {
		mounts_early();
		/* Ctrl-Alt-Del becomes SIGINT to us instead of an immediate reboot. */
		reboot(RB_DISABLE_CAD);
		fprintf(stderr, "mvmfs-agent: starting\n");
		modules_load_list(GUEST_MODULES_LIST);
	}
	if (!boot_id)
		load_boot_id(s); /* after mounts_early: /proc */
	r = initrd ? guest_vm_load_initrd(initrd, &s->vm, errbuf, sizeof(errbuf))
		   : guest_vm_load(config, &s->vm, errbuf, sizeof(errbuf));
	if (r < 0) {
		fprintf(stderr, "mvmfs-agent: %s\n", errbuf);
		if (s->test_mode)
			return 1;
		/* Without settings there is nothing to run; still answer the host on the default
		 * channel so it learns why. */
		guest_vm_parse("{}", 2, &s->vm, errbuf, sizeof(errbuf));
	}
	s->ch = channel_new(s->test_mode ? CHANNEL_STDIO : pick_channel(s), s->vm.port);
	agent_channel = s->ch;
	if (!s->ch)
		return 1;
	if (r < 0) {
		agent_log("no usable %s: %s", config, errbuf);
	} else if (s->vm.template) {
		/* Nothing of any VM yet: no disk, address, hostname or app until the identity. */
		s->waiting_identity = true;
		agent_log("template: waiting for the VM's identity");
	} else {
		boot_and_start(s);
	}
	loop(s);
	return 0;
}
