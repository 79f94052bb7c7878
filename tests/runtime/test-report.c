/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the pure parts of reports and metrics: the health text -> checks parser, the
 * report document (decoded back with jansson), the change hash, the Firecracker metrics line
 * parser, and the Prometheus rendering parsed back by the strict checker (tests/runtime/
 * promcheck.py) and by `promtool check metrics` when Debian's prometheus package is installed.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "metrics.h"
#include "report.h"
#include "test.h"

static const char health_running[] =
	"healthy\n"
	"vmm: running since 2026-11-29T15:00:00Z pid 4242\n"
	"agent: ok heartbeat 0.4s ago (vsock, protocol 1) since 2026-11-29T15:00:02Z\n"
	"app: running pid 7, starts 1 since 2026-11-29T15:00:03Z\n"
	"net: up since 2026-11-29T15:00:01Z\n"
	"image: ready sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n";

static void test_parse_health(void)
{
	struct report_doc d = {};

	ASSERT_OK(report_parse_health(health_running, &d));
	ASSERT_STREQ(d.verdict, "healthy");
	ASSERT_EQ(d.n_checks, 5);
	ASSERT_STREQ(d.checks[0].name, "vmm");
	ASSERT_STREQ(d.checks[0].status, "running");
	ASSERT_STREQ(d.checks[0].since, "2026-11-29T15:00:00Z");
	ASSERT_STREQ(d.checks[0].detail, "pid 4242");
	ASSERT_STREQ(d.checks[1].status, "ok");
	ASSERT_STREQ(d.checks[1].since, "2026-11-29T15:00:02Z");
	ASSERT_STREQ(d.checks[1].detail, "heartbeat 0.4s ago (vsock, protocol 1)");
	ASSERT_STREQ(d.checks[2].detail, "pid 7, starts 1");
	ASSERT_STREQ(d.checks[3].name, "net");
	ASSERT_STREQ(d.checks[3].detail, "");
	ASSERT_STREQ(d.checks[4].name, "image");
	ASSERT_STREQ(d.checks[4].status, "ready");
	ASSERT_STREQ(d.checks[4].since, "");
	ASSERT_TRUE(strncmp(d.checks[4].detail, "sha256:", 7) == 0);
	/* Malformed: no verdict line. */
	ASSERT_ERRNO(report_parse_health("", &d), EINVAL);
	ASSERT_ERRNO(report_parse_health("\nvmm: x\n", &d), EINVAL);
	/* A line without "key: " is ignored, not fatal. */
	ASSERT_OK(report_parse_health("stopped\ngarbage\nvmm: down since 2026-11-29T15:00:00Z\n",
				      &d));
	ASSERT_EQ(d.n_checks, 1);
	ASSERT_STREQ(d.checks[0].status, "down");
}

static void fill(struct report_doc *d)
{
	*d = (struct report_doc){
		.name = "vm-1",
		.node = "node\"a",
		.state = "running",
		.state_since = "2026-11-29T15:00:00.000Z",
		.ip = "fd42::2",
		.image = "127.0.0.1:5000/test/simple:1",
		.image_digest = "sha256:0123",
		.error = "",
		.pid = 4242,
		.boots = 2,
		.stops = 1,
		.failures = 0,
		.seq = 1780000000000001ULL,
		.time = "2026-11-29T15:01:00.123Z",
	};
	ASSERT_OK(report_parse_health(health_running, d));
}

static void test_doc_encode(void)
{
	struct report_doc d;
	_cleanup_free_ char *doc = NULL;
	uint64_t h;
	json_error_t jerr;
	json_t *root, *c;

	fill(&d);
	ASSERT_OK(report_doc_encode(&d, &doc, &h));
	root = json_loads(doc, JSON_REJECT_DUPLICATES, &jerr);
	ASSERT_TRUE(root);
	ASSERT_STREQ(json_string_value(json_object_get(root, "schema")), "mvmfs.report/v1");
	ASSERT_EQ(json_integer_value(json_object_get(root, "sequence")), 1780000000000001LL);
	ASSERT_STREQ(json_string_value(json_object_get(root, "name")), "vm-1");
	ASSERT_STREQ(json_string_value(json_object_get(root, "node")), "node\"a");
	ASSERT_STREQ(json_string_value(json_object_get(root, "state")), "running");
	ASSERT_STREQ(json_string_value(json_object_get(root, "ip")), "fd42::2");
	ASSERT_EQ(json_integer_value(json_object_get(root, "pid")), 4242);
	ASSERT_TRUE(json_is_null(json_object_get(root, "error")));
	c = json_object_get(json_object_get(root, "image"), "digest");
	ASSERT_STREQ(json_string_value(c), "sha256:0123");
	c = json_object_get(root, "health");
	ASSERT_STREQ(json_string_value(json_object_get(c, "verdict")), "healthy");
	c = json_object_get(json_object_get(c, "checks"), "vmm");
	ASSERT_STREQ(json_string_value(json_object_get(c, "status")), "running");
	ASSERT_STREQ(json_string_value(json_object_get(c, "since")), "2026-11-29T15:00:00Z");
	ASSERT_STREQ(json_string_value(json_object_get(c, "detail")), "pid 4242");
	c = json_object_get(json_object_get(json_object_get(root, "health"), "checks"), "image");
	ASSERT_TRUE(json_is_null(json_object_get(c, "since")));
	c = json_object_get(root, "counters");
	ASSERT_EQ(json_integer_value(json_object_get(c, "boots")), 2);
	ASSERT_EQ(json_integer_value(json_object_get(c, "stops")), 1);
	json_decref(root);
}

