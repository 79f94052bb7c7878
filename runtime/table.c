/* SPDX-License-Identifier: MIT */
/*
 * The VM table: create (a free uid index, the address assigned, the record), destroy (the host
 * teardown, the address released, the image dropped, the state dir removed), get and list.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "internal.h"
#include "log.h"
#include "report.h"
#include "volume.h"

/* Under rt->lock. */
static struct vm *table_find_locked(struct runtime *rt, const char *name)
{
	for (struct vm *v = rt->vms; v; v = v->next)
		if (strcmp(v->name, name) == 0)
			return v;
	return NULL;
}

/* Remove vm from the table, dropping the table's reference. */
static void table_unlink(struct runtime *rt, struct vm *vm)
{
	pthread_mutex_lock(&rt->lock);
	for (struct vm **pp = &rt->vms; *pp; pp = &(*pp)->next) {
		if (*pp == vm) {
			*pp = vm->next;
			rt->n_vms--;
			if (vm->index < rt->cfg.uid_count)
				rt->index_used[vm->index] = 0;
			pthread_mutex_unlock(&rt->lock);
			vm_unref(vm); /* the table's reference */
			return;
		}
	}
	pthread_mutex_unlock(&rt->lock);
}

int table_insert_locked(struct runtime *rt, struct vm *vm, long want_index)
{
	if (want_index >= 0) {
		if ((uint64_t)want_index >= rt->cfg.uid_count || rt->index_used[want_index])
			return -ENOSPC;
		vm->index = (uint32_t)want_index;
	} else {
		uint32_t i;
		for (i = 0; i < rt->cfg.uid_count && rt->index_used[i]; i++)
			;
		if (i == rt->cfg.uid_count)
			return -ENOSPC;
		vm->index = i;
	}
	rt->index_used[vm->index] = 1;
	vm->next = rt->vms;
	rt->vms = vm;
	rt->n_vms++;
	return 0;
}

struct create_req {
	vm_done_cb done;
	void *ud;
};

/* Give vm the address ip unless another VM of this node holds it (a database row that
 * duplicates a local VM's address). Checked and set under rt->lock, so two creates racing for one
 * address cannot both win. */
static int ip_claim(struct runtime *rt, struct vm *vm, const struct in6_addr *ip, struct err *err)
{
	char holder[sizeof(vm->name)] = "", text[INET6_ADDRSTRLEN];

	pthread_mutex_lock(&rt->lock);
	for (struct vm *o = rt->vms; o; o = o->next) {
		if (o == vm)
			continue;
		pthread_mutex_lock(&o->lock);
		if (o->has_ip && memcmp(&o->ip, ip, sizeof(*ip)) == 0)
			snprintf(holder, sizeof(holder), "%s", o->name);
		pthread_mutex_unlock(&o->lock);
		if (holder[0])
			break;
	}
	if (!holder[0]) {
		pthread_mutex_lock(&vm->lock);
		vm->ip = *ip;
		vm->has_ip = true;
		pthread_mutex_unlock(&vm->lock);
	}
	pthread_mutex_unlock(&rt->lock);
	if (!holder[0])
		return 0;
	inet_ntop(AF_INET6, ip, text, sizeof(text));
	return err_set(err, -EINVAL,
		       "the address of '%s' (instances.ip_address '%s') is already held by VM "
		       "'%s' on this node",
		       vm->name, text, holder);
}

