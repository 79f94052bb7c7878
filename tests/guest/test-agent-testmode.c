/* SPDX-License-Identifier: MIT */
/*
 * The real agent binary in --test-mode, driven through the real host client (runtime/agent.c):
 * a listener stands in for the VMM's channel socket, accepts the client's connection (doing
 * Firecracker's CONNECT/OK handshake for the vsock transport) and runs the agent with the
 * connection as its stdin/stdout. Covers hello, heartbeats, app start with env/workdir/user,
 * output, exit codes, stop with SIGTERM then SIGKILL after the grace period, a hung agent.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "guest-config.h"
#include "guest-test.h"
#include "test.h"

struct rig {
	char dir[64];
	char sock[128];
	char config[128];
	pid_t server; /* becomes the agent after accept */
	struct agent *agent;
};

/* The identity the host client sends a template's guest (NULL: none), for the next rig_start. */
static const char *rig_identity;

static const char *agent_bin(void)
{
	const char *p = getenv("MVMFS_AGENT");

	if (!p || access(p, X_OK) < 0)
		test_skip("MVMFS_AGENT (the static guest agent) not built");
	return p;
}

static void write_config(struct rig *r, const char *json)
{
	FILE *f = fopen(r->config, "w");

	ASSERT_TRUE(f != NULL);
	fputs(json, f);
	fclose(f);
}

/* Listen, then fork the acceptor that execs the agent on the accepted connection. */
static void rig_start(struct rig *r, bool vsock, const char *config_json, unsigned hb_ms)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct agent_config ac = {0};
	const char *bin = agent_bin();
	int lfd;

	snprintf(r->dir, sizeof(r->dir), "/tmp/test-agent.XXXXXX");
	ASSERT_TRUE(mkdtemp(r->dir) != NULL);
	ASSERT_OK(chmod(r->dir, 0755));
	snprintf(r->sock, sizeof(r->sock), "%s/agent.sock", r->dir);
	snprintf(r->config, sizeof(r->config), "%s/vm.json", r->dir);
	if (config_json[0] == '@') /* "@PATH": a per-VM initramfs, read with --initrd */
		snprintf(r->config, sizeof(r->config), "%s", config_json + 1);
	else
		write_config(r, config_json);
	strcpy(sa.sun_path, r->sock);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_TRUE(lfd >= 0);
	ASSERT_OK(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)));
	ASSERT_OK(listen(lfd, 1));
	r->server = fork();
	ASSERT_TRUE(r->server >= 0);
	if (r->server == 0) {
		int c = accept(lfd, NULL, NULL);
		char line[64];
		size_t n = 0;

		if (c < 0)
			_exit(90);
		if (vsock) {
			while (n < sizeof(line) - 1 && read(c, line + n, 1) == 1 && line[n] != '\n')
				n++;
			line[n] = '\0';
			if (strcmp(line, "CONNECT 1024") != 0)
				_exit(91);
			if (write(c, "OK 1073741824\n", 14) != 14)
				_exit(92);
		}
		dup2(c, 0);
		dup2(c, 1);
		execl(bin, bin, "--test-mode", config_json[0] == '@' ? "--initrd" : "--config",
		      r->config, (char *)NULL);
		_exit(93);
	}
	close(lfd);
	ac.transport = vsock ? AGENT_TRANSPORT_VSOCK : AGENT_TRANSPORT_SERIAL;
	ac.socket_path = r->sock;
	ac.vsock_port = 1024;
	ac.heartbeat_ms = hb_ms;
	ac.identity = rig_identity;
	ac.identity_len = rig_identity ? strlen(rig_identity) : 0;
	ASSERT_OK(agent_start(&ac, &r->agent));
}

static int rig_wait_exit(struct rig *r, unsigned timeout_ms)
{
	uint64_t end = agent_now_ms() + timeout_ms;
	int status;

	while (agent_now_ms() < end) {
		pid_t p = waitpid(r->server, &status, WNOHANG);

		if (p == r->server)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		usleep(10000);
	}
	return -ETIMEDOUT;
}

static void rig_done(struct rig *r)
{
	char path[200];

	r->agent = agent_free(r->agent);
	if (r->server > 0 && kill(r->server, 0) == 0) {
		kill(r->server, SIGKILL);
		waitpid(r->server, NULL, 0);
	}
	snprintf(path, sizeof(path), "%s/agent.sock", r->dir);
	unlink(path);
	unlink(r->config);
	rmdir(r->dir);
}

