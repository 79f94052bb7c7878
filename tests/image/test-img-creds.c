/* SPDX-License-Identifier: MIT */
/*
 * Docker's credential conventions against real registries (registry-fixture.py: htpasswd, and a
 * token server that also takes OAuth2 refresh tokens): credHelpers and credsStore with helper
 * programs this test writes (what they get on stdin, which files they have open, not-found,
 * failure messages, secrets kept out of errors, hangs, floods, missing helpers), identitytoken,
 * and the "<token>" user.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fetch.h"
#include "fileio.h"
#include "fixture.h"
#include "test.h"

static char tmp_dir[128], bin_dir[192];

/* One helper program: docker-credential-<name> running body (sh). */
static void helper(const char *name, const char *body)
{
	char path[512], text[4096];

	snprintf(path, sizeof(path), "%s/docker-credential-%s", bin_dir, name);
	snprintf(text, sizeof(text), "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nLOG=%s/%s\n%s\n",
		 tmp_dir, name, body);
	ASSERT_OK(write_file_atomic(path, text, strlen(text), 0755));
}

static void write_helpers(void)
{
	/* Records stdin and its open files, answers with the fixture's user. */
	helper("good",
	       "cat > $LOG.stdin\n"
	       "for f in /proc/$$/fd/*; do echo \"${f##*/} $(readlink $f)\"; done > $LOG.fds\n"
	       "printf '{\"ServerURL\":\"x\",\"Username\":\"%s\",\"Secret\":\"%s\"}' "
	       "\"$FX_USER\" \"$FX_PASSWORD\"");
	helper("token", "cat >/dev/null\n"
			"printf '{\"ServerURL\":\"x\",\"Username\":\"<token>\",\"Secret\":\"%s\"}' "
			"\"$FX_REFRESH\"");
	helper("none", "echo 'credentials not found in native keychain'; exit 1");
	helper("fail", "echo 'vault is sealed'; echo 'second line' >&2; exit 4");
	helper("leaky", "printf '{\"Username\":\"user\",\"Secret\":\"s3cr3t-value\"'");
	helper("slow", "echo $$ > $LOG.pid\nsleep 30");
	helper("flood", "head -c 200000 /dev/zero | tr '\\0' x");
}

struct src {
	char insecure_entry[64];
	const char *insecure[2];
	char docker_config[512];
	struct img_store_config cfg;
	struct img_source *src;
	struct err err;
};

/* Open port_key's registry with config.json text json; then resolve test/simple:1. */
static int open_with(struct src *s, const char *port_key, const char *json, unsigned timeout)
{
	char r[256];
	struct img_ref ref;
	struct img_manifest m = {0};
	int ret;

	*s = (struct src){0};
	snprintf(s->insecure_entry, sizeof(s->insecure_entry), "127.0.0.1:%s", fx(port_key));
	s->insecure[0] = s->insecure_entry;
	snprintf(s->docker_config, sizeof(s->docker_config), "%s/config.json", tmp_dir);
	ASSERT_OK(write_file_atomic(s->docker_config, json, strlen(json), 0600));
	s->cfg = (struct img_store_config){.insecure = s->insecure,
					   .docker_config = s->docker_config,
					   .cred_helper_timeout_ms = timeout ? timeout : 5000};
	snprintf(r, sizeof(r), "127.0.0.1:%s/test/simple:1", fx(port_key));
	ASSERT_OK(img_ref_parse(r, &ref, NULL));
	ret = img_source_open(&s->cfg, &ref, NULL, &s->src, &s->err);
	if (ret < 0)
		return ret;
	ret = img_source_resolve(s->src, &m, &s->err);
	img_manifest_done(&m);
	s->src = img_source_free(s->src);
	return ret;
}

static int with_helper(struct src *s, const char *port_key, const char *kind, const char *name,
		       unsigned timeout)
{
	char json[512];

	if (strcmp(kind, "credsStore") == 0)
		snprintf(json, sizeof(json), "{\"credsStore\":\"%s\"}", name);
	else
		snprintf(json, sizeof(json),
			 "{\"auths\":{\"127.0.0.1:%s\":{}},\"credHelpers\":{\"127.0.0.1:%s\":\"%"
			 "s\"}}",
			 fx(port_key), fx(port_key), name);
	return open_with(s, port_key, json, timeout);
}

static void expect_ok(int r, const struct src *s, const char *what)
{
	if (r < 0)
		TEST_FAIL("%s: %d %s", what, r, s->err.msg);
}

