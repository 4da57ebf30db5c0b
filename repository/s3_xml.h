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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/*
 * One entry of a ListObjectsV2 page: an object (its key, size and
 * LastModified text) or, with is_prefix, a common prefix (size 0,
 * last_modified "").  Return false (with err set) to stop.
 */
typedef bool (*BkS3ListFn)(void *arg, const char *key, bool is_prefix,
						   uint64_t size, const char *last_modified,
						   BkError *err);

/*
 * Read one ListObjectsV2 page (ListBucketResult): every entry to fn, in
 * order, then *truncated and, if so, the continuation token into token
 * (token_len bytes).  Whatever would make a page pass for the last one or
 * lose keys is BK_ERR_FORMAT, never a shorter listing: a document that is
 * not a ListBucketResult, an IsTruncated that is neither true nor false,
 * a key or a token longer than bk keeps, a page that goes on without a
 * token.
 */
extern bool bk_s3_list_parse(const char *data, size_t len, BkS3ListFn fn,
							 void *arg, bool *truncated, char *token,
							 size_t token_len, BkError *err);

/*
 * What a DeleteObjects reply (DeleteResult) says the store did not delete:
 * its <Error> elements, each naming a key the store kept, counted, and the
 * first one's key, code and message, for the error that names it.  A
 * NoSuchKey there is not one: the key is gone, which is what a delete
 * wants (a DELETE's 404 is success too).  Texts longer than kept are cut:
 * they only go into a message.
 */
typedef struct BkS3DeleteResult
{
	int not_deleted;
	char first_key[1025]; /* S3's longest key, 1024 bytes */
	char first_code[128];
	char first_message[512];
} BkS3DeleteResult;

/*
 * Read a DeleteObjects reply.  A document that is not a DeleteResult (a
 * 200 whose body is an <Error>, a proxy's page) says nothing of what was
 * deleted: BK_ERR_FORMAT, never taken for "all deleted".
 */
extern bool bk_s3_delete_result_parse(const char *data, size_t len,
									  BkS3DeleteResult *result, BkError *err);

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
