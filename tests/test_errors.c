/*
 * test_errors.c — every error path of the basics, contexts, masks and SDPA
 * (forward and backward).
 *
 * What it proves, for each documented failure of attn.h:
 *   1. the returned attn_status is the documented one;
 *   2. attn_last_error() is a fresh, non-empty message that starts with
 *      "<function>:" and names the offending argument (as a whole word);
 *   3. no output is touched: out-pointers keep a sentinel value, output
 *      arrays pre-filled with a byte pattern are byte-identical afterwards,
 *      and an op or mask whose setter failed behaves exactly as before.
 * It also proves that successful calls leave attn_last_error() alone, that
 * the message is thread-local, that attn_status_string never returns NULL,
 * that the version functions match the header, that _destroy(NULL) is a
 * no-op, and that empty tensors (batch, len_q or len_kv = 0) may be NULL.
 * attn_sdpa_backward (v1.1) gets the same checks, and overlapping gradient
 * outputs are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <attn.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- message checks --------------------------------------------------- */

static char sentinel_obj;
#define SENTINEL ((void *)&sentinel_obj)
static const char *g_case = "";  /* the case being run, for failure messages */

static int is_ident(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_';
}

/* Whether s mentions one of the '|'-separated words of alts as a whole word
 * ("q" matches "q is NULL", not "heads_q"). */
static int mentions(const char *s, const char *alts) {
    char word[64];
    while (*alts) {
        size_t n = strcspn(alts, "|");
        if (n > 0 && n < sizeof word) {
            memcpy(word, alts, n);
            word[n] = '\0';
            for (const char *p = s; (p = strstr(p, word)) != NULL; p++)
                if ((p == s || !is_ident(p[-1])) && !is_ident(p[n]))
                    return 1;
        }
        alts += n + (alts[n] == '|');
    }
    return 0;
}

/* Sets the last error to a message of a function other than `func`, so that
 * the call under test must overwrite it. */
static void prime_error(const char *func) {
    if (strcmp(func, "attn_mask_clear") != 0)
        assert_int_equal(attn_mask_clear(NULL), ATTN_ERR_NULL_POINTER);
    else
        assert_int_equal(attn_context_set_num_threads(NULL, 0), ATTN_ERR_NULL_POINTER);
}

/* Checks the status and the message of a failed call of func. */
static void check_error(attn_status got, attn_status want, const char *func, const char *arg) {
    const char *e = attn_last_error();
    size_t n = strlen(func);
    if (got != want)
        fail_msg("[%s] %s: got %s, want %s; message \"%s\"", g_case, func,
                 attn_status_string(got), attn_status_string(want), e ? e : "(NULL)");
    assert_non_null(e);
    if (strncmp(e, func, n) != 0 || e[n] != ':')
        fail_msg("[%s] message \"%s\" does not start with \"%s:\"", g_case, e, func);
    if (!mentions(e + n + 1, arg))
        fail_msg("[%s] message \"%s\" does not mention %s", g_case, e, arg);
}
#define EXPECT_FAIL(call, want, func, arg) \
    do { prime_error(func); check_error((call), (want), (func), (arg)); } while (0)

/* Successful calls must leave a saved message as it was. */
static char saved_error[512];
static void save_error(void) {
    prime_error("");
    snprintf(saved_error, sizeof saved_error, "%s", attn_last_error());
    assert_true(saved_error[0] != '\0');
}
static void check_ok(attn_status st, const char *what) {
    if (st != ATTN_OK)
        fail_msg("[%s] %s: got %s (\"%s\"), want ATTN_OK", g_case, what,
                 attn_status_string(st), attn_last_error());
    if (strcmp(attn_last_error(), saved_error) != 0)
        fail_msg("[%s] %s succeeded but changed attn_last_error() from \"%s\" to \"%s\"",
                 g_case, what, saved_error, attn_last_error());
}
#define EXPECT_OK(call) check_ok((call), #call)

/* ---- the forward fixture ---------------------------------------------- */

enum { B = 2, HQ = 4, HKV = 2, LQ = 3, LKV = 5, DQK = 4, DV = 3 };
enum { NQ = B * HQ * LQ * DQK, NK = B * HKV * LKV * DQK, NV = B * HKV * LKV * DV,
       NOUT = B * HQ * LQ * DV, NW = B * HQ * LQ * LKV, NLSE = B * HQ * LQ };

static float q_buf[NQ], k_buf[NK], v_buf[NV];
static float out_buf[NOUT], w_buf[NW], lse_buf[NLSE];
static unsigned char out_ref[sizeof out_buf], w_ref[sizeof w_buf], lse_ref[sizeof lse_buf];
static int64_t lens_buf[512];  /* mask arrays, large enough for every case */
static uint8_t keep_buf[512];
static float bias_buf[512];
static attn_context *g_ctx;

/* Fills the output arrays with a byte pattern and snapshots them. */
static void fill_outputs(void) {
    unsigned char *bufs[3] = {(unsigned char *)out_buf, (unsigned char *)w_buf,
                              (unsigned char *)lse_buf};
    unsigned char *refs[3] = {out_ref, w_ref, lse_ref};
    size_t sizes[3] = {sizeof out_buf, sizeof w_buf, sizeof lse_buf};
    for (unsigned b = 0; b < 3; b++) {
        for (size_t i = 0; i < sizes[b]; i++)
            bufs[b][i] = (unsigned char)(i * 131u + 7u + b * 29u);
        memcpy(refs[b], bufs[b], sizes[b]);
    }
}

static void check_outputs_untouched(void) {
    if (memcmp(out_buf, out_ref, sizeof out_buf) != 0) fail_msg("[%s] out written", g_case);
    if (memcmp(w_buf, w_ref, sizeof w_buf) != 0) fail_msg("[%s] weights written", g_case);
    if (memcmp(lse_buf, lse_ref, sizeof lse_buf) != 0) fail_msg("[%s] lse written", g_case);
}

static attn_sdpa *make_op(void) {
    attn_sdpa *op = NULL;
    assert_int_equal(attn_sdpa_create(&op, B, HQ, HKV, LQ, LKV, DQK, DV), ATTN_OK);
    assert_non_null(op);
    return op;
}

