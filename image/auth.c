/* SPDX-License-Identifier: MIT */
/*
 * Registry authentication pieces: the WWW-Authenticate challenge (RFC 7235, Docker's token
 * spec), Docker's config.json credentials ("credHelpers", "credsStore", and "auths": base64
 * "auth", "username"/"password", "identitytoken"), a credential helper's answer, and the token
 * endpoint's answer. All pure and fuzzed except img_auth_load, which finds and reads the file
 * and runs the helper it names (credhelper.c).
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "fetch.h"
#include "fileio.h"

#define CHALLENGE_MAX 4096
#define DOCKER_CONFIG_MAX (1u << 20)

static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void skip_ws(const char **p)
{
	while (**p == ' ' || **p == '\t')
		(*p)++;
}

static size_t read_token(const char **p, char *buf, size_t size)
{
	size_t n = 0;

	while (is_tchar(**p)) {
		if (n + 1 < size)
			buf[n] = **p;
		n++;
		(*p)++;
	}
	if (size)
		buf[n < size ? n : size - 1] = '\0';
	return n;
}

/* token or quoted-string into buf; -EINVAL if malformed or too long. */
static int read_value(const char **p, char *buf, size_t size)
{
	size_t n = 0;

	if (**p != '"') {
		n = read_token(p, buf, size);
		return n == 0 || n >= size ? -EINVAL : 0;
	}
	(*p)++;
	for (;;) {
		char c = **p;
		if (c == '\0')
			return -EINVAL;
		(*p)++;
		if (c == '"')
			break;
		if (c == '\\') {
			c = **p;
			if (c == '\0')
				return -EINVAL;
			(*p)++;
		}
		if ((unsigned char)c < 0x20 || (unsigned char)c == 0x7f)
			return -EINVAL;
		if (n + 1 >= size)
			return -EINVAL;
		buf[n++] = c;
	}
	buf[n] = '\0';
	return 0;
}

int img_auth_parse_challenge(const char *value, struct img_challenge *ret)
{
	struct img_challenge best = {}, cur;
	const char *p = value;
	bool have = false;

	if (!value || strnlen(value, CHALLENGE_MAX + 1) > CHALLENGE_MAX)
		return -EINVAL;
	for (;;) {
		char scheme[16];
		size_t n;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			break;
		n = read_token(&p, scheme, sizeof(scheme));
		if (n == 0)
			return -EINVAL;
		cur = (struct img_challenge){};
		for (size_t i = 0; scheme[i]; i++)
			cur.scheme[i] = (char)(scheme[i] >= 'A' && scheme[i] <= 'Z' ? scheme[i] + 32
										    : scheme[i]);
		if (n >= sizeof(scheme))
			cur.scheme[0] = '\0';
		for (;;) {
			const char *save;
			char name[32], val[1024];
			size_t nn;

			skip_ws(&p);
			save = p;
			nn = read_token(&p, name, sizeof(name));
			skip_ws(&p);
			if (nn == 0 || *p != '=') {
				p = save; /* next challenge (or token68 garbage) */
				if (nn == 0 && *p && *p != ',')
					return -EINVAL;
				break;
			}
			p++;
			skip_ws(&p);
			if (read_value(&p, val, sizeof(val)) < 0)
				return -EINVAL;
			for (char *c = name; *c; c++)
				if (*c >= 'A' && *c <= 'Z')
					*c = (char)(*c + 32);
			if (strcmp(name, "realm") == 0)
				snprintf(cur.realm, sizeof(cur.realm), "%s", val);
			else if (strcmp(name, "service") == 0 && strlen(val) < sizeof(cur.service))
				snprintf(cur.service, sizeof(cur.service), "%s", val);
			else if (strcmp(name, "scope") == 0)
				snprintf(cur.scope, sizeof(cur.scope), "%s", val);
			skip_ws(&p);
			if (*p == ',') {
				p++;
				continue;
			}
			if (*p && *p != ' ')
				return -EINVAL;
		}
		if (strcmp(cur.scheme, "bearer") == 0 &&
		    (!have || strcmp(best.scheme, "bearer") != 0)) {
			best = cur;
			have = true;
		} else if (strcmp(cur.scheme, "basic") == 0 && !have) {
			best = cur;
			have = true;
		}
	}
	if (!have)
		return -EINVAL;
	if (strcmp(best.scheme, "bearer") == 0 && !best.realm[0])
		return -EINVAL;
	*ret = best;
	return 0;
}

/* Base64 text of a string (no embedded NUL) into buf, NUL-terminated. */
static int b64_decode(const char *s, size_t n, char *buf, size_t size)
{
	ssize_t out;

	if (size == 0)
		return -EINVAL;
	out = img_base64_decode(s, n, (unsigned char *)buf, size - 1);
	if (out < 0)
		return (int)out;
	buf[out] = '\0';
	if (strlen(buf) != (size_t)out)
		return -EINVAL; /* embedded NUL */
	return 0;
}

