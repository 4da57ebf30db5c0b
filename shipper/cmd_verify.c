/*
 * cmd_verify.c
 *		bk verify: check the repository end to end without restoring.
 *
 * Without a key it checks what the shipper can: every object file parses,
 * every frame passes its CRC-32C, every object is one complete attempt and is
 * the object its path names, and the WAL of each timeline has no gap.  With
 * the private key (key_file / --key-file) it also decrypts every object,
 * which checks every AEAD tag and each object's fingerprint, and looks inside
 * WAL segments: the first page's header must name the segment's own LSN,
 * segment size and the source's system identifier.
 *
 * Conflicting copies (same name, different content) are decrypted side by
 * side, and verify says which copy agrees with the rest of the source's
 * archive, so the operator knows which one to move away.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bk_crypto.h"
#include "bk_keys.h"
#include "bk_util.h"
#include "commands.h"
#include "repo.h"

#define XLP_LONG_HEADER     0x0002
#define WAL_LONG_HEADER_LEN 40

static const char *verify_help =
	"Usage: bk verify [--config FILE] [--repo DIR] [--key-file FILE] "
	"[--source S] [--json]\n\n"
	"Checks every archived object without restoring: structure, checksums, "
	"and\nWAL gaps; with the private key also decrypts everything and checks "
	"each\nobject's authentication tags, fingerprint and WAL page headers. "
	"Exit status\n4 when anything is wrong.\n\n"
	"  --source S        only this source\n" BK_COMMON_HELP;

/* What we learn about one stored object. */
typedef struct ObjectReport
{
	char path[BK_REPO_PATH_MAX];
	bool ok;
	char problem[BK_ERROR_MESSAGE_MAX];
	BkObjectTracker object;
	bool decrypted;
	uint8_t digest[BK_SHA256_LEN];
	bool has_page_header;
	uint16_t page_magic;
	uint32_t page_tli;
	uint64_t page_addr;
	uint64_t page_sysid;
	uint32_t page_seg_size;
} ObjectReport;

typedef struct Verifier
{
	const BkKeyring *ring;
	BkDecoder *decoder;
	bool json;
	uint64_t objects;
	uint64_t stored_bytes;
	uint64_t problems;
	json_t *problem_list; /* of the current source */
	json_t *conflict_list;
} Verifier;

static uint16_t
le16(const uint8_t *p)
{
	return (uint16_t) (p[0] | (p[1] << 8));
}

static uint32_t
le32(const uint8_t *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) | ((uint32_t) p[2] << 16) |
		   ((uint32_t) p[3] << 24);
}

static uint64_t
le64(const uint8_t *p)
{
	return (uint64_t) le32(p) | ((uint64_t) le32(p + 4) << 32);
}

typedef struct DecodeVisit
{
	Verifier *verifier;
	ObjectReport *report;
	bool first;
} DecodeVisit;

static bool
decode_frame(void *arg, const uint8_t *frame, size_t len, BkError *err)
{
	DecodeVisit *visit = arg;
	const uint8_t *plain;
	size_t plain_len;

	if (!bk_decoder_push(visit->verifier->decoder, frame, len, &plain,
						 &plain_len, err))
		return false;
	if (visit->first && plain_len >= WAL_LONG_HEADER_LEN)
	{
		ObjectReport *r = visit->report;

		/* XLogLongPageHeaderData, in the source's (little-endian) byte order. */
		r->page_magic = le16(plain);
		r->has_page_header = (le16(plain + 2) & XLP_LONG_HEADER) != 0;
		r->page_tli = le32(plain + 4);
		r->page_addr = le64(plain + 8);
		r->page_sysid = le64(plain + 24);
		r->page_seg_size = le32(plain + 32);
	}
	visit->first = false;
	return true;
}

static uint64_t
parse_lsn(const char *text)
{
	unsigned int hi;
	unsigned int lo;

	if (sscanf(text, "%X/%X", &hi, &lo) != 2)
		return UINT64_MAX;
	return ((uint64_t) hi << 32) | lo;
}

