/* SPDX-License-Identifier: MIT */
/*
 * The launch job, in named steps: the image (pull, unpack, hold), the volumes (the image's
 * declared ones made at its first start; the writable layer reset when the image digest run
 * changes), the network, the files the VMM is given (data disk, per-VM initramfs, command
 * line), the backend's launch after the intent record, and the publication of the running VMM. Any
 * failure undoes everything through vm_host_teardown and posts LC_EV_LAUNCH_FAIL; success posts
 * LC_EV_LAUNCH_OK.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "guest-config.h"
#include "internal.h"
#include "log.h"
#include "volume.h"

static void on_progress(void *ud, const struct img_progress *p)
{
	struct vm *vm = ud;

	pthread_mutex_lock(&vm->lock);
	snprintf(vm->hs.image_phase, sizeof(vm->hs.image_phase), "%s", p->phase ? p->phase : "");
	vm->hs.img_bytes_done = p->bytes_done;
	vm->hs.img_bytes_total = p->bytes_total;
	vm->hs.img_layers_done = p->layers_done;
	vm->hs.img_layers_total = p->layers_total;
	vm_touch_locked(vm, VM_ATTR_HEALTH);
	pthread_mutex_unlock(&vm->lock);
	vm_notify(vm, VM_ATTR_HEALTH);
}

int rt_prepare_image(struct runtime *rt, struct vm *vm, const char *ref, struct img_prepared *ret,
		     struct err *err)
{
	if (!rt->store)
		return err_set(err, -ENOTSUP, "no image store");
	struct timespec t0, t1;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = img_prepare(rt->store, ref, vm->name, on_progress, vm, &vm->img_cancel, ret, err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	metrics_note_image(
		vm, r, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return r;
}

/* The per-VM initramfs: the project's base plus /mvmfs/vm.json for the guest agent. */
static int write_guest_initrd(struct runtime *rt, struct vm *vm, const struct img_prepared *prep,
			      const struct in6_addr *addr, const struct volume_attach *vols,
			      size_t n_vols, const char *out, char **identity, struct err *err)
{
	struct guest_config_volume gv[VOLUME_MAX_PER_VM];
	const struct runtime_config *c = &rt->cfg;
	_cleanup_free_ char *img_cfg = NULL;
	struct guest_config gc = {
		.name = vm->name,
		.addr = *addr,
		.prefix_len = 64,
		.transport = agent_transport_for_vmm(rt->ops->name),
		.heartbeat_ms = c->heartbeat_ms,
		.grace_ms = c->app_grace_ms,
		.no_network = c->no_network,
	};
	int r;

	if (prep->config[0]) {
		r = read_file_bounded(prep->config, 1 << 20, &img_cfg, NULL);
		if (r < 0)
			return err_set(err, r, "image config %s: %s", prep->config, strerror(-r));
	}
	gc.image_config_json = img_cfg;
	for (size_t i = 0; i < n_vols && i < VOLUME_MAX_PER_VM; i++) {
		memcpy(gv[i].uuid, vols[i].uuid, sizeof(gv[i].uuid));
		gv[i].path = vols[i].path;
		gv[i].fresh = vols[i].fresh;
	}
	gc.volumes = gv;
	gc.n_volumes = n_vols;
	if (vm->net.tap_name[0]) {
		gc.addr = vm->net.addr;
		gc.prefix_len = vm->net.prefix_len;
		gc.gateway = vm->net.gateway;
		gc.mac = vm->net.mac;
		gc.mtu = vm->net.mtu;
	} else if (rt->net) {
		unsigned len = 64;
		struct in6_addr pfx;
		pthread_mutex_lock(&rt->net_lock);
		if (net_prefix(rt->net, &pfx, &len, &gc.gateway) >= 0)
			gc.prefix_len = len;
		pthread_mutex_unlock(&rt->net_lock);
	}
	if (identity) {
		int r2 = guest_config_json(&gc, identity, err);

		if (r2 < 0)
			return r2;
	}
	return guest_config_write_initrd(&gc, c->initrd, out, err);
}

