/* fold: the deterministic rules of design.md ("Fold rules"). Every check happens before
 * the first write of an event, so a rejected event leaves no trace but its outcome,
 * without needing a savepoint. The catalog is deliberately not consulted: validity of
 * item types is decided at the HTTP edge, so a replay gives the same state whatever the
 * catalog file says today. */
#include "fold.h"

#include <stdio.h>
#include <string.h>

const char *fold_outcome_name(fold_outcome outcome) {
    switch (outcome) {
    case FOLD_APPLIED: return "applied";
    case FOLD_REJECTED: return "rejected";
    case FOLD_DUPLICATE: return "duplicate";
    case FOLD_DEAD_LETTER: return "dead_lettered";
    }
    return "unknown";
}

/* A cart line merged by item type: carts may name a type twice. */
typedef struct {
    const char *item_type;
    int64_t quantity;
    int64_t held;
} merged_line;

static size_t merge_lines(const event *ev, merged_line *merged) {
    size_t count = 0;
    for (size_t i = 0; i < ev->item_count; i++) {
        size_t j = 0;
        while (j < count && strcmp(merged[j].item_type, ev->items[i].item_type) != 0) j++;
        if (j == count) {
            merged[count].item_type = ev->items[i].item_type;
            merged[count].quantity = 0;
            count++;
        }
        /* At most 50 lines of at most 1e6: no overflow here. */
        merged[j].quantity += ev->items[i].quantity;
    }
    return count;
}

static void reject(fold_result *result, const char *reason) {
    result->outcome = FOLD_REJECTED;
    snprintf(result->reason, sizeof result->reason, "%s", reason);
}

/* Purchases and consumptions: all lines are checked, then all are written. */
static int apply_items(store *st, const event *ev, int sign, fold_result *result) {
    merged_line merged[CODEC_MAX_ITEMS];
    size_t count = merge_lines(ev, merged);
    for (size_t i = 0; i < count; i++) {
        if (store_get_quantity(st, ev->user_id, merged[i].item_type, &merged[i].held)) return -1;
        if (sign < 0 && merged[i].held < merged[i].quantity) {
            reject(result, "insufficient_quantity");
            return 0;
        }
        if (sign > 0 && merged[i].held > INT64_MAX - merged[i].quantity) {
            reject(result, "quantity_overflow");
            return 0;
        }
    }
    for (size_t i = 0; i < count; i++) {
        int64_t next = merged[i].held + sign * merged[i].quantity;
        if (store_set_quantity(st, ev->user_id, merged[i].item_type, next)) return -1;
    }
    return 0;
}

static int apply_join(store *st, const fold_config *config, const event *ev,
                      store_player *player, fold_result *result) {
    if (player->guild_id[0]) {
        if (strcmp(player->guild_id, ev->guild_id) != 0) reject(result, "already_in_guild");
        return 0; /* joining the guild one is in: applied, nothing changes */
    }
    int64_t members;
    if (store_get_guild_count(st, ev->guild_id, &members)) return -1;
    if (members >= config->guild_capacity) {
        reject(result, "guild_full");
        return 0;
    }
    if (store_add_member(st, ev->guild_id, ev->user_id, ev->ts, members + 1)) return -1;
    snprintf(player->guild_id, sizeof player->guild_id, "%s", ev->guild_id);
    return 0;
}

static int apply_leave(store *st, const event *ev, store_player *player, fold_result *result) {
    if (!player->guild_id[0]) {
        reject(result, "not_in_guild");
        return 0;
    }
    int64_t members;
    if (store_get_guild_count(st, player->guild_id, &members)) return -1;
    if (store_remove_member(st, player->guild_id, ev->user_id, members > 0 ? members - 1 : 0))
        return -1;
    player->guild_id[0] = '\0';
    return 0;
}

