/* SPDX-License-Identifier: MIT */
/* Terminal-safe rendering of guest text: a byte-at-a-time state machine (see log-text.h). */
#include "log-text.h"

#include <stdbool.h>

enum {
	S_TEXT,
	S_UTF8,	      /* inside a multi-byte character: held[0..nheld) so far, need more */
	S_CR,	      /* after a CR */
	S_ESC,	      /* after ESC */
	S_ESC_INTER,  /* ESC, intermediates (0x20-0x2f) */
	S_CSI,	      /* ESC [ parameters/intermediates */
	S_STRING,     /* OSC/DCS/SOS/PM/APC payload */
	S_STRING_ESC, /* ESC inside a string: '\' ends it */
};

void log_text_init(struct log_text *t)
{
	t->state = S_TEXT;
	t->nheld = t->need = 0;
	t->seq_len = 0;
}

/* Code points that stay out even when well-formed. */
static bool banned(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069);
}

/* A complete character in held[]: keep it if it is well-formed and allowed. */
static size_t utf8_flush(struct log_text *t, char *out)
{
	const uint8_t *h = t->held;
	uint32_t cp;
	size_t n = t->nheld;

	t->state = S_TEXT;
	t->nheld = t->need = 0;
	if (n == 2)
		cp = ((uint32_t)(h[0] & 0x1f) << 6) | (h[1] & 0x3f);
	else if (n == 3)
		cp = ((uint32_t)(h[0] & 0x0f) << 12) | ((uint32_t)(h[1] & 0x3f) << 6) |
		     (h[2] & 0x3f);
	else
		cp = ((uint32_t)(h[0] & 0x07) << 18) | ((uint32_t)(h[1] & 0x3f) << 12) |
		     ((uint32_t)(h[2] & 0x3f) << 6) | (h[3] & 0x3f);
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || banned(cp)) {
		out[0] = '?';
		return 1;
	}
	for (size_t i = 0; i < n; i++)
		out[i] = (char)h[i];
	return n;
}

/* One byte in S_TEXT. */
static size_t text_byte(struct log_text *t, uint8_t c, char *out)
{
	if (c == '\t' || c == '\n' || (c >= 0x20 && c < 0x7f)) {
		out[0] = (char)c;
		return 1;
	}
	if (c == '\r') {
		t->state = S_CR;
		return 0;
	}
	if (c == 0x1b) {
		t->state = S_ESC;
		t->seq_len = 1;
		return 0;
	}
	if (c >= 0xc2 && c <= 0xf4) {
		t->held[0] = c;
		t->nheld = 1;
		t->need = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
		t->state = S_UTF8;
		return 0;
	}
	out[0] = '?'; /* C0, DEL, raw C1, stray continuation, 0xc0/0xc1/0xf5+ */
	return 1;
}

/* An escape sequence ended (complete, or cut): it shows as one '?'. */
static size_t seq_end(struct log_text *t, char *out)
{
	t->state = S_TEXT;
	t->seq_len = 0;
	out[0] = '?';
	return 1;
}

static size_t one_byte(struct log_text *t, uint8_t c, char *out)
{
	size_t n;

	switch (t->state) {
	case S_TEXT:
		return text_byte(t, c, out);
	case S_UTF8:
		if ((c & 0xc0) != 0x80) {
			/* malformed: the held bytes become '?', c starts over */
			t->state = S_TEXT;
			t->nheld = t->need = 0;
			out[0] = '?';
			return 1 + text_byte(t, c, out + 1);
		}
		t->held[t->nheld++] = c;
		return t->nheld == t->need ? utf8_flush(t, out) : 0;
	case S_CR:
		t->state = S_TEXT;
		if (c == '\n') {
			out[0] = '\n';
			return 1;
		}
		out[0] = '?';
		return 1 + text_byte(t, c, out + 1);
	default:
		break;
	}
	/* Inside an escape sequence. */
	if (++t->seq_len > LOG_TEXT_SEQ_MAX) {
		n = seq_end(t, out);
		return n + text_byte(t, c, out + n);
	}
	switch (t->state) {
	case S_ESC:
		if (c == '[') {
			t->state = S_CSI;
			return 0;
		}
		if (c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_') {
			t->state = S_STRING;
			return 0;
		}
		if (c >= 0x20 && c <= 0x2f) {
			t->state = S_ESC_INTER;
			return 0;
		}
		if (c >= 0x30 && c <= 0x7e)
			return seq_end(t, out); /* two-byte sequence (ESC c, ESC 7, ...) */
		n = seq_end(t, out);		/* ESC then a control: the ESC alone */
		return n + text_byte(t, c, out + n);
	case S_ESC_INTER:
		if (c >= 0x20 && c <= 0x2f)
			return 0;
		if (c >= 0x30 && c <= 0x7e)
			return seq_end(t, out);
		n = seq_end(t, out);
		return n + text_byte(t, c, out + n);
	case S_CSI:
		if (c >= 0x20 && c <= 0x3f)
			return 0;
		if (c >= 0x40 && c <= 0x7e)
			return seq_end(t, out);
		n = seq_end(t, out);
		return n + text_byte(t, c, out + n);
	case S_STRING:
		if (c == 0x07)
			return seq_end(t, out);
		if (c == 0x1b)
			t->state = S_STRING_ESC;
		return 0;
	case S_STRING_ESC:
		if (c == '\\')
			return seq_end(t, out);
		t->state = c == 0x1b ? S_STRING_ESC : S_STRING;
		return 0;
	default:
		return 0;
	}
}

size_t log_text_feed(struct log_text *t, const uint8_t *in, size_t len, char *out)
{
	size_t w = 0;

	/* Writes never pass the read position: a byte yields at most one output byte more than
	 * the input bytes held back before it. */
	for (size_t i = 0; i < len; i++)
		w += one_byte(t, in[i], out + w);
	return w;
}

size_t log_text_finish(struct log_text *t, char *out)
{
	size_t n = 0;

	/* a partial character, a CR, or an unterminated escape sequence */
	if (t->state != S_TEXT)
		out[n++] = '?';
	log_text_init(t);
	return n;
}

size_t log_text_neutralize(char *buf, size_t len)
{
	struct log_text t;

	log_text_init(&t);
	return log_text_feed(&t, (const uint8_t *)buf, len, buf);
}
