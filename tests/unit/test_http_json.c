/* Unit test of server/http's JSON writers (http_json_string, http_json_integer), which
 * write GET /inventory's body without building a jansson tree: every string and integer
 * must come out byte for byte as jansson's compact dump writes it, so the hand-written
 * path and the jansson path of the same answer can never differ. */
#include "check.h"
#include "server/http.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

/* What jansson writes for text as a JSON string. */
static char *jansson_string(const char *text) {
    json_t *s = json_string(text);
    char *out = s ? json_dumps(s, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(s);
    return out;
}

static char *drained(struct evbuffer *buf) {
    size_t len = evbuffer_get_length(buf);
    char *out = malloc(len + 1);
    evbuffer_remove(buf, out, len);
    out[len] = '\0';
    return out;
}

static void same_as_jansson(const char *text) {
    struct evbuffer *buf = evbuffer_new();
    CHECK(http_json_string(buf, text) == 0);
    char *ours = drained(buf), *theirs = jansson_string(text);
    CHECK_STR(ours, theirs);
    free(ours);
    free(theirs);
    evbuffer_free(buf);
}

int main(void) {
    /* every single byte jansson accepts as a one-character string (ASCII), alone and
     * between other text */
    for (int c = 1; c < 0x80; c++) {
        char one[2] = {(char)c, 0}, framed[8] = {'a', (char)c, 'b', (char)c, 0};
        same_as_jansson(one);
        same_as_jansson(framed);
    }
    const char *cases[] = {"", "sword", "user-1_x.y", "quote\"back\\slash/slash",
                           "tab\tnl\ncr\rbs\bff\f", "\x01\x1f\x7f", "caf\xc3\xa9 \xe2\x82\xac",
                           "\xf0\x9f\x97\xa1 emoji", "long-0123456789012345678901234567890123456789"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) same_as_jansson(cases[i]);
    /* random valid UTF-8 strings of printable and control ASCII and 2-4 byte sequences */
    srand(7);
    for (int round = 0; round < 2000; round++) {
        char text[256];
        size_t at = 0;
        while (at < sizeof text - 5 && rand() % 40) {
            int kind = rand() % 4;
            if (kind == 0) text[at++] = (char)(1 + rand() % 0x7f);
            else if (kind == 1) { text[at++] = (char)0xc3; text[at++] = (char)(0x80 + rand() % 64); }
            else if (kind == 2) { text[at++] = (char)0xe2; text[at++] = (char)0x82; text[at++] = (char)0xac; }
            else { text[at++] = 'a' + rand() % 26; }
        }
        text[at] = '\0';
        same_as_jansson(text);
    }
    const int64_t numbers[] = {0, 1, -1, 9, 10, 99, 1000000007, -1000000007, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        struct evbuffer *buf = evbuffer_new();
        CHECK(http_json_integer(buf, numbers[i]) == 0);
        char *ours = drained(buf);
        json_t *n = json_integer(numbers[i]);
        char *theirs = json_dumps(n, JSON_COMPACT | JSON_ENCODE_ANY);
        CHECK_STR(ours, theirs);
        free(ours);
        free(theirs);
        json_decref(n);
        evbuffer_free(buf);
    }
    return check_finish("http_json");
}