static void test_helper_basic_registry(void)
{
	char p[512], want[64];
	_cleanup_free_ char *in = NULL, *fds = NULL;
	struct src s;
	int marker;

	/* An fd without O_CLOEXEC: the helper must not get it. */
	marker = open("/dev/zero", O_RDONLY);
	ASSERT_TRUE(marker >= 3);
	expect_ok(with_helper(&s, "PORT_BASIC", "credHelpers", "good", 0), &s, "credHelpers");
	close(marker);

	snprintf(p, sizeof(p), "%s/good.stdin", tmp_dir);
	ASSERT_OK(read_file_bounded(p, 4096, &in, NULL));
	snprintf(want, sizeof(want), "127.0.0.1:%s", fx("PORT_BASIC"));
	ASSERT_STREQ(in, want); /* the server name, nothing else */
	snprintf(p, sizeof(p), "%s/good.fds", tmp_dir);
	ASSERT_OK(read_file_bounded(p, 65536, &fds, NULL));
	/* Beyond 0-2 only what sh opens itself (its script, a copy of stdin). */
	for (char *line = strtok(fds, "\n"); line; line = strtok(NULL, "\n")) {
		int fd = atoi(line);
		const char *target = strchr(line, ' ');
		printf("# helper fd %s\n", line);
		if (fd <= 2)
			continue;
		if (!target ||
		    !(strstr(target, "docker-credential-good") || strstr(target, "/dev/null") ||
		      strstr(target, "socket:") || strstr(target, "pipe:")))
			TEST_FAIL("helper inherited fd %s", line);
		if (strstr(target, "/dev/zero"))
			TEST_FAIL("helper inherited our fd %s", line);
	}
}

static void test_store_token_registry(void)
{
	struct src s;

	/* credsStore applies to every registry; Basic credentials at the token endpoint. */
	expect_ok(with_helper(&s, "PORT_TOKEN", "credsStore", "good", 0), &s, "credsStore");
	expect_ok(with_helper(&s, "PORT_BASIC", "credsStore", "good", 0), &s, "credsStore basic");
}

static void test_identity_token(void)
{
	char json[1024], auth[256], cmd[512];
	struct src s;
	FILE *f;

	/* A helper answering "<token>": an OAuth2 refresh token, traded by POST. */
	expect_ok(with_helper(&s, "PORT_TOKEN", "credHelpers", "token", 0), &s, "<token> helper");
	/* ... which a Basic-only registry cannot use. */
	ASSERT_ERRNO(with_helper(&s, "PORT_BASIC", "credHelpers", "token", 0), EACCES);

	snprintf(json, sizeof(json), "{\"auths\":{\"127.0.0.1:%s\":{\"identitytoken\":\"%s\"}}}",
		 fx("PORT_TOKEN"), fx("REFRESH_TOKEN"));
	expect_ok(open_with(&s, "PORT_TOKEN", json, 0), &s, "identitytoken");
	snprintf(json, sizeof(json),
		 "{\"auths\":{\"127.0.0.1:%s\":{\"identitytoken\":\"not-the-token-xyz\"}}}",
		 fx("PORT_TOKEN"));
	ASSERT_ERRNO(open_with(&s, "PORT_TOKEN", json, 0), EACCES);
	printf("# wrong identity token: %s\n", s.err.msg);
	ASSERT_TRUE(strstr(s.err.msg, "not-the-token-xyz") == NULL);

	/* "auth" of "<token>:REFRESH" means the same. */
	snprintf(cmd, sizeof(cmd), "printf %%s '<token>:%s' | base64 -w0", fx("REFRESH_TOKEN"));
	f = popen(cmd, "re");
	ASSERT_TRUE(f && fgets(auth, sizeof(auth), f));
	pclose(f);
	snprintf(json, sizeof(json), "{\"auths\":{\"127.0.0.1:%s\":{\"auth\":\"%s\"}}}",
		 fx("PORT_TOKEN"), auth);
	expect_ok(open_with(&s, "PORT_TOKEN", json, 0), &s, "<token> auth");
}

static void test_helper_errors(void)
{
	struct src s;
	struct timespec t0, t1;
	char p[512];
	_cleanup_free_ char *pid = NULL;

	/* Nothing stored: anonymous, so the htpasswd registry refuses. */
	ASSERT_ERRNO(with_helper(&s, "PORT_BASIC", "credHelpers", "none", 0), EACCES);
	ASSERT_TRUE(strstr(s.err.msg, "docker-credential") == NULL);

	ASSERT_ERRNO(with_helper(&s, "PORT_BASIC", "credHelpers", "fail", 0), EACCES);
	printf("# %s\n", s.err.msg);
	ASSERT_TRUE(strstr(s.err.msg, "docker-credential-fail") != NULL);
	ASSERT_TRUE(strstr(s.err.msg, "vault is sealed") != NULL);
	ASSERT_TRUE(strstr(s.err.msg, "exit status 4") != NULL);

	ASSERT_ERRNO(with_helper(&s, "PORT_BASIC", "credHelpers", "leaky", 0), EACCES);
	printf("# %s\n", s.err.msg);
	ASSERT_TRUE(strstr(s.err.msg, "s3cr3t") == NULL);

	ASSERT_TRUE(with_helper(&s, "PORT_BASIC", "credHelpers", "flood", 0) < 0);
	printf("# %s\n", s.err.msg);
	ASSERT_TRUE(strstr(s.err.msg, "more than") != NULL);

	ASSERT_ERRNO(with_helper(&s, "PORT_BASIC", "credHelpers", "missing", 0), EACCES);
	ASSERT_TRUE(strstr(s.err.msg, "docker-credential-missing not found") != NULL);

	ASSERT_ERRNO(open_with(&s, "PORT_BASIC", "{\"credsStore\":\"../../bin/sh\"}", 0), EINVAL);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_ERRNO(with_helper(&s, "PORT_BASIC", "credHelpers", "slow", 300), ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("# %s\n", s.err.msg);
	ASSERT_TRUE(t1.tv_sec - t0.tv_sec < 5);
	snprintf(p, sizeof(p), "%s/slow.pid", tmp_dir);
	ASSERT_OK(read_file_bounded(p, 64, &pid, NULL));
	/* The helper and its child (sleep) are gone: the whole process group was killed (the
	 * orphaned child is reaped by init, give it a moment). */
	for (int i = 0; i < 200 && kill(-atoi(pid), 0) == 0; i++)
		usleep(10 * 1000);
	ASSERT_TRUE(kill(-atoi(pid), 0) < 0 && errno == ESRCH);
}

static bool have(const char *prog)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", prog);
	return system(cmd) == 0;
}

