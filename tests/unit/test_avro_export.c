/* Unit tests of hdfs/avro_export: one file per table (nulls, non-ASCII UTF-8, 64-bit
 * extremes, rows across many blocks) read back with avro-c's own file reader, and every
 * row the writer must refuse. `--keep DIR` writes the files into DIR and leaves them there
 * for tests/test_avro_unit.py, which decodes them with fastavro; keep the data in step. */
#include "check.h"
#include "hdfs/avro_export.h"

#include <avro.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FIELDS 16
#define BULK_ROWS 20000 /* inventory rows on top of the fixed ones: ~10 deflate blocks */
/* Items text that makes an events row encode to exactly the 64 KiB block: 70 bytes of
 * other fields and length prefixes, plus this. One byte more must be refused. */
#define BIG_ITEMS_LEN 65466
#define TEXT_MAX (BIG_ITEMS_LEN + 2)

typedef struct {
    const char *file;
    avro_export_table table;
    size_t field_count;
    const avro_export_value *rows; /* fixed rows, row after row */
    size_t row_count;
    size_t bulk_count; /* generated rows after the fixed ones (see bulk_row) */
} test_file;

/* NULL strings with is_null == 0 in nullable string fields are nulls too (the SQLite
 * convention the writer accepts). */
static const avro_export_value inventory_rows[] = {
    {"alice", 0, 0}, {"sword", 0, 0}, {"weapon", 0, 0}, {NULL, 1, 0},
    {"bøb", 0, 0}, {"potion", 0, 0}, {"épée ⚔ 剣", 0, 0}, {NULL, LLONG_MAX, 0},
    {"😀-player", 0, 0}, {"gem", 0, 0}, {"trésor", 0, 0}, {NULL, LLONG_MIN, 0},
    {"", 0, 0}, {"arrow", 0, 0}, {"ammo", 0, 0}, {NULL, -1, 0},
};

static const avro_export_value guild_member_rows[] = {
    {"knights", 0, 0}, {"alice", 0, 0}, {"2026-11-29T08:14:00.123Z", 0, 0},
    {"Ritter der Tafelrunde ä", 0, 0}, {"bøb", 0, 0}, {"2026-11-30T00:00:00.000Z", 0, 0},
    {"ギルド", 0, 0}, {"😀-player", 0, 0}, {"2026-12-01T23:59:59.999Z", 0, 0},
};

static const avro_export_value user_rows[] = {
    /* user_id, version, guild_id?, partition, created_ts?, updated_ts */
    {"alice", 0, 0}, {NULL, 3, 0}, {"knights", 0, 0}, {NULL, 0, 0},
    {"2026-11-29T08:00:00.000Z", 0, 0}, {"2026-11-29T08:14:00.123Z", 0, 0},
    {"bøb", 0, 0}, {NULL, 1, 0}, {NULL, 0, 1}, {NULL, 5, 0},
    {"ignored when is_null", 0, 1}, {"2026-11-30T00:00:00.000Z", 0, 0},
    {"😀-player", 0, 0}, {NULL, LLONG_MAX, 0}, {NULL, 0, 0}, {NULL, 2, 0},
    {NULL, 0, 0}, {"2026-12-01T23:59:59.999Z", 0, 0},
};

