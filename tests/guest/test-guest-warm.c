/* SPDX-License-Identifier: MIT */
/* The agent's read-ahead of the app's first files (guest/warm.c) on a real tree: the user files,
 * the program found as the start finds it (a path, or PATH), a script's interpreter; nothing
 * outside the root (symlinks resolved inside it), never a FIFO or a device; the "#!" parser. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "test.h"

static char root[64], outside[64];
static char seen[2048];

static void on_seen(void *ud, const char *path)
{
	(void)ud;
	snprintf(seen + strlen(seen), sizeof(seen) - strlen(seen), "%s;", path);
}

static void put(const char *rel, const char *text, mode_t mode)
{
	char p[256];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	f = fopen(p, "we");
	ASSERT_TRUE(f != NULL);
	fputs(text, f);
	fclose(f);
	ASSERT_OK(chmod(p, mode));
}

static void dir(const char *rel)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	ASSERT_OK(mkdir(p, 0755));
}

static const char *run(char **entrypoint, char **cmd, char **env, char *workdir)
{
	struct guest_vm vm = {.entrypoint = entrypoint, .cmd = cmd, .env = env, .workdir = workdir};

	seen[0] = '\0';
	ASSERT_OK(warm_run(&vm, root, on_seen, NULL));
	return seen;
}

static void setup(void)
{
	char p[256];

	snprintf(root, sizeof(root), "/tmp/test-warm.XXXXXX");
	ASSERT_TRUE(mkdtemp(root) != NULL);
	snprintf(outside, sizeof(outside), "/tmp/test-warm-out.XXXXXX");
	ASSERT_TRUE(mkdtemp(outside) != NULL);
	dir("etc");
	dir("bin");
	dir("usr");
	dir("usr/bin");
	dir("srv");
	put("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0644);
	put("bin/busybox", "\177ELF not really\n", 0755);
	snprintf(p, sizeof(p), "%s/bin/sh", root);
	ASSERT_OK(symlink("busybox", p));
	put("srv/app.sh", "#!/bin/sh\nexec httpd\n", 0755);
	put("usr/bin/python3", "\177ELF\n", 0755);
	put("srv/tool.py", "#! /usr/bin/env python3\n", 0755);
	put("usr/bin/env", "\177ELF\n", 0755);
	/* /etc/group is a FIFO: opening it for reading would block. */
	snprintf(p, sizeof(p), "%s/etc/group", root);
	ASSERT_OK(mkfifo(p, 0644));
	/* Symlinks pointing out of the root stay inside it. */
	snprintf(p, sizeof(p), "%s/secret", outside);
	ASSERT_OK(close(open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0755)));
	snprintf(p, sizeof(p), "%s/srv/escape", root);
	ASSERT_OK(symlink("../../../../../../../../tmp/doesnotexist", p));
	snprintf(p, sizeof(p), "%s/usr/bin/out", root);
	{
		char target[128];

		snprintf(target, sizeof(target), "%s/secret", outside);
		ASSERT_OK(symlink(target, p));
	}
}

static void cleanup(void)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", root, outside);
	(void)!system(cmd);
}

static void test_script(void)
{
	char *ep[] = {"/srv/app.sh", NULL}, *none[] = {NULL};

	setup();
	/* passwd, the script, its interpreter (bin/sh -> busybox, resolved inside the root); the
	 * FIFO group file is left alone. */
	ASSERT_STREQ(run(ep, none, none, "/srv"), "/etc/passwd;/srv/app.sh;/bin/sh;");
	cleanup();
}

static void test_path_lookup(void)
{
	char *cmd[] = {"python3", "x.py", NULL}, *none[] = {NULL};
	char *env[] = {"PATH=/nowhere:/usr/bin", NULL};

	setup();
	/* PATH from the image's environment; cmd when there is no entrypoint. */
	ASSERT_STREQ(run(none, cmd, env, NULL), "/etc/passwd;/usr/bin/python3;");
	/* The default PATH without one. */
	ASSERT_STREQ(run(none, cmd, none, NULL), "/etc/passwd;/usr/bin/python3;");
	cleanup();
}

static void test_relative_and_interp_with_arg(void)
{
	char *ep[] = {"./tool.py", NULL}, *none[] = {NULL};

	setup();
	/* Relative to the working directory; "#! /usr/bin/env python3": the interpreter is env. */
	ASSERT_STREQ(run(ep, none, none, "/srv"), "/etc/passwd;/srv/./tool.py;/usr/bin/env;");
	cleanup();
}

static void test_outside(void)
{
	char *ep1[] = {"/srv/escape", NULL}, *ep2[] = {"out", NULL}, *none[] = {NULL};
	char *env[] = {"PATH=/usr/bin", NULL};

	setup();
	/* A dangling symlink out, and an absolute one to a real file outside: neither is read. */
	ASSERT_STREQ(run(ep1, none, none, NULL), "/etc/passwd;");
	ASSERT_STREQ(run(ep2, none, env, NULL), "/etc/passwd;");
	/* Nothing to run: only the user files. */
	ASSERT_STREQ(run(none, none, none, NULL), "/etc/passwd;");
	cleanup();
}

static void test_threaded(void)
{
	char *ep[] = {"/srv/app.sh", NULL}, *none[] = {NULL};
	struct guest_vm vm = {.entrypoint = ep, .cmd = none, .env = none};

	setup();
	warm_begin(&vm, root);
	warm_end();
	warm_end(); /* twice is fine */
	warm_begin(&vm, "/nonexistent-root");
	warm_end();
	ASSERT_EQ(warm_run(&vm, "/nonexistent-root", NULL, NULL), -ENOENT);
	cleanup();
}

static void test_shebang(void)
{
	char out[16];
	uint8_t big[WARM_HEAD + 1];

#define SB(s) warm_shebang((const uint8_t *)(s), sizeof(s) - 1, out, sizeof(out))
	ASSERT_EQ(SB("#!/bin/sh\n"), 0);
	ASSERT_STREQ(out, "/bin/sh");
	ASSERT_EQ(SB("#! \t/bin/bash -e\nrest"), 0);
	ASSERT_STREQ(out, "/bin/bash");
	ASSERT_EQ(SB("#!/bin/sh"), -EINVAL);			/* the line does not end */
	ASSERT_EQ(SB("#!sh\n"), -EINVAL);			/* relative */
	ASSERT_EQ(SB("#!\n"), -EINVAL);				/* empty */
	ASSERT_EQ(SB("#!/a/very/long/interpreter\n"), -EINVAL); /* does not fit out */
	ASSERT_EQ(SB("\177ELF"), -EINVAL);
	ASSERT_EQ(SB(""), -EINVAL);
	memset(big, '\n', sizeof(big));
	memcpy(big, "#!/x\n", 5);
	ASSERT_EQ(warm_shebang(big, sizeof(big), out, sizeof(out)), -EINVAL); /* over the head */
	ASSERT_EQ(warm_shebang(big, WARM_HEAD, out, sizeof(out)), 0);
#undef SB
}

TEST_MAIN(TEST(test_script), TEST(test_path_lookup), TEST(test_relative_and_interp_with_arg),
	  TEST(test_outside), TEST(test_threaded), TEST(test_shebang))
