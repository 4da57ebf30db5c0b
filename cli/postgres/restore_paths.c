/*
 * restore_paths.c
 *		Where each file of the snapshot goes in the restored directory
 *		(tablespaces included), what the record says of it, and who owns it
 *		when.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bk_util.h"

#include "restore.h"

/* ------------------------------------------------------------ helpers */

bool
restore_join_path(char *out, size_t out_len, const char *dir, const char *rel,
				  BkError *err)
{
	if ((size_t) snprintf(out, out_len, "%s/%s", dir, rel) >= out_len)
		return bk_error_set(err, BK_ERR_USAGE, "path too long: \"%s/%s\"", dir,
							rel);
	return true;
}

/* Where a path of the record lives: under PGDATA, or in a tablespace. */
bool
restore_resolve_path(const Restore *r, const char *rel, char *out,
					 size_t out_len, BkError *err)
{
	if (strncmp(rel, "pg_tblspc/", 10) == 0)
	{
		const char *oid_text = rel + 10;
		char *end;
		unsigned long oid = strtoul(oid_text, &end, 10);

		if (end != oid_text && (*end == '/' || *end == '\0'))
			for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
				if (r->tablespaces[spcIdx].oid == oid)
				{
					const RestoreTablespace *spc = &r->tablespaces[spcIdx];

					if (*end == '\0')
						return restore_join_path(out, out_len, r->pgdata, rel,
												 err);
					/* Through the open location once there is one. */
					return restore_join_path(
						out, out_len,
						spc->root[0] != '\0' ? spc->root : spc->location,
						end + 1, err);
				}
	}
	return restore_join_path(out, out_len, r->pgdata, rel, err);
}

bool
restore_is_tablespace_link(const Restore *r, const char *rel)
{
	char *end;
	unsigned long oid;

	if (strncmp(rel, "pg_tblspc/", 10) != 0)
		return false;
	oid = strtoul(rel + 10, &end, 10);
	if (end == rel + 10 || *end != '\0')
		return false;
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
		if (r->tablespaces[spcIdx].oid == oid)
			return true;
	return false;
}

/*
 * Files of the snapshot bk restore does not put back: the recovery signal
 * files (a standby.signal from the source would turn point-in-time
 * recovery into a standby; recovery.signal is written afresh).
 */
bool
restore_skipped_file(const char *path)
{
	return strcmp(path, "standby.signal") == 0 ||
		   strcmp(path, "recovery.signal") == 0;
}

/* Does the record list a file below directory rel?  (files are sorted) */
bool
restore_record_has_below(const BkSnapRecord *record, const char *rel)
{
	char prefix[RESTORE_PATH_MAX];
	size_t low = 0;
	size_t high = record->file_count;
	size_t prefix_len = (size_t) snprintf(prefix, sizeof(prefix), "%s/", rel);

	while (low < high)
	{
		size_t mid = low + (high - low) / 2;

		if (strcmp(record->files[mid].path, prefix) < 0)
			low = mid + 1;
		else
			high = mid;
	}
	return low < record->file_count &&
		   strncmp(record->files[low].path, prefix, prefix_len) == 0;
}

static int
directory_cmp(const void *a, const void *b)
{
	return strcmp(((const BkSnapDirectory *) a)->path,
				  ((const BkSnapDirectory *) b)->path);
}

/* Sort the record's directories so restore_record_has_directory can search. */
void
restore_sort_directories(BkSnapRecord *record)
{
	qsort(record->directories, record->directory_count, sizeof(BkSnapDirectory),
		  directory_cmp);
}

/* Does the record list directory rel?  (restore_sort_directories first) */
bool
restore_record_has_directory(const BkSnapRecord *record, const char *rel)
{
	BkSnapDirectory key = {.path = (char *) rel};

	return record->directory_count > 0 &&
		   bsearch(&key, record->directories, record->directory_count,
				   sizeof(key), directory_cmp) != NULL;
}

