/* SPDX-License-Identifier: MIT */
/*
 * Neutralising text a guest wrote before anyone reads it (`log`): whoever cats the file gets
 * printable text, never terminal commands.
 *
 * Kept: printable ASCII, tab, newline, and well-formed UTF-8 (shortest form, no surrogates,
 * at most U+10FFFF) except the characters below.
 * Replaced by one '?' each:
 *   - an escape sequence as a whole: ESC [ ... final (CSI), ESC ] / P / X / ^ / _ ... up to BEL
 *     or ESC \ (OSC, DCS, SOS, PM, APC strings), and ESC with intermediates and a final byte;
 *     an unterminated one longer than LOG_TEXT_SEQ_MAX bytes is cut there ('?') and what
 *     follows is text again
 *   - every other C0 control and DEL; a CR directly followed by LF is dropped (CRLF -> LF)
 *   - C1 controls (U+0080..U+009F, and their raw 8-bit bytes), the bidirectional overrides and
 *     isolates (U+202A..U+202E, U+2066..U+2069), and each byte of malformed UTF-8
 * The output is never longer than the input (so it may be done in place). State carries across
 * calls: a sequence or a UTF-8 character split between two writes is handled as one.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define LOG_TEXT_SEQ_MAX 256

struct log_text {
	uint8_t state;	 /* enum in log-text.c */
	uint8_t held[4]; /* a partial UTF-8 character */
	uint8_t nheld, need;
	uint16_t seq_len; /* bytes of the escape sequence so far */
};

void log_text_init(struct log_text *t);
/* Neutralise len bytes of in into out (room for len bytes; out == in is allowed). Returns the
 * bytes written. */
size_t log_text_feed(struct log_text *t, const uint8_t *in, size_t len, char *out);
/* One-shot, in place: neutralise buf[0..len) as a whole text (a partial character or sequence
 * at the very end is dropped: the text may still be growing). Returns the new length. */
size_t log_text_neutralize(char *buf, size_t len);
/* End of the text (e.g. the end of the rendered tail): a held partial character or CR becomes
 * '?'; writes at most 4 bytes. Returns the bytes written; t is reset. */
size_t log_text_finish(struct log_text *t, char *out);
