/* log: stderr lines written with one fprintf each, so threads do not interleave. */
#include "log.h"

#include "codec.h"

#include <stdarg.h>
#include <stdio.h>

static void log_line(const char *level, const char *module, const char *fmt, va_list ap) {
    char ts[32], text[1024];
    codec_now_iso8601(ts, sizeof ts);
    vsnprintf(text, sizeof text, fmt, ap);
    fprintf(stderr, "%s %s %s: %s\n", ts, level, module, text);
}

#define LOG_AT(name, level)                                                                   \
    void name(const char *module, const char *fmt, ...) {                                     \
        va_list ap;                                                                           \
        va_start(ap, fmt);                                                                    \
        log_line(level, module, fmt, ap);                                                     \
        va_end(ap);                                                                           \
    }

LOG_AT(log_info, "info")
LOG_AT(log_warn, "warn")
LOG_AT(log_error, "error")
