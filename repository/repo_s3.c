/*
 * repo_s3.c
 *		The S3 backend: a repository in a bucket of any S3-compatible store
 *		(AWS S3, Ceph RGW, MinIO, s3proxy), over libcurl, with requests
 *		signed by s3_sign.c and replies read by s3_xml.c.
 *
 * The repository's guarantees on an object store:
 *
 *	 put-if-absent   PUT with "If-None-Match: *" (CompleteMultipartUpload
 *					 with it too, after a HEAD): 200 is created, 412 means
 *					 an object exists and repo.c compares identities.  A
 *					 200 counts only whole: a PUT's without an <Error>
 *					 body, a completion's with its result (else the object
 *					 is looked up, never assumed).  A 200 is
 *					 the store's promise that the object is durable; that is
 *					 what "archived" means here.  A completion whose 200 was
 *					 lost is sent again and finds NoSuchUpload: then the
 *					 object's ETag says whether it holds our parts.  A PUT
 *					 whose 200 was lost is sent again and finds a 412: then
 *					 the object's x-amz-meta-bk-put-id, random for each
 *					 commit, says whether it is our PUT's.
 *	 integrity       every PUT and part carries Content-MD5, computed as the
 *					 spool is written, so the store refuses bytes that
 *					 changed on the way.
 *	 reads           range GETs; a reader keeps a window that is fetched by
 *					 several parallel range GETs (s3_read_jobs).  A reader that
 *					 will read every byte in order (a restore's, a verify's)
 *					 has the next window fetched by a thread of its own while
 *					 it decodes this one, so that the store's answer and the
 *					 reader's work overlap.  A caller about to open many
 *					 small objects (a restore) hints which ones
 *					 (s3_prefetch): up to BK_REPO_PREFETCHES are opened on
 *					 threads of their own, and the open that comes for one
 *					 takes it over.
 *	 failures        connection errors, 5xx, 429, SlowDown and RequestTimeout
 *					 are retried with exponential backoff and jitter until
 *					 s3_timeout; anything else is an error at once, so a
 *					 wrong secret is one refused request, not a storm.
 *
 * The spool, where the shipper assembles an object before uploading it, is
 * a local directory (spool_dir): it is not the repository, nothing in it
 * is relied on after a restart (Kafka offsets are committed only after the
 * PUT's 200), so it is not fsynced.
 *
 * Thread safety: restores read from several threads; each request takes a
 * curl handle from a pool (connections are reused per handle) and nothing
 * else is shared but read-only settings and the prefetch slots, under
 * prefetch_lock.  A reader's fetch ahead and an open ahead run on threads
 * of their own, which write only their result (the next window, the
 * opened reader), read by whoever joins the thread, and, for an open
 * ahead, that it has finished, under prefetch_lock.
 */
#include "repo_backend.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "bk_config.h"
#include "bk_secret_file.h"
#include "bk_util.h"
#include "s3_sign.h"
#include "s3_xml.h"

#define S3_MIN_PART_SIZE  ((uint64_t) 5 * 1024 * 1024)
#define S3_MAX_PART_SIZE  ((uint64_t) 5 * 1024 * 1024 * 1024)
#define S3_MAX_PARTS      10000
#define S3_PARTS_PER_STEP 1000 /* part size doubles every 1000 parts */
#define S3_WINDOW         ((size_t) 16 * 1024 * 1024)
#define S3_MIN_PIECE      ((size_t) 4 * 1024 * 1024)
#define S3_MAX_JOBS       16
#define S3_REPLY_MAX      ((size_t) 16 * 1024 * 1024)
#define S3_DELETE_BATCH   1000
#define S3_HANDLE_POOL    (S3_MAX_JOBS + 4)
#define S3_KEY_MAX        1024 /* AWS S3's, MinIO's and Ceph RGW's longest */
#define S3_PUT_ID_LEN     32   /* hex digits of x-amz-meta-bk-put-id */
#define SPOOL_LOCK_NAME   ".lock"

/* Time left for the last try of a request, whose backoff ends there. */
#define S3_LAST_TRY_MS 250

/* access_key_id, secret_access_key and a session token of a few kB. */
#define S3_CREDENTIALS_FILE_MAX (64 * 1024)

/*
 * The longest session token taken, in bytes.  STS does not promise a size
 * (with session policies and tags they run to several kB); AWS S3 takes
 * 8 KB of request headers in all.  A longer one is refused when loaded,
 * never cut.
 */
#define S3_SESSION_TOKEN_MAX 8192

/*
 * An open ahead that ended and was not taken over within this many later
 * hints was not wanted after all (its file was taken before its hint was
 * given, or failed first): with every slot used, its slot may go to
 * another.  Hints come an object at a time, several for a file restored
 * through a chain, and hints dropped while every slot is used count too:
 * far more than a restore's lead, so that an open about to be taken over
 * is not thrown away.
 */
#define S3_PREFETCH_STALE (16 * BK_REPO_PREFETCHES)

/* An object opened ahead of its reader_open (s3_prefetch). */
typedef struct S3Prefetch
{
	bool used;     /* the thread opens key, or has: join it */
	bool taken;    /* a reader_open of key (or the end) joins it */
	bool finished; /* the thread has ended */
	uint64_t hint; /* which hint it was, counted from the first */
	char key[BK_REPO_KEY_MAX];
	const BkRepo *repo;
	pthread_t thread;
	struct S3Reader *reader; /* the thread's result; NULL: err */
	BkError err;
} S3Prefetch;

/* What requests are signed with. */
typedef struct S3Credentials
{
	char access_key_id[256];
	char secret_access_key[256];
	char session_token[S3_SESSION_TOKEN_MAX + 1];
} S3Credentials;

typedef struct S3State
{
	bool https;
	bool host_style;
	bool verify_tls;
	char endpoint_host[256]; /* host[:port] of the endpoint */
	char host[512];          /* what Host: says */
	char base_url[600];      /* scheme://host */
	char bucket[64];
	char prefix[512]; /* "" or ending with "/" */
	char region[64];
	char ca_file[1024];
	char storage_class[64];
	/*
	 * Under credentials_lock: s3_access_key_file reloads them when the
	 * store says a session token expired, while other threads sign.
	 */
	pthread_mutex_t credentials_lock;
	S3Credentials credentials;
	uint64_t credentials_generation; /* counts the reloads that changed them */
	char credentials_file[1024];     /* s3_access_key_file, or "" */
	char spool_root[1024];
	char spool[1100]; /* spool_root/<shipper id>, once opened */
	int spool_lock_fd;
	int64_t timeout_ms;
	uint64_t part_size;
	int read_jobs;
	int64_t stale_upload_ms;
	char list_page[16]; /* max-keys, or \"\" */

	pthread_mutex_t pool_lock;
	CURL *pool[S3_HANDLE_POOL];
	int pool_count;

	/* Under prefetch_lock: each slot's flags, and its key while used. */
	pthread_mutex_t prefetch_lock;
	S3Prefetch prefetches[BK_REPO_PREFETCHES];
	uint64_t hints;
	atomic_bool prefetch_cancel; /* opens ahead give up */
} S3State;

typedef enum S3AheadState
{
	AHEAD_NONE,    /* nothing fetched ahead */
	AHEAD_RUNNING, /* a thread fetches it: join before touching it */
	AHEAD_DONE,    /* fetched (ahead_ok), not yet made the window */
	AHEAD_OFF,     /* no memory or thread for it: one window at a time */
} S3AheadState;

typedef struct S3Reader
{
	BkRepoReader base;
	char key[BK_REPO_KEY_MAX + 512];
	uint8_t *window;
	uint64_t window_start;
	size_t window_len;
	/*
	 * The window after this one, fetched while this one is read (in_order
	 * only): a reader of a large object holds two windows.
	 */
	uint8_t *ahead;
	uint64_t ahead_start; /* where window ends */
	size_t ahead_len;
	S3AheadState ahead_state;
	pthread_t ahead_thread;
	bool ahead_ok;
	BkError ahead_err;
	atomic_bool ahead_cancel; /* set when the reader no longer wants it */
} S3Reader;

/*
 * Its spool file is open only while a chunk is written and while it is
 * committed, and its part MD5s grow with it (repo_backend.h): a shipper
 * may hold thousands of uploads, most of them one chunk long.
 */
typedef struct S3Upload
{
	BkRepoUpload base;
	int fd; /* while committing; -1 */
	char path[1200];
	bool spooled; /* the spool file exists */
	uint64_t size;
	bool finished;
	EVP_MD_CTX *md5;
	uint64_t part_end; /* where the part being written ends */
	int part_count;    /* parts whose MD5 is final */
	int part_alloc;    /* room in part_md5 */
	uint8_t (*part_md5)[16];
} S3Upload;

/* A growable reply body, bounded. */
typedef struct S3Reply
{
	char *data;
	size_t len;
	size_t cap;
} S3Reply;

/* One request. */
typedef struct S3Call
{
	const char *method;
	const char *key; /* full key (prefix included), raw; NULL: the bucket */
	BkSigV4Pair query[6];
	int query_count;
	BkSigV4Pair headers[8]; /* besides host, date, hash, token */
	int header_count;
	/* Body: memory, or a range of a file. */
	const uint8_t *body;
	int body_fd;
	uint64_t body_offset;
	uint64_t body_len;
	bool has_body;
	bool head;
	/* Set by another thread: give up (NULL: never). */
	atomic_bool *cancel;
	/* Where a successful GET's body goes (exactly into_len bytes). */
	uint8_t *into;
	size_t into_len;
	size_t into_got;
	bool into_overflow;

	/* Results. */
	long status;
	S3Reply reply;
	uint64_t content_length;
	uint64_t range_total; /* of Content-Range; UINT64_MAX if none */
	int64_t last_modified_ms;
	char etag[BK_S3_ETAG_MAX];
	char put_id[S3_PUT_ID_LEN + 1]; /* x-amz-meta-bk-put-id, or "" */
	char error_code[128];
	char error_message[512];
	int sends; /* by s3_call: more than one, an earlier one may have acted */
	uint64_t signed_generation; /* of the credentials the last send used */
	/* Why s3_access_key_file could not be read again, after ExpiredToken. */
	BkError reload_error;
	/* Read position in the body while sending. */
	uint64_t sent;
} S3Call;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static bool curl_ready;

