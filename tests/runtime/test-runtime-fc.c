/* SPDX-License-Identifier: MIT */
/*
 * The runtime API driven directly against the fake jailer + Firecracker (tests/fakes): the
 * whole lifecycle with the recorded API sequence free of error responses, graceful stop past
 * the deadline, crashes, refused calls, and re-adoption after a daemon restart. After every
 * case: no jail dir, cgroup, socket or process of the VM is left.
 *
 * The image step is replaced by a local fixture (a rootfs file), so this test does not depend
 * on a registry; the image module has its own tests. Host networking is off (IPAM still runs).
 */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "internal.h"
#include "jail-path.h"
#include "test.h"
#include "waiter.h"

static char T[256];
static char fake_fc[512], fake_jailer[512], knobs[512];
static struct vmm_ops wrapped_ops;
static const struct vmm_ops *real_ops;
static int calls_seq;

static int wait_for(struct waiter *w, int timeout_s)
{
	struct timespec ts;
	int r = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_s;
	pthread_mutex_lock(&w->lock);
	while (!w->done && r == 0)
		r = pthread_cond_timedwait(&w->cond, &w->lock, &ts);
	pthread_mutex_unlock(&w->lock);
	if (!w->done)
		TEST_FAIL("timed out waiting for a completion");
	return w->result;
}

#define WAITER                                                                \
	{                                                                     \
		PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0 \
	}

/* The image step: a local rootfs file instead of a registry pull. */
static int fixture_image(struct runtime *rt, struct vm *vm, const char *ref,
			 struct img_prepared *ret, struct err *err)
{
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->rootfs, sizeof(ret->rootfs), "%s/rootfs.ext4", T);
	snprintf(ret->digest, sizeof(ret->digest), "sha256:%064d", 0);
	snprintf(ret->config, sizeof(ret->config), "%s/config.json", T);
	return 0;
}

/* Keep the fake's recording before the runtime removes the jail. */
static void keep_calls_cleanup(void *priv, const char *name, struct vmm_handle *h)
{
	char src[VMM_PATH_MAX + 64], dst[512];

	if (h->jail_dir[0]) {
		snprintf(src, sizeof(src), "%s/fake-fc.calls.jsonl", h->jail_dir);
		snprintf(dst, sizeof(dst), "%s/calls/%s.%d.jsonl", T, name,
			 __atomic_add_fetch(&calls_seq, 1, __ATOMIC_SEQ_CST));
		(void)rename(src, dst);
	}
	real_ops->cleanup(priv, name, h);
}

static void write_knobs(const char *json)
{
	FILE *f = fopen(knobs, "w");

	ASSERT_TRUE(f != NULL);
	fputs(json, f);
	fclose(f);
}

static void touch(const char *name, mode_t mode, size_t size)
{
	char p[512];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", T, name);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(ftruncate(fd, (off_t)size));
	fchmod(fd, mode);
	close(fd);
}

static void touch_abs(const char *p)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

	ASSERT_TRUE(fd >= 0);
	close(fd);
}

static void setup(void)
{
	char p[600];
	const char *src = getenv("MVMFS_SRCDIR");

	if (geteuid() != 0)
		test_skip("needs root (jailer uid switch, chown, cgroups)");
	if (!src)
		test_skip("MVMFS_SRCDIR not set");
	if (access("/usr/bin/python3", X_OK) < 0)
		test_skip("python3 missing (the fake)");
	snprintf(fake_fc, sizeof(fake_fc), "%s/tests/fakes/firecracker", src);
	snprintf(fake_jailer, sizeof(fake_jailer), "%s/tests/fakes/jailer", src);
	if (access(fake_fc, X_OK) < 0 || access(fake_jailer, X_OK) < 0)
		test_skip("the fake firecracker/jailer are not in the tree");
	/* Short: the jail socket paths must fit in 107 bytes. */
	snprintf(T, sizeof(T), "/tmp/mrt-XXXXXX");
	ASSERT_TRUE(mkdtemp(T) != NULL);
	chmod(T, 0755);
	snprintf(p, sizeof(p), "%s/jail", T);
	ASSERT_OK(mkdir_p(p, 0755));
	snprintf(p, sizeof(p), "%s/calls", T);
	ASSERT_OK(mkdir_p(p, 0755));
	touch("vmlinux", 0644, 4096);
	touch("initrd", 0644, 4096);
	touch("rootfs.ext4", 0644, 1 << 20);
	{
		char cfgp[300];
		FILE *f;
		snprintf(cfgp, sizeof(cfgp), "%s/config.json", T);
		f = fopen(cfgp, "w");
		ASSERT_TRUE(f != NULL);
		fputs("{\"entrypoint\":[\"/bin/sh\"],\"cmd\":[],\"env\":[],\"workdir\":\"\","
		      "\"user\":\"\"}",
		      f);
		fclose(f);
	}
	snprintf(knobs, sizeof(knobs), "%s/knobs.json", T);
	write_knobs("{}");
	setenv("FAKE_FC_KNOBS", knobs, 1);
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* This test's own network and mount namespaces, with a private /run/netns: the VMs' namespaces
 * and links are made for real and go with the test (skips without /dev/net/tun or unshare). */
static void private_network(void)
{
	if (access("/dev/net/tun", R_OK | W_OK) < 0)
		test_skip("no /dev/net/tun");
	if (unshare(CLONE_NEWNET | CLONE_NEWNS) < 0)
		test_skip("unshare(CLONE_NEWNET|CLONE_NEWNS) failed");
	ASSERT_OK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
	(void)mkdir("/run/netns", 0755);
	ASSERT_OK(mount("tmpfs", "/run/netns", "tmpfs", 0, "mode=0755"));
	ASSERT_EQ(system("ip link set lo up"), 0);
}

static bool with_network, stop_on_exit, real_images, with_template;
static const char *insecure[2];

/* Graceful-stop deadline of the next rt_open (0: 1.5 s). */
static unsigned stop_timeout_ms;
/* --cgroup-version of the next rt_open (0: detect). */
static int cgroup_version;

static struct runtime *rt_open(struct runtime_config *cfg)
{
	static char state[300], chroot[300], kernel[300], initrd[300];
	struct runtime *rt = NULL;
	struct err err = {};

	snprintf(state, sizeof(state), "%s/state", T);
	snprintf(chroot, sizeof(chroot), "%s/jail", T);
	snprintf(kernel, sizeof(kernel), "%s/vmlinux", T);
	snprintf(initrd, sizeof(initrd), "%s/initrd", T);
	*cfg = (struct runtime_config){
		.state_dir = state,
		.vmm = VMM_FIRECRACKER,
		.firecracker = fake_fc,
		.jailer = fake_jailer,
		.chroot_base = chroot,
		.kernel = kernel,
		.initrd = initrd,
		.uid_base = 300000,
		.uid_count = 1000,
		.data_disk_bytes = 64ULL << 20,
		.stop_timeout_ms = stop_timeout_ms ? stop_timeout_ms : 1500,
		.cgroup_version = cgroup_version,
		.no_network = !with_network,
		/* Templates need a guest agent; the cases without one boot cold. */
		.no_template = !with_template,
		.stop_vms_on_exit = stop_on_exit,
		.insecure_registries = insecure[0] ? insecure : NULL,
		.bridge = "mvmbrt0",
	};
	if (runtime_new(cfg, &rt, &err) < 0)
		TEST_FAIL("runtime_new: %s", err.msg);
	if (!real_images)
		rt->prepare_image = fixture_image;
	real_ops = rt->ops;
	wrapped_ops = *rt->ops;
	wrapped_ops.cleanup = keep_calls_cleanup;
	rt->ops = &wrapped_ops;
	if (runtime_start(rt, &err) < 0)
		TEST_FAIL("runtime_start: %s", err.msg);
	return rt;
}

static struct vm *define(struct runtime *rt, const char *name)
{
	struct waiter w = WAITER;
	struct err err = {};
	struct vm *vm;

	ASSERT_OK(runtime_vm_create(rt, name, on_done, &w));
	ASSERT_EQ(wait_for(&w, 20), 0);
	vm = runtime_vm_get(rt, name);
	ASSERT_TRUE(vm != NULL);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_CREATED);
	if (vm_set_image(vm, "127.0.0.1:5000/app:v1", &err) < 0)
		TEST_FAIL("vm_set_image: %s", err.msg);
	return vm;
}

static int command(struct vm *vm, enum vm_verb verb)
{
	struct waiter w = WAITER;
	int r = vm_command(vm, verb, on_done, &w);

	if (r != 0)
		return r == 1 ? 1 : r;
	return wait_for(&w, 30);
}

static char *show(struct vm *vm, enum vm_attr a)
{
	char *s = NULL;
	size_t n;

	ASSERT_OK(vm_show(vm, a, &s, &n));
	return s;
}

static void destroy(struct runtime *rt, const char *name)
{
	struct waiter w = WAITER;

	ASSERT_OK(runtime_vm_destroy(rt, name, on_done, &w));
	ASSERT_EQ(wait_for(&w, 20), 0);
	ASSERT_TRUE(runtime_vm_get(rt, name) == NULL);
}

/* Nothing of name left on the host: jail, cgroups, process. */
static void assert_no_leftovers(struct runtime *rt, const char *name, pid_t pid)
{
	char p[1024];
	struct stat st;
	struct cgroup_info ci;
	char dirs[4][VMM_DIR_MAX];
	struct err err = {};
	int n;

	snprintf(p, sizeof(p), "%s/jail/firecracker/%s", T, name);
	if (stat(p, &st) == 0)
		TEST_FAIL("jail dir left: %s", p);
	if (cgroup_detect(0, &ci, &err) == 0) {
		n = cgroup_dirs(&ci, CGROUP_PARENT, name, dirs, 4);
		for (int i = 0; i < n; i++)
			if (stat(dirs[i], &st) == 0)
				TEST_FAIL("cgroup left: %s", dirs[i]);
	}
	if (pid > 0 && kill(pid, 0) == 0) {
		char stat_path[64], *txt = NULL;
		snprintf(stat_path, sizeof(stat_path), "/proc/%d/stat", (int)pid);
		/* A zombie of a re-adopted child is not a running VMM. */
		if (read_file_bounded(stat_path, 4096, &txt, NULL) == 0 && !strstr(txt, ") Z ")) {
			free(txt);
			TEST_FAIL("VMM process %d left", (int)pid);
		}
		free(txt);
	}
	(void)rt;
}

