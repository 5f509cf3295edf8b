/*
 * test_schedules.c — a context left at its default runs its items on the
 * schedule context.c picks from the BLAS's threads: libattn's pool (one BLAS
 * thread), an OpenMP region (OpenBLAS's OpenMP build), or GEMMs from the
 * calling thread with the softmax shared out (OpenBLAS's pthreads on several
 * threads). This test sets the BLAS's thread count itself (it is a program:
 * openblas_set_num_threads is its own to call) to reach each schedule this
 * machine's BLAS has, and checks that the default context
 *   - agrees with the float64 reference (out, weights, lse; every mask kind,
 *     causal, GQA, both layouts, one decode row; the multi-head layer),
 *   - gives bitwise the results of 1 and 3 explicit threads under the same
 *     BLAS setting whenever their GEMMs run on as many BLAS threads as the
 *     default's (all but 1 thread under OpenBLAS's OpenMP build with
 *     several threads).
 * Shapes are large enough that OpenBLAS splits their GEMMs over threads
 * (m·n·k above 64³).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attn.h>
#if ATTN_TEST_OPENMP
#include <omp.h>
#endif

#include "reliability_util.h"

/* The program's own BLAS setting (weak: absent from a BLAS other than
 * OpenBLAS, and then only the BLAS's own setting is tested). */
extern void openblas_set_num_threads(int) __attribute__((weak));
extern int openblas_get_num_threads(void) __attribute__((weak));

static const double TOL = 1e-5;

/* Under ThreadSanitizer only the one-BLAS-thread setting: OpenBLAS's own
 * pthreads synchronize in code TSan does not see, which it reports as races
 * (.ci/reliability.sh runs TSan with OPENBLAS_NUM_THREADS=1 for that). */
#if defined(__SANITIZE_THREAD__)
#define BLAS_SETTINGS 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BLAS_SETTINGS 1
#endif
#endif
#ifndef BLAS_SETTINGS
#define BLAS_SETTINGS 2
#endif

/* ATTN_TEST_QUICK=1 (.ci/reliability.sh's Valgrind run, ~50x slower) caps
 * the query rows at 64 and the layer's sequence at 100: every case keeps
 * its schedule, and the case that shares the softmax still does (a 64-row
 * block of 2048 keys). */
static int quick;

/* The value of "key: " in attn_runtime_info's text, into buf. */
static void info_value(const char *key, char *buf, size_t size)
{
    char text[4096];
    attn_runtime_info(text, sizeof text);
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\n%s: ", key);
    const char *at = strstr(text, pattern);
    assert_non_null(at);
    at += strlen(pattern);
    size_t n = strcspn(at, "\n");
    snprintf(buf, size, "%.*s", (int)(n < size ? n : size - 1), at);
}

/* Whether every GEMM of a call on `threads` explicit threads runs the same
 * way (same BLAS threads) as under the default context, so that the bits
 * must agree. */
static int same_gemms(int blas_threads, int threads)
{
    if (blas_threads == 1)
        return 1;  /* pool or OpenMP region, BLAS serial in both */
    /* Several BLAS threads. pthreads: every GEMM runs on the BLAS's threads,
     * whichever libattn thread makes it. OpenMP: the default's GEMMs run
     * inside a region, on one BLAS thread, and so do those of 3 explicit
     * threads, while 1 explicit thread's run on all of them: OpenBLAS may
     * then split a sum differently (bits differed at len 1000). pthreads
     * with libattn's GEMMs on its serial copy: serial everywhere. */
    char threading[64];
    info_value("blas_threading", threading, sizeof threading);
    if (strcmp(threading, "pthreads") == 0)
        return 1;
    return threads > 1;
}

typedef struct sdpa_case {
    const char *name;
    int64_t B, Hq, Hkv, Lq, Lkv, D, Dv;
    attn_layout layout;
    attn_causal causal;
    int mask;  /* 0 none, 1 lengths, 2 per-query lengths, 3 keep, 4 bias */
} sdpa_case;

