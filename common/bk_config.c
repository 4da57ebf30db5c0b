/*
 * bk_config.c
 *		Configuration text parsing.  See bk_config.h.
 */
#include "bk_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bk_util.h"

#define CONFIG_FILE_MAX  (1024 * 1024)
#define CONFIG_VALUE_MAX 8192
#define UTF8_BOM         "\xEF\xBB\xBF"

static char *
trim(char *s)
{
	char *end;

	while (isspace((unsigned char) *s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char) end[-1]))
		*--end = '\0';
	return s;
}

/*
 * Cut an unquoted value at a comment: a '#' after white space, as in
 * "server_id = 4242   # unique".  A '#' inside a word stays, so
 * "sasl.password=ab#c" is whole; a value holding " #" is written quoted.
 */
static void
strip_comment(char *value)
{
	char *end;

	/* value is inside its line, after the '=': value[-1] can be read. */
	for (char *p = value; *p != '\0'; p++)
		if (*p == '#' && isspace((unsigned char) p[-1]))
		{
			*p = '\0';
			break;
		}
	end = value + strlen(value);
	while (end > value && isspace((unsigned char) end[-1]))
		*--end = '\0';
}

/*
 * The quote that closes a quoted value (value[0] is the opening one): the
 * first one followed by nothing but white space, or by a comment, so that
 * a comment that quotes words ("# the \"main\" one") is not taken into the
 * value; a value may hold quotes ("a=\"b c\""), none followed by " #".
 * Without one, the last quote (what follows it is refused), or NULL.
 */
static char *
closing_quote(char *value)
{
	char *last = NULL;

	for (char *quote = strchr(value + 1, '"'); quote != NULL;
		 quote = strchr(quote + 1, '"'))
	{
		const char *rest = quote + 1;

		while (isspace((unsigned char) *rest))
			rest++;
		if (*rest == '\0' || *rest == '#')
			return quote;
		last = quote;
	}
	return last;
}

bool
bk_config_parse_text(const char *path, char *text, size_t len,
					 BkConfigSetter setter, void *arg, BkError *err)
{
	char *next;
	int line_no = 0;

	/* Text only: C strings would silently drop whatever follows a NUL. */
	{
		const char *nul = memchr(text, '\0', len);

		if (nul != NULL)
		{
			for (const char *c = text; c < nul; c++)
				if (*c == '\n')
					line_no++;
			bk_error_set(err, BK_ERR_CONFIG,
						 "\"%s\" line %d: a NUL byte; a configuration file "
						 "is text",
						 path, line_no + 1);
			return false;
		}
	}
	/*
	 * A UTF-8 byte order mark, which some editors put at the start of a
	 * file, says only how the text is encoded: it is not part of the first
	 * key.
	 */
	next = text;
	if (len >= 3 && memcmp(text, UTF8_BOM, 3) == 0)
		next += 3;
	while (next != NULL && *next != '\0')
	{
		char *line = next;
		char *newline = strchr(line, '\n');
		char *eq;
		char *key;
		char *value;

		if (newline != NULL)
		{
			*newline = '\0';
			next = newline + 1;
		}
		else
			next = NULL;
		line_no++;
		line = trim(line);
		if (*line == '\0' || *line == '#')
			continue;
		eq = strchr(line, '=');
		/* Never the line's text: it may be a secret (a credentials file). */
		if (eq == NULL)
		{
			bk_error_set(err, BK_ERR_CONFIG,
						 "\"%s\" line %d: expected \"key = value\"", path,
						 line_no);
			return false;
		}
		*eq = '\0';
		key = trim(line);
		value = trim(eq + 1);
		if (*key == '\0')
		{
			bk_error_set(err, BK_ERR_CONFIG, "\"%s\" line %d: empty key", path,
						 line_no);
			return false;
		}
		/* Anywhere else (files joined): named, not an invisible character. */
		if (strstr(key, UTF8_BOM) != NULL)
		{
			bk_error_set(err, BK_ERR_CONFIG,
						 "\"%s\" line %d: a byte order mark (U+FEFF) in the "
						 "key; save the file as UTF-8 without one",
						 path, line_no);
			return false;
		}
		if (value[0] == '"')
		{
			char *close = closing_quote(value);
			char *rest;

			if (close == NULL)
			{
				bk_error_set(err, BK_ERR_CONFIG,
							 "\"%s\" line %d: unterminated quoted value", path,
							 line_no);
				return false;
			}
			rest = close + 1;
			while (isspace((unsigned char) *rest))
				rest++;
			if (*rest != '\0' && *rest != '#')
			{
				bk_error_set(err, BK_ERR_CONFIG,
							 "\"%s\" line %d: text after the closing quote of "
							 "%s (a comment starts with #)",
							 path, line_no, key);
				return false;
			}
			*close = '\0';
			value++;
		}
		else
			strip_comment(value);
		if (!setter(arg, key, value, err))
			return bk_error_prefix(err, "\"%s\" line %d: ", path, line_no);
	}
	return true;
}

bool
bk_config_parse_file(const char *path, BkConfigSetter setter, void *arg,
					 BkError *err)
{
	char *text;
	size_t len;
	bool ok;

	if (!bk_read_file(path, CONFIG_FILE_MAX, &text, &len, err))
		return bk_error_prefix(err, "configuration file: ");
	ok = bk_config_parse_text(path, text, len, setter, arg, err);
	free(text);
	return ok;
}