/* A launch in progress: the VM's settings read once at its start, what the image step gave, the
 * files placed in the VM's directory. */
struct launch {
	struct runtime *rt;
	struct vm *vm;
	char *ref;
	struct in6_addr addr;
	bool has_ip;
	struct img_prepared prep;
	char old_digest[IMG_DIGEST_MAX]; /* the digest the VM ran last ("" never) */
	bool new_image;			 /* prep.digest is not old_digest */
	struct volume_attach *vols;	 /* n_vols, by name */
	size_t n_vols;
	const char *vol_disks[VOLUME_MAX_PER_VM];
	char run_dir[4200], data[4300], console[4300], initrd[4300], boot_args[256];
	bool restore; /* restore the saved state instead of booting */
	char park_dir[4300];
	struct tpl_plan tpl; /* booted template: start from it (docs/template.md) */
	char *identity;	     /* the VM's vm.json for a template-mode guest */
	struct err err;
	/* CLOCK_MONOTONIC ms at the job's start and at the end of each step; the template's copy
	 * inside the VMM step (0: none). Logged once the VMM runs (docs/template.md). */
	uint64_t t_begin, t_step[5], t_stage_ms;
};

/* One line per launch: where its time went before the VMM ran. */
static void launch_log_timing(const struct launch *l)
{
	static const char *const names[] = {"image", "volumes", "network", "files", "VMM"};
	char buf[256];
	size_t n = 0;
	uint64_t prev = l->t_begin;

	for (size_t i = 0; i < ELEMENTSOF(names) && n < sizeof(buf); i++) {
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s %llu", i ? ", " : "",
				      names[i], (unsigned long long)(l->t_step[i] - prev));
		prev = l->t_step[i];
	}
	log_info("%s: launch timing: %s ms (template copy %llu), VMM running +%llu ms after the "
		 "job began (monotonic ms %llu)",
		 l->vm->name, buf, (unsigned long long)l->t_stage_ms,
		 (unsigned long long)(l->t_step[4] - l->t_begin), (unsigned long long)l->t_begin);
}