static void
curl_init_once(void)
{
	curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

static S3State *
state_of(const BkRepo *repo)
{
	return repo->state;
}

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "2026-12-03T01:02:03.456Z" (ListObjectsV2, ListMultipartUploads). */
static int64_t
parse_iso8601_ms(const char *text)
{
	struct tm tm;
	int ms = 0;
	const char *rest;

	memset(&tm, 0, sizeof(tm));
	rest = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
	if (rest == NULL)
		return 0;
	if (*rest == '.')
	{
		int digits = 0;

		for (rest++; isdigit((unsigned char) *rest); rest++, digits++)
			if (digits < 3)
				ms = ms * 10 + (*rest - '0');
		for (; digits < 3; digits++)
			ms *= 10;
	}
	return (int64_t) timegm(&tm) * 1000 + ms;
}

/* ------------------------------------------------------------ handles */

static CURL *
handle_take(S3State *state)
{
	CURL *handle = NULL;

	pthread_mutex_lock(&state->pool_lock);
	if (state->pool_count > 0)
		handle = state->pool[--state->pool_count];
	pthread_mutex_unlock(&state->pool_lock);
	if (handle == NULL)
		handle = curl_easy_init();
	else
		curl_easy_reset(handle);
	return handle;
}

static void
handle_give_back(S3State *state, CURL *handle)
{
	pthread_mutex_lock(&state->pool_lock);
	if (state->pool_count < S3_HANDLE_POOL)
	{
		state->pool[state->pool_count++] = handle;
		handle = NULL;
	}
	pthread_mutex_unlock(&state->pool_lock);
	if (handle != NULL)
		curl_easy_cleanup(handle);
}

/* ------------------------------------------------------------ requests */

static size_t
reply_write(char *data, size_t size, size_t count, void *arg)
{
	S3Call *call = arg;
	size_t len = size * count;

	if (call->into != NULL && call->status >= 200 && call->status < 300)
	{
		if (call->into_got + len > call->into_len)
		{
			call->into_overflow = true;
			return 0;
		}
		memcpy(call->into + call->into_got, data, len);
		call->into_got += len;
		return len;
	}
	if (call->reply.len + len + 1 > call->reply.cap)
	{
		size_t cap = call->reply.cap ? call->reply.cap : 16384;
		char *grown;

		while (cap < call->reply.len + len + 1)
			cap *= 2;
		if (cap > S3_REPLY_MAX ||
			(grown = realloc(call->reply.data, cap)) == NULL)
			return 0;
		call->reply.data = grown;
		call->reply.cap = cap;
	}
	memcpy(call->reply.data + call->reply.len, data, len);
	call->reply.len += len;
	call->reply.data[call->reply.len] = '\0';
	return len;
}

/* Status line and the headers bk reads. */
static size_t
header_seen(char *data, size_t size, size_t count, void *arg)
{
	S3Call *call = arg;
	size_t len = size * count;
	char line[1024];
	char *value;

	if (len >= sizeof(line))
		return len;
	memcpy(line, data, len);
	line[len] = '\0';
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		line[--len] = '\0';
	if (strncmp(line, "HTTP/", 5) == 0)
	{
		char *space = strchr(line, ' ');

		call->status = space ? strtol(space + 1, NULL, 10) : 0;
		call->etag[0] = '\0';
		call->put_id[0] = '\0';
		call->content_length = 0;
		call->range_total = UINT64_MAX;
		return size * count;
	}
	value = strchr(line, ':');
	if (value == NULL)
		return size * count;
	*value++ = '\0';
	while (*value == ' ')
		value++;
	if (strcasecmp(line, "ETag") == 0)
		bk_strlcpy(call->etag, value, sizeof(call->etag));
	else if (strcasecmp(line, "x-amz-meta-bk-put-id") == 0)
		bk_strlcpy(call->put_id, value, sizeof(call->put_id));
	else if (strcasecmp(line, "Content-Length") == 0)
		call->content_length = strtoull(value, NULL, 10);
	else if (strcasecmp(line, "Content-Range") == 0)
	{
		const char *slash = strchr(value, '/');

		if (slash != NULL && isdigit((unsigned char) slash[1]))
			call->range_total = strtoull(slash + 1, NULL, 10);
	}
	return size * count;
}

static size_t
body_read(char *buffer, size_t size, size_t count, void *arg)
{
	S3Call *call = arg;
	size_t want = size * count;
	uint64_t left = call->body_len - call->sent;

	if (want > left)
		want = (size_t) left;
	if (want == 0)
		return 0;
	if (call->body != NULL)
		memcpy(buffer, call->body + call->sent, want);
	else
	{
		ssize_t got = pread(call->body_fd, buffer, want,
							(off_t) (call->body_offset + call->sent));

		if (got <= 0)
			return CURL_READFUNC_ABORT;
		want = (size_t) got;
	}
	call->sent += want;
	return want;
}

/* The reply's <Error><Code> and <Message>. */
static bool
error_element(void *arg, const char *path, const char *text, BkError *err)
{
	S3Call *call = arg;

	if (strcmp(path, "Error/Code") == 0)
		bk_strlcpy(call->error_code, text, sizeof(call->error_code));
	else if (strcmp(path, "Error/Message") == 0)
		bk_strlcpy(call->error_message, text, sizeof(call->error_message));
	return true;
}

static void
read_error_reply(S3Call *call)
{
	BkError ignored;

	call->error_code[0] = call->error_message[0] = '\0';
	if (call->reply.len > 0 && call->reply.data != NULL &&
		strstr(call->reply.data, "<Error") != NULL)
		bk_xml_parse(call->reply.data, call->reply.len, error_element, call,
					 &ignored);
}

static const char *
call_path(const S3State *state, const S3Call *call, char *out, size_t out_len)
{
	if (state->host_style)
		snprintf(out, out_len, "/%s", call->key ? call->key : "");
	else
		snprintf(out, out_len, "/%s/%s", state->bucket,
				 call->key ? call->key : "");
	return out;
}

/*
 * The store refused the credentials' session token as expired (AWS S3
 * answers 400 ExpiredToken; some stores 403 or "TokenRefreshRequired").
 */
static bool
token_expired(const S3Call *call)
{
	return strcmp(call->error_code, "ExpiredToken") == 0 ||
		   strcmp(call->error_code, "TokenRefreshRequired") == 0;
}

static bool reload_credentials(S3State *state, uint64_t signed_generation,
							   BkError *reload_err);

/* What a retry can fix: the store or the network, not the request. */
static bool
transient_status(const S3Call *call)
{
	/* 501 Not Implemented: a feature the store lacks, for good. */
	if ((call->status >= 500 && call->status != 501) || call->status == 429)
		return true;
	return strcmp(call->error_code, "SlowDown") == 0 ||
		   strcmp(call->error_code, "RequestTimeout") == 0 ||
		   strcmp(call->error_code, "OperationAborted") == 0 ||
		   strcmp(call->error_code, "ConditionalRequestConflict") == 0 ||
		   strcmp(call->error_code, "InternalError") == 0;
}

static bool
transient_curl(CURLcode code)
{
	switch (code)
	{
		case CURLE_URL_MALFORMAT:
		case CURLE_UNSUPPORTED_PROTOCOL:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CIPHER:
		case CURLE_OUT_OF_MEMORY:
		case CURLE_ABORTED_BY_CALLBACK:
		case CURLE_READ_ERROR:
		case CURLE_WRITE_ERROR:
			return false;
		default:
			return true;
	}
}

/* Progress callback: a nonzero answer makes curl give the transfer up. */
static int
transfer_cancelled(void *arg, curl_off_t dltotal, curl_off_t dlnow,
				   curl_off_t ultotal, curl_off_t ulnow)
{
	S3Call *call = arg;

	(void) dltotal;
	(void) dlnow;
	(void) ultotal;
	(void) ulnow;
	return atomic_load(call->cancel) ? 1 : 0;
}

/*
 * Build, sign and send call once, giving up at deadline (bk_monotonic_ms):
 * a store that trickles its answer a byte at a time never trips curl's
 * low-speed limit, and must not hold a shipper or a recovery's wal-get for
 * longer than s3_timeout.
 */
static CURLcode
call_once(S3State *state, CURL *handle, S3Call *call, int64_t deadline,
		  BkError *err)
{
	char path[BK_REPO_KEY_MAX + 1024];
	char encoded_path[3 * sizeof(path)];
	char query[8192];
	char url[sizeof(encoded_path) + sizeof(query) + 700];
	char amz_date[17];
	char authorization[1024];
	/* A header line: the session token's is the longest. */
	char line[S3_SESSION_TOKEN_MAX + 256];
	BkSigV4Pair headers[16];
	int header_count = 0;
	struct curl_slist *list = NULL;
	BkSigV4Request request;
	S3Credentials signing;
	BkSigV4Credentials credentials = {
		signing.access_key_id, signing.secret_access_key, state->region, "s3"};
	struct tm tm;
	time_t now = time(NULL);
	CURLcode code;
	curl_off_t filetime = -1;
	int64_t left_ms = deadline - bk_monotonic_ms();

	pthread_mutex_lock(&state->credentials_lock);
	signing = state->credentials;
	call->signed_generation = state->credentials_generation;
	pthread_mutex_unlock(&state->credentials_lock);
	gmtime_r(&now, &tm);
	strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm);
	call_path(state, call, path, sizeof(path));
	if (!bk_sigv4_uri_encode(path, true, encoded_path, sizeof(encoded_path)) ||
		!bk_sigv4_canonical_query(call->query, call->query_count, query,
								  sizeof(query), err))
	{
		bk_error_set(err, BK_ERR_INTERNAL, "S3 request too long");
		return CURLE_URL_MALFORMAT;
	}
	snprintf(url, sizeof(url), "%s%s%s%s", state->base_url, encoded_path,
			 query[0] ? "?" : "", query);

	headers[header_count++] = (BkSigV4Pair){"host", state->host};
	headers[header_count++] = (BkSigV4Pair){"x-amz-date", amz_date};
	/*
	 * Bodies are not hashed for the signature (UNSIGNED-PAYLOAD, as AWS's
	 * own SDKs do over TLS): Content-MD5 protects their content instead.
	 */
	headers[header_count++] = (BkSigV4Pair){
		"x-amz-content-sha256",
		call->has_body ? BK_SIGV4_UNSIGNED_PAYLOAD : BK_SIGV4_EMPTY_SHA256};
	if (signing.session_token[0])
		headers[header_count++] =
			(BkSigV4Pair){"x-amz-security-token", signing.session_token};
	for (int headerIdx = 0; headerIdx < call->header_count; headerIdx++)
		headers[header_count++] = call->headers[headerIdx];
	request = (BkSigV4Request){call->method,      path,    call->query,
							   call->query_count, headers, header_count,
							   headers[2].value};
	if (!bk_sigv4_authorization(&request, &credentials, amz_date, authorization,
								sizeof(authorization), NULL, 0, err))
	{
		OPENSSL_cleanse(&signing, sizeof(signing));
		return CURLE_ABORTED_BY_CALLBACK;
	}
	for (int headerIdx = 0; headerIdx < header_count; headerIdx++)
	{
		snprintf(line, sizeof(line), "%s: %s", headers[headerIdx].name,
				 headers[headerIdx].value);
		list = curl_slist_append(list, line);
	}
	snprintf(line, sizeof(line), "Authorization: %s", authorization);
	list = curl_slist_append(list, line);
	OPENSSL_cleanse(line, sizeof(line));
	OPENSSL_cleanse(authorization, sizeof(authorization));
	/* headers point into it (the session token) until here. */
	OPENSSL_cleanse(&signing, sizeof(signing));
	/* No "Expect: 100-continue" round trip; no default content type. */
	list = curl_slist_append(list, "Expect:");
	if (call->has_body && strcmp(call->method, "POST") != 0)
		list = curl_slist_append(list, "Content-Type:");

	call->status = 0;
	call->sent = 0;
	call->into_got = 0;
	call->into_overflow = false;
	call->reply.len = 0;
	call->etag[0] = '\0';
	call->put_id[0] = '\0';
	curl_easy_setopt(handle, CURLOPT_URL, url);
	curl_easy_setopt(handle, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	/* A transfer that moves nothing for 30 s is a dead connection. */
	curl_easy_setopt(handle, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(handle, CURLOPT_LOW_SPEED_TIME, 30L);
	/* The whole transfer, connection included (0 would be no limit). */
	curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS,
					 (long) (left_ms > 1 ? left_ms : 1));
	curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, reply_write);
	curl_easy_setopt(handle, CURLOPT_WRITEDATA, call);
	curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, header_seen);
	curl_easy_setopt(handle, CURLOPT_HEADERDATA, call);
	curl_easy_setopt(handle, CURLOPT_FILETIME, 1L);
	/* Called about once a second at least, and as data arrives. */
	curl_easy_setopt(handle, CURLOPT_NOPROGRESS, call->cancel ? 0L : 1L);
	curl_easy_setopt(handle, CURLOPT_XFERINFOFUNCTION,
					 call->cancel ? transfer_cancelled : NULL);
	curl_easy_setopt(handle, CURLOPT_XFERINFODATA, call);
	curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(handle, CURLOPT_SSL_VERIFYPEER,
					 state->verify_tls ? 1L : 0L);
	curl_easy_setopt(handle, CURLOPT_SSL_VERIFYHOST,
					 state->verify_tls ? 2L : 0L);
	if (state->ca_file[0])
		curl_easy_setopt(handle, CURLOPT_CAINFO, state->ca_file);
	if (call->head)
		curl_easy_setopt(handle, CURLOPT_NOBODY, 1L);
	else if (strcmp(call->method, "PUT") == 0)
	{
		curl_easy_setopt(handle, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(handle, CURLOPT_READFUNCTION, body_read);
		curl_easy_setopt(handle, CURLOPT_READDATA, call);
		curl_easy_setopt(handle, CURLOPT_INFILESIZE_LARGE,
						 (curl_off_t) call->body_len);
	}
	else if (strcmp(call->method, "POST") == 0)
	{
		curl_easy_setopt(handle, CURLOPT_POST, 1L);
		curl_easy_setopt(handle, CURLOPT_READFUNCTION, body_read);
		curl_easy_setopt(handle, CURLOPT_READDATA, call);
		curl_easy_setopt(handle, CURLOPT_POSTFIELDSIZE_LARGE,
						 (curl_off_t) call->body_len);
	}
	else if (strcmp(call->method, "GET") != 0)
		curl_easy_setopt(handle, CURLOPT_CUSTOMREQUEST, call->method);

	code = curl_easy_perform(handle);
	curl_slist_free_all(list);
	if (code == CURLE_OK)
	{
		curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &call->status);
		curl_easy_getinfo(handle, CURLINFO_FILETIME_T, &filetime);
		call->last_modified_ms = filetime > 0 ? (int64_t) filetime * 1000 : 0;
	}
	return code;
}

/* How a request is named in messages: "PUT s3://bucket/key". */
static void
call_describe(const S3State *state, const S3Call *call, char *out,
			  size_t out_len)
{
	/* A listing names its prefix: "the bucket" alone says nothing. */
	for (int queryIdx = 0; call->key == NULL && queryIdx < call->query_count;
		 queryIdx++)
		if (strcmp(call->query[queryIdx].name, "prefix") == 0)
		{
			snprintf(out, out_len, "%s s3://%s/%s (listing)", call->method,
					 state->bucket, call->query[queryIdx].value);
			return;
		}
	snprintf(out, out_len, "%s s3://%s/%s", call->method, state->bucket,
			 call->key ? call->key : "");
}

/*
 * Send call, retrying what a retry can fix until s3_timeout, which bounds
 * each send too (a store that answers slowly is cut there).  true once
 * the store answered (any status: the caller judges it); false if it could
 * not be reached in time, the request itself is wrong, or call->cancel was
 * set (within about a second: curl looks at it that often).
 */
static bool
s3_call(S3State *state, S3Call *call, BkError *err)
{
	int64_t deadline = bk_monotonic_ms() + state->timeout_ms;
	int attempts = 0;
	bool reloaded = false;
	CURL *handle;
	char what[BK_REPO_KEY_MAX + 700];
	char last[512] = "";

	call_describe(state, call, what, sizeof(what));
	bk_error_clear(&call->reload_error);
	handle = handle_take(state);
	if (handle == NULL)
		return bk_error_set(err, BK_ERR_NOMEM,
							"could not create a curl handle");
	for (;;)
	{
		CURLcode code;
		int64_t delay;
		int64_t left;
		uint32_t jitter;

		if (call->cancel != NULL && atomic_load(call->cancel))
		{
			handle_give_back(state, handle);
			return bk_error_set(err, BK_ERR_STORE, "%s: given up", what);
		}
		attempts++;
		call->sends = attempts;
		code = call_once(state, handle, call, deadline, err);
		if (code == CURLE_OK)
		{
			read_error_reply(call);
			/*
			 * Temporary credentials ran out: once per call, read them
			 * again from s3_access_key_file, which whatever issues them
			 * keeps fresh, and send again if they changed.
			 */
			if (token_expired(call) && !reloaded)
			{
				reloaded = true;
				if (reload_credentials(state, call->signed_generation,
									   &call->reload_error))
					continue;
			}
			if (!transient_status(call))
			{
				handle_give_back(state, handle);
				return true;
			}
			snprintf(last, sizeof(last), "HTTP %ld%s%s", call->status,
					 call->error_code[0] ? " " : "", call->error_code);
		}
		else if (code == CURLE_OPERATION_TIMEDOUT &&
				 bk_monotonic_ms() >= deadline - 100)
		{
			/* Cut at the deadline (call_once): no time left to retry. */
			handle_give_back(state, handle);
			bk_error_set(err, BK_ERR_TIMEOUT,
						 "%s: the object store was too slow: the request did "
						 "not finish within s3_timeout (%" PRId64
						 " s; %d attempts)",
						 what, state->timeout_ms / 1000, attempts);
			return bk_error_hint(err,
								 "Check the store at %s and the network to "
								 "it; raise s3_timeout if it is slow but "
								 "working (one request, retries included, "
								 "may take that long).",
								 state->base_url);
		}
		else if (!transient_curl(code) || code == CURLE_ABORTED_BY_CALLBACK)
		{
			handle_give_back(state, handle);
			if (code == CURLE_ABORTED_BY_CALLBACK && err->code != BK_OK)
				return false;
			if (call->into_overflow)
				return bk_error_set(err, BK_ERR_FORMAT,
									"%s: the store sent more bytes than asked",
									what);
			return bk_error_set(err,
								code == CURLE_PEER_FAILED_VERIFICATION ||
										code == CURLE_SSL_CACERT_BADFILE
									? BK_ERR_CONFIG
									: BK_ERR_STORE,
								"%s: %s", what, curl_easy_strerror(code));
		}
		else
			snprintf(last, sizeof(last), "%s", curl_easy_strerror(code));

		/* Exponential backoff with jitter: 100 ms doubling to 5 s. */
		delay = attempts >= 6 ? 5000 : (int64_t) 100 << (attempts - 1);
		if (delay > 5000)
			delay = 5000;
		RAND_bytes((unsigned char *) &jitter, sizeof(jitter));
		delay = delay / 2 + (int64_t) (jitter % (uint32_t) (delay / 2 + 1));
		/*
		 * The last wait is cut to end S3_LAST_TRY_MS before the deadline
		 * and one more try made there: giving up as soon as the next
		 * backoff would pass it left up to 5 s of s3_timeout untried (a
		 * 5 s s3_timeout gave up after 2), while the message says the
		 * store did not answer in all of it.
		 */
		left = deadline - bk_monotonic_ms();
		if (delay > left - S3_LAST_TRY_MS)
			delay = left - S3_LAST_TRY_MS;
		if (delay < 0)
		{
			handle_give_back(state, handle);
			bk_error_set(err, BK_ERR_TIMEOUT,
						 "%s: the object store did not answer successfully "
						 "in %" PRId64 " s (%d attempts; last: %s)",
						 what, state->timeout_ms / 1000, attempts, last);
			return bk_error_hint(err,
								 "Check that the store at %s is up and "
								 "reachable; bk retries for s3_timeout.",
								 state->base_url);
		}
		/* A reader that gave up should not wait out the whole delay. */
		for (int64_t slept = 0; slept < delay && !(call->cancel != NULL &&
												   atomic_load(call->cancel));
			 slept += 50)
			usleep((useconds_t) (delay - slept < 50 ? delay - slept : 50) *
				   1000);
	}
}

