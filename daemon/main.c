/* SPDX-License-Identifier: MIT */
/*
 * mvmfs: options, logging, curl, the runtime, the FUSE mount, readiness, and shutdown order.
 *
 * Order: curl_global_init before any thread; clean a stale mount; create the
 * runtime; mount (vms/ hidden); a startup thread re-adopts VMs (runtime_start) and then shows
 * vms/ and tells systemd READY=1, while the main thread already serves FUSE requests. SIGTERM /
 * SIGINT end the loop (libfuse's handlers): stop the runtime (VMs keep running unless
 * --stop-vms-on-exit), unmount, free, exit 0.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "fs.h"
#include "image.h"
#include "log.h"
#include "macro.h"
#include "node.h"
#include "options.h"
#include "runtime.h"

/* sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET. */
static void notify_systemd(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len;
	int fd;

	if (!path || (path[0] != '/' && path[0] != '@'))
		return;
	len = strlen(path);
	if (len >= sizeof(sa.sun_path))
		return;
	memcpy(sa.sun_path, path, len);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
		log_debug_errno(-errno, "sd_notify failed, ignoring");
	close(fd);
}

struct startup {
	struct runtime *rt;
	struct fs *fs;
	atomic_int result; /* 1 while running, then 0 or a negative errno */
};

/* Re-adopting recorded VMs can take a while; FUSE requests are served meanwhile. */
static void *startup_thread(void *arg)
{
	struct startup *s = arg;
	struct err err = {};
	int r;

	r = runtime_start(s->rt, &err);
	if (r < 0) {
		log_error_errno(r, "cannot start the runtime: %s", err.msg);
		atomic_store(&s->result, r);
		fs_exit(s->fs);
		return NULL;
	}
	fs_set_ready(s->fs);
	notify_systemd("READY=1\nSTATUS=serving");
	atomic_store(&s->result, 0);
	return NULL;
}

/* Shutdown bounds: SIGTERM to exit within 5 s whatever is in flight. */
#define SHUTDOWN_STARTUP_MS 1000
#define SHUTDOWN_WATCHDOG_MS 4500

static bool join_within(pthread_t thr, unsigned ms)
{
	struct timespec ts = clock_after_ms(CLOCK_REALTIME, ms);

	return pthread_timedjoin_np(thr, NULL, &ts) == 0;
}

/* The last line of defence of the 5 s bound: if the orderly shutdown is still not done, detach
 * the mount and exit. VMs keep running; records are written atomically, so they are whole. */
static void *watchdog_thread(void *arg)
{
	const char *mountpoint = arg;

	nanosleep(&(struct timespec){.tv_sec = SHUTDOWN_WATCHDOG_MS / 1000,
				     .tv_nsec = (SHUTDOWN_WATCHDOG_MS % 1000) * 1000000L},
		  NULL);
	log_error("shutdown watchdog: still not done after %d ms, detaching %s and exiting",
		  SHUTDOWN_WATCHDOG_MS, mountpoint);
	(void)umount2(mountpoint, MNT_DETACH);
	_exit(0);
	return NULL;
}