/* The image: pulled, unpacked and held for this VM; its digest and key published. */
static int launch_image(struct launch *l)
{
	struct runtime *rt = l->rt;
	struct vm *vm = l->vm;
	int r;

	if (!l->ref)
		return err_set(&l->err, -EINVAL,
			       "no image set (write a reference to 'image' first)");
	atomic_store(&vm->pulling, true);
	r = rt->prepare_image(rt, vm, l->ref, &l->prep, &l->err);
	atomic_store(&vm->pulling, false);
	if (r >= 0)
		atomic_store(&vm->img_held, true);
	if (r >= 0 && atomic_load(&vm->img_cancel))
		r = err_set(&l->err, -ECANCELED, "cancelled");
	if (r < 0) {
		err_prefix(&l->err, "image '%s': ", l->ref);
		return r;
	}
	snprintf(vm->rootfs, sizeof(vm->rootfs), "%s", l->prep.rootfs);
	pthread_mutex_lock(&vm->lock);
	memcpy(vm->image_digest, l->prep.digest, sizeof(vm->image_digest));
	memcpy(vm->image_key, l->prep.verified_key, sizeof(vm->image_key));
	vm->hs.image_phase[0] = '\0';
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

/* The paths the image declares (its config's "volumes"), as a NULL-terminated array in one
 * allocation; none: an empty one. */
static int declared_volumes(const char *config, char ***ret, size_t *ret_n, struct err *err)
{
	_cleanup_free_ char *text = NULL;
	json_t *root = NULL, *arr, *v;
	size_t n = 0, bytes, i;
	char **out, *p;
	int r;

	*ret_n = 0;
	if (config[0]) {
		r = read_file_bounded(config, 1 << 20, &text, NULL);
		if (r < 0)
			return err_set(err, r, "image config %s: %s", config, strerror(-r));
		root = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	}
	arr = json_object_get(root, "volumes"); /* absent in configs cached before */
	bytes = sizeof(char *);
	json_array_foreach (arr, i, v)
		if (json_is_string(v)) {
			bytes += sizeof(char *) + json_string_length(v) + 1;
			n++;
		}
	out = malloc(bytes);
	if (!out) {
		json_decref(root);
		return err_set(err, -ENOMEM, "out of memory");
	}
	p = (char *)(out + n + 1);
	n = 0;
	json_array_foreach (arr, i, v)
		if (json_is_string(v)) {
			out[n++] = strcpy(p, json_string_value(v));
			p += strlen(p) + 1;
		}
	out[n] = NULL;
	json_decref(root);
	*ret = out;
	*ret_n = n;
	return 0;
}

/* The volumes: made for what the image declares at the first start of its digest (volume.h),
 * checked and listed; the writable layer goes when the digest run changes (a new one is made
 * by launch_files). Under vm->vol_lock: no volume changes while they are read. */
static int launch_volumes(struct launch *l)
{
	struct runtime *rt = l->rt;
	struct vm *vm = l->vm;
	_cleanup_free_ char **declared = NULL;
	size_t n_declared = 0;
	int r;

	l->new_image = strcmp(l->old_digest, l->prep.digest) != 0;
	snprintf(l->data, sizeof(l->data), "%s/data.ext4", l->run_dir);
	if (l->new_image && l->old_digest[0] && access(l->data, F_OK) == 0) {
		log_info("%s: the image changed (%.19s... -> %.19s...): new writable layer",
			 vm->name, l->old_digest, l->prep.digest);
		if (unlink(l->data) < 0)
			return err_set(&l->err, -errno, "removing the old writable layer: %s",
				       strerror(errno));
	}
	r = declared_volumes(l->prep.config, &declared, &n_declared, &l->err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&vm->vol_lock);
	r = volume_prepare_start(rt->volumes, vm->name, (const char *const *)declared, n_declared,
				 l->new_image, &l->vols, &l->err);
	pthread_mutex_unlock(&vm->vol_lock);
	if (r < 0)
		return err_prefix(&l->err, "volumes: ");
	l->n_vols = (size_t)r;
	for (size_t i = 0; i < l->n_vols && i < VOLUME_MAX_PER_VM; i++)
		l->vol_disks[i] = l->vols[i].disk;
	return 0;
}

/* The VM's namespace, tap and bridge port (none with no_network); the health's net check. */
static int launch_network(struct launch *l)
{
	struct runtime *rt = l->rt;
	const struct runtime_config *c = &rt->cfg;
	struct vm *vm = l->vm;
	int r;

	memset(&vm->net, 0, sizeof(vm->net));
	if (c->no_network)
		return 0;
	if (!l->has_ip || !rt->net)
		return err_set(&l->err, -EIO, "no address assigned");
	pthread_mutex_lock(&rt->net_lock);
	vm->net_set_up = true;
	r = net_vm_setup(rt->net, vm->name, &l->addr, c->uid_base + vm->index,
			 (gid_t)(c->uid_base + vm->index), &vm->net, &l->err);
	pthread_mutex_unlock(&rt->net_lock);
	pthread_mutex_lock(&vm->lock);
	vm->hs.net_known = true;
	vm->hs.net_ok = r >= 0;
	clock_gettime(CLOCK_REALTIME, &vm->hs.net_since);
	pthread_mutex_unlock(&vm->lock);
	if (r < 0)
		err_prefix(&l->err, "network: ");
	return r;
}

/* The files of the VM's directory the VMM is given: data disk (kept across starts), console log
 * path, per-VM initramfs, kernel command line. */
static int launch_files(struct launch *l)
{
	const struct runtime_config *c = &l->rt->cfg;
	struct vm *vm = l->vm;
	char ip[64] = "";
	int r;

	if (access(l->data, F_OK) < 0) {
		r = img_make_data_disk(l->data, c->data_disk_bytes, &l->err);
		if (r < 0)
			return err_prefix(&l->err, "data disk: ");
	}
	snprintf(l->console, sizeof(l->console), "%s/console.log", l->run_dir);
	if (c->initrd) {
		snprintf(l->initrd, sizeof(l->initrd), "%s/initrd.img", l->run_dir);
		if (!l->restore)
			template_plan(l->rt, l->prep.rootfs, l->data, l->n_vols,
				      vm->net.tap_name[0] != '\0', &l->tpl);
		r = write_guest_initrd(l->rt, vm, &l->prep, &l->addr, l->vols, l->n_vols, l->initrd,
				       l->tpl.mode != TPL_NONE ? &l->identity : NULL, &l->err);
		if (r < 0) {
			template_abandon(&l->tpl);
			return err_prefix(&l->err, "guest config: ");
		}
		if (l->tpl.build) /* this start cold-boots; the template is built for the next */
			(void)template_build_queue(l->rt, &l->tpl);
		if (l->tpl.mode == TPL_NONE && l->tpl.why[0])
			log_info("%s: template: %s: cold boot", vm->name, l->tpl.why);
	}
	if (l->has_ip)
		inet_ntop(AF_INET6, &l->addr, ip, sizeof(ip));
	/* Guest settings as key=value words: they reach init's environment (the kernel hands
	 * unknown key=value words of its command line to init). */
	snprintf(l->boot_args, sizeof(l->boot_args), "vmname=%s%s%s", vm->name,
		 ip[0] ? " ip6=" : "", ip);
	return 0;
}

/* A template start turned into a cold boot: the VM's own initramfs and command line. */
static void template_cold(struct launch *l, struct vmm_launch *p)
{
	l->tpl.mode = TPL_NONE;
	p->restore_dir = NULL;
	p->initrd = l->rt->cfg.initrd ? l->initrd : NULL;
	p->boot_args = l->boot_args;
}

/* A start from a template restores a sparse copy of it (the VM's RAM is then its own file, as
 * after a cold boot): the copy goes where the backend's restore reads it. A template that
 * cannot be staged costs a cold boot. */
static void template_prepare(struct launch *l, struct vmm_launch *p)
{
	struct vm *vm = l->vm;
	struct err e = {};

	if (l->tpl.mode == TPL_USE) {
		uint64_t t = agent_now_ms();
		int r = template_stage(&l->tpl, l->park_dir, &e);

		l->t_stage_ms = agent_now_ms() - t;
		if (r < 0) {
			log_warning("%s: template: %s: cold boot", vm->name, e.msg);
			if (e.code == -EBADMSG) {
				/* Removed, and built anew in the background. */
				(void)rm_rf(l->tpl.dir);
				(void)template_build_queue(l->rt, &l->tpl);
			}
			(void)rm_rf(l->park_dir);
			template_cold(l, p);
		} else {
			p->restore_dir = l->park_dir;
		}
	}
	if (l->tpl.mode != TPL_NONE) {
		/* Nothing of the VM on the template's command line; its initramfs says only
		 * "template". The VM's own settings go to the agent as its identity. */
		p->initrd = l->tpl.initrd;
		p->boot_args = "";
	}
}

/* The VMM this launch started goes, with what the backend made for it, before another launch
 * of the same VM. */
static void launch_undo_vmm(struct launch *l)
{
	struct runtime *rt = l->rt;
	struct vm *vm = l->vm;

	vmm_handle_kill_wait(&vm->h, 5000);
	(void)rt_kill_strays(rt, vm->name, 0, 2000);
	rt->ops->cleanup(rt->ops_priv, vm->name, &vm->h);
	vmm_handle_init(&vm->h);
	(void)rm_rf(l->park_dir);
	l->err = (struct err){0};
}

/* After the launch of a template start (r its result): a restore that failed costs a cold
 * boot in the same job. */
static int template_launched(struct launch *l, struct vmm_launch *p, int r)
{
	struct runtime *rt = l->rt;
	struct vm *vm = l->vm;

	if (r < 0 && l->tpl.mode == TPL_USE && !atomic_load(&vm->cancel)) {
		log_warning("%s: template: restore failed: %s: cold boot", vm->name, l->err.msg);
		launch_undo_vmm(l);
		template_cold(l, p);
		r = rt->ops->launch(rt->ops_priv, p, &vm->h, &l->err);
	}
	if (r < 0)
		template_abandon(&l->tpl);
	return r;
}

/* The backend's launch, after the strays of an earlier launch are gone and the intent is on
 * disk. */
static int launch_vmm(struct launch *l)
{
	struct runtime *rt = l->rt;
	const struct runtime_config *c = &rt->cfg;
	struct vm *vm = l->vm;
	struct vmm_launch p = {
		.name = vm->name,
		.index = vm->index,
		.uid = c->uid_base + vm->index,
		.gid = (gid_t)(c->uid_base + vm->index),
		.netns_path = vm->net.netns_path[0] ? vm->net.netns_path : NULL,
		.tap_name = vm->net.tap_name[0] ? vm->net.tap_name : NULL,
		.mac = vm->net.mac[0] ? vm->net.mac : NULL,
		.kernel = c->kernel,
		.initrd = c->initrd ? l->initrd : NULL,
		.rootfs = l->prep.rootfs,
		.data_disk = l->data,
		.volume_disks = l->vol_disks,
		.n_volume_disks = l->n_vols,
		.boot_args = l->boot_args,
		.vcpus = c->vcpus,
		.mem_mib = c->mem_mib,
		.run_dir = l->run_dir,
		.console_log = l->console,
		.cancel = &vm->cancel,
		.pid_out = &vm->launch_pid,
		.restore_dir = l->restore ? l->park_dir : NULL,
	};
	int r;

	if (l->restore) {
		/* A corrupt or missing saved state fails the start (the VM ends failed, the files
		 * stay): never a cold boot instead. */
		r = park_verify(rt, vm->name, &l->err);
		if (r < 0)
			return err_prefix(&l->err, "restore: ");
	} else {
		/* A cold boot: whatever an earlier suspend left goes (the QEMU backend creates the
		 * guest's RAM file in it afresh). */
		(void)rm_rf(l->park_dir);
	}
	template_prepare(l, &p);
	/* Never a second VMM in a jail whose VMM still runs: whatever is left of an earlier
	 * launch of this VM (an orphan of a killed daemon) goes first. */
	(void)rt_kill_strays(rt, vm->name, 0, 2000);
	/* Intent first: the record says a launch is under way (and as which uid) before the
	 * jailer or QEMU exists, so a daemon killed from here on leaves a record from which the
	 * next one finds and reaps what was spawned. */
	pthread_mutex_lock(&vm->lock);
	vm->launching = true;
	pthread_mutex_unlock(&vm->lock);
	vm_record_save(vm);
	r = rt->ops->launch(rt->ops_priv, &p, &vm->h, &l->err);
	if (l->tpl.mode != TPL_NONE)
		r = template_launched(l, &p, r);
	if (r < 0)
		return l->restore ? err_prefix(&l->err, "restore: ") : r;
	if (l->tpl.mode == TPL_USE)
		log_info("%s: template: started from %s", vm->name, l->tpl.dir);
	if (l->tpl.mode != TPL_NONE) {
		pthread_mutex_lock(&vm->lock);
		free(vm->identity);
		vm->identity = l->identity;
		l->identity = NULL;
		pthread_mutex_unlock(&vm->lock);
	}
	pthread_mutex_lock(&vm->lock);
	vm->launching = false;
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

/* The VMM runs: its agent client, its pid published; new volumes are no longer fresh (the
 * guest fills them from the image during this boot). */
static void launch_running(struct launch *l)
{
	struct vm *vm = l->vm;

	for (size_t i = 0; i < l->n_vols; i++)
		if (l->vols[i].fresh) {
			struct err err = {};

			if (volume_mark_used(l->rt->volumes, vm->name, l->vols[i].name, &err) < 0)
				log_warning("%s: volume '%s': %s", vm->name, l->vols[i].name,
					    err.msg);
		}

	if (l->restore) {
		pthread_mutex_lock(&vm->lock);
		vm->expect_boot_id = true;
		pthread_mutex_unlock(&vm->lock);
	}
	vm_agent_start(l->rt, vm);
	if (l->restore) {
		/* The guest continues where it was: its wall clock is stepped once it answers. */
		pthread_mutex_lock(&vm->lock);
		if (vm->agent)
			agent_resume(vm->agent, true);
		vm->mx.saved_state_bytes = 0;
		pthread_mutex_unlock(&vm->lock);
	}
	pthread_mutex_lock(&vm->lock);
	vm->pid = vm->h.pid;
	vm->hs.vmm_run = VMM_RUN_RUNNING;
	vm_touch_locked(vm, VM_ATTR_PID);
	pthread_mutex_unlock(&vm->lock);
	vm_notify(vm, VM_ATTR_PID);
}

void job_launch(struct runtime *rt, struct vm *vm, void *arg)
{
	struct launch *l = calloc(1, sizeof(*l));
	int r = -ENOMEM;

	if (l) {
		l->rt = rt;
		l->vm = vm;
		pthread_mutex_lock(&vm->lock);
		l->ref = vm->image ? strdup(vm->image) : NULL;
		l->addr = vm->ip;
		l->has_ip = vm->has_ip;
		l->restore = vm->lc.restore;
		/* A restore needs the very image it was suspended with, whatever the tag says now.
		 */
		if (l->restore && l->ref && vm->image_digest[0] && !strchr(l->ref, '@')) {
			char *pinned = NULL;

			if (asprintf(&pinned, "%s@%s", l->ref, vm->image_digest) >= 0) {
				free(l->ref);
				l->ref = pinned;
			}
		}
		memcpy(l->old_digest, vm->image_digest, sizeof(l->old_digest));
		pthread_mutex_unlock(&vm->lock);
		snprintf(l->run_dir, sizeof(l->run_dir), "%s/vms/%s", rt->cfg.state_dir, vm->name);
		(void)park_dir(rt, vm->name, l->park_dir, sizeof(l->park_dir));
	}
	/* The saved state's directory is this launch's until it ends (job_discard waits). */
	pthread_mutex_lock(&vm->park_lock);
	vmm_handle_init(&vm->h);
	if (l)
		l->t_begin = agent_now_ms();
#define STEP(i, call) ((r = (call)) >= 0 && (l->t_step[i] = agent_now_ms()) > 0)
	if (l && STEP(0, launch_image(l)) && STEP(1, launch_volumes(l)) &&
	    STEP(2, launch_network(l)) && STEP(3, launch_files(l)) && STEP(4, launch_vmm(l))) {
#undef STEP
		launch_log_timing(l);
		launch_running(l);
		(void)sv_post_event(rt, vm, LC_EV_LAUNCH_OK);
	} else {
		const char *msg = l ? l->err.msg : "";

		log_info("%s: start failed: %s", vm->name, msg);
		/* Kill (if alive), wait for the exit, and remove everything of the launch. */
		/* A failed restore keeps its saved state, and so the hold on the image its disks
		 * come from. */
		vm_host_teardown(rt, vm, &vm->h,
				 (vm->launching ? HOST_TEARDOWN_STRAYS : 0) |
					 (l && l->restore ? HOST_TEARDOWN_KEEP_IMAGE : 0));
		if (atomic_load(&vm->cancel) || atomic_load(&vm->img_cancel))
			vm_set_error(vm, "start: cancelled by stop or kill (%s)", msg);
		else
			vm_set_error(vm, "start: %s", msg[0] ? msg : strerror(-r));
		(void)sv_post_event(rt, vm, LC_EV_LAUNCH_FAIL);
	}
	pthread_mutex_unlock(&vm->park_lock);
	if (l) {
		template_release(&l->tpl); /* its VMM runs on its own copies now */
		free(l->ref);
		free(l->vols);
		free(l->identity);
	}
	free(l);
}
