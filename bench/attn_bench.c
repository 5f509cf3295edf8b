/*
 * attn_bench.c — libattn's speed and memory against its GEMM floor.
 *
 * For each configuration it measures, in the same process and interleaved
 * (floor, libattn, floor, libattn, ...), after one warm-up of each:
 *   - libattn: attn_sdpa_forward (or attn_mha_forward) with weights = NULL;
 *   - the floor: the cblas_sgemm calls the same computation needs and nothing
 *     else (Q·Kᵀ and P·V per head, causal halves skipped the same way; for
 *     decode the two cblas_sgemv; for MHA the four projections too), split
 *     over the same number of threads, each thread taking whole heads.
 *   - libattn at its best setting: the same call with the BLAS set to one
 *     thread (by this program, for its own process) and a context with all
 *     cores (or --threads N): what OPENBLAS_NUM_THREADS=1 gives.
 * The floor always runs with the BLAS on one thread and the heads split over
 * all cores (or --threads N), the fastest way to make those GEMMs here; the
 * BLAS's thread count is put back before libattn runs as the user has it.
 * With no flags, libattn runs exactly as a program that creates a context and
 * changes nothing gets it; --threads N sets the context's thread count.
 * It reports the medians of the timed runs, GFLOP/s (4·B·H·Lq·Lkv·d, halved
 * for causal), the ratios time / floor of both libattn settings, and
 * libattn's peak extra memory, measured in a child process as the growth of
 * its peak RSS across one call. One JSON line per configuration goes to
 * stdout, a table to stderr.
 *
 * --backward measures attn_sdpa_backward instead (all three gradients, from
 * out and lse of one forward made beforehand, untimed) on the SDPA shapes
 * from L = 1024 on, against its own floor: the five cblas_sgemm calls per
 * block of src/backward.c (S = Q_blk·Kᵀ, dV += Pᵀ·dO_blk, dP = dO_blk·Vᵀ,
 * dQ_blk = dS·K, dK += dSᵀ·Q_blk) with the same shapes, leading dimensions,
 * alphas and betas, the items (batch row, kv head) split over the threads,
 * nothing else. The same rounds also time attn_sdpa_forward (with lse, as a
 * training step calls it) as run, for the ratio backward / forward.
 * --backward also measures the multi-head layer's training step (rows
 * "mha-bwd ..."): one attn_mha_forward_train and one attn_mha_backward
 * (self-attention with bias: one input passed as query, key and value, its
 * gradient one shared buffer, and d_params), as run and at the best
 * setting, with the forward_train alone timed in the same rounds. These rows
 * have no GEMM floor (null in the JSON, "-" in the table); PyTorch's
 * nn.MultiheadAttention is their reference (bench/compare_torch.py
 * --backward).
 *
 * usage: attn-bench [--threads N] [--runs N] [--quick] [--filter SUBSTRING] [--backward]
 */
#define _GNU_SOURCE
#include <attn.h>
#include <cblas.h>

#include "bench_util.h"
#include "block_rows.h"

#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef enum kind { SDPA, MHA, SDPA_BWD, MHA_BWD } kind;

typedef struct config {
    char name[64];
    kind kind;
    int64_t batch, heads_q, heads_kv, len_q, len_kv, dim;
    attn_causal causal;
    bool memory_only;   /* too large to time here: memory figure only */
} config;

typedef struct options {
    int threads;        /* the context's thread count; 0 leaves the default */
    int floor_threads;  /* the floor's threads: --threads N, else all cores */
    int runs;
    bool quick;
    bool backward;      /* the backward's configurations instead of the forward's */
    bool blas_copy;     /* libattn's GEMMs on its copy of OpenBLAS (attn info's blas_copy) */
    const char *filter;
} options;

/* OpenBLAS's thread count, read and set for this program's own process only
 * (weak: any other CBLAS runs the floor as it is). */
extern int openblas_get_num_threads(void) __attribute__((weak));
extern void openblas_set_num_threads(int) __attribute__((weak));

static int blas_threads(void)
{
    return openblas_get_num_threads ? openblas_get_num_threads() : 1;
}

static void set_blas_threads(int n)
{
    if (openblas_set_num_threads)
        openblas_set_num_threads(n);
}

/* OpenBLAS's OpenMP build sizes each call by the calling thread's
 * omp_get_max_threads(), which a thread of this program's making has at its
 * default: the floor's threads set their own to 1 (pthreads: the process's
 * count, already 1 while the floor runs). */
extern int openblas_get_parallel(void) __attribute__((weak));

static void one_blas_thread_here(void)
{
    if (openblas_get_parallel && openblas_get_parallel() == 2)
        set_blas_threads(1);
}

/* After the default ran on OpenBLAS's pthreads workers (several threads and
 * no copy in libattn: attn info's blas_copy) or an OpenMP team, their idle
 * threads spin (OpenBLAS: calling sched_yield for about 2^28 cycles, 0.1 s
 * here) before they sleep: long enough to take a core from the next round's
 * floor, so the bench waits them out and says so. After such a wait both
 * vCPUs of this VM are idle and whatever runs first pays for their waking
 * (SDPA d64 L512, 3.9 ms alone, took 5.5-7.5 ms as the first work after
 * it), so the next round makes one untimed call before its timed floor.
 * With libattn's copy the default never runs on OpenBLAS's workers: no
 * wait, no extra call. */
static bool wait_out_blas_threads(int user_blas_threads, const options *o)
{
    if (user_blas_threads <= 1 || o->blas_copy)
        return false;
    struct timespec t = {0, 250 * 1000 * 1000};
    nanosleep(&t, NULL);
    return true;
}

