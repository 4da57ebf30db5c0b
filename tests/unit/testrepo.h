/*
 * testrepo.h
 *		Unit-test helper for tests that need objects in a real repository:
 *		archive one as the shipper would (its frames spooled, finished and
 *		committed under its identity).  Linked into the tests of the bk
 *		tool, which have the repository library.
 */
#ifndef BK_TEST_REPO_H
#define BK_TEST_REPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bk_keys.h"
#include "repo.h"

/*
 * Archive content as object name of kind in source, with metadata meta,
 * encoded to key; tag_counter numbers the spool files.  The object must
 * be new: anything but BK_PUT_CREATED fails the test.
 */
extern void test_archive_object(BkRepo *repo, const BkKey *key,
								int *tag_counter, int kind, const char *source,
								const char *name, const char *meta,
								const uint8_t *content, size_t len);

/*
 * The same, where the archive already holds another object of that name:
 * the commit must find it (BK_PUT_EXISTS_DIFFERENT), and content is then
 * kept among the conflicts, as a shipper keeps a second copy.
 */
extern void test_archive_conflict(BkRepo *repo, const BkKey *key,
								  int *tag_counter, int kind,
								  const char *source, const char *name,
								  const char *meta, const uint8_t *content,
								  size_t len);

/*
 * Make every object of snapshot id of source in the directory repository
 * at location look stored hours ago: the store's time of an object there
 * is its file's modification time.
 */
extern void test_age_snapshot(const char *location, const char *source,
							  const char *id, int hours);

/*
 * Change from into to (as long) in every frame header of the object
 * <source>/<kind>/<name> of the directory repository at location: as bit
 * rot would (fix_crc false), or as anyone who can write to the repository
 * can (fix_crc true: a CRC can be recomputed, an AEAD tag cannot).
 */
extern void test_alter_stored(const char *location, const char *source,
							  const char *kind, const char *name,
							  const char *from, const char *to, bool fix_crc);

/*
 * From now on, the calls named in what (TEST_FAIL_READS: opening an
 * object to read it; TEST_FAIL_DELETES: removing an object or a prefix)
 * on a key that contains key_part fail with BK_ERR_STORE ("injected failure
 * reading/removing <key>"), as with a store that does not answer;
 * TEST_READS_NOT_FOUND: opening such an object fails with BK_ERR_NOT_FOUND
 * although it is there and listed, as with a store whose reads lag its
 * listings or a proxy's passing 404.  Every other call is the backend's.
 * Until test_repo_faults_end.  One repository at a time.
 */
#define TEST_FAIL_READS      1
#define TEST_FAIL_DELETES    2
#define TEST_READS_NOT_FOUND 4
extern void test_repo_faults(BkRepo *repo, int what, const char *key_part);
extern void test_repo_faults_end(BkRepo *repo);

#endif /* BK_TEST_REPO_H */
