/* SPDX-License-Identifier: MIT */
/*
 * Children keep only the fds they need: while this process (standing in for the daemon) holds
 * fds that are NOT close-on-exec (the worst case: a live TCP connection like the reporter's, a
 * pipe, a host file), a spawned jailer and mkfs.ext4 hold stdin, stdout and stderr and
 * nothing else; and libcurl's sockets are close-on-exec with curl_set_cloexec (every handle of
 * the daemon sets it), which plain libcurl's are not. (The QEMU child, with the fds it is handed,
 * is listed by tests/guest/ test-vm-qemu.c on a real VM.)
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "curl-cloexec.h"
#include "fileio.h"
#include "image.h"
#include "internal.h"
#include "macro.h"
#include "test.h"

static char D[64];
static int sentinel[5];
static int n_sentinel;

static void open_sentinels(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int l, p[2];

	snprintf(D, sizeof(D), "/tmp/child-fds.XXXXXX");
	ASSERT_TRUE(mkdtemp(D) != NULL);
	l = socket(AF_INET, SOCK_STREAM, 0);
	ASSERT_TRUE(l >= 0);
	ASSERT_OK(bind(l, (struct sockaddr *)&sa, sizeof(sa)));
	ASSERT_OK(listen(l, 1));
	ASSERT_OK(getsockname(l, (struct sockaddr *)&sa, &len));
	sentinel[n_sentinel] = socket(AF_INET, SOCK_STREAM, 0);
	ASSERT_OK(connect(sentinel[n_sentinel++], (struct sockaddr *)&sa, sizeof(sa)));
	sentinel[n_sentinel] = accept(l, NULL, NULL);
	ASSERT_TRUE(sentinel[n_sentinel++] >= 0);
	close(l);
	ASSERT_OK(pipe(p));
	sentinel[n_sentinel++] = p[0];
	sentinel[n_sentinel++] = p[1];
	sentinel[n_sentinel] = open("/etc/hostname", O_RDONLY);
	ASSERT_TRUE(sentinel[n_sentinel++] >= 0);
	for (int i = 0; i < n_sentinel; i++)
		ASSERT_EQ(fcntl(sentinel[i], F_GETFD) & FD_CLOEXEC, 0);
}

static void close_sentinels(void)
{
	for (int i = 0; i < n_sentinel; i++)
		close(sentinel[i]);
	n_sentinel = 0;
	rm_rf(D);
}

/* Every fd of pid above 2 is a leak (printed with its target). */
static void assert_only_stdio(pid_t pid, const char *what)
{
	char dir[64];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	ASSERT_TRUE(d != NULL);
	while ((de = readdir(d))) {
		char path[400], link[256] = "?";
		ssize_t k;

		if (de->d_name[0] == '.')
			continue;
		n++;
		if (atoi(de->d_name) <= 2)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		k = readlink(path, link, sizeof(link) - 1);
		if (k > 0)
			link[k] = '\0';
		TEST_FAIL("%s holds fd %s -> %s", what, de->d_name, link);
	}
	closedir(d);
	printf("# %s: %d fds, only stdin/stdout/stderr\n", what, n);
}

static bool exe_is(pid_t pid, const char *base)
{
	char path[64], link[256];
	ssize_t k;

	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	k = readlink(path, link, sizeof(link) - 1);
	if (k <= 0)
		return false;
	link[k] = '\0';
	return strlen(link) >= strlen(base) &&
	       strcmp(link + strlen(link) - strlen(base), base) == 0;
}

/* The jailer (here a script that becomes `sleep`, keeping exactly the fds it inherited). */
static void test_jailer(void)
{
	char script[128];
	struct jailer_params jp = {
		.exec_file = "/bin/true",
		.chroot_base = "/nonexistent",
		.id = "fds",
		.uid = 4242,
		.gid = 4242,
		.api_sock = "/run/firecracker.socket",
		.stdout_fd = -1,
	};
	pid_t pid;
	int i;

	open_sentinels();
	snprintf(script, sizeof(script), "%s/jailer", D);
	ASSERT_OK(write_file_atomic(script, "#!/bin/sh\nexec sleep 30\n", 25, 0755));
	jp.jailer = script;
	ASSERT_OK(jailer_spawn(&jp, &pid));
	for (i = 0; i < 300 && !exe_is(pid, "/sleep"); i++)
		usleep(10000);
	if (i == 300)
		TEST_FAIL("the spawned jailer script did not exec sleep");
	assert_only_stdio(pid, "jailer");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close_sentinels();
}

