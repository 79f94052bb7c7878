/* SPDX-License-Identifier: MIT */
/* net: the node prefix: configured, or a ULA /64 generated once and kept in <state_dir>/prefix. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "fileio.h"
#include "ip6.h"
#include "ipam-internal.h"

#define PREFIX_FILE_MAX 128

/* The prefix file: one "ADDR/LEN" line, optional trailing newline. */
static int prefix_read(const char *path, struct in6_addr *ret_prefix, unsigned *ret_len,
		       struct err *err)
{
	_cleanup_free_ char *data = NULL;
	size_t n;
	int r;

	r = read_file_bounded(path, PREFIX_FILE_MAX, &data, &n);
	if (r < 0)
		return r == -ENOENT
			       ? r
			       : err_set(err, r == -EFBIG ? -EINVAL : r, "reading %s failed", path);
	if (n > 0 && data[n - 1] == '\n')
		data[--n] = '\0';
	if (strlen(data) != n || ip6_prefix_parse(data, ret_prefix, ret_len) < 0)
		return err_set(err, -EINVAL,
			       "%s is corrupt (expected ADDR/LEN); remove it to "
			       "generate a new prefix",
			       path);
	return 0;
}

/* Create the file with a fresh ULA unless another process got there first: the content is
 * written to a private name, then hard-linked, which fails with EEXIST for the loser. */
static int prefix_create(const char *dir, const char *path, struct err *err)
{
	char tmp[PATH_MAX], text[IP6_PREFIX_STRLEN + 1], line[IP6_PREFIX_STRLEN + 2];
	struct in6_addr ula;
	uint8_t rnd[7];
	int r;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return err_set(err, -EIO, "getrandom failed");
	ip6_ula_from_random(rnd, &ula);
	(void)snprintf(line, sizeof(line), "%s\n", ip6_prefix_format(&ula, 64, text, sizeof(text)));
	if (snprintf(tmp, sizeof(tmp), "%s/.prefix.%d", dir, (int)getpid()) >= (int)sizeof(tmp))
		return err_set(err, -ENAMETOOLONG, "state directory path too long");
	r = write_file_atomic(tmp, line, strlen(line), 0644);
	if (r < 0)
		return err_set(err, r, "writing %s failed", tmp);
	r = link(tmp, path) < 0 ? -errno : 0;
	(void)unlink(tmp);
	if (r < 0 && r != -EEXIST)
		return err_set(err, r, "creating %s failed", path);
	return 0;
}

int ipam_prefix_load(const struct net_config *cfg, struct in6_addr *ret_prefix, unsigned *ret_len,
		     struct err *err)
{
	char path[PATH_MAX];
	struct in6_addr p = {};
	unsigned len = 0;
	int r;

	if (cfg->ipv6_prefix) {
		if (ip6_prefix_parse(cfg->ipv6_prefix, &p, &len) < 0)
			return err_set(err, -EINVAL,
				       "invalid IPv6 prefix (expected ADDR/LEN with "
				       "no host bits set, length 0-128)");
	} else {
		if (snprintf(path, sizeof(path), "%s/prefix", cfg->state_dir) >= (int)sizeof(path))
			return err_set(err, -ENAMETOOLONG, "state directory path too long");
		r = mkdir_p(cfg->state_dir, 0755);
		if (r < 0)
			return err_set(err, r, "creating %s failed", cfg->state_dir);
		r = prefix_read(path, &p, &len, err);
		if (r == -ENOENT) {
			r = prefix_create(cfg->state_dir, path, err);
			if (r < 0)
				return r;
			r = prefix_read(path, &p, &len, err);
		}
		if (r < 0)
			return r;
	}
	if (IN6_IS_ADDR_MULTICAST(&p) || len == 0)
		return err_set(err, -EINVAL,
			       "IPv6 prefix must be a unicast prefix of length 1-128");
	*ret_prefix = p;
	*ret_len = len;
	return 0;
}
