/* SPDX-License-Identifier: MIT */
/* The OCI image config blob: diff_ids for verifying layers, and the small JSON the guest agent
 * runs the application from. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "build.h"

#define CONFIG_MAX_LAYERS 1024
#define CONFIG_MAX_STRINGS 4096
#define CONFIG_MAX_STRING 65536

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

void img_config_done(struct img_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_diff_ids; i++)
		free(c->diff_ids[i]);
	free(c->diff_ids);
	free(c->guest_json);
	*c = (struct img_config){0};
}

int img_config_parse(const char *data, size_t len, struct img_config *ret, struct err *err)
{
	json_auto_t *root = NULL, *guest = NULL;
	json_t *cfg, *rootfs, *ids, *v;
	json_error_t jerr;
	struct img_config c = {0};
	size_t i;
	int r;

	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return err_set(err, -EBADMSG, "image config: invalid JSON at line %d: %s",
			       jerr.line, jerr.text);
	if (!json_is_object(root))
		return err_set(err, -EBADMSG, "image config: not a JSON object");

	rootfs = json_object_get(root, "rootfs");
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

	guest = json_object();
	if (!guest)
		return -ENOMEM;
	cfg = json_object_get(root, "config");
	if (cfg && !json_is_null(cfg) && !json_is_object(cfg))
		return err_set(err, -EBADMSG, "image config: config is not an object");
	if (!json_is_object(cfg))
		cfg = NULL;
	{
		json_auto_t *empty = json_object();
		json_t *src = cfg ? cfg : empty;

		if (!empty)
			return -ENOMEM;
		r = copy_strings(src, "Entrypoint", "entrypoint", guest, err);
		if (r >= 0)
			r = copy_strings(src, "Cmd", "cmd", guest, err);
		if (r >= 0)
			r = copy_strings(src, "Env", "env", guest, err);
		if (r >= 0)
			r = copy_string(src, "WorkingDir", "workdir", guest, err);
		if (r >= 0)
			r = copy_string(src, "User", "user", guest, err);
		if (r < 0)
			return r == -ENOMEM ? err_set(err, r, "image config: out of memory") : r;
	}

	c.diff_ids = calloc(json_array_size(ids) + 1, sizeof(char *));
	if (!c.diff_ids)
		return err_set(err, -ENOMEM, "image config: out of memory");
	json_array_foreach (ids, i, v) {
		if (!json_is_string(v) || !digest_ok(json_string_value(v))) {
			img_config_done(&c);
			return err_set(err, -EBADMSG,
				       "image config: diff_ids[%zu] is not a sha256 digest", i);
		}
		c.diff_ids[i] = strdup(json_string_value(v));
		if (!c.diff_ids[i]) {
			img_config_done(&c);
			return err_set(err, -ENOMEM, "image config: out of memory");
		}
		c.n_diff_ids++;
	}
	c.guest_json = json_dumps(guest, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (!c.guest_json) {
		img_config_done(&c);
		return err_set(err, -ENOMEM, "image config: out of memory");
	}
	*ret = c;
	return 0;
}