static const avro_export_value event_rows[] = {
    /* partition, offset, event_id, event_type, user_id, ts, outcome, reason?, items?,
     * guild_id? */
    {NULL, 0, 0}, {NULL, 0, 0}, {"evt-1", 0, 0}, {"purchase_item", 0, 0}, {"alice", 0, 0},
    {"2026-11-29T08:14:00.123Z", 0, 0}, {"applied", 0, 0}, {NULL, 0, 1},
    {"[{\"item_type\":\"sword\",\"quantity\":1,\"unit_price\":100}]", 0, 0}, {NULL, 0, 1},

    {NULL, 5, 0}, {NULL, 9007199254740993LL, 0}, {"évènement-2", 0, 0},
    {"join_guild", 0, 0}, {"bøb", 0, 0}, {"2026-11-30T00:00:00.000Z", 0, 0},
    {"rejected", 0, 0}, {"already_in_guild", 0, 0}, {NULL, 0, 0}, {"ギルド", 0, 0},

    {NULL, 2, 0}, {NULL, 77, 0}, {"evt-3", 0, 0}, {"consume_item", 0, 0},
    {"😀-player", 0, 0}, {"2026-12-01T23:59:59.999Z", 0, 0}, {"duplicate", 0, 0},
    {NULL, 0, 0}, {"[{\"item_type\":\"épée\",\"quantity\":2}]", 0, 0}, {NULL, 0, 0},
};

static const test_file test_files[] = {
    {"inventory.avro", AVRO_EXPORT_INVENTORY, 4, inventory_rows,
     sizeof inventory_rows / sizeof inventory_rows[0] / 4, BULK_ROWS},
    {"guild_members.avro", AVRO_EXPORT_GUILD_MEMBERS, 3, guild_member_rows,
     sizeof guild_member_rows / sizeof guild_member_rows[0] / 3, 0},
    {"users.avro", AVRO_EXPORT_USERS, 6, user_rows, sizeof user_rows / sizeof user_rows[0] / 6,
     0},
    {"events.avro", AVRO_EXPORT_EVENTS, 10, event_rows,
     sizeof event_rows / sizeof event_rows[0] / 10, 1},
    {"empty.avro", AVRO_EXPORT_GUILD_MEMBERS, 3, NULL, 0, 0},
};

#define TEST_FILE_COUNT (sizeof test_files / sizeof test_files[0])

static const char *const bulk_item_types[] = {"sword", "axe", "bow", "shield"};

/* Generated row n of a file (after its fixed rows). Strings go into text[i]. */
static void bulk_row(const test_file *tf, size_t n, avro_export_value *row,
                     char text[][TEXT_MAX]) {
    memset(row, 0, sizeof *row * tf->field_count);
    if (tf->table == AVRO_EXPORT_INVENTORY) {
        snprintf(text[0], 32, "user-%05zu", n);
        row[0].s = text[0];
        row[1].s = bulk_item_types[n % 4];
        snprintf(text[2], 32, "cat-%zu", n % 7);
        row[2].s = text[2];
        row[3].i = (long long)n * 1000003LL;
    } else if (tf->table == AVRO_EXPORT_EVENTS) {
        /* A row of exactly one block: it must get a block of its own. */
        memset(text[8], 'x', BIG_ITEMS_LEN);
        text[8][BIG_ITEMS_LEN] = '\0';
        row[0].i = 1;
        row[1].i = 1000;
        row[2].s = "evt-big";
        row[3].s = "purchase_item";
        row[4].s = "alice";
        row[5].s = "2026-11-29T08:14:00.123Z";
        row[6].s = "applied";
        row[7].is_null = 1;
        row[8].s = text[8];
        row[9].is_null = 1;
    }
}

/* Row r of a file: a fixed one, else a generated one. */
static const avro_export_value *file_row(const test_file *tf, size_t r,
                                         avro_export_value *scratch,
                                         char text[][TEXT_MAX]) {
    if (r < tf->row_count) return &tf->rows[r * tf->field_count];
    bulk_row(tf, r - tf->row_count, scratch, text);
    return scratch;
}

static void join_path(char *out, size_t out_size, const char *dir, const char *file) {
    snprintf(out, out_size, "%s/%s", dir, file);
}

/* Every kind of row the writer must refuse, tried on an open inventory file. None may
 * change what is written: the reader later sees only the accepted rows. */
