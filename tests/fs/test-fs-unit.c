/* SPDX-License-Identifier: MIT */
/* Unit tests of fs/ internals without a mount: the inode table (lookup counts, forget, inode
 * numbers never reused, references held on VMs), the attribute tables and the per-uid open
 * limits. VM objects come from the fake runtime. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

#include "fake-runtime.h"
#include "internal.h"
#include "test.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int done_result = 1;

static void on_done(void *ud, int result)
{
	(void)ud;
	pthread_mutex_lock(&lock);
	done_result = result;
	pthread_cond_signal(&cond);
	pthread_mutex_unlock(&lock);
}

static int wait_done(void)
{
	int r;

	pthread_mutex_lock(&lock);
	while (done_result == 1)
		pthread_cond_wait(&cond, &lock);
	r = done_result;
	done_result = 1;
	pthread_mutex_unlock(&lock);
	return r;
}

static struct runtime *new_runtime(void)
{
	struct runtime_config cfg = {.max_vms = 16};
	struct runtime *rt = NULL;
	struct err err = {};

	ASSERT_OK(runtime_new(&cfg, &rt, &err));
	ASSERT_OK(runtime_start(rt, &err));
	return rt;
}

static struct vm *define(struct runtime *rt, const char *name)
{
	ASSERT_OK(runtime_vm_create(rt, name, on_done, NULL));
	ASSERT_OK(wait_done());
	return runtime_vm_get(rt, name);
}

static void test_node_table_lookup_counts(void)
{
	struct runtime *rt = new_runtime();
	struct node_table *t = NULL;
	struct vm *a = define(rt, "a"), *b = define(rt, "b");
	fuse_ino_t i1, i2, i3, i4;
	uint64_t g;
	struct node_info ni;

	ASSERT_OK(node_table_new(&t));
	ASSERT_OK(node_table_get(t, NODE_VM_DIR, a, NULL, -1, &i1, &g));
	ASSERT_TRUE(i1 >= FS_INO_FIRST);
	ASSERT_OK(node_table_get(t, NODE_VM_DIR, a, NULL, -1, &i2, &g));
	ASSERT_EQ(i1, i2); /* same object, same inode, nlookup 2 */
	ASSERT_OK(node_table_get(t, NODE_VM_ATTR, a, NULL, 0, &i3, &g));
	ASSERT_OK(node_table_get(t, NODE_VM_DIR, b, NULL, -1, &i4, &g));
	ASSERT_NE(i3, i1);
	ASSERT_NE(i4, i1);
	ASSERT_EQ(node_table_count(t), 3);

	ASSERT_OK(node_table_resolve(t, i3, &ni));
	ASSERT_EQ(ni.kind, NODE_VM_ATTR);
	ASSERT_TRUE(ni.vm == a);
	ASSERT_STREQ(ni.attr->name, fs_vm_attrs[0].name);
	vm_unref(ni.vm);

	node_table_forget(t, i1, 1);
	ASSERT_OK(node_table_resolve(t, i1, &ni)); /* one lookup left */
	vm_unref(ni.vm);
	node_table_forget(t, i1, 1);
	ASSERT_ERRNO(node_table_resolve(t, i1, &ni), ENOENT);
	ASSERT_EQ(node_table_count(t), 2);
	/* a new node never gets an old number */
	ASSERT_OK(node_table_get(t, NODE_VM_DIR, a, NULL, -1, &i2, &g));
	ASSERT_TRUE(i2 > i4);
	/* forget more than looked up: the node goes, nothing underflows */
	node_table_forget(t, i3, 1000);
	ASSERT_ERRNO(node_table_resolve(t, i3, &ni), ENOENT);
	/* fixed inodes are never in the table and ignore forget */
	node_table_forget(t, FS_INO_VMS, 5);
	ASSERT_ERRNO(node_table_resolve(t, FS_INO_VMS, &ni), ENOENT);

	node_table_free(t);
	vm_unref(a);
	vm_unref(b);
	runtime_free(rt);
}