static uint64_t hash_of(const struct report_doc *d)
{
	_cleanup_free_ char *doc = NULL;
	uint64_t h = 0;

	ASSERT_OK(report_doc_encode(d, &doc, &h));
	return h;
}

static void test_doc_hash(void)
{
	struct report_doc a, b;
	uint64_t h;

	fill(&a);
	h = hash_of(&a);
	/* Not reportable changes: sequence, time, since, the agent's heartbeat age. */
	b = a;
	b.seq++;
	snprintf(b.time, sizeof(b.time), "2026-11-29T16:00:00.000Z");
	snprintf(b.checks[0].since, sizeof(b.checks[0].since), "2026-11-29T15:00:01Z");
	snprintf(b.checks[1].detail, sizeof(b.checks[1].detail), "heartbeat 0.9s ago");
	ASSERT_EQ(hash_of(&b), h);
	/* Reportable: state, a check's status, the app's detail, ip, digest, error. */
	b = a;
	b.state = "stopping";
	ASSERT_NE(hash_of(&b), h);
	b = a;
	snprintf(b.checks[1].status, sizeof(b.checks[1].status), "late");
	ASSERT_NE(hash_of(&b), h);
	b = a;
	snprintf(b.checks[2].detail, sizeof(b.checks[2].detail), "pid 8, starts 2");
	ASSERT_NE(hash_of(&b), h);
	b = a;
	b.image_digest = "sha256:9999";
	ASSERT_NE(hash_of(&b), h);
	b = a;
	b.error = "2026-11-29T15:00:00Z boom";
	ASSERT_NE(hash_of(&b), h);
	b = a;
	b.ip = "";
	ASSERT_NE(hash_of(&b), h);
}

static const char fc_line[] =
	"{\"utc_timestamp_ms\":1780000000123,\"api_server\":{\"process_startup_time_us\":5},"
	"\"block\":{\"read_bytes\":4096,\"write_bytes\":512,\"read_count\":2,\"write_count\":1,"
	"\"read_agg\":{\"min_us\":1,\"max_us\":2,\"sum_us\":3}},\"block_rootfs\":{\"read_bytes\":"
	"4096},"
	"\"net\":{\"rx_bytes_count\":100,\"tx_bytes_count\":200,\"rx_packets_count\":3,"
	"\"tx_packets_count\":4},\"vcpu\":{\"exit_io_in\":10,\"exit_io_out\":11,"
	"\"exit_mmio_read\":12,\"exit_mmio_write\":13,\"failures\":0},\"vmm\":{\"panic_count\":0},"
	"\"seccomp\":{\"num_faults\":0},\"logger\":{\"missed_metrics_count\":1}}\n";

