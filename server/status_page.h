/* status_page: the HTML of GET /status — what an operator wants at a glance: readiness,
 * write and fold rates and lag per partition over the last minutes (inline SVG charts
 * from the registry's samples), the figures /metrics exports, recent snapshots, dead
 * letters and the item types players hold most. Self-contained: no script, no external
 * asset. */
#ifndef LOOTLOG_STATUS_PAGE_H
#define LOOTLOG_STATUS_PAGE_H

#include "server/metrics.h"

#include <stddef.h>

/* The page's reads of the stores (recent dead letters, totals per item type): the totals
 * scan whole tables, so a thread of the board's own does them, on connections of its
 * own, every STATUS_BOARD_EVERY_S seconds while the page is being looked at (and not at
 * all otherwise); the page shows the last result. */
#define STATUS_BOARD_EVERY_S 10
typedef struct status_board status_board;

/* db_dir (the folder of stores) must outlive the board. NULL with errstr on failure. */
status_board *status_board_start(const char *db_dir, char *errstr, size_t errstr_size);
/* Joins the thread and frees. NULL is a no-op. */
void status_board_stop(status_board *board);

typedef struct {
    const char *version;
    int ready;
    metrics *registry;
    const metrics_view *view;
    status_board *board; /* NULL with --no-fold */
} status_page_input;

/* Renders the page. Returns a malloc'ed string the caller frees, or NULL. */
char *status_page_render(const status_page_input *in);

#endif