static void test_node_table_keeps_vm_alive(void)
{
	struct runtime *rt = new_runtime();
	struct node_table *t = NULL;
	struct vm *a = define(rt, "gone");
	struct node_info ni;
	fuse_ino_t ino;
	uint64_t g;

	ASSERT_OK(node_table_new(&t));
	ASSERT_OK(node_table_get(t, NODE_VM_ATTR, a, NULL, 1, &ino, &g));
	vm_unref(a);
	ASSERT_OK(runtime_vm_destroy(rt, "gone", on_done, NULL));
	ASSERT_OK(wait_done());
	ASSERT_TRUE(runtime_vm_get(rt, "gone") == NULL);
	/* the node still answers with the (dead) object until forget */
	ASSERT_OK(node_table_resolve(t, ino, &ni));
	ASSERT_STREQ(vm_name(ni.vm), "gone");
	vm_unref(ni.vm);
	node_table_forget(t, ino, 1);
	node_table_free(t);
	runtime_free(rt);
}

/* Volume nodes are keyed by kind and volume name too: volumes/, volumes/VOL and a file of a
 * volume never share an inode with the VM's own directory and files. */
static void test_node_table_volumes(void)
{
	struct runtime *rt = new_runtime();
	struct node_table *t = NULL;
	struct vm *a = define(rt, "a");
	fuse_ino_t dir, vols, x, x2, y, xf0, yf0, vf0;
	uint64_t g;
	struct node_info ni;

	ASSERT_OK(node_table_new(&t));
	ASSERT_OK(node_table_get(t, NODE_VM_DIR, a, NULL, -1, &dir, &g));
	ASSERT_OK(node_table_get(t, NODE_VOLS, a, NULL, -1, &vols, &g));
	ASSERT_OK(node_table_get(t, NODE_VOL_DIR, a, "x", -1, &x, &g));
	ASSERT_OK(node_table_get(t, NODE_VOL_DIR, a, "x", -1, &x2, &g));
	ASSERT_OK(node_table_get(t, NODE_VOL_DIR, a, "y", -1, &y, &g));
	ASSERT_OK(node_table_get(t, NODE_VOL_ATTR, a, "x", 0, &xf0, &g));
	ASSERT_OK(node_table_get(t, NODE_VOL_ATTR, a, "y", 0, &yf0, &g));
	ASSERT_OK(node_table_get(t, NODE_VM_ATTR, a, NULL, 0, &vf0, &g));
	ASSERT_EQ(x, x2);
	ASSERT_TRUE(dir != vols && vols != x && x != y && xf0 != yf0 && xf0 != vf0 && dir != x);
	ASSERT_EQ(node_table_count(t), 7);
	ASSERT_ERRNO(node_table_get(t, NODE_VOL_DIR, a, "abcdefghijklmnopqrstuvwxyz0123456", -1,
				    &x2, &g),
		     EINVAL);

	ASSERT_OK(node_table_resolve(t, yf0, &ni));
	ASSERT_EQ(ni.kind, NODE_VOL_ATTR);
	ASSERT_STREQ(ni.vol, "y");
	ASSERT_STREQ(ni.attr->name, fs_vol_attrs[0].name);
	vm_unref(ni.vm);
	ASSERT_OK(node_table_resolve(t, vf0, &ni));
	ASSERT_STREQ(ni.vol, "");
	ASSERT_STREQ(ni.attr->name, fs_vm_attrs[0].name);
	vm_unref(ni.vm);
	ASSERT_OK(node_table_resolve(t, vols, &ni));
	ASSERT_EQ(ni.kind, NODE_VOLS);
	ASSERT_TRUE(ni.attr == NULL);
	vm_unref(ni.vm);

	node_table_free(t);
	vm_unref(a);
	runtime_free(rt);
}

