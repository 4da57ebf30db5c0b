/*
 * bk_test_eio.c
 *		Fault injection for the integration tests, loaded with LD_PRELOAD:
 *		open() of a path that ends with $BK_TEST_EIO_PATH fails with EIO, as
 *		on a disk or a network file system that cannot be read; and
 *		sync_file_range() that waits for the writing out of a file whose path
 *		ends with $BK_TEST_EIO_WRITEBACK fails with EIO, as when the disk
 *		failed a write the page cache had already taken; and close() of a
 *		file open for writing whose path ends with $BK_TEST_EIO_CLOSE
 *		closes it and fails with EIO, as NFS reports a write error it
 *		deferred to the close; and link() to a path that ends with
 *		$BK_TEST_KILL_AFTER_LINK links it, then kills the process with
 *		SIGKILL, as a crash right after a shipper's commit of an object.
 *		Every other call is the C library's.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <signal.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

typedef int (*OpenFn)(const char *path, int flags, ...);
typedef int (*SyncFileRangeFn)(int fd, off64_t offset, off64_t nbytes,
							   unsigned int flags);
typedef int (*CloseFn)(int fd);
typedef int (*LinkFn)(const char *from, const char *to);

extern int open(const char *path, int flags, ...);
extern int __open_2(const char *path, int flags);

static int
open_or_fail(const char *path, int flags, mode_t mode)
{
	static OpenFn real_open;
	const char *suffix = getenv("BK_TEST_EIO_PATH");
	size_t path_len = strlen(path);
	size_t suffix_len = suffix != NULL ? strlen(suffix) : 0;

	if (suffix_len > 0 && path_len >= suffix_len &&
		strcmp(path + path_len - suffix_len, suffix) == 0)
	{
		errno = EIO;
		return -1;
	}
	if (real_open == NULL)
		real_open = (OpenFn) dlsym(RTLD_NEXT, "open");
	return real_open(path, flags, mode);
}

/* The mode argument is there only when the call creates a file. */
static mode_t
mode_argument(int flags, va_list args)
{
	if ((flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE)
		return (mode_t) va_arg(args, int);
	return 0;
}

int
open(const char *path, int flags, ...)
{
	va_list args;
	mode_t mode;

	va_start(args, flags);
	mode = mode_argument(flags, args);
	va_end(args);
	return open_or_fail(path, flags, mode);
}

/* The large-file name of the same call. */
int open64(const char *path, int flags, ...) __attribute__((alias("open")));

/* What _FORTIFY_SOURCE builds call when the flags are not known. */
int
__open_2(const char *path, int flags)
{
	return open_or_fail(path, flags, 0);
}

/* Does the file open on fd have a path that ends with suffix? */
static int
fd_path_ends_with(int fd, const char *suffix)
{
	char link[64];
	char path[4096];
	ssize_t len;
	size_t suffix_len = strlen(suffix);

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	len = readlink(link, path, sizeof(path) - 1);
	if (len < 0)
		return 0;
	path[len] = '\0';
	return (size_t) len >= suffix_len &&
		   strcmp(path + len - suffix_len, suffix) == 0;
}

int
sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags)
{
	static SyncFileRangeFn real_sync_file_range;
	const char *suffix = getenv("BK_TEST_EIO_WRITEBACK");

	if (suffix != NULL && suffix[0] != '\0' &&
		(flags & SYNC_FILE_RANGE_WAIT_AFTER) != 0 &&
		fd_path_ends_with(fd, suffix))
	{
		errno = EIO;
		return -1;
	}
	if (real_sync_file_range == NULL)
		real_sync_file_range =
			(SyncFileRangeFn) dlsym(RTLD_NEXT, "sync_file_range");
	return real_sync_file_range(fd, offset, nbytes, flags);
}

int
close(int fd)
{
	static CloseFn real_close;
	const char *suffix = getenv("BK_TEST_EIO_CLOSE");
	int save_errno = errno;
	int flags;
	int fail;
	int rc;

	/* Decided before the descriptor goes, which takes its path with it. */
	fail = suffix != NULL && suffix[0] != '\0' &&
		   (flags = fcntl(fd, F_GETFL)) >= 0 &&
		   (flags & O_ACCMODE) != O_RDONLY && fd_path_ends_with(fd, suffix);
	if (real_close == NULL)
		real_close = (CloseFn) dlsym(RTLD_NEXT, "close");
	/* A close() that succeeds leaves errno as it was. */
	errno = save_errno;
	/* Linux closes the descriptor even when close() reports an error. */
	rc = real_close(fd);
	if (rc != 0 || !fail)
		return rc;
	errno = EIO;
	return -1;
}

int
link(const char *from, const char *to)
{
	static LinkFn real_link;
	const char *suffix = getenv("BK_TEST_KILL_AFTER_LINK");
	size_t to_len = strlen(to);
	size_t suffix_len = suffix != NULL ? strlen(suffix) : 0;
	int rc;

	if (real_link == NULL)
		real_link = (LinkFn) dlsym(RTLD_NEXT, "link");
	rc = real_link(from, to);
	if (rc == 0 && suffix_len > 0 && to_len >= suffix_len &&
		strcmp(to + to_len - suffix_len, suffix) == 0)
		kill(getpid(), SIGKILL);
	return rc;
}
