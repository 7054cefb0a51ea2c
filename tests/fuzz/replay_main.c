/* replay_main: the test suite's driver of a fuzz target without libFuzzer. Feeds every
 * file of the corpus folders given as arguments to LLVMFuzzerTestOneInput, once each, so
 * the committed corpora (crashes found included) run in every build, ASan's too. A
 * target reports a broken property by aborting. Exit 0 when every file ran, 1 when a
 * folder could not be read or held no file. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads path whole into a malloc'ed buffer (exactly *size bytes, no terminator added:
 * the targets must not rely on one). Returns NULL when it cannot be read. */
static uint8_t *read_whole(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    long len;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (data = malloc(len ? (size_t)len : 1)) && fread(data, 1, (size_t)len, f) == (size_t)len) {
        *size = (size_t)len;
    } else {
        free(data);
        data = NULL;
    }
    fclose(f);
    return data;
}

int main(int argc, char **argv) {
    int failed = 0;
    for (int a = 1; a < argc; a++) {
        DIR *dir = opendir(argv[a]);
        struct dirent *entry;
        size_t files = 0;
        if (!dir) {
            fprintf(stderr, "cannot open corpus folder %s\n", argv[a]);
            failed = 1;
            continue;
        }
        while ((entry = readdir(dir))) {
            char path[4096];
            size_t size;
            if (entry->d_name[0] == '.') continue;
            snprintf(path, sizeof path, "%s/%s", argv[a], entry->d_name);
            uint8_t *data = read_whole(path, &size);
            if (!data) {
                fprintf(stderr, "cannot read %s\n", path);
                failed = 1;
                continue;
            }
            LLVMFuzzerTestOneInput(data, size);
            free(data);
            files++;
        }
        closedir(dir);
        printf("%s: %zu inputs replayed\n", argv[a], files);
        if (files == 0) failed = 1;
    }
    return failed || argc < 2;
}
