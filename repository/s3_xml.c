/*
 * s3_xml.c
 *		Element paths and texts of an S3 XML reply, with expat, and the XML
 *		bodies of S3 requests (s3_xml.h).
 */
#include "s3_xml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <expat.h>

#define XML_PATH_MAX 512
#define XML_TEXT_MAX 65536

typedef struct XmlState
{
	XML_Parser parser;
	BkXmlElementFn fn;
	void *arg;
	BkError *err;
	bool failed;
	char path[XML_PATH_MAX];
	size_t path_len;
	char *text;
	size_t text_len;
} XmlState;

static void
stop(XmlState *state)
{
	state->failed = true;
	XML_StopParser(state->parser, XML_FALSE);
}

static void XMLCALL
element_start(void *data, const XML_Char *name, const XML_Char **attributes)
{
	XmlState *state = data;
	size_t name_len = strlen(name);

	if (state->failed)
		return;
	if (state->path_len + name_len + 2 > sizeof(state->path))
	{
		bk_error_set(state->err, BK_ERR_FORMAT,
					 "S3 reply nests elements too deeply");
		stop(state);
		return;
	}
	if (state->path_len > 0)
		state->path[state->path_len++] = '/';
	memcpy(state->path + state->path_len, name, name_len + 1);
	state->path_len += name_len;
	state->text_len = 0;
	state->text[0] = '\0';
}

static void XMLCALL
element_end(void *data, const XML_Char *name)
{
	XmlState *state = data;
	char *slash;

	if (state->failed)
		return;
	if (!state->fn(state->arg, state->path, state->text, state->err))
	{
		stop(state);
		return;
	}
	slash = strrchr(state->path, '/');
	state->path_len = slash != NULL ? (size_t) (slash - state->path) : 0;
	state->path[state->path_len] = '\0';
	state->text_len = 0;
	state->text[0] = '\0';
}

static void XMLCALL
element_text(void *data, const XML_Char *text, int len)
{
	XmlState *state = data;

	if (state->failed)
		return;
	if (state->text_len + (size_t) len >= XML_TEXT_MAX)
	{
		bk_error_set(state->err, BK_ERR_FORMAT,
					 "S3 reply has an element text over %d bytes",
					 XML_TEXT_MAX);
		stop(state);
		return;
	}
	memcpy(state->text + state->text_len, text, (size_t) len);
	state->text_len += (size_t) len;
	state->text[state->text_len] = '\0';
}

bool
bk_xml_parse(const char *data, size_t len, BkXmlElementFn fn, void *arg,
			 BkError *err)
{
	XmlState state = {.fn = fn, .arg = arg, .err = err};
	bool ok;

	state.text = malloc(XML_TEXT_MAX);
	state.parser = XML_ParserCreate("UTF-8");
	if (state.text == NULL || state.parser == NULL)
	{
		free(state.text);
		if (state.parser != NULL)
			XML_ParserFree(state.parser);
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	}
	state.text[0] = '\0';
	XML_SetUserData(state.parser, &state);
	XML_SetElementHandler(state.parser, element_start, element_end);
	XML_SetCharacterDataHandler(state.parser, element_text);
	ok = XML_Parse(state.parser, data, (int) len, XML_TRUE) == XML_STATUS_OK;
	if (!ok && !state.failed)
		bk_error_set(err, BK_ERR_FORMAT,
					 "malformed XML in an S3 reply (line %lu: %s)",
					 (unsigned long) XML_GetCurrentLineNumber(state.parser),
					 XML_ErrorString(XML_GetErrorCode(state.parser)));
	XML_ParserFree(state.parser);
	free(state.text);
	return ok && !state.failed;
}

/* ------------------------------------------------------------ listings */

/* Longest key kept: S3's limit is 1024 bytes, other stores' no more. */
#define LIST_KEY_MAX 4096

typedef struct ListParse
{
	BkS3ListFn fn;
	void *arg;
	bool root_seen;
	bool truncated_seen;
	bool truncated;
	char *token;
	size_t token_len;
	bool token_seen;
	char key[LIST_KEY_MAX];
	uint64_t size;
	char last_modified[64];
} ListParse;

/* Copy text into out (out_len bytes) or say what does not fit. */
static bool
list_copy(char *out, size_t out_len, const char *text, const char *what,
		  BkError *err)
{
	size_t len = strlen(text);

	if (len >= out_len)
		return bk_error_set(err, BK_ERR_FORMAT,
							"S3 listing has a %s of %zu bytes, more than the "
							"%zu bk keeps",
							what, len, out_len - 1);
	memcpy(out, text, len + 1);
	return true;
}