static float *random_floats(size_t n, unsigned seed)
{
    float *x = malloc(n * sizeof *x);
    if (!x) {
        fprintf(stderr, "attn-bench: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
    return x;
}

/* ---- the data of one configuration ------------------------------------- */

typedef struct problem {
    const config *c;
    int64_t embed;              /* MHA: heads × dim */
    float *q, *k, *v, *out;     /* SDPA: BHSD tensors; MHA: [B, L, E] */
    float *w[4], *b[4];         /* MHA weights */
    float *scratch;             /* floor: per-thread S blocks (backward: S, dS) */
    float *lse, *d_out;         /* backward: out and lse of one forward, dO */
    float *d_q, *d_k, *d_v;     /* backward: the gradients (the floor's too) */
    float *fwd_out, *fwd_lse;   /* backward: where the timed forward writes */
    float *proj[4];             /* MHA floor: its own Q, K, V, A, so that it
                                   never overwrites libattn's inputs */
    float *params, *d_params;   /* MHA training: the flat parameters, their
                                   gradient */
    float *d_x;                 /* MHA training: the input's gradient (d_query
                                   = d_key = d_value, one shared buffer) */
    attn_context *ctx;
    attn_sdpa *sdpa;
    attn_mha *mha;
    attn_activations *act;      /* MHA training: what forward_train keeps */
} problem;

static void die(const char *what, attn_status st)
{
    fprintf(stderr, "attn-bench: %s: %s (%s)\n", what, attn_status_string(st), attn_last_error());
    exit(1);
}

/* The backward's other inputs and its outputs: dO and the three gradient
 * buffers, allocated and touched here (so that a memory figure counts only
 * what the call adds), and out and lse from one forward, made in a context
 * of its own that is destroyed at once: the backward's context starts as
 * fresh as a forward's does. */
static void backward_init(problem *p, int threads)
{
    const config *c = p->c;
    size_t nq = (size_t)(c->batch * c->heads_q * c->len_q * c->dim);
    size_t nkv = (size_t)(c->batch * c->heads_kv * c->len_kv * c->dim);
    p->lse = random_floats((size_t)(c->batch * c->heads_q * c->len_q), 6);
    p->d_out = random_floats(nq, 7);
    p->d_q = random_floats(nq, 8);
    p->d_k = random_floats(nkv, 9);
    p->d_v = random_floats(nkv, 10);
    attn_context *ctx = NULL;
    attn_status st = attn_context_create(&ctx);
    if (st == ATTN_OK && threads > 0)
        st = attn_context_set_num_threads(ctx, threads);
    if (st == ATTN_OK)
        st = attn_sdpa_forward(ctx, p->sdpa, p->q, p->k, p->v, NULL, p->out, NULL, p->lse);
    attn_context_destroy(ctx);
    if (st != ATTN_OK)
        die("forward before the backward", st);
}

/* The training step's parameters (one flat vector, through
 * attn_mha_set_params), its activations and the step's other buffers:
 * d_out, the input's gradient and d_params, allocated and touched here so
 * that a memory figure counts only what the step adds (activations
 * included: act starts empty). st: attn_mha_create's status. */
static void mha_train_init(problem *p, attn_status st)
{
    const config *c = p->c;
    size_t n = (size_t)(c->batch * c->len_q * p->embed);
    int64_t count = 0;
    if (st == ATTN_OK)
        st = attn_mha_param_count(p->mha, &count);
    if (st == ATTN_OK) {
        p->params = random_floats((size_t)count, 40);
        p->d_params = random_floats((size_t)count, 41);
        st = attn_mha_set_params(p->mha, p->params);
    }
    if (st == ATTN_OK)
        st = attn_mha_set_causal(p->mha, c->causal);
    if (st == ATTN_OK)
        st = attn_activations_create(&p->act);
    if (st != ATTN_OK)
        die("mha training", st);
    p->d_out = random_floats(n, 42);
    p->d_x = random_floats(n, 43);
}

static void problem_init(problem *p, const config *c, int threads)
{
    memset(p, 0, sizeof *p);
    p->c = c;
    size_t nq = (size_t)(c->batch * c->heads_q * c->len_q * c->dim);
    size_t nkv = (size_t)(c->batch * c->heads_kv * c->len_kv * c->dim);
    attn_status st = attn_context_create(&p->ctx);
    if (st == ATTN_OK && threads > 0)
        st = attn_context_set_num_threads(p->ctx, threads);
    if (st != ATTN_OK)
        die("context", st);
    p->q = random_floats(nq, 1);
    p->k = random_floats(nkv, 2);
    p->v = random_floats(nkv, 3);
    p->out = random_floats(nq, 4);
    if (c->kind == SDPA || c->kind == SDPA_BWD) {
        st = attn_sdpa_create(&p->sdpa, c->batch, c->heads_q, c->heads_kv, c->len_q, c->len_kv,
                              c->dim, c->dim);
        if (st == ATTN_OK)
            st = attn_sdpa_set_causal(p->sdpa, c->causal);
        if (st != ATTN_OK)
            die("sdpa", st);
        if (c->kind == SDPA_BWD)
            backward_init(p, threads);
        return;
    }
    p->embed = c->heads_q * c->dim;
    st = attn_mha_create(&p->mha, p->embed, c->heads_q, c->heads_q, p->embed, p->embed, 1);
    if (c->kind == MHA_BWD) {
        mha_train_init(p, st);
        return;
    }
    for (int i = 0; i < 4 && st == ATTN_OK; i++) {
        p->w[i] = random_floats((size_t)(p->embed * p->embed), 10u + (unsigned)i);
        p->b[i] = random_floats((size_t)p->embed, 20u + (unsigned)i);
        st = attn_mha_set_weights(p->mha, (attn_proj)i, p->w[i], p->b[i]);
    }
    for (int i = 0; i < 4; i++)
        p->proj[i] = random_floats((size_t)(c->batch * c->len_q * p->embed), 30u + (unsigned)i);
    if (st == ATTN_OK)
        st = attn_mha_set_causal(p->mha, c->causal);
    if (st != ATTN_OK)
        die("mha", st);
}

static void problem_free(problem *p)
{
    free(p->q), free(p->k), free(p->v), free(p->out), free(p->scratch);
    free(p->lse), free(p->d_out), free(p->d_q), free(p->d_k), free(p->d_v);
    free(p->fwd_out), free(p->fwd_lse), free(p->params), free(p->d_params), free(p->d_x);
    for (int i = 0; i < 4; i++)
        free(p->w[i]), free(p->b[i]), free(p->proj[i]);
    attn_sdpa_destroy(p->sdpa);
    attn_mha_destroy(p->mha);
    attn_activations_destroy(p->act);
    attn_context_destroy(p->ctx);
}

/* The training step's two halves: attn_mha_forward_train (weights = NULL)
 * filling p->act, then attn_mha_backward from it, the input's three
 * gradients summed into the one buffer d_x, and d_params. */
static void run_mha_forward_train(problem *p, attn_context *ctx)
{
    const config *c = p->c;
    attn_status st = attn_mha_forward_train(ctx, p->mha, c->batch, c->len_q, c->len_kv, p->q,
                                            p->q, p->q, NULL, p->out, NULL, p->act);
    if (st != ATTN_OK)
        die("forward_train", st);
}

static void run_mha_backward(problem *p, attn_context *ctx)
{
    attn_status st = attn_mha_backward(ctx, p->mha, p->act, p->d_out, p->d_x, p->d_x, p->d_x,
                                       p->d_params);
    if (st != ATTN_OK)
        die("mha backward", st);
}

static void run_libattn(problem *p, attn_context *ctx)
{
    const config *c = p->c;
    attn_status st;
    if (c->kind == MHA_BWD) {  /* one training step */
        run_mha_forward_train(p, ctx);
        run_mha_backward(p, ctx);
        return;
    }
    if (c->kind == SDPA_BWD) {  /* all three gradients */
        st = attn_sdpa_backward(ctx, p->sdpa, p->q, p->k, p->v, NULL, p->out, p->lse, p->d_out,
                                p->d_q, p->d_k, p->d_v);
        if (st != ATTN_OK)
            die("backward", st);
        return;
    }
    st = c->kind == SDPA
        ? attn_sdpa_forward(ctx, p->sdpa, p->q, p->k, p->v, NULL, p->out, NULL, NULL)
        : attn_mha_forward(ctx, p->mha, c->batch, c->len_q, c->len_kv, p->q, p->q, p->q, NULL,
                           p->out, NULL);
    if (st != ATTN_OK)
        die("forward", st);
}

/* The forward a backward row compares with: attn_sdpa_forward with lse, as a
 * training step calls it, into buffers of its own (out and lse stay those of
 * the forward the backward was given). */
static void run_libattn_forward(problem *p, attn_context *ctx)
{
    attn_status st = attn_sdpa_forward(ctx, p->sdpa, p->q, p->k, p->v, NULL, p->fwd_out, NULL,
                                       p->fwd_lse);
    if (st != ATTN_OK)
        die("forward", st);
}

/* ---- the GEMM floor ------------------------------------------------------ */

/* The floor's blocks match libattn's: the same rows per block
 * (src/block_rows.h), keys up to the block's causal limit. */
static int64_t floor_block(const config *c)
{
    return attn_query_block_rows(c->heads_q, c->len_q, c->len_kv, c->causal != ATTN_CAUSAL_NONE);
}

typedef struct floor_job {
    problem *p;
    const float *q, *k, *v;
    float *out;
    int64_t heads_q, heads_kv;
    int first_head, n_heads;    /* this thread's share of batch × heads_q */
    float *s;
    int64_t block;              /* query rows per GEMM pair */
} floor_job;

static void floor_head(const floor_job *j, int64_t bh)
{
    const config *c = j->p->c;
    int64_t b = bh / j->heads_q, h = bh % j->heads_q, g = h / (j->heads_q / j->heads_kv);
    int64_t d = c->dim;
    const float *q = j->q + bh * c->len_q * d;
    const float *k = j->k + (b * j->heads_kv + g) * c->len_kv * d;
    const float *v = j->v + (b * j->heads_kv + g) * c->len_kv * d;
    float *o = j->out + bh * c->len_q * d;
    if (c->len_q == 1) {  /* decode: two matrix-vector products */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)c->len_kv, (int)d, 1.0f, k, (int)d, q, 1,
                    0.0f, j->s, 1);
        cblas_sgemv(CblasRowMajor, CblasTrans, (int)c->len_kv, (int)d, 1.0f, v, (int)d, j->s, 1,
                    0.0f, o, 1);
        return;
    }
    for (int64_t i0 = 0; i0 < c->len_q; i0 += j->block) {
        int64_t rows = c->len_q - i0 < j->block ? c->len_q - i0 : j->block;
        int64_t n = c->len_kv;
        if (c->causal == ATTN_CAUSAL_TOP_LEFT && i0 + rows < n)
            n = i0 + rows;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)n, (int)d, 1.0f,
                    q + i0 * d, (int)d, k, (int)d, 0.0f, j->s, (int)n);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)d, (int)n, 1.0f,
                    j->s, (int)n, v, (int)d, 0.0f, o + i0 * d, (int)d);
    }
}

