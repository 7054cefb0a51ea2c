/* snapshot: the analyst and restore copies on HDFS. Each partition's live store is read
 * exactly once, by one SQLite backup step into a local p<N>.db; everything else (Avro
 * tables, extracts, manifest) is derived from those immutable copies, so all files of a
 * snapshot describe the same offsets. Extract boundaries come from the previous complete
 * snapshot's manifest, so every folded record lands in exactly one extract. */
#include "hdfs/snapshot.h"
#include "lib/clock.h"

#include "hdfs/avro_export.h"
#include "state/codec.h"
#include "lib/log.h"
#include "state/store.h"
#include "hdfs/webhdfs.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* 2: one p<N>.db per partition instead of one state.db. */
#define SNAPSHOT_SCHEMA_VERSION 2

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

/* Removes a local scratch folder and the plain files in it. The folder is one this
 * module made under a name of its own, so everything in it is ours; which files there
 * are depends on the partitions and the event types seen. */
static void remove_local_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *entry;
        char path[1400];
        while ((entry = readdir(d)) != NULL) {
            if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
            snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* ---------------------------------------------------------------- file names */

/* A partition's extract of one event type, as named in the scratch and the temporary
 * folder (the final name carries the offset range instead). */
static void extract_file_name(char *buf, size_t size, const char *type_name, int32_t partition) {
    snprintf(buf, size, "events-%s-p%d.avro", type_name, (int)partition);
}

/* The partition of a store file name written exactly as store_path writes it: "p<N>.db"
 * with N in decimal without sign or leading zero, so no two names mean one partition and
 * a name from a manifest can never reach outside the folder it is joined to. Returns 1
 * with *partition, or 0 for any other name. */
static int store_file_partition(const char *name, int32_t *partition) {
    char canonical[32];
    if (name[0] != 'p' || !isdigit((unsigned char)name[1])) return 0;
    char *end;
    long p = strtol(name + 1, &end, 10);
    if (strcmp(end, ".db") != 0 || p < 0 || p >= STORE_MAX_PARTITIONS) return 0;
    snprintf(canonical, sizeof canonical, "p%ld.db", p);
    if (strcmp(canonical, name) != 0) return 0;
    *partition = (int32_t)p;
    return 1;
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
    const catalog_item *item = x->cat ? catalog_find(x->cat, r->item_type) : NULL;
    avro_export_value v[4] = {{.s = r->user_id}, {.s = r->item_type},
                              {.s = item ? item->category : "unknown"}, {.i = r->quantity}};
    return avro_export_row(x->out, v, 4, x->errstr, x->errstr_size);
}

static int export_member_row(void *arg, const store_row *r) {
    export_ctx *x = arg;
    avro_export_value v[3] = {{.s = r->guild_id}, {.s = r->user_id}, {.s = r->joined_ts}};
    return avro_export_row(x->out, v, 3, x->errstr, x->errstr_size);
}

static int export_player_row(void *arg, const store_row *r) {
    export_ctx *x = arg;
    avro_export_value v[6] = {
        {.s = r->user_id},
        {.i = r->version},
        {.s = r->guild_id, .is_null = r->guild_id == NULL},
        {.i = r->partition},
        {.s = r->created_ts, .is_null = r->created_ts == NULL},
        {.s = r->updated_ts},
    };
    return avro_export_row(x->out, v, 6, x->errstr, x->errstr_size);
}

/* The analyst tables: one Avro file each, holding the rows of every partition. */
static const struct {
    const char *file;
    avro_export_table table;
    int (*walk)(store *st, int (*row)(void *arg, const store_row *r), void *arg);
    int (*row)(void *arg, const store_row *r);
} analyst_tables[] = {
    {"inventory.avro", AVRO_EXPORT_INVENTORY, store_walk_inventory, export_inventory_row},
    {"guild_members.avro", AVRO_EXPORT_GUILD_MEMBERS, store_walk_guild_members, export_member_row},
    {"users.avro", AVRO_EXPORT_USERS, store_walk_players, export_player_row},
};
#define ANALYST_TABLE_COUNT (sizeof analyst_tables / sizeof analyst_tables[0])

static int is_analyst_file(const char *name) {
    for (size_t t = 0; t < ANALYST_TABLE_COUNT; t++)
        if (strcmp(name, analyst_tables[t].file) == 0) return 1;
    return 0;
}

/* After a walk failed: a callback that stopped it has written errstr (cleared before the
 * walk); otherwise the store's own message says why. Returns -1. */
static int walk_failed(store *st, char *errstr, size_t errstr_size) {
    if (!errstr[0]) snprintf(errstr, errstr_size, "%s", store_errmsg(st));
    return -1;
}

/* ---------------------------------------------------------------- event extracts */

/* The largest JSON items_to_json writes: a full cart of the longest item types and
 * quantities, {"item_type":"<64>","quantity":<19 digits>} and a comma per line. */
#define ITEMS_JSON_MAX (CODEC_MAX_ITEMS * (CODEC_ID_MAX + 48) + 3)

/* History keeps an event's items as "sword:1,arrow:20"; the extracts carry the JSON
 * text their schema has always documented, [{"item_type":"sword","quantity":1},...],
 * so analysts' files keep their shape whatever the store's. Item types are identifiers
 * (checked here), so nothing needs escaping. Returns 0, or -1 for text of another form. */
static int items_to_json(const char *text, char *out, size_t out_size) {
    size_t used = 0;
    const char *line = text;
    if (out_size < 3) return -1;
    out[used++] = '[';
    for (int i = 0;; i++) {
        char type[CODEC_ID_MAX + 1], *end;
        const char *colon = strchr(line, ':');
        if (!colon || colon == line || (size_t)(colon - line) > CODEC_ID_MAX ||
            !isdigit((unsigned char)colon[1]))
            return -1;
        memcpy(type, line, (size_t)(colon - line));
        type[colon - line] = '\0';
        errno = 0;
        long long quantity = strtoll(colon + 1, &end, 10);
        if (!codec_identifier_ok(type) || errno || (*end != ',' && *end != '\0')) return -1;
        int n = snprintf(out + used, out_size - used, "%s{\"item_type\":\"%s\",\"quantity\":%lld}",
                         i ? "," : "", type, quantity);
        if (n < 0 || (size_t)n >= out_size - used) return -1;
        used += (size_t)n;
        if (*end == '\0') break;
        line = end + 1;
    }
    if (used + 2 > out_size) return -1;
    out[used++] = ']';
    out[used] = '\0';
    return 0;
}

/* One partition's events, into one Avro file per event type (opened on its first row). */
typedef struct {
    const char *dir;
    int32_t partition;
    avro_export *out[EVENT_TYPE_COUNT];
    char items[ITEMS_JSON_MAX];
    char *errstr;
    size_t errstr_size;
} extract_ctx;

static int extract_row(void *arg, const store_event_row *r) {
    extract_ctx *x = arg;
    event_type type;
    if (codec_type_parse(r->event_type, &type)) return 0; /* not a type we extract */
    if (!x->out[type]) {
        char name[96], path[1200];
        extract_file_name(name, sizeof name, r->event_type, x->partition);
        snprintf(path, sizeof path, "%s/%s", x->dir, name);
        x->out[type] = avro_export_open(path, AVRO_EXPORT_EVENTS, x->errstr, x->errstr_size);
        if (!x->out[type]) return -1;
    }
    int has_items = r->items && r->items[0];
    if (has_items && items_to_json(r->items, x->items, sizeof x->items)) {
        snprintf(x->errstr, x->errstr_size,
                 "partition %d offset %lld: items '%.200s' are not \"type:quantity,...\"",
                 (int)x->partition, (long long)r->offset, r->items);
        return -1;
    }
    avro_export_value v[10] = {
        {.i = r->partition},
        {.i = r->offset},
        {.s = r->event_id},
        {.s = r->event_type},
        {.s = r->user_id},
        {.s = r->ts},
        {.s = r->outcome},
        {.s = r->reason, .is_null = r->reason == NULL},
        {.s = has_items ? x->items : NULL, .is_null = !has_items},
        {.s = r->guild_id, .is_null = r->guild_id == NULL},
    };
    return avro_export_row(x->out[type], v, 10, x->errstr, x->errstr_size);
}

/* ---------------------------------------------------------------- HDFS helpers */

/* A complete snapshot under the root, with what its manifest says of its scope. */
typedef struct {
    char id[64];
    char topic[256];
    int64_t offsets[STORE_MAX_PARTITIONS]; /* -1: the partition is not in it */
    int same_set;                          /* its partitions are exactly the caller's */
} snapshot_entry;

/* 1 when the snapshot holds partition. */
static int entry_has(const snapshot_entry *e, int32_t partition) {
    return partition >= 0 && partition < STORE_MAX_PARTITIONS && e->offsets[partition] >= 0;
}

/* The complete snapshots (those with _SUCCESS) under root, newest first, each with its
 * manifest's topic and offsets, read through scratch_dir. Several deployments may share
 * one URL (shards of a topic, with their own partition sets): the manifest, not the
 * folder name, says whose a snapshot is. same_set is computed against partitions (count
 * 0: never). *out (malloc'ed, caller frees) may be NULL with *count 0. Returns 0 or -1. */
static int list_complete(webhdfs *w, const hdfs_url *u, const char *scratch_dir,
                         const int32_t *partitions, size_t partition_count,
                         snapshot_entry **out, size_t *out_count, char *errstr,
                         size_t errstr_size) {
    char dir[1024], path[1600], local[1400];
    webhdfs_entry *entries = NULL;
    size_t count = 0;
    int missing = 0, rc = -1;
    *out = NULL;
    *out_count = 0;
    snprintf(dir, sizeof dir, "%s/snapshots", u->root);
    if (webhdfs_list(w, dir, &entries, &count, &missing, errstr, errstr_size))
        return missing ? 0 : -1;
    snapshot_entry *list = calloc(count ? count : 1, sizeof *list);
    if (!list) {
        snprintf(errstr, errstr_size, "out of memory");
        goto done;
    }
    snprintf(local, sizeof local, "%s/scan-manifest.json", scratch_dir);
    for (size_t i = count; i-- > 0;) { /* names sort by time: newest first */
        const char *name = entries[i].name;
        if (!entries[i].is_dir || name[0] == '_' || strlen(name) >= sizeof list->id) continue;
        snprintf(path, sizeof path, "%s/%s/_SUCCESS", dir, name);
        int exists = webhdfs_status(w, path, NULL, errstr, errstr_size);
        if (exists < 0) goto done;
        if (!exists) continue;
        snprintf(path, sizeof path, "%s/%s/manifest.json", dir, name);
        if (webhdfs_open_to_file(w, path, local, errstr, errstr_size)) goto done;
        json_t *manifest = json_load_file(local, 0, NULL);
        unlink(local);
        const char *topic = json_string_value(json_object_get(manifest, "topic"));
        json_t *offsets = json_object_get(manifest, "offsets");
        if (!topic || !json_is_object(offsets)) { /* not ours to judge: skipped */
            log_warn("snapshot", "%s/%s: manifest without topic or offsets, ignored", dir, name);
            json_decref(manifest);
            continue;
        }
        snapshot_entry *e = &list[(*out_count)++];
        snprintf(e->id, sizeof e->id, "%.63s", name); /* fits: checked above */
        snprintf(e->topic, sizeof e->topic, "%s", topic);
        for (int p = 0; p < STORE_MAX_PARTITIONS; p++) e->offsets[p] = -1;
        const char *key;
        json_t *value;
        size_t held = 0;
        json_object_foreach(offsets, key, value) {
            int32_t p;
            char canonical[16];
            p = (int32_t)atoi(key);
            snprintf(canonical, sizeof canonical, "%d", (int)p);
            if (strcmp(canonical, key) != 0 || p < 0 || p >= STORE_MAX_PARTITIONS ||
                !json_is_integer(value))
                continue;
            e->offsets[p] = json_integer_value(value) < 0 ? 0 : json_integer_value(value);
            held++;
        }
        e->same_set = partition_count > 0 && held == partition_count;
        for (size_t k = 0; k < partition_count && e->same_set; k++)
            if (!entry_has(e, partitions[k])) e->same_set = 0;
        json_decref(manifest);
    }
    *out = list;
    list = NULL;
    rc = 0;
done:
    free(list);
    free(entries);
    return rc;
}

/* The final path of an extract: <root>/events/event_type=<type>/p<N>-<first>-<last>.avro. */
static void extract_final_path(char *buf, size_t size, const char *root, const char *type_name,
                               int32_t partition, int64_t first, int64_t last) {
    snprintf(buf, size, "%s/events/event_type=%s/p%d-%lld-%lld.avro", root, type_name,
             (int)partition, (long long)first, (long long)last);
}

/* Moves the extracts of complete snapshot id that are still inside its folder to their
 * final paths (those the manifest lists, recomputed here from type, partition and
 * offsets, so a manifest can name nothing else). Already moved ones are skipped. When
 * only is not NULL, just the extracts of partitions p with only[p] set: those of other
 * partitions are their owner's to move (two nodes moving one file could delete it).
 * Returns 0 or -1 with errstr. */
static int finish_extracts(webhdfs *w, const hdfs_url *u, const char *id,
                           const unsigned char *only, const char *scratch_dir, char *errstr,
                           size_t errstr_size) {
    char remote[1400], local[1400], from[1400], to[1400], type_dir[1400], name[96];
    snprintf(remote, sizeof remote, "%s/snapshots/%s/manifest.json", u->root, id);
    snprintf(local, sizeof local, "%s/finish-manifest.json", scratch_dir);
    if (webhdfs_open_to_file(w, remote, local, errstr, errstr_size)) return -1;
    json_t *manifest = json_load_file(local, 0, NULL);
    unlink(local);
    json_t *extracts = json_object_get(manifest, "extracts");
    size_t i;
    json_t *entry;
    int rc = 0;
    json_array_foreach(extracts, i, entry) {
        const char *type_name = json_string_value(json_object_get(entry, "event_type"));
        json_t *partition = json_object_get(entry, "partition");
        json_t *first = json_object_get(entry, "first_offset");
        json_t *last = json_object_get(entry, "last_offset");
        event_type type;
        if (!type_name || codec_type_parse(type_name, &type) || !json_is_integer(partition) ||
            json_integer_value(partition) < 0 ||
            json_integer_value(partition) >= STORE_MAX_PARTITIONS || !json_is_integer(first) ||
            !json_is_integer(last))
            continue; /* not an extract this code writes */
        int32_t p = (int32_t)json_integer_value(partition);
        if (only && !only[p]) continue;
        extract_file_name(name, sizeof name, codec_type_name(type), p);
        snprintf(from, sizeof from, "%s/snapshots/%s/%s", u->root, id, name);
        int pending = webhdfs_status(w, from, NULL, errstr, errstr_size);
        if (pending < 0) {
            rc = -1;
            break;
        }
        if (!pending) continue;
        extract_final_path(to, sizeof to, u->root, codec_type_name(type), p,
                           json_integer_value(first), json_integer_value(last));
        snprintf(type_dir, sizeof type_dir, "%s/events/event_type=%s", u->root, codec_type_name(type));
        /* A file already at the final path holds the same partition's same offsets. */
        if (webhdfs_mkdirs(w, type_dir, errstr, errstr_size) ||
            webhdfs_delete(w, to, 0, errstr, errstr_size) ||
            webhdfs_rename(w, from, to, errstr, errstr_size)) {
            rc = -1;
            break;
        }
    }
    json_decref(manifest);
    return rc;
}

/* The SHA-256 of the file at path as 64 hex digits into hex (65 bytes) and its size,
 * through libcrypto. Returns 0, or -1 with errstr. */
static int file_sha256(const char *path, char *hex, uint64_t *bytes, char *errstr,
                       size_t errstr_size) {
    unsigned char buf[65536], digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    size_t got;
    int rc = -1;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        snprintf(errstr, errstr_size, "sha256: out of memory");
        goto done;
    }
    *bytes = 0;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        if (!EVP_DigestUpdate(md, buf, got)) goto done;
        *bytes += got;
    }
    if (ferror(f) || !EVP_DigestFinal_ex(md, digest, &digest_len)) {
        snprintf(errstr, errstr_size, "reading %s failed", path);
        goto done;
    }
    for (unsigned int i = 0; i < digest_len; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    rc = 0;
done:
    if (f) fclose(f);
    EVP_MD_CTX_free(md);
    return rc;
}