/* "https://host:port/v1/" -> "host:port"; docker.io aliases -> "docker.io". */
static void normalize_registry(const char *s, char *buf, size_t size)
{
	size_t n;

	if (strncmp(s, "https://", 8) == 0)
		s += 8;
	else if (strncmp(s, "http://", 7) == 0)
		s += 7;
	n = strcspn(s, "/");
	snprintf(buf, size, "%.*s", (int)n, s);
	if (strcmp(buf, "index.docker.io") == 0 || strcmp(buf, "registry-1.docker.io") == 0)
		snprintf(buf, size, "docker.io");
}

/* Docker's convention: a "<token>" user means the secret is an identity token. */
#define TOKEN_USER "<token>"

static bool plain_string(json_t *v, size_t max)
{
	return json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < max &&
	       strlen(json_string_value(v)) == json_string_length(v);
}

static void token_user(struct img_creds *c)
{
	if (strcmp(c->user, TOKEN_USER) == 0 && strlen(c->pass) < sizeof(c->identity_token)) {
		snprintf(c->identity_token, sizeof(c->identity_token), "%s", c->pass);
		explicit_bzero(c->pass, sizeof(c->pass));
		c->user[0] = '\0';
	}
}

static int creds_from_entry(json_t *e, struct img_creds *ret, struct err *err)
{
	json_t *auth = json_object_get(e, "auth");
	json_t *user = json_object_get(e, "username"), *pass = json_object_get(e, "password");
	json_t *idt = json_object_get(e, "identitytoken");
	struct img_creds c = {};

	if (!json_is_object(e))
		return err_set(err, -EINVAL, "docker config: auths entry is not an object");
	if (idt && !json_is_string(idt))
		return err_set(err, -EINVAL, "docker config: \"identitytoken\" is not a string");
	if (idt && json_string_length(idt) > 0) {
		if (!plain_string(idt, sizeof(c.identity_token)))
			return err_set(err, -EINVAL, "docker config: bad \"identitytoken\"");
		memcpy(c.identity_token, json_string_value(idt), json_string_length(idt) + 1);
		*ret = c; /* the identity token wins; a user name beside it is informational */
		return 0;
	}
	if (json_is_string(auth) && json_string_length(auth) > 0) {
		char dec[sizeof(c.user) + sizeof(c.pass)];
		char *colon;

		if (b64_decode(json_string_value(auth), json_string_length(auth), dec,
			       sizeof(dec)) < 0)
			return err_set(err, -EINVAL, "docker config: \"auth\" is not valid base64");
		colon = strchr(dec, ':');
		if (!colon || colon == dec || (size_t)(colon - dec) >= sizeof(c.user) ||
		    strlen(colon + 1) >= sizeof(c.pass))
			return err_set(err, -EINVAL,
				       "docker config: \"auth\" is not base64 of user:password");
		memcpy(c.user, dec, (size_t)(colon - dec));
		strcpy(c.pass, colon + 1);
	} else if (json_is_string(user) && json_is_string(pass)) {
		if (json_string_length(user) == 0 || json_string_length(user) >= sizeof(c.user) ||
		    json_string_length(pass) >= sizeof(c.pass) ||
		    strlen(json_string_value(user)) != json_string_length(user) ||
		    strlen(json_string_value(pass)) != json_string_length(pass))
			return err_set(err, -EINVAL, "docker config: bad username or password");
		strcpy(c.user, json_string_value(user));
		strcpy(c.pass, json_string_value(pass));
	} else {
		return -ENOENT; /* an empty entry (its credentials live in a helper) */
	}
	token_user(&c);
	*ret = c;
	return 0;
}

/* The credHelpers entry for registry ("" when none). */
static int find_helper(json_t *root, const char *registry, char *buf, size_t size, struct err *err)
{
	json_t *helpers = json_object_get(root, "credHelpers"), *store, *e, *match = NULL;
	const char *key;
	char want[256];

	buf[0] = '\0';
	if (helpers && !json_is_object(helpers))
		return err_set(err, -EINVAL, "docker config: \"credHelpers\" is not an object");
	normalize_registry(registry, want, sizeof(want));
	json_object_foreach (helpers, key, e) {
		char have[256];
		normalize_registry(key, have, sizeof(have));
		if (strcmp(key, registry) == 0 || (!match && strcmp(have, want) == 0))
			match = e;
	}
	if (!match) {
		store = json_object_get(root, "credsStore");
		if (store && !json_is_string(store))
			return err_set(err, -EINVAL,
				       "docker config: \"credsStore\" is not a string");
		if (!store || json_string_length(store) == 0)
			return 0;
		match = store;
	}
	if (!json_is_string(match) ||
	    strlen(json_string_value(match)) != json_string_length(match) ||
	    !img_cred_helper_name_ok(json_string_value(match)))
		return err_set(err, -EINVAL, "docker config: bad credential helper name");
	snprintf(buf, size, "%s", json_string_value(match));
	return 0;
}

int img_auth_parse_docker_config(const char *json, size_t len, const char *registry,
				 struct img_creds *ret, struct err *err)
{
	_cleanup_(json_decrefp) json_t *root = NULL;
	json_error_t jerr;
	json_t *auths, *e, *match = NULL;
	const char *key;
	char want[256];

