/* SPDX-License-Identifier: MIT */
/*
 * Pause and restore through the real host client (runtime/agent.c) and the real agent in
 * --test-mode: while paused nothing counts as a missed heartbeat; after a restore the client
 * drops the channel and connects again (behind it a new agent process, as behind a restored
 * VMM's reset vsock or a new QEMU), the guest says HELLO and its boot id again, the host steps
 * its wall clock (SET_CLOCK -> CLOCK_SET) and the gap never shows as a late agent. A guest that
 * comes back with another boot id is reported as rebooted.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "test.h"

#define BOOT_A "00112233445566778899aabbccddeeff"
#define BOOT_B "ffeeddccbbaa99887766554433221100"
#define HB_MS 100

struct rig {
	char dir[64], sock[128], config[128];
	pid_t acceptor; /* accepts connections; each one runs an agent with the next boot id */
	struct agent *agent;
	unsigned events[_AGENT_EVENT_MAX];
};

static void on_event(void *ud, struct agent *a, enum agent_event ev)
{
	struct rig *r = ud;

	(void)a;
	__atomic_add_fetch(&r->events[ev], 1, __ATOMIC_SEQ_CST);
}

static const char *agent_bin(void)
{
	const char *p = getenv("MVMFS_AGENT");

	if (!p || access(p, X_OK) < 0)
		test_skip("MVMFS_AGENT (the static guest agent) not built");
	return p;
}

/* boots: the boot id of each successive connection's agent (NULL-terminated). */
static void rig_start(struct rig *r, const char *const *boots)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct agent_config ac = {0};
	const char *bin = agent_bin();
	FILE *f;
	int lfd;

	snprintf(r->dir, sizeof(r->dir), "/tmp/test-agent-resume.XXXXXX");
	ASSERT_TRUE(mkdtemp(r->dir) != NULL);
	snprintf(r->sock, sizeof(r->sock), "%s/agent.sock", r->dir);
	snprintf(r->config, sizeof(r->config), "%s/vm.json", r->dir);
	f = fopen(r->config, "w");
	ASSERT_TRUE(f != NULL);
	fputs("{\"name\":\"resume\",\"agent\":{\"heartbeat_ms\":100},"
	      "\"image\":{\"entrypoint\":[\"/bin/sleep\",\"30\"]}}",
	      f);
	fclose(f);
	strcpy(sa.sun_path, r->sock);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_TRUE(lfd >= 0);
	ASSERT_OK(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)));
	ASSERT_OK(listen(lfd, 4));
	r->acceptor = fork();
	ASSERT_TRUE(r->acceptor >= 0);
	if (r->acceptor == 0) {
		pid_t prev = 0;

		/* Gone with the test, even when an assertion ends it before rig_done. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		setpgid(0, 0);
		for (int i = 0; boots[i]; i++) {
			int c = accept(lfd, NULL, NULL);
			pid_t p;

			if (c < 0)
				_exit(90);
			/* The old VMM is gone: so is its guest (and its app). */
			if (prev > 0) {
				kill(prev, SIGKILL);
				waitpid(prev, NULL, 0);
			}
			p = fork();
			if (p == 0) {
				prctl(PR_SET_PDEATHSIG, SIGKILL);
				dup2(c, 0);
				dup2(c, 1);
				execl(bin, bin, "--test-mode", "--boot-id", boots[i], "--config",
				      r->config, (char *)NULL);
				_exit(93);
			}
			close(c);
			prev = p;
		}
		pause();
		_exit(0);
	}
	close(lfd);
	ac.transport = AGENT_TRANSPORT_SERIAL;
	ac.socket_path = r->sock;
	ac.heartbeat_ms = HB_MS;
	ac.cb = on_event;
	ac.ud = r;
	ASSERT_OK(agent_start(&ac, &r->agent));
}

/* The app (sleep) runs in a session of its own: it does not go with its agent. */
static void kill_app(struct rig *r)
{
	struct agent_status s;

	agent_get_status(r->agent, &s);
	if (s.app_pid > 1)
		kill((pid_t)s.app_pid, SIGKILL);
}

static void rig_done(struct rig *r)
{
	kill_app(r);
	r->agent = agent_free(r->agent);
	if (r->acceptor > 0) {
		kill(-r->acceptor, SIGKILL);
		waitpid(r->acceptor, NULL, 0);
	}
	unlink(r->sock);
	unlink(r->config);
	rmdir(r->dir);
}

static bool p_ready(const struct agent_status *s, void *ud)
{
	(void)ud;
	return s->connected && s->have_boot_id && s->heartbeat_fresh && s->app == AGENT_APP_RUNNING;
}

static bool p_clock(const struct agent_status *s, void *ud)
{
	(void)ud;
	return s->clock_steps > 0;
}

static bool p_two_boots(const struct agent_status *s, void *ud)
{
	(void)ud;
	return s->boots_seen >= 2 && s->connected;
}

