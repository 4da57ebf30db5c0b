/*
 * test_s3_faults.c
 *		The S3 backend against a small S3 store of this test's own, on a
 *		loopback port the kernel picks, which answers as a real store does
 *		and fails as a real one may: a reply lost after the request took
 *		effect (a PUT's, a completion's), an upload aborted under a
 *		shipper, another copy put in place meanwhile, a DeleteObjects 200
 *		that did not delete everything.  Faults s3proxy cannot be made to
 *		show (tests/integration/s3.t runs test_repo on a real one).
 *
 * The store keeps objects (key, size, ETag, x-amz-meta-bk-put-id; the bytes
 * only of objects put whole, which is what a reader needs) and one
 * multipart upload at a time, computes ETags as AWS S3 does, and serves one
 * request per connection, one connection at a time, in a thread of its
 * own: what it shares with the test's thread is under its lock, or atomic.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "bk_util.h"
#include "repo.h"
#include "repo_backend.h"

#define BUCKET        "bucket"
#define STORE_OBJECTS 16
#define STORE_GETS    256
#define PART_SIZE     ((size_t) 5 << 20)

typedef enum CompletionFault
{
	COMPLETION_OK,
	/* Completed, and the connection closed before the answer. */
	COMPLETION_REPLY_LOST,
	/* The upload aborted just before (housekeeping elsewhere). */
	COMPLETION_UPLOAD_ABORTED,
	/* The same, and another shipper's object put in place meanwhile. */
	COMPLETION_UPLOAD_ABORTED_OTHER_IN_PLACE,
	/* Not completed, answered 200 with an empty body (a broken proxy). */
	COMPLETION_NOT_DONE_EMPTY_200,
	/* Completed, answered 200 with an empty body (the result cut off). */
	COMPLETION_DONE_EMPTY_200,
	/*
	 * Completed, and the connection closed before the answer; the retry is
	 * answered 412, as by a store that checks If-None-Match before the
	 * upload id (the object it just completed is in place).
	 */
	COMPLETION_REPLY_LOST_THEN_412,
	/*
	 * The upload aborted just before, and the same bytes (the same ETag)
	 * put in place meanwhile by another shipper's multipart upload (its
	 * own x-amz-meta-bk-put-id): a re-send found in place, not ours.
	 */
	COMPLETION_UPLOAD_ABORTED_SAME_IN_PLACE,
} CompletionFault;

typedef enum PutFault
{
	PUT_OK,
	/* Stored, and the connection closed before the answer. */
	PUT_REPLY_LOST,
	/*
	 * Not stored, the connection closed: the same bytes put in place
	 * meanwhile by another PUT (a shipper before a restart).
	 */
	PUT_LOST_OTHER_IN_PLACE,
	/* Not stored, answered 200 with an <Error> AccessDenied body. */
	PUT_ACCESS_DENIED_IN_200,
} PutFault;

/* The x-amz-meta-bk-put-id of PUT_LOST_OTHER_IN_PLACE's object. */
#define OTHER_PUT_ID "0123456789abcdef0123456789abcdef"

typedef struct StoredObject
{
	char key[1100];
	uint8_t *data; /* NULL for a multipart object */
	size_t len;
	char etag[80];   /* quoted */
	char put_id[64]; /* x-amz-meta-bk-put-id, "" if none */
} StoredObject;

typedef struct FakeStore
{
	int listen_fd;
	int port;
	pthread_t thread;
	atomic_bool stop;

	/*
	 * Held by the store's thread while it serves a request, and by the
	 * test's thread to set a fault or look at the objects (store_set_*,
	 * store_etag, store_put): everything from here to the counters.  Never
	 * held across a request to the store, nor around a cmocka assert (a
	 * failed one would leave it held).
	 */
	pthread_mutex_t lock;

	StoredObject objects[STORE_OBJECTS];
	int object_count;

	char upload_id[32];     /* "" if no upload is open */
	char upload_put_id[64]; /* its x-amz-meta-bk-put-id, "" if none */
	bool condition_first;   /* the next completion: 412 before NoSuchUpload */
	int upload_serial;
	uint8_t part_md5[4][16];
	size_t part_len[4];
	int part_count;

	CompletionFault completion_fault;
	PutFault put_fault;
	bool reads_denied;          /* HEAD and GET: 403 AccessDenied */
	bool upload_listing_denied; /* ListMultipartUploads: 403 AccessDenied */
	char expired_token[64];     /* requests with this session token: 400 */
	int expired_delay_ms;       /* before answering ExpiredToken */
	atomic_bool expired_held;   /* ExpiredToken answered once it is false
								 * (10 s at most) */
	bool if_none_match_ignored; /* PUT: as stores without conditional
								 * writes, always 200 */
	bool if_none_match_unimplemented;    /* PUT with it: 501 */
	bool complete_if_none_match_ignored; /* CompleteMultipartUpload: the
										  * condition ignored, PUT's kept */
	bool reads_slowed_down;              /* GET: 503 SlowDown */
	int get_delay_ms;                    /* before answering a GET */
	int gets_refused;                    /* the next ones: 400 InvalidRequest */
	const char *delete_reply;            /* the DeleteObjects answer's body */
	int trickle_s; /* GET: its body a byte a second, this many at most */
	/*
	 * Listings (of objects, of uploads) that say they go on with the
	 * continuation token or markers they were sent, this many times.
	 */
	int listing_repeats;
	int listings_cut;         /* the next ones: a 200 whose XML stops halfway */
	atomic_int listing_pages; /* listing pages served */

	/*
	 * What the store did not expect, said here and checked by the test's
	 * thread (once the store's has ended): cmocka's asserts are not for
	 * other threads.
	 */
	char unexpected[512];

	/* The length of the last request's session token (0: none). */
	atomic_size_t token_len;

	/* Counted by the store's thread, read and reset by the test's. */
	atomic_int completions; /* CompleteMultipartUpload requests */
	atomic_int puts;        /* PutObject requests */
	atomic_int heads;
	atomic_int deletes;    /* DeleteObjects requests */
	atomic_int slow_downs; /* 503 SlowDown answers */

	/* The byte ranges of object GETs, in order (under lock). */
	size_t get_first[STORE_GETS];
	size_t get_last[STORE_GETS];
	int get_count;
} FakeStore;

/* One request, read whole. */
typedef struct Request
{
	char method[16];
	char key[1100]; /* decoded, without "/bucket/"; "" for the bucket */
	char query[4096];
	char range[64];
	char put_id[64];  /* x-amz-meta-bk-put-id */
	char token[64];   /* x-amz-security-token */
	size_t token_len; /* its whole length */
	bool if_none_match;
	bool other_bucket; /* not BUCKET: the store has no such bucket */
	uint8_t *body;
	size_t body_len;
} Request;

/* ------------------------------------------------------------ helpers */

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode len bytes of in into out. */
static void
url_decode(const char *in, size_t len, char *out, size_t out_len)
{
	size_t got = 0;

	for (size_t pos = 0; pos < len && got + 1 < out_len; pos++)
	{
		if (in[pos] == '%' && pos + 2 < len && hex_value(in[pos + 1]) >= 0 &&
			hex_value(in[pos + 2]) >= 0)
		{
			out[got++] =
				(char) (hex_value(in[pos + 1]) * 16 + hex_value(in[pos + 2]));
			pos += 2;
		}
		else
			out[got++] = in[pos];
	}
	out[got] = '\0';
}

/* The decoded value of query parameter name, or NULL if absent. */
static const char *
query_get(const Request *request, const char *name, char *out, size_t out_len)
{
	size_t name_len = strlen(name);

	for (const char *param = request->query; *param;)
	{
		size_t len = strcspn(param, "&");

		if (strncmp(param, name, name_len) == 0 &&
			(param[name_len] == '=' || name_len == len))
		{
			const char *value =
				param[name_len] == '=' ? param + name_len + 1 : param + len;

			url_decode(value, (size_t) (param + len - value), out, out_len);
			return out;
		}
		param += len;
		if (*param == '&')
			param++;
	}
	return NULL;
}

static void
md5_hex(const void *data, size_t len, char out[33])
{
	uint8_t digest[16];
	unsigned int digest_len = 0;

	EVP_Digest(data, len, digest, &digest_len, EVP_md5(), NULL);
	bk_hex_encode(digest, sizeof(digest), out);
}

static StoredObject *
object_find(FakeStore *store, const char *key)
{
	for (int objIdx = 0; objIdx < store->object_count; objIdx++)
		if (strcmp(store->objects[objIdx].key, key) == 0)
			return &store->objects[objIdx];
	return NULL;
}

/*
 * Put (replacing) an object; data NULL for one completed from parts.
 * NULL if the store is full.
 */
static StoredObject *
object_put(FakeStore *store, const char *key, const uint8_t *data, size_t len,
		   const char *etag)
{
	StoredObject *object = object_find(store, key);

	if (object == NULL)
	{
		if (store->object_count == STORE_OBJECTS)
			return NULL;
		object = &store->objects[store->object_count++];
	}
	free(object->data);
	bk_strlcpy(object->key, key, sizeof(object->key));
	object->data = NULL;
	if (data != NULL && (object->data = malloc(len + 1)) != NULL)
		memcpy(object->data, data, len);
	object->len = len;
	bk_strlcpy(object->etag, etag, sizeof(object->etag));
	object->put_id[0] = '\0';
	return object;
}

static void
object_remove(FakeStore *store, const char *key)
{
	StoredObject *object = object_find(store, key);

	if (object == NULL)
		return;
	free(object->data);
	*object = store->objects[--store->object_count];
	memset(&store->objects[store->object_count], 0, sizeof(*object));
}

/* ------------------------------------------------------------ the wire */

static bool
send_all(int fd, const void *data, size_t len)
{
	const char *pos = data;

	while (len > 0)
	{
		ssize_t sent = send(fd, pos, len, MSG_NOSIGNAL);

		if (sent <= 0)
			return false;
		pos += sent;
		len -= (size_t) sent;
	}
	return true;
}

/* An answer: status, extra header lines ("" or each ending "\r\n"), body. */
static void
reply(int fd, int status, const char *headers, const void *body,
	  size_t body_len, bool head)
{
	char head_text[1024];
	int len = snprintf(head_text, sizeof(head_text),
					   "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n"
					   "Connection: close\r\n%s\r\n",
					   status, body_len, headers);

	if (send_all(fd, head_text, (size_t) len) && !head && body_len > 0)
		send_all(fd, body, body_len);
}

static void
reply_xml(int fd, int status, const char *xml)
{
	reply(fd, status, "Content-Type: application/xml\r\n", xml, strlen(xml),
		  false);
}

static void
reply_error(int fd, int status, const char *code)
{
	char xml[512];

	snprintf(xml, sizeof(xml),
			 "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s"
			 "</Code><Message>%s, said the test store</Message></Error>",
			 code, code);
	reply_xml(fd, status, xml);
}

/* Read one request from fd; false if the client went away. */
static bool
request_read(int fd, Request *request)
{
	char head[16384];
	char request_line[8192];
	size_t got = 0;
	char *end = NULL;
	char *target;
	char *query;
	char *space;
	size_t content_length = 0;
	size_t body_have;

	memset(request, 0, sizeof(*request));
	while (end == NULL)
	{
		ssize_t len;

		if (got + 1 >= sizeof(head))
			return false;
		len = recv(fd, head + got, sizeof(head) - 1 - got, 0);
		if (len <= 0)
			return false;
		got += (size_t) len;
		head[got] = '\0';
		end = strstr(head, "\r\n\r\n");
	}
	body_have = got - (size_t) (end + 4 - head);
	end[2] = '\0'; /* every header line ends "\r\n" */

	for (char *line = strstr(head, "\r\n") + 2; *line;
		 line = strstr(line, "\r\n") + 2)
	{
		if (strncasecmp(line, "Content-Length:", 15) == 0)
			content_length = strtoull(line + 15, NULL, 10);
		else if (strncasecmp(line, "If-None-Match: *", 16) == 0)
			request->if_none_match = true;
		else if (strncasecmp(line, "Range: ", 7) == 0)
			sscanf(line + 7, "%63[^\r]", request->range);
		else if (strncasecmp(line, "x-amz-meta-bk-put-id: ", 22) == 0)
			sscanf(line + 22, "%63[^\r]", request->put_id);
		else if (strncasecmp(line, "x-amz-security-token: ", 22) == 0)
		{
			sscanf(line + 22, "%63[^\r]", request->token);
			request->token_len = strcspn(line + 22, "\r");
		}
	}

	/* "METHOD /bucket/key?query HTTP/1.1" */
	snprintf(request_line, sizeof(request_line), "%.*s",
			 (int) strcspn(head, "\r"), head);
	target = strchr(request_line, ' ');
	if (target == NULL || (space = strchr(target + 1, ' ')) == NULL)
		return false;
	*target++ = '\0';
	*space = '\0';
	bk_strlcpy(request->method, request_line, sizeof(request->method));
	query = strchr(target, '?');
	if (query != NULL)
	{
		*query++ = '\0';
		bk_strlcpy(request->query, query, sizeof(request->query));
	}
	if (strncmp(target, "/" BUCKET "/", strlen(BUCKET) + 2) == 0)
		target += strlen(BUCKET) + 2;
	else if (target[0] == '/')
	{
		request->other_bucket = true;
		target += 1 + strcspn(target + 1, "/");
	}
	else
		return false;
	url_decode(target, strlen(target), request->key, sizeof(request->key));

	request->body = malloc(content_length + 1);
	if (request->body == NULL)
		return false;
	request->body_len = content_length;
	memcpy(request->body, end + 4, body_have);
	while (body_have < content_length)
	{
		ssize_t len =
			recv(fd, request->body + body_have, content_length - body_have, 0);

		if (len <= 0)
		{
			free(request->body);
			return false;
		}
		body_have += (size_t) len;
	}
	return true;
}