/* Every recorded call of name answered 2xx; returns the number of call files seen. Appends
 * "METHOD path[ action]" lines to seq. */
static int check_calls(const char *name, char *seq, size_t seq_size)
{
	char dir[300];
	DIR *d;
	struct dirent *de;
	int files = 0;

	snprintf(dir, sizeof(dir), "%s/calls", T);
	d = opendir(dir);
	ASSERT_TRUE(d != NULL);
	seq[0] = '\0';
	while ((de = readdir(d))) {
		char path[600];
		FILE *f;
		char line[65536];

		if (strncmp(de->d_name, name, strlen(name)) != 0 || de->d_name[strlen(name)] != '.')
			continue;
		files++;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		f = fopen(path, "r");
		ASSERT_TRUE(f != NULL);
		while (fgets(line, sizeof(line), f)) {
			json_t *o = json_loads(line, 0, NULL), *st, *body;
			const char *action = NULL;

			ASSERT_TRUE(o != NULL);
			if (strcmp(json_string_value(json_object_get(o, "kind")) ?: "", "call") !=
			    0) {
				json_decref(o);
				continue;
			}
			st = json_object_get(o, "status");
			if (!json_is_integer(st) || json_integer_value(st) >= 300)
				TEST_FAIL("%s: error response: %s", de->d_name, line);
			body = json_object_get(o, "body");
			if (json_is_object(body))
				action = json_string_value(json_object_get(body, "action_type"));
			snprintf(seq + strlen(seq), seq_size - strlen(seq), "%s %s%s%s\n",
				 json_string_value(json_object_get(o, "method")),
				 json_string_value(json_object_get(o, "path")), action ? " " : "",
				 action ? action : "");
			json_decref(o);
		}
		fclose(f);
	}
	closedir(d);
	return files;
}

static void test_lifecycle(void)
{
	struct runtime_config cfg;
	struct runtime *rt;
	struct vm *vm;
	char *s, seq[16384];
	pid_t pid, pid2;

	setup();
	rt = rt_open(&cfg);
	vm = define(rt, "life1");
	s = show(vm, VM_ATTR_IP);
	ASSERT_TRUE(strlen(s) > 3 && strchr(s, ':'));
	free(s);
	ASSERT_EQ(command(vm, VM_VERB_STOP), 1); /* stop on created: no-op */
	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_RUNNING);
	ASSERT_EQ(command(vm, VM_VERB_START), 1); /* start on running: no-op */
	s = show(vm, VM_ATTR_PID);
	pid = atoi(s);
	free(s);
	ASSERT_TRUE(pid > 0 && kill(pid, 0) == 0);
	/* The VMM runs; no agent answers in the fake by default: a boot in progress. */
	s = show(vm, VM_ATTR_HEALTH);
	if (strncmp(s, "starting\nvmm: running since ", 28) != 0 ||
	    !strstr(s, "\nagent: waiting no answer from the guest agent yet since "))
		TEST_FAIL("health: %s", s);
	free(s);
	{
		struct err err = {};
		ASSERT_ERRNO(vm_set_image(vm, "busybox", &err), EBUSY);
		ASSERT_ERRNO(runtime_vm_destroy(rt, "life1", NULL, NULL), EBUSY);
	}
	ASSERT_EQ(command(vm, VM_VERB_STOP), 0);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_STOPPED);
	assert_no_leftovers(rt, "life1", pid);
	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	s = show(vm, VM_ATTR_PID);
	pid = atoi(s);
	free(s);
	ASSERT_EQ(command(vm, VM_VERB_KILL), 0);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_STOPPED);
	assert_no_leftovers(rt, "life1", pid);
	ASSERT_EQ(command(vm, VM_VERB_RESTART), 0); /* restart on stopped = start */
	ASSERT_EQ(vm_get_state(vm), VM_STATE_RUNNING);
	s = show(vm, VM_ATTR_PID);
	pid = atoi(s);
	free(s);
	ASSERT_EQ(command(vm, VM_VERB_RESTART), 0);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_RUNNING);
	s = show(vm, VM_ATTR_PID);
	pid2 = atoi(s);
	free(s);
	ASSERT_NE(pid, pid2);
	ASSERT_EQ(command(vm, VM_VERB_STOP), 0);
	s = show(vm, VM_ATTR_ERROR);
	ASSERT_STREQ(s, "");
	free(s);
	vm_unref(vm);
	destroy(rt, "life1");
	assert_no_leftovers(rt, "life1", pid2);
	/* 4 boots; each a full sequence without one error response. */
	ASSERT_EQ(check_calls("life1", seq, sizeof(seq)), 4);
	if (!strstr(seq, "PUT /logger\nPUT /metrics\nPUT /boot-source\nPUT /drives/rootfs\n"
			 "PUT /drives/data\nPUT /machine-config\nPUT /vsock\n"
			 "PUT /actions InstanceStart\nGET /\n"))
		TEST_FAIL("unexpected sequence:\n%s", seq);
	if (!strstr(seq, "PUT /actions SendCtrlAltDel"))
		TEST_FAIL("no graceful stop in:\n%s", seq);
	runtime_free(rt);
	rm_rf(T);
}

/* pause, resume, suspend and the restore against the fake (docs/firecracker.md N): every call
 * answered 2xx (no contract violation), nothing of the VMM left while suspended, a corrupt saved
 * state fails the restore (failed, the reason in error) and stop discards it. */
static void test_suspend(void)
{
	struct runtime_config cfg;
	struct runtime *rt;
	struct vm *vm;
	char *s, seq[32768], path[600];
	pid_t pid;

	setup();
	rt = rt_open(&cfg);
	vm = define(rt, "park1");
	ASSERT_ERRNO(command(vm, VM_VERB_PAUSE), EINVAL);
	ASSERT_ERRNO(command(vm, VM_VERB_SUSPEND), EINVAL);
	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	ASSERT_EQ(command(vm, VM_VERB_RESUME), 1); /* resume on running: no-op */
	ASSERT_EQ(command(vm, VM_VERB_PAUSE), 0);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_PAUSED);
	s = show(vm, VM_ATTR_HEALTH);
	if (strncmp(s, "paused\nvmm: paused since ", 25) != 0)
		TEST_FAIL("health: %s", s);
	free(s);
	ASSERT_EQ(command(vm, VM_VERB_PAUSE), 1);
	ASSERT_ERRNO(runtime_vm_destroy(rt, "park1", NULL, NULL), EBUSY);
	ASSERT_EQ(command(vm, VM_VERB_RESUME), 0);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_RUNNING);
	s = show(vm, VM_ATTR_PID);
	pid = atoi(s);
	free(s);

	/* suspend: the files out of the jail, the VMM and its jail gone. */
	ASSERT_EQ(command(vm, VM_VERB_SUSPEND), 0);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_SUSPENDED);
	assert_no_leftovers(rt, "park1", pid);
	snprintf(path, sizeof(path), "%s/state/vms/park1/suspend/state", T);
	ASSERT_OK(access(path, F_OK));
	snprintf(path, sizeof(path), "%s/state/vms/park1/suspend/mem", T);
	ASSERT_OK(access(path, F_OK));
	s = show(vm, VM_ATTR_HEALTH);
	if (strncmp(s, "suspended\n", 10) != 0 || !strstr(s, "\nsaved: suspended "))
		TEST_FAIL("health: %s", s);
	free(s);
	ASSERT_EQ(command(vm, VM_VERB_SUSPEND), 1);
	ASSERT_ERRNO(runtime_vm_destroy(rt, "park1", NULL, NULL), EBUSY);

	/* restore (resume): a new jail, snapshot/load, the saved state consumed. */
	ASSERT_EQ(command(vm, VM_VERB_RESUME), 0);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_RUNNING);
	snprintf(path, sizeof(path), "%s/state/vms/park1/suspend", T);
	ASSERT_TRUE(access(path, F_OK) < 0);

	/* restart of a suspended VM: the saved state goes, the VM boots afresh. */
	ASSERT_EQ(command(vm, VM_VERB_SUSPEND), 0);
	ASSERT_EQ(command(vm, VM_VERB_RESTART), 0);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_RUNNING);
	snprintf(path, sizeof(path), "%s/state/vms/park1/suspend", T);
	ASSERT_TRUE(access(path, F_OK) < 0);

	/* suspend from paused, then a corrupt state: failed with the reason, no boot. */
	ASSERT_EQ(command(vm, VM_VERB_PAUSE), 0);
	ASSERT_EQ(command(vm, VM_VERB_SUSPEND), 0);
	snprintf(path, sizeof(path), "%s/state/vms/park1/suspend/state", T);
	{
		FILE *f = fopen(path, "r+");

		ASSERT_TRUE(f != NULL);
		fseek(f, 20, SEEK_SET);
		fputc('#', f);
		fclose(f);
	}
	ASSERT_ERRNO(command(vm, VM_VERB_START), EIO);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_FAILED);
	s = show(vm, VM_ATTR_ERROR);
	if (!strstr(s, "saved state corrupt"))
		TEST_FAIL("error: %s", s);
	free(s);
	ASSERT_OK(access(path, F_OK));		 /* kept */
	ASSERT_EQ(command(vm, VM_VERB_STOP), 0); /* discards it */
	ASSERT_EQ(vm_get_state(vm), VM_STATE_STOPPED);
	vm_unref(vm);
	destroy(rt, "park1");
	/* Three VMMs: the boot, the restore, the restart's boot (the corrupt state never reached a
	 * VMM). */
	ASSERT_EQ(check_calls("park1", seq, sizeof(seq)), 3);
	if (!strstr(seq, "PATCH /vm\n") || !strstr(seq, "PUT /snapshot/create\n") ||
	    !strstr(seq, "PUT /logger\nPUT /metrics\nPUT /snapshot/load\nPATCH /vm\n"))
		TEST_FAIL("unexpected sequence:\n%s", seq);
	runtime_free(rt);
	rm_rf(T);
}

