/*
 * snapshot_options.c
 *		bk_snapshot()'s argument, as the SQL caller wrote it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bk_config.h"
#include "bk_util.h"
#include "snapshot_options.h"

/*
 * What the caller gave, in a message: 64 characters at most, so that a
 * long argument cannot crowd the message out (the server keeps 512 bytes).
 * A compound literal: the buffer lives until the end of the statement.
 */
#define EXCERPT_CHARS 64
#define EXCERPT(text)                                                          \
	excerpt((char[EXCERPT_CHARS * 4 + 4]){0}, EXCERPT_CHARS * 4 + 4, (text))

static const char *
excerpt(char *buf, size_t size, const char *text)
{
	bk_text_excerpt(buf, size, text, EXCERPT_CHARS);
	return buf;
}

static bool
set_option(SnapshotOptions *options, const char *key, const char *value,
		   unsigned *seen, BkError *err)
{
	static const char *const keys[] = {"wait", "jobs", "label"};

	for (unsigned idx = 0; idx < sizeof(keys) / sizeof(keys[0]); idx++)
		if (strcmp(key, keys[idx]) == 0)
		{
			if (*seen & (1U << idx))
				return bk_error_set(err, BK_ERR_USAGE,
									"option \"%s\" is given"
									" twice (duplicate)",
									key);
			*seen |= 1U << idx;
		}
	if (strcmp(key, "wait") == 0)
	{
		if (!bk_parse_bool(value, &options->wait))
			return bk_error_set(err, BK_ERR_USAGE,
								"wait must be true or false, not"
								" \"%s\"",
								EXCERPT(value));
		return true;
	}
	if (strcmp(key, "jobs") == 0)
	{
		uint64_t jobs;

		if (!bk_parse_u64(value, &jobs) || jobs < 1 || jobs > SNAPSHOT_JOBS_MAX)
			return bk_error_set(err, BK_ERR_USAGE,
								"jobs must be from 1 to %d, not"
								" \"%s\"",
								SNAPSHOT_JOBS_MAX, EXCERPT(value));
		options->jobs = (int) jobs;
		return true;
	}
	if (strcmp(key, "label") == 0)
	{
		if (strlen(value) > SNAPSHOT_LABEL_MAX)
			return bk_error_set(err, BK_ERR_USAGE,
								"label is longer than %d bytes",
								SNAPSHOT_LABEL_MAX);
		/* It goes into log lines, the record and audit events as is. */
		for (const unsigned char *c = (const unsigned char *) value; *c; c++)
			if (*c < 0x20 || *c == 0x7F)
				return bk_error_set(err, BK_ERR_USAGE,
									"label contains the control"
									" character 0x%02x; use printable text",
									*c);
		bk_strlcpy(options->label, value, sizeof(options->label));
		return true;
	}
	return bk_error_set(err, BK_ERR_USAGE,
						"unknown option \"%s\" (known: wait, jobs,"
						" label)",
						EXCERPT(key));
}

/* Is text only blanks and commas (or nothing)? */
static bool
no_items(const char *text)
{
	return text[strspn(text, " \t\r\n,")] == '\0';
}

/*
 * snapshot_parse_options
 *		'{"wait": false, "label": "x", "jobs": 4}' or 'wait=false,label=x'.
 *		No argument (NULL) means the defaults; an argument with no option in
 *		it ('', ' ', ',') is refused, as the UDF refuses NULL: it comes from
 *		a variable left empty (SET @o = ''; SELECT bk_snapshot(@o)) more
 *		often than from a wish for the defaults, and would start a default
 *		snapshot nobody asked for.  An empty item ('wait=false,,') is refused
 *		too: something meant to be there is missing.
 */
bool
snapshot_parse_options(const char *text, SnapshotOptions *options, BkError *err)
{
	unsigned seen = 0;

	memset(options, 0, sizeof(*options));
	options->wait = true;
	options->jobs = SNAPSHOT_JOBS_DEFAULT;
	if (text == NULL)
		return true;
	if (no_items(text))
		return bk_error_set(err, BK_ERR_USAGE,
							"options are empty; omit the argument for the "
							"defaults");
	while (*text == ' ')
		text++;
	if (*text == '{')
	{
		json_error_t jerr;
		json_t *obj = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
		const char *key;
		json_t *value;

		if (obj == NULL || !json_is_object(obj))
		{
			json_decref(obj);
			return bk_error_set(err, BK_ERR_USAGE,
								"options are not a JSON object:"
								" %s",
								jerr.text);
		}
		json_object_foreach(obj, key, value)
		{
			char buf[SNAPSHOT_LABEL_MAX + 2];
			bool ok;

			if (json_is_string(value) &&
				json_string_length(value) >= sizeof(buf))
			{
				/* Cut short, "00…01x" would pass for 1: refused whole. */
				json_decref(obj);
				return bk_error_set(err, BK_ERR_USAGE,
									"the value of option \"%s\""
									" is too long",
									EXCERPT(key));
			}
			if (json_is_string(value))
				bk_strlcpy(buf, json_string_value(value), sizeof(buf));
			else if (json_is_boolean(value))
				bk_strlcpy(buf, json_is_true(value) ? "true" : "false",
						   sizeof(buf));
			else if (json_is_integer(value))
				snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT,
						 json_integer_value(value));
			else
			{
				json_decref(obj);
				return bk_error_set(err, BK_ERR_USAGE,
									"option \"%s\" has a value of"
									" the wrong type",
									EXCERPT(key));
			}
			ok = set_option(options, key, buf, &seen, err);
			if (!ok)
			{
				json_decref(obj);
				return false;
			}
		}
		json_decref(obj);
		return true;
	}
	{
		char *copy = strdup(text);
		char *next = copy;
		char *item;
		bool ok = true;
		int number = 0;

		if (copy == NULL)
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		/* strsep, not strtok: "a=1,,b=2" has an empty item to refuse. */
		while (ok && (item = strsep(&next, ",")) != NULL)
		{
			char *eq = strchr(item, '=');

			number++;
			while (*item == ' ')
				item++;
			if (item[strspn(item, " \t\r\n")] == '\0')
				ok = bk_error_set(err, BK_ERR_USAGE,
								  "option %d of \"%s\" is empty: remove the "
								  "extra comma",
								  number, EXCERPT(text));
			else if (eq == NULL)
				ok = bk_error_set(err, BK_ERR_USAGE, "\"%s\" is not key=value",
								  EXCERPT(item));
			else
			{
				*eq = '\0';
				ok = set_option(options, item, eq + 1, &seen, err);
			}
		}
		free(copy);
		return ok;
	}
}
