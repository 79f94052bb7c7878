/* SPDX-License-Identifier: MIT */
/*
 * The reporter against a real HTTP server (tests/runtime/report-receiver.py): delivery, final
 * reports, coalescing under a slow receiver, unchanged reports skipped, 5xx and timeouts
 * retried with back-off, a receiver that is down never slows an enqueue and reports resume
 * when it is back, 4xx not retried, the bearer token re-read when its file changes, periodic
 * reports, and a stop that does not wait for a hung request. Objects are test structs, so no
 * VM or privilege is needed.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "report.h"
#include "runtime.h"
#include "test.h"

struct obj {
	atomic_int refs;
	int id;
	atomic_int value;
	atomic_bool gone; /* build has nothing to say (a VM being destroyed) */
};

#define N_OBJS 100
static struct obj objs[N_OBJS];
static unsigned n_live; /* objects the periodic walk sees */
static atomic_int n_each;

static int build(void *ud, void *o, bool final, uint64_t seq, char **ret_doc, uint64_t *ret_hash)
{
	struct obj *ob = o;
	int v = atomic_load(&ob->value);

	if (atomic_load(&ob->gone) && !final)
		return -ENOENT;
	if (asprintf(ret_doc, "{\"id\":%d,\"value\":%d,\"seq\":%llu,\"final\":%s}", ob->id, v,
		     (unsigned long long)seq, final ? "true" : "false") < 0)
		return -ENOMEM;
	*ret_hash = (uint64_t)v;
	return 0;
}

static void *ref(void *o)
{
	atomic_fetch_add(&((struct obj *)o)->refs, 1);
	return o;
}

static void unref(void *o)
{
	atomic_fetch_sub(&((struct obj *)o)->refs, 1);
}

static void each(void *ud, struct reporter *r)
{
	atomic_fetch_add(&n_each, 1);
	for (unsigned i = 0; i < n_live; i++)
		report_enqueue(r, &objs[i], REPORT_FORCE);
}

static const struct report_ops ops = {.build = build, .ref = ref, .unref = unref, .each = each};

static char dir[64], log_path[128], ctl_path[128], port_path[128], url[128];
static int port;

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void set_ctl(int status, double delay)
{
	char buf[128];

	snprintf(buf, sizeof(buf), "{\"status\": %d, \"delay\": %.3f}", status, delay);
	ASSERT_OK(write_file_atomic(ctl_path, buf, strlen(buf), 0644));
}

static char tls_cert[128], tls_key[128];

static pid_t receiver_start(int want_port)
{
	const char *src = getenv("MVMFS_SRCDIR");
	char script[4096], p[16];
	pid_t pid;

	snprintf(script, sizeof(script), "%s/tests/runtime/report-receiver.py", src ? src : ".");
	snprintf(p, sizeof(p), "%d", want_port);
	unlink(port_path);
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		/* A failed case exits at once: the receiver must not outlive it (it holds the
		 * TAP output pipe). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (tls_cert[0])
			execlp("python3", "python3", script, "--port", p, "--port-file", port_path,
			       "--log", log_path, "--ctl", ctl_path, "--tls-cert", tls_cert,
			       "--tls-key", tls_key, (char *)NULL);
		else
			execlp("python3", "python3", script, "--port", p, "--port-file", port_path,
			       "--log", log_path, "--ctl", ctl_path, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		_cleanup_free_ char *s = NULL;
		size_t len;
		if (read_file_bounded(port_path, 16, &s, &len) == 0) {
			port = atoi(s);
			snprintf(url, sizeof(url), "%s://127.0.0.1:%d/report",
				 tls_cert[0] ? "https" : "http", port);
			return pid;
		}
		usleep(20000);
	}
	TEST_FAIL("receiver did not start");
}

static void receiver_stop(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void setup(void)
{
	if (system("python3 -c 'import http.server' >/dev/null 2>&1") != 0)
		test_skip("needs python3");
	snprintf(dir, sizeof(dir), "/tmp/mvmfs-reporter-XXXXXX");
	ASSERT_TRUE(mkdtemp(dir));
	snprintf(log_path, sizeof(log_path), "%s/log", dir);
	snprintf(ctl_path, sizeof(ctl_path), "%s/ctl", dir);
	snprintf(port_path, sizeof(port_path), "%s/port", dir);
	set_ctl(200, 0);
	for (int i = 0; i < N_OBJS; i++) {
		atomic_init(&objs[i].refs, 1);
		objs[i].id = i;
		atomic_init(&objs[i].value, 0);
		atomic_init(&objs[i].gone, false);
	}
	n_live = 1;
	atomic_init(&n_each, 0);
}

static void cleanup_dir(void)
{
	(void)rm_rf(dir);
}

/* Received requests: calls fn(rec) for each; returns the count for which fn returns true. */
static int count_recs(bool (*fn)(json_t *rec, void *ud), void *ud)
{
	FILE *f = fopen(log_path, "r");
	char line[8192];
	int n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		json_t *rec = json_loads(line, 0, NULL);
		if (rec && fn(rec, ud))
			n++;
		json_decref(rec);
	}
	fclose(f);
	return n;
}

