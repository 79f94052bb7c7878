/* SPDX-License-Identifier: MIT */
/* WWW-Authenticate challenges, Docker config.json credentials, token answers, AWS settings. */
#include <stdlib.h>

#include "fetch.h"
#include "fileio.h"
#include "test.h"

static void test_challenges(void)
{
	struct img_challenge c;

	ASSERT_OK(img_auth_parse_challenge(
		"Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
		"scope=\"repository:library/busybox:pull\"",
		&c));
	ASSERT_STREQ(c.scheme, "bearer");
	ASSERT_STREQ(c.realm, "https://auth.docker.io/token");
	ASSERT_STREQ(c.service, "registry.docker.io");
	ASSERT_STREQ(c.scope, "repository:library/busybox:pull");

	ASSERT_OK(img_auth_parse_challenge("Basic realm=\"test-realm\"", &c));
	ASSERT_STREQ(c.scheme, "basic");
	ASSERT_STREQ(c.realm, "test-realm");

	ASSERT_OK(img_auth_parse_challenge("basic", &c));
	ASSERT_STREQ(c.scheme, "basic");

	/* Case-insensitive names, spaces, escapes, token values, unknown params. */
	ASSERT_OK(img_auth_parse_challenge("BEARER  Realm = \"http://h/t?a=\\\"b\\\"\" , "
					   "Service=svc,error=\"insufficient_scope\"",
					   &c));
	ASSERT_STREQ(c.scheme, "bearer");
	ASSERT_STREQ(c.realm, "http://h/t?a=\"b\"");
	ASSERT_STREQ(c.service, "svc");

	/* Several challenges: Bearer wins wherever it is. */
	ASSERT_OK(img_auth_parse_challenge(
		"Basic realm=\"r\", Bearer realm=\"http://t\",scope=\"s\"", &c));
	ASSERT_STREQ(c.scheme, "bearer");
	ASSERT_STREQ(c.realm, "http://t");
	ASSERT_STREQ(c.scope, "s");
	ASSERT_OK(img_auth_parse_challenge("Negotiate, Basic realm=\"r\"", &c));
	ASSERT_STREQ(c.scheme, "basic");
}

static void test_bad_challenges(void)
{
	static const char *const bad[] = {
		"",
		"Negotiate",
		"Bearer",		/* no realm */
		"Bearer service=\"x\"", /* no realm */
		"Bearer realm=\"unterminated",
		"Bearer realm=",
		"Bearer realm=\"a\" junk",
		"Bearer realm=\"a\x01\"",
		"Negotiate abc==",
	};
	struct img_challenge c;
	char big[6000];

	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		if (img_auth_parse_challenge(bad[i], &c) != -EINVAL)
			TEST_FAIL("accepted '%s'", bad[i]);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "Bearer realm=\"", 14);
	ASSERT_ERRNO(img_auth_parse_challenge(big, &c), EINVAL);
}

