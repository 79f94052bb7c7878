/* SPDX-License-Identifier: MIT */
/*
 * Where an S3 object lives and how to sign for it, the way the AWS CLI finds out:
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_REGION or
 * AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, and otherwise the profile
 * (AWS_PROFILE, default "default") in ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE) and
 * ~/.aws/config (AWS_CONFIG_FILE, sections "[profile NAME]" or "[default]").
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch.h"
#include "fileio.h"

#define AWS_FILE_MAX (256u * 1024)

static void trim(const char **s, size_t *n)
{
	while (*n > 0 && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t' || (*s)[*n - 1] == '\r'))
		(*n)--;
}

int img_ini_get(const char *text, size_t len, const char *section, const char *key, char *buf,
		size_t size)
{
	const char *p = text, *end = text + len;
	bool in_section = false;
	size_t sl = strlen(section), kl = strlen(key);

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *line = p;
		size_t n = (size_t)((nl ? nl : end) - p);

		p = nl ? nl + 1 : end;
		trim(&line, &n);
		if (n == 0 || line[0] == '#' || line[0] == ';')
			continue;
		if (line[0] == '[') {
			const char *name = line + 1;
			size_t nn;

			if (line[n - 1] != ']') {
				in_section = false;
				continue;
			}
			nn = n - 2;
			trim(&name, &nn);
			in_section = nn == sl && memcmp(name, section, sl) == 0;
			continue;
		}
		if (!in_section)
			continue;
		const char *eq = memchr(line, '=', n);
		if (!eq)
			continue;
		const char *k = line, *v = eq + 1;
		size_t kn = (size_t)(eq - line), vn = n - kn - 1;
		trim(&k, &kn);
		trim(&v, &vn);
		if (kn != kl || memcmp(k, key, kl) != 0)
			continue;
		if (vn >= size || memchr(v, '\0', vn))
			return -EINVAL;
		memcpy(buf, v, vn);
		buf[vn] = '\0';
		return 0;
	}
	return -ENOENT;
}

static int env_copy(const char *name, char *buf, size_t size)
{
	const char *v = getenv(name);

	if (!v || !*v)
		return -ENOENT;
	if (strlen(v) >= size)
		return -EINVAL;
	strcpy(buf, v);
	return 0;
}

/* Read an AWS file named by env (or ~/.aws/base). -ENOENT when there is none. */
static int read_aws_file(const char *env, const char *base, char **ret, size_t *ret_len)
{
	const char *path = getenv(env), *home = getenv("HOME");
	char buf[4096];

	if (!path || !*path) {
		if (!home || !*home)
			return -ENOENT;
		snprintf(buf, sizeof(buf), "%s/.aws/%s", home, base);
		path = buf;
	}
	return read_file_bounded(path, AWS_FILE_MAX, ret, ret_len);
}

int img_s3_settings_load(struct img_s3_settings *ret, struct err *err)
{
	_cleanup_free_ char *creds = NULL, *config = NULL;
	struct img_s3_settings s = {};
	char profile[128] = "default", section[160];
	size_t creds_len = 0, config_len = 0;
	int r;

	if (env_copy("AWS_PROFILE", profile, sizeof(profile)) == -EINVAL)
		return err_set(err, -EINVAL, "AWS_PROFILE too long");
	r = read_aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials", &creds, &creds_len);
	if (r < 0 && r != -ENOENT)
		return err_set(err, r, "reading AWS credentials file: %s", strerror(-r));
	r = read_aws_file("AWS_CONFIG_FILE", "config", &config, &config_len);
	if (r < 0 && r != -ENOENT)
		return err_set(err, r, "reading AWS config file: %s", strerror(-r));
	if (strcmp(profile, "default") == 0)
		snprintf(section, sizeof(section), "default");
	else
		snprintf(section, sizeof(section), "profile %s", profile);

	/* Credentials: the environment, then the credentials file, then the config file. */
	if (env_copy("AWS_ACCESS_KEY_ID", s.access_key, sizeof(s.access_key)) == 0 &&
	    env_copy("AWS_SECRET_ACCESS_KEY", s.secret_key, sizeof(s.secret_key)) == 0) {
		(void)env_copy("AWS_SESSION_TOKEN", s.session_token, sizeof(s.session_token));
		s.have_creds = true;
	} else {
		const struct {
			const char *text, *section;
			size_t len;
		} src[] = {{creds, profile, creds_len}, {config, section, config_len}};

		for (size_t i = 0; i < ELEMENTSOF(src) && !s.have_creds; i++) {
			if (!src[i].text)
				continue;
			if (img_ini_get(src[i].text, src[i].len, src[i].section,
					"aws_access_key_id", s.access_key,
					sizeof(s.access_key)) == 0 &&
			    img_ini_get(src[i].text, src[i].len, src[i].section,
					"aws_secret_access_key", s.secret_key,
					sizeof(s.secret_key)) == 0) {
				(void)img_ini_get(src[i].text, src[i].len, src[i].section,
						  "aws_session_token", s.session_token,
						  sizeof(s.session_token));
				s.have_creds = true;
			}
		}
	}
	if (strchr(s.access_key, ':'))
		return err_set(err, -EINVAL, "AWS access key id contains ':'");

	if (env_copy("AWS_REGION", s.region, sizeof(s.region)) < 0 &&
	    env_copy("AWS_DEFAULT_REGION", s.region, sizeof(s.region)) < 0 &&
	    (!config ||
	     img_ini_get(config, config_len, section, "region", s.region, sizeof(s.region)) < 0))
		snprintf(s.region, sizeof(s.region), "us-east-1");
	for (const char *c = s.region; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
			return err_set(err, -EINVAL, "bad AWS region '%s'", s.region);

	if (env_copy("AWS_ENDPOINT_URL_S3", s.endpoint, sizeof(s.endpoint)) < 0 &&
	    env_copy("AWS_ENDPOINT_URL", s.endpoint, sizeof(s.endpoint)) < 0 && config)
		(void)img_ini_get(config, config_len, section, "endpoint_url", s.endpoint,
				  sizeof(s.endpoint));
	if (s.endpoint[0] && strncmp(s.endpoint, "http://", 7) != 0 &&
	    strncmp(s.endpoint, "https://", 8) != 0)
		return err_set(err, -EINVAL,
			       "AWS endpoint URL must start with http:// or https://");
	for (size_t n = strlen(s.endpoint); n > 0 && s.endpoint[n - 1] == '/'; n--)
		s.endpoint[n - 1] = '\0';
	*ret = s;
	return 0;
}

int img_s3_object_url(const struct img_s3_settings *s, const char *bucket, const char *key,
		      char *buf, size_t size)
{
	int n;

	if (s->endpoint[0])
		n = snprintf(buf, size, "%s/%s/", s->endpoint, bucket);
	else if (strchr(bucket, '.')) /* a dotted bucket breaks the wildcard TLS name */
		n = snprintf(buf, size, "https://s3.%s.amazonaws.com/%s/", s->region, bucket);
	else
		n = snprintf(buf, size, "https://%s.s3.%s.amazonaws.com/", bucket, s->region);
	if (n < 0 || (size_t)n >= size)
		return -ENOBUFS;
	return img_url_escape(key, true, buf, size);
}
