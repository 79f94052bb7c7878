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
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "guest-config.h"
#include "internal.h"
#include "log.h"

#define TPL_LAYOUT "1" /* the device layout's version: root, data, NIC, agent port, console */
#define TPL_WAIT_MS 30000

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
int template_mem_sum(const char *path, off_t *ret_size, char hex[65])
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	static const unsigned char zero[PAGE];
	static _Thread_local unsigned char buf[1 << 16];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	off_t next = 0, data; /* next: the first page not hashed yet */
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
	/* Whole pages from page boundaries, whatever the file system's block size: the pages of
	 * each data extent, each page once. */
	while (r == 0 && next < st.st_size && (data = lseek(fd, next, SEEK_DATA)) >= 0) {
		off_t hole = lseek(fd, data, SEEK_HOLE), off;

		if (hole < 0) {
			r = -errno;
			break;
		}
		off = MAX(next, data & ~(off_t)(PAGE - 1));
		next = MIN((hole + PAGE - 1) & ~(off_t)(PAGE - 1), st.st_size);
		while (r == 0 && off < next) {
			ssize_t n =
				pread(fd, buf, (size_t)MIN(next - off, (off_t)sizeof(buf)), off);

			if (n <= 0 || (n % PAGE && off + n != next)) {
				r = n < 0 ? -errno : -EIO; /* shrunk while read */
				break;
			}
			for (ssize_t o = 0; o < n; o += PAGE) {
				size_t len = (size_t)MIN((ssize_t)PAGE, n - o);

				if (memcmp(buf + o, zero, len) == 0)
					continue;
				le = htole64((uint64_t)(off + o));
				if (EVP_DigestUpdate(ctx, &le, sizeof(le)) != 1 ||
				    EVP_DigestUpdate(ctx, buf + o, len) != 1)
					r = -EIO;
			}
			off += n;
		}
	}
	if (r == 0 && next < st.st_size && errno != ENXIO)
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