/* ------------------------------------------------------------ the store */

/* A request the store cannot answer: told to the test, refused. */
static void
store_unexpected(FakeStore *store, int fd, const Request *request,
				 const char *why)
{
	if (store->unexpected[0] == '\0')
		snprintf(store->unexpected, sizeof(store->unexpected), "%s %s?%s: %s",
				 request->method, request->key, request->query, why);
	reply_error(fd, 400, "InvalidRequest");
}

/* Text as XML carries it (keys such as "b&c"). */
static size_t
xml_escaped(char *out, size_t out_len, const char *text)
{
	size_t len = 0;

	for (; *text && len + 6 < out_len; text++)
	{
		const char *entity = *text == '&'   ? "&amp;"
							 : *text == '<' ? "&lt;"
							 : *text == '>' ? "&gt;"
											: NULL;

		if (entity != NULL)
			len += (size_t) snprintf(out + len, out_len - len, "%s", entity);
		else
			out[len++] = *text;
	}
	out[len] = '\0';
	return len;
}

static void
serve_listing(FakeStore *store, int fd, const Request *request)
{
	char prefix[1100] = "";
	char key[4096];
	char *xml = malloc(65536);
	size_t len;

	if (xml == NULL)
	{
		store_unexpected(store, fd, request, "out of memory");
		return;
	}
	query_get(request, "prefix", prefix, sizeof(prefix));
	store->listing_pages++;
	if (store->listing_repeats > 0)
	{
		store->listing_repeats--;
		snprintf(xml, 65536,
				 "<ListBucketResult><Name>" BUCKET "</Name><IsTruncated>true"
				 "</IsTruncated><NextContinuationToken>same-token"
				 "</NextContinuationToken><Contents><Key>%ssrc/wal/x</Key>"
				 "<Size>1</Size><LastModified>2026-01-02T03:04:05.000Z"
				 "</LastModified></Contents></ListBucketResult>",
				 prefix);
		reply_xml(fd, 200, xml);
		free(xml);
		return;
	}
	len = (size_t) snprintf(xml, 65536,
							"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
							"<ListBucketResult><Name>" BUCKET
							"</Name><IsTruncated>false</IsTruncated>");
	for (int objIdx = 0; objIdx < store->object_count; objIdx++)
	{
		const StoredObject *object = &store->objects[objIdx];

		if (strncmp(object->key, prefix, strlen(prefix)) != 0)
			continue;
		xml_escaped(key, sizeof(key), object->key);
		len += (size_t) snprintf(
			xml + len, 65536 - len,
			"<Contents><Key>%s</Key><Size>%zu</Size><LastModified>"
			"2026-01-02T03:04:05.000Z</LastModified></Contents>",
			key, object->len);
	}
	len += (size_t) snprintf(xml + len, 65536 - len, "</ListBucketResult>");
	if (store->listings_cut > 0)
	{
		store->listings_cut--;
		xml[len / 2] = '\0';
	}
	reply_xml(fd, 200, xml);
	free(xml);
}

static void
serve_get(FakeStore *store, int fd, const Request *request)
{
	const StoredObject *object = object_find(store, request->key);
	size_t first = 0;
	size_t last;
	char headers[256];

	if (store->get_delay_ms > 0)
		usleep((useconds_t) store->get_delay_ms * 1000);
	if (store->gets_refused > 0)
	{
		store->gets_refused--;
		reply_error(fd, 400, "InvalidRequest");
		return;
	}
	if (object == NULL)
	{
		reply_error(fd, 404, "NoSuchKey");
		return;
	}
	if (object->data == NULL)
	{
		store_unexpected(store, fd, request,
						 "a read of an object whose bytes it did not keep");
		return;
	}
	if (object->len == 0)
	{
		reply(fd, request->range[0] ? 416 : 200, "", "", 0, false);
		return;
	}
	last = object->len - 1;
	if (request->range[0])
	{
		if (sscanf(request->range, "bytes=%zu-%zu", &first, &last) != 2 ||
			first >= object->len)
		{
			store_unexpected(store, fd, request, "a range it cannot serve");
			return;
		}
		if (last >= object->len)
			last = object->len - 1;
	}
	snprintf(headers, sizeof(headers),
			 "ETag: %s\r\nContent-Range: bytes %zu-%zu/%zu\r\n", object->etag,
			 first, last, object->len);
	if (store->trickle_s > 0)
	{
		/*
		 * A store that keeps the connection alive with a byte a second,
		 * never slow enough for curl's low-speed limit; it gives up when
		 * the client has gone, or after trickle_s bytes.
		 */
		char head[512];
		int head_len =
			snprintf(head, sizeof(head),
					 "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n"
					 "Connection: close\r\n%s\r\n",
					 request->range[0] ? 206 : 200, last - first + 1, headers);
		bool sent = send_all(fd, head, (size_t) head_len);

		for (int byteIdx = 0;
			 sent && !store->stop && byteIdx < store->trickle_s &&
			 first + byteIdx <= last;
			 byteIdx++)
		{
			sleep(1);
			sent = send_all(fd, object->data + first + byteIdx, 1);
		}
		return;
	}
	reply(fd, request->range[0] ? 206 : 200, headers, object->data + first,
		  last - first + 1, false);
}

static void
serve_complete(FakeStore *store, int fd, const Request *request)
{
	char upload_id[64] = "";
	uint8_t *md5s = (uint8_t *) store->part_md5;
	uint8_t digest[16];
	unsigned int digest_len = 0;
	char hex[33];
	char etag[80];
	char xml[1024];
	size_t len = 0;
	StoredObject *object;

	store->completions++;
	query_get(request, "uploadId", upload_id, sizeof(upload_id));
	/* AWS S3's ETag of a multipart object: MD5 of the parts' MD5s, count. */
	EVP_Digest(md5s, (size_t) store->part_count * 16, digest, &digest_len,
			   EVP_md5(), NULL);
	bk_hex_encode(digest, sizeof(digest), hex);
	snprintf(etag, sizeof(etag), "\"%s-%d\"", hex, store->part_count);
	for (int partIdx = 0; partIdx < store->part_count; partIdx++)
		len += store->part_len[partIdx];
	if (store->completion_fault == COMPLETION_UPLOAD_ABORTED ||
		store->completion_fault == COMPLETION_UPLOAD_ABORTED_OTHER_IN_PLACE ||
		store->completion_fault == COMPLETION_UPLOAD_ABORTED_SAME_IN_PLACE)
	{
		store->upload_id[0] = '\0';
		if (store->completion_fault ==
				COMPLETION_UPLOAD_ABORTED_OTHER_IN_PLACE &&
			object_put(store, request->key, NULL, PART_SIZE + 1,
					   "\"0123456789abcdef0123456789abcdef-2\"") == NULL)
		{
			store_unexpected(store, fd, request, "full");
			return;
		}
		if (store->completion_fault == COMPLETION_UPLOAD_ABORTED_SAME_IN_PLACE)
		{
			object = object_put(store, request->key, NULL, len, etag);
			if (object == NULL)
			{
				store_unexpected(store, fd, request, "full");
				return;
			}
			bk_strlcpy(object->put_id, OTHER_PUT_ID, sizeof(object->put_id));
		}
		store->completion_fault = COMPLETION_OK;
	}
	if (store->completion_fault == COMPLETION_NOT_DONE_EMPTY_200)
	{
		store->completion_fault = COMPLETION_OK;
		reply(fd, 200, "", "", 0, false);
		return;
	}
	if (store->condition_first && request->if_none_match &&
		object_find(store, request->key) != NULL)
	{
		store->condition_first = false;
		reply_error(fd, 412, "PreconditionFailed");
		return;
	}
	if (store->upload_id[0] == '\0' || strcmp(upload_id, store->upload_id) != 0)
	{
		reply_error(fd, 404, "NoSuchUpload");
		return;
	}
	if (request->if_none_match && !store->complete_if_none_match_ignored &&
		object_find(store, request->key) != NULL)
	{
		reply_error(fd, 412, "PreconditionFailed");
		return;
	}
	object = object_put(store, request->key, NULL, len, etag);
	if (object == NULL)
	{
		store_unexpected(store, fd, request, "full");
		return;
	}
	bk_strlcpy(object->put_id, store->upload_put_id, sizeof(object->put_id));
	store->upload_id[0] = '\0';
	if (store->completion_fault == COMPLETION_REPLY_LOST ||
		store->completion_fault == COMPLETION_REPLY_LOST_THEN_412)
	{
		/* Done, and the answer never leaves: the connection just closes. */
		store->condition_first =
			store->completion_fault == COMPLETION_REPLY_LOST_THEN_412;
		store->completion_fault = COMPLETION_OK;
		return;
	}
	if (store->completion_fault == COMPLETION_DONE_EMPTY_200)
	{
		store->completion_fault = COMPLETION_OK;
		reply(fd, 200, "", "", 0, false);
		return;
	}
	snprintf(xml, sizeof(xml),
			 "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			 "<CompleteMultipartUploadResult><Bucket>" BUCKET "</Bucket><Key>"
			 "%s</Key><ETag>&quot;%s-%d&quot;</ETag>"
			 "</CompleteMultipartUploadResult>",
			 request->key, hex, store->part_count);
	reply_xml(fd, 200, xml);
}

/* Note a GET of an object's range, whatever the answer. */
static void
log_get(FakeStore *store, const Request *request)
{
	size_t first = 0;
	size_t last = SIZE_MAX;

	if (strcmp(request->method, "GET") != 0 || request->key[0] == '\0' ||
		request->query[0] != '\0')
		return;
	if (request->range[0])
		sscanf(request->range, "bytes=%zu-%zu", &first, &last);
	if (store->get_count < STORE_GETS)
	{
		store->get_first[store->get_count] = first;
		store->get_last[store->get_count] = last;
	}
	store->get_count++;
}

