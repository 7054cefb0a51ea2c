/* fuzz_token: the two small parsers of client text that end up as numbers: the
 * read-your-writes token "<p>:<o>" (?after=) and If-Match. Properties: no crash; what is
 * accepted is what lootlog itself writes (formatting the result back gives the input, but
 * for a token's leading zeros), so no value saturates or wraps. */
#include "fuzz_check.h"
#include "server/validate.h"

#include <stdint.h>
#include <string.h>

#define MAX_PARTITIONS 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char text[256], again[256];
    validate_error err;
    int32_t partition;
    int64_t offset, version;
    int any;
    size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(text, data, n);
    text[n] = '\0';

    if (validate_token(text, MAX_PARTITIONS, &partition, &offset, &err) == 0) {
        /* Leading zeros are the one liberty: without them, the text is the value. */
        char bare[256];
        const char *p = text, *colon = strchr(text, ':'), *o = colon + 1;
        FUZZ_ASSERT(partition >= 0 && partition < MAX_PARTITIONS && offset >= 0);
        while (p[0] == '0' && p + 1 < colon) p++;
        while (o[0] == '0' && o[1] != '\0') o++;
        snprintf(bare, sizeof bare, "%.*s:%s", (int)(colon - p), p, o);
        snprintf(again, sizeof again, "%d:%lld", (int)partition, (long long)offset);
        FUZZ_ASSERT(strcmp(again, bare) == 0);
    } else {
        FUZZ_ASSERT(err.status == 400 && strcmp(err.code, "invalid_token") == 0);
    }

    if (validate_if_match(text, &version, &any, &err) == 0) {
        /* Only optional white space around the one tag (or *) may differ. */
        const char *p = text + strspn(text, " \t");
        size_t len = strlen(p);
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
        if (any) {
            FUZZ_ASSERT(len == 1 && p[0] == '*');
        } else {
            FUZZ_ASSERT(version >= 0 && version <= 999999999999999999LL);
            snprintf(again, sizeof again, "\"%lld\"", (long long)version);
            FUZZ_ASSERT(strlen(again) == len && memcmp(again, p, len) == 0);
        }
    } else if (err.status == 412) {
        FUZZ_ASSERT(strcmp(err.code, "precondition_failed") == 0 && strstr(text, "W/"));
    } else {
        FUZZ_ASSERT(err.status == 400 && (strcmp(err.code, "invalid_if_match") == 0 ||
                                          strcmp(err.code, "if_match_out_of_range") == 0));
    }
    return 0;
}