size_t
bk_config_escape_property(const char *text, char *out)
{
	size_t len = 0;

	for (const char *c = text; *c != '\0'; c++)
	{
		if (*c == ';' || *c == '\\')
			out[len++] = '\\';
		out[len++] = *c;
	}
	out[len] = '\0';
	return len;
}

bool
bk_config_parse_properties(const char *text, BkConfigSetter setter, void *arg,
						   BkError *err)
{
	char item[CONFIG_VALUE_MAX];
	size_t item_len = 0;
	int number = 0;

	if (text == NULL)
		return true;
	for (const char *p = text;; p++)
	{
		if (*p == '\\' && (p[1] == ';' || p[1] == '\\'))
		{
			p++;
		}
		else if (*p == ';' || *p == '\0')
		{
			char *trimmed;
			char *eq;

			item[item_len] = '\0';
			trimmed = trim(item);
			if (*trimmed != '\0')
			{
				number++;
				eq = strchr(trimmed, '=');
				/*
				 * By its place, never its text: a ";" left unescaped in a
				 * password makes the password's end such a piece.
				 */
				if (eq == NULL || eq == trimmed)
					return bk_error_set(err, BK_ERR_CONFIG,
										"Kafka property %d of the list is not "
										"\"key=value\"; a \";\" inside a value "
										"is written \"\\;\"",
										number);
				*eq = '\0';
				if (!setter(arg, trim(trimmed), trim(eq + 1), err))
					return false;
			}
			item_len = 0;
			if (*p == '\0')
				break;
			continue;
		}
		if (item_len + 1 >= sizeof(item))
			return bk_error_set(err, BK_ERR_CONFIG,
								"Kafka property longer than %d bytes",
								CONFIG_VALUE_MAX);
		item[item_len++] = *p;
	}
	return true;
}

/*
 * Split "<number><unit>" with optional spaces between.  The number is
 * decimal ("64", "1.5"): not hexadecimal, octal or an exponent, which
 * strtod alone would take ("0x10000" is not 10000).
 */
static bool
parse_number_unit(const char *text, double *number, const char **unit)
{
	const char *end;
	char digits[64];
	size_t len;

	while (isspace((unsigned char) *text))
		text++;
	end = text;
	while (isdigit((unsigned char) *end))
		end++;
	if (end == text)
		return false;
	if (*end == '.')
	{
		end++;
		if (!isdigit((unsigned char) *end))
			return false;
		while (isdigit((unsigned char) *end))
			end++;
	}
	len = (size_t) (end - text);
	if (len >= sizeof(digits))
		return false;
	memcpy(digits, text, len);
	digits[len] = '\0';
	errno = 0;
	*number = strtod(digits, NULL);
	if (errno != 0)
		return false;
	while (isspace((unsigned char) *end))
		end++;
	*unit = end;
	return true;
}

bool
bk_parse_size(const char *text, uint64_t *bytes)
{
	static const struct
	{
		const char *unit;
		double factor;
	} units[] = {
		{"", 1},
		{"B", 1},
		{"kB", 1024.0},
		{"KB", 1024.0},
		{"KiB", 1024.0},
		{"MB", 1024.0 * 1024},
		{"MiB", 1024.0 * 1024},
		{"GB", 1024.0 * 1024 * 1024},
		{"GiB", 1024.0 * 1024 * 1024},
		{"TB", 1024.0 * 1024 * 1024 * 1024},
		{"TiB", 1024.0 * 1024 * 1024 * 1024},
	};
	double number;
	const char *unit;

	if (!parse_number_unit(text, &number, &unit))
		return false;
	for (size_t unitIdx = 0; unitIdx < sizeof(units) / sizeof(units[0]);
		 unitIdx++)
	{
		if (strcmp(unit, units[unitIdx].unit) == 0)
		{
			double value = number * units[unitIdx].factor;

			if (value >= 18446744073709551615.0 ||
				value != (double) (uint64_t) value)
				return false;
			*bytes = (uint64_t) value;
			return true;
		}
	}
	return false;
}

bool
bk_parse_duration_ms(const char *text, int64_t *ms)
{
	static const struct
	{
		const char *unit;
		double factor;
	} units[] = {
		{"", 1},        {"ms", 1},      {"s", 1000},
		{"min", 60000}, {"h", 3600000}, {"d", 86400000},
	};
	double number;
	const char *unit;

	if (!parse_number_unit(text, &number, &unit))
		return false;
	for (size_t unitIdx = 0; unitIdx < sizeof(units) / sizeof(units[0]);
		 unitIdx++)
	{
		if (strcmp(unit, units[unitIdx].unit) == 0)
		{
			double value = number * units[unitIdx].factor;

			if (value > 9.2e18 || value != (double) (int64_t) value)
				return false;
			*ms = (int64_t) value;
			return true;
		}
	}
	return false;
}

bool
bk_parse_bool(const char *text, bool *value)
{
	if (strcasecmp(text, "on") == 0 || strcasecmp(text, "true") == 0 ||
		strcasecmp(text, "yes") == 0 || strcmp(text, "1") == 0)
		*value = true;
	else if (strcasecmp(text, "off") == 0 || strcasecmp(text, "false") == 0 ||
			 strcasecmp(text, "no") == 0 || strcmp(text, "0") == 0)
		*value = false;
	else
		return false;
	return true;
}
