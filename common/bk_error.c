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
	vsnprintf(err->message, sizeof(err->message), fmt, args);
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
	vsnprintf(err->hint, sizeof(err->hint), fmt, args);
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
