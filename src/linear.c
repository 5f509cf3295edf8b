/*
 * linear.c — y = x Wᵀ + b, the projection of torch.nn.Linear.
 *
 * The rows (batch × sequence) are split into fixed blocks, each one
 * cblas_sgemm plus its bias, run on the context's threads: the caller's BLAS
 * may be single-threaded (as libattn's threading contract recommends), and
 * a projection is then no slower than the attention beside it. The blocks do
 * not depend on the thread count, so neither do the results.
 */
#include "attn_internal.h"

/* Rows per block: large enough for the GEMM to run at full speed (M = 256
 * against K, N of a few hundred), small enough to share out. */
#define ATTN_LINEAR_BLOCK 256

typedef struct linear_job {
    int64_t rows, in_features, out_features;
    const float *x, *w, *b;
    float *y;
} linear_job;

static void linear_block(void *arg, int64_t item, int worker)
{
    (void)worker;
    const linear_job *j = arg;
    int64_t r0 = item * ATTN_LINEAR_BLOCK;
    int64_t rows = j->rows - r0 < ATTN_LINEAR_BLOCK ? j->rows - r0 : ATTN_LINEAR_BLOCK;
    float *y = j->y + r0 * j->out_features;
    attn_gemm_nt(rows, j->out_features, j->in_features, 1.0f, j->x + r0 * j->in_features,
                 j->in_features, j->w, j->in_features, 0.0f, y, j->out_features);
    if (!j->b)
        return;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < j->out_features; c++)
            y[r * j->out_features + c] += j->b[c];
}

int64_t attn_linear_items(int64_t rows)
{
    return (rows + ATTN_LINEAR_BLOCK - 1) / ATTN_LINEAR_BLOCK;
}

void attn_linear(attn_context *ctx, int threads, int64_t rows, int64_t in_features,
                 int64_t out_features, const float *x, const float *w, const float *b, float *y)
{
    const linear_job job = {rows, in_features, out_features, x, w, b, y};
    if (attn_context_schedule(ctx) == ATTN_SCHEDULE_BLAS_THREADS)
        threads = 1;  /* the BLAS spreads each block's GEMM over its own threads */
    attn_context_run(ctx, threads, linear_block, (void *)&job, attn_linear_items(rows));
}
