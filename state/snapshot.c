/* snapshot: the analyst and restore copies on HDFS. The live database is read exactly
 * once, by one SQLite backup step into a local state.db; everything else (Avro tables,
 * extracts, manifest) is derived from that immutable copy, so all files of a snapshot
 * describe the same offsets. Extract boundaries come from the previous complete
 * snapshot's manifest, so every folded record lands in exactly one extract. */
#include "snapshot.h"

#include "avro_export.h"
#include "codec.h"
#include "log.h"
#include "sha256.h"
#include "store.h"
#include "webhdfs.h"

#include <errno.h>
#include <pthread.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SNAPSHOT_SCHEMA_VERSION 1

typedef struct {
    char base[256]; /* http://host:port */
    char root[512]; /* /lootlog */
} hdfs_url;

static int parse_url(const char *url, hdfs_url *out, char *errstr, size_t errstr_size) {
    const char *rest = NULL;
    if (strncmp(url, "webhdfs://", 10) == 0) rest = url + 10;
    else if (strncmp(url, "http://", 7) == 0) rest = url + 7;
    const char *slash = rest ? strchr(rest, '/') : NULL;
    if (!rest || !slash || slash == rest || (size_t)(slash - rest) + 8 > sizeof out->base ||
        strlen(slash) >= sizeof out->root) {
        snprintf(errstr, errstr_size, "snapshot URL '%s' is not webhdfs://HOST:PORT/PATH", url);
        return -1;
    }
    snprintf(out->base, sizeof out->base, "http://%.*s", (int)(slash - rest), rest);
    snprintf(out->root, sizeof out->root, "%s", slash);
    size_t n = strlen(out->root);
    while (n > 1 && out->root[n - 1] == '/') out->root[--n] = '\0';
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Removes a local scratch folder of plain files. */
static void remove_local_dir(const char *dir) {
    static const char *const names[] = {"state.db",       "inventory.avro", "guild_members.avro",
                                        "users.avro",     "manifest.json",  "prev-manifest.json",
                                        "state.db-journal"};
    char path[1024];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    for (int t = 0; t < EVENT_TYPE_COUNT; t++) {
        snprintf(path, sizeof path, "%s/events-%s.avro", dir, codec_type_name((event_type)t));
        unlink(path);
    }
    rmdir(dir);
}

/* ---------------------------------------------------------------- table exports */

typedef struct {
    avro_export *out;
    const catalog *cat;
    char *errstr;
    size_t errstr_size;
} export_ctx;

static int export_inventory_row(void *arg, const store_row *r) {
    export_ctx *x = arg;
    const catalog_item *item = x->cat ? catalog_find(x->cat, r->text[1]) : NULL;
    avro_export_value v[4] = {{.s = r->text[0]}, {.s = r->text[1]},
                              {.s = item ? item->category : "unknown"}, {.i = r->number[0]}};
    return avro_export_row(x->out, v, 4, x->errstr, x->errstr_size);
}

static int export_member_row(void *arg, const store_row *r) {
    export_ctx *x = arg;
    avro_export_value v[3] = {{.s = r->text[0]}, {.s = r->text[1]}, {.s = r->text[2]}};
    return avro_export_row(x->out, v, 3, x->errstr, x->errstr_size);
}

static int export_player_row(void *arg, const store_row *r) {
    export_ctx *x = arg;
    avro_export_value v[6] = {
        {.s = r->text[0]},
        {.i = r->number[0]},
        {.s = r->text[1], .is_null = r->text[1] == NULL},
        {.i = r->number[1]},
        {.s = r->text[2], .is_null = r->text[2] == NULL},
        {.s = r->text[3]},
    };
    return avro_export_row(x->out, v, 6, x->errstr, x->errstr_size);
}

/* Writes one table of the copy to path. Returns 0 with *rows, or -1. */
static int export_table(store *copy, const catalog *cat, const char *path, avro_export_table table,
                        unsigned long long *rows, char *errstr, size_t errstr_size) {
    export_ctx x = {.cat = cat, .errstr = errstr, .errstr_size = errstr_size};
    x.out = avro_export_open(path, table, errstr, errstr_size);
    if (!x.out) return -1;
    int rc = table == AVRO_EXPORT_INVENTORY       ? store_walk_inventory(copy, export_inventory_row, &x)
             : table == AVRO_EXPORT_GUILD_MEMBERS ? store_walk_guild_members(copy, export_member_row, &x)
                                                  : store_walk_players(copy, export_player_row, &x);
    if (rc) {
        char walk_err[512];
        snprintf(walk_err, sizeof walk_err, "%s", store_errmsg(copy));
        avro_export_close(x.out, NULL, errstr, errstr_size);
        if (!strstr(walk_err, "stopped by its consumer"))
            snprintf(errstr, errstr_size, "%s", walk_err);
        return -1;
    }
    return avro_export_close(x.out, rows, errstr, errstr_size);
}

/* ---------------------------------------------------------------- event extracts */

typedef struct {
    const char *dir;
    avro_export *out[EVENT_TYPE_COUNT];
    unsigned long long rows[EVENT_TYPE_COUNT];
    char *errstr;
    size_t errstr_size;
} extract_ctx;

static int extract_row(void *arg, const store_event_row *r) {
    extract_ctx *x = arg;
    event_type type;
    if (codec_type_parse(r->base.text[1], &type)) return 0; /* not a type we extract */
    if (!x->out[type]) {
        char path[1024];
        snprintf(path, sizeof path, "%s/events-%s.avro", x->dir, r->base.text[1]);
        x->out[type] = avro_export_open(path, AVRO_EXPORT_EVENTS, x->errstr, x->errstr_size);
        if (!x->out[type]) return -1;
    }
    avro_export_value v[10] = {
        {.i = r->base.number[0]},
        {.i = r->base.number[1]},
        {.s = r->base.text[0]},
        {.s = r->base.text[1]},
        {.s = r->base.text[2]},
        {.s = r->base.text[3]},
        {.s = r->base.text[4]},
        {.s = r->base.text[5], .is_null = r->base.text[5] == NULL},
        {.s = r->items_json, .is_null = r->items_json == NULL},
        {.s = r->guild_id, .is_null = r->guild_id == NULL},
    };
    x->rows[type]++;
    return avro_export_row(x->out[type], v, 10, x->errstr, x->errstr_size);
}

/* ---------------------------------------------------------------- HDFS helpers */

/* The newest complete snapshot's id under root (id[0] = 0 when none). */
static int latest_snapshot(webhdfs *w, const hdfs_url *u, char *id, size_t id_size,
                           char *errstr, size_t errstr_size) {
    char dir[1024];
    webhdfs_entry *entries = NULL;
    size_t count = 0;
    int missing = 0;
    id[0] = '\0';
    snprintf(dir, sizeof dir, "%s/snapshots", u->root);
    if (webhdfs_list(w, dir, &entries, &count, &missing, errstr, errstr_size))
        return missing ? 0 : -1;
    for (size_t i = 0; i < count; i++) {
        const char *name = entries[i].name;
        if (!entries[i].is_dir || name[0] == '_' || strcmp(name, id) <= 0) continue;
        char success[1600];
        webhdfs_entry st;
        snprintf(success, sizeof success, "%s/%s/_SUCCESS", dir, name);
        int exists = webhdfs_status(w, success, &st, errstr, errstr_size);
        if (exists < 0) {
            free(entries);
            return -1;
        }
        if (exists) snprintf(id, id_size, "%.*s", (int)id_size - 1, name);
    }
    free(entries);
    return 0;
}

/* Reads the offsets of a manifest into next (indexed by partition; -1 when absent). */
static int read_manifest_offsets(const char *path, int64_t *next, char *errstr,
                                 size_t errstr_size) {
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    json_t *offsets = json_object_get(root, "offsets");
    if (!json_is_object(offsets)) {
        snprintf(errstr, errstr_size, "manifest %s has no offsets (%s)", path,
                 root ? "missing" : jerr.text);
        json_decref(root);
        return -1;
    }
    const char *key;
    json_t *value;
    json_object_foreach(offsets, key, value) {
        int p = atoi(key);
        if (p >= 0 && p < STORE_MAX_PARTITIONS && json_is_integer(value))
            next[p] = json_integer_value(value);
    }
    json_decref(root);
    return 0;
}

/* Uploads local file name from dir into hdfs_dir, recording its sha256 in files. */
static int upload(webhdfs *w, const char *dir, const char *name, const char *hdfs_dir,
                  json_t *files, char *errstr, size_t errstr_size) {
    char local[1024], remote[1400], hex[65];
    uint64_t bytes;
    snprintf(local, sizeof local, "%s/%s", dir, name);
    snprintf(remote, sizeof remote, "%s/%s", hdfs_dir, name);
    if (sha256_file(local, hex, &bytes, errstr, errstr_size)) return -1;
    if (files)
        json_object_set_new(files, name, json_pack("{s:s,s:I}", "sha256", hex, "bytes",
                                                   (json_int_t)bytes));
    return webhdfs_create_from_file(w, remote, local, 1, errstr, errstr_size);
}

/* ---------------------------------------------------------------- take */

int snapshot_take(const snapshot_config *config, snapshot_result *result, char *errstr,
                  size_t errstr_size) {
    hdfs_url u;
    webhdfs *w = NULL;
    store *live = NULL, *copy = NULL;
    json_t *manifest = NULL, *files = NULL, *extracts = NULL;
    char dir[1024], path[1400], tmp_dir[1200], final_dir[1200], prev_id[64];
    char renamed[EVENT_TYPE_COUNT][1400];
    int renamed_count = 0, uploaded = 0, rc = -1;
    extract_ctx x = {0};
    double started = now_s();
    store_offset offsets[STORE_MAX_PARTITIONS];
    size_t offset_count = 0;
    int64_t prev[STORE_MAX_PARTITIONS];

    memset(result, 0, sizeof *result);
    if (parse_url(config->url, &u, errstr, errstr_size)) return -1;

    /* The id sorts by time: 20261129T081400123Z. */
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    char stamp[24], created_at[32];
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &tm);
    snprintf(result->id, sizeof result->id, "%.15s%03dZ", stamp, (int)(now.tv_nsec / 1000000L) % 1000);
    codec_now_iso8601(created_at, sizeof created_at);

    snprintf(dir, sizeof dir, "%s/lootlog-snapshot-%s-%d", config->work_dir, result->id,
             (int)getpid());
    if (mkdir(dir, 0700)) {
        snprintf(errstr, errstr_size, "mkdir %s: %s", dir, strerror(errno));
        return -1;
    }
    w = webhdfs_new(u.base, "root", config->timeout_ms, errstr, errstr_size);
    if (!w) goto done;

    /* 1. One consistent read of the live state. */
    live = store_open(config->db_path, STORE_READER, errstr, errstr_size);
    if (!live) goto done;
    snprintf(path, sizeof path, "%s/state.db", dir);
    if (store_backup_to(live, path)) {
        snprintf(errstr, errstr_size, "%s", store_errmsg(live));
        goto done;
    }
    store_close(live);
    live = NULL;
    copy = store_open(path, STORE_READER, errstr, errstr_size);
    if (!copy) goto done;
    if (store_load_offsets(copy, offsets, STORE_MAX_PARTITIONS, &offset_count)) {
        snprintf(errstr, errstr_size, "%s", store_errmsg(copy));
        goto done;
    }

    /* 2. Analyst tables from the copy. */
    unsigned long long inv_rows = 0, member_rows = 0, user_rows = 0;
    snprintf(path, sizeof path, "%s/inventory.avro", dir);
    if (export_table(copy, config->cat, path, AVRO_EXPORT_INVENTORY, &inv_rows, errstr,
                     errstr_size))
        goto done;
    snprintf(path, sizeof path, "%s/guild_members.avro", dir);
    if (export_table(copy, config->cat, path, AVRO_EXPORT_GUILD_MEMBERS, &member_rows, errstr,
                     errstr_size))
        goto done;
    snprintf(path, sizeof path, "%s/users.avro", dir);
    if (export_table(copy, config->cat, path, AVRO_EXPORT_USERS, &user_rows, errstr,
                     errstr_size))
        goto done;

    /* 3. Extracts: the records folded since the previous complete snapshot. */
    for (int p = 0; p < STORE_MAX_PARTITIONS; p++) prev[p] = 0;
    if (latest_snapshot(w, &u, prev_id, sizeof prev_id, errstr, errstr_size)) goto done;
    if (prev_id[0]) {
        char remote[1400];
        snprintf(remote, sizeof remote, "%s/snapshots/%s/manifest.json", u.root, prev_id);
        snprintf(path, sizeof path, "%s/prev-manifest.json", dir);
        if (webhdfs_open_to_file(w, remote, path, errstr, errstr_size) ||
            read_manifest_offsets(path, prev, errstr, errstr_size))
            goto done;
        for (int p = 0; p < STORE_MAX_PARTITIONS; p++)
            if (prev[p] < 0) prev[p] = 0;
    }
    int64_t first = 0, end = 0;
    x.dir = dir;
    x.errstr = errstr;
    x.errstr_size = errstr_size;
    for (size_t i = 0; i < offset_count; i++) {
        int32_t p = offsets[i].partition;
        first += prev[p];
        end += offsets[i].next_offset;
        if (store_walk_events(copy, p, prev[p], offsets[i].next_offset, extract_row, &x)) {
            if (!strstr(store_errmsg(copy), "stopped by its consumer"))
                snprintf(errstr, errstr_size, "%s", store_errmsg(copy));
            goto done;
        }
    }
    for (int t = 0; t < EVENT_TYPE_COUNT; t++) {
        if (!x.out[t]) continue;
        avro_export *out = x.out[t];
        x.out[t] = NULL;
        if (avro_export_close(out, NULL, errstr, errstr_size)) goto done;
    }
    store_close(copy);
    copy = NULL;

    /* 4. Manifest. */
    manifest = json_object();
    files = json_object();
    extracts = json_array();
    json_t *offsets_json = json_object(), *prev_json = json_object();
    for (size_t i = 0; i < offset_count; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", (int)offsets[i].partition);
        json_object_set_new(offsets_json, key, json_integer(offsets[i].next_offset));
        json_object_set_new(prev_json, key, json_integer(prev[offsets[i].partition]));
    }
    json_object_set_new(manifest, "id", json_string(result->id));
    json_object_set_new(manifest, "created_at", json_string(created_at));
    json_object_set_new(manifest, "topic", json_string(config->topic));
    json_object_set_new(manifest, "offsets", offsets_json);
    json_object_set_new(manifest, "previous_snapshot", prev_id[0] ? json_string(prev_id) : json_null());
    json_object_set_new(manifest, "previous_offsets", prev_json);
    json_object_set_new(manifest, "row_counts",
                        json_pack("{s:I,s:I,s:I}", "inventory", (json_int_t)inv_rows,
                                  "guild_members", (json_int_t)member_rows, "users",
                                  (json_int_t)user_rows));
    json_object_set_new(manifest, "schema_version", json_integer(SNAPSHOT_SCHEMA_VERSION));
    json_object_set_new(manifest, "lootlog_version", json_string(config->lootlog_version));

    /* 5. Upload into a temporary folder; extracts into theirs. */
    snprintf(tmp_dir, sizeof tmp_dir, "%s/snapshots/_tmp-%s", u.root, result->id);
    snprintf(final_dir, sizeof final_dir, "%s/snapshots/%s", u.root, result->id);
    if (webhdfs_mkdirs(w, tmp_dir, errstr, errstr_size)) goto done;
    uploaded = 1;
    static const char *const table_files[] = {"state.db", "inventory.avro", "guild_members.avro",
                                              "users.avro"};
    for (size_t i = 0; i < sizeof table_files / sizeof table_files[0]; i++)
        if (upload(w, dir, table_files[i], tmp_dir, files, errstr, errstr_size)) goto done;
    for (int t = 0; t < EVENT_TYPE_COUNT; t++) {
        if (!x.rows[t]) continue;
        const char *type_name = codec_type_name((event_type)t);
        char name[64], type_dir[1200], hex[65];
        uint64_t bytes;
        snprintf(name, sizeof name, "events-%s.avro", type_name);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (sha256_file(path, hex, &bytes, errstr, errstr_size)) goto done;
        snprintf(type_dir, sizeof type_dir, "%s/events/event_type=%s", u.root, type_name);
        if (webhdfs_mkdirs(w, type_dir, errstr, errstr_size) ||
            upload(w, dir, name, tmp_dir, NULL, errstr, errstr_size))
            goto done;
        json_array_append_new(
            extracts, json_pack("{s:s,s:s,s:I,s:s,s:I}", "event_type", type_name, "path", "",
                                "rows", (json_int_t)x.rows[t], "sha256", hex, "bytes",
                                (json_int_t)bytes));
        char final_path[1400];
        snprintf(final_path, sizeof final_path, "%s/%lld-%lld.avro", type_dir, (long long)first,
                 (long long)end - 1);
        json_object_set_new(json_array_get(extracts, json_array_size(extracts) - 1), "path",
                            json_string(final_path));
        result->events_extracted += x.rows[t];
    }
    json_object_set_new(manifest, "files", files);
    files = NULL;
    json_object_set_new(manifest, "extracts", extracts);
    extracts = NULL;
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    if (json_dump_file(manifest, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) {
        snprintf(errstr, errstr_size, "writing %s failed", path);
        goto done;
    }
    if (upload(w, dir, "manifest.json", tmp_dir, NULL, errstr, errstr_size)) goto done;
    snprintf(path, sizeof path, "%s/_SUCCESS", tmp_dir);
    if (webhdfs_create_from_buffer(w, path, "", 0, 1, errstr, errstr_size)) goto done;

    /* 6. Into place: extracts (moved out of the temporary folder), then the snapshot. */
    json_t *extract_list = json_object_get(manifest, "extracts");
    size_t e;
    json_t *entry;
    json_array_foreach(extract_list, e, entry) {
        char from[1400];
        const char *to = json_string_value(json_object_get(entry, "path"));
        snprintf(from, sizeof from, "%s/events-%s.avro", tmp_dir,
                 json_string_value(json_object_get(entry, "event_type")));
        /* A leftover of an attempt that failed after this step is the same range. */
        if (webhdfs_delete(w, to, 0, errstr, errstr_size) ||
            webhdfs_rename(w, from, to, errstr, errstr_size))
            goto done;
        snprintf(renamed[renamed_count++], sizeof renamed[0], "%s", to);
    }
    if (webhdfs_rename_strict(w, tmp_dir, final_dir, 0, errstr, errstr_size)) goto done;
    uploaded = 0;
    renamed_count = 0;

    /* 7. Retention: keep the newest config->retain complete snapshots. */
    char snapshots_dir[1100];
    webhdfs_entry *entries = NULL;
    size_t count = 0;
    snprintf(snapshots_dir, sizeof snapshots_dir, "%s/snapshots", u.root);
    if (webhdfs_list(w, snapshots_dir, &entries, &count, NULL, errstr, errstr_size) == 0) {
        size_t kept = 0;
        /* Names sort by time; walk newest first. */
        for (size_t i = count; i-- > 0;) {
            if (!entries[i].is_dir || entries[i].name[0] == '_') continue;
            if (++kept <= (size_t)(config->retain > 0 ? config->retain : 1)) continue;
            char old[1400], why[256];
            snprintf(old, sizeof old, "%s/%s", snapshots_dir, entries[i].name);
            if (webhdfs_delete(w, old, 1, why, sizeof why))
                log_warn("snapshot", "retention: %s", why);
        }
        free(entries);
    }
    result->seconds = now_s() - started;
    rc = 0;
done:
    for (int t = 0; t < EVENT_TYPE_COUNT; t++)
        if (x.out[t]) avro_export_close(x.out[t], NULL, path, sizeof path);
    if (w && (uploaded || renamed_count)) {
        char why[256];
        for (int i = 0; i < renamed_count; i++) webhdfs_delete(w, renamed[i], 0, why, sizeof why);
        webhdfs_delete(w, tmp_dir, 1, why, sizeof why);
    }
    json_decref(files);
    json_decref(extracts);
    json_decref(manifest);
    store_close(copy);
    store_close(live);
    webhdfs_free(w);
    remove_local_dir(dir);
    return rc;
}

/* ---------------------------------------------------------------- list and restore */

char *snapshot_list_json(const char *url, long timeout_ms, char *errstr, size_t errstr_size) {
    hdfs_url u;
    webhdfs_entry *entries = NULL;
    size_t count = 0;
    int missing = 0;
    char dir[1100];
    if (parse_url(url, &u, errstr, errstr_size)) return NULL;
    webhdfs *w = webhdfs_new(u.base, "root", timeout_ms, errstr, errstr_size);
    if (!w) return NULL;
    json_t *list = json_array();
    snprintf(dir, sizeof dir, "%s/snapshots", u.root);
    if (webhdfs_list(w, dir, &entries, &count, &missing, errstr, errstr_size) && !missing) {
        json_decref(list);
        webhdfs_free(w);
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        char success[1800], path[1600];
        webhdfs_entry st;
        if (!entries[i].is_dir || entries[i].name[0] == '_') continue;
        snprintf(path, sizeof path, "%s/%s", dir, entries[i].name);
        snprintf(success, sizeof success, "%s/_SUCCESS", path);
        if (webhdfs_status(w, success, &st, errstr, errstr_size) == 1)
            json_array_append_new(list, json_pack("{s:s,s:s}", "id", entries[i].name, "path", path));
    }
    free(entries);
    webhdfs_free(w);
    char *text = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    return text;
}

int snapshot_restore(const char *url, const char *id, const char *db_path,
                     const char *work_dir, long timeout_ms, char *id_out, char *errstr,
                     size_t errstr_size) {
    hdfs_url u;
    webhdfs *w = NULL;
    json_t *manifest = NULL;
    char dir[1024], local[1400], remote[1400], chosen[64];
    int rc = -1;
    struct stat sb;

    if (parse_url(url, &u, errstr, errstr_size)) return -1;
    if (stat(db_path, &sb) == 0) {
        snprintf(errstr, errstr_size, "%s exists; restore writes a new database file", db_path);
        return -1;
    }
    snprintf(dir, sizeof dir, "%s/lootlog-restore-%d", work_dir, (int)getpid());
    if (mkdir(dir, 0700) && errno != EEXIST) {
        snprintf(errstr, errstr_size, "mkdir %s: %s", dir, strerror(errno));
        return -1;
    }
    w = webhdfs_new(u.base, "root", timeout_ms, errstr, errstr_size);
    if (!w) goto done;
    if (!id || strcmp(id, "latest") == 0) {
        if (latest_snapshot(w, &u, chosen, sizeof chosen, errstr, errstr_size)) goto done;
        if (!chosen[0]) {
            snprintf(errstr, errstr_size, "no complete snapshot under %s/snapshots", u.root);
            goto done;
        }
    } else {
        snprintf(chosen, sizeof chosen, "%s", id);
    }
    snprintf(remote, sizeof remote, "%s/snapshots/%s/manifest.json", u.root, chosen);
    snprintf(local, sizeof local, "%s/manifest.json", dir);
    if (webhdfs_open_to_file(w, remote, local, errstr, errstr_size)) goto done;
    json_error_t jerr;
    manifest = json_load_file(local, 0, &jerr);
    json_t *files = json_object_get(manifest, "files");
    if (!json_is_object(json_object_get(files, "state.db"))) {
        snprintf(errstr, errstr_size, "manifest of %s lists no state.db", chosen);
        goto done;
    }
    const char *name;
    json_t *meta;
    json_object_foreach(files, name, meta) {
        char hex[65];
        uint64_t bytes;
        snprintf(remote, sizeof remote, "%s/snapshots/%s/%s", u.root, chosen, name);
        snprintf(local, sizeof local, "%s/%s", dir, name);
        if (webhdfs_open_to_file(w, remote, local, errstr, errstr_size) ||
            sha256_file(local, hex, &bytes, errstr, errstr_size))
            goto done;
        const char *want = json_string_value(json_object_get(meta, "sha256"));
        if (!want || strcmp(want, hex) != 0) {
            snprintf(errstr, errstr_size, "%s of snapshot %s: sha256 %s, manifest says %s", name,
                     chosen, hex, want ? want : "nothing");
            goto done;
        }
    }
    snprintf(local, sizeof local, "%s/state.db", dir);
    if (rename(local, db_path)) {
        snprintf(errstr, errstr_size, "installing %s: %s", db_path, strerror(errno));
        goto done;
    }
    snprintf(id_out, 32, "%.31s", chosen);
    rc = 0;
done:
    json_decref(manifest);
    webhdfs_free(w);
    remove_local_dir(dir);
    return rc;
}

/* ---------------------------------------------------------------- scheduler */

struct snapshot_scheduler {
    snapshot_config config;
    int interval_s;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stopping, triggered, in_progress;
    uint64_t taken, failed;
    char last_id[32];
    char last_error[512];
    char *list_json; /* cached GET /admin/snapshots answer */
};

static void refresh_list(snapshot_scheduler *s) {
    char errstr[512];
    char *list = snapshot_list_json(s->config.url, s->config.timeout_ms, errstr, sizeof errstr);
    if (!list) return;
    pthread_mutex_lock(&s->lock);
    free(s->list_json);
    s->list_json = list;
    pthread_mutex_unlock(&s->lock);
}

static void *scheduler_thread(void *arg) {
    snapshot_scheduler *s = arg;
    int backoff_s = 0;
    refresh_list(s);
    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int wait_s = backoff_s ? backoff_s : s->interval_s;
        if (wait_s > 0 || !s->triggered) {
            until.tv_sec += wait_s > 0 ? wait_s : 3600;
            while (!s->stopping && !s->triggered &&
                   pthread_cond_timedwait(&s->wake, &s->lock, &until) == 0) {
            }
        }
        if (s->stopping) break;
        if (!s->triggered && wait_s <= 0) continue;
        s->triggered = 0;
        s->in_progress = 1;
        pthread_mutex_unlock(&s->lock);

        snapshot_result result;
        char errstr[512];
        int rc = snapshot_take(&s->config, &result, errstr, sizeof errstr);
        if (rc == 0) {
            log_info("snapshot", "snapshot %s written in %.1f s (%llu events extracted)",
                     result.id, result.seconds, (unsigned long long)result.events_extracted);
            refresh_list(s);
        } else {
            log_warn("snapshot", "snapshot failed (will retry): %s", errstr);
        }
        pthread_mutex_lock(&s->lock);
        s->in_progress = 0;
        if (rc == 0) {
            s->taken++;
            snprintf(s->last_id, sizeof s->last_id, "%s", result.id);
            s->last_error[0] = '\0';
            backoff_s = 0;
        } else {
            s->failed++;
            snprintf(s->last_error, sizeof s->last_error, "%s", errstr);
            backoff_s = backoff_s ? (backoff_s * 2 > 60 ? 60 : backoff_s * 2) : 1;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

snapshot_scheduler *snapshot_scheduler_start(const snapshot_config *config, int interval_s,
                                             char *errstr, size_t errstr_size) {
    hdfs_url u;
    if (parse_url(config->url, &u, errstr, errstr_size)) return NULL;
    snapshot_scheduler *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    s->config = *config;
    s->interval_s = interval_s;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (pthread_create(&s->thread, NULL, scheduler_thread, s)) {
        snprintf(errstr, errstr_size, "starting the snapshot thread failed");
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->wake);
        free(s);
        return NULL;
    }
    return s;
}

void snapshot_scheduler_trigger(snapshot_scheduler *s) {
    pthread_mutex_lock(&s->lock);
    s->triggered = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
}

char *snapshot_scheduler_status_json(snapshot_scheduler *s) {
    pthread_mutex_lock(&s->lock);
    json_t *list = s->list_json ? json_loads(s->list_json, 0, NULL) : NULL;
    json_t *status = json_pack("{s:o,s:b,s:I,s:I,s:s?,s:s?}", "snapshots",
                               list ? list : json_array(), "in_progress", s->in_progress || s->triggered,
                               "taken", (json_int_t)s->taken, "failed", (json_int_t)s->failed,
                               "last_id", s->last_id[0] ? s->last_id : NULL, "last_error",
                               s->last_error[0] ? s->last_error : NULL);
    pthread_mutex_unlock(&s->lock);
    char *text = status ? json_dumps(status, JSON_COMPACT) : NULL;
    json_decref(status);
    return text;
}

void snapshot_scheduler_counts(snapshot_scheduler *s, uint64_t *taken, uint64_t *failed) {
    pthread_mutex_lock(&s->lock);
    *taken = s->taken;
    *failed = s->failed;
    pthread_mutex_unlock(&s->lock);
}

void snapshot_scheduler_stop(snapshot_scheduler *s) {
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    free(s->list_json);
    free(s);
}