static attn_mask *make_mask(void) {
    attn_mask *m = (attn_mask *)SENTINEL;
    assert_int_equal(attn_mask_create(&m), ATTN_OK);
    assert_true(m != NULL && m != (attn_mask *)SENTINEL);
    return m;
}

static void forward_into(const attn_sdpa *op, const attn_mask *mask, float *out, float *w,
                         float *lse) {
    if (attn_sdpa_forward(g_ctx, op, q_buf, k_buf, v_buf, mask, out, w, lse) != ATTN_OK)
        fail_msg("forward failed: %s", attn_last_error());
}

static int group_setup(void **state) {
    (void)state;
    for (int i = 0; i < NQ; i++) q_buf[i] = (float)((i * 7) % 11) / 11.0f - 0.5f;
    for (int i = 0; i < NK; i++) k_buf[i] = (float)((i * 5) % 13) / 13.0f - 0.5f;
    for (int i = 0; i < NV; i++) v_buf[i] = (float)((i * 3) % 17) / 17.0f - 0.5f;
    for (int i = 0; i < 512; i++) lens_buf[i] = 2, keep_buf[i] = 1;  /* bias_buf: zeros */
    return attn_context_create(&g_ctx) == ATTN_OK ? 0 : -1;
}
static int group_teardown(void **state) {
    (void)state;
    attn_context_destroy(g_ctx);
    return 0;
}
static int reset_case(void **state) { (void)state; g_case = ""; return 0; }

/* ---- version, status strings ------------------------------------------ */

static void test_version(void **state) {
    (void)state;
    char expect[32];
    snprintf(expect, sizeof expect, "%d.%d.%d", ATTN_VERSION_MAJOR, ATTN_VERSION_MINOR,
             ATTN_VERSION_PATCH);
    assert_int_equal(attn_version_number(), ATTN_VERSION_NUMBER);
    assert_non_null(attn_version_string());
    assert_string_equal(attn_version_string(), ATTN_VERSION_STRING);
    assert_string_equal(attn_version_string(), expect);
}

static void test_status_strings(void **state) {
    (void)state;
    static const char *const names[] = {
        "ATTN_OK", "ATTN_ERR_NULL_POINTER", "ATTN_ERR_INVALID_ARGUMENT",
        "ATTN_ERR_SHAPE_MISMATCH", "ATTN_ERR_SIZE_OVERFLOW", "ATTN_ERR_OUT_OF_MEMORY",
        "ATTN_ERR_UNSUPPORTED", "ATTN_ERR_STATE", "ATTN_ERR_COMMUNICATION"};
    for (int s = 0; s < (int)COUNT(names); s++) {
        const char *str = attn_status_string((attn_status)s);
        size_t n = strlen(names[s]);
        assert_non_null(str);
        if (strncmp(str, names[s], n) != 0 || is_ident(str[n]))
            fail_msg("attn_status_string(%d) = \"%s\", want %s...", s, str, names[s]);
    }
    const int unknown[] = {9, 999, -1, INT_MAX, INT_MIN};
    for (size_t i = 0; i < COUNT(unknown); i++) {
        const char *str = attn_status_string((attn_status)unknown[i]);
        assert_non_null(str);
        assert_true(str[0] != '\0');
    }
}

/* ---- attn_set_error: how libraries built on libattn report -------------- */

static void test_set_error(void **state) {
    (void)state;
    assert_int_equal(attn_set_error(ATTN_ERR_COMMUNICATION, "attn_mpi_ring_forward",
                                    "rank 1: MPI_Sendrecv failed"), ATTN_ERR_COMMUNICATION);
    assert_string_equal(attn_last_error(), "attn_mpi_ring_forward: rank 1: MPI_Sendrecv failed");
    assert_int_equal(attn_set_error(ATTN_ERR_SHAPE_MISMATCH, NULL, NULL),
                     ATTN_ERR_SHAPE_MISMATCH);
    assert_string_equal(attn_last_error(), ": ");
    /* A message longer than the buffer is cut, never overflowed. */
    char longer[1000];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    assert_int_equal(attn_set_error(ATTN_ERR_STATE, "f", longer), ATTN_ERR_STATE);
    assert_int_equal(strlen(attn_last_error()), 255);
    assert_memory_equal(attn_last_error(), "f: xxx", 6);
    /* A binding passing the last message on: "g: " before it, cut. */
    assert_int_equal(attn_set_error(ATTN_ERR_STATE, "g", attn_last_error()), ATTN_ERR_STATE);
    assert_memory_equal(attn_last_error(), "g: f: xxx", 9);
    assert_int_equal(strlen(attn_last_error()), 255);
}

/* ---- attn_last_error: success keeps it, threads have their own -------- */

static void test_success_keeps_last_error(void **state) {
    (void)state;
    attn_context *ctx = NULL;
    attn_mask *mask = NULL;
    attn_sdpa *op = NULL;
    save_error();
    (void)attn_version_number();
    (void)attn_version_string();
    (void)attn_status_string(ATTN_ERR_STATE);
    attn_context_destroy(NULL);  /* every _destroy(NULL) is a no-op */
    attn_mask_destroy(NULL);
    attn_sdpa_destroy(NULL);
    EXPECT_OK(attn_context_create(&ctx));
    EXPECT_OK(attn_context_set_num_threads(ctx, 0));
    EXPECT_OK(attn_context_set_num_threads(ctx, 1024));
    EXPECT_OK(attn_context_set_num_threads(ctx, 2));
    EXPECT_OK(attn_mask_create(&mask));
    EXPECT_OK(attn_mask_set_kv_lengths(mask, lens_buf, B, 0, 0));
    EXPECT_OK(attn_mask_set_bool(mask, keep_buf, 1, HQ, 1, LKV));
    EXPECT_OK(attn_mask_set_bias(mask, bias_buf, B, 1, LQ, LKV));
    EXPECT_OK(attn_sdpa_create(&op, B, HQ, HKV, LQ, LKV, DQK, DV));
    EXPECT_OK(attn_sdpa_set_layout(op, ATTN_LAYOUT_BSHD));
    EXPECT_OK(attn_sdpa_set_layout(op, ATTN_LAYOUT_BHSD));
    EXPECT_OK(attn_sdpa_set_scale(op, -0.25f));
    EXPECT_OK(attn_sdpa_set_scale(op, 0.0f));
    EXPECT_OK(attn_sdpa_set_causal(op, ATTN_CAUSAL_TOP_LEFT));
    EXPECT_OK(attn_sdpa_set_causal(op, ATTN_CAUSAL_BOTTOM_RIGHT));
    EXPECT_OK(attn_sdpa_set_causal(op, ATTN_CAUSAL_NONE));
    EXPECT_OK(attn_sdpa_forward(ctx, op, q_buf, k_buf, v_buf, mask, out_buf, w_buf, lse_buf));
    EXPECT_OK(attn_sdpa_forward(ctx, op, q_buf, k_buf, v_buf, NULL, out_buf, NULL, NULL));
    EXPECT_OK(attn_mask_clear(mask));
    attn_sdpa_destroy(op);
    attn_mask_destroy(mask);
    attn_context_destroy(ctx);
    assert_string_equal(attn_last_error(), saved_error);
}