static void
call_free(S3Call *call)
{
	free(call->reply.data);
	call->reply.data = NULL;
	call->reply.len = call->reply.cap = 0;
}

/* An answer bk did not expect, as an error naming request and reason. */
static bool
call_failed(const S3State *state, const S3Call *call, BkError *err)
{
	char what[BK_REPO_KEY_MAX + 700];
	BkErrorCode code = BK_ERR_STORE;

	call_describe(state, call, what, sizeof(what));
	if (call->status == 403 || call->status == 401 ||
		strcmp(call->error_code, "AccessDenied") == 0 ||
		strcmp(call->error_code, "NoSuchBucket") == 0 || token_expired(call))
		code = BK_ERR_CONFIG;
	/*
	 * The key, for good.  Not InvalidArgument: stores send it for settings
	 * too (a header every request carries), and refusing every object as if
	 * its name were at fault would divert the whole archive to rejected/.
	 */
	else if (strcmp(call->error_code, "KeyTooLongError") == 0)
		code = BK_ERR_REFUSED;
	/*
	 * The file could not be read again (it went, or is refused now: another
	 * owner): that, not the expiry, is what to fix.
	 */
	if (token_expired(call) && call->reload_error.code != BK_OK)
	{
		bk_error_set(err, code,
					 "%s: HTTP %ld %s (the credentials expired), and "
					 "reading them again failed: %s",
					 what, call->status, call->error_code,
					 call->reload_error.message);
		if (call->reload_error.hint[0])
			bk_error_hint(err, "%s", call->reload_error.hint);
		return false;
	}
	bk_error_set(err, code, "%s: HTTP %ld%s%s%s%s%s", what, call->status,
				 call->status >= 200 && call->status < 300 &&
						 call->error_code[0]
					 ? " with an error"
					 : "",
				 call->error_code[0] ? " " : "", call->error_code,
				 call->error_message[0] ? ": " : "", call->error_message);
	if (strcmp(call->error_code, "InvalidAccessKeyId") == 0 ||
		strcmp(call->error_code, "SignatureDoesNotMatch") == 0)
		bk_error_hint(err,
					  "The store refused bk's credentials: check the access "
					  "key id and secret in s3_access_key_file (or "
					  "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), and "
					  "s3_region.");
	else if (token_expired(call))
		bk_error_hint(err,
					  "The credentials' session token expired. bk reads "
					  "s3_access_key_file again when the store says so: "
					  "have whatever issues the credentials rewrite it "
					  "before they expire. AWS_* variables cannot be renewed "
					  "in a running process: use the file, or long-lived "
					  "keys.");
	else if (strcmp(call->error_code, "AccessDenied") == 0)
		bk_error_hint(err,
					  "The credentials are valid but lack a permission "
					  "on bucket \"%s\" (README, \"S3 permissions\").",
					  state->bucket);
	else if (strcmp(call->error_code, "NoSuchBucket") == 0)
		bk_error_hint(err,
					  "Create bucket \"%s\" first, or fix the repository "
					  "setting (s3://BUCKET/PREFIX).",
					  state->bucket);
	return false;
}

/*
 * Send call and read the XML document of its 200 answer with fn; any other
 * answer is an error naming the request.
 */
static bool
call_for_xml(S3State *state, S3Call *call, BkXmlElementFn fn, void *arg,
			 BkError *err)
{
	bool ok;

	if (!s3_call(state, call, err))
	{
		call_free(call);
		return false;
	}
	if (call->status != 200)
		ok = call_failed(state, call, err);
	else if (!(ok = bk_xml_parse(call->reply.data ? call->reply.data : "",
								 call->reply.len, fn, arg, err)) &&
			 err->code == BK_ERR_FORMAT)
	{
		char what[BK_REPO_KEY_MAX + 700];

		call_describe(state, call, what, sizeof(what));
		bk_error_prefix(err, "%s: ", what);
	}
	call_free(call);
	return ok;
}

/* "<prefix><key>" into out. */
static bool
full_key(const S3State *state, const char *key, char *out, size_t out_len,
		 BkError *err)
{
	if ((size_t) snprintf(out, out_len, "%s%s", state->prefix, key) >= out_len)
		return bk_error_set(err, BK_ERR_USAGE, "repository key too long");
	return true;
}

static void
md5_base64(const uint8_t digest[16], char out[32])
{
	EVP_EncodeBlock((unsigned char *) out, digest, 16);
}

/* ------------------------------------------------------------ opening */

/*
 * Copy a credential named name into field (field_size bytes); one that
 * does not fit is refused, never cut: a cut token or key would only make
 * every request fail, as if the credentials were wrong.  The message gives
 * its length, never its text.
 */
static bool
credential_copy(char *field, size_t field_size, const char *name,
				const char *value, BkError *err)
{
	size_t len = strlen(value);

	if (len >= field_size)
		return bk_error_set(err, BK_ERR_CONFIG,
							"%s is %zu bytes long; bk takes at most %zu", name,
							len, field_size - 1);
	memcpy(field, value, len + 1);
	return true;
}

static bool
credentials_setter(void *arg, const char *key, const char *value, BkError *err)
{
	S3Credentials *credentials = arg;

	if (strcmp(key, "access_key_id") == 0)
		return credential_copy(credentials->access_key_id,
							   sizeof(credentials->access_key_id), key, value,
							   err);
	else if (strcmp(key, "secret_access_key") == 0)
		return credential_copy(credentials->secret_access_key,
							   sizeof(credentials->secret_access_key), key,
							   value, err);
	else if (strcmp(key, "session_token") == 0)
		return credential_copy(credentials->session_token,
							   sizeof(credentials->session_token), key, value,
							   err);
	else
		return bk_error_set(err, BK_ERR_CONFIG,
							"unknown key \"%s\" (access_key_id, "
							"secret_access_key, session_token)",
							key);
	return true;
}

/*
 * Read s3_access_key_file into credentials.  The file is held to the rule of
 * private key files (bk_secret_file.h): its owner decides which credentials
 * sign bk's requests, and so which account, bucket and objects a restore
 * running as root reads.
 */
static bool
read_credentials_file(const char *file, S3Credentials *credentials,
					  BkError *err)
{
	char *text;
	size_t len;
	bool ok;

	memset(credentials, 0, sizeof(*credentials));
	if (!bk_secret_file_read(file, BK_SECRET_S3_CREDENTIALS,
							 S3_CREDENTIALS_FILE_MAX, &text, &len, err))
		return false;
	ok = bk_config_parse_text(file, text, len, credentials_setter, credentials,
							  err);
	OPENSSL_cleanse(text, len);
	free(text);
	if (!ok)
		return false;
	if (!credentials->access_key_id[0] || !credentials->secret_access_key[0])
		return bk_error_set(err, BK_ERR_CONFIG,
							"s3_access_key_file \"%s\" must set "
							"access_key_id and secret_access_key",
							file);
	return true;
}

/*
 * The store said the session token of the credentials of generation
 * signed_generation expired: read s3_access_key_file again.  True if
 * there are other credentials than those now (the request is worth sending
 * again): the file holds new ones, or another thread loaded them since this
 * request was signed.  False without a file, or when it is unreadable,
 * refused (reload_err says why) or unchanged, and the answer stands.
 */
static bool
reload_credentials(S3State *state, uint64_t signed_generation,
				   BkError *reload_err)
{
	S3Credentials fresh;
	bool loaded;
	bool changed;

	bk_error_clear(reload_err);
	if (state->credentials_file[0] == '\0')
		return false;
	loaded = read_credentials_file(state->credentials_file, &fresh, reload_err);
	pthread_mutex_lock(&state->credentials_lock);
	if (loaded && memcmp(&fresh, &state->credentials, sizeof(fresh)) != 0)
	{
		state->credentials = fresh;
		state->credentials_generation++;
	}
	changed = state->credentials_generation != signed_generation;
	pthread_mutex_unlock(&state->credentials_lock);
	OPENSSL_cleanse(&fresh, sizeof(fresh));
	return changed;
}

static bool
load_credentials(S3State *state, const BkRepoOptions *options, BkError *err)
{
	const char *file = options ? options->s3_access_key_file : NULL;
	S3Credentials *credentials = &state->credentials;

	if (file != NULL && file[0])
	{
		bk_strlcpy(state->credentials_file, file,
				   sizeof(state->credentials_file));
		return read_credentials_file(file, credentials, err);
	}
	if (getenv("AWS_ACCESS_KEY_ID") && getenv("AWS_SECRET_ACCESS_KEY"))
		return credential_copy(credentials->access_key_id,
							   sizeof(credentials->access_key_id),
							   "AWS_ACCESS_KEY_ID", getenv("AWS_ACCESS_KEY_ID"),
							   err) &&
			   credential_copy(credentials->secret_access_key,
							   sizeof(credentials->secret_access_key),
							   "AWS_SECRET_ACCESS_KEY",
							   getenv("AWS_SECRET_ACCESS_KEY"), err) &&
			   (getenv("AWS_SESSION_TOKEN") == NULL ||
				credential_copy(credentials->session_token,
								sizeof(credentials->session_token),
								"AWS_SESSION_TOKEN",
								getenv("AWS_SESSION_TOKEN"), err));
	bk_error_set(err, BK_ERR_CONFIG,
				 "no S3 credentials for repository s3://%s/%s", state->bucket,
				 state->prefix);
	return bk_error_hint(err, "Set s3_access_key_file (a mode 0600 file with "
							  "access_key_id and secret_access_key), or "
							  "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.");
}

/*
 * Is "host[:port]" a loopback address: localhost, an IPv4 address in
 * 127.0.0.0/8, or [::1]?  The whole host is compared, so that a name such
 * as localhost.example.net or 127.0.0.1.example.net, which resolves
 * anywhere, never passes for loopback.
 */
static bool
loopback_host(const char *host)
{
	char name[256];
	size_t name_len = strcspn(host, ":");
	struct in_addr addr;

	if (strncmp(host, "[::1]", 5) == 0)
		return host[5] == '\0' || host[5] == ':';
	if (name_len >= sizeof(name))
		return false;
	memcpy(name, host, name_len);
	name[name_len] = '\0';
	if (strcasecmp(name, "localhost") == 0)
		return true;
	return inet_pton(AF_INET, name, &addr) == 1 &&
		   (ntohl(addr.s_addr) >> 24) == 127;
}

static bool
parse_endpoint(S3State *state, const BkRepoOptions *options, BkError *err)
{
	const char *endpoint = options ? options->s3_endpoint : NULL;
	char fallback[256];
	const char *host;
	size_t host_len;

	if (endpoint == NULL || endpoint[0] == '\0')
	{
		snprintf(fallback, sizeof(fallback), "https://s3.%s.amazonaws.com",
				 state->region);
		endpoint = fallback;
	}
	if (strncmp(endpoint, "https://", 8) == 0)
	{
		state->https = true;
		host = endpoint + 8;
	}
	else if (strncmp(endpoint, "http://", 7) == 0)
		host = endpoint + 7;
	else
		return bk_error_set(err, BK_ERR_CONFIG,
							"s3_endpoint \"%s\" must start with https:// (or "
							"http:// for a loopback address)",
							endpoint);
	host_len = strcspn(host, "/");
	if (host_len == 0 || host_len >= sizeof(state->endpoint_host) ||
		(host[host_len] != '\0' && strcmp(host + host_len, "/") != 0))
		return bk_error_set(err, BK_ERR_CONFIG,
							"s3_endpoint \"%s\" must be scheme://host[:port] "
							"without a path",
							endpoint);
	memcpy(state->endpoint_host, host, host_len);
	state->endpoint_host[host_len] = '\0';
	if (!state->https && !loopback_host(state->endpoint_host))
	{
		bk_error_set(err, BK_ERR_CONFIG,
					 "s3_endpoint \"%s\" is plain http to a host that is not "
					 "loopback",
					 endpoint);
		return bk_error_hint(err, "Use https://: credentials and archive "
								  "metadata must not cross a network in "
								  "clear.");
	}
	if (state->host_style)
		snprintf(state->host, sizeof(state->host), "%s.%s", state->bucket,
				 state->endpoint_host);
	else
		bk_strlcpy(state->host, state->endpoint_host, sizeof(state->host));
	snprintf(state->base_url, sizeof(state->base_url), "%s://%s",
			 state->https ? "https" : "http", state->host);
	return true;
}

static bool
bucket_name_valid(const char *name, size_t len)
{
	if (len < 3 || len > 63)
		return false;
	for (size_t charIdx = 0; charIdx < len; charIdx++)
		if (!islower((unsigned char) name[charIdx]) &&
			!isdigit((unsigned char) name[charIdx]) && name[charIdx] != '-' &&
			name[charIdx] != '.')
			return false;
	return true;
}

/*
 * Are the prefix's len bytes "/"-separated components all plain names: none
 * empty ("a//b"), none "." or ".."?  Those are not kept as sent: curl
 * removes dot segments from the path, so the request signed is not the
 * one the store sees.
 */
static bool
prefix_components_plain(const char *prefix, size_t len)
{
	size_t start = 0;

	while (start < len)
	{
		size_t end = start;

		while (end < len && prefix[end] != '/')
			end++;
		if (end == start || (end - start == 1 && prefix[start] == '.') ||
			(end - start == 2 && prefix[start] == '.' &&
			 prefix[start + 1] == '.'))
			return false;
		start = end + 1;
	}
	return true;
}