static void check_refusals(avro_export *e) {
    char err[512];
    avro_export_value ok[5] = {{"alice", 0, 0}, {"sword", 0, 0}, {"weapon", 0, 0}, {NULL, 1, 0}};
    avro_export_value row[5];

    err[0] = '\0';
    CHECK(avro_export_row(e, ok, 3, err, sizeof err) == -1);
    CHECK(strstr(err, "4 fields, not 3") != NULL);
    CHECK(avro_export_row(e, ok, 5, err, sizeof err) == -1);
    CHECK(strstr(err, "4 fields, not 5") != NULL);
    CHECK(avro_export_row(e, NULL, 4, err, sizeof err) == -1);

    memcpy(row, ok, sizeof ok);
    row[3].s = "12"; /* a string in the long field */
    CHECK(avro_export_row(e, row, 4, err, sizeof err) == -1);
    CHECK(strstr(err, "'quantity'") != NULL && strstr(err, "is a long") != NULL);

    memcpy(row, ok, sizeof ok);
    row[1].s = NULL; /* an integer in a string field */
    CHECK(avro_export_row(e, row, 4, err, sizeof err) == -1);
    CHECK(strstr(err, "'item_type'") != NULL && strstr(err, "is a string") != NULL);

    memcpy(row, ok, sizeof ok);
    row[0].is_null = 1; /* null in a non-nullable string */
    CHECK(avro_export_row(e, row, 4, err, sizeof err) == -1);
    CHECK(strstr(err, "'user_id'") != NULL && strstr(err, "cannot be null") != NULL);

    memcpy(row, ok, sizeof ok);
    row[3].is_null = 1; /* null in a non-nullable long */
    CHECK(avro_export_row(e, row, 4, err, sizeof err) == -1);
    CHECK(strstr(err, "'quantity'") != NULL && strstr(err, "cannot be null") != NULL);

    /* Not UTF-8: a stray continuation, a truncated sequence, an overlong '/', a
     * surrogate, past U+10FFFF. */
    static const char *const bad_utf8[] = {"a\x80", "caf\xC3", "\xC0\xAF", "\xED\xA0\x80",
                                           "\xF4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        memcpy(row, ok, sizeof ok);
        row[2].s = bad_utf8[i];
        CHECK(avro_export_row(e, row, 4, err, sizeof err) == -1);
        CHECK(strstr(err, "'category'") != NULL && strstr(err, "UTF-8") != NULL);
    }

    /* Larger than a block: refused before avro-c sees it (it would corrupt its writer). */
    char *huge = malloc(100001);
    CHECK(huge != NULL);
    if (huge) {
        memset(huge, 'h', 100000);
        huge[100000] = '\0';
        memcpy(row, ok, sizeof ok);
        row[2].s = huge;
        CHECK(avro_export_row(e, row, 4, err, sizeof err) == -1);
        CHECK(strstr(err, "block") != NULL);
        free(huge);
    }
}

static int write_file(const char *dir, const test_file *tf, avro_export_value *scratch,
                      char text[][TEXT_MAX]) {
    char path[4096], err[512];
    join_path(path, sizeof path, dir, tf->file);
    avro_export *e = avro_export_open(path, tf->table, err, sizeof err);
    CHECK(e != NULL);
    if (!e) {
        fprintf(stderr, "open %s: %s\n", path, err);
        return -1;
    }
    size_t total = tf->row_count + tf->bulk_count;
    for (size_t r = 0; r < total; r++) {
        /* Refusals halfway through, so accepted rows sit on both sides of them. */
        if (tf->table == AVRO_EXPORT_INVENTORY && r == 2) check_refusals(e);
        if (tf->table == AVRO_EXPORT_EVENTS && r == tf->row_count) {
            /* One byte over the block is refused (the row itself is written below). */
            const avro_export_value *big = file_row(tf, r, scratch, text);
            text[8][BIG_ITEMS_LEN] = 'x';
            CHECK(avro_export_row(e, big, tf->field_count, err, sizeof err) == -1);
            CHECK(strstr(err, "65537 bytes") != NULL);
            text[8][BIG_ITEMS_LEN] = '\0';
        }
        int rc = avro_export_row(e, file_row(tf, r, scratch, text), tf->field_count, err,
                                 sizeof err);
        CHECK(rc == 0);
        if (rc != 0) fprintf(stderr, "%s row %zu: %s\n", tf->file, r, err);
    }
    unsigned long long rows = 0;
    CHECK(avro_export_close(e, &rows, err, sizeof err) == 0);
    CHECK(rows == total);
    return 0;
}

