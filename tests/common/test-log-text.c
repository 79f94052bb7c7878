/* SPDX-License-Identifier: MIT */
/* log_text: what a guest writes reaches `log` readers as text, never as terminal commands. */
#include <stdio.h>
#include <string.h>

#include "log-text-check.h"
#include "log-text.h"
#include "test.h"

/* Neutralise s (in pieces of step bytes) and compare with want. */
static void check(const char *s, const char *want)
{
	size_t len = strlen(s);

	for (size_t step = 1; step <= len + 1; step = step * 2 + 1) {
		struct log_text t;
		char out[1024];
		size_t n = 0;

		log_text_init(&t);
		for (size_t off = 0; off < len; off += step)
			n += log_text_feed(&t, (const uint8_t *)s + off,
					   len - off < step ? len - off : step, out + n);
		n += log_text_finish(&t, out + n);
		out[n] = '\0';
		ASSERT_STREQ(out, want);
		ASSERT_TRUE(log_text_output_ok(out, n));
	}
}

static void test_text_kept(void)
{
	check("hello\tworld\n", "hello\tworld\n");
	check("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\n",
	      "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\n");
	check("a\r\nb\r\n", "a\nb\n"); /* CRLF line ends */
}

static void test_escape_sequences_replaced(void)
{
	check("\033[31mred\033[0m", "?red?");
	check("\033[2J\033[H\033[?1049h", "???");
	check("\033]0;pwned title\007after", "?after");
	check("\033]8;;http://evil\033\\link\033]8;;\033\\", "?link?");
	check("\033Pq#0;2;0;0;0\033\\x", "?x"); /* DCS (sixel) */
	check("\033c\0337\033(B", "???");	/* RIS, DECSC, charset */
	check("\033\n", "?\n");			/* a lone ESC */
	check("\033[1;2\nx", "?\nx");		/* a CSI cut by a newline */
}

static void test_controls_replaced(void)
{
	check("a\rb", "a?b"); /* a bare CR would overwrite the line */
	check("\x01\x07\x08\x7f", "????");
	check("x\r", "x?");
}

static void test_utf8_checked(void)
{
	/* (as bytes: a literal holding them trips clang-tidy's misleading-bidirectional) */
	static const char rlo[] = {(char)0xe2, (char)0x80, (char)0xae, 'a', 'b', 'c', 0};
	static const char lri[] = {(char)0xe2, (char)0x81, (char)0xa6, 'x', 0};

	check("\xc2\x9b"
	      "31m",
	      "?31m"); /* C1 CSI, UTF-8 encoded */
	check("\x9b"
	      "31m",
	      "?31m");			/* C1 CSI, raw byte */
	check(rlo, "?abc");		/* RIGHT-TO-LEFT OVERRIDE */
	check(lri, "?x");		/* LEFT-TO-RIGHT ISOLATE */
	check("\xc0\xaf", "??");	/* overlong '/' */
	check("\xed\xa0\x80", "?");	/* surrogate */
	check("\xf4\x90\x80\x80", "?"); /* > U+10FFFF */
	check("\xe2\x82"
	      "x",
	      "?x");		/* truncated */
	check("\xe2\x82", "?"); /* truncated at the end */
}

static void test_long_sequence_cut(void)
{
	/* ESC ] and 300 'A's with no terminator: the first LOG_TEXT_SEQ_MAX bytes are one '?',
	 * the rest is text again. */
	char s[2 + 300 + 5], want[1 + 300 + 5];
	size_t as = 300 - (LOG_TEXT_SEQ_MAX - 2);

	s[0] = 0x1b;
	s[1] = ']';
	memset(s + 2, 'A', 300);
	memcpy(s + 302, "tail", 5);
	want[0] = '?';
	memset(want + 1, 'A', as);
	memcpy(want + 1 + as, "tail", 5);
	check(s, want);
}

static void test_neutralize_in_place(void)
{
	char buf[] = "\033[1mboot\033[0m ok\r\n\xe2\x82";
	size_t n = log_text_neutralize(buf, strlen(buf));

	/* the partial character at the end is dropped: the console may still be writing it */
	ASSERT_EQ(n, strlen("?boot? ok\n"));
	ASSERT_TRUE(memcmp(buf, "?boot? ok\n", n) == 0);
}

TEST_MAIN(TEST(test_text_kept), TEST(test_escape_sequences_replaced), TEST(test_controls_replaced),
	  TEST(test_utf8_checked), TEST(test_long_sequence_cut), TEST(test_neutralize_in_place))