static void test_docker_config(void)
{
	/* "user:pass" and "bob:s3:cr:et" in base64. */
	const char *cfg = "{\"auths\":{"
			  "\"https://index.docker.io/v1/\":{\"auth\":\"dXNlcjpwYXNz\"},"
			  "\"http://127.0.0.1:5000/v2/\":{\"auth\":\"Ym9iOnMzOmNyOmV0\"},"
			  "\"[::1]:5000\":{\"username\":\"u6\",\"password\":\"p6\"},"
			  "\"helper.example\":{},"
			  "\"quay.io\":{\"identitytoken\":\"x\"}},"
			  "\"credHelpers\":{\"gcr.io\":\"gcloud\"}}";
	struct img_creds c;
	struct err err = {};

	ASSERT_OK(img_auth_parse_docker_config(cfg, strlen(cfg), "docker.io", &c, &err));
	ASSERT_STREQ(c.user, "user");
	ASSERT_STREQ(c.pass, "pass");
	ASSERT_OK(img_auth_parse_docker_config(cfg, strlen(cfg), "127.0.0.1:5000", &c, &err));
	ASSERT_STREQ(c.user, "bob");
	ASSERT_STREQ(c.pass, "s3:cr:et");
	ASSERT_OK(img_auth_parse_docker_config(cfg, strlen(cfg), "[::1]:5000", &c, &err));
	ASSERT_STREQ(c.user, "u6");
	ASSERT_STREQ(c.pass, "p6");
	ASSERT_ERRNO(img_auth_parse_docker_config(cfg, strlen(cfg), "127.0.0.1:5001", &c, &err),
		     ENOENT);
	ASSERT_ERRNO(img_auth_parse_docker_config(cfg, strlen(cfg), "helper.example", &c, &err),
		     ENOENT);
	ASSERT_OK(img_auth_parse_docker_config(cfg, strlen(cfg), "quay.io", &c, &err));
	ASSERT_STREQ(c.identity_token, "x");
	ASSERT_STREQ(c.user, "");
	ASSERT_OK(img_auth_parse_docker_config(cfg, strlen(cfg), "gcr.io", &c, &err));
	ASSERT_STREQ(c.helper, "gcloud");
	ASSERT_STREQ(c.user, "");
	ASSERT_ERRNO(img_auth_parse_docker_config("{}", 2, "docker.io", &c, &err), ENOENT);
}

static void test_helper_output(void)
{
	struct img_creds c;
	struct err err = {};
	const char *ok = "{\"ServerURL\":\"r\",\"Username\":\"u\",\"Secret\":\"p\"}";
	const char *tok = "{\"ServerURL\":\"r\",\"Username\":\"<token>\",\"Secret\":\"rt\"}";
	const char *none = "{\"ServerURL\":\"r\",\"Username\":\"\",\"Secret\":\"\"}";
	const char *bad = "{\"Username\":\"u\",\"Secret\":\"hidden-secret\"";

	ASSERT_OK(img_auth_parse_helper_output(ok, strlen(ok), &c, &err));
	ASSERT_STREQ(c.user, "u");
	ASSERT_STREQ(c.pass, "p");
	ASSERT_OK(img_auth_parse_helper_output(tok, strlen(tok), &c, &err));
	ASSERT_STREQ(c.identity_token, "rt");
	ASSERT_STREQ(c.user, "");
	ASSERT_STREQ(c.pass, "");
	ASSERT_ERRNO(img_auth_parse_helper_output(none, strlen(none), &c, &err), ENOENT);
	ASSERT_ERRNO(img_auth_parse_helper_output(bad, strlen(bad), &c, &err), EINVAL);
	ASSERT_TRUE(strstr(err.msg, "hidden") == NULL);
	ASSERT_ERRNO(img_auth_parse_helper_output("{\"Username\":\"u\"}", 16, &c, &err), EINVAL);
	/* Helper names from the config: no paths. */
	ASSERT_TRUE(img_cred_helper_name_ok("pass"));
	ASSERT_TRUE(img_cred_helper_name_ok("ecr-login"));
	ASSERT_FALSE(img_cred_helper_name_ok("../x"));
	ASSERT_FALSE(img_cred_helper_name_ok("-x"));
	ASSERT_FALSE(img_cred_helper_name_ok(""));
	{
		char buf[64];
		img_auth_helper_server("docker.io", buf, sizeof(buf));
		ASSERT_STREQ(buf, "https://index.docker.io/v1/");
		img_auth_helper_server("127.0.0.1:5000", buf, sizeof(buf));
		ASSERT_STREQ(buf, "127.0.0.1:5000");
	}
}

