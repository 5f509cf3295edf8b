/*
 * encoder_bench.c — attn-bench-encoder: the encoder layer's speed against
 * its GEMM floor, side by side in one process (issue 12's bench).
 *
 * For nn.TransformerEncoderLayer(d_model 512, nhead 8, dim_feedforward 2048,
 * post-norm, ReLU) at batch 1 and L = 512, 1024 (and a pre-norm GELU row),
 * each round times, in this order:
 *   1. the forward's floor: the layer's GEMMs alone as plain cblas_sgemm
 *      calls with the BLAS as the process has it (its default threads): the
 *      packed in_proj (one GEMM, n × 3d × d), per head S = Q Kᵀ and O = P V
 *      over all L keys, out_proj, linear1 and linear2;
 *   2. attn_encoder_layer_forward, inference (act NULL), the context at its
 *      default (or --threads N);
 *   3. the training step's floor: the forward's GEMMs and the backward's
 *      (dX and dW of the four linear products, and per head the five
 *      GEMMs of the attention's backward: S again, dV = Pᵀ dO, dP = dO Vᵀ,
 *      dQ = dS K, dK = dSᵀ Q);
 *   4. the training step: attn_encoder_layer_forward with act, then
 *      attn_encoder_layer_backward (d_src and d_params).
 * after one warm-up round; it prints the medians (--runs, default 7) as one
 * JSON line per configuration on stdout and a table on stderr, with the
 * ratios libattn / floor. bench/compare_torch_encoder.py runs it beside
 * PyTorch 1.13's layer.
 *
 * usage: attn-bench-encoder [--threads N] [--runs N] [--quick]
 */
#include <attn.h>
#include <cblas.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

typedef struct config {
    const char *name;
    int64_t len, d, heads, ff;
    attn_activation activation;
    int norm_first;
} config;

typedef struct problem {
    const config *c;
    int64_t n, count;
    float *src, *out, *d_out, *d_src, *params, *d_params;
    float *qkv, *s, *attn, *hidden, *dqkv, *ds;  /* the floor's buffers */
    attn_encoder_layer *layer;
    attn_activations *act;
    attn_context *ctx;
} problem;

static float *random_floats(size_t n, unsigned seed, float scale)
{
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "attn-bench-encoder: out of memory\n");
        exit(1);
    }
    uint64_t x = 0x9E3779B97F4A7C15ull * (seed + 1);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p[i] = scale * ((float)(x >> 40) / (float)(1 << 24) * 2.0f - 1.0f);
    }
    return p;
}

static void check(const char *what, attn_status st)
{
    if (st == ATTN_OK)
        return;
    fprintf(stderr, "attn-bench-encoder: %s: %s (%s)\n", what, attn_status_string(st),
            attn_last_error());
    exit(1);
}

static void problem_init(problem *p, const config *c, int threads)
{
    memset(p, 0, sizeof *p);
    p->c = c;
    p->n = c->len;  /* batch 1 */
    size_t nd = (size_t)(p->n * c->d), nf = (size_t)(p->n * c->ff);
    check("create", attn_encoder_layer_create(&p->layer, c->d, c->heads, c->ff, c->activation,
                                              c->norm_first, 1e-5f));
    check("param_count", attn_encoder_layer_param_count(p->layer, &p->count));
    p->params = random_floats((size_t)p->count, 1, 0.05f);
    check("set_params", attn_encoder_layer_set_params(p->layer, p->params));
    check("context", attn_context_create(&p->ctx));
    if (threads > 0)
        check("threads", attn_context_set_num_threads(p->ctx, threads));
    check("activations", attn_activations_create(&p->act));
    p->src = random_floats(nd, 2, 1.0f);
    p->out = random_floats(nd, 3, 1.0f);
    p->d_out = random_floats(nd, 4, 1.0f);
    p->d_src = random_floats(nd, 5, 1.0f);
    p->d_params = random_floats((size_t)p->count, 6, 1.0f);
    p->qkv = random_floats(3 * nd, 7, 1.0f);
    p->dqkv = random_floats(3 * nd, 8, 1.0f);
    p->s = random_floats((size_t)(c->len * c->len), 9, 1.0f);
    p->ds = random_floats((size_t)(c->len * c->len), 10, 1.0f);
    p->attn = random_floats(nd, 11, 1.0f);
    p->hidden = random_floats(nf, 12, 1.0f);
}