static bool mem_same_file(const struct mem_checked *m, const struct stat *st)
{
	return m->dev == st->st_dev && m->ino == st->st_ino && m->size == st->st_size &&
	       m->mtime.tv_sec == st->st_mtim.tv_sec && m->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static bool mem_was_checked(const struct stat *st, bool remember)
{
	bool found = false;

	pthread_mutex_lock(&mem_checked_lock);
	for (size_t i = 0; i < ELEMENTSOF(mem_checked) && !found; i++)
		found = mem_same_file(&mem_checked[i], st);
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
	r = template_mem_sum(path, &size, hex);
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

/* SHA-256 of the kernel's and the initramfs's content, kept per file identity (device, inode,
 * size, mtime, ctime): a file is read again only once it changed. */
#define HASH_CACHE_N 4
struct hash_entry {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim, ctim;
	char hex[65];
};
static struct hash_entry hash_cache[HASH_CACHE_N];
static unsigned hash_next;
static pthread_mutex_t hash_lock = PTHREAD_MUTEX_INITIALIZER;

static bool same_file(const struct hash_entry *e, const struct stat *st)
{
	return e->hex[0] && e->dev == st->st_dev && e->ino == st->st_ino &&
	       e->size == st->st_size && e->mtim.tv_sec == st->st_mtim.tv_sec &&
	       e->mtim.tv_nsec == st->st_mtim.tv_nsec && e->ctim.tv_sec == st->st_ctim.tv_sec &&
	       e->ctim.tv_nsec == st->st_ctim.tv_nsec;
}

static int content_sha256(const char *path, char hex[65])
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	int r;

	if (fd < 0 || fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	pthread_mutex_lock(&hash_lock);
	for (unsigned i = 0; i < HASH_CACHE_N; i++)
		if (same_file(&hash_cache[i], &st)) {
			memcpy(hex, hash_cache[i].hex, 65);
			pthread_mutex_unlock(&hash_lock);
			return 0;
		}
	pthread_mutex_unlock(&hash_lock);
	r = savefile_fd_sha256(fd, hex);
	if (r < 0)
		return r;
	pthread_mutex_lock(&hash_lock);
	hash_cache[hash_next] = (struct hash_entry){.dev = st.st_dev,
						    .ino = st.st_ino,
						    .size = st.st_size,
						    .mtim = st.st_mtim,
						    .ctim = st.st_ctim};
	memcpy(hash_cache[hash_next].hex, hex, 65);
	hash_next = (hash_next + 1) % HASH_CACHE_N;
	pthread_mutex_unlock(&hash_lock);
	return 0;
}

/* One key input line: a file by its content (a copy of the same kernel keeps the key; a changed
 * file is a new key). */
static int file_line(char *buf, size_t size, const char *what, const char *path)
{
	char hex[65];
	int r;

	if (!path)
		return -EINVAL;
	r = content_sha256(path, hex);
	if (r < 0)
		return r;
	return snprintf(buf, size, "%s sha256:%s\n", what, hex);
}

static off_t file_size(const char *path)
{
	struct stat st;

	return path && stat(path, &st) == 0 ? st.st_size : -1;
}

/* The key's input text for a root disk and a writable disk of these sizes: the node's kernel
 * and initramfs, vCPUs, memory, backend, the device layout's version, the disks, the NIC. Its
 * length; -ENOBUFS when it does not fit, -errno when the kernel or initramfs cannot be read. The
 * key is its SHA-256; templates/KEY/inputs keeps it (template_gc). */
static int key_inputs(struct runtime *rt, long long root, long long data, char *in, size_t size)
{
	const struct runtime_config *c = &rt->cfg;
	size_t n = 0;
	int k;

	k = file_line(in, size, "kernel", c->kernel);
	if (k > 0)
		n = (size_t)k;
	k = k > 0 ? file_line(in + n, size - n, "initrd", c->initrd) : k;
	if (k <= 0)
		return k < 0 ? k : -EIO;
	if ((n += (size_t)k) >= size)
		return -ENOBUFS;
	/* A snapshot loads only into the Firecracker binary that wrote it. */
	if (strcmp(rt->ops->name, "firecracker") == 0) {
		k = file_line(in + n, size - n, "vmm", c->firecracker);
		if (k <= 0)
			return k < 0 ? k : -EIO;
		if ((n += (size_t)k) >= size)
			return -ENOBUFS;
	}
	k = snprintf(in + n, size - n,
		     "vcpus %u\nmem %u\nbackend %s\nlayout " TPL_LAYOUT
		     "\nroot %lld\ndata %lld\nnic 1\n",
		     c->vcpus, c->mem_mib, rt->ops->name, root, data);
	if (k < 0 || (n += (size_t)k) >= size)
		return -ENOBUFS;
	return (int)n;
}

/* A shared lock on the template dir (or the build dir) for as long as this start uses it:
 * template_gc removes only what it can lock exclusively. The dir must still be the one at its
 * path once locked (template_gc renames a dir away before removing it). */
static int tpl_hold(struct tpl_plan *t, const char *dir)
{
	struct stat a, b;
	int fd, r = 0;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_SH | LOCK_NB) < 0 || fstat(fd, &a) < 0 || stat(dir, &b) < 0)
		r = -errno;
	else if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		r = -ESTALE;
	if (r < 0) {
		close(fd);
		return r;
	}
	t->hold_fd = fd;
	t->held = true;
	return 0;
}

/* Nobody holds dir (template_build_begin's takeover of a build a killed daemon left). */
static bool tpl_unheld(const char *dir)
{
	_cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	return fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0;
}

int template_key(struct runtime *rt, long long root, long long data, struct tpl_plan *t)
{
	const struct runtime_config *c = &rt->cfg;
	char in[sizeof(t->inputs)], key[65], dir[4200];
	int k;

	memset(t, 0, sizeof(*t));
	t->mode = TPL_NONE;
	t->hold_fd = -EBADF;
	t->root = root;
	t->data = data;
	if (c->no_template) {
		snprintf(t->why, sizeof(t->why), "off (--no-template)");
		return -ENOTSUP;
	}
	if (strcmp(rt->ops->name, "qemu") == 0) {
		t->mem = "ram";
	} else if (strcmp(rt->ops->name, "firecracker") == 0) {
		t->mem = "mem";
		t->shared = true;
	} else {
		snprintf(t->why, sizeof(t->why), "not for the %s backend yet", rt->ops->name);
		return -ENOTSUP;
	}
	if (!c->initrd || !c->kernel) {
		snprintf(t->why, sizeof(t->why), "the VM has no network or no initramfs");
		return -ENOTSUP;
	}
	k = key_inputs(rt, root, data, in, sizeof(in));
	if (k < 0 && k != -ENOBUFS) {
		snprintf(t->why, sizeof(t->why), "the kernel, initramfs or VMM cannot be read");
		return k;
	}
	if (k < 0 || sha256_hex(in, (size_t)k, key) < 0) {
		snprintf(t->why, sizeof(t->why), "cannot compute its key");
		return -EIO;
	}
	memcpy(t->inputs, in, (size_t)k + 1);
	snprintf(t->key, sizeof(t->key), "%.16s", key);
	snprintf(dir, sizeof(dir), "%s/templates", c->state_dir);
	(void)mkdir_p(dir, 0700);
	snprintf(t->final, sizeof(t->final), "%s/%s", dir, t->key);
	snprintf(t->initrd, sizeof(t->initrd), "%s/initrd", t->final);
	return 0;
}