/* Events are delivered just after the status changes (outside the lock): wait for the count. */
static unsigned events_seen(struct rig *r, enum agent_event ev, unsigned want)
{
	uint64_t end = agent_now_ms() + 2000;
	unsigned n;

	while ((n = __atomic_load_n(&r->events[ev], __ATOMIC_SEQ_CST)) < want &&
	       agent_now_ms() < end)
		usleep(5000);
	return n;
}

/* Sample health every 20 ms for ms: the agent must never look late. */
static void never_late(struct rig *r, unsigned ms)
{
	uint64_t end = agent_now_ms() + ms;

	while (agent_now_ms() < end) {
		struct agent_status s;

		agent_get_status(r->agent, &s);
		ASSERT_TRUE(s.heartbeat_fresh);
		usleep(20000);
	}
}

static void test_restore_same_boot(void)
{
	static const char *const boots[] = {BOOT_A, BOOT_A, NULL};
	struct rig r = {0};
	struct agent_status s;
	char line[160];
	pid_t first;

	rig_start(&r, boots);
	ASSERT_OK(agent_wait(r.agent, p_ready, NULL, 5000));
	agent_get_status(r.agent, &s);
	ASSERT_EQ(s.boots_seen, 1);
	ASSERT_EQ(s.boot_id[0], 0x00);
	ASSERT_EQ(s.boot_id[15], 0xff);
	first = (pid_t)s.app_pid;

	/* Paused: the guest stops (SIGSTOP stands in for stopped vCPUs) for 10 periods. */
	agent_pause(r.agent);
	ASSERT_OK(kill(-r.acceptor, SIGSTOP));
	never_late(&r, 10 * HB_MS);
	agent_get_status(r.agent, &s);
	ASSERT_TRUE(s.paused);
	agent_format_health_agent(&s, line, sizeof(line));
	ASSERT_TRUE(strncmp(line, "paused ", 7) == 0);
	ASSERT_OK(kill(-r.acceptor, SIGCONT));
	kill(first, SIGKILL);

	/* Restored: a new agent process behind the same socket, the same boot. */
	agent_resume(r.agent, true);
	never_late(&r, 6 * HB_MS);
	ASSERT_OK(agent_wait(r.agent, p_clock, NULL, 5000));
	ASSERT_OK(agent_wait(r.agent, p_ready, NULL, 5000));
	agent_get_status(r.agent, &s);
	ASSERT_FALSE(s.paused);
	ASSERT_EQ(s.boots_seen, 1);
	ASSERT_EQ(s.clock_steps, 1);
	ASSERT_EQ(s.last_clock_error, 0);
	/* Test mode reports the step it would apply to the shared clock: about zero. */
	ASSERT_TRUE(s.last_clock_step_ns > -1000000000ll && s.last_clock_step_ns < 1000000000ll);
	ASSERT_TRUE((pid_t)s.app_pid != first); /* it really was another agent */
	ASSERT_EQ(events_seen(&r, AGENT_EVENT_CLOCK, 1), 1);
	ASSERT_EQ(__atomic_load_n(&r.events[AGENT_EVENT_REBOOTED], __ATOMIC_SEQ_CST), 0);
	rig_done(&r);
}

/* A plain resume (no restore) keeps the connection and steps no clock. */
static void test_resume_keeps_channel(void)
{
	static const char *const boots[] = {BOOT_A, NULL};
	struct rig r = {0};
	struct agent_status s;

	rig_start(&r, boots);
	ASSERT_OK(agent_wait(r.agent, p_ready, NULL, 5000));
	agent_pause(r.agent);
	ASSERT_OK(kill(-r.acceptor, SIGSTOP));
	never_late(&r, 5 * HB_MS);
	ASSERT_OK(kill(-r.acceptor, SIGCONT));
	agent_resume(r.agent, false);
	never_late(&r, 5 * HB_MS);
	agent_get_status(r.agent, &s);
	ASSERT_TRUE(s.connected);
	ASSERT_EQ(s.clock_steps, 0);
	ASSERT_EQ(__atomic_load_n(&r.events[AGENT_EVENT_DISCONNECTED], __ATOMIC_SEQ_CST), 0);
	rig_done(&r);
}

static void test_restore_other_boot_is_a_reboot(void)
{
	static const char *const boots[] = {BOOT_A, BOOT_B, NULL};
	struct rig r = {0};
	struct agent_status s;

	rig_start(&r, boots);
	ASSERT_OK(agent_wait(r.agent, p_ready, NULL, 5000));
	kill_app(&r);
	agent_pause(r.agent);
	agent_resume(r.agent, true);
	ASSERT_OK(agent_wait(r.agent, p_two_boots, NULL, 5000));
	agent_get_status(r.agent, &s);
	ASSERT_EQ(s.boot_id[0], 0xff);
	ASSERT_EQ(events_seen(&r, AGENT_EVENT_REBOOTED, 1), 1);
	rig_done(&r);
}

TEST_MAIN(TEST(test_restore_same_boot), TEST(test_resume_keeps_channel),
	  TEST(test_restore_other_boot_is_a_reboot))