static void problem_free(problem *p)
{
    free(p->src), free(p->out), free(p->d_out), free(p->d_src), free(p->params);
    free(p->d_params), free(p->qkv), free(p->dqkv), free(p->s), free(p->ds), free(p->attn);
    free(p->hidden);
    attn_encoder_layer_destroy(p->layer);
    attn_activations_destroy(p->act);
    attn_context_destroy(p->ctx);
}

/* C[m×n] (+)= A[m×k] · B, B [n×k] (trans_b) or [k×n]; A [k×m] if trans_a. */
static void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b,
                (int)ldb, beta, c, (int)ldc);
}

/* The parameters' places in the flat vector (attn_encoder_layer_get_params). */
static const float *in_proj(const problem *p)
{
    return p->params;
}

static const float *out_proj(const problem *p)
{
    return p->params + 3 * p->c->d * p->c->d + 3 * p->c->d;
}

static const float *linear1(const problem *p)
{
    return out_proj(p) + p->c->d * p->c->d + p->c->d;
}

static const float *linear2(const problem *p)
{
    return linear1(p) + p->c->ff * p->c->d + p->c->ff;
}

static void floor_forward(problem *p)
{
    const config *c = p->c;
    int64_t n = p->n, d = c->d, ff = c->ff, L = c->len, hd = d / c->heads;
    gemm(false, true, n, 3 * d, d, p->src, d, in_proj(p), d, 0.0f, p->qkv, 3 * d);
    for (int64_t h = 0; h < c->heads; h++) {
        const float *q = p->qkv + h * hd, *k = q + d, *v = q + 2 * d;
        gemm(false, true, L, L, hd, q, 3 * d, k, 3 * d, 0.0f, p->s, L);
        gemm(false, false, L, hd, L, p->s, L, v, 3 * d, 0.0f, p->attn + h * hd, d);
    }
    gemm(false, true, n, d, d, p->attn, d, out_proj(p), d, 0.0f, p->out, d);
    gemm(false, true, n, ff, d, p->out, d, linear1(p), d, 0.0f, p->hidden, ff);
    gemm(false, true, n, d, ff, p->hidden, ff, linear2(p), ff, 0.0f, p->out, d);
}

static void floor_train(problem *p)
{
    const config *c = p->c;
    int64_t n = p->n, d = c->d, ff = c->ff, L = c->len, hd = d / c->heads;
    floor_forward(p);
    float *dp = p->d_params;
    /* linear2 and linear1: dX and dW */
    gemm(false, false, n, ff, d, p->d_out, d, linear2(p), ff, 0.0f, p->hidden, ff);
    gemm(true, false, d, ff, n, p->d_out, d, p->hidden, ff, 0.0f, dp, ff);
    gemm(false, false, n, d, ff, p->hidden, ff, linear1(p), d, 0.0f, p->d_src, d);
    gemm(true, false, ff, d, n, p->hidden, ff, p->out, d, 0.0f, dp, d);
    /* out_proj */
    gemm(false, false, n, d, d, p->d_src, d, out_proj(p), d, 0.0f, p->attn, d);
    gemm(true, false, d, d, n, p->d_src, d, p->attn, d, 0.0f, dp, d);
    /* the attention, per head */
    for (int64_t h = 0; h < c->heads; h++) {
        const float *q = p->qkv + h * hd, *k = q + d, *v = q + 2 * d, *d_o = p->attn + h * hd;
        float *dq = p->dqkv + h * hd, *dk = dq + d, *dv = dq + 2 * d;
        gemm(false, true, L, L, hd, q, 3 * d, k, 3 * d, 0.0f, p->s, L);
        gemm(true, false, L, hd, L, p->s, L, d_o, d, 0.0f, dv, 3 * d);
        gemm(false, true, L, L, hd, d_o, d, v, 3 * d, 0.0f, p->ds, L);
        gemm(false, false, L, hd, L, p->ds, L, k, 3 * d, 0.0f, dq, 3 * d);
        gemm(true, false, L, hd, L, p->ds, L, q, 3 * d, 0.0f, dk, 3 * d);
    }
    /* in_proj */
    gemm(false, false, n, d, 3 * d, p->dqkv, 3 * d, in_proj(p), d, 0.0f, p->d_src, d);
    gemm(true, false, 3 * d, d, n, p->dqkv, 3 * d, p->src, d, 0.0f, dp, d);
}