/* Compares one field read back by avro-c with the value written. */
static void check_field(avro_value_t *record, size_t index, const avro_export_value *want) {
    avro_value_t field, branch;
    avro_value_t *value = &field;
    CHECK(avro_value_get_by_index(record, index, &field, NULL) == 0);
    int is_union = avro_value_get_type(&field) == AVRO_UNION;
    int want_null = want->is_null || (is_union && !want->s);
    if (is_union) {
        int discriminant = -1;
        CHECK(avro_value_get_discriminant(&field, &discriminant) == 0);
        CHECK(avro_value_get_current_branch(&field, &branch) == 0);
        CHECK(discriminant == (want_null ? 0 : 1));
        value = &branch;
    }
    avro_type_t type = avro_value_get_type(value);
    if (want_null) {
        CHECK(type == AVRO_NULL);
    } else if (want->s) {
        const char *got = NULL;
        size_t size = 0; /* counts the terminating NUL */
        CHECK(type == AVRO_STRING);
        CHECK(avro_value_get_string(value, &got, &size) == 0);
        CHECK_STR(got, want->s);
        CHECK(size == strlen(want->s) + 1);
    } else {
        int64_t got = 0;
        CHECK(type == AVRO_INT64);
        CHECK(avro_value_get_long(value, &got) == 0);
        CHECK(got == want->i);
    }
}

/* Reads a file back with avro-c's reader: schema, codec-decoded rows, row count. */
static void read_file(const char *dir, const test_file *tf, avro_export_value *scratch,
                      char text[][TEXT_MAX]) {
    char path[4096];
    join_path(path, sizeof path, dir, tf->file);
    avro_file_reader_t reader = NULL;
    int rc = avro_file_reader(path, &reader);
    CHECK(rc == 0);
    if (rc != 0) {
        fprintf(stderr, "reader %s: %s (%s)\n", path, strerror(rc), avro_strerror());
        return;
    }
    /* In avro-c 1.11 this returns a new reference. */
    avro_schema_t file_schema = avro_file_reader_get_writer_schema(reader);
    avro_schema_t want_schema = NULL;
    const char *json = avro_export_schema(tf->table);
    CHECK(avro_schema_from_json_length(json, strlen(json), &want_schema) == 0);
    CHECK(avro_schema_equal(file_schema, want_schema));
    CHECK(avro_schema_record_size(file_schema) == tf->field_count);

    avro_value_iface_t *iface = avro_generic_class_from_schema(file_schema);
    avro_value_t record;
    CHECK(iface != NULL && avro_generic_value_new(iface, &record) == 0);
    size_t total = tf->row_count + tf->bulk_count, r = 0;
    while (avro_file_reader_read_value(reader, &record) == 0) {
        if (r < total) {
            const avro_export_value *want = file_row(tf, r, scratch, text);
            int failures_before = check_failures;
            for (size_t i = 0; i < tf->field_count; i++) check_field(&record, i, &want[i]);
            if (check_failures > failures_before) fprintf(stderr, "(%s row %zu)\n", tf->file, r);
        }
        r++;
    }
    CHECK(r == total);
    if (r != total) fprintf(stderr, "%s: read %zu rows, wrote %zu\n", tf->file, r, total);
    avro_value_decref(&record);
    avro_value_iface_decref(iface);
    avro_schema_decref(want_schema);
    avro_schema_decref(file_schema);
    avro_file_reader_close(reader);
}

