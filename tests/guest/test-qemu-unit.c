/* SPDX-License-Identifier: MIT */
/* The pure parts of the QEMU backend: cgroup limits per hierarchy, QMP reply parsing; and the
 * QMP client's deadlines against a QEMU that hangs (accepts and never answers, answers the
 * handshake and then nothing, never accepts). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qemu.h"
#include "qmp.h"
#include "test.h"

static void test_cgroup_v2(void)
{
	struct qemu_cg_setting s[8];
	int n = qemu_cgroup_settings(2, false, 1, 2, 2048, s, 8);

	ASSERT_EQ(n, 3);
	ASSERT_STREQ(s[0].file, "cpu.max");
	ASSERT_STREQ(s[0].value, "200000 100000");
	ASSERT_STREQ(s[1].file, "memory.max");
	ASSERT_STREQ(s[1].value, "2684354560"); /* (2048 + 512) MiB */
	ASSERT_STREQ(s[2].file, "memory.swap.max");
	ASSERT_STREQ(s[2].value, "0");
	for (int i = 0; i < n; i++)
		ASSERT_EQ(s[i].dir, 0);
}

static void test_cgroup_v1_split_dirs_memsw(void)
{
	struct qemu_cg_setting s[8];
	int n = qemu_cgroup_settings(1, true, 2, 1, 256, s, 8);

	ASSERT_EQ(n, 4);
	ASSERT_STREQ(s[0].file, "cpu.cfs_period_us");
	ASSERT_STREQ(s[1].file, "cpu.cfs_quota_us");
	ASSERT_STREQ(s[1].value, "100000");
	ASSERT_EQ(s[1].dir, 0);
	/* the memory limit before memsw, both in the memory hierarchy's dir */
	ASSERT_STREQ(s[2].file, "memory.limit_in_bytes");
	ASSERT_STREQ(s[3].file, "memory.memsw.limit_in_bytes");
	ASSERT_STREQ(s[2].value, s[3].value);
	ASSERT_STREQ(s[2].value, "805306368");
	ASSERT_EQ(s[2].dir, 1);
	ASSERT_EQ(s[3].dir, 1);
}

static void test_cgroup_v1_no_memsw_and_errors(void)
{
	struct qemu_cg_setting s[8];
	int n = qemu_cgroup_settings(1, false, 1, 2, 2048, s, 8);

	ASSERT_EQ(n, 4);
	ASSERT_STREQ(s[3].file, "memory.swappiness");
	ASSERT_STREQ(s[3].value, "0");
	ASSERT_EQ(s[3].dir, 0);
	ASSERT_ERRNO(qemu_cgroup_settings(3, false, 1, 2, 2048, s, 8), EINVAL);
	ASSERT_ERRNO(qemu_cgroup_settings(1, false, 1, 2, 2048, s, 2), E2BIG);
}

static void test_qmp_lines(void)
{
	static const char greeting[] = "{\"QMP\": {\"version\": {}, \"capabilities\": [\"oob\"]}}";
	static const char ret[] = "{\"return\": {\"status\": \"running\", \"running\": true}}";
	static const char error[] =
		"{\"error\": {\"class\": \"GenericError\", \"desc\": \"no such thing\"}}";
	static const char event[] = "{\"timestamp\": {}, \"event\": \"SHUTDOWN\"}";
	json_t *v = NULL;
	char desc[64];

	ASSERT_EQ(qmp_parse_line(greeting, strlen(greeting), &v, desc, sizeof(desc)), 1);
	ASSERT_TRUE(v == NULL);
	ASSERT_EQ(qmp_parse_line(ret, strlen(ret), &v, desc, sizeof(desc)), 2);
	ASSERT_TRUE(json_is_object(v));
	json_decref(v);
	ASSERT_EQ(qmp_parse_line(error, strlen(error), &v, desc, sizeof(desc)), 3);
	ASSERT_STREQ(desc, "no such thing");
	ASSERT_EQ(qmp_parse_line(event, strlen(event), &v, desc, sizeof(desc)), 4);
	ASSERT_ERRNO(qmp_parse_line("[1]", 3, &v, desc, sizeof(desc)), EINVAL);
	ASSERT_ERRNO(qmp_parse_line("{\"x\":1}", 7, &v, desc, sizeof(desc)), EINVAL);
	ASSERT_ERRNO(qmp_parse_line("{bad", 4, &v, desc, sizeof(desc)), EINVAL);
}