static bool probe_put_if_absent(S3State *state, BkError *err);
static bool probe_complete_if_absent(S3State *state, const char *full,
									 BkError *err);

static bool
s3_open(BkRepo *repo, const char *location, bool create, BkError *err)
{
	const BkRepoOptions *options = repo->options;
	S3State *state = calloc(1, sizeof(*state));
	const char *bucket = location + strlen("s3://");
	size_t bucket_len = strcspn(bucket, "/");
	const char *prefix = bucket + bucket_len;
	size_t prefix_len;

	if (state == NULL)
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
	pthread_mutex_init(&state->pool_lock, NULL);
	pthread_mutex_init(&state->prefetch_lock, NULL);
	pthread_mutex_init(&state->credentials_lock, NULL);
	atomic_init(&state->prefetch_cancel, false);
	state->spool_lock_fd = -1;
	repo->state = state;
	pthread_once(&curl_once, curl_init_once);
	if (!curl_ready)
		return bk_error_set(err, BK_ERR_INTERNAL, "libcurl failed to start");
	if (!bucket_name_valid(bucket, bucket_len))
		return bk_error_set(err, BK_ERR_CONFIG,
							"repository \"%s\": \"%.*s\" is not a valid bucket "
							"name (3 to 63 of a-z 0-9 . -)",
							location, (int) bucket_len, bucket);
	memcpy(state->bucket, bucket, bucket_len);
	while (*prefix == '/')
		prefix++;
	prefix_len = strlen(prefix);
	while (prefix_len > 0 && prefix[prefix_len - 1] == '/')
		prefix_len--;
	if (prefix_len + 2 > sizeof(state->prefix))
		return bk_error_set(err, BK_ERR_CONFIG, "repository prefix too long");
	if (!prefix_components_plain(prefix, prefix_len))
	{
		bk_error_set(err, BK_ERR_CONFIG,
					 "repository \"%s\": the prefix \"%.*s\" has an empty, "
					 "\".\" or \"..\" component",
					 location, (int) prefix_len, prefix);
		return bk_error_hint(err,
							 "URLs lose such components on the way (curl "
							 "removes dot segments), so the store would refuse "
							 "every request's signature. Fix the repository "
							 "setting: s3://BUCKET/PREFIX, the prefix's "
							 "components plain names.");
	}
	if (prefix_len > 0)
		snprintf(state->prefix, sizeof(state->prefix), "%.*s/",
				 (int) prefix_len, prefix);

	bk_strlcpy(state->region,
			   options && options->s3_region && options->s3_region[0]
				   ? options->s3_region
				   : "us-east-1",
			   sizeof(state->region));
	state->host_style = !(options && options->s3_uri_style &&
						  strcmp(options->s3_uri_style, "path") == 0);
	if (options && options->s3_uri_style && options->s3_uri_style[0] &&
		strcmp(options->s3_uri_style, "path") != 0 &&
		strcmp(options->s3_uri_style, "host") != 0)
		return bk_error_set(err, BK_ERR_CONFIG,
							"s3_uri_style must be \"path\" or \"host\", not "
							"\"%s\"",
							options->s3_uri_style);
	state->verify_tls = options ? options->s3_verify_tls : true;
	if (options && options->s3_ca_file)
		bk_strlcpy(state->ca_file, options->s3_ca_file, sizeof(state->ca_file));
	if (options && options->s3_storage_class)
		bk_strlcpy(state->storage_class, options->s3_storage_class,
				   sizeof(state->storage_class));
	bk_strlcpy(state->spool_root,
			   options && options->spool_dir && options->spool_dir[0]
				   ? options->spool_dir
				   : BK_SPOOL_DIR_DEFAULT,
			   sizeof(state->spool_root));
	state->timeout_ms = options && options->s3_timeout_ms > 0
							? options->s3_timeout_ms
							: BK_S3_TIMEOUT_DEFAULT_MS;
	state->part_size = options && options->s3_part_size > 0
						   ? options->s3_part_size
						   : BK_S3_PART_SIZE_DEFAULT;
	if (state->part_size < S3_MIN_PART_SIZE ||
		state->part_size > S3_MAX_PART_SIZE)
		return bk_error_set(err, BK_ERR_CONFIG,
							"s3_part_size must be between 5MiB and 5GiB");
	state->read_jobs = options && options->s3_read_jobs > 0
						   ? options->s3_read_jobs
						   : BK_S3_READ_JOBS_DEFAULT;
	if (state->read_jobs > S3_MAX_JOBS)
		state->read_jobs = S3_MAX_JOBS;
	if (options && options->s3_list_page > 0)
		snprintf(state->list_page, sizeof(state->list_page), "%d",
				 options->s3_list_page);
	state->stale_upload_ms =
		bk_repo_stale_upload_ms(options ? options->s3_stale_upload_ms : 0);
	return parse_endpoint(state, options, err) &&
		   load_credentials(state, options, err) &&
		   (!create || probe_put_if_absent(state, err));
}

static void s3_prefetch_end(const BkRepo *repo);

static void
s3_close(BkRepo *repo)
{
	S3State *state = repo->state;

	if (state == NULL)
		return;
	s3_prefetch_end(repo);
	pthread_mutex_destroy(&state->prefetch_lock);
	for (int handleIdx = 0; handleIdx < state->pool_count; handleIdx++)
		curl_easy_cleanup(state->pool[handleIdx]);
	if (state->spool_lock_fd >= 0)
		close(state->spool_lock_fd);
	pthread_mutex_destroy(&state->pool_lock);
	pthread_mutex_destroy(&state->credentials_lock);
	OPENSSL_cleanse(&state->credentials, sizeof(state->credentials));
	free(state);
	repo->state = NULL;
}

static void
s3_describe(const BkRepo *repo, const char *key, char *out, size_t out_len)
{
	snprintf(out, out_len, "s3://%s/%s%s", state_of(repo)->bucket,
			 state_of(repo)->prefix, key);
}

/* ------------------------------------------------------------ listing */

typedef struct ListPage
{
	const char *full_prefix;
	size_t full_prefix_len;
	BkRepoListFn fn;
	void *arg;
	bool fn_failed; /* the error is the listing callback's own */
} ListPage;

/*
 * One entry of a page (BkS3ListFn).  Keys that are not ours are left out:
 * outside the prefix, or with a name component starting with "." (a
 * store's own temporary names, as the directory backend skips its dot
 * files).
 */
static bool
list_emit(void *arg, const char *key, bool is_prefix, uint64_t size,
		  const char *last_modified, BkError *err)
{
	ListPage *page = arg;
	char name[BK_REPO_KEY_MAX + 600];
	size_t len;
	BkRepoEntry entry = {.name = name, .is_prefix = is_prefix};

	if (strncmp(key, page->full_prefix, page->full_prefix_len) != 0)
		return true;
	bk_strlcpy(name, key + page->full_prefix_len, sizeof(name));
	len = strlen(name);
	if (is_prefix && len > 0 && name[len - 1] == '/')
		name[--len] = '\0';
	if (len == 0 || name[0] == '.' || strstr(name, "/.") != NULL)
		return true;
	if (!is_prefix)
	{
		entry.size = size;
		entry.stored_ms = parse_iso8601_ms(last_modified);
	}
	if (!page->fn(page->arg, &entry, err))
	{
		page->fn_failed = true;
		return false;
	}
	return true;
}

/*
 * Every key under full_prefix (paged: ListObjectsV2 and continuation).  A
 * page that cannot be read whole is an error naming the listing, never
 * taken for its end (bk_s3_list_parse).
 */
static bool
list_keys(S3State *state, const char *full_prefix, bool recursive,
		  BkRepoListFn fn, void *arg, BkError *err)
{
	ListPage page = {.full_prefix = full_prefix,
					 .full_prefix_len = strlen(full_prefix),
					 .fn = fn,
					 .arg = arg};
	char token[2048] = "";
	char next_token[sizeof(token)];
	bool truncated;
	int pages = 0;

	do
	{
		S3Call call = {.method = "GET"};
		bool ok;

		call.query[call.query_count++] = (BkSigV4Pair){"list-type", "2"};
		call.query[call.query_count++] = (BkSigV4Pair){"prefix", full_prefix};
		if (!recursive)
			call.query[call.query_count++] = (BkSigV4Pair){"delimiter", "/"};
		if (state->list_page[0])
			call.query[call.query_count++] =
				(BkSigV4Pair){"max-keys", state->list_page};
		if (token[0])
			call.query[call.query_count++] =
				(BkSigV4Pair){"continuation-token", token};
		pages++;
		if (!s3_call(state, &call, err))
			ok = false;
		else if (call.status != 200)
			ok = call_failed(state, &call, err);
		else
			ok = bk_s3_list_parse(call.reply.data ? call.reply.data : "",
								  call.reply.len, list_emit, &page, &truncated,
								  next_token, sizeof(next_token), err);
		call_free(&call);
		/*
		 * The same token again would fetch the same page again, for ever
		 * (a broken store or proxy): an answer bk cannot use.
		 */
		if (ok && truncated && strcmp(next_token, token) == 0)
			ok = bk_error_set(err, BK_ERR_FORMAT,
							  "the store at %s said the listing goes on "
							  "with continuation token \"%.200s\", the one "
							  "it was just sent: it would list the same page "
							  "for ever",
							  state->endpoint_host, token);
		if (!ok)
		{
			/*
			 * A listing callback's own error stands as it is.  A page that
			 * does not read (cut short, not XML) is the store's failure,
			 * not damage in the archive: exit 5, try again, as for any
			 * other answer the store failed to give.
			 */
			if (!page.fn_failed && err->code == BK_ERR_FORMAT)
			{
				err->code = BK_ERR_STORE;
				bk_error_prefix(err, "GET s3://%s/%s (listing, page %d): ",
								state->bucket, full_prefix, pages);
			}
			return false;
		}
		bk_strlcpy(token, next_token, sizeof(token));
	} while (truncated);
	return true;
}

static bool
s3_list(const BkRepo *repo, const char *prefix, bool recursive, BkRepoListFn fn,
		void *arg, BkError *err)
{
	char key[BK_REPO_KEY_MAX + 600];

	return full_key(state_of(repo), prefix, key, sizeof(key), err) &&
		   list_keys(state_of(repo), key, recursive, fn, arg, err);
}

/* ------------------------------------------------------------ reading */

/*
 * Size and time of full; its ETag into etag (BK_S3_ETAG_MAX) and its
 * x-amz-meta-bk-put-id into put_id (S3_PUT_ID_LEN + 1, "" if none) unless
 * NULL.
 */
static bool
head_object(S3State *state, const char *full, BkRepoStat *stat, char *etag,
			char *put_id, BkError *err)
{
	S3Call call = {.method = "HEAD", .key = full, .head = true};

	memset(stat, 0, sizeof(*stat));
	if (etag != NULL)
		etag[0] = '\0';
	if (put_id != NULL)
		put_id[0] = '\0';
	for (int attempt = 0;; attempt++)
	{
		/*
		 * A HEAD's refusal has no body to say why: ask again with a GET
		 * of one byte, whose error document names the cause.
		 */
		S3Call probe = {.method = "GET", .key = full};
		bool answered;

		if (!s3_call(state, &call, err))
			return false;
		if (call.status == 404)
		{
			call_free(&call);
			return true;
		}
		if (call.status == 200)
			break;
		probe.headers[probe.header_count++] =
			(BkSigV4Pair){"range", "bytes=0-0"};
		answered = s3_call(state, &probe, err);
		/*
		 * The GET got through (its s3_call read the credentials again
		 * after an expired token): the refusal is gone, HEAD again.
		 */
		if (answered && attempt == 0 &&
			(probe.status == 404 || probe.status == 206 || probe.status == 200))
		{
			call_free(&probe);
			call_free(&call);
			memset(&call, 0, sizeof(call));
			call.method = "HEAD";
			call.key = full;
			call.head = true;
			continue;
		}
		if (answered && probe.status >= 400 && probe.error_code[0])
			call_failed(state, &probe, err);
		else if (answered)
			call_failed(state, &call, err);
		call_free(&probe);
		call_free(&call);
		return false;
	}
	stat->exists = true;
	stat->size = call.content_length;
	stat->stored_ms = call.last_modified_ms;
	if (etag != NULL)
		bk_strlcpy(etag, call.etag, BK_S3_ETAG_MAX);
	if (put_id != NULL)
		bk_strlcpy(put_id, call.put_id, S3_PUT_ID_LEN + 1);
	call_free(&call);
	return true;
}

static bool
s3_stat(const BkRepo *repo, const char *key, BkRepoStat *stat, BkError *err)
{
	char full[BK_REPO_KEY_MAX + 600];

	return full_key(state_of(repo), key, full, sizeof(full), err) &&
		   head_object(state_of(repo), full, stat, NULL, NULL, err);
}

/* The length of a window that starts at offset: the rest, at most a window. */
static size_t
window_len_at(const S3Reader *reader, uint64_t offset)
{
	return reader->base.size - offset < S3_WINDOW
			   ? (size_t) (reader->base.size - offset)
			   : S3_WINDOW;
}

/*
 * Open by reading the first window: one GET answers both the size (its
 * Content-Range) and the first bytes, where a HEAD and a GET took two
 * requests; most objects (WAL, small relation files) fit in it.
 */
