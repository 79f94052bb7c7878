/* SPDX-License-Identifier: MIT */
/* Warm the page cache with the files the app's start reads first, on a thread beside the rest of
 * the boot (the writable disk's and the overlay's mounts, the API mounts, /etc, the volumes, the
 * network): the image's /etc/passwd and /etc/group (the user lookup), the working directory, the
 * program (argv[0], looked up in PATH as the start does) and, for a "#!" script, its interpreter.
 * Each file is read ahead from its start, up to WARM_READ_MAX (a big program's head: the disk must
 * stay free for the mounts still running): after a template's restore the image's disk is cold,
 * and the start's path walks and execve would otherwise wait for one small read after another.
 * Read-only and best effort: paths are resolved inside the image's root (RESOLVE_IN_ROOT, no
 * symlink leads out), only regular files are opened (never a FIFO or a device), nothing is logged
 * or reported; the start itself does every lookup again and decides. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"

#define WARM_READ_MAX (8u << 20)
#define WARM_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

int warm_shebang(const uint8_t *buf, size_t len, char *out, size_t outsz)
{
	size_t i = 2, start, n;

	if (len > WARM_HEAD || len < 2 || buf[0] != '#' || buf[1] != '!' || outsz == 0)
		return -EINVAL;
	while (i < len && (buf[i] == ' ' || buf[i] == '\t'))
		i++;
	start = i;
	while (i < len && buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\n' && buf[i] != '\0')
		i++;
	n = i - start;
	/* The line must end inside the head (the kernel reads no further), the path be absolute. */
	if (n == 0 || n >= outsz || buf[start] != '/' || !memchr(buf + i, '\n', len - i))
		return -EINVAL;
	memcpy(out, buf + start, n);
	out[n] = '\0';
	return 0;
}

static int open_in_root(int root_fd, const char *path, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};

	return (int)syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
}

struct warm_job {
	const struct guest_vm *vm;
	int root_fd;
	pthread_t thread;
	bool running;
	void (*seen)(void *ud, const char *path); /* tests: each file read ahead */
	void *ud;
};

/* Read path ahead if it is a regular file inside the root; its first bytes into head (NULL: not
 * wanted). Returns the bytes of head filled, or -errno (not a regular file: -EINVAL). */
static ssize_t warm_file(struct warm_job *j, const char *path, uint8_t *head, size_t headsz)
{
	char proc[64];
	struct stat st;
	ssize_t n = 0;
	int fd, rfd;

	fd = open_in_root(j->root_fd, path, O_PATH);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	/* Opened for reading only now that it is known to be a regular file. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	rfd = open(proc, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	close(fd);
	if (rfd < 0)
		return -errno;
	(void)posix_fadvise(rfd, 0, st.st_size < WARM_READ_MAX ? st.st_size : WARM_READ_MAX,
			    POSIX_FADV_WILLNEED);
	if (head)
		n = pread(rfd, head, headsz, 0);
	close(rfd);
	if (n < 0)
		return -EIO;
	if (j->seen)
		j->seen(j->ud, path);
	return n;
}

static const char *env_value(char **env, const char *key)
{
	size_t k = strlen(key);

	for (char **e = env; e && *e; e++)
		if (strncmp(*e, key, k) == 0 && (*e)[k] == '=')
			return *e + k + 1;
	return NULL;
}

/* The program as the start finds it: a name with a slash as it is (relative to the working
 * directory), else the first regular file of that name in PATH. Then its interpreter. */
static void warm_program(struct warm_job *j)
{
	const struct guest_vm *vm = j->vm;
	const char *prog = vm->entrypoint && vm->entrypoint[0] ? vm->entrypoint[0]
			   : vm->cmd && vm->cmd[0]	       ? vm->cmd[0]
							       : NULL;
	const char *p = env_value(vm->env, "PATH");
	uint8_t head[WARM_HEAD];
	char path[PATH_MAX], interp[WARM_HEAD];
	ssize_t n = -ENOENT;

	if (!prog || !*prog)
		return;
	if (strchr(prog, '/')) {
		const char *wd = vm->workdir && *vm->workdir ? vm->workdir : "/";

		if (prog[0] == '/')
			snprintf(path, sizeof(path), "%s", prog);
		else if (snprintf(path, sizeof(path), "%s/%s", wd, prog) >= (int)sizeof(path))
			return;
		n = warm_file(j, path, head, sizeof(head));
	} else {
		for (p = p ? p : WARM_DEFAULT_PATH; p && n < 0;) {
			const char *c = strchr(p, ':');
			size_t len = c ? (size_t)(c - p) : strlen(p);

			if (len && snprintf(path, sizeof(path), "%.*s/%s", (int)len, p, prog) <
					   (int)sizeof(path))
				n = warm_file(j, path, head, sizeof(head));
			p = c ? c + 1 : NULL;
		}
	}
	if (n > 0 && warm_shebang(head, (size_t)n, interp, sizeof(interp)) == 0)
		(void)warm_file(j, interp, NULL, 0);
}

static void *warm_thread(void *arg)
{
	struct warm_job *j = arg;

	(void)warm_file(j, "/etc/passwd", NULL, 0);
	(void)warm_file(j, "/etc/group", NULL, 0);
	if (j->vm->workdir && *j->vm->workdir) {
		int fd = open_in_root(j->root_fd, j->vm->workdir, O_PATH | O_DIRECTORY);

		if (fd >= 0)
			close(fd);
	}
	warm_program(j);
	return NULL;
}

static struct warm_job warm_job = {.root_fd = -1};

int warm_run(const struct guest_vm *vm, const char *root, void (*seen)(void *ud, const char *path),
	     void *ud)
{
	struct warm_job j = {.vm = vm, .seen = seen, .ud = ud};

	j.root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (j.root_fd < 0)
		return -errno;
	warm_thread(&j);
	close(j.root_fd);
	return 0;
}

void warm_begin(const struct guest_vm *vm, const char *root)
{
	struct warm_job *j = &warm_job;

	warm_end();
	*j = (struct warm_job){.vm = vm};
	j->root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (j->root_fd < 0)
		return;
	j->running = pthread_create(&j->thread, NULL, warm_thread, j) == 0;
	if (!j->running) {
		close(j->root_fd);
		j->root_fd = -1;
	}
}

void warm_end(void)
{
	struct warm_job *j = &warm_job;

	if (j->running)
		pthread_join(j->thread, NULL);
	j->running = false;
	if (j->root_fd >= 0)
		close(j->root_fd);
	j->root_fd = -1;
}