/* Two writers of one VM, the second arriving while the supervisor commits the first one's
 * transition (pinned with the test hook, so the ordering is deterministic). The first writer's
 * restart goes on and it gets success; the second gets EBUSY, and no writer other than its own
 * is answered with it. Before the fix the second command was accepted against the state the
 * first one was replacing, and its refusal at dispatch answered every restart writer with
 * EBUSY, the accepted one included. */
static _Atomic(struct vm *) race_vm;
static struct waiter race_w2 = WAITER;
static int race_r2 = 1, race_hooked;

static void race_hook(struct runtime *rt, struct vm *vm, enum lc_event ev)
{
	if (vm != atomic_load(&race_vm) || ev != LC_EV_RESTART || race_hooked++)
		return;
	race_r2 = vm_command_post(vm, VM_VERB_RESTART, on_done, &race_w2);
}

/* Volumes on Firecracker: each disk hard-linked into the jail (the very file, given to the VM's
 * uid) and PUT as a drive before InstanceStart; a volume without a path fails the start. */
static void test_volumes(void)
{
	struct runtime_config cfg;
	struct runtime *rt;
	struct vm *vm;
	struct err err = {};
	struct stat disk, linked;
	char p[600], *s, seq[16384];

	setup();
	rt = rt_open(&cfg);
	vm = define(rt, "vol1");
	ASSERT_OK(vm_volume_create(vm, "data", &err));
	ASSERT_OK(vm_volume_create(vm, "more", &err));
	/* No path yet: the start fails and says which volume. */
	ASSERT_EQ(command(vm, VM_VERB_START), -EIO);
	s = show(vm, VM_ATTR_ERROR);
	if (!strstr(s, "volume 'data' has no path"))
		TEST_FAIL("error: %s", s);
	free(s);
	ASSERT_OK(vm_volume_store(vm, "data", VOLUME_ATTR_PATH, "/data", &err));
	ASSERT_OK(vm_volume_store(vm, "more", VOLUME_ATTR_PATH, "/srv/more", &err));
	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_RUNNING);
	ASSERT_ERRNO(vm_volume_create(vm, "late", &err), EBUSY);
	ASSERT_ERRNO(vm_volume_destroy(vm, "data", &err), EBUSY);
	snprintf(p, sizeof(p), "%s/state/volumes/vol1/data/disk.ext4", T);
	ASSERT_OK(stat(p, &disk));
	snprintf(p, sizeof(p), "%s/jail/firecracker/vol1/root/vol0.ext4", T);
	ASSERT_OK(stat(p, &linked));
	ASSERT_TRUE(disk.st_ino == linked.st_ino && disk.st_dev == linked.st_dev);
	ASSERT_TRUE(linked.st_uid >= 300000 && linked.st_uid < 301000);
	snprintf(p, sizeof(p), "%s/jail/firecracker/vol1/root/vol1.ext4", T);
	ASSERT_OK(stat(p, &linked));
	ASSERT_EQ(command(vm, VM_VERB_STOP), 0);
	check_calls("vol1", seq, sizeof(seq));
	if (!strstr(seq, "PUT /drives/vol0\nPUT /drives/vol1\nPUT /actions InstanceStart"))
		TEST_FAIL("calls:\n%s", seq);
	/* The jail went, the volume's disk stays. */
	snprintf(p, sizeof(p), "%s/state/volumes/vol1/data/disk.ext4", T);
	ASSERT_OK(stat(p, &disk));
	ASSERT_OK(vm_volume_create(vm, "late", &err));
	vm_unref(vm);
	destroy(rt, "vol1");
	snprintf(p, sizeof(p), "%s/state/volumes/vol1", T);
	ASSERT_SYSERR(stat(p, &disk), ENOENT);
	runtime_shutdown(rt);
	runtime_free(rt);
}

static void test_concurrent_commands(void)
{
	struct runtime_config cfg;
	struct waiter w1 = WAITER, ws = WAITER, wr = WAITER;
	struct timespec t0, t1;
	struct runtime *rt;
	struct vm *vm;
	char *s;
	pid_t pid, pid2;
	long ms;

	setup();
	write_knobs("{\"by_id\":{\"deaf2\":{\"ignore_ctrl_alt_del\":true}}}");
	stop_timeout_ms = 20000; /* a stop that hangs: only kill ends it within the test */
	rt = rt_open(&cfg);
	stop_timeout_ms = 0;

	vm = define(rt, "race1");
	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	s = show(vm, VM_ATTR_PID);
	pid = atoi(s);
	free(s);
	atomic_store(&race_vm, vm);
	atomic_store(&rt->sv_before_commit, race_hook);
	ASSERT_EQ(vm_command_post(vm, VM_VERB_RESTART, on_done, &w1), 0);
	ASSERT_EQ(wait_for(&w1, 30), 0);
	ASSERT_EQ(race_hooked, 1);
	if (race_r2 == 0)
		ASSERT_EQ(wait_for(&race_w2, 30), -EBUSY);
	else
		ASSERT_EQ(race_r2, -EBUSY);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_RUNNING);
	s = show(vm, VM_ATTR_PID);
	pid2 = atoi(s);
	free(s);
	ASSERT_TRUE(pid2 > 0 && pid2 != pid);
	/* Nothing is left pending: every verb is answered again. */
	ASSERT_EQ(command(vm, VM_VERB_STOP), 0);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_STOPPED);
	atomic_store(&rt->sv_before_commit, NULL);
	atomic_store(&race_vm, NULL);
	vm_unref(vm);
	destroy(rt, "race1");
	assert_no_leftovers(rt, "race1", pid2);

	/* kill escalates a graceful stop that hangs (the guest ignores it; the deadline is
	 * 20 s away): the VMM is killed at once, both writers are answered, the VM is stopped. */
	vm = define(rt, "deaf2");
	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	s = show(vm, VM_ATTR_PID);
	pid = atoi(s);
	free(s);
	ASSERT_EQ(vm_command(vm, VM_VERB_STOP, on_done, &ws), 0);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_STOPPING);
	ASSERT_EQ(vm_command(vm, VM_VERB_START, NULL, NULL), -EBUSY);
	ASSERT_EQ(vm_command(vm, VM_VERB_STOP, NULL, NULL), -EBUSY);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_EQ(command(vm, VM_VERB_KILL), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	printf("# kill during a hung stop: stopped after %ld ms (deadline 20 s)\n", ms);
	ASSERT_TRUE(ms < 10000);
	ASSERT_EQ(wait_for(&ws, 5), 0);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_STOPPED);
	assert_no_leftovers(rt, "deaf2", pid);

	/* The same during a restart's stop: the restart is called off and its writer fails. */
	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	s = show(vm, VM_ATTR_PID);
	pid = atoi(s);
	free(s);
	ASSERT_EQ(vm_command(vm, VM_VERB_RESTART, on_done, &wr), 0);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_STOPPING);
	ASSERT_EQ(command(vm, VM_VERB_KILL), 0);
	ASSERT_EQ(wait_for(&wr, 5), -EIO);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_STOPPED);
	s = show(vm, VM_ATTR_ERROR);
	if (!strstr(s, "restart: called off by kill"))
		TEST_FAIL("error: %s", s);
	free(s);
	assert_no_leftovers(rt, "deaf2", pid);
	vm_unref(vm);
	destroy(rt, "deaf2");
	runtime_free(rt);
	rm_rf(T);
}

static void test_ignore_ctrl_alt_del(void)
{
	struct runtime_config cfg;
	struct runtime *rt;
	struct vm *vm;
	struct timespec t0, t1;
	char *s;
	pid_t pid;
	long ms;

	setup();
	write_knobs("{\"by_id\":{\"deaf1\":{\"ignore_ctrl_alt_del\":true}}}");
	rt = rt_open(&cfg);
	vm = define(rt, "deaf1");
	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	s = show(vm, VM_ATTR_PID);
	pid = atoi(s);
	free(s);
	{
		/* A chatty guest: the console file is cut back by the health probe. */
		char p[400];
		struct stat cst;
		int fd;
		snprintf(p, sizeof(p), "%s/state/vms/deaf1/console.log", T);
		fd = open(p, O_WRONLY | O_APPEND | O_CLOEXEC);
		ASSERT_TRUE(fd >= 0);
		ASSERT_OK(ftruncate(fd, 6 << 20));
		close(fd);
		for (int i = 0; i < 40; i++) {
			ASSERT_OK(stat(p, &cst));
			if (cst.st_size <= (1 << 20))
				break;
			usleep(100000);
		}
		if (cst.st_size > (1 << 20))
			TEST_FAIL("console.log not bounded: %lld bytes", (long long)cst.st_size);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_EQ(command(vm, VM_VERB_STOP), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	ASSERT_EQ(vm_get_state(vm), VM_STATE_STOPPED);
	if (ms < 1400 || ms > 5000)
		TEST_FAIL("stop took %ld ms with a 1500 ms deadline", ms);
	assert_no_leftovers(rt, "deaf1", pid);
	vm_unref(vm);
	destroy(rt, "deaf1");
	runtime_free(rt);
	rm_rf(T);
}

/* cgroup limits fail closed: with a hierarchy the host does not run (v2 on these v1
 * machines), the runtime starts but a start fails with EIO and the reason, and no jailer is
 * spawned. */
static _unused_ void test_cgroup_fail_closed(void)
{
	struct runtime_config cfg;
	struct runtime *rt;
	struct vm *vm;
	struct stat st;
	char *s, p[600];

	setup();
	if (stat("/sys/fs/cgroup/memory/memory.limit_in_bytes", &st) < 0)
		test_skip("no cgroup v1 memory hierarchy to contradict with --cgroup-version 2");
	cgroup_version = 2;
	rt = rt_open(&cfg);
	vm = define(rt, "nocg1");
	ASSERT_ERRNO(command(vm, VM_VERB_START), EIO);
	s = show(vm, VM_ATTR_ERROR);
	printf("# %s", s);
	if (!strstr(s, "cgroup limits cannot be applied"))
		TEST_FAIL("error: %s", s);
	free(s);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_FAILED);
	snprintf(p, sizeof(p), "%s/jail/firecracker/nocg1", T);
	ASSERT_TRUE(stat(p, &st) < 0);
	vm_unref(vm);
	destroy(rt, "nocg1");
	runtime_free(rt);
	cgroup_version = 0;
	rm_rf(T);
}

/* A VMM whose API stops answering in the middle of the launch (the fake's hang_on): the call
 * gives up at its 5 s deadline, the start fails with the call named in error, and nothing of
 * the VM is left; the worker is free again. */
static _unused_ void test_hung_api(void)
{
	struct runtime_config cfg;
	struct runtime *rt;
	struct vm *vm;
	struct timespec t0, t1;
	char *s;
	long ms;

	setup();
	write_knobs("{\"by_id\":{\"hung1\":{\"hang_on\":\"PUT /machine-config\"}}}");
	rt = rt_open(&cfg);
	vm = define(rt, "hung1");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_ERRNO(command(vm, VM_VERB_START), EIO);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	s = show(vm, VM_ATTR_ERROR);
	printf("# after %ld ms: %s", ms, s);
	if (!strstr(s, "PUT /machine-config") || !strstr(s, "imeout"))
		TEST_FAIL("error: %s", s);
	free(s);
	if (ms < 4500 || ms > 15000)
		TEST_FAIL("a 5 s API deadline ended the start after %ld ms", ms);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_FAILED);
	assert_no_leftovers(rt, "hung1", 0);
	vm_unref(vm);
	destroy(rt, "hung1");
	runtime_free(rt);
	rm_rf(T);
}