static bool
list_parse_element(void *arg, const char *path, const char *text, BkError *err)
{
	ListParse *page = arg;

	if (strncmp(path, "ListBucketResult", 16) != 0 ||
		(path[16] != '\0' && path[16] != '/'))
		return true; /* the root is checked when the parse ends */
	if (strcmp(path, "ListBucketResult") == 0)
		page->root_seen = true;
	else if (strcmp(path, "ListBucketResult/Contents/Key") == 0)
		return list_copy(page->key, sizeof(page->key), text, "key", err);
	else if (strcmp(path, "ListBucketResult/Contents/Size") == 0)
		page->size = strtoull(text, NULL, 10);
	else if (strcmp(path, "ListBucketResult/Contents/LastModified") == 0)
		snprintf(page->last_modified, sizeof(page->last_modified), "%s", text);
	else if (strcmp(path, "ListBucketResult/Contents") == 0)
	{
		bool ok;

		if (page->key[0] == '\0')
			return bk_error_set(err, BK_ERR_FORMAT,
								"S3 listing has an entry without a key");
		ok = page->fn(page->arg, page->key, false, page->size,
					  page->last_modified, err);
		page->key[0] = '\0';
		page->size = 0;
		page->last_modified[0] = '\0';
		return ok;
	}
	else if (strcmp(path, "ListBucketResult/CommonPrefixes/Prefix") == 0)
		return page->fn(page->arg, text, true, 0, "", err);
	else if (strcmp(path, "ListBucketResult/IsTruncated") == 0)
	{
		page->truncated_seen = true;
		if (strcasecmp(text, "true") == 0)
			page->truncated = true;
		else if (strcasecmp(text, "false") == 0)
			page->truncated = false;
		else
			return bk_error_set(err, BK_ERR_FORMAT,
								"S3 listing says IsTruncated \"%.64s\"", text);
	}
	else if (strcmp(path, "ListBucketResult/EncodingType") == 0)
		/* bk never asks for encoded keys: taken as they are, they would
		 * name objects that do not exist. */
		return bk_error_set(err, BK_ERR_FORMAT,
							"S3 listing has its keys encoded (EncodingType "
							"\"%.32s\"), which bk did not ask for",
							text);
	else if (strcmp(path, "ListBucketResult/NextContinuationToken") == 0)
	{
		page->token_seen = true;
		return list_copy(page->token, page->token_len, text,
						 "continuation token", err);
	}
	return true;
}