static void *floor_thread(void *arg)
{
    floor_job *j = arg;
    one_blas_thread_here();
    for (int i = 0; i < j->n_heads; i++)
        floor_head(j, j->first_head + i);
    return NULL;
}

/* Runs fn(&jobs[t]) for t < threads, job 0 on the calling thread, the others
 * on threads of their own, and waits for all: the floor's counterpart of
 * libattn's pool (jobs is an array of `threads` elements of job_size bytes). */
static void run_on_threads(int threads, void *(*fn)(void *), void *jobs, size_t job_size)
{
    pthread_t tid[64];
    char *job = jobs;
    for (int t = 1; t < threads; t++)
        pthread_create(&tid[t], NULL, fn, job + (size_t)t * job_size);
    fn(job);
    for (int t = 1; t < threads; t++)
        pthread_join(tid[t], NULL);
}

/* The attention GEMMs over all heads, split over `threads` threads. For MHA
 * the tensors are the projected [B, L, E] buffers viewed per head as BHSD:
 * the floor's cost does not depend on which rows a head's GEMM reads. */
static void run_attention_floor(problem *p, int threads, const float *q, const float *k,
                                const float *v, float *out)
{
    const config *c = p->c;
    int total = (int)(c->batch * c->heads_q);
    floor_job jobs[64];
    threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
    int64_t block = floor_block(c);
    size_t per = (size_t)(block * c->len_kv);
    for (int t = 0; t < threads; t++) {
        int first = total * t / threads, last = total * (t + 1) / threads;
        jobs[t] = (floor_job){p, q, k, v, out, c->heads_q, c->heads_kv, first, last - first,
                              p->scratch + per * (size_t)t, block};
    }
    run_on_threads(threads, floor_thread, jobs, sizeof jobs[0]);
}

/* The backward's floor: the five cblas_sgemm calls per block that
 * src/backward.c makes, with the same shapes, leading dimensions, alphas
 * and betas, and nothing else (no exp, no dS = P ∘ (dP − D), no zeroing of
 * dK and dV: S stands for P and dP for dS). Items are (batch row, kv head),
 * as libattn's, split over the threads as the forward's floor splits heads;
 * each item does every block of every query head of its group. The floor
 * writes the gradient buffers libattn writes: libattn overwrites them all,
 * and the floor's dK and dV sums restart from libattn's each round. */
typedef struct backward_floor_job {
    problem *p;
    int first_item, n_items;    /* this thread's share of batch × heads_kv */
    float *s, *ds;              /* P and dP/dS: block × len_kv floats each */
    int64_t block;              /* query rows per block */
} backward_floor_job;

