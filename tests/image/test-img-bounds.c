/* SPDX-License-Identifier: MIT */
/*
 * Pull bounds against a misbehaving registry on loopback (hostile-registry.py): total and stall
 * deadlines, cancellation of one waiter and of a shared pull, a cached image prepared at normal
 * speed while a pull trickles, declared-size caps checked before any download, a decompression
 * bomb stopped at the cap, a state dir on a small tmpfs filled by a pull, an S3 object that only
 * an external decompressor could read, a public registry whose redirect or token realm points
 * at 127.0.0.1, and remote error text sanitised.
 */
#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "build.h"
#include "fileio.h"
#include "fixture.h"
#include "test.h"

static char tmp_dir[128];
static const char *src_dir;
static pid_t fx_pid = -1;

/* Start hostile-registry.py in dir (bound to bind), wait for its env file. */
static pid_t hostile_up(const char *dir, const char *bind)
{
	char script[1024], env[1024];
	pid_t pid;

	snprintf(script, sizeof(script), "%s/tests/image/hostile-registry.py", src_dir);
	snprintf(env, sizeof(env), "%s/env", dir);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

		/* Gone with the test process, even one that fails half way. */
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0)
			(void)dup2(fd, 0);
		execlp("python3", "python3", script, dir, bind, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 600; i++) {
		int st;

		if (access(env, F_OK) == 0)
			return pid;
		if (waitpid(pid, &st, WNOHANG) == pid)
			return -1;
		usleep(50 * 1000);
	}
	kill(pid, SIGKILL);
	(void)waitpid(pid, NULL, 0);
	return -1;
}

static void hostile_down(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGKILL);
		(void)waitpid(pid, NULL, 0);
	}
}

static const char *ref(const char *repo_tag)
{
	static char buf[4][256];
	static int slot;
	char *b = buf[slot++ % 4];

	snprintf(b, 256, "127.0.0.1:%s/%s", fx("PORT"), repo_tag);
	return b;
}

/* Lines of the fixture's request log containing needle. */
static int requests(const char *dir, const char *needle)
{
	char path[1024], line[4096];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "%s/requests.log", dir);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			n++;
	fclose(f);
	return n;
}

struct st {
	char state[512], insecure_entry[128];
	const char *insecure[2];
	struct img_store_config cfg;
	struct img_store *store;
};

static void st_open(struct st *s, const char *state, const char *registry,
		    const struct img_limits *lim)
{
	struct err err = {0};

	*s = (struct st){0};
	if (state) {
		snprintf(s->state, sizeof(s->state), "%s", state);
	} else {
		snprintf(s->state, sizeof(s->state), "%s/state.XXXXXX", tmp_dir);
		ASSERT_TRUE(mkdtemp(s->state) != NULL);
	}
	snprintf(s->insecure_entry, sizeof(s->insecure_entry), "%s", registry);
	s->insecure[0] = s->insecure_entry;
	s->cfg = (struct img_store_config){
		.state_dir = s->state, .insecure = s->insecure, .docker_config = "/nonexistent"};
	if (lim)
		s->cfg.limits = *lim;
	if (img_store_new(&s->cfg, &s->store, &err) < 0)
		TEST_FAIL("store: %s", err.msg);
}

