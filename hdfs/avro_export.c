/* avro_export: Avro object container files for analysts, written with avro-c's value API.
 * The schema JSON text is the one definition of a table: field kinds for row checking
 * are read back from the parsed schema, never kept in a second list. */
#include "hdfs/avro_export.h"

#include <avro.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Uncompressed bytes per file block. avro-c cannot split a row across blocks and fails
 * (leaving its writer corrupt) on a row larger than this, so rows are measured first.
 * The largest real row, an event with a 50-line cart, is a few KiB. */
#define AVRO_EXPORT_BLOCK_SIZE (64 * 1024)
#define AVRO_EXPORT_MAX_FIELDS 16

typedef enum { FIELD_STRING, FIELD_LONG } field_kind;

typedef struct {
    const char *name; /* owned by the schema */
    field_kind kind;
    int nullable; /* ["null", kind]: branch 0 is null, branch 1 the value */
} field_desc;

struct avro_export {
    avro_export_table table;
    char *path;
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t row; /* reused for every row; valid when has_row */
    int has_row;
    FILE *file; /* ours: avro-c ignores fflush/fclose errors, so we check them */
    avro_file_writer_t writer;
    field_desc fields[AVRO_EXPORT_MAX_FIELDS];
    size_t field_count;
    unsigned long long rows;
    int broken; /* an append failed: the file is incomplete */
};

static const struct {
    const char *name;
    const char *schema;
} tables[] = {
    [AVRO_EXPORT_INVENTORY] = {"inventory",
        "{\"type\": \"record\", \"name\": \"Inventory\", \"namespace\": \"lootlog\",\n"
        " \"doc\": \"One line per player and item type held. Schema version 1.\",\n"
        " \"fields\": [\n"
        "  {\"name\": \"user_id\", \"type\": \"string\", \"doc\": \"Player id.\"},\n"
        "  {\"name\": \"item_type\", \"type\": \"string\", \"doc\": \"Catalog item type.\"},\n"
        "  {\"name\": \"category\", \"type\": \"string\",\n"
        "   \"doc\": \"Catalog category of the item type.\"},\n"
        "  {\"name\": \"quantity\", \"type\": \"long\", \"doc\": \"Units held, at least 1.\"}\n"
        " ]}\n"},
    [AVRO_EXPORT_GUILD_MEMBERS] = {"guild_members",
        "{\"type\": \"record\", \"name\": \"GuildMember\", \"namespace\": \"lootlog\",\n"
        " \"doc\": \"One line per guild and member. Schema version 1.\",\n"
        " \"fields\": [\n"
        "  {\"name\": \"guild_id\", \"type\": \"string\", \"doc\": \"Guild id.\"},\n"
        "  {\"name\": \"user_id\", \"type\": \"string\", \"doc\": \"Player id of the member.\"},\n"
        "  {\"name\": \"joined_ts\", \"type\": \"string\",\n"
        "   \"doc\": \"Event time of the join, ISO 8601 UTC.\"}\n"
        " ]}\n"},
    [AVRO_EXPORT_USERS] = {"users",
        "{\"type\": \"record\", \"name\": \"User\", \"namespace\": \"lootlog\",\n"
        " \"doc\": \"One line per player with at least one applied event. Schema version 1.\",\n"
        " \"fields\": [\n"
        "  {\"name\": \"user_id\", \"type\": \"string\", \"doc\": \"Player id.\"},\n"
        "  {\"name\": \"version\", \"type\": \"long\",\n"
        "   \"doc\": \"Events applied to the player so far.\"},\n"
        "  {\"name\": \"guild_id\", \"type\": [\"null\", \"string\"], \"default\": null,\n"
        "   \"doc\": \"Guild the player belongs to, null when none.\"},\n"
        "  {\"name\": \"partition\", \"type\": \"long\",\n"
        "   \"doc\": \"Kafka partition of the player's events.\"},\n"
        "  {\"name\": \"created_ts\", \"type\": [\"null\", \"string\"], \"default\": null,\n"
        "   \"doc\": \"Event time of the first applied event, ISO 8601 UTC; null if unknown.\"},\n"
        "  {\"name\": \"updated_ts\", \"type\": \"string\",\n"
        "   \"doc\": \"Event time of the last applied event, ISO 8601 UTC.\"}\n"
        " ]}\n"},
    [AVRO_EXPORT_EVENTS] = {"events",
        "{\"type\": \"record\", \"name\": \"Event\", \"namespace\": \"lootlog\",\n"
        " \"doc\": \"Events folded since the previous snapshot. Schema version 1.\",\n"
        " \"fields\": [\n"
        "  {\"name\": \"partition\", \"type\": \"long\", \"doc\": \"Kafka partition.\"},\n"
        "  {\"name\": \"offset\", \"type\": \"long\", \"doc\": \"Kafka offset.\"},\n"
        "  {\"name\": \"event_id\", \"type\": \"string\",\n"
        "   \"doc\": \"Event id (the Idempotency-Key when one was given).\"},\n"
        "  {\"name\": \"event_type\", \"type\": \"string\", \"doc\": \"e.g. purchase_item.\"},\n"
        "  {\"name\": \"user_id\", \"type\": \"string\", \"doc\": \"Player id.\"},\n"
        "  {\"name\": \"ts\", \"type\": \"string\", \"doc\": \"Event time, ISO 8601 UTC.\"},\n"
        "  {\"name\": \"outcome\", \"type\": \"string\",\n"
        "   \"doc\": \"applied, rejected, duplicate, or pending (a join waiting for its "
        "guild's decision; the guild_join_decided event of the same player carries it: "
        "applied = granted, rejected = refused).\"},\n"
        "  {\"name\": \"reason\", \"type\": [\"null\", \"string\"], \"default\": null,\n"
        "   \"doc\": \"Rejection code when the outcome is rejected, else null.\"},\n"
        "  {\"name\": \"items\", \"type\": [\"null\", \"string\"], \"default\": null,\n"
        "   \"doc\": \"The event's items as JSON text, null for events without items.\"},\n"
        "  {\"name\": \"guild_id\", \"type\": [\"null\", \"string\"], \"default\": null,\n"
        "   \"doc\": \"Guild of a guild event (join_guild, leave_guild and the guild "
        "exchange's guild_join_requested, guild_join_decided, guild_leave_requested), else "
        "null.\"}\n"
        " ]}\n"},
};

