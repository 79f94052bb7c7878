/* SPDX-License-Identifier: MIT */
/*
 * The image store end to end against a real docker-registry (registry-fixture.py plus the
 * extra images of store-fixture.py): pull + unpack + root disk, cache hits without network,
 * coalesced concurrent pulls, multi-platform digests, GC with held images across restarts,
 * and the errors a VM's error file shows.
 */
#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "build.h"
#include "fileio.h"
#include "fixture.h"
#include "test.h"

static char tmp_dir[128];

static const char *ref(const char *repo_tag)
{
	static char buf[4][512];
	static int slot;
	char *b = buf[slot++ % 4];

	snprintf(b, 512, "127.0.0.1:%s/%s", fx("PORT_ANON"), repo_tag);
	return b;
}

struct st {
	char state[512], insecure_entry[64], insecure_basic[64];
	const char *insecure[3];
	struct img_store_config cfg;
	struct img_store *store;
};

static void st_open(struct st *s, const char *state, uint64_t keep)
{
	struct err err = {0};

	*s = (struct st){0};
	if (state) {
		snprintf(s->state, sizeof(s->state), "%s", state);
	} else {
		snprintf(s->state, sizeof(s->state), "%s/state.XXXXXX", tmp_dir);
		ASSERT_TRUE(mkdtemp(s->state) != NULL);
	}
	snprintf(s->insecure_entry, sizeof(s->insecure_entry), "127.0.0.1:%s", fx("PORT_ANON"));
	s->insecure[0] = s->insecure_entry;
	snprintf(s->insecure_basic, sizeof(s->insecure_basic), "127.0.0.1:%s", fx("PORT_BASIC"));
	s->insecure[1] = s->insecure_basic;
	s->cfg = (struct img_store_config){.state_dir = s->state,
					   .insecure = s->insecure,
					   .docker_config = "/nonexistent",
					   .keep_bytes = keep};
	if (img_store_new(&s->cfg, &s->store, &err) < 0)
		TEST_FAIL("store: %s", err.msg);
}

static void st_close(struct st *s)
{
	s->store = img_store_free(s->store);
}

struct seen {
	bool pulling, unpacking, building, ready;
	unsigned layers_total;
	uint64_t last_done, last_total;
};

