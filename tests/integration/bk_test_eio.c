/*
 * bk_test_eio.c
 *		Fault injection for the integration tests, loaded with LD_PRELOAD:
 *		open() of a path that ends with $BK_TEST_EIO_PATH fails with EIO, as
 *		on a disk or a network file system that cannot be read.  Every other
 *		open() is the C library's.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

typedef int (*OpenFn)(const char *path, int flags, ...);

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