static void test_attribute_tables(void)
{
	bool seen[_VM_ATTR_MAX] = {};

	/* Every VM attribute, plus disk-usage (rendered by the volume part of the runtime). */
	ASSERT_EQ(fs_vm_attrs_count, (size_t)_VM_ATTR_MAX + 1);
	for (size_t i = 0; i < fs_vm_attrs_count; i++) {
		const struct fs_attr *a = &fs_vm_attrs[i];
		bool writable = a->mode & 0200;
		if (strcmp(a->name, "disk-usage") == 0) {
			ASSERT_EQ(a->vm_attr, -1);
			ASSERT_EQ(a->mode, 0444);
			ASSERT_FALSE(a->pollable);
			continue;
		}
		ASSERT_TRUE(a->vm_attr >= 0 && a->vm_attr < _VM_ATTR_MAX);
		ASSERT_FALSE(seen[a->vm_attr]);
		seen[a->vm_attr] = true;
		ASSERT_TRUE(a->show != NULL);
		/* root-owned; writable 0644, read-only 0444 */
		ASSERT_EQ(a->mode, writable ? 0644 : 0444);
		ASSERT_EQ(writable, a->store != NULL || a->deferred);
		ASSERT_EQ(a->pollable, a->vm_attr == VM_ATTR_STATE || a->vm_attr == VM_ATTR_HEALTH);
		ASSERT_EQ(fs_attr_find(fs_vm_attrs, fs_vm_attrs_count, a->name), (int)i);
	}
	ASSERT_TRUE(fs_vm_attrs[fs_attr_find(fs_vm_attrs, fs_vm_attrs_count, "state")].deferred);
	ASSERT_TRUE(fs_vm_attrs[fs_attr_find(fs_vm_attrs, fs_vm_attrs_count, "image")].store);
	ASSERT_ERRNO(fs_attr_find(fs_vm_attrs, fs_vm_attrs_count, "State"), ENOENT);
	ASSERT_ERRNO(fs_attr_find(fs_vm_attrs, fs_vm_attrs_count, ""), ENOENT);
	/* volumes/VOL: path and size, both writable. */
	ASSERT_EQ(fs_vol_attrs_count, 2);
	for (size_t i = 0; i < fs_vol_attrs_count; i++) {
		ASSERT_EQ(fs_vol_attrs[i].mode, 0644);
		ASSERT_TRUE(fs_vol_attrs[i].show && fs_vol_attrs[i].store);
		ASSERT_FALSE(fs_vol_attrs[i].pollable || fs_vol_attrs[i].deferred);
	}
	ASSERT_EQ(fs_attr_find(fs_vol_attrs, fs_vol_attrs_count, "path"), 0);
	ASSERT_EQ(fs_attr_find(fs_vol_attrs, fs_vol_attrs_count, "size"), 1);
	for (size_t i = 0; i < fs_root_attrs_count; i++) {
		ASSERT_EQ(fs_root_attrs[i].mode, 0444);
		ASSERT_FALSE(fs_root_attrs[i].pollable);
	}
	ASSERT_EQ(fs_attr_find(fs_root_attrs, fs_root_attrs_count, "version"),
		  (int)(FS_INO_VERSION - FS_INO_VERSION));
	ASSERT_EQ(fs_attr_find(fs_root_attrs, fs_root_attrs_count, "metrics"),
		  (int)(FS_INO_METRICS - FS_INO_VERSION));
}

static void test_fill_stat(void)
{
	struct fs fs = {.start_time = {1700000000, 0}};
	struct node_info file = {.kind = NODE_VM_ATTR, .attr = &fs_vm_attrs[0]};
	struct node_info dir = {.kind = NODE_VM_DIR};
	struct stat st;

	fs_fill_stat(&fs, 42, &file, &st);
	ASSERT_EQ(st.st_ino, 42);
	ASSERT_EQ(st.st_mode, S_IFREG | 0644);
	ASSERT_EQ(st.st_uid, 0);
	ASSERT_EQ(st.st_gid, 0);
	ASSERT_EQ(st.st_nlink, 1);
	ASSERT_EQ(st.st_mtim.tv_sec, 1700000000);
	fs_fill_stat(&fs, 43, &dir, &st);
	ASSERT_EQ(st.st_mode, S_IFDIR | 0755);
	ASSERT_EQ(st.st_nlink, 2);
}

static void release_nop(struct fs_open *o)
{
	(void)o;
}

/* Handles and buffer bytes per uid, the others' share, root's reserve, and that every release
 * gives back exactly what was taken (counters back to zero, no uid entry left). */
