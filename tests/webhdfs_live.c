/* webhdfs_live: checks hdfs/webhdfs.c against a real WebHDFS (round trips, listings,
 * renames, HDFS's refusals) and against broken servers made here (closed port, silent
 * server, a fake NameNode). Usage: webhdfs_live BASE_URL SCRATCH_DIR; SCRATCH_DIR is created
 * and removed. Prints one line per check and "N passed, M failed"; exits 1 on any failure. */
#include "hdfs/webhdfs.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BIG_FILE_BYTES (8u << 20)
#define TIMEOUT_MS 3000L

static int passed_count;
static int failed_count;

/* Records one check: "ok   name" or "FAIL name: why". Returns ok. */
static int check(int ok, const char *name, const char *why_fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int check(int ok, const char *name, const char *why_fmt, ...) {
    if (ok) {
        passed_count++;
        printf("ok   %s\n", name);
    } else {
        va_list ap;
        va_start(ap, why_fmt);
        failed_count++;
        printf("FAIL %s: ", name);
        vprintf(why_fmt, ap);
        printf("\n");
        va_end(ap);
    }
    fflush(stdout);
    return ok;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Writes bytes pseudo-random bytes (xorshift64*) to path. Returns 0 or -1. */
static int write_random_file(const char *path, size_t bytes, unsigned long long seed) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    unsigned char chunk[65536];
    unsigned long long state = seed | 1;
    for (size_t done = 0; done < bytes;) {
        for (size_t i = 0; i < sizeof chunk; i += 8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            unsigned long long v = state * 2685821657736338717ULL;
            memcpy(chunk + i, &v, 8);
        }
        size_t n = bytes - done < sizeof chunk ? bytes - done : sizeof chunk;
        if (fwrite(chunk, 1, n, f) != n) {
            fclose(f);
            return -1;
        }
        done += n;
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* Returns the offset of the first differing byte of two files, -1 when equal, or -2 when
 * one cannot be read. Sizes differing count as a difference at the shorter length. */
static long long first_difference(const char *a_path, const char *b_path) {
    FILE *a = fopen(a_path, "rb"), *b = fopen(b_path, "rb");
    long long result = -2;
    if (!a || !b) goto done;
    unsigned char a_buf[65536], b_buf[65536];
    long long offset = 0;
    for (;;) {
        size_t an = fread(a_buf, 1, sizeof a_buf, a), bn = fread(b_buf, 1, sizeof b_buf, b);
        size_t common = an < bn ? an : bn;
        for (size_t i = 0; i < common; i++)
            if (a_buf[i] != b_buf[i]) {
                result = offset + (long long)i;
                goto done;
            }
        if (an != bn) {
            result = offset + (long long)common;
            goto done;
        }
        if (an == 0) break;
        offset += (long long)an;
    }
    result = -1;
done:
    if (a) fclose(a);
    if (b) fclose(b);
    return result;
}

static long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* ---- broken servers ---------------------------------------------------------------------- */

/* A listening socket on 127.0.0.1 with an ephemeral port; returns the fd, writes the port. */
static int listen_local(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 8) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    *port = ntohs(addr.sin_port);
    return fd;
}

/* A fake NameNode: answers each connection with the next canned response, then closes. */
typedef struct {
    int listen_fd;
    const char **responses;
    size_t count;
} fake_server;

static void *fake_server_run(void *arg) {
    fake_server *fake = arg;
    for (size_t i = 0; i < fake->count; i++) {
        int conn = accept(fake->listen_fd, NULL, NULL);
        if (conn < 0) break;
        char request[8192];
        size_t have = 0;
        while (have < sizeof request - 1) {
            ssize_t n = read(conn, request + have, sizeof request - 1 - have);
            if (n <= 0) break;
            have += (size_t)n;
            request[have] = '\0';
            if (strstr(request, "\r\n\r\n")) break;
        }
        const char *response = fake->responses[i];
        if (write(conn, response, strlen(response)) < 0) perror("fake server write");
        close(conn);
    }
    return NULL;
}

static void check_unreachable(void) {
    char errstr[512];
    webhdfs *w = webhdfs_new("http://127.0.0.1:1", "root", TIMEOUT_MS, errstr, sizeof errstr);
    if (!check(w != NULL, "client for a closed port", "%s", errstr)) return;
    double start = now_s();
    int rc = webhdfs_mkdirs(w, "/x", errstr, sizeof errstr);
    double took = now_s() - start;
    check(rc == -1 && strstr(errstr, "cannot reach WebHDFS at http://127.0.0.1:1") &&
              strstr(errstr, "Connection refused") && took < TIMEOUT_MS / 1000.0 + 1,
          "closed port: \"cannot reach\" within the timeout", "rc %d after %.1fs: %s", rc, took,
          errstr);
    printf("     (%s)\n", errstr);
    webhdfs_free(w);
}

static void check_silent_server(void) {
    char errstr[512];
    char url[64];
    int port;
    int fd = listen_local(&port); /* never accepts: the kernel completes the handshake */
    if (!check(fd >= 0, "silent server socket", "cannot listen")) return;
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    webhdfs *w = webhdfs_new(url, "root", 1000, errstr, sizeof errstr);
    double start = now_s();
    int rc = w ? webhdfs_status(w, "/x", NULL, errstr, sizeof errstr) : -1;
    double took = now_s() - start;
    check(rc == -1 && strstr(errstr, "did not answer within 1000 ms") && took < 2.5,
          "silent server: \"did not answer\" within the timeout", "rc %d after %.1fs: %s", rc,
          took, errstr);
    printf("     (%s)\n", errstr);
    webhdfs_free(w);
    close(fd);
}

static void check_fake_namenode(void) {
    char to_silent_datanode[256];
    const char *responses[] = {
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:1/webhdfs/v1/x?op=CREATE"
        "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        to_silent_datanode,
        "HTTP/1.1 307 Temporary Redirect\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
        "{\"RemoteException\":{\"exception\":\"AccessControlException\",\"javaClassName\":"
        "\"org.apache.hadoop.security.AccessControlException\",\"message\":\"Permission denied: "
        "user=root, access=WRITE, inode=\\\"/x\\\":hdfs:supergroup:drwxr-xr-x\"}}",
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n"
        "<html><body>Error 404 Not Found</body></html>",
    };
    char errstr[512];
    char url[64];
    fake_server fake = {.responses = responses, .count = sizeof responses / sizeof *responses};
    int port, silent_port;
    pthread_t thread;
    int silent_fd = listen_local(&silent_port); /* a DataNode that takes the bytes, then hangs */
    snprintf(to_silent_datanode, sizeof to_silent_datanode,
             "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:%d/webhdfs/v1/x?"
             "op=OPEN\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", silent_port);
    fake.listen_fd = listen_local(&port);
    if (!check(fake.listen_fd >= 0 && pthread_create(&thread, NULL, fake_server_run, &fake) == 0,
               "fake NameNode", "cannot start it"))
        return;
    snprintf(url, sizeof url, "webhdfs://127.0.0.1:%d/", port);
    webhdfs *w = webhdfs_new(url, "root", TIMEOUT_MS, errstr, sizeof errstr);
    if (check(w != NULL, "client for the fake NameNode (webhdfs:// URL)", "%s", errstr)) {
        int rc = webhdfs_create_from_buffer(w, "/x", "hi", 2, 0, errstr, sizeof errstr);
        check(rc == -1 && strstr(errstr, "CREATE /x: cannot reach the DataNode at "
                                         "http://127.0.0.1:1: Connection refused"),
              "redirect to a dead DataNode", "rc %d: %s", rc, errstr);
        printf("     (%s)\n", errstr);
        char stall_local[64];
        snprintf(stall_local, sizeof stall_local, "/tmp/webhdfs_live-stall-%d", (int)getpid());
        double start = now_s();
        rc = webhdfs_open_to_file(w, "/x", stall_local, errstr, sizeof errstr);
        double took = now_s() - start;
        check(rc == -1 && strstr(errstr, "the transfer with the DataNode at") &&
                  strstr(errstr, "stalled") && took < TIMEOUT_MS / 1000.0 + 2 &&
                  file_size(stall_local) < 0,
              "a DataNode that stops answering: \"stalled\" after the timeout",
              "rc %d after %.1fs: %s", rc, took, errstr);
        printf("     (%s)\n", errstr);
        rc = webhdfs_create_from_buffer(w, "/x", "hi", 2, 0, errstr, sizeof errstr);
        check(rc == -1 && strstr(errstr, "redirected (307) without a Location"),
              "307 without a Location", "rc %d: %s", rc, errstr);
        printf("     (%s)\n", errstr);
        rc = webhdfs_mkdirs(w, "/x", errstr, sizeof errstr);
        check(rc == -1 && strstr(errstr, "MKDIRS /x: HDFS refused (403 AccessControlException: "
                                         "Permission denied: user=root"),
              "403 RemoteException as a sentence", "rc %d: %s", rc, errstr);
        printf("     (%s)\n", errstr);
        rc = webhdfs_status(w, "/x", NULL, errstr, sizeof errstr);
        check(rc == -1 && strstr(errstr, "404 without a RemoteException"),
              "a 404 that is not HDFS's is an error, not \"missing\"", "rc %d: %s", rc, errstr);
        printf("     (%s)\n", errstr);
    }
    webhdfs_free(w);
    shutdown(fake.listen_fd, SHUT_RDWR); /* wakes the thread should a request not arrive */
    pthread_join(thread, NULL);
    close(fake.listen_fd);
    if (silent_fd >= 0) close(silent_fd);
}

/* ---- against the real WebHDFS ------------------------------------------------------------ */

typedef struct {
    const char *name;
    long long length;
    int is_dir;
} expected_entry;

static void check_listing(webhdfs *w, const char *folder, const expected_entry *expected,
                          size_t expected_count) {
    char errstr[512];
    webhdfs_entry *entries = NULL;
    size_t count = 0;
    int missing = -1;
    int rc = webhdfs_list(w, folder, &entries, &count, &missing, errstr, sizeof errstr);
    int ok = rc == 0 && missing == 0 && count == expected_count;
    char why[768];
    snprintf(why, sizeof why, "rc %d, %zu entries (want %zu): %s", rc, count, expected_count,
             rc ? errstr : "");
    for (size_t i = 0; ok && i < expected_count; i++) {
        const webhdfs_entry *found = NULL;
        for (size_t j = 0; j < count; j++)
            if (strcmp(entries[j].name, expected[i].name) == 0) found = &entries[j];
        if (!found || found->length != expected[i].length || found->is_dir != expected[i].is_dir) {
            ok = 0;
            snprintf(why, sizeof why, "entry \"%s\": %s (length %lld, is_dir %d)", expected[i].name,
                     found ? "wrong" : "absent", found ? found->length : -1,
                     found ? found->is_dir : -1);
        }
    }
    check(ok, "list: names, lengths and types", "%s", why);
    for (size_t i = 0; i < count; i++)
        printf("     %-4s %10lld  %s\n", entries[i].is_dir ? "dir" : "file", entries[i].length,
               entries[i].name);
    free(entries);
}

int main(int argc, char **argv) {
    if (argc != 3 || argv[2][0] != '/') {
        fprintf(stderr, "usage: %s BASE_URL /SCRATCH/DIR  (e.g. http://127.0.0.1:9870 "
                        "/lootlog-test/webhdfs-1)\n", argv[0]);
        return 2;
    }
    const char *base_url = argv[1];
    const char *scratch = argv[2];
    char errstr[512];
    char sub[1024], deeper[1024], manifest[1024], success[1024], big[1024], renamed[1024];
    char strict_dir[1024], strict_moved[1024], missing_path[1024];
    char local_big[] = "/tmp/webhdfs_live-big-XXXXXX";
    char local_copy[] = "/tmp/webhdfs_live-copy-XXXXXX";
    const char *manifest_text = "{\"format\":1,\"files\":[\"big.bin\"]}\n";
    const char *manifest_text2 = "{\"format\":2,\"files\":[\"big.bin\",\"other.bin\"]}\n";
    webhdfs_entry entry = {0};
    int rc;

    snprintf(sub, sizeof sub, "%s/sub", scratch);
    snprintf(deeper, sizeof deeper, "%s/sub/deeper", scratch);
    snprintf(manifest, sizeof manifest, "%s/sub/manifest.json", scratch);
    snprintf(success, sizeof success, "%s/sub/_SUCCESS", scratch);
    snprintf(big, sizeof big, "%s/sub/big.bin", scratch);
    snprintf(renamed, sizeof renamed, "%s/sub/manifest +1 ü.json", scratch);
    snprintf(strict_dir, sizeof strict_dir, "%s/strict", scratch);
    snprintf(strict_moved, sizeof strict_moved, "%s/strict-moved", scratch);
    snprintf(missing_path, sizeof missing_path, "%s/no-such-thing", scratch);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    int big_fd = mkstemp(local_big), copy_fd = mkstemp(local_copy);
    if (big_fd < 0 || copy_fd < 0) {
        perror("mkstemp");
        return 2;
    }
    close(big_fd);
    close(copy_fd);

    webhdfs *w = webhdfs_new(base_url, "root", TIMEOUT_MS, errstr, sizeof errstr);
    if (!check(w != NULL, "webhdfs_new", "%s", errstr)) goto finish;

    rc = webhdfs_mkdirs(w, deeper, errstr, sizeof errstr);
    check(rc == 0, "mkdirs (with parents)", "%s", errstr);
    rc = webhdfs_mkdirs(w, deeper, errstr, sizeof errstr);
    check(rc == 0, "mkdirs of an existing folder", "%s", errstr);
    rc = webhdfs_status(w, sub, &entry, errstr, sizeof errstr);
    check(rc == 1 && entry.is_dir && entry.name[0] == '\0', "status: folder exists",
          "rc %d is_dir %d: %s", rc, entry.is_dir, errstr);
    rc = webhdfs_status(w, missing_path, &entry, errstr, sizeof errstr);
    check(rc == 0, "status: missing path gives 0", "rc %d: %s", rc, errstr);

    rc = webhdfs_create_from_buffer(w, manifest, manifest_text, strlen(manifest_text), 0, errstr,
                                    sizeof errstr);
    check(rc == 0, "create_from_buffer", "%s", errstr);
    rc = webhdfs_create_from_buffer(w, success, NULL, 0, 0, errstr, sizeof errstr);
    check(rc == 0, "create_from_buffer of an empty file (_SUCCESS)", "%s", errstr);

    if (write_random_file(local_big, BIG_FILE_BYTES, (unsigned long long)time(NULL)) != 0) {
        check(0, "write the local 8 MiB file", "%s", local_big);
    } else {
        double start = now_s();
        rc = webhdfs_create_from_file(w, big, local_big, 0, errstr, sizeof errstr);
        double took = now_s() - start;
        check(rc == 0, "create_from_file 8 MiB", "%s", errstr);
        printf("     (%.2fs, %.1f MiB/s)\n", took, BIG_FILE_BYTES / 1048576.0 / took);
    }
    rc = webhdfs_status(w, big, &entry, errstr, sizeof errstr);
    long long now_ms = (long long)time(NULL) * 1000;
    check(rc == 1 && !entry.is_dir && entry.length == BIG_FILE_BYTES &&
              llabs(entry.modification_time_ms - now_ms) < 600000,
          "status: file length and modification time", "rc %d length %lld mtime %lld: %s", rc,
          entry.length, entry.modification_time_ms, errstr);

    double start = now_s();
    rc = webhdfs_open_to_file(w, big, local_copy, errstr, sizeof errstr);
    double took = now_s() - start;
    long long difference = rc == 0 ? first_difference(local_big, local_copy) : -3;
    check(rc == 0 && difference == -1, "open_to_file: 8 MiB round trip byte for byte",
          "rc %d, first difference at %lld: %s", rc, difference, errstr);
    printf("     (%.2fs)\n", took);
    rc = webhdfs_open_to_file(w, success, local_copy, errstr, sizeof errstr);
    check(rc == 0 && file_size(local_copy) == 0, "open_to_file of an empty file",
          "rc %d size %lld: %s", rc, file_size(local_copy), errstr);
    unlink(local_copy);
    rc = webhdfs_open_to_file(w, missing_path, local_copy, errstr, sizeof errstr);
    check(rc == -1 && strstr(errstr, "FileNotFoundException") && file_size(local_copy) < 0,
          "open_to_file of a missing file fails and leaves no local file", "rc %d: %s", rc,
          errstr);
    printf("     (%s)\n", errstr);

    expected_entry listing[] = {
        {"_SUCCESS", 0, 0},
        {"big.bin", BIG_FILE_BYTES, 0},
        {"deeper", 0, 1},
        {"manifest.json", (long long)strlen(manifest_text), 0},
    };
    check_listing(w, sub, listing, sizeof listing / sizeof *listing);
    webhdfs_entry *entries = NULL;
    size_t count = 99;
    int missing = 0;
    rc = webhdfs_list(w, missing_path, &entries, &count, &missing, errstr, sizeof errstr);
    check(rc == -1 && missing == 1 && count == 0 && !entries && strstr(errstr, "does not exist"),
          "list of a missing folder", "rc %d missing %d: %s", rc, missing, errstr);
    printf("     (%s)\n", errstr);
    free(entries);

    rc = webhdfs_create_from_buffer(w, manifest, manifest_text2, strlen(manifest_text2), 0,
                                    errstr, sizeof errstr);
    check(rc == -1 && strstr(errstr, "HDFS refused") &&
              strstr(errstr, "FileAlreadyExistsException") && !strstr(errstr, "at org.apache"),
          "create with overwrite=0 on an existing file", "rc %d: %s", rc, errstr);
    printf("     (%s)\n", errstr);
    rc = webhdfs_create_from_buffer(w, manifest, manifest_text2, strlen(manifest_text2), 1,
                                    errstr, sizeof errstr);
    rc = rc == 0 ? webhdfs_status(w, manifest, &entry, errstr, sizeof errstr) : rc;
    check(rc == 1 && entry.length == (long long)strlen(manifest_text2),
          "create with overwrite=1 replaces", "rc %d length %lld: %s", rc, entry.length, errstr);

    rc = webhdfs_rename(w, manifest, renamed, errstr, sizeof errstr);
    int old_there = webhdfs_status(w, manifest, NULL, errstr, sizeof errstr);
    int new_there = webhdfs_status(w, renamed, NULL, errstr, sizeof errstr);
    check(rc == 0 && old_there == 0 && new_there == 1,
          "rename (to a name with a space, a plus and a non-ASCII letter)",
          "rc %d old %d new %d: %s", rc, old_there, new_there, errstr);
    rc = webhdfs_rename(w, big, renamed, errstr, sizeof errstr);
    check(rc == -1 && strstr(errstr, "already exists"), "rename onto an existing file fails",
          "rc %d: %s", rc, errstr);
    printf("     (%s)\n", errstr);
    rc = webhdfs_rename(w, missing_path, manifest, errstr, sizeof errstr);
    check(rc == -1 && strstr(errstr, "does not exist"), "rename of a missing source fails",
          "rc %d: %s", rc, errstr);
    printf("     (%s)\n", errstr);

    rc = webhdfs_mkdirs(w, strict_dir, errstr, sizeof errstr);
    rc = rc == 0 ? webhdfs_rename_strict(w, strict_dir, sub, 0, errstr, sizeof errstr) : 0;
    check(rc == -1 && strstr(errstr, "FileAlreadyExistsException"),
          "rename_strict onto an existing folder fails", "rc %d: %s", rc, errstr);
    printf("     (%s)\n", errstr);
    rc = webhdfs_rename_strict(w, strict_dir, strict_moved, 0, errstr, sizeof errstr);
    check(rc == 0 && webhdfs_status(w, strict_moved, NULL, errstr, sizeof errstr) == 1,
          "rename_strict to a new name", "rc %d: %s", rc, errstr);

    rc = webhdfs_create_from_file(w, big, "/nonexistent/local/file", 1, errstr, sizeof errstr);
    check(rc == -1 && strstr(errstr, "No such file"), "create_from_file of a missing local file",
          "rc %d: %s", rc, errstr);
    rc = webhdfs_mkdirs(w, "relative/path", errstr, sizeof errstr);
    check(rc == -1 && strstr(errstr, "absolute"), "a relative path is refused", "rc %d: %s", rc,
          errstr);

    rc = webhdfs_delete(w, sub, 0, errstr, sizeof errstr);
    check(rc == -1 && strstr(errstr, "HDFS refused"), "delete of a full folder needs recursive",
          "rc %d: %s", rc, errstr);
    printf("     (%s)\n", errstr);
    rc = webhdfs_delete(w, scratch, 1, errstr, sizeof errstr);
    int scratch_there = webhdfs_status(w, scratch, NULL, errstr, sizeof errstr);
    check(rc == 0 && scratch_there == 0, "delete recursive", "rc %d, still there %d: %s", rc,
          scratch_there, errstr);
    rc = webhdfs_delete(w, missing_path, 1, errstr, sizeof errstr);
    check(rc == 0, "delete of a missing path is fine", "%s", errstr);

    char webhdfs_url[512];
    const char *after_scheme = strstr(base_url, "://");
    snprintf(webhdfs_url, sizeof webhdfs_url, "webhdfs://%s/webhdfs/v1/",
             after_scheme ? after_scheme + 3 : base_url);
    webhdfs *w2 = webhdfs_new(webhdfs_url, "root", TIMEOUT_MS, errstr, sizeof errstr);
    rc = w2 ? webhdfs_status(w2, "/", &entry, errstr, sizeof errstr) : -1;
    check(rc == 1 && entry.is_dir, "a webhdfs://.../webhdfs/v1/ URL works", "%s: rc %d: %s",
          webhdfs_url, rc, errstr);
    webhdfs_free(w2);
    w2 = webhdfs_new("ftp://127.0.0.1:9870", "root", TIMEOUT_MS, errstr, sizeof errstr);
    check(w2 == NULL && strstr(errstr, "ftp://"), "an ftp:// URL is refused", "%s", errstr);
    webhdfs_free(w2);

finish:
    if (w) webhdfs_delete(w, scratch, 1, errstr, sizeof errstr); /* after a failure too */
    webhdfs_free(w);
    check_unreachable();
    check_silent_server();
    check_fake_namenode();
    unlink(local_big);
    unlink(local_copy);
    curl_global_cleanup();
    printf("%d passed, %d failed\n", passed_count, failed_count);
    return failed_count ? 1 : 0;
}