struct match {
	int id, value, status; /* -1: any */
	int final;	       /* -1: any */
	double last_t;
	const char *auth; /* NULL: any; "" none */
};

static bool matches(json_t *rec, void *ud)
{
	struct match *m = ud;
	json_t *b = json_object_get(rec, "body");
	const char *auth = json_string_value(json_object_get(rec, "auth"));

	if (!json_is_object(b))
		return false;
	if (m->id >= 0 && json_integer_value(json_object_get(b, "id")) != m->id)
		return false;
	if (m->value >= 0 && json_integer_value(json_object_get(b, "value")) != m->value)
		return false;
	if (m->status >= 0 && json_integer_value(json_object_get(rec, "status")) != m->status)
		return false;
	if (m->final >= 0 && json_is_true(json_object_get(b, "final")) != (m->final == 1))
		return false;
	if (m->auth && strcmp(m->auth, auth ? auth : "") != 0)
		return false;
	m->last_t = json_real_value(json_object_get(rec, "t"));
	return true;
}

static int count(int id, int value, int status, int final)
{
	struct match m = {id, value, status, final, 0, NULL};
	return count_recs(matches, &m);
}

static bool wait_count(int id, int value, int status, int final, int want, double timeout)
{
	double end = now_s() + timeout;

	while (now_s() < end) {
		if (count(id, value, status, final) >= want)
			return true;
		usleep(20000);
	}
	return false;
}

/* The receiver logs a request before it answers: wait for the reporter to see the answer. */
static void wait_sent(struct reporter *r, uint64_t want)
{
	struct report_stats st;

	for (int i = 0; i < 250; i++) {
		report_get_stats(r, &st);
		if (st.sent >= want)
			return;
		usleep(20000);
	}
	TEST_FAIL("sent %llu, expected %llu", (unsigned long long)st.sent,
		  (unsigned long long)want);
}

static struct reporter *new_reporter(unsigned interval_ms, unsigned timeout_ms,
				     const char *token_file)
{
	struct report_config c = {
		.url = url,
		.token_file = token_file,
		.interval_ms = interval_ms,
		.timeout_ms = timeout_ms,
		.connect_timeout_ms = 500,
		.backoff_min_ms = 50,
		.backoff_max_ms = 400,
	};
	struct reporter *r = NULL;
	struct err err = {};

	ASSERT_OK(report_new(&c, &ops, NULL, &r, &err));
	ASSERT_OK(report_start(r));
	return r;
}

static void test_delivery_and_final(void)
{
	struct report_stats st;
	struct reporter *r;
	pid_t rx;

	setup();
	rx = receiver_start(0);
	n_live = 3;
	r = new_reporter(60000, 2000, NULL);
	/* The walk at start reports every object once. */
	for (int i = 0; i < 3; i++)
		ASSERT_TRUE(wait_count(i, 0, 200, 0, 1, 10));
	atomic_store(&objs[1].value, 5);
	report_enqueue(r, &objs[1], 0);
	ASSERT_TRUE(wait_count(1, 5, 200, 0, 1, 10));
	ASSERT_EQ(atomic_load(&objs[1].refs), 2); /* the reporter holds one */
	report_enqueue(r, &objs[1], REPORT_FINAL);
	ASSERT_TRUE(wait_count(1, 5, 200, 1, 1, 10));
	ASSERT_OK(report_drain(r, 5000));
	usleep(100000);
	ASSERT_EQ(atomic_load(&objs[1].refs), 1); /* forgotten after its final report */
	report_get_stats(r, &st);
	ASSERT_EQ(st.sent, 5);
	ASSERT_EQ(st.objects, 2);
	ASSERT_EQ(st.failed, 0);
	/* A late change of a destroyed object: nothing sent, nothing kept. */
	atomic_store(&objs[1].gone, true);
	report_enqueue(r, &objs[1], 0);
	ASSERT_OK(report_drain(r, 5000));
	usleep(100000);
	ASSERT_EQ(atomic_load(&objs[1].refs), 1);
	report_get_stats(r, &st);
	ASSERT_EQ(st.sent, 5);
	ASSERT_EQ(st.rejected, 0);
	report_free(r);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(atomic_load(&objs[i].refs), 1);
	receiver_stop(rx);
	cleanup_dir();
}