/* Check one stored WAL object; fills report. */
static void
check_object(Verifier *verifier, const char *path, const char *source,
			 const char *name, ObjectReport *report)
{
	BkError err;
	uint32_t tli;
	uint32_t log;
	uint32_t seg;
	BkWalFileType type = bk_wal_file_type(name, &tli, &log, &seg);

	memset(report, 0, sizeof(*report));
	bk_strlcpy(report->path, path, sizeof(report->path));
	bk_error_clear(&err);
	if (!bk_repo_check_object(path, source, BK_KIND_WAL, name, &report->object,
							  &err))
	{
		bk_strlcpy(report->problem, err.message, sizeof(report->problem));
		return;
	}
	verifier->objects++;
	if (verifier->ring != NULL)
	{
		DecodeVisit visit = {verifier, report, true};

		bk_decoder_reset(verifier->decoder);
		if (!bk_repo_read_frames(path, false, decode_frame, &visit, &err) ||
			!bk_decoder_finish(verifier->decoder, &err))
		{
			snprintf(report->problem, sizeof(report->problem), "%s: %s", path,
					 err.message);
			return;
		}
		report->decrypted = true;
		memcpy(report->digest, bk_decoder_digest(verifier->decoder),
			   BK_SHA256_LEN);

		if (type == BK_WAL_SEGMENT || type == BK_WAL_PARTIAL)
		{
			const BkObjectTracker *o = &report->object;
			char value[64];
			uint64_t seg_size = 0;
			uint64_t sysid = 0;
			uint64_t start = UINT64_MAX;

			if (bk_meta_get(o->meta, o->meta_len, "segment-size", value,
							sizeof(value)))
				seg_size = strtoull(value, NULL, 10);
			if (bk_meta_get(o->meta, o->meta_len, "system-identifier", value,
							sizeof(value)))
				sysid = strtoull(value, NULL, 10);
			if (bk_meta_get(o->meta, o->meta_len, "lsn-start", value,
							sizeof(value)))
				start = parse_lsn(value);
			if (type == BK_WAL_SEGMENT && o->object_size != seg_size)
				snprintf(report->problem, sizeof(report->problem),
						 "%s: %" PRIu64 " bytes, the segment size is %" PRIu64,
						 path, o->object_size, seg_size);
			else if (!report->has_page_header)
				snprintf(report->problem, sizeof(report->problem),
						 "%s: the first page has no long WAL page header",
						 path);
			else if (report->page_addr != start ||
					 report->page_seg_size != seg_size ||
					 report->page_sysid != sysid)
				snprintf(
					report->problem, sizeof(report->problem),
					"%s: the first page header (address %X/%X, segment size "
					"%" PRIu32 ", system identifier %" PRIu64
					") does not match the segment (%X/%X, %" PRIu64 ", %" PRIu64
					")",
					path, (unsigned) (report->page_addr >> 32),
					(unsigned) report->page_addr, report->page_seg_size,
					report->page_sysid, (unsigned) (start >> 32),
					(unsigned) start, seg_size, sysid);
			if (report->problem[0] != '\0')
				return;
		}
	}
	report->ok = true;
}

static void
add_problem(Verifier *verifier, const char *object, const char *problem)
{
	verifier->problems++;
	if (verifier->json)
		json_array_append_new(
			verifier->problem_list,
			json_pack("{s:s, s:s}", "object", object, "problem", problem));
	else
		printf("  PROBLEM %s: %s\n", object, problem);
}

static json_t *
copy_json(const ObjectReport *r)
{
	char hex[2 * BK_FINGERPRINT_LEN + 1];
	json_t *copy = json_object();

	json_object_set_new(copy, "path", json_string(r->path));
	json_object_set_new(copy, "ok", json_boolean(r->ok));
	if (!r->ok)
		json_object_set_new(copy, "problem", json_string(r->problem));
	if (r->object.complete)
	{
		bk_hex_encode(r->object.attempt_id, BK_ATTEMPT_ID_LEN, hex);
		json_object_set_new(copy, "attempt", json_string(hex));
		bk_hex_encode(r->object.key_id, BK_KEY_ID_LEN, hex);
		json_object_set_new(copy, "key_id", json_string(hex));
	}
	if (r->decrypted && r->page_seg_size != 0)
	{
		json_object_set_new(copy, "system_identifier",
							json_integer((json_int_t) r->page_sysid));
		json_object_set_new(copy, "page_timeline", json_integer(r->page_tli));
	}
	return copy;
}