/* Uploads local file name from dir into hdfs_dir. When record is not NULL, sets its
 * "sha256" and "bytes" to the file's, for the manifest. */
static int upload(webhdfs *w, const char *dir, const char *name, const char *hdfs_dir,
                  json_t *record, char *errstr, size_t errstr_size) {
    char local[1400], remote[1400], hex[65];
    uint64_t bytes;
    snprintf(local, sizeof local, "%s/%s", dir, name);
    snprintf(remote, sizeof remote, "%s/%s", hdfs_dir, name);
    if (record) {
        if (file_sha256(local, hex, &bytes, errstr, errstr_size)) return -1;
        json_object_set_new(record, "sha256", json_string(hex));
        json_object_set_new(record, "bytes", json_integer((json_int_t)bytes));
    }
    return webhdfs_create_from_file(w, remote, local, 1, errstr, errstr_size);
}

/* ---------------------------------------------------------------- take */

/* Copies partition's live store into dir/p<N>.db with one SQLite backup step: one
 * consistent read of that partition while its fold keeps writing. */
static int backup_partition(const char *db_dir, int32_t partition, const char *dir,
                            char *errstr, size_t errstr_size) {
    char live_path[4096], copy_path[1200];
    if (store_path(db_dir, partition, live_path, sizeof live_path) ||
        store_path(dir, partition, copy_path, sizeof copy_path)) {
        snprintf(errstr, errstr_size, "the store path of partition %d is too long", (int)partition);
        return -1;
    }
    store *live = store_open(live_path, partition, STORE_READER, errstr, errstr_size);
    if (!live) return -1;
    int rc = store_backup_to(live, copy_path);
    if (rc) snprintf(errstr, errstr_size, "%s", store_errmsg(live));
    store_close(live);
    return rc;
}

