/* SPDX-License-Identifier: MIT */
/* img_source_*: one interface over the registry and S3 sources. */
#include <errno.h>

#include "fetch.h"

int img_source_open(const struct img_store_config *cfg, const struct img_ref *ref,
		    struct img_source **ret, struct err *err)
{
	if (ref->is_s3)
		return img_s3_open(cfg, ref, ret, err);
	return img_registry_open(cfg, ref, ret, err);
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
