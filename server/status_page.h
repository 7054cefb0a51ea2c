/* status_page: the HTML of GET /status — what an operator wants at a glance: readiness,
 * the fold's progress and lag, writes, snapshots — rendered from the /metrics view. */
#ifndef LOOTLOG_STATUS_PAGE_H
#define LOOTLOG_STATUS_PAGE_H

#include "metrics.h"

/* Renders the page. Returns a malloc'ed string the caller frees, or NULL. */
char *status_page_render(const metrics_view *view, const char *version, int ready);

#endif