/* Reads one partition's copy in dir: its next offset into *next, its rows of every
 * analyst table appended to tables, and its events from first up to *next into one
 * extract per event type, each listed in extracts with its final path under root. */
/* The next offset of the copy of partition in dir (0 for a store that folded nothing). */
static int copy_next_offset(const char *dir, int32_t partition, int64_t *next, char *errstr,
                            size_t errstr_size) {
    char path[1200];
    store_path(dir, partition, path, sizeof path); /* fits: backup_partition wrote it */
    store *copy = store_open(path, partition, STORE_READER, errstr, errstr_size);
    if (!copy) return -1;
    int rc = store_get_next_offset(copy, next);
    if (rc) snprintf(errstr, errstr_size, "%s", store_errmsg(copy));
    store_close(copy);
    if (*next < 0) *next = 0;
    return rc;
}

static int read_copy(const char *dir, int32_t partition, int64_t first, const char *root,
                     avro_export *const *tables, const catalog *cat, json_t *extracts,
                     int64_t *next, char *errstr, size_t errstr_size) {
    char path[1200], why[256];
    extract_ctx x = {.dir = dir, .partition = partition, .errstr = errstr,
                     .errstr_size = errstr_size};
    int rc = -1;
    store_path(dir, partition, path, sizeof path); /* fits: backup_partition wrote it */
    store *copy = store_open(path, partition, STORE_READER, errstr, errstr_size);
    if (!copy) return -1;
    if (store_get_next_offset(copy, next)) {
        snprintf(errstr, errstr_size, "%s", store_errmsg(copy));
        goto done;
    }
    /* A store that has folded nothing yet resumes from offset 0: recording 0 keeps every
     * partition of the snapshot in its offsets, and no extract range can start before. */
    if (*next < 0) *next = 0;

    for (size_t t = 0; t < ANALYST_TABLE_COUNT; t++) {
        export_ctx ex = {.out = tables[t], .cat = cat, .errstr = errstr,
                         .errstr_size = errstr_size};
        errstr[0] = '\0';
        if (analyst_tables[t].walk(copy, analyst_tables[t].row, &ex)) {
            walk_failed(copy, errstr, errstr_size);
            goto done;
        }
    }

    errstr[0] = '\0';
    if (first < *next && store_walk_events(copy, first, *next, extract_row, &x)) {
        walk_failed(copy, errstr, errstr_size);
        goto done;
    }
    for (int t = 0; t < EVENT_TYPE_COUNT; t++) {
        if (!x.out[t]) continue;
        avro_export *out = x.out[t];
        unsigned long long rows = 0;
        x.out[t] = NULL;
        if (avro_export_close(out, &rows, errstr, errstr_size)) goto done;
        const char *type_name = codec_type_name((event_type)t);
        char final_path[1400];
        extract_final_path(final_path, sizeof final_path, root, type_name, partition, first,
                           *next - 1);
        json_array_append_new(
            extracts, json_pack("{s:s,s:i,s:I,s:I,s:s,s:I}", "event_type", type_name, "partition",
                                (int)partition, "first_offset", (json_int_t)first, "last_offset",
                                (json_int_t)*next - 1, "path", final_path, "rows",
                                (json_int_t)rows));
    }
    rc = 0;
done:
    for (int t = 0; t < EVENT_TYPE_COUNT; t++)
        if (x.out[t]) avro_export_close(x.out[t], NULL, why, sizeof why);
    store_close(copy);
    return rc;
}