static void backward_floor_item(const backward_floor_job *j, int64_t item)
{
    const problem *p = j->p;
    const config *c = p->c;
    int64_t b = item / c->heads_kv, g = item % c->heads_kv, group = c->heads_q / c->heads_kv;
    int64_t d = c->dim, lq = c->len_q, lkv = c->len_kv;
    float scale = (float)(1.0 / sqrt((double)d));  /* attn_sdpa's default */
    const float *k = p->k + item * lkv * d, *v = p->v + item * lkv * d;
    float *dk = p->d_k + item * lkv * d, *dv = p->d_v + item * lkv * d;
    for (int64_t h = g * group; h < (g + 1) * group; h++) {
        int64_t bh = b * c->heads_q + h;
        const float *q = p->q + bh * lq * d, *d_out = p->d_out + bh * lq * d;
        float *dq = p->d_q + bh * lq * d;
        for (int64_t i0 = 0; i0 < lq; i0 += j->block) {
            int64_t rows = lq - i0 < j->block ? lq - i0 : j->block;
            int64_t n = lkv;
            if (c->causal == ATTN_CAUSAL_TOP_LEFT && i0 + rows < n)
                n = i0 + rows;
            const float *q_blk = q + i0 * d, *do_blk = d_out + i0 * d;
            /* S = scale · Q_blk · K[0:n]ᵀ: the forward's logits call */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)n, (int)d, scale,
                        q_blk, (int)d, k, (int)d, 0.0f, j->s, (int)n);
            /* dV[0:n] += Pᵀ · dO_blk */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)d, (int)rows, 1.0f,
                        j->s, (int)n, do_blk, (int)d, 1.0f, dv, (int)d);
            /* dP = dO_blk · V[0:n]ᵀ */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)n, (int)d, 1.0f,
                        do_blk, (int)d, v, (int)d, 0.0f, j->ds, (int)n);
            /* dQ_blk = scale · dS · K[0:n] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)d, (int)n,
                        scale, j->ds, (int)n, k, (int)d, 0.0f, dq + i0 * d, (int)d);
            /* dK[0:n] += scale · dSᵀ · Q_blk */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)d, (int)rows, scale,
                        j->ds, (int)n, q_blk, (int)d, 1.0f, dk, (int)d);
        }
    }
}

static void *backward_floor_thread(void *arg)
{
    backward_floor_job *j = arg;
    one_blas_thread_here();
    for (int i = 0; i < j->n_items; i++)
        backward_floor_item(j, j->first_item + i);
    return NULL;
}

/* p->scratch holds 2 blocks of block × len_kv floats per thread. */
static void run_backward_floor(problem *p, int threads)
{
    const config *c = p->c;
    int total = (int)(c->batch * c->heads_kv);
    backward_floor_job jobs[64];
    threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
    int64_t block = floor_block(c);
    size_t per = (size_t)(block * c->len_kv);
    for (int t = 0; t < threads; t++) {
        int first = total * t / threads, last = total * (t + 1) / threads;
        float *s = p->scratch + 2 * per * (size_t)t;
        jobs[t] = (backward_floor_job){p, first, last - first, s, s + per, block};
    }
    run_on_threads(threads, backward_floor_thread, jobs, sizeof jobs[0]);
}

/* One projection out[rows, e] = in[rows, e] · Wᵀ, its rows split over
 * `threads` threads, BLAS single-threaded inside each. libattn hands out
 * 256-row blocks (src/linear.c); the floor makes one sgemm per thread's
 * share, which packs W fewer times, so it is if anything the faster. */
typedef struct projection_job {
    int64_t rows, e;
    const float *in, *w;
    float *out;
} projection_job;

static void *projection_thread(void *arg)
{
    const projection_job *j = arg;
    one_blas_thread_here();
    if (j->rows > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)j->rows, (int)j->e, (int)j->e,
                    1.0f, j->in, (int)j->e, j->w, (int)j->e, 0.0f, j->out, (int)j->e);
    return NULL;
}

static void run_projection_floor(int threads, int64_t rows, int64_t e, const float *in,
                                 const float *w, float *out)
{
    projection_job jobs[64];
    threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
    for (int t = 0; t < threads; t++) {
        int64_t first = rows * t / threads, last = rows * (t + 1) / threads;
        jobs[t] = (projection_job){last - first, e, in + first * e, w, out + first * e};
    }
    run_on_threads(threads, projection_thread, jobs, sizeof jobs[0]);
}

/* MHA's floor adds the four projections, each split by rows over the threads;
 * the backward's is run_backward_floor. */
static void run_floor(problem *p, int threads)
{
    const config *c = p->c;
    if (c->kind == SDPA_BWD) {
        run_backward_floor(p, threads);
        return;
    }
    if (c->kind == SDPA) {
        run_attention_floor(p, threads, p->q, p->k, p->v, p->out);
        return;
    }
    int64_t rows = c->batch * c->len_q;
    for (int i = 0; i < 3; i++)  /* Q, K, V projections of the same input */
        run_projection_floor(threads, rows, p->embed, p->q, p->w[i], p->proj[i]);
    run_attention_floor(p, threads, p->proj[0], p->proj[1], p->proj[2], p->proj[3]);
    run_projection_floor(threads, rows, p->embed, p->proj[3], p->w[3], p->out);
}

/* ---- measurement ----------------------------------------------------------- */

/* The backward's five GEMMs count 10·B·H·Lq·Lkv·d (2.5 forwards). The MHA
 * training step counts the products libattn makes: the forward's attention
 * (4) and the backward's five GEMMs (10), 14·B·H·Lq·Lkv·d, plus 2·B·L·E²
 * per projection product: 4 in the forward, 8 in the backward (dA, dWo, and
 * dW and dX of Q, K and V). */
static double flops(const config *c)
{
    double per = c->kind == SDPA_BWD ? 10.0 : c->kind == MHA_BWD ? 14.0 : 4.0;
    double f = per * (double)c->batch * (double)c->heads_q * (double)c->len_q *
               (double)c->len_kv * (double)c->dim;
    if (c->causal != ATTN_CAUSAL_NONE)
        f /= 2.0;
    double products = c->kind == MHA ? 4.0 : c->kind == MHA_BWD ? 12.0 : 0.0;
    f += products * 2.0 * (double)(c->batch * c->len_q) * (double)(c->heads_q * c->dim) *
         (double)(c->heads_q * c->dim);
    return f;
}

/* A "VmRSS:"-style field of /proc/self/status in KiB, -1 if absent. */
static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n))
            kib = atol(line + n);
    if (f)
        fclose(f);
    return kib;
}

/* Restarts the process's peak-RSS mark (VmHWM) at its current RSS (Linux
 * 4.0+: "5" to /proc/self/clear_refs). */
static bool reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

/* The best setting's context: libattn's threads on every core (the
 * floor's threads), to run with the BLAS on one thread. */
