/*
 * bk_util.c
 *		Hex, durable writes and file-system helpers, clocks.  See bk_util.h.
 */
#include "bk_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void
bk_hex_encode(const uint8_t *data, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t byteIdx = 0; byteIdx < len; byteIdx++)
	{
		out[2 * byteIdx] = digits[data[byteIdx] >> 4];
		out[2 * byteIdx + 1] = digits[data[byteIdx] & 0xf];
	}
	out[2 * len] = '\0';
}

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

bool
bk_hex_decode(const char *hex, uint8_t *out, size_t len)
{
	if (strlen(hex) != 2 * len)
		return false;
	for (size_t byteIdx = 0; byteIdx < len; byteIdx++)
	{
		int hi = hex_value(hex[2 * byteIdx]);
		int lo = hex_value(hex[2 * byteIdx + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[byteIdx] = (uint8_t) ((hi << 4) | lo);
	}
	return true;
}

size_t
bk_utf8_sequence(const unsigned char *s, size_t len)
{
	size_t need;
	uint32_t code;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		need = 2, code = s[0] & 0x1F;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		need = 3, code = s[0] & 0x0F;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		need = 4, code = s[0] & 0x07;
	else
		return 0;
	if (len < need)
		return 0;
	for (size_t pos = 1; pos < need; pos++)
	{
		if ((s[pos] & 0xC0) != 0x80)
			return 0;
		code = (code << 6) | (s[pos] & 0x3F);
	}
	/* Overlong forms, surrogates and values above U+10FFFF are not UTF-8. */
	if ((need == 3 && code < 0x800) || (need == 4 && code < 0x10000) ||
		(code >= 0xD800 && code <= 0xDFFF) || code > 0x10FFFF)
		return 0;
	return need;
}

char *
bk_utf8_readable(const char *text)
{
	size_t len = strlen(text);
	/* At worst every byte becomes four. */
	char *out = malloc(4 * len + 1);
	size_t used = 0;
	size_t pos = 0;

	if (out == NULL)
		return NULL;
	while (pos < len)
	{
		size_t seq =
			bk_utf8_sequence((const unsigned char *) text + pos, len - pos);

		if (seq > 0)
		{
			memcpy(out + used, text + pos, seq);
			used += seq;
			pos += seq;
		}
		else
		{
			snprintf(out + used, 5, "\\x%02x", (unsigned char) text[pos]);
			used += 4;
			pos++;
		}
	}
	out[used] = '\0';
	return out;
}

void
bk_printable_copy(char *out, size_t out_len, const char *text, size_t len)
{
	size_t copy = len < out_len - 1 ? len : out_len - 1;

	for (size_t pos = 0; pos < copy; pos++)
	{
		char c = text[pos];

		out[pos] = c >= 0x20 && c < 0x7f ? c : '?';
	}
	out[copy] = '\0';
}

/* write(2), or pwrite(2) at offset when offset is not -1, until done. */
static bool
write_loop(int fd, const void *buf, size_t len, int64_t offset,
		   const char *path, BkError *err)
{
	const uint8_t *p = buf;

	while (len > 0)
	{
		ssize_t written =
			offset < 0 ? write(fd, p, len) : pwrite(fd, p, len, (off_t) offset);

		if (written < 0)
		{
			if (errno == EINTR)
				continue;
			return bk_error_set(err, BK_ERR_IO, "could not write \"%s\": %s",
								path, strerror(errno));
		}
		p += written;
		len -= (size_t) written;
		if (offset >= 0)
			offset += written;
	}
	return true;
}

bool
bk_pwrite_all(int fd, const void *buf, size_t len, uint64_t offset,
			  const char *path, BkError *err)
{
	return write_loop(fd, buf, len, (int64_t) offset, path, err);
}

bool
bk_write_all(int fd, const void *buf, size_t len, const char *path,
			 BkError *err)
{
	return write_loop(fd, buf, len, -1, path, err);
}

bool
bk_mkdirs(const char *path, mode_t leaf_mode, bool durable, BkError *err)
{
	char partial[PATH_MAX];
	size_t len = strlen(path);

	if (len >= sizeof(partial))
		return bk_error_set(err, BK_ERR_USAGE, "path too long: \"%s\"", path);
	for (size_t pos = 1; pos <= len; pos++)
	{
		struct stat st;
		mode_t mode = pos == len ? leaf_mode : 0755;
		char *slash;

		if (path[pos] != '/' && path[pos] != '\0')
			continue;
		memcpy(partial, path, pos);
		partial[pos] = '\0';
		if (stat(partial, &st) == 0)
		{
			if (!S_ISDIR(st.st_mode))
				return bk_error_set(err, BK_ERR_IO,
									"\"%s\" exists and is not a directory",
									partial);
			continue;
		}
		if (mkdir(partial, mode) != 0 && errno != EEXIST)
			return bk_error_set(
				err, errno == ENAMETOOLONG ? BK_ERR_REFUSED : BK_ERR_IO,
				"could not create directory \"%s\": %s", partial,
				strerror(errno));
		if (!durable)
			continue;
		if (chmod(partial, mode) != 0)
			return bk_error_set(err, BK_ERR_IO,
								"could not set mode of \"%s\": %s", partial,
								strerror(errno));
		/* The parent: partial up to its last slash ("/" for "/x"). */
		slash = strrchr(partial, '/');
		if (slash == NULL)
			bk_strlcpy(partial, ".", sizeof(partial));
		else if (slash == partial)
			slash[1] = '\0';
		else
			*slash = '\0';
		if (!bk_fsync_dir(partial, err))
			return false;
	}
	return true;
}

/* Open path with flags and fsync it; what ("" or "directory ") names it. */
static bool
fsync_path(const char *path, int flags, const char *what, BkError *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | flags);

	if (fd < 0)
		return bk_error_set(err, BK_ERR_IO,
							"could not open %s\"%s\" to fsync it: %s", what,
							path, strerror(errno));
	if (fsync(fd) != 0)
	{
		int save_errno = errno;

		close(fd);
		return bk_error_set(err, BK_ERR_IO, "could not fsync %s\"%s\": %s",
							what, path, strerror(save_errno));
	}
	close(fd);
	return true;
}

bool
bk_fsync_dir(const char *dir, BkError *err)
{
	return fsync_path(dir, O_DIRECTORY, "directory ", err);
}

bool
bk_fsync_file(const char *path, BkError *err)
{
	return fsync_path(path, O_NOFOLLOW, "", err);
}

void
bk_dir_of(const char *path, char *out, size_t out_len)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		bk_strlcpy(out, ".", out_len);
	else if (slash == path)
		bk_strlcpy(out, "/", out_len);
	else
		snprintf(out, out_len, "%.*s", (int) (slash - path), path);
}