struct mkfs_job {
	char path[128];
	int r;
	struct err err;
};

static void *make_disk(void *ud)
{
	struct mkfs_job *j = ud;

	j->r = img_make_data_disk(j->path, 8 << 20, &j->err);
	return NULL;
}

/* mkfs.ext4, held still while it opens its configuration ($MKE2FS_CONFIG, here a FIFO). */
static void test_mkfs(void)
{
	struct mkfs_job job = {};
	char fifo[128];
	pthread_t t;
	pid_t pid = 0;
	int fd;

	if (access("/usr/sbin/mkfs.ext4", X_OK) < 0 && access("/sbin/mkfs.ext4", X_OK) < 0)
		test_skip("mkfs.ext4 missing");
	open_sentinels();
	snprintf(fifo, sizeof(fifo), "%s/mke2fs.conf", D);
	ASSERT_OK(mkfifo(fifo, 0600));
	setenv("MKE2FS_CONFIG", fifo, 1);
	snprintf(job.path, sizeof(job.path), "%s/data.ext4", D);
	ASSERT_OK(pthread_create(&t, NULL, make_disk, &job));
	for (int i = 0; i < 500 && !pid; i++) {
		DIR *d = opendir("/proc");
		struct dirent *de;

		while (d && (de = readdir(d))) {
			char path[300], *stat = NULL, *p;
			int ppid;

			if (de->d_name[0] < '0' || de->d_name[0] > '9')
				continue;
			snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
			if (read_file_bounded(path, 4096, &stat, NULL) < 0)
				continue;
			p = strrchr(stat, ')');
			if (p && sscanf(p + 2, "%*c %d", &ppid) == 1 && ppid == getpid() &&
			    strstr(stat, "(mkfs.ext4)"))
				pid = atoi(de->d_name);
			free(stat);
		}
		if (d)
			closedir(d);
		if (!pid)
			usleep(10000);
	}
	if (!pid)
		TEST_FAIL("mkfs.ext4 not found among our children");
	/* mkfs blocks opening the FIFO: its fds are what it inherited. */
	usleep(100000);
	assert_only_stdio(pid, "mkfs.ext4");
	fd = open(fifo, O_WRONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(write(fd, "[defaults]\n", 11), 11);
	close(fd);
	pthread_join(t, NULL);
	unsetenv("MKE2FS_CONFIG");
	if (job.r < 0)
		TEST_FAIL("img_make_data_disk: %s", job.err.msg);
	close_sentinels();
}

/* The socket of a connected curl handle: close-on-exec with curl_set_cloexec only. */
static int curl_socket_cloexec(bool set)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	curl_socket_t fd = CURL_SOCKET_BAD;
	char url[64];
	CURL *c;
	int l, flags;

	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_TRUE(l >= 0);
	ASSERT_OK(bind(l, (struct sockaddr *)&sa, sizeof(sa)));
	ASSERT_OK(listen(l, 4));
	ASSERT_OK(getsockname(l, (struct sockaddr *)&sa, &len));
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/", (unsigned)ntohs(sa.sin_port));
	c = curl_easy_init();
	ASSERT_TRUE(c != NULL);
	if (set)
		ASSERT_EQ(curl_set_cloexec(c), CURLE_OK);
	ASSERT_EQ(curl_easy_setopt(c, CURLOPT_URL, url), CURLE_OK);
	ASSERT_EQ(curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L), CURLE_OK);
	ASSERT_EQ(curl_easy_perform(c), CURLE_OK);
	ASSERT_EQ(curl_easy_getinfo(c, CURLINFO_ACTIVESOCKET, &fd), CURLE_OK);
	ASSERT_TRUE(fd != CURL_SOCKET_BAD);
	flags = fcntl(fd, F_GETFD);
	curl_easy_cleanup(c);
	close(l);
	return flags & FD_CLOEXEC;
}

static void test_curl_cloexec(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	ASSERT_TRUE(curl_socket_cloexec(true));
	/* The control: libcurl alone leaves it inheritable. */
	printf("# without the callback: %s\n",
	       curl_socket_cloexec(false) ? "close-on-exec" : "inheritable");
	curl_global_cleanup();
}

TEST_MAIN(TEST(test_jailer), TEST(test_mkfs), TEST(test_curl_cloexec))
