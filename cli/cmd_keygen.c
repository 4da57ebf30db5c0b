/*
 * cmd_keygen.c
 *		bk keygen --out FILE: a new key pair.
 *
 * Run it on the restore host.  FILE (mode 0600) holds the private key and
 * stays there; FILE.pub goes to the database hosts.  The key id goes to
 * stdout alone, so scripts can capture it; guidance goes to stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "bk_keys.h"
#include "commands.h"

static const char *keygen_help =
	"Usage: bk keygen --out FILE\n\n"
	"Writes a new X25519 key pair: FILE holds the private key (mode 0600; "
	"keep it\nwhere restores run), FILE.pub the public key (give it to the "
	"database hosts\nas bk.key_file). Prints the key id. Never overwrites a "
	"file.\n\n"
	"  --out FILE        where to write the private key\n"
	"  --json            print {\"key_id\", \"private_key_file\", "
	"\"public_key_file\"}\n"
	"  --help            this help\n";

int
bk_cmd_keygen(int argc, char **argv)
{
	static const struct option options[] = {
		{"out", required_argument, NULL, 'o'},
		BK_COMMON_LONG_OPTIONS,
		{NULL, 0, NULL, 0}};
	BkCommonOptions common = {0};
	const char *out = NULL;
	char id_hex[BK_KEY_ID_HEX_LEN + 1];
	BkError err;
	BkKey key;
	struct stat st;
	size_t out_len;
	int status;

	bk_error_clear(&err);
	status = bk_command_parse(argc, argv, options, keygen_help, &common,
							  bk_option_store, &out);
	if (status != BK_COMMAND_RUN)
		return status;
	/* "" is no file: open would fail and say "try again" (exit 5). */
	if (out == NULL || out[0] == '\0')
		return bk_cli_usage_error(argv[0], "--out FILE is required");
	out_len = strlen(out);
	/*
	 * FILE.pub is the file database hosts get: a private key written under
	 * such a name is one copy away from a database host.
	 */
	if (out_len >= 4 && strcmp(out + out_len - 4, ".pub") == 0)
		return bk_cli_usage_error(
			argv[0],
			"--out \"%s\" ends in .pub, the name of a public key file: "
			"name the private key file (bk keygen writes FILE.pub beside "
			"it), for example --out %.*s",
			out, (int) (out_len - 4), out);
	/* Many tools read "-" as standard output: never a private key there. */
	if (strcmp(out, "-") == 0)
		return bk_cli_usage_error(argv[0],
								  "--out - : bk keygen writes the private key "
								  "to a file only, never to standard output; "
								  "name the file");
	if (out[out_len - 1] == '/' || (stat(out, &st) == 0 && S_ISDIR(st.st_mode)))
		return bk_cli_usage_error(argv[0],
								  "--out \"%s\" names a directory: name the "
								  "private key file in it, for example --out "
								  "%s%sbk.key",
								  out, out, out[out_len - 1] == '/' ? "" : "/");

	if (!bk_key_generate(&key, &err) || !bk_key_write_files(&key, out, &err))
	{
		bk_secure_wipe(&key, sizeof(key));
		/*
		 * This host's disk (full, read-only, a directory missing), not
		 * Kafka or a repository: exit 1, as for bk restore's target, not
		 * 5, which says "unreachable, try again".
		 */
		if (err.code == BK_ERR_IO)
		{
			err.code = BK_ERR_INTERNAL;
			bk_error_hint(&err, "No key file was left behind: make room in"
								" (or fix) the directory of --out, or choose"
								" another, and run bk keygen again.");
		}
		return bk_cli_report_error(argv[0], &err);
	}
	bk_key_id_hex(key.id, id_hex);
	bk_secure_wipe(&key, sizeof(key));

	if (common.json)
	{
		json_t *result =
			json_pack("{s:s, s:s, s:s+}", "key_id", id_hex, "private_key_file",
					  out, "public_key_file", out, ".pub");

		json_dumpf(result, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(result);
	}
	else
	{
		printf("%s\n", id_hex);
		fprintf(stderr,
				"bk keygen: wrote private key %s (keep it on the restore host, "
				"mode 0600)\n"
				"bk keygen: wrote public key %s.pub (set bk.key_file to it on "
				"database hosts)\n",
				out, out);
	}
	return BK_EXIT_OK;
}