static const sdpa_case cases[] = {
    /* 64-row blocks of 2048 keys: 128K logits, enough to share the softmax
     * out in the BLAS-threaded schedule (attend.c, from 64K) */
    {"1 head, 64-row blocks, 2048 keys", 1, 1, 1, 1024, 2048, 64, 64, ATTN_LAYOUT_BHSD,
     ATTN_CAUSAL_NONE, 0},
    {"gqa 8/2 lengths", 2, 8, 2, 300, 257, 64, 64, ATTN_LAYOUT_BHSD, ATTN_CAUSAL_NONE, 1},
    {"causal bottom-right bias bshd", 1, 4, 4, 200, 333, 64, 48, ATTN_LAYOUT_BSHD,
     ATTN_CAUSAL_BOTTOM_RIGHT, 4},
    {"causal top-left keep", 1, 4, 2, 320, 320, 64, 64, ATTN_LAYOUT_BHSD, ATTN_CAUSAL_TOP_LEFT, 3},
    {"per-query lengths", 2, 2, 2, 130, 700, 32, 32, ATTN_LAYOUT_BHSD, ATTN_CAUSAL_NONE, 2},
    {"decode row", 1, 16, 4, 1, 2048, 128, 128, ATTN_LAYOUT_BHSD, ATTN_CAUSAL_NONE, 0},
};

static void set_mask(ru_sdpa *p, const sdpa_case *c, tu_rng *rng, void **owned)
{
    *owned = NULL;
    if (c->mask == 1 || c->mask == 2) {
        int64_t n = c->mask == 1 ? c->B : c->B * c->Lq;
        int64_t *len = ru_alloc((size_t)n * sizeof *len);
        for (int64_t i = 0; i < n; i++)
            len[i] = tu_randint(rng, 0, c->Lkv);
        len[0] = c->Lkv;
        *owned = len;
        assert_int_equal(ru_sdpa_lengths(p, len, c->mask == 2), ATTN_OK);
    } else if (c->mask == 3) {
        uint8_t *keep = ru_alloc((size_t)(c->Lq * c->Lkv));
        for (int64_t i = 0; i < c->Lq * c->Lkv; i++)
            keep[i] = tu_uniform(rng) < 0.8;
        *owned = keep;
        assert_int_equal(ru_sdpa_keep(p, keep, 1, 1, c->Lq), ATTN_OK);
    } else if (c->mask == 4) {
        float *bias = ru_alloc((size_t)(c->Hq * c->Lq * c->Lkv) * sizeof *bias);
        for (int64_t i = 0; i < c->Hq * c->Lq * c->Lkv; i++)
            bias[i] = tu_uniform(rng) < 0.05 ? -INFINITY : (float)(2.0 * tu_normal(rng));
        *owned = bias;
        assert_int_equal(ru_sdpa_bias(p, bias, 1, c->Hq, c->Lq), ATTN_OK);
    }
}