/* A compromised VMM (the fake's swap_links knob) replaces its jail's run/ and v.sock by
 * symlinks to another VM's: the daemon follows neither, so A's stop (Ctrl-Alt-Del, agent STOP)
 * never reaches B, which keeps running untouched. */
static _unused_ void test_symlink_swap(void)
{
	struct runtime_config cfg;
	struct runtime *rt;
	struct vm *a, *b;
	char kn[2048], p[600], q[600];
	_cleanup_free_ char *calls = NULL;
	struct stat st;
	bool swapped = false;

	setup();
	snprintf(kn, sizeof(kn),
		 "{\"by_id\":{\"swapa\":{\"swap_after_ms\":100,\"swap_links\":{"
		 "\"run\":\"%s/jail/firecracker/swapb/root/run\","
		 "\"v.sock\":\"%s/jail/firecracker/swapb/root/v.sock\"}}}}",
		 T, T);
	write_knobs(kn);
	stop_timeout_ms = 1500;
	rt = rt_open(&cfg);
	a = define(rt, "swapa");
	b = define(rt, "swapb");
	ASSERT_EQ(command(b, VM_VERB_START), 0);
	ASSERT_EQ(command(a, VM_VERB_START), 0);
	snprintf(p, sizeof(p), "%s/jail/firecracker/swapa/root/run", T);
	snprintf(q, sizeof(q), "%s/jail/firecracker/swapa/root/v.sock", T);
	for (int i = 0; i < 100 && !swapped; i++) {
		struct stat vs;

		swapped = lstat(p, &st) == 0 && S_ISLNK(st.st_mode) && lstat(q, &vs) == 0 &&
			  S_ISLNK(vs.st_mode);
		if (!swapped)
			usleep(50000);
	}
	if (!swapped)
		TEST_FAIL("the fake did not swap %s and %s for symlinks", p, q);
	/* What the API client and the agent channel use refuses both. */
	snprintf(p, sizeof(p), "%s/jail/firecracker/swapa/root/run/firecracker.socket", T);
	ASSERT_ERRNO(jail_connect(p, 500), ELOOP);
	ASSERT_ERRNO(jail_connect(q, 500), ELOOP);
	/* B's own socket is fine (the links point at real sockets). */
	snprintf(p, sizeof(p), "%s/jail/firecracker/swapb/root/run/firecracker.socket", T);
	{
		int fd = jail_connect(p, 500);

		ASSERT_TRUE(fd >= 0);
		close(fd);
	}
	/* A's stop cannot reach its VMM any more: it ends with the deadline kill. */
	ASSERT_EQ(command(a, VM_VERB_STOP), 0);
	ASSERT_EQ(vm_get_state(a), VM_STATE_STOPPED);
	usleep(300000);
	ASSERT_EQ(vm_get_state(b), VM_STATE_RUNNING);
	snprintf(p, sizeof(p), "%s/jail/firecracker/swapb/fake-fc.calls.jsonl", T);
	ASSERT_OK(read_file_bounded(p, 1 << 20, &calls, NULL));
	if (strstr(calls, "SendCtrlAltDel"))
		TEST_FAIL("A's stop reached B:\n%s", calls);
	ASSERT_EQ(command(b, VM_VERB_STOP), 0);
	vm_unref(a);
	vm_unref(b);
	destroy(rt, "swapa");
	destroy(rt, "swapb");
	runtime_free(rt);
	rm_rf(T);
}

static bool wait_state(struct vm *vm, enum vm_state want, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (vm_get_state(vm) == want)
			return true;
		usleep(10000);
	}
	return vm_get_state(vm) == want;
}

static void test_crash(void)
{
	struct runtime_config cfg;
	struct runtime *rt;
	struct vm *vm;
	struct timespec t0, t1;
	char *s;
	pid_t pid;
	long ms;

	setup();
	write_knobs("{\"by_id\":{\"crash1\":{\"crash_after_start_ms\":300,\"crash_exit_code\":3},"
		    "\"crash2\":{\"crash_after_start_ms\":300,\"crash_signal\":9},"
		    "\"clean1\":{\"crash_after_start_ms\":300,\"crash_exit_code\":0}}}");
	rt = rt_open(&cfg);
	vm = define(rt, "crash1");
	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	s = show(vm, VM_ATTR_PID);
	pid = atoi(s);
	free(s);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_TRUE(wait_state(vm, VM_STATE_FAILED, 3000));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	if (ms > 300 + 1000)
		TEST_FAIL("failed only after %ld ms", ms);
	s = show(vm, VM_ATTR_ERROR);
	if (!strstr(s, "exited with code 3"))
		TEST_FAIL("error: %s", s);
	free(s);
	s = show(vm, VM_ATTR_HEALTH);
	ASSERT_TRUE(strncmp(s, "failed\n", 7) == 0);
	free(s);
	assert_no_leftovers(rt, "crash1", pid);
	/* failed -> start works again (image still writable in failed) */
	vm_unref(vm);
	destroy(rt, "crash1");

	vm = define(rt, "crash2");
	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	ASSERT_TRUE(wait_state(vm, VM_STATE_FAILED, 3000));
	s = show(vm, VM_ATTR_ERROR);
	if (!strstr(s, "signal 9"))
		TEST_FAIL("error: %s", s);
	free(s);
	vm_unref(vm);
	destroy(rt, "crash2");

	/* A VMM that ends by itself with code 0 (guest reboot): stopped, no error. */
	vm = define(rt, "clean1");
	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	ASSERT_TRUE(wait_state(vm, VM_STATE_STOPPED, 3000));
	s = show(vm, VM_ATTR_ERROR);
	ASSERT_STREQ(s, "");
	free(s);
	vm_unref(vm);
	destroy(rt, "clean1");
	runtime_free(rt);
	rm_rf(T);
}

static void test_refused(void)
{
	struct runtime_config cfg;
	struct runtime *rt;
	struct vm *vm;
	char *s;

	setup();
	write_knobs("{\"by_id\":{\"refuse1\":{\"refuse\":{\"PUT /drives/rootfs\":"
		    "\"Drive config error: Unable to create the virtio block device: test "
		    "refusal\"}}}}");
	rt = rt_open(&cfg);
	vm = define(rt, "refuse1");
	ASSERT_ERRNO(command(vm, VM_VERB_START), EIO);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_FAILED);
	s = show(vm, VM_ATTR_ERROR);
	/* "<RFC 3339> start: PUT /drives/rootfs: <fault_message verbatim>" */
	if (strlen(s) < 22 || s[4] != '-' || s[10] != 'T' || s[19] != 'Z' ||
	    strcmp(s + 21, "start: PUT /drives/rootfs: Drive config error: Unable to create the "
			   "virtio block device: test refusal\n") != 0)
		TEST_FAIL("error: %s", s);
	free(s);
	assert_no_leftovers(rt, "refuse1", 0);
	vm_unref(vm);
	destroy(rt, "refuse1");
	runtime_free(rt);
	rm_rf(T);
}

static void test_readopt(void)
{
	struct runtime_config cfg;
	struct runtime *rt;
	struct vm *vm;
	char *s;
	pid_t pid;

	setup();
	rt = rt_open(&cfg);
	vm = define(rt, "adopt1");
	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	s = show(vm, VM_ATTR_PID);
	pid = atoi(s);
	free(s);
	vm_unref(vm);
	vm = define(rt, "adopt2"); /* stays created */
	vm_unref(vm);
	/* The daemon goes away without stopping its VMs. */
	runtime_free(rt);
	ASSERT_TRUE(kill(pid, 0) == 0);

	rt = rt_open(&cfg);
	vm = runtime_vm_get(rt, "adopt1");
	ASSERT_TRUE(vm != NULL);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_RUNNING);
	s = show(vm, VM_ATTR_PID);
	ASSERT_EQ(atoi(s), pid);
	free(s);
	vm_unref(vm);
	vm = runtime_vm_get(rt, "adopt2");
	ASSERT_TRUE(vm != NULL);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_CREATED);
	vm_unref(vm);
	/* The adopted VMM is supervised: killed behind our back -> failed within a second. */
	vm = runtime_vm_get(rt, "adopt1");
	kill(pid, SIGKILL);
	ASSERT_TRUE(wait_state(vm, VM_STATE_FAILED, 1500));
	s = show(vm, VM_ATTR_ERROR);
	ASSERT_TRUE(strstr(s, "vmm:") != NULL);
	free(s);
	assert_no_leftovers(rt, "adopt1", 0);
	vm_unref(vm);
	destroy(rt, "adopt1");
	destroy(rt, "adopt2");
	runtime_free(rt);
	rm_rf(T);
}

/* With host networking, in private net + mount namespaces: the TAP the fake opens lives in the
 * VM's netns, and everything is gone after destroy. */
