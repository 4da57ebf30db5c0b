/*
 * s3_xml.h
 *		The XML S3 answers with (listings, errors, multipart replies), read
 *		with expat: each element's path and text are handed to a callback
 *		when the element ends, which is all these small documents need.  And
 *		the two XML bodies bk sends (CompleteMultipartUpload, DeleteObjects),
 *		built in a buffer that grows, with every text escaped.
 */
#ifndef BK_S3_XML_H
#define BK_S3_XML_H

#include <stddef.h>

#include "bk_error.h"

/*
 * path is the element names from the root, joined by "/"
 * ("ListBucketResult/Contents/Key"); text is the element's own text.
 * Return false (with err set) to stop.
 */
typedef bool (*BkXmlElementFn)(void *arg, const char *path, const char *text,
							   BkError *err);

/* Parse a whole document; a malformed one is BK_ERR_FORMAT. */
extern bool bk_xml_parse(const char *data, size_t len, BkXmlElementFn fn,
						 void *arg, BkError *err);

/* An ETag as the store returned it, quotes included, and its terminator. */
#define BK_S3_ETAG_MAX 256

/* A request body being built; zero-initialised, freed with free(data). */
typedef struct BkXmlBody
{
	char *data;
	size_t len;
	size_t cap;
} BkXmlBody;

/* Append markup as is. */
extern bool bk_xml_body_markup(BkXmlBody *body, const char *markup,
							   BkError *err);

/*
 * Append text with & < > " ' escaped.  Control characters, which XML 1.0
 * cannot carry, are BK_ERR_FORMAT.
 */
extern bool bk_xml_body_text(BkXmlBody *body, const char *text, BkError *err);

/* CompleteMultipartUpload for parts 1..count with these ETags. */
extern bool bk_s3_complete_body(BkXmlBody *body, char (*etags)[BK_S3_ETAG_MAX],
								int count, BkError *err);

/*
 * DeleteObjects (quiet): add one key, the first opening the document; end
 * closes it.
 */
extern bool bk_s3_delete_body_add(BkXmlBody *body, const char *key,
								  BkError *err);
extern bool bk_s3_delete_body_end(BkXmlBody *body, BkError *err);

#endif /* BK_S3_XML_H */