/* ------------------------------------------------------------ ownership */

/*
 * Run as root for another owner, bk restore works where that owner cannot
 * reach: the owner (a database superuser can run programs as it) could
 * otherwise replace a directory bk is about to fill, chmod or chown with a
 * symbolic link, and steer root's writes and chowns anywhere.  So:
 *
 *	 - --pgdata and each tablespace location are resolved once, without
 *	   links (restore_canonical_path), opened component by component
 *	   without following links, and made bk's own, mode 0700
 *	   (restore_open_root); every path bk then uses goes through the open
 *	   directory (/proc/self/fd/N), so that renaming one of their parents
 *	   cannot move bk elsewhere;
 *	 - under --delta, what the owner left there is taken back: every
 *	   directory becomes bk's, mode 0700, before anything is read or
 *	   written, and a link where a directory belongs is removed, never
 *	   followed (restore_ensure_dir);
 *	 - once every file is written and durable, restore_hand_over gives the
 *	   tree to the owner, children first, never following a link, the top
 *	   of --pgdata last.
 *
 * A restore that fails leaves the target bk's (root's), mode 0700: it does
 * not start, and bk restore --delta, run again as root, reuses it.
 */

/*
 * path with every link resolved, "." and "//" gone: realpath of the part
 * that exists, then the rest.  ".." in the rest has nothing to resolve
 * against and is refused.
 */
bool
restore_canonical_path(const char *path, char *out, size_t out_len,
					   BkError *err)
{
	char prefix[RESTORE_PATH_MAX];
	char real[PATH_MAX];
	size_t cut = strlen(path);
	const char *rest;
	size_t used;

	if (cut == 0 || cut >= sizeof(prefix))
		return bk_error_set(err, BK_ERR_USAGE, "invalid path \"%s\"", path);
	memcpy(prefix, path, cut + 1);
	for (;;)
	{
		const char *try = prefix;

		if (cut == 0)
			try = path[0] == '/' ? "/" : ".";
		if (realpath(try, real) != NULL)
			break;
		if (errno != ENOENT || cut == 0)
			return bk_error_set(err, BK_ERR_IO, "could not resolve \"%s\": %s",
								try, strerror(errno));
		while (cut > 0 && prefix[cut - 1] != '/')
			cut--;
		while (cut > 0 && prefix[cut - 1] == '/')
			cut--;
		prefix[cut] = '\0';
	}
	if (strlen(real) >= out_len)
		return bk_error_set(err, BK_ERR_USAGE, "path too long: \"%s\"", path);
	bk_strlcpy(out, real, out_len);
	used = strlen(out);
	for (rest = path + cut; *rest != '\0';)
	{
		size_t len;

		while (*rest == '/')
			rest++;
		len = strcspn(rest, "/");
		if (len == 0 || (len == 1 && rest[0] == '.'))
		{
			rest += len;
			continue;
		}
		if (len == 2 && rest[0] == '.' && rest[1] == '.')
			return bk_error_set(err, BK_ERR_USAGE,
								"\"%s\": \"..\" follows a directory that "
								"does not exist",
								path);
		if (used + (used > 1) + len >= out_len)
			return bk_error_set(err, BK_ERR_USAGE, "path too long: \"%s\"",
								path);
		if (used > 1)
			out[used++] = '/';
		memcpy(out + used, rest, len);
		used += len;
		out[used] = '\0';
		rest += len;
	}
	return true;
}

/*
 * Open the directory canonical (restore_canonical_path), creating what is
 * missing, component by component without following links: a link there
 * now means it changed since it was resolved.  Under r->protect it becomes
 * bk's, mode 0700 (taken back under --delta); root is the name bk writes
 * through.
 */
