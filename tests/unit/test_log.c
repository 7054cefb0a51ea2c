/* Unit test of lib/log: each line of either format is one line whatever the message
 * holds (newlines, control bytes, invalid UTF-8, quotes), and a JSON line is a JSON object
 * with ts, level, module, msg and the fields, even when cut at the line's size limit. */
#include "check.h"
#include "lib/log.h"

#include <jansson.h>
#include <stdlib.h>
#include <unistd.h>

/* Runs the log calls of one case with stderr captured; returns what was written. */
static char *captured(void (*write_lines)(void)) {
    static char text[65536];
    FILE *capture = tmpfile();
    int saved = dup(STDERR_FILENO);
    fflush(stderr);
    dup2(fileno(capture), STDERR_FILENO);
    write_lines();
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(capture);
    size_t n = fread(text, 1, sizeof text - 1, capture);
    text[n] = '\0';
    fclose(capture);
    return text;
}

static size_t line_count(const char *text) {
    size_t n = 0;
    for (const char *p = text; *p; p++) n += *p == '\n';
    return n;
}

static void hostile_lines(void) {
    log_with(LOG_WARN, "fold", LOG_FIELDS(LOG_NUM("partition", 3), LOG_NUM("offset", 17),
                                          LOG_STR("event_id", "e\n\"1\"")),
             "dead letter: %s", "bad \"x\"\nforged line \x01\xff\xc3\x28 \xe2\x82\xac end");
    log_info("serve", "plain %d", 42);
}

static void long_line(void) {
    char big[4000];
    memset(big, '\x01', sizeof big - 1); /* each byte escapes to six */
    big[sizeof big - 1] = '\0';
    log_with(LOG_ERROR, "fold", LOG_FIELDS(LOG_NUM("partition", 1), LOG_STR("note", big)), "%s",
             big);
}

int main(void) {
    log_set_format(LOG_FORMAT_JSON);
    char *text = captured(hostile_lines);
    CHECK(line_count(text) == 2);
    char *second = strchr(text, '\n') + 1;
    second[-1] = '\0';
    json_error_t error;
    json_t *line = json_loads(text, 0, &error);
    CHECK(line != NULL);
    if (line) {
        CHECK_STR(json_string_value(json_object_get(line, "level")), "warn");
        CHECK_STR(json_string_value(json_object_get(line, "module")), "fold");
        CHECK(strlen(json_string_value(json_object_get(line, "ts"))) == 24);
        CHECK_STR(json_string_value(json_object_get(line, "msg")),
                  "dead letter: bad \"x\"\nforged line \x01\xef\xbf\xbd\xef\xbf\xbd( \xe2\x82\xac end");
        CHECK(json_integer_value(json_object_get(line, "partition")) == 3);
        CHECK(json_integer_value(json_object_get(line, "offset")) == 17);
        CHECK_STR(json_string_value(json_object_get(line, "event_id")), "e\n\"1\"");
        json_decref(line);
    }
    line = json_loads(second, 0, &error);
    CHECK(line && strcmp(json_string_value(json_object_get(line, "msg")), "plain 42") == 0);
    json_decref(line);

    text = captured(long_line);
    CHECK(line_count(text) == 1 && strlen(text) <= 8192);
    line = json_loads(text, 0, &error);
    CHECK(line != NULL); /* cut, and still one JSON object */
    CHECK(line && json_string_value(json_object_get(line, "msg"))[0] == '\x01');
    json_decref(line);

    log_set_format(LOG_FORMAT_TEXT);
    text = captured(hostile_lines);
    CHECK(line_count(text) == 2);
    CHECK(strstr(text, " warn fold: dead letter: bad \\\"x\\\"\\nforged line \\x01\\xff\\xc3( "
                       "\xe2\x82\xac end partition=3 offset=17 event_id=\"e\\n\\\"1\\\"\"\n") != NULL);
    CHECK(strstr(text, " info serve: plain 42\n") != NULL);
    return check_finish("log");
}