static void test_network(void)
{
	struct runtime_config cfg;
	struct runtime *rt;
	struct vm *vm;
	char *s, seq[16384];
	struct stat st;

	setup();
	private_network();
	with_network = true;
	rt = rt_open(&cfg);
	vm = define(rt, "net1");
	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	ASSERT_EQ(stat("/run/netns/mvmfs-net1", &st), 0);
	s = show(vm, VM_ATTR_HEALTH);
	if (!strstr(s, "\nnet: up since "))
		TEST_FAIL("health: %s", s);
	free(s);
	ASSERT_EQ(command(vm, VM_VERB_STOP), 0);
	vm_unref(vm);
	destroy(rt, "net1");
	if (stat("/run/netns/mvmfs-net1", &st) == 0)
		TEST_FAIL("netns left");
	if (system("ip -o link | grep -v ' lo:\\| mvmbrt0:' | grep -q .") == 0) {
		(void)!system("ip -o link >&2");
		TEST_FAIL("links left");
	}
	ASSERT_EQ(check_calls("net1", seq, sizeof(seq)), 1);
	if (!strstr(seq, "PUT /network-interfaces/eth0\n"))
		TEST_FAIL("no NIC in:\n%s", seq);
	runtime_free(rt);
	rm_rf(T);
}

/* kill -9 of the daemon in the middle of a start (the fake holds InstanceStart) and of a stop
 * (the guest ignores Ctrl-Alt-Del), then a
 * restart: the VM ends failed with the reason, the half-started VMM and its jail are gone,
 * a running VM is re-adopted and a created one restored. */
static void test_daemon_killed_mid_start(void)
{
	struct runtime_config cfg;
	struct runtime *rt;
	struct vm *vm;
	int pfd[2];
	pid_t child, held_pid = 0, run_pid = 0, stop_pid = 0;
	char *s;

	setup();
	write_knobs("{\"by_id\":{\"hold1\":{\"hang_on\":\"InstanceStart\"},"
		    "\"stop1\":{\"ignore_ctrl_alt_del\":true}}}");
	ASSERT_OK(pipe(pfd));
	child = fork();
	ASSERT_TRUE(child >= 0);
	if (child == 0) {
		pid_t pids[3];
		struct vm *stopping;
		rt = rt_open(&cfg);
		vm = define(rt, "run1");
		if (command(vm, VM_VERB_START) != 0)
			_exit(2);
		pids[1] = vm->h.pid;
		stopping = define(rt, "stop1");
		if (command(stopping, VM_VERB_START) != 0)
			_exit(4);
		pids[2] = stopping->h.pid;
		vm = define(rt, "keep1");
		vm = define(rt, "hold1");
		if (vm_command(vm, VM_VERB_START, NULL, NULL) != 0)
			_exit(3);
		/* Wait until the fake is inside InstanceStart. */
		for (int i = 0; i < 500 && !atomic_load(&vm->launch_pid); i++)
			usleep(10000);
		usleep(1500000);
		pids[0] = atomic_load(&vm->launch_pid);
		/* stop1's guest ignores Ctrl-Alt-Del: its stop is in flight when we die. */
		if (vm_command(stopping, VM_VERB_STOP, NULL, NULL) != 0)
			_exit(5);
		usleep(200000);
		(void)!write(pfd[1], pids, sizeof(pids));
		for (;;)
			pause();
	}
	{
		pid_t pids[3] = {};
		ASSERT_EQ(read(pfd[0], pids, sizeof(pids)), (ssize_t)sizeof(pids));
		held_pid = pids[0];
		run_pid = pids[1];
		stop_pid = pids[2];
	}
	ASSERT_TRUE(held_pid > 0 && run_pid > 0 && stop_pid > 0);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	ASSERT_EQ(kill(held_pid, 0), 0);

	rt = rt_open(&cfg);
	vm = runtime_vm_get(rt, "hold1");
	ASSERT_TRUE(vm != NULL);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_FAILED);
	s = show(vm, VM_ATTR_ERROR);
	if (!strstr(s, "interrupted by a daemon restart"))
		TEST_FAIL("error: %s", s);
	free(s);
	vm_unref(vm);
	assert_no_leftovers(rt, "hold1", held_pid);
	vm = runtime_vm_get(rt, "run1");
	ASSERT_TRUE(vm != NULL);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_RUNNING);
	ASSERT_EQ(command(vm, VM_VERB_STOP), 0);
	vm_unref(vm);
	assert_no_leftovers(rt, "run1", run_pid);
	vm = runtime_vm_get(rt, "keep1");
	ASSERT_TRUE(vm != NULL);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_CREATED);
	vm_unref(vm);
	/* The stop in flight is finished: stopped, its VMM gone. */
	vm = runtime_vm_get(rt, "stop1");
	ASSERT_TRUE(vm != NULL);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_STOPPED);
	vm_unref(vm);
	assert_no_leftovers(rt, "stop1", stop_pid);
	destroy(rt, "stop1");
	destroy(rt, "hold1");
	destroy(rt, "run1");
	destroy(rt, "keep1");
	runtime_free(rt);
	rm_rf(T);
}

/* Marked leftovers of unknown VMs are reaped at start; unmarked directories are not touched. */
static void test_reap_leftovers(void)
{
	struct runtime_config cfg;
	struct runtime *rt;
	char p[600];
	struct stat st;

	setup();
	snprintf(p, sizeof(p), "%s/jail/firecracker/ghost1/root", T);
	ASSERT_OK(mkdir_p(p, 0700));
	snprintf(p, sizeof(p), "%s/jail/firecracker/ghost1/.mvmfs", T);
	touch_abs(p);
	snprintf(p, sizeof(p), "%s/jail/firecracker/stranger/root", T);
	ASSERT_OK(mkdir_p(p, 0700));
	rt = rt_open(&cfg);
	snprintf(p, sizeof(p), "%s/jail/firecracker/ghost1", T);
	if (stat(p, &st) == 0)
		TEST_FAIL("marked leftover not reaped");
	snprintf(p, sizeof(p), "%s/jail/firecracker/stranger/root", T);
	ASSERT_EQ(stat(p, &st), 0);
	runtime_free(rt);
	rm_rf(T);
}

/* The real guest agent (--test-mode, run by the fake as the guest's vsock listener): health
 * turns healthy with agent and app lines, the app's output reaches log, and a stop goes
 * through the agent (no SendCtrlAltDel) and ends well before the deadline. */
