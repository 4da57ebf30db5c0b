/*
 * bk_util.h
 *		Small helpers every part of bk needs: big-endian integers, hex,
 *		durable file writes, clocks.
 *
 * The durable write follows the rule every archiver lives by: write a
 * temporary file, fsync it, rename it into place, fsync the directory.  Until
 * the directory is synced a crash may forget the rename, so nothing may be
 * reported as archived before that.
 */
#ifndef BK_UTIL_H
#define BK_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "bk_error.h"

static inline void
bk_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t) (v >> 8);
	p[1] = (uint8_t) v;
}

static inline void
bk_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) (v >> 24);
	p[1] = (uint8_t) (v >> 16);
	p[2] = (uint8_t) (v >> 8);
	p[3] = (uint8_t) v;
}

static inline void
bk_put_be64(uint8_t *p, uint64_t v)
{
	bk_put_be32(p, (uint32_t) (v >> 32));
	bk_put_be32(p + 4, (uint32_t) v);
}

static inline uint16_t
bk_get_be16(const uint8_t *p)
{
	return (uint16_t) ((p[0] << 8) | p[1]);
}

static inline uint32_t
bk_get_be32(const uint8_t *p)
{
	return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) |
		   ((uint32_t) p[2] << 8) | (uint32_t) p[3];
}

static inline uint64_t
bk_get_be64(const uint8_t *p)
{
	return ((uint64_t) bk_get_be32(p) << 32) | bk_get_be32(p + 4);
}

/* Lower-case hex of len bytes into out (2 * len + 1 bytes). */
extern void bk_hex_encode(const uint8_t *data, size_t len, char *out);

/* Decode exactly len bytes from hex text; false if not exactly 2*len hex digits. */
extern bool bk_hex_decode(const char *hex, uint8_t *out, size_t len);

/* Length of the valid UTF-8 sequence at s (at most len bytes), or 0. */
extern size_t bk_utf8_sequence(const unsigned char *s, size_t len);

/*
 * A malloc'd copy of text for a JSON string, which must be UTF-8: each byte
 * that is not part of valid UTF-8 (a file name in Latin-1, say) is written
 * as the four characters \xNN, so a message naming such a file still
 * reads.  NULL if memory ran out.
 */
extern char *bk_utf8_readable(const char *text);

/*
 * Copy len bytes of text from another party (a Kafka header, an audit
 * event's field) for a log line: at most out_len - 1 of them, each byte
 * outside printable ASCII written as '?', so no newline or escape sequence
 * reaches the log.
 */
extern void bk_printable_copy(char *out, size_t out_len, const char *text,
							  size_t len);

/* write(2) until done, retrying EINTR and short writes. */
/* The same at offset (pwrite). */
extern bool bk_pwrite_all(int fd, const void *buf, size_t len, uint64_t offset,
						  const char *path, BkError *err);
extern bool bk_write_all(int fd, const void *buf, size_t len, const char *path,
						 BkError *err);

/* fsync a directory so that a rename or create inside it is durable. */
extern bool bk_fsync_dir(const char *dir, BkError *err);

/* fsync a regular file by name (not following a symbolic link). */
extern bool bk_fsync_file(const char *path, BkError *err);

/*
 * mkdir -p.  Directories it creates get leaf_mode (the last one) or 0755
 * (its parents).  durable: the modes are set exactly (not left to the
 * umask) and each new directory's parent is fsynced, so the creation
 * survives a crash; otherwise the caller makes the tree durable itself.
 * A directory found in place is not synced: if another process made it and
 * has not synced its parent yet, its name is not durable (the repository
 * syncs such names itself, see repo_local.c).
 */
extern bool bk_mkdirs(const char *path, mode_t leaf_mode, bool durable,
					  BkError *err);

/*
 * Write a whole file durably: "<dir>/.<name>.tmp.<pid>", fsync, rename over
 * path, fsync the directory.  mode is applied with fchmod, not left to the umask.
 */
extern bool bk_write_file_durable(const char *path, const void *data,
								  size_t len, mode_t mode, BkError *err);

/* The directory part of path ("." if none) into out. */
extern void bk_dir_of(const char *path, char *out, size_t out_len);

/* rename(2) from over to, then fsync to's directory: durable. */
extern bool bk_rename_durable(const char *from, const char *to, BkError *err);

/*
 * rm -rf that never follows a symbolic link (a link is removed, not its
 * target).  A path that does not exist is success.
 */
extern bool bk_remove_tree(const char *path, BkError *err);

/*
 * Read a whole small file (at most max_len bytes) into a malloc'd,
 * NUL-terminated buffer.  Fails cleanly on larger files, and at once on
 * anything but a regular file (a FIFO is opened without waiting).
 */
extern bool bk_read_file(const char *path, size_t max_len, char **data,
						 size_t *len, BkError *err);

/*
 * The same, with check called on the opened file's fstat before anything
 * is read (NULL: none); its refusal is the error.
 */
typedef bool (*BkFileCheck)(const char *path, const struct stat *st, void *arg,
							BkError *err);
extern bool bk_read_file_checked(const char *path, size_t max_len,
								 BkFileCheck check, void *check_arg,
								 char **data, size_t *len, BkError *err);

/* Milliseconds: monotonic for deadlines, wall clock for timestamps. */
extern int64_t bk_monotonic_ms(void);
extern int64_t bk_wall_ms(void);

/*
 * The wall-clock time ms milliseconds from now, as pthread's timed waits
 * (pthread_mutex_timedlock, pthread_timedjoin_np) take their deadline.
 */
extern struct timespec bk_wall_deadline(int64_t ms);

/* Format a wall-clock time in ms as ISO 8601 UTC ("2026-11-24T03:22:01.123Z"). */
extern void bk_format_time_utc(int64_t wall_ms, char *out, size_t out_len);

/* A decimal number: digits only, no sign or blank, no overflow. */
extern bool bk_parse_u64(const char *text, uint64_t *value);

/* Copy with truncation, always NUL-terminated. */
extern void bk_strlcpy(char *dst, const char *src, size_t size);

/*
 * A MariaDB identifier quoted for SQL (`name`, backticks doubled); false
 * when out_len is too small.
 */
extern bool bk_sql_quote_ident(char *out, size_t out_len, const char *name);

#endif /* BK_UTIL_H */
