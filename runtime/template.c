/* SPDX-License-Identifier: MIT */
/*
 * Booted templates (docs/template.md): the first start of a device layout boots its guest in
 * template mode, and once the agent waits for its identity the guest is paused and saved into
 * STATE_DIR/templates/KEY (state, state.sum, the memory file, initrd); that VMM then ends and
 * every start of the layout, that first one included, restores the template and hands the agent
 * the VM's identity. QEMU restores a sparse copy (its RAM file must be writable); Firecracker
 * maps the template's memory file privately, so its clones get hard links of the template's
 * read-only files (mem.sum: the memory file's size and sum, checked at its first use by this
 * process). Anything that goes wrong here costs a cold boot, never a start.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
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

/* rename, or a copy keeping holes across file systems; the file ends root's, with mode. */
static int move_file(const char *src, const char *dst, mode_t mode)
{
	int r = rename(src, dst) < 0 ? -errno : 0;

	if (r == -EXDEV) {
		(void)unlink(dst);
		r = savefile_copy_sparse(src, dst, 0, 0);
	}
	if (r >= 0 && (chown(dst, 0, 0) < 0 || chmod(dst, mode) < 0))
		r = -errno;
	return r;
}

#define PAGE 4096

/* The sum of a guest memory file, whatever its holes: SHA-256 over (offset, page) of every page
 * that is not all zero, then the size; reads only the file's data extents (a sparse file of
 * 2 GiB with 100 MiB touched reads 100 MiB). */
static int mem_sum(const char *path, off_t *ret_size, char hex[65])
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	static const unsigned char zero[PAGE];
	static _Thread_local unsigned char buf[1 << 16];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	off_t data = 0, hole;
	EVP_MD_CTX *ctx;
	struct stat st;
	uint64_t le;
	int r = 0;

	if (fd < 0 || fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return -ENOMEM;
	}
	while (r == 0 && (data = lseek(fd, data, SEEK_DATA)) >= 0) {
		data &= ~(off_t)(PAGE - 1);
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0) {
			r = -errno;
			break;
		}
		while (r == 0 && data < hole) {
			ssize_t n =
				pread(fd, buf, (size_t)MIN(hole - data, (off_t)sizeof(buf)), data);

			if (n <= 0) {
				r = n < 0 ? -errno : -EIO;
				break;
			}
			for (ssize_t o = 0; o < n; o += PAGE) {
				size_t len = (size_t)MIN((ssize_t)PAGE, n - o);

				if (memcmp(buf + o, zero, len) == 0)
					continue;
				le = htole64((uint64_t)(data + o));
				if (EVP_DigestUpdate(ctx, &le, sizeof(le)) != 1 ||
				    EVP_DigestUpdate(ctx, buf + o, len) != 1)
					r = -EIO;
			}
			data += n;
		}
	}
	if (r == 0 && data < 0 && errno != ENXIO)
		r = -errno;
	le = htole64((uint64_t)st.st_size);
	if (r == 0 && (EVP_DigestUpdate(ctx, &le, sizeof(le)) != 1 ||
		       EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen < 32))
		r = -EIO;
	EVP_MD_CTX_free(ctx);
	for (unsigned i = 0; r == 0 && i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	if (r == 0)
		*ret_size = st.st_size;
	return r;
}

/* Memory files whose sum this process checked, by identity: a file changed since (written,
 * truncated, replaced) has another inode, size or mtime and is checked again. Not the ctime:
 * every clone's hard link changes it. (Only root can write the file or set its mtime back.) */
static struct mem_checked {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
} mem_checked[32];
static unsigned mem_checked_next;
static pthread_mutex_t mem_checked_lock = PTHREAD_MUTEX_INITIALIZER;