static void test_fc_metrics_parse(void)
{
	struct fc_metrics m = {}, acc = {};
	uint64_t ts = 0;

	ASSERT_OK(fc_metrics_parse_line(fc_line, strlen(fc_line), &m, &ts));
	ASSERT_EQ(ts, 1780000000123ULL);
	ASSERT_EQ(m.block_read_bytes, 4096);
	ASSERT_EQ(m.block_write_bytes, 512);
	ASSERT_EQ(m.net_rx_bytes, 100);
	ASSERT_EQ(m.net_tx_packets, 4);
	ASSERT_EQ(m.vcpu_exit_mmio_write, 13);
	ASSERT_EQ(m.missed_metrics, 1);
	fc_metrics_add(&acc, &m);
	fc_metrics_add(&acc, &m);
	ASSERT_EQ(acc.block_read_bytes, 8192);
	ASSERT_EQ(acc.vcpu_exit_io_in, 20);
	/* Groups a version lacks are zero. */
	ASSERT_OK(fc_metrics_parse_line("{\"utc_timestamp_ms\":1}", 22, &m, &ts));
	ASSERT_EQ(m.net_rx_bytes, 0);
	/* Strict. */
#define BAD(s) ASSERT_ERRNO(fc_metrics_parse_line(s, strlen(s), &m, &ts), EINVAL)
	BAD("");
	BAD("[]");
	BAD("{}");
	BAD("{\"utc_timestamp_ms\":-1}");
	BAD("{\"utc_timestamp_ms\":\"1\"}");
	BAD("{\"utc_timestamp_ms\":1,\"net\":5}");
	BAD("{\"utc_timestamp_ms\":1,\"net\":{\"rx_bytes_count\":-5}}");
	BAD("{\"utc_timestamp_ms\":1,\"net\":{\"rx_bytes_count\":1.5}}");
	BAD("{\"utc_timestamp_ms\":1,\"utc_timestamp_ms\":2}");
	BAD("{\"utc_timestamp_ms\":1}\n{\"utc_timestamp_ms\":2}");
	BAD("{\"utc_timestamp_ms\":1");
#undef BAD
	ASSERT_ERRNO(fc_metrics_parse_line(fc_line, FC_METRICS_LINE_MAX + 1, &m, &ts), E2BIG);
}

static void test_fc_metrics_account(void)
{
	char buf[4096];
	struct fc_metrics acc = {};
	uint64_t last = 0;
	size_t n;

	/* A cut first line, three lines (ts 100, 200, 300), a line still being written. */
	n = (size_t)snprintf(buf, sizeof(buf),
			     "_bytes\":5}}\n"
			     "{\"utc_timestamp_ms\":100,\"net\":{\"rx_bytes_count\":10}}\n"
			     "{\"utc_timestamp_ms\":200,\"net\":{\"rx_bytes_count\":20}}\n"
			     "not json\n"
			     "{\"utc_timestamp_ms\":300,\"net\":{\"rx_bytes_count\":30}}\n"
			     "{\"utc_timestamp_ms\":400,\"net\":{\"rx_by");
	ASSERT_EQ(fc_metrics_account(buf, n, &last, &acc), 3);
	ASSERT_EQ(acc.net_rx_bytes, 60);
	ASSERT_EQ(last, 300);
	/* Read again (file cut back to its tail, or nothing new): nothing counted twice. */
	ASSERT_EQ(fc_metrics_account(buf, n, &last, &acc), 0);
	ASSERT_EQ(acc.net_rx_bytes, 60);
	/* The line finished: only it counts. */
	n = (size_t)snprintf(buf, sizeof(buf),
			     "{\"utc_timestamp_ms\":300,\"net\":{\"rx_bytes_count\":30}}\n"
			     "{\"utc_timestamp_ms\":400,\"net\":{\"rx_bytes_count\":4}}\n");
	ASSERT_EQ(fc_metrics_account(buf, n, &last, &acc), 1);
	ASSERT_EQ(acc.net_rx_bytes, 64);
	ASSERT_EQ(last, 400);
	ASSERT_EQ(fc_metrics_account("", 0, &last, &acc), 0);
	/* After a cut-back, the writer's next line follows a hole (NULs). */
	memset(buf, 0, 100);
	n = 100 + (size_t)snprintf(buf + 100, sizeof(buf) - 100,
				   "{\"utc_timestamp_ms\":500,\"net\":{\"rx_bytes_count\":6}}\n");
	ASSERT_EQ(fc_metrics_account(buf, n, &last, &acc), 1);
	ASSERT_EQ(acc.net_rx_bytes, 70);
}

static void test_escape(void)
{
	char buf[32];

	metrics_escape_label("a\"b\\c\nd", buf, sizeof(buf));
	ASSERT_STREQ(buf, "a\\\"b\\\\c\\nd");
	metrics_escape_label("\"\"\"\"\"\"\"\"", buf, 8);
	ASSERT_TRUE(strlen(buf) < 8);
	ASSERT_TRUE(buf[strlen(buf) - 1] == '"'); /* never a dangling backslash */
}

/* Run a checker over text: "python3 promcheck.py --require-help FILE" or "promtool check
 * metrics" (stdin). Returns the exit status; output goes to the TAP log as comments. */