static bool p_running(const struct agent_status *s, void *ud)
{
	(void)ud;
	return s->connected && s->app == AGENT_APP_RUNNING && s->heartbeat_fresh;
}

static bool p_exited(const struct agent_status *s, void *ud)
{
	(void)ud;
	return s->app == AGENT_APP_EXITED || s->app == AGENT_APP_START_FAILED;
}

static bool p_shutdown(const struct agent_status *s, void *ud)
{
	(void)ud;
	return s->shutdown;
}

static bool p_stale(const struct agent_status *s, void *ud)
{
	(void)ud;
	return s->ever_connected && !s->heartbeat_fresh;
}

static bool p_fresh(const struct agent_status *s, void *ud)
{
	(void)ud;
	return s->heartbeat_fresh;
}

static void test_serial_app_env_user_stop(void)
{
	struct rig r = {0};
	struct agent_status s;
	char json[2048], want[256], buf[256];
	bool root = geteuid() == 0;

	snprintf(json, sizeof(json),
		 "{\"name\":\"t1\",\"image\":{\"entrypoint\":[\"/bin/sh\",\"-c\"],"
		 "\"cmd\":[\"trap 'echo got-term; exit 42' TERM; "
		 "echo \\\"greet=$GREETING pwd=$(pwd) uid=$(id -u) gid=$(id -g) home=$HOME\\\"; "
		 "echo to-stderr >&2; while :; do sleep 0.05; done\"],"
		 "\"env\":[\"GREETING=hello-env\"],\"workdir\":\"/tmp\",\"user\":\"%s\"},"
		 "\"agent\":{\"heartbeat_ms\":200}}",
		 root ? "65534:65534" : "");
	rig_start(&r, false, json, 200);
	ASSERT_OK(agent_wait(r.agent, p_running, NULL, 5000));
	agent_get_status(r.agent, &s);
	ASSERT_EQ(s.version, AGENT_PROTO_VERSION);
	ASSERT_STREQ(s.agent_name, "mvmfs-agent 0.1.0");
	ASSERT_TRUE(s.app_pid > 0);
	ASSERT_FALSE(s.net_configured); /* test mode leaves the network alone */
	if (root)
		snprintf(want, sizeof(want), "greet=hello-env pwd=/tmp uid=65534 gid=65534");
	else
		snprintf(want, sizeof(want), "greet=hello-env pwd=/tmp uid=%u", (unsigned)getuid());
	ASSERT_TRUE(log_has_poll(r.agent, want, 3000, 20));
	ASSERT_TRUE(log_has_poll(r.agent, "[stderr] to-stderr\n", 3000, 20));
	agent_format_health_agent(&s, buf, sizeof(buf));
	ASSERT_TRUE(strncmp(buf, "ok ", 3) == 0);
	agent_format_health_app(&s, buf, sizeof(buf));
	ASSERT_TRUE(strncmp(buf, "running pid ", 12) == 0);

	ASSERT_OK(agent_stop_request(r.agent, 5000));
	ASSERT_OK(agent_wait(r.agent, p_exited, NULL, 5000));
	ASSERT_OK(agent_wait(r.agent, p_shutdown, NULL, 5000));
	agent_get_status(r.agent, &s);
	ASSERT_EQ(s.app, AGENT_APP_EXITED);
	ASSERT_EQ(s.exit_code, 42);
	ASSERT_EQ(s.exit_signal, 0);
	ASSERT_TRUE(log_has_poll(r.agent, "[stdout] got-term\n", 2000, 20));
	agent_format_health_app(&s, buf, sizeof(buf));
	ASSERT_STREQ(buf, "exited code 42");
	ASSERT_EQ(rig_wait_exit(&r, 3000), 0); /* test mode "powers off" by exiting 0 */
	rig_done(&r);
}

static void test_vsock_sigkill_after_grace(void)
{
	struct rig r = {0};
	struct agent_status s;
	uint64_t t0;

	rig_start(&r, true,
		  "{\"name\":\"t2\",\"agent\":{\"transport\":\"vsock\",\"port\":1024,"
		  "\"heartbeat_ms\":200},\"image\":{\"entrypoint\":[\"/bin/sh\",\"-c\","
		  "\"trap 'echo ignoring-term' TERM; echo ready; while :; do sleep 0.05; done\"]}}",
		  200);
	ASSERT_OK(agent_wait(r.agent, p_running, NULL, 5000));
	ASSERT_TRUE(log_has_poll(r.agent, "ready", 3000, 20));
	t0 = agent_now_ms();
	ASSERT_OK(agent_stop_request(r.agent, 400));
	ASSERT_OK(agent_wait(r.agent, p_exited, NULL, 5000));
	agent_get_status(r.agent, &s);
	ASSERT_TRUE(agent_now_ms() - t0 >= 350);
	ASSERT_EQ(s.exit_signal, SIGKILL);
	ASSERT_EQ(s.exit_code, -1);
	ASSERT_TRUE(log_has_poll(r.agent, "ignoring-term", 2000, 20));
	ASSERT_TRUE(log_has_poll(r.agent, "[agent] grace period over: SIGKILL", 2000, 20));
	ASSERT_EQ(rig_wait_exit(&r, 3000), 0);
	rig_done(&r);
}

