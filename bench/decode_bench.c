/*
 * decode_bench.c — attn-bench-decode: decoding with the paged KV cache
 * (issue 13's speed goals), side by side in one process.
 *
 *   1. The machine's read bandwidth: a STREAM-like sum over a 1 GiB buffer
 *      on the context's thread count (pthreads), median of the runs. A
 *      decode step must read the cached K and V once; its floor is their
 *      bytes at this bandwidth.
 *   2. Decode step, 32 query heads, 8 kv heads, d 128: one new token per
 *      sequence, attn_sdpa_forward_cached over a cache of pages of
 *      --page-size tokens (default 16), for batch 1 at 4096 cached tokens
 *      and for batch 16 of mixed lengths (256, 512, ..., 4096). Printed:
 *      the step's time, the floor's (K and V bytes / bandwidth), their
 *      ratio (goal <= 1.3), and for batch 1 two references: the same query
 *      against contiguous K and V (attn_sdpa_forward with len_q = 1: what
 *      paging costs) and recomputing the whole prefix (one causal
 *      attn_sdpa_forward over 4096 queries, what a program without a cache
 *      does per token; goal >= 20x the step). And the step's BLAS floor:
 *      the same cblas_sgemm calls on pages of the same layout, alone.
 *   3. Chunked prefill of 4096 tokens in chunks of 512 (append, then
 *      attn_sdpa_forward_cached of the chunk) against one causal
 *      attn_sdpa_forward over the 4096 (goal <= 1.15x).
 *
 * Everything runs on one context left at its default thread count unless
 * --threads N; figures are medians of --runs (default 7) after a warm-up.
 * One JSON line per measurement on stdout, a table on stderr.
 *
 * usage: attn-bench-decode [--threads N] [--runs N] [--page-size N] [--quick]
 */
#define _GNU_SOURCE

#include <attn.h>
#include <cblas.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"

enum { HQ = 32, HKV = 8, D = 128 };

typedef struct options {
    int threads, runs;
    int64_t page_size;
    bool quick;
} options;

static void check(const char *what, attn_status st)
{
    if (st == ATTN_OK)
        return;
    fprintf(stderr, "attn-bench-decode: %s: %s (%s)\n", what, attn_status_string(st),
            attn_last_error());
    exit(1);
}

static float *random_floats(size_t n, unsigned seed)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) {
        fprintf(stderr, "attn-bench-decode: out of memory\n");
        exit(1);
    }
    uint64_t x = 0x9E3779B97F4A7C15ull * (seed + 1);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p[i] = (float)(x >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
    }
    return p;
}

/* ---- 1. bandwidth -------------------------------------------------------------- */

typedef struct read_job {
    const float *p;
    size_t n;
    double sum;
} read_job;

static void *read_part(void *arg)
{
    read_job *j = arg;
    float acc[16] = {0};
    for (size_t i = 0; i + 16 <= j->n; i += 16)
        for (int l = 0; l < 16; l++)
            acc[l] += j->p[i + l];
    for (int l = 0; l < 16; l++)
        j->sum += acc[l];
    return NULL;
}

/* GB/s of reading `bytes` once on `threads` threads (median of runs). */
static double read_bandwidth(int threads, int runs, size_t bytes)
{
    size_t n = bytes / sizeof(float);
    float *buf = random_floats(n, 7);
    double *t = malloc((size_t)runs * sizeof *t), sink = 0.0;
    for (int r = -1; r < runs; r++) {
        pthread_t th[64];
        read_job jobs[64];
        size_t part = n / (size_t)threads / 16 * 16;
        double t0 = bench_now();
        for (int i = 0; i < threads; i++) {
            jobs[i] = (read_job){buf + (size_t)i * part, part, 0.0};
            pthread_create(&th[i], NULL, read_part, &jobs[i]);
        }
        for (int i = 0; i < threads; i++) {
            pthread_join(th[i], NULL);
            sink += jobs[i].sum;
        }
        if (r >= 0)
            t[r] = bench_now() - t0;
    }
    double gbs = (double)(n / (size_t)threads / 16 * 16 * (size_t)threads) * sizeof(float) /
                 bench_median(t, runs) / 1e9;
    if (sink == 12345.678)  /* keeps the sums alive */
        fprintf(stderr, " ");
    free(t);
    free(buf);
    return gbs;
}

