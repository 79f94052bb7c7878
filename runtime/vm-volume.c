/* SPDX-License-Identifier: MIT */
/*
 * A VM's volumes as fs/ sees them (the vm_volume_* part of runtime.h): the volume store's
 * operations on a VM object, allowed while the VM is created, stopped or failed with no
 * command in flight (EBUSY otherwise). A change holds vm->vol_lock from its state check to its
 * end; the launch takes the same lock before it reads the volumes.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "internal.h"
#include "log.h"
#include "metrics.h"
#include "volume.h"

static struct volume_store *store_of(struct vm *vm)
{
	return vm->rt->volumes;
}

int vm_volumes_may_change(struct vm *vm)
{
	int r = 0;

	pthread_mutex_lock(&vm->lock);
	if (!vm->live || vm->destroying)
		r = -ENOENT;
	else if (vm->cmd_pending || vm->lc.exiting || vm->lc.saved ||
		 !(vm->lc.state == VM_STATE_CREATED || vm->lc.state == VM_STATE_STOPPED ||
		   vm->lc.state == VM_STATE_FAILED))
		r = -EBUSY;
	pthread_mutex_unlock(&vm->lock);
	return r;
}

static int may_change(struct vm *vm, struct volume_store **ret, struct err *err)
{
	int r = vm_volumes_may_change(vm);

	if (r == -EBUSY)
		return err_set(err, r, "volumes can only change in created, stopped or failed");
	if (r < 0)
		return err_set(err, r, "VM '%s' is gone", vm->name);
	*ret = store_of(vm);
	if (!*ret)
		return err_set(err, -EIO, "the volume store cannot be opened");
	return 0;
}

int vm_volume_create(struct vm *vm, const char *vol, struct err *err)
{
	struct volume_store *s;
	int r;

	pthread_mutex_lock(&vm->vol_lock);
	r = may_change(vm, &s, err);
	if (r >= 0)
		r = volume_create(s, vm->name, vol, NULL, 0, err);
	pthread_mutex_unlock(&vm->vol_lock);
	/* What fs/ can tell the user: the reason is logged. */
	if (r < 0 && r != -EINVAL && r != -EEXIST && r != -ENOSPC && r != -ENOMEM && r != -EBUSY &&
	    r != -ENOENT)
		r = -EIO;
	return r;
}

int vm_volume_destroy(struct vm *vm, const char *vol, struct err *err)
{
	struct volume_store *s = store_of(vm);
	struct volume v;
	int r;

	if (!s)
		return err_set(err, -EIO, "the volume store cannot be opened");
	r = volume_get(s, vm->name, vol, &v, err);
	if (r < 0)
		return r == -ENOENT ? r : -EIO;
	pthread_mutex_lock(&vm->vol_lock);
	r = may_change(vm, &s, err);
	if (r >= 0) {
		r = volume_destroy(s, vm->name, vol, err);
		if (r < 0 && r != -ENOENT)
			r = -EIO;
	}
	pthread_mutex_unlock(&vm->vol_lock);
	return r;
}

int vm_volume_list(struct vm *vm, char ***ret)
{
	struct volume_store *s = store_of(vm);
	_cleanup_free_ struct volume *vols = NULL;
	struct err err = {};
	size_t bytes;
	char **v, *p;
	int n;

	n = s ? volume_list(s, vm->name, &vols, &err) : -EIO;
	if (n < 0)
		return n;
	bytes = ((size_t)n + 1) * sizeof(char *);
	for (int i = 0; i < n; i++)
		bytes += strlen(vols[i].name) + 1;
	v = malloc(bytes);
	if (!v)
		return -ENOMEM;
	p = (char *)(v + n + 1);
	for (int i = 0; i < n; i++) {
		v[i] = strcpy(p, vols[i].name);
		p += strlen(p) + 1;
	}
	v[n] = NULL;
	*ret = v;
	return n;
}

bool vm_volume_exists(struct vm *vm, const char *vol)
{
	struct volume_store *s = store_of(vm);
	struct volume v;
	struct err err = {};

	return s && volume_get(s, vm->name, vol, &v, &err) >= 0;
}

