/* SPDX-License-Identifier: MIT */
/* Per-VM guest settings: vm.json in a newc archive appended to the base initramfs, and the
 * kernel command line (see guest-config.h). */
#include "guest-config.h"

#include <archive.h>
#include <archive_entry.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"

#define ARCHIVE_MAX (1024 * 1024)

#define _cleanup_json_ _cleanup_(json_decrefp) /* jansson.h defines json_decrefp */

/* Only the keys the agent understands, each with its type checked. */
static int image_config(const char *text, json_t **ret, struct err *err)
{
	static const char *const lists[] = {"entrypoint", "cmd", "env"};
	static const char *const strs[] = {"workdir", "user"};
	_cleanup_json_ json_t *in = NULL, *out = NULL;
	json_error_t jerr;

	out = json_object();
	if (!out)
		return -ENOMEM;
	if (!text || !*text) {
		*ret = TAKE_PTR(out);
		return 0;
	}
	in = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	if (!in || !json_is_object(in))
		return err_set(err, -EINVAL, "image config: %s", in ? "not an object" : jerr.text);
	for (size_t i = 0; i < ELEMENTSOF(lists); i++) {
		json_t *v = json_object_get(in, lists[i]), *e;
		size_t k;

		if (!v || json_is_null(v))
			continue;
		if (!json_is_array(v))
			return err_set(err, -EINVAL, "image config: %s is not a list", lists[i]);
		json_array_foreach (v, k, e)
			if (!json_is_string(e))
				return err_set(err, -EINVAL,
					       "image config: %s[%zu] is not a string", lists[i],
					       k);
		json_object_set(out, lists[i], v);
	}
	for (size_t i = 0; i < ELEMENTSOF(strs); i++) {
		json_t *v = json_object_get(in, strs[i]);

		if (!v || json_is_null(v))
			continue;
		if (!json_is_string(v))
			return err_set(err, -EINVAL, "image config: %s is not a string", strs[i]);
		json_object_set(out, strs[i], v);
	}
	*ret = TAKE_PTR(out);
	return 0;
}

