/* embedded: files compiled into the binary by tools/embed.py (migrations, catalog). */
#ifndef LOOTLOG_EMBEDDED_H
#define LOOTLOG_EMBEDDED_H

typedef struct {
    const char *name;     /* base name, e.g. "0001_init.sql" */
    const char *contents; /* NUL-terminated text */
} embedded_file;

extern const embedded_file embedded_migrations[];
extern const int embedded_migrations_count;
extern const embedded_file embedded_catalog[];
extern const int embedded_catalog_count;

#endif