static void lib_forward(problem *p)
{
    check("forward", attn_encoder_layer_forward(p->ctx, p->layer, 1, p->c->len, p->src, NULL,
                                                p->out, NULL));
}

static void lib_train(problem *p)
{
    check("forward (training)", attn_encoder_layer_forward(p->ctx, p->layer, 1, p->c->len,
                                                           p->src, NULL, p->out, p->act));
    check("backward", attn_encoder_layer_backward(p->ctx, p->layer, p->act, p->d_out, p->d_src,
                                                  p->d_params));
}

static void measure(const config *c, int threads, int runs)
{
    problem p;
    problem_init(&p, c, threads);
    void (*const steps[4])(problem *) = {floor_forward, lib_forward, floor_train, lib_train};
    double t[4][64];
    for (int r = -1; r < runs; r++)  /* r = -1: the warm-up */
        for (int s = 0; s < 4; s++) {
            double t0 = bench_now();
            steps[s](&p);
            if (r >= 0)
                t[s][r] = bench_now() - t0;
        }
    double ms[4];
    for (int s = 0; s < 4; s++)
        ms[s] = bench_median(t[s], runs) * 1e3;
    printf("{\"name\":\"%s\",\"len\":%lld,\"d_model\":%lld,\"nhead\":%lld,\"dim_feedforward\":%lld,"
           "\"activation\":\"%s\",\"norm_first\":%d,\"threads\":%d,\"runs\":%d,"
           "\"fwd_ms\":%.4f,\"fwd_floor_ms\":%.4f,\"fwd_ratio\":%.3f,"
           "\"train_ms\":%.4f,\"train_floor_ms\":%.4f,\"train_ratio\":%.3f}\n",
           c->name, (long long)c->len, (long long)c->d, (long long)c->heads, (long long)c->ff,
           c->activation == ATTN_ACTIVATION_GELU ? "gelu" : "relu", c->norm_first, threads, runs,
           ms[1], ms[0], ms[1] / ms[0], ms[3], ms[2], ms[3] / ms[2]);
    fprintf(stderr, "%-34s %9.2f %9.2f %7.3f %9.2f %9.2f %7.3f\n", c->name, ms[1], ms[0],
            ms[1] / ms[0], ms[3], ms[2], ms[3] / ms[2]);
    fflush(stdout);
    problem_free(&p);
}

int main(int argc, char **argv)
{
    int threads = 0, runs = 7;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            quick = true;
        else {
            fprintf(stderr, "usage: attn-bench-encoder [--threads N] [--runs N] [--quick]\n");
            return 2;
        }
    }
    if (threads < 0 || threads > 1024 || runs < 1 || runs > 64) {
        fprintf(stderr, "usage: attn-bench-encoder [--threads N] [--runs N] [--quick]\n");
        return 2;
    }
    size_t n = attn_runtime_info(NULL, 0) + 1;
    char *info = malloc(n);
    if (info) {
        attn_runtime_info(info, n);
        fputs(info, stderr);
        free(info);
    }
    static const config configs[] = {
        {"encoder d512 h8 ff2048 L512", 512, 512, 8, 2048, ATTN_ACTIVATION_RELU, 0},
        {"encoder d512 h8 ff2048 L1024", 1024, 512, 8, 2048, ATTN_ACTIVATION_RELU, 0},
        {"encoder pre-norm gelu L512", 512, 512, 8, 2048, ATTN_ACTIVATION_GELU, 1},
    };
    char threads_text[16] = "default";
    if (threads)
        snprintf(threads_text, sizeof threads_text, "%d", threads);
    fprintf(stderr, "libattn %s, context threads %s, %d timed runs; floor: the layer's GEMMs "
                    "alone (cblas_sgemm, the BLAS as the process has it)\n",
            attn_version_string(), threads_text, runs);
    fprintf(stderr, "%-34s %9s %9s %7s %9s %9s %7s\n", "configuration", "fwd ms", "floor",
            "ratio", "train ms", "floor", "ratio");
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)
        if (!quick || configs[i].len <= 512)
            measure(&configs[i], threads, runs);
    return 0;
}