static void st_open_local(struct st *s, const struct img_limits *lim)
{
	char reg[64];

	snprintf(reg, sizeof(reg), "127.0.0.1:%s", fx("PORT"));
	st_open(s, NULL, reg, lim);
}

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* Entries of state/images/<sub>, and how many of them are partial downloads or temp dirs. */
static int count_dir(const char *state, const char *sub)
{
	char p[1024];
	DIR *d;
	struct dirent *de;
	int n = 0;

	snprintf(p, sizeof(p), "%s/images/%s", state, sub);
	d = opendir(p);
	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static int count_partial(const char *state)
{
	char p[1024];
	DIR *d;
	struct dirent *de;
	int n = 0;

	snprintf(p, sizeof(p), "%s/images/blobs/sha256", state);
	d = opendir(p);
	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (strstr(de->d_name, ".part"))
			n++;
	closedir(d);
	return n;
}

/* Size of the (single) partial download in blobs/, 0 when none. */
static off_t partial_size(const char *state)
{
	char p[1024], f[1400];
	DIR *d;
	struct dirent *de;
	struct stat sb;
	off_t size = 0;

	snprintf(p, sizeof(p), "%s/images/blobs/sha256", state);
	d = opendir(p);
	if (!d)
		return 0;
	while ((de = readdir(d)))
		if (strstr(de->d_name, ".part")) {
			snprintf(f, sizeof(f), "%s/%s", p, de->d_name);
			if (stat(f, &sb) == 0)
				size += sb.st_size;
		}
	closedir(d);
	return size;
}

static unsigned pull_threads(struct img_store *s)
{
	unsigned n;

	pthread_mutex_lock(&s->lock);
	n = s->pull_threads;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* The store holds nothing of a failed pull: no image, no build dir, no partial blob, no
 * holder. */
static void assert_clean(struct st *s)
{
	for (int i = 0; i < 100 && pull_threads(s->store) > 0; i++)
		usleep(50 * 1000);
	ASSERT_EQ(pull_threads(s->store), 0);
	ASSERT_EQ(count_dir(s->state, "images"), 0);
	ASSERT_EQ(count_dir(s->state, "tmp"), 0);
	ASSERT_EQ(count_partial(s->state), 0);
	ASSERT_EQ(count_dir(s->state, "refs/holders"), 0);
}

static int prepare(struct st *s, const char *r, const atomic_bool *cancel, struct err *err)
{
	struct img_prepared p;

	*err = (struct err){0};
	return img_prepare(s->store, r, "vm1", NULL, NULL, cancel, &p, err);
}

static void test_stall_deadline(void)
{
	struct img_limits lim = {.stall_timeout_ms = 1500};
	struct st s;
	struct err err;
	double t0;
	int r;

	st_open_local(&s, &lim);
	t0 = now_ms();
	r = prepare(&s, ref("test/stall:1"), NULL, &err);
	printf("# %d after %.0f ms: %s\n", r, now_ms() - t0, err.msg);
	ASSERT_ERRNO(r, ETIMEDOUT);
	ASSERT_TRUE(strstr(err.msg, "stalled: no data for 1.5 s") != NULL);
	ASSERT_TRUE(strstr(err.msg, "test/stall:1") != NULL);
	/* No retry after a stall: one deadline, not five. */
	ASSERT_TRUE(now_ms() - t0 < 4000);
	assert_clean(&s);
	img_store_free(s.store);
}

static void test_total_deadline(void)
{
	struct img_limits lim = {.pull_timeout_ms = 2000};
	struct st s;
	struct err err;
	double t0;
	int r;

	st_open_local(&s, &lim);
	t0 = now_ms();
	r = prepare(&s, ref("test/slow:1"), NULL, &err);
	printf("# %d after %.0f ms: %s\n", r, now_ms() - t0, err.msg);
	ASSERT_ERRNO(r, ETIMEDOUT);
	ASSERT_TRUE(strstr(err.msg, "timed out after 2 s") != NULL);
	ASSERT_TRUE(now_ms() - t0 < 3500);
	assert_clean(&s);
	img_store_free(s.store);
}

struct waiter {
	struct st *s;
	const char *ref;
	char holder[16];
	atomic_bool cancel;
	atomic_bool returned;
	int r;
	double ended;
	struct err err;
	struct img_prepared p;
};

static void *wait_thread(void *ud)
{
	struct waiter *w = ud;

	w->r = img_prepare(w->s->store, w->ref, w->holder, NULL, NULL, &w->cancel, &w->p, &w->err);
	w->ended = now_ms();
	atomic_store(&w->returned, true);
	return NULL;
}

static void start_waiter(struct waiter *w, struct st *s, const char *r, const char *holder,
			 pthread_t *t)
{
	w->s = s;
	w->ref = r;
	snprintf(w->holder, sizeof(w->holder), "%s", holder);
	atomic_init(&w->cancel, false);
	atomic_init(&w->returned, false);
	ASSERT_EQ(pthread_create(t, NULL, wait_thread, w), 0);
}

/* Two callers share one trickling pull: the first cancels and returns at once while the pull
 * goes on for the second; when the second cancels too the pull is aborted, leaving nothing. */
static void test_cancel_shared(void)
{
	struct st s;
	struct waiter a = {0}, b = {0};
	pthread_t ta, tb;
	double t;
	off_t s1, s2;

	st_open_local(&s, NULL);
	start_waiter(&a, &s, ref("test/slow:1"), "vma", &ta);
	usleep(300 * 1000);
	start_waiter(&b, &s, ref("test/slow:1"), "vmb", &tb);
	usleep(1200 * 1000);
	ASSERT_FALSE(atomic_load(&a.returned));
	ASSERT_FALSE(atomic_load(&b.returned));
	ASSERT_EQ(img_store_pulls(s.store), 1);

	t = now_ms();
	atomic_store(&a.cancel, true);
	ASSERT_EQ(pthread_join(ta, NULL), 0);
	printf("# first waiter returned %d after %.0f ms: %s\n", a.r, a.ended - t, a.err.msg);
	ASSERT_ERRNO(a.r, ECANCELED);
	ASSERT_TRUE(a.ended - t < 1000);
	ASSERT_TRUE(strstr(a.err.msg, "cancelled") != NULL);

	/* The pull goes on for the second waiter: its download keeps growing. */
	s1 = partial_size(s.state);
	usleep(1000 * 1000);
	s2 = partial_size(s.state);
	printf("# partial download %lld -> %lld bytes with one waiter left\n", (long long)s1,
	       (long long)s2);
	ASSERT_TRUE(s2 > s1);
	ASSERT_FALSE(atomic_load(&b.returned));
	ASSERT_EQ(pull_threads(s.store), 1);

	t = now_ms();
	atomic_store(&b.cancel, true);
	ASSERT_EQ(pthread_join(tb, NULL), 0);
	printf("# second waiter returned %d after %.0f ms\n", b.r, b.ended - t);
	ASSERT_ERRNO(b.r, ECANCELED);
	ASSERT_TRUE(b.ended - t < 1000);
	/* Nobody waits: the pull is aborted and its partial files removed within a second. */
	t = now_ms();
	while (pull_threads(s.store) > 0 && now_ms() - t < 2000)
		usleep(20 * 1000);
	printf("# pull thread gone after %.0f ms\n", now_ms() - t);
	ASSERT_EQ(pull_threads(s.store), 0);
	assert_clean(&s);
	img_store_free(s.store);
}

/* A cancel while the caller itself is still resolving (a manifest trickling in). */
static void test_cancel_while_resolving(void)
{
	struct st s;
	struct waiter a = {0};
	pthread_t ta;
	double t;

	st_open_local(&s, NULL);
	start_waiter(&a, &s, ref("test/slowmanifest:1"), "vma", &ta);
	usleep(1500 * 1000);
	ASSERT_FALSE(atomic_load(&a.returned));
	ASSERT_EQ(img_store_pulls(s.store), 0); /* still resolving: no pull yet */
	t = now_ms();
	atomic_store(&a.cancel, true);
	ASSERT_EQ(pthread_join(ta, NULL), 0);
	printf("# returned %d after %.0f ms: %s\n", a.r, a.ended - t, a.err.msg);
	ASSERT_ERRNO(a.r, ECANCELED);
	ASSERT_TRUE(a.ended - t < 1000);
	assert_clean(&s);
	img_store_free(s.store);
}

/* A cancel before anything happened, and img_store_free with a pull in flight. */
static void test_cancel_early_and_free(void)
{
	struct st s;
	struct err err;
	atomic_bool yes = true;
	struct waiter a = {0};
	pthread_t ta;
	double t;

	st_open_local(&s, NULL);
	ASSERT_ERRNO(prepare(&s, ref("test/fast:1"), &yes, &err), ECANCELED);
	start_waiter(&a, &s, ref("test/slow:1"), "vma", &ta);
	usleep(800 * 1000);
	atomic_store(&a.cancel, true);
	ASSERT_EQ(pthread_join(ta, NULL), 0);
	ASSERT_ERRNO(a.r, ECANCELED);
	t = now_ms();
	img_store_free(s.store); /* waits for the aborted pull thread */
	printf("# store closed %.0f ms after the cancel\n", now_ms() - t);
	ASSERT_TRUE(now_ms() - t < 2000);
}

/* While a pull trickles, a cached image is prepared as fast as without it. */
static void test_cached_while_trickling(void)
{
	struct st s;
	struct err err;
	struct waiter a = {0}, b = {0};
	pthread_t ta, tb;
	char by_digest[512];
	double before_tag, before_dig, during_tag, during_dig, t;

	st_open_local(&s, NULL);
	ASSERT_OK(prepare(&s, ref("test/fast:1"), NULL, &err));
	snprintf(by_digest, sizeof(by_digest), "127.0.0.1:%s/test/fast@%s", fx("PORT"),
		 fx("FAST_DIGEST"));
	t = now_ms();
	ASSERT_OK(prepare(&s, ref("test/fast:1"), NULL, &err));
	before_tag = now_ms() - t;
	t = now_ms();
	ASSERT_OK(prepare(&s, by_digest, NULL, &err));
	before_dig = now_ms() - t;

	start_waiter(&a, &s, ref("test/slow:1"), "vma", &ta);
	start_waiter(&b, &s, ref("test/slow2:1"), "vmb", &tb);
	usleep(1000 * 1000);
	ASSERT_EQ(pull_threads(s.store), 2);
	t = now_ms();
	ASSERT_OK(prepare(&s, ref("test/fast:1"), NULL, &err));
	during_tag = now_ms() - t;
	t = now_ms();
	ASSERT_OK(prepare(&s, by_digest, NULL, &err));
	during_dig = now_ms() - t;
	printf("# cached image by tag %.1f ms (%.1f ms without pulls), by digest %.2f ms (%.2f "
	       "ms)\n",
	       during_tag, before_tag, during_dig, before_dig);
	ASSERT_FALSE(atomic_load(&a.returned));
	ASSERT_FALSE(atomic_load(&b.returned));
	/* Wall clock on a loaded machine: generous, but far below the pulls' minute. */
	ASSERT_TRUE(during_tag < 500 && during_dig < 100);
	atomic_store(&a.cancel, true);
	atomic_store(&b.cancel, true);
	ASSERT_EQ(pthread_join(ta, NULL), 0);
	ASSERT_EQ(pthread_join(tb, NULL), 0);
	img_store_free(s.store);
}

static void test_declared_sizes(void)
{
	struct st s;
	struct err err;
	int r;

	st_open_local(&s, NULL);
	r = prepare(&s, ref("test/huge:1"), NULL, &err);
	printf("# %d: %s\n", r, err.msg);
	ASSERT_ERRNO(r, EFBIG);
	ASSERT_TRUE(strstr(err.msg, "declares 1099511627776 bytes") != NULL);
	r = prepare(&s, ref("test/bigconfig:1"), NULL, &err);
	printf("# %d: %s\n", r, err.msg);
	ASSERT_ERRNO(r, EFBIG);
	ASSERT_TRUE(strstr(err.msg, "image config") != NULL);
	/* Refused before a single blob was asked for. */
	ASSERT_EQ(requests(fx_dir, "GET /v2/test/huge/blobs/"), 0);
	ASSERT_EQ(requests(fx_dir, "GET /v2/test/bigconfig/blobs/"), 0);
	assert_clean(&s);
	img_store_free(s.store);
}

static void test_decompression_bomb(void)
{
	struct img_limits lim = {.max_image_bytes = 16 << 20};
	struct st s;
	struct err err;
	int r;

	st_open_local(&s, &lim);
	r = prepare(&s, ref("test/bomb:1"), NULL, &err);
	printf("# %d: %s\n", r, err.msg);
	ASSERT_ERRNO(r, EFBIG);
	/* The compressed blob is tiny: only the unpacked total can have stopped it. */
	ASSERT_TRUE(strstr(err.msg, "larger than 16777216 bytes unpacked") != NULL);
	assert_clean(&s);
	img_store_free(s.store);
}

/* A state dir on a 32 MiB tmpfs: a blob that would eat into the reserve is refused before
 * download; a pull that fills the disk while unpacking fails cleanly; the store stays usable. */
static void test_disk_fills(void)
{
	struct img_limits lim = {.disk_reserve = 20ULL << 20};
	struct st s;
	struct err err;
	char mnt[1024], reg[64];
	int r;

	snprintf(reg, sizeof(reg), "127.0.0.1:%s", fx("PORT"));
	if (geteuid() != 0)
		test_skip("needs root to mount a small tmpfs");
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		test_skip("cannot make a private mount namespace");
	snprintf(mnt, sizeof(mnt), "%s/small.XXXXXX", tmp_dir);
	ASSERT_TRUE(mkdtemp(mnt) != NULL);
	ASSERT_OK(mount("tmpfs", mnt, "tmpfs", 0, "size=32m"));

	/* 20 MiB blob + 20 MiB reserve > 32 MiB: refused before it is fetched. */
	st_open(&s, mnt, reg, &lim);
	r = prepare(&s, ref("test/big:1"), NULL, &err);
	printf("# reserve: %d: %s\n", r, err.msg);
	ASSERT_ERRNO(r, ENOSPC);
	ASSERT_TRUE(strncmp(err.msg, "disk full", 9) == 0 || strstr(err.msg, "disk full"));
	ASSERT_EQ(requests(fx_dir, "GET /v2/test/big/blobs/sha256:"), 1); /* the config only */
	assert_clean(&s);
	img_store_free(s.store);

	/* A 1 MiB reserve: the blob fits, the unpacked tree does not. */
	lim.disk_reserve = 1 << 20;
	st_open(&s, mnt, reg, &lim);
	r = prepare(&s, ref("test/big:1"), NULL, &err);
	printf("# mid-pull: %d: %s\n", r, err.msg);
	ASSERT_ERRNO(r, ENOSPC);
	ASSERT_TRUE(strstr(err.msg, "disk full") != NULL);
	assert_clean(&s);
	/* The store still works: a small image pulls, unpacks and boots from the same disk. */
	r = prepare(&s, ref("test/fast:1"), NULL, &err);
	if (r < 0)
		TEST_FAIL("small image after the full disk: %s", err.msg);
	ASSERT_EQ(count_dir(s.state, "images"), 1);
	img_store_free(s.store);
	(void)umount2(mnt, MNT_DETACH);
}

/* s3:// whose object only lrzip could decompress: refused, and no lrzip ever runs. */
static void test_s3_no_external_decompressor(void)
{
	struct st s;
	struct err err;
	char bin[512], marker[512], path[4096], cmd[4096], endpoint[128];
	int r;

	snprintf(bin, sizeof(bin), "%s/fakebin", tmp_dir);
	snprintf(marker, sizeof(marker), "%s/lrzip-ran", tmp_dir);
	(void)mkdir(bin, 0755);
	snprintf(cmd, sizeof(cmd),
		 "printf '#!/bin/sh\\ntouch %s\\ncat >/dev/null\\n' > %s/lrzip && "
		 "chmod +x %s/lrzip",
		 marker, bin, bin);
	ASSERT_EQ(system(cmd), 0);
	snprintf(path, sizeof(path), "%s:%s", bin, getenv("PATH") ? getenv("PATH") : "/usr/bin");
	setenv("PATH", path, 1);
	snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%s", fx("PORT"));
	setenv("AWS_ENDPOINT_URL", endpoint, 1);
	setenv("AWS_REGION", "us-east-1", 1);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent", 1);
	setenv("AWS_CONFIG_FILE", "/nonexistent", 1);

	st_open_local(&s, NULL);
	r = prepare(&s, "s3://bucket/lrzip.tar", NULL, &err);
	printf("# %d: %s\n", r, err.msg);
	ASSERT_TRUE(r < 0);
	ASSERT_TRUE(strstr(err.msg, "s3://bucket/lrzip.tar: ") != NULL);
	ASSERT_TRUE(strstr(err.msg, "archive") || strstr(err.msg, "external"));
	usleep(200 * 1000);
	ASSERT_FALSE(access(marker, F_OK) == 0);
	assert_clean(&s);
	img_store_free(s.store);
}

/* Remote error text reaches the message printable, one line, bounded. */
static void test_error_body_sanitised(void)
{
	struct st s;
	struct err err;
	int r;

	st_open_local(&s, NULL);
	r = prepare(&s, ref("test/errbody:1"), NULL, &err);
	printf("# %d: %.160s...\n", r, err.msg);
	ASSERT_ERRNO(r, ENOENT);
	ASSERT_TRUE(strstr(err.msg, "manifest unknown") != NULL);
	for (const char *p = err.msg; *p; p++)
		ASSERT_TRUE(*p >= 0x20 && *p < 0x7f);
	ASSERT_TRUE(strlen(err.msg) < 600);
	/* A hostile layer entry whose name holds terminal escapes, quoted by the refusal. */
	r = prepare(&s, ref("test/escname:1"), NULL, &err);
	printf("# %d: %s\n", r, err.msg);
	ASSERT_TRUE(r < 0);
	ASSERT_TRUE(strstr(err.msg, "x?]0;pwned?/../../evil") != NULL);
	for (const char *p = err.msg; *p; p++)
		ASSERT_TRUE(*p >= 0x20 && *p < 0x7f);
	img_store_free(s.store);
}

/* A registry on loopback may send us to loopback (the tests' and the quickstart's do). */
static void test_loopback_registry_may_redirect_inwards(void)
{
	struct st s;
	struct err err;
	int r;

	st_open_local(&s, NULL);
	r = prepare(&s, ref("test/redirect:1"), NULL, &err);
	if (r < 0)
		TEST_FAIL("redirect on loopback: %s", err.msg);
	ASSERT_TRUE(requests(fx_dir, "inner GET /blob/") >= 2);
	img_store_free(s.store);
}

/* A registry on a global address (2001:db8::1, in a network namespace of our own) whose blob
 * redirect and token realm point at 127.0.0.1: refused, nothing reaches the inner server. */
static void test_public_registry_no_inward_redirect(void)
{
	char dir[512], reg[128], r1[256];
	struct st s;
	struct err err;
	pid_t pid;
	int r;

	if (geteuid() != 0)
		test_skip("needs root for a network namespace");
	if (unshare(CLONE_NEWNET) < 0)
		test_skip("cannot create a network namespace");
	/* A global-scope address on the namespace's own loopback link: the address is what the
	 * policy looks at, and this kernel may have no dummy link type. */
	if (system("ip link set lo up && ip -6 addr add 2001:db8::1/128 dev lo nodad") != 0)
		test_skip("cannot add 2001:db8::1 in a network namespace (ip)");
	snprintf(dir, sizeof(dir), "%s/public.XXXXXX", tmp_dir);
	ASSERT_TRUE(mkdtemp(dir) != NULL);
	setenv("HOSTILE_MINIMAL", "1", 1);
	pid = hostile_up(dir, "2001:db8::1");
	ASSERT_TRUE(pid > 0);
	snprintf(reg, sizeof(reg), "[2001:db8::1]:%s", fx_env_in(dir, "PORT"));
	st_open(&s, NULL, reg, NULL);

	snprintf(r1, sizeof(r1), "%s/test/redirect:1", reg);
	r = prepare(&s, r1, NULL, &err);
	printf("# redirect: %d: %s\n", r, err.msg);
	ASSERT_ERRNO(r, EACCES);
	ASSERT_TRUE(strstr(err.msg, "internal address 127.0.0.1") != NULL);
	snprintf(r1, sizeof(r1), "%s/test/token:1", reg);
	r = prepare(&s, r1, NULL, &err);
	printf("# token realm: %d: %s\n", r, err.msg);
	ASSERT_ERRNO(r, EACCES);
	ASSERT_TRUE(strstr(err.msg, "internal address 127.0.0.1") != NULL);
	ASSERT_EQ(requests(dir, "inner GET"), 0);
	/* The registry itself answered: the refusal is about where it pointed. */
	ASSERT_TRUE(requests(dir, "registry GET /v2/test/redirect/blobs/") >= 1);
	ASSERT_TRUE(requests(dir, "registry GET /v2/test/token/manifests/") >= 1);
	assert_clean(&s);
	img_store_free(s.store);
	hostile_down(pid);
}

int main(void)
{
	static const struct test_case cases[] = {
		TEST(test_stall_deadline),
		TEST(test_total_deadline),
		TEST(test_cancel_shared),
		TEST(test_cancel_while_resolving),
		TEST(test_cancel_early_and_free),
		TEST(test_cached_while_trickling),
		TEST(test_declared_sizes),
		TEST(test_decompression_bomb),
		TEST(test_disk_fills),
		TEST(test_s3_no_external_decompressor),
		TEST(test_error_body_sanitised),
		TEST(test_loopback_registry_may_redirect_inwards),
		TEST(test_public_registry_no_inward_redirect),
	};
	int r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	src_dir = getenv("MVMFS_SRCDIR");
	snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/mvmfs-imgbounds-XXXXXX");
	if (!src_dir || !mkdtemp(tmp_dir)) {
		printf("1..0 # SKIP no MVMFS_SRCDIR or temp dir\n");
		return 77;
	}
	if (system("python3 -c 'import http.server' 2>/dev/null") != 0) {
		printf("1..0 # SKIP python3 not available\n");
		(void)rm_rf(tmp_dir);
		return 77;
	}
	snprintf(fx_dir, sizeof(fx_dir), "%s/fx", tmp_dir);
	fx_pid = hostile_up(fx_dir, "127.0.0.1");
	if (fx_pid < 0) {
		printf("1..0\n# hostile registry failed to start\n");
		(void)rm_rf(tmp_dir);
		return 1;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	r = test_run(cases, ELEMENTSOF(cases));
	curl_global_cleanup();
	hostile_down(fx_pid);
	(void)rm_rf(tmp_dir);
	return r;
}
