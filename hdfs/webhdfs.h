/* webhdfs: a small blocking client for HDFS's REST interface (WebHDFS) on libcurl. Files
 * stream between local disk and the DataNodes; every failure comes back as one sentence.
 * The caller runs curl_global_init(CURL_GLOBAL_DEFAULT) once at program start. */
#ifndef LOOTLOG_WEBHDFS_H
#define LOOTLOG_WEBHDFS_H

#include <stddef.h>

/* One client: a base URL, a user name and one curl handle. Use it from one thread at a
 * time; several clients may run in parallel threads. */
typedef struct webhdfs webhdfs;

typedef struct {
    char name[256];                  /* last path component; empty from webhdfs_status */
    int is_dir;                      /* 1 for a directory, 0 for a file (or a symlink) */
    long long length;                /* bytes; 0 for a directory */
    long long modification_time_ms;  /* milliseconds since the epoch */
} webhdfs_entry;

/* Returns a client for the NameNode's HTTP address base_url, "http://127.0.0.1:9870"
 * ("https://", "webhdfs://" (= http, default port 9870) and "swebhdfs://" (= https, 9871)
 * also work; a trailing "/webhdfs/v1" is dropped). user goes out as user.name on every
 * call (NULL or "" sends none). timeout_ms (> 0) bounds connecting and each NameNode call;
 * transfers to and from DataNodes instead fail when no byte moves for that long. Free with
 * webhdfs_free. On failure returns NULL and writes a sentence to errstr. */
webhdfs *webhdfs_new(const char *base_url, const char *user, long timeout_ms, char *errstr,
                     size_t errstr_size);

/* Closes the client's connections and frees it; NULL is fine. */
void webhdfs_free(webhdfs *w);

/* All paths below are absolute HDFS paths ("/a/b c"); they are percent-encoded here.
 * Every call returns 0 on success, or -1 with a sentence in errstr naming the operation,
 * the path and what went wrong: the server cannot be reached, did not answer in time, or
 * HDFS refused, quoting its RemoteException ("CREATE /x: HDFS refused (403
 * AccessControlException: ...)"). */

/* Creates path and any missing parents (op=MKDIRS); an existing folder is fine. */
int webhdfs_mkdirs(webhdfs *w, const char *path, char *errstr, size_t errstr_size);

/* Writes the local file local_path to hdfs_path (two-step op=CREATE: the NameNode
 * redirects to a DataNode, which gets the bytes streamed from disk). Missing parent folders
 * are created. With overwrite 0 an existing hdfs_path fails (FileAlreadyExistsException).
 * On failure a partial file may remain at hdfs_path: write to a temporary name and rename. */
int webhdfs_create_from_file(webhdfs *w, const char *hdfs_path, const char *local_path,
                             int overwrite, char *errstr, size_t errstr_size);

/* Same, from the len bytes at data (data may be NULL when len is 0: an empty file). */
int webhdfs_create_from_buffer(webhdfs *w, const char *hdfs_path, const void *data, size_t len,
                               int overwrite, char *errstr, size_t errstr_size);

/* Renames from to to (op=RENAME). HDFS's classic rename: when to is an existing folder,
 * from is moved into it. Returns -1 when HDFS answers false, with a sentence saying why
 * (source missing, destination exists, destination's parent missing). */
int webhdfs_rename(webhdfs *w, const char *from, const char *to, char *errstr,
                   size_t errstr_size);

/* Renames from to exactly to (op=RENAME&renameoptions=...), never into a folder. When to
 * exists this fails (FileAlreadyExistsException) unless overwrite is 1, which replaces a
 * file or an empty folder. Returns -1 with HDFS's own reason otherwise. */
int webhdfs_rename_strict(webhdfs *w, const char *from, const char *to, int overwrite,
                          char *errstr, size_t errstr_size);

/* Deletes path (op=DELETE); a non-empty folder needs recursive 1. A missing path is not an
 * error: returns 0. */
int webhdfs_delete(webhdfs *w, const char *path, int recursive, char *errstr,
                   size_t errstr_size);

/* Lists folder path (op=LISTSTATUS; a file lists as itself with an empty name). Writes a
 * malloc'ed array to *entries (the caller frees it with free(); NULL when *count is 0) and
 * its length to *count. When path does not exist returns -1 with "does not exist" in errstr
 * and sets *missing to 1 (missing may be NULL); otherwise *missing is 0. */
int webhdfs_list(webhdfs *w, const char *path, webhdfs_entry **entries, size_t *count,
                 int *missing, char *errstr, size_t errstr_size);

/* Looks path up (op=GETFILESTATUS). Returns 1 and fills *entry (its name left empty; entry
 * may be NULL) when path exists, 0 when it does not, -1 on error. */
int webhdfs_status(webhdfs *w, const char *path, webhdfs_entry *entry, char *errstr,
                   size_t errstr_size);

/* Reads hdfs_path (op=OPEN, then from the DataNode it redirects to) into local_path, which
 * is created or truncated once the NameNode has redirected, and written as the bytes
 * arrive. A failure after that removes local_path; one before leaves it untouched. */
int webhdfs_open_to_file(webhdfs *w, const char *hdfs_path, const char *local_path,
                         char *errstr, size_t errstr_size);

#endif