static void test_qmp_status(void)
{
	static const struct {
		const char *json;
		int want;
	} cases[] = {
		{"{\"status\":\"running\",\"running\":true}", VMM_RUN_RUNNING},
		{"{\"status\":\"paused\"}", VMM_RUN_PAUSED},
		{"{\"status\":\"prelaunch\"}", VMM_RUN_NOT_STARTED},
		{"{\"status\":\"shutdown\"}", VMM_RUN_GONE},
		{"{\"status\":\"guest-panicked\"}", VMM_RUN_GONE},
		{"{\"status\":\"colo\"}", VMM_RUN_UNKNOWN},
		{"{\"status\":7}", -EINVAL},
		{"[]", -EINVAL},
	};
	enum vmm_run_state st;

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		int r = qmp_parse_status(cases[i].json, strlen(cases[i].json), &st);

		if (cases[i].want < 0)
			ASSERT_EQ(r, cases[i].want);
		else {
			ASSERT_OK(r);
			ASSERT_EQ(st, cases[i].want);
		}
	}
}

enum hang_mode {
	HANG_SILENT,	 /* accepts, never writes */
	HANG_AFTER_CAPS, /* greeting and qmp_capabilities answered, then silence */
	HANG_NO_ACCEPT,	 /* listens with a full backlog, never accepts */
};

struct hang {
	char dir[64], path[100];
	int lfd;
	pid_t pid;
	int fillers[64];
	int nfill;
};

static void hang_start(struct hang *h, enum hang_mode mode)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	snprintf(h->dir, sizeof(h->dir), "/tmp/qmp-hang.XXXXXX");
	ASSERT_TRUE(mkdtemp(h->dir) != NULL);
	snprintf(h->path, sizeof(h->path), "%s/qmp.sock", h->dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", h->path);
	h->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_TRUE(h->lfd >= 0);
	ASSERT_OK(bind(h->lfd, (struct sockaddr *)&sa, sizeof(sa)));
	ASSERT_OK(listen(h->lfd, 0));
	h->pid = -1;
	h->nfill = 0;
	if (mode == HANG_NO_ACCEPT) {
		/* Fill the backlog: later connects would block (or fail with EAGAIN). */
		while (h->nfill < (int)ELEMENTSOF(h->fillers)) {
			int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

			ASSERT_TRUE(fd >= 0);
			h->fillers[h->nfill++] = fd;
			if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
				ASSERT_EQ(errno, EAGAIN);
				break;
			}
		}
		return;
	}
	h->pid = fork();
	ASSERT_TRUE(h->pid >= 0);
	if (h->pid == 0) {
		int c = accept(h->lfd, NULL, NULL);
		char buf[512];

		if (c >= 0 && mode == HANG_AFTER_CAPS) {
			static const char greet[] = "{\"QMP\": {\"version\": {}, "
						    "\"capabilities\": []}}\r\n";
			static const char ok[] = "{\"return\": {}}\r\n";

			(void)!write(c, greet, strlen(greet));
			(void)!read(c, buf, sizeof(buf));
			(void)!write(c, ok, strlen(ok));
		}
		pause();
		_exit(0);
	}
}

static void hang_stop(struct hang *h)
{
	if (h->pid > 0) {
		kill(h->pid, SIGKILL);
		waitpid(h->pid, NULL, 0);
	}
	for (int i = 0; i < h->nfill; i++)
		close(h->fillers[i]);
	close(h->lfd);
	unlink(h->path);
	rmdir(h->dir);
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Each hang ends the call with -ETIMEDOUT at its deadline (300 ms; 3 s of slack for a loaded
 * machine), never blocking for good. */
static void test_qmp_deadlines(void)
{
	static const enum hang_mode modes[] = {HANG_SILENT, HANG_NO_ACCEPT, HANG_AFTER_CAPS};

	for (size_t i = 0; i < ELEMENTSOF(modes); i++) {
		struct hang h;
		struct qmp *q = NULL;
		struct err err = {};
		long t0, ms;
		int r;

		hang_start(&h, modes[i]);
		t0 = now_ms();
		r = qmp_connect(h.path, 300, &q, &err);
		if (modes[i] == HANG_AFTER_CAPS) {
			ASSERT_OK(r);
			r = qmp_execute(q, "query-status", NULL, NULL, 300, &err);
			qmp_close(q);
		}
		ms = now_ms() - t0;
		printf("# mode %zu: %s after %ld ms\n", i, err.msg, ms);
		ASSERT_ERRNO(r, ETIMEDOUT);
		if (ms < 250 || ms > 3300)
			TEST_FAIL("mode %zu: the 300 ms deadline ended after %ld ms", i, ms);
		hang_stop(&h);
	}
}

TEST_MAIN(TEST(test_cgroup_v2), TEST(test_cgroup_v1_split_dirs_memsw),
	  TEST(test_cgroup_v1_no_memsw_and_errors), TEST(test_qmp_lines), TEST(test_qmp_status),
	  TEST(test_qmp_deadlines))
