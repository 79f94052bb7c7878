/* SPDX-License-Identifier: MIT */
/* Removal of old booted templates (template_gc, docs/template.md) on real directories in a
 * temporary state dir: what goes (other node-wide inputs, no inputs, no state.sum, inputs not of
 * the key, unfinished builds, leftovers of a removal) and what stays (the current inputs, other
 * root sizes, a build in progress, a template a start holds, files not of templates). The
 * templates are made as the build job makes them (template_plan finds none, template_build_begin
 * takes its build dir), their files written as template_capture writes them. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "internal.h"
#include "log.h"
#include "macro.h"
#include "test.h"

static char D[] = "/tmp/test-template-gc-XXXXXX";
static char state[128], kernel[128], initrd[128], root1[128], root2[128], data1[128], data2[128],
	tdir[256];

static void write_str(const char *path, const char *s)
{
	ASSERT_OK(write_file_atomic(path, s, strlen(s), 0600));
}

static void sized(const char *path, off_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(ftruncate(fd, size));
	close(fd);
}

static void setup(struct runtime *rt)
{
	ASSERT_TRUE(mkdtemp(D) != NULL);
	snprintf(state, sizeof(state), "%s/state", D);
	snprintf(kernel, sizeof(kernel), "%s/vmlinux", D);
	snprintf(initrd, sizeof(initrd), "%s/initrd", D);
	snprintf(root1, sizeof(root1), "%s/root1.ext4", D);
	snprintf(root2, sizeof(root2), "%s/root2.ext4", D);
	snprintf(data1, sizeof(data1), "%s/data1.ext4", D);
	snprintf(data2, sizeof(data2), "%s/data2.ext4", D);
	snprintf(tdir, sizeof(tdir), "%s/templates", state);
	ASSERT_OK(mkdir(state, 0700));
	write_str(kernel, "a kernel");
	write_str(initrd, "an initramfs");
	sized(root1, 1LL << 30);
	sized(root2, 2LL << 30);
	sized(data1, 1LL << 30);
	sized(data2, 2LL << 30);
	*rt = (struct runtime){.ops = &vmm_qemu_ops};
	rt->cfg.state_dir = state;
	rt->cfg.kernel = kernel;
	rt->cfg.initrd = initrd;
	rt->cfg.vcpus = 2;
	rt->cfg.mem_mib = 2048;
	rt->cfg.data_disk_bytes = 1ULL << 30;
}

/* A template as the build job makes it: none planned, its build dir taken (BUILD, held), its
 * files written, published, released. Its path into ret. */