static void on_progress(void *ud, const struct img_progress *p)
{
	struct seen *s = ud;

	if (strcmp(p->phase, "pulling") == 0) {
		s->pulling = true;
		s->last_done = p->bytes_done;
		s->last_total = p->bytes_total;
		s->layers_total = p->layers_total;
	} else if (strcmp(p->phase, "unpacking") == 0) {
		s->unpacking = true;
	} else if (strcmp(p->phase, "building disk") == 0) {
		s->building = true;
		s->last_done = p->bytes_done;
	} else if (strcmp(p->phase, "ready") == 0) {
		s->ready = true;
	}
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static char *debugfs(const char *disk, const char *req)
{
	char cmd[9000];
	FILE *p;
	char *buf = calloc(1, 65536);

	snprintf(cmd, sizeof(cmd), "PATH=$PATH:/usr/sbin debugfs -R '%s' '%s' 2>/dev/null", req,
		 disk);
	p = popen(cmd, "r");
	ASSERT_TRUE(p && buf);
	buf[fread(buf, 1, 65535, p)] = '\0';
	pclose(p);
	return buf;
}

static void prepare_ok(struct st *s, const char *r, const char *holder, struct img_prepared *ret)
{
	struct err err = {0};

	if (img_prepare(s->store, r, holder, NULL, NULL, NULL, ret, &err) < 0)
		TEST_FAIL("prepare %s: %s", r, err.msg);
}

static void test_prepare_end_to_end(void)
{
	struct st s;
	struct img_prepared p;
	struct err err = {0};
	struct seen seen = {0};
	_cleanup_free_ char *cfg = NULL;
	char *out;

	st_open(&s, NULL, 0);
	if (img_prepare(s.store, ref("test/simple:1"), "vm1", on_progress, &seen, NULL, &p, &err) <
	    0)
		TEST_FAIL("prepare: %s", err.msg);
	ASSERT_STREQ(p.digest, fx("SIMPLE_DIGEST"));
	ASSERT_TRUE(seen.pulling && seen.unpacking && seen.building && seen.ready);
	ASSERT_EQ(seen.layers_total, 2);
	ASSERT_TRUE(seen.last_total > 0);
	ASSERT_EQ(seen.last_done, seen.last_total);
	ASSERT_TRUE(strstr(p.rootfs, s.state) == p.rootfs);
	ASSERT_OK(read_file_bounded(p.config, 4096, &cfg, NULL));
	ASSERT_STREQ(cfg, "{\"entrypoint\":[],\"cmd\":[\"/bin/sh\"],\"env\":[\"PATH=/bin\"],"
			  "\"workdir\":\"\",\"user\":\"\",\"volumes\":[]}");
	/* The disk holds both layers (checked with debugfs: no loop mount needed). */
	out = debugfs(p.rootfs, "cat /etc/hello");
	ASSERT_STREQ(out, "hello\n");
	free(out);
	out = debugfs(p.rootfs, "ls -l /etc");
	ASSERT_TRUE(strstr(out, "world") != NULL);
	free(out);
	ASSERT_EQ(img_store_pulls(s.store), 1);
	st_close(&s);
}

static void test_cache_hit(void)
{
	struct st s;
	struct img_prepared p, q;
	struct timespec t0;
	struct stat sb;
	char offline[512];
	double tag_ms, dig_ms;

	st_open(&s, NULL, 0);
	prepare_ok(&s, ref("test/simple:1"), "vm1", &p);
	ASSERT_OK(stat(p.rootfs, &sb));
	ASSERT_EQ((uint64_t)sb.st_size, IMG_ROOT_DISK_ALIGN);
	/* A root disk as an older version left it in the cache: the file as long as its file
	 * system. The next prepare pads it. */
	{
		char *out = debugfs(p.rootfs, "stats");
		const char *bc = strstr(out, "Block count:");

		ASSERT_TRUE(bc != NULL);
		ASSERT_OK(truncate(p.rootfs, (off_t)strtoull(bc + 12, NULL, 10) * 4096));
		free(out);
	}
	ASSERT_OK(stat(p.rootfs, &sb));
	ASSERT_TRUE((uint64_t)sb.st_size < IMG_ROOT_DISK_ALIGN);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	prepare_ok(&s, ref("test/simple:1"), "vm2", &q);
	tag_ms = ms_since(&t0);
	ASSERT_STREQ(q.digest, p.digest);
	ASSERT_STREQ(q.rootfs, p.rootfs);
	ASSERT_OK(stat(p.rootfs, &sb));
	ASSERT_EQ((uint64_t)sb.st_size, IMG_ROOT_DISK_ALIGN);
	{
		char *out = debugfs(p.rootfs, "cat /etc/hello");

		ASSERT_STREQ(out, "hello\n");
		free(out);
	}
	/* A digest reference must not touch the network: port 1 has no registry. */
	snprintf(offline, sizeof(offline), "127.0.0.1:1/test/simple@%s", p.digest);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	prepare_ok(&s, offline, "vm3", &q);
	dig_ms = ms_since(&t0);
	ASSERT_STREQ(q.rootfs, p.rootfs);
	ASSERT_EQ(img_store_pulls(s.store), 1);
	printf("# cache hit: tag %.2f ms (manifest GET), digest %.2f ms (no network)\n", tag_ms,
	       dig_ms);
	ASSERT_TRUE(dig_ms < 50);
	st_close(&s);
}

struct racer {
	struct img_store *store;
	const char *ref;
	char holder[16];
	struct img_prepared p;
	struct err err;
	int r;
	struct seen seen;
};

static void *race(void *ud)
{
	struct racer *r = ud;

	r->r = img_prepare(r->store, r->ref, r->holder, on_progress, &r->seen, NULL, &r->p,
			   &r->err);
	return NULL;
}

/* Blob GETs the anonymous registry has served for repo (its access log). */
static int blob_gets(const char *repo)
{
	char path[1024], line[4096], needle[256];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "%s/anon/registry.log", fx_dir);
	snprintf(needle, sizeof(needle), "\"GET /v2/%s/blobs/sha256:", repo);
	f = fopen(path, "re");
	ASSERT_TRUE(f != NULL);
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			n++;
	fclose(f);
	return n;
}