void template_plan(struct runtime *rt, const char *rootfs, const char *data_disk, size_t n_vols,
		   bool has_nic, struct tpl_plan *t)
{
	int k;

	if (template_key(rt, (long long)file_size(rootfs), (long long)file_size(data_disk), t) < 0)
		return;
	if (n_vols) {
		snprintf(t->why, sizeof(t->why), "the VM has volumes (a device layout of its own)");
		return;
	}
	if (!has_nic) {
		snprintf(t->why, sizeof(t->why), "the VM has no network or no initramfs");
		return;
	}
	if (access(t->final, F_OK) == 0) {
		char ready[4400];

		/* Held from here until the launch ends (template_release). */
		k = tpl_hold(t, t->final);
		if (k < 0 && k != -ENOENT) {
			snprintf(t->why, sizeof(t->why), "being removed");
			return;
		}
		snprintf(ready, sizeof(ready), "%s/state.sum", t->final);
		if (k >= 0 && access(ready, F_OK) == 0) {
			t->mode = TPL_USE;
			snprintf(t->dir, sizeof(t->dir), "%s", t->final);
			return;
		}
		template_release(t);
	}
	/* Never built here: the start cold-boots, the build job makes it (template-build.c).
	 * Not for a writable disk older than the node's size: template_gc would remove it. */
	if (t->data != (long long)rt->cfg.data_disk_bytes) {
		snprintf(t->why, sizeof(t->why),
			 "none for this layout (a writable disk older than --data-disk-size)");
		return;
	}
	t->build = true;
	snprintf(t->why, sizeof(t->why), "none yet for this layout, building it in the background");
}