/* Debian's docker-credential-pass over a throwaway gpg key and password store. */
static void test_docker_credential_pass(void)
{
	char gnupg[256], store[256], cmd[2048];
	struct src s;
	int r;

	if (!have("docker-credential-pass") || !have("pass") || !have("gpg") || !have("gpgconf"))
		test_skip("docker-credential-pass, pass or gpg not installed "
			  "(golang-docker-credential-helpers, pass)");
	snprintf(gnupg, sizeof(gnupg), "%s/gnupg", tmp_dir);
	snprintf(store, sizeof(store), "%s/pass-store", tmp_dir);
	ASSERT_OK(mkdir(gnupg, 0700));
	setenv("GNUPGHOME", gnupg, 1);
	setenv("PASSWORD_STORE_DIR", store, 1);
	snprintf(cmd, sizeof(cmd),
		 "gpg --batch --passphrase '' --quick-gen-key mvmfs-test@example.invalid default "
		 "default never >/dev/null 2>&1 && pass init mvmfs-test@example.invalid >/dev/null "
		 "&& printf "
		 "'{\"ServerURL\":\"127.0.0.1:%s\",\"Username\":\"%s\",\"Secret\":\"%s\"}' "
		 "| docker-credential-pass store",
		 fx("PORT_BASIC"), fx("USER"), fx("PASSWORD"));
	r = system(cmd);
	if (r == 0) {
		r = open_with(&s, "PORT_BASIC", "{\"credsStore\":\"pass\"}", 0);
		if (r < 0)
			printf("# pass store: %s\n", s.err.msg);
	}
	/* Nothing stored for the token registry: anonymous, which may not pull there. */
	int r2 = open_with(&s, "PORT_TOKEN", "{\"credsStore\":\"pass\"}", 0);
	printf("# not stored: %s\n", s.err.msg);
	(void)system("gpgconf --kill gpg-agent >/dev/null 2>&1"); /* no agent left behind */
	ASSERT_OK(r);
	ASSERT_EQ(r2, -EACCES);
	ASSERT_TRUE(strstr(s.err.msg, "credential helper") == NULL);
}

int main(void)
{
	static const struct test_case cases[] = {
		TEST(test_helper_basic_registry),  TEST(test_store_token_registry),
		TEST(test_identity_token),	   TEST(test_helper_errors),
		TEST(test_docker_credential_pass),
	};
	const char *src = getenv("MVMFS_SRCDIR");
	char path[1024];
	int r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/mvmfs-imgcreds-XXXXXX");
	if (!src || !mkdtemp(tmp_dir)) {
		printf("1..0 # SKIP no MVMFS_SRCDIR or temp dir\n");
		return 77;
	}
	r = fx_up(src, tmp_dir, "up", "", "registry fixture",
		  "registry fixture unavailable (docker-registry/skopeo)");
	if (r != 0) {
		(void)rm_rf(tmp_dir);
		return r;
	}
	snprintf(bin_dir, sizeof(bin_dir), "%s/bin", tmp_dir);
	(void)mkdir(bin_dir, 0755);
	snprintf(path, sizeof(path), "%s:%s", bin_dir,
		 getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	setenv("PATH", path, 1);
	setenv("FX_USER", fx("USER"), 1);
	setenv("FX_PASSWORD", fx("PASSWORD"), 1);
	setenv("FX_REFRESH", fx("REFRESH_TOKEN"), 1);
	write_helpers();
	curl_global_init(CURL_GLOBAL_DEFAULT);
	r = test_run(cases, ELEMENTSOF(cases));
	curl_global_cleanup();
	fx_down(src);
	(void)rm_rf(tmp_dir);
	return r;
}