	if (len > DOCKER_CONFIG_MAX)
		return err_set(err, -EINVAL, "docker config larger than %u bytes",
			       DOCKER_CONFIG_MAX);
	root = json_loadb(json, len, 0, &jerr);
	if (!root || !json_is_object(root))
		return err_set(err, -EINVAL, "docker config is not a JSON object");
	*ret = (struct img_creds){};
	if (find_helper(root, registry, ret->helper, sizeof(ret->helper), err) < 0)
		return -EINVAL;
	if (ret->helper[0])
		return 0;
	auths = json_object_get(root, "auths");
	if (!auths)
		return -ENOENT;
	if (!json_is_object(auths))
		return err_set(err, -EINVAL, "docker config: \"auths\" is not an object");
	normalize_registry(registry, want, sizeof(want));
	/* An exact key wins over one that only matches after normalisation. */
	match = json_object_get(auths, registry);
	if (!match)
		json_object_foreach (auths, key, e) {
			char have[256];
			normalize_registry(key, have, sizeof(have));
			if (strcmp(have, want) == 0) {
				match = e;
				break;
			}
		}
	if (!match)
		return -ENOENT;
	return creds_from_entry(match, ret, err);
}

int img_auth_parse_helper_output(const char *json, size_t len, struct img_creds *ret,
				 struct err *err)
{
	_cleanup_(json_decrefp) json_t *root = NULL;
	struct img_creds c = {};
	json_error_t jerr;
	json_t *user, *secret;

	if (len > IMG_CRED_HELPER_OUTPUT_MAX)
		return err_set(err, -EINVAL, "answer larger than %u bytes",
			       IMG_CRED_HELPER_OUTPUT_MAX);
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root))
		return err_set(err, -EINVAL, "answer is not a JSON object");
	user = json_object_get(root, "Username");
	secret = json_object_get(root, "Secret");
	/* Some helpers (docker-credential-pass 0.6) answer "not found" with empty fields. */
	if (json_is_string(user) && json_is_string(secret) && json_string_length(user) == 0 &&
	    json_string_length(secret) == 0)
		return -ENOENT;
	if (!plain_string(user, sizeof(c.user)) || !plain_string(secret, sizeof(c.pass)))
		return err_set(err, -EINVAL, "answer lacks a usable Username and Secret");
	memcpy(c.user, json_string_value(user), json_string_length(user) + 1);
	memcpy(c.pass, json_string_value(secret), json_string_length(secret) + 1);
	token_user(&c);
	*ret = c;
	explicit_bzero(&c, sizeof(c));
	return 0;
}

void img_auth_helper_server(const char *registry, char *buf, size_t size)
{
	char norm[256];

	normalize_registry(registry, norm, sizeof(norm));
	snprintf(buf, size, "%s",
		 strcmp(norm, "docker.io") == 0 ? "https://index.docker.io/v1/" : registry);
}

int img_auth_load(const char *path, const char *registry, unsigned helper_timeout_ms,
		  struct img_creds *ret, struct err *err)
{
	_cleanup_free_ char *text = NULL;
	char buf[4096];
	const char *dir, *home;
	size_t len = 0;
	int r;

	if (!path) {
		if ((dir = getenv("DOCKER_CONFIG")) && *dir)
			snprintf(buf, sizeof(buf), "%s/config.json", dir);
		else if ((home = getenv("HOME")) && *home)
			snprintf(buf, sizeof(buf), "%s/.docker/config.json", home);
		else
			return -ENOENT;
		path = buf;
	}
	r = read_file_bounded(path, DOCKER_CONFIG_MAX, &text, &len);
	if (r == -ENOENT)
		return -ENOENT;
	if (r < 0)
		return err_set(err, r, "reading docker config '%s': %s", path, strerror(-r));
	r = img_auth_parse_docker_config(text, len, registry, ret, err);
	if (r < 0 && r != -ENOENT)
		return err_prefix(err, "'%s': ", path);
	if (r == 0 && ret->helper[0]) {
		char helper[sizeof(ret->helper)], server[300];

		memcpy(helper, ret->helper, sizeof(helper));
		img_auth_helper_server(registry, server, sizeof(server));
		r = img_cred_helper_get(helper, server,
					helper_timeout_ms ? helper_timeout_ms
							  : IMG_CRED_HELPER_TIMEOUT_MS,
					ret, err);
		if (r >= 0)
			memcpy(ret->helper, helper, sizeof(helper));
	}
	return r;
}

int img_auth_parse_token(const char *json, size_t len, char *ret, size_t size)
{
	_cleanup_(json_decrefp) json_t *root = NULL;
	json_error_t jerr;
	json_t *t;
	const char *s;
	size_t n;

	root = json_loadb(json, len, 0, &jerr);
	if (!root || !json_is_object(root))
		return -EINVAL;
	t = json_object_get(root, "token");
	if (!json_is_string(t) || json_string_length(t) == 0)
		t = json_object_get(root, "access_token");
	if (!json_is_string(t) || json_string_length(t) == 0)
		return -EINVAL;
	s = json_string_value(t);
	n = json_string_length(t);
	if (n >= size)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return -EINVAL;
	memcpy(ret, s, n + 1);
	return 0;
}