int template_build_begin(struct tpl_plan *t)
{
	struct stat st;
	int r;

	if (access(t->final, F_OK) == 0)
		return -EEXIST;
	/* A build dir nobody holds was left by a killed daemon (this daemon's builds of a key
	 * are one at a time, template-build.c): taken over. */
	snprintf(t->dir, sizeof(t->dir), "%s.build", t->final);
	if (stat(t->dir, &st) == 0 && tpl_unheld(t->dir)) {
		log_info("template: %s: left by an unfinished build, taken over", t->dir);
		(void)rm_rf(t->dir);
	}
	if (mkdir(t->dir, 0700) < 0)
		return errno == EEXIST ? -EBUSY : -errno;
	r = tpl_hold(t, t->dir);
	if (r < 0) {
		(void)rm_rf(t->dir);
		return r;
	}
	snprintf(t->initrd, sizeof(t->initrd), "%s/initrd", t->dir);
	t->mode = TPL_BUILD;
	return 0;
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
	/* A copy without fsync: it serves this run only (a crash ends the VM, whose next start
	 * stages anew), and syncing the RAM file cost about 50 ms of every start. */
	r = t->shared ? link_or_copy(src, dst) : savefile_copy_scratch(src, dst);
	snprintf(src, sizeof(src), "%s/%s", t->dir, t->mem);
	snprintf(dst, sizeof(dst), "%s/%s", park_dir, t->mem);
	if (r >= 0)
		r = t->shared ? link_or_copy(src, dst) : savefile_copy_scratch(src, dst);
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

#define TPL_WAIT_SLICE_MS 100

int template_capture(struct runtime *rt, const char *id, struct vmm_handle *h, struct tpl_plan *t,
		     const char *park_dir, atomic_bool *cancel, struct err *err)
{
	struct agent_config ac = {
		.transport = agent_transport_for_vmm(rt->ops->name),
		.socket_path = h->agent_socket,
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
	/* In slices, so that a cancel (the daemon's shutdown) ends the wait at once. */
	r = -ETIMEDOUT;
	for (unsigned waited = 0; r == -ETIMEDOUT && waited < TPL_WAIT_MS;
	     waited += TPL_WAIT_SLICE_MS) {
		if (cancel && atomic_load(cancel)) {
			r = -ECANCELED;
			break;
		}
		r = agent_wait(a, p_identity_waiting, NULL, TPL_WAIT_SLICE_MS);
	}
	agent_free(a);
	if (r == -ECANCELED)
		return err_set(err, r, "cancelled");
	if (r < 0)
		return err_set(err, r, "the guest did not wait for its identity within %d s",
			       TPL_WAIT_MS / 1000);
	r = rt->ops->pause(rt->ops_priv, h, err);
	if (r >= 0 && (r = mkdir_p(park_dir, 0700)) < 0)
		err_set(err, r, "%s: %s", park_dir, strerror(-r));
	if (r >= 0)
		r = rt->ops->save(rt->ops_priv, id, h, park_dir, err);
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

		r = template_mem_sum(dst, &size, hex);
		if (r >= 0) {
			snprintf(line, sizeof(line), "%lld %s\n", (long long)size, hex);
			snprintf(dst, sizeof(dst), "%s/%s.sum", t->dir, t->mem);
			r = write_file_atomic(dst, line, strlen(line), 0600);
		}
		if (r < 0)
			return err_set(err, r, "the memory file's sum: %s", strerror(-r));
	}
	r = template_write_inputs(t);
	snprintf(src, sizeof(src), "%s/state", t->dir);
	if (r >= 0)
		r = savefile_sha256(src, hex);
	if (r >= 0) {
		char line[80];

		snprintf(line, sizeof(line), "%s\n", hex);
		snprintf(dst, sizeof(dst), "%s/state.sum", t->dir);
		r = write_file_atomic(dst, line, strlen(line), 0600);
	}
	/* The build's disks, console and run dir are not the template's. */
	snprintf(src, sizeof(src), "%s/" TPL_WORK, t->dir);
	if (r >= 0)
		r = rm_rf(src);
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
	template_release(t);
}

int template_write_inputs(const struct tpl_plan *t)
{
	char path[4500];

	if (!t->inputs[0])
		return -EINVAL;
	snprintf(path, sizeof(path), "%s/inputs", t->dir);
	return write_file_atomic(path, t->inputs, strlen(t->inputs), 0600);
}

void template_release(struct tpl_plan *t)
{
	if (t->held)
		close(t->hold_fd);
	t->held = false;
	t->hold_fd = -EBADF;
}

/* Removal of old templates. A template (or a build dir) goes only once it is locked
 * exclusively (a start that uses it holds it shared: it is kept, and goes at a later pass); it
 * is renamed to .gone.NAME under that lock, so no start finds it any more, then removed. */

#define TPL_GONE ".gone."
#define TPL_BUILD_SUFFIX ".build"
#define TPL_BUILD_FRESH_S 2 /* a build dir is locked by its start within microseconds */

static pthread_mutex_t gc_lock = PTHREAD_MUTEX_INITIALIZER;

static bool is_key(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* The value of the line "name VALUE" of an inputs text, copied into buf; false if none. */
static bool inputs_value(const char *text, const char *name, char *buf, size_t size)
{
	size_t len = strlen(name);

	for (const char *l = text; *l; l = strchr(l, '\n') + 1) {
		size_t n = strcspn(l, "\n");

		if (n > len && strncmp(l, name, len) == 0 && l[len] == ' ') {
			snprintf(buf, size, "%.*s", (int)(n - len - 1), l + len + 1);
			return true;
		}
		if (!l[n])
			break;
	}
	return false;
}

/* Why the template templates/NAME must go ("" if it stays). Its inputs must be the key's
 * input text this configuration makes for its root disk size (every line but root is
 * node-wide: kernel, initramfs, vCPUs, memory, backend, layout, writable disk, NIC). */
static void template_verdict(struct runtime *rt, const char *dir, const char *name, bool node_ok,
			     char *why, size_t size)
{
	char path[4400], hex[65], root[32], line[64] = "", *end;
	_cleanup_free_ char *in = NULL;
	char cur[sizeof(((struct tpl_plan *)0)->inputs)];
	size_t len = 0;
	long long rootsz;
	int r, k;

	why[0] = '\0';
	snprintf(path, sizeof(path), "%s/%s/state.sum", dir, name);
	if (access(path, F_OK) < 0) {
		snprintf(why, size, "incomplete (no state.sum)");
		return;
	}
	snprintf(path, sizeof(path), "%s/%s/inputs", dir, name);
	r = read_file_bounded(path, sizeof(cur) - 1, &in, &len);
	if (r == -ENOENT) {
		snprintf(why, size, "no inputs file (made by an older version)");
		return;
	}
	if (r < 0) {
		snprintf(why, size, "inputs unreadable: %s", strerror(-r));
		return;
	}
	if (strlen(in) != len || sha256_hex(in, len, hex) < 0 || strncmp(hex, name, 16) != 0) {
		snprintf(why, size, "its inputs do not match its key");
		return;
	}
	if (!node_ok)
		return; /* the node's inputs cannot be read: nothing to compare with */
	if (!inputs_value(in, "root", root, sizeof(root)) || !root[0] || root[0] == '-' ||
	    (errno = 0, rootsz = strtoll(root, &end, 10), errno || *end)) {
		snprintf(why, size, "its inputs have no root disk size");
		return;
	}
	k = key_inputs(rt, rootsz, (long long)rt->cfg.data_disk_bytes, cur, sizeof(cur));
	if (k < 0 || strcmp(cur, in) == 0)
		return;
	/* The first line that differs names what changed. */
	for (size_t i = 0; in[i] || cur[i]; i++)
		if (in[i] != cur[i]) {
			size_t b = i;

			while (b > 0 && in[b - 1] != '\n')
				b--;
			snprintf(line, sizeof(line), "%.*s", (int)strcspn(in + b, " \n"), in + b);
			break;
		}
	snprintf(why, size, "made for other node inputs (its '%s' differs)", line[0] ? line : "?");
}

/* templates/NAME goes, unless a start holds it. 1 removed, 0 kept (in use), -errno. */
static int tpl_remove(const char *dir, const char *name, const char *why)
{
	char path[4400], gone[4500];
	_cleanup_close_ int fd = -EBADF;
	int r;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK)
			return -errno;
		if (!strstr(name, TPL_BUILD_SUFFIX)) /* else: being built */
			log_info("template: %s: %s: in use, kept for now", path, why);
		return 0;
	}
	snprintf(gone, sizeof(gone), "%s/" TPL_GONE "%s", dir, name);
	(void)rm_rf(gone);
	if (rename(path, gone) < 0)
		return errno == ENOENT ? 0 : -errno;
	r = rm_rf(gone);
	log_info("template: removed %s: %s", path, why);
	return r < 0 ? r : 1;
}

