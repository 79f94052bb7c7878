/* SPDX-License-Identifier: MIT */
/*
 * Booted templates (docs/template.md), QEMU backend: the first start of a device layout boots its
 * guest in template mode, and once the agent waits for its identity the guest is paused and
 * saved into STATE_DIR/templates/KEY (state, state.sum, ram, initrd); that VMM then ends and
 * every start of the layout, that first one included, restores a sparse copy of the template
 * and hands the agent the VM's identity. Anything that goes wrong here costs a cold boot, never
 * a start.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "guest-config.h"
#include "internal.h"
#include "log.h"

#define TPL_LAYOUT "1" /* the device layout's version: root, data, NIC, agent port, console */
#define TPL_WAIT_MS 30000
#define TPL_BUILD_STALE_S 120

/* SHA-256 of a buffer, hex. */
static int sha256_hex(const void *data, size_t len, char hex[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;

	if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 32)
		return -EIO;
	for (unsigned i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return 0;
}

/* rename, or a copy keeping holes across file systems; the file ends root's, 0600. */
static int move_file(const char *src, const char *dst)
{
	int r = rename(src, dst) < 0 ? -errno : 0;

	if (r == -EXDEV) {
		(void)unlink(dst);
		r = savefile_copy_sparse(src, dst, 0, 0);
	}
	if (r >= 0 && (chown(dst, 0, 0) < 0 || chmod(dst, 0600) < 0))
		r = -errno;
	return r;
}

/* One key input line: a file by identity (device, inode, size, mtime): a changed file is a new
 * key. */
static int file_line(char *buf, size_t size, const char *what, const char *path)
{
	struct stat st;

	if (!path || stat(path, &st) < 0)
		return -errno;
	return snprintf(buf, size, "%s %s %llu:%llu %lld %lld.%09ld\n", what, path,
			(unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
			(long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

static off_t file_size(const char *path)
{
	struct stat st;

	return path && stat(path, &st) == 0 ? st.st_size : -1;
}

void template_plan(struct runtime *rt, const char *rootfs, const char *data_disk, size_t n_vols,
		   bool has_nic, struct tpl_plan *t)
{
	const struct runtime_config *c = &rt->cfg;
	char in[4096], key[65], dir[4200];
	size_t n = 0;
	struct stat st;
	int k;

	memset(t, 0, sizeof(*t));
	t->mode = TPL_NONE;
	if (c->no_template) {
		snprintf(t->why, sizeof(t->why), "off (--no-template)");
		return;
	}
	if (strcmp(rt->ops->name, "qemu") != 0) {
		snprintf(t->why, sizeof(t->why), "not for the %s backend yet", rt->ops->name);
		return;
	}
	if (n_vols) {
		snprintf(t->why, sizeof(t->why), "the VM has volumes (a device layout of its own)");
		return;
	}
	if (!has_nic || !c->initrd || !c->kernel) {
		snprintf(t->why, sizeof(t->why), "the VM has no network or no initramfs");
		return;
	}
	k = file_line(in, sizeof(in), "kernel", c->kernel);
	if (k > 0)
		n = (size_t)k;
	k = k > 0 ? file_line(in + n, sizeof(in) - n, "initrd", c->initrd) : k;
	if (k <= 0 || (n += (size_t)k) >= sizeof(in)) {
		snprintf(t->why, sizeof(t->why), "the kernel or initramfs cannot be read");
		return;
	}
	k = snprintf(in + n, sizeof(in) - n,
		     "vcpus %u\nmem %u\nbackend %s\nlayout " TPL_LAYOUT
		     "\nroot %lld\ndata %lld\nnic 1\n",
		     c->vcpus, c->mem_mib, rt->ops->name, (long long)file_size(rootfs),
		     (long long)file_size(data_disk));
	if (k < 0 || (n += (size_t)k) >= sizeof(in) || sha256_hex(in, n, key) < 0) {
		snprintf(t->why, sizeof(t->why), "cannot compute its key");
		return;
	}
	snprintf(dir, sizeof(dir), "%s/templates", c->state_dir);
	(void)mkdir_p(dir, 0700);
	snprintf(t->final, sizeof(t->final), "%s/%.16s", dir, key);
	snprintf(t->initrd, sizeof(t->initrd), "%s/initrd", t->final);
	if (access(t->final, F_OK) == 0) {
		char ready[4400];

		snprintf(ready, sizeof(ready), "%s/state.sum", t->final);
		if (access(ready, F_OK) == 0) {
			t->mode = TPL_USE;
			snprintf(t->dir, sizeof(t->dir), "%s", t->final);
			return;
		}
	}
	/* One start builds it; a build dir left by a killed daemon is taken over when stale. */
	snprintf(t->dir, sizeof(t->dir), "%s.build", t->final);
	if (stat(t->dir, &st) == 0 && time(NULL) - st.st_mtime > TPL_BUILD_STALE_S)
		(void)rm_rf(t->dir);
	if (mkdir(t->dir, 0700) < 0) {
		snprintf(t->why, sizeof(t->why), "another start is building it");
		return;
	}
	snprintf(t->initrd, sizeof(t->initrd), "%s/initrd", t->dir);
	t->mode = TPL_BUILD;
}

int template_write_initrd(struct runtime *rt, const struct tpl_plan *t, struct err *err)
{
	struct guest_config gc = {
		.template = true,
		.transport = agent_transport_for_vmm(rt->ops->name),
		.heartbeat_ms = rt->cfg.heartbeat_ms,
	};

	return guest_config_write_initrd(&gc, rt->cfg.initrd, t->initrd, err);
}

int template_stage(const struct tpl_plan *t, const char *park_dir, struct err *err)
{
	char src[4600], dst[4600], want[80] = "", got[65];
	_cleanup_free_ char *sum = NULL;
	int r;

	snprintf(src, sizeof(src), "%s/state.sum", t->dir);
	r = read_file_bounded(src, 80, &sum, NULL);
	if (r < 0)
		return err_set(err, r, "%s: %s", src, strerror(-r));
	snprintf(want, sizeof(want), "%.64s", sum);
	snprintf(src, sizeof(src), "%s/state", t->dir);
	r = savefile_sha256(src, got);
	if (r < 0)
		return err_set(err, r, "%s: %s", src, strerror(-r));
	if (strcmp(want, got) != 0)
		return err_set(err, -EBADMSG, "corrupt: checksum mismatch");
	(void)rm_rf(park_dir);
	r = mkdir_p(park_dir, 0700);
	if (r < 0)
		return err_set(err, r, "%s: %s", park_dir, strerror(-r));
	snprintf(dst, sizeof(dst), "%s/state", park_dir);
	/* No fsync: the copy serves this run only (a crash ends the VM, whose next start stages
	 * anew), and syncing the RAM file cost about 50 ms of every start. */
	r = savefile_copy_scratch(src, dst);
	snprintf(src, sizeof(src), "%s/ram", t->dir);
	snprintf(dst, sizeof(dst), "%s/ram", park_dir);
	if (r >= 0)
		r = savefile_copy_scratch(src, dst);
	if (r < 0)
		return err_set(err, r, "copying the template: %s", strerror(-r));
	return 0;
}

static bool p_identity_waiting(const struct agent_status *s, void *ud)
{
	(void)ud;
	return s->connected && s->identity_waiting;
}

int template_capture(struct runtime *rt, struct vm *vm, struct tpl_plan *t, const char *park_dir,
		     struct err *err)
{
	struct agent_config ac = {
		.transport = agent_transport_for_vmm(rt->ops->name),
		.socket_path = vm->h.agent_socket,
		.vsock_port = AGENT_DEFAULT_VSOCK_PORT,
		.heartbeat_ms = rt->cfg.heartbeat_ms,
	};
	char src[4600], dst[4600], hex[65];
	struct agent *a = NULL;
	int r;

	r = agent_start(&ac, &a);
	if (r < 0)
		return err_set(err, r, "agent client: %s", strerror(-r));
	r = agent_wait(a, p_identity_waiting, NULL, TPL_WAIT_MS);
	agent_free(a);
	if (r < 0)
		return err_set(err, r, "the guest did not wait for its identity within %d s",
			       TPL_WAIT_MS / 1000);
	r = rt->ops->pause(rt->ops_priv, &vm->h, err);
	if (r >= 0)
		r = rt->ops->save(rt->ops_priv, vm->name, &vm->h, park_dir, err);
	/* The VMM ends after this (the caller kills it): its files move into the template. */
	snprintf(src, sizeof(src), "%s/state.tmp", park_dir);
	snprintf(dst, sizeof(dst), "%s/state", t->dir);
	if (r >= 0 && (r = move_file(src, dst)) < 0)
		err_set(err, r, "keeping the state: %s", strerror(-r));
	(void)unlink(src);
	snprintf(src, sizeof(src), "%s/ram", park_dir);
	snprintf(dst, sizeof(dst), "%s/ram", t->dir);
	if (r >= 0 && (r = move_file(src, dst)) < 0)
		err_set(err, r, "keeping the RAM: %s", strerror(-r));
	if (r < 0)
		return r;
	snprintf(src, sizeof(src), "%s/state", t->dir);
	r = savefile_sha256(src, hex);
	if (r >= 0) {
		char line[80];

		snprintf(line, sizeof(line), "%s\n", hex);
		snprintf(dst, sizeof(dst), "%s/state.sum", t->dir);
		r = write_file_atomic(dst, line, strlen(line), 0600);
	}
	if (r >= 0 && rename(t->dir, t->final) < 0)
		r = -errno;
	if (r < 0)
		return err_set(err, r, "keeping the template: %s", strerror(-r));
	return 0;
}

void template_abandon(struct tpl_plan *t)
{
	if (t->mode == TPL_BUILD)
		(void)rm_rf(t->dir);
}