int vm_volume_show(struct vm *vm, const char *vol, enum volume_attr attr, char **ret,
		   size_t *ret_len)
{
	struct volume_store *s = store_of(vm);
	struct volume v;
	struct err err = {};
	int n, r;

	r = s ? volume_get(s, vm->name, vol, &v, &err) : -EIO;
	if (r < 0)
		return r;
	if (attr == VOLUME_ATTR_PATH)
		n = v.path[0] ? asprintf(ret, "%s\n", v.path) : asprintf(ret, "%s", "");
	else if (attr == VOLUME_ATTR_SIZE)
		n = asprintf(ret, "%" PRIu64 "\n", v.size);
	else
		return -EINVAL;
	if (n < 0)
		return -ENOMEM;
	*ret_len = (size_t)n;
	return 0;
}

int vm_volume_store(struct vm *vm, const char *vol, enum volume_attr attr, const char *value,
		    struct err *err)
{
	struct volume_store *s;
	const char *why = NULL;
	uint64_t size = 0;
	int r;

	/* Bad values are EINVAL whatever the state. */
	if (attr == VOLUME_ATTR_PATH && volume_path_check(value, &why) < 0)
		return err_set(err, -EINVAL, "bad volume path '%s': %s", value, why);
	if (attr == VOLUME_ATTR_SIZE && volume_size_parse(value, &size, &why) < 0)
		return err_set(err, -EINVAL, "bad volume size '%s': %s", value, why);
	if (attr != VOLUME_ATTR_PATH && attr != VOLUME_ATTR_SIZE)
		return -EINVAL;
	pthread_mutex_lock(&vm->vol_lock);
	r = may_change(vm, &s, err);
	if (r >= 0 && attr == VOLUME_ATTR_PATH)
		r = volume_set_path(s, vm->name, vol, value, err);
	else if (r >= 0)
		r = volume_set_size(s, vm->name, vol, size, err);
	pthread_mutex_unlock(&vm->vol_lock);
	if (r < 0 && r != -EINVAL && r != -ENOENT && r != -ENOSPC && r != -ENOMEM && r != -EBUSY)
		r = -EIO;
	return r;
}

size_t vm_disks_sample(struct vm *vm, struct metrics_disk *ret, size_t max)
{
	struct volume_store *s = store_of(vm);
	_cleanup_free_ struct volume *vols = NULL;
	struct agent_status st = {};
	bool have = false;
	struct err err = {};
	size_t n = 0;
	int nv;

	nv = s ? volume_list(s, vm->name, &vols, &err) : 0;
	if (nv < 0)
		nv = 0;
	/* The live agent's last report: disk 0 the writable layer, disk i the i-th volume of
	 * vm.json, which lists them by name as volume_list does (no change while it runs). */
	pthread_mutex_lock(&vm->lock);
	if (vm->agent) {
		agent_get_status(vm->agent, &st);
		have = st.disks_at_ms != 0;
	}
	pthread_mutex_unlock(&vm->lock);
	for (int i = -1; i < nv && n < max; i++) {
		struct metrics_disk *d = &ret[n++];

		*d = (struct metrics_disk){.size = i < 0 ? vm->rt->cfg.data_disk_bytes
							 : vols[i].size};
		if (i < 0)
			snprintf(d->name, sizeof(d->name), "writable");
		else
			snprintf(d->name, sizeof(d->name), "volume/%s", vols[i].name);
		for (unsigned k = 0; have && k < st.disks.n; k++)
			if (st.disks.d[k].disk == (unsigned)(i + 1)) {
				d->known = true;
				d->size = st.disks.d[k].size;
				d->used = st.disks.d[k].used;
				d->avail = st.disks.d[k].avail;
			}
	}
	return n;
}

int vm_disk_usage_show(struct vm *vm, char **ret, size_t *ret_len)
{
	struct metrics_disk disks[METRICS_DISKS_MAX];
	size_t n = vm_disks_sample(vm, disks, METRICS_DISKS_MAX);
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	f = open_memstream(&out, &len);
	if (!f)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct metrics_disk *d = &disks[i];
		const char *name = strncmp(d->name, "volume/", 7) == 0 ? d->name + 7 : d->name;

		if (d->known)
			fprintf(f, "%s%s: used %" PRIu64 " free %" PRIu64 " size %" PRIu64 "\n",
				name == d->name ? "" : "volume ", name, d->used, d->avail, d->size);
		else
			fprintf(f, "%s%s: unknown size %" PRIu64 "\n",
				name == d->name ? "" : "volume ", name, d->size);
	}
	if (fclose(f) != 0) {
		free(out);
		return -ENOMEM;
	}
	*ret = out;
	*ret_len = len;
	return 0;
}
