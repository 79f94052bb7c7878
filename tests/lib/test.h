/* SPDX-License-Identifier: MIT */
/*
 * A tiny TAP test harness (crun's runner, systemd's tests.h). Usage:
 *
 *   static void test_foo(void) { ASSERT_EQ(1 + 1, 2); }
 *   TEST_MAIN(TEST(test_foo), TEST(test_bar))
 *
 * Each case runs in a forked child, so a crash fails one case, not the file. A case calls
 * test_skip("why") to skip; the file exits 77 when every case skipped, 1 on any failure.
 */
#pragma once

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct test_case {
	const char *name;
	void (*fn)(void);
};

/* clang-format off */
#define TEST(f) { #f, f }
/* clang-format on */

/* A passing case ends with exit() in sanitizer builds so LeakSanitizer's exit-time check (and
 * TSan's report summary) runs in the child; _exit() elsewhere, so the child never runs the
 * parent's atexit handlers or flushes its stdio twice. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TEST_SANITIZED 1
#endif
#endif
#ifdef TEST_SANITIZED
#define test_case_exit_(code) exit(code)
#else
#define test_case_exit_(code) _exit(code)
#endif

#define TEST_SKIP_CODE 77

static inline void test_skip(const char *why)
{
	printf("# SKIP-REASON %s\n", why);
	fflush(stdout);
	_exit(TEST_SKIP_CODE);
}

#define TEST_FAIL(...)                                   \
	do {                                             \
		printf("# %s:%d: ", __FILE__, __LINE__); \
		printf(__VA_ARGS__);                     \
		printf("\n");                            \
		fflush(stdout);                          \
		_exit(1);                                \
	} while (0)

#define ASSERT_TRUE(x)                                      \
	do {                                                \
		if (!(x))                                   \
			TEST_FAIL("expected true: %s", #x); \
	} while (0)
#define ASSERT_FALSE(x) ASSERT_TRUE(!(x))
#define ASSERT_EQ(a, b)                                                      \
	do {                                                                 \
		long long _a = (long long)(a), _b = (long long)(b);          \
		if (_a != _b)                                                \
			TEST_FAIL("%s == %s: %lld != %lld", #a, #b, _a, _b); \
	} while (0)
#define ASSERT_NE(a, b)                                               \
	do {                                                          \
		long long _a = (long long)(a), _b = (long long)(b);   \
		if (_a == _b)                                         \
			TEST_FAIL("%s != %s: both %lld", #a, #b, _a); \
	} while (0)
#define ASSERT_OK(r)                                                                   \
	do {                                                                           \
		long long _r = (long long)(r);                                         \
		if (_r < 0)                                                            \
			TEST_FAIL("%s failed: %lld (%s)", #r, _r, strerror((int)-_r)); \
	} while (0)
#define ASSERT_ERRNO(r, e)                                                       \
	do {                                                                     \
		long long _r = (long long)(r);                                   \
		if (_r != -(e))                                                  \
			TEST_FAIL("%s: expected -%s, got %lld (%s)", #r, #e, _r, \
				  _r < 0 ? strerror((int)-_r) : "success");      \
	} while (0)
#define ASSERT_STREQ(a, b)                                                              \
	do {                                                                            \
		const char *_a = (a), *_b = (b);                                        \
		if (!_a || !_b || strcmp(_a, _b) != 0)                                  \
			TEST_FAIL("%s == %s: '%s' != '%s'", #a, #b, _a ? _a : "(null)", \
				  _b ? _b : "(null)");                                  \
	} while (0)
/* A syscall that returns -1/errno: assert it failed with e. */
#define ASSERT_SYSERR(expr, e)                                                         \
	do {                                                                           \
		errno = 0;                                                             \
		long long _v = (long long)(expr);                                      \
		if (_v != -1 || errno != (e))                                          \
			TEST_FAIL("%s: expected errno %s, got %lld/%s", #expr, #e, _v, \
				  strerror(errno));                                    \
	} while (0)

static inline int test_run(const struct test_case *cases, size_t n)
{
	int failed = 0, skipped = 0;
	const char *only = getenv("TEST_ONLY");

	printf("1..%zu\n", n);
	fflush(stdout);
	for (size_t i = 0; i < n; i++) {
		pid_t pid;
		int status = 0;

		if (only && strcmp(only, cases[i].name) != 0) {
			printf("ok %zu - %s # SKIP not selected\n", i + 1, cases[i].name);
			skipped++;
			continue;
		}
		pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			cases[i].fn();
			fflush(stdout);
			test_case_exit_(0);
		}
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			printf("ok %zu - %s\n", i + 1, cases[i].name);
		} else if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_SKIP_CODE) {
			printf("ok %zu - %s # SKIP\n", i + 1, cases[i].name);
			skipped++;
		} else {
			if (WIFSIGNALED(status))
				printf("# killed by signal %d\n", WTERMSIG(status));
			printf("not ok %zu - %s\n", i + 1, cases[i].name);
			failed++;
		}
		fflush(stdout);
	}
	if (failed)
		return 1;
	return (size_t)skipped == n ? TEST_SKIP_CODE : 0;
}

#define TEST_MAIN(...)                                                       \
	int main(void)                                                       \
	{                                                                    \
		static const struct test_case cases_[] = {__VA_ARGS__};      \
		setvbuf(stdout, NULL, _IOLBF, 0);                            \
		return test_run(cases_, sizeof(cases_) / sizeof(cases_[0])); \
	}
