/* SPDX-License-Identifier: MIT */
/*
 * Image references, strictly after Docker's grammar (github.com/distribution/reference):
 *
 *   reference  := name [ ":" tag ] [ "@" digest ]
 *   name       := [ domain "/" ] path
 *   domain     := host [ ":" port ]          host: DNS name, IPv4, or "[" IPv6 "]"
 *   path       := component ( "/" component )*
 *   component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
 *   tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
 *   digest     := "sha256:" [0-9a-f]{64}     (the only algorithm we verify)
 *
 * The first path element is a domain only if it contains '.' or ':', is "localhost", or has an
 * upper-case letter; otherwise the registry is docker.io. docker.io paths of one component get
 * "library/"; "index.docker.io" means docker.io; no tag and no digest means ":latest". A name is
 * at most 255 characters, and a 64-hex path is refused (it would look like an image ID).
 *
 * S3 references: "s3://BUCKET/KEY" names an OCI image layout archive (the tar written by
 * `skopeo copy ... oci-archive:FILE`) stored as object KEY in BUCKET. BUCKET follows the S3
 * bucket naming rules (3-63 of [a-z0-9.-], starting and ending with a letter or digit, no "..",
 * not an IPv4 address, no "xn--"/"sthree-" prefix, no "-s3alias"/"--ol-s3" suffix). KEY is 1-1023
 * printable ASCII characters without spaces, not starting with '/', without "." or ".." path
 * segments (URL normalisation would fold those away).
 * Region, endpoint and credentials come from the usual AWS variables and files (s3.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fetch.h"

#define NAME_MAX_LEN 255
#define TAG_MAX_LEN 128

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_word(char c)
{
	return is_alnum(c) || c == '_';
}

static bool is_hex_lower(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool img_digest_is_valid(const char *s)
{
	if (!s || strncmp(s, "sha256:", 7) != 0)
		return false;
	for (size_t i = 0; i < 64; i++)
		if (!is_hex_lower(s[7 + i]))
			return false;
	return s[7 + 64] == '\0';
}

/* One path component [a-z0-9]+ ((.|_|__|-+)[a-z0-9]+)* of length n. */
static int check_component(const char *s, size_t n, struct err *err)
{
	size_t i = 0;

	if (n == 0)
		return err_set(err, -EINVAL, "invalid reference: empty repository path component");
	for (i = 0; i < n; i++)
		if (s[i] >= 'A' && s[i] <= 'Z')
			return err_set(err, -EINVAL,
				       "invalid reference: repository name must be lowercase");
	i = 0;
	for (;;) {
		size_t start = i;

		while (i < n && is_lower_alnum(s[i]))
			i++;
		if (i == start)
			return err_set(err, -EINVAL,
				       "invalid reference: bad character or separator in "
				       "repository '%.*s'",
				       (int)n, s);
		if (i == n)
			return 0;
		/* A separator: '.', '_', '__' or a run of '-'. */
		if (s[i] == '.') {
			i++;
		} else if (s[i] == '_') {
			i++;
			if (i < n && s[i] == '_')
				i++;
		} else if (s[i] == '-') {
			while (i < n && s[i] == '-')
				i++;
		} else {
			return err_set(err, -EINVAL,
				       "invalid reference: bad character in repository '%.*s'",
				       (int)n, s);
		}
		if (i == n)
			return err_set(err, -EINVAL,
				       "invalid reference: repository component '%.*s' ends in a "
				       "separator",
				       (int)n, s);
	}
}

static int check_path(const char *s, size_t n, struct err *err)
{
	size_t start = 0;

	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '/') {
			int r = check_component(s + start, i - start, err);
			if (r < 0)
				return r;
			start = i + 1;
		}
	}
	return 0;
}

static int check_port(const char *s, size_t n, struct err *err)
{
	unsigned v = 0;

	if (n == 0 || n > 5)
		return err_set(err, -EINVAL, "invalid reference: bad registry port");
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return err_set(err, -EINVAL, "invalid reference: bad registry port");
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return err_set(err, -EINVAL, "invalid reference: registry port out of range");
	return 0;
}