/* ---- 2. decode steps ------------------------------------------------------------ */

/* OpenBLAS's thread count, weakly linked (1 for another BLAS). */
extern int openblas_get_num_threads(void) __attribute__((weak));
extern void openblas_set_num_threads(int) __attribute__((weak));

/* The BLAS floor of a decode step: the cblas_sgemm calls libattn's cached
 * forward makes (src/attend_cached.c), with the same shapes and leading
 * dimensions, on pages of the cache's layout, and nothing else (no
 * softmax, no merge): per (sequence, kv head, block of 512 keys), per page
 * segment, the logits S[group, len] = Q_group K_segᵀ and then
 * O[group, d] += P_seg V_seg. Items are split over the threads like
 * libattn's; each thread's BLAS runs serially. */
enum { KEY_BLOCK = 512 };

typedef struct floor_data {
    int64_t n, page_size, *lens, *first_page;
    float *k, *v, *q, *s, *out;   /* pages [pages, HKV, page_size, D]; q, out [n, HQ, D] */
} floor_data;

typedef struct floor_job {
    const floor_data *f;
    int64_t first, count;         /* items of (sequence, kv head, key block) */
    float *s;                     /* [group, KEY_BLOCK] */
} floor_job;

static void floor_item(const floor_job *j, int64_t seq, int64_t g, int64_t kb)
{
    const floor_data *f = j->f;
    int64_t group = HQ / HKV, ps = f->page_size, k0 = kb * KEY_BLOCK;
    int64_t k1 = k0 + KEY_BLOCK < f->lens[seq] ? k0 + KEY_BLOCK : f->lens[seq], n = k1 - k0;
    const float *q = f->q + (seq * HQ + g * group) * D;
    float *out = f->out + (seq * HQ + g * group) * D;
    for (int pass = 0; pass < 2; pass++)
        for (int64_t t = k0; t < k1;) {
            int64_t page = f->first_page[seq] + t / ps, off = t % ps;
            int64_t len = ps - off < k1 - t ? ps - off : k1 - t;
            const float *kp = f->k + ((page * HKV + g) * ps + off) * D;
            const float *vp = f->v + ((page * HKV + g) * ps + off) * D;
            if (pass == 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)group, (int)len, D,
                            0.088f, q, D, kp, D, 0.0f, j->s + (t - k0), (int)n);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)group, D, (int)len,
                            1.0f, j->s + (t - k0), (int)n, vp, D, t == k0 ? 0.0f : 1.0f, out, D);
            t += len;
        }
}

static void *floor_thread(void *arg)
{
    const floor_job *j = arg;
    const floor_data *f = j->f;
    int64_t item = 0;
    for (int64_t s = 0; s < f->n; s++)
        for (int64_t g = 0; g < HKV; g++)
            for (int64_t kb = 0; kb * KEY_BLOCK < f->lens[s]; kb++, item++)
                if (item >= j->first && item < j->first + j->count)
                    floor_item(j, s, g, kb);
    return NULL;
}

typedef struct floor_arg {
    floor_data f;
    int threads;
    int64_t items;
} floor_arg;

static void floor_step(void *arg, attn_context *ctx)
{
    (void)ctx;
    floor_arg *a = arg;
    int saved = openblas_get_num_threads ? openblas_get_num_threads() : 1;
    if (openblas_set_num_threads)
        openblas_set_num_threads(1);
    pthread_t th[64];
    floor_job jobs[64];
    for (int t = 0; t < a->threads; t++) {
        int64_t first = a->items * t / a->threads, last = a->items * (t + 1) / a->threads;
        jobs[t] = (floor_job){&a->f, first, last - first,
                              a->f.s + (size_t)t * (HQ / HKV) * KEY_BLOCK};
        if (t > 0)
            pthread_create(&th[t], NULL, floor_thread, &jobs[t]);
    }
    floor_thread(&jobs[0]);
    for (int t = 1; t < a->threads; t++)
        pthread_join(th[t], NULL);
    if (openblas_set_num_threads)
        openblas_set_num_threads(saved);
}