int template_gc(struct runtime *rt)
{
	char dir[4200], why[200], probe[sizeof(((struct tpl_plan *)0)->inputs)];
	_cleanup_closedir_ DIR *d = NULL;
	bool node_ok;
	struct dirent *de;
	int removed = 0;

	snprintf(dir, sizeof(dir), "%s/templates", rt->cfg.state_dir);
	pthread_mutex_lock(&gc_lock);
	d = opendir(dir);
	if (!d) {
		pthread_mutex_unlock(&gc_lock);
		return errno == ENOENT ? 0 : -errno;
	}
	node_ok = key_inputs(rt, 0, 0, probe, sizeof(probe)) >= 0;
	if (!node_ok)
		log_warning("template: the kernel or initramfs cannot be read: only broken "
			    "templates are removed");
	while ((de = readdir(d))) {
		const char *n = de->d_name;
		size_t len = strlen(n);
		struct stat st;
		int r = 0;

		why[0] = '\0';
		if (strncmp(n, TPL_GONE, strlen(TPL_GONE)) == 0) {
			char path[4500];

			snprintf(path, sizeof(path), "%s/%s", dir, n);
			r = rm_rf(path);
			log_info("template: removed %s: left by an interrupted removal", path);
			removed += r >= 0;
		} else if (len == 16 && is_key(n, len)) {
			template_verdict(rt, dir, n, node_ok, why, sizeof(why));
		} else if (len == 16 + strlen(TPL_BUILD_SUFFIX) && is_key(n, 16) &&
			   strcmp(n + 16, TPL_BUILD_SUFFIX) == 0 &&
			   fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			   time(NULL) - st.st_mtime >= TPL_BUILD_FRESH_S) {
			/* Locked by its start while built: tpl_remove keeps it. */
			snprintf(why, sizeof(why), "an unfinished build");
		}
		if (why[0])
			r = tpl_remove(dir, n, why);
		if (why[0] && r > 0)
			removed++;
		if (r < 0)
			log_warning("template: removing %s/%s: %s", dir, n, strerror(-r));
	}
	pthread_mutex_unlock(&gc_lock);
	return removed;
}