static bool same_file(const struct mem_checked *m, const struct stat *st)
{
	return m->dev == st->st_dev && m->ino == st->st_ino && m->size == st->st_size &&
	       m->mtime.tv_sec == st->st_mtim.tv_sec && m->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static bool mem_was_checked(const struct stat *st, bool remember)
{
	bool found = false;

	pthread_mutex_lock(&mem_checked_lock);
	for (size_t i = 0; i < ELEMENTSOF(mem_checked) && !found; i++)
		found = same_file(&mem_checked[i], st);
	if (!found && remember) {
		mem_checked[mem_checked_next++ % ELEMENTSOF(mem_checked)] =
			(struct mem_checked){st->st_dev, st->st_ino, st->st_size, st->st_mtim};
	}
	pthread_mutex_unlock(&mem_checked_lock);
	return found;
}

static double secs(struct timespec a, struct timespec b)
{
	return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

/* A shared template's memory file: its size at every use, its sum at its first use by this
 * process (mem.sum: "SIZE HEX"). */
static int check_mem(const struct tpl_plan *t, struct err *err)
{
	char path[4600], sumpath[4600], hex[65];
	_cleanup_free_ char *sum = NULL;
	unsigned long long want_size;
	char want[65] = "";
	struct timespec t0, t1, c0, c1;
	struct stat st;
	off_t size = 0;
	char *end = NULL;
	int r;

	snprintf(sumpath, sizeof(sumpath), "%s/%s.sum", t->dir, t->mem);
	snprintf(path, sizeof(path), "%s/%s", t->dir, t->mem);
	r = read_file_bounded(sumpath, 100, &sum, NULL);
	if (r < 0)
		return err_set(err, -EBADMSG, "corrupt: %s: %s", sumpath, strerror(-r));
	errno = 0;
	want_size = strtoull(sum, &end, 10);
	if (errno || end == sum || *end != ' ' || strspn(end + 1, "0123456789abcdef") != 64 ||
	    strcmp(end + 65, "\n") != 0)
		return err_set(err, -EBADMSG, "corrupt: %s: malformed", sumpath);
	memcpy(want, end + 1, 64);
	if (lstat(path, &st) < 0)
		return err_set(err, -EBADMSG, "corrupt: %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 0222) ||
	    (unsigned long long)st.st_size != want_size)
		return err_set(err, -EBADMSG,
			       "corrupt: %s: not the root-owned read-only file of %llu "
			       "bytes it was saved as",
			       path, want_size);
	if (mem_was_checked(&st, false))
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
	r = mem_sum(path, &size, hex);
	if (r < 0)
		return err_set(err, r, "%s: %s", path, strerror(-r));
	if ((unsigned long long)size != want_size || strcmp(hex, want) != 0)
		return err_set(err, -EBADMSG, "corrupt: memory checksum mismatch");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
	log_info("template: %s: sum checked (%lld MiB allocated) in %.3f s (%.3f s CPU)", path,
		 (long long)st.st_blocks / 2048, secs(t0, t1), secs(c0, c1));
	(void)mem_was_checked(&st, true);
	return 0;
}

/* A shared template's file into park_dir: a hard link (the same read-only inode), or a sparse
 * copy, logged, when a link is impossible. */
static int link_or_copy(const char *src, const char *dst)
{
	int r;

	if (link(src, dst) == 0)
		return 0;
	r = -errno;
	if (r != -EXDEV && r != -EMLINK && r != -EPERM)
		return r;
	log_info("template: %s copied, not shared (hard link: %s)", src, strerror(-r));
	r = savefile_copy_sparse(src, dst, 0, 0);
	return r < 0 ? r : chmod(dst, 0444) < 0 ? -errno : 0;
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
	if (strcmp(rt->ops->name, "qemu") == 0) {
		t->mem = "ram";
	} else if (strcmp(rt->ops->name, "firecracker") == 0) {
		t->mem = "mem";
		t->shared = true;
	} else {
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
	/* A snapshot loads only into the Firecracker binary that wrote it. */
	if (k > 0 && t->shared && (n += (size_t)k) < sizeof(in))
		k = file_line(in + n, sizeof(in) - n, "vmm", c->firecracker);
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
	if (t->shared && (r = check_mem(t, err)) < 0)
		return r;
	(void)rm_rf(park_dir);
	r = mkdir_p(park_dir, 0700);
	if (r < 0)
		return err_set(err, r, "%s: %s", park_dir, strerror(-r));
	snprintf(dst, sizeof(dst), "%s/state", park_dir);
	r = t->shared ? link_or_copy(src, dst)
		      : savefile_copy_sparse(src, dst, (uid_t)-1, (gid_t)-1);
	snprintf(src, sizeof(src), "%s/%s", t->dir, t->mem);
	snprintf(dst, sizeof(dst), "%s/%s", park_dir, t->mem);
	if (r >= 0)
		r = t->shared ? link_or_copy(src, dst)
			      : savefile_copy_sparse(src, dst, (uid_t)-1, (gid_t)-1);
	if (r < 0)
		return err_set(err, r, "%s the template: %s", t->shared ? "linking" : "copying",
			       strerror(-r));
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
	mode_t mode = t->shared ? 0444 : 0600; /* shared: the clones' VMMs read them */
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
	if (r >= 0 && (r = mkdir_p(park_dir, 0700)) < 0)
		err_set(err, r, "%s: %s", park_dir, strerror(-r));
	if (r >= 0)
		r = rt->ops->save(rt->ops_priv, vm->name, &vm->h, park_dir, err);
	/* The VMM ends after this (the caller kills it): its files move into the template. */
	snprintf(src, sizeof(src), "%s/state.tmp", park_dir);
	snprintf(dst, sizeof(dst), "%s/state", t->dir);
	if (r >= 0 && (r = move_file(src, dst, mode)) < 0)
		err_set(err, r, "keeping the state: %s", strerror(-r));
	(void)unlink(src);
	snprintf(src, sizeof(src), "%s/%s", park_dir, t->mem);
	snprintf(dst, sizeof(dst), "%s/%s", t->dir, t->mem);
	if (r >= 0 && (r = move_file(src, dst, mode)) < 0)
		err_set(err, r, "keeping the RAM: %s", strerror(-r));
	if (r < 0)
		return r;
	if (t->shared) {
		/* Checked again at its first use, once this VMM is gone. */
		char line[100];
		off_t size = 0;

		r = mem_sum(dst, &size, hex);
		if (r >= 0) {
			snprintf(line, sizeof(line), "%lld %s\n", (long long)size, hex);
			snprintf(dst, sizeof(dst), "%s/%s.sum", t->dir, t->mem);
			r = write_file_atomic(dst, line, strlen(line), 0600);
		}
		if (r < 0)
			return err_set(err, r, "the memory file's sum: %s", strerror(-r));
	}
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
