/*
 * verify.h
 *		What bk verify's engine-neutral command and each engine's checks
 *		share: the running totals and how a problem is reported.
 */
#ifndef BK_VERIFY_H
#define BK_VERIFY_H

#include <stdint.h>

#include <jansson.h>

#include "bk_crypto.h"
#include "bk_error.h"
#include "bk_keys.h"

typedef struct BkVerifier
{
	const BkKeyring *ring; /* NULL: no key, keyless checks only */
	BkDecoder *decoder;
	bool json;
	uint64_t objects; /* checked */
	uint64_t problems;
	json_t *problem_list; /* of the current source */
	json_t *note_list;    /* what was not checked, and why */
	json_t *conflict_list;
	json_t *snapshot_list;
	uint64_t snapshot_files; /* rebuilt and checked */
	uint64_t hint_bit_differences;
} BkVerifier;

/* A problem with object (a name), said as the output format wants. */
extern void bk_verify_problem(BkVerifier *verifier, const char *object,
							  const char *fmt, ...) BK_PRINTF(3, 4);

/*
 * Something about object that was not checked (not a problem), said as the
 * output format wants: text prints it, --json lists it under "notes".
 */
extern void bk_verify_note(BkVerifier *verifier, const char *object,
						   const char *fmt, ...) BK_PRINTF(3, 4);

/* Two copies of object: the verdict, and the copies' details (JSON). */
extern void bk_verify_conflict(BkVerifier *verifier, const char *object,
							   const char *verdict, json_t *copies);

#endif /* BK_VERIFY_H */
