/*
 * s3_xml.h
 *		The XML S3 answers with (listings, errors, multipart replies), read
 *		with expat: each element's path and text are handed to a callback
 *		when the element ends, which is all these small documents need.
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

#endif /* BK_S3_XML_H */
