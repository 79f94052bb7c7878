/* SPDX-License-Identifier: MIT */
/* img_source_*: one interface over the registry and S3 sources. */
#include <errno.h>

#include "fetch.h"

void img_limits_fill(const struct img_store_config *cfg, struct img_limits *ret)
{
	*ret = cfg ? cfg->limits : (struct img_limits){0};
	if (!ret->pull_timeout_ms)
		ret->pull_timeout_ms = IMG_DEFAULT_PULL_TIMEOUT_MS;
	if (!ret->stall_timeout_ms)
		ret->stall_timeout_ms = IMG_DEFAULT_STALL_TIMEOUT_MS;
	if (!ret->disk_reserve)
		ret->disk_reserve = IMG_DEFAULT_DISK_RESERVE;
	/* The decoder takes no more than IMG_MANIFEST_MAX. */
	if (!ret->max_manifest_bytes || ret->max_manifest_bytes > IMG_MANIFEST_MAX)
		ret->max_manifest_bytes = IMG_DEFAULT_MAX_MANIFEST;
	if (!ret->max_config_bytes)
		ret->max_config_bytes = IMG_DEFAULT_MAX_CONFIG;
	if (!ret->max_layer_bytes)
		ret->max_layer_bytes = IMG_DEFAULT_MAX_LAYER;
	if (!ret->max_image_bytes)
		ret->max_image_bytes =
			cfg && cfg->max_image_bytes ? cfg->max_image_bytes : IMG_DEFAULT_MAX_IMAGE;
}

int img_source_open(const struct img_store_config *cfg, const struct img_ref *ref,
		    const atomic_bool *cancel, struct img_source **ret, struct err *err)
{
	char name[IMG_REF_MAX];
	struct img_source *src;
	int r;

	if (img_ref_format(ref, name, sizeof(name)) < 0)
		name[0] = '\0';
	r = ref->is_s3 ? img_s3_open(cfg, ref, &src, err) : img_registry_open(cfg, ref, &src, err);
	if (r < 0)
		return r;
	/* The sources' curl handles point at src->xfer already; arm it before any request. */
	img_limits_fill(cfg, &src->limits);
	img_xfer_init(&src->xfer, &src->limits, cancel, name);
	*ret = src;
	return 0;
}

void img_source_set_cancel(struct img_source *src, const atomic_bool *cancel)
{
	src->xfer.cancel = cancel;
}

struct img_source *img_source_free(struct img_source *src)
{
	if (src)
		src->ops->free(src);
	return NULL;
}

int img_source_resolve(struct img_source *src, struct img_manifest *ret, struct err *err)
{
	return src->ops->resolve(src, ret, err);
}

int img_source_version(struct img_source *src, char ret[IMG_VERSION_MAX], struct err *err)
{
	ret[0] = '\0';
	return src->ops->version ? src->ops->version(src, ret, err) : 0;
}

int img_source_fetch_blob(struct img_source *src, const struct img_descriptor *desc,
			  const char *path, img_bytes_cb cb, void *ud, struct err *err)
{
	return src->ops->fetch_blob(src, desc, path, cb, ud, err);
}