bool
restore_open_root(Restore *r, const char *canonical, int *fd_out, char *root,
				  size_t root_len, BkError *err)
{
	char partial[RESTORE_PATH_MAX];
	const char *p = canonical;
	struct stat st;
	struct stat via;
	int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return bk_error_set(err, BK_ERR_IO, "could not open \"/\": %s",
							strerror(errno));
	while (*p != '\0')
	{
		size_t len;
		char name[NAME_MAX + 1];
		int next;
		bool last;

		while (*p == '/')
			p++;
		len = strcspn(p, "/");
		if (len == 0)
			break;
		if (len > NAME_MAX)
		{
			close(fd);
			return bk_error_set(err, BK_ERR_USAGE, "path too long: \"%s\"",
								canonical);
		}
		memcpy(name, p, len);
		name[len] = '\0';
		p += len;
		last = strspn(p, "/") == strlen(p);
		snprintf(partial, sizeof(partial), "%.*s", (int) (p - canonical),
				 canonical);
		next =
			openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT &&
			(mkdirat(fd, name, last ? 0700 : 0755) == 0 || errno == EEXIST))
			next = openat(fd, name,
						  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0)
		{
			int saved = errno;

			close(fd);
			if (saved == ELOOP || saved == ENOTDIR)
			{
				bk_error_set(err, BK_ERR_REFUSED,
							 "\"%s\" is no longer a directory", partial);
				return bk_error_hint(err, "It was one when bk restore "
										  "started: something replaced it "
										  "(with a symbolic link?). Find "
										  "out what, then restore again.");
			}
			return bk_error_set(err, BK_ERR_IO,
								"could not open or create directory "
								"\"%s\": %s",
								partial, strerror(saved));
		}
		close(fd);
		fd = next;
	}
	if ((r->protect && fchown(fd, geteuid(), getegid()) != 0) ||
		fchmod(fd, 0700) != 0 || fstat(fd, &st) != 0)
	{
		bk_error_set(err, BK_ERR_IO,
					 "could not make \"%s\" bk's own, mode 0700: %s", canonical,
					 strerror(errno));
		close(fd);
		return false;
	}
	snprintf(root, root_len, "/proc/self/fd/%d", fd);
	if (stat(root, &via) != 0 || via.st_dev != st.st_dev ||
		via.st_ino != st.st_ino)
	{
		/* No /proc: the path itself, which a rename can move. */
		if (r->protect)
			fprintf(stderr,
					"%s: WARNING: /proc/self/fd is not available: \"%s\" "
					"is written through its path, so whoever may rename its "
					"parent directories could redirect the restore\n",
					r->program, canonical);
		bk_strlcpy(root, canonical, root_len);
	}
	*fd_out = fd;
	return true;
}

void
restore_close_roots(Restore *r)
{
	if (r->pgdata_fd >= 0)
		close(r->pgdata_fd);
	r->pgdata_fd = -1;
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
		if (r->tablespaces[spcIdx].root[0] != '\0')
		{
			close(r->tablespaces[spcIdx].fd);
			r->tablespaces[spcIdx].root[0] = '\0';
		}
}

/* Replace from by to in buf, where from is not followed by a digit. */
static void
replace_root(char *buf, size_t size, const char *from, const char *to)
{
	size_t from_len = strlen(from);
	size_t to_len = strlen(to);
	char *at = buf;

	if (from_len == 0 || strcmp(from, to) == 0)
		return;
	while ((at = strstr(at, from)) != NULL)
	{
		size_t tail = strlen(at + from_len);

		if (at[from_len] >= '0' && at[from_len] <= '9')
		{
			at += from_len;
			continue;
		}
		if ((size_t) (at - buf) + to_len + tail >= size)
			return;
		memmove(at + to_len, at + from_len, tail + 1);
		memcpy(at, to, to_len);
		at += to_len;
	}
}