static void test_concurrent_coalesce(void)
{
	struct st s;
	struct racer r[4];
	pthread_t t[4];

	int gets;

	st_open(&s, NULL, 0);
	gets = blob_gets("test/mixed");
	for (int i = 0; i < 4; i++) {
		r[i] = (struct racer){.store = s.store, .ref = ref("test/mixed:1")};
		snprintf(r[i].holder, sizeof(r[i].holder), "vm%d", i);
		ASSERT_EQ(pthread_create(&t[i], NULL, race, &r[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(pthread_join(t[i], NULL), 0);
		if (r[i].r < 0)
			TEST_FAIL("racer %d: %s", i, r[i].err.msg);
		ASSERT_STREQ(r[i].p.digest, fx("MIXED_DIGEST"));
	}
	/* Waiters see the puller's progress too (at least one of the three joined in time). */
	{
		int building = 0;
		for (int i = 0; i < 4; i++)
			building += r[i].seen.building && r[i].seen.ready;
		printf("# %d of 4 racers saw the build's progress\n", building);
		ASSERT_TRUE(building >= 2);
	}
	/* One pull ran; the others waited for it: config + 2 layers fetched once. */
	ASSERT_EQ(img_store_pulls(s.store), 1);
	usleep(100 * 1000); /* the registry writes its access log after the response */
	ASSERT_EQ(blob_gets("test/mixed") - gets, 3);
	st_close(&s);
}

static void test_multi_platform_digest(void)
{
	struct st s;
	struct img_prepared p;
	char r[512], offline[512];
	char *out;

	st_open(&s, NULL, 0);
	snprintf(r, sizeof(r), "%s@%s", ref("test/multi"), fx("MULTI_DIGEST"));
	prepare_ok(&s, r, "vm1", &p);
	ASSERT_STREQ(p.digest, fx("AMD64_DIGEST"));
	out = debugfs(p.rootfs, "cat /arch");
	ASSERT_STREQ(out, "amd64\n");
	free(out);
	/* The index digest is remembered: no network the second time. */
	snprintf(offline, sizeof(offline), "127.0.0.1:1/test/multi@%s", fx("MULTI_DIGEST"));
	prepare_ok(&s, offline, "vm2", &p);
	ASSERT_STREQ(p.digest, fx("AMD64_DIGEST"));
	ASSERT_EQ(img_store_pulls(s.store), 1);
	st_close(&s);
}

static int count_dir(const char *state, const char *sub)
{
	char p[1024];
	DIR *d;
	struct dirent *de;
	int n = 0;

	snprintf(p, sizeof(p), "%s/images/%s", state, sub);
	d = opendir(p);
	ASSERT_TRUE(d != NULL);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static bool image_dir(const char *state, const char *digest)
{
	char p[10000];

	snprintf(p, sizeof(p), "%s/images/images/%s", state, digest + 7);
	return access(p, F_OK) == 0;
}

static void test_gc_holders(void)
{
	struct st s;
	struct img_prepared a, b;
	char state[512];
	int blobs_all;

	st_open(&s, NULL, 0);
	snprintf(state, sizeof(state), "%s", s.state);
	prepare_ok(&s, ref("test/simple:1"), "vm1", &a);
	prepare_ok(&s, ref("test/mixed:1"), "vm2", &b);
	blobs_all = count_dir(state, "blobs/sha256");
	ASSERT_EQ(blobs_all, 6);       /* two configs, four layers */
	ASSERT_EQ(img_gc(s.store), 0); /* both held */
	ASSERT_TRUE(image_dir(state, a.digest) && image_dir(state, b.digest));

	ASSERT_OK(img_release(s.store, "vm2"));
	ASSERT_TRUE(img_gc(s.store) > 0);
	ASSERT_TRUE(image_dir(state, a.digest));
	ASSERT_FALSE(image_dir(state, b.digest));
	ASSERT_EQ(count_dir(state, "blobs/sha256"), 3); /* mixed's blobs went with it */

	/* References survive a restart of the daemon. */
	st_close(&s);
	st_open(&s, state, 0);
	ASSERT_EQ(img_gc(s.store), 0);
	ASSERT_TRUE(image_dir(state, a.digest));

	/* A holder's new image replaces its old reference. */
	prepare_ok(&s, ref("test/mixed:1"), "vm1", &b);
	ASSERT_TRUE(img_gc(s.store) > 0);
	ASSERT_FALSE(image_dir(state, a.digest));
	ASSERT_TRUE(image_dir(state, b.digest));

	/* keep_bytes keeps unheld images around as a cache. */
	st_close(&s);
	st_open(&s, state, 1ULL << 30);
	ASSERT_OK(img_release(s.store, "vm1"));
	ASSERT_EQ(img_gc(s.store), 0);
	ASSERT_TRUE(image_dir(state, b.digest));
	st_close(&s);
	st_open(&s, state, 0);
	ASSERT_TRUE(img_gc(s.store) > 0);
	ASSERT_FALSE(image_dir(state, b.digest));
	ASSERT_EQ(count_dir(state, "blobs/sha256"), 0);
	ASSERT_EQ(count_dir(state, "images"), 0);
	st_close(&s);
}

struct gc_race {
	struct img_store *store;
	sem_t in_pull, gc_done;
	bool paused;
	struct img_prepared p;
	struct err err;
	int r;
};

/* Pauses the pull once its first layer is unpacked, until the main thread has run GC. */
static void pause_in_pull(void *ud, const struct img_progress *p)
{
	struct gc_race *g = ud;

	if (!g->paused && p->layers_done >= 1) {
		g->paused = true;
		sem_post(&g->in_pull);
		while (sem_wait(&g->gc_done) < 0)
			;
	}
}

static void *gc_race_pull(void *ud)
{
	struct gc_race *g = ud;

	g->r = img_prepare(g->store, ref("test/simple:1"), NULL, pause_in_pull, g, NULL, &g->p,
			   &g->err);
	if (!g->paused)
		sem_post(&g->in_pull);
	return NULL;
}

/* GC while a pull is half way: the pull's blobs and build directory survive. */
static void test_gc_during_pull(void)
{
	struct st s;
	struct gc_race g = {0};
	pthread_t t;
	int64_t freed;

	st_open(&s, NULL, 0);
	g.store = s.store;
	sem_init(&g.in_pull, 0, 0);
	sem_init(&g.gc_done, 0, 0);
	ASSERT_EQ(pthread_create(&t, NULL, gc_race_pull, &g), 0);
	while (sem_wait(&g.in_pull) < 0)
		;
	ASSERT_TRUE(g.paused);
	freed = img_gc(s.store);
	ASSERT_EQ(count_dir(s.state, "tmp"), 1);
	sem_post(&g.gc_done);
	ASSERT_EQ(pthread_join(t, NULL), 0);
	if (g.r < 0)
		TEST_FAIL("pull after GC: %s", g.err.msg);
	ASSERT_EQ(freed, 0);
	ASSERT_EQ(count_dir(s.state, "blobs/sha256"), 3);
	ASSERT_TRUE(image_dir(s.state, g.p.digest));
	/* Unheld (no holder) and keep_bytes 0: the next GC takes it. */
	ASSERT_TRUE(img_gc(s.store) > 0);
	ASSERT_FALSE(image_dir(s.state, g.p.digest));
	st_close(&s);
}

/* A tag that resolved once still starts while its registry is down (from the cache). */
static void test_registry_down_cached_tag(void)
{
	struct st s;
	struct img_prepared p, q;
	struct err err = {0};
	char d[1024], cmd[4096], r[256];
	int port;
	pid_t pid;

	snprintf(d, sizeof(d), "%s/own.XXXXXX", tmp_dir);
	ASSERT_TRUE(mkdtemp(d) != NULL);
	snprintf(cmd, sizeof(cmd),
		 "python3 -c 'import socket; s=socket.socket(); "
		 "s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1])' > %s/port",
		 d);
	ASSERT_EQ(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s/port", d);
	{
		_cleanup_free_ char *buf = NULL;
		ASSERT_OK(read_file_bounded(cmd, 32, &buf, NULL));
		port = atoi(buf);
	}
	snprintf(cmd, sizeof(cmd),
		 "printf 'version: 0.1\\nlog: { level: warn }\\nstorage: { filesystem: { "
		 "rootdirectory: %s/data } }\\nhttp: { addr: 127.0.0.1:%d }\\n' > %s/r.yml",
		 d, port, d);
	ASSERT_EQ(system(cmd), 0);
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		int fd;

		snprintf(cmd, sizeof(cmd), "%s/registry.log", d);
		fd = open(cmd, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(127);
		snprintf(cmd, sizeof(cmd), "%s/r.yml", d);
		execlp("docker-registry", "docker-registry", "serve", cmd, (char *)NULL);
		_exit(127);
	}
	snprintf(cmd, sizeof(cmd),
		 "for i in $(seq 100); do curl -sf http://127.0.0.1:%d/v2/ >/dev/null && break; "
		 "sleep 0.05; done; skopeo copy --quiet --dest-tls-verify=false oci:%s/layouts/"
		 "simple:1 docker://127.0.0.1:%d/own/simple:1 >/dev/null",
		 port, fx_dir, port);
	ASSERT_EQ(system(cmd), 0);

	/* A store that treats this registry as plain HTTP. */
	st_open(&s, NULL, 0);
	st_close(&s);
	{
		char ins0[64];
		const char *ins[2] = {ins0, NULL};
		struct img_store_config cfg = {
			.state_dir = s.state, .insecure = ins, .docker_config = "/nonexistent"};
		snprintf(ins0, sizeof(ins0), "127.0.0.1:%d", port);
		if (img_store_new(&cfg, &s.store, &err) < 0)
			TEST_FAIL("store: %s", err.msg);
	}
	snprintf(r, sizeof(r), "127.0.0.1:%d/own/simple:1", port);
	prepare_ok(&s, r, "vm1", &p);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	if (img_prepare(s.store, r, "vm2", NULL, NULL, NULL, &q, &err) < 0)
		TEST_FAIL("cached tag with registry down: %s", err.msg);
	ASSERT_STREQ(q.digest, p.digest);
	ASSERT_EQ(img_store_pulls(s.store), 1);
	/* An unknown tag on the dead registry still fails cleanly. */
	snprintf(r, sizeof(r), "127.0.0.1:%d/own/other:1", port);
	ASSERT_TRUE(img_prepare(s.store, r, "vm3", NULL, NULL, NULL, &q, &err) < 0);
	ASSERT_TRUE(err.msg[0] != '\0');
	st_close(&s);
}

static void expect_fail(const char *r, int code, const char *needle)
{
	struct st s;
	struct img_prepared p;
	struct err err = {0};
	int rc;

	st_open(&s, NULL, 0);
	rc = img_prepare(s.store, r, "vm1", NULL, NULL, NULL, &p, &err);
	printf("# %s -> %d: %s\n", r, rc, err.msg);
	if (code ? rc != -code : rc >= 0)
		TEST_FAIL("%s: expected %s, got %d (%s)", r, code ? strerror(code) : "failure", rc,
			  err.msg);
	ASSERT_TRUE(err.msg[0] != '\0');
	if (needle && !strstr(err.msg, needle))
		TEST_FAIL("message lacks '%s': %s", needle, err.msg);
	/* Nothing half-built is left behind, and no reference was taken. */
	ASSERT_EQ(count_dir(s.state, "images"), 0);
	ASSERT_EQ(count_dir(s.state, "tmp"), 0);
	ASSERT_EQ(count_dir(s.state, "refs/holders"), 0);
	st_close(&s);
}

/* A state directory on a full filesystem: -ENOSPC, "disk full", nothing left behind. */
static void test_disk_full(void)
{
	struct st s;
	struct img_prepared p;
	struct err err = {0};
	char mnt[1024], cmd[2048];
	int r;

	if (geteuid() != 0)
		test_skip("needs root to mount a small tmpfs");
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		test_skip("cannot make a private mount namespace");
	snprintf(mnt, sizeof(mnt), "%s/full.XXXXXX", tmp_dir);
	ASSERT_TRUE(mkdtemp(mnt) != NULL);
	ASSERT_OK(mount("tmpfs", mnt, "tmpfs", 0, "size=64k"));
	st_open(&s, mnt, 0);
	r = img_prepare(s.store, ref("test/simple:1"), "vm1", NULL, NULL, NULL, &p, &err);
	printf("# %d: %s\n", r, err.msg);
	ASSERT_ERRNO(r, ENOSPC);
	ASSERT_TRUE(strstr(err.msg, "disk full") || strstr(err.msg, "No space left"));
	ASSERT_EQ(count_dir(s.state, "images"), 0);
	ASSERT_EQ(count_dir(s.state, "tmp"), 0);
	ASSERT_EQ(count_dir(s.state, "refs/holders"), 0);
	st_close(&s);
	snprintf(cmd, sizeof(cmd), "%s", mnt);
	(void)umount2(cmd, MNT_DETACH);
}

static void test_errors(void)
{
	char r[512];

	expect_fail(ref("test/nope:1"), ENOENT, NULL);
	expect_fail("127.0.0.1:1/test/simple:1", 0, NULL);
	snprintf(r, sizeof(r), "%s", ref("test/hostile:1"));
	expect_fail(r, ELOOP, "evil/etc/pwned");
	ASSERT_FALSE(access("/etc/pwned", F_OK) == 0);
	expect_fail(ref("test/baddiff:1"), EBADMSG, "digest mismatch");
	expect_fail("Not A Reference!", EINVAL, NULL);
	/* htpasswd registry, no credentials configured. */
	snprintf(r, sizeof(r), "127.0.0.1:%s/test/simple:1", fx("PORT_BASIC"));
	expect_fail(r, EACCES, NULL);
}

int main(void)
{
	static const struct test_case cases[] = {
		TEST(test_prepare_end_to_end),
		TEST(test_cache_hit),
		TEST(test_concurrent_coalesce),
		TEST(test_multi_platform_digest),
		TEST(test_gc_holders),
		TEST(test_gc_during_pull),
		TEST(test_registry_down_cached_tag),
		TEST(test_disk_full),
		TEST(test_errors),
	};
	const char *src = getenv("MVMFS_SRCDIR");
	char cmd[2048];
	int r, st;

	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/mvmfs-imgstore-XXXXXX");
	if (!src || !mkdtemp(tmp_dir)) {
		printf("1..0 # SKIP no MVMFS_SRCDIR or temp dir\n");
		return 77;
	}
	r = fx_up(src, tmp_dir, "up", "", "registry fixture",
		  "registry fixture unavailable (docker-registry/skopeo)");
	if (r != 0) {
		(void)rm_rf(tmp_dir);
		return r;
	}
	snprintf(cmd, sizeof(cmd),
		 "python3 %s/tests/image/store-fixture.py push $(sed -n 's/^PORT_ANON=//p' "
		 "%s/env) %s/extra >> %s/env",
		 src, fx_dir, tmp_dir, fx_dir);
	st = system(cmd);
	if (st == 0) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		r = test_run(cases, ELEMENTSOF(cases));
		curl_global_cleanup();
	} else {
		printf("1..0\n# store fixture failed\n");
		r = 1;
	}
	fx_down(src);
	(void)rm_rf(tmp_dir);
	return r;
}
