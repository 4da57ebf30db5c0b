/*
 * mariadb.h
 *		What the MariaDB engine's files share.
 */
#ifndef BK_MARIADB_H
#define BK_MARIADB_H

#include <stdint.h>

#include "bk_frame.h"
#include "repo.h"

/*
 * Decrypt a snapshot and check every table against its record (rows,
 * bytes, SHA-256, every part present); with out_dir (which must not exist),
 * write schema.json, snapshot.json and data/NNNNNN.tsv there.
 */
extern bool mariadb_snapshot_check(const BkRepo *repo, const char *source,
								   BkDecoder *decoder, const char *id,
								   const char *out_dir,
								   uint64_t *tables_checked, BkError *err);

#endif /* BK_MARIADB_H */