static void test_agent(void)
{
	struct runtime_config cfg;
	struct runtime *rt;
	struct vm *vm;
	char agent[512], kn[2048], seq[16384], *s = NULL, cfgp[300];
	const char *b = getenv("MVMFS_BUILDDIR");
	struct timespec t0, t1;
	bool healthy = false;
	FILE *f;
	long ms;

	setup();
	snprintf(agent, sizeof(agent), "%s/guest/mvmfs-agent", b ? b : ".");
	if (!b || access(agent, X_OK) < 0)
		test_skip("guest agent not built");
	snprintf(cfgp, sizeof(cfgp), "%s/config.json", T);
	f = fopen(cfgp, "w");
	ASSERT_TRUE(f != NULL);
	fputs("{\"entrypoint\":[\"/bin/sh\",\"-c\"],\"cmd\":[\"echo hello-from-app; exec sleep "
	      "1000\"],\"env\":[],\"workdir\":\"/\",\"user\":\"\"}",
	      f);
	fclose(f);
	snprintf(kn, sizeof(kn),
		 "{\"by_id\":{\"agent1\":{\"agent_cmd\":\"%s --test-mode --initrd "
		 "%s/state/vms/agent1/initrd.img; echo reboot >&3\"}}}",
		 agent, T);
	write_knobs(kn);
	/* A deadline far above the agent path, so a slow machine cannot turn a stop through the
	 * agent into a SIGKILL at the deadline (which this test must tell apart). */
	stop_timeout_ms = 10000;
	rt = rt_open(&cfg);
	vm = define(rt, "agent1");
	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	for (int i = 0; i < 100 && !healthy; i++) {
		free(s);
		s = show(vm, VM_ATTR_HEALTH);
		healthy = strncmp(s, "healthy\n", 8) == 0;
		if (!healthy)
			usleep(100000);
	}
	if (!healthy || !strstr(s, "\nagent: ok heartbeat ") || !strstr(s, "\napp: running pid "))
		TEST_FAIL("health: %s", s);
	free(s);
	/* The app's output travels the channel on its own schedule (the per-VM read budget
	 * spaces reads): it may land after the app's running status. */
	s = NULL;
	for (int i = 0; i < 50; i++) {
		free(s);
		s = show(vm, VM_ATTR_LOG);
		if (strstr(s, "hello-from-app"))
			break;
		usleep(100000);
	}
	if (!strstr(s, "hello-from-app"))
		TEST_FAIL("log: %s", s);
	free(s);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_EQ(command(vm, VM_VERB_STOP), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	ASSERT_EQ(vm_get_state(vm), VM_STATE_STOPPED);
	if (ms >= 9000)
		TEST_FAIL("stop through the agent took %ld ms (deadline 10000)", ms);
	vm_unref(vm);
	destroy(rt, "agent1");
	ASSERT_EQ(check_calls("agent1", seq, sizeof(seq)), 1);
	if (strstr(seq, "SendCtrlAltDel"))
		TEST_FAIL("stop did not go through the agent:\n%s", seq);
	runtime_free(rt);
	rm_rf(T);
}

static bool wait_health(struct vm *vm, const char *word, const char *also, char **ret)
{
	char *s = NULL;

	for (int i = 0; i < 100; i++) {
		free(s);
		s = show(vm, VM_ATTR_HEALTH);
		if (strncmp(s, word, strlen(word)) == 0 && s[strlen(word)] == '\n' &&
		    (!also || strstr(s, also)))
			break;
		usleep(100000);
	}
	*ret = s;
	return strncmp(s, word, strlen(word)) == 0 && (!also || strstr(s, also));
}

/* The guest agent across pause and a suspend/restore on the fake (its vsock transport reset,
 * a new VMM): healthy again after each, the restored guest's clock stepped, the same boot id
 * (the fake hands the snapshot's to the agent); a guest that comes back as another boot is
 * reported in error. */
static void test_suspend_agent(void)
{
	struct runtime_config cfg;
	struct runtime *rt;
	struct vm *vm;
	char agent[512], kn[2048], *s = NULL, cfgp[300];
	const char *b = getenv("MVMFS_BUILDDIR");
	FILE *f;

	setup();
	snprintf(agent, sizeof(agent), "%s/guest/mvmfs-agent", b ? b : ".");
	if (!b || access(agent, X_OK) < 0)
		test_skip("guest agent not built");
	snprintf(cfgp, sizeof(cfgp), "%s/config.json", T);
	f = fopen(cfgp, "w");
	ASSERT_TRUE(f != NULL);
	fputs("{\"entrypoint\":[\"/bin/sh\",\"-c\"],\"cmd\":[\"exec sleep 1000\"],\"env\":[],"
	      "\"workdir\":\"/\",\"user\":\"\"}",
	      f);
	fclose(f);
	snprintf(kn, sizeof(kn),
		 "{\"by_id\":{\"pagent\":{\"agent_cmd\":\"%s --test-mode --boot-id "
		 "$FAKE_FC_GUEST_BOOT_ID --initrd %s/state/vms/pagent/initrd.img; echo reboot "
		 ">&3\"}}}",
		 agent, T);
	write_knobs(kn);
	rt = rt_open(&cfg);
	vm = define(rt, "pagent");
	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	if (!wait_health(vm, "healthy", NULL, &s))
		TEST_FAIL("health: %s", s);
	free(s);
	ASSERT_EQ(command(vm, VM_VERB_PAUSE), 0);
	if (!wait_health(vm, "paused", "\nagent: paused no heartbeats", &s))
		TEST_FAIL("health: %s", s);
	free(s);
	usleep(3500 * 1000); /* longer than three heartbeat periods */
	ASSERT_EQ(command(vm, VM_VERB_RESUME), 0);
	s = show(vm, VM_ATTR_HEALTH);
	if (strncmp(s, "unhealthy", 9) == 0)
		TEST_FAIL("the pause counted as missed heartbeats: %s", s);
	free(s);
	if (!wait_health(vm, "healthy", NULL, &s))
		TEST_FAIL("health: %s", s);
	free(s);

	/* suspend, restore: the agent comes back on the new VMM, same boot, clock stepped. */
	ASSERT_EQ(command(vm, VM_VERB_SUSPEND), 0);
	ASSERT_EQ(command(vm, VM_VERB_RESUME), 0);
	if (!wait_health(vm, "healthy", NULL, &s))
		TEST_FAIL("health after the restore: %s", s);
	free(s);
	for (int i = 0; i < 50; i++) {
		s = show(vm, VM_ATTR_LOG);
		if (strstr(s, "clock: wall clock stepped by "))
			break;
		free(s);
		s = NULL;
		usleep(100000);
	}
	if (!s)
		TEST_FAIL("no clock step in the log");
	free(s);
	s = show(vm, VM_ATTR_ERROR);
	ASSERT_STREQ(s, "");
	free(s);

	/* A guest that comes back as another boot (no --boot-id: a random one) is reported. */
	snprintf(kn, sizeof(kn),
		 "{\"by_id\":{\"pagent\":{\"agent_cmd\":\"%s --test-mode --initrd "
		 "%s/state/vms/pagent/initrd.img; echo reboot >&3\"}}}",
		 agent, T);
	write_knobs(kn);
	ASSERT_EQ(command(vm, VM_VERB_SUSPEND), 0);
	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	for (int i = 0; i < 50; i++) {
		s = show(vm, VM_ATTR_ERROR);
		if (strstr(s, "came back as another boot"))
			break;
		free(s);
		s = NULL;
		usleep(100000);
	}
	if (!s)
		TEST_FAIL("a rebooted guest was not reported");
	free(s);
	ASSERT_EQ(command(vm, VM_VERB_KILL), 0);
	vm_unref(vm);
	destroy(rt, "pagent");
	/* The guests of every VMM died with it (their apps too): no cgroup is held. */
	assert_no_leftovers(rt, "pagent", 0);
	runtime_free(rt);
	rm_rf(T);
}

/* Every recorded call of name, "METHOD path[ action] STATUS" per line, errors included. */
static void check_calls_any(const char *name, char *seq, size_t seq_size)
{
	char dir[300], path[600], line[65536];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/calls", T);
	d = opendir(dir);
	ASSERT_TRUE(d != NULL);
	seq[0] = '\0';
	while ((de = readdir(d))) {
		FILE *f;

		if (strncmp(de->d_name, name, strlen(name)) != 0 || de->d_name[strlen(name)] != '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		f = fopen(path, "r");
		ASSERT_TRUE(f != NULL);
		while (fgets(line, sizeof(line), f)) {
			json_t *o = json_loads(line, 0, NULL), *body;
			const char *action = NULL;

			ASSERT_TRUE(o != NULL);
			if (strcmp(json_string_value(json_object_get(o, "kind")) ?: "", "call") ==
			    0) {
				body = json_object_get(o, "body");
				if (json_is_object(body))
					action = json_string_value(
						json_object_get(body, "action_type"));
				snprintf(seq + strlen(seq), seq_size - strlen(seq),
					 "%s %s%s%s %lld\n",
					 json_string_value(json_object_get(o, "method")),
					 json_string_value(json_object_get(o, "path")),
					 action ? " " : "", action ? action : "",
					 (long long)json_integer_value(
						 json_object_get(o, "status")));
			}
			json_decref(o);
		}
		fclose(f);
	}
	closedir(d);
}

/* The booted template on Firecracker (docs/template.md): the template dir KEY under
 * STATE/templates (one). */
static void template_dir(char *out, size_t size)
{
	char d[300];
	DIR *dir;
	struct dirent *de;

	out[0] = '\0';
	snprintf(d, sizeof(d), "%s/state/templates", T);
	dir = opendir(d);
	ASSERT_TRUE(dir != NULL);
	while ((de = readdir(dir)))
		if (de->d_name[0] != '.' && !strchr(de->d_name, '.'))
			snprintf(out, size, "%s/%s", d, de->d_name);
	closedir(dir);
}

/* The template the build job makes in the background, once there (30 s at most). */
static void wait_template(char *out, size_t size)
{
	for (int i = 0; i < 300; i++) {
		template_dir(out, size);
		if (out[0])
			return;
		usleep(100000);
	}
	TEST_FAIL("no template built in the background within 30 s");
}

/* The template VM's id: the build's prefix and the key (tdir's name). */
static void build_id(const char *tdir, char *out, size_t size)
{
	snprintf(out, size, "mvmfs-template-build-%s", strrchr(tdir, '/') + 1);
}

static int count_of(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* The VM's log shows the identity its agent took: its own name, address and MAC. */
static void assert_identity(struct vm *vm)
{
	char want[300], *ip = show(vm, VM_ATTR_IP), *s = NULL;

	ip[strcspn(ip, "\n")] = '\0';
	snprintf(want, sizeof(want), "template: identity of '%s' taken (address %s, MAC %s)",
		 vm->name, ip, vm->net.mac);
	for (int i = 0; i < 100; i++) {
		free(s);
		s = show(vm, VM_ATTR_LOG);
		if (strstr(s, want))
			break;
		usleep(100000);
	}
	if (!strstr(s, want))
		TEST_FAIL("%s: no \"%s\" in the log:\n%s", vm->name, want, s);
	free(s);
	free(ip);
}

static void start_healthy(struct vm *vm)
{
	char *s = NULL;

	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	if (!wait_health(vm, "healthy", "\napp: running pid ", &s))
		TEST_FAIL("%s: health: %s", vm->name, s);
	free(s);
}

/* The template cases: a private network namespace (TAPs), an app, the real agent as the guest
 * (the fake runs it; it reads the initramfs the VMM was given, in its jail: the template's for a
 * template start, the VM's own for a cold boot), 16 MiB of guest memory in the template
 * (MVMFS_TPL_TOUCH_MIB: more, to time the sum), templates on. The knobs' text in kn. */
static void template_setup(char *kn, size_t size)
{
	const char *b = getenv("MVMFS_BUILDDIR");
	char agent[512], p[300];
	FILE *f;

	setup();
	snprintf(agent, sizeof(agent), "%s/guest/mvmfs-agent", b ? b : ".");
	if (!b || access(agent, X_OK) < 0)
		test_skip("guest agent not built");
	private_network();
	snprintf(p, sizeof(p), "%s/config.json", T);
	f = fopen(p, "w");
	ASSERT_TRUE(f != NULL);
	fputs("{\"entrypoint\":[\"/bin/sh\",\"-c\"],\"cmd\":[\"exec sleep 1000\"],\"env\":[],"
	      "\"workdir\":\"/\",\"user\":\"\"}",
	      f);
	fclose(f);
	snprintf(kn, size,
		 "{\"agent_cmd\":\"%s --test-mode --boot-id $FAKE_FC_GUEST_BOOT_ID --initrd "
		 "\\\"$(dirname \\\"$FAKE_FC_VSOCK_UDS\\\")/initrd\\\"; echo reboot >&3\","
		 "\"guest_touch_mib\":%d}",
		 agent, getenv("MVMFS_TPL_TOUCH_MIB") ? atoi(getenv("MVMFS_TPL_TOUCH_MIB")) : 16);
	write_knobs(kn);
	/* A root disk of the default layout's device size (image root disks are padded to it):
	 * the template built at start is this VM's. */
	snprintf(p, sizeof(p), "%s/rootfs.ext4", T);
	ASSERT_OK(truncate(p, (off_t)IMG_ROOT_DISK_ALIGN));
	with_network = true;
	with_template = true;
}

/* Several VMs of one layout: the runtime's start builds the template in the background (one
 * snapshot/create, by the template VM in its own jail, with its own uid outside the VMs' range
 * and netns, nothing of it left after), every start loads it (one snapshot/load each, in the VM's
 * jail, its own uid and netns), each VM's memory file is the template's inode, root's and
 * read-only, and each guest takes its own identity. A clone suspends into files of its own and
 * resumes; the template is unchanged. A corrupt state or memory file costs a cold boot, and the
 * template is rebuilt in the background. Every call the fake saw was answered 2xx. */
static _unused_ void test_template(void)
{
	static const char *const names[] = {"tpl1", "tpl2", "tpl3"};
	struct runtime_config cfg;
	struct runtime *rt;
	struct vm *vm[3];
	char kn[2048], tdir[600], p[900], seq[65536], before[65], after[65], bid[100];
	struct stat tst, st;
	uid_t uids[3];
	FILE *f;

	template_setup(kn, sizeof(kn));
	rt = rt_open(&cfg);
	/* Built without any start. */
	wait_template(tdir, sizeof(tdir));
	build_id(tdir, bid, sizeof(bid));
	ASSERT_TRUE(strlen(bid) > VM_NAME_MAX && vmm_id_is_valid(bid));
	snprintf(p, sizeof(p), "%s/jail/firecracker/%s", T, bid);
	for (int i = 0; i < 100 && access(p, F_OK) == 0; i++)
		usleep(100000); /* its teardown follows the rename */
	assert_no_leftovers(rt, bid, 0);
	snprintf(p, sizeof(p), "/run/netns/mvmfs-%s", bid);
	ASSERT_EQ(access(p, F_OK), -1);
	for (int i = 0; i < 3; i++) {
		vm[i] = define(rt, names[i]);
		start_healthy(vm[i]);
		assert_identity(vm[i]);
	}
	snprintf(p, sizeof(p), "%s/mem", tdir);
	ASSERT_OK(lstat(p, &tst));
	if (tst.st_uid != 0 || (tst.st_mode & 07777) != 0444)
		TEST_FAIL("template memory file: uid %u mode %o", tst.st_uid, tst.st_mode & 07777);
	ASSERT_OK(savefile_sha256(p, before));
	for (int i = 0; i < 3; i++) {
		json_t *rep;

		snprintf(p, sizeof(p), "%s/jail/firecracker/%s/root/mem", T, names[i]);
		ASSERT_OK(stat(p, &st));
		if (st.st_ino != tst.st_ino || st.st_dev != tst.st_dev)
			TEST_FAIL("%s: its memory file is not the template's inode", names[i]);
		snprintf(p, sizeof(p), "%s/jail/firecracker/%s/fake-jailer.json", T, names[i]);
		rep = json_load_file(p, 0, NULL);
		ASSERT_TRUE(rep != NULL);
		uids[i] = (uid_t)json_integer_value(json_object_get(rep, "uid"));
		snprintf(p, sizeof(p), "/run/netns/mvmfs-%s", names[i]);
		ASSERT_STREQ(json_string_value(json_object_get(rep, "netns")), p);
		json_decref(rep);
		if (uids[i] == cfg.uid_base + cfg.uid_count)
			TEST_FAIL("%s has the template VM's uid", names[i]);
		for (int j = 0; j < i; j++)
			if (uids[j] == uids[i])
				TEST_FAIL("%s and %s share uid %u", names[j], names[i], uids[i]);
	}

	/* A clone suspends into a memory file of its own, resumes, and the template is
	 * unchanged. */
	ASSERT_EQ(command(vm[1], VM_VERB_SUSPEND), 0);
	snprintf(p, sizeof(p), "%s/state/vms/tpl2/suspend/mem", T);
	ASSERT_OK(stat(p, &st));
	if (st.st_ino == tst.st_ino)
		TEST_FAIL("the suspended clone's memory file is the template's");
	ASSERT_EQ(command(vm[1], VM_VERB_RESUME), 0);
	{
		char *s = NULL;

		if (!wait_health(vm[1], "healthy", NULL, &s))
			TEST_FAIL("health after the restore: %s", s);
		free(s);
	}
	snprintf(p, sizeof(p), "%s/mem", tdir);
	ASSERT_OK(savefile_sha256(p, after));
	ASSERT_STREQ(before, after);

	/* A corrupt state: a cold boot, the template removed and rebuilt in the background; the
	 * next start loads it. */
	ASSERT_EQ(command(vm[2], VM_VERB_STOP), 0);
	snprintf(p, sizeof(p), "%s/state", tdir);
	f = fopen(p, "a");
	ASSERT_TRUE(f != NULL);
	fputs("x", f);
	fclose(f);
	start_healthy(vm[2]);
	ASSERT_EQ(command(vm[2], VM_VERB_STOP), 0);
	wait_template(tdir, sizeof(tdir));
	start_healthy(vm[2]);
	assert_identity(vm[2]);
	/* A corrupt memory file (one byte of a guest page): the same. */
	ASSERT_EQ(command(vm[2], VM_VERB_STOP), 0);
	snprintf(p, sizeof(p), "%s/mem", tdir);
	{
		int fd = open(p, O_WRONLY | O_CLOEXEC);

		ASSERT_TRUE(fd >= 0);
		ASSERT_EQ(pwrite(fd, "Z", 1, 4096 * 3 + 17), 1);
		close(fd);
	}
	start_healthy(vm[2]);

	/* A load that fails (the VMM refuses it): that VMM goes, the VM boots cold in the same
	 * start. (The template is rebuilt first.) */
	wait_template(tdir, sizeof(tdir));
	{
		char kn2[4096], *s = NULL;
		struct vm *x;

		snprintf(kn2, sizeof(kn2),
			 "{\"default\":%s,\"by_id\":{\"tplx\":{\"refuse\":{\"PUT /snapshot/load\":"
			 "\"Load snapshot error: injected\"}}}}",
			 kn);
		write_knobs(kn2);
		x = define(rt, "tplx");
		start_healthy(x);
		s = show(x, VM_ATTR_ERROR);
		ASSERT_STREQ(s, "");
		free(s);
		ASSERT_EQ(command(x, VM_VERB_STOP), 0);
		vm_unref(x);
		destroy(rt, "tplx");
		assert_no_leftovers(rt, "tplx", 0);
		check_calls_any("tplx", seq, sizeof(seq));
		ASSERT_EQ(count_of(seq, "PUT /snapshot/create 204\n"), 0);
		ASSERT_EQ(count_of(seq, "PUT /snapshot/load 400\n"), 1);
		ASSERT_EQ(count_of(seq, "InstanceStart 204\n"), 1);
	}

	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(command(vm[i], VM_VERB_STOP), 0);
		vm_unref(vm[i]);
		destroy(rt, names[i]);
		assert_no_leftovers(rt, names[i], 0);
	}
	/* No start made a snapshot but tpl2's suspend. tpl1: load; tpl2: load, suspend (create),
	 * load; tpl3: load, cold (state), load (rebuilt), cold (memory). The template VM: three
	 * builds (at start, after each corruption), a boot and a create each. */
	check_calls("tpl1", seq, sizeof(seq));
	ASSERT_EQ(count_of(seq, "PUT /snapshot/create\n"), 0);
	ASSERT_EQ(count_of(seq, "PUT /snapshot/load\n"), 1);
	check_calls("tpl2", seq, sizeof(seq));
	ASSERT_EQ(count_of(seq, "PUT /snapshot/create\n"), 1);
	ASSERT_EQ(count_of(seq, "PUT /snapshot/load\n"), 2);
	ASSERT_EQ(count_of(seq, "InstanceStart\n"), 0);
	check_calls("tpl3", seq, sizeof(seq));
	ASSERT_EQ(count_of(seq, "PUT /snapshot/create\n"), 0);
	ASSERT_EQ(count_of(seq, "PUT /snapshot/load\n"), 2);
	ASSERT_EQ(count_of(seq, "InstanceStart\n"), 2);
	ASSERT_EQ(check_calls(bid, seq, sizeof(seq)), 3);
	ASSERT_EQ(count_of(seq, "PUT /snapshot/create\n"), 3);
	ASSERT_EQ(count_of(seq, "InstanceStart\n"), 3);
	assert_no_leftovers(rt, bid, 0);
	runtime_free(rt);
	rm_rf(T);
}

/* The jails on another file system than the state dir (a tmpfs over the chroot base): the
 * template's files cannot be hard-linked into the jail, so the VM gets a sparse copy of its own
 * (owned by its uid) and starts all the same; the template stays root's and read-only. */
static _unused_ void test_template_other_fs(void)
{
	struct runtime_config cfg;
	struct runtime *rt;
	struct vm *vm;
	char kn[2048], tdir[600], p[900], jail[300];
	struct stat tst, st;

	template_setup(kn, sizeof(kn));
	snprintf(jail, sizeof(jail), "%s/jail", T);
	ASSERT_OK(mount("tmpfs", jail, "tmpfs", 0, "mode=0755"));
	rt = rt_open(&cfg);
	wait_template(tdir, sizeof(tdir));
	vm = define(rt, "tplc");
	start_healthy(vm);
	assert_identity(vm);
	snprintf(p, sizeof(p), "%s/mem", tdir);
	ASSERT_OK(lstat(p, &tst));
	if (tst.st_uid != 0 || (tst.st_mode & 07777) != 0444)
		TEST_FAIL("template memory file: uid %u mode %o", tst.st_uid, tst.st_mode & 07777);
	snprintf(p, sizeof(p), "%s/firecracker/tplc/root/mem", jail);
	ASSERT_OK(stat(p, &st));
	if (st.st_dev == tst.st_dev || st.st_uid != cfg.uid_base + vm->index ||
	    st.st_size != tst.st_size)
		TEST_FAIL("the jail's memory file: dev %lu (template %lu) uid %u size %lld",
			  (unsigned long)st.st_dev, (unsigned long)tst.st_dev, st.st_uid,
			  (long long)st.st_size);
	ASSERT_EQ(command(vm, VM_VERB_STOP), 0);
	vm_unref(vm);
	destroy(rt, "tplc");
	assert_no_leftovers(rt, "tplc", 0);
	runtime_free(rt);
	(void)umount2(jail, MNT_DETACH);
	rm_rf(T);
}

/* --stop-vms-on-exit: shutting the runtime down stops its VMs; the next start finds them
 * stopped. */
static void test_stop_on_exit(void)
{
	struct runtime_config cfg;
	struct runtime *rt;
	struct vm *vm;
	char *s;
	pid_t pid;

	setup();
	stop_on_exit = true;
	rt = rt_open(&cfg);
	vm = define(rt, "exit1");
	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	s = show(vm, VM_ATTR_PID);
	pid = atoi(s);
	free(s);
	vm_unref(vm);
	runtime_free(rt);
	assert_no_leftovers(NULL, "exit1", pid);
	stop_on_exit = false;
	rt = rt_open(&cfg);
	vm = runtime_vm_get(rt, "exit1");
	ASSERT_TRUE(vm != NULL);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_STOPPED);
	vm_unref(vm);
	destroy(rt, "exit1");
	runtime_free(rt);
	rm_rf(T);
}

#ifdef RT_REGISTRY_SUITE
/* The fake-only cases are built but not run in this binary. */
_unused_ static void (*const fake_cases[])(void) = {
	test_lifecycle,	     test_volumes,	 test_concurrent_commands,
	test_stop_on_exit,   test_agent,	 test_daemon_killed_mid_start,
	test_reap_leftovers, test_network,	 test_ignore_ctrl_alt_del,
	test_crash,	     test_refused,	 test_readopt,
	test_suspend,	     test_suspend_agent,
};
static char fx_dir[128];

static const char *fx(const char *key)
{
	static char val[512];
	char path[200], line[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/env", fx_dir);
	f = fopen(path, "r");
	if (!f)
		return NULL;
	while (fgets(line, sizeof(line), f)) {
		size_t n = strlen(key);
		if (strncmp(line, key, n) == 0 && line[n] == '=') {
			snprintf(val, sizeof(val), "%s", line + n + 1);
			val[strcspn(val, "\n")] = '\0';
			fclose(f);
			return val;
		}
	}
	fclose(f);
	return NULL;
}

/* The real image path: img_prepare pulls from a docker-registry at start, health shows the
 * digest, a missing image fails the start with the registry's answer in error. */
static void test_registry_image(void)
{
	static char entry[64];
	struct runtime_config cfg;
	struct runtime *rt;
	struct vm *vm;
	struct err err = {};
	char ref[128], port[16], *s;
	const char *p = fx("PORT_ANON");

	setup();
	ASSERT_TRUE(p != NULL);
	if (snprintf(port, sizeof(port), "%s", p) >= (int)sizeof(port))
		TEST_FAIL("bad port %s", p);
	snprintf(entry, sizeof(entry), "127.0.0.1:%s", port);
	insecure[0] = entry;
	real_images = true;
	rt = rt_open(&cfg);
	vm = define(rt, "img1");
	snprintf(ref, sizeof(ref), "127.0.0.1:%s/test/simple:1", port);
	ASSERT_OK(vm_set_image(vm, ref, &err));
	ASSERT_EQ(command(vm, VM_VERB_START), 0);
	s = show(vm, VM_ATTR_HEALTH);
	if (!strstr(s, "\nimage: ready sha256:"))
		TEST_FAIL("health: %s", s);
	free(s);
	ASSERT_EQ(command(vm, VM_VERB_STOP), 0);
	snprintf(ref, sizeof(ref), "127.0.0.1:%s/test/missing:1", port);
	ASSERT_OK(vm_set_image(vm, ref, &err));
	ASSERT_ERRNO(command(vm, VM_VERB_START), EIO);
	ASSERT_EQ(vm_get_state(vm), VM_STATE_FAILED);
	s = show(vm, VM_ATTR_ERROR);
	if (!strstr(s, " start: image '127.0.0.1:"))
		TEST_FAIL("error: %s", s);
	free(s);
	assert_no_leftovers(rt, "img1", 0);
	vm_unref(vm);
	destroy(rt, "img1");
	runtime_free(rt);
	rm_rf(T);
}

int main(void)
{
	static const struct test_case cases[] = {TEST(test_registry_image)};
	const char *src = getenv("MVMFS_SRCDIR");
	char cmd[1024];
	int r, st;

	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(fx_dir, sizeof(fx_dir), "/tmp/mrt-regfx-%d", (int)getpid());
	if (!src || geteuid() != 0) {
		printf("1..0 # SKIP needs root and MVMFS_SRCDIR\n");
		return 77;
	}
	snprintf(cmd, sizeof(cmd), "python3 %s/tests/image/registry-fixture.py up %s >&2", src,
		 fx_dir);
	st = system(cmd);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
			printf("1..0 # SKIP registry fixture unavailable "
			       "(docker-registry/skopeo)\n");
			return 77;
		}
		printf("1..0\n# registry fixture failed to start\n");
		return 1;
	}
	r = test_run(cases, ELEMENTSOF(cases));
	snprintf(cmd, sizeof(cmd), "python3 %s/tests/image/registry-fixture.py down %s", src,
		 fx_dir);
	(void)!system(cmd);
	return r;
}
#else
/* A pull that trickles for a minute unless cancelled: it honours img_prepare's contract
 * (-ECANCELED within a second of *cancel) through the runtime's per-VM flag. */