static void
serve(FakeStore *store, int fd, const Request *request)
{
	char value[64];
	char hex[33];
	char headers[256];
	StoredObject *object;

	if (request->other_bucket)
	{
		reply_error(fd, 404, "NoSuchBucket");
		return;
	}
	log_get(store, request);
	store->token_len = request->token_len;
	if (store->expired_token[0] &&
		strcmp(request->token, store->expired_token) == 0)
	{
		if (store->expired_delay_ms > 0)
			usleep((useconds_t) store->expired_delay_ms * 1000);
		for (int waited = 0;
			 atomic_load(&store->expired_held) && waited < 10000; waited += 10)
			usleep(10 * 1000);
		reply_error(fd, 400, "ExpiredToken");
	}
	else if (store->reads_denied &&
			 (strcmp(request->method, "HEAD") == 0 ||
			  (strcmp(request->method, "GET") == 0 && request->key[0] != '\0')))
	{
		store->heads += strcmp(request->method, "HEAD") == 0;
		reply_error(fd, 403, "AccessDenied");
	}
	else if (store->reads_slowed_down && strcmp(request->method, "GET") == 0 &&
			 request->key[0] != '\0')
	{
		store->slow_downs++;
		reply_error(fd, 503, "SlowDown");
	}
	else if (strcmp(request->method, "HEAD") == 0)
	{
		store->heads++;
		object = object_find(store, request->key);
		if (object == NULL)
			reply(fd, 404, "", "", 0, true);
		else
		{
			snprintf(headers, sizeof(headers), "ETag: %s\r\n%s%s%s",
					 object->etag,
					 object->put_id[0] ? "x-amz-meta-bk-put-id: " : "",
					 object->put_id, object->put_id[0] ? "\r\n" : "");
			reply(fd, 200, headers, "", object->len, true);
		}
	}
	else if (strcmp(request->method, "GET") == 0 &&
			 query_get(request, "uploads", value, sizeof(value)) &&
			 store->upload_listing_denied)
		reply_error(fd, 403, "AccessDenied");
	else if (strcmp(request->method, "GET") == 0 &&
			 query_get(request, "uploads", value, sizeof(value)) &&
			 store->listing_repeats > 0)
	{
		store->listing_repeats--;
		store->listing_pages++;
		reply_xml(fd, 200,
				  "<ListMultipartUploadsResult><Bucket>" BUCKET
				  "</Bucket><IsTruncated>true</IsTruncated>"
				  "<NextKeyMarker>pre/src/wal/x</NextKeyMarker>"
				  "<NextUploadIdMarker>upload-x</NextUploadIdMarker>"
				  "</ListMultipartUploadsResult>");
	}
	else if (strcmp(request->method, "GET") == 0 &&
			 query_get(request, "uploads", value, sizeof(value)))
		reply_xml(fd, 200,
				  "<ListMultipartUploadsResult><Bucket>" BUCKET
				  "</Bucket><IsTruncated>false</IsTruncated>"
				  "</ListMultipartUploadsResult>");
	else if (strcmp(request->method, "GET") == 0 && request->key[0] == '\0')
		serve_listing(store, fd, request);
	else if (strcmp(request->method, "GET") == 0)
		serve_get(store, fd, request);
	else if (strcmp(request->method, "PUT") == 0 &&
			 query_get(request, "partNumber", value, sizeof(value)))
	{
		int number = atoi(value);
		char upload_id[64] = "";

		query_get(request, "uploadId", upload_id, sizeof(upload_id));
		if (store->upload_id[0] == '\0' ||
			strcmp(upload_id, store->upload_id) != 0)
		{
			reply_error(fd, 404, "NoSuchUpload");
			return;
		}
		if (number < 1 || number > 4)
		{
			store_unexpected(store, fd, request, "a part beyond the 4th");
			return;
		}
		EVP_Digest(request->body, request->body_len,
				   store->part_md5[number - 1], NULL, EVP_md5(), NULL);
		store->part_len[number - 1] = request->body_len;
		if (number > store->part_count)
			store->part_count = number;
		md5_hex(request->body, request->body_len, hex);
		snprintf(headers, sizeof(headers), "ETag: \"%s\"\r\n", hex);
		reply(fd, 200, headers, "", 0, false);
	}
	else if (strcmp(request->method, "PUT") == 0)
	{
		char etag[40];
		PutFault fault = store->put_fault;

		store->puts++;
		store->put_fault = PUT_OK;
		if (fault == PUT_ACCESS_DENIED_IN_200)
		{
			reply_error(fd, 200, "AccessDenied");
			return;
		}
		if (request->if_none_match && store->if_none_match_unimplemented)
		{
			reply_error(fd, 501, "NotImplemented");
			return;
		}
		if (request->if_none_match && !store->if_none_match_ignored &&
			object_find(store, request->key))
		{
			reply_error(fd, 412, "PreconditionFailed");
			return;
		}
		md5_hex(request->body, request->body_len, hex);
		snprintf(etag, sizeof(etag), "\"%s\"", hex);
		object = object_put(store, request->key, request->body,
							request->body_len, etag);
		if (object == NULL)
		{
			store_unexpected(store, fd, request, "full");
			return;
		}
		/* Gone before the answer: just the connection closing. */
		if (fault == PUT_LOST_OTHER_IN_PLACE)
		{
			bk_strlcpy(object->put_id, OTHER_PUT_ID, sizeof(object->put_id));
			return;
		}
		bk_strlcpy(object->put_id, request->put_id, sizeof(object->put_id));
		if (fault == PUT_REPLY_LOST)
			return;
		snprintf(headers, sizeof(headers), "ETag: %s\r\n", etag);
		reply(fd, 200, headers, "", 0, false);
	}
	else if (strcmp(request->method, "POST") == 0 &&
			 query_get(request, "uploads", value, sizeof(value)))
	{
		char xml[512];

		snprintf(store->upload_id, sizeof(store->upload_id), "upload-%d",
				 ++store->upload_serial);
		bk_strlcpy(store->upload_put_id, request->put_id,
				   sizeof(store->upload_put_id));
		store->part_count = 0;
		snprintf(xml, sizeof(xml),
				 "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
				 "<InitiateMultipartUploadResult><Bucket>" BUCKET
				 "</Bucket><Key>%s</Key><UploadId>%s</UploadId>"
				 "</InitiateMultipartUploadResult>",
				 request->key, store->upload_id);
		reply_xml(fd, 200, xml);
	}
	else if (strcmp(request->method, "POST") == 0 &&
			 query_get(request, "uploadId", value, sizeof(value)))
		serve_complete(store, fd, request);
	else if (strcmp(request->method, "POST") == 0 &&
			 query_get(request, "delete", value, sizeof(value)))
	{
		store->deletes++;
		reply_xml(fd, 200, store->delete_reply);
	}
	else if (strcmp(request->method, "DELETE") == 0 &&
			 query_get(request, "uploadId", value, sizeof(value)))
	{
		if (strcmp(value, store->upload_id) == 0)
			store->upload_id[0] = '\0';
		reply(fd, 204, "", "", 0, false);
	}
	else if (strcmp(request->method, "DELETE") == 0)
	{
		object_remove(store, request->key);
		reply(fd, 204, "", "", 0, false);
	}
	else
		store_unexpected(store, fd, request, "not a request it knows");
}

static void *
store_run(void *arg)
{
	FakeStore *store = arg;

	while (!store->stop)
	{
		struct pollfd pfd = {.fd = store->listen_fd, .events = POLLIN};
		Request request;
		int fd;

		if (poll(&pfd, 1, 50) <= 0)
			continue;
		fd = accept(store->listen_fd, NULL, NULL);
		if (fd < 0)
			continue;
		if (request_read(fd, &request))
		{
			pthread_mutex_lock(&store->lock);
			serve(store, fd, &request);
			pthread_mutex_unlock(&store->lock);
			free(request.body);
		}
		close(fd);
	}
	return NULL;
}

static void
store_start(FakeStore *store)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	socklen_t addr_len = sizeof(addr);

	memset(store, 0, sizeof(*store));
	atomic_init(&store->stop, false);
	atomic_init(&store->completions, 0);
	atomic_init(&store->puts, 0);
	atomic_init(&store->heads, 0);
	atomic_init(&store->deletes, 0);
	atomic_init(&store->slow_downs, 0);
	atomic_init(&store->listing_pages, 0);
	atomic_init(&store->token_len, 0);
	atomic_init(&store->expired_held, false);
	assert_int_equal(pthread_mutex_init(&store->lock, NULL), 0);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	store->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(store->listen_fd >= 0);
	/* Port 0: one the kernel picks, nobody else's. */
	assert_int_equal(
		bind(store->listen_fd, (struct sockaddr *) &addr, sizeof(addr)), 0);
	assert_int_equal(listen(store->listen_fd, 16), 0);
	assert_int_equal(
		getsockname(store->listen_fd, (struct sockaddr *) &addr, &addr_len), 0);
	store->port = ntohs(addr.sin_port);
	assert_int_equal(pthread_create(&store->thread, NULL, store_run, store), 0);
}

static void
store_stop(FakeStore *store)
{
	store->stop = true;
	pthread_join(store->thread, NULL);
	close(store->listen_fd);
	for (int objIdx = 0; objIdx < store->object_count; objIdx++)
		free(store->objects[objIdx].data);
	pthread_mutex_destroy(&store->lock);
}

/* The test's thread: the fault of the next completions. */
static void
store_set_fault(FakeStore *store, CompletionFault fault)
{
	pthread_mutex_lock(&store->lock);
	store->completion_fault = fault;
	pthread_mutex_unlock(&store->lock);
}

/* The test's thread: the fault of the next PutObject. */
static void
store_set_put_fault(FakeStore *store, PutFault fault)
{
	pthread_mutex_lock(&store->lock);
	store->put_fault = fault;
	pthread_mutex_unlock(&store->lock);
}

/* The test's thread: refuse reads of objects, or no longer. */
static void
store_deny_reads(FakeStore *store, bool denied)
{
	pthread_mutex_lock(&store->lock);
	store->reads_denied = denied;
	pthread_mutex_unlock(&store->lock);
}

/* The test's thread: answer reads with 503 SlowDown, or no longer. */
static void
store_slow_down_reads(FakeStore *store, bool slowed_down)
{
	pthread_mutex_lock(&store->lock);
	store->reads_slowed_down = slowed_down;
	pthread_mutex_unlock(&store->lock);
}

/* The test's thread: the GETs of objects so far, and forget them. */
static int
store_take_gets(FakeStore *store, size_t *first, size_t *last, int max)
{
	int count;

	pthread_mutex_lock(&store->lock);
	count = store->get_count < max ? store->get_count : max;
	memcpy(first, store->get_first, (size_t) count * sizeof(*first));
	memcpy(last, store->get_last, (size_t) count * sizeof(*last));
	store->get_count = 0;
	pthread_mutex_unlock(&store->lock);
	return count;
}

/* The test's thread: GETs of objects so far. */
static int
store_get_count(FakeStore *store)
{
	int count;

	pthread_mutex_lock(&store->lock);
	count = store->get_count;
	pthread_mutex_unlock(&store->lock);
	return count;
}

/* The test's thread: the largest first byte a GET asked for so far. */
static size_t
store_farthest_get(FakeStore *store)
{
	size_t farthest = 0;

	pthread_mutex_lock(&store->lock);
	for (int getIdx = 0; getIdx < store->get_count && getIdx < STORE_GETS;
		 getIdx++)
		if (store->get_first[getIdx] > farthest)
			farthest = store->get_first[getIdx];
	pthread_mutex_unlock(&store->lock);
	return farthest;
}

/* The test's thread: answer the next count GETs of objects with a 400. */
static void
store_refuse_gets(FakeStore *store, int count)
{
	pthread_mutex_lock(&store->lock);
	store->gets_refused = count;
	pthread_mutex_unlock(&store->lock);
}

/* The test's thread: wait ms before answering each GET, or no longer. */
static void
store_delay_gets(FakeStore *store, int ms)
{
	pthread_mutex_lock(&store->lock);
	store->get_delay_ms = ms;
	pthread_mutex_unlock(&store->lock);
}

/* The test's thread: trickle GETs' bodies, a byte a second, or no longer. */
static void
store_trickle_gets(FakeStore *store, int seconds)
{
	pthread_mutex_lock(&store->lock);
	store->trickle_s = seconds;
	pthread_mutex_unlock(&store->lock);
}

/* The test's thread: the next count listing pages repeat their token. */
static void
store_repeat_listings(FakeStore *store, int count)
{
	pthread_mutex_lock(&store->lock);
	store->listing_repeats = count;
	store->listing_pages = 0;
	pthread_mutex_unlock(&store->lock);
}

/* The test's thread: the body of the next DeleteObjects answers. */
static void
store_set_delete_reply(FakeStore *store, const char *xml)
{
	pthread_mutex_lock(&store->lock);
	store->delete_reply = xml;
	pthread_mutex_unlock(&store->lock);
}

/* The test's thread: is key stored, and its ETag (quoted) if so. */
static bool
store_etag(FakeStore *store, const char *key, char etag[80])
{
	const StoredObject *object;

	pthread_mutex_lock(&store->lock);
	object = object_find(store, key);
	if (object != NULL)
		bk_strlcpy(etag, object->etag, 80);
	pthread_mutex_unlock(&store->lock);
	return object != NULL;
}

/* The test's thread: is key stored, and its x-amz-meta-bk-put-id if so. */
static bool
store_put_id(FakeStore *store, const char *key, char put_id[64])
{
	const StoredObject *object;

	pthread_mutex_lock(&store->lock);
	object = object_find(store, key);
	if (object != NULL)
		bk_strlcpy(put_id, object->put_id, 64);
	pthread_mutex_unlock(&store->lock);
	return object != NULL;
}

/* The test's thread: put an object in place; false if the store is full. */
static bool
store_put(FakeStore *store, const char *key, const uint8_t *data, size_t len,
		  const char *etag)
{
	bool ok;

	pthread_mutex_lock(&store->lock);
	ok = object_put(store, key, data, len, etag) != NULL;
	pthread_mutex_unlock(&store->lock);
	return ok;
}

/* The test's thread: remove an object, as a DELETE would. */
static void
store_remove(FakeStore *store, const char *key)
{
	pthread_mutex_lock(&store->lock);
	object_remove(store, key);
	pthread_mutex_unlock(&store->lock);
}

/* ------------------------------------------------------------ fixture */

typedef struct Fixture
{
	FakeStore store;
	char *dir;
	char endpoint[64];
	char spool[4200];
	BkRepoOptions options;
	BkRepo *repo;
} Fixture;