static int volumes_json(const struct guest_config *gc, json_t **ret, struct err *err)
{
	_cleanup_json_ json_t *arr = json_array();

	if (!arr)
		return -ENOMEM;
	if (gc->n_volumes > 16)
		return err_set(err, -EINVAL, "guest config: more than 16 volumes");
	for (size_t i = 0; i < gc->n_volumes; i++) {
		const struct guest_config_volume *v = &gc->volumes[i];
		char hex[33];

		if (!v->path || v->path[0] != '/')
			return err_set(err, -EINVAL, "guest config: volume %zu has no path", i);
		for (int k = 0; k < 16; k++)
			snprintf(hex + 2 * k, 3, "%02x", v->uuid[k]);
		if (json_array_append_new(arr, json_pack("{s:s, s:s, s:b}", "uuid", hex, "path",
							 v->path, "fresh", v->fresh)) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(arr);
	return 0;
}

int guest_config_json(const struct guest_config *gc, char **ret, struct err *err)
{
	_cleanup_json_ json_t *root = NULL, *img = NULL, *vols = NULL;
	char addr[INET6_ADDRSTRLEN], gw[INET6_ADDRSTRLEN];
	char *text;
	int r;

	if (!gc->name)
		return err_set(err, -EINVAL, "guest config: no VM name");
	r = image_config(gc->image_config_json, &img, err);
	if (r >= 0)
		r = volumes_json(gc, &vols, err);
	if (r < 0)
		return r;
	inet_ntop(AF_INET6, &gc->addr, addr, sizeof(addr));
	inet_ntop(AF_INET6, &gc->gateway, gw, sizeof(gw));
	root = json_pack(
		"{s:i, s:s, s:s, s:i, s:s, s:s?, s:i, s:O, s:{s:s, s:i, s:i}, s:i, s:b, s:O}",
		"version", 1, "name", gc->name, "address", addr, "prefix_len", (int)gc->prefix_len,
		"gateway", gw, "mac", gc->mac, "mtu", (int)gc->mtu, "image", img, "agent",
		"transport", gc->transport == AGENT_TRANSPORT_VSOCK ? "vsock" : "serial", "port",
		(int)(gc->vsock_port ? gc->vsock_port : AGENT_DEFAULT_VSOCK_PORT), "heartbeat_ms",
		(int)(gc->heartbeat_ms ? gc->heartbeat_ms : 1000), "grace_ms",
		(int)(gc->grace_ms ? gc->grace_ms : 5000), "no_network", gc->no_network, "volumes",
		vols);
	if (!root)
		return err_set(err, -ENOMEM, "guest config: building vm.json failed");
	text = json_dumps(root, JSON_COMPACT);
	if (!text)
		return -ENOMEM;
	*ret = text;
	return 0;
}

struct membuf {
	uint8_t *data;
	size_t len;
};

static la_ssize_t mem_write(struct archive *a, void *ud, const void *buf, size_t len)
{
	struct membuf *m = ud;
	uint8_t *p;

	if (m->len + len > ARCHIVE_MAX) {
		archive_set_error(a, EFBIG, "guest archive too large");
		return -1;
	}
	p = realloc(m->data, m->len + len);
	if (!p) {
		archive_set_error(a, ENOMEM, "out of memory");
		return -1;
	}
	memcpy(p + m->len, buf, len);
	m->data = p;
	m->len += len;
	return (la_ssize_t)len;
}

static int add_entry(struct archive *a, const char *path, mode_t type, const void *data, size_t len)
{
	struct archive_entry *e = archive_entry_new();
	int r = 0;

	if (!e)
		return -ENOMEM;
	archive_entry_set_pathname(e, path);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, type == AE_IFDIR ? 0755 : 0644);
	archive_entry_set_size(e, (la_int64_t)len);
	archive_entry_set_mtime(e, 0, 0);
	archive_entry_set_nlink(e, type == AE_IFDIR ? 2 : 1);
	if (archive_write_header(a, e) != ARCHIVE_OK ||
	    (len && archive_write_data(a, data, len) != (la_ssize_t)len))
		r = -EIO;
	archive_entry_free(e);
	return r;
}

int guest_config_archive(const struct guest_config *gc, void **ret, size_t *ret_len,
			 struct err *err)
{
	_cleanup_free_ char *json = NULL;
	struct membuf m = {0};
	struct archive *a;
	int r;

	r = guest_config_json(gc, &json, err);
	if (r < 0)
		return r;
	a = archive_write_new();
	if (!a)
		return -ENOMEM;
	if (archive_write_set_format_cpio_newc(a) != ARCHIVE_OK ||
	    archive_write_add_filter_none(a) != ARCHIVE_OK ||
	    archive_write_set_bytes_per_block(a, 0) != ARCHIVE_OK ||
	    archive_write_open(a, &m, NULL, mem_write, NULL) != ARCHIVE_OK) {
		r = err_set(err, -EIO, "guest archive: %s", archive_error_string(a));
		goto out;
	}
	r = add_entry(a, "mvmfs", AE_IFDIR, NULL, 0);
	if (r >= 0)
		r = add_entry(a, "mvmfs/vm.json", AE_IFREG, json, strlen(json));
	if (r >= 0 && archive_write_close(a) != ARCHIVE_OK)
		r = -EIO;
	if (r < 0) {
		err_set(err, r, "guest archive: %s", archive_error_string(a) ?: strerror(-r));
		goto out;
	}
	*ret = TAKE_PTR(m.data);
	*ret_len = m.len;
out:
	archive_write_free(a);
	free(m.data);
	return r;
}

static int write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int guest_config_write_initrd(const struct guest_config *gc, const char *base_initrd,
			      const char *out_path, struct err *err)
{
	_cleanup_free_ void *arch = NULL;
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int in = -EBADF, out = -EBADF;
	static const uint8_t zeros[4];
	size_t arch_len, total = 0;
	uint8_t buf[65536];
	int r;

	r = guest_config_archive(gc, &arch, &arch_len, err);
	if (r < 0)
		return r;
	in = open(base_initrd, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return err_set(err, -errno, "guest initramfs %s: %m", base_initrd);
	if (asprintf(&tmp, "%s.tmp.%d", out_path, getpid()) < 0)
		return -ENOMEM;
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0)
		return err_set(err, -errno, "writing %s: %m", tmp);
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = err_set(err, -errno, "reading %s: %m", base_initrd);
			goto fail;
		}
		if (n == 0)
			break;
		r = write_all(out, buf, (size_t)n);
		if (r < 0)
			goto fail_write;
		total += (size_t)n;
	}
	/* The kernel looks for the next archive's header at a 4-byte boundary; zeros between
	 * archives are skipped. */
	r = write_all(out, zeros, (4 - total % 4) % 4);
	if (r >= 0)
		r = write_all(out, arch, arch_len);
	if (r >= 0 && fchmod(out, 0644) < 0)
		r = -errno;
	if (r < 0)
		goto fail_write;
	if (fsync(out) < 0 || rename(tmp, out_path) < 0) {
		r = -errno;
		goto fail_write;
	}
	return 0;
fail_write:
	err_set(err, r, "writing %s: %s", out_path, strerror(-r));
fail:
	(void)unlink(tmp);
	return r;
}

/* TSC frequency for tsc_early_khz (without it the microvm guest hangs calibrating its clock under
 * TCG). */
static long tsc_khz(void)
{
	char line[256];
	FILE *f = fopen("/proc/cpuinfo", "re");
	long khz = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		double mhz;

		if (strncmp(line, "cpu MHz", 7) == 0 && sscanf(line, "cpu MHz : %lf", &mhz) == 1) {
			khz = (long)(mhz * 1000.0);
			break;
		}
	}
	fclose(f);
	return khz;
}

int guest_kernel_cmdline(enum guest_cmdline_flavour flavour, char *buf, size_t size)
{
	int n;

	if (flavour == GUEST_CMDLINE_QEMU) {
		long khz = tsc_khz();
		char tsc[48] = "";

		if (khz > 0)
			snprintf(tsc, sizeof(tsc), " tsc_early_khz=%ld tsc=reliable", khz);
		n = snprintf(buf, size,
			     "console=ttyS0 rdinit=/init panic=-1 quiet%s mitigations=off "
			     "cryptomgr.notests",
			     tsc);
	} else {
		n = snprintf(buf, size,
			     "console=ttyS0 reboot=k panic=1 rdinit=/init quiet i8042.noaux "
			     "i8042.nomux i8042.dumbkbd swiotlb=noforce mitigations=off "
			     "cryptomgr.notests");
	}
	if (n < 0)
		return -EIO;
	return (size_t)n >= size ? -ENOBUFS : n;
}