/* Conflicting copies of name: decrypt each, say which fits the archive. */
static void
check_conflicts(Verifier *verifier, const BkRepo *repo, const char *source,
				uint64_t majority_sysid)
{
	char dir_path[BK_REPO_PATH_MAX];
	DIR *dir;
	struct dirent *entry;

	BkError err;

	if (!bk_repo_source_path(repo, source, "conflicts/wal", dir_path,
							 sizeof(dir_path), &err))
		return;
	dir = opendir(dir_path);
	if (dir == NULL)
		return;
	while ((entry = readdir(dir)) != NULL)
	{
		char name[BK_OBJECT_NAME_MAX + 1];
		char main_path[BK_REPO_PATH_MAX];
		char copy_path[BK_REPO_PATH_MAX + 256];
		char *dot;
		ObjectReport *first = calloc(1, sizeof(*first));
		ObjectReport *second = calloc(1, sizeof(*second));
		char verdict[BK_REPO_PATH_MAX * 2 + 512];

		if (entry->d_name[0] == '.')
		{
			free(first);
			free(second);
			continue;
		}
		bk_strlcpy(name, entry->d_name, sizeof(name));
		dot = strrchr(name, '.');
		if (dot != NULL)
			*dot = '\0';
		snprintf(copy_path, sizeof(copy_path), "%s/%s", dir_path,
				 entry->d_name);
		if (!bk_repo_object_path(repo, source, BK_KIND_WAL, name, main_path,
								 sizeof(main_path), &err))
		{
			free(first);
			free(second);
			continue;
		}
		check_object(verifier, main_path, source, name, first);
		check_object(verifier, copy_path, source, name, second);
		if (verifier->ring == NULL)
			snprintf(verdict, sizeof(verdict),
					 "two copies; decrypt them with the key (--key-file) to "
					 "tell them apart");
		else if (first->decrypted && second->decrypted &&
				 memcmp(first->digest, second->digest, BK_SHA256_LEN) == 0)
			snprintf(
				verdict, sizeof(verdict),
				"both copies decrypt to identical content (a re-send under "
				"another key); either will do");
		else
		{
			bool first_fits = first->ok && first->page_sysid == majority_sysid;
			bool second_fits =
				second->ok && second->page_sysid == majority_sysid;

			if (first_fits && !second_fits)
				snprintf(verdict, sizeof(verdict),
						 "different content; the archived copy %s fits this "
						 "source's history, the conflict copy %s does not",
						 main_path, copy_path);
			else if (second_fits && !first_fits)
				snprintf(
					verdict, sizeof(verdict),
					"different content; the conflict copy %s fits this "
					"source's history, the archived copy %s does not: move "
					"the archived copy away and the conflict copy into its "
					"place",
					copy_path, main_path);
			else
				snprintf(
					verdict, sizeof(verdict),
					"different content, both valid WAL of system %" PRIu64
					": two servers archived onto one source and timeline; "
					"keep the copy of the server whose history you restore",
					majority_sysid);
		}
		verifier->problems++;
		if (verifier->json)
		{
			json_t *item = json_pack("{s:s, s:s, s:[o,o]}", "object", name,
									 "verdict", verdict, "copies",
									 copy_json(first), copy_json(second));

			json_array_append_new(verifier->conflict_list, item);
		}
		else
			printf("  CONFLICT %s: %s\n", name, verdict);
		free(first);
		free(second);
	}
	closedir(dir);
}