static int
setup(void **state)
{
	Fixture *f = calloc(1, sizeof(*f));
	BkError err;

	assert_non_null(f);
	store_start(&f->store);
	f->dir = test_mkdtemp();
	snprintf(f->spool, sizeof(f->spool), "%s/spool", f->dir);
	snprintf(f->endpoint, sizeof(f->endpoint), "http://127.0.0.1:%d",
			 f->store.port);
	setenv("AWS_ACCESS_KEY_ID", "test-key-id", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "test-secret", 1);
	unsetenv("AWS_SESSION_TOKEN");
	bk_repo_options_init(&f->options);
	f->options.s3_endpoint = f->endpoint;
	f->options.s3_uri_style = "path";
	f->options.spool_dir = f->spool;
	f->options.s3_part_size = PART_SIZE;
	/* Long enough for a retry or two, short if something hangs. */
	f->options.s3_timeout_ms = 5000;
	f->repo = bk_repo_open_with("s3://" BUCKET "/pre", &f->options, true, &err);
	if (f->repo == NULL)
		fail_msg("%s", err.message);
	if (!bk_repo_spool_open(f->repo, "unit-1", &err))
		fail_msg("%s", err.message);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	Fixture *f = *state;

	bk_repo_close(f->repo);
	store_stop(&f->store);
	if (f->store.unexpected[0])
		fail_msg("the test store: %s", f->store.unexpected);
	test_rmdir(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

/*
 * Spool len bytes and commit them as key, as the backend does for repo.c:
 * ok, and whether it created the object.
 */
static bool
commit_spooled(Fixture *f, const char *key, size_t len, bool *created,
			   BkError *err)
{
	uint8_t *data = malloc(len);
	BkRepoUpload *upload;
	bool ok;

	assert_non_null(data);
	test_fill(data, len, 42, false);
	upload = bk_repo_upload_begin(f->repo, "tag-1", err);
	assert_non_null(upload);
	assert_true(bk_repo_upload_write(upload, data, len, err));
	assert_true(bk_repo_upload_finish(upload, err));
	*created = false;
	ok = f->repo->backend->upload_commit(upload, key, created, err);
	bk_repo_upload_free(upload);
	free(data);
	return ok;
}

/* Two parts' worth: a multipart upload. */
static bool
commit_multipart(Fixture *f, const char *key, bool *created, BkError *err)
{
	return commit_spooled(f, key, PART_SIZE + 4096, created, err);
}

/* Less than a part: one PUT. */
static bool
commit_single(Fixture *f, const char *key, bool *created, BkError *err)
{
	return commit_spooled(f, key, 4096, created, err);
}

/* ------------------------------------------------------------ tests */

/*
 * The completion reached the store and took effect; its answer was lost
 * and the retry found NoSuchUpload.  The object in place has the ETag of
 * our parts: stored, now, not failed until a shipper restart re-sent it.
 */
static void
test_completion_reply_lost(void **state)
{
	Fixture *f = *state;
	bool created;
	BkError err;
	char etag[80];

	store_set_fault(&f->store, COMPLETION_REPLY_LOST);
	/* Not the probe's at the repository's opening. */
	f->store.heads = 0;
	f->store.completions = 0;
	if (!commit_multipart(f, "src/wal/000000010000000000000001", &created,
						  &err))
		fail_msg("%s", err.message);
	assert_true(created);
	/* Sent again after the lost answer; then a HEAD looked (the first is
	 * the one before every multipart upload). */
	assert_int_equal(f->store.completions, 2);
	assert_int_equal(f->store.heads, 2);
	assert_true(
		store_etag(&f->store, "pre/src/wal/000000010000000000000001", etag));

	/* Without the fault: one completion, created. */
	f->store.completions = 0;
	if (!commit_multipart(f, "src/wal/000000010000000000000002", &created,
						  &err))
		fail_msg("%s", err.message);
	assert_true(created);
	assert_int_equal(f->store.completions, 1);
}

/*
 * The upload aborted under the shipper, and nothing in place: the
 * completion failed, as the store says.  Never stored.
 */
static void
test_completion_upload_aborted(void **state)
{
	Fixture *f = *state;
	bool created;
	BkError err;
	char etag[80];

	store_set_fault(&f->store, COMPLETION_UPLOAD_ABORTED);
	assert_false(commit_multipart(f, "src/wal/000000010000000000000001",
								  &created, &err));
	assert_false(created);
	assert_error_contains(&err, "NoSuchUpload");
	assert_false(
		store_etag(&f->store, "pre/src/wal/000000010000000000000001", etag));
}

/*
 * The upload aborted, and another object (another shipper's, other bytes)
 * in place: a copy found in place, as after a 412, which repo.c reads to
 * compare; not created.
 */
static void
test_completion_other_object_in_place(void **state)
{
	Fixture *f = *state;
	bool created;
	BkError err;
	char etag[80];

	store_set_fault(&f->store, COMPLETION_UPLOAD_ABORTED_OTHER_IN_PLACE);
	if (!commit_multipart(f, "src/wal/000000010000000000000001", &created,
						  &err))
		fail_msg("%s", err.message);
	assert_false(created);
	assert_true(
		store_etag(&f->store, "pre/src/wal/000000010000000000000001", etag));
	assert_string_equal(etag, "\"0123456789abcdef0123456789abcdef-2\"");
}

/*
 * The completion reached the store and took effect; its answer was lost,
 * and the retry was answered 412 (a store that checks If-None-Match before
 * the upload id: AWS S3 may).  The object in place is this upload's own
 * (its x-amz-meta-bk-put-id, given when the upload began): created, not a
 * copy found in place, which repo.c would report a duplicate of itself
 * (as a single PUT's lost answer is told apart: test_put_reply_lost).
 */
static void
test_completion_reply_lost_then_412(void **state)
{
	Fixture *f = *state;
	bool created;
	BkError err;
	char put_id[64];

	store_set_fault(&f->store, COMPLETION_REPLY_LOST_THEN_412);
	f->store.completions = 0;
	if (!commit_multipart(f, "src/wal/000000010000000000000001", &created,
						  &err))
		fail_msg("%s", err.message);
	assert_int_equal(f->store.completions, 2);
	assert_true(created);
	assert_true(store_put_id(&f->store, "pre/src/wal/000000010000000000000001",
							 put_id));
	assert_int_equal(strlen(put_id), 32);

	/* A 412 at the first send is an object that was there before. */
	if (!commit_multipart(f, "src/wal/000000010000000000000001", &created,
						  &err))
		fail_msg("%s", err.message);
	assert_false(created);
}

/*
 * The upload aborted, and the same bytes in place, completed by another
 * shipper (a re-send after a rebalance: the same parts, so the same ETag,
 * but its own x-amz-meta-bk-put-id): a copy found in place, which repo.c
 * compares and reports a duplicate; not created by this upload.
 */
static void
test_completion_same_object_in_place(void **state)
{
	Fixture *f = *state;
	bool created;
	BkError err;
	char put_id[64];

	store_set_fault(&f->store, COMPLETION_UPLOAD_ABORTED_SAME_IN_PLACE);
	if (!commit_multipart(f, "src/wal/000000010000000000000001", &created,
						  &err))
		fail_msg("%s", err.message);
	assert_false(created);
	assert_true(store_put_id(&f->store, "pre/src/wal/000000010000000000000001",
							 put_id));
	assert_string_equal(put_id, OTHER_PUT_ID);
}

/*
 * The PUT reached the store and took effect; its answer was lost and the
 * retry found the object in place (412).  It is this PUT's own object
 * (x-amz-meta-bk-put-id ours): created, not a copy found in place, which
 * repo.c would then report a duplicate of itself.
 */
static void
test_put_reply_lost(void **state)
{
	Fixture *f = *state;
	bool created;
	BkError err;
	char put_id[64];

	store_set_put_fault(&f->store, PUT_REPLY_LOST);
	f->store.puts = 0; /* the repository's marker, at setup */
	f->store.heads = 0;
	if (!commit_single(f, "src/wal/000000010000000000000001", &created, &err))
		fail_msg("%s", err.message);
	assert_true(created);
	/* Sent again after the lost answer, refused; then a HEAD looked. */
	assert_int_equal(f->store.puts, 2);
	assert_int_equal(f->store.heads, 1);
	assert_true(store_put_id(&f->store, "pre/src/wal/000000010000000000000001",
							 put_id));
	assert_int_equal(strlen(put_id), 32);
	assert_string_not_equal(put_id, OTHER_PUT_ID);

	/* Without the fault: one PUT, created, no HEAD. */
	f->store.puts = 0;
	f->store.heads = 0;
	if (!commit_single(f, "src/wal/000000010000000000000002", &created, &err))
		fail_msg("%s", err.message);
	assert_true(created);
	assert_int_equal(f->store.puts, 1);
	assert_int_equal(f->store.heads, 0);
}

/*
 * The PUT's answer lost, and the object in place could not be looked up
 * (reads refused): whose it is cannot be told, which is said, as an error,
 * neither created nor a copy found in place.
 */
static void
test_put_reply_lost_object_unreadable(void **state)
{
	Fixture *f = *state;
	bool created;
	BkError err;

	store_set_put_fault(&f->store, PUT_REPLY_LOST);
	store_deny_reads(&f->store, true);
	f->store.puts = 0; /* the repository's marker, at setup */
	f->store.heads = 0;
	assert_false(
		commit_single(f, "src/wal/000000010000000000000001", &created, &err));
	assert_false(created);
	assert_int_equal(f->store.puts, 2);
	assert_int_equal(f->store.heads, 1);
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_error_contains(&err, "the PUT, sent again, found the object in "
								"place, which could not be looked up");
	assert_error_contains(&err, "AccessDenied");
	store_deny_reads(&f->store, false);
}

/*
 * The PUT's first send never took effect, and the same bytes were put in
 * place meanwhile by another PUT: the retry's 412 is a copy found in place
 * (repo.c compares identities: a duplicate), though its ETag is our MD5.
 * And a 412 at the first send is one at once, without a HEAD.
 */
static void
test_put_other_copy_in_place(void **state)
{
	Fixture *f = *state;
	bool created;
	BkError err;
	char put_id[64];

	store_set_put_fault(&f->store, PUT_LOST_OTHER_IN_PLACE);
	f->store.puts = 0; /* the repository's marker, at setup */
	f->store.heads = 0;
	if (!commit_single(f, "src/wal/000000010000000000000001", &created, &err))
		fail_msg("%s", err.message);
	assert_false(created);
	assert_int_equal(f->store.puts, 2);
	assert_int_equal(f->store.heads, 1);
	assert_true(store_put_id(&f->store, "pre/src/wal/000000010000000000000001",
							 put_id));
	assert_string_equal(put_id, OTHER_PUT_ID);

	f->store.puts = 0;
	f->store.heads = 0;
	if (!commit_single(f, "src/wal/000000010000000000000001", &created, &err))
		fail_msg("%s", err.message);
	assert_false(created);
	assert_int_equal(f->store.puts, 1);
	assert_int_equal(f->store.heads, 0);
}

/*
 * A PUT answered 200 whose body is an <Error> (AccessDenied, which no retry
 * fixes): nothing was stored, so it is a failure naming the code, never
 * "created" (the shipper would say archived and commit its offset).
 */
static void
test_put_error_in_200(void **state)
{
	Fixture *f = *state;
	bool created;
	BkError err;
	char etag[80];

	store_set_put_fault(&f->store, PUT_ACCESS_DENIED_IN_200);
	f->store.puts = 0; /* the repository's marker, at setup */
	bk_error_clear(&err);
	assert_false(
		commit_single(f, "src/wal/000000010000000000000001", &created, &err));
	assert_false(created);
	assert_int_equal(f->store.puts, 1);
	assert_error_contains(&err, "HTTP 200");
	assert_error_contains(&err, "AccessDenied");
	assert_false(
		store_etag(&f->store, "pre/src/wal/000000010000000000000001", etag));

	/* The next PUT, answered as it should be: created. */
	if (!commit_single(f, "src/wal/000000010000000000000001", &created, &err))
		fail_msg("%s", err.message);
	assert_true(created);
}

/*
 * A completion answered 200 with an empty body, not completed: only a
 * CompleteMultipartUploadResult says it was done, so the object is looked
 * up, found absent, and the commit fails.  Never "created".
 */
static void
test_completion_empty_200_not_done(void **state)
{
	Fixture *f = *state;
	bool created;
	BkError err;
	char etag[80];

	store_set_fault(&f->store, COMPLETION_NOT_DONE_EMPTY_200);
	bk_error_clear(&err);
	assert_false(commit_multipart(f, "src/wal/000000010000000000000001",
								  &created, &err));
	assert_false(created);
	assert_error_contains(&err, "without a CompleteMultipartUploadResult");
	assert_false(
		store_etag(&f->store, "pre/src/wal/000000010000000000000001", etag));
}

/*
 * A completion that took effect, its 200's body empty: the object in
 * place has our parts' ETag, so it is created, as a lost answer's is.
 */
static void
test_completion_empty_200_done(void **state)
{
	Fixture *f = *state;
	bool created;
	BkError err;
	char etag[80];

	store_set_fault(&f->store, COMPLETION_DONE_EMPTY_200);
	f->store.heads = 0;
	f->store.completions = 0;
	if (!commit_multipart(f, "src/wal/000000010000000000000001", &created,
						  &err))
		fail_msg("%s", err.message);
	assert_true(created);
	assert_int_equal(f->store.completions, 1);
	/* The one before every multipart upload, and the one that confirmed. */
	assert_int_equal(f->store.heads, 2);
	assert_true(
		store_etag(&f->store, "pre/src/wal/000000010000000000000001", etag));
}

/*
 * A store that trickles a GET's body a byte a second, never slow enough
 * for curl's low-speed limit: s3_timeout (5 s here) bounds the request
 * itself, not only the retries, and the error says the store was too slow.
 * Without that bound a recovery's wal-get waits as long as the store likes.
 */
static void
test_trickling_store_cut_at_timeout(void **state)
{
	Fixture *f = *state;
	BkError err;
	uint8_t data[64];
	BkRepoReader *reader;
	int64_t started;
	int64_t took;

	test_fill(data, sizeof(data), 7, false);
	assert_true(store_put(&f->store, "pre/src/wal/000000010000000000000001",
						  data, sizeof(data), "\"x\""));
	/* Long enough to outlast s3_timeout by far, short if that fails. */
	store_trickle_gets(&f->store, 20);
	bk_error_clear(&err);
	started = bk_monotonic_ms();
	reader = bk_repo_reader_open(f->repo, BK_REPO_ARCHIVE, "src", BK_KIND_WAL,
								 "000000010000000000000001", &err);
	took = bk_monotonic_ms() - started;
	bk_repo_reader_close(reader);
	store_trickle_gets(&f->store, 0);
	assert_null(reader);
	print_message("# cut after %lld ms: %s\n", (long long) took, err.message);
	assert_true(took >= 4500 && took < 7000);
	assert_int_equal(err.code, BK_ERR_TIMEOUT);
	assert_error_contains(&err, "too slow");
	assert_error_contains(&err, "s3_timeout");
}

/*
 * A store that answers every GET with 503 SlowDown is retried for all of
 * s3_timeout (4 s here), the last try within S3_LAST_TRY_MS of its end: the
 * backoff used to give up once its next wait would pass the deadline,
 * which with 4 s came after 3.1 s at most (waits of up to 0.1, 0.2, 0.4,
 * 0.8 and 1.6 s, then one of 2.5 s or more), while the error said the
 * store did not answer in 4 s.
 */
static void
test_retried_for_all_of_s3_timeout(void **state)
{
	Fixture *f = *state;
	BkRepoOptions options = f->options;
	BkRepo *repo;
	BkRepoReader *reader;
	BkError err;
	uint8_t data[64];
	int64_t started;
	int64_t took;

	options.s3_timeout_ms = 4000;
	repo = bk_repo_open_with("s3://" BUCKET "/pre", &options, false, &err);
	if (repo == NULL)
		fail_msg("%s", err.message);
	test_fill(data, sizeof(data), 7, false);
	assert_true(store_put(&f->store, "pre/src/wal/000000010000000000000001",
						  data, sizeof(data), "\"x\""));
	store_slow_down_reads(&f->store, true);
	bk_error_clear(&err);
	started = bk_monotonic_ms();
	reader = bk_repo_reader_open(repo, BK_REPO_ARCHIVE, "src", BK_KIND_WAL,
								 "000000010000000000000001", &err);
	took = bk_monotonic_ms() - started;
	store_slow_down_reads(&f->store, false);
	assert_null(reader);
	print_message("# gave up after %lld ms: %s\n", (long long) took,
				  err.message);
	assert_true(took >= 3500 && took < 6000);
	assert_int_equal(err.code, BK_ERR_TIMEOUT);
	assert_error_contains(&err, "did not answer successfully in 4 s");
	bk_repo_close(repo);
}

static bool
count_entry(void *arg, const BkRepoEntry *entry, BkError *err)
{
	(void) entry;
	(void) err;
	(*(int *) arg)++;
	return true;
}

/*
 * A listing that says it goes on with the very continuation token it was
 * sent would be fetched for ever: the second such page is an error naming
 * the store and the token.  (The store gives up after 50 pages, so that
 * the code before this test ends too.)
 */
static void
test_listing_same_token(void **state)
{
	Fixture *f = *state;
	BkError err;
	int entries = 0;

	store_repeat_listings(&f->store, 50);
	bk_error_clear(&err);
	assert_false(bk_repo_list(f->repo, BK_REPO_ARCHIVE, "src", BK_KIND_WAL, "",
							  false, count_entry, &entries, &err));
	assert_int_equal(f->store.listing_pages, 2);
	assert_int_equal(err.code, BK_ERR_STORE);
	assert_error_contains(&err, "127.0.0.1");
	assert_error_contains(&err, "\"same-token\"");
	assert_error_contains(&err, "page 2");
	store_repeat_listings(&f->store, 0);
}

/*
 * A listing page whose XML stops halfway (a proxy that cut the body, a
 * store that failed while it wrote it) is the store failing to answer:
 * BK_ERR_STORE (exit 5, try again), naming the listing, never damage in
 * the archive (exit 4) nor the listing's end.  Asked again, it lists.
 */
static void
test_listing_cut(void **state)
{
	Fixture *f = *state;
	BkError err;
	int entries = 0;
	bool created;

	for (int objIdx = 0; objIdx < 3; objIdx++)
	{
		char key[64];

		snprintf(key, sizeof(key), "src/wal/00000001000000000000000%d",
				 objIdx + 1);
		if (!commit_single(f, key, &created, &err))
			fail_msg("%s: %s", key, err.message);
	}
	pthread_mutex_lock(&f->store.lock);
	f->store.listings_cut = 1;
	pthread_mutex_unlock(&f->store.lock);
	bk_error_clear(&err);
	assert_false(bk_repo_list(f->repo, BK_REPO_ARCHIVE, "src", BK_KIND_WAL, "",
							  false, count_entry, &entries, &err));
	assert_int_equal(err.code, BK_ERR_STORE);
	assert_error_contains(&err, "(listing, page 1)");
	entries = 0;
	assert_true(bk_repo_list(f->repo, BK_REPO_ARCHIVE, "src", BK_KIND_WAL, "",
							 false, count_entry, &entries, &err));
	assert_int_equal(entries, 3);
}

/* The same for the list of multipart uploads and its two markers. */
static void
test_upload_listing_same_markers(void **state)
{
	Fixture *f = *state;
	BkError err;
	uint64_t removed = 0;

	store_repeat_listings(&f->store, 50);
	bk_error_clear(&err);
	assert_false(bk_repo_clean_uploads(f->repo, &removed, &err));
	assert_int_equal(f->store.listing_pages, 2);
	assert_int_equal(err.code, BK_ERR_STORE);
	assert_error_contains(&err, "127.0.0.1");
	assert_error_contains(&err, "\"pre/src/wal/x\"");
	assert_error_contains(&err, "\"upload-x\"");
	store_repeat_listings(&f->store, 0);
}

/* Three objects of a snapshot, for a prefix to remove. */
static void
put_snapshot_objects(Fixture *f)
{
	static const char *names[] = {"a", "b&c", "d"};

	for (size_t idx = 0; idx < 3; idx++)
	{
		char key[256];

		snprintf(key, sizeof(key), "pre/src/snapshot/s1/%s", names[idx]);
		assert_true(
			store_put(&f->store, key, (const uint8_t *) "x", 1, "\"e\""));
	}
}

/*
 * A store that ignores "If-None-Match: *" (answers 200, overwrites) would
 * let a conflicting copy replace an archived object: a writer's open (a
 * shipper's start) refuses it, naming the store and the probe; so does
 * one that answers 501 (not retried as other 5xx are, until s3_timeout).
 * A store that honours it keeps nothing of the probe.
 */
static void
test_put_if_absent_ignored(void **state)
{
	Fixture *f = *state;
	BkRepo *repo;
	BkError err;
	bool probe_left = false;

	pthread_mutex_lock(&f->store.lock);
	for (int objIdx = 0; objIdx < f->store.object_count; objIdx++)
		probe_left |= strstr(f->store.objects[objIdx].key, "bk-probe") != NULL;
	f->store.if_none_match_ignored = true;
	pthread_mutex_unlock(&f->store.lock);
	assert_false(probe_left);

	bk_error_clear(&err);
	repo = bk_repo_open_with("s3://" BUCKET "/pre", &f->options, true, &err);
	assert_null(repo);
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_non_null(
		strstr(err.message, "does not honour \"If-None-Match: *\""));
	assert_non_null(strstr(err.message, "s3://" BUCKET "/pre/.bk-probe/"));
	assert_non_null(strstr(err.message, "was accepted"));

	/* One that says it has no such writes (501): the same, at once. */
	pthread_mutex_lock(&f->store.lock);
	f->store.if_none_match_ignored = false;
	f->store.if_none_match_unimplemented = true;
	pthread_mutex_unlock(&f->store.lock);
	repo = bk_repo_open_with("s3://" BUCKET "/pre", &f->options, true, &err);
	assert_null(repo);
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_non_null(strstr(err.message, "answered 501 Not Implemented"));

	/* Readers do not write: they open as before. */
	repo = bk_repo_open_with("s3://" BUCKET "/pre", &f->options, false, &err);
	assert_non_null(repo);
	bk_repo_close(repo);
}

/*
 * A store that honours If-None-Match on PUT but not on the completion of a
 * multipart upload (several S3 emulators did so until recently): a second
 * copy of a name larger than a part would replace the first.  The opening
 * for writing probes a completion too, and refuses such a store.
 */
static void
test_complete_if_absent_ignored(void **state)
{
	Fixture *f = *state;
	BkRepo *repo;
	BkError err;
	bool probe_left = false;

	pthread_mutex_lock(&f->store.lock);
	f->store.complete_if_none_match_ignored = true;
	pthread_mutex_unlock(&f->store.lock);
	bk_error_clear(&err);
	repo = bk_repo_open_with("s3://" BUCKET "/pre", &f->options, true, &err);
	assert_null(repo);
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_non_null(strstr(err.message, "does not honour \"If-None-Match: "
										"*\" on CompleteMultipartUpload"));
	assert_non_null(strstr(err.message, "s3://" BUCKET "/pre/.bk-probe/"));
	pthread_mutex_lock(&f->store.lock);
	for (int objIdx = 0; objIdx < f->store.object_count; objIdx++)
		probe_left |= strstr(f->store.objects[objIdx].key, "bk-probe") != NULL;
	pthread_mutex_unlock(&f->store.lock);
	assert_false(probe_left);

	/* Readers do not write: they open as before. */
	repo = bk_repo_open_with("s3://" BUCKET "/pre", &f->options, false, &err);
	assert_non_null(repo);
	bk_repo_close(repo);
}

/*
 * A store that refuses to read the marker for a reason of its own (here a
 * 400; a wrong region or a redirect in practice): its words reach the
 * user, not "not a bk repository", which points at the wrong setting.
 */
static void
test_marker_refusal_named(void **state)
{
	Fixture *f = *state;
	BkRepo *repo;
	BkError err;

	store_refuse_gets(&f->store, 1);
	bk_error_clear(&err);
	repo = bk_repo_open_with("s3://" BUCKET "/pre", &f->options, false, &err);
	assert_null(repo);
	assert_int_equal(err.code, BK_ERR_STORE);
	assert_non_null(strstr(err.message, "could not read the marker"));
	assert_non_null(strstr(err.message, "InvalidRequest"));
	assert_null(strstr(err.message, "not a bk repository"));
}

/*
 * A repository setting that names no repository is a configuration error
 * (exit 3), not a store that failed (exit 5, "try again"): a bucket the
 * store does not have, and a prefix of a bucket it has where no shipper
 * wrote the marker.
 */
static void
test_no_repository_there(void **state)
{
	Fixture *f = *state;
	BkRepo *repo;
	BkError err;

	bk_error_clear(&err);
	repo =
		bk_repo_open_with("s3://no-such-bucket/pre", &f->options, false, &err);
	assert_null(repo);
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_non_null(strstr(err.message, "NoSuchBucket"));
	assert_non_null(strstr(err.hint, "Create bucket \"no-such-bucket\""));

	bk_error_clear(&err);
	repo = bk_repo_open_with("s3://" BUCKET "/elsewhere", &f->options, false,
							 &err);
	assert_null(repo);
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_non_null(strstr(err.message, "s3://" BUCKET "/elsewhere\" is not "
										"a bk repository: its marker"));
	assert_non_null(strstr(err.hint, "same bucket and prefix"));
}

/*
 * Credentials without s3:ListBucketMultipartUploads (or a store without
 * ListMultipartUploads): the shipper's spool still opens, and only the
 * housekeeping of stale uploads fails (the shipper warns about it).
 */
static void
test_upload_listing_denied(void **state)
{
	Fixture *f = *state;
	BkRepo *repo;
	uint64_t removed = 0;
	BkError err;

	pthread_mutex_lock(&f->store.lock);
	f->store.upload_listing_denied = true;
	pthread_mutex_unlock(&f->store.lock);
	repo = bk_repo_open_with("s3://" BUCKET "/pre", &f->options, true, &err);
	if (repo == NULL)
		fail_msg("%s", err.message);
	if (!bk_repo_spool_open(repo, "unit-2", &err))
		fail_msg("%s", err.message);
	bk_error_clear(&err);
	assert_false(bk_repo_clean_uploads(repo, &removed, &err));
	assert_non_null(strstr(err.message, "AccessDenied"));
	bk_repo_close(repo);
}

/* Write an s3_access_key_file with session token token, mode 0600. */
static void
write_key_file(const char *path, const char *token)
{
	FILE *file = fopen(path, "w");

	assert_non_null(file);
	fprintf(file,
			"access_key_id = test-key-id\nsecret_access_key = test-secret\n"
			"session_token = %s\n",
			token);
	assert_int_equal(fclose(file), 0);
	assert_int_equal(chmod(path, 0600), 0);
}

/*
 * The repository opened with credentials from key_file (session token
 * "token-1"), whose requests the store then answers ExpiredToken, after
 * delay_ms.
 */
static BkRepo *
open_with_expiring_token(Fixture *f, char *key_file, size_t key_file_len,
						 int delay_ms)
{
	BkRepoOptions options = f->options;
	BkRepo *repo;
	BkError err;

	snprintf(key_file, key_file_len, "%s/s3.key", f->dir);
	write_key_file(key_file, "token-1");
	options.s3_access_key_file = key_file;
	repo = bk_repo_open_with("s3://" BUCKET "/pre", &options, false, &err);
	if (repo == NULL)
		fail_msg("%s", err.message);
	pthread_mutex_lock(&f->store.lock);
	bk_strlcpy(f->store.expired_token, "token-1",
			   sizeof(f->store.expired_token));
	f->store.expired_delay_ms = delay_ms;
	pthread_mutex_unlock(&f->store.lock);
	return repo;
}

/*
 * Temporary credentials expire under a long-running shipper or restore.
 * bk reads s3_access_key_file again when the store says the token expired
 * and sends the request again; while the file still holds the expired
 * token, the error says what to do (a configuration error, exit 3).
 */
static void
test_expired_token_reloaded(void **state)
{
	Fixture *f = *state;
	char key_file[600];
	BkRepo *repo = open_with_expiring_token(f, key_file, sizeof(key_file), 0);
	BkRepoStat stat;
	BkError err;

	bk_error_clear(&err);
	assert_false(bk_repo_stat(repo, BK_REPO_ARCHIVE, "src", BK_KIND_WAL,
							  "000000010000000000000001", &stat, &err));
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_non_null(strstr(err.message, "ExpiredToken"));
	assert_non_null(strstr(err.hint, "reads s3_access_key_file again"));

	/* Whatever issues the credentials rewrote the file: used at once. */
	write_key_file(key_file, "token-2");
	bk_error_clear(&err);
	if (!bk_repo_stat(repo, BK_REPO_ARCHIVE, "src", BK_KIND_WAL,
					  "000000010000000000000001", &stat, &err))
		fail_msg("%s", err.message);
	assert_false(stat.exists);
	bk_repo_close(repo);
}

/* A reader of an object that is not there, on a thread of its own. */
typedef struct TokenRace
{
	BkRepo *repo;
	BkError err;
	bool ok;
} TokenRace;

static void *
token_race_reader(void *arg)
{
	TokenRace *race = arg;
	BkRepoReader *reader;

	bk_error_clear(&race->err);
	reader =
		bk_repo_reader_open(race->repo, BK_REPO_ARCHIVE, "src", BK_KIND_WAL,
							"000000010000000000000001", &race->err);
	/* Not there: the right answer once the credentials work. */
	race->ok = reader == NULL && race->err.code == BK_ERR_NOT_FOUND;
	if (reader != NULL)
		bk_repo_reader_close(reader);
	return NULL;
}

/*
 * Two requests signed with the expired token (a multipart upload's parts,
 * a prefetch) while the file is renewed: the first to hear ExpiredToken
 * loads the new credentials; the second finds the file equal to what is
 * loaded, and must still send again, for it signed with the old ones.
 */
static void
test_expired_token_two_threads(void **state)
{
	Fixture *f = *state;
	char key_file[600];
	pthread_t threads[2];
	TokenRace races[2];
	BkRepo *repo = open_with_expiring_token(f, key_file, sizeof(key_file), 0);

	/*
	 * The store answers ExpiredToken only once the file is renewed: it
	 * answered after 300 ms, and a main thread descheduled that long (a
	 * loaded machine) renewed the file too late, failing the readers.
	 * The 100 ms let both readers send with the old token first.
	 */
	atomic_store(&f->store.expired_held, true);
	for (int threadIdx = 0; threadIdx < 2; threadIdx++)
	{
		races[threadIdx].repo = repo;
		assert_int_equal(pthread_create(&threads[threadIdx], NULL,
										token_race_reader, &races[threadIdx]),
						 0);
	}
	usleep(100 * 1000);
	write_key_file(key_file, "token-2");
	atomic_store(&f->store.expired_held, false);
	for (int threadIdx = 0; threadIdx < 2; threadIdx++)
		pthread_join(threads[threadIdx], NULL);
	pthread_mutex_lock(&f->store.lock);
	f->store.expired_delay_ms = 0;
	pthread_mutex_unlock(&f->store.lock);
	for (int threadIdx = 0; threadIdx < 2; threadIdx++)
		if (!races[threadIdx].ok)
			fail_msg("thread %d: %s", threadIdx, races[threadIdx].err.message);
	bk_repo_close(repo);
}

/* Open the store's repository with credentials from key_file, or NULL. */
static BkRepo *
open_with_key_file(Fixture *f, const char *key_file, BkError *err)
{
	BkRepoOptions options = f->options;

	options.s3_access_key_file = key_file;
	bk_error_clear(err);
	return bk_repo_open_with("s3://" BUCKET "/pre", &options, false, err);
}

/*
 * Session tokens of several kB (STS makes them that long with session
 * policies and tags), from the environment and from s3_access_key_file:
 * signed and sent whole.  One longer than bk takes is refused when loaded,
 * naming the variable or the file, never cut.
 */
static void
test_long_session_token(void **state)
{
	Fixture *f = *state;
	static char token[9001];
	char key_file[600];
	BkRepo *repo;
	BkRepoStat stat;
	BkError err;

	for (size_t len = 2048; len <= 8192; len += 3072)
	{
		memset(token, 'T', len);
		token[len] = '\0';
		setenv("AWS_SESSION_TOKEN", token, 1);
		bk_error_clear(&err);
		repo =
			bk_repo_open_with("s3://" BUCKET "/pre", &f->options, false, &err);
		if (repo == NULL)
			fail_msg("a token of %zu bytes: %s", len, err.message);
		if (!bk_repo_stat(repo, BK_REPO_ARCHIVE, "src", BK_KIND_WAL,
						  "000000010000000000000001", &stat, &err))
			fail_msg("a token of %zu bytes: %s", len, err.message);
		assert_false(stat.exists);
		assert_int_equal(f->store.token_len, len);
		bk_repo_close(repo);
	}

	memset(token, 'T', 8193);
	token[8193] = '\0';
	setenv("AWS_SESSION_TOKEN", token, 1);
	bk_error_clear(&err);
	assert_null(
		bk_repo_open_with("s3://" BUCKET "/pre", &f->options, false, &err));
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_error_contains(&err, "AWS_SESSION_TOKEN is 8193 bytes long");
	unsetenv("AWS_SESSION_TOKEN");

	snprintf(key_file, sizeof(key_file), "%s/s3.key", f->dir);
	token[5000] = '\0';
	write_key_file(key_file, token);
	repo = open_with_key_file(f, key_file, &err);
	if (repo == NULL)
		fail_msg("%s", err.message);
	if (!bk_repo_stat(repo, BK_REPO_ARCHIVE, "src", BK_KIND_WAL,
					  "000000010000000000000001", &stat, &err))
		fail_msg("%s", err.message);
	assert_int_equal(f->store.token_len, 5000);
	bk_repo_close(repo);

	token[5000] = 'T';
	write_key_file(key_file, token);
	assert_null(open_with_key_file(f, key_file, &err));
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_error_contains(&err, key_file);
	assert_error_contains(&err, "session_token is 8193 bytes long");
}

/*
 * A prefix with an empty, "." or ".." component: curl removes dot segments
 * before sending, so every request would be refused as SignatureDoesNotMatch
 * with a hint blaming the credentials (an opening for reading said the
 * marker was not there).  Refused at the opening instead, naming the
 * repository setting; names that only contain dots are fine.
 */
static void
test_prefix_dot_components(void **state)
{
	Fixture *f = *state;
	static const char *refused[] = {
		"s3://" BUCKET "/a/./b",  "s3://" BUCKET "/a/../b",
		"s3://" BUCKET "/a//b",   "s3://" BUCKET "/./a",
		"s3://" BUCKET "/a/..",   "s3://" BUCKET "/..",
		"s3://" BUCKET "/a/b/./",
	};
	static const char *accepted[] = {
		"s3://" BUCKET "/a/b/",
		"s3://" BUCKET "/a.b/..c/.d",
		"s3://" BUCKET "//a/b//",
		"s3://" BUCKET "/...",
	};
	BkRepo *repo;
	BkError err;

	for (size_t idx = 0; idx < sizeof(refused) / sizeof(refused[0]); idx++)
	{
		bk_error_clear(&err);
		repo = bk_repo_open_with(refused[idx], &f->options, false, &err);
		if (repo != NULL)
			fail_msg("%s was accepted", refused[idx]);
		assert_int_equal(err.code, BK_ERR_CONFIG);
		assert_error_contains(&err, refused[idx]);
		assert_error_contains(&err, "\".\" or \"..\" component");
		assert_non_null(strstr(err.hint, "repository setting"));
	}
	for (size_t idx = 0; idx < sizeof(accepted) / sizeof(accepted[0]); idx++)
	{
		bk_error_clear(&err);
		repo = bk_repo_open_with(accepted[idx], &f->options, false, &err);
		/* Opened, or refused for the marker not there, never the prefix. */
		if (repo == NULL && strstr(err.message, "is not a bk repository: "
												"its marker") == NULL)
			fail_msg("%s: %s", accepted[idx], err.message);
		bk_repo_close(repo);
	}
}

/*
 * As user "nobody", in a child: its own credentials file and one of root's
 * that its group may read are used, one of a third user is refused.  0 when
 * all held, else the number of the check.
 */
static int
open_as_nobody(Fixture *f, const struct passwd *nobody, const char *own,
			   const char *roots_readable, const char *third)
{
	BkRepo *repo;
	BkError err;

	if (setgroups(0, NULL) != 0 ||
		setresgid(nobody->pw_gid, nobody->pw_gid, nobody->pw_gid) != 0 ||
		setresuid(nobody->pw_uid, nobody->pw_uid, nobody->pw_uid) != 0)
		return 1;
	if ((repo = open_with_key_file(f, own, &err)) == NULL)
		return 2;
	bk_repo_close(repo);
	if ((repo = open_with_key_file(f, roots_readable, &err)) == NULL)
		return 3;
	bk_repo_close(repo);
	if (open_with_key_file(f, third, &err) != NULL ||
		strstr(err.message, "uid 0") != NULL ||
		strstr(err.message, "nor by root") == NULL)
		return 4;
	return 0;
}

/*
 * s3_access_key_file is held to the rule of private key files: whoever owns
 * it chooses the credentials bk signs with (and so what a restore running
 * as root reads), so a file of another user is refused whatever its mode,
 * and one of root's may be read by its group (0640: one file of group
 * postgres for root's bk restore and postgres's bk wal-get).  Needs root,
 * to give files away.
 */
static void
test_credentials_file_owner(void **state)
{
	Fixture *f = *state;
	struct passwd *nobody = getpwnam("nobody");
	char path[600];
	char roots[600];
	char third[600];
	char expected[900];
	BkRepo *repo;
	BkRepoStat stat;
	BkError err;
	pid_t pid;
	int status;

	if (geteuid() != 0 || nobody == NULL || nobody->pw_uid == 0)
	{
		skip();
		return;
	}
	snprintf(path, sizeof(path), "%s/s3.key", f->dir);
	write_key_file(path, "token-1");
	assert_int_equal(chown(path, nobody->pw_uid, (gid_t) -1), 0);
	snprintf(expected, sizeof(expected),
			 "s3_access_key_file \"%s\" is owned by \"nobody\" (uid %u), not "
			 "by \"root\" (uid 0), whom bk runs as",
			 path, (unsigned int) nobody->pw_uid);
	assert_null(open_with_key_file(f, path, &err));
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_error_contains(&err, expected);
	assert_non_null(strstr(err.hint, "chown root"));
	assert_non_null(strstr(err.hint, "s3_access_key_file"));

	/* Root's, readable by its group: used. */
	assert_int_equal(chown(path, 0, nobody->pw_gid), 0);
	assert_int_equal(chmod(path, 0640), 0);
	repo = open_with_key_file(f, path, &err);
	if (repo == NULL)
		fail_msg("%s", err.message);
	if (!bk_repo_stat(repo, BK_REPO_ARCHIVE, "src", BK_KIND_WAL,
					  "000000010000000000000001", &stat, &err))
		fail_msg("%s", err.message);
	assert_false(stat.exists);
	bk_repo_close(repo);
	/* Its group may read it, never write it. */
	assert_int_equal(chmod(path, 0660), 0);
	assert_null(open_with_key_file(f, path, &err));
	assert_error_contains(&err, "(mode 0660)");

	/* The same rule for a user other than root. */
	snprintf(roots, sizeof(roots), "%s/roots.key", f->dir);
	write_key_file(roots, "token-1");
	assert_int_equal(chown(roots, 0, nobody->pw_gid), 0);
	assert_int_equal(chmod(roots, 0640), 0);
	snprintf(third, sizeof(third), "%s/third.key", f->dir);
	write_key_file(third, "token-1");
	assert_int_equal(chown(third, nobody->pw_uid + 1, nobody->pw_gid), 0);
	assert_int_equal(chmod(third, 0640), 0);
	assert_int_equal(chown(path, nobody->pw_uid, (gid_t) -1), 0);
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(chmod(f->dir, 0711), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(open_as_nobody(f, nobody, path, roots, third));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(chmod(f->dir, 0700), 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void
on_alarm(int signo)
{
	(void) signo;
}

/*
 * A FIFO in the credentials file's place is refused at once: opening it to
 * read would wait for a writer forever.  An alarm ends such a wait, so that
 * a regression fails instead of hanging the test.
 */
static void
test_credentials_file_fifo(void **state)
{
	Fixture *f = *state;
	struct sigaction action = {.sa_handler = on_alarm};
	struct sigaction saved;
	char path[600];
	int64_t started;
	BkError err;

	snprintf(path, sizeof(path), "%s/s3.key", f->dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	sigemptyset(&action.sa_mask);
	assert_int_equal(sigaction(SIGALRM, &action, &saved), 0);
	alarm(5);
	started = bk_monotonic_ms();
	assert_null(open_with_key_file(f, path, &err));
	alarm(0);
	assert_int_equal(sigaction(SIGALRM, &saved, NULL), 0);
	assert_true(bk_monotonic_ms() - started < 2000);
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_error_contains(&err, "is not a regular file");
	assert_error_contains(&err, path);
}

/*
 * Read again after ExpiredToken, the file is held to the same rule: one
 * another user put there is not used, and the error names it instead of
 * the expiry.  Needs root, to give the file away.
 */
static void
test_expired_token_reload_refused(void **state)
{
	Fixture *f = *state;
	struct passwd *nobody = getpwnam("nobody");
	char key_file[600];
	BkRepoStat stat;
	BkRepo *repo;
	BkError err;

	if (geteuid() != 0 || nobody == NULL || nobody->pw_uid == 0)
	{
		skip();
		return;
	}
	repo = open_with_expiring_token(f, key_file, sizeof(key_file), 0);
	write_key_file(key_file, "token-2");
	assert_int_equal(chown(key_file, nobody->pw_uid, (gid_t) -1), 0);
	bk_error_clear(&err);
	assert_false(bk_repo_stat(repo, BK_REPO_ARCHIVE, "src", BK_KIND_WAL,
							  "000000010000000000000001", &stat, &err));
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_error_contains(&err, "ExpiredToken");
	assert_error_contains(&err, "is owned by \"nobody\"");
	assert_non_null(strstr(err.hint, "chown root"));

	/* Given back to root: used at once. */
	assert_int_equal(chown(key_file, 0, (gid_t) -1), 0);
	bk_error_clear(&err);
	if (!bk_repo_stat(repo, BK_REPO_ARCHIVE, "src", BK_KIND_WAL,
					  "000000010000000000000001", &stat, &err))
		fail_msg("%s", err.message);
	assert_false(stat.exists);
	bk_repo_close(repo);
}

#define DELETE_RESULT(errors)                                                  \
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeleteResult "               \
	"xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">" errors                \
	"</DeleteResult>"

/*
 * A DeleteObjects 200 that names a key it did not delete: the removal
 * fails, naming how many, the first key, its code and message, so bk
 * expire does not report removed what is still there.
 */
static void
test_delete_prefix_key_refused(void **state)
{
	Fixture *f = *state;
	BkError err;

	put_snapshot_objects(f);
	store_set_delete_reply(
		&f->store,
		DELETE_RESULT(
			"<Error><Key>pre/src/snapshot/s1/b&amp;c</Key><Code>AccessDenied"
			"</Code><Message>Access Denied</Message></Error>"));
	assert_false(bk_repo_delete_prefix(f->repo, BK_REPO_ARCHIVE, "src",
									   BK_KIND_SNAPSHOT, "s1/", &err));
	assert_int_equal(f->store.deletes, 1);
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_error_contains(&err, "could not delete 1 of 3 objects under "
								"s3://" BUCKET "/pre/src/snapshot/s1/");
	assert_error_contains(&err, "first: pre/src/snapshot/s1/b&c: "
								"AccessDenied: Access Denied");
	assert_non_null(strstr(err.hint, "s3:DeleteObject"));

	/* Any other code too, with what to do. */
	store_set_delete_reply(
		&f->store,
		DELETE_RESULT(
			"<Error><Key>pre/src/snapshot/s1/d</Key><Code>InternalError</Code>"
			"<Message>We encountered an internal error.</Message></Error>"
			"<Error><Key>pre/src/snapshot/s1/a</Key><Code>InternalError</Code>"
			"<Message>We encountered an internal error.</Message></Error>"));
	assert_false(bk_repo_delete_prefix(f->repo, BK_REPO_ARCHIVE, "src",
									   BK_KIND_SNAPSHOT, "s1/", &err));
	assert_int_equal(err.code, BK_ERR_STORE);
	assert_error_contains(&err, "could not delete 2 of 3 objects");
	assert_error_contains(&err, "first: pre/src/snapshot/s1/d: InternalError");
	assert_non_null(strstr(err.hint, "removes what is left"));
}

/*
 * A 200 whose body is no DeleteResult says nothing of what was deleted: an
 * error, not success.  A NoSuchKey is a key gone: success.
 */
static void
test_delete_prefix_not_a_result(void **state)
{
	Fixture *f = *state;
	BkError err;

	put_snapshot_objects(f);
	store_set_delete_reply(
		&f->store,
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>"
		"AccessDenied</Code><Message>Access Denied</Message></Error>");
	assert_false(bk_repo_delete_prefix(f->repo, BK_REPO_ARCHIVE, "src",
									   BK_KIND_SNAPSHOT, "s1/", &err));
	assert_error_contains(&err, "AccessDenied");

	store_set_delete_reply(&f->store, "<html><body>It worked!</body></html>");
	assert_false(bk_repo_delete_prefix(f->repo, BK_REPO_ARCHIVE, "src",
									   BK_KIND_SNAPSHOT, "s1/", &err));
	assert_int_equal(err.code, BK_ERR_FORMAT);
	assert_error_contains(&err, "not a DeleteResult");

	store_set_delete_reply(
		&f->store,
		DELETE_RESULT(
			"<Error><Key>pre/src/snapshot/s1/a</Key><Code>NoSuchKey</Code>"
			"<Message>The specified key does not exist.</Message></Error>"));
	if (!bk_repo_delete_prefix(f->repo, BK_REPO_ARCHIVE, "src",
							   BK_KIND_SNAPSHOT, "s1/", &err))
		fail_msg("%s", err.message);
}

/* ------------------------------------------------------------ reads */

/* Larger than two of the reader's 16 MiB windows, ending mid-window. */
#define LARGE_OBJECT_LEN ((size_t) 40 * 1024 * 1024 + 12345)
#define READ_WINDOW      ((size_t) 16 * 1024 * 1024)

/* An object of LARGE_OBJECT_LEN bytes at key (the caller frees them). */
static uint8_t *
put_large_object(Fixture *f, const char *key)
{
	uint8_t *data = malloc(LARGE_OBJECT_LEN);

	assert_non_null(data);
	test_fill(data, LARGE_OBJECT_LEN, 7, false);
	assert_true(store_put(&f->store, key, data, LARGE_OBJECT_LEN, "\"l\""));
	return data;
}

/* A reader of every byte in order, as visit_frames opens one. */
static BkRepoReader *
open_in_order(Fixture *f, const char *key)
{
	BkError err;
	BkRepoReader *reader = f->repo->backend->reader_open(f->repo, key, &err);

	if (reader == NULL)
		fail_msg("%s", err.message);
	assert_int_equal(reader->size, LARGE_OBJECT_LEN);
	reader->in_order = true;
	return reader;
}

/* Wait up to 5 s for a GET that asks for byte first or a later one. */
static bool
store_saw_get_from(FakeStore *store, size_t first)
{
	for (int waited = 0; waited < 5000; waited += 10)
	{
		if (store_farthest_get(store) >= first)
			return true;
		usleep(10 * 1000);
	}
	return false;
}

/* Wait up to 5 s for count 503 SlowDown answers since the last reset. */
static bool
store_saw_slow_downs(FakeStore *store, int count)
{
	for (int waited = 0; store->slow_downs < count && waited < 5000;
		 waited += 10)
		usleep(10 * 1000);
	return store->slow_downs >= count;
}

/* Read len bytes at offset into back + offset, or fail. */
static void
read_at(BkRepoReader *reader, uint8_t *back, size_t offset, size_t len)
{
	BkError err;

	if (!bk_repo_reader_read(reader, offset, back + offset, len, &err))
		fail_msg("%zu bytes at %zu: %s", len, offset, err.message);
}

/* Read from offset to end in reads of the sizes in pieces, in turn. */
static void
read_in_pieces(BkRepoReader *reader, uint8_t *back, size_t offset, size_t end)
{
	static const size_t pieces[] = {999999, 3 * 1024 * 1024 + 1, 4096, 1};

	for (int pieceIdx = 0; offset < end; pieceIdx++)
	{
		size_t take = pieces[pieceIdx % 4];

		if (take > end - offset)
			take = end - offset;
		read_at(reader, back, offset, take);
		offset += take;
	}
}

/*
 * A reader of every byte in order has the next window asked for before it
 * reads there, and asks the store for every byte of the object once
 * (visit_frames reads a frame's header, then the frame from the same
 * place, which may both cross a window's end).  What it reads is the
 * object whatever the reads' sizes and where they fall: across a window's
 * end, backwards, larger than a window, up to the last byte.
 */
static void
test_read_ahead(void **state)
{
	Fixture *f = *state;
	uint8_t *data = put_large_object(f, "pre/src/large");
	uint8_t *back = malloc(LARGE_OBJECT_LEN);
	size_t first[STORE_GETS];
	size_t last[STORE_GETS];
	size_t asked = 0;
	int count;
	BkRepoReader *reader;
	BkError err;

	assert_non_null(back);
	store_take_gets(&f->store, first, last, STORE_GETS);
	reader = open_in_order(f, "src/large");
	/* The open asked for the first window only. */
	assert_true(store_farthest_get(&f->store) < READ_WINDOW);
	read_at(reader, back, 0, 100);
	if (!store_saw_get_from(&f->store, READ_WINDOW))
		fail_msg("the second window was not asked for ahead of its reads");
	read_in_pieces(reader, back, 100, READ_WINDOW - 10);
	/* A header across the window's end, a read of both, then its frame. */
	read_at(reader, back, READ_WINDOW - 10, 20);
	read_at(reader, back, READ_WINDOW - 100, READ_WINDOW + 50);
	read_at(reader, back, READ_WINDOW - 10, 1024 * 1024);
	read_in_pieces(reader, back, READ_WINDOW - 10 + 1024 * 1024,
				   LARGE_OBJECT_LEN);
	assert_memory_equal(back, data, LARGE_OBJECT_LEN);
	count = store_take_gets(&f->store, first, last, STORE_GETS);
	assert_true(count < STORE_GETS);
	/* Every byte in exactly one GET: none asked for twice, none left. */
	for (int getIdx = 0; getIdx < count; getIdx++)
	{
		asked += last[getIdx] - first[getIdx] + 1;
		for (int otherIdx = getIdx + 1; otherIdx < count; otherIdx++)
			if (first[otherIdx] <= last[getIdx] &&
				first[getIdx] <= last[otherIdx])
				fail_msg("bytes %zu-%zu and %zu-%zu were both asked for",
						 first[getIdx], last[getIdx], first[otherIdx],
						 last[otherIdx]);
	}
	assert_int_equal(asked, LARGE_OBJECT_LEN);

	/* Backwards, across the first window's end, then a read of 17 MiB. */
	memset(back, 0, LARGE_OBJECT_LEN);
	read_at(reader, back, 1000, 5000);
	read_at(reader, back, READ_WINDOW - 10, 20);
	read_at(reader, back, 3, READ_WINDOW + 1024 * 1024);
	assert_memory_equal(back + 3, data + 3, READ_WINDOW + 1024 * 1024);
	bk_repo_reader_close(reader);

	/* An object read by frames' headers only is not read ahead. */
	store_take_gets(&f->store, first, last, STORE_GETS);
	reader = f->repo->backend->reader_open(f->repo, "src/large", &err);
	assert_non_null(reader);
	read_at(reader, back, 0, 100);
	usleep(200 * 1000);
	assert_int_equal(store_get_count(&f->store), 1);
	assert_true(store_farthest_get(&f->store) < READ_WINDOW);
	bk_repo_reader_close(reader);
	free(back);
	free(data);
}

/*
 * Authenticating an object's metadata (bk_repo_object_meta with a key)
 * reads its chunk 0 from the reader's first window, where the object
 * begins.  A WAL segment larger than a window (wal_segment_size 32 MiB and
 * up) has frame headers past it: once the headers' walk moved the window
 * there, chunk 0 cost a second GET of a whole window.
 */
static void
test_object_meta_one_first_window(void **state)
{
	Fixture *f = *state;
	static const char name[] = "000000010000000000000001";
	size_t len = (size_t) 32 * 1024 * 1024;
	uint8_t *content = malloc(len);
	BkObjectInfo info = {.kind = BK_KIND_WAL,
						 .source_id = "src",
						 .name = name,
						 .meta = "segment-size=33554432",
						 .size = len};
	FrameList frames;
	size_t total = 0;
	uint8_t *object;
	size_t first[STORE_GETS];
	size_t last[STORE_GETS];
	int count;
	int from_start = 0;
	BkKey key;
	BkKeyring ring;
	BkDecoder *decoder;
	BkObjectTracker *tracker = malloc(sizeof(*tracker));
	BkError err;

	assert_non_null(content);
	assert_non_null(tracker);
	test_fill(content, len, 11, false);
	test_key(&key, &ring);
	test_encode_object(&key, 1024 * 1024, &info, content, &frames);
	for (int frameIdx = 0; frameIdx < frames.count; frameIdx++)
		total += frames.len[frameIdx];
	/* What makes the case: frame headers past the first window. */
	assert_true(total > READ_WINDOW + 1024 * 1024);
	object = malloc(total);
	assert_non_null(object);
	total = 0;
	for (int frameIdx = 0; frameIdx < frames.count; frameIdx++)
	{
		memcpy(object + total, frames.data[frameIdx], frames.len[frameIdx]);
		total += frames.len[frameIdx];
	}
	assert_true(store_put(&f->store, "pre/src/wal/000000010000000000000001",
						  object, total, "\"w\""));
	decoder = bk_decoder_new(&ring, &err);
	assert_non_null(decoder);
	store_take_gets(&f->store, first, last, STORE_GETS);
	if (!bk_repo_object_meta(f->repo, BK_REPO_ARCHIVE, "src", BK_KIND_WAL, name,
							 decoder, tracker, &err))
		fail_msg("%s", err.message);
	assert_int_equal(tracker->meta_len, strlen(info.meta));
	count = store_take_gets(&f->store, first, last, STORE_GETS);
	for (int getIdx = 0; getIdx < count && getIdx < STORE_GETS; getIdx++)
		if (first[getIdx] == 0)
			from_start++;
	assert_int_equal(from_start, 1);
	bk_decoder_free(decoder);
	test_frames_free(&frames);
	free(tracker);
	free(object);
	free(content);
}

/*
 * A window asked for ahead that the store refused fails the read that
 * needs it, with the store's answer, and no other read; read again, it is
 * asked for again.
 */
static void
test_read_ahead_refused(void **state)
{
	Fixture *f = *state;
	uint8_t *data = put_large_object(f, "pre/src/large");
	uint8_t back[64];
	BkRepoReader *reader;
	int gets;
	BkError err;

	reader = open_in_order(f, "src/large");
	store_deny_reads(&f->store, true);
	assert_true(bk_repo_reader_read(reader, 0, back, 20, &err));
	if (!store_saw_get_from(&f->store, READ_WINDOW))
		fail_msg("the second window was not asked for ahead of its reads");
	assert_true(bk_repo_reader_read(reader, READ_WINDOW - 60, back, 50, &err));
	assert_memory_equal(back, data + READ_WINDOW - 60, 50);
	gets = store_get_count(&f->store);
	assert_false(bk_repo_reader_read(reader, READ_WINDOW - 10, back, 20, &err));
	assert_error_contains(&err, "AccessDenied");
	assert_error_contains(&err, "pre/src/large");
	/* The refusal of the fetch ahead: this read sent nothing. */
	assert_int_equal(store_get_count(&f->store), gets);
	store_deny_reads(&f->store, false);
	assert_true(bk_repo_reader_read(reader, READ_WINDOW - 10, back, 20, &err));
	assert_memory_equal(back, data + READ_WINDOW - 10, 20);
	bk_repo_reader_close(reader);
	free(data);
}

/*
 * An object removed while it is read (bk expire under a restore or a bk
 * verify): the store answers a later window's GET with 404 NoSuchKey.
 * That is "no such object", as the open's 404 is (BK_ERR_NOT_FOUND), not a
 * store to try again (BK_ERR_STORE), whether the read asked for the window
 * or it was fetched ahead; a refusal of a later window stays a refusal.
 */
static void
test_read_object_removed(void **state)
{
	Fixture *f = *state;
	uint8_t *data = put_large_object(f, "pre/src/large");
	uint8_t back[64];
	BkRepoReader *reader;
	BkError err;

	/* Not in order: the read asks for the window itself. */
	reader = f->repo->backend->reader_open(f->repo, "src/large", &err);
	assert_non_null(reader);
	assert_true(bk_repo_reader_read(reader, 0, back, 20, &err));
	store_remove(&f->store, "pre/src/large");
	assert_false(bk_repo_reader_read(reader, READ_WINDOW + 10, back, 20, &err));
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
	assert_error_contains(&err, "no object s3://" BUCKET "/pre/src/large");
	assert_error_contains(&err, "removed while it was read");
	bk_repo_reader_close(reader);

	/* In order: the window fetched ahead fails the read that needs it. */
	assert_true(
		store_put(&f->store, "pre/src/large", data, LARGE_OBJECT_LEN, "\"l\""));
	reader = open_in_order(f, "src/large");
	store_remove(&f->store, "pre/src/large");
	assert_true(bk_repo_reader_read(reader, 0, back, 20, &err));
	assert_false(bk_repo_reader_read(reader, READ_WINDOW - 10, back, 20, &err));
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
	assert_error_contains(&err, "removed while it was read");
	bk_repo_reader_close(reader);

	/* Refused, not removed: what the store said. */
	assert_true(
		store_put(&f->store, "pre/src/large", data, LARGE_OBJECT_LEN, "\"l\""));
	reader = f->repo->backend->reader_open(f->repo, "src/large", &err);
	assert_non_null(reader);
	store_deny_reads(&f->store, true);
	assert_false(bk_repo_reader_read(reader, READ_WINDOW + 10, back, 20, &err));
	store_deny_reads(&f->store, false);
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_error_contains(&err, "AccessDenied");
	bk_repo_reader_close(reader);
	free(data);
}

/*
 * A reader closed while the store answers its fetch ahead with errors that
 * are retried (503 SlowDown, for s3_timeout: 5 s here) does not wait for
 * them: a restore that failed elsewhere stops within about a second
 * (curl looks at the reader's cancel that often while a transfer waits).
 */
static void
test_read_ahead_given_up(void **state)
{
	Fixture *f = *state;
	uint8_t *data = put_large_object(f, "pre/src/large");
	uint8_t back[64];
	BkRepoReader *reader;
	int64_t started;
	BkError err;

	reader = open_in_order(f, "src/large");
	store_slow_down_reads(&f->store, true);
	f->store.slow_downs = 0;
	assert_true(bk_repo_reader_read(reader, 0, back, 20, &err));
	assert_true(store_saw_slow_downs(&f->store, 2)); /* retried: backing off */
	started = bk_monotonic_ms();
	bk_repo_reader_close(reader);
	assert_true(bk_monotonic_ms() - started < 1500);
	store_slow_down_reads(&f->store, false);
	free(data);
}

/* Wait up to 5 s for count GETs of objects since the last reset. */
static bool
store_saw_gets(FakeStore *store, int count)
{
	for (int waited = 0; waited < 5000; waited += 10)
	{
		if (store_get_count(store) >= count)
			return true;
		usleep(10 * 1000);
	}
	return false;
}

/*
 * Objects opened ahead (a restore's small files) are asked for at once, up
 * to eight at a time, and their opens find them done without another
 * GET; the open of a missing one says what it would have said; an object
 * hinted twice, and opened while its GET is on its way, is asked for once.
 */
static void
test_prefetch(void **state)
{
	Fixture *f = *state;
	uint8_t small[5000];
	uint8_t back[sizeof(small)];
	size_t first[STORE_GETS];
	size_t last[STORE_GETS];
	BkRepoReader *reader;
	char key[64];
	BkError err;

	test_fill(small, sizeof(small), 3, false);
	for (int objIdx = 0; objIdx < 9; objIdx++)
	{
		snprintf(key, sizeof(key), "pre/src/small-%d", objIdx);
		small[0] = (uint8_t) objIdx;
		assert_true(store_put(&f->store, key, small, sizeof(small), "\"s\""));
	}
	store_take_gets(&f->store, first, last, STORE_GETS);
	for (int objIdx = 0; objIdx < 9; objIdx++)
	{
		snprintf(key, sizeof(key), "src/small-%d", objIdx);
		f->repo->backend->prefetch(f->repo, key);
	}
	assert_true(store_saw_gets(&f->store, 8));
	usleep(100 * 1000);
	assert_int_equal(store_get_count(&f->store), 8);
	for (int objIdx = 0; objIdx < 9; objIdx++)
	{
		snprintf(key, sizeof(key), "src/small-%d", objIdx);
		reader = f->repo->backend->reader_open(f->repo, key, &err);
		if (reader == NULL)
			fail_msg("%s: %s", key, err.message);
		assert_int_equal(reader->size, sizeof(small));
		assert_true(bk_repo_reader_read(reader, 0, back, sizeof(back), &err));
		small[0] = (uint8_t) objIdx;
		assert_memory_equal(back, small, sizeof(small));
		bk_repo_reader_close(reader);
	}
	/* The one beyond the eighth was opened when asked for. */
	assert_int_equal(store_get_count(&f->store), 9);

	f->repo->backend->prefetch(f->repo, "src/absent");
	assert_true(store_saw_gets(&f->store, 10));
	reader = f->repo->backend->reader_open(f->repo, "src/absent", &err);
	assert_null(reader);
	assert_int_equal(err.code, BK_ERR_NOT_FOUND);
	assert_error_contains(&err, "no object s3://" BUCKET "/pre/src/absent");
	assert_int_equal(store_get_count(&f->store), 10);

	store_take_gets(&f->store, first, last, STORE_GETS);
	store_delay_gets(&f->store, 300);
	f->repo->backend->prefetch(f->repo, "src/small-4");
	f->repo->backend->prefetch(f->repo, "src/small-4");
	reader = f->repo->backend->reader_open(f->repo, "src/small-4", &err);
	store_delay_gets(&f->store, 0);
	if (reader == NULL)
		fail_msg("%s", err.message);
	assert_true(bk_repo_reader_read(reader, 0, back, sizeof(back), &err));
	small[0] = 4;
	assert_memory_equal(back, small, sizeof(back));
	bk_repo_reader_close(reader);
	assert_int_equal(store_get_count(&f->store), 1);
}

/*
 * Opens ahead that were not taken over: given up by bk_repo_prefetch_end
 * (their slots free again), or, once done and stale (128 hints later),
 * given to a new hint when every slot is used.
 */
static void
test_prefetch_not_taken(void **state)
{
	Fixture *f = *state;
	uint8_t small[100] = {0};
	size_t first[STORE_GETS];
	size_t last[STORE_GETS];
	char key[64];

	for (int objIdx = 0; objIdx < 10; objIdx++)
	{
		snprintf(key, sizeof(key), "pre/src/small-%d", objIdx);
		assert_true(store_put(&f->store, key, small, sizeof(small), "\"s\""));
	}
	store_take_gets(&f->store, first, last, STORE_GETS);
	for (int objIdx = 0; objIdx < 8; objIdx++)
	{
		snprintf(key, sizeof(key), "src/small-%d", objIdx);
		f->repo->backend->prefetch(f->repo, key);
	}
	assert_true(store_saw_gets(&f->store, 8));
	bk_repo_prefetch_end(f->repo);
	for (int objIdx = 0; objIdx < 8; objIdx++)
	{
		snprintf(key, sizeof(key), "src/small-%d", objIdx);
		f->repo->backend->prefetch(f->repo, key);
	}
	assert_true(store_saw_gets(&f->store, 16));
	usleep(100 * 1000);

	/*
	 * Every slot used, hinted 9th to 16th: hints are dropped until the
	 * oldest is stale, more than 128 hints after its own, and done (hinted
	 * again until it is: a GET is seen as it starts).
	 */
	for (int hintIdx = 0; hintIdx < 121; hintIdx++)
		f->repo->backend->prefetch(f->repo, "src/small-8");
	assert_int_equal(store_get_count(&f->store), 16);
	for (int waited = 0; store_get_count(&f->store) < 17 && waited < 5000;
		 waited += 10)
	{
		f->repo->backend->prefetch(f->repo, "src/small-9");
		usleep(10 * 1000);
	}
	usleep(100 * 1000);
	assert_int_equal(store_get_count(&f->store), 17);
}

/*
 * Opens ahead that nobody asked for are given up when the repository is
 * closed, even while the store answers them with 503s, retried for
 * s3_timeout (5 s here): within about a second.
 */
static void
test_prefetch_unclaimed(void **state)
{
	Fixture *f = *state;
	uint8_t small[100] = {0};
	int64_t started;
	int gets;

	assert_true(
		store_put(&f->store, "pre/src/small", small, sizeof(small), "\"s\""));
	store_slow_down_reads(&f->store, true);
	f->store.slow_downs = 0;
	f->repo->backend->prefetch(f->repo, "src/small");
	assert_true(store_saw_slow_downs(&f->store, 2));
	started = bk_monotonic_ms();
	bk_repo_close(f->repo);
	f->repo = NULL;
	assert_true(bk_monotonic_ms() - started < 1500);
	/* Given up: nothing more is asked for. */
	gets = store_get_count(&f->store);
	usleep(500 * 1000);
	assert_int_equal(store_get_count(&f->store), gets);
	store_slow_down_reads(&f->store, false);
}

/*
 * An open ahead that failed in a way that may have passed by the time of
 * the open (here an answer bk does not expect, a 400) is tried again by
 * the open; one the store refused (403) is the open's answer, not tried
 * again.
 */
static void
test_prefetch_failed(void **state)
{
	Fixture *f = *state;
	uint8_t small[100];
	uint8_t back[sizeof(small)];
	size_t first[STORE_GETS];
	size_t last[STORE_GETS];
	BkRepoReader *reader;
	BkError err;

	test_fill(small, sizeof(small), 5, false);
	assert_true(
		store_put(&f->store, "pre/src/small", small, sizeof(small), "\"s\""));
	store_take_gets(&f->store, first, last, STORE_GETS);
	store_refuse_gets(&f->store, 1);
	f->repo->backend->prefetch(f->repo, "src/small");
	assert_true(store_saw_gets(&f->store, 1));
	reader = f->repo->backend->reader_open(f->repo, "src/small", &err);
	if (reader == NULL)
		fail_msg("%s", err.message);
	assert_true(bk_repo_reader_read(reader, 0, back, sizeof(back), &err));
	assert_memory_equal(back, small, sizeof(small));
	bk_repo_reader_close(reader);
	assert_int_equal(store_get_count(&f->store), 2);

	store_deny_reads(&f->store, true);
	f->repo->backend->prefetch(f->repo, "src/small");
	assert_true(store_saw_gets(&f->store, 3));
	reader = f->repo->backend->reader_open(f->repo, "src/small", &err);
	assert_null(reader);
	assert_int_equal(err.code, BK_ERR_CONFIG);
	assert_error_contains(&err, "AccessDenied");
	assert_int_equal(store_get_count(&f->store), 3);
	store_deny_reads(&f->store, false);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_completion_reply_lost_then_412,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_completion_same_object_in_place,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_completion_reply_lost, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_completion_upload_aborted, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_completion_other_object_in_place,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_reply_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_error_in_200, setup, teardown),
		cmocka_unit_test_setup_teardown(test_completion_empty_200_not_done,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_completion_empty_200_done, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_trickling_store_cut_at_timeout,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_listing_same_token, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_listing_cut, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upload_listing_same_markers, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_put_reply_lost_object_unreadable,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_complete_if_absent_ignored, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_marker_refusal_named, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_no_repository_there, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_upload_listing_denied, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_expired_token_reloaded, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_expired_token_two_threads, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_credentials_file_owner, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_credentials_file_fifo, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_long_session_token, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_prefix_dot_components, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_expired_token_reload_refused,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_if_absent_ignored, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_put_other_copy_in_place, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_delete_prefix_key_refused, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_delete_prefix_not_a_result, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_read_ahead, setup, teardown),
		cmocka_unit_test_setup_teardown(test_object_meta_one_first_window,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_ahead_refused, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_read_object_removed, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_read_ahead_given_up, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_prefetch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retried_for_all_of_s3_timeout,
										setup, teardown),
		cmocka_unit_test_setup_teardown(test_prefetch_not_taken, setup,
										teardown),
		cmocka_unit_test_setup_teardown(test_prefetch_failed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prefetch_unclaimed, setup,
										teardown),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