static void floor_init(floor_arg *a, const options *o, int threads, int64_t n,
                       const int64_t *lens)
{
    memset(a, 0, sizeof *a);
    a->threads = threads;
    a->f.n = n;
    a->f.page_size = o->page_size;
    a->f.lens = malloc((size_t)n * sizeof(int64_t));
    a->f.first_page = malloc((size_t)n * sizeof(int64_t));
    int64_t pages = 0;
    for (int64_t s = 0; s < n; s++) {
        a->f.lens[s] = lens[s];
        a->f.first_page[s] = pages;
        pages += (lens[s] + o->page_size - 1) / o->page_size;
        a->items += HKV * ((lens[s] + KEY_BLOCK - 1) / KEY_BLOCK);
    }
    size_t page_floats = (size_t)(pages * HKV * o->page_size * D);
    a->f.k = random_floats(page_floats, 11);
    a->f.v = random_floats(page_floats, 12);
    a->f.q = random_floats((size_t)(n * HQ * D), 13);
    a->f.out = random_floats((size_t)(n * HQ * D), 14);
    a->f.s = random_floats((size_t)(64 * (HQ / HKV) * KEY_BLOCK), 15);
}

static void floor_free(floor_arg *a)
{
    free(a->f.lens), free(a->f.first_page), free(a->f.k), free(a->f.v), free(a->f.q);
    free(a->f.out), free(a->f.s);
}

typedef struct decode_problem {
    int64_t n, *lens, *seqs, cu[65];
    attn_kv_cache *cache;
    float *q, *out, *lse;
    double kv_bytes;
} decode_problem;

static void decode_init(decode_problem *p, const options *o, int64_t n, const int64_t *lens)
{
    memset(p, 0, sizeof *p);
    p->n = n;
    int64_t pages = 0;
    for (int64_t s = 0; s < n; s++)
        pages += (lens[s] + o->page_size - 1) / o->page_size;
    check("cache", attn_kv_cache_create(&p->cache, HKV, D, D, o->page_size, pages));
    p->seqs = malloc((size_t)n * sizeof *p->seqs);
    p->lens = malloc((size_t)n * sizeof *p->lens);
    for (int64_t s = 0; s < n; s++) {
        p->lens[s] = lens[s];
        check("open", attn_kv_cache_seq_open(p->cache, &p->seqs[s]));
        float *kv = random_floats((size_t)(lens[s] * HKV * D), (unsigned)s + 1);
        check("append", attn_kv_cache_append(p->cache, p->seqs[s], lens[s], kv, kv));
        free(kv);
        p->cu[s + 1] = p->cu[s] + 1;
        p->kv_bytes += (double)lens[s] * HKV * 2 * D * sizeof(float);
    }
    p->q = random_floats((size_t)(n * HQ * D), 99);
    p->out = random_floats((size_t)(n * HQ * D), 98);
    p->lse = random_floats((size_t)(n * HQ), 97);
}

static void decode_free(decode_problem *p)
{
    attn_kv_cache_destroy(p->cache);
    free(p->seqs), free(p->lens), free(p->q), free(p->out), free(p->lse);
}

static attn_sdpa *make_op(int64_t len_q, int64_t len_kv)
{
    attn_sdpa *op = NULL;
    check("op", attn_sdpa_create(&op, 1, HQ, HKV, len_q, len_kv, D, D));
    check("layout", attn_sdpa_set_layout(op, ATTN_LAYOUT_BSHD));
    check("causal", attn_sdpa_set_causal(op, ATTN_CAUSAL_BOTTOM_RIGHT));
    return op;
}

typedef void (*step_fn)(void *arg, attn_context *ctx);