static BkRepoReader *
open_reader(const BkRepo *repo, const char *key, atomic_bool *cancel,
			BkError *err)
{
	S3State *state = state_of(repo);
	S3Reader *reader = calloc(1, sizeof(*reader));
	char range[64];
	S3Call call = {.method = "GET", .cancel = cancel};

	if (reader == NULL || (reader->window = malloc(S3_WINDOW)) == NULL)
	{
		free(reader);
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	reader->base.repo = repo;
	s3_describe(repo, key, reader->base.where, sizeof(reader->base.where));
	if (!full_key(state, key, reader->key, sizeof(reader->key), err))
		goto fail;
	call.key = reader->key;
	call.into = reader->window;
	call.into_len = S3_WINDOW;
	snprintf(range, sizeof(range), "bytes=0-%zu", S3_WINDOW - 1);
	call.headers[call.header_count++] = (BkSigV4Pair){"range", range};
	if (!s3_call(state, &call, err))
		goto fail;
	if (call.status == 206 && call.range_total != UINT64_MAX)
	{
		reader->base.size = call.range_total;
		reader->window_len = call.into_got;
	}
	else if (call.status == 200 && call.into_got == call.content_length)
	{
		/* A store that ignored the range sent it all: it fitted. */
		reader->base.size = call.content_length;
		reader->window_len = call.into_got;
	}
	else if (call.status == 416)
		reader->base.size = 0; /* an empty object has no byte 0 */
	else if (call.status == 404 && strcmp(call.error_code, "NoSuchBucket") != 0)
	{
		bk_error_set(err, BK_ERR_NOT_FOUND, "no object %s", reader->base.where);
		goto fail;
	}
	else
	{
		call_failed(state, &call, err);
		goto fail;
	}
	if (reader->window_len != window_len_at(reader, 0))
	{
		bk_error_set(
			err, BK_ERR_FORMAT, "%s: the store sent %zu bytes of its first %zu",
			reader->base.where, reader->window_len, window_len_at(reader, 0));
		goto fail;
	}
	call_free(&call);
	return &reader->base;

fail:
	call_free(&call);
	free(reader->window);
	free(reader);
	return NULL;
}

static void s3_reader_close(BkRepoReader *base);

static void *
prefetch_run(void *arg)
{
	S3Prefetch *prefetch = arg;
	S3State *state = state_of(prefetch->repo);

	bk_error_clear(&prefetch->err);
	prefetch->reader = (S3Reader *) open_reader(
		prefetch->repo, prefetch->key, &state->prefetch_cancel, &prefetch->err);
	pthread_mutex_lock(&state->prefetch_lock);
	prefetch->finished = true;
	pthread_mutex_unlock(&state->prefetch_lock);
	return NULL;
}

/* Join a slot's thread and close what it opened: nobody will take it. */
static void
prefetch_discard(S3Prefetch *prefetch)
{
	pthread_join(prefetch->thread, NULL);
	if (prefetch->reader != NULL)
		s3_reader_close(&prefetch->reader->base);
	prefetch->reader = NULL;
}

/*
 * Start opening key on a thread of its own, unless it is being opened
 * already or BK_REPO_PREFETCHES objects are: a restore of many small files
 * waits for each one's first GET otherwise, file after file.  With every
 * slot used, one whose open is stale (S3_PREFETCH_STALE) goes to this one.
 */
static void
s3_prefetch(const BkRepo *repo, const char *key)
{
	S3State *state = state_of(repo);
	S3Prefetch *slot = NULL;
	S3Prefetch *stale = NULL;

	pthread_mutex_lock(&state->prefetch_lock);
	state->hints++;
	for (int slotIdx = 0; slotIdx < BK_REPO_PREFETCHES; slotIdx++)
	{
		S3Prefetch *prefetch = &state->prefetches[slotIdx];

		if (!prefetch->used)
		{
			if (slot == NULL)
				slot = prefetch;
		}
		else if (strcmp(prefetch->key, key) == 0)
		{
			pthread_mutex_unlock(&state->prefetch_lock);
			return; /* opened already, or being */
		}
		else if (!prefetch->taken && prefetch->finished &&
				 prefetch->hint + S3_PREFETCH_STALE < state->hints &&
				 (stale == NULL || prefetch->hint < stale->hint))
			stale = prefetch;
	}
	if (slot == NULL && stale != NULL)
	{
		/*
		 * Setting finished was its thread's last step: the join waits
		 * only for it to exit, which takes no lock of ours.
		 */
		prefetch_discard(stale);
		stale->used = false;
		slot = stale;
	}
	if (slot != NULL)
	{
		bk_strlcpy(slot->key, key, sizeof(slot->key));
		slot->repo = repo;
		slot->reader = NULL;
		slot->taken = false;
		slot->finished = false;
		slot->hint = state->hints;
		slot->used =
			pthread_create(&slot->thread, NULL, prefetch_run, slot) == 0;
	}
	pthread_mutex_unlock(&state->prefetch_lock);
}

/*
 * Give up the opens ahead nobody took over, and wait for their threads:
 * once a restore's files are written, and before the repository closes.
 */
static void
s3_prefetch_end(const BkRepo *repo)
{
	S3State *state = state_of(repo);
	bool ours[BK_REPO_PREFETCHES] = {false};

	pthread_mutex_lock(&state->prefetch_lock);
	for (int slotIdx = 0; slotIdx < BK_REPO_PREFETCHES; slotIdx++)
		if (state->prefetches[slotIdx].used &&
			!state->prefetches[slotIdx].taken)
		{
			state->prefetches[slotIdx].taken = true;
			ours[slotIdx] = true;
		}
	pthread_mutex_unlock(&state->prefetch_lock);
	atomic_store(&state->prefetch_cancel, true);
	for (int slotIdx = 0; slotIdx < BK_REPO_PREFETCHES; slotIdx++)
		if (ours[slotIdx])
			prefetch_discard(&state->prefetches[slotIdx]);
	atomic_store(&state->prefetch_cancel, false);
	pthread_mutex_lock(&state->prefetch_lock);
	for (int slotIdx = 0; slotIdx < BK_REPO_PREFETCHES; slotIdx++)
		if (ours[slotIdx])
			state->prefetches[slotIdx].used = false;
	pthread_mutex_unlock(&state->prefetch_lock);
}

/* An open of key started by s3_prefetch, now ours; NULL if none. */
static S3Prefetch *
prefetch_take(S3State *state, const char *key)
{
	S3Prefetch *found = NULL;

	pthread_mutex_lock(&state->prefetch_lock);
	for (int slotIdx = 0; slotIdx < BK_REPO_PREFETCHES && found == NULL;
		 slotIdx++)
	{
		S3Prefetch *prefetch = &state->prefetches[slotIdx];

		if (prefetch->used && !prefetch->taken &&
			strcmp(prefetch->key, key) == 0)
		{
			prefetch->taken = true;
			found = prefetch;
		}
	}
	pthread_mutex_unlock(&state->prefetch_lock);
	return found;
}

static BkRepoReader *
s3_reader_open(const BkRepo *repo, const char *key, BkError *err)
{
	S3State *state = state_of(repo);
	S3Prefetch *prefetch = prefetch_take(state, key);
	S3Reader *reader;

	if (prefetch == NULL)
		return open_reader(repo, key, NULL, err);
	pthread_join(prefetch->thread, NULL);
	reader = prefetch->reader;
	if (reader == NULL)
		*err = prefetch->err;
	pthread_mutex_lock(&state->prefetch_lock);
	prefetch->used = false;
	pthread_mutex_unlock(&state->prefetch_lock);
	if (reader != NULL)
		return &reader->base;
	/*
	 * A refusal (403, 404, a bad reply) is what this open would have
	 * found; a failure that may have passed since the hint (memory, the
	 * connection, a store that did not answer in time, an answer bk does
	 * not expect) is tried again now: against a store that is down, the
	 * open may then take twice s3_timeout.
	 */
	if (err->code == BK_ERR_NOMEM || err->code == BK_ERR_STORE ||
		err->code == BK_ERR_TIMEOUT)
		return open_reader(repo, key, NULL, err);
	return NULL;
}

/* One range GET of exactly len bytes at offset into buf. */
static bool
get_range(S3State *state, const char *full, uint64_t offset, uint8_t *buf,
		  size_t len, atomic_bool *cancel, BkError *err)
{
	char range[64];
	S3Call call = {.method = "GET",
				   .key = full,
				   .cancel = cancel,
				   .into = buf,
				   .into_len = len};

	snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, offset,
			 offset + len - 1);
	call.headers[call.header_count++] = (BkSigV4Pair){"range", range};
	if (!s3_call(state, &call, err))
	{
		call_free(&call);
		return false;
	}
	/*
	 * The object was there when it was opened (open_reader's 404 says it
	 * never was): removed since, as bk expire does under a restore or a
	 * bk verify.  NOT_FOUND, as at the open, so that callers take it for
	 * an object gone, never for a store to retry (bk binlog-get: missing
	 * data, exit 4); bk expire confirms it with a listing, and wal-get
	 * stops recovery on any failure after it found the file.
	 */
	if (call.status == 404 && strcmp(call.error_code, "NoSuchBucket") != 0)
	{
		bk_error_set(err, BK_ERR_NOT_FOUND,
					 "no object s3://%s/%s: removed while it was read (HTTP "
					 "404%s%s for bytes %" PRIu64 "-%" PRIu64 ")",
					 state->bucket, full, call.error_code[0] ? " " : "",
					 call.error_code, offset, offset + len - 1);
		call_free(&call);
		return false;
	}
	if (call.status != 206 && call.status != 200)
	{
		call_failed(state, &call, err);
		call_free(&call);
		return false;
	}
	call_free(&call);
	if (call.into_got != len)
		return bk_error_set(err, BK_ERR_FORMAT,
							"s3://%s/%s: asked for %zu bytes at %" PRIu64
							", the store sent %zu",
							state->bucket, full, len, offset, call.into_got);
	return true;
}

typedef struct RangeJob
{
	S3State *state;
	const char *full;
	uint64_t offset;
	uint8_t *buf;
	size_t len;
	atomic_bool *cancel;
	bool ok;
	BkError err;
} RangeJob;

static void *
range_job_run(void *arg)
{
	RangeJob *job = arg;

	bk_error_clear(&job->err);
	job->ok = get_range(job->state, job->full, job->offset, job->buf, job->len,
						job->cancel, &job->err);
	return NULL;
}

/* len bytes at offset, by up to read_jobs parallel range GETs. */
static bool
get_parallel(S3State *state, const char *full, uint64_t offset, uint8_t *buf,
			 size_t len, atomic_bool *cancel, BkError *err)
{
	RangeJob jobs[S3_MAX_JOBS];
	pthread_t threads[S3_MAX_JOBS];
	bool started[S3_MAX_JOBS] = {false};
	int count = state->read_jobs;
	size_t piece;
	bool ok = true;

	if ((size_t) count > len / S3_MIN_PIECE)
		count = (int) (len / S3_MIN_PIECE);
	if (count <= 1)
		return get_range(state, full, offset, buf, len, cancel, err);
	piece = (len + (size_t) count - 1) / (size_t) count;
	for (int jobIdx = 0; jobIdx < count; jobIdx++)
	{
		size_t start = (size_t) jobIdx * piece;

		jobs[jobIdx] =
			(RangeJob){.state = state,
					   .full = full,
					   .offset = offset + start,
					   .buf = buf + start,
					   .len = start + piece > len ? len - start : piece,
					   .cancel = cancel};
		/* The first piece is fetched by this thread. */
		if (jobIdx > 0 && pthread_create(&threads[jobIdx], NULL, range_job_run,
										 &jobs[jobIdx]) == 0)
			started[jobIdx] = true;
	}
	for (int jobIdx = 0; jobIdx < count; jobIdx++)
	{
		if (jobIdx == 0 || !started[jobIdx])
			range_job_run(&jobs[jobIdx]);
		else
			pthread_join(threads[jobIdx], NULL);
		if (!jobs[jobIdx].ok && ok)
		{
			*err = jobs[jobIdx].err;
			ok = false;
		}
	}
	return ok;
}

static void *
ahead_run(void *arg)
{
	S3Reader *reader = arg;

	bk_error_clear(&reader->ahead_err);
	reader->ahead_ok =
		get_parallel(state_of(reader->base.repo), reader->key,
					 reader->ahead_start, reader->ahead, reader->ahead_len,
					 &reader->ahead_cancel, &reader->ahead_err);
	return NULL;
}

/*
 * Start fetching the window after this one, if the reader reads every
 * byte in order and there is one.  Without memory or a thread the reader
 * goes on as before, one window at a time.
 */
static void
fetch_ahead(S3Reader *reader)
{
	uint64_t next = reader->window_start + reader->window_len;

	if (!reader->base.in_order || reader->ahead_state != AHEAD_NONE ||
		reader->window_len == 0 || next >= reader->base.size)
		return;
	if (reader->ahead == NULL && (reader->ahead = malloc(S3_WINDOW)) == NULL)
	{
		reader->ahead_state = AHEAD_OFF;
		return;
	}
	reader->ahead_start = next;
	reader->ahead_len = window_len_at(reader, next);
	atomic_store(&reader->ahead_cancel, false);
	if (pthread_create(&reader->ahead_thread, NULL, ahead_run, reader) == 0)
		reader->ahead_state = AHEAD_RUNNING;
	else
	{
		free(reader->ahead);
		reader->ahead = NULL;
		reader->ahead_state = AHEAD_OFF;
	}
}

/* Wait for the fetch ahead; give it up first unless wanted. */
static void
ahead_join(S3Reader *reader, bool wanted)
{
	if (reader->ahead_state != AHEAD_RUNNING)
		return;
	if (!wanted)
		atomic_store(&reader->ahead_cancel, true);
	pthread_join(reader->ahead_thread, NULL);
	reader->ahead_state = AHEAD_DONE;
}

/* Forget what was fetched ahead (it is not the next window). */
static void
ahead_drop(S3Reader *reader)
{
	ahead_join(reader, false);
	if (reader->ahead_state == AHEAD_DONE)
		reader->ahead_state = AHEAD_NONE;
}

/*
 * Serve a read that ends in the window fetched ahead and starts in this
 * one or in that one; false if it does not apply.  The window fetched
 * ahead becomes this one once a read starts in it: visit_frames reads a
 * frame's header and then the frame from the same place, so a read that
 * only ends there is often followed by one from the same place.
 */
static bool
read_from_ahead(S3Reader *reader, uint64_t offset, uint8_t *buf, size_t len,
				bool *ok, BkError *err)
{
	uint64_t end = offset + len;
	size_t head = 0;
	uint8_t *swap;

	if ((reader->ahead_state != AHEAD_RUNNING &&
		 reader->ahead_state != AHEAD_DONE) ||
		offset < reader->window_start || end <= reader->ahead_start ||
		end > reader->ahead_start + reader->ahead_len)
		return false;
	ahead_join(reader, true);
	if (!reader->ahead_ok)
	{
		/* It failed as this read would have: the read fails. */
		reader->ahead_state = AHEAD_NONE;
		*err = reader->ahead_err;
		*ok = false;
		return true;
	}
	if (offset < reader->ahead_start)
	{
		head = (size_t) (reader->ahead_start - offset);
		memcpy(buf, reader->window + (offset - reader->window_start), head);
	}
	memcpy(buf + head, reader->ahead + (offset + head - reader->ahead_start),
		   len - head);
	*ok = true;
	if (offset < reader->ahead_start)
		return true;
	swap = reader->window;
	reader->window = reader->ahead;
	reader->ahead = swap;
	reader->window_start = reader->ahead_start;
	reader->window_len = reader->ahead_len;
	reader->ahead_state = AHEAD_NONE;
	fetch_ahead(reader);
	return true;
}