typedef struct {
    char initial[256], after[256];
    attn_status st;
} thread_result;

static void *thread_main(void *arg) {
    thread_result *r = arg;
    snprintf(r->initial, sizeof r->initial, "%s", attn_last_error());
    r->st = attn_sdpa_create(NULL, 1, 1, 1, 1, 1, 1, 1);
    snprintf(r->after, sizeof r->after, "%s", attn_last_error());
    return NULL;
}

static void test_last_error_thread_local(void **state) {
    (void)state;
    thread_result r;
    pthread_t t;
    memset(&r, 0, sizeof r);
    save_error();
    assert_int_equal(pthread_create(&t, NULL, thread_main, &r), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_string_equal(r.initial, "");                  /* a new thread has no error */
    assert_int_equal(r.st, ATTN_ERR_NULL_POINTER);
    assert_true(strncmp(r.after, "attn_sdpa_create:", 17) == 0);
    assert_string_equal(attn_last_error(), saved_error); /* main's is unchanged */
}

/* ---- contexts --------------------------------------------------------- */

static void test_context_errors(void **state) {
    (void)state;
    const char *f = "attn_context_set_num_threads";
    EXPECT_FAIL(attn_context_create(NULL), ATTN_ERR_NULL_POINTER, "attn_context_create", "ctx");
    EXPECT_FAIL(attn_context_set_num_threads(NULL, 1), ATTN_ERR_NULL_POINTER, f, "ctx");
    const int bad[] = {-1, INT_MIN, 1025, INT_MAX};
    for (size_t i = 0; i < COUNT(bad); i++)
        EXPECT_FAIL(attn_context_set_num_threads(g_ctx, bad[i]), ATTN_ERR_INVALID_ARGUMENT, f,
                    "n");
}

/* ---- attn_sdpa_create ------------------------------------------------- */

typedef struct {
    const char *name;
    int null_op;
    int64_t batch, hq, hkv, lq, lkv, dqk, dv;
    attn_status st;
    const char *arg;  /* '|'-separated words, one of which the message must name */
} create_case;

#define P16 (INT64_C(1) << 16)
#define P31 (INT64_C(1) << 31)
#define P32 (INT64_C(1) << 32)
#define P62 (INT64_C(1) << 62)
#define INV ATTN_ERR_INVALID_ARGUMENT
#define OVF ATTN_ERR_SIZE_OVERFLOW
#define UNS ATTN_ERR_UNSUPPORTED
#define OVF_ARGS "batch|len_q|q|k|v|out|size_t"
static const create_case create_cases[] = {
    {"op NULL", 1, 1, 1, 1, 1, 1, 1, 1, ATTN_ERR_NULL_POINTER, "op"},
    {"batch -1", 0, -1, 4, 2, 3, 5, 4, 3, INV, "batch"},
    {"batch INT64_MIN", 0, INT64_MIN, 4, 2, 3, 5, 4, 3, INV, "batch"},
    {"heads_q -1", 0, 2, -1, 2, 3, 5, 4, 3, INV, "heads_q"},
    {"heads_q 0", 0, 2, 0, 2, 3, 5, 4, 3, INV, "heads_q"},
    {"heads_kv -1", 0, 2, 4, -1, 3, 5, 4, 3, INV, "heads_kv"},
    {"heads_kv 0", 0, 2, 4, 0, 3, 5, 4, 3, INV, "heads_kv"},
    {"len_q -1", 0, 2, 4, 2, -1, 5, 4, 3, INV, "len_q"},
    {"len_kv -1", 0, 2, 4, 2, 3, -1, 4, 3, INV, "len_kv"},
    {"dim_qk -1", 0, 2, 4, 2, 3, 5, -1, 3, INV, "dim_qk"},
    {"dim_qk 0", 0, 2, 4, 2, 3, 5, 0, 3, INV, "dim_qk"},
    {"dim_v -1", 0, 2, 4, 2, 3, 5, 4, -1, INV, "dim_v"},
    {"dim_v 0", 0, 2, 4, 2, 3, 5, 4, 0, INV, "dim_v"},
    {"heads_q 6 % heads_kv 4", 0, 2, 6, 4, 3, 5, 4, 3, ATTN_ERR_SHAPE_MISMATCH, "heads_q"},
    {"heads_q 1 % heads_kv 2", 0, 2, 1, 2, 3, 5, 4, 3, ATTN_ERR_SHAPE_MISMATCH, "heads_q"},
    /* element counts overflow int64 */
    {"batch 2^62, others 8", 0, P62, 8, 8, 8, 8, 8, 8, OVF, OVF_ARGS},
    {"batch 2^32 x len_q 2^32", 0, P32, 1, 1, P32, 1, 1, 1, OVF, OVF_ARGS},
    {"batch INT64_MAX", 0, INT64_MAX, 1, 1, 1, 1, 1, 1, OVF, OVF_ARGS},
    /* 2^62 elements fit int64, their 2^64 bytes do not fit size_t */
    {"batch 2^62, others 1", 0, P62, 1, 1, 1, 1, 1, 1, OVF, OVF_ARGS},
    /* beyond the BLAS int, with byte counts that fit */
    {"len_kv 2^31", 0, 1, 1, 1, 1, P31, 1, 1, UNS, "len_kv"},
    {"dim_qk 2^31", 0, 1, 1, 1, 1, 1, P31, 1, UNS, "dim_qk"},
    {"dim_v 2^31", 0, 1, 1, 1, 1, 1, 1, P31, UNS, "dim_v"},
    {"heads_q x dim_qk 2^32", 0, 1, P16, 1, 1, 1, P16, 1, UNS, "heads_q|dim_qk"},
    {"heads_q x dim_v 2^32", 0, 1, P16, 1, 1, 1, 1, P16, UNS, "heads_q|dim_v"},
    {"heads_kv x dim_qk 2^32", 0, 1, P16, P16, 1, 1, P16, 1, UNS, "heads_q|heads_kv|dim_qk"},
    /* boundaries that must succeed (creation allocates no tensor) */
    {"counts 0", 0, 0, 1, 1, 0, 0, 1, 1, ATTN_OK, ""},
    {"len_kv INT_MAX", 0, 1, 1, 1, 1, INT_MAX, 1, 1, ATTN_OK, ""},
    {"len_q 2^31 (split in blocks)", 0, 1, 1, 1, P31, 1, 1, 1, ATTN_OK, ""},
    {"MQA heads_kv 1", 0, 2, 8, 1, 3, 5, 4, 3, ATTN_OK, ""},
};

static void test_sdpa_create_errors(void **state) {
    (void)state;
    for (size_t i = 0; i < COUNT(create_cases); i++) {
        const create_case *c = &create_cases[i];
        attn_sdpa *op = (attn_sdpa *)SENTINEL;
        g_case = c->name;
        if (c->st == ATTN_OK) {
            save_error();
            EXPECT_OK(attn_sdpa_create(&op, c->batch, c->hq, c->hkv, c->lq, c->lkv, c->dqk,
                                       c->dv));
            assert_true(op != NULL && op != (attn_sdpa *)SENTINEL);
            attn_sdpa_destroy(op);
            continue;
        }
        EXPECT_FAIL(attn_sdpa_create(c->null_op ? NULL : &op, c->batch, c->hq, c->hkv, c->lq,
                                     c->lkv, c->dqk, c->dv),
                    c->st, "attn_sdpa_create", c->arg);
        assert_ptr_equal(op, SENTINEL);
    }
}

/* ---- setters of the op ------------------------------------------------ */

static void test_sdpa_setter_errors(void **state) {
    (void)state;
    static float out1[NOUT], w1[NW], l1[NLSE], out2[NOUT], w2[NW], l2[NLSE];
    const char *fl = "attn_sdpa_set_layout", *fs = "attn_sdpa_set_scale",
               *fc = "attn_sdpa_set_causal";
    attn_sdpa *op = make_op();
    forward_into(op, NULL, out1, w1, l1);

    EXPECT_FAIL(attn_sdpa_set_layout(NULL, ATTN_LAYOUT_BHSD), ATTN_ERR_NULL_POINTER, fl, "op");
    EXPECT_FAIL(attn_sdpa_set_scale(NULL, 1.0f), ATTN_ERR_NULL_POINTER, fs, "op");
    EXPECT_FAIL(attn_sdpa_set_causal(NULL, ATTN_CAUSAL_NONE), ATTN_ERR_NULL_POINTER, fc, "op");
    const int bad_layout[] = {2, 7, -1, INT_MAX}, bad_causal[] = {3, 7, -1, INT_MIN};
    const float bad_scale[] = {NAN, -NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < 4; i++) {
        EXPECT_FAIL(attn_sdpa_set_layout(op, (attn_layout)bad_layout[i]), INV, fl, "layout");
        EXPECT_FAIL(attn_sdpa_set_scale(op, bad_scale[i]), INV, fs, "scale");
        EXPECT_FAIL(attn_sdpa_set_causal(op, (attn_causal)bad_causal[i]), INV, fc, "causal");
    }

    /* The failed setters left the op as it was: same results, bit for bit. */
    forward_into(op, NULL, out2, w2, l2);
    assert_memory_equal(out1, out2, sizeof out1);
    assert_memory_equal(w1, w2, sizeof w1);
    assert_memory_equal(l1, l2, sizeof l1);
    attn_sdpa_destroy(op);
}

/* ---- mask setters ----------------------------------------------------- */

enum { MK_NONE, MK_EMPTY, MK_LEN, MK_BOOL, MK_BIAS };
static const char *const set_func[] = {"", "", "attn_mask_set_kv_lengths",
                                       "attn_mask_set_bool", "attn_mask_set_bias"};

typedef struct {
    const char *name;
    int kind;                /* MK_LEN, MK_BOOL or MK_BIAS (MK_NONE: NULL mask) */
    int null_mask, null_data;
    int64_t d0, d1, d2, d3;  /* LEN: batch, len_q; BOOL/BIAS: mb, mh, mq, len_kv */
    int per_query;
    attn_status st;
    const char *arg;
} mask_case;

static attn_status set_mask(attn_mask *m, const mask_case *c) {
    switch (c->kind) {
    case MK_LEN:
        return attn_mask_set_kv_lengths(m, c->null_data ? NULL : lens_buf, c->d0, c->d1,
                                        c->per_query);
    case MK_BOOL:
        return attn_mask_set_bool(m, c->null_data ? NULL : keep_buf, c->d0, c->d1, c->d2, c->d3);
    case MK_BIAS:
        return attn_mask_set_bias(m, c->null_data ? NULL : bias_buf, c->d0, c->d1, c->d2, c->d3);
    default:
        return ATTN_OK;
    }
}

#define NUL ATTN_ERR_NULL_POINTER
#define LEN_OVF "batch|len_q|lengths|size_t"
static const mask_case mask_set_cases[] = {
    {"len: mask NULL", MK_LEN, 1, 0, 2, 0, 0, 0, 0, NUL, "mask"},
    {"len: lengths NULL", MK_LEN, 0, 1, 2, 0, 0, 0, 0, NUL, "lengths"},
    {"len: lengths NULL per query", MK_LEN, 0, 1, 2, 3, 0, 0, 1, NUL, "lengths"},
    {"len: batch -1", MK_LEN, 0, 0, -1, 0, 0, 0, 0, INV, "batch"},
    {"len: len_q -1 per query", MK_LEN, 0, 0, 2, -1, 0, 0, 1, INV, "len_q"},
    {"len: per_query 2", MK_LEN, 0, 0, 2, 0, 0, 0, 2, INV, "per_query"},
    {"len: per_query -1", MK_LEN, 0, 0, 2, 0, 0, 0, -1, INV, "per_query"},
    {"len: batch 2^62 (bytes)", MK_LEN, 0, 0, P62, 0, 0, 0, 0, OVF, LEN_OVF},
    {"len: batch x len_q 2^64", MK_LEN, 0, 0, P32, P32, 0, 0, 1, OVF, LEN_OVF},
    {"len: NULL ok when empty", MK_LEN, 0, 1, 0, 0, 0, 0, 0, ATTN_OK, ""},
    {"len: NULL ok, len_q 0", MK_LEN, 0, 1, 2, 0, 0, 0, 1, ATTN_OK, ""},
    {"len: len_q -1 ignored", MK_LEN, 0, 0, 2, -1, 0, 0, 0, ATTN_OK, ""},
#define ARRAY_SET_CASES(K, P, N)                                                         \
    {N ": mask NULL", K, 1, 0, 1, 1, 1, 5, 0, NUL, "mask"},                              \
    {N ": data NULL", K, 0, 1, 1, 1, 1, 5, 0, NUL, P},                                   \
    {N ": mb 0", K, 0, 0, 0, 1, 1, 5, 0, INV, "mb"},                                     \
    {N ": mb -1", K, 0, 0, -1, 1, 1, 5, 0, INV, "mb"},                                   \
    {N ": mh 0", K, 0, 0, 1, 0, 1, 5, 0, INV, "mh"},                                     \
    {N ": mh -1", K, 0, 0, 1, -1, 1, 5, 0, INV, "mh"},                                   \
    {N ": mq 0", K, 0, 0, 1, 1, 0, 5, 0, INV, "mq"},                                     \
    {N ": mq -1", K, 0, 0, 1, 1, -1, 5, 0, INV, "mq"},                                   \
    {N ": len_kv -1", K, 0, 0, 1, 1, 1, -1, 0, INV, "len_kv"},                           \
    {N ": 2^62 x 8^3", K, 0, 0, P62, 8, 8, 8, 0, OVF, "mb|mh|mq|len_kv|" P "|size_t"},   \
    {N ": 2^32 x 2^32", K, 0, 0, P32, 1, P32, 1, 0, OVF, "mb|mh|mq|len_kv|" P "|size_t"}, \
    {N ": NULL ok when len_kv 0", K, 0, 1, 1, 1, 1, 0, 0, ATTN_OK, ""}
    ARRAY_SET_CASES(MK_BOOL, "keep", "bool"),
    ARRAY_SET_CASES(MK_BIAS, "bias", "bias"),
    /* 2^62 floats fit int64, their 2^64 bytes do not fit size_t */
    {"bias: len_kv 2^62 (bytes)", MK_BIAS, 0, 0, 1, 1, 1, P62, 0, OVF,
     "mb|mh|mq|len_kv|bias|size_t"},
};

static void test_mask_set_errors(void **state) {
    (void)state;
    const char *fl = "attn_mask_set_kv_lengths";
    EXPECT_FAIL(attn_mask_create(NULL), NUL, "attn_mask_create", "mask");
    EXPECT_FAIL(attn_mask_clear(NULL), NUL, "attn_mask_clear", "mask");
    attn_mask *m = make_mask();
    for (size_t i = 0; i < COUNT(mask_set_cases); i++) {
        const mask_case *c = &mask_set_cases[i];
        g_case = c->name;
        if (c->st == ATTN_OK) {
            save_error();
            check_ok(set_mask(m, c), set_func[c->kind]);
        } else {
            EXPECT_FAIL(set_mask(c->null_mask ? NULL : m, c), c->st, set_func[c->kind], c->arg);
        }
    }
    /* a negative length is caught at set */
    int64_t neg[2] = {2, -1}, negq[6] = {1, 1, 1, 1, INT64_MIN, 1};
    g_case = "negative length";
    EXPECT_FAIL(attn_mask_set_kv_lengths(m, neg, 2, 0, 0), INV, fl, "lengths|length");
    EXPECT_FAIL(attn_mask_set_kv_lengths(m, negq, 2, 3, 1), INV, fl, "lengths|length");
    attn_mask_destroy(m);
}

/* Failed mask setters leave the earlier setting of their kind in place. */
static void test_mask_failed_set_keeps_mask(void **state) {
    (void)state;
    static float out1[NOUT], out2[NOUT], out_plain[NOUT];
    static uint8_t keep0[B * HQ * LQ * LKV];
    int64_t lens[B] = {1, 3}, neg[B] = {-1, 1};
    attn_sdpa *op = make_op();
    attn_mask *m = make_mask();
    assert_int_equal(attn_mask_set_kv_lengths(m, lens, B, 0, 0), ATTN_OK);
    forward_into(op, NULL, out_plain, NULL, NULL);
    forward_into(op, m, out1, NULL, NULL);
    assert_true(memcmp(out1, out_plain, sizeof out1) != 0);  /* the mask matters */

    assert_int_equal(attn_mask_set_kv_lengths(m, neg, B, 0, 0), INV);
    assert_int_equal(attn_mask_set_kv_lengths(m, lens, B, 0, 5), INV);
    assert_int_equal(attn_mask_set_bool(m, keep0, 0, HQ, LQ, LKV), INV);
    assert_int_equal(attn_mask_set_bias(m, NULL, B, HQ, LQ, LKV), NUL);
    forward_into(op, m, out2, NULL, NULL);
    assert_memory_equal(out1, out2, sizeof out1);
    attn_mask_destroy(m);
    attn_sdpa_destroy(op);
}

/* ---- attn_sdpa_forward ------------------------------------------------ */

enum { NUL_NONE, NUL_CTX, NUL_OP, NUL_Q, NUL_K, NUL_V, NUL_OUT };

typedef struct {
    int nul;      /* which argument is NULL */
    mask_case m;  /* the mask passed; st and arg are the forward's */
} fwd_case;

#define MM ATTN_ERR_SHAPE_MISMATCH
#define FWD(nul, name, kind, d0, d1, d2, d3, pq, st, arg) \
    {nul, {name, kind, 0, 0, d0, d1, d2, d3, pq, st, arg}}
static const fwd_case fwd_cases[] = {
    FWD(NUL_CTX, "ctx NULL", MK_NONE, 0, 0, 0, 0, 0, NUL, "ctx"),
    FWD(NUL_OP, "op NULL", MK_NONE, 0, 0, 0, 0, 0, NUL, "op"),
    FWD(NUL_Q, "q NULL", MK_NONE, 0, 0, 0, 0, 0, NUL, "q"),
    FWD(NUL_K, "k NULL", MK_NONE, 0, 0, 0, 0, 0, NUL, "k"),
    FWD(NUL_V, "v NULL", MK_NONE, 0, 0, 0, 0, 0, NUL, "v"),
    FWD(NUL_OUT, "out NULL", MK_NONE, 0, 0, 0, 0, 0, NUL, "out"),
    FWD(NUL_Q, "q NULL with a mask", MK_BOOL, B, HQ, LQ, LKV, 0, NUL, "q"),
    FWD(NUL_NONE, "empty mask", MK_EMPTY, 0, 0, 0, 0, 0, ATTN_OK, ""),
    /* valid lengths: batch (and len_q per query) must equal the op's */
    FWD(NUL_NONE, "len batch 3", MK_LEN, 3, 0, 0, 0, 0, MM, "mask"),
    FWD(NUL_NONE, "len batch 1 (no broadcast)", MK_LEN, 1, 0, 0, 0, 0, MM, "mask"),
    FWD(NUL_NONE, "len per-query batch 1", MK_LEN, 1, LQ, 0, 0, 1, MM, "mask"),
    FWD(NUL_NONE, "len per-query len_q 2", MK_LEN, B, 2, 0, 0, 1, MM, "mask"),
    FWD(NUL_NONE, "len per-query len_q 4", MK_LEN, B, 4, 0, 0, 1, MM, "mask"),
    FWD(NUL_NONE, "len per-batch ok", MK_LEN, B, 0, 0, 0, 0, ATTN_OK, ""),
    FWD(NUL_NONE, "len per-batch len_q ignored", MK_LEN, B, 99, 0, 0, 0, ATTN_OK, ""),
    FWD(NUL_NONE, "len per-query ok", MK_LEN, B, LQ, 0, 0, 1, ATTN_OK, ""),
#define FWD_SHAPE_CASES(K, N)                                                   \
    FWD(NUL_NONE, N " mb 3", K, 3, HQ, LQ, LKV, 0, MM, "mask"),                 \
    FWD(NUL_NONE, N " mh 3", K, B, 3, LQ, LKV, 0, MM, "mask"),                  \
    FWD(NUL_NONE, N " mh = heads_kv", K, B, HKV, LQ, LKV, 0, MM, "mask"),       \
    FWD(NUL_NONE, N " mh 5", K, 1, 5, 1, LKV, 0, MM, "mask"),                   \
    FWD(NUL_NONE, N " mq 2", K, B, HQ, 2, LKV, 0, MM, "mask"),                  \
    FWD(NUL_NONE, N " mq 4", K, 1, 1, 4, LKV, 0, MM, "mask"),                   \
    FWD(NUL_NONE, N " len_kv 4", K, B, HQ, LQ, 4, 0, MM, "mask"),               \
    FWD(NUL_NONE, N " len_kv 6", K, 1, 1, 1, 6, 0, MM, "mask"),                 \
    FWD(NUL_NONE, N " len_kv 1 (no broadcast)", K, 1, 1, 1, 1, 0, MM, "mask"),  \
    FWD(NUL_NONE, N " full shape", K, B, HQ, LQ, LKV, 0, ATTN_OK, ""),          \
    FWD(NUL_NONE, N " all broadcast", K, 1, 1, 1, LKV, 0, ATTN_OK, ""),         \
    FWD(NUL_NONE, N " mb broadcast", K, 1, HQ, LQ, LKV, 0, ATTN_OK, ""),        \
    FWD(NUL_NONE, N " mh broadcast", K, B, 1, LQ, LKV, 0, ATTN_OK, ""),         \
    FWD(NUL_NONE, N " mq broadcast", K, B, HQ, 1, LKV, 0, ATTN_OK, "")
    FWD_SHAPE_CASES(MK_BOOL, "bool"),
    FWD_SHAPE_CASES(MK_BIAS, "bias"),
};

static attn_status call_forward(const fwd_case *c, const attn_sdpa *op, attn_mask *m) {
    return attn_sdpa_forward(c->nul == NUL_CTX ? NULL : g_ctx, c->nul == NUL_OP ? NULL : op,
                             c->nul == NUL_Q ? NULL : q_buf, c->nul == NUL_K ? NULL : k_buf,
                             c->nul == NUL_V ? NULL : v_buf, c->m.kind == MK_NONE ? NULL : m,
                             c->nul == NUL_OUT ? NULL : out_buf, w_buf, lse_buf);
}

static void test_forward_errors(void **state) {
    (void)state;
    attn_sdpa *op = make_op();
    attn_mask *m = make_mask();
    for (size_t i = 0; i < COUNT(fwd_cases); i++) {
        const fwd_case *c = &fwd_cases[i];
        g_case = c->m.name;
        assert_int_equal(attn_mask_clear(m), ATTN_OK);
        assert_int_equal(set_mask(m, &c->m), ATTN_OK);
        fill_outputs();
        if (c->m.st == ATTN_OK) {
            save_error();
            check_ok(call_forward(c, op, m), "attn_sdpa_forward");
        } else {
            EXPECT_FAIL(call_forward(c, op, m), c->m.st, "attn_sdpa_forward", c->m.arg);
            check_outputs_untouched();
        }
    }
    attn_mask_destroy(m);
    attn_sdpa_destroy(op);
}

/* Length values are checked against the op's len_kv at forward, and again
 * for sign, since the mask references caller memory that may have changed. */
static void test_forward_length_values(void **state) {
    (void)state;
    attn_sdpa *op = make_op();
    attn_mask *m = make_mask();
    int64_t lens[B] = {LKV, 0}, lensq[B * LQ] = {0, 1, 2, 3, 4, LKV};
    g_case = "lengths 0 and len_kv";
    save_error();
    EXPECT_OK(attn_mask_set_kv_lengths(m, lens, B, 0, 0));
    EXPECT_OK(attn_sdpa_forward(g_ctx, op, q_buf, k_buf, v_buf, m, out_buf, w_buf, lse_buf));
    EXPECT_OK(attn_mask_set_kv_lengths(m, lensq, B, LQ, 1));
    EXPECT_OK(attn_sdpa_forward(g_ctx, op, q_buf, k_buf, v_buf, m, out_buf, w_buf, lse_buf));

    const struct { const char *name; int per_query, idx; int64_t value; } cases[] = {
        {"length above len_kv", 0, 1, LKV + 1},
        {"length INT64_MAX", 0, 0, INT64_MAX},
        {"length made negative after set", 0, 1, -1},
        {"per-query length above len_kv", 1, 5, LKV + 1},
        {"per-query length made negative after set", 1, 3, -1},
        {"per-query length made INT64_MIN after set", 1, 0, INT64_MIN},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        int64_t *arr = cases[i].per_query ? lensq : lens, saved = arr[cases[i].idx];
        g_case = cases[i].name;
        assert_int_equal(attn_mask_set_kv_lengths(m, arr, B, LQ, cases[i].per_query), ATTN_OK);
        arr[cases[i].idx] = cases[i].value;  /* the caller changes its array after set */
        fill_outputs();
        EXPECT_FAIL(attn_sdpa_forward(g_ctx, op, q_buf, k_buf, v_buf, m, out_buf, w_buf,
                                      lse_buf),
                    INV, "attn_sdpa_forward", "mask|lengths|length|len_kv");
        check_outputs_untouched();
        arr[cases[i].idx] = saved;
    }
    attn_mask_destroy(m);
    attn_sdpa_destroy(op);
}

/* ---- empty tensors: NULL is allowed only when there are no elements --- */

static void check_no_key_outputs(void) {
    for (int i = 0; i < NOUT; i++)
        if (out_buf[i] != 0.0f) fail_msg("[%s] out[%d] = %g, want 0", g_case, i, out_buf[i]);
    for (int i = 0; i < NLSE; i++)
        if (!(isinf(lse_buf[i]) && lse_buf[i] < 0))
            fail_msg("[%s] lse[%d] = %g, want -inf", g_case, i, lse_buf[i]);
}

static void test_forward_empty(void **state) {
    (void)state;
    const char *f = "attn_sdpa_forward";
    attn_sdpa *op = NULL;
    attn_mask *m = make_mask();
    int64_t zeros[B] = {0, 0};

    g_case = "batch 0: every tensor may be NULL";
    assert_int_equal(attn_sdpa_create(&op, 0, HQ, HKV, LQ, LKV, DQK, DV), ATTN_OK);
    save_error();
    EXPECT_OK(attn_sdpa_forward(g_ctx, op, NULL, NULL, NULL, NULL, NULL, NULL, NULL));
    EXPECT_OK(attn_mask_set_kv_lengths(m, NULL, 0, 0, 0));
    EXPECT_OK(attn_sdpa_forward(g_ctx, op, NULL, NULL, NULL, m, NULL, NULL, NULL));
    attn_sdpa_destroy(op);

    g_case = "len_q 0: q, out, weights, lse may be NULL, k and v not";
    assert_int_equal(attn_sdpa_create(&op, B, HQ, HKV, 0, LKV, DQK, DV), ATTN_OK);
    EXPECT_OK(attn_sdpa_forward(g_ctx, op, NULL, k_buf, v_buf, NULL, NULL, NULL, NULL));
    EXPECT_FAIL(attn_sdpa_forward(g_ctx, op, NULL, NULL, v_buf, NULL, NULL, NULL, NULL), NUL, f,
                "k");
    EXPECT_FAIL(attn_sdpa_forward(g_ctx, op, NULL, k_buf, NULL, NULL, NULL, NULL, NULL), NUL, f,
                "v");
    attn_sdpa_destroy(op);

    g_case = "len_kv 0: k, v, weights may be NULL, q and out not";
    assert_int_equal(attn_sdpa_create(&op, B, HQ, HKV, LQ, 0, DQK, DV), ATTN_OK);
    fill_outputs();
    EXPECT_FAIL(attn_sdpa_forward(g_ctx, op, NULL, NULL, NULL, NULL, out_buf, NULL, lse_buf),
                NUL, f, "q");
    check_outputs_untouched();
    EXPECT_FAIL(attn_sdpa_forward(g_ctx, op, q_buf, NULL, NULL, NULL, NULL, NULL, lse_buf), NUL,
                f, "out");
    check_outputs_untouched();

    g_case = "len_kv 0: no key, so out is zeros and lse -inf";
    save_error();
    EXPECT_OK(attn_sdpa_forward(g_ctx, op, q_buf, NULL, NULL, NULL, out_buf, NULL, lse_buf));
    check_no_key_outputs();
    g_case = "len_kv 0 with masks whose key dimension is empty too";
    EXPECT_OK(attn_mask_set_kv_lengths(m, zeros, B, 0, 0));
    EXPECT_OK(attn_mask_set_bool(m, NULL, 1, HQ, 1, 0));
    EXPECT_OK(attn_mask_set_bias(m, NULL, B, 1, LQ, 0));
    fill_outputs();
    EXPECT_OK(attn_sdpa_forward(g_ctx, op, q_buf, NULL, NULL, m, out_buf, w_buf, lse_buf));
    check_no_key_outputs();
    attn_sdpa_destroy(op);
    attn_mask_destroy(m);
}

/* ---- attn_sdpa_backward ----------------------------------------------- */

static float dq_buf[NQ], dk_buf[NK], dv_buf[NV], dout_buf[NOUT];
static unsigned char dq_ref[sizeof dq_buf], dk_ref[sizeof dk_buf], dv_ref[sizeof dv_buf];
static float dout_ref_copy[NOUT];

static void fill_grads(void) {
    unsigned char *bufs[3] = {(unsigned char *)dq_buf, (unsigned char *)dk_buf,
                              (unsigned char *)dv_buf};
    unsigned char *refs[3] = {dq_ref, dk_ref, dv_ref};
    size_t sizes[3] = {sizeof dq_buf, sizeof dk_buf, sizeof dv_buf};
    for (unsigned b = 0; b < 3; b++) {
        for (size_t i = 0; i < sizes[b]; i++)
            bufs[b][i] = (unsigned char)(i * 97u + 3u + b * 41u);
        memcpy(refs[b], bufs[b], sizes[b]);
    }
}

static void check_grads_untouched(void) {
    if (memcmp(dq_buf, dq_ref, sizeof dq_buf) != 0) fail_msg("[%s] d_q written", g_case);
    if (memcmp(dk_buf, dk_ref, sizeof dk_buf) != 0) fail_msg("[%s] d_k written", g_case);
    if (memcmp(dv_buf, dv_ref, sizeof dv_buf) != 0) fail_msg("[%s] d_v written", g_case);
}

enum { BW_CTX, BW_OP, BW_Q, BW_K, BW_V, BW_OUT, BW_LSE, BW_DOUT, BW_N };

/* attn_sdpa_backward on the fixture with argument `nul` (BW_*) NULL, or
 * none if nul == BW_N. */
static attn_status call_backward(int nul, const attn_sdpa *op, const attn_mask *m, float *d_q,
                                 float *d_k, float *d_v) {
    return attn_sdpa_backward(nul == BW_CTX ? NULL : g_ctx, nul == BW_OP ? NULL : op,
                              nul == BW_Q ? NULL : q_buf, nul == BW_K ? NULL : k_buf,
                              nul == BW_V ? NULL : v_buf, m, nul == BW_OUT ? NULL : out_buf,
                              nul == BW_LSE ? NULL : lse_buf, nul == BW_DOUT ? NULL : dout_buf,
                              d_q, d_k, d_v);
}

static void test_backward_errors(void **state) {
    (void)state;
    const char *f = "attn_sdpa_backward";
    attn_sdpa *op = make_op();
    attn_mask *m = make_mask();
    forward_into(op, NULL, out_buf, NULL, lse_buf);
    for (int i = 0; i < NOUT; i++) dout_buf[i] = (float)(i % 7) - 3.0f;

    static const char *names[BW_N] = {"ctx", "op", "q", "k", "v", "out", "lse", "d_out"};
    for (int nul = 0; nul < BW_N; nul++) {
        g_case = names[nul];
        fill_grads();
        EXPECT_FAIL(call_backward(nul, op, NULL, dq_buf, dk_buf, dv_buf), NUL, f, names[nul]);
        check_grads_untouched();
    }

    g_case = "mask shape does not fit the op";
    assert_int_equal(attn_mask_set_bool(m, keep_buf, 3, HQ, LQ, LKV), ATTN_OK);
    fill_grads();
    EXPECT_FAIL(call_backward(BW_N, op, m, dq_buf, dk_buf, dv_buf), MM, f, "mask");
    check_grads_untouched();

    g_case = "a valid length above len_kv";
    int64_t lens[B] = {LKV + 1, 1};
    assert_int_equal(attn_mask_clear(m), ATTN_OK);
    assert_int_equal(attn_mask_set_kv_lengths(m, lens, B, 0, 0), ATTN_OK);
    fill_grads();
    EXPECT_FAIL(call_backward(BW_N, op, m, dq_buf, dk_buf, dv_buf), INV, f,
                "mask|lengths|length|len_kv");
    check_grads_untouched();

    /* Gradients that overlap an input or each other. */
    const struct { const char *name; float *dq, *dk, *dv; const char *arg; } overlaps[] = {
        {"d_q is q", q_buf, dk_buf, dv_buf, "d_q"},
        {"d_k is k", dq_buf, k_buf, dv_buf, "d_k"},
        {"d_v is v", dq_buf, dk_buf, v_buf, "d_v"},
        {"d_v overlaps d_out", dq_buf, dk_buf, dout_buf + 1, "d_v"},
        {"d_q overlaps lse", lse_buf + 1, dk_buf, dv_buf, "d_q"},
        {"d_k overlaps d_q", dq_buf, dq_buf + 3, dv_buf, "d_k"},
        {"d_v is d_k", NULL, dk_buf, dk_buf, "d_v"},
    };
    for (size_t i = 0; i < COUNT(overlaps); i++) {
        g_case = overlaps[i].name;
        fill_grads();
        memcpy(dout_ref_copy, dout_buf, sizeof dout_buf);
        EXPECT_FAIL(call_backward(BW_N, op, NULL, overlaps[i].dq, overlaps[i].dk, overlaps[i].dv),
                    INV, f, overlaps[i].arg);
        check_grads_untouched();
        if (memcmp(dout_ref_copy, dout_buf, sizeof dout_buf) != 0)
            fail_msg("[%s] d_out written", g_case);
    }

    g_case = "no gradient requested";
    fill_grads();
    save_error();
    EXPECT_OK(call_backward(BW_N, op, NULL, NULL, NULL, NULL));
    check_grads_untouched();
    g_case = "all gradients";
    EXPECT_OK(call_backward(BW_N, op, NULL, dq_buf, dk_buf, dv_buf));
    attn_sdpa_destroy(op);

    g_case = "batch 0: every tensor may be NULL";
    assert_int_equal(attn_sdpa_create(&op, 0, HQ, HKV, LQ, LKV, DQK, DV), ATTN_OK);
    EXPECT_OK(attn_sdpa_backward(g_ctx, op, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                 NULL));
    attn_sdpa_destroy(op);

    g_case = "len_q 0: d_k and d_v are zeros";
    assert_int_equal(attn_sdpa_create(&op, B, HQ, HKV, 0, LKV, DQK, DV), ATTN_OK);
    fill_grads();
    EXPECT_OK(attn_sdpa_backward(g_ctx, op, NULL, k_buf, v_buf, NULL, NULL, NULL, NULL, NULL,
                                 dk_buf, dv_buf));
    for (int i = 0; i < NK; i++)
        if (dk_buf[i] != 0.0f) fail_msg("[%s] d_k[%d] = %g", g_case, i, dk_buf[i]);
    for (int i = 0; i < NV; i++)
        if (dv_buf[i] != 0.0f) fail_msg("[%s] d_v[%d] = %g", g_case, i, dv_buf[i]);
    attn_sdpa_destroy(op);
    attn_mask_destroy(m);
}

#define T(f) cmocka_unit_test_setup(f, reset_case)
int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_version),
        T(test_status_strings),
        T(test_set_error),
        T(test_success_keeps_last_error),
        T(test_last_error_thread_local),
        T(test_context_errors),
        T(test_sdpa_create_errors),
        T(test_sdpa_setter_errors),
        T(test_mask_set_errors),
        T(test_mask_failed_set_keeps_mask),
        T(test_forward_errors),
        T(test_forward_length_values),
        T(test_forward_empty),
        T(test_backward_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