bool
bk_rename_durable(const char *from, const char *to, BkError *err)
{
	char dir[4096];

	if (rename(from, to) != 0)
		return bk_error_set(err, BK_ERR_IO,
							"could not rename \"%s\" to \"%s\": %s", from, to,
							strerror(errno));
	bk_dir_of(to, dir, sizeof(dir));
	return bk_fsync_dir(dir, err);
}

bool
bk_remove_tree(const char *path, BkError *err)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ||
			   bk_error_set(err, BK_ERR_IO, "could not stat \"%s\": %s", path,
							strerror(errno));
	if (S_ISDIR(st.st_mode))
	{
		DIR *dir = opendir(path);
		struct dirent *entry;

		/* Gone meanwhile (another removal of it, bk expire's): removed. */
		if (dir == NULL)
			return errno == ENOENT ||
				   bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s",
								path, strerror(errno));
		while ((entry = readdir(dir)) != NULL)
		{
			char child[4096];

			if (strcmp(entry->d_name, ".") == 0 ||
				strcmp(entry->d_name, "..") == 0)
				continue;
			if ((size_t) snprintf(child, sizeof(child), "%s/%s", path,
								  entry->d_name) >= sizeof(child))
			{
				closedir(dir);
				return bk_error_set(err, BK_ERR_IO, "path too long: \"%s/%s\"",
									path, entry->d_name);
			}
			if (!bk_remove_tree(child, err))
			{
				closedir(dir);
				return false;
			}
		}
		closedir(dir);
		if (rmdir(path) != 0 && errno != ENOENT)
			return bk_error_set(err, BK_ERR_IO, "could not remove \"%s\": %s",
								path, strerror(errno));
		return true;
	}
	if (unlink(path) != 0 && errno != ENOENT)
		return bk_error_set(err, BK_ERR_IO, "could not remove \"%s\": %s", path,
							strerror(errno));
	return true;
}