static void test_coalescing_slow_receiver(void)
{
	struct report_stats st;
	double worst = 0;
	struct reporter *r;
	int got;
	pid_t rx;

	setup();
	rx = receiver_start(0);
	set_ctl(200, 0.3);
	r = new_reporter(60000, 2000, NULL);
	for (int v = 1; v <= 200; v++) {
		double t0 = now_s(), d;
		atomic_store(&objs[0].value, v);
		report_enqueue(r, &objs[0], 0);
		d = now_s() - t0;
		worst = d > worst ? d : worst;
		usleep(5000);
	}
	printf("# worst enqueue %.1f us\n", worst * 1e6);
	ASSERT_TRUE(worst < 0.05);
	ASSERT_OK(report_drain(r, 5000));
	ASSERT_TRUE(wait_count(0, 200, 200, 0, 1, 5));
	got = count(0, -1, -1, -1);
	report_get_stats(r, &st);
	printf("# 200 changes -> %d documents, %llu coalesced\n", got,
	       (unsigned long long)st.coalesced);
	ASSERT_TRUE(got <= 20);
	ASSERT_TRUE(st.coalesced >= 150);
	/* The last document has the newest value. */
	{
		struct match m = {0, -1, 200, -1, 0, NULL}, last = {0, 200, 200, -1, 0, NULL};
		count_recs(matches, &m);
		count_recs(matches, &last);
		ASSERT_TRUE(last.last_t >= m.last_t);
	}
	report_free(r);
	receiver_stop(rx);
	cleanup_dir();
}

static void test_parallel_slow_receiver_in_order(void)
{
	FILE *f;
	char line[8192];
	int last = -1;
	double t0;
	struct reporter *r;
	pid_t rx;

	setup();
	rx = receiver_start(0);
	set_ctl(200, 1.0);
	n_live = 20;
	t0 = now_s();
	r = new_reporter(60000, 5000, NULL);
	for (int v = 1; v <= 5; v++) {
		usleep(300000);
		atomic_store(&objs[0].value, v);
		report_enqueue(r, &objs[0], 0);
	}
	/* 20 objects at 1 s each: about 3 s with 8 in flight, not 20 s. */
	for (int i = 1; i < 20; i++)
		ASSERT_TRUE(wait_count(i, 0, 200, 0, 1, 6));
	ASSERT_TRUE(wait_count(0, 5, 200, 0, 1, 6));
	printf("# 20 objects + 5 changes, 1 s receiver: %.1f s\n", now_s() - t0);
	ASSERT_TRUE(now_s() - t0 < 8);
	/* Never two documents of one object in flight: they arrive in order. */
	f = fopen(log_path, "r");
	ASSERT_TRUE(f);
	while (fgets(line, sizeof(line), f)) {
		json_t *rec = json_loads(line, 0, NULL);
		json_t *b = json_object_get(rec, "body");
		if (json_integer_value(json_object_get(b, "id")) == 0) {
			int v = (int)json_integer_value(json_object_get(b, "value"));
			ASSERT_TRUE(v > last);
			last = v;
		}
		json_decref(rec);
	}
	fclose(f);
	ASSERT_EQ(last, 5);
	report_free(r);
	receiver_stop(rx);
	cleanup_dir();
}