static double time_step(step_fn fn, void *arg, attn_context *ctx, int runs)
{
    double *t = malloc((size_t)runs * sizeof *t);
    fn(arg, ctx);  /* warm-up */
    for (int r = 0; r < runs; r++) {
        double t0 = bench_now();
        fn(arg, ctx);
        t[r] = bench_now() - t0;
    }
    double m = bench_median(t, runs);
    free(t);
    return m;
}

typedef struct step_arg {
    decode_problem *p;
    attn_sdpa *op;
} step_arg;

static void cached_step(void *arg, attn_context *ctx)
{
    step_arg *a = arg;
    decode_problem *p = a->p;
    check("cached step", attn_sdpa_forward_cached(ctx, a->op, p->cache, p->n, p->seqs, p->cu,
                                                  p->q, p->out, p->lse));
}

/* Contiguous K, V of one sequence: what the cached step reads, unpaged. */
typedef struct flat_arg {
    attn_sdpa *op;
    const float *q, *k, *v;
    float *out;
} flat_arg;

static void flat_step(void *arg, attn_context *ctx)
{
    flat_arg *a = arg;
    check("flat forward", attn_sdpa_forward(ctx, a->op, a->q, a->k, a->v, NULL, a->out, NULL,
                                            NULL));
}

static void report(const char *name, double ms, const char *what, double ref_ms, double ratio)
{
    fprintf(stderr, "%-34s %10.3f ms   %-28s %10.3f ms   ratio %.2f\n", name, ms, what, ref_ms,
            ratio);
    printf("{\"name\":\"%s\",\"ms\":%.4f,\"reference\":\"%s\",\"reference_ms\":%.4f,"
           "\"ratio\":%.3f}\n", name, ms, what, ref_ms, ratio);
    fflush(stdout);
}

static void bench_decode(const options *o, attn_context *ctx, int threads, double gbs,
                         const char *name, int64_t n, const int64_t *lens, bool references)
{
    decode_problem p;
    decode_init(&p, o, n, lens);
    attn_sdpa *op = make_op(1, 1);
    step_arg a = {&p, op};
    double ms = time_step(cached_step, &a, ctx, o->runs) * 1e3;
    double floor_ms = p.kv_bytes / (gbs * 1e9) * 1e3;
    report(name, ms, "K+V bytes at read bandwidth", floor_ms, ms / floor_ms);
    floor_arg fa;
    floor_init(&fa, o, threads, n, lens);
    double blas_ms = time_step(floor_step, &fa, ctx, o->runs) * 1e3;
    char label[96];
    snprintf(label, sizeof label, "%s vs its GEMMs", name);
    report(label, ms, "the same cblas_sgemm calls", blas_ms, ms / blas_ms);
    floor_free(&fa);
    if (references) {
        int64_t len = lens[0];
        size_t nkv = (size_t)(len * HKV * D), nq = (size_t)(len * HQ * D);
        float *k = random_floats(nkv, 1), *v = random_floats(nkv, 2);
        float *q = random_floats(nq, 3), *out = random_floats(nq, 4);
        flat_arg one = {make_op(1, len), q + (len - 1) * HQ * D, k, v, out};
        double flat_ms = time_step(flat_step, &one, ctx, o->runs) * 1e3;
        snprintf(label, sizeof label, "%s vs contiguous K,V", name);
        report(label, ms, "attn_sdpa_forward, len_q 1", flat_ms, ms / flat_ms);
        flat_arg all = {make_op(len, len), q, k, v, out};
        int runs = o->runs < 3 ? o->runs : 3;  /* ~1 s each */
        double full_ms = time_step(flat_step, &all, ctx, runs) * 1e3;
        snprintf(label, sizeof label, "%s vs recomputing the prefix", name);
        report(label, ms, "causal forward, 4096 queries", full_ms, full_ms / ms);
        attn_sdpa_destroy(one.op);
        attn_sdpa_destroy(all.op);
        free(k), free(v), free(q), free(out);
    }
    attn_sdpa_destroy(op);
    decode_free(&p);
}

/* ---- 3. chunked prefill ---------------------------------------------------------- */

typedef struct prefill_arg {
    const options *o;
    int64_t len, chunk;
    const float *q, *k, *v;
    float *out, *lse;
    attn_sdpa *op;
} prefill_arg;

