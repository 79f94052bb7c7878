/* SPDX-License-Identifier: MIT */
/* Start the image's process as its config says: Entrypoint + Cmd, Env (PATH/HOME defaults),
 * WorkingDir, User (resolved in the image's own /etc/passwd and /etc/group, no NSS), with
 * stdout/stderr on pipes the agent forwards. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define GROUPS_MAX 64

/* Strict decimal id. */
static int parse_id(const char *s, unsigned *ret)
{
	unsigned long v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > 0x7fffffffUL)
			return -ERANGE;
	}
	*ret = (unsigned)v;
	return 0;
}

/* Split a colon-separated line into at most n fields in place. Returns the field count. */
static int split_fields(char *line, char **f, int n)
{
	int k = 0;

	f[k++] = line;
	for (char *p = line; *p && k < n; p++)
		if (*p == ':') {
			*p = '\0';
			f[k++] = p + 1;
		}
	return k;
}

/* Find a passwd entry by name (or by uid when name is NULL). */
static int passwd_find(const char *root, const char *name, unsigned uid, unsigned *ret_uid,
		       unsigned *ret_gid, char *ret_name, size_t namesz, char *home, size_t homesz)
{
	char path[PATH_MAX], line[1024];
	FILE *f;
	int r = -ESRCH;

	snprintf(path, sizeof(path), "%s/etc/passwd", strcmp(root, "/") == 0 ? "" : root);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char *fl[7];
		unsigned u, g;

		line[strcspn(line, "\n")] = '\0';
		if (split_fields(line, fl, 7) < 7 || parse_id(fl[2], &u) < 0 ||
		    parse_id(fl[3], &g) < 0)
			continue;
		if (name ? strcmp(fl[0], name) != 0 : u != uid)
			continue;
		*ret_uid = u;
		*ret_gid = g;
		snprintf(ret_name, namesz, "%s", fl[0]);
		snprintf(home, homesz, "%s", fl[5]);
		r = 0;
		break;
	}
	fclose(f);
	return r;
}

/* Group id of name, and the supplementary groups listing user. */
static int group_scan(const char *root, const char *gname, unsigned *ret_gid, const char *user,
		      gid_t *groups, int *ngroups)
{
	char path[PATH_MAX], line[4096];
	int found = -ESRCH, n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/etc/group", strcmp(root, "/") == 0 ? "" : root);
	f = fopen(path, "re");
	if (!f) {
		if (ngroups)
			*ngroups = 0;
		return gname ? -errno : 0;
	}
	while (fgets(line, sizeof(line), f)) {
		char *fl[4];
		unsigned g;

		line[strcspn(line, "\n")] = '\0';
		if (split_fields(line, fl, 4) < 4 || parse_id(fl[2], &g) < 0)
			continue;
		if (gname && strcmp(fl[0], gname) == 0) {
			*ret_gid = g;
			found = 0;
		}
		if (user && groups && n < GROUPS_MAX) {
			for (char *m = strtok(fl[3], ","); m; m = strtok(NULL, ","))
				if (strcmp(m, user) == 0) {
					groups[n++] = g;
					break;
				}
		}
	}
	fclose(f);
	if (ngroups)
		*ngroups = n;
	return gname ? found : 0;
}