static void job_create(struct runtime *rt, struct vm *vm, void *arg)
{
	struct create_req *req = arg;
	struct in6_addr ip;
	struct err err = {};
	char dir[4200];
	int r;

	snprintf(dir, sizeof(dir), "%s/vms/%s", rt->cfg.state_dir, vm->name);
	(void)rm_rf(dir); /* a leftover without a record is not a VM */
	/* Nor are volumes left under its name: a new VM starts with none. */
	if (volume_destroy_all(rt->volumes, vm->name, &err) < 0)
		log_warning("%s: leftover volumes: %s", vm->name, err.msg);
	r = mkdir_p(dir, 0700);
	if (r < 0) {
		err_set(&err, r, "creating %s", dir);
		goto fail;
	}
	/* Not under net_lock: with a database this is a network round trip (bounded by
	 * --database-timeout), and other VMs' plumbing must not wait for it. */
	r = net_ip_assign(rt->net, vm->name, &ip, &err);
	if (r < 0)
		goto fail;
	r = ip_claim(rt, vm, &ip, &err);
	if (r < 0)
		goto fail;
	pthread_mutex_lock(&vm->lock);
	vm->live = true;
	pthread_mutex_unlock(&vm->lock);
	vm_record_save(vm);
	rt_report_notify(rt, vm, VM_ATTR_STATE);
	if (req->done)
		req->done(req->ud, 0);
	free(req);
	return;
fail:
	log_info("%s: create failed: %s", vm->name, err.msg);
	(void)rm_rf(dir);
	table_unlink(rt, vm);
	if (req->done)
		req->done(req->ud, r == -ENOSPC ? -ENOSPC : -EIO);
	free(req);
}

int runtime_vm_create(struct runtime *rt, const char *name, vm_done_cb done, void *ud)
{
	struct create_req *req;
	struct vm *vm;
	int r;

	if (!vm_name_is_valid(name))
		return -EINVAL;
	req = calloc(1, sizeof(*req));
	vm = vm_new(rt, name);
	if (!req || !vm) {
		free(req);
		vm_unref(vm);
		return -ENOMEM;
	}
	req->done = done;
	req->ud = ud;
	pthread_mutex_lock(&rt->lock);
	if (table_find_locked(rt, name))
		r = -EEXIST;
	else if (rt->n_vms >= rt->cfg.max_vms)
		r = -ENOSPC;
	else
		r = table_insert_locked(rt, vm, -1);
	pthread_mutex_unlock(&rt->lock);
	if (r < 0) {
		free(req);
		vm_unref(vm);
		return r;
	}
	r = rt_job_long(rt, vm, job_create, req);
	if (r < 0) {
		table_unlink(rt, vm);
		free(req);
	}
	return r;
}

