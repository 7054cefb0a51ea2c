/* clock: monotonic and wall-clock time. */
#include "lib/clock.h"

#include <stdio.h>
#include <time.h>

int64_t clock_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double clock_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

void clock_deadline_in(int64_t ms, struct timespec *until) {
    clock_gettime(CLOCK_REALTIME, until);
    until->tv_sec += (time_t)(ms / 1000);
    until->tv_nsec += (long)(ms % 1000) * 1000000L;
    until->tv_sec += until->tv_nsec / 1000000000L;
    until->tv_nsec %= 1000000000L;
}

void clock_sleep_ms(int ms) {
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

void clock_iso8601_now(char *buf, size_t buf_size) {
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    char seconds[24];
    strftime(seconds, sizeof seconds, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, buf_size, "%s.%03ldZ", seconds, now.tv_nsec / 1000000L);
}