/* An error names the directories as the user knows them, not /proc's. */
void
restore_show_paths(const Restore *r, BkError *err)
{
	if (err == NULL)
		return;
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
		if (r->tablespaces[spcIdx].root[0] != '\0')
		{
			replace_root(err->message, sizeof(err->message),
						 r->tablespaces[spcIdx].root,
						 r->tablespaces[spcIdx].canonical);
			replace_root(err->hint, sizeof(err->hint),
						 r->tablespaces[spcIdx].root,
						 r->tablespaces[spcIdx].canonical);
		}
	if (r->pgdata_fd >= 0)
	{
		replace_root(err->message, sizeof(err->message), r->pgdata,
					 r->pgdata_shown);
		replace_root(err->hint, sizeof(err->hint), r->pgdata, r->pgdata_shown);
	}
}

/*
 * The length of the root (--pgdata, a tablespace location) path is under;
 * 0 for a path under none, which bk never makes.
 */
static size_t
root_length(const Restore *r, const char *path)
{
	size_t len = strlen(r->pgdata);

	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
	{
		size_t spc_len = strlen(r->tablespaces[spcIdx].root);

		if (spc_len > 0 &&
			strncmp(path, r->tablespaces[spcIdx].root, spc_len) == 0 &&
			path[spc_len] == '/')
			return spc_len;
	}
	if (strncmp(path, r->pgdata, len) == 0 &&
		(path[len] == '/' || path[len] == '\0'))
		return len;
	return 0;
}

/*
 * Set path's mode through the file opened without following a link
 * (flags: O_DIRECTORY for a directory), never through a link planted there.
 */
static bool
chmod_opened(const char *path, int flags, mode_t mode, BkError *err)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | flags);

	if (fd < 0 || fchmod(fd, mode) != 0)
	{
		bk_error_set(err, BK_ERR_IO, "could not set mode of \"%s\": %s", path,
					 strerror(errno));
		if (fd >= 0)
			close(fd);
		return false;
	}
	close(fd);
	return true;
}

/*
 * path, under a root, a real directory, made as needed, each component
 * looked at without following it: under --delta a link or file where a
 * directory belongs (left by the owner) is removed, never followed.  mode
 * (>= 0) is set through the directory itself.
 */
bool
restore_ensure_dir(const Restore *r, const char *path, int mode, BkError *err)
{
	char partial[RESTORE_PATH_MAX];
	size_t len = strlen(path);

	if (len >= sizeof(partial))
		return bk_error_set(err, BK_ERR_USAGE, "path too long: \"%s\"", path);
	if (root_length(r, path) == 0)
		return bk_error_set(err, BK_ERR_INTERNAL,
							"\"%s\" is neither in the target directory nor "
							"in a tablespace location",
							path);
	for (size_t pos = root_length(r, path) + 1; pos <= len; pos++)
	{
		struct stat st;

		if (path[pos] != '/' && path[pos] != '\0')
			continue;
		memcpy(partial, path, pos);
		partial[pos] = '\0';
		if (lstat(partial, &st) == 0)
		{
			if (S_ISDIR(st.st_mode))
				continue;
			if (!r->delta)
				return bk_error_set(err, BK_ERR_IO,
									"\"%s\" exists and is not a directory",
									partial);
			if (!bk_remove_tree(partial, err))
				return false;
		}
		if (mkdir(partial, 0700) != 0 && errno != EEXIST)
			return bk_error_set(err, BK_ERR_IO,
								"could not create directory \"%s\": %s",
								partial, strerror(errno));
	}
	return mode < 0 || chmod_opened(path, O_DIRECTORY, (mode_t) mode, err);
}

/* A file bk wrote: its mode, through the file, never a link. */
bool
restore_chmod_file(const char *path, mode_t mode, BkError *err)
{
	return chmod_opened(path, 0, mode, err);
}

/*
 * Walk dir_fd without following links: under --delta (take), make every
 * directory bk's, mode 0700, parents first, so that the owner, even from
 * a working directory inside, can change nothing while bk works; at the
 * end (!take), give every entry to the owner, children first.  At the top
 * of a tablespace location (spc_rel: its pg_tblspc/OID) only what the
 * snapshot has is bk's: the rest belongs to another server version.
 */
