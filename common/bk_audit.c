/*
 * bk_audit.c
 *		Audit events as JSON.  See bk_audit.h.
 *
 * Each field is kept as its key and its value already written as JSON;
 * finishing sorts the fields by key and joins them.  Events are small (a
 * few hundred bytes), so nothing here needs to be clever.
 */
#include "bk_audit.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bk_util.h"

typedef struct AuditField
{
	char *key;
	char *value; /* JSON text */
} AuditField;

struct BkAuditEvent
{
	AuditField *fields;
	size_t count;
	size_t cap;
	bool failed; /* out of memory: finish returns NULL */
};

/* A growable string; on failure it stays failed and empty. */
typedef struct JsonText
{
	char *data;
	size_t len;
	size_t cap;
	bool failed;
} JsonText;

static void
text_add(JsonText *text, const char *data, size_t len)
{
	if (text->failed)
		return;
	if (text->len + len + 1 > text->cap)
	{
		size_t cap = text->cap ? text->cap : 64;
		char *grown;

		while (cap < text->len + len + 1)
			cap *= 2;
		grown = realloc(text->data, cap);
		if (grown == NULL)
		{
			free(text->data);
			*text = (JsonText){.failed = true};
			return;
		}
		text->data = grown;
		text->cap = cap;
	}
	memcpy(text->data + text->len, data, len);
	text->len += len;
	text->data[text->len] = '\0';
}

static void
text_add_str(JsonText *text, const char *str)
{
	text_add(text, str, strlen(str));
}

/* A JSON string literal of len bytes of str. */
static void
text_add_quoted(JsonText *text, const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *) str;
	size_t pos = 0;

	text_add(text, "\"", 1);
	while (pos < len)
	{
		size_t run = 0;
		size_t seq;

		/* Copy plain bytes in one go. */
		while (pos + run < len && s[pos + run] >= 0x20 && s[pos + run] != '"' &&
			   s[pos + run] != '\\' && s[pos + run] < 0x80)
			run++;
		text_add(text, str + pos, run);
		pos += run;
		if (pos == len)
			break;
		if (s[pos] == '"' || s[pos] == '\\')
		{
			char escaped[2] = {'\\', (char) s[pos]};

			text_add(text, escaped, 2);
			pos++;
		}
		else if (s[pos] < 0x20)
		{
			char escaped[8];

			switch (s[pos])
			{
				case '\n':
					text_add_str(text, "\\n");
					break;
				case '\r':
					text_add_str(text, "\\r");
					break;
				case '\t':
					text_add_str(text, "\\t");
					break;
				default:
					snprintf(escaped, sizeof(escaped), "\\u%04x", s[pos]);
					text_add_str(text, escaped);
					break;
			}
			pos++;
		}
		else if ((seq = bk_utf8_sequence(s + pos, len - pos)) > 0)
		{
			text_add(text, str + pos, seq);
			pos += seq;
		}
		else
		{
			text_add_str(text, "\\ufffd");
			pos++;
		}
	}
	text_add(text, "\"", 1);
}

BkAuditEvent *
bk_audit_begin(const char *event_name, const char *source)
{
	BkAuditEvent *event = calloc(1, sizeof(*event));

	if (event == NULL)
		return NULL;
	bk_audit_string(event, "event", event_name);
	bk_audit_string(event, "source", source);
	return event;
}

/* Take value (malloc'd JSON text, or NULL: out of memory) as key's. */
static void
add_field(BkAuditEvent *event, const char *key, char *value)
{
	char *key_copy;

	if (event == NULL || value == NULL)
	{
		free(value);
		if (event != NULL)
			event->failed = true;
		return;
	}
	for (size_t fieldIdx = 0; fieldIdx < event->count; fieldIdx++)
		if (strcmp(event->fields[fieldIdx].key, key) == 0)
		{
			free(event->fields[fieldIdx].value);
			event->fields[fieldIdx].value = value;
			return;
		}
	if (event->count == event->cap)
	{
		size_t cap = event->cap ? event->cap * 2 : 16;
		AuditField *grown = realloc(event->fields, cap * sizeof(*grown));

		if (grown == NULL)
		{
			free(value);
			event->failed = true;
			return;
		}
		event->fields = grown;
		event->cap = cap;
	}
	key_copy = strdup(key);
	if (key_copy == NULL)
	{
		free(value);
		event->failed = true;
		return;
	}
	event->fields[event->count++] = (AuditField){key_copy, value};
}