/* host[:port], host a DNS name / IPv4 or [IPv6]. */
static int check_domain(const char *s, size_t n, struct err *err)
{
	size_t i = 0;

	if (n == 0)
		return err_set(err, -EINVAL, "invalid reference: empty registry");
	if (s[0] == '[') {
		char buf[64];
		struct in6_addr a;
		const char *close = memchr(s, ']', n);

		if (!close || close == s + 1 || (size_t)(close - s - 1) >= sizeof(buf))
			return err_set(err, -EINVAL,
				       "invalid reference: bad IPv6 registry address");
		memcpy(buf, s + 1, (size_t)(close - s - 1));
		buf[close - s - 1] = '\0';
		for (char *p = buf; *p; p++)
			if (!(is_hex_lower(*p) || (*p >= 'A' && *p <= 'F') || *p == ':'))
				return err_set(err, -EINVAL,
					       "invalid reference: bad IPv6 registry address");
		if (inet_pton(AF_INET6, buf, &a) != 1)
			return err_set(err, -EINVAL,
				       "invalid reference: bad IPv6 registry address");
		i = (size_t)(close - s) + 1;
	} else {
		/* DNS components: alnum, or alnum [alnum-]* alnum. */
		for (;;) {
			size_t start = i;

			while (i < n && (is_alnum(s[i]) || s[i] == '-'))
				i++;
			if (i == start || s[start] == '-' || s[i - 1] == '-')
				return err_set(err, -EINVAL,
					       "invalid reference: bad registry host '%.*s'",
					       (int)n, s);
			if (i < n && s[i] == '.') {
				i++;
				continue;
			}
			break;
		}
	}
	if (i == n)
		return 0;
	if (s[i] != ':')
		return err_set(err, -EINVAL, "invalid reference: bad registry host '%.*s'", (int)n,
			       s);
	return check_port(s + i + 1, n - i - 1, err);
}

static int check_tag(const char *s, size_t n, struct err *err)
{
	if (n == 0)
		return err_set(err, -EINVAL, "invalid reference: empty tag");
	if (n > TAG_MAX_LEN)
		return err_set(err, -EINVAL, "invalid reference: tag longer than %d characters",
			       TAG_MAX_LEN);
	if (!is_word(s[0]))
		return err_set(err, -EINVAL, "invalid reference: bad tag '%.*s'", (int)n, s);
	for (size_t i = 1; i < n; i++)
		if (!is_word(s[i]) && s[i] != '.' && s[i] != '-')
			return err_set(err, -EINVAL, "invalid reference: bad tag '%.*s'", (int)n,
				       s);
	return 0;
}

static bool looks_like_ipv4(const char *s)
{
	struct in_addr a;

	return inet_pton(AF_INET, s, &a) == 1;
}

