/* avro_export: writes the analyst tables (inventory, guild members, users, event extracts)
 * as Avro object container files, deflate codec, with avro-c. One handle per file: open,
 * a row at a time in schema field order, close. Imports nothing else of ours. */
#ifndef LOOTLOG_AVRO_EXPORT_H
#define LOOTLOG_AVRO_EXPORT_H

#include <stddef.h>

/* Version of the four schemas below, for the snapshot manifest. Bump it when a field
 * is added, removed, renamed or retyped. */
#define AVRO_EXPORT_SCHEMA_VERSION 1

typedef struct avro_export avro_export;

typedef enum {
    AVRO_EXPORT_INVENTORY,     /* user_id, item_type, category, quantity */
    AVRO_EXPORT_GUILD_MEMBERS, /* guild_id, user_id, joined_ts */
    AVRO_EXPORT_USERS,         /* user_id, version, guild_id?, partition, created_ts?, updated_ts */
    AVRO_EXPORT_EVENTS,        /* partition, offset, event_id, event_type, user_id, ts,
                                  outcome, reason?, items?, guild_id?   (? = nullable) */
} avro_export_table;

/* One field of a row. Which member counts:
 *   is_null != 0      -> null (only for nullable fields; s and i are ignored)
 *   else s != NULL    -> a string (UTF-8, NUL-terminated; copied, so it may be freed
 *                        after avro_export_row returns)
 *   else              -> the 64-bit integer i
 * For a nullable string field, s == NULL also means null, so a column read straight from
 * SQLite (NULL for SQL NULL) can be passed as is. */
typedef struct {
    const char *s;
    long long i;
    int is_null;
} avro_export_value;

/* The schema of a table as Avro JSON text, with field docs: a static string, for docs/
 * and the manifest. NULL for a value outside the enum. The file header carries the same
 * record re-serialised by avro-c, which drops "doc" and "default" attributes. */
const char *avro_export_schema(avro_export_table table);

/* The table's short name ("inventory", "guild_members", "users", "events"), a static
 * string used for file names; NULL for a value outside the enum. */
const char *avro_export_table_name(avro_export_table table);

/* Creates path, or truncates it if it exists, and writes the container header (schema,
 * codec "deflate", sync marker). Returns a handle that avro_export_close frees, or NULL
 * with errstr filled. */
avro_export *avro_export_open(const char *path, avro_export_table table, char *errstr,
                              size_t errstr_size);

/* Appends one row: count values in schema field order. Returns 0, or -1 with errstr
 * filled. A row refused for its shape (wrong count, a string where a long belongs or the
 * reverse, null in a non-nullable field, invalid UTF-8, larger than a file block) writes
 * nothing and the handle stays usable. An I/O or avro-c failure leaves the file
 * incomplete: every later call fails and close reports it. */
int avro_export_row(avro_export *e, const avro_export_value *values, size_t count,
                    char *errstr, size_t errstr_size);

/* Writes the last block, flushes and closes the file, and frees e (always, also on
 * failure; NULL is a no-op that returns 0). Writes the number of rows appended to *rows
 * when rows is not NULL. Returns 0 when the whole file reached the kernel, else -1 with
 * errstr filled: the file is then incomplete and the caller should remove it. */
int avro_export_close(avro_export *e, unsigned long long *rows, char *errstr,
                      size_t errstr_size);

#endif