static attn_context *best_context(const options *o)
{
    attn_context *ctx = NULL;
    attn_status st = attn_context_create(&ctx);
    if (st == ATTN_OK)
        st = attn_context_set_num_threads(ctx, o->floor_threads);
    if (st != ATTN_OK)
        die("context", st);
    return ctx;
}

/* A causal row's time over its non-causal twin's as JSON text, or "null"
 * when no twin ran (noncausal_ms <= 0). */
static void causal_ratio_text(char buf[32], double ms, double noncausal_ms)
{
    if (noncausal_ms > 0)
        snprintf(buf, 32, "%.3f", ms / noncausal_ms);
    else
        snprintf(buf, 32, "null");
}

/* Peak RSS growth (KiB) across one libattn call, measured in a child process
 * so that earlier configurations' peaks do not hide it; the child writes the
 * figure into a pipe. -1 if the child failed. Two things would hide the
 * call's memory and are ruled out: the peak the child inherits from the
 * parent (reset once the inputs are set up), and memory the parent freed but
 * its malloc kept resident, which the call's buffers would reuse without
 * growing the RSS (measured: 8 MiB buffers counted as 0 after a larger
 * configuration). malloc_trim returns those pages to the system, and a fixed
 * mmap threshold gives later large buffers fresh pages. For the backward the
 * baseline already holds q, k, v, out, lse, dO and the three gradient
 * buffers, all touched, and not the context of the forward that made out and
 * lse (destroyed, its memory trimmed again): the figure is the backward's
 * own, beyond its inputs and outputs, in a fresh context. For the MHA
 * training step (one forward_train and one backward) the baseline holds the
 * input, out, d_out, the input's gradient, the parameters and d_params, and
 * an empty attn_activations: the figure includes the activations the step
 * keeps and the context's workspace. */
static long extra_memory_kib(const config *c, int threads)
{
    int fd[2];
    if (pipe(fd) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        mallopt(M_MMAP_THRESHOLD, 128 * 1024);
        malloc_trim(0);
        problem p;
        problem_init(&p, c, threads);
        if (c->kind == SDPA_BWD || c->kind == MHA_BWD)
            malloc_trim(0);
        long kib = -1;
        if (reset_peak_rss()) {
            long before = status_kib("VmRSS:");
            run_libattn(&p, p.ctx);
            long peak = status_kib("VmHWM:");
            if (before >= 0 && peak >= 0)
                kib = peak - before;
        }
        _exit(write(fd[1], &kib, sizeof kib) == (ssize_t)sizeof kib ? 0 : 1);
    }
    close(fd[1]);
    long kib = -1;
    if (pid < 0 || read(fd[0], &kib, sizeof kib) != (ssize_t)sizeof kib)
        kib = -1;
    close(fd[0]);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    return kib;
}

/* One timed thing of a round: the floor (call NULL), or a libattn call on
 * ctx; as_run: with the BLAS as the user has it, else on one thread. */
typedef struct timed_step {
    void (*call)(problem *p, attn_context *ctx);
    attn_context *ctx;
    bool as_run;
    double t[64];  /* seconds, one per timed round */
} timed_step;

static void run_step(problem *p, const options *o, const timed_step *s)
{
    if (s->call)
        s->call(p, s->ctx);
    else
        run_floor(p, o->floor_threads);
}

/* The rounds every row times: one warm-up round, then o->runs rounds, each
 * running the steps in order, the one-BLAS-thread steps (floor, best
 * setting) first and the as-run ones after the BLAS is given back its
 * thread count; a step's time leaves out the change of thread count. After
 * a round whose as-run steps ran on OpenBLAS's workers or an OpenMP team it
 * waits them out (wait_out_blas_threads), and the next round first runs its
 * first step once untimed. */
static void time_rounds(problem *p, const options *o, int user_blas_threads, timed_step *steps,
                        int n)
{
    bool waited = false;
    for (int r = -1; r < o->runs; r++) {  /* r = -1: the warm-up */
        set_blas_threads(1);
        if (waited)
            run_step(p, o, &steps[0]);  /* untimed: wakes the cores after the wait */
        for (int i = 0; i < n; i++) {
            if (steps[i].as_run && (i == 0 || !steps[i - 1].as_run))
                set_blas_threads(user_blas_threads);
            double t0 = bench_now();
            run_step(p, o, &steps[i]);
            if (r >= 0)
                steps[i].t[r] = bench_now() - t0;
        }
        waited = wait_out_blas_threads(user_blas_threads, o);
    }
}

static void measure(const config *c, const options *o, long mem_kib)
{
    if (c->memory_only) {
        printf("{\"name\":\"%s\",\"extra_memory_mib\":%.1f}\n", c->name, (double)mem_kib / 1024);
        fprintf(stderr, "%-28s %9s %9s %9s %7s %7s %7s %8s %8s %8.1f\n", c->name, "-", "-", "-",
                "-", "-", "-", "-", "-", (double)mem_kib / 1024);
        return;
    }
    problem p;
    problem_init(&p, c, o->threads);
    p.scratch = random_floats((size_t)(floor_block(c) * c->len_kv) * (size_t)o->floor_threads, 5);
    int user_blas_threads = blas_threads();
    attn_context *best_ctx = best_context(o);
    timed_step steps[] = {
        {.call = NULL},                                      /* the floor */
        {.call = run_libattn, .ctx = best_ctx},              /* the best setting */
        {.call = run_libattn, .ctx = p.ctx, .as_run = true}, /* as the user has it */
    };
    time_rounds(&p, o, user_blas_threads, steps, 3);
    attn_context_destroy(best_ctx);
    double fl = bench_median(steps[0].t, o->runs), best = bench_median(steps[1].t, o->runs);
    double lib = bench_median(steps[2].t, o->runs);
    double gf = flops(c) / lib * 1e-9, gf_floor = flops(c) / fl * 1e-9;
    printf("{\"name\":\"%s\",\"batch\":%lld,\"heads_q\":%lld,\"heads_kv\":%lld,\"len_q\":%lld,"
           "\"len_kv\":%lld,\"dim\":%lld,\"causal\":%d,\"threads\":%d,\"floor_threads\":%d,"
           "\"blas_threads\":%d,\"runs\":%d,\"median_ms\":%.4f,\"best_ms\":%.4f,"
           "\"floor_ms\":%.4f,\"ratio\":%.3f,\"best_ratio\":%.3f,\"gflops\":%.2f,"
           "\"floor_gflops\":%.2f,\"extra_memory_mib\":%.2f}\n",
           c->name, (long long)c->batch, (long long)c->heads_q, (long long)c->heads_kv,
           (long long)c->len_q, (long long)c->len_kv, (long long)c->dim, (int)c->causal,
           o->threads, o->floor_threads, user_blas_threads, o->runs, lib * 1e3, best * 1e3,
           fl * 1e3, lib / fl, best / fl, gf, gf_floor, (double)mem_kib / 1024);
    fprintf(stderr, "%-28s %9.3f %9.3f %9.3f %7.3f %7.3f %7.3f %8.1f %8.1f %8.1f\n", c->name,
            lib * 1e3, best * 1e3, fl * 1e3, lib / fl, best / fl, lib / best, gf, gf_floor,
            (double)mem_kib / 1024);
    fflush(stdout);
    problem_free(&p);
}