static void check_sdpa_case(const sdpa_case *c, int blas_threads, uint64_t seed)
{
    ru_sdpa p;
    ru_sdpa_init(&p, c->B, c->Hq, c->Hkv, c->Lq, c->Lkv, c->D, c->Dv, c->layout, c->causal, 0,
                 seed);
    tu_rng rng;
    tu_rng_seed(&rng, seed + 1);
    void *mask_data;
    set_mask(&p, c, &rng, &mask_data);

    ru_out def, one, three;
    assert_int_equal(ru_sdpa_run(&p, 0, &def), ATTN_OK);
    assert_int_equal(ru_sdpa_run(&p, 1, &one), ATTN_OK);
    assert_int_equal(ru_sdpa_run(&p, 3, &three), ATTN_OK);
    ru_ref ref;
    ru_sdpa_ref(&p, &ref);
    char what[160];
    snprintf(what, sizeof what, "%s, BLAS threads %d: out", c->name, blas_threads);
    assert_true(ru_close(what, def.out, ref.out, p.no, p.Dv, TOL));
    snprintf(what, sizeof what, "%s, BLAS threads %d: weights", c->name, blas_threads);
    assert_true(ru_close(what, def.w, ref.w, p.nw, p.Lkv, TOL));
    snprintf(what, sizeof what, "%s, BLAS threads %d: lse", c->name, blas_threads);
    assert_true(ru_close(what, def.lse, ref.lse, p.nl, 0, TOL));

    const ru_out *explicit_runs[2] = {&one, &three};
    const int explicit_threads[2] = {1, 3};
    for (int e = 0; e < 2; e++) {
        if (!same_gemms(blas_threads, explicit_threads[e]))
            continue;
        snprintf(what, sizeof what, "%s, BLAS threads %d: default vs %d threads", c->name,
                 blas_threads, explicit_threads[e]);
        assert_true(ru_same_bits(what, def.out, explicit_runs[e]->out, p.no));
        assert_true(ru_same_bits(what, def.w, explicit_runs[e]->w, p.nw));
        assert_true(ru_same_bits(what, def.lse, explicit_runs[e]->lse, p.nl));
    }
    ru_out_free(&def), ru_out_free(&one), ru_out_free(&three);
    ru_ref_free(&ref);
    free(mask_data);
    ru_sdpa_free(&p);
}

/* nn.MultiheadAttention, causal, default context, against float64. */
/* The schedule a context left at its default takes for this BLAS setting
 * (attn_context_set_num_threads): one pthreads BLAS thread → the pool; several
 * → the GEMMs from the calling thread, or the pool when libattn runs its
 * GEMMs on its serial copy of OpenBLAS's OpenMP build (blas_copy,
 * src/blas_copy.c); an OpenMP BLAS → an OpenMP region when libattn has OpenMP, else the
 * calling thread's GEMMs, never the pool. */
static const char *expected_schedule(int blas_threads)
{
    char threading[64], copy[512];
    info_value("blas_threading", threading, sizeof threading);
    info_value("blas_copy", copy, sizeof copy);
    if (copy[0] == '/')
        return "pool";
    if (strcmp(threading, "openmp") == 0)
        return ATTN_TEST_OPENMP ? "openmp" : "blas-threads";
    return blas_threads == 1 ? "pool" : "blas-threads";
}

/* nn.MultiheadAttention, causal and not, default context, against float64
 * and bitwise against one explicit thread under the same BLAS setting. */
static void check_mha(int blas_threads, attn_causal causal)
{
    enum { BATCH = 2, E = 128, H = 8 };
    const int L = quick ? 100 : 300;
    tu_rng rng;
    tu_rng_seed(&rng, 77);
    float *w[4], *b[4];
    for (int i = 0; i < 4; i++) {
        w[i] = ru_floats(E * E), b[i] = ru_floats(E);
        tu_fill_uniform(&rng, w[i], E * E, -0.15f, 0.15f);
        tu_fill_uniform(&rng, b[i], E, -0.1f, 0.1f);
    }
    float *x = ru_floats(BATCH * L * E), *out = ru_floats(BATCH * L * E);
    tu_fill_normal(&rng, x, BATCH * L * E, 0.0f, 1.0f);
    attn_context *ctx = NULL;
    attn_mha *mha = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_mha_create(&mha, E, H, H, E, E, 1), ATTN_OK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(attn_mha_set_weights(mha, (attn_proj)i, w[i], b[i]), ATTN_OK);
    assert_int_equal(attn_mha_set_causal(mha, causal), ATTN_OK);
    assert_int_equal(attn_mha_forward(ctx, mha, BATCH, L, L, x, x, x, NULL, out, NULL), ATTN_OK);
    float *out1 = ru_floats(BATCH * L * E);
    attn_context *one = NULL;
    assert_int_equal(attn_context_create(&one), ATTN_OK);
    assert_int_equal(attn_context_set_num_threads(one, 1), ATTN_OK);
    assert_int_equal(attn_mha_forward(one, mha, BATCH, L, L, x, x, x, NULL, out1, NULL), ATTN_OK);
    attn_context_destroy(one);

    ru_mha m = {.embed = E, .heads = H, .kv_heads = H, .kdim = E, .vdim = E, .causal = causal};
    for (int i = 0; i < 4; i++)
        m.w[i] = w[i], m.b[i] = b[i];
    double *ref = ru_doubles(BATCH * L * E);
    ru_ref_mha(&m, BATCH, L, L, x, x, x, NULL, ref, NULL);
    char what[64];
    snprintf(what, sizeof what, "mha causal %d, BLAS threads %d", (int)causal, blas_threads);
    assert_true(ru_close(what, out, ref, BATCH * L * E, E, TOL));
    if (same_gemms(blas_threads, 1))
        assert_true(ru_same_bits(what, out, out1, BATCH * L * E));

    free(ref), free(x), free(out), free(out1);
    for (int i = 0; i < 4; i++)
        free(w[i]), free(b[i]);
    attn_mha_destroy(mha);
    attn_context_destroy(ctx);
}

