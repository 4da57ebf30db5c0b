/*
 * bk_error.c
 *		BkError helpers: set, hint, prefix, OpenSSL error text.
 */
#include "bk_error.h"
#include "bk_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

/*
 * text was cut to fit size bytes: drop a character left incomplete at its
 * end, so that the message stays valid UTF-8 (a JSON reply, for one,
 * cannot carry a broken character).
 */
static void
trim_partial_utf8(char *text)
{
	size_t len = strlen(text);
	size_t start = len;
	size_t need;
	unsigned char lead;

	while (start > 0 && len - start < 3 &&
		   ((unsigned char) text[start - 1] & 0xC0) == 0x80)
		start--;
	if (start == 0)
		return;
	lead = (unsigned char) text[start - 1];
	if (lead < 0xC0)
		return;
	need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
	if (len - (start - 1) < need)
		text[start - 1] = '\0';
}

size_t
bk_text_excerpt(char *buf, size_t size, const char *text, size_t max_chars)
{
	size_t len = 0;
	size_t chars = 0;

	if (size == 0)
		return 0;
	/* Whole characters only, and room for "...". */
	while (text[len] != '\0' && chars < max_chars)
	{
		size_t n = 1;

		while (((unsigned char) text[len + n] & 0xC0) == 0x80)
			n++;
		if (len + n + 4 > size)
			break;
		len += n;
		chars++;
	}
	memcpy(buf, text, len);
	if (text[len] != '\0' && size >= 4)
	{
		memcpy(buf + len, "...", 3);
		len += 3;
	}
	buf[len] = '\0';
	return len;
}

void
bk_error_clear(BkError *err)
{
	if (err == NULL)
		return;
	err->code = BK_OK;
	err->message[0] = '\0';
	err->hint[0] = '\0';
}

bool
bk_error_set(BkError *err, BkErrorCode code, const char *fmt, ...)
{
	va_list args;

	if (err == NULL)
		return false;
	err->code = code;
	err->hint[0] = '\0';
	va_start(args, fmt);
	if (vsnprintf(err->message, sizeof(err->message), fmt, args) >=
		(int) sizeof(err->message))
		trim_partial_utf8(err->message);
	va_end(args);
	return false;
}

bool
bk_error_hint(BkError *err, const char *fmt, ...)
{
	va_list args;

	if (err == NULL)
		return false;
	va_start(args, fmt);
	if (vsnprintf(err->hint, sizeof(err->hint), fmt, args) >=
		(int) sizeof(err->hint))
		trim_partial_utf8(err->hint);
	va_end(args);
	return false;
}

bool
bk_error_prefix(BkError *err, const char *fmt, ...)
{
	char joined[BK_ERROR_MESSAGE_MAX];
	size_t prefix_len;
	va_list args;

	if (err == NULL)
		return false;
	va_start(args, fmt);
	vsnprintf(joined, sizeof(joined), fmt, args);
	va_end(args);
	prefix_len = strlen(joined);
	bk_strlcpy(joined + prefix_len, err->message, sizeof(joined) - prefix_len);
	if (prefix_len + strlen(err->message) >= sizeof(joined))
		trim_partial_utf8(joined);
	memcpy(err->message, joined, sizeof(err->message));
	return false;
}

bool
bk_error_set_openssl(BkError *err, BkErrorCode code, const char *what)
{
	unsigned long sslerr = ERR_peek_last_error();
	char detail[256] = "no detail from OpenSSL";

	if (sslerr != 0)
		ERR_error_string_n(sslerr, detail, sizeof(detail));
	/* Drop the rest of the queue: it belongs to this failure only. */
	ERR_clear_error();
	return bk_error_set(err, code, "%s failed: %s", what, detail);
}

bool
bk_error_is_damage(const BkError *err)
{
	return err->code == BK_ERR_AUTH || err->code == BK_ERR_FORMAT ||
		   err->code == BK_ERR_SEQUENCE || err->code == BK_ERR_KEY;
}

const char *
bk_error_code_name(BkErrorCode code)
{
	switch (code)
	{
		case BK_OK:
			return "ok";
		case BK_ERR_USAGE:
			return "usage";
		case BK_ERR_CONFIG:
			return "config";
		case BK_ERR_IO:
			return "io";
		case BK_ERR_FORMAT:
			return "format";
		case BK_ERR_SEQUENCE:
			return "sequence";
		case BK_ERR_AUTH:
			return "auth";
		case BK_ERR_KEY:
			return "key";
		case BK_ERR_KAFKA:
			return "kafka";
		case BK_ERR_TIMEOUT:
			return "timeout";
		case BK_ERR_CRYPTO:
			return "crypto";
		case BK_ERR_NOMEM:
			return "nomem";
		case BK_ERR_INTERRUPTED:
			return "interrupted";
		case BK_ERR_CONFLICT:
			return "conflict";
		case BK_ERR_NOT_FOUND:
			return "not-found";
		case BK_ERR_INTERNAL:
			return "internal";
		case BK_ERR_REFUSED:
			return "refused";
		case BK_ERR_STORE:
			return "store";
	}
	return "unknown";
}
