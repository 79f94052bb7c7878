/* SPDX-License-Identifier: MIT */
/*
 * The volume store (volume.h): per VM, STATE_DIR/volumes/VM/VOL/{volume.json,disk.ext4}.
 * Creation builds .new-VOL and renames it into place; destruction renames VOL to .del-VOL and
 * removes it; a grow is recorded ("growing") before the disk changes. volume_store_recover()
 * finishes or removes what a crash interrupted. The disks are made and grown by image/'s
 * helpers (mkfs.ext4, resize2fs through posix_spawn, bounded).
 */
#include "volume.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "image.h"
#include "log.h"
#include "macro.h"
#include "parse.h"

#define CONFIG_NAME "volume.json"
#define DISK_NAME "disk.ext4"
#define NEW_PREFIX ".new-"
#define DEL_PREFIX ".del-"

/* ---- the store ---- */

struct volume_store {
	char *root; /* STATE_DIR/volumes */
	uint64_t default_size;
	pthread_mutex_t lock; /* serialises every operation; a leaf */
};

int volume_store_new(const char *state_dir, uint64_t default_size, struct volume_store **ret,
		     struct err *err)
{
	struct volume_store *s;
	int r;

	if (!default_size)
		default_size = VOLUME_SIZE_DEFAULT;
	if (default_size < VOLUME_SIZE_MIN || default_size > VOLUME_SIZE_MAX || default_size % 4096)
		return err_set(err, -EINVAL,
			       "volume size %" PRIu64 " must be a multiple of 4K within 16M..16T",
			       default_size);
	s = calloc(1, sizeof(*s));
	if (!s || asprintf(&s->root, "%s/volumes", state_dir) < 0) {
		free(s);
		return err_set(err, -ENOMEM, "out of memory");
	}
	r = mkdir_p(s->root, 0700);
	if (r < 0) {
		err_set(err, r, "cannot create %s: %s", s->root, strerror(-r));
		free(s->root);
		free(s);
		return r;
	}
	s->default_size = default_size;
	pthread_mutex_init(&s->lock, NULL);
	*ret = s;
	return 0;
}

struct volume_store *volume_store_free(struct volume_store *s)
{
	if (!s)
		return NULL;
	pthread_mutex_destroy(&s->lock);
	free(s->root);
	free(s);
	return NULL;
}

uint64_t volume_store_default_size(const struct volume_store *s)
{
	return s->default_size;
}