static void test_bad_docker_config(void)
{
	static const char *const bad[] = {
		"",
		"[]",
		"{\"auths\":[]}",
		"{\"auths\":{\"r\":{\"auth\":\"!!!!\"}}}",
		"{\"auths\":{\"r\":{\"auth\":\"dXNlcg==\"}}}",	    /* "user": no colon */
		"{\"auths\":{\"r\":{\"auth\":\"OnBhc3M=\"}}}",	    /* ":pass": no user */
		"{\"auths\":{\"r\":{\"auth\":\"dXNlcjpwYXNz=\"}}}", /* bad padding */
		"{\"auths\":{\"r\":{\"auth\":\"dQB6OnA=\"}}}",	    /* embedded NUL */
		"{\"auths\":{\"r\":{\"username\":\"\",\"password\":\"p\"}}}",
		"{\"auths\":{\"r\":3}}",
	};
	struct img_creds c;

	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct err err = {};
		if (img_auth_parse_docker_config(bad[i], strlen(bad[i]), "r", &c, &err) != -EINVAL)
			TEST_FAIL("accepted '%s'", bad[i]);
		ASSERT_TRUE(err.msg[0]);
	}
}

static void test_docker_config_file(void)
{
	char dir[] = "/tmp/imgfetch-auth-XXXXXX", path[300];
	const char *cfg = "{\"auths\":{\"r.example\":{\"auth\":\"dXNlcjpwYXNz\"}}}";
	struct img_creds c;
	struct err err = {};

	ASSERT_TRUE(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/config.json", dir);
	ASSERT_OK(write_file_atomic(path, cfg, strlen(cfg), 0600));
	ASSERT_OK(img_auth_load(path, "r.example", 0, &c, &err));
	ASSERT_STREQ(c.user, "user");
	/* $DOCKER_CONFIG names the directory. */
	setenv("DOCKER_CONFIG", dir, 1);
	ASSERT_OK(img_auth_load(NULL, "r.example", 0, &c, &err));
	unsetenv("DOCKER_CONFIG");
	setenv("HOME", dir, 1);
	ASSERT_ERRNO(img_auth_load(NULL, "r.example", 0, &c, &err), ENOENT);
	ASSERT_ERRNO(img_auth_load("/nonexistent/config.json", "r.example", 0, &c, &err), ENOENT);
	ASSERT_OK(write_file_atomic(path, "{", 1, 0600));
	ASSERT_ERRNO(img_auth_load(path, "r.example", 0, &c, &err), EINVAL);
	ASSERT_TRUE(strstr(err.msg, path));
	ASSERT_OK(rm_rf(dir));
}

static void test_token(void)
{
	char t[64];

	ASSERT_OK(img_auth_parse_token("{\"token\":\"a.b.c\",\"access_token\":\"x\"}", 36, t,
				       sizeof(t)));
	ASSERT_STREQ(t, "a.b.c");
	ASSERT_OK(img_auth_parse_token("{\"access_token\":\"xyz\"}", 22, t, sizeof(t)));
	ASSERT_STREQ(t, "xyz");
	ASSERT_ERRNO(img_auth_parse_token("{\"token\":\"\"}", 12, t, sizeof(t)), EINVAL);
	ASSERT_ERRNO(img_auth_parse_token("{\"token\":\"a b\"}", 15, t, sizeof(t)), EINVAL);
	ASSERT_ERRNO(img_auth_parse_token("{\"token\":\"a\\r\\nX: y\"}", 21, t, sizeof(t)), EINVAL);
	ASSERT_ERRNO(img_auth_parse_token("{\"token\":5}", 11, t, sizeof(t)), EINVAL);
	ASSERT_ERRNO(img_auth_parse_token("{\"token\":\"aaaaaaaaaaaaaaaa\"}", 28, t, 8), EINVAL);
}

static void test_ini(void)
{
	const char *ini = "# comment\n[default]\nregion = eu-west-1\n\n[profile ci]  \n"
			  "  aws_access_key_id=AK\r\n; other\naws_secret_access_key =  S/K+ \n"
			  "[broken\nregion=nope\n";
	char v[32];

	ASSERT_OK(img_ini_get(ini, strlen(ini), "default", "region", v, sizeof(v)));
	ASSERT_STREQ(v, "eu-west-1");
	ASSERT_OK(img_ini_get(ini, strlen(ini), "profile ci", "aws_access_key_id", v, sizeof(v)));
	ASSERT_STREQ(v, "AK");
	ASSERT_OK(
		img_ini_get(ini, strlen(ini), "profile ci", "aws_secret_access_key", v, sizeof(v)));
	ASSERT_STREQ(v, "S/K+");
	ASSERT_ERRNO(img_ini_get(ini, strlen(ini), "profile ci", "region", v, sizeof(v)), ENOENT);
	ASSERT_ERRNO(img_ini_get(ini, strlen(ini), "default", "region", v, 4), EINVAL);
}

static void test_s3_settings(void)
{
	struct img_s3_settings s;
	struct err err = {};
	char url[512];

	setenv("HOME", "/nonexistent", 1);
	unsetenv("AWS_ENDPOINT_URL_S3");
	unsetenv("AWS_REGION");
	unsetenv("AWS_ACCESS_KEY_ID");
	setenv("AWS_DEFAULT_REGION", "eu-central-1", 1);
	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4569/", 1);
	ASSERT_OK(img_s3_settings_load(&s, &err));
	ASSERT_FALSE(s.have_creds);
	ASSERT_STREQ(s.region, "eu-central-1");
	ASSERT_STREQ(s.endpoint, "http://127.0.0.1:4569");
	ASSERT_OK(img_s3_object_url(&s, "images", "oci/a b+c.tar", url, sizeof(url)));
	ASSERT_STREQ(url, "http://127.0.0.1:4569/images/oci/a%20b%2Bc.tar");

	setenv("AWS_ENDPOINT_URL_S3", "https://s3.example", 1);
	setenv("AWS_REGION", "us-west-2", 1);
	setenv("AWS_ACCESS_KEY_ID", "AK", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "SK", 1);
	setenv("AWS_SESSION_TOKEN", "TOK", 1);
	ASSERT_OK(img_s3_settings_load(&s, &err));
	ASSERT_TRUE(s.have_creds);
	ASSERT_STREQ(s.session_token, "TOK");
	ASSERT_STREQ(s.region, "us-west-2");
	ASSERT_STREQ(s.endpoint, "https://s3.example");

	unsetenv("AWS_ENDPOINT_URL_S3");
	unsetenv("AWS_ENDPOINT_URL");
	ASSERT_OK(img_s3_settings_load(&s, &err));
	ASSERT_OK(img_s3_object_url(&s, "images", "k", url, sizeof(url)));
	ASSERT_STREQ(url, "https://images.s3.us-west-2.amazonaws.com/k");
	ASSERT_OK(img_s3_object_url(&s, "my.images", "k", url, sizeof(url)));
	ASSERT_STREQ(url, "https://s3.us-west-2.amazonaws.com/my.images/k");

	setenv("AWS_REGION", "us west", 1);
	ASSERT_ERRNO(img_s3_settings_load(&s, &err), EINVAL);
	setenv("AWS_REGION", "us-west-2", 1);
	setenv("AWS_ENDPOINT_URL", "ftp://x", 1);
	ASSERT_ERRNO(img_s3_settings_load(&s, &err), EINVAL);
}

static void test_url_escape(void)
{
	char b[16] = "x=";

	ASSERT_OK(img_url_escape("a:b/c", false, b, sizeof(b)));
	ASSERT_STREQ(b, "x=a%3Ab%2Fc");
	ASSERT_ERRNO(img_url_escape("??????", false, b, sizeof(b)), ENOBUFS);
}

TEST_MAIN(TEST(test_challenges), TEST(test_bad_challenges), TEST(test_docker_config),
	  TEST(test_bad_docker_config), TEST(test_helper_output), TEST(test_docker_config_file),
	  TEST(test_token), TEST(test_ini), TEST(test_s3_settings), TEST(test_url_escape))