int user_resolve(const char *root, const char *spec, uid_t *ret_uid, gid_t *ret_gid, gid_t *groups,
		 int *ngroups, char *home, size_t homesz)
{
	char user[256], name[256] = "", *group;
	unsigned uid = 0, gid = 0, id;
	int r;

	*ngroups = 0;
	snprintf(home, homesz, "/");
	if (!spec || !*spec)
		spec = "0";
	if (strlen(spec) >= sizeof(user))
		return -EINVAL;
	snprintf(user, sizeof(user), "%s", spec);
	group = strchr(user, ':');
	if (group)
		*group++ = '\0';

	if (parse_id(user, &id) == 0) {
		uid = id;
		/* A numeric uid need not exist in passwd; its primary group then is uid's own. */
		r = passwd_find(root, NULL, id, &uid, &gid, name, sizeof(name), home, homesz);
		if (r < 0)
			gid = group ? 0 : id;
	} else {
		r = passwd_find(root, user, 0, &uid, &gid, name, sizeof(name), home, homesz);
		if (r < 0) {
			agent_log("user %s: not found in the image's /etc/passwd", user);
			return -ESRCH;
		}
	}
	if (group && *group) {
		if (parse_id(group, &id) == 0) {
			gid = id;
		} else if (group_scan(root, group, &gid, NULL, NULL, NULL) < 0) {
			agent_log("group %s: not found in the image's /etc/group", group);
			return -ESRCH;
		}
	}
	if (name[0] && !group)
		(void)group_scan(root, NULL, NULL, name, groups, ngroups);
	*ret_uid = uid;
	*ret_gid = gid;
	return 0;
}

static bool env_has(char **env, const char *key)
{
	size_t k = strlen(key);

	for (char **e = env; e && *e; e++)
		if (strncmp(*e, key, k) == 0 && (*e)[k] == '=')
			return true;
	return false;
}

static const char *env_get(char **env, const char *key)
{
	size_t k = strlen(key);

	for (char **e = env; e && *e; e++)
		if (strncmp(*e, key, k) == 0 && (*e)[k] == '=')
			return *e + k + 1;
	return NULL;
}

/* Look prog up in PATH (inside the current root); returns a static path or prog. */
static const char *path_lookup(const char *prog, const char *path, char *buf, size_t size)
{
	const char *p = path;

	if (strchr(prog, '/'))
		return prog;
	while (p && *p) {
		const char *c = strchr(p, ':');
		size_t n = c ? (size_t)(c - p) : strlen(p);

		snprintf(buf, size, "%.*s/%s", (int)n, p, prog);
		if (access(buf, X_OK) == 0)
			return buf;
		p = c ? c + 1 : NULL;
	}
	return prog;
}

/* Where an app start's time goes (guest monotonic us at each step, the child's steps written
 * into a page shared with it): logged as one "app start timing" line (docs/template.md). */
enum { AT_FORK, AT_CHILD, AT_FDS, AT_USER, AT_IDS, AT_ARGV, AT_PARENT, AT_EXECED, AT_MAX };
static uint64_t *app_t;