static bool
verify_source(Verifier *verifier, const BkRepo *repo, const char *source,
			  json_t *sources_json, BkError *err)
{
	char wal_dir[BK_REPO_PATH_MAX];
	DIR *dir;
	struct dirent *entry;
	BkWalCatalog catalog;
	uint64_t objects_before = verifier->objects;
	uint64_t problems_before = verifier->problems;
	uint64_t majority_sysid = 0;
	ObjectReport *report = calloc(1, sizeof(*report));

	verifier->problem_list = json_array();
	verifier->conflict_list = json_array();
	if (!verifier->json)
		printf("source %s\n", source);
	if (!bk_repo_source_path(repo, source, "wal", wal_dir, sizeof(wal_dir),
							 err))
	{
		free(report);
		return false;
	}
	dir = opendir(wal_dir);
	while (dir != NULL && (entry = readdir(dir)) != NULL)
	{
		char path[BK_REPO_PATH_MAX + 256];

		if (entry->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", wal_dir, entry->d_name);
		check_object(verifier, path, source, entry->d_name, report);
		if (!report->ok)
			add_problem(verifier, entry->d_name, report->problem);
		else
		{
			verifier->stored_bytes += report->object.object_size;
			if (report->decrypted && report->page_seg_size != 0)
				majority_sysid = report->page_sysid;
		}
	}
	if (dir != NULL)
		closedir(dir);
	free(report);

	if (!bk_wal_catalog_load(repo, source, &catalog, err))
		return false;
	for (int tlIdx = 0; tlIdx < catalog.timeline_count; tlIdx++)
	{
		const BkWalTimeline *tl = &catalog.timelines[tlIdx];
		char gap[32];
		char message[256];

		if (tl->gap_count == 0)
			continue;
		bk_wal_segment_name(tl->timeline, tl->first_gap_segno,
							catalog.segment_size, gap);
		snprintf(message, sizeof(message),
				 "%" PRIu64 " segment%s missing inside the archived range of "
				 "timeline %" PRIu32 " (first missing: %s); point-in-time "
				 "recovery cannot cross it",
				 tl->gap_count, tl->gap_count == 1 ? "" : "s", tl->timeline,
				 gap);
		add_problem(verifier, gap, message);
	}
	bk_wal_catalog_free(&catalog);
	check_conflicts(verifier, repo, source, majority_sysid);

	if (verifier->json)
		json_array_append_new(
			sources_json,
			json_pack("{s:s, s:I, s:b, s:o, s:o}", "source", source, "objects",
					  (json_int_t) (verifier->objects - objects_before), "ok",
					  verifier->problems == problems_before, "problems",
					  verifier->problem_list, "conflicts",
					  verifier->conflict_list));
	else
	{
		json_decref(verifier->problem_list);
		json_decref(verifier->conflict_list);
		printf("  %" PRIu64 " WAL object%s checked%s: %s\n",
			   verifier->objects - objects_before,
			   verifier->objects - objects_before == 1 ? "" : "s",
			   verifier->ring ? " and decrypted"
							  : " (no key: contents not decrypted)",
			   verifier->problems == problems_before ? "OK" : "PROBLEMS FOUND");
	}
	return true;
}

int
bk_cmd_verify(int argc, char **argv)
{
	static const struct option options[] = {
		{"source", required_argument, NULL, 's'},
		BK_COMMON_LONG_OPTIONS,
		{NULL, 0, NULL, 0}};
	BkCommonOptions common = {0};
	const char *only_source = NULL;
	BkCliConfig config;
	BkRepo repo;
	BkKeyring *ring = NULL;
	Verifier verifier = {0};
	char **sources = NULL;
	int source_count = 0;
	json_t *sources_json = json_array();
	BkError err;
	int status = BK_EXIT_OK;
	int code;

	bk_error_clear(&err);
	optind = 1;
	opterr = 0;
	while ((code = getopt_long(argc, argv, "", options, NULL)) != -1)
	{
		if (code == 's')
			only_source = optarg;
		else if (!bk_common_option(&common, code, optarg))
		{
			json_decref(sources_json);
			return bk_cli_bad_option(argv[0], argv[optind - 1]);
		}
	}
	if (common.help)
	{
		fputs(verify_help, stdout);
		json_decref(sources_json);
		return BK_EXIT_OK;
	}
	if (optind < argc)
	{
		json_decref(sources_json);
		return bk_cli_usage_error(argv[0], "unexpected argument \"%s\"",
								  argv[optind]);
	}

	bk_cli_config_init(&config);
	if (!bk_common_config(&common, &config, &err) ||
		!bk_repo_open(&repo, config.repository, false, &err))
		goto fail;
	if (config.key_file != NULL)
	{
		ring = bk_keyring_load(config.key_file, BK_KEYS_FOR_RESTORE, &err);
		if (ring == NULL)
			goto fail;
		verifier.decoder = bk_decoder_new(ring, &err);
		if (verifier.decoder == NULL)
			goto fail;
	}
	verifier.ring = ring;
	verifier.json = common.json;
	if (only_source != NULL)
	{
		if (!bk_source_id_valid(only_source, strlen(only_source)))
		{
			bk_error_set(&err, BK_ERR_USAGE, "invalid source id \"%s\"",
						 only_source);
			goto fail;
		}
		sources = calloc(1, sizeof(char *));
		sources[0] = strdup(only_source);
		source_count = 1;
	}
	else if (!bk_repo_sources(&repo, &sources, &source_count, &err))
		goto fail;

	for (int sourceIdx = 0; sourceIdx < source_count; sourceIdx++)
		if (!verify_source(&verifier, &repo, sources[sourceIdx], sources_json,
						   &err))
			goto fail;

	if (common.json)
	{
		json_t *result =
			json_pack("{s:s, s:b, s:b, s:I, s:I, s:o}", "repository", repo.root,
					  "ok", verifier.problems == 0, "decrypted", ring != NULL,
					  "objects", (json_int_t) verifier.objects, "problems",
					  (json_int_t) verifier.problems, "sources", sources_json);

		sources_json = NULL;
		json_dumpf(result, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(result);
	}
	else
		printf("%s: %" PRIu64 " object%s, %" PRIu64 " problem%s\n",
			   verifier.problems == 0 ? "OK" : "FAILED", verifier.objects,
			   verifier.objects == 1 ? "" : "s", verifier.problems,
			   verifier.problems == 1 ? "" : "s");
	status = verifier.problems == 0 ? BK_EXIT_OK : BK_EXIT_INTEGRITY;
	goto done;

fail:
	status = bk_cli_report_error(argv[0], &err);
done:
	json_decref(sources_json);
	bk_decoder_free(verifier.decoder);
	bk_keyring_free(ring);
	bk_repo_free_list(sources, source_count);
	bk_cli_config_free(&config);
	return status;
}