static bool
walk_owner(const Restore *r, int dir_fd, const char *shown, const char *spc_rel,
		   bool take, BkError *err)
{
	int list_fd = dup(dir_fd);
	DIR *dir = list_fd >= 0 ? fdopendir(list_fd) : NULL;
	struct dirent *entry;
	bool ok = true;

	if (dir == NULL)
	{
		if (list_fd >= 0)
			close(list_fd);
		return bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s", shown,
							strerror(errno));
	}
	/* The duplicate shares dir_fd's offset, which an earlier walk moved. */
	rewinddir(dir);
	while (ok && (errno = 0, entry = readdir(dir)) != NULL)
	{
		char path[RESTORE_PATH_MAX];
		struct stat st;
		int child;

		if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
			continue;
		if (spc_rel != NULL)
		{
			char rel[RESTORE_PATH_MAX];

			snprintf(rel, sizeof(rel), "%s/%s", spc_rel, entry->d_name);
			if (!restore_record_has_directory(r->record, rel) &&
				!restore_record_has_below(r->record, rel))
				continue;
		}
		snprintf(path, sizeof(path), "%s/%s", shown, entry->d_name);
		if (fstatat(dir_fd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		{
			if (errno == ENOENT)
				continue;
			ok = bk_error_set(err, BK_ERR_IO, "could not stat \"%s\": %s", path,
							  strerror(errno));
			break;
		}
		if (!S_ISDIR(st.st_mode))
		{
			if (take)
				continue;
			/* A file linked from elsewhere (left there, under --delta):
			 * giving it away would give the other name's file too. */
			if (S_ISREG(st.st_mode) && st.st_nlink > 1 && st.st_uid != r->uid)
			{
				bk_error_set(err, BK_ERR_REFUSED,
							 "\"%s\" has other hard links, and another "
							 "owner (uid %d): bk restore does not give it "
							 "to uid %d",
							 path, (int) st.st_uid, (int) r->uid);
				ok = bk_error_hint(err, "Find its other names (find / "
										"-samefile), remove it, and run bk "
										"restore --delta again.");
				break;
			}
			if (fchownat(dir_fd, entry->d_name, r->uid, r->gid,
						 AT_SYMLINK_NOFOLLOW) != 0)
				ok = bk_error_set(err, BK_ERR_IO,
								  "could not change the owner of \"%s\": %s",
								  path, strerror(errno));
			continue;
		}
		child = openat(dir_fd, entry->d_name,
					   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (child < 0)
		{
			ok = bk_error_set(err, BK_ERR_IO, "could not open \"%s\": %s", path,
							  strerror(errno));
			break;
		}
		if (take)
			ok = (fchown(child, geteuid(), getegid()) == 0 &&
				  fchmod(child, 0700) == 0) ||
				 bk_error_set(err, BK_ERR_IO,
							  "could not make \"%s\" bk's own: %s", path,
							  strerror(errno));
		ok = ok && walk_owner(r, child, path, NULL, take, err);
		if (ok && !take && fchown(child, r->uid, r->gid) != 0)
			ok = bk_error_set(err, BK_ERR_IO,
							  "could not change the owner of \"%s\": %s", path,
							  strerror(errno));
		close(child);
	}
	if (ok && entry == NULL && errno != 0)
		ok = bk_error_set(err, BK_ERR_IO, "could not read \"%s\": %s", shown,
						  strerror(errno));
	closedir(dir);
	return ok;
}

/* --delta: what is already in the target becomes bk's before it is used. */
bool
restore_take_back(Restore *r, BkError *err)
{
	char spc_rel[32];

	if (!r->protect || !r->delta)
		return true;
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
	{
		snprintf(spc_rel, sizeof(spc_rel), "pg_tblspc/%" PRIu32,
				 r->tablespaces[spcIdx].oid);
		if (!walk_owner(r, r->tablespaces[spcIdx].fd,
						r->tablespaces[spcIdx].canonical, spc_rel, true, err))
			return false;
	}
	return walk_owner(r, r->pgdata_fd, r->pgdata_shown, NULL, true, err);
}

/*
 * The mode --pgdata gets at the end: 0750 if the snapshot's cluster allowed
 * group access (initdb -g: its directories 0750), else 0700.  PostgreSQL
 * takes the mode of new files from its data directory's, so a restore left
 * at 0700 would quietly stop giving the group what it gave.
 */
static mode_t
pgdata_final_mode(const Restore *r)
{
	for (size_t dirIdx = 0; dirIdx < r->record->directory_count; dirIdx++)
	{
		const BkSnapDirectory *dir = &r->record->directories[dirIdx];

		if (strcmp(dir->path, "global") == 0)
			return (dir->mode & 0777) == 0750 ? 0750 : 0700;
	}
	return 0700;
}

/* --pgdata's own mode, last: see pgdata_final_mode. */
static bool
set_pgdata_mode(const Restore *r, BkError *err)
{
	mode_t mode = pgdata_final_mode(r);

	if (mode != 0700 &&
		(fchmod(r->pgdata_fd, mode) != 0 || fsync(r->pgdata_fd) != 0))
		return bk_error_set(err, BK_ERR_IO,
							"could not set the mode of \"%s\" to %04o: %s",
							r->pgdata_shown, (unsigned) mode, strerror(errno));
	return true;
}

/*
 * Everything written and durable: the tree to the owner, the tablespace
 * locations, then the top of --pgdata last, so that a hand-over cut short
 * leaves a directory the owner's server refuses to start (its owner is
 * not the server's user).  syncfs makes the new owners durable.
 */
bool
restore_hand_over(Restore *r, BkError *err)
{
	char spc_rel[32];

	if (!r->protect)
		return set_pgdata_mode(r, err);
	for (int spcIdx = 0; spcIdx < r->tablespace_count; spcIdx++)
	{
		RestoreTablespace *spc = &r->tablespaces[spcIdx];

		snprintf(spc_rel, sizeof(spc_rel), "pg_tblspc/%" PRIu32, spc->oid);
		if (!walk_owner(r, spc->fd, spc->canonical, spc_rel, false, err))
			return false;
		if (fchown(spc->fd, r->uid, r->gid) != 0)
			return bk_error_set(err, BK_ERR_IO,
								"could not change the owner of \"%s\": %s",
								spc->canonical, strerror(errno));
		if (syncfs(spc->fd) != 0)
			return bk_error_set(err, BK_ERR_IO,
								"could not sync the file system of \"%s\": "
								"%s",
								spc->canonical, strerror(errno));
	}
	if (!walk_owner(r, r->pgdata_fd, r->pgdata_shown, NULL, false, err))
		return false;
	if (syncfs(r->pgdata_fd) != 0)
		return bk_error_set(err, BK_ERR_IO,
							"could not sync the file system of \"%s\": %s",
							r->pgdata_shown, strerror(errno));
	if (fchown(r->pgdata_fd, r->uid, r->gid) != 0 || fsync(r->pgdata_fd) != 0)
		return bk_error_set(err, BK_ERR_IO,
							"could not give \"%s\" to its owner: %s",
							r->pgdata_shown, strerror(errno));
	return set_pgdata_mode(r, err);
}

/* True if dir exists and holds anything. */
bool
restore_dir_not_empty(const char *path)
{
	DIR *dir = opendir(path);
	struct dirent *entry;
	bool found = false;

	if (dir == NULL)
		return false;
	while (!found && (entry = readdir(dir)) != NULL)
		found =
			strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0;
	closedir(dir);
	return found;
}

bool
restore_write_text_file(const Restore *r, const char *path, const char *text,
						BkError *err)
{
	(void) r;
	return bk_write_file_durable(path, text, strlen(text), 0600, err);
}