static void test_app_exit_code_and_exec_failure(void)
{
	struct rig r = {0};
	struct agent_status s;
	char buf[128];

	rig_start(&r, false,
		  "{\"name\":\"t3\",\"image\":{\"entrypoint\":[\"/bin/sh\",\"-c\",\"echo bye; exit "
		  "3\"]}}",
		  1000);
	ASSERT_OK(agent_wait(r.agent, p_exited, NULL, 5000));
	agent_get_status(r.agent, &s);
	ASSERT_EQ(s.app, AGENT_APP_EXITED);
	ASSERT_EQ(s.exit_code, 3);
	ASSERT_TRUE(log_has_poll(r.agent, "[stdout] bye\n", 2000, 20));
	agent_format_health_app(&s, buf, sizeof(buf));
	ASSERT_STREQ(buf, "exited code 3");
	rig_done(&r);

	memset(&r, 0, sizeof(r));
	rig_start(&r, false,
		  "{\"name\":\"t4\",\"image\":{\"entrypoint\":[\"/nonexistent/"
		  "app\"],\"cmd\":[\"x\"]}}",
		  1000);
	ASSERT_OK(agent_wait(r.agent, p_exited, NULL, 5000));
	agent_get_status(r.agent, &s);
	ASSERT_EQ(s.app, AGENT_APP_START_FAILED);
	ASSERT_EQ(s.exit_code, 127);
	agent_format_health_app(&s, buf, sizeof(buf));
	ASSERT_TRUE(strncmp(buf, "failed ", 7) == 0);
	rig_done(&r);
}

static void test_unknown_user_fails_start(void)
{
	struct rig r = {0};
	struct agent_status s;

	rig_start(&r, false,
		  "{\"name\":\"t5\",\"image\":{\"entrypoint\":[\"/bin/true\"],"
		  "\"user\":\"no-such-user-here\"}}",
		  1000);
	ASSERT_OK(agent_wait(r.agent, p_exited, NULL, 5000));
	agent_get_status(r.agent, &s);
	ASSERT_EQ(s.app, AGENT_APP_START_FAILED);
	ASSERT_TRUE(log_has_poll(r.agent, "no-such-user-here", 2000, 20));
	rig_done(&r);
}

static void test_hung_agent_goes_stale(void)
{
	struct rig r = {0};
	struct agent_status s;
	char buf[128];

	rig_start(&r, false,
		  "{\"name\":\"t6\",\"agent\":{\"heartbeat_ms\":100},"
		  "\"image\":{\"entrypoint\":[\"/bin/sleep\",\"30\"]}}",
		  100);
	ASSERT_OK(agent_wait(r.agent, p_running, NULL, 5000));
	agent_get_status(r.agent, &s);
	ASSERT_OK(kill(r.server, SIGSTOP));
	ASSERT_OK(agent_wait(r.agent, p_stale, NULL, 2000));
	agent_get_status(r.agent, &s);
	ASSERT_TRUE(s.heartbeat_age_ms > 300);
	agent_format_health_agent(&s, buf, sizeof(buf));
	ASSERT_TRUE(strncmp(buf, "late no heartbeat for ", 22) == 0);
	ASSERT_OK(kill(r.server, SIGCONT));
	ASSERT_OK(agent_wait(r.agent, p_fresh, NULL, 2000));
	kill((pid_t)s.app_pid, SIGKILL);
	rig_done(&r);
}

static bool p_three_beats(const struct agent_status *s, void *ud)
{
	(void)ud;
	return s->heartbeat_seq >= 3;
}

/* The host's period (sent in HELLO) wins over vm.json's: a config asking for a heartbeat every
 * 10 minutes still beats every 100 ms when the host says so. */