static bool
s3_reader_read(BkRepoReader *base, uint64_t offset, void *buf, size_t len,
			   BkError *err)
{
	S3Reader *reader = (S3Reader *) base;
	S3State *state = state_of(base->repo);
	size_t window_len;
	bool ok;

	if (len == 0)
		return true;
	if (offset + len > base->size)
		return bk_error_set(err, BK_ERR_FORMAT,
							"%s: read past its end (%zu bytes at %" PRIu64
							" of %" PRIu64 ")",
							base->where, len, offset, base->size);
	if (reader->window != NULL && offset >= reader->window_start &&
		offset + len <= reader->window_start + reader->window_len)
	{
		memcpy(buf, reader->window + (offset - reader->window_start), len);
		/*
		 * After the open (in_order is known by the first read) and after
		 * a read that only ended in the window fetched ahead, nothing is
		 * fetched ahead yet: start it (at once back when it is).
		 */
		fetch_ahead(reader);
		return true;
	}
	if (read_from_ahead(reader, offset, buf, len, &ok, err))
		return ok;
	ahead_drop(reader);
	/* Large reads go straight to the caller's buffer. */
	if (len >= S3_WINDOW)
		return get_parallel(state, reader->key, offset, buf, len, NULL, err);
	window_len = window_len_at(reader, offset);
	reader->window_len = 0;
	if (!get_parallel(state, reader->key, offset, reader->window, window_len,
					  NULL, err))
		return false;
	reader->window_start = offset;
	reader->window_len = window_len;
	memcpy(buf, reader->window, len);
	fetch_ahead(reader);
	return true;
}

static void
s3_reader_close(BkRepoReader *base)
{
	S3Reader *reader = (S3Reader *) base;

	ahead_drop(reader);
	free(reader->ahead);
	free(reader->window);
	free(reader);
}

/* ------------------------------------------------------------ writing */

/* PUT of body (memory or a file range), with its MD5; replaces unless
 * if_absent; put_id, unless NULL, as its x-amz-meta-bk-put-id.  call gets
 * the answer (the caller frees it). */
static bool
put_object(S3State *state, const char *full, const uint8_t *body, int fd,
		   uint64_t offset, uint64_t len, const uint8_t md5[16], bool if_absent,
		   const char *put_id, const BkSigV4Pair *query, int query_count,
		   S3Call *call, BkError *err)
{
	char md5_text[32];

	memset(call, 0, sizeof(*call));
	call->method = "PUT";
	call->key = full;
	call->has_body = true;
	call->body = body;
	call->body_fd = fd;
	call->body_offset = offset;
	call->body_len = len;
	md5_base64(md5, md5_text);
	call->headers[call->header_count++] =
		(BkSigV4Pair){"content-md5", md5_text};
	if (if_absent)
		call->headers[call->header_count++] =
			(BkSigV4Pair){"if-none-match", "*"};
	if (put_id != NULL)
		call->headers[call->header_count++] =
			(BkSigV4Pair){"x-amz-meta-bk-put-id", put_id};
	if (state->storage_class[0] && query_count == 0)
		call->headers[call->header_count++] =
			(BkSigV4Pair){"x-amz-storage-class", state->storage_class};
	for (int queryIdx = 0; queryIdx < query_count; queryIdx++)
		call->query[call->query_count++] = query[queryIdx];
	return s3_call(state, call, err);
}

static bool
s3_put_small(BkRepo *repo, const char *key, const void *data, size_t len,
			 BkError *err)
{
	S3State *state = repo->state;
	char full[BK_REPO_KEY_MAX + 600];
	uint8_t md5[16];
	unsigned int md5_len = 0;
	S3Call call;
	bool ok;

	if (!full_key(state, key, full, sizeof(full), err))
		return false;
	EVP_Digest(data, len, md5, &md5_len, EVP_md5(), NULL);
	ok = put_object(state, full, data, -1, 0, len, md5, false, NULL, NULL, 0,
					&call, err);
	/* A 200 whose body is an <Error> (s3_call read its code) is a refusal. */
	if (ok && (call.status != 200 || call.error_code[0]))
		ok = call_failed(state, &call, err);
	call_free(&call);
	return ok;
}

/*
 * probe_put_if_absent
 *		Check, once per writer (a shipper's start), that the store honours
 *		"If-None-Match: *" on PUT, which put-if-absent rests on.  A store
 *		that ignores it (older S3-compatible stores did, and answer 200)
 *		would let a conflicting copy (two sources on one id, a tampered
 *		re-send) overwrite an archived object, and a re-sent PUT whose
 *		first 200 was lost would never be recognised.  Two conditional PUTs
 *		of one probe key under ".bk-probe/" (dot names are never listed as
 *		repository content): the second must be refused with 412.  The
 *		probe is then deleted; a delete that fails leaves one empty object
 *		of no consequence behind.  The same check follows for multipart
 *		completions (probe_complete_if_absent).
 */
static bool
probe_put_if_absent(S3State *state, BkError *err)
{
	uint8_t nonce[BK_REPO_PROBE_HEX_LEN / 2];
	char hex[2 * sizeof(nonce) + 1];
	char full[BK_REPO_KEY_MAX + 600];
	uint8_t md5[16];
	long answers[2] = {0, 0};
	S3Call delete_call = {.method = "DELETE", .key = full};
	BkError ignored;

	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
		return bk_error_set(err, BK_ERR_CRYPTO, "no random bytes for a probe");
	bk_hex_encode(nonce, sizeof(nonce), hex);
	snprintf(full, sizeof(full), "%s" BK_REPO_PROBE_PREFIX "%s", state->prefix,
			 hex);
	EVP_Digest("", 0, md5, NULL, EVP_md5(), NULL);
	for (int putIdx = 0; putIdx < 2; putIdx++)
	{
		S3Call call;
		bool ok = put_object(state, full, (const uint8_t *) "", -1, 0, 0, md5,
							 true, NULL, NULL, 0, &call, err);

		if (ok && (call.status == 412 ||
				   strcmp(call.error_code, "PreconditionFailed") == 0))
			answers[putIdx] = 412;
		else if (ok && ((call.status == 200 && call.error_code[0] == '\0') ||
						call.status == 501))
			answers[putIdx] = call.status;
		else if (ok)
			ok = call_failed(state, &call, err);
		call_free(&call);
		if (!ok)
			return false;
		/*
		 * 412 to the first: a lost 200 made s3_call send it again, and
		 * the key is random, so it found our own write.  501 Not
		 * Implemented: the store says it has no conditional writes.
		 */
		if (answers[putIdx] == 501 ||
			(putIdx == 0 && answers[0] == 412 && call.sends <= 1))
			break;
	}
	if (answers[1] == 412)
	{
		bool ok = probe_complete_if_absent(state, full, err);

		bk_error_clear(&ignored);
		(void) s3_call(state, &delete_call, &ignored);
		call_free(&delete_call);
		return ok;
	}
	bk_error_clear(&ignored);
	(void) s3_call(state, &delete_call, &ignored);
	call_free(&delete_call);
	if (answers[0] == 412)
		return bk_error_set(err, BK_ERR_STORE,
							"the store at %s refused a conditional PUT of "
							"s3://%s/%s, a key nobody else writes",
							state->endpoint_host, state->bucket, full);
	bk_error_set(err, BK_ERR_CONFIG,
				 "the store at %s does not honour \"If-None-Match: *\" on "
				 "PUT: %s conditional PUT of s3://%s/%s was %s",
				 state->endpoint_host, answers[0] == 501 ? "a" : "a second",
				 state->bucket, full,
				 answers[0] == 501 || answers[1] == 501
					 ? "answered 501 Not Implemented"
					 : "accepted");
	bk_error_hint(err, "bk-shipper relies on conditional writes never to "
					   "overwrite an archived object. Use a store that "
					   "supports them (AWS S3, MinIO, Ceph RGW, s3proxy) or a "
					   "directory repository.");
	return false;
}

static bool
empty_spool(const char *spool, BkError *err)
{
	DIR *dir = opendir(spool);
	struct dirent *entry;

	if (dir == NULL)
		return bk_error_set(err, BK_ERR_IO, "could not open spool \"%s\": %s",
							spool, strerror(errno));
	while ((entry = readdir(dir)) != NULL)
	{
		char path[2048];

		if (entry->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", spool, entry->d_name);
		if (unlink(path) != 0 && errno != ENOENT)
		{
			closedir(dir);
			return bk_error_set(err, BK_ERR_IO, "could not remove \"%s\": %s",
								path, strerror(errno));
		}
	}
	closedir(dir);
	return true;
}

static bool abort_stale_uploads(S3State *state, int64_t older_than_ms,
								uint64_t *removed, BkError *err);

static bool
s3_spool_open(BkRepo *repo, const char *shipper_id, BkError *err)
{
	S3State *state = repo->state;
	char lock_path[1200];

	if ((size_t) snprintf(state->spool, sizeof(state->spool), "%s/%s",
						  state->spool_root,
						  shipper_id) >= sizeof(state->spool) ||
		!bk_mkdirs(state->spool, 0700, false, err))
		return false;
	snprintf(lock_path, sizeof(lock_path), "%s/" SPOOL_LOCK_NAME, state->spool);
	state->spool_lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (state->spool_lock_fd < 0)
		return bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s",
							lock_path, strerror(errno));
	if (flock(state->spool_lock_fd, LOCK_EX | LOCK_NB) != 0)
	{
		bk_error_set(err, BK_ERR_CONFIG,
					 "another bk-shipper with shipper_id \"%s\" is running "
					 "with spool %s",
					 shipper_id, state->spool);
		return bk_error_hint(err, "Give every shipper its own shipper_id.");
	}
	/*
	 * Multipart uploads nobody will complete (a shipper killed mid-upload)
	 * are aborted by bk_repo_clean_uploads, which the shipper calls next
	 * and only warns about: a store that cannot list them, or credentials
	 * without s3:ListBucketMultipartUploads, must not stop archiving.
	 */
	return empty_spool(state->spool, err);
}

/* Size of part partIdx (from 0): doubles every 1000 parts, so 10,000 parts
 * hold ~1023,000 base parts: any object a store accepts. */
static uint64_t
part_size(const S3State *state, int partIdx)
{
	int step = partIdx / S3_PARTS_PER_STEP;
	uint64_t size = state->part_size << (step > 9 ? 9 : step);

	return size > S3_MAX_PART_SIZE ? S3_MAX_PART_SIZE : size;
}

static BkRepoUpload *
s3_upload_begin(BkRepo *repo, const char *tag, BkError *err)
{
	S3State *state = repo->state;
	S3Upload *upload = calloc(1, sizeof(*upload));

	if (upload == NULL || (upload->md5 = EVP_MD_CTX_new()) == NULL)
	{
		if (upload)
			EVP_MD_CTX_free(upload->md5);
		free(upload);
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		return NULL;
	}
	upload->base.repo = repo;
	upload->fd = -1;
	if (state->spool[0] == '\0' ||
		(size_t) snprintf(upload->path, sizeof(upload->path), "%s/%s",
						  state->spool, tag) >= sizeof(upload->path))
	{
		bk_error_set(err, BK_ERR_INTERNAL, "no spool for upload \"%s\"", tag);
		goto fail;
	}
	bk_strlcpy(upload->base.where, upload->path, sizeof(upload->base.where));
	if (!bk_spool_create(upload->path, 0600, err))
		goto fail;
	upload->spooled = true;
	upload->part_end = part_size(state, 0);
	if (EVP_DigestInit_ex(upload->md5, EVP_md5(), NULL) != 1)
	{
		bk_error_set(err, BK_ERR_CRYPTO, "MD5 unavailable");
		goto fail;
	}
	return &upload->base;

fail:
	if (upload->spooled)
		unlink(upload->path);
	EVP_MD_CTX_free(upload->md5);
	free(upload);
	return NULL;
}

static bool
part_done(S3Upload *upload, BkError *err)
{
	unsigned int len = 16;

	if (upload->part_count >= S3_MAX_PARTS)
		return bk_error_set(err, BK_ERR_USAGE, "object too large for %d parts",
							S3_MAX_PARTS);
	if (upload->part_count == upload->part_alloc)
	{
		int alloc = upload->part_alloc == 0 ? 4 : upload->part_alloc * 2;
		uint8_t(*grown)[16];

		if (alloc > S3_MAX_PARTS)
			alloc = S3_MAX_PARTS;
		grown = realloc(upload->part_md5, (size_t) alloc * 16);
		if (grown == NULL)
			return bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		upload->part_md5 = grown;
		upload->part_alloc = alloc;
	}
	if (EVP_DigestFinal_ex(upload->md5, upload->part_md5[upload->part_count],
						   &len) != 1 ||
		EVP_DigestInit_ex(upload->md5, EVP_md5(), NULL) != 1)
		return bk_error_set(err, BK_ERR_CRYPTO, "MD5 failed");
	upload->part_count++;
	upload->part_end +=
		part_size(state_of(upload->base.repo), upload->part_count);
	return true;
}

static bool
s3_upload_write(BkRepoUpload *base, const void *data, size_t len, BkError *err)
{
	S3Upload *upload = (S3Upload *) base;
	const uint8_t *bytes = data;

	if (upload->finished)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"spool file \"%s\" is already finished",
							upload->path);
	while (len > 0)
	{
		size_t take = upload->part_end - upload->size < len
						  ? (size_t) (upload->part_end - upload->size)
						  : len;

		if (!bk_spool_append(upload->path, bytes, take, err) ||
			EVP_DigestUpdate(upload->md5, bytes, take) != 1)
			return err->code != BK_OK
					   ? false
					   : bk_error_set(err, BK_ERR_CRYPTO, "MD5 failed");
		upload->size += take;
		bytes += take;
		len -= take;
		if (upload->size == upload->part_end && !part_done(upload, err))
			return false;
	}
	return true;
}

static bool
s3_upload_finish(BkRepoUpload *base, BkError *err)
{
	S3Upload *upload = (S3Upload *) base;
	uint64_t part_start =
		upload->part_end - part_size(state_of(base->repo), upload->part_count);

	/* The last, partial part (or the one part of an empty object). */
	if ((upload->size > part_start || upload->part_count == 0) &&
		!part_done(upload, err))
		return false;
	upload->finished = true;
	return true;
}

/* The upload id of an InitiateMultipartUpload answer. */
typedef struct MultipartReply
{
	char upload_id[1024];
} MultipartReply;

static bool
multipart_element(void *arg, const char *path, const char *text, BkError *err)
{
	MultipartReply *reply = arg;

	if (strcmp(path, "InitiateMultipartUploadResult/UploadId") == 0)
		bk_strlcpy(reply->upload_id, text, sizeof(reply->upload_id));
	return true;
}