/* The codec named in the header, read as raw bytes: avro-c has no getter for it. */
static void check_codec_is_deflate(const char *dir, const char *file) {
    char path[4096], header[512];
    join_path(path, sizeof path, dir, file);
    FILE *fp = fopen(path, "rb");
    CHECK(fp != NULL);
    if (!fp) return;
    size_t n = fread(header, 1, sizeof header, fp);
    fclose(fp);
    CHECK(n > 4 && memcmp(header, "Obj\x01", 4) == 0);
    static const char want[] = "avro.codec\x0e" "deflate";
    int found = 0;
    for (size_t at = 0; at + sizeof want - 1 <= n && !found; at++)
        found = memcmp(header + at, want, sizeof want - 1) == 0;
    CHECK(found);
}

static void check_api_edges(const char *dir) {
    char path[4096], err[512];
    unsigned long long rows = 99;

    CHECK_STR(avro_export_table_name(AVRO_EXPORT_INVENTORY), "inventory");
    CHECK_STR(avro_export_table_name(AVRO_EXPORT_GUILD_MEMBERS), "guild_members");
    CHECK_STR(avro_export_table_name(AVRO_EXPORT_USERS), "users");
    CHECK_STR(avro_export_table_name(AVRO_EXPORT_EVENTS), "events");
    CHECK(avro_export_schema((avro_export_table)99) == NULL);
    CHECK(avro_export_table_name((avro_export_table)-1) == NULL);
    CHECK(strstr(avro_export_schema(AVRO_EXPORT_USERS), "\"namespace\": \"lootlog\"") != NULL);

    err[0] = '\0';
    join_path(path, sizeof path, dir, "x.avro");
    CHECK(avro_export_open(path, (avro_export_table)99, err, sizeof err) == NULL);
    CHECK(strstr(err, "unknown table") != NULL);
    CHECK(avro_export_open(NULL, AVRO_EXPORT_USERS, err, sizeof err) == NULL);

    join_path(path, sizeof path, dir, "no/such/dir/x.avro");
    CHECK(avro_export_open(path, AVRO_EXPORT_USERS, err, sizeof err) == NULL);
    CHECK(strstr(err, "cannot create") != NULL && strstr(err, "No such file") != NULL);

    CHECK(avro_export_close(NULL, &rows, err, sizeof err) == 0);
    CHECK(rows == 0);
    CHECK(avro_export_row(NULL, NULL, 0, err, sizeof err) == -1);

    /* An existing file is truncated, not appended to. */
    join_path(path, sizeof path, dir, "truncated.avro");
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL);
    if (fp) {
        for (int i = 0; i < 10000; i++) fputs("old content ", fp);
        fclose(fp);
    }
    avro_export *e = avro_export_open(path, AVRO_EXPORT_GUILD_MEMBERS, err, sizeof err);
    CHECK(e != NULL);
    const avro_export_value row[3] = {{"g", 0, 0}, {"u", 0, 0}, {"t", 0, 0}};
    CHECK(avro_export_row(e, row, 3, err, sizeof err) == 0);
    CHECK(avro_export_close(e, &rows, err, sizeof err) == 0);
    CHECK(rows == 1);
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_size > 0 && st.st_size < 2000);
    avro_file_reader_t reader = NULL;
    CHECK(avro_file_reader(path, &reader) == 0);
    if (reader) avro_file_reader_close(reader);
    unlink(path);
}

/* A full disk, played by /dev/full: the error must surface, and close must still free
 * everything (LeakSanitizer checks the second part in the ASan build). */