/* A backward row (--backward). Each round times the floor, the best setting,
 * then as run the forward (with lse, into buffers of its own) and the
 * backward, in the order a training step makes them. Prints the columns of a
 * forward row plus fwd_ms, bwd_fwd_ratio (as run: backward / forward) and
 * causal_ratio (backward as run, this causal row / the same shape without
 * causal, measured earlier in this run as noncausal_ms; null otherwise).
 * Returns the backward's median as run in ms (0 for a memory-only row). */
static double measure_backward(const config *c, const options *o, long mem_kib,
                               double noncausal_ms)
{
    if (c->memory_only) {
        printf("{\"name\":\"%s\",\"extra_memory_mib\":%.1f}\n", c->name, (double)mem_kib / 1024);
        fprintf(stderr, "%-28s %9s %9s %9s %7s %7s %7s %8s %8s %8.1f %9s %7s\n", c->name, "-",
                "-", "-", "-", "-", "-", "-", "-", (double)mem_kib / 1024, "-", "-");
        return 0;
    }
    problem p;
    problem_init(&p, c, o->threads);
    size_t rows_q = (size_t)(c->batch * c->heads_q * c->len_q);
    p.fwd_out = random_floats(rows_q * (size_t)c->dim, 11);
    p.fwd_lse = random_floats(rows_q, 12);
    p.scratch = random_floats(2 * (size_t)(floor_block(c) * c->len_kv) * (size_t)o->floor_threads,
                              5);
    int user_blas_threads = blas_threads();
    attn_context *best_ctx = best_context(o);
    timed_step steps[] = {
        {.call = NULL},                                              /* the floor */
        {.call = run_libattn, .ctx = best_ctx},                      /* the best setting */
        {.call = run_libattn_forward, .ctx = p.ctx, .as_run = true}, /* as run: forward, */
        {.call = run_libattn, .ctx = p.ctx, .as_run = true},         /* then backward */
    };
    time_rounds(&p, o, user_blas_threads, steps, 4);
    attn_context_destroy(best_ctx);
    double fl = bench_median(steps[0].t, o->runs), best = bench_median(steps[1].t, o->runs);
    double fwd = bench_median(steps[2].t, o->runs), lib = bench_median(steps[3].t, o->runs);
    double gf = flops(c) / lib * 1e-9, gf_floor = flops(c) / fl * 1e-9;
    char causal_ratio[32];
    causal_ratio_text(causal_ratio, lib * 1e3, noncausal_ms);
    printf("{\"name\":\"%s\",\"batch\":%lld,\"heads_q\":%lld,\"heads_kv\":%lld,\"len_q\":%lld,"
           "\"len_kv\":%lld,\"dim\":%lld,\"causal\":%d,\"threads\":%d,\"floor_threads\":%d,"
           "\"blas_threads\":%d,\"runs\":%d,\"median_ms\":%.4f,\"best_ms\":%.4f,"
           "\"floor_ms\":%.4f,\"ratio\":%.3f,\"best_ratio\":%.3f,\"gflops\":%.2f,"
           "\"floor_gflops\":%.2f,\"extra_memory_mib\":%.2f,\"fwd_ms\":%.4f,"
           "\"bwd_fwd_ratio\":%.3f,\"causal_ratio\":%s}\n",
           c->name, (long long)c->batch, (long long)c->heads_q, (long long)c->heads_kv,
           (long long)c->len_q, (long long)c->len_kv, (long long)c->dim, (int)c->causal,
           o->threads, o->floor_threads, user_blas_threads, o->runs, lib * 1e3, best * 1e3,
           fl * 1e3, lib / fl, best / fl, gf, gf_floor, (double)mem_kib / 1024, fwd * 1e3,
           lib / fwd, causal_ratio);
    fprintf(stderr, "%-28s %9.3f %9.3f %9.3f %7.3f %7.3f %7.3f %8.1f %8.1f %8.1f %9.3f %7.3f\n",
            c->name, lib * 1e3, best * 1e3, fl * 1e3, lib / fl, best / fl, lib / best, gf,
            gf_floor, (double)mem_kib / 1024, fwd * 1e3, lib / fwd);
    fflush(stdout);
    problem_free(&p);
    return lib * 1e3;
}

/* An MHA training row (--backward, "mha-bwd ..."). Each round times the best
 * setting's step (forward_train then backward, BLAS on 1 thread, a context
 * on the floor's threads), then as run the forward_train and the backward,
 * each timed. median_ms is the step as run (the median of forward_train +
 * backward per round), best_ms the best setting's step; fwd_ms and bwd_ms
 * the medians of the two halves as run, bwd_fwd_ratio = bwd_ms / fwd_ms,
 * causal_ratio the step's as for the SDPA rows. No floor: floor_ms, ratio,
 * best_ratio and floor_gflops are null. Returns median_ms. */
