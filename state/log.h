/* log: one line per message on stderr, "2026-11-29T08:14:00.123Z level module: text". */
#ifndef LOOTLOG_LOG_H
#define LOOTLOG_LOG_H

#define LOG_FORMAT(a, b) __attribute__((format(printf, a, b)))

void log_info(const char *module, const char *fmt, ...) LOG_FORMAT(2, 3);
void log_warn(const char *module, const char *fmt, ...) LOG_FORMAT(2, 3);
void log_error(const char *module, const char *fmt, ...) LOG_FORMAT(2, 3);

#endif
