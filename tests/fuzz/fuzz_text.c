/*
 * fuzz_text.c
 *		libFuzzer target: every text input bk parses that crosses a trust
 *		boundary or comes from an operator: key files, configuration files,
 *		librdkafka property lists, frame metadata, object names and source
 *		ids, sizes and durations, LSNs, timeline history files and their
 *		branch-points metadata (both read back from the repository).  The
 *		first byte selects the parser.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bk_config.h"
#include "bk_frame.h"
#include "bk_keys.h"
#include "bk_timeline.h"
#include "bk_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
accept_any(void *arg, const char *key, const char *value, BkError *err)
{
	/* Reject one key so the error path runs too. */
	if (strcmp(key, "reject") == 0)
		return bk_error_set(err, BK_ERR_CONFIG, "rejected");
	return strlen(key) + strlen(value) < 100000;
}

/* Parsers that read files get the input through a memfd. */
static void
with_file(const uint8_t *data, size_t size, int which)
{
	int fd = memfd_create("bk-fuzz", 0);
	char path[64];
	BkError err;

	if (fd < 0)
		return;
	if (write(fd, data, size) == (ssize_t) size)
	{
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		if (which == 0)
			bk_keyring_free(bk_keyring_load(path, BK_KEYS_FOR_RESTORE, &err));
		else if (which == 1)
			bk_keyring_free(bk_keyring_load(path, BK_KEYS_FOR_SOURCE, &err));
		else
			(void) bk_config_parse_file(path, accept_any, NULL, &err);
	}
	close(fd);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text;
	char value[64];
	uint64_t bytes;
	int64_t ms;
	BkError err;

	if (size < 1)
		return 0;
	text = malloc(size);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	switch (data[0] % 7)
	{
		case 0:
		case 1:
		case 2:
			with_file(data + 1, size - 1, data[0] % 6);
			break;
		case 3:
			(void) bk_config_parse_properties(text, accept_any, NULL, &err);
			break;
		case 4:
			if (bk_meta_valid(text, size - 1))
				(void) bk_meta_get(text, size - 1, "lsn", value, sizeof(value));
			(void) bk_object_name_valid(text, size - 1);
			(void) bk_source_id_valid(text, size - 1);
			break;
		case 5:
			(void) bk_parse_size(text, &bytes);
			(void) bk_parse_duration_ms(text, &ms);
			break;
		case 6:
		{
			BkTimelineBranch *branches;
			int count;
			uint64_t lsn;
			char formatted[256];

			(void) bk_parse_lsn(text, &lsn);
			if (bk_timeline_history_parse((const char *) data + 1, size - 1, 7,
										  &branches, &count, &err))
			{
				/* What parses must survive the metadata round trip. */
				if (bk_branch_points_format(branches, count, formatted,
											sizeof(formatted)))
				{
					BkTimelineBranch *again;
					int again_count;

					if (!bk_branch_points_parse(formatted, 7, &again,
												&again_count, &err) ||
						again_count != count)
						abort();
					free(again);
				}
				free(branches);
			}
			if (bk_branch_points_parse(text, 7, &branches, &count, &err))
				free(branches);
			break;
		}
	}
	free(text);
	return 0;
}