static double measure_mha_backward(const config *c, const options *o, long mem_kib,
                                   double noncausal_ms)
{
    problem p;
    problem_init(&p, c, o->threads);
    int user_blas_threads = blas_threads();
    attn_context *best_ctx = best_context(o);
    timed_step steps[] = {
        {.call = run_libattn, .ctx = best_ctx},                        /* the best step */
        {.call = run_mha_forward_train, .ctx = p.ctx, .as_run = true}, /* as run: forward, */
        {.call = run_mha_backward, .ctx = p.ctx, .as_run = true},      /* then backward */
    };
    time_rounds(&p, o, user_blas_threads, steps, 3);
    attn_context_destroy(best_ctx);
    double t_lib[64];  /* the step as run, per round */
    for (int r = 0; r < o->runs; r++)
        t_lib[r] = steps[1].t[r] + steps[2].t[r];
    double lib = bench_median(t_lib, o->runs), best = bench_median(steps[0].t, o->runs);
    double fwd = bench_median(steps[1].t, o->runs), bwd = bench_median(steps[2].t, o->runs);
    double gf = flops(c) / lib * 1e-9;
    char causal_ratio[32];
    causal_ratio_text(causal_ratio, lib * 1e3, noncausal_ms);
    printf("{\"name\":\"%s\",\"batch\":%lld,\"heads_q\":%lld,\"heads_kv\":%lld,\"len_q\":%lld,"
           "\"len_kv\":%lld,\"dim\":%lld,\"causal\":%d,\"threads\":%d,\"floor_threads\":%d,"
           "\"blas_threads\":%d,\"runs\":%d,\"median_ms\":%.4f,\"best_ms\":%.4f,"
           "\"floor_ms\":null,\"ratio\":null,\"best_ratio\":null,\"gflops\":%.2f,"
           "\"floor_gflops\":null,\"extra_memory_mib\":%.2f,\"fwd_ms\":%.4f,"
           "\"bwd_fwd_ratio\":%.3f,\"causal_ratio\":%s,\"embed_dim\":%lld,\"bwd_ms\":%.4f}\n",
           c->name, (long long)c->batch, (long long)c->heads_q, (long long)c->heads_kv,
           (long long)c->len_q, (long long)c->len_kv, (long long)c->dim, (int)c->causal,
           o->threads, o->floor_threads, user_blas_threads, o->runs, lib * 1e3, best * 1e3, gf,
           (double)mem_kib / 1024, fwd * 1e3, bwd / fwd, causal_ratio,
           (long long)(c->heads_q * c->dim), bwd * 1e3);
    fprintf(stderr, "%-28s %9.3f %9.3f %9s %7s %7s %7.3f %8.1f %8s %8.1f %9.3f %7.3f\n",
            c->name, lib * 1e3, best * 1e3, "-", "-", "-", lib / best, gf, "-",
            (double)mem_kib / 1024, fwd * 1e3, bwd / fwd);
    fflush(stdout);
    problem_free(&p);
    return lib * 1e3;
}

/* ---- the configurations of the issue ---------------------------------------- */

static int add(config *list, int n, const char *name, kind k, int64_t b, int64_t hq, int64_t hkv,
               int64_t lq, int64_t lkv, int64_t d, attn_causal causal, bool memory_only)
{
    list[n] = (config){.kind = k, .batch = b, .heads_q = hq, .heads_kv = hkv, .len_q = lq,
                       .len_kv = lkv, .dim = d, .causal = causal, .memory_only = memory_only};
    snprintf(list[n].name, sizeof list[n].name, "%s", name);
    return n + 1;
}

static int make_configs(config *list, bool quick)
{
    static const int64_t lens[] = {128, 512, 1024, 2048, 4096, 8192};
    int n_lens = quick ? 3 : 6, n = 0;
    char name[64];
    for (int di = 0; di < 2; di++) {
        int64_t d = di ? 128 : 64;
        for (int li = 0; li < n_lens; li++)
            for (int causal = 0; causal < 2; causal++) {
                snprintf(name, sizeof name, "sdpa d%lld L%lld%s", (long long)d,
                         (long long)lens[li], causal ? " causal" : "");
                n = add(list, n, name, SDPA, 1, 8, 8, lens[li], lens[li], d,
                        causal ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE, false);
            }
    }
    for (int li = 0; li < n_lens; li++) {
        snprintf(name, sizeof name, "gqa 8/2 d64 L%lld", (long long)lens[li]);
        n = add(list, n, name, SDPA, 1, 8, 2, lens[li], lens[li], 64, ATTN_CAUSAL_NONE, false);
    }
    n = add(list, n, "decode 32h d128 Lkv4096", SDPA, 1, 32, 32, 1, 4096, 128, ATTN_CAUSAL_NONE,
            false);
    static const int64_t mha_lens[] = {512, 1024, 2048};
    for (int li = 0; li < (quick ? 1 : 3); li++) {
        snprintf(name, sizeof name, "mha E512 h8 L%lld", (long long)mha_lens[li]);
        n = add(list, n, name, MHA, 1, 8, 8, mha_lens[li], mha_lens[li], 64, ATTN_CAUSAL_NONE,
                false);
    }
    n = add(list, n, "memory d64 L16384", SDPA, 1, 8, 8, 16384, 16384, 64, ATTN_CAUSAL_NONE, true);
    return n;
}

/* --backward: the SDPA shapes of the forward from L = 1024 on (--quick:
 * L = 1024 only), the MHA training rows, then the backward's memory at
 * L = 16384 (the goal: at most 64 MiB beyond the gradient buffers). Causal
 * rows follow their non-causal twin, whose time their causal_ratio needs. */
static int make_backward_configs(config *list, bool quick)
{
    static const int64_t lens[] = {1024, 2048, 4096, 8192};
    int n_lens = quick ? 1 : 4, n = 0;
    char name[64];
    for (int di = 0; di < 2; di++) {
        int64_t d = di ? 128 : 64;
        for (int li = 0; li < n_lens; li++)
            for (int causal = 0; causal < 2; causal++) {
                snprintf(name, sizeof name, "sdpa-bwd d%lld L%lld%s", (long long)d,
                         (long long)lens[li], causal ? " causal" : "");
                n = add(list, n, name, SDPA_BWD, 1, 8, 8, lens[li], lens[li], d,
                        causal ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE, false);
            }
    }
    /* The multi-head layer's training step (self-attention, bias, no mask),
     * in --quick too: E 512 H 8 (head_dim 64) L 1024 and its causal twin, the
     * issue's PyTorch target, and E 256 H 4 L 512. */
    n = add(list, n, "mha-bwd E512 H8 L1024", MHA_BWD, 1, 8, 8, 1024, 1024, 64,
            ATTN_CAUSAL_NONE, false);
    n = add(list, n, "mha-bwd E512 H8 L1024 causal", MHA_BWD, 1, 8, 8, 1024, 1024, 64,
            ATTN_CAUSAL_TOP_LEFT, false);
    n = add(list, n, "mha-bwd E256 H4 L512", MHA_BWD, 1, 4, 4, 512, 512, 64, ATTN_CAUSAL_NONE,
            false);
    n = add(list, n, "sdpa-bwd memory d64 L16384", SDPA_BWD, 1, 8, 8, 16384, 16384, 64,
            ATTN_CAUSAL_NONE, true);
    return n;
}

/* The non-causal twin of causal backward row i (same kind and shape), -1 if
 * none. */
static int noncausal_twin(const config *list, int i)
{
    for (int j = 0; j < i; j++)
        if (list[j].kind == list[i].kind && !list[j].memory_only &&
            list[j].causal == ATTN_CAUSAL_NONE && list[j].batch == list[i].batch &&
            list[j].heads_q == list[i].heads_q && list[j].heads_kv == list[i].heads_kv &&
            list[j].len_q == list[i].len_q && list[j].len_kv == list[i].len_kv &&
            list[j].dim == list[i].dim)
            return j;
    return -1;
}