static void app_mark(int step)
{
	struct timespec ts;

	if (!app_t)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	app_t[step] = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void app_log_timing(void)
{
#define AT_MS(a, b) (app_t[b] >= app_t[a] ? (double)(app_t[b] - app_t[a]) / 1000.0 : -1.0)
	if (app_t && app_t[AT_ARGV])
		agent_log(
			"app start timing: fork %.1f ms (parent back after %.1f), signals and fds "
			"%.1f, user %.1f, root, directory and ids %.1f, argv and PATH %.1f, "
			"execve %.1f; %.1f in all",
			AT_MS(AT_FORK, AT_CHILD), AT_MS(AT_FORK, AT_PARENT),
			AT_MS(AT_CHILD, AT_FDS), AT_MS(AT_FDS, AT_USER), AT_MS(AT_USER, AT_IDS),
			AT_MS(AT_IDS, AT_ARGV), AT_MS(AT_ARGV, AT_EXECED),
			AT_MS(AT_FORK, AT_EXECED));
#undef AT_MS
}

/* In the child: never returns. Writes errno to errfd on failure. */
static _Noreturn void child_exec(const struct guest_vm *vm, const char *root, int out_w, int err_w,
				 int errfd)
{
	char *argv[8192], *envp[8192], home[PATH_MAX], exe[PATH_MAX], homebuf[PATH_MAX + 8];
	static char pathbuf[] = "PATH=" DEFAULT_PATH;
	gid_t groups[GROUPS_MAX];
	int ngroups = 0, n = 0, e = 0, null_fd, r;
	uid_t uid;
	gid_t gid;
	sigset_t all;

	app_mark(AT_CHILD);
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_DFL);
	setsid();
	null_fd = open("/dev/null", O_RDONLY);
	if (null_fd >= 0)
		dup2(null_fd, 0);
	dup2(out_w, 1);
	dup2(err_w, 2);

	app_mark(AT_FDS);
	r = user_resolve(root, vm->user, &uid, &gid, groups, &ngroups, home, sizeof(home));
	if (r < 0)
		goto fail;
	app_mark(AT_USER);
	if (strcmp(root, "/") != 0 && (chroot(root) < 0 || chdir("/") < 0))
		goto fail_errno;
	if (vm->workdir && *vm->workdir && chdir(vm->workdir) < 0)
		goto fail_errno;
	if (getuid() == 0) {
		if (setgroups((size_t)ngroups, groups) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
			goto fail_errno;
	}

	app_mark(AT_IDS);
	for (char **a = vm->entrypoint; *a && n < 8000; a++)
		argv[n++] = *a;
	for (char **a = vm->cmd; *a && n < 8000; a++)
		argv[n++] = *a;
	argv[n] = NULL;
	if (n == 0) {
		r = -ENOEXEC;
		goto fail;
	}
	for (char **a = vm->env; *a && e < 8000; a++)
		envp[e++] = *a;
	if (!env_has(vm->env, "PATH")) {
		envp[e++] = pathbuf;
	}
	if (!env_has(vm->env, "HOME")) {
		snprintf(homebuf, sizeof(homebuf), "HOME=%s", home);
		envp[e++] = homebuf;
	}
	envp[e] = NULL;
	{
		const char *prog = path_lookup(argv[0], env_get(envp, "PATH"), exe, sizeof(exe));

		app_mark(AT_ARGV);
		execve(prog, argv, envp);
	}
fail_errno:
	r = -errno;
fail:
	(void)!write(errfd, &r, sizeof(r));
	_exit(r == -ENOENT ? 127 : 126);
}

int app_start(const struct guest_vm *vm, const char *root, struct app *app)
{
	int out[2], err[2], status[2], r = 0;
	ssize_t n;
	pid_t pid;

	memset(app, 0, sizeof(*app));
	app->out_fd = app->err_fd = -1;
	if (pipe2(out, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(err, O_CLOEXEC) < 0) {
		r = -errno;
		goto out_close_out;
	}
	if (pipe2(status, O_CLOEXEC) < 0) {
		r = -errno;
		goto out_close_err;
	}
	if (!app_t) {
		void *m = mmap(NULL, AT_MAX * sizeof(uint64_t), PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

		app_t = m == MAP_FAILED ? NULL : m;
	}
	if (app_t)
		memset(app_t, 0, AT_MAX * sizeof(uint64_t));
	app_mark(AT_FORK);
	pid = fork();
	if (pid > 0)
		app_mark(AT_PARENT);
	if (pid < 0) {
		r = -errno;
		goto out_close_status;
	}
	if (pid == 0)
		child_exec(vm, root, out[1], err[1], status[1]);
	close(status[1]);
	status[1] = -1;
	/* The status pipe closes on a successful exec (CLOEXEC) or carries the error. */
	n = read(status[0], &r, sizeof(r));
	if (n != sizeof(r))
		r = 0;
	app_mark(AT_EXECED);
	if (r == 0 && strcmp(root, "/") != 0)
		app_log_timing(); /* not in test mode: its output is the protocol's */
	app->pid = pid;
	app->start_failed = r < 0;
	app->out_fd = out[0];
	app->err_fd = err[0];
	fcntl(app->out_fd, F_SETFL, O_NONBLOCK);
	fcntl(app->err_fd, F_SETFL, O_NONBLOCK);
	out[0] = err[0] = -1;
	if (r < 0)
		agent_log("starting the app failed: %s", strerror(-r));
out_close_status:
	close(status[0]);
	if (status[1] >= 0)
		close(status[1]);
out_close_err:
	if (err[0] >= 0)
		close(err[0]);
	close(err[1]);
out_close_out:
	if (out[0] >= 0)
		close(out[0]);
	close(out[1]);
	return r;
}
