/* SPDX-License-Identifier: MIT */
/* The OCI image config blob: diff_ids for verifying layers, and the small JSON the guest agent
 * runs the application from (with the image's declared Volumes, which the runtime turns into
 * volumes). */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "build.h"

#define CONFIG_MAX_LAYERS 1024
#define CONFIG_MAX_STRINGS 4096
#define CONFIG_MAX_STRING 65536
#define CONFIG_MAX_VOLUMES 16	    /* the most volumes a VM may have */
#define CONFIG_MAX_VOLUME_PATH 1023 /* bytes of one volume path */

static bool digest_ok(const char *s)
{
	if (strncmp(s, "sha256:", 7) != 0 || strlen(s) != 7 + 64)
		return false;
	for (const char *p = s + 7; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

/* A JSON array of strings (or null/absent = empty), copied into out under key. */
static int copy_strings(json_t *from, const char *key, const char *as, json_t *out, struct err *err)
{
	json_t *arr = json_object_get(from, key), *copy = NULL, *v;
	size_t i;

	copy = json_array();
	if (!copy)
		return -ENOMEM;
	if (arr && !json_is_null(arr)) {
		if (!json_is_array(arr)) {
			json_decref(copy);
			return err_set(err, -EBADMSG, "image config: %s is not an array", key);
		}
		if (json_array_size(arr) > CONFIG_MAX_STRINGS) {
			json_decref(copy);
			return err_set(err, -EBADMSG, "image config: %s has too many entries", key);
		}
		json_array_foreach (arr, i, v) {
			if (!json_is_string(v) || json_string_length(v) > CONFIG_MAX_STRING ||
			    strlen(json_string_value(v)) != json_string_length(v)) {
				json_decref(copy);
				return err_set(err, -EBADMSG,
					       "image config: %s[%zu] is not a string", key, i);
			}
			if (json_array_append_new(copy, json_string(json_string_value(v))) < 0) {
				json_decref(copy);
				return -ENOMEM;
			}
		}
	}
	if (json_object_set_new(out, as, copy) < 0)
		return -ENOMEM;
	return 0;
}

static int copy_string(json_t *from, const char *key, const char *as, json_t *out, struct err *err)
{
	json_t *v = json_object_get(from, key);
	const char *s = "";

	if (v && !json_is_null(v)) {
		if (!json_is_string(v) || json_string_length(v) > CONFIG_MAX_STRING ||
		    strlen(json_string_value(v)) != json_string_length(v))
			return err_set(err, -EBADMSG, "image config: %s is not a string", key);
		s = json_string_value(v);
	}
	return json_object_set_new(out, as, json_string(s)) < 0 ? -ENOMEM : 0;
}

/* A declared volume's path, as Docker writes them: absolute, at most one trailing '/' (dropped),
 * no empty, "." or ".." component, printable ASCII, bounded. The runtime checks the rest (the
 * container's root, /proc, /sys, /dev, overlaps). */
static int volume_path(const char *in, char *out, size_t size)
{
	size_t n = strlen(in);

	if (in[0] != '/' || n > CONFIG_MAX_VOLUME_PATH || n + 1 > size)
		return -EBADMSG;
	memcpy(out, in, n + 1);
	if (n > 1 && out[n - 1] == '/')
		out[--n] = '\0';
	if (n == 1)
		return -EBADMSG;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)out[i];

		if (c < 0x20 || c > 0x7e)
			return -EBADMSG;
		if (c != '/')
			continue;
		if (out[i + 1] == '/' || out[i + 1] == '\0')
			return -EBADMSG;
		if (out[i + 1] == '.' &&
		    (out[i + 2] == '/' || out[i + 2] == '\0' ||
		     (out[i + 2] == '.' && (out[i + 3] == '/' || out[i + 3] == '\0'))))
			return -EBADMSG;
	}
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* config.Volumes: {"/path": {}, ...} (null or absent: none) -> sorted "volumes" list. */
static int copy_volumes(json_t *from, json_t *out, struct img_config *c, struct err *err)
{
	json_t *vols = json_object_get(from, "Volumes"), *list, *v;
	const char *key;

	list = json_array();
	if (!list)
		return -ENOMEM;
	if (json_object_set_new(out, "volumes", list) < 0)
		return -ENOMEM;
	if (!vols || json_is_null(vols))
		return 0;
	if (!json_is_object(vols))
		return err_set(err, -EBADMSG, "image config: Volumes is not an object");
	if (json_object_size(vols) > CONFIG_MAX_VOLUMES)
		return err_set(err, -EBADMSG, "image config: more than %d Volumes",
			       CONFIG_MAX_VOLUMES);
	c->volumes = calloc(json_object_size(vols) + 1, sizeof(char *));
	if (!c->volumes)
		return -ENOMEM;
	json_object_foreach (vols, key, v) {
		char path[CONFIG_MAX_VOLUME_PATH + 1];

		/* A key with a NUL inside is cut short by jansson's iteration: compare lengths. */
		if (!json_is_object(v) && !json_is_null(v))
			return err_set(err, -EBADMSG,
				       "image config: Volumes entry is not an object");
		if (strlen(key) > CONFIG_MAX_VOLUME_PATH ||
		    volume_path(key, path, sizeof(path)) < 0)
			return err_set(err, -EBADMSG, "image config: bad Volumes path '%.64s'",
				       key);
		for (size_t i = 0; i < c->n_volumes; i++)
			if (strcmp(c->volumes[i], path) == 0)
				return err_set(err, -EBADMSG,
					       "image config: Volumes path '%.64s' twice", path);
		c->volumes[c->n_volumes] = strdup(path);
		if (!c->volumes[c->n_volumes])
			return -ENOMEM;
		c->n_volumes++;
	}
	qsort(c->volumes, c->n_volumes, sizeof(char *), cmp_str);
	for (size_t i = 0; i < c->n_volumes; i++)
		if (json_array_append_new(list, json_string(c->volumes[i])) < 0)
			return -ENOMEM;
	return 0;
}

void img_config_done(struct img_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_diff_ids; i++)
		free(c->diff_ids[i]);
	free(c->diff_ids);
	for (size_t i = 0; i < c->n_volumes; i++)
		free(c->volumes[i]);
	free(c->volumes);
	free(c->guest_json);
	*c = (struct img_config){0};
}

