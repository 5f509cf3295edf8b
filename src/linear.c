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

/* ---- gradients ------------------------------------------------------------ */

typedef struct linear_grad_job {
    int64_t rows, in_features, out_features;
    const float *x, *w, *dy;
    float beta;
    float *dx, *dw, *db;
} linear_grad_job;

static void input_grad_block(void *arg, int64_t item, int worker)
{
    (void)worker;
    const linear_grad_job *j = arg;
    int64_t r0 = item * ATTN_LINEAR_BLOCK;
    int64_t rows = j->rows - r0 < ATTN_LINEAR_BLOCK ? j->rows - r0 : ATTN_LINEAR_BLOCK;
    attn_gemm_nn(rows, j->in_features, j->out_features, 1.0f, j->dy + r0 * j->out_features,
                 j->out_features, j->w, j->in_features, j->beta, j->dx + r0 * j->in_features,
                 j->in_features);
}

void attn_linear_backward_input(attn_context *ctx, int threads, int64_t rows, int64_t in_features,
                                int64_t out_features, const float *dy, const float *w,
                                float beta, float *dx)
{
    const linear_grad_job job = {.rows = rows, .in_features = in_features,
                                 .out_features = out_features, .w = w, .dy = dy, .beta = beta,
                                 .dx = dx};
    if (attn_context_schedule(ctx) == ATTN_SCHEDULE_BLAS_THREADS)
        threads = 1;
    attn_context_run(ctx, threads, input_grad_block, (void *)&job, attn_linear_items(rows));
}

/* Output features per item of the parameter gradient. */
#define ATTN_LINEAR_FEATURE_BLOCK 64

int64_t attn_linear_param_items(int64_t out_features)
{
    return (out_features + ATTN_LINEAR_FEATURE_BLOCK - 1) / ATTN_LINEAR_FEATURE_BLOCK;
}

/* Features [o0, o0 + n): dW rows = dy[:, o0:o0+n]ᵀ · x in one GEMM over all
 * rows, and the bias gradient as column sums in double, row by row. */
static void param_grad_block(void *arg, int64_t item, int worker)
{
    (void)worker;
    const linear_grad_job *j = arg;
    int64_t o0 = item * ATTN_LINEAR_FEATURE_BLOCK;
    int64_t n = j->out_features - o0 < ATTN_LINEAR_FEATURE_BLOCK ? j->out_features - o0
                                                                 : ATTN_LINEAR_FEATURE_BLOCK;
    if (j->dw) {
        if (j->rows > 0)
            attn_gemm_tn(n, j->in_features, j->rows, 1.0f, j->dy + o0, j->out_features, j->x,
                         j->in_features, 0.0f, j->dw + o0 * j->in_features, j->in_features);
        else
            for (int64_t o = 0; o < n * j->in_features; o++)
                j->dw[o0 * j->in_features + o] = 0.0f;
    }
    if (!j->db)
        return;
    double sum[ATTN_LINEAR_FEATURE_BLOCK] = {0};
    for (int64_t r = 0; r < j->rows; r++)
        for (int64_t c = 0; c < n; c++)
            sum[c] += j->dy[r * j->out_features + o0 + c];
    for (int64_t c = 0; c < n; c++)
        j->db[o0 + c] = (float)sum[c];
}

void attn_linear_backward_params(attn_context *ctx, int threads, int64_t rows,
                                 int64_t in_features, int64_t out_features, const float *x,
                                 const float *dy, float *dw, float *db)
{
    const linear_grad_job job = {.rows = rows, .in_features = in_features,
                                 .out_features = out_features, .x = x, .dy = dy, .dw = dw,
                                 .db = db};
    if (attn_context_schedule(ctx) == ATTN_SCHEDULE_BLAS_THREADS)
        threads = 1;
    attn_context_run(ctx, threads, param_grad_block, (void *)&job,
                     attn_linear_param_items(out_features));
}
