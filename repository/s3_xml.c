/*
 * s3_xml.c
 *		Element paths and texts of an S3 XML reply, with expat (s3_xml.h).
 */
#include "s3_xml.h"

#include <stdlib.h>
#include <string.h>

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
