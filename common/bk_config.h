/*
 * bk_config.h
 *		Parsing of bk's configuration text: "key = value" files for the CLI
 *		and the shipper, librdkafka "key=value;key=value" property lists for
 *		every part, and the sizes and durations inside them.
 *
 * The parsers only split and validate syntax; the caller's setter decides
 * what a key means and rejects unknown ones, so every program reports an
 * unknown setting with the file and line it came from.
 */
#ifndef BK_CONFIG_H
#define BK_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "bk_error.h"

/* Called once per setting; return false (with err set) to reject it. */
typedef bool (*BkConfigSetter)(void *arg, const char *key, const char *value,
							   BkError *err);

/*
 * A file of "key = value" lines.  '#' starts a comment line, and a comment
 * after a value when it follows white space ("a = b  # why"; "a = b#c" is
 * "b#c").  Values may be double-quoted to keep leading or trailing spaces,
 * or " #"; a comment may follow the closing quote (the first quote that
 * only white space or a comment follows).  Errors name the file
 * and line.
 */
extern bool bk_config_parse_file(const char *path, BkConfigSetter setter,
								 void *arg, BkError *err);

/*
 * The same for text already read from path (len bytes, NUL-terminated),
 * which is cut into lines in place: a file read with checks of its own,
 * such as a secret file (bk_secret_file.h).  path only names it in errors.
 */
extern bool bk_config_parse_text(const char *path, char *text, size_t len,
								 BkConfigSetter setter, void *arg,
								 BkError *err);

/*
 * librdkafka properties as "key=value;key=value".  A literal ';' inside a
 * value is written "\;" and a literal backslash "\\".  Empty items are
 * ignored, so a trailing ';' is fine.
 */
extern bool bk_config_parse_properties(const char *text, BkConfigSetter setter,
									   void *arg, BkError *err);

/*
 * text written into out for such a list, ";" and "\\" escaped, so that
 * bk_config_parse_properties reads it back literally.  out must have room
 * for 2 * strlen(text) + 1 bytes; it is NUL-terminated.  Returns the bytes
 * written, the NUL not counted.
 */
extern size_t bk_config_escape_property(const char *text, char *out);

/* "1048576", "64kB", "1MB", "1MiB", "2GB": bytes (binary multiples). */
extern bool bk_parse_size(const char *text, uint64_t *bytes);

/* "1500", "1500ms", "30s", "5min", "2h", "7d": milliseconds (bare = ms). */
extern bool bk_parse_duration_ms(const char *text, int64_t *ms);

/* "on/off", "true/false", "yes/no", "1/0". */
extern bool bk_parse_bool(const char *text, bool *value);

#endif /* BK_CONFIG_H */