int snapshot_take(const snapshot_config *config, snapshot_result *result, char *errstr,
                  size_t errstr_size) {
    hdfs_url u;
    webhdfs *w = NULL;
    json_t *manifest = NULL, *files = NULL, *extracts = NULL;
    avro_export *tables[ANALYST_TABLE_COUNT] = {0};
    char dir[1024], path[1400], name[96], tmp_dir[1200], final_dir[1200], prev_id[64], why[256];
    int32_t partitions[STORE_MAX_PARTITIONS];
    int64_t next[STORE_MAX_PARTITIONS], prev[STORE_MAX_PARTITIONS];
    size_t source[STORE_MAX_PARTITIONS]; /* the index in known of prev's snapshot */
    size_t partition_count = 0, known_count = 0;
    snapshot_entry *known = NULL;
    int uploaded = 0, rc = -1, prev_same_set = 0;
    double started = clock_seconds();

    memset(result, 0, sizeof *result);
    if (parse_url(config->url, &u, errstr, errstr_size)) return -1;
    if (store_list_partitions(config->db_path, partitions, STORE_MAX_PARTITIONS, &partition_count,
                              errstr, errstr_size))
        return -1;
    if (partition_count == 0) {
        snprintf(errstr, errstr_size, "%s holds no partition stores (p<N>.db) to snapshot",
                 config->db_path);
        return -1;
    }
    if (config->owned) {
        /* Stale copies of partitions now folded elsewhere: snapshotting one would put an
         * old offset into the newest snapshot that holds it, which is where the owner's
         * next extract starts — records extracted twice, and restores that go back. */
        size_t owned_count = 0;
        for (size_t i = 0; i < partition_count; i++)
            if (config->owned(config->owned_opaque, partitions[i]) == 1)
                partitions[owned_count++] = partitions[i];
        if (owned_count == 0) {
            snprintf(errstr, errstr_size, "none of the %zu partition stores in %s (p%d.db, ...) "
                     "is of a partition this node owns now; nothing to snapshot",
                     partition_count, config->db_path, (int)partitions[0]);
            return -1;
        }
        partition_count = owned_count;
    }

    /* The id sorts by time: 20261129T081400123Z. */
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    char stamp[24], created_at[32];
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &tm);
    snprintf(result->id, sizeof result->id, "%.15s%03dZ", stamp, (int)(now.tv_nsec / 1000000L) % 1000);
    clock_iso8601_now(created_at, sizeof created_at);

    snprintf(dir, sizeof dir, "%s/lootlog-snapshot-%s-%d", config->work_dir, result->id,
             (int)getpid());
    if (mkdir(dir, 0700)) {
        snprintf(errstr, errstr_size, "mkdir %s: %s", dir, strerror(errno));
        return -1;
    }
    w = webhdfs_new(u.base, "root", config->timeout_ms, errstr, errstr_size);
    if (!w) goto done;

    /* 1. One consistent read of each partition's live store, all of them before
     * anything slower, so the copies are as close in time as they can be. */
    for (size_t i = 0; i < partition_count; i++)
        if (backup_partition(config->db_path, partitions[i], dir, errstr, errstr_size)) goto done;

    /* 2. Where the extracts start: per partition, the highest offset of the complete
     * snapshots of this topic that hold it (0 when none does) — whichever node took it,
     * as partitions move between nodes. The previous snapshot (for the manifest) is the
     * newest of this topic and partition set, else the newest holding any of them. */
    for (int p = 0; p < STORE_MAX_PARTITIONS; p++) {
        prev[p] = -1;
        source[p] = SIZE_MAX;
    }
    prev_id[0] = '\0';
    if (list_complete(w, &u, dir, partitions, partition_count, &known, &known_count, errstr,
                      errstr_size))
        goto done;
    /* A partition whose copy here is behind a snapshot that already holds it (this node
     * lost it, or is about to, and its new owner snapshotted it further on) is left out:
     * recorded at a lower offset, it would make the next extracts repeat records. */
    size_t fresh_count = 0;
    for (size_t i = 0; i < partition_count; i++) {
        int32_t p = partitions[i];
        int64_t here, newest = -1;
        if (copy_next_offset(dir, p, &here, errstr, errstr_size)) goto done;
        for (size_t k = 0; k < known_count; k++)
            if (entry_has(&known[k], p) && known[k].offsets[p] > newest) newest = known[k].offsets[p];
        if (here < newest) {
            log_info("snapshot", "partition %d left out: snapshot holds it at offset %lld, this "
                     "node's store is at %lld", (int)p, (long long)newest, (long long)here);
            continue;
        }
        partitions[fresh_count++] = p;
    }
    if (fresh_count == 0) {
        snprintf(errstr, errstr_size, "every partition here is behind a snapshot already taken "
                 "of it (owned elsewhere now); nothing to snapshot");
        goto done;
    }
    partition_count = fresh_count;
    for (size_t k = 0; k < known_count; k++) {
        const snapshot_entry *e = &known[k];
        if (strcmp(e->topic, config->topic) != 0) {
            /* Extract names carry partition and offsets, not the topic: two topics under
             * one root would overwrite each other's. */
            snprintf(errstr, errstr_size, "%s holds snapshots of topic '%.100s' (%s); give each "
                     "topic its own --snapshot-url root", config->url, e->topic, e->id);
            goto done;
        }
        int holds_ours = 0;
        for (size_t i = 0; i < partition_count; i++) {
            int32_t p = partitions[i];
            if (!entry_has(e, p)) continue;
            holds_ours = 1;
            if (e->offsets[p] > prev[p]) { /* the furthest on; of equals, the newest */
                prev[p] = e->offsets[p];
                source[p] = k;
            }
        }
        if (holds_ours && (e->same_set || !prev_id[0]) && !prev_same_set) {
            snprintf(prev_id, sizeof prev_id, "%s", e->id);
            prev_same_set = e->same_set;
        }
    }
    for (int p = 0; p < STORE_MAX_PARTITIONS; p++)
        if (prev[p] < 0) prev[p] = 0;
    /* The extracts this one continues must be in place first: a snapshot whose extracts
     * could not all be moved (its node failed, or lost the partition, before retrying)
     * has them moved here, for the partitions this snapshot takes from it. */
    for (size_t k = 0; k < known_count; k++) {
        unsigned char from_k[STORE_MAX_PARTITIONS] = {0};
        int any = 0;
        for (size_t i = 0; i < partition_count; i++)
            if (source[partitions[i]] == k) from_k[partitions[i]] = any = 1;
        if (any && finish_extracts(w, &u, known[k].id, from_k, dir, errstr, errstr_size))
            goto done;
    }

    /* 3. Analyst tables and extracts from the copies, one partition after another. */
    for (size_t t = 0; t < ANALYST_TABLE_COUNT; t++) {
        snprintf(path, sizeof path, "%s/%s", dir, analyst_tables[t].file);
        tables[t] = avro_export_open(path, analyst_tables[t].table, errstr, errstr_size);
        if (!tables[t]) goto done;
    }
    extracts = json_array();
    for (size_t i = 0; i < partition_count; i++) {
        int32_t p = partitions[i];
        if (read_copy(dir, p, prev[p], u.root, tables, config->cat, extracts, &next[p], errstr,
                      errstr_size))
            goto done;
    }
    json_t *row_counts = json_object();
    for (size_t t = 0; t < ANALYST_TABLE_COUNT; t++) {
        unsigned long long rows = 0;
        avro_export *out = tables[t];
        tables[t] = NULL;
        if (avro_export_close(out, &rows, errstr, errstr_size)) {
            json_decref(row_counts);
            goto done;
        }
        json_object_set_new(row_counts, avro_export_table_name(analyst_tables[t].table),
                            json_integer((json_int_t)rows));
    }

    /* 4. Manifest (its files and extracts get their sha256 as they are uploaded). */
    manifest = json_object();
    files = json_object();
    json_t *offsets_json = json_object(), *prev_json = json_object();
    for (size_t i = 0; i < partition_count; i++) {
        char key[16];
        int32_t p = partitions[i];
        snprintf(key, sizeof key, "%d", (int)p);
        json_object_set_new(offsets_json, key, json_integer(next[p]));
        json_object_set_new(prev_json, key, json_integer(prev[p]));
    }
    json_object_set_new(manifest, "id", json_string(result->id));
    json_object_set_new(manifest, "created_at", json_string(created_at));
    json_object_set_new(manifest, "topic", json_string(config->topic));
    json_object_set_new(manifest, "offsets", offsets_json);
    json_object_set_new(manifest, "previous_snapshot", prev_id[0] ? json_string(prev_id) : json_null());
    json_object_set_new(manifest, "previous_offsets", prev_json);
    json_object_set_new(manifest, "row_counts", row_counts);
    json_object_set_new(manifest, "schema_version", json_integer(SNAPSHOT_SCHEMA_VERSION));
    json_object_set_new(manifest, "lootlog_version", json_string(config->lootlog_version));
    json_object_set(manifest, "files", files);
    json_object_set(manifest, "extracts", extracts);

    /* 5. Upload into a temporary folder: the stores, the tables, the extracts. */
    /* The temporary name is this attempt's alone: another deployment under the same
     * root may be writing a snapshot of the same millisecond. */
    unsigned char nonce[6];
    char nonce_hex[13];
    if (getentropy(nonce, sizeof nonce)) {
        snprintf(errstr, errstr_size, "no randomness for a temporary name");
        goto done;
    }
    for (size_t i = 0; i < sizeof nonce; i++) snprintf(nonce_hex + 2 * i, 3, "%02x", nonce[i]);
    snprintf(tmp_dir, sizeof tmp_dir, "%s/snapshots/_tmp-%s-%s", u.root, result->id, nonce_hex);
    snprintf(final_dir, sizeof final_dir, "%s/snapshots/%s", u.root, result->id);
    if (webhdfs_mkdirs(w, tmp_dir, errstr, errstr_size)) goto done;
    uploaded = 1;
    for (size_t i = 0; i < partition_count + ANALYST_TABLE_COUNT; i++) {
        json_t *record = json_object();
        if (i < partition_count)
            snprintf(name, sizeof name, "p%d.db", (int)partitions[i]);
        else
            snprintf(name, sizeof name, "%s", analyst_tables[i - partition_count].file);
        json_object_set_new(files, name, record);
        if (upload(w, dir, name, tmp_dir, record, errstr, errstr_size)) goto done;
    }
    size_t e;
    json_t *entry;
    json_array_foreach(extracts, e, entry) {
        extract_file_name(name, sizeof name, json_string_value(json_object_get(entry, "event_type")),
                          (int32_t)json_integer_value(json_object_get(entry, "partition")));
        if (upload(w, dir, name, tmp_dir, entry, errstr, errstr_size)) goto done;
        result->events_extracted += (uint64_t)json_integer_value(json_object_get(entry, "rows"));
    }
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    if (json_dump_file(manifest, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) {
        snprintf(errstr, errstr_size, "writing %s failed", path);
        goto done;
    }
    if (upload(w, dir, "manifest.json", tmp_dir, NULL, errstr, errstr_size)) goto done;
    snprintf(path, sizeof path, "%s/_SUCCESS", tmp_dir);
    if (webhdfs_create_from_buffer(w, path, "", 0, 1, errstr, errstr_size)) goto done;

    /* 6. Into place: the snapshot folder in one strict rename (the commit: it never
     * lands inside an existing folder), then its extracts moved out of it one by one.
     * A failure between leaves a complete snapshot whose extracts the next attempt
     * moves first (finish_extracts), so no extract is ever visible without its
     * snapshot, and none is lost. */
    if (webhdfs_rename_strict(w, tmp_dir, final_dir, 0, errstr, errstr_size)) goto done;
    uploaded = 0;
    if (finish_extracts(w, &u, result->id, NULL, dir, errstr, errstr_size)) {
        char why_move[512];
        snprintf(why_move, sizeof why_move, "%s", errstr);
        snprintf(errstr, errstr_size, "snapshot %s is complete but moving its extracts failed "
                 "(the next attempt moves them): %s", result->id, why_move);
        goto done;
    }

    /* 7. Retention, partition by partition: an older snapshot goes once every partition
     * it holds is in config->retain newer complete snapshots of this topic (this one
     * included). One node with every partition keeps its newest `retain`; shards and the
     * nodes of a group, each snapshotting the partitions it has, never delete the newest
     * copies of a partition, whoever took them. */
    int retain = config->retain > 0 ? config->retain : 1;
    int newer[STORE_MAX_PARTITIONS] = {0};
    for (size_t i = 0; i < partition_count; i++) newer[partitions[i]]++;
    for (size_t k = 0; k < known_count; k++) {
        if (strcmp(known[k].topic, config->topic) != 0) continue;
        int covered = 1;
        for (int p = 0; p < STORE_MAX_PARTITIONS && covered; p++)
            covered = !entry_has(&known[k], p) || newer[p] >= retain;
        if (!covered) { /* kept: it counts as a newer copy for the older ones */
            for (int p = 0; p < STORE_MAX_PARTITIONS; p++) newer[p] += entry_has(&known[k], p);
            continue;
        }
        char old[1400];
        snprintf(old, sizeof old, "%s/snapshots/%s", u.root, known[k].id);
        if (webhdfs_delete(w, old, 1, why, sizeof why))
            log_warn("snapshot", "retention: %s", why);
    }
    result->seconds = clock_seconds() - started;
    rc = 0;
done:
    for (size_t t = 0; t < ANALYST_TABLE_COUNT; t++)
        if (tables[t]) avro_export_close(tables[t], NULL, why, sizeof why);
    /* Nothing outside the temporary folder was written before the commit. If HDFS is
     * gone this fails too; the folder's name starts with '_', which every reader skips. */
    if (w && uploaded && webhdfs_delete(w, tmp_dir, 1, why, sizeof why))
        log_warn("snapshot", "could not remove %s: %s", tmp_dir, why);
    free(known);
    json_decref(files);
    json_decref(extracts);
    json_decref(manifest);
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

/* Checks what a manifest lists before any of it is fetched: every name is a store file
 * or an analyst table (so joining it to a local folder stays inside that folder), and
 * at least one store is there. Returns the number of stores, or -1 with errstr. */
static int check_manifest_files(json_t *files, const char *id, char *errstr, size_t errstr_size) {
    const char *name;
    json_t *meta;
    int stores = 0;
    if (!json_is_object(files)) {
        snprintf(errstr, errstr_size, "manifest of %s has no files", id);
        return -1;
    }
    json_object_foreach(files, name, meta) {
        int32_t p;
        if (store_file_partition(name, &p)) stores++;
        else if (!is_analyst_file(name)) {
            snprintf(errstr, errstr_size, "manifest of %s lists '%.100s', not a file of a snapshot",
                     id, name);
            return -1;
        }
        if (!json_is_string(json_object_get(meta, "sha256"))) {
            snprintf(errstr, errstr_size, "manifest of %s has no sha256 for %s", id, name);
            return -1;
        }
    }
    if (stores == 0) {
        snprintf(errstr, errstr_size, "manifest of %s lists no partition store", id);
        return -1;
    }
    return stores;
}

int snapshot_manifest_check(const char *text, size_t len, char *errstr, size_t errstr_size) {
    json_error_t jerr;
    json_t *manifest = json_loadb(text, len, 0, &jerr);
    if (!manifest) {
        snprintf(errstr, errstr_size, "the manifest is not JSON (%s)", jerr.text);
        return -1;
    }
    int rc = check_manifest_files(json_object_get(manifest, "files"), "the snapshot", errstr,
                                  errstr_size);
    json_decref(manifest);
    return rc;
}

/* The files of one store: SQLite's journals beside it belong to that file alone, and a
 * leftover -wal beside another p<N>.db would be replayed into it. */
static const char *const store_file_suffixes[] = {"", "-wal", "-shm", "-journal"};
#define STORE_FILE_SUFFIX_COUNT (sizeof store_file_suffixes / sizeof store_file_suffixes[0])

/* Restore writes a folder of stores: db_path must be one, or not exist yet. */
static int check_store_folder(const char *db_path, char *errstr, size_t errstr_size) {
    struct stat sb;
    if (stat(db_path, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        snprintf(errstr, errstr_size, "%s exists and is not a folder; restore writes a folder of "
                 "partition stores", db_path);
        return -1;
    }
    return 0;
}

/* Downloads snapshot id's manifest into dir and checks what every restore checks before
 * fetching anything else: its schema version, its topic, and the names it lists
 * (check_manifest_files). Returns the manifest (caller decrefs), or NULL with errstr. */
static json_t *fetch_manifest(webhdfs *w, const hdfs_url *u, const char *id, const char *topic,
                              const char *dir, char *errstr, size_t errstr_size) {
    char remote[1400], local[1400];
    json_error_t jerr;
    snprintf(remote, sizeof remote, "%s/snapshots/%s/manifest.json", u->root, id);
    snprintf(local, sizeof local, "%s/manifest.json", dir);
    if (webhdfs_open_to_file(w, remote, local, errstr, errstr_size)) return NULL;
    json_t *manifest = json_load_file(local, 0, &jerr);
    if (!manifest) {
        snprintf(errstr, errstr_size, "manifest of %s: %s", id, jerr.text);
        return NULL;
    }
    json_int_t version = json_integer_value(json_object_get(manifest, "schema_version"));
    if (version != SNAPSHOT_SCHEMA_VERSION) {
        snprintf(errstr, errstr_size, "snapshot %s has schema version %lld%s; this lootlog "
                 "restores version %d", id, (long long)version,
                 version == 1 ? " (one state.db, from lootlog 0.1)" : "", SNAPSHOT_SCHEMA_VERSION);
        goto fail;
    }
    const char *snapshot_topic = json_string_value(json_object_get(manifest, "topic"));
    if (!snapshot_topic || strcmp(snapshot_topic, topic) != 0) {
        snprintf(errstr, errstr_size, "snapshot %s is of topic '%.100s', not '%s' (--topic)", id,
                 snapshot_topic ? snapshot_topic : "(none)", topic);
        goto fail;
    }
    if (check_manifest_files(json_object_get(manifest, "files"), id, errstr, errstr_size) < 0)
        goto fail;
    return manifest;
fail:
    json_decref(manifest);
    return NULL;
}

/* Downloads file name (checked by check_manifest_files) of snapshot id into dir and
 * checks it against meta, its record in the manifest: size, then sha256. Returns 0, or
 * -1 with errstr (the local copy may be left in dir). */
static int fetch_checked(webhdfs *w, const hdfs_url *u, const char *id, const char *name,
                         json_t *meta, const char *dir, char *errstr, size_t errstr_size) {
    char remote[1400], local[1400], hex[65];
    uint64_t bytes;
    snprintf(remote, sizeof remote, "%s/snapshots/%s/%s", u->root, id, name);
    snprintf(local, sizeof local, "%s/%s", dir, name);
    if (webhdfs_open_to_file(w, remote, local, errstr, errstr_size) ||
        file_sha256(local, hex, &bytes, errstr, errstr_size))
        return -1;
    const char *want = json_string_value(json_object_get(meta, "sha256"));
    json_t *want_bytes = json_object_get(meta, "bytes");
    if (!json_is_integer(want_bytes) || (uint64_t)json_integer_value(want_bytes) != bytes) {
        snprintf(errstr, errstr_size, "%s of snapshot %s: %llu bytes, manifest says %lld", name, id,
                 (unsigned long long)bytes,
                 json_is_integer(want_bytes) ? (long long)json_integer_value(want_bytes) : -1LL);
        return -1;
    }
    if (!want || strcmp(want, hex) != 0) {
        snprintf(errstr, errstr_size, "%s of snapshot %s: sha256 %s, manifest says %s", name, id,
                 hex, want ? want : "(none)");
        return -1;
    }
    return 0;
}

/* Moves every store file listed in files from dir into db_dir, none of them over
 * anything: a leftover -wal beside a new p<N>.db would be replayed into it. On failure
 * removes the ones it moved, so db_dir holds no store again. Returns 0 or -1. */
static int install_stores(json_t *files, const char *dir, const char *db_dir, char *errstr,
                          size_t errstr_size) {
    const char *name;
    json_t *meta;
    size_t moved = 0, undone = 0;
    json_object_foreach(files, name, meta) {
        int32_t p;
        char from[1400], to[4096];
        if (!store_file_partition(name, &p)) continue;
        for (size_t s = 0; s < STORE_FILE_SUFFIX_COUNT; s++) {
            snprintf(to, sizeof to, "%s/%s%s", db_dir, name, store_file_suffixes[s]);
            if (access(to, F_OK) == 0) {
                snprintf(errstr, errstr_size, "%s exists; restore installs into a folder without stores",
                         to);
                goto undo;
            }
        }
        snprintf(from, sizeof from, "%s/%s", dir, name);
        snprintf(to, sizeof to, "%s/%s", db_dir, name);
        if (rename(from, to)) {
            snprintf(errstr, errstr_size, "installing %s: %s", to, strerror(errno));
            goto undo;
        }
        moved++;
    }
    return 0;
undo:
    json_object_foreach(files, name, meta) {
        int32_t p;
        char to[4096];
        if (undone == moved) break;
        if (!store_file_partition(name, &p)) continue;
        snprintf(to, sizeof to, "%s/%s", db_dir, name);
        unlink(to);
        undone++;
    }
    return -1;
}

int snapshot_restore(const char *url, const char *id, const char *topic,
                     const int32_t *only_partitions, size_t only_count, const char *db_path,
                     const char *work_dir, long timeout_ms, char *id_out, char *errstr,
                     size_t errstr_size) {
    hdfs_url u;
    webhdfs *w = NULL;
    json_t *manifest = NULL;
    char dir[1024], chosen[64];
    int32_t partitions[STORE_MAX_PARTITIONS];
    size_t existing = 0;
    int rc = -1, made_folder = 0;

    if (parse_url(url, &u, errstr, errstr_size)) return -1;
    /* Into a folder without stores only: a restore never mixes with state that is there. */
    if (check_store_folder(db_path, errstr, errstr_size)) return -1;
    if (store_list_partitions(db_path, partitions, STORE_MAX_PARTITIONS, &existing, errstr,
                              errstr_size))
        return -1;
    if (existing) {
        snprintf(errstr, errstr_size, "%s already holds partition stores (p%d.db, ...); restore "
                 "into a new or empty folder", db_path, (int)partitions[0]);
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
        /* The newest of this topic (and exactly these partitions, when given): other
         * deployments may share the URL. */
        snapshot_entry *known = NULL;
        size_t known_count = 0;
        chosen[0] = '\0';
        if (list_complete(w, &u, dir, only_partitions, only_count, &known, &known_count, errstr,
                          errstr_size))
            goto done;
        for (size_t k = 0; k < known_count && !chosen[0]; k++)
            if (strcmp(known[k].topic, topic) == 0 && (only_count == 0 || known[k].same_set))
                snprintf(chosen, sizeof chosen, "%s", known[k].id);
        free(known);
        if (!chosen[0]) {
            snprintf(errstr, errstr_size, "no complete snapshot of topic '%s'%s under %s/snapshots",
                     topic, only_count ? " with exactly the given partitions" : "", u.root);
            goto done;
        }
    } else {
        snprintf(chosen, sizeof chosen, "%s", id);
    }
    manifest = fetch_manifest(w, &u, chosen, topic, dir, errstr, errstr_size);
    if (!manifest) goto done;
    json_t *files = json_object_get(manifest, "files");
    const char *name;
    json_t *meta;
    json_object_foreach(files, name, meta)
        if (fetch_checked(w, &u, chosen, name, meta, dir, errstr, errstr_size)) goto done;
    if (mkdir(db_path, 0755) == 0) made_folder = 1;
    else if (errno != EEXIST) {
        snprintf(errstr, errstr_size, "mkdir %s: %s", db_path, strerror(errno));
        goto done;
    }
    if (install_stores(files, dir, db_path, errstr, errstr_size)) goto done;
    snprintf(id_out, 32, "%.31s", chosen);
    rc = 0;
done:
    if (rc && made_folder) rmdir(db_path);
    json_decref(manifest);
    webhdfs_free(w);
    remove_local_dir(dir);
    return rc;
}

/* Opens the downloaded store dir/name of partition as serve's fold will (a writer:
 * pending migrations are applied here, not in the live folder) and checks that it holds
 * topic (or none recorded) and resumes at want_next. Returns 0 or -1 with errstr. */
static int check_restored_store(const char *dir, const char *name, int32_t partition,
                                const char *topic, int64_t want_next, char *errstr,
                                size_t errstr_size) {
    char path[1400], held[256];
    int64_t next = -1;
    int rc = -1;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    store *st = store_open(path, partition, STORE_WRITER, errstr, errstr_size);
    if (!st) return -1;
    if (store_get_topic(st, held, sizeof held) || store_get_next_offset(st, &next)) {
        snprintf(errstr, errstr_size, "%s: %s", path, store_errmsg(st));
        goto done;
    }
    if (held[0] && strcmp(held, topic) != 0) {
        snprintf(errstr, errstr_size, "%s holds the state of topic '%.100s', not '%s'", path, held,
                 topic);
        goto done;
    }
    /* A store that folded nothing resumes at 0, which is what its snapshot recorded. */
    if ((next < 0 ? 0 : next) != want_next) {
        snprintf(errstr, errstr_size, "%s resumes at offset %lld, its manifest says %lld", path,
                 (long long)next, (long long)want_next);
        goto done;
    }
    rc = 0;
done:
    store_close(st);
    /* Closing the only connection checkpoints and removes the WAL; a WAL left behind
     * would hold part of the store that the rename below does not move. */
    snprintf(path, sizeof path, "%s/%s-wal", dir, name);
    if (rc == 0 && access(path, F_OK) == 0) {
        snprintf(errstr, errstr_size, "%s was left after closing the restored store", path);
        rc = -1;
    }
    return rc;
}

/* Puts dir/name in the place of db_dir/name. The old store's files (name, -wal, -shm,
 * -journal) are first moved aside into dir, not deleted, so a failure puts them back and
 * leaves the old store as it was. Returns 0 or -1 with errstr. */
static int replace_store(const char *dir, const char *db_dir, const char *name, char *errstr,
                         size_t errstr_size) {
    char live[STORE_FILE_SUFFIX_COUNT][4096], aside[STORE_FILE_SUFFIX_COUNT][1400], from[1400];
    int moved[STORE_FILE_SUFFIX_COUNT] = {0};
    for (size_t s = 0; s < STORE_FILE_SUFFIX_COUNT; s++) {
        snprintf(live[s], sizeof live[s], "%s/%s%s", db_dir, name, store_file_suffixes[s]);
        snprintf(aside[s], sizeof aside[s], "%s/old-%s%s", dir, name, store_file_suffixes[s]);
        if (rename(live[s], aside[s]) == 0) moved[s] = 1;
        else if (errno != ENOENT) {
            snprintf(errstr, errstr_size, "moving %s aside: %s", live[s], strerror(errno));
            goto undo;
        }
    }
    snprintf(from, sizeof from, "%s/%s", dir, name);
    if (rename(from, live[0]) == 0) return 0;
    snprintf(errstr, errstr_size, "installing %s: %s", live[0], strerror(errno));
undo:
    for (size_t s = 0; s < STORE_FILE_SUFFIX_COUNT; s++)
        if (moved[s] && rename(aside[s], live[s]))
            log_warn("snapshot", "could not put %s back as %s: %s", aside[s], live[s],
                     strerror(errno));
    return -1;
}

int snapshot_restore_partition(const char *url, const char *topic, int32_t partition,
                               int64_t min_offset, const char *db_path, const char *work_dir,
                               long timeout_ms, char *id_out, int64_t *offset_out,
                               char *errstr, size_t errstr_size) {
    hdfs_url u;
    webhdfs *w = NULL;
    json_t *manifest = NULL;
    snapshot_entry *known = NULL;
    size_t known_count = 0;
    char dir[1024], name[32], chosen[64] = "";
    int64_t best = min_offset;
    int rc = -1;

    if (partition < 0 || partition >= STORE_MAX_PARTITIONS) {
        snprintf(errstr, errstr_size, "partition %d is not one a store can hold (0..%d)",
                 (int)partition, STORE_MAX_PARTITIONS - 1);
        return -1;
    }
    if (parse_url(url, &u, errstr, errstr_size) || check_store_folder(db_path, errstr, errstr_size))
        return -1;
    snprintf(name, sizeof name, "p%d.db", (int)partition);
    /* Per partition: the folds of several partitions may restore at the same time. */
    snprintf(dir, sizeof dir, "%s/lootlog-restore-p%d-%d", work_dir, (int)partition, (int)getpid());
    if (mkdir(dir, 0700) && errno != EEXIST) {
        snprintf(errstr, errstr_size, "mkdir %s: %s", dir, strerror(errno));
        return -1;
    }
    w = webhdfs_new(u.base, "root", timeout_ms, errstr, errstr_size);
    if (!w) goto done;

    /* The snapshot that takes the partition furthest: partitions move between nodes, so
     * the newest snapshot overall may not hold it, or may hold an older copy of it. */
    if (list_complete(w, &u, dir, NULL, 0, &known, &known_count, errstr, errstr_size)) goto done;
    for (size_t k = 0; k < known_count; k++) /* newest first: a tie keeps the newer */
        if (strcmp(known[k].topic, topic) == 0 && entry_has(&known[k], partition) &&
            known[k].offsets[partition] > best) {
            best = known[k].offsets[partition];
            snprintf(chosen, sizeof chosen, "%s", known[k].id);
        }
    if (!chosen[0]) {
        if (errstr_size) errstr[0] = '\0'; /* a root without snapshots says so there */
        rc = 0;
        goto done;
    }

    manifest = fetch_manifest(w, &u, chosen, topic, dir, errstr, errstr_size);
    if (!manifest) goto done;
    json_t *meta = json_object_get(json_object_get(manifest, "files"), name);
    if (!meta) {
        snprintf(errstr, errstr_size, "snapshot %s has an offset for partition %d but no %s",
                 chosen, (int)partition, name);
        goto done;
    }
    if (fetch_checked(w, &u, chosen, name, meta, dir, errstr, errstr_size) ||
        check_restored_store(dir, name, partition, topic, best, errstr, errstr_size))
        goto done;
    if (mkdir(db_path, 0755) && errno != EEXIST) {
        snprintf(errstr, errstr_size, "mkdir %s: %s", db_path, strerror(errno));
        goto done;
    }
    if (replace_store(dir, db_path, name, errstr, errstr_size)) goto done;
    snprintf(id_out, 32, "%.31s", chosen);
    *offset_out = best;
    rc = 1;
done:
    free(known);
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
    double last_seconds;     /* of the last successful snapshot */
    int64_t last_success_at; /* its Unix finish time; 0: none yet */
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
        int wait_s = backoff_s ? backoff_s : s->interval_s;
        if (wait_s > 0 || !s->triggered) {
            clock_deadline_in((int64_t)(wait_s > 0 ? wait_s : 3600) * 1000, &until);
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
            s->last_seconds = result.seconds;
            s->last_success_at = (int64_t)time(NULL);
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

void snapshot_scheduler_last_success(snapshot_scheduler *s, double *seconds, int64_t *unix_time) {
    pthread_mutex_lock(&s->lock);
    *seconds = s->last_seconds;
    *unix_time = s->last_success_at;
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