static void
abort_upload(S3State *state, const char *full, const char *upload_id)
{
	S3Call call = {.method = "DELETE", .key = full};
	BkError ignored;

	/* Best effort: a stale upload is also aborted at the next start. */
	call.query[call.query_count++] = (BkSigV4Pair){"uploadId", upload_id};
	bk_error_clear(&ignored);
	s3_call(state, &call, &ignored);
	call_free(&call);
}

/*
 * Start a multipart upload of full: its UploadId in reply.  put_id, unless
 * NULL, goes as x-amz-meta-bk-put-id, which the store gives the object the
 * upload completes (completion_lost).
 */
static bool
initiate_upload(S3State *state, const char *full, const char *put_id,
				MultipartReply *reply, BkError *err)
{
	S3Call call = {.method = "POST", .key = full, .has_body = true};

	memset(reply, 0, sizeof(*reply));
	call.body = (const uint8_t *) "";
	call.query[call.query_count++] = (BkSigV4Pair){"uploads", ""};
	if (put_id != NULL)
		call.headers[call.header_count++] =
			(BkSigV4Pair){"x-amz-meta-bk-put-id", put_id};
	if (state->storage_class[0])
		call.headers[call.header_count++] =
			(BkSigV4Pair){"x-amz-storage-class", state->storage_class};
	if (!call_for_xml(state, &call, multipart_element, reply, err))
		return false;
	if (reply->upload_id[0] == '\0')
		return bk_error_set(err, BK_ERR_FORMAT,
							"s3://%s/%s: the store started a multipart upload "
							"without an UploadId",
							state->bucket, full);
	return true;
}

/*
 * Complete upload_id with the parts xml lists, only if full does not exist
 * ("If-None-Match: *"); call gets the answer (the caller frees it).
 */
static bool
complete_upload(S3State *state, const char *full, const char *upload_id,
				const BkXmlBody *xml, S3Call *call, BkError *err)
{
	memset(call, 0, sizeof(*call));
	call->method = "POST";
	call->key = full;
	call->has_body = true;
	call->body = (const uint8_t *) xml->data;
	call->body_len = xml->len;
	call->query[call->query_count++] = (BkSigV4Pair){"uploadId", upload_id};
	call->headers[call->header_count++] =
		(BkSigV4Pair){"content-type", "application/xml"};
	call->headers[call->header_count++] = (BkSigV4Pair){"if-none-match", "*"};
	return s3_call(state, call, err);
}

/*
 * probe_complete_if_absent
 *		Check that the store honours "If-None-Match: *" on
 *		CompleteMultipartUpload too, for the objects larger than
 *		s3_part_size that go in parts.  Some stores honour it on PUT only
 *		(several S3 emulators did until recently): there a second copy of a
 *		name, completed while the first was being written, would silently
 *		replace it.  A one-part upload completed onto full, the probe object
 *		that exists, must be refused with 412; the upload is aborted either
 *		way.
 */
static bool
probe_complete_if_absent(S3State *state, const char *full, BkError *err)
{
	MultipartReply reply;
	S3Call call;
	char etags[1][BK_S3_ETAG_MAX];
	BkSigV4Pair query[2];
	BkXmlBody xml = {0};
	uint8_t md5[16];
	bool refused = false;
	bool ok;

	if (!initiate_upload(state, full, NULL, &reply, err))
		return false;
	query[0] = (BkSigV4Pair){"partNumber", "1"};
	query[1] = (BkSigV4Pair){"uploadId", reply.upload_id};
	EVP_Digest("x", 1, md5, NULL, EVP_md5(), NULL);
	ok = put_object(state, full, (const uint8_t *) "x", -1, 0, 1, md5, false,
					NULL, query, 2, &call, err);
	if (ok && (call.status != 200 || call.etag[0] == '\0'))
		ok = call_failed(state, &call, err);
	if (ok)
		bk_strlcpy(etags[0], call.etag, sizeof(etags[0]));
	call_free(&call);
	if (ok && bk_s3_complete_body(&xml, etags, 1, err))
	{
		ok = complete_upload(state, full, reply.upload_id, &xml, &call, err);
		if (ok && (call.status == 412 ||
				   strcmp(call.error_code, "PreconditionFailed") == 0))
			refused = true;
		else if (ok && (call.status != 200 || call.error_code[0]))
			ok = call_failed(state, &call, err);
		call_free(&call);
	}
	else
		ok = false;
	free(xml.data);
	/* After a 200 nothing is left to abort; the store answers 404. */
	abort_upload(state, full, reply.upload_id);
	if (!ok || refused)
		return ok;
	bk_error_set(err, BK_ERR_CONFIG,
				 "the store at %s does not honour \"If-None-Match: *\" on "
				 "CompleteMultipartUpload: a conditional completion onto "
				 "s3://%s/%s, which exists, was accepted",
				 state->endpoint_host, state->bucket, full);
	bk_error_hint(err, "Objects larger than s3_part_size are uploaded in "
					   "parts, and a completion that replaces an archived "
					   "object would lose it. Use a store that supports "
					   "conditional writes on both (AWS S3, MinIO, Ceph RGW, "
					   "s3proxy) or a directory repository.");
	return false;
}

/* Parts sent at once by one multipart upload. */
#define S3_UPLOAD_JOBS 4

/* The parts of one multipart upload, taken in turn by a few threads. */
typedef struct PartUploads
{
	S3Upload *upload;
	S3State *state;
	const char *full;
	const char *upload_id;
	pthread_mutex_t lock;
	int next; /* the next part nobody took */
	bool failed;
	BkError err; /* the first failure */
	char (*etags)[BK_S3_ETAG_MAX];
} PartUploads;

static void *
part_worker(void *arg)
{
	PartUploads *parts = arg;
	S3Upload *upload = parts->upload;

	for (;;)
	{
		char number[16];
		BkSigV4Pair query[2] = {{"partNumber", number},
								{"uploadId", parts->upload_id}};
		uint64_t offset = 0;
		uint64_t len;
		S3Call call;
		BkError err;
		bool ok;
		int partIdx;

		pthread_mutex_lock(&parts->lock);
		partIdx = parts->failed ? upload->part_count : parts->next++;
		pthread_mutex_unlock(&parts->lock);
		if (partIdx >= upload->part_count)
			return NULL;
		for (int before = 0; before < partIdx; before++)
			offset += part_size(parts->state, before);
		len = part_size(parts->state, partIdx);
		if (offset + len > upload->size)
			len = upload->size - offset;
		snprintf(number, sizeof(number), "%d", partIdx + 1);
		bk_error_clear(&err);
		ok = put_object(parts->state, parts->full, NULL, upload->fd, offset,
						len, upload->part_md5[partIdx], false, NULL, query, 2,
						&call, &err);
		if (ok &&
			(call.status != 200 || call.error_code[0] || call.etag[0] == '\0'))
			ok = call_failed(parts->state, &call, &err);
		if (ok)
			bk_strlcpy(parts->etags[partIdx], call.etag,
					   sizeof(parts->etags[partIdx]));
		call_free(&call);
		if (!ok)
		{
			pthread_mutex_lock(&parts->lock);
			if (!parts->failed)
				parts->err = err;
			parts->failed = true;
			pthread_mutex_unlock(&parts->lock);
			return NULL;
		}
	}
}

/* Every part, by up to S3_UPLOAD_JOBS threads (this one among them). */
static bool
upload_parts(PartUploads *parts, BkError *err)
{
	pthread_t threads[S3_UPLOAD_JOBS];
	int started = 0;

	pthread_mutex_init(&parts->lock, NULL);
	for (int jobIdx = 1;
		 jobIdx < S3_UPLOAD_JOBS && jobIdx < parts->upload->part_count;
		 jobIdx++)
		if (pthread_create(&threads[started], NULL, part_worker, parts) == 0)
			started++;
	part_worker(parts);
	for (int jobIdx = 0; jobIdx < started; jobIdx++)
		pthread_join(threads[jobIdx], NULL);
	pthread_mutex_destroy(&parts->lock);
	if (parts->failed)
		*err = parts->err;
	return !parts->failed;
}

/*
 * The ETag S3 stores give an object completed from these parts: the MD5 of
 * the parts' MD5s, "-", their count (AWS S3, MinIO, Ceph RGW).  Without
 * quotes.
 */
static void
multipart_etag(const uint8_t (*part_md5)[16], int count,
			   char out[BK_S3_ETAG_MAX])
{
	uint8_t digest[16];
	unsigned int digest_len = 0;
	char hex[33];

	EVP_Digest(part_md5, (size_t) count * 16, digest, &digest_len, EVP_md5(),
			   NULL);
	bk_hex_encode(digest, sizeof(digest), hex);
	snprintf(out, BK_S3_ETAG_MAX, "%s-%d", hex, count);
}

/* Is the stored ETag (quoted, or not) expected, hex case aside? */
static bool
etag_is(const char *stored, const char *expected)
{
	size_t len = strlen(stored);

	if (len >= 2 && stored[0] == '"' && stored[len - 1] == '"')
	{
		stored++;
		len -= 2;
	}
	return len > 0 && len == strlen(expected) &&
		   strncasecmp(stored, expected, len) == 0;
}

static bool
completion_result_element(void *arg, const char *path, const char *text,
						  BkError *err)
{
	(void) text;
	(void) err;
	if (strcmp(path, "CompleteMultipartUploadResult") == 0)
		*(bool *) arg = true;
	return true;
}

/*
 * Does a completion's 200 carry the store's CompleteMultipartUploadResult,
 * whole?  The store sends its 200 before it has finished (AWS S3 then
 * keeps the connection alive with spaces), and its verdict comes in the
 * body: an <Error> (s3_call read its code), or nothing at all if the
 * answer was cut short.  Only the result says the object was completed.
 */
static bool
completion_confirmed(const S3Call *call)
{
	const char *body = call->reply.data;
	size_t len = call->reply.len;
	bool seen = false;
	BkError ignored;

	if (body == NULL)
		return false;
	/* Keep-alive spaces, before the document or its declaration. */
	while (len > 0 && isspace((unsigned char) *body))
	{
		body++;
		len--;
	}
	bk_error_clear(&ignored);
	return len > 0 &&
		   bk_xml_parse(body, len, completion_result_element, &seen,
						&ignored) &&
		   seen;
}

/*
 * The completion was answered NoSuchUpload: the upload is gone.  Either an
 * earlier try of this completion reached the store and succeeded and its
 * answer was lost (a connection reset, a timeout: s3_call sent it again),
 * or the upload was aborted (housekeeping elsewhere).  Or it was answered
 * 200 without the result that says it was done (an empty or cut body).  Or
 * it was sent again and answered 412: a store that checks If-None-Match
 * before the upload id finds the object an earlier try completed.  The
 * object in place tells which.  With this upload's x-amz-meta-bk-put-id
 * (put_id, random, given when it began), it is the one this upload
 * completed: created, as the lost 200 said.  On a store that keeps no such
 * metadata, the ETag our parts give it (each part's MD5 checked by the
 * store as it came) says it holds our bytes, and the store's HEAD shows it
 * committed: created.  The ETag alone cannot tell our completion from
 * another shipper's of the same bytes (a re-send after a rebalance), which
 * the put id does.  Another object is a copy found in place, as after a
 * first 412: repo.c reads it and compares identities (ours too, on a store
 * whose ETags are not MD5s, then a re-send).  None: the completion failed,
 * whatever the store said.
 */
static bool
completion_lost(S3Upload *upload, const char *full, const char *put_id,
				const S3Call *completion, bool *created, BkError *err)
{
	S3State *state = state_of(upload->base.repo);
	BkRepoStat stat;
	char stored[BK_S3_ETAG_MAX];
	char stored_put_id[S3_PUT_ID_LEN + 1];
	char ours[BK_S3_ETAG_MAX];

	if (!head_object(state, full, &stat, stored, stored_put_id, err))
		return bk_error_prefix(err,
							   "s3://%s/%s: the multipart upload was gone "
							   "or its completion unconfirmed, and the object "
							   "could not be looked up: ",
							   state->bucket, full);
	if (!stat.exists && completion->status == 200)
	{
		bk_error_set(err, BK_ERR_STORE,
					 "POST s3://%s/%s: the store at %s answered the "
					 "multipart completion 200 without a "
					 "CompleteMultipartUploadResult (%zu bytes of body), "
					 "and no object is there: not completed",
					 state->bucket, full, state->endpoint_host,
					 completion->reply.len);
		return bk_error_hint(err, "Nothing was archived; the object is sent "
								  "again. A store or proxy that cuts its "
								  "answers short needs looking at.");
	}
	if (!stat.exists)
		return call_failed(state, completion, err);
	if (stored_put_id[0])
		*created = strcmp(stored_put_id, put_id) == 0;
	else
	{
		multipart_etag(upload->part_md5, upload->part_count, ours);
		*created = etag_is(stored, ours);
	}
	return true;
}

/*
 * A multipart upload of the spooled object as full, if absent: a HEAD
 * first (a re-send of a large object then costs no upload), and the
 * completion with If-None-Match too, for the race of two shippers.
 */
static bool
put_multipart(S3Upload *upload, const char *full, const char *upload_put_id,
			  bool *created, BkError *err)
{
	S3State *state = state_of(upload->base.repo);
	MultipartReply reply;
	PartUploads parts = {0};
	BkRepoStat stat;
	S3Call call;
	BkXmlBody xml = {0};
	bool ok = false;

	*created = false;
	if (!head_object(state, full, &stat, NULL, NULL, err))
		return false;
	if (stat.exists)
		return true;

	if (!initiate_upload(state, full, upload_put_id, &reply, err))
		return false;

	/* Parts, with their MD5s, several at once; their ETags complete it. */
	parts.upload = upload;
	parts.state = state;
	parts.full = full;
	parts.upload_id = reply.upload_id;
	if ((parts.etags = calloc((size_t) upload->part_count,
							  sizeof(parts.etags[0]))) == NULL)
	{
		bk_error_set(err, BK_ERR_NOMEM, "out of memory");
		goto done;
	}
	if (!upload_parts(&parts, err) ||
		!bk_s3_complete_body(&xml, parts.etags, upload->part_count, err))
		goto done;

	/* Complete, if nobody else did meanwhile. */
	if (!complete_upload(state, full, reply.upload_id, &xml, &call, err))
	{
		call_free(&call);
		goto done;
	}
	/*
	 * 412, or a 200 whose body is an <Error> (the store failed after it
	 * began answering; s3_call read the code): PreconditionFailed means an
	 * object got there first; at a later send, maybe our own earlier one.
	 */
	if (call.status == 412 ||
		strcmp(call.error_code, "PreconditionFailed") == 0)
		ok = call.sends == 1 ||
			 completion_lost(upload, full, upload_put_id, &call, created, err);
	else if (strcmp(call.error_code, "NoSuchUpload") == 0 ||
			 (call.status == 404 && call.error_code[0] == '\0'))
		ok = completion_lost(upload, full, upload_put_id, &call, created, err);
	else if (call.status != 200 || call.error_code[0])
		call_failed(state, &call, err);
	else if (!completion_confirmed(&call))
		ok = completion_lost(upload, full, upload_put_id, &call, created, err);
	else
	{
		*created = true;
		ok = true;
	}
	call_free(&call);

done:
	free(xml.data);
	free(parts.etags);
	if (!*created)
		abort_upload(state, full, reply.upload_id);
	return ok;
}