static void start_watchdog(const char *mountpoint)
{
	sigset_t all, old;
	pthread_t t;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	if (pthread_create(&t, NULL, watchdog_thread, (void *)mountpoint) == 0)
		pthread_detach(t);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static const char *vmm_name(enum vmm_kind k)
{
	return k == VMM_QEMU ? "qemu" : "firecracker";
}

/* Before anything touches the mount or the host: a second daemon on this state dir (or jail
 * base) stops here. The locks are held until run() returns (after the unmount). */
static int claim_node(struct daemon_options *o, int *lock_fd, int *jail_lock_fd,
		      char node_id[static NODE_ID_LEN + 1])
{
	struct err err = {};
	int r;

	r = node_lock(o->rt.state_dir, o->mountpoint, lock_fd, &err);
	if (r < 0)
		return log_error_errno(r, "%s", err.msg);
	if (o->rt.vmm == VMM_FIRECRACKER) {
		r = node_lock_jails(o->rt.chroot_base, o->mountpoint, jail_lock_fd, &err);
		if (r < 0)
			return log_error_errno(r, "%s", err.msg);
	}
	r = node_id_load(o->rt.state_dir, node_id, &err);
	if (r < 0)
		return log_error_errno(r, "%s", err.msg);
	o->rt.node_id = node_id;

	r = fs_cleanup_stale_mount(o->mountpoint, &err);
	if (r < 0)
		return log_error_errno(r, "%s", err.msg);
	if (r > 0)
		log_notice("detached a stale mount left at %s by a previous daemon", o->mountpoint);
	return 0;
}

/* Threads inherit the mask: the runtime's and the startup thread leave SIGINT/SIGTERM/SIGHUP
 * to the FUSE threads, where libfuse's handlers end the loop. */
static int spawn_startup(struct startup *s, pthread_t *thr)
{
	sigset_t block, old;
	int r;

	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	atomic_init(&s->result, 1);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	r = pthread_create(thr, NULL, startup_thread, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0)
		return log_error_errno(-r, "cannot create the startup thread");
	return 0;
}

/* The runtime stops first: no done callback may reply after the FUSE fd is closed by the
 * unmount (the number could already belong to another file). Every step is bounded; work still
 * waiting on the outside world is abandoned, and then nothing is freed: the process exits at
 * once after the unmount (the records say what the next daemon must finish). */
static void shut_down(const struct daemon_options *o, struct runtime *rt, struct fs *fs,
		      pthread_t startup)
{
	bool abandoned;

	notify_systemd("STOPPING=1");
	log_info("shutting down (VMs %s)", o->rt.stop_vms_on_exit ? "are stopped" : "keep running");
	if (!o->rt.stop_vms_on_exit)
		start_watchdog(o->mountpoint);
	abandoned = !join_within(startup, SHUTDOWN_STARTUP_MS);
	if (abandoned) {
		log_warning("shutdown: re-adoption still running, abandoned");
		pthread_detach(startup);
	} else
		runtime_shutdown(rt);
	if (abandoned || runtime_shutdown_abandoned(rt)) {
		fs_unmount(fs);
		log_info("unmounted; exiting with work abandoned");
		_exit(0);
	}
	fs_unmount(fs);
}

static int run(struct daemon_options *o)
{
	struct fs_options fo = {.mountpoint = o->mountpoint,
				.vmm_name = vmm_name(o->rt.vmm),
				.max_threads = o->max_threads,
				.limits = {.max_handles = o->max_handles,
					   .root_handles = o->root_handles,
					   .max_handles_per_uid = o->max_handles_per_uid,
					   .max_buffer_per_uid = o->max_buffer_per_uid,
					   .max_buffer_others = o->max_buffer_others},
				.debug = o->fuse_debug};
	struct startup s = {};
	struct runtime *rt = NULL;
	struct fs *fs = NULL;
	struct err err = {};
	_cleanup_close_ int lock_fd = -1, jail_lock_fd = -1;
	static char node_id[NODE_ID_LEN + 1];
	pthread_t thr;
	int r;

	r = claim_node(o, &lock_fd, &jail_lock_fd, node_id);
	if (r < 0)
		return r;
	r = runtime_new(&o->rt, &rt, &err);
	if (r < 0)
		return log_error_errno(r, "cannot set up the runtime: %s", err.msg);
	r = fs_new(rt, &fo, &fs, &err);
	if (r < 0) {
		log_error_errno(r, "%s", err.msg);
		runtime_free(rt);
		return r;
	}
	log_info("mvmfs %s mounted at %s (vmm %s, state dir %s, node %s)", PACKAGE_VERSION,
		 o->mountpoint, vmm_name(o->rt.vmm), o->rt.state_dir, node_id);

	s = (struct startup){.rt = rt, .fs = fs};
	r = spawn_startup(&s, &thr);
	if (r < 0) {
		fs_free(fs);
		runtime_free(rt);
		return r;
	}
	r = fs_run(fs);
	if (r < 0)
		log_error_errno(r, "FUSE loop failed");
	shut_down(o, rt, fs, thr);
	fs_free(fs);
	runtime_free(rt);
	if (atomic_load(&s.result) < 0)
		return atomic_load(&s.result);
	return r < 0 ? r : 0;
}

int main(int argc, char **argv)
{
	struct daemon_options o;
	struct err err = {};
	CURLcode cr;
	int r;

	r = daemon_options_parse(argc, argv, &o, &err);
	if (r < 0) {
		fprintf(stderr, "mvmfs: %s\n", err.msg);
		daemon_options_done(&o);
		return 2;
	}
	if (o.show_help) {
		daemon_options_help(argv[0]);
		daemon_options_done(&o);
		return 0;
	}
	if (o.show_version) {
		printf("mvmfs %s\n", PACKAGE_VERSION);
		daemon_options_done(&o);
		return 0;
	}
	/* A key that does not load would fail every start: refuse now, before anything runs. */
	if (img_verify_keys_check(o.rt.verify_keys, &err) < 0) {
		fprintf(stderr, "mvmfs: %s\n", err.msg);
		daemon_options_done(&o);
		return 2;
	}
	log_set_max_level(o.log_level);
	/* API sockets and report connections can close under us. */
	signal(SIGPIPE, SIG_IGN);
	/* Must run before any other thread exists (libcurl-thread(3)). */
	cr = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (cr != CURLE_OK) {
		log_error("curl_global_init: %s", curl_easy_strerror(cr));
		daemon_options_done(&o);
		return 1;
	}
	r = run(&o);
	curl_global_cleanup();
	daemon_options_done(&o);
	return r < 0 ? 1 : 0;
}