static atomic_int slow_in_flight;
static int slow_image(struct runtime *rt, struct vm *vm, const char *ref, struct img_prepared *ret,
		      struct err *err)
{
	if (!strstr(ref, "/slow"))
		return fixture_image(rt, vm, ref, ret, err);
	atomic_fetch_add(&slow_in_flight, 1);
	for (int i = 0; i < 6000 && !atomic_load(&vm->img_cancel); i++)
		nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
	atomic_fetch_sub(&slow_in_flight, 1);
	if (atomic_load(&vm->img_cancel))
		return err_set(err, -ECANCELED, "cancelled");
	return fixture_image(rt, vm, ref, ret, err);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 8 slow pulls take no capacity from other VMs (define, start,
 * stop, kill, destroy go on at once), stop/kill of a pulling VM end its start within 2 s, and
 * the shutdown cancels the pulls still running (nothing abandoned, everything freed). */
static void test_slow_pulls(void)
{
	struct runtime_config cfg;
	struct runtime *rt;
	struct waiter ws[8] = {WAITER, WAITER, WAITER, WAITER, WAITER, WAITER, WAITER, WAITER};
	struct vm *slow[8], *fast;
	struct err err = {};
	double t0;
	char *e;

	setup();
	rt = rt_open(&cfg);
	rt->prepare_image = slow_image;
	for (int i = 0; i < 8; i++) {
		char name[16];
		snprintf(name, sizeof(name), "slow%d", i);
		slow[i] = define(rt, name);
		ASSERT_OK(vm_set_image(slow[i], "127.0.0.1:5000/slow:1", &err));
		ASSERT_OK(vm_command(slow[i], VM_VERB_START, on_done, &ws[i]));
		/* read-your-writes: the transition is visible once the command returned */
		ASSERT_EQ(vm_get_state(slow[i]), VM_STATE_STARTING);
	}
	for (int i = 0; i < 500 && atomic_load(&slow_in_flight) < 8; i++)
		usleep(10000);
	ASSERT_EQ(atomic_load(&slow_in_flight), 8);

	t0 = now_s();
	fast = define(rt, "fast");
	ASSERT_EQ(command(fast, VM_VERB_START), 0);
	ASSERT_EQ(vm_get_state(fast), VM_STATE_RUNNING);
	ASSERT_EQ(command(fast, VM_VERB_STOP), 0);
	ASSERT_EQ(command(fast, VM_VERB_START), 0);
	ASSERT_EQ(command(fast, VM_VERB_KILL), 0);
	ASSERT_EQ(vm_get_state(fast), VM_STATE_STOPPED);
	vm_unref(fast);
	destroy(rt, "fast");
	if (now_s() - t0 > 20)
		TEST_FAIL("other VMs' work waited for the pulls: %.1f s", now_s() - t0);
	ASSERT_EQ(atomic_load(&slow_in_flight), 8);

	/* kill and stop of a pulling VM: stopped within 2 s, the start fails cancelled */
	for (int i = 0; i < 2; i++) {
		struct waiter w = WAITER;
		t0 = now_s();
		ASSERT_OK(vm_command(slow[i], i ? VM_VERB_STOP : VM_VERB_KILL, on_done, &w));
		ASSERT_EQ(wait_for(&w, 5), 0);
		ASSERT_EQ(wait_for(&ws[i], 5), -EIO);
		if (now_s() - t0 > 2.0)
			TEST_FAIL("%s of a pulling VM took %.2f s", i ? "stop" : "kill",
				  now_s() - t0);
		ASSERT_EQ(vm_get_state(slow[i]), VM_STATE_STOPPED);
		e = show(slow[i], VM_ATTR_ERROR);
		if (!strstr(e, "cancelled"))
			TEST_FAIL("error: %s", e);
		free(e);
	}
	ASSERT_EQ(atomic_load(&slow_in_flight), 6);
	for (int i = 0; i < 8; i++)
		vm_unref(slow[i]);
	/* Shutdown with 6 pulls in flight: cancelled, nothing abandoned, bounded. */
	t0 = now_s();
	runtime_shutdown(rt);
	if (now_s() - t0 > 3.0)
		TEST_FAIL("shutdown took %.2f s", now_s() - t0);
	ASSERT_FALSE(runtime_shutdown_abandoned(rt));
	ASSERT_EQ(atomic_load(&slow_in_flight), 0);
	runtime_free(rt);
	/* The writers of the interrupted starts were answered (EINTR or the start's failure). */
	for (int i = 2; i < 8; i++)
		ASSERT_TRUE(ws[i].done);
	rt = rt_open(&cfg);
	for (int i = 0; i < 8; i++) {
		char name[16];
		snprintf(name, sizeof(name), "slow%d", i);
		destroy(rt, name);
	}
	runtime_free(rt);
}

TEST_MAIN(TEST(test_slow_pulls), TEST(test_lifecycle), TEST(test_volumes),
	  TEST(test_concurrent_commands), TEST(test_stop_on_exit), TEST(test_agent),
	  TEST(test_daemon_killed_mid_start), TEST(test_reap_leftovers), TEST(test_network),
	  TEST(test_ignore_ctrl_alt_del), TEST(test_crash), TEST(test_refused), TEST(test_readopt),
	  TEST(test_symlink_swap), TEST(test_hung_api), TEST(test_cgroup_fail_closed),
	  TEST(test_suspend), TEST(test_suspend_agent), TEST(test_template),
	  TEST(test_template_other_fs))
#endif
