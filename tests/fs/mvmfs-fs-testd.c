/* SPDX-License-Identifier: MIT */
/*
 * The real FUSE tree (fs/) over the fake runtime, for the fs semantics tests and the fs-read
 * benchmark. Usage: mvmfs-fs-testd MOUNTPOINT [-d]
 * Prints "ready" on stdout once vms/ is visible, then reads control lines on stdin (see
 * fake-runtime.h, plus "setready" and "opens": "HANDLES HANDLES_OTHERS BYTES_OTHERS" of
 * fs_open_stats()) and answers each with one line. EOF on stdin or SIGTERM
 * unmounts and exits. With MVMFS_TESTD_HOLD_READY=1 vms/ stays hidden until "setready".
 * MVMFS_TESTD_LIMITS="MAX_HANDLES ROOT_HANDLES PER_UID BUFFER_PER_UID BUFFER_OTHERS" sets the
 * open limits (struct fs_limits; 0 keeps a default).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake-runtime.h"
#include "fs.h"
#include "log.h"
#include "runtime.h"

struct ctl {
	pthread_mutex_t lock; /* protects fs: main clears it before fs_free() */
	struct runtime *rt;
	struct fs *fs;
};

static void *control_thread(void *arg)
{
	struct ctl *c = arg;
	char line[1024], reply[256];

	while (fgets(line, sizeof(line), stdin)) {
		if (strcmp(line, "setready\n") == 0) {
			pthread_mutex_lock(&c->lock);
			if (c->fs)
				fs_set_ready(c->fs);
			pthread_mutex_unlock(&c->lock);
			snprintf(reply, sizeof(reply), "ok");
		} else if (strcmp(line, "opens\n") == 0) {
			struct fs_open_stats st = {};
			pthread_mutex_lock(&c->lock);
			if (c->fs)
				fs_open_stats(c->fs, &st);
			pthread_mutex_unlock(&c->lock);
			snprintf(reply, sizeof(reply), "%u %u %" PRIu64, st.handles,
				 st.handles_others, st.bytes_others);
		} else {
			fake_runtime_control(c->rt, line, reply, sizeof(reply));
		}
		printf("%s\n", reply);
		fflush(stdout);
	}
	/* libfuse's handler ends the loop; fs_exit() would touch fs, which main may free. */
	(void)kill(getpid(), SIGTERM);
	return NULL;
}

int main(int argc, char **argv)
{
	struct runtime_config cfg = {.max_vms = 4096};
	struct fs_options opts = {.vmm_name = "fake"};
	struct runtime *rt = NULL;
	struct fs *fs = NULL;
	struct err err = {};
	struct ctl c;
	pthread_t thr;
	sigset_t all, old;
	int r;

	if (argc < 2) {
		fprintf(stderr, "usage: %s MOUNTPOINT [-d]\n", argv[0]);
		return 2;
	}
	opts.mountpoint = argv[1];
	opts.debug = argc > 2 && strcmp(argv[2], "-d") == 0;
	if (getenv("MVMFS_TESTD_LIMITS") &&
	    sscanf(getenv("MVMFS_TESTD_LIMITS"), "%u %u %u %" SCNu64 " %" SCNu64,
		   &opts.limits.max_handles, &opts.limits.root_handles,
		   &opts.limits.max_handles_per_uid, &opts.limits.max_buffer_per_uid,
		   &opts.limits.max_buffer_others) != 5) {
		fprintf(stderr, "MVMFS_TESTD_LIMITS: five numbers expected\n");
		return 2;
	}
	if (getenv("MVMFS_TESTD_DEBUG"))
		log_set_max_level(LOG_DEBUG);
	signal(SIGPIPE, SIG_IGN);

	/* Log once before any thread exists (common/log.c initialises lazily). */
	log_info("fs test daemon for %s", opts.mountpoint);
	r = runtime_new(&cfg, &rt, &err);
	if (r < 0) {
		fprintf(stderr, "runtime_new: %s\n", err.msg);
		return 1;
	}
	r = fs_cleanup_stale_mount(opts.mountpoint, &err);
	if (r < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	r = fs_new(rt, &opts, &fs, &err);
	if (r < 0) {
		fprintf(stderr, "fs_new: %s\n", err.msg);
		runtime_free(rt);
		return 1;
	}
	r = runtime_start(rt, &err);
	if (r < 0) {
		fprintf(stderr, "runtime_start: %s\n", err.msg);
		fs_free(fs);
		runtime_free(rt);
		return 1;
	}
	/* MVMFS_TESTD_HOLD_READY=1: vms/ stays hidden until the control line "setready". */
	if (!getenv("MVMFS_TESTD_HOLD_READY"))
		fs_set_ready(fs);

	pthread_mutex_init(&c.lock, NULL);
	c.rt = rt;
	c.fs = fs;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = pthread_create(&thr, NULL, control_thread, &c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		fs_free(fs);
		runtime_free(rt);
		return 1;
	}
	pthread_detach(thr);
	printf("ready\n");
	fflush(stdout);

	r = fs_run(fs);
	/* No done callback may reply after the FUSE fd is closed (it could be a reused fd). */
	runtime_shutdown(rt);
	fs_unmount(fs);
	pthread_mutex_lock(&c.lock);
	c.fs = NULL;
	pthread_mutex_unlock(&c.lock);
	fs_free(fs);
	runtime_free(rt);
	return r < 0 ? 1 : 0;
}