static void check_disk_full(void) {
    char err[512];
    unsigned long long rows = 0;
    const avro_export_value row[3] = {{"g", 0, 0}, {"u", 0, 0}, {"t", 0, 0}};
    if (access("/dev/full", W_OK) != 0) {
        printf("avro_export: /dev/full not writable, disk-full checks skipped\n");
        return;
    }

    /* A few rows: avro-c's writes land in stdio's buffer and its fflush failure is
     * ignored by avro-c; close must notice. */
    avro_export *e = avro_export_open("/dev/full", AVRO_EXPORT_GUILD_MEMBERS, err, sizeof err);
    CHECK(e != NULL);
    if (!e) return;
    CHECK(avro_export_row(e, row, 3, err, sizeof err) == 0);
    err[0] = '\0';
    CHECK(avro_export_close(e, &rows, err, sizeof err) == -1);
    CHECK(rows == 1);
    CHECK(strstr(err, "No space left") != NULL);

    /* Enough rows to fill blocks bigger than stdio's buffer: a row fails, later rows
     * are refused, close fails and still frees avro-c's writer. */
    e = avro_export_open("/dev/full", AVRO_EXPORT_GUILD_MEMBERS, err, sizeof err);
    CHECK(e != NULL);
    if (!e) return;
    char text[3][48];
    avro_export_value noisy[3] = {{text[0], 0, 0}, {text[1], 0, 0}, {text[2], 0, 0}};
    unsigned long long seed = 12345;
    int failed_at = -1;
    for (int n = 0; n < 100000 && failed_at < 0; n++) {
        for (int f = 0; f < 3; f++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            snprintf(text[f], sizeof text[f], "%016llx%016llx", seed, seed * 31 + n);
        }
        if (avro_export_row(e, noisy, 3, err, sizeof err) != 0) failed_at = n;
    }
    CHECK(failed_at > 0);
    CHECK(strstr(err, "writing /dev/full failed") != NULL);
    CHECK(avro_export_row(e, row, 3, err, sizeof err) == -1);
    CHECK(strstr(err, "incomplete") != NULL);
    CHECK(avro_export_close(e, &rows, err, sizeof err) == -1);
    CHECK(rows == (unsigned long long)failed_at);
    CHECK(strstr(err, "incomplete") != NULL);
}

int main(int argc, char **argv) {
    char dir[4096] = "";
    int keep = 0;
    if (argc == 3 && strcmp(argv[1], "--keep") == 0) {
        keep = 1;
        snprintf(dir, sizeof dir, "%s", argv[2]);
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "mkdir %s: %s\n", dir, strerror(errno));
            return 2;
        }
    } else if (argc != 1) {
        fprintf(stderr, "usage: %s [--keep DIR]\n", argv[0]);
        return 2;
    } else {
        snprintf(dir, sizeof dir, "/tmp/test_avro_export.XXXXXX");
        if (!mkdtemp(dir)) {
            fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
            return 2;
        }
    }

    avro_export_value *scratch = calloc(MAX_FIELDS, sizeof *scratch);
    char(*text)[TEXT_MAX] = calloc(MAX_FIELDS, sizeof *text);
    if (!scratch || !text) return 2;

    for (size_t i = 0; i < TEST_FILE_COUNT; i++) {
        if (write_file(dir, &test_files[i], scratch, text) == 0) {
            read_file(dir, &test_files[i], scratch, text);
            check_codec_is_deflate(dir, test_files[i].file);
        }
    }
    check_api_edges(dir);
    check_disk_full();

    /* The documented schemas beside the files, for the fastavro check. */
    if (keep) {
        for (avro_export_table t = AVRO_EXPORT_INVENTORY; t <= AVRO_EXPORT_EVENTS; t++) {
            char path[4096], name[64];
            snprintf(name, sizeof name, "%s.avsc", avro_export_table_name(t));
            join_path(path, sizeof path, dir, name);
            FILE *fp = fopen(path, "w");
            CHECK(fp != NULL);
            if (fp) {
                CHECK(fputs(avro_export_schema(t), fp) >= 0);
                CHECK(fclose(fp) == 0);
            }
        }
    } else {
        for (size_t i = 0; i < TEST_FILE_COUNT; i++) {
            char path[4096];
            join_path(path, sizeof path, dir, test_files[i].file);
            unlink(path);
        }
        CHECK(rmdir(dir) == 0);
    }
    free(scratch);
    free(text);
    return check_finish("avro_export");
}