#define TABLE_COUNT (sizeof tables / sizeof tables[0])

/* Fills errstr like snprintf and drops the trailing newline some avro-c messages have. */
__attribute__((format(printf, 3, 4))) static void set_error(char *errstr, size_t errstr_size,
                                                            const char *fmt, ...) {
    if (!errstr || errstr_size == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
    size_t len = strlen(errstr);
    while (len > 0 && (errstr[len - 1] == '\n' || errstr[len - 1] == ' ')) errstr[--len] = '\0';
}

const char *avro_export_schema(avro_export_table table) {
    return (unsigned)table < TABLE_COUNT ? tables[table].schema : NULL;
}

const char *avro_export_table_name(avro_export_table table) {
    return (unsigned)table < TABLE_COUNT ? tables[table].name : NULL;
}

/* Reads the kind of every field from the parsed record schema. Only the shapes the
 * tables use are accepted: string, long, and ["null", string|long]. */
static int describe_fields(avro_export *e, char *errstr, size_t errstr_size) {
    const char *table = tables[e->table].name;
    if (!is_avro_record(e->schema)) {
        set_error(errstr, errstr_size, "avro_export: the schema of %s is not a record", table);
        return -1;
    }
    e->field_count = avro_schema_record_size(e->schema);
    if (e->field_count == 0 || e->field_count > AVRO_EXPORT_MAX_FIELDS) {
        set_error(errstr, errstr_size, "avro_export: the schema of %s has %zu fields (1..%d)",
                  table, e->field_count, AVRO_EXPORT_MAX_FIELDS);
        return -1;
    }
    for (size_t i = 0; i < e->field_count; i++) {
        field_desc *f = &e->fields[i];
        avro_schema_t type = avro_schema_record_field_get_by_index(e->schema, (int)i);
        f->name = avro_schema_record_field_name(e->schema, (int)i);
        if (is_avro_union(type) && avro_schema_union_size(type) == 2 &&
            is_avro_null(avro_schema_union_branch(type, 0))) {
            f->nullable = 1;
            type = avro_schema_union_branch(type, 1);
        }
        if (is_avro_string(type)) {
            f->kind = FIELD_STRING;
        } else if (is_avro_int64(type)) {
            f->kind = FIELD_LONG;
        } else {
            set_error(errstr, errstr_size,
                      "avro_export: field '%s' of %s has a type this module does not write",
                      f->name ? f->name : "?", table);
            return -1;
        }
    }
    return 0;
}

/* Frees everything e holds. Used on the failure path of open and at the end of close,
 * by which time close has already finished the writer and the file. */
static void release(avro_export *e) {
    if (!e) return;
    if (e->writer) avro_file_writer_close(e->writer); /* best effort: the file is given up */
    if (e->file) fclose(e->file);
    /* The value holds its own reference to the class; drop it before ours. */
    if (e->has_row) avro_value_decref(&e->row);
    if (e->iface) avro_value_iface_decref(e->iface);
    if (e->schema) avro_schema_decref(e->schema);
    free(e->path);
    free(e);
}

avro_export *avro_export_open(const char *path, avro_export_table table, char *errstr,
                              size_t errstr_size) {
    avro_export *e = NULL;
    const char *schema_json = avro_export_schema(table);
    if (!path || !schema_json) {
        set_error(errstr, errstr_size, "avro_export_open: %s",
                  path ? "unknown table" : "no path given");
        return NULL;
    }
    e = calloc(1, sizeof *e);
    if (!e || !(e->path = strdup(path))) {
        set_error(errstr, errstr_size, "avro_export_open: out of memory");
        goto fail;
    }
    e->table = table;
    if (avro_schema_from_json_length(schema_json, strlen(schema_json), &e->schema) != 0) {
        e->schema = NULL;
        set_error(errstr, errstr_size, "avro_export: the schema of %s does not parse: %s",
                  tables[table].name, avro_strerror());
        goto fail;
    }
    if (describe_fields(e, errstr, errstr_size) != 0) goto fail;
    e->iface = avro_generic_class_from_schema(e->schema);
    if (!e->iface) {
        set_error(errstr, errstr_size, "avro_export: no value class for %s: %s",
                  tables[table].name, avro_strerror());
        goto fail;
    }
    if (avro_generic_value_new(e->iface, &e->row) != 0) {
        set_error(errstr, errstr_size, "avro_export: cannot allocate a row of %s: %s",
                  tables[table].name, avro_strerror());
        goto fail;
    }
    e->has_row = 1;

    /* We open the file ourselves: avro-c's own open falls back from "wbx" to "wb", would
     * leak the descriptor if the header write failed, and never checks fflush/fclose. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        set_error(errstr, errstr_size, "avro_export: cannot create %s: %s", path,
                  strerror(errno));
        goto fail;
    }
    e->file = fdopen(fd, "wb");
    if (!e->file) {
        set_error(errstr, errstr_size, "avro_export: cannot open a stream on %s: %s", path,
                  strerror(errno));
        close(fd);
        goto fail;
    }
    if (avro_file_writer_create_with_codec_fp(e->file, e->path, 0, e->schema, &e->writer,
                                              "deflate", AVRO_EXPORT_BLOCK_SIZE) != 0) {
        e->writer = NULL;
        set_error(errstr, errstr_size, "avro_export: cannot start %s: %s", path,
                  avro_strerror());
        goto fail;
    }
    return e;

fail:
    release(e);
    return NULL;
}

/* Length of a NUL-terminated string if it is well-formed UTF-8 (no overlong forms, no
 * surrogates, nothing past U+10FFFF): Avro strings must be, and Python and Java readers
 * refuse a file that is not. Returns -1 and the offset of the first bad byte otherwise. */
static int utf8_length(const char *text, size_t *length, size_t *bad_at) {
    const unsigned char *p = (const unsigned char *)text;
    size_t i = 0;
    while (p[i]) {
        unsigned char lead = p[i];
        size_t more;
        unsigned long code;
        if (lead < 0x80) {
            i++;
            continue;
        } else if (lead >= 0xC2 && lead <= 0xDF) {
            more = 1, code = lead & 0x1F;
        } else if (lead >= 0xE0 && lead <= 0xEF) {
            more = 2, code = lead & 0x0F;
        } else if (lead >= 0xF0 && lead <= 0xF4) {
            more = 3, code = lead & 0x07;
        } else {
            goto bad;
        }
        /* A NUL ends the loop here too: it is not a continuation byte. */
        for (size_t k = 1; k <= more; k++) {
            if ((p[i + k] & 0xC0) != 0x80) goto bad;
            code = (code << 6) | (p[i + k] & 0x3F);
        }
        if ((more == 2 && code < 0x800) || (more == 3 && (code < 0x10000 || code > 0x10FFFF)) ||
            (code >= 0xD800 && code <= 0xDFFF))
            goto bad;
        i += more + 1;
    }
    *length = i;
    return 0;
bad:
    *bad_at = i;
    return -1;
}

static int value_is_null(const field_desc *f, const avro_export_value *v) {
    return v->is_null || (f->nullable && f->kind == FIELD_STRING && v->s == NULL);
}

/* Checks one value against its field; fills *length for strings. */
static int check_value(const avro_export *e, size_t index, const avro_export_value *v,
                       size_t *length, char *errstr, size_t errstr_size) {
    const field_desc *f = &e->fields[index];
    const char *table = tables[e->table].name;
    if (value_is_null(f, v)) {
        if (f->nullable) return 0;
        set_error(errstr, errstr_size, "avro_export: field %zu '%s' of %s cannot be null",
                  index, f->name, table);
        return -1;
    }
    if (f->kind == FIELD_LONG) {
        if (!v->s) return 0;
        set_error(errstr, errstr_size,
                  "avro_export: field %zu '%s' of %s is a long, but the value is the string "
                  "\"%.40s\"",
                  index, f->name, table, v->s);
        return -1;
    }
    if (!v->s) {
        set_error(errstr, errstr_size,
                  "avro_export: field %zu '%s' of %s is a string, but the value has no string "
                  "(s is NULL)",
                  index, f->name, table);
        return -1;
    }
    size_t bad_at;
    if (utf8_length(v->s, length, &bad_at) != 0) {
        set_error(errstr, errstr_size,
                  "avro_export: field %zu '%s' of %s is not valid UTF-8 (byte %zu)", index,
                  f->name, table, bad_at);
        return -1;
    }
    return 0;
}

/* Puts one checked value into its field of the reusable row value. */
static int set_value(avro_export *e, size_t index, const avro_export_value *v, size_t length) {
    const field_desc *f = &e->fields[index];
    avro_value_t field, branch;
    avro_value_t *target = &field;
    /* field and branch are borrowed views into e->row: never decref them. */
    if (avro_value_get_by_index(&e->row, index, &field, NULL) != 0) return -1;
    if (f->nullable) {
        int is_null = value_is_null(f, v);
        if (avro_value_set_branch(&field, is_null ? 0 : 1, &branch) != 0) return -1;
        if (is_null) return avro_value_set_null(&branch) != 0 ? -1 : 0;
        target = &branch;
    }
    if (f->kind == FIELD_LONG) return avro_value_set_long(target, (int64_t)v->i) != 0 ? -1 : 0;
    /* The _len setter copies, and its size counts the terminating NUL. */
    return avro_value_set_string_len(target, v->s, length + 1) != 0 ? -1 : 0;
}

/* Fills errstr after a failed avro-c write. A failed fwrite returns EIO without setting
 * avro-c's message, so avro_strerror() then shows a stale one: prefer the stream's errno. */
static void set_write_error(const avro_export *e, const char *what, char *errstr,
                            size_t errstr_size) {
    int saved_errno = errno;
    if (e->file && ferror(e->file))
        set_error(errstr, errstr_size, "avro_export: %s %s failed: %s", what, e->path,
                  strerror(saved_errno ? saved_errno : EIO));
    else
        set_error(errstr, errstr_size, "avro_export: %s %s failed: %s", what, e->path,
                  avro_strerror());
}

int avro_export_row(avro_export *e, const avro_export_value *values, size_t count,
                    char *errstr, size_t errstr_size) {
    size_t lengths[AVRO_EXPORT_MAX_FIELDS] = {0};
    if (!e) {
        set_error(errstr, errstr_size, "avro_export_row: no handle");
        return -1;
    }
    const char *table = tables[e->table].name;
    if (e->broken) {
        set_error(errstr, errstr_size,
                  "avro_export: %s is incomplete after an earlier write failure", e->path);
        return -1;
    }
    if (count != e->field_count) {
        set_error(errstr, errstr_size, "avro_export: a row of %s has %zu fields, not %zu",
                  table, e->field_count, count);
        return -1;
    }
    if (!values) {
        set_error(errstr, errstr_size, "avro_export_row: no values given");
        return -1;
    }
    /* Check every value before touching the row, so a refused row changes nothing. */
    for (size_t i = 0; i < count; i++) {
        if (check_value(e, i, &values[i], &lengths[i], errstr, errstr_size) != 0) return -1;
    }
    for (size_t i = 0; i < count; i++) {
        if (set_value(e, i, &values[i], lengths[i]) != 0) {
            set_error(errstr, errstr_size, "avro_export: cannot set field '%s' of %s: %s",
                      e->fields[i].name, table, avro_strerror());
            return -1;
        }
    }
    /* Each field encodes to at most a union index, a 10-byte varint and its bytes; only a
     * row that might not fit is measured exactly (sizing walks the whole value). */
    size_t bound = 0, encoded_size = 0;
    for (size_t i = 0; i < count; i++) bound += 11 + lengths[i];
    if (bound > AVRO_EXPORT_BLOCK_SIZE && avro_value_sizeof(&e->row, &encoded_size) != 0) {
        set_error(errstr, errstr_size, "avro_export: cannot size a row of %s: %s", table,
                  avro_strerror());
        return -1;
    }
    if (encoded_size > AVRO_EXPORT_BLOCK_SIZE) {
        set_error(errstr, errstr_size,
                  "avro_export: a row of %s encodes to %zu bytes, more than the %d-byte file "
                  "block",
                  table, encoded_size, AVRO_EXPORT_BLOCK_SIZE);
        return -1;
    }
    if (avro_file_writer_append_value(e->writer, &e->row) != 0) {
        e->broken = 1;
        set_write_error(e, "writing", errstr, errstr_size);
        return -1;
    }
    e->rows++;
    return 0;
}

int avro_export_close(avro_export *e, unsigned long long *rows, char *errstr,
                      size_t errstr_size) {
    if (rows) *rows = e ? e->rows : 0;
    if (!e) return 0;
    int failed = 0;
    if (e->broken) {
        failed = 1;
        set_error(errstr, errstr_size,
                  "avro_export: %s is incomplete after an earlier write failure", e->path);
    }
    if (e->writer && avro_file_writer_close(e->writer) != 0) {
        if (!failed) set_write_error(e, "finishing", errstr, errstr_size);
        failed = 1;
        /* avro-c frees nothing when its last flush fails. With the stream pointed at
         * /dev/null a second close succeeds and frees the writer; the file is reported
         * incomplete either way. If freopen fails the stream is gone, and so is the
         * writer's memory. */
        if (freopen("/dev/null", "wb", e->file)) {
            avro_file_writer_close(e->writer);
        } else {
            e->file = NULL;
        }
    }
    e->writer = NULL;
    if (e->file) {
        /* avro-c ignores the result of its fflush, so a full disk shows up only here. */
        int stream_failed = fflush(e->file) != 0 || ferror(e->file);
        int saved_errno = errno;
        int close_failed = fclose(e->file) != 0;
        if (close_failed) saved_errno = errno;
        e->file = NULL;
        if ((stream_failed || close_failed) && !failed) {
            set_error(errstr, errstr_size, "avro_export: writing %s failed: %s", e->path,
                      strerror(saved_errno ? saved_errno : EIO));
            failed = 1;
        }
    }
    release(e);
    return failed ? -1 : 0;
}