/* attn_runtime_info()'s text (malloc'd; NULL when memory runs out), so that
 * every table says which BLAS kernels and threads it was measured with. */
static char *runtime_info(void)
{
    size_t n = attn_runtime_info(NULL, 0) + 1;
    char *text = malloc(n);
    if (text)
        attn_runtime_info(text, n);
    return text;
}

/* The advice line again, below the table, where a reader looks last. */
static void print_advice(const char *info)
{
    const char *line = info ? strstr(info, "\nadvice: ") : NULL;
    if (line)
        fprintf(stderr, "attn-bench: advice: %.*s\n", (int)strcspn(line + 9, "\n"), line + 9);
}

static void usage(void)
{
    fprintf(stderr, "usage: attn-bench [--threads N] [--runs N] [--quick] [--filter TEXT]"
                    " [--backward]\n"
                    "  --threads N  the context's thread count (default: the library's own\n"
                    "               choice) and the floor's (default: all cores)\n"
                    "  --backward   attn_sdpa_backward's rows and memory and the multi-head\n"
                    "               layer's training step instead of the forward's\n");
    exit(2);
}

int main(int argc, char **argv)
{
    options o = {.threads = 0, .runs = 7};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            o.threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            o.runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            o.quick = true;
        else if (!strcmp(argv[i], "--filter") && i + 1 < argc)
            o.filter = argv[++i];
        else if (!strcmp(argv[i], "--backward"))
            o.backward = true;
        else
            usage();
    }
    if (o.threads < 0 || o.threads > 64 || o.runs < 1 || o.runs > 64)
        usage();
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o.floor_threads = o.threads ? o.threads : cores < 1 ? 1 : cores > 64 ? 64 : (int)cores;
    char *info = runtime_info();
    if (info)
        fputs(info, stderr);
    o.blas_copy = info && strstr(info, "\nblas_copy: /");
    const char *env_threads = getenv("OPENBLAS_NUM_THREADS");
    char threads_text[32] = "default";
    if (o.threads)
        snprintf(threads_text, sizeof threads_text, "%d", o.threads);
    fprintf(stderr,
            "libattn %s, context threads %s, floor threads %d, %d timed runs, "
            "OPENBLAS_NUM_THREADS=%s\n"
            "ms: libattn as run (no flags: as a program gets it); best: BLAS on 1 thread, context\n"
            "on the floor's threads; floor: the GEMMs alone, BLAS on 1 thread, heads over the\n"
            "floor's threads\n",
            attn_version_string(), threads_text, o.floor_threads, o.runs,
            env_threads ? env_threads : "(unset)");
    if (o.backward) {
        fprintf(stderr,
                "backward: ms is attn_sdpa_backward (dQ, dK, dV) from a forward's out and lse;\n"
                "floor: its five GEMMs per block alone, items (batch, kv head) over the floor's\n"
                "threads; fwd ms: attn_sdpa_forward with lse as run, in the same rounds;\n"
                "bwd/fwd: ms / fwd ms; GFLOP/s count 10·B·H·Lq·Lkv·d (halved for causal)\n"
                "mha-bwd: ms is one training step, attn_mha_forward_train + attn_mha_backward\n"
                "(self-attention, d_input and d_params), no floor; fwd ms: forward_train alone;\n"
                "bwd/fwd: backward / forward_train; GFLOP/s count 14·B·H·L²·d (halved for\n"
                "causal) + 24·B·L·E²\n");
        fprintf(stderr, "%-28s %9s %9s %9s %7s %7s %7s %8s %8s %8s %9s %7s\n", "configuration",
                "ms", "best ms", "floor ms", "ratio", "best", "vs best", "GFLOP/s", "floor",
                "mem MiB", "fwd ms", "bwd/fwd");
    } else {
        fprintf(stderr, "%-28s %9s %9s %9s %7s %7s %7s %8s %8s %8s\n", "configuration", "ms",
                "best ms", "floor ms", "ratio", "best", "vs best", "GFLOP/s", "floor", "mem MiB");
    }
    config list[64];
    int n = o.backward ? make_backward_configs(list, o.quick) : make_configs(list, o.quick);
    /* Every memory figure first, each in a forked child, before this process
     * runs any call: libgomp (OpenMP, libattn's schedule with OpenBLAS's
     * OpenMP build) does not survive fork once it has started its threads,
     * and a child's first parallel region would then hang. */
    long mem_kib[64];
    for (int i = 0; i < n; i++)
        if (!o.filter || strstr(list[i].name, o.filter))
            mem_kib[i] = extra_memory_kib(&list[i], o.threads);
    double bwd_ms[64] = {0};  /* backward rows: the median as run */
    for (int i = 0; i < n; i++) {
        if (o.filter && !strstr(list[i].name, o.filter))
            continue;
        if (list[i].kind != SDPA_BWD && list[i].kind != MHA_BWD) {
            measure(&list[i], &o, mem_kib[i]);
            continue;
        }
        int twin = list[i].causal != ATTN_CAUSAL_NONE ? noncausal_twin(list, i) : -1;
        double twin_ms = twin >= 0 ? bwd_ms[twin] : 0;
        bwd_ms[i] = list[i].kind == MHA_BWD
            ? measure_mha_backward(&list[i], &o, mem_kib[i], twin_ms)
            : measure_backward(&list[i], &o, mem_kib[i], twin_ms);
    }
    if (o.backward) {
        fprintf(stderr, "attn-bench: backward targets: ratio <= 1.25 (L >= 1024), bwd/fwd <= 2.8,"
                        " causal / non-causal <= 0.60, memory at L16384 H8 d64 <= 64 MiB;"
                        " mha-bwd E512 H8 L1024: PyTorch's training step / libattn's >= 2"
                        " (bench/compare_torch.py --backward)\n");
        for (int i = 0; i < n; i++) {
            int twin = (list[i].kind == SDPA_BWD || list[i].kind == MHA_BWD) &&
                    list[i].causal != ATTN_CAUSAL_NONE
                ? noncausal_twin(list, i) : -1;
            if (twin >= 0 && bwd_ms[i] > 0 && bwd_ms[twin] > 0)
                fprintf(stderr, "attn-bench: %s: causal / non-causal %.3f (%.3f / %.3f ms)\n",
                        list[i].name, bwd_ms[i] / bwd_ms[twin], bwd_ms[i], bwd_ms[twin]);
        }
    }
    print_advice(info);
    free(info);
    return 0;
}
