/*
 * bk_audit.h
 *		Audit events (docs/audit-events.md): one JSON object per event, keys
 *		sorted, built the same way by every part that emits them (the
 *		shipper, the PostgreSQL extension's snapshots).
 *
 * Fields may be added in any order; bk_audit_finish adds "time" and writes
 * the keys sorted, nested metadata included.  Strings are escaped as JSON
 * requires; bytes that are not UTF-8 (a label from a database whose
 * encoding is not UTF-8) become U+FFFD, so an event is always valid JSON.
 * Out of memory is remembered and reported by bk_audit_finish, so callers
 * check once: every function accepts the NULL bk_audit_begin returns when
 * memory ran out, and bk_audit_finish then returns NULL.
 */
#ifndef BK_AUDIT_H
#define BK_AUDIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct BkAuditEvent BkAuditEvent;

/* A new event {"event": event, "source": source}; NULL if out of memory. */
extern BkAuditEvent *bk_audit_begin(const char *event, const char *source);

/* Add a field (a key given twice keeps the last value). */
extern void bk_audit_string(BkAuditEvent *event, const char *key,
							const char *value);
extern void bk_audit_int(BkAuditEvent *event, const char *key, int64_t value);
extern void bk_audit_hex(BkAuditEvent *event, const char *key,
						 const uint8_t *data, size_t len);

/* Metadata lines "k=v" (docs/frame-format.md) as a nested object. */
extern void bk_audit_meta(BkAuditEvent *event, const char *key,
						  const char *meta, size_t len);

/*
 * Add "time" (wall_ms, ISO 8601 UTC with milliseconds) and return the
 * event's JSON text (malloc'd, NUL-terminated, *len without the NUL); NULL
 * if memory ran out.  The event is freed either way.
 */
extern char *bk_audit_finish(BkAuditEvent *event, int64_t wall_ms, size_t *len);

/* Free an event that will not be finished. */
extern void bk_audit_free(BkAuditEvent *event);

#endif /* BK_AUDIT_H */
