/* SPDX-License-Identifier: MIT */
#include <errno.h>

#include "fetch.h"

int img_s3_open(const struct img_store_config *cfg, const struct img_ref *ref,
		struct img_source **ret, struct err *err)
{
	return err_set(err, -EPROTONOSUPPORT, "s3://%s/%s: S3 sources are not implemented yet",
		       ref->s3_bucket, ref->s3_key);
}