static void test_host_heartbeat_period_adopted(void)
{
	struct rig r = {0};
	uint64_t t0;

	rig_start(&r, false,
		  "{\"name\":\"t9\",\"agent\":{\"heartbeat_ms\":600000},"
		  "\"image\":{\"entrypoint\":[\"/bin/sleep\",\"30\"]}}",
		  100);
	ASSERT_OK(agent_wait(r.agent, p_running, NULL, 5000));
	t0 = agent_now_ms();
	ASSERT_OK(agent_wait(r.agent, p_three_beats, NULL, 3000));
	printf("# three heartbeats %llu ms after the app started\n",
	       (unsigned long long)(agent_now_ms() - t0));
	ASSERT_OK(agent_wait(r.agent, p_fresh, NULL, 1000));
	rig_done(&r);
}

/* Raw protocol: garbage before HELLO is skipped and the agent still answers. */
static void test_raw_resync(void)
{
	char dir[] = "/tmp/test-agent-raw.XXXXXX", cfg[128];
	const char *bin = agent_bin();
	struct agent_msg m = {.type = AGENT_MSG_HELLO}, got;
	uint8_t frame[AGENT_FRAME_MAX], buf[4096];
	struct agent_decoder d;
	int sv[2], n, hello = 0;
	pid_t pid;
	FILE *f;

	ASSERT_TRUE(mkdtemp(dir) != NULL);
	snprintf(cfg, sizeof(cfg), "%s/vm.json", dir);
	f = fopen(cfg, "w");
	fputs("{\"image\":{\"entrypoint\":[\"/bin/sleep\",\"5\"]}}", f);
	fclose(f);
	ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	pid = fork();
	if (pid == 0) {
		dup2(sv[1], 0);
		dup2(sv[1], 1);
		execl(bin, bin, "--test-mode", "--config", cfg, (char *)NULL);
		_exit(93);
	}
	close(sv[1]);
	ASSERT_EQ(write(sv[0], "\x00\xffmvA1junkmvA", 13), 13);
	m.hello.version = AGENT_PROTO_VERSION;
	strcpy(m.hello.name, "raw-test");
	n = agent_msg_encode(&m, frame, sizeof(frame));
	frame[n - 1] ^= 1; /* first copy corrupt */
	ASSERT_EQ(write(sv[0], frame, (size_t)n), n);
	frame[n - 1] ^= 1;
	ASSERT_EQ(write(sv[0], frame, (size_t)n), n);
	agent_decoder_init(&d);
	for (int i = 0; i < 100 && !hello; i++) {
		struct timeval tv = {.tv_usec = 100000};
		ssize_t k;

		setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		k = read(sv[0], buf, sizeof(buf));
		if (k <= 0)
			continue;
		agent_decoder_feed(&d, buf, (size_t)k);
		while (agent_decoder_next(&d, &got) > 0)
			if (got.type == AGENT_MSG_HELLO)
				hello++;
	}
	ASSERT_EQ(hello, 1); /* exactly one answer: the corrupt HELLO was dropped */
	kill(pid, SIGTERM);  /* test mode: SIGTERM is a stop with the default grace */
	ASSERT_EQ(waitpid(pid, NULL, 0), pid);
	close(sv[0]);
	unlink(cfg);
	rmdir(dir);
}

/* The Firecracker fake runs the agent with --initrd on the per-VM initramfs the runtime wrote. */
static void test_config_from_initrd(void)
{
	char dir[] = "/tmp/test-agent-initrd.XXXXXX", base[128], initrd[160];
	struct guest_config gc = {
		.name = "t7",
		.image_config_json = "{\"entrypoint\":[\"/bin/sh\",\"-c\"],"
				     "\"cmd\":[\"echo from-initrd $MARK; exit 7\"],"
				     "\"env\":[\"MARK=m1\"]}",
		.transport = AGENT_TRANSPORT_VSOCK,
	};
	struct rig r = {0};
	struct agent_status s;
	struct err err = {};
	FILE *f;

	ASSERT_TRUE(mkdtemp(dir) != NULL);
	snprintf(base, sizeof(base), "%s/base", dir);
	snprintf(initrd, sizeof(initrd), "@%s/initrd", dir);
	f = fopen(base, "w");
	fputs("not-really-gzip-but-any-bytes-070701", f);
	fclose(f);
	ASSERT_OK(guest_config_write_initrd(&gc, base, initrd + 1, &err));
	rig_start(&r, true, initrd, 1000);
	ASSERT_OK(agent_wait(r.agent, p_exited, NULL, 5000));
	agent_get_status(r.agent, &s);
	ASSERT_EQ(s.exit_code, 7);
	ASSERT_TRUE(log_has_poll(r.agent, "[stdout] from-initrd m1", 2000, 20));
	r.agent = agent_free(r.agent);
	kill(r.server, SIGKILL);
	waitpid(r.server, NULL, 0);
	unlink(initrd + 1);
	unlink(base);
	snprintf(base, sizeof(base), "%s/agent.sock", r.dir);
	unlink(base);
	rmdir(r.dir);
	rmdir(dir);
}

