/* json_text: the two pieces of JSON text lootlog writes by hand where a jansson value per
 * field cost too much (the event encoder, the HTTP answers on the read path): integers
 * and the escapes inside strings, each exactly as jansson's compact dump writes them. */
#ifndef LOOTLOG_LIB_JSON_TEXT_H
#define LOOTLOG_LIB_JSON_TEXT_H

#include <stddef.h>
#include <stdint.h>

#define JSON_TEXT_INT_MAX 20 /* "-9223372036854775808" */

/* Writes value in decimal (as "%lld" would) into out, which holds JSON_TEXT_INT_MAX
 * bytes; no NUL. Returns the number of bytes written. */
size_t json_text_int(int64_t value, char *out);

/* 1 when byte c goes into a JSON string as it is: not '"', not '\\', not a control
 * character. Bytes of multi-byte UTF-8 are plain. */
static inline int json_text_plain(unsigned char c) {
    return c >= 0x20 && c != '"' && c != '\\';
}

/* Writes the escape of a byte that is not plain into out (6 bytes): the two-character
 * escapes by name, other control characters as \u00XX. Returns its length (2 or 6). */
size_t json_text_escape(unsigned char c, char *out);

#endif