static int parse_s3(const char *s, struct img_ref *ref, struct err *err)
{
	const char *slash = strchr(s, '/');
	size_t bn, kn;

	if (!slash)
		return err_set(err, -EINVAL, "invalid S3 reference: expected s3://BUCKET/KEY");
	bn = (size_t)(slash - s);
	if (bn < 3 || bn > 63)
		return err_set(err, -EINVAL,
			       "invalid S3 reference: bucket name must be 3-63 characters");
	memcpy(ref->s3_bucket, s, bn);
	ref->s3_bucket[bn] = '\0';
	for (size_t i = 0; i < bn; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '.' && s[i] != '-')
			return err_set(err, -EINVAL,
				       "invalid S3 reference: bucket name may only hold a-z, 0-9, "
				       "'.' and '-'");
	if (!is_lower_alnum(s[0]) || !is_lower_alnum(s[bn - 1]))
		return err_set(err, -EINVAL,
			       "invalid S3 reference: bucket name must start and end with a letter "
			       "or digit");
	if (strstr(ref->s3_bucket, "..") || looks_like_ipv4(ref->s3_bucket) ||
	    strncmp(ref->s3_bucket, "xn--", 4) == 0 || strncmp(ref->s3_bucket, "sthree-", 7) == 0 ||
	    (bn >= 8 && strcmp(ref->s3_bucket + bn - 8, "-s3alias") == 0) ||
	    (bn >= 6 && strcmp(ref->s3_bucket + bn - 6, "--ol-s3") == 0))
		return err_set(err, -EINVAL, "invalid S3 reference: bad bucket name '%s'",
			       ref->s3_bucket);

	s = slash + 1;
	kn = strlen(s);
	if (kn == 0)
		return err_set(err, -EINVAL, "invalid S3 reference: empty key");
	if (kn >= sizeof(ref->s3_key))
		return err_set(err, -EINVAL, "invalid S3 reference: key longer than %zu characters",
			       sizeof(ref->s3_key) - 1);
	if (s[0] == '/')
		return err_set(err, -EINVAL, "invalid S3 reference: key must not start with '/'");
	for (size_t i = 0; i < kn; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return err_set(err, -EINVAL,
				       "invalid S3 reference: key has a non-printable character");
	/* Dot segments would be folded away by URL normalisation and fetch another object. */
	for (const char *seg = s; seg; seg = strchr(seg, '/') ? strchr(seg, '/') + 1 : NULL) {
		size_t sn = strcspn(seg, "/");
		if ((sn == 1 && seg[0] == '.') || (sn == 2 && seg[0] == '.' && seg[1] == '.'))
			return err_set(err, -EINVAL,
				       "invalid S3 reference: key has a '.' or '..' segment");
	}
	memcpy(ref->s3_key, s, kn + 1);
	ref->is_s3 = true;
	return 0;
}

/* Not empty, shorter than IMG_REF_MAX, printable ASCII without spaces; *ret_n its length. */
static int check_text(const char *s, size_t *ret_n, struct err *err)
{
	size_t n;

	if (!s || !*s)
		return err_set(err, -EINVAL, "invalid reference: empty");
	n = strnlen(s, IMG_REF_MAX);
	if (n >= IMG_REF_MAX)
		return err_set(err, -EINVAL, "invalid reference: longer than %d characters",
			       IMG_REF_MAX - 1);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] > 0x7e)
			return err_set(err, -EINVAL,
				       "invalid reference: space or non-printable character");
	*ret_n = n;
	return 0;
}

/* The "@sha256:..." digest and the ":tag" off the end of s (n bytes) into ref; *ret_name_len:
 * what is left, the name. */
static int split_digest_tag(const char *s, size_t n, struct img_ref *ref, size_t *ret_name_len,
			    struct err *err)
{
	const char *at = strchr(s, '@'), *colon, *last_slash;
	int r;

	if (at) {
		if (strncmp(at + 1, "sha256:", 7) != 0) {
			if (strchr(at + 1, ':'))
				return err_set(err, -EINVAL,
					       "invalid reference: unsupported digest algorithm "
					       "(only sha256)");
			return err_set(err, -EINVAL, "invalid reference: bad digest");
		}
		if (!img_digest_is_valid(at + 1))
			return err_set(err, -EINVAL,
				       "invalid reference: digest must be sha256: and 64 lowercase "
				       "hex digits");
		memcpy(ref->digest, at + 1, strlen(at + 1) + 1);
		n = (size_t)(at - s);
	}
	/* A tag follows the last ':' that comes after the last '/'. */
	last_slash = memrchr(s, '/', n);
	colon = memrchr(last_slash ? last_slash : s, ':',
			n - (size_t)((last_slash ? last_slash : s) - s));
	*ret_name_len = n;
	if (colon) {
		r = check_tag(colon + 1, n - (size_t)(colon + 1 - s), err);
		if (r < 0)
			return r;
		memcpy(ref->tag, colon + 1, n - (size_t)(colon + 1 - s));
		*ret_name_len = (size_t)(colon - s);
	}
	return 0;
}

/* The name (name_len bytes): the registry (docker.io without a domain part) and the repository
 * (library/ added for docker.io's one-component names). */
