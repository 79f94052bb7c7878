/* SPDX-License-Identifier: MIT */
/*
 * bench/fs-handles helper: one local user holding as many open files of the mount as it can,
 * with a rendered buffer each, while root works. Built and run by bench/fs-handles.
 *
 *   fs-handles DAEMON_PID UID N RSIZE HOLD_PATH ROOT_PATH STATE_PATH VERB [HAMMERS]
 *
 * A child drops to UID, opens HOLD_PATH up to N times and reads RSIZE bytes at offset 0 of each
 * (1 keeps the rendered buffer in the daemon; a large RSIZE is a cat). While it holds them (and
 * HAMMERS more processes as UID read HOLD_PATH in a loop), root reads ROOT_PATH 1000 times
 * (open+read+close) and writes VERB to STATE_PATH. Prints the daemon's VmRSS before, while held
 * and after release, and root's latencies.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long rss_kb(const char *pid)
{
	char path[64], line[256];
	long kb = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%s/status", pid);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

#define PER_PROCESS 16000 /* open files per holder process (RLIMIT_NOFILE may be capped) */
#define MAX_HOLDERS 64

struct holder {
	pid_t pid;
	int hold_w;
	int got[4]; /* opened, open errno, reads, read errno */
};

/* A child as uid that opens path up to n times, reads rsize bytes of each and holds them. */
static int holder_start(struct holder *h, uid_t uid, long n, size_t rsize, const char *path)
{
	int res[2], hold[2];

	if (pipe(res) < 0 || pipe(hold) < 0)
		return -1;
	h->pid = fork();
	if (h->pid < 0)
		return -1;
	if (h->pid == 0) {
		struct rlimit rl;
		int r[4] = {0, 0, 0, 0}, *fds = calloc((size_t)n, sizeof(int));
		char c, *rbuf = malloc(rsize);

		for (int fd = 3; fd < 1024; fd++)
			if (fd != res[1] && fd != hold[0])
				close(fd);
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 16) {
			rl.rlim_cur = (rlim_t)n + 16 < rl.rlim_max ? (rlim_t)n + 16 : rl.rlim_max;
			(void)setrlimit(RLIMIT_NOFILE, &rl);
		}
		if (!fds || !rbuf || setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 ||
		    setresuid(uid, uid, uid) < 0) {
			perror("fs-handles: holder setup");
			_exit(3);
		}
		for (; r[0] < n; r[0]++) {
			fds[r[0]] = open(path, O_RDONLY | O_CLOEXEC);
			if (fds[r[0]] < 0) {
				r[1] = errno;
				break;
			}
		}
		for (; r[2] < r[0]; r[2]++) {
			if (pread(fds[r[2]], rbuf, rsize, 0) < 0) {
				r[3] = errno;
				break;
			}
		}
		if (write(res[1], r, sizeof(r)) != sizeof(r))
			_exit(4);
		(void)!read(hold[0], &c, 1);
		_exit(0);
	}
	close(res[1]);
	close(hold[0]);
	h->hold_w = hold[1];
	if (read(res[0], h->got, sizeof(h->got)) != sizeof(h->got)) {
		fprintf(stderr, "fs-handles: a holder died\n");
		close(res[0]);
		return -1;
	}
	close(res[0]);
	return 0;
}

int main(int argc, char **argv)
{
	static double lat[1000];
	static struct holder hs[MAX_HOLDERS];
	pid_t hpids[MAX_HOLDERS] = {0};
	int hammers, status, fails = 0, nh = 0, opened = 0, reads = 0, open_err = 0, read_err = 0;
	long n, before, held, after;
	size_t rsize;
	uid_t uid;
	char buf[4096];

	if (argc != 9 && argc != 10) {
		fprintf(stderr,
			"usage: %s DAEMON_PID UID N RSIZE HOLD_PATH ROOT_PATH STATE_PATH VERB "
			"[HAMMERS]\n",
			argv[0]);
		return 2;
	}
	hammers = argc == 10 ? (int)strtol(argv[9], NULL, 10) : 0;
	if (hammers < 0 || hammers > MAX_HOLDERS)
		return 2;
	uid = (uid_t)strtoul(argv[2], NULL, 10);
	n = strtol(argv[3], NULL, 10);
	rsize = strtoul(argv[4], NULL, 10);
	if (n <= 0 || rsize == 0)
		return 2;
	before = rss_kb(argv[1]);
	/* holders until N are open or one of them is refused an open or a read */
	while (opened < n && nh < MAX_HOLDERS && !open_err && !read_err) {
		long want = n - opened < PER_PROCESS ? n - opened : PER_PROCESS;
		struct holder *h = &hs[nh];

		if (holder_start(h, uid, want, rsize, argv[5]) < 0)
			return 1;
		nh++;
		opened += h->got[0];
		reads += h->got[2];
		open_err = h->got[1];
		read_err = h->got[3];
	}
	for (int i = 0; i < hammers; i++) {
		hpids[i] = fork();
		if (hpids[i] == 0) {
			if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 ||
			    setresuid(uid, uid, uid) < 0)
				_exit(3);
			for (;;) {
				int fd = open(argv[5], O_RDONLY | O_CLOEXEC);
				if (fd >= 0) {
					(void)!read(fd, buf, sizeof(buf));
					close(fd);
				}
			}
		}
	}
	if (hammers)
		usleep(200000);
	held = rss_kb(argv[1]);
	for (int i = 0; i < 1000; i++) {
		double t = now_us();
		int fd = open(argv[6], O_RDONLY | O_CLOEXEC);
		if (fd < 0 || read(fd, buf, sizeof(buf)) < 0)
			fails++;
		if (fd >= 0)
			close(fd);
		lat[i] = now_us() - t;
	}
	qsort(lat, 1000, sizeof(lat[0]), cmp);
	{
		int fd = open(argv[7], O_WRONLY | O_TRUNC | O_CLOEXEC);
		ssize_t w = fd < 0 ? -1 : write(fd, argv[8], strlen(argv[8]));
		printf("root: write '%s' to state: %s\n", argv[8], w < 0 ? strerror(errno) : "ok");
		if (fd >= 0)
			close(fd);
	}
	for (int i = 0; i < hammers; i++)
		if (hpids[i] > 0) {
			kill(hpids[i], SIGKILL);
			waitpid(hpids[i], &status, 0);
		}
	for (int i = 0; i < nh; i++) {
		close(hs[i].hold_w);
		waitpid(hs[i].pid, &status, 0);
	}
	sleep(1); /* releases reach the daemon after close(2) returns */
	after = rss_kb(argv[1]);
	printf("uid %u (%d processes): %d opens (then %s), %d held buffers (then %s)\n",
	       (unsigned)uid, nh, opened, open_err ? strerror(open_err) : "-", reads,
	       read_err ? strerror(read_err) : "-");
	printf("root: 1000 x open+read+close of version while held (%d readers looping as uid "
	       "%u): %d failed, p50 %.0f us, p99 %.0f us, max %.0f us\n",
	       hammers, (unsigned)uid, fails, lat[500], lat[990], lat[999]);
	printf("daemon VmRSS: %ld KiB before, %ld KiB while held, %ld KiB after release\n", before,
	       held, after);
	return 0;
}
