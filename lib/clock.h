/* clock: the one clock helper of lootlog. Durations and deadlines use the monotonic clock
 * (it never jumps when the wall clock is set); event and file times use the wall clock,
 * in UTC, in the one text form lootlog writes. */
#ifndef LOOTLOG_LIB_CLOCK_H
#define LOOTLOG_LIB_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Monotonic milliseconds, for deadlines and durations. */
int64_t clock_ms(void);

/* Monotonic seconds with a fraction, for rates and timings. */
double clock_seconds(void);

/* The instant ms milliseconds from now on the wall clock, the clock a pthread condition
 * variable waits by unless told otherwise (pthread_cond_timedwait's deadline). */
void clock_deadline_in(int64_t ms, struct timespec *until);

/* Sleeps ms milliseconds (a signal may end it early). */
void clock_sleep_ms(int ms);

/* The wall clock now as "2026-11-29T08:14:00.123Z" (ISO 8601, UTC, milliseconds) into
 * buf (>= 25 bytes). */
void clock_iso8601_now(char *buf, size_t buf_size);

#endif