/*
 * The PUT of full was answered 412 when s3_call sent it again: an earlier
 * send may have reached the store and created the object, its answer lost
 * (a connection reset, a timeout, a 5xx after the write).  The object's
 * x-amz-meta-bk-put-id tells: this commit's put_id (random) is our own
 * write, created, as the lost 200 said.  Another one, or none, is a copy
 * found in place, as after a first 412 (repo.c compares identities).  Its
 * ETag would not tell: the MD5 of our body is also that of the same bytes
 * archived before, by a shipper that sent them before a restart.
 */
static bool
put_answer_lost(S3State *state, const char *full, const char *put_id,
				bool *created, BkError *err)
{
	BkRepoStat stat;
	char stored[S3_PUT_ID_LEN + 1];

	if (!head_object(state, full, &stat, NULL, stored, err))
		return bk_error_prefix(err,
							   "s3://%s/%s: the PUT, sent again, found the "
							   "object in place, which could not be looked up "
							   "to tell whether an earlier send created it: ",
							   state->bucket, full);
	*created = stat.exists && strcmp(stored, put_id) == 0;
	return true;
}

static bool
s3_upload_commit(BkRepoUpload *base, const char *key, bool *created,
				 BkError *err)
{
	S3Upload *upload = (S3Upload *) base;
	S3State *state = state_of(base->repo);
	char full[BK_REPO_KEY_MAX + 600];
	uint8_t nonce[S3_PUT_ID_LEN / 2];
	char put_id[S3_PUT_ID_LEN + 1]; /* the PUT's, or the multipart upload's */
	S3Call call;
	bool ok;

	*created = false;
	if (!upload->finished)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"upload committed before it was finished");
	if (!full_key(state, key, full, sizeof(full), err))
		return false;
	/*
	 * Said here, not by the store: a larger object starts with a HEAD,
	 * whose 400 has no body to say why.
	 */
	if (strlen(full) > S3_KEY_MAX)
		return bk_error_set(err, BK_ERR_REFUSED,
							"s3://%s/%s: a key longer than %d bytes, which "
							"S3 stores refuse",
							state->bucket, full, S3_KEY_MAX);
	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"could not draw random bytes");
	bk_hex_encode(nonce, sizeof(nonce), put_id);
	upload->fd = open(upload->path, O_RDONLY | O_CLOEXEC);
	if (upload->fd < 0)
		return bk_error_set(err, BK_ERR_IO,
							"could not open spool file \"%s\": %s",
							upload->path, strerror(errno));
	if (upload->part_count > 1)
		ok = put_multipart(upload, full, put_id, created, err);
	else
	{
		ok = put_object(state, full, NULL, upload->fd, 0, upload->size,
						upload->part_md5[0], true, put_id, NULL, 0, &call, err);
		if (ok)
		{
			/*
			 * A 412, or an <Error> PreconditionFailed in a 200 (the store
			 * failed after it began answering): an object is in place.
			 */
			bool in_place = call.status == 412 ||
							strcmp(call.error_code, "PreconditionFailed") == 0;

			/* A 200 whose body is any other <Error> stored nothing. */
			if (call.status == 200 && call.error_code[0] == '\0')
				*created = true;
			/* At the first send, an object that was there before. */
			else if (in_place && call.sends > 1)
				ok = put_answer_lost(state, full, put_id, created, err);
			else if (!in_place)
				ok = call_failed(state, &call, err);
		}
		call_free(&call);
	}
	close(upload->fd);
	upload->fd = -1;
	return ok;
}

static void
s3_upload_free(BkRepoUpload *base)
{
	S3Upload *upload = (S3Upload *) base;

	if (upload == NULL)
		return;
	if (upload->fd >= 0)
		close(upload->fd);
	if (upload->spooled)
		unlink(upload->path);
	EVP_MD_CTX_free(upload->md5);
	free(upload->part_md5);
	free(upload);
}

/* ------------------------------------------------------------ deleting */

static bool
s3_delete(BkRepo *repo, const char *key, BkError *err)
{
	S3State *state = repo->state;
	char full[BK_REPO_KEY_MAX + 600];
	S3Call call = {.method = "DELETE", .key = full};
	bool ok;

	if (!full_key(state, key, full, sizeof(full), err) ||
		!s3_call(state, &call, err))
		return false;
	ok = call.status == 204 || call.status == 200 || call.status == 404 ||
		 call_failed(state, &call, err);
	call_free(&call);
	return ok;
}

typedef struct DeleteBatch
{
	S3State *state;
	BkXmlBody xml;
	int count;
	const char *full_prefix;
} DeleteBatch;

/*
 * DeleteObjects for the keys gathered: one request per 1000.  Its 200 says
 * only that the request was read: the reply lists each key the store did
 * not delete, and a batch with one of them fails, naming it, so nothing
 * still in the bucket is reported removed.
 */
static bool
delete_batch_send(DeleteBatch *batch, BkError *err)
{
	S3State *state = batch->state;
	S3Call call = {.method = "POST", .has_body = true};
	BkS3DeleteResult result;
	uint8_t md5[16];
	unsigned int md5_len = 0;
	char md5_text[32];
	bool ok;

	if (batch->count == 0)
		return true;
	if (!bk_s3_delete_body_end(&batch->xml, err))
		return false;
	EVP_Digest(batch->xml.data, batch->xml.len, md5, &md5_len, EVP_md5(), NULL);
	md5_base64(md5, md5_text);
	call.body = (const uint8_t *) batch->xml.data;
	call.body_len = batch->xml.len;
	call.query[call.query_count++] = (BkSigV4Pair){"delete", ""};
	call.headers[call.header_count++] = (BkSigV4Pair){"content-md5", md5_text};
	call.headers[call.header_count++] =
		(BkSigV4Pair){"content-type", "application/xml"};
	if (!s3_call(state, &call, err))
		ok = false;
	/* A 200 whose body is an <Error> (s3_call read its code) is a refusal. */
	else if (call.status != 200 || call.error_code[0])
		ok = call_failed(state, &call, err);
	else if (!bk_s3_delete_result_parse(call.reply.data ? call.reply.data : "",
										call.reply.len, &result, err))
		ok = bk_error_prefix(err, "POST s3://%s/ (DeleteObjects under %s): ",
							 state->bucket, batch->full_prefix);
	else if (result.not_deleted > 0)
	{
		bk_error_set(
			err,
			strcmp(result.first_code, "AccessDenied") == 0 ? BK_ERR_CONFIG
														   : BK_ERR_STORE,
			"could not delete %d of %d objects under s3://%s/%s; "
			"first: %s: %s%s%s",
			result.not_deleted, batch->count, state->bucket, batch->full_prefix,
			result.first_key[0] ? result.first_key : "(no key)",
			result.first_code[0] ? result.first_code : "(no code)",
			result.first_message[0] ? ": " : "", result.first_message);
		if (strcmp(result.first_code, "AccessDenied") == 0)
			ok = bk_error_hint(err,
							   "The credentials lack s3:DeleteObject on "
							   "bucket \"%s\" (README, \"Permissions\"); "
							   "those objects are still there, and a run "
							   "after the fix removes them.",
							   state->bucket);
		else
			ok = bk_error_hint(err,
							   "Those objects are still in the bucket; run "
							   "the removal (bk expire) again once the store "
							   "takes the deletes: it removes what is left.");
	}
	else
		ok = true;
	call_free(&call);
	batch->count = 0;
	batch->xml.len = 0;
	return ok;
}

static bool
delete_batch_add(void *arg, const BkRepoEntry *entry, BkError *err)
{
	DeleteBatch *batch = arg;
	char key[BK_REPO_KEY_MAX + 600];

	if (entry->is_prefix)
		return true;
	snprintf(key, sizeof(key), "%s%s", batch->full_prefix, entry->name);
	/* bk names may hold & ' < > " (a snapshot's "notes&todo.txt"). */
	if (!bk_s3_delete_body_add(&batch->xml, key, err))
		return false;
	if (++batch->count == S3_DELETE_BATCH)
		return delete_batch_send(batch, err);
	return true;
}

static bool
s3_delete_prefix(BkRepo *repo, const char *prefix, BkError *err)
{
	S3State *state = repo->state;
	char full[BK_REPO_KEY_MAX + 600];
	DeleteBatch batch = {.state = state, .full_prefix = full};
	bool ok;

	if (!full_key(state, prefix, full, sizeof(full), err))
		return false;
	ok = list_keys(state, full, true, delete_batch_add, &batch, err) &&
		 delete_batch_send(&batch, err);
	free(batch.xml.data);
	return ok;
}

/* ------------------------------------------------------------ housekeeping */

typedef struct UploadsPage
{
	S3State *state;
	int64_t before_ms;
	uint64_t aborted;
	char key[BK_REPO_KEY_MAX + 600];
	char upload_id[1024];
	int64_t initiated_ms;
	bool truncated;
	char next_key[BK_REPO_KEY_MAX + 600];
	char next_upload[1024];
} UploadsPage;

static bool
uploads_element(void *arg, const char *path, const char *text, BkError *err)
{
	UploadsPage *page = arg;

	if (strcmp(path, "ListMultipartUploadsResult/Upload/Key") == 0)
		bk_strlcpy(page->key, text, sizeof(page->key));
	else if (strcmp(path, "ListMultipartUploadsResult/Upload/UploadId") == 0)
		bk_strlcpy(page->upload_id, text, sizeof(page->upload_id));
	else if (strcmp(path, "ListMultipartUploadsResult/Upload/Initiated") == 0)
		page->initiated_ms = parse_iso8601_ms(text);
	else if (strcmp(path, "ListMultipartUploadsResult/Upload") == 0)
	{
		/* Only bk's own keys: the bucket may be shared (an empty prefix). */
		if (page->initiated_ms > 0 && page->initiated_ms < page->before_ms &&
			page->upload_id[0] &&
			strncmp(page->key, page->state->prefix,
					strlen(page->state->prefix)) == 0 &&
			bk_repo_key_is_bk(page->key + strlen(page->state->prefix)))
		{
			abort_upload(page->state, page->key, page->upload_id);
			page->aborted++;
		}
		page->key[0] = page->upload_id[0] = '\0';
		page->initiated_ms = 0;
	}
	else if (strcmp(path, "ListMultipartUploadsResult/IsTruncated") == 0)
		page->truncated = strcmp(text, "true") == 0;
	else if (strcmp(path, "ListMultipartUploadsResult/NextKeyMarker") == 0)
		bk_strlcpy(page->next_key, text, sizeof(page->next_key));
	else if (strcmp(path, "ListMultipartUploadsResult/NextUploadIdMarker") == 0)
		bk_strlcpy(page->next_upload, text, sizeof(page->next_upload));
	return true;
}

/* Abort the multipart uploads of bk objects under the prefix begun before
 * now - age. */
static bool
abort_stale_uploads(S3State *state, int64_t older_than_ms, uint64_t *removed,
					BkError *err)
{
	UploadsPage page = {.state = state, .before_ms = wall_ms() - older_than_ms};
	char key_marker[BK_REPO_KEY_MAX + 600] = "";
	char upload_marker[1024] = "";

	do
	{
		S3Call call = {.method = "GET"};

		call.query[call.query_count++] = (BkSigV4Pair){"uploads", ""};
		call.query[call.query_count++] = (BkSigV4Pair){"prefix", state->prefix};
		if (key_marker[0])
		{
			call.query[call.query_count++] =
				(BkSigV4Pair){"key-marker", key_marker};
			call.query[call.query_count++] =
				(BkSigV4Pair){"upload-id-marker", upload_marker};
		}
		page.truncated = false;
		page.next_key[0] = page.next_upload[0] = '\0';
		if (!call_for_xml(state, &call, uploads_element, &page, err))
		{
			/* An answer that does not read is the store's failure (as
			 * for the object listing, list_keys). */
			if (err->code == BK_ERR_FORMAT)
				err->code = BK_ERR_STORE;
			return false;
		}
		if (page.truncated && page.next_key[0] == '\0')
			return bk_error_set(err, BK_ERR_STORE,
								"the store said its list of multipart uploads "
								"goes on but gave no marker");
		/* The markers just sent would fetch the same page, for ever. */
		if (page.truncated && strcmp(page.next_key, key_marker) == 0 &&
			strcmp(page.next_upload, upload_marker) == 0)
			return bk_error_set(err, BK_ERR_STORE,
								"GET s3://%s/%s (multipart uploads): the "
								"store at %s said the list goes on from "
								"key-marker \"%.200s\" and upload-id-marker "
								"\"%.200s\", the ones it was just sent: it "
								"would list the same page for ever",
								state->bucket, state->prefix,
								state->endpoint_host, key_marker,
								upload_marker);
		bk_strlcpy(key_marker, page.next_key, sizeof(key_marker));
		bk_strlcpy(upload_marker, page.next_upload, sizeof(upload_marker));
	} while (page.truncated);
	if (removed != NULL)
		*removed = page.aborted;
	return true;
}

static bool
s3_clean_uploads(BkRepo *repo, uint64_t *removed, BkError *err)
{
	return abort_stale_uploads(repo->state, state_of(repo)->stale_upload_ms,
							   removed, err);
}

const BkRepoBackend bk_repo_s3_backend = {
	.name = "s3",
	.open = s3_open,
	.close = s3_close,
	.describe = s3_describe,
	.list = s3_list,
	.stat = s3_stat,
	.reader_open = s3_reader_open,
	.prefetch = s3_prefetch,
	.prefetch_end = s3_prefetch_end,
	.reader_read = s3_reader_read,
	.reader_close = s3_reader_close,
	.put_small = s3_put_small,
	.spool_open = s3_spool_open,
	.upload_begin = s3_upload_begin,
	.upload_write = s3_upload_write,
	.upload_finish = s3_upload_finish,
	.upload_commit = s3_upload_commit,
	.upload_free = s3_upload_free,
	.delete = s3_delete,
	.delete_prefix = s3_delete_prefix,
	.clean_uploads = s3_clean_uploads,
};