int fold_event(store *st, const fold_config *config, const event *ev, int32_t partition,
               int64_t offset, fold_result *result) {
    store_player player;
    int rc = 0;
    memset(result, 0, sizeof *result);
    snprintf(result->user_id, sizeof result->user_id, "%s", ev->user_id);
    result->outcome = FOLD_APPLIED;

    int claimed = store_claim_event_id(st, ev->event_id, ev->user_id, partition, offset);
    if (claimed < 0) return -1;
    if (claimed == 0) {
        result->outcome = FOLD_DUPLICATE;
    } else if (ev->type != EVENT_DEFAULT) {
        int exists = store_get_player(st, ev->user_id, &player);
        if (exists < 0) return -1;
        if (ev->has_expected_version && ev->expected_version != player.version) {
            reject(result, "version_conflict");
        } else {
            switch (ev->type) {
            case EVENT_PURCHASE_SWORD:
            case EVENT_PURCHASE_ITEM: rc = apply_items(st, ev, +1, result); break;
            case EVENT_CONSUME_ITEM: rc = apply_items(st, ev, -1, result); break;
            case EVENT_JOIN_GUILD: rc = apply_join(st, config, ev, &player, result); break;
            case EVENT_LEAVE_GUILD: rc = apply_leave(st, ev, &player, result); break;
            default: break;
            }
            if (rc) return -1;
            if (result->outcome == FOLD_APPLIED) {
                player.version++;
                if (store_put_player(st, ev->user_id, &player, partition, ev->ts)) return -1;
            }
        }
    }

    /* The items as the history shows them: compact JSON, only for item events. */
    char items_json[CODEC_MAX_ITEMS * 96 + 8];
    items_json[0] = '\0';
    if (ev->item_count > 0) {
        size_t used = 0;
        used += (size_t)snprintf(items_json + used, sizeof items_json - used, "[");
        for (size_t i = 0; i < ev->item_count && used < sizeof items_json; i++)
            used += (size_t)snprintf(items_json + used, sizeof items_json - used,
                                     "%s{\"item_type\":\"%s\",\"quantity\":%lld}", i ? "," : "",
                                     ev->items[i].item_type, (long long)ev->items[i].quantity);
        if (used < sizeof items_json) snprintf(items_json + used, sizeof items_json - used, "]");
    }
    store_event_record rec = {
        .partition = partition,
        .offset = offset,
        .event_id = ev->event_id,
        .event_type = codec_type_name(ev->type),
        .user_id = ev->user_id,
        .outcome = fold_outcome_name(result->outcome),
        .reason = result->outcome == FOLD_REJECTED ? result->reason : NULL,
        .ts = ev->ts,
        .items_json = items_json[0] ? items_json : NULL,
        .guild_id = ev->guild_id[0] ? ev->guild_id : NULL,
    };
    return store_record_event(st, &rec);
}

int fold_message(store *st, const fold_config *config, int32_t partition, int64_t offset,
                 const void *key, size_t key_len, const void *value, size_t value_len,
                 fold_result *result) {
    char reason[FOLD_REASON_MAX];
    event ev_storage; /* ~20 KiB; the fold thread's stack holds it comfortably */
    event *ev = &ev_storage;

    memset(result, 0, sizeof *result);
    if (!value || value_len == 0) {
        snprintf(reason, sizeof reason, "empty message");
    } else if (value_len > FOLD_MESSAGE_MAX) {
        snprintf(reason, sizeof reason, "oversize message (%zu bytes)", value_len);
    } else if (codec_decode(value, value_len, ev, reason, sizeof reason) == 0) {
        if (!key || key_len != strlen(ev->user_id) || memcmp(key, ev->user_id, key_len) != 0) {
            snprintf(reason, sizeof reason, "message key is not the event's user_id");
        } else {
            return fold_event(st, config, ev, partition, offset, result);
        }
    }
    result->outcome = FOLD_DEAD_LETTER;
    snprintf(result->reason, sizeof result->reason, "%s", reason);
    size_t kept = value_len < FOLD_DEAD_LETTER_PAYLOAD_MAX ? value_len : FOLD_DEAD_LETTER_PAYLOAD_MAX;
    size_t key_kept = key_len < 256 ? key_len : 256;
    return store_record_dead_letter(st, partition, offset, reason, key, key_kept, value, kept);
}