static int parse_name(const char *name, size_t name_len, struct img_ref *ref, struct err *err)
{
	const char *rest, *first_slash;
	size_t dom_len, rest_len;
	bool has_domain = false, library;
	int r;

	if (name_len == 0)
		return err_set(err, -EINVAL, "invalid reference: empty name");
	if (name_len > NAME_MAX_LEN)
		return err_set(err, -EINVAL, "invalid reference: name longer than %d characters",
			       NAME_MAX_LEN);
	first_slash = memchr(name, '/', name_len);
	if (first_slash) {
		size_t fl = (size_t)(first_slash - name);
		bool upper = false;

		for (size_t i = 0; i < fl; i++)
			upper |= name[i] >= 'A' && name[i] <= 'Z';
		has_domain = memchr(name, '.', fl) || memchr(name, ':', fl) || upper ||
			     (fl == 9 && memcmp(name, "localhost", 9) == 0);
		if (fl == 0)
			return err_set(err, -EINVAL, "invalid reference: name starts with '/'");
	}
	if (has_domain) {
		dom_len = (size_t)(first_slash - name);
		r = check_domain(name, dom_len, err);
		if (r < 0)
			return r;
		memcpy(ref->registry, name, dom_len);
		rest = first_slash + 1;
	} else {
		strcpy(ref->registry, "docker.io");
		rest = name;
	}
	if (strcmp(ref->registry, "index.docker.io") == 0)
		strcpy(ref->registry, "docker.io");

	rest_len = name_len - (size_t)(rest - name);
	r = check_path(rest, rest_len, err);
	if (r < 0)
		return r;
	if (rest_len == 64) {
		bool hex = true;
		for (size_t i = 0; i < 64; i++)
			hex &= is_hex_lower(rest[i]);
		if (hex)
			return err_set(err, -EINVAL,
				       "invalid reference: a repository name cannot be 64 "
				       "hexadecimal digits");
	}
	/* Like Docker, the limit applies to the canonical name "docker.io/library/x" too. */
	library = strcmp(ref->registry, "docker.io") == 0 && !memchr(rest, '/', rest_len);
	if (strlen(ref->registry) + 1 + (library ? 8 : 0) + rest_len > NAME_MAX_LEN)
		return err_set(err, -EINVAL, "invalid reference: name longer than %d characters",
			       NAME_MAX_LEN);
	snprintf(ref->repository, sizeof(ref->repository), "%s%.*s", library ? "library/" : "",
		 (int)rest_len, rest);
	return 0;
}

int img_ref_parse(const char *s, struct img_ref *ret, struct err *err)
{
	struct img_ref ref = {};
	size_t n = 0, name_len = 0;
	int r;

	r = check_text(s, &n, err);
	if (r < 0)
		return r;
	if (strncmp(s, "s3://", 5) == 0) {
		r = parse_s3(s + 5, &ref, err);
		if (r < 0)
			return r;
		*ret = ref;
		return 0;
	}
	if (strstr(s, "://"))
		return err_set(err, -EINVAL,
			       "invalid reference: only s3:// URLs are supported, registry "
			       "references take no scheme");
	r = split_digest_tag(s, n, &ref, &name_len, err);
	if (r < 0)
		return r;
	r = parse_name(s, name_len, &ref, err);
	if (r < 0)
		return r;
	if (!ref.tag[0] && !ref.digest[0])
		strcpy(ref.tag, "latest");
	*ret = ref;
	return 0;
}

int img_ref_format(const struct img_ref *ref, char *buf, size_t size)
{
	int n;

	if (ref->is_s3)
		n = snprintf(buf, size, "s3://%s/%s", ref->s3_bucket, ref->s3_key);
	else
		n = snprintf(buf, size, "%s/%s%s%s%s%s", ref->registry, ref->repository,
			     ref->tag[0] ? ":" : "", ref->tag, ref->digest[0] ? "@" : "",
			     ref->digest);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= size)
		return -ENOBUFS;
	return n;
}