static void chunked_prefill(void *arg, attn_context *ctx)
{
    prefill_arg *a = arg;
    attn_kv_cache *cache = NULL;
    check("cache", attn_kv_cache_create(&cache, HKV, D, D, a->o->page_size,
                                        (a->len + a->o->page_size - 1) / a->o->page_size));
    int64_t seq;
    check("open", attn_kv_cache_seq_open(cache, &seq));
    for (int64_t t = 0; t < a->len; t += a->chunk) {
        int64_t c = a->len - t < a->chunk ? a->len - t : a->chunk, cu[2] = {0, c};
        check("append", attn_kv_cache_append(cache, seq, c, a->k + t * HKV * D,
                                             a->v + t * HKV * D));
        check("chunk", attn_sdpa_forward_cached(ctx, a->op, cache, 1, &seq, cu,
                                                a->q + t * HQ * D, a->out + t * HQ * D,
                                                a->lse + t * HQ));
    }
    attn_kv_cache_destroy(cache);
}

static void bench_prefill(const options *o, attn_context *ctx, int64_t len, int64_t chunk)
{
    size_t nkv = (size_t)(len * HKV * D), nq = (size_t)(len * HQ * D);
    float *q = random_floats(nq, 5), *k = random_floats(nkv, 6);
    float *v = random_floats(nkv, 7), *out = random_floats(nq, 8);
    float *lse = random_floats((size_t)(len * HQ), 9);
    prefill_arg a = {o, len, chunk, q, k, v, out, lse, make_op(1, 1)};
    int runs = o->runs < 5 ? o->runs : 5;
    double ms = time_step(chunked_prefill, &a, ctx, runs) * 1e3;
    flat_arg full = {make_op(len, len), q, k, v, out};
    double full_ms = time_step(flat_step, &full, ctx, runs) * 1e3;
    char name[64];
    snprintf(name, sizeof name, "prefill %lld in chunks of %lld", (long long)len,
             (long long)chunk);
    report(name, ms, "one causal forward", full_ms, ms / full_ms);
    attn_sdpa_destroy(a.op);
    attn_sdpa_destroy(full.op);
    free(q), free(k), free(v), free(out), free(lse);
}

/* ---- main ------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: attn-bench-decode [--threads N] [--runs N] [--page-size N] "
                    "[--quick]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    options o = {.threads = 0, .runs = 7, .page_size = 16};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            o.threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            o.runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--page-size") == 0 && i + 1 < argc)
            o.page_size = atoll(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0)
            o.quick = true, o.runs = 3;
        else
            usage();
    }
    if (o.runs < 1 || o.page_size < 1 || o.threads < 0)
        usage();
    attn_context *ctx = NULL;
    check("context", attn_context_create(&ctx));
    if (o.threads > 0)
        check("threads", attn_context_set_num_threads(ctx, o.threads));
    int threads = o.threads > 0 ? o.threads : 2;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (o.threads == 0 && cores > 0)
        threads = (int)(cores < 64 ? cores : 64);
    double gbs = read_bandwidth(threads, o.runs, (size_t)1 << 30);
    fprintf(stderr, "read bandwidth on %d threads: %.1f GB/s; pages of %lld tokens\n", threads,
            gbs, (long long)o.page_size);
    printf("{\"name\":\"read bandwidth\",\"threads\":%d,\"gb_per_s\":%.2f,\"page_size\":%lld}\n",
           threads, gbs, (long long)o.page_size);
    const int64_t one[1] = {4096};
    int64_t mixed[16];
    for (int i = 0; i < 16; i++)
        mixed[i] = 256 * (i + 1);
    bench_decode(&o, ctx, threads, gbs, "decode 32/8 d128 batch 1 L4096", 1, one, true);
    bench_decode(&o, ctx, threads, gbs, "decode 32/8 d128 batch 16 mixed", 16, mixed, false);
    if (!o.quick)
        bench_prefill(&o, ctx, 4096, 512);
    attn_context_destroy(ctx);
    return 0;
}
