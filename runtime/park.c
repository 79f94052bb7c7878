/* SPDX-License-Identifier: MIT */
/*
 * Pause, resume and suspend of a VM whose VMM runs (the park job), and the saved state under
 * STATE_DIR/vms/NAME/suspend (docs/suspend.md): the backend writes the device state to
 * state.tmp (and the memory beside it), the job writes state.sum (SHA-256 of the state), then
 * fsyncs and renames state.tmp to state: a complete saved state exists exactly when `state`
 * does. Like every job, it never changes the VM's state itself: it posts LC_EV_PARK_OK or
 * LC_EV_PARK_FAIL (with the reason in the error file).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "internal.h"
#include "log.h"

const char *lc_park_to_string(enum lc_park op)
{
	switch (op) {
	case LC_PARK_PAUSE:
		return "pause";
	case LC_PARK_RESUME:
		return "resume";
	case LC_PARK_SUSPEND:
		return "suspend";
	default:
		return "park";
	}
}

int park_dir(struct runtime *rt, const char *name, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s/vms/%s/suspend", rt->cfg.state_dir, name);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

bool park_saved_exists(struct runtime *rt, const char *name)
{
	char path[4300];

	if (park_dir(rt, name, path, sizeof(path) - 8) < 0)
		return false;
	strcat(path, "/state");
	return access(path, F_OK) == 0;
}

uint64_t park_saved_bytes(struct runtime *rt, const char *name)
{
	_cleanup_closedir_ DIR *d = NULL;
	char dir[4300];
	struct dirent *de;
	uint64_t total = 0;

	if (park_dir(rt, name, dir, sizeof(dir)) < 0 || !park_saved_exists(rt, name))
		return 0;
	d = opendir(dir);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		struct stat st;

		if (de->d_name[0] == '.' ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		total += (uint64_t)st.st_blocks * 512;
	}
	return total;
}

static int fsync_path(const char *path, int flags)
{
	_cleanup_close_ int fd = open(path, flags | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return -errno;
	return fsync(fd) < 0 ? -errno : 0;
}

int park_verify(struct runtime *rt, const char *name, struct err *err)
{
	char dir[4300], path[4400], want[80] = "", got[65];
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r;

	r = park_dir(rt, name, dir, sizeof(dir));
	if (r < 0)
		return err_set(err, r, "saved state: path too long");
	snprintf(path, sizeof(path), "%s/state", dir);
	if (access(path, F_OK) < 0)
		return err_set(err, -ENOENT, "saved state missing (%s)", path);
	snprintf(path, sizeof(path), "%s/state.sum", dir);
	r = read_file_bounded(path, 128, &text, &len);
	if (r < 0)
		return err_set(err, -EBADMSG, "saved state corrupt: no checksum (%s: %s)", path,
			       strerror(-r));
	snprintf(want, sizeof(want), "%.*s", (int)strcspn(text, "\n"), text);
	snprintf(path, sizeof(path), "%s/state", dir);
	r = savefile_sha256(path, got);
	if (r < 0)
		return err_set(err, r, "saved state unreadable: %s: %s", path, strerror(-r));
	if (strcmp(want, got) != 0)
		return err_set(err, -EBADMSG, "saved state corrupt: checksum mismatch (%s)", path);
	return 0;
}

/* After the backend wrote dir/state.tmp (and the memory): checksum, fsync, rename, fsync. */
static int commit_saved(const char *dir, struct err *err)
{
	char tmp[4400], final[4400], hex[65], sum[80];
	int r;

	snprintf(tmp, sizeof(tmp), "%s/state.tmp", dir);
	snprintf(final, sizeof(final), "%s/state", dir);
	r = savefile_sha256(tmp, hex);
	if (r < 0)
		return err_set(err, r, "saved state %s: %s", tmp, strerror(-r));
	snprintf(final, sizeof(final), "%s/state.sum", dir);
	snprintf(sum, sizeof(sum), "%s\n", hex);
	r = write_file_atomic(final, sum, strlen(sum), 0600);
	if (r < 0)
		return err_set(err, r, "%s: %s", final, strerror(-r));
	r = fsync_path(tmp, O_RDONLY);
	if (r < 0)
		return err_set(err, r, "fsync %s: %s", tmp, strerror(-r));
	snprintf(final, sizeof(final), "%s/state", dir);
	if (rename(tmp, final) < 0)
		return err_set(err, -errno, "rename %s: %m", tmp);
	r = fsync_path(dir, O_RDONLY | O_DIRECTORY);
	if (r < 0)
		return err_set(err, r, "fsync %s: %s", dir, strerror(-r));
	return 0;
}

static void agent_paused(struct vm *vm, bool paused, bool restored)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->agent) {
		if (paused)
			agent_pause(vm->agent);
		else
			agent_resume(vm->agent, restored);
	}
	pthread_mutex_unlock(&vm->lock);
}

static int op_or_unsupported(int (*fn)(void *, struct vmm_handle *, struct err *),
			     struct runtime *rt, struct vm *vm, const char *what, struct err *err)
{
	if (!fn)
		return err_set(err, -EOPNOTSUPP, "%s: not supported by the %s backend", what,
			       rt->ops->name);
	return fn(rt->ops_priv, &vm->h, err);
}

