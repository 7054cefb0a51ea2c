/* sha256: FIPS 180-4 SHA-256, streaming, for the checksums of snapshot files. */
#ifndef LOOTLOG_SHA256_H
#define LOOTLOG_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t state[8];
    uint64_t length_bits;
    unsigned char block[64];
    size_t block_used;
} sha256_ctx;

void sha256_init(sha256_ctx *ctx);
void sha256_update(sha256_ctx *ctx, const void *data, size_t len);
/* Writes the digest as 64 lowercase hex digits and a NUL to hex (>= 65 bytes). */
void sha256_final_hex(sha256_ctx *ctx, char *hex);

/* Hashes a whole file by streaming it. Returns 0 with hex filled, or -1 with errstr. */
int sha256_file(const char *path, char *hex, uint64_t *bytes, char *errstr, size_t errstr_size);

#endif