static void test_unchanged_skipped(void)
{
	struct report_stats st;
	struct reporter *r;
	pid_t rx;

	setup();
	rx = receiver_start(0);
	r = new_reporter(60000, 2000, NULL);
	ASSERT_TRUE(wait_count(0, 0, 200, 0, 1, 10));
	report_enqueue(r, &objs[0], 0); /* nothing changed */
	ASSERT_OK(report_drain(r, 5000));
	usleep(200000);
	ASSERT_EQ(count(0, -1, -1, -1), 1);
	report_get_stats(r, &st);
	ASSERT_EQ(st.skipped, 1);
	report_enqueue(r, &objs[0], REPORT_FORCE); /* periodic: sent anyway */
	ASSERT_TRUE(wait_count(0, 0, 200, 0, 2, 10));
	report_free(r);
	receiver_stop(rx);
	cleanup_dir();
}

static void test_5xx_retried_with_backoff(void)
{
	struct report_stats st;
	struct reporter *r;
	double prev = 0, gap_first = 0, gap_last = 0;
	FILE *f;
	char line[8192];
	int n = 0;
	pid_t rx;

	setup();
	rx = receiver_start(0);
	set_ctl(503, 0);
	r = new_reporter(60000, 2000, NULL);
	ASSERT_TRUE(wait_count(0, -1, 503, -1, 6, 20));
	atomic_store(&objs[0].value, 9);
	report_enqueue(r, &objs[0], 0);
	set_ctl(200, 0);
	/* Retried until accepted, with the newest value. */
	ASSERT_TRUE(wait_count(0, 9, 200, 0, 1, 10));
	wait_sent(r, 1);
	report_get_stats(r, &st);
	ASSERT_TRUE(st.failed >= 6);
	ASSERT_EQ(st.sent, 1);
	/* Back-off grows: 50, 100, 200, 400 ms (jittered to [d/2, d]). */
	f = fopen(log_path, "r");
	ASSERT_TRUE(f);
	while (fgets(line, sizeof(line), f) && n < 6) {
		json_t *rec = json_loads(line, 0, NULL);
		double t = json_real_value(json_object_get(rec, "t"));
		if (n == 1)
			gap_first = t - prev;
		if (n == 5)
			gap_last = t - prev;
		prev = t;
		n++;
		json_decref(rec);
	}
	fclose(f);
	printf("# first gap %.3f s, fifth gap %.3f s\n", gap_first, gap_last);
	ASSERT_TRUE(gap_first >= 0.02 && gap_first < 0.5);
	ASSERT_TRUE(gap_last >= 0.19 && gap_last < 1.0);
	report_free(r);
	receiver_stop(rx);
	cleanup_dir();
}

static void test_down_never_blocks_and_resumes(void)
{
	struct report_stats st;
	double worst = 0, t_all;
	struct reporter *r;
	pid_t rx;
	int p;

	setup();
	rx = receiver_start(0);
	p = port;
	n_live = N_OBJS;
	r = new_reporter(60000, 2000, NULL);
	ASSERT_OK(report_drain(r, 10000));
	receiver_stop(rx);
	t_all = now_s();
	for (int round = 1; round <= 100; round++)
		for (int i = 0; i < N_OBJS; i++) {
			double t0 = now_s(), d;
			atomic_store(&objs[i].value, round);
			report_enqueue(r, &objs[i], 0);
			d = now_s() - t0;
			worst = d > worst ? d : worst;
		}
	t_all = now_s() - t_all;
	printf("# 10000 enqueues with the receiver down: %.1f ms, worst %.1f us\n", t_all * 1e3,
	       worst * 1e6);
	ASSERT_TRUE(worst < 0.05);
	ASSERT_TRUE(t_all < 2.0);
	sleep(1);
	report_get_stats(r, &st);
	ASSERT_TRUE(st.failed >= 2);
	ASSERT_TRUE(st.queued + 8 >= N_OBJS); /* up to 8 may be in flight */
	rx = receiver_start(p);
	ASSERT_EQ(port, p);
	for (int i = 0; i < N_OBJS; i++)
		ASSERT_TRUE(wait_count(i, 100, 200, 0, 1, 10));
	/* Each object's latest value only: 100 documents, not 10000. */
	ASSERT_EQ(count(-1, 100, 200, 0), N_OBJS);
	report_free(r);
	receiver_stop(rx);
	cleanup_dir();
}