static int run_check(const char *text, bool promtool)
{
	char path[] = "/tmp/mvmfs-promXXXXXX", cmd[8192];
	const char *src = getenv("MVMFS_SRCDIR");
	FILE *f, *p;
	char line[512];
	int fd, st;

	fd = mkstemp(path);
	ASSERT_TRUE(fd >= 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
	if (promtool)
		snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
	else
		snprintf(cmd, sizeof(cmd),
			 "python3 %s/tests/runtime/promcheck.py --require-help %s 2>&1",
			 src ? src : ".", path);
	p = popen(cmd, "r");
	ASSERT_TRUE(p);
	while (fgets(line, sizeof(line), p))
		printf("# %s: %s", promtool ? "promtool" : "promcheck", line);
	st = pclose(p);
	unlink(path);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static bool have_promtool(void)
{
	return system("command -v promtool >/dev/null 2>&1") == 0;
}

static void test_render(void)
{
	struct metrics_vm v[3] = {
		{.name = "vm-1", .state = VM_STATE_RUNNING, .verdict = HEALTH_HEALTHY, .boots = 3},
		{.name = "odd\"name\\x\ny", .state = VM_STATE_FAILED, .verdict = HEALTH_FAILED},
		{.name = "vm-3", .state = VM_STATE_CREATED, .verdict = HEALTH_STOPPED},
	};
	struct metrics_node node = {
		.node = "host-1", .reports_enabled = true, .reports_sent = 7, .report_queue = 2};
	_cleanup_free_ char *out = NULL, *one = NULL;
	size_t len;

	v[0].mx.fc.net_rx_bytes = 12345;
	v[0].mx.image_seconds = 1.25;
	v[0].mx.stops = 4;
	ASSERT_OK(metrics_render(v, 3, &node, &out, &len));
	ASSERT_EQ(strlen(out), len);
	ASSERT_TRUE(strstr(out, "mvmfs_vm_state{vm=\"vm-1\",state=\"running\"} 1\n"));
	ASSERT_TRUE(strstr(out, "mvmfs_vm_state{vm=\"vm-1\",state=\"stopped\"} 0\n"));
	ASSERT_TRUE(
		strstr(out, "mvmfs_vm_health{vm=\"odd\\\"name\\\\x\\ny\",verdict=\"failed\"} 1\n"));
	ASSERT_TRUE(strstr(out, "mvmfs_vm_boots_total{vm=\"vm-1\"} 3\n"));
	ASSERT_TRUE(strstr(out, "mvmfs_vm_stops_total{vm=\"vm-1\"} 4\n"));
	ASSERT_TRUE(strstr(out, "mvmfs_vm_net_rx_bytes_total{vm=\"vm-1\"} 12345\n"));
	ASSERT_TRUE(strstr(out, "mvmfs_vm_image_prepare_seconds_total{vm=\"vm-1\"} 1.250000\n"));
	ASSERT_TRUE(strstr(out, "mvmfs_vms{state=\"failed\"} 1\n"));
	ASSERT_TRUE(strstr(out, "mvmfs_vms_health{verdict=\"healthy\"} 1\n"));
	ASSERT_TRUE(strstr(out, "mvmfs_reports_sent_total 7\n"));
	ASSERT_TRUE(strstr(out, "mvmfs_report_queue_length 2\n"));
	ASSERT_EQ(run_check(out, false), 0);
	if (have_promtool())
		ASSERT_EQ(run_check(out, true), 0);
	else
		printf("# promtool not installed: only the test parser checked\n");
	/* The per-VM file: same families, no node ones. */
	ASSERT_OK(metrics_render(v, 1, NULL, &one, &len));
	ASSERT_FALSE(strstr(one, "mvmfs_vms{"));
	ASSERT_FALSE(strstr(one, "odd"));
	ASSERT_EQ(run_check(one, false), 0);
	if (have_promtool())
		ASSERT_EQ(run_check(one, true), 0);
}

static void test_checker_is_strict(void)
{
	/* The checker itself must fail bad input, or the tests above prove nothing. */
	ASSERT_NE(run_check("# TYPE a counter\na 1\na 2\n", false), 0);
	ASSERT_NE(run_check("# HELP a x\n# TYPE a gauge\na{x=\"\\q\"} 1\n", false), 0);
	ASSERT_NE(run_check("# HELP a x\n# TYPE a gauge\na 1\n# HELP b y\n# TYPE b gauge\nb "
			    "1\na{l=\"2\"} 1\n",
			    false),
		  0);
	ASSERT_NE(run_check("# HELP a x\n# TYPE a counter\na -1\n", false), 0);
	ASSERT_NE(run_check("# HELP a x\n# TYPE a gauge\na 1", false), 0);
	ASSERT_NE(run_check("a 1\n", false), 0); /* --require-help */
}

TEST_MAIN(TEST(test_parse_health), TEST(test_doc_encode), TEST(test_doc_hash),
	  TEST(test_fc_metrics_parse), TEST(test_fc_metrics_account), TEST(test_escape),
	  TEST(test_render), TEST(test_checker_is_strict))