bool
bk_write_file_durable(const char *path, const void *data, size_t len,
					  mode_t mode, BkError *err)
{
	char tmp[4096];
	char dir[4096];
	const char *base = strrchr(path, '/');
	int fd;

	/* A dot name: a crash leaves nothing a listing would take for data. */
	bk_dir_of(path, dir, sizeof(dir));
	base = base ? base + 1 : path;

	/*
	 * The temporary file is always a new one (O_EXCL, O_NOFOLLOW) under a
	 * random name: root writes files (bk restore's backup_label) into
	 * directories their owner can write, and a name the owner could guess
	 * and plant as a symbolic link would have root truncate and write
	 * whatever it points to.  A random name also keeps two writers of one
	 * path (shippers on other hosts, with equal process ids) out of each
	 * other's temporary file.
	 */
	for (int attempt = 0;; attempt++)
	{
		uint64_t suffix;

		if (getentropy(&suffix, sizeof(suffix)) != 0)
			return bk_error_set(err, BK_ERR_INTERNAL,
								"could not get random bytes: %s",
								strerror(errno));
		if (snprintf(tmp, sizeof(tmp), "%s/.%s.tmp.%016" PRIx64, dir, base,
					 suffix) >= (int) sizeof(tmp))
			return bk_error_set(err, BK_ERR_USAGE, "path too long: \"%s\"",
								path);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				  mode);
		if (fd >= 0)
			break;
		if (errno != EEXIST || attempt >= 8)
			return bk_error_set(err, BK_ERR_IO, "could not create \"%s\": %s",
								tmp, strerror(errno));
	}
	if (fchmod(fd, mode) != 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not set mode of \"%s\": %s", tmp,
					 strerror(errno));
		goto fail;
	}
	if (!bk_write_all(fd, data, len, tmp, err))
		goto fail;
	if (fsync(fd) != 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not fsync \"%s\": %s", tmp,
					 strerror(errno));
		goto fail;
	}
	if (close(fd) != 0)
	{
		fd = -1;
		bk_error_set(err, BK_ERR_IO, "could not close \"%s\": %s", tmp,
					 strerror(errno));
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not rename \"%s\" to \"%s\": %s",
					 tmp, path, strerror(errno));
		goto fail;
	}
	return bk_fsync_dir(dir, err);

fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return false;
}

bool
bk_read_file(const char *path, size_t max_len, char **data, size_t *len,
			 BkError *err)
{
	return bk_read_file_checked(path, max_len, NULL, NULL, data, len, err);
}

bool
bk_read_file_checked(const char *path, size_t max_len, BkFileCheck check,
					 void *check_arg, char **data, size_t *len, BkError *err)
{
	/* O_NONBLOCK: a FIFO put in its place must not hang bk. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	char *buf;
	size_t done = 0;

	if (fd < 0)
		return bk_error_set(err, errno == ENOENT ? BK_ERR_NOT_FOUND : BK_ERR_IO,
							"could not open \"%s\": %s", path, strerror(errno));
	if (fstat(fd, &st) != 0)
	{
		close(fd);
		return bk_error_set(err, BK_ERR_IO, "could not stat \"%s\": %s", path,
							strerror(errno));
	}
	if (!S_ISREG(st.st_mode) || (size_t) st.st_size > max_len)
	{
		close(fd);
		return bk_error_set(err, BK_ERR_FORMAT,
							"\"%s\" is not a regular file of at most %zu bytes",
							path, max_len);
	}
	/* The descriptor's: the file checked is the file read. */
	if (check != NULL && !check(path, &st, check_arg, err))
	{
		close(fd);
		return false;
	}
	buf = malloc((size_t) st.st_size + 1);
	if (buf == NULL)
	{
		close(fd);
		return bk_error_set(err, BK_ERR_NOMEM, "out of memory reading \"%s\"",
							path);
	}
	while (done < (size_t) st.st_size)
	{
		ssize_t got = read(fd, buf + done, (size_t) st.st_size - done);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
		{
			int save_errno = errno;

			/* It may hold a secret (bk_secret_file_read). */
			explicit_bzero(buf, done);
			free(buf);
			close(fd);
			return bk_error_set(
				err, BK_ERR_IO, "could not read \"%s\": %s", path,
				got == 0 ? "file shrank while reading" : strerror(save_errno));
		}
		done += (size_t) got;
	}
	close(fd);
	buf[done] = '\0';
	*data = buf;
	*len = done;
	return true;
}

int64_t
bk_monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
bk_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec
bk_wall_deadline(int64_t ms)
{
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += (time_t) (ms / 1000);
	deadline.tv_nsec += (long) (ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L)
	{
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	return deadline;
}

void
bk_format_time_utc(int64_t wall_ms, char *out, size_t out_len)
{
	time_t secs = (time_t) (wall_ms / 1000);
	struct tm tm;

	gmtime_r(&secs, &tm);
	snprintf(out, out_len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
			 tm.tm_min, tm.tm_sec, (int) (wall_ms % 1000));
}

bool
bk_parse_u64(const char *text, uint64_t *value)
{
	char *end;

	if (text[0] < '0' || text[0] > '9')
		return false;
	errno = 0;
	*value = strtoull(text, &end, 10);
	return errno == 0 && *end == '\0';
}

void
bk_strlcpy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size == 0)
		return;
	if (len >= size)
		len = size - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/*
 * bk_sql_quote_ident
 *		`name` with backticks doubled: the one way an identifier enters SQL.
 */
bool
bk_sql_quote_ident(char *out, size_t out_len, const char *name)
{
	size_t used = 0;

	if (out_len < 3)
		return false;
	out[used++] = '`';
	for (const char *p = name; *p; p++)
	{
		if (used + 3 >= out_len)
			return false;
		if (*p == '`')
			out[used++] = '`';
		out[used++] = *p;
	}
	out[used++] = '`';
	out[used] = '\0';
	return true;
}