static void test_timeout_is_retried(void)
{
	struct report_stats st;
	struct reporter *r;
	double t0;
	pid_t rx;

	setup();
	rx = receiver_start(0);
	set_ctl(200, 2.0);
	r = new_reporter(60000, 300, NULL);
	usleep(1500000);
	t0 = now_s();
	atomic_store(&objs[0].value, 3);
	report_enqueue(r, &objs[0], 0);
	ASSERT_TRUE(now_s() - t0 < 0.05);
	report_get_stats(r, &st);
	ASSERT_TRUE(st.failed >= 2);
	ASSERT_EQ(st.sent, 0);
	set_ctl(200, 0);
	ASSERT_TRUE(wait_count(0, 3, 200, 0, 1, 10));
	report_free(r);
	receiver_stop(rx);
	cleanup_dir();
}

static void test_4xx_not_retried(void)
{
	struct report_stats st;
	struct reporter *r;
	pid_t rx;

	setup();
	rx = receiver_start(0);
	set_ctl(400, 0);
	r = new_reporter(60000, 2000, NULL);
	ASSERT_TRUE(wait_count(0, 0, 400, 0, 1, 10));
	usleep(800000);
	ASSERT_EQ(count(0, -1, -1, -1), 1);
	report_get_stats(r, &st);
	ASSERT_EQ(st.rejected, 1);
	ASSERT_EQ(st.failed, 0);
	report_free(r);
	receiver_stop(rx);
	cleanup_dir();
}

static void write_token(const char *path, const char *tok)
{
	ASSERT_OK(write_file_atomic(path, tok, strlen(tok), 0600));
}

static void test_token_file(void)
{
	char tok[128];
	struct match m = {0, -1, 200, -1, 0, NULL};
	struct reporter *r;
	pid_t rx;

	setup();
	rx = receiver_start(0);
	snprintf(tok, sizeof(tok), "%s/token", dir);
	write_token(tok, "abc123\n");
	r = new_reporter(60000, 2000, tok);
	m.auth = "Bearer abc123";
	for (int i = 0; i < 500 && !count_recs(matches, &m); i++)
		usleep(20000);
	ASSERT_EQ(count_recs(matches, &m), 1);
	write_token(tok, "xyz789");
	atomic_store(&objs[0].value, 1);
	report_enqueue(r, &objs[0], 0);
	ASSERT_TRUE(wait_count(0, 1, 200, 0, 1, 10));
	m.auth = "Bearer xyz789";
	ASSERT_EQ(count_recs(matches, &m), 1);
	unlink(tok);
	atomic_store(&objs[0].value, 2);
	report_enqueue(r, &objs[0], 0);
	ASSERT_TRUE(wait_count(0, 2, 200, 0, 1, 10));
	m.auth = "";
	ASSERT_EQ(count_recs(matches, &m), 1);
	report_free(r);
	receiver_stop(rx);
	cleanup_dir();
}

static void test_periodic(void)
{
	struct reporter *r;
	pid_t rx;

	setup();
	rx = receiver_start(0);
	r = new_reporter(300, 2000, NULL);
	ASSERT_TRUE(wait_count(0, 0, 200, 0, 4, 5));
	ASSERT_TRUE(atomic_load(&n_each) >= 4);
	report_free(r);
	receiver_stop(rx);
	cleanup_dir();
}

/* --report-interval and --report-parallel reach the reporter: a short interval delivers
 * periodic reports, the default does not within a second. */
static void test_runtime_config_interval(void)
{
	struct runtime_config rc = {.report_url = url, .max_vms = 10};
	struct report_config c;
	struct reporter *r = NULL;
	struct err err = {};
	pid_t rx;

	setup();
	rx = receiver_start(0);
	rt_report_config(&rc, &c);
	ASSERT_OK(report_new(&c, &ops, NULL, &r, &err));
	ASSERT_OK(report_start(r));
	usleep(1000000);
	ASSERT_EQ(atomic_load(&n_each), 1);
	report_free(r);

	rc.report_interval_ms = 300;
	rc.report_parallel = 2;
	rt_report_config(&rc, &c);
	ASSERT_EQ(c.interval_ms, 300);
	ASSERT_EQ(c.parallel, 2);
	ASSERT_EQ(c.max_objects, 10 + 1024);
	ASSERT_OK(report_new(&c, &ops, NULL, &r, &err));
	ASSERT_OK(report_start(r));
	/* One report from the first reporter, then four periodic ones within 5 s. */
	ASSERT_TRUE(wait_count(0, 0, 200, 0, 1 + 4, 5));
	ASSERT_TRUE(atomic_load(&n_each) >= 1 + 4);
	report_free(r);

	rc.report_parallel = 257;
	rt_report_config(&rc, &c);
	ASSERT_ERRNO(report_new(&c, &ops, NULL, &r, &err), EINVAL);
	receiver_stop(rx);
	cleanup_dir();
}