/* A host that does not read: the app is never blocked, output is dropped and counted, and the
 * control messages still arrive once the host reads again. */
static void test_slow_host_never_blocks_app(void)
{
	char dir[] = "/tmp/test-agent-slow.XXXXXX", cfg[128];
	const char *bin = agent_bin();
	struct agent_msg m = {.type = AGENT_MSG_HELLO}, got;
	uint8_t frame[AGENT_FRAME_MAX], buf[65536];
	struct agent_decoder d;
	uint64_t out_bytes = 0, dropped = 0, t_end;
	int sv[2], n, exited = -1;
	pid_t pid;
	FILE *f;

	ASSERT_TRUE(mkdtemp(dir) != NULL);
	snprintf(cfg, sizeof(cfg), "%s/vm.json", dir);
	f = fopen(cfg, "w");
	fputs("{\"agent\":{\"heartbeat_ms\":100},\"image\":{\"entrypoint\":[\"/bin/sh\",\"-c\","
	      "\"head -c 3000000 /dev/zero | tr '\\\\000' x; echo; exit 0\"]}}",
	      f);
	fclose(f);
	ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	pid = fork();
	if (pid == 0) {
		dup2(sv[1], 0);
		dup2(sv[1], 1);
		execl(bin, bin, "--test-mode", "--config", cfg, (char *)NULL);
		_exit(93);
	}
	close(sv[1]);
	usleep(1500 * 1000); /* not reading: the app must finish anyway */
	m.hello.version = AGENT_PROTO_VERSION;
	n = agent_msg_encode(&m, frame, sizeof(frame));
	ASSERT_EQ(write(sv[0], frame, (size_t)n), n);
	agent_decoder_init(&d);
	t_end = agent_now_ms() + 5000;
	while (agent_now_ms() < t_end && (exited < 0 || dropped == 0)) {
		struct timeval tv = {.tv_usec = 100000};
		ssize_t k;

		setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		k = read(sv[0], buf, sizeof(buf));
		if (k <= 0)
			continue;
		for (size_t off = 0; off < (size_t)k;) {
			off += agent_decoder_feed(&d, buf + off, (size_t)k - off);
			while (agent_decoder_next(&d, &got) > 0) {
				if (got.type == AGENT_MSG_OUTPUT &&
				    got.output.stream == AGENT_STREAM_STDOUT)
					out_bytes += got.output.len;
				if (got.type == AGENT_MSG_APP_EXITED)
					exited = got.exited.code;
				if (got.type == AGENT_MSG_HEARTBEAT)
					dropped = got.heartbeat.dropped_bytes;
			}
		}
	}
	printf("# delivered %llu bytes, dropped %llu\n", (unsigned long long)out_bytes,
	       (unsigned long long)dropped);
	ASSERT_EQ(exited, 0);
	ASSERT_TRUE(dropped > 0);
	ASSERT_TRUE(out_bytes + dropped <= 3000001);
	ASSERT_TRUE(out_bytes > 0);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(sv[0]);
	unlink(cfg);
	rmdir(dir);
}

static bool p_identity_waiting(const struct agent_status *s, void *ud)
{
	(void)ud;
	return s->connected && s->identity_waiting && s->heartbeat_fresh;
}

static bool p_identity_answered(const struct agent_status *s, void *ud)
{
	(void)ud;
	return s->identity_error >= 0;
}

#define TEMPLATE_JSON "{\"template\":true,\"agent\":{\"heartbeat_ms\":200}}"

/* A template's agent runs nothing until its identity: it says IDENTITY_WAIT after HELLO, keeps
 * heartbeating, starts no app; a stop powers it off. */
