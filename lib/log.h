/* log: one line per message on stderr, as text ("2026-11-29T08:14:00.123Z warn fold:
 * dead letter: ... partition=3 offset=17") or as one JSON object per line ({"ts",
 * "level", "module", "msg", then the call site's fields}). Control characters and bytes
 * that are not UTF-8 are escaped in both formats, so no message can forge a line and no
 * raw payload byte reaches the log. */
#ifndef LOOTLOG_LOG_H
#define LOOTLOG_LOG_H

#include <stddef.h>
#include <stdint.h>

#define LOG_FORMAT(a, b) __attribute__((format(printf, a, b)))

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;
typedef enum { LOG_FORMAT_TEXT, LOG_FORMAT_JSON } log_format;

/* A named value the line carries beside its message (JSON: a key of its own). */
typedef struct {
    const char *key;
    int is_text;
    const char *text; /* when is_text (NULL is written as "") */
    int64_t number;   /* otherwise */
} log_field;

#define LOG_NUM(k, v) ((log_field){.key = (k), .is_text = 0, .number = (int64_t)(v)})
#define LOG_STR(k, v) ((log_field){.key = (k), .is_text = 1, .text = (v)})
/* Expands to the two arguments log_with takes for its fields: LOG_FIELDS(LOG_NUM(...), ...) */
#define LOG_FIELDS(...)                                                                       \
    (const log_field[]){__VA_ARGS__}, sizeof((const log_field[]){__VA_ARGS__}) / sizeof(log_field)

/* Chooses the format of every later line (text by default). Call at start-up, before any
 * thread that logs is started. */
void log_set_format(log_format format);

void log_info(const char *module, const char *fmt, ...) LOG_FORMAT(2, 3);
void log_warn(const char *module, const char *fmt, ...) LOG_FORMAT(2, 3);
void log_error(const char *module, const char *fmt, ...) LOG_FORMAT(2, 3);

/* A line with fields, e.g.
 * log_with(LOG_WARN, "fold", LOG_FIELDS(LOG_NUM("partition", 3)), "dead letter: %s", why). */
void log_with(log_level level, const char *module, const log_field *fields, size_t field_count,
              const char *fmt, ...) LOG_FORMAT(5, 6);

#endif