static void test_stop_does_not_wait_for_a_hung_request(void)
{
	struct report_config c = {.timeout_ms = 30000};
	struct reporter *r;
	double t0;
	pid_t rx;

	setup();
	rx = receiver_start(0);
	set_ctl(200, 10);
	c.url = url;
	{
		struct err err = {};
		ASSERT_OK(report_new(&c, &ops, NULL, &r, &err));
		ASSERT_OK(report_start(r));
	}
	usleep(300000);
	t0 = now_s();
	report_free(r);
	printf("# stop with a request in flight: %.0f ms\n", (now_s() - t0) * 1e3);
	ASSERT_TRUE(now_s() - t0 < 2.0);
	receiver_stop(rx);
	cleanup_dir();
}

/* HTTPS: the peer is verified (a private CA given as ca_file works; the system store, which
 * does not hold it, refuses the connection and the report is retried, never sent). */
static void test_tls_verified(void)
{
	struct report_config c = {.connect_timeout_ms = 1000,
				  .timeout_ms = 2000,
				  .backoff_min_ms = 50,
				  .backoff_max_ms = 200};
	char cmd[2048], ca[128];
	struct report_stats st;
	struct err err = {};
	struct reporter *r;
	pid_t rx;

	setup();
	if (system("command -v openssl >/dev/null 2>&1") != 0)
		test_skip("needs openssl");
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	snprintf(tls_cert, sizeof(tls_cert), "%s/srv.pem", dir);
	snprintf(tls_key, sizeof(tls_key), "%s/srv.key", dir);
	snprintf(cmd, sizeof(cmd),
		 "cd %s && (openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem "
		 "-days 2 -subj /CN=mvmfs-test-ca && "
		 "openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr "
		 "-subj /CN=127.0.0.1 && "
		 "printf 'subjectAltName=IP:127.0.0.1\n' > ext && "
		 "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
		 "-out srv.pem -days 2 -extfile ext) >/dev/null 2>&1",
		 dir);
	if (system(cmd) != 0)
		test_skip("openssl could not make a test CA");
	rx = receiver_start(0);
	ASSERT_TRUE(strncmp(url, "https://", 8) == 0);
	c.url = url;
	c.ca_file = ca;
	ASSERT_OK(report_new(&c, &ops, NULL, &r, &err));
	ASSERT_OK(report_start(r));
	ASSERT_TRUE(wait_count(0, 0, 200, 0, 1, 10));
	report_free(r);
	c.ca_file = NULL;
	ASSERT_OK(report_new(&c, &ops, NULL, &r, &err));
	ASSERT_OK(report_start(r));
	usleep(1000000);
	report_get_stats(r, &st);
	ASSERT_TRUE(st.failed >= 1);
	ASSERT_EQ(st.sent, 0);
	ASSERT_EQ(count(0, -1, -1, -1), 1);
	report_free(r);
	receiver_stop(rx);
	cleanup_dir();
}

static void test_bad_url(void)
{
	struct report_config c = {.url = "ftp://x/"};
	struct reporter *r = NULL;
	struct err err = {};

	ASSERT_ERRNO(report_new(&c, &ops, NULL, &r, &err), EINVAL);
	c.url = "unix:///x";
	ASSERT_ERRNO(report_new(&c, &ops, NULL, &r, &err), EINVAL);
}

TEST_MAIN(TEST(test_delivery_and_final), TEST(test_coalescing_slow_receiver),
	  TEST(test_parallel_slow_receiver_in_order), TEST(test_unchanged_skipped),
	  TEST(test_5xx_retried_with_backoff), TEST(test_down_never_blocks_and_resumes),
	  TEST(test_timeout_is_retried), TEST(test_4xx_not_retried), TEST(test_token_file),
	  TEST(test_periodic), TEST(test_runtime_config_interval),
	  TEST(test_stop_does_not_wait_for_a_hung_request), TEST(test_tls_verified),
	  TEST(test_bad_url))