bool
bk_s3_list_parse(const char *data, size_t len, BkS3ListFn fn, void *arg,
				 bool *truncated, char *token, size_t token_len, BkError *err)
{
	ListParse *page = calloc(1, sizeof(*page));
	bool ok;

	if (page == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	page->fn = fn;
	page->arg = arg;
	page->token = token;
	page->token_len = token_len;
	token[0] = '\0';
	ok = bk_xml_parse(data, len, list_parse_element, page, err);
	if (ok && !page->root_seen)
		ok = bk_error_set(err, BK_ERR_FORMAT,
						  "the store's answer is not a listing (no "
						  "ListBucketResult): %.*s",
						  (int) (len < 120 ? len : 120), data);
	else if (ok && !page->truncated_seen)
		ok = bk_error_set(err, BK_ERR_FORMAT,
						  "S3 listing does not say whether it goes on (no "
						  "IsTruncated)");
	else if (ok && page->truncated && (!page->token_seen || token[0] == '\0'))
		ok = bk_error_set(err, BK_ERR_FORMAT,
						  "S3 listing goes on but gives no continuation "
						  "token");
	*truncated = ok && page->truncated;
	free(page);
	return ok;
}

/* ------------------------------------------------------------ deleting */

typedef struct DeleteParse
{
	BkS3DeleteResult *result;
	bool root_seen;
	/* The <Error> element being read, or the root one of an error reply. */
	char key[sizeof(((BkS3DeleteResult *) 0)->first_key)];
	char code[sizeof(((BkS3DeleteResult *) 0)->first_code)];
	char message[sizeof(((BkS3DeleteResult *) 0)->first_message)];
} DeleteParse;

static bool
delete_parse_element(void *arg, const char *path, const char *text,
					 BkError *err)
{
	DeleteParse *reply = arg;
	BkS3DeleteResult *result = reply->result;

	if (strcmp(path, "DeleteResult") == 0)
		reply->root_seen = true;
	else if (strcmp(path, "DeleteResult/Error/Key") == 0)
		snprintf(reply->key, sizeof(reply->key), "%s", text);
	else if (strcmp(path, "DeleteResult/Error/Code") == 0 ||
			 strcmp(path, "Error/Code") == 0)
		snprintf(reply->code, sizeof(reply->code), "%s", text);
	else if (strcmp(path, "DeleteResult/Error/Message") == 0 ||
			 strcmp(path, "Error/Message") == 0)
		snprintf(reply->message, sizeof(reply->message), "%s", text);
	else if (strcmp(path, "DeleteResult/Error") == 0)
	{
		if (strcmp(reply->code, "NoSuchKey") != 0 && result->not_deleted++ == 0)
		{
			memcpy(result->first_key, reply->key, sizeof(reply->key));
			memcpy(result->first_code, reply->code, sizeof(reply->code));
			memcpy(result->first_message, reply->message,
				   sizeof(reply->message));
		}
		reply->key[0] = reply->code[0] = reply->message[0] = '\0';
	}
	return true;
}

bool
bk_s3_delete_result_parse(const char *data, size_t len,
						  BkS3DeleteResult *result, BkError *err)
{
	DeleteParse reply = {.result = result};

	memset(result, 0, sizeof(*result));
	if (!bk_xml_parse(data, len, delete_parse_element, &reply, err))
		return false;
	if (reply.root_seen)
		return true;
	if (reply.code[0])
		return bk_error_set(err, BK_ERR_FORMAT,
							"the store answered with an error, not a "
							"DeleteResult: %s%s%s",
							reply.code, reply.message[0] ? ": " : "",
							reply.message);
	return bk_error_set(err, BK_ERR_FORMAT,
						"the store's answer is not a DeleteResult: %.*s",
						(int) (len < 120 ? len : 120), data);
}

/* ------------------------------------------------------------ writing */

static bool
body_append(BkXmlBody *body, const char *data, size_t len, BkError *err)
{
	if (body->cap - body->len < len + 1)
	{
		size_t cap = body->cap > 0 ? body->cap : 1024;
		char *grown;

		while (len + 1 > cap - body->len)
			cap *= 2;
		if ((grown = realloc(body->data, cap)) == NULL)
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		body->data = grown;
		body->cap = cap;
	}
	memcpy(body->data + body->len, data, len);
	body->len += len;
	body->data[body->len] = '\0';
	return true;
}

bool
bk_xml_body_markup(BkXmlBody *body, const char *markup, BkError *err)
{
	return body_append(body, markup, strlen(markup), err);
}

bool
bk_xml_body_text(BkXmlBody *body, const char *text, BkError *err)
{
	const char *run = text;

	for (const char *pos = text;; pos++)
	{
		const char *entity;

		switch (*pos)
		{
			case '&':
				entity = "&amp;";
				break;
			case '<':
				entity = "&lt;";
				break;
			case '>':
				entity = "&gt;";
				break;
			case '"':
				entity = "&quot;";
				break;
			case '\'':
				entity = "&apos;";
				break;
			default:
				if (*pos == '\0' || (unsigned char) *pos >= 0x20)
					entity = NULL;
				else
					return bk_error_set(err, BK_ERR_FORMAT,
										"\"%s\" has a control character, "
										"which XML cannot carry",
										text);
				break;
		}
		if (entity == NULL && *pos != '\0')
			continue;
		if (!body_append(body, run, (size_t) (pos - run), err))
			return false;
		if (*pos == '\0')
			return true;
		if (!bk_xml_body_markup(body, entity, err))
			return false;
		run = pos + 1;
	}
}

bool
bk_s3_complete_body(BkXmlBody *body, char (*etags)[BK_S3_ETAG_MAX], int count,
					BkError *err)
{
	if (!bk_xml_body_markup(body, "<CompleteMultipartUpload>", err))
		return false;
	for (int partIdx = 0; partIdx < count; partIdx++)
	{
		char number[32];

		snprintf(number, sizeof(number), "%d", partIdx + 1);
		if (!bk_xml_body_markup(body, "<Part><PartNumber>", err) ||
			!bk_xml_body_markup(body, number, err) ||
			!bk_xml_body_markup(body, "</PartNumber><ETag>", err) ||
			!bk_xml_body_text(body, etags[partIdx], err) ||
			!bk_xml_body_markup(body, "</ETag></Part>", err))
			return false;
	}
	return bk_xml_body_markup(body, "</CompleteMultipartUpload>", err);
}

bool
bk_s3_delete_body_add(BkXmlBody *body, const char *key, BkError *err)
{
	return (body->len > 0 ||
			bk_xml_body_markup(body, "<Delete><Quiet>true</Quiet>", err)) &&
		   bk_xml_body_markup(body, "<Object><Key>", err) &&
		   bk_xml_body_text(body, key, err) &&
		   bk_xml_body_markup(body, "</Key></Object>", err);
}

bool
bk_s3_delete_body_end(BkXmlBody *body, BkError *err)
{
	return bk_xml_body_markup(body, "</Delete>", err);
}
