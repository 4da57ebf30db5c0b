/*
 * restore_paths.c
 *		Where each file of the snapshot goes in the restored directory
 *		(tablespaces included), what the record says of it, and who owns it.
 */
#include <dirent.h>
#include <errno.h>
#include <string.h>
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
					if (*end == '\0')
						return restore_join_path(out, out_len, r->pgdata, rel,
												 err);
					return restore_join_path(out, out_len,
											 r->tablespaces[spcIdx].location,
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

bool
restore_set_owner_path(const Restore *r, const char *path, bool follow,
					   BkError *err)
{
	if (!r->set_owner)
		return true;
	if ((follow ? chown(path, r->uid, r->gid) : lchown(path, r->uid, r->gid)) !=
		0)
		return bk_error_set(err, BK_ERR_IO,
							"could not change the owner of \"%s\": %s", path,
							strerror(errno));
	return true;
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
	return bk_write_file_durable(path, text, strlen(text), 0600, err) &&
		   restore_set_owner_path(r, path, false, err);
}