static int vpath(const struct volume_store *s, char *buf, size_t size, const char *vm,
		 const char *prefix, const char *vol, const char *file)
{
	int n = snprintf(buf, size, "%s/%s%s%s%s%s%s", s->root, vm, vol ? "/" : "",
			 prefix ? prefix : "", vol ? vol : "", file ? "/" : "", file ? file : "");

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int volume_disk_path(const struct volume_store *s, const char *vm, const char *vol, char *buf,
		     size_t size)
{
	return vpath(s, buf, size, vm, NULL, vol, DISK_NAME);
}

/* Read and decode dir/volume.json; v->name set from vol. */
static int load(struct volume_store *s, const char *vm, const char *prefix, const char *vol,
		struct volume *v, struct err *err)
{
	char p[4096];
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	int r;

	r = vpath(s, p, sizeof(p), vm, prefix, vol, CONFIG_NAME);
	if (r < 0)
		return err_set(err, r, "volume path too long");
	r = read_file_bounded(p, VOLUME_CONFIG_MAX, &data, &len);
	if (r == -ENOENT)
		return err_set(err, -ENOENT, "no volume '%s' of VM '%s'", vol, vm);
	if (r < 0)
		return err_set(err, r, "cannot read %s: %s", p, strerror(-r));
	r = volume_config_decode(data, len, v, err);
	if (r < 0)
		return err_prefix(err, "%s: ", p);
	snprintf(v->name, sizeof(v->name), "%s", vol);
	return 0;
}

static int save(struct volume_store *s, const char *vm, const char *prefix, const struct volume *v,
		struct err *err)
{
	char p[4096];
	_cleanup_free_ char *data = NULL;
	int r;

	r = vpath(s, p, sizeof(p), vm, prefix, v->name, CONFIG_NAME);
	if (r >= 0)
		r = volume_config_encode(v, &data);
	if (r >= 0)
		r = write_file_atomic(p, data, strlen(data), 0600);
	if (r < 0)
		return err_set(err, r, "cannot write the config of volume '%s': %s", v->name,
			       strerror(-r));
	return 0;
}

static int fsync_dir(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	return fsync(fd) < 0 ? -errno : 0;
}

static int cmp_volume(const void *a, const void *b)
{
	return strcmp(((const struct volume *)a)->name, ((const struct volume *)b)->name);
}

/* The volumes of vm, with the lock held. Entries that are not valid volumes are skipped (the
 * recovery removes them). */
static int list_locked(struct volume_store *s, const char *vm, struct volume **ret, struct err *err)
{
	char p[4096];
	_cleanup_closedir_ DIR *d = NULL;
	_cleanup_free_ struct volume *vols = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int r;

	*ret = NULL;
	r = vpath(s, p, sizeof(p), vm, NULL, NULL, NULL);
	if (r < 0)
		return err_set(err, r, "volume path too long");
	d = opendir(p);
	if (!d) {
		if (errno == ENOENT)
			return 0;
		return err_set(err, -errno, "cannot list %s: %s", p, strerror(errno));
	}
	while ((de = readdir(d))) {
		struct volume v;
		struct err ignored = {};

		if (!volume_name_is_valid(de->d_name))
			continue;
		if (load(s, vm, NULL, de->d_name, &v, &ignored) < 0)
			continue;
		if (n == cap) {
			struct volume *nv;

			cap = cap ? cap * 2 : 4;
			nv = realloc(vols, cap * sizeof(*vols));
			if (!nv)
				return err_set(err, -ENOMEM, "out of memory");
			vols = nv;
		}
		vols[n++] = v;
	}
	if (n)
		qsort(vols, n, sizeof(*vols), cmp_volume);
	*ret = TAKE_PTR(vols);
	return (int)n;
}

int volume_list(struct volume_store *s, const char *vm, struct volume **ret, struct err *err)
{
	int r;

	pthread_mutex_lock(&s->lock);
	r = list_locked(s, vm, ret, err);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int volume_get(struct volume_store *s, const char *vm, const char *vol, struct volume *ret,
	       struct err *err)
{
	int r;

	if (!volume_name_is_valid(vol))
		return err_set(err, -ENOENT, "no volume '%s'", vol);
	pthread_mutex_lock(&s->lock);
	r = load(s, vm, NULL, vol, ret, err);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* -EINVAL when path overlaps a volume of vm other than self. */
static int check_overlap(const struct volume *vols, int n, const char *self, const char *path,
			 struct err *err)
{
	for (int i = 0; i < n; i++) {
		if (self && strcmp(vols[i].name, self) == 0)
			continue;
		if (vols[i].path[0] && volume_paths_overlap(vols[i].path, path))
			return err_set(err, -EINVAL, "path %s overlaps %s of volume '%s'", path,
				       vols[i].path, vols[i].name);
	}
	return 0;
}

/* The new volume's record from the caller's values (size 0: the store's default). */
static int new_volume(const struct volume_store *s, const char *vol, const char *path,
		      uint64_t size, struct volume *v, struct err *err)
{
	const char *why = NULL;

	if (!volume_name_is_valid(vol))
		return err_set(err, -EINVAL, "bad volume name '%s' (1-32 of a-z, 0-9, '-')", vol);
	if (path && path[0] && volume_path_check(path, &why) < 0)
		return err_set(err, -EINVAL, "bad volume path '%s': %s", path, why);
	if (size) {
		char buf[32];

		snprintf(buf, sizeof(buf), "%" PRIu64, size);
		if (volume_size_parse(buf, &size, &why) < 0)
			return err_set(err, -EINVAL, "bad volume size %s: %s", buf, why);
	} else
		size = s->default_size;
	*v = (struct volume){.fresh = true, .size = size};
	snprintf(v->name, sizeof(v->name), "%s", vol);
	snprintf(v->path, sizeof(v->path), "%s", path ? path : "");
	return 0;
}

/* May v join vm's volumes: a new name, room for one more, a path overlapping none. Locked. */
static int check_new_locked(struct volume_store *s, const char *vm, const struct volume *v,
			    struct err *err)
{
	_cleanup_free_ struct volume *vols = NULL;
	int n = list_locked(s, vm, &vols, err);

	if (n < 0)
		return n;
	for (int i = 0; i < n; i++)
		if (strcmp(vols[i].name, v->name) == 0)
			return err_set(err, -EEXIST, "volume '%s' exists", v->name);
	if (n >= VOLUME_MAX_PER_VM)
		return err_set(err, -ENOSPC, "VM '%s' has %d volumes, the most it may have", vm,
			       VOLUME_MAX_PER_VM);
	return v->path[0] ? check_overlap(vols, n, NULL, v->path, err) : 0;
}

int volume_create(struct volume_store *s, const char *vm, const char *vol, const char *path,
		  uint64_t size, struct err *err)
{
	struct volume v;
	char dir[4096], final[4096], disk[4096], vmdir[4096];
	int r;

	r = new_volume(s, vol, path, size, &v, err);
	if (r < 0)
		return r;
	r = vpath(s, dir, sizeof(dir), vm, NEW_PREFIX, vol, NULL);
	if (r >= 0)
		r = vpath(s, final, sizeof(final), vm, NULL, vol, NULL);
	if (r >= 0)
		r = vpath(s, disk, sizeof(disk), vm, NEW_PREFIX, vol, DISK_NAME);
	if (r >= 0)
		r = vpath(s, vmdir, sizeof(vmdir), vm, NULL, NULL, NULL);
	if (r < 0)
		return err_set(err, r, "volume path too long");

	pthread_mutex_lock(&s->lock);
	r = check_new_locked(s, vm, &v, err);
	if (r < 0)
		goto out;
	/* A leftover of a crashed create of the same name goes first. */
	(void)rm_rf(dir);
	r = mkdir_p(dir, 0700);
	if (r < 0) {
		err_set(err, r, "cannot create %s: %s", dir, strerror(-r));
		goto out;
	}
	/* mkfs without the lock (other VMs' calls go on; one VM's are serialised by the caller):
	 * the disk and its config are complete before the rename makes the volume exist. */
	pthread_mutex_unlock(&s->lock);
	r = img_make_volume_disk(disk, v.size, err);
	if (r >= 0)
		r = save(s, vm, NEW_PREFIX, &v, err);
	pthread_mutex_lock(&s->lock);
	if (r >= 0 && rename(dir, final) < 0)
		r = err_set(err, -errno, "cannot rename %s: %s", dir, strerror(errno));
	if (r < 0)
		(void)rm_rf(dir);
	else
		(void)fsync_dir(vmdir);
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* Rename VOL to .del-VOL (the destroy is then certain) and remove it. With the lock held. */
static int destroy_locked(struct volume_store *s, const char *vm, const char *vol, struct err *err)
{
	char from[4096], to[4096];
	struct stat st;
	int r;

	r = vpath(s, from, sizeof(from), vm, NULL, vol, NULL);
	if (r >= 0)
		r = vpath(s, to, sizeof(to), vm, DEL_PREFIX, vol, NULL);
	if (r < 0)
		return err_set(err, r, "volume path too long");
	if (lstat(from, &st) < 0 || !S_ISDIR(st.st_mode))
		return err_set(err, -ENOENT, "no volume '%s' of VM '%s'", vol, vm);
	(void)rm_rf(to);
	if (rename(from, to) < 0)
		return err_set(err, -errno, "cannot rename %s: %s", from, strerror(errno));
	r = rm_rf(to);
	if (r < 0)
		log_warning("volume '%s' of '%s': cannot remove %s: %s (removed at the next start)",
			    vol, vm, to, strerror(-r));
	return 0;
}

int volume_destroy(struct volume_store *s, const char *vm, const char *vol, struct err *err)
{
	int r;

	if (!volume_name_is_valid(vol))
		return err_set(err, -ENOENT, "no volume '%s'", vol);
	pthread_mutex_lock(&s->lock);
	r = destroy_locked(s, vm, vol, err);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int volume_destroy_all(struct volume_store *s, const char *vm, struct err *err)
{
	char p[4096];
	int r;

	r = vpath(s, p, sizeof(p), vm, NULL, NULL, NULL);
	if (r < 0)
		return err_set(err, r, "volume path too long");
	pthread_mutex_lock(&s->lock);
	r = rm_rf(p);
	pthread_mutex_unlock(&s->lock);
	if (r < 0 && r != -ENOENT)
		return err_set(err, r, "cannot remove %s: %s", p, strerror(-r));
	return 0;
}

int volume_set_path(struct volume_store *s, const char *vm, const char *vol, const char *path,
		    struct err *err)
{
	_cleanup_free_ struct volume *vols = NULL;
	struct volume *v = NULL;
	const char *why = NULL;
	int n, r;

	if (volume_path_check(path, &why) < 0)
		return err_set(err, -EINVAL, "bad volume path '%s': %s", path, why);
	pthread_mutex_lock(&s->lock);
	n = r = list_locked(s, vm, &vols, err);
	for (int i = 0; i < n; i++)
		if (strcmp(vols[i].name, vol) == 0)
			v = &vols[i];
	if (r >= 0 && !v)
		r = err_set(err, -ENOENT, "no volume '%s' of VM '%s'", vol, vm);
	if (r >= 0)
		r = check_overlap(vols, n, vol, path, err);
	if (r >= 0 && strcmp(v->path, path) != 0) {
		snprintf(v->path, sizeof(v->path), "%s", path);
		r = save(s, vm, NULL, v, err);
	}
	pthread_mutex_unlock(&s->lock);
	return r < 0 ? r : 0;
}

/* Grow v's disk to v->size with v recorded "growing" first; with the lock held, which
 * resize2fs runs without (unlocked: false at the start, before the daemon's threads run). */
static int grow_locked(struct volume_store *s, const char *vm, struct volume *v, bool unlock,
		       struct err *err)
{
	char disk[4096];
	int r;

	r = vpath(s, disk, sizeof(disk), vm, NULL, v->name, DISK_NAME);
	if (r < 0)
		return err_set(err, r, "volume path too long");
	v->growing = true;
	r = save(s, vm, NULL, v, err);
	if (r < 0)
		return r;
	if (unlock)
		pthread_mutex_unlock(&s->lock);
	r = img_grow_disk(disk, v->size, err);
	if (unlock)
		pthread_mutex_lock(&s->lock);
	if (r < 0)
		return r; /* recorded growing: the next start or recovery tries again */
	v->growing = false;
	return save(s, vm, NULL, v, err);
}

int volume_set_size(struct volume_store *s, const char *vm, const char *vol, uint64_t size,
		    struct err *err)
{
	struct volume v;
	char buf[32];
	const char *why = NULL;
	int r;

	snprintf(buf, sizeof(buf), "%" PRIu64, size);
	if (volume_size_parse(buf, &size, &why) < 0)
		return err_set(err, -EINVAL, "bad volume size %s: %s", buf, why);
	if (!volume_name_is_valid(vol))
		return err_set(err, -ENOENT, "no volume '%s'", vol);
	pthread_mutex_lock(&s->lock);
	r = load(s, vm, NULL, vol, &v, err);
	if (r >= 0 && size < v.size)
		r = err_set(err, -EINVAL,
			    "volume '%s' is %" PRIu64 " bytes: it can grow but not shrink", vol,
			    v.size);
	if (r >= 0 && (size > v.size || v.growing)) {
		uint64_t old = v.size;

		v.size = MAX(size, v.size);
		r = grow_locked(s, vm, &v, true, err);
		if (r < 0 && v.growing) {
			/* Refused before the disk changed (no room, say): the volume stays as it
			 * was. Once the file grew, "growing" stays for the recovery to finish. */
			char disk[4096];
			struct stat st;
			struct err ignored = {};

			if (vpath(s, disk, sizeof(disk), vm, NULL, vol, DISK_NAME) >= 0 &&
			    stat(disk, &st) == 0 && (uint64_t)st.st_size == old) {
				v.size = old;
				v.growing = false;
				(void)save(s, vm, NULL, &v, &ignored);
			}
		}
	}
	pthread_mutex_unlock(&s->lock);
	return r < 0 ? r : 0;
}

int volume_mark_used(struct volume_store *s, const char *vm, const char *vol, struct err *err)
{
	struct volume v;
	int r;

	if (!volume_name_is_valid(vol))
		return err_set(err, -ENOENT, "no volume '%s'", vol);
	pthread_mutex_lock(&s->lock);
	r = load(s, vm, NULL, vol, &v, err);
	if (r >= 0 && v.fresh) {
		v.fresh = false;
		r = save(s, vm, NULL, &v, err);
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int list_names(const char *dir, bool (*keep)(const char *), char ***ret)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	char **names = NULL, **nn;
	size_t n = 0, cap = 0;
	struct dirent *de;

	*ret = NULL;
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (keep && !keep(de->d_name))
			continue;
		if (n + 1 >= cap) {
			cap = cap ? cap * 2 : 8;
			nn = realloc(names, cap * sizeof(*names));
			if (!nn)
				goto oom;
			names = nn;
		}
		names[n] = strdup(de->d_name);
		if (!names[n])
			goto oom;
		names[++n] = NULL;
	}
	*ret = names;
	return (int)n;
oom:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return -ENOMEM;
}

static void free_names(char **names)
{
	for (size_t i = 0; names && names[i]; i++)
		free(names[i]);
	free(names);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool vm_name_keep(const char *name)
{
	return vm_name_is_valid(name);
}

int volume_store_vms(struct volume_store *s, char ***ret)
{
	char **names = NULL, **out;
	size_t total = 0;
	int n;

	pthread_mutex_lock(&s->lock);
	n = list_names(s->root, vm_name_keep, &names);
	pthread_mutex_unlock(&s->lock);
	if (n < 0)
		return n;
	if (n > 0) /* qsort's base is declared nonnull: never NULL, or the NULL checks after go */
		qsort(names, (size_t)n, sizeof(*names), cmp_str);
	/* One allocation: the pointer array, then the strings. */
	for (int i = 0; i < n; i++)
		total += strlen(names[i]) + 1;
	out = malloc(((size_t)n + 1) * sizeof(*out) + total);
	if (!out) {
		free_names(names);
		return -ENOMEM;
	}
	{
		char *p = (char *)(out + n + 1);

		for (int i = 0; i < n; i++) {
			out[i] = strcpy(p, names[i]);
			p += strlen(names[i]) + 1;
		}
		out[n] = NULL;
	}
	free_names(names);
	*ret = out;
	return n;
}

/* Recovery of one VM's directory; with the lock held. */
static int recover_vm(struct volume_store *s, const char *vm)
{
	char dir[4096], p[4096];
	char **names = NULL;
	int n, fixed = 0;

	if (vpath(s, dir, sizeof(dir), vm, NULL, NULL, NULL) < 0)
		return 0;
	n = list_names(dir, NULL, &names);
	for (int i = 0; i < n; i++) {
		const char *e = names[i];
		struct volume v;
		struct err err = {};
		struct stat st;

		if (snprintf(p, sizeof(p), "%s/%s", dir, e) >= (int)sizeof(p))
			continue;
		if (!volume_name_is_valid(e)) {
			/* .new-*, .del-*: an interrupted create or destroy; anything else is not
			 * ours to keep either (the directory is the store's alone). */
			log_notice("volumes of '%s': removing %s (%s)", vm, e,
				   strncmp(e, NEW_PREFIX, strlen(NEW_PREFIX)) == 0
					   ? "an interrupted create"
				   : strncmp(e, DEL_PREFIX, strlen(DEL_PREFIX)) == 0
					   ? "an interrupted destroy"
					   : "not a volume");
			(void)rm_rf(p);
			fixed++;
			continue;
		}
		if (load(s, vm, NULL, e, &v, &err) < 0 ||
		    volume_disk_path(s, vm, e, p, sizeof(p)) < 0 || lstat(p, &st) < 0 ||
		    !S_ISREG(st.st_mode)) {
			log_warning("volume '%s' of '%s' is incomplete (%s): removed", e, vm,
				    err.msg[0] ? err.msg : "no disk");
			(void)destroy_locked(s, vm, e, &err);
			fixed++;
			continue;
		}
		if (v.growing || (uint64_t)st.st_size != v.size) {
			/* A grow was interrupted (before or after its truncate): finish it. */
			if ((uint64_t)st.st_size > v.size)
				v.size = (uint64_t)st.st_size;
			log_notice("volume '%s' of '%s': finishing an interrupted grow to %" PRIu64
				   " bytes",
				   e, vm, v.size);
			if (grow_locked(s, vm, &v, false, &err) < 0)
				log_warning("volume '%s' of '%s': %s", e, vm, err.msg);
			fixed++;
		}
		/* Temp files of an interrupted atomic write. */
		if (vpath(s, p, sizeof(p), vm, NULL, e, NULL) >= 0) {
			char **files = NULL;
			int k = list_names(p, NULL, &files);

			for (int j = 0; j < k; j++) {
				char f[4096];

				if (strcmp(files[j], CONFIG_NAME) == 0 ||
				    strcmp(files[j], DISK_NAME) == 0)
					continue;
				if (snprintf(f, sizeof(f), "%s/%s", p, files[j]) < (int)sizeof(f))
					(void)rm_rf(f);
			}
			free_names(files);
		}
	}
	free_names(names);
	if (n == 0)
		(void)rmdir(dir);
	return fixed;
}

int volume_store_recover(struct volume_store *s, struct err *err)
{
	char **vms = NULL;
	int n, fixed = 0;

	pthread_mutex_lock(&s->lock);
	n = list_names(s->root, NULL, &vms);
	if (n < 0) {
		pthread_mutex_unlock(&s->lock);
		return err_set(err, n, "cannot list %s: %s", s->root, strerror(-n));
	}
	for (int i = 0; i < n; i++) {
		if (!vm_name_is_valid(vms[i])) {
			char p[4096];

			if (snprintf(p, sizeof(p), "%s/%s", s->root, vms[i]) < (int)sizeof(p)) {
				log_notice("volumes: removing %s (not a VM's)", p);
				(void)rm_rf(p);
				fixed++;
			}
			continue;
		}
		fixed += recover_vm(s, vms[i]);
	}
	pthread_mutex_unlock(&s->lock);
	free_names(vms);
	return fixed;
}

int volume_disk_uuid(const char *disk, uint8_t uuid[16], struct err *err)
{
	_cleanup_close_ int fd = open(disk, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	uint8_t magic[2];

	if (fd < 0)
		return err_set(err, -errno, "cannot open %s: %s", disk, strerror(errno));
	/* The superblock is at 1024: magic 0xEF53 at +56, the UUID at +104. */
	if (pread(fd, magic, 2, 1024 + 56) != 2 || magic[0] != 0x53 || magic[1] != 0xef ||
	    pread(fd, uuid, 16, 1024 + 104) != 16)
		return err_set(err, -EIO, "%s is not an ext4 disk", disk);
	return 0;
}

/* A name for a declared path not taken by vols (with the lock held). */
static int declared_name(const struct volume *vols, int n, const char *path,
			 char ret[VOLUME_NAME_MAX + 1])
{
	char base[VOLUME_NAME_MAX + 1];

	if (volume_name_from_path(path, base) < 0)
		return -EINVAL;
	for (unsigned k = 1; k < 100; k++) {
		bool taken = false;

		if (k == 1)
			snprintf(ret, VOLUME_NAME_MAX + 1, "%s", base);
		else
			snprintf(ret, VOLUME_NAME_MAX + 1, "%.*s-%u",
				 (int)(VOLUME_NAME_MAX - 1 - (k < 10 ? 1 : 2)), base, k);
		for (int i = 0; i < n && !taken; i++)
			taken = strcmp(vols[i].name, ret) == 0;
		if (!taken)
			return 0;
	}
	return -EEXIST;
}

int volume_prepare_start(struct volume_store *s, const char *vm, const char *const *declared,
			 size_t n_declared, bool new_image, struct volume_attach **ret,
			 struct err *err)
{
	_cleanup_free_ struct volume *vols = NULL;
	_cleanup_free_ struct volume_attach *out = NULL;
	int n, r;

	*ret = NULL;
	if (new_image)
		for (size_t i = 0; i < n_declared; i++) {
			const char *path = declared[i], *why = NULL;
			char name[VOLUME_NAME_MAX + 1];
			bool covered = false;

			free(vols);
			vols = NULL;
			n = volume_list(s, vm, &vols, err);
			if (n < 0)
				return n;
			if (volume_path_check(path, &why) < 0) {
				log_warning("%s: the image's volume %s is not used: %s", vm, path,
					    why);
				continue;
			}
			for (int k = 0; k < n && !covered; k++)
				covered =
					vols[k].path[0] && volume_paths_overlap(vols[k].path, path);
			if (covered) {
				/* Its own (same path) or one of the user's covering it. */
				continue;
			}
			if (declared_name(vols, n, path, name) < 0) {
				log_warning("%s: the image's volume %s is not used: no free name",
					    vm, path);
				continue;
			}
			r = volume_create(s, vm, name, path, 0, err);
			if (r == -ENOSPC && n >= VOLUME_MAX_PER_VM) {
				log_warning("%s: the image's volume %s is not used: %s", vm, path,
					    err->msg);
				continue;
			}
			if (r < 0)
				return err_prefix(err, "the image's volume %s: ", path);
			log_info("%s: volume '%s' created for the image's %s", vm, name, path);
		}
	free(vols);
	vols = NULL;
	n = volume_list(s, vm, &vols, err);
	if (n <= 0)
		return n;
	out = calloc((size_t)n, sizeof(*out));
	if (!out)
		return err_set(err, -ENOMEM, "out of memory");
	for (int i = 0; i < n; i++) {
		struct volume_attach *a = &out[i];

		if (!vols[i].path[0])
			return err_set(err, -EINVAL,
				       "volume '%s' has no path (write one to volumes/%s/path)",
				       vols[i].name, vols[i].name);
		if (vols[i].growing) {
			r = volume_set_size(s, vm, vols[i].name, vols[i].size, err);
			if (r < 0)
				return err_prefix(err, "volume '%s': ", vols[i].name);
		}
		snprintf(a->name, sizeof(a->name), "%s", vols[i].name);
		snprintf(a->path, sizeof(a->path), "%s", vols[i].path);
		a->size = vols[i].size;
		a->fresh = vols[i].fresh;
		r = volume_disk_path(s, vm, a->name, a->disk, sizeof(a->disk));
		if (r < 0)
			return err_set(err, r, "volume path too long");
		r = volume_disk_uuid(a->disk, a->uuid, err);
		if (r < 0)
			return err_prefix(err, "volume '%s': ", a->name);
	}
	*ret = TAKE_PTR(out);
	return n;
}