static void test_open_limits(void)
{
	static struct fs_open o[1200];
	struct fs fs = {.limits = {100, 10, 30, 1000, 1500}};
	struct fs_limits bad = {.max_handles = 10, .root_handles = 10};
	struct fs_open_stats st;
	struct err err = {};
	int n = 0;

	ASSERT_EQ(fs_limits_init(&bad, &err), -EINVAL);
	ASSERT_TRUE(strstr(err.msg, "root-handles"));
	bad = (struct fs_limits){.max_handles = 100};
	ASSERT_OK(fs_limits_init(&bad, &err));
	ASSERT_EQ(bad.root_handles, 50); /* the default 1024, at most half */
	ASSERT_EQ(bad.max_handles_per_uid, 1024);
	ASSERT_EQ(bad.max_buffer_per_uid, 16 << 20);
	ASSERT_OK(fs_limits_init(&fs.limits, &err));
	ASSERT_EQ(fs.limits.max_handles, 100);
	pthread_mutex_init(&fs.open_lock, NULL);
	for (size_t i = 0; i < ELEMENTSOF(o); i++)
		o[i].release = release_nop;

	/* uid 1000: 30 files, then EMFILE; 1001 and 1002 fill the others' 90; 1003: ENFILE */
	for (uid_t u = 1000; u < 1003; u++) {
		for (int i = 0; i < 30; i++)
			ASSERT_OK(fs_open_add(&fs, &o[n++], u));
		ASSERT_EQ(fs_open_add(&fs, &o[n], u), -EMFILE);
	}
	ASSERT_EQ(fs_open_add(&fs, &o[n], 1003), -ENFILE);
	/* root: the last 10, then ENFILE */
	for (int i = 0; i < 10; i++)
		ASSERT_OK(fs_open_add(&fs, &o[n++], 0));
	ASSERT_EQ(fs_open_add(&fs, &o[n], 0), -ENFILE);
	fs_open_stats(&fs, &st);
	ASSERT_EQ(st.handles, 100);
	ASSERT_EQ(st.handles_others, 90);

	/* bytes: uid 1000 up to 1000, shrinking always works; the others' 1500 in all */
	ASSERT_OK(fs_open_charge(&fs, &o[0], 600));
	ASSERT_OK(fs_open_charge(&fs, &o[1], 400));
	ASSERT_EQ(fs_open_charge(&fs, &o[2], 1), -ENOMEM);
	ASSERT_EQ(o[2].bytes, 0);
	ASSERT_OK(fs_open_charge(&fs, &o[0], 500));
	ASSERT_OK(fs_open_charge(&fs, &o[2], 100));
	ASSERT_EQ(fs_open_charge(&fs, &o[1], 401), -ENOMEM);
	ASSERT_OK(fs_open_charge(&fs, &o[30], 500)); /* uid 1001: 1500 in all now */
	ASSERT_EQ(fs_open_charge(&fs, &o[31], 1), -ENOMEM);
	ASSERT_OK(fs_open_charge(&fs, &o[90], 1u << 30)); /* root: not limited */
	fs_open_stats(&fs, &st);
	ASSERT_EQ(st.bytes_others, 1500);

	/* a release gives back its handle and its bytes */
	fs_open_del(&fs, &o[0]);
	ASSERT_OK(fs_open_charge(&fs, &o[31], 500));
	ASSERT_OK(fs_open_add(&fs, &o[0], 1003));
	while (n-- > 0)
		fs_open_del(&fs, &o[n]);
	fs_open_stats(&fs, &st);
	ASSERT_EQ(st.handles, 0);
	ASSERT_EQ(st.handles_others, 0);
	ASSERT_EQ(st.bytes_others, 0);

	/* many uids: hash chains */
	fs.limits = (struct fs_limits){1300, 10, 30, 1000, 1u << 20};
	for (int i = 0; i < 1200; i++)
		ASSERT_OK(fs_open_add(&fs, &o[i], (uid_t)(1 + i % 400)));
	for (int i = 0; i < 1200; i++)
		ASSERT_OK(fs_open_charge(&fs, &o[i], 100));
	for (int i = 1199; i >= 0; i -= 2)
		fs_open_del(&fs, &o[i]);
	for (int i = 1198; i >= 0; i -= 2)
		fs_open_del(&fs, &o[i]);
	fs_open_stats(&fs, &st);
	ASSERT_EQ(st.handles + st.handles_others + st.bytes_others, 0);
	for (size_t i = 0; i < FS_UID_BUCKETS; i++)
		ASSERT_TRUE(fs.uids[i] == NULL);
	ASSERT_TRUE(fs.opens == NULL);
	pthread_mutex_destroy(&fs.open_lock);
}

TEST_MAIN(TEST(test_node_table_lookup_counts), TEST(test_node_table_keeps_vm_alive),
	  TEST(test_node_table_volumes), TEST(test_attribute_tables), TEST(test_fill_stat),
	  TEST(test_open_limits))