static int do_suspend(struct runtime *rt, struct vm *vm, bool was_paused, struct err *err)
{
	char dir[4300];
	int r;

	if (!rt->ops->save)
		return err_set(err, -EOPNOTSUPP, "not supported by the %s backend", rt->ops->name);
	if (!was_paused) {
		r = op_or_unsupported(rt->ops->pause, rt, vm, "pause", err);
		if (r < 0)
			return r;
		agent_paused(vm, true, false);
	}
	r = park_dir(rt, vm->name, dir, sizeof(dir));
	if (r >= 0)
		r = mkdir_p(dir, 0700);
	if (r < 0)
		return err_set(err, r, "saved state dir %s: %s", dir, strerror(-r));
	r = rt->ops->save(rt->ops_priv, vm->name, &vm->h, dir, err);
	if (r >= 0)
		r = commit_saved(dir, err);
	if (r < 0) {
		char tmp[4400];
		struct err e2 = {};

		snprintf(tmp, sizeof(tmp), "%s/state.tmp", dir);
		(void)unlink(tmp);
		/* Leave the VM as it was found: running again unless it was paused. */
		if (!was_paused && rt->ops->resume(rt->ops_priv, &vm->h, &e2) >= 0)
			agent_paused(vm, false, false);
		return r;
	}
	pthread_mutex_lock(&vm->lock);
	vm->mx.saved_state_bytes = park_saved_bytes(rt, vm->name);
	/* The boot the restored guest must be. */
	if (vm->agent) {
		struct agent_status st;

		agent_get_status(vm->agent, &st);
		vm->has_boot_id = st.have_boot_id;
		memcpy(vm->boot_id, st.boot_id, sizeof(vm->boot_id));
	}
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

void park_drop_cache(struct runtime *rt, const char *name)
{
	_cleanup_closedir_ DIR *d = NULL;
	char dir[4300];
	struct dirent *de;

	if (park_dir(rt, name, dir, sizeof(dir)) < 0 || !(d = opendir(dir)))
		return;
	while ((de = readdir(d))) {
		_cleanup_close_ int fd = -EBADF;

		if (de->d_name[0] == '.')
			continue;
		fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0 && fdatasync(fd) >= 0)
			(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	}
}

void job_park(struct runtime *rt, struct vm *vm, void *arg)
{
	enum lc_park op = (enum lc_park)(uintptr_t)arg;
	struct err err = {};
	bool was_paused;
	int r;

	pthread_mutex_lock(&vm->lock);
	was_paused = vm->lc.vmm_paused;
	pthread_mutex_unlock(&vm->lock);
	switch (op) {
	case LC_PARK_PAUSE:
		r = op_or_unsupported(rt->ops->pause, rt, vm, "pause", &err);
		if (r >= 0)
			agent_paused(vm, true, false);
		break;
	case LC_PARK_RESUME:
		r = op_or_unsupported(rt->ops->resume, rt, vm, "resume", &err);
		if (r >= 0)
			agent_paused(vm, false, false);
		break;
	case LC_PARK_SUSPEND:
		r = do_suspend(rt, vm, was_paused, &err);
		break;
	default:
		r = err_set(&err, -EINVAL, "unknown operation");
		break;
	}
	if (r < 0) {
		log_info("%s: %s failed: %s", vm->name, lc_park_to_string(op), err.msg);
		vm_set_error(vm, "%s: %s", lc_park_to_string(op), err.msg);
		(void)sv_post_event(rt, vm, LC_EV_PARK_FAIL);
		return;
	}
	log_info("%s: %s done", vm->name, lc_park_to_string(op));
	(void)sv_post_event(rt, vm, LC_EV_PARK_OK);
}

/* stop/kill of a suspended VM: its saved state and the image hold its disks needed go. A start
 * accepted meanwhile owns the directory (a cold boot removes it itself, and holds the image
 * again): then nothing is done, and this short job never waits for a launch's image pull. */
void job_discard(struct runtime *rt, struct vm *vm, void *arg)
{
	char dir[4300];
	bool idle;

	if (pthread_mutex_trylock(&vm->park_lock) != 0)
		return;
	pthread_mutex_lock(&vm->lock);
	idle = !vm->lc.saved &&
	       (vm->lc.state == VM_STATE_STOPPED || vm->lc.state == VM_STATE_FAILED ||
		vm->lc.state == VM_STATE_CREATED);
	pthread_mutex_unlock(&vm->lock);
	if (idle) {
		if (park_dir(rt, vm->name, dir, sizeof(dir)) >= 0)
			(void)rm_rf(dir);
		if (rt->store && atomic_exchange(&vm->img_held, false))
			(void)img_release(rt->store, vm->name);
		log_info("%s: saved state discarded", vm->name);
	}
	pthread_mutex_unlock(&vm->park_lock);
	pthread_mutex_lock(&vm->lock);
	vm->mx.saved_state_bytes = park_saved_bytes(rt, vm->name);
	vm_touch_locked(vm, VM_ATTR_HEALTH);
	pthread_mutex_unlock(&vm->lock);
	vm_notify(vm, VM_ATTR_HEALTH);
}