static void make_template(struct runtime *rt, const char *root, const char *data, char *ret,
			  size_t size)
{
	struct tpl_plan t;
	char p[4600];

	struct stat rs, ds;

	template_plan(rt, root, data, 0, true, &t);
	if (t.mode != TPL_NONE)
		TEST_FAIL("plan: mode %d (%s)", t.mode, t.why);
	/* A build is asked for the node's writable disk size only (template_gc would remove
	 * another's); the build job makes one of any layout. */
	ASSERT_OK(stat(root, &rs));
	ASSERT_OK(stat(data, &ds));
	if ((unsigned long long)ds.st_size == rt->cfg.data_disk_bytes) {
		ASSERT_TRUE(t.build);
		ASSERT_STREQ(t.why, "none yet for this layout, building it in the background");
	} else {
		ASSERT_FALSE(t.build);
	}
	ASSERT_OK(template_key(rt, (long long)rs.st_size, (long long)ds.st_size, &t));
	ASSERT_OK(template_build_begin(&t));
	ASSERT_EQ(t.mode, TPL_BUILD);
	/* One build per key: a second one finds it being built. */
	{
		struct tpl_plan t2;

		template_plan(rt, root, data, 0, true, &t2);
		ASSERT_EQ(template_build_begin(&t2), -EBUSY);
		ASSERT_FALSE(t2.held);
	}
	ASSERT_TRUE(t.held);
	snprintf(p, sizeof(p), "%s/state", t.dir);
	write_str(p, "saved device state");
	snprintf(p, sizeof(p), "%s/ram", t.dir);
	sized(p, 64 << 20);
	ASSERT_OK(template_write_inputs(&t));
	snprintf(p, sizeof(p), "%s/state.sum", t.dir);
	write_str(p, "0000\n");
	ASSERT_OK(rename(t.dir, t.final));
	template_release(&t);
	ASSERT_FALSE(t.held);
	snprintf(ret, size, "%s", t.final);
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* A directory named like a template with the given files ("" content: file left out). */
static void fake_dir(const char *name, const char *inputs, bool sum, char *ret, size_t size)
{
	char p[4600];

	snprintf(ret, size, "%s/%s", tdir, name);
	ASSERT_OK(mkdir(ret, 0700));
	snprintf(p, sizeof(p), "%s/state", ret);
	write_str(p, "state");
	if (inputs) {
		snprintf(p, sizeof(p), "%s/inputs", ret);
		write_str(p, inputs);
	}
	if (sum) {
		snprintf(p, sizeof(p), "%s/state.sum", ret);
		write_str(p, "0000\n");
	}
}

static void age(const char *path, time_t seconds)
{
	struct timespec ts[2];

	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[0].tv_sec -= seconds;
	ts[1] = ts[0];
	ASSERT_OK(utimensat(AT_FDCWD, path, ts, 0));
}

static void test_gc(void)
{
	struct runtime rt;
	struct tpl_plan use, building;
	char cur[4400], root_other[4400], vcpus_other[4400], data_other[4400], old[4400],
		nosum[4400], notkey[4400], stale[4400], gone[4400], readme[4400], p[4600];
	_cleanup_free_ char *cur_inputs = NULL;

	setup(&rt);
	ASSERT_EQ(template_gc(&rt), 0); /* no templates dir yet */
	make_template(&rt, root1, data1, cur, sizeof(cur));
	make_template(&rt, root2, data1, root_other, sizeof(root_other));
	rt.cfg.vcpus = 4;
	make_template(&rt, root1, data1, vcpus_other, sizeof(vcpus_other));
	rt.cfg.vcpus = 2;
	make_template(&rt, root1, data2, data_other, sizeof(data_other));
	ASSERT_TRUE(strcmp(cur, root_other) != 0);
	snprintf(p, sizeof(p), "%s/inputs", cur);
	ASSERT_OK(read_file_bounded(p, 4096, &cur_inputs, NULL));
	ASSERT_TRUE(strstr(cur_inputs, "vcpus 2\nmem 2048\nbackend qemu\n") != NULL);

	fake_dir("0123456789abcdef", NULL, true, old, sizeof(old));
	fake_dir("fedcba9876543210", cur_inputs, false, nosum, sizeof(nosum));
	fake_dir("aaaaaaaaaaaaaaaa", cur_inputs, true, notkey, sizeof(notkey));
	fake_dir("bbbbbbbbbbbbbbbb.build", NULL, false, stale, sizeof(stale));
	age(stale, 3600);
	fake_dir(".gone.cccccccccccccccc", NULL, false, gone, sizeof(gone));
	snprintf(readme, sizeof(readme), "%s/README", tdir);
	write_str(readme, "not a template");

	/* A start from the template of the other writable disk size holds it. */
	template_plan(&rt, root1, data2, 0, true, &use);
	ASSERT_EQ(use.mode, TPL_USE);
	ASSERT_STREQ(use.dir, data_other);
	/* A build of a template (memory 512 MiB) holds its build dir, whatever its age. */
	rt.cfg.mem_mib = 512;
	ASSERT_OK(template_key(&rt, 1LL << 30, 1LL << 30, &building));
	ASSERT_OK(template_build_begin(&building));
	ASSERT_EQ(building.mode, TPL_BUILD);
	rt.cfg.mem_mib = 2048;
	age(building.dir, 3600);

	ASSERT_EQ(template_gc(&rt), 6);
	ASSERT_TRUE(exists(cur));
	ASSERT_TRUE(exists(root_other)); /* root sizes are per image, not node-wide */
	ASSERT_FALSE(exists(vcpus_other));
	ASSERT_TRUE(exists(data_other)); /* in use */
	ASSERT_FALSE(exists(old));
	ASSERT_FALSE(exists(nosum));
	ASSERT_FALSE(exists(notkey));
	ASSERT_FALSE(exists(stale));
	ASSERT_TRUE(exists(building.dir));
	ASSERT_FALSE(exists(gone));
	ASSERT_TRUE(exists(readme));
	/* The start that used it is done: it goes at the next pass. The one it started from was
	 * staged already, so the start is not hurt. */
	template_release(&use);
	ASSERT_EQ(template_gc(&rt), 1);
	ASSERT_FALSE(exists(data_other));
	ASSERT_EQ(template_gc(&rt), 0);
	template_abandon(&building);
	ASSERT_FALSE(exists(building.dir));
	ASSERT_FALSE(building.held);
	/* Nothing left half removed. */
	snprintf(p, sizeof(p), "%s/.gone.%s", tdir, strrchr(data_other, '/') + 1);
	ASSERT_FALSE(exists(p));

	/* The same kernel copied anew (another inode and mtime, the same content): the same key,
	 * nothing goes. */
	snprintf(p, sizeof(p), "%s.new", kernel);
	write_str(p, "a kernel");
	age(p, 60);
	ASSERT_OK(rename(p, kernel));
	ASSERT_EQ(template_gc(&rt), 0);
	ASSERT_TRUE(exists(cur));
	/* A new kernel: every template of the old one goes. */
	write_str(kernel, "another kernel");
	ASSERT_EQ(template_gc(&rt), 2);
	ASSERT_FALSE(exists(cur));
	ASSERT_FALSE(exists(root_other));
	ASSERT_TRUE(exists(readme));
	(void)rm_rf(D);
}

/* The node's kernel cannot be read: only broken templates go, the others stay. */
static void test_gc_no_kernel(void)
{
	struct runtime rt;
	char cur[4400], old[4400];

	setup(&rt);
	make_template(&rt, root1, data1, cur, sizeof(cur));
	fake_dir("0123456789abcdef", NULL, true, old, sizeof(old));
	rt.cfg.kernel = "/nonexistent/vmlinux";
	ASSERT_EQ(template_gc(&rt), 1);
	ASSERT_TRUE(exists(cur));
	ASSERT_FALSE(exists(old));
	(void)rm_rf(D);
}

/* A start finds a template while it is being removed (locked exclusively): a cold boot, and
 * the template is not touched by the start. A fresh build dir (its start locks it within
 * microseconds) is left alone even when nobody holds it yet. */
static void test_plan_during_removal(void)
{
	struct runtime rt;
	struct tpl_plan t;
	char cur[4400], fresh[4400];
	int fd;

	setup(&rt);
	make_template(&rt, root1, data1, cur, sizeof(cur));
	fd = open(cur, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(flock(fd, LOCK_EX | LOCK_NB));
	template_plan(&rt, root1, data1, 0, true, &t);
	ASSERT_EQ(t.mode, TPL_NONE);
	ASSERT_STREQ(t.why, "being removed");
	ASSERT_FALSE(t.held);
	close(fd);
	template_plan(&rt, root1, data1, 0, true, &t);
	ASSERT_EQ(t.mode, TPL_USE);
	/* The template, held, cannot be taken exclusively. */
	fd = open(cur, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_SYSERR(flock(fd, LOCK_EX | LOCK_NB), EWOULDBLOCK);
	close(fd);
	template_release(&t);
	template_release(&t); /* idempotent */

	fake_dir("dddddddddddddddd.build", NULL, false, fresh, sizeof(fresh));
	ASSERT_EQ(template_gc(&rt), 0);
	ASSERT_TRUE(exists(fresh));
	(void)rm_rf(D);
}

/* Starts and removals at once: a start from the template of another writable disk size (one
 * template_gc removes whenever nobody holds it) in one thread, template_gc in a loop in another.
 * While a start holds its template, every file of it is there; the start either uses it or
 * cold-boots ("being removed", "none yet": then a build, as the build job's, makes it anew). */
struct race {
	struct runtime *rt;
	atomic_bool stop;
	int uses, builds, colds, removed, broken;
};

static void *gc_loop(void *ud)
{
	struct race *r = ud;

	while (!atomic_load(&r->stop)) {
		int n = template_gc(r->rt);

		if (n > 0)
			r->removed += n;
	}
	return NULL;
}

static void test_gc_races_starts(void)
{
	struct runtime rt;
	struct race r = {.rt = &rt};
	pthread_t th;
	struct timespec t0, t;

	setup(&rt);
	log_set_max_level(LOG_WARNING);
	ASSERT_EQ(pthread_create(&th, NULL, gc_loop, &r), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		struct tpl_plan tp;
		char p[4600];

		template_plan(&rt, root1, data2, 0, true, &tp);
		if (tp.mode == TPL_USE) {
			/* What template_stage and the VMM read, while held. */
			static const char *const files[] = {"state", "state.sum", "ram", "inputs"};

			ASSERT_TRUE(tp.held);
			for (size_t i = 0; i < ELEMENTSOF(files); i++) {
				snprintf(p, sizeof(p), "%s/%s", tp.dir, files[i]);
				if (access(p, R_OK) < 0)
					r.broken++;
			}
			r.uses++;
			template_release(&tp);
		} else if (template_key(&rt, 1LL << 30, 2LL << 30, &tp) == 0 &&
			   template_build_begin(&tp) == 0) {
			snprintf(p, sizeof(p), "%s/state", tp.dir);
			write_str(p, "saved device state");
			snprintf(p, sizeof(p), "%s/ram", tp.dir);
			sized(p, 1 << 20);
			ASSERT_OK(template_write_inputs(&tp));
			snprintf(p, sizeof(p), "%s/state.sum", tp.dir);
			write_str(p, "0000\n");
			ASSERT_OK(rename(tp.dir, tp.final));
			r.builds++;
			template_release(&tp);
		} else {
			ASSERT_FALSE(tp.held);
			r.colds++;
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (t.tv_sec - t0.tv_sec < 2);
	atomic_store(&r.stop, true);
	ASSERT_EQ(pthread_join(th, NULL), 0);
	printf("# 2 s: %d starts from the template, %d builds, %d cold, %d removals\n", r.uses,
	       r.builds, r.colds, r.removed);
	ASSERT_EQ(r.broken, 0);
	ASSERT_TRUE(r.uses > 0 && r.builds > 1 && r.removed > 0);
	(void)rm_rf(D);
}

TEST_MAIN(TEST(test_gc), TEST(test_gc_no_kernel), TEST(test_plan_during_removal),
	  TEST(test_gc_races_starts))
