/*
 * block_rows.h — how many query rows one attention work item takes.
 *
 * Internal, header-only so that bench/attn_bench.c's GEMM floor makes the
 * very GEMM calls src/attend.c makes (the bench links the library's public
 * symbols only).
 *
 * Each block's Q·Kᵀ and P·V repack all of K and V inside OpenBLAS, so taller
 * blocks amortise that over more rows: measured on Zen 3 (d = 64 and 128,
 * L = 1024–8192), 256-row blocks ran 8–16% faster than 64-row ones, although
 * their logits no longer fit in L2. Causal blocks stay at 64 rows: a tall
 * block computes keys up to its last row's causal limit, which would cost
 * most of what causal skipping saves. Blocks shrink while their logits would
 * pass 4 MiB (what 64 rows need at len_kv = 16384, so long sequences use no
 * more memory than 64-row blocks would) and until one batch row has at least
 * 16 items (heads × blocks), so that threads stay busy on short inputs.
 *
 * The choice depends on the layer's shape only — never on the thread count
 * or the batch size: a row's bits can depend on its block (its GEMMs' M, and
 * the keys the block computes under per-query lengths; test_sdpa_random saw
 * 1 and 3 threads differ when the rows followed the thread count), and the
 * output must be bitwise the same whatever the threads, and for a sequence
 * whatever else is in the batch.
 */
#ifndef ATTN_BLOCK_ROWS_H
#define ATTN_BLOCK_ROWS_H

#include <stdbool.h>
#include <stdint.h>

#define ATTN_BLOCK_Q_MIN 64
#define ATTN_BLOCK_Q_MAX 256
#define ATTN_BLOCK_LOGITS_BYTES ((int64_t)4 << 20)

/* ceil(a / b) for a ≥ 0, b > 0, without a + b − 1 (len_q may be near
 * INT64_MAX when the batch is empty). */
static inline int64_t attn_ceil_div(int64_t a, int64_t b)
{
    return a / b + (a % b != 0);
}

/* Query rows per block for heads_q query heads of len_q rows against len_kv
 * keys; in [ATTN_BLOCK_Q_MIN, ATTN_BLOCK_Q_MAX]. */
static inline int64_t attn_query_block_rows(int64_t heads_q, int64_t len_q, int64_t len_kv,
                                            bool causal)
{
    if (causal)
        return ATTN_BLOCK_Q_MIN;
    int64_t rows = ATTN_BLOCK_Q_MAX;
    while (rows > ATTN_BLOCK_Q_MIN &&
           len_kv > ATTN_BLOCK_LOGITS_BYTES / (rows * (int64_t)sizeof(float)))
        rows /= 2;
    while (rows > ATTN_BLOCK_Q_MIN && heads_q * attn_ceil_div(len_q, rows) < 16)
        rows /= 2;
    return rows;
}

#endif