/* rootfs: {"type": "layers", "diff_ids": [...]}; the diff_ids array into *ret_ids. */
static int check_rootfs(json_t *root, json_t **ret_ids, struct err *err)
{
	json_t *rootfs = json_object_get(root, "rootfs"), *v, *ids;

	if (!json_is_object(rootfs))
		return err_set(err, -EBADMSG, "image config: no rootfs object");
	v = json_object_get(rootfs, "type");
	if (!json_is_string(v) || strcmp(json_string_value(v), "layers") != 0)
		return err_set(err, -EBADMSG, "image config: rootfs.type is not \"layers\"");
	ids = json_object_get(rootfs, "diff_ids");
	if (!json_is_array(ids))
		return err_set(err, -EBADMSG, "image config: rootfs.diff_ids is not an array");
	if (json_array_size(ids) > CONFIG_MAX_LAYERS)
		return err_set(err, -EBADMSG, "image config: too many layers");
	*ret_ids = ids;
	return 0;
}

/* What the guest needs of "config" (absent or null: an empty one) into guest, volumes into c. */
static int copy_run_config(json_t *root, json_t *guest, struct img_config *c, struct err *err)
{
	json_auto_t *empty = json_object();
	json_t *cfg = json_object_get(root, "config");
	json_t *src;
	int r;

	if (cfg && !json_is_null(cfg) && !json_is_object(cfg))
		return err_set(err, -EBADMSG, "image config: config is not an object");
	if (!empty)
		return -ENOMEM;
	src = json_is_object(cfg) ? cfg : empty;
	r = copy_strings(src, "Entrypoint", "entrypoint", guest, err);
	if (r >= 0)
		r = copy_strings(src, "Cmd", "cmd", guest, err);
	if (r >= 0)
		r = copy_strings(src, "Env", "env", guest, err);
	if (r >= 0)
		r = copy_string(src, "WorkingDir", "workdir", guest, err);
	if (r >= 0)
		r = copy_string(src, "User", "user", guest, err);
	if (r >= 0)
		r = copy_volumes(src, guest, c, err);
	return r;
}

static int copy_diff_ids(json_t *ids, struct img_config *c, struct err *err)
{
	json_t *v;
	size_t i;

	c->diff_ids = calloc(json_array_size(ids) + 1, sizeof(char *));
	if (!c->diff_ids)
		return -ENOMEM;
	json_array_foreach (ids, i, v) {
		if (!json_is_string(v) || !digest_ok(json_string_value(v)))
			return err_set(err, -EBADMSG,
				       "image config: diff_ids[%zu] is not a sha256 digest", i);
		c->diff_ids[i] = strdup(json_string_value(v));
		if (!c->diff_ids[i])
			return -ENOMEM;
		c->n_diff_ids++;
	}
	return 0;
}

int img_config_parse(const char *data, size_t len, struct img_config *ret, struct err *err)
{
	json_auto_t *root = NULL, *guest = NULL;
	json_t *ids = NULL;
	json_error_t jerr;
	struct img_config c = {0};
	int r;

	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return err_set(err, -EBADMSG, "image config: invalid JSON at line %d: %s",
			       jerr.line, jerr.text);
	if (!json_is_object(root))
		return err_set(err, -EBADMSG, "image config: not a JSON object");
	r = check_rootfs(root, &ids, err);
	if (r < 0)
		return r;
	guest = json_object();
	r = guest ? copy_run_config(root, guest, &c, err) : -ENOMEM;
	if (r >= 0)
		r = copy_diff_ids(ids, &c, err);
	if (r >= 0) {
		c.guest_json = json_dumps(guest, JSON_COMPACT | JSON_ENSURE_ASCII);
		if (!c.guest_json)
			r = -ENOMEM;
	}
	if (r < 0) {
		img_config_done(&c);
		return r == -ENOMEM ? err_set(err, r, "image config: out of memory") : r;
	}
	*ret = c;
	return 0;
}