void
bk_audit_string(BkAuditEvent *event, const char *key, const char *value)
{
	JsonText text = {0};

	text_add_quoted(&text, value, strlen(value));
	add_field(event, key, text.data);
}

void
bk_audit_int(BkAuditEvent *event, const char *key, int64_t value)
{
	char number[32];

	snprintf(number, sizeof(number), "%lld", (long long) value);
	add_field(event, key, strdup(number));
}

void
bk_audit_hex(BkAuditEvent *event, const char *key, const uint8_t *data,
			 size_t len)
{
	char *hex;

	if (event == NULL)
		return;
	hex = malloc(2 * len + 1);
	if (hex == NULL)
	{
		event->failed = true;
		return;
	}
	bk_hex_encode(data, len, hex);
	bk_audit_string(event, key, hex);
	free(hex);
}

static int
field_cmp(const void *a, const void *b)
{
	return strcmp(((const AuditField *) a)->key, ((const AuditField *) b)->key);
}

/* fields as one JSON object, sorted by key; NULL if out of memory. */
static char *
object_text(AuditField *fields, size_t count)
{
	JsonText text = {0};

	qsort(fields, count, sizeof(*fields), field_cmp);
	text_add(&text, "{", 1);
	for (size_t fieldIdx = 0; fieldIdx < count; fieldIdx++)
	{
		if (fieldIdx > 0)
			text_add(&text, ",", 1);
		text_add_quoted(&text, fields[fieldIdx].key,
						strlen(fields[fieldIdx].key));
		text_add(&text, ":", 1);
		text_add_str(&text, fields[fieldIdx].value);
	}
	text_add(&text, "}", 1);
	return text.data;
}

void
bk_audit_meta(BkAuditEvent *event, const char *key, const char *meta,
			  size_t len)
{
	BkAuditEvent nested = {0};
	size_t pos = 0;

	if (event == NULL)
		return;
	while (pos < len && !nested.failed)
	{
		const char *line = meta + pos;
		const char *end = memchr(line, '\n', len - pos);
		size_t line_len = end ? (size_t) (end - line) : len - pos;
		const char *eq = memchr(line, '=', line_len);

		if (eq != NULL)
		{
			size_t key_len = (size_t) (eq - line);
			char *meta_key = malloc(key_len + 1);
			JsonText value = {0};

			if (meta_key == NULL)
			{
				nested.failed = true;
				break;
			}
			memcpy(meta_key, line, key_len);
			meta_key[key_len] = '\0';
			text_add_quoted(&value, eq + 1, line_len - key_len - 1);
			add_field(&nested, meta_key, value.data);
			free(meta_key);
		}
		pos += line_len + 1;
	}
	if (nested.failed)
		event->failed = true;
	else
		add_field(event, key, object_text(nested.fields, nested.count));
	for (size_t fieldIdx = 0; fieldIdx < nested.count; fieldIdx++)
	{
		free(nested.fields[fieldIdx].key);
		free(nested.fields[fieldIdx].value);
	}
	free(nested.fields);
}

char *
bk_audit_finish(BkAuditEvent *event, int64_t wall_ms, size_t *len)
{
	char stamp[40];
	char *text = NULL;

	if (event == NULL)
		return NULL;
	bk_format_time_utc(wall_ms, stamp, sizeof(stamp));
	bk_audit_string(event, "time", stamp);
	if (!event->failed)
		text = object_text(event->fields, event->count);
	bk_audit_free(event);
	if (text != NULL && len != NULL)
		*len = strlen(text);
	return text;
}

void
bk_audit_free(BkAuditEvent *event)
{
	if (event == NULL)
		return;
	for (size_t fieldIdx = 0; fieldIdx < event->count; fieldIdx++)
	{
		free(event->fields[fieldIdx].key);
		free(event->fields[fieldIdx].value);
	}
	free(event->fields);
	free(event);
}