static void test_template_waits(void)
{
	struct rig r = {0};
	struct agent_status s;

	rig_identity = NULL;
	rig_start(&r, false, TEMPLATE_JSON, 200);
	ASSERT_OK(agent_wait(r.agent, p_identity_waiting, NULL, 5000));
	usleep(600 * 1000);
	agent_get_status(r.agent, &s);
	ASSERT_TRUE(s.identity_waiting);
	ASSERT_EQ(s.identity_sent, 0);
	ASSERT_EQ(s.app, AGENT_APP_UNKNOWN);
	ASSERT_EQ(s.app_starts, 0);
	ASSERT_TRUE(s.heartbeat_fresh);
	ASSERT_TRUE(log_has_poll(r.agent, "template: waiting for the VM's identity", 2000, 20));
	ASSERT_OK(agent_stop_request(r.agent, 1000));
	ASSERT_OK(agent_wait(r.agent, p_shutdown, NULL, 5000));
	ASSERT_EQ(rig_wait_exit(&r, 3000), 0);
	rig_done(&r);
}

/* The identity (over several IDENTITY pieces: a 20 KB variable) is taken and the boot goes on
 * as a cold boot's: the app runs with the identity's Entrypoint, Env and WorkingDir. */
static void test_template_identity_taken(void)
{
	static char ident[24 * 1024];
	struct rig r = {0};
	struct agent_status s;
	char big[20001];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	snprintf(ident, sizeof(ident),
		 "{\"name\":\"clone-1\",\"image\":{\"entrypoint\":[\"/bin/sh\",\"-c\"],"
		 "\"cmd\":[\"echo \\\"who=$WHO pwd=$(pwd) big=${#BIG}\\\"; "
		 "while :; do sleep 0.05; done\"],"
		 "\"env\":[\"WHO=clone-1\",\"BIG=%s\"],\"workdir\":\"/tmp\"},"
		 "\"agent\":{\"heartbeat_ms\":200}}",
		 big);
	ASSERT_TRUE(strlen(ident) > 4 * AGENT_IDENTITY_CHUNK);
	rig_identity = ident;
	rig_start(&r, false, TEMPLATE_JSON, 200);
	rig_identity = NULL;
	ASSERT_OK(agent_wait(r.agent, p_running, NULL, 5000));
	agent_get_status(r.agent, &s);
	ASSERT_EQ(s.identity_error, 0);
	ASSERT_FALSE(s.identity_waiting);
	ASSERT_EQ(s.identity_sent, 1);
	ASSERT_TRUE(log_has_poll(r.agent, "template: identity of 'clone-1' taken", 3000, 20));
	ASSERT_TRUE(log_has_poll(r.agent, "who=clone-1 pwd=/tmp big=20000", 3000, 20));
	ASSERT_OK(agent_stop_request(r.agent, 1000));
	ASSERT_OK(agent_wait(r.agent, p_shutdown, NULL, 5000));
	ASSERT_EQ(rig_wait_exit(&r, 3000), 0);
	rig_done(&r);
}

/* A bad identity is refused with the reason: another template's, another transport, not JSON.
 * The guest stays a waiting template and runs nothing. */
static void test_template_identity_refused(void)
{
	static const char *const bad[] = {
		"{\"template\":true}",
		"{\"name\":\"x\",\"agent\":{\"transport\":\"vsock\"}}",
		"{\"name\":",
		"{\"name\":\"x\",\"volumes\":[{\"uuid\":\"00\",\"path\":\"/d\",\"fresh\":true}]}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rig r = {0};
		struct agent_status s;

		rig_identity = bad[i];
		rig_start(&r, false, TEMPLATE_JSON, 200);
		rig_identity = NULL;
		ASSERT_OK(agent_wait(r.agent, p_identity_answered, NULL, 5000));
		usleep(300 * 1000);
		agent_get_status(r.agent, &s);
		ASSERT_EQ(s.identity_error, EINVAL);
		ASSERT_TRUE(s.identity_reason[0] != '\0');
		ASSERT_TRUE(s.identity_waiting);
		ASSERT_EQ(s.app, AGENT_APP_UNKNOWN);
		ASSERT_TRUE(log_has_poll(r.agent, "template: identity refused: ", 2000, 20));
		rig_done(&r);
	}
}

TEST_MAIN(TEST(test_host_heartbeat_period_adopted), TEST(test_slow_host_never_blocks_app),
	  TEST(test_config_from_initrd), TEST(test_serial_app_env_user_stop),
	  TEST(test_vsock_sigkill_after_grace), TEST(test_app_exit_code_and_exec_failure),
	  TEST(test_unknown_user_fails_start), TEST(test_hung_agent_goes_stale),
	  TEST(test_raw_resync), TEST(test_template_waits), TEST(test_template_identity_taken),
	  TEST(test_template_identity_refused))
