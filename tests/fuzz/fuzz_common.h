/*
 * fuzz_common.h
 *		The fixed key the fuzz targets and their seed generator share, so
 *		seeds are valid frames the decoder can open and the fuzzer starts
 *		from deep inside the format rather than at the magic bytes.
 */
#ifndef BK_FUZZ_COMMON_H
#define BK_FUZZ_COMMON_H

#include <string.h>

#include "bk_crypto.h"
#include "bk_keys.h"

static inline void
fuzz_key(BkKey *key)
{
	BkError err;

	memset(key, 0, sizeof(*key));
	bk_sha256("bk fuzz key", 11, key->private_key, &err);
	bk_key_complete_from_private(key, &err);
}

#endif /* BK_FUZZ_COMMON_H */
