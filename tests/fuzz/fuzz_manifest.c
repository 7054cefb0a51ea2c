/* fuzz_manifest: the snapshot manifest reader that restore trusts with file names
 * (snapshot_manifest_check). Properties: no crash; an accepted manifest names only
 * files restore may write inside its folder: "p<N>.db" written canonically with
 * N < STORE_MAX_PARTITIONS, or one of the analyst tables, each with a sha256; never a
 * path, "..", or two spellings of one store. */
#include "fuzz_check.h"
#include "hdfs/snapshot.h"
#include "state/store.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>

static int name_allowed(const char *name, size_t len) {
    static const char *const tables[] = {"inventory.avro", "guild_members.avro", "users.avro"};
    char canonical[32];
    int p;
    if (strlen(name) != len) return 0; /* no U+0000 inside */
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
        if (strcmp(name, tables[t]) == 0) return 1;
    if (sscanf(name, "p%d.db", &p) != 1 || p < 0 || p >= STORE_MAX_PARTITIONS) return 0;
    snprintf(canonical, sizeof canonical, "p%d.db", p);
    return strcmp(canonical, name) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char errstr[512];
    int stores = snapshot_manifest_check((const char *)data, size, errstr, sizeof errstr);
    if (stores < 0) {
        FUZZ_ASSERT(errstr[0] != '\0');
        return 0;
    }
    json_t *manifest = json_loadb((const char *)data, size, 0, NULL);
    json_t *files = json_object_get(manifest, "files"), *meta;
    const char *name;
    int counted = 0;
    FUZZ_ASSERT(json_is_object(files) && stores >= 1);
    json_object_foreach(files, name, meta) {
        FUZZ_ASSERT(name_allowed(name, strlen(name)));
        FUZZ_ASSERT(!strchr(name, '/') && !strstr(name, ".."));
        FUZZ_ASSERT(json_is_string(json_object_get(meta, "sha256")));
        counted += name[0] == 'p';
    }
    FUZZ_ASSERT(counted == stores);
    json_decref(manifest);
    return 0;
}
