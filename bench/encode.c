/* encode: times state/codec's hand-written event encoder beside jansson (the library it
 * replaced: a tree per event, dumped compact and in order) and beside copying the same
 * bytes (the ceiling: what producing the JSON costs at the least), on the same events;
 * checks that every event encodes to jansson's exact bytes. bench/run.py runs it
 * (benchmark 9) and reads the JSON it prints.
 *
 *   build/bench_encode [EVENTS]
 */
#include "state/codec.h"
#include "tests/unit/reference_encode.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* Events as HTTP writes bring them: purchases of one to three items (a few with a
 * price), consumptions and guild joins, each with a client event id and the request's
 * metadata. */
static void make_event(event *ev, unsigned *seed, size_t i) {
    static const char *const items[] = {"sword", "potion", "arrow", "shield", "gem", "bow"};
    static const char *const agents[] = {"LootClient/3.2 (Android 14; Pixel 8)",
                                         "LootClient/3.2 (iOS 18.1; iPhone15,2)",
                                         "Mozilla/5.0 (X11; Linux x86_64) \"support tool\""};
    memset(ev, 0, sizeof *ev);
    ev->version = 1;
    int kind = rand_r(seed) % 10;
    ev->type = kind < 6 ? EVENT_PURCHASE_ITEM : kind < 9 ? EVENT_CONSUME_ITEM : EVENT_JOIN_GUILD;
    codec_uuid4(ev->event_id, sizeof ev->event_id);
    snprintf(ev->user_id, sizeof ev->user_id, "player%d", rand_r(seed) % 100000);
    snprintf(ev->ts, sizeof ev->ts, "2026-12-04T12:%02zu:%02zu.%03zuZ", i / 60000 % 60,
             i / 1000 % 60, i % 1000);
    if (ev->type == EVENT_JOIN_GUILD) {
        snprintf(ev->guild_id, sizeof ev->guild_id, "guild%d", rand_r(seed) % 500);
    } else {
        ev->item_count = ev->type == EVENT_CONSUME_ITEM ? 1 : 1 + (size_t)(rand_r(seed) % 3);
        for (size_t k = 0; k < ev->item_count; k++) {
            snprintf(ev->items[k].item_type, sizeof ev->items[k].item_type, "%s",
                     items[rand_r(seed) % 6]);
            ev->items[k].quantity = 1 + rand_r(seed) % 5;
            ev->items[k].has_unit_price = rand_r(seed) % 4 == 0;
            ev->items[k].unit_price = 100 + rand_r(seed) % 900;
        }
    }
    ev->has_expected_version = rand_r(seed) % 5 == 0;
    ev->expected_version = rand_r(seed) % 50;
    snprintf(ev->metadata.remote_addr, sizeof ev->metadata.remote_addr, "10.%d.%d.%d",
             rand_r(seed) % 256, rand_r(seed) % 256, rand_r(seed) % 256);
    snprintf(ev->metadata.host, sizeof ev->metadata.host, "lootlog.example:8080");
    snprintf(ev->metadata.user_agent, sizeof ev->metadata.user_agent, "%s",
             agents[rand_r(seed) % 3]);
    snprintf(ev->metadata.accept_language, sizeof ev->metadata.accept_language,
             "en-US,en;q=0.9");
}

int main(int argc, char **argv) {
    size_t count = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 200000;
    event *events = calloc(count ? count : 1, sizeof *events);
    char **ours = calloc(count ? count : 1, sizeof *ours);
    char **theirs = calloc(count ? count : 1, sizeof *theirs);
    char *copies = NULL;
    if (!events || !ours || !theirs || count == 0) {
        fprintf(stderr, "encode: cannot hold %zu events\n", count);
        return 2;
    }
    unsigned seed = 20261204;
    for (size_t i = 0; i < count; i++) make_event(&events[i], &seed, i);

    /* Best of three passes each, in turn, so a slow moment of the machine hits all. */
    double best_ours = 0, best_jansson = 0, best_copy = 0;
    size_t bytes = 0, identical = 0, refused = 0;
    for (int pass = 0; pass < 3; pass++) {
        double t0 = now_ns();
        for (size_t i = 0; i < count; i++) {
            char errstr[128];
            size_t len;
            free(ours[i]);
            ours[i] = codec_encode(&events[i], &len, errstr, sizeof errstr);
            refused += ours[i] == NULL;
        }
        double t1 = now_ns();
        for (size_t i = 0; i < count; i++) {
            free(theirs[i]);
            theirs[i] = reference_encode(&events[i]);
        }
        double t2 = now_ns();
        if (!copies) {
            for (size_t i = 0; i < count; i++) bytes += ours[i] ? strlen(ours[i]) : 0;
            copies = malloc(bytes + 1);
            if (!copies) return 2;
        }
        /* The ceiling: the same bytes, each event's copied into place as one block. */
        char *at = copies;
        for (size_t i = 0; i < count; i++) {
            size_t n = ours[i] ? strlen(ours[i]) : 0;
            memcpy(at, ours[i], n);
            at += n;
        }
        double t3 = now_ns();
        size_t same = 0;
        for (size_t i = 0; i < count; i++)
            same += theirs[i] && ours[i] && strcmp(theirs[i], ours[i]) == 0;
        if (pass == 0 || t1 - t0 < best_ours) best_ours = t1 - t0;
        if (pass == 0 || t2 - t1 < best_jansson) best_jansson = t2 - t1;
        if (pass == 0 || t3 - t2 < best_copy) best_copy = t3 - t2;
        identical = same;
    }
    printf("{\"events\": %zu, \"bytes_per_event\": %.1f, \"identical\": %zu, \"refused\": %zu, "
           "\"lootlog_ns\": %.1f, \"jansson_ns\": %.1f, \"copy_ns\": %.1f, \"a_copied_byte\": %d}\n",
           count, (double)bytes / (double)count, identical, refused, best_ours / (double)count,
           best_jansson / (double)count, best_copy / (double)count, copies[bytes / 2]);
    for (size_t i = 0; i < count; i++) free(ours[i]), free(theirs[i]);
    free(ours);
    free(theirs);
    free(events);
    free(copies);
    return identical == count ? 0 : 1;
}