static void job_destroy(struct runtime *rt, struct vm *vm, void *arg)
{
	struct create_req *req = arg;
	struct err err = {};
	struct vmm_handle h;
	char dir[4200];

	/* Tombstone: a daemon killed during the teardown finishes it at the next start
	 * (reaper.c) instead of re-adopting a half-destroyed VM. */
	snprintf(dir, sizeof(dir), "%s/vms/%s/" RT_DESTROY_MARK, rt->cfg.state_dir, vm->name);
	{
		int fd = open(dir, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			log_warning("%s: cannot mark the destroy: %m", vm->name);
		safe_close(fd);
	}
	/* cleanup() clears names in the handle it is given, and the supervisor may still be
	 * copying vm->h into a record (vm_record_save, under rec_lock): work on a copy. A
	 * destroyed VM is created, stopped or failed: its VMM was reaped (or never ran), and the
	 * copy must not close a pidfd vm->h still names. */
	pthread_mutex_lock(&vm->rec_lock);
	h = vm->h;
	pthread_mutex_unlock(&vm->rec_lock);
	h.pidfd = -EBADF;
	/* Whatever an earlier run may have left of the network goes too. */
	vm->net_set_up = !rt->cfg.no_network;
	vm_host_teardown(rt, vm, &h, HOST_TEARDOWN_STRAYS);
	if (net_ip_release(rt->net, vm->name, &err) < 0) /* thread-safe, no net_lock */
		log_warning("%s: releasing the address: %s", vm->name, err.msg);
	if (rt->store) {
		int64_t freed;
		(void)img_release(rt->store, vm->name);
		/* Unused images beyond --image-keep go when their last VM does. */
		freed = img_gc(rt->store);
		if (freed > 0)
			log_info("image store: freed %" PRId64 " bytes of unused images", freed);
	}
	/* The volumes and their data go with the VM (before its state dir: until that is gone,
	 * an interrupted destroy is finished at the next start, volumes included). */
	pthread_mutex_lock(&vm->vol_lock); /* after a change in flight, before none can start */
	if (volume_destroy_all(rt->volumes, vm->name, &err) < 0)
		log_warning("%s: removing its volumes: %s", vm->name, err.msg);
	pthread_mutex_unlock(&vm->vol_lock);
	pthread_mutex_lock(&vm->rec_lock); /* no record write may race the removal */
	snprintf(dir, sizeof(dir), "%s/vms/%s", rt->cfg.state_dir, vm->name);
	/* The record goes first: rm_rf's order is the directory's, and a daemon killed after it
	 * removed the tombstone but not the record would re-adopt a VM whose address is gone. A
	 * dir without a record is a leftover the reaper removes. */
	(void)record_remove(rt->cfg.state_dir, vm->name);
	(void)rm_rf(dir);
	pthread_mutex_unlock(&vm->rec_lock);
	rt_report_destroyed(rt, vm);
	table_unlink(rt, vm);
	if (req->done)
		req->done(req->ud, 0);
	free(req);
}

int runtime_vm_destroy(struct runtime *rt, const char *name, vm_done_cb done, void *ud)
{
	struct create_req *req;
	struct vm *vm;
	int r = 0;

	pthread_mutex_lock(&rt->lock);
	vm = table_find_locked(rt, name);
	if (!vm) {
		pthread_mutex_unlock(&rt->lock);
		return -ENOENT;
	}
	pthread_mutex_lock(&vm->lock);
	if (!vm->live)
		r = -ENOENT;
	else if (vm->cmd_pending || vm->lc.exiting || vm->n_waiters ||
		 !(vm->lc.state == VM_STATE_CREATED || vm->lc.state == VM_STATE_STOPPED ||
		   vm->lc.state == VM_STATE_FAILED))
		r = -EBUSY;
	else {
		vm->live = false;
		vm->destroying = true;
	}
	pthread_mutex_unlock(&vm->lock);
	vm_ref(vm);
	pthread_mutex_unlock(&rt->lock);
	if (r < 0) {
		vm_unref(vm);
		return r;
	}
	req = calloc(1, sizeof(*req));
	if (!req) {
		vm_unref(vm);
		return -ENOMEM;
	}
	req->done = done;
	req->ud = ud;
	r = rt_job_long(rt, vm, job_destroy, req);
	if (r < 0)
		free(req);
	vm_unref(vm);
	return r;
}

struct vm *runtime_vm_get(struct runtime *rt, const char *name)
{
	struct vm *vm;
	bool live = false;

	pthread_mutex_lock(&rt->lock);
	vm = table_find_locked(rt, name);
	if (vm) {
		pthread_mutex_lock(&vm->lock);
		live = vm->live;
		pthread_mutex_unlock(&vm->lock);
	}
	vm = live ? vm_ref(vm) : NULL;
	pthread_mutex_unlock(&rt->lock);
	return vm;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int runtime_vm_list(struct runtime *rt, char ***ret)
{
	size_t n = 0, bytes = 0;
	char **arr, *p;

	pthread_mutex_lock(&rt->lock);
	for (struct vm *v = rt->vms; v; v = v->next) {
		n++;
		bytes += strlen(v->name) + 1;
	}
	arr = malloc((n + 1) * sizeof(char *) + bytes);
	if (!arr) {
		pthread_mutex_unlock(&rt->lock);
		return -ENOMEM;
	}
	p = (char *)(arr + n + 1);
	n = 0;
	for (struct vm *v = rt->vms; v; v = v->next) {
		bool live;
		pthread_mutex_lock(&v->lock);
		live = v->live;
		pthread_mutex_unlock(&v->lock);
		if (!live)
			continue;
		arr[n++] = p;
		strcpy(p, v->name);
		p += strlen(v->name) + 1;
	}
	pthread_mutex_unlock(&rt->lock);
	arr[n] = NULL;
	qsort(arr, n, sizeof(char *), cmp_str);
	*ret = arr;
	return (int)n;
}