static void test_every_schedule(void **state)
{
    (void)state;
    int user = openblas_get_num_threads ? openblas_get_num_threads() : 1;
    const int settings[2] = {1, 2};
    for (int s = 0; s < (openblas_set_num_threads ? BLAS_SETTINGS : 1); s++) {
        int blas_threads = settings[s];
        if (openblas_set_num_threads)
            openblas_set_num_threads(blas_threads);
        else {  /* the BLAS's own setting, as libattn reads it (BLIS, oneDNN) */
            char v[16];
            info_value("blas_threads", v, sizeof v);
            blas_threads = atoi(v);
        }
        char threading[64], threads[16];
        info_value("blas_threading", threading, sizeof threading);
        info_value("threads", threads, sizeof threads);
        char schedule[32];
        info_value("schedule", schedule, sizeof schedule);
        print_message("schedules: BLAS %s on %d threads, default context: %s threads, %s\n",
                      threading, blas_threads, threads, schedule);
        if (openblas_set_num_threads)
            assert_string_equal(schedule, expected_schedule(blas_threads));
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            sdpa_case c = cases[i];
            if (quick && c.Lq > 64)
                c.Lq = 64;
            check_sdpa_case(&c, blas_threads, 1000 + i);
        }
        check_mha(blas_threads, ATTN_CAUSAL_TOP_LEFT);
        check_mha(blas_threads, ATTN_CAUSAL_NONE);
    }
    if (openblas_set_num_threads)
        openblas_set_num_threads(user);
}

/* With libattn's GEMMs on its copy of OpenBLAS's OpenMP build (blas_copy:
 * a path), the calling thread's OpenMP thread count, which libattn sets to 1
 * around each call of the copy, is the caller's again after the call, and
 * the program's OpenBLAS keeps its thread count. */
static void test_copy_leaves_the_caller_alone(void **state)
{
    (void)state;
    char copy[512];
    info_value("blas_copy", copy, sizeof copy);
    if (copy[0] != '/') {
        print_message("no copy in use (blas_copy: %s)\n", copy);
        return;
    }
    int blas_before = openblas_get_num_threads ? openblas_get_num_threads() : 1;
#if ATTN_TEST_OPENMP
    omp_set_num_threads(3);
#endif
    sdpa_case c = cases[0];
    if (quick && c.Lq > 64)
        c.Lq = 64;  /* as in test_every_schedule: the uncapped case took 100 s under Valgrind */
    check_sdpa_case(&c, blas_before, 4242);
    check_mha(blas_before, ATTN_CAUSAL_NONE);
#if ATTN_TEST_OPENMP
    assert_int_equal(omp_get_max_threads(), 3);
#endif
    if (openblas_get_num_threads)
        assert_int_equal(openblas_get_num_threads(), blas_before);
}

int main(void)
{
    const char *q = getenv("ATTN_TEST_QUICK");
    quick = q && q[0] == '1';
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_schedule),
        cmocka_unit_test(test_copy_leaves_the_caller_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
