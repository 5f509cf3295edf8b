/*
 * test_layer_errors.c — every error path of the layers: multi-head attention,
 * additive attention, Nadaraya–Watson regression, the positional encoding,
 * and the Transformer encoder layer (create, setters, get_params, the
 * inference and training forwards, the backward and its ATTN_ERR_STATE
 * rules for act: empty, another layer's, or made stale by a setter).
 *
 * What it proves, for each documented failure of attn.h:
 *   1. the returned attn_status is the documented one;
 *   2. attn_last_error() is a fresh message that starts with "<function>:" and
 *      names the offending argument (as a whole word); for ATTN_ERR_STATE of
 *      attn_mha_forward it names exactly the projections not set;
 *   3. no output is touched: handle out-pointers keep a sentinel, output
 *      arrays pre-filled with a byte pattern are byte-identical afterwards,
 *      and a layer whose setter failed computes bit for bit as before (for
 *      the encoder: and an act filled before the failure stays valid).
 * It also proves that successful calls leave attn_last_error() alone, that
 * every _destroy(NULL) is a no-op, and that empty tensors may be NULL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <attn.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- message checks (as in test_errors.c) ----------------------------- */

static char sentinel_obj;
#define SENTINEL ((void *)&sentinel_obj)
static const char *g_case = "";

static int is_ident(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_';
}

/* Whether s mentions one of the '|'-separated words of alts as a whole word. */
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

/* Sets the last error to another function's message, which the call under
 * test must overwrite. */
static void prime_error(void) {
    assert_int_equal(attn_mask_clear(NULL), ATTN_ERR_NULL_POINTER);
}

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
    do { prime_error(); check_error((call), (want), (func), (arg)); } while (0)

static char saved_error[512];
static void save_error(void) {
    prime_error();
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

#define NUL ATTN_ERR_NULL_POINTER
#define INV ATTN_ERR_INVALID_ARGUMENT
#define MM ATTN_ERR_SHAPE_MISMATCH
#define OVF ATTN_ERR_SIZE_OVERFLOW
#define UNS ATTN_ERR_UNSUPPORTED
#define SKIP (-1) /* the case does not apply to this layer */
#define P16 (INT64_C(1) << 16)
#define P30 (INT64_C(1) << 30)
#define P31 (INT64_C(1) << 31)
#define P32 (INT64_C(1) << 32)
#define P40 (INT64_C(1) << 40)
#define P62 (INT64_C(1) << 62)

/* ---- fixture ---------------------------------------------------------- */

/* MHA: embed 8, 4 heads, 2 kv heads (head_dim 2, kv_dim 4), kdim 6, vdim 5.
 * Additive: query_dim 3, key_dim 4, hidden 5, dim_v 2. Shared: batch 2,
 * len_q 3, len_kv 4. */
enum { B = 2, LQ = 3, LKV = 4, E = 8, H = 4, HKV = 2, KD = 6, VD = 5,
       AQ = 3, AK = 4, AH = 5, ADV = 2 };
enum { NIN = 64, NOUT = 64, NW = 128 };

static float in_q[NIN], in_k[NIN], in_v[NIN];
static float out_buf[NOUT], w_buf[NW];
static unsigned char out_ref[sizeof out_buf], w_ref[sizeof w_buf];
static float wts[2][4][E * E], bis[2][4][E]; /* two weight sets, per projection */
static int64_t lens_buf[64], lens_big[B] = {1, LKV + 1}, lens_neg[B] = {1, 1};
static uint8_t keep_buf[256];
static float bias_buf[256];
static attn_context *g_ctx;

static void fill_outputs(void) {
    unsigned char *o = (unsigned char *)out_buf, *w = (unsigned char *)w_buf;
    for (size_t i = 0; i < sizeof out_buf; i++) o[i] = (unsigned char)(i * 131u + 7u);
    for (size_t i = 0; i < sizeof w_buf; i++) w[i] = (unsigned char)(i * 37u + 101u);
    memcpy(out_ref, out_buf, sizeof out_buf);
    memcpy(w_ref, w_buf, sizeof w_buf);
}

static void check_outputs_untouched(void) {
    if (memcmp(out_buf, out_ref, sizeof out_buf) != 0) fail_msg("[%s] out written", g_case);
    if (memcmp(w_buf, w_ref, sizeof w_buf) != 0) fail_msg("[%s] weights written", g_case);
}

/* A table case: fills the outputs, primes (or saves) the last error, and
 * after the call checks the status, the message and the outputs. */
static void begin_case(const char *name, attn_status want) {
    g_case = name;
    fill_outputs();
    if (want == ATTN_OK)
        save_error();
    else
        prime_error();
}
static void end_case(attn_status got, attn_status want, const char *func, const char *arg) {
    if (want == ATTN_OK) {
        check_ok(got, func);
        return;
    }
    check_error(got, want, func, arg);
    check_outputs_untouched();
}

static void fill_enc_params(void);
static int group_setup(void **state) {
    (void)state;
    for (int i = 0; i < NIN; i++) {
        in_q[i] = (float)((i * 7) % 11) / 11.0f - 0.5f;
        in_k[i] = (float)((i * 5) % 13) / 13.0f - 0.5f;
        in_v[i] = (float)((i * 3) % 17) / 17.0f - 0.5f;
    }
    for (int s = 0; s < 2; s++)
        for (int p = 0; p < 4; p++) {
            for (int i = 0; i < E * E; i++)
                wts[s][p][i] = (float)((i * (5 + 2 * s) + p * 3) % 19) / 19.0f - 0.45f;
            for (int i = 0; i < E; i++) bis[s][p][i] = 0.1f * (float)(i - p) + 0.3f * (float)s;
        }
    for (int i = 0; i < 64; i++) lens_buf[i] = 2;
    for (int i = 0; i < 256; i++) keep_buf[i] = 1;
    fill_enc_params();
    return attn_context_create(&g_ctx) == ATTN_OK ? 0 : -1;
}
static int group_teardown(void **state) {
    (void)state;
    attn_context_destroy(g_ctx);
    return 0;
}
static int reset_case(void **state) { (void)state; g_case = ""; return 0; }

/* A layer of the fixture's shape with the projections of `set_bits` (bit p =
 * projection p) set from weight set 0. */
static attn_mha *make_mha(int bias, unsigned set_bits) {
    attn_mha *m = NULL;
    assert_int_equal(attn_mha_create(&m, E, H, HKV, KD, VD, bias), ATTN_OK);
    assert_non_null(m);
    for (int p = 0; p < 4; p++)
        if (set_bits & (1u << p))
            assert_int_equal(attn_mha_set_weights(m, (attn_proj)p, wts[0][p],
                                                  bias ? bis[0][p] : NULL), ATTN_OK);
    return m;
}

static attn_additive *make_additive(int set) {
    attn_additive *a = NULL;
    assert_int_equal(attn_additive_create(&a, AQ, AK, AH), ATTN_OK);
    assert_non_null(a);
    if (set)
        assert_int_equal(attn_additive_set_weights(a, wts[0][0], wts[0][1], wts[0][2]), ATTN_OK);
    return a;
}

static void mha_into(const attn_mha *m, float *out, float *w) {
    if (attn_mha_forward(g_ctx, m, B, LQ, LKV, in_q, in_k, in_v, NULL, out, w) != ATTN_OK)
        fail_msg("[%s] mha forward failed: %s", g_case, attn_last_error());
}
static void additive_into(const attn_additive *a, float *out, float *w) {
    if (attn_additive_forward(g_ctx, a, B, LQ, LKV, ADV, in_q, in_k, in_v, NULL, out, w) !=
        ATTN_OK)
        fail_msg("[%s] additive forward failed: %s", g_case, attn_last_error());
}

/* ---- successful setters keep the last error; _destroy(NULL) ----------- */

static void check_encoder_keeps_last_error(void);

static void test_success_keeps_last_error(void **state) {
    (void)state;
    attn_mha *m = NULL;
    attn_additive *a = NULL;
    save_error();
    attn_mha_destroy(NULL);
    attn_additive_destroy(NULL);
    EXPECT_OK(attn_mha_create(&m, E, H, HKV, KD, VD, 1));
    for (int p = 0; p < 4; p++)
        EXPECT_OK(attn_mha_set_weights(m, (attn_proj)p, wts[0][p], bis[0][p]));
    EXPECT_OK(attn_mha_set_causal(m, ATTN_CAUSAL_TOP_LEFT));
    EXPECT_OK(attn_mha_set_causal(m, ATTN_CAUSAL_BOTTOM_RIGHT));
    EXPECT_OK(attn_mha_set_causal(m, ATTN_CAUSAL_NONE));
    EXPECT_OK(attn_mha_forward(g_ctx, m, B, LQ, LKV, in_q, in_k, in_v, NULL, out_buf, w_buf));
    EXPECT_OK(attn_additive_create(&a, AQ, AK, AH));
    EXPECT_OK(attn_additive_set_weights(a, wts[0][0], wts[0][1], wts[0][2]));
    EXPECT_OK(attn_additive_set_weights(a, wts[1][0], wts[1][1], wts[1][2]));
    check_encoder_keeps_last_error();
    /* The forwards, attn_nadaraya_watson and attn_positional_encoding are
     * checked the same way by the OK rows of the tables below. */
    attn_additive_destroy(a);
    attn_mha_destroy(m);
    assert_string_equal(attn_last_error(), saved_error);
}

/* ---- attn_mha_create and attn_additive_create ------------------------ */

typedef struct {
    const char *name;
    int additive, null_out;
    int64_t d[5];  /* MHA: embed_dim, num_heads, num_kv_heads, kdim, vdim;
                      additive: query_dim, key_dim, hidden */
    int bias;
    attn_status st;
    const char *arg;
} create_case;

#define MC(n, e, h, hkv, kd, vd, bias, st, arg) {n, 0, 0, {e, h, hkv, kd, vd}, bias, st, arg}
#define AC(n, qd, kd, hid, st, arg) {n, 1, 0, {qd, kd, hid, 0, 0}, 0, st, arg}
#define MHA_OVF "embed_dim|kdim|vdim|weight|Q|K|V|size_t"
#define ADD_OVF "query_dim|key_dim|hidden|w_q|w_k|size_t"
static const create_case create_cases[] = {
    {"mha NULL", 0, 1, {E, H, HKV, KD, VD}, 1, NUL, "mha"},
    MC("embed_dim 0", 0, H, HKV, KD, VD, 1, INV, "embed_dim"),
    MC("embed_dim -1", -1, H, HKV, KD, VD, 1, INV, "embed_dim"),
    MC("embed_dim INT64_MIN", INT64_MIN, H, HKV, KD, VD, 1, INV, "embed_dim"),
    MC("num_heads 0", E, 0, HKV, KD, VD, 1, INV, "num_heads"),
    MC("num_heads -1", E, -1, HKV, KD, VD, 1, INV, "num_heads"),
    MC("num_kv_heads 0", E, H, 0, KD, VD, 1, INV, "num_kv_heads"),
    MC("num_kv_heads -1", E, H, -1, KD, VD, 1, INV, "num_kv_heads"),
    MC("kdim 0", E, H, HKV, 0, VD, 1, INV, "kdim"),
    MC("kdim -1", E, H, HKV, -1, VD, 1, INV, "kdim"),
    MC("vdim 0", E, H, HKV, KD, 0, 1, INV, "vdim"),
    MC("vdim -1", E, H, HKV, KD, -1, 1, INV, "vdim"),
    MC("bias 2", E, H, HKV, KD, VD, 2, INV, "bias"),
    MC("bias -1", E, H, HKV, KD, VD, -1, INV, "bias"),
    MC("embed_dim 10 % num_heads 4", 10, 4, 2, KD, VD, 1, MM, "embed_dim|num_heads"),
    MC("embed_dim 4 % num_heads 8", 4, 8, 8, KD, VD, 1, MM, "embed_dim|num_heads"),
    MC("num_heads 4 % num_kv_heads 3", 12, 4, 3, KD, VD, 1, MM, "num_heads|num_kv_heads"),
    MC("num_kv_heads 8 > num_heads 4", E, 4, 8, KD, VD, 0, MM, "num_heads|num_kv_heads"),
    MC("embed_dim 2^32 (Q weight)", P32, 1, 1, 1, 1, 0, OVF, MHA_OVF),
    MC("kdim 2^62 (K weight)", E, H, HKV, P62, VD, 0, OVF, MHA_OVF),
    MC("vdim 2^62 (V weight)", E, H, HKV, KD, P62, 0, OVF, MHA_OVF),
    MC("kdim 2^31", E, H, HKV, P31, VD, 0, UNS, "kdim"),
    MC("vdim 2^31", E, H, HKV, KD, P31, 0, UNS, "vdim"),
    MC("mha: fixture, bias", E, H, HKV, KD, VD, 1, ATTN_OK, ""),
    MC("mha: all 1, no bias", 1, 1, 1, 1, 1, 0, ATTN_OK, ""),
    MC("mha: MQA", E, H, 1, KD, VD, 0, ATTN_OK, ""),
    {"op NULL", 1, 1, {AQ, AK, AH, 0, 0}, 0, NUL, "op"},
    AC("query_dim 0", 0, AK, AH, INV, "query_dim"),
    AC("query_dim -1", -1, AK, AH, INV, "query_dim"),
    AC("key_dim 0", AQ, 0, AH, INV, "key_dim"),
    AC("key_dim -1", AQ, -1, AH, INV, "key_dim"),
    AC("hidden 0", AQ, AK, 0, INV, "hidden"),
    AC("hidden INT64_MIN", AQ, AK, INT64_MIN, INV, "hidden"),
    AC("hidden 2^62 x query_dim 8", 8, 1, P62, OVF, ADD_OVF),
    AC("hidden 2^32 x key_dim 2^32", 1, P32, P32, OVF, ADD_OVF),
    AC("query_dim 2^31", P31, 1, 1, UNS, "query_dim"),
    AC("key_dim 2^31", 1, P31, 1, UNS, "key_dim"),
    AC("hidden 2^31", 1, 1, P31, UNS, "hidden"),
    AC("additive: all 1", 1, 1, 1, ATTN_OK, ""),
};

static void test_create_errors(void **state) {
    (void)state;
    for (size_t i = 0; i < COUNT(create_cases); i++) {
        const create_case *c = &create_cases[i];
        const int64_t *d = c->d;
        void *obj = SENTINEL;
        const char *f = c->additive ? "attn_additive_create" : "attn_mha_create";
        begin_case(c->name, c->st);
        attn_status st =
            c->additive
                ? attn_additive_create(c->null_out ? NULL : (attn_additive **)&obj, d[0], d[1],
                                       d[2])
                : attn_mha_create(c->null_out ? NULL : (attn_mha **)&obj, d[0], d[1], d[2],
                                  d[3], d[4], c->bias);
        end_case(st, c->st, f, c->arg);
        if (c->st != ATTN_OK) {
            assert_ptr_equal(obj, SENTINEL);
            continue;
        }
        assert_true(obj != NULL && obj != SENTINEL);
        if (c->additive)
            attn_additive_destroy(obj);
        else
            attn_mha_destroy(obj);
    }
}

/* ---- attn_mha_set_weights / attn_mha_set_causal ----------------------- */

/* Failed setters on a fully set layer: statuses, messages, and the layer
 * computes bit for bit as before (weight set 1 never gets in). */
static void check_mha_setters(int bias) {
    static float o1[NOUT], w1[NW], o2[NOUT], w2[NW];
    const char *fw = "attn_mha_set_weights", *fc = "attn_mha_set_causal";
    attn_mha *m = make_mha(bias, 0xF);
    mha_into(m, o1, w1);
    for (int p = 0; p < 4; p++) {
        const float *b1 = bias ? bis[1][p] : NULL;
        EXPECT_FAIL(attn_mha_set_weights(NULL, (attn_proj)p, wts[1][p], b1), NUL, fw, "mha");
        EXPECT_FAIL(attn_mha_set_weights(m, (attn_proj)p, NULL, b1), NUL, fw, "weight");
        if (bias) {
            EXPECT_FAIL(attn_mha_set_weights(m, (attn_proj)p, wts[1][p], NULL), NUL, fw, "bias");
            EXPECT_FAIL(attn_mha_set_weights(m, (attn_proj)p, NULL, NULL), NUL, fw,
                        "weight|bias");
        } else {
            EXPECT_FAIL(attn_mha_set_weights(m, (attn_proj)p, wts[1][p], bis[1][p]), INV, fw,
                        "bias");
        }
    }
    const int bad_which[] = {4, -1, 5, INT_MAX, INT_MIN};
    for (size_t i = 0; i < COUNT(bad_which); i++)
        EXPECT_FAIL(attn_mha_set_weights(m, (attn_proj)bad_which[i], wts[1][0],
                                         bias ? bis[1][0] : NULL), INV, fw, "which");
    EXPECT_FAIL(attn_mha_set_causal(NULL, ATTN_CAUSAL_TOP_LEFT), NUL, fc, "mha");
    const int bad_causal[] = {3, -1, 7, INT_MAX, INT_MIN};
    for (size_t i = 0; i < COUNT(bad_causal); i++)
        EXPECT_FAIL(attn_mha_set_causal(m, (attn_causal)bad_causal[i]), INV, fc, "causal");
    mha_into(m, o2, w2);
    assert_memory_equal(o1, o2, sizeof o1);
    assert_memory_equal(w1, w2, sizeof w1);
    attn_mha_destroy(m);
}

static void test_mha_setter_errors(void **state) {
    (void)state;
    g_case = "layer with bias";
    check_mha_setters(1);
    g_case = "layer without bias";
    check_mha_setters(0);
}

/* ---- attn_mha_get_property ------------------------------------------- */

/* Each property reads what the layer was made with or set to, and follows
 * its setters; bad arguments leave *value alone. */
static int64_t property(const attn_mha *m, attn_mha_property what) {
    int64_t v = -12345;
    save_error();
    EXPECT_OK(attn_mha_get_property(m, what, &v));
    return v;
}

static void test_mha_get_property(void **state) {
    (void)state;
    const char *f = "attn_mha_get_property";
    for (int bias = 0; bias <= 1; bias++) {
        save_error();
        attn_mha *m = make_mha(bias, 0);  /* no projection set: sizes still read */
        const int64_t want[] = {E, H, HKV, E / H, KD, VD, bias, ATTN_CAUSAL_NONE, 0, 0, 0};
        for (int w = 0; w < (int)COUNT(want); w++)
            assert_int_equal(property(m, (attn_mha_property)w), want[w]);
        EXPECT_OK(attn_mha_set_causal(m, ATTN_CAUSAL_BOTTOM_RIGHT));
        assert_int_equal(property(m, ATTN_MHA_CAUSAL), ATTN_CAUSAL_BOTTOM_RIGHT);
        EXPECT_OK(attn_mha_set_softcap(m, 30.0f));
        assert_int_equal(property(m, ATTN_MHA_HAS_MODIFIERS), 1);
        EXPECT_OK(attn_mha_set_softcap(m, 0.0f));
        assert_int_equal(property(m, ATTN_MHA_HAS_MODIFIERS), 0);
        EXPECT_OK(attn_mha_set_dropout(m, 0.25f, 7));
        assert_int_equal(property(m, ATTN_MHA_HAS_DROPOUT), 1);
        EXPECT_OK(attn_mha_set_dropout(m, 0.0f, 7));
        assert_int_equal(property(m, ATTN_MHA_HAS_DROPOUT), 0);
        attn_rope *rope = NULL;
        EXPECT_OK(attn_rope_create(&rope, E / H, E / H, 10000.0f, ATTN_ROPE_HALF));
        EXPECT_OK(attn_mha_set_rope(m, rope));
        assert_int_equal(property(m, ATTN_MHA_HAS_ROPE), 1);
        EXPECT_OK(attn_mha_set_rope(m, NULL));
        assert_int_equal(property(m, ATTN_MHA_HAS_ROPE), 0);
        attn_rope_destroy(rope);

        int64_t v = 77;
        EXPECT_FAIL(attn_mha_get_property(NULL, ATTN_MHA_EMBED_DIM, &v), NUL, f, "mha");
        EXPECT_FAIL(attn_mha_get_property(m, ATTN_MHA_EMBED_DIM, NULL), NUL, f, "value");
        const int bad_what[] = {11, -1, 12, INT_MAX, INT_MIN};
        for (size_t i = 0; i < COUNT(bad_what); i++)
            EXPECT_FAIL(attn_mha_get_property(m, (attn_mha_property)bad_what[i], &v), INV, f,
                        "what");
        assert_int_equal(v, 77);
        attn_mha_destroy(m);
    }
}

/* ---- attn_mha_forward: ATTN_ERR_STATE names exactly the missing ones -- */

static void check_state_message(unsigned set_bits) {
    static const char *const names[4] = {"Q", "K", "V", "O"};
    const char *e = attn_last_error() + strlen("attn_mha_forward:");
    for (int p = 0; p < 4; p++) {
        int missing = !(set_bits & (1u << p));
        if (mentions(e, names[p]) != missing)
            fail_msg("[%s] message \"%s\" %s projection %s", g_case, attn_last_error(),
                     missing ? "does not name missing" : "names the set", names[p]);
    }
}

static void test_mha_forward_state(void **state) {
    (void)state;
    char name[64];
    for (unsigned bits = 0; bits < 15; bits++) {
        attn_mha *m = make_mha(bits & 1, bits);
        snprintf(name, sizeof name, "set mask 0x%X", bits);
        begin_case(name, ATTN_ERR_STATE);
        end_case(attn_mha_forward(g_ctx, m, B, LQ, LKV, in_q, in_k, in_v, NULL, out_buf, w_buf),
                 ATTN_ERR_STATE, "attn_mha_forward", "Q|K|V|O");
        check_state_message(bits);
        attn_mha_destroy(m);
    }
    /* A failed set_weights does not count as set. */
    attn_mha *m = make_mha(1, 0x7);
    assert_int_equal(attn_mha_set_weights(m, ATTN_PROJ_O, wts[0][3], NULL), NUL);
    assert_int_equal(attn_mha_set_weights(m, ATTN_PROJ_O, NULL, bis[0][3]), NUL);
    assert_int_equal(attn_mha_set_weights(m, (attn_proj)4, wts[0][3], bis[0][3]), INV);
    begin_case("O failed to set", ATTN_ERR_STATE);
    end_case(attn_mha_forward(g_ctx, m, B, LQ, LKV, in_q, in_k, in_v, NULL, out_buf, w_buf),
             ATTN_ERR_STATE, "attn_mha_forward", "O");
    check_state_message(0x7);
    attn_mha_destroy(m);
}

/* ---- forward of MHA and additive: one table, two layers --------------- */

enum { NUL_NONE, NUL_CTX, NUL_OP, NUL_Q, NUL_K, NUL_V, NUL_OUT, NUL_W, NUL_QO, NUL_KV, NUL_ALL };
enum { MK_NONE, MK_LEN, MK_LEN_BIG, MK_LEN_NEG, MK_BOOL, MK_BIAS };
/* The argument each NUL_* case names; the later kinds are calls that succeed
 * (NULL allowed) and name nothing, but the table must still cover them. */
static const char *const mha_arg[NUL_ALL + 1] = {"", "ctx", "mha", "query", "key", "value", "out"};
static const char *const add_arg[NUL_ALL + 1] = {"", "ctx", "op", "queries", "keys", "values",
                                                 "out"};

typedef struct {
    const char *name;
    int nul;
    int64_t batch, lq, lkv, dv;   /* dv: the additive's dim_v */
    int mk;
    int64_t d0, d1, d2, d3;       /* LEN: batch, len_q, per_query; BOOL/BIAS: mb, mh, mq, len_kv */
    int st_mha, st_add;           /* attn_status, or SKIP */
    const char *arg;              /* NULL: the name of the NULL argument */
} fwd_case;

#define FWD_OVF "batch|len_q|len_kv|query|key|value|queries|keys|values|out|weights|size_t"
#define SZ(n, b, lq, lkv, sm, sa, arg) \
    {n, NUL_NONE, b, lq, lkv, ADV, MK_NONE, 0, 0, 0, 0, sm, sa, arg}
#define NL(n, nul, b, lq, lkv, sm, sa) {n, nul, b, lq, lkv, ADV, MK_NONE, 0, 0, 0, 0, sm, sa, NULL}
#define MK(n, k, d0, d1, d2, d3, sm, sa) \
    {n, NUL_NONE, B, LQ, LKV, ADV, k, d0, d1, d2, d3, sm, sa, "mask"}
static const fwd_case fwd_cases[] = {
    NL("ctx NULL", NUL_CTX, B, LQ, LKV, NUL, NUL),
    NL("op NULL", NUL_OP, B, LQ, LKV, NUL, NUL),
    NL("query NULL", NUL_Q, B, LQ, LKV, NUL, NUL),
    NL("key NULL", NUL_K, B, LQ, LKV, NUL, NUL),
    NL("value NULL", NUL_V, B, LQ, LKV, NUL, NUL),
    NL("out NULL", NUL_OUT, B, LQ, LKV, NUL, NUL),
    NL("key NULL, len_q 0", NUL_K, B, 0, LKV, NUL, NUL),
    NL("query NULL, len_kv 0", NUL_Q, B, LQ, 0, NUL, NUL),
    NL("out NULL, len_kv 0", NUL_OUT, B, LQ, 0, NUL, NUL),
    NL("weights NULL is allowed", NUL_W, B, LQ, LKV, ATTN_OK, ATTN_OK),
    NL("batch 0: all NULL", NUL_ALL, 0, LQ, LKV, ATTN_OK, ATTN_OK),
    NL("len_q 0: query, out NULL", NUL_QO, B, 0, LKV, ATTN_OK, ATTN_OK),
    NL("len_kv 0: key, value NULL", NUL_KV, B, LQ, 0, ATTN_OK, ATTN_OK),
    SZ("batch -1", -1, LQ, LKV, INV, INV, "batch"),
    SZ("batch INT64_MIN", INT64_MIN, LQ, LKV, INV, INV, "batch"),
    SZ("len_q -1", B, -1, LKV, INV, INV, "len_q"),
    SZ("len_kv -1", B, LQ, -1, INV, INV, "len_kv"),
    {"dim_v 0", NUL_NONE, B, LQ, LKV, 0, MK_NONE, 0, 0, 0, 0, SKIP, INV, "dim_v"},
    {"dim_v -1", NUL_NONE, B, LQ, LKV, -1, MK_NONE, 0, 0, 0, 0, SKIP, INV, "dim_v"},
    {"dim_v 2^31", NUL_NONE, B, LQ, LKV, P31, MK_NONE, 0, 0, 0, 0, SKIP, UNS, "dim_v"},
    {"dim_v 2^62", NUL_NONE, B, LQ, LKV, P62, MK_NONE, 0, 0, 0, 0, SKIP, OVF,
     "dim_v|values|out|size_t"},
    SZ("batch 2^62", P62, LQ, LKV, OVF, OVF, FWD_OVF),
    SZ("batch INT64_MAX", INT64_MAX, 1, 1, OVF, OVF, FWD_OVF),
    SZ("len_q 2^62", 1, P62, 1, OVF, OVF, FWD_OVF),
    SZ("len_kv 2^62", 1, 1, P62, OVF, OVF, FWD_OVF),
    SZ("batch 2^32 x len_q 2^32", P32, P32, 1, OVF, OVF, FWD_OVF),
    SZ("weights 2^62 floats", 1, P30, P30, OVF, SKIP, "weights|size_t"),
    SZ("len_kv 2^31", 1, 1, P31, UNS, UNS, "len_kv|batch"),
    SZ("batch x len_q 2^31", P31, 1, 0, UNS, UNS, "batch|len_q"),
    SZ("batch x len_kv 2^33", P16, 1, 2 * P16, UNS, UNS, "batch|len_kv"),
    MK("lengths batch 3", MK_LEN, 3, 0, 0, 0, MM, MM),
    MK("lengths batch 1", MK_LEN, 1, 0, 0, 0, MM, MM),
    MK("lengths per-query len_q 2", MK_LEN, B, 2, 1, 0, MM, MM),
    MK("lengths ok", MK_LEN, B, 0, 0, 0, ATTN_OK, ATTN_OK),
#define LEN_ARGS "mask|lengths|length|len_kv"
    {"length above len_kv", NUL_NONE, B, LQ, LKV, ADV, MK_LEN_BIG, 0, 0, 0, 0, INV, INV, LEN_ARGS},
    {"length made negative after set", NUL_NONE, B, LQ, LKV, ADV, MK_LEN_NEG, 0, 0, 0, 0, INV,
     INV, LEN_ARGS},
#define MASK_SHAPE_CASES(K, N)                                      \
    MK(N " mb 3", K, 3, 1, LQ, LKV, MM, MM),                        \
    MK(N " mh 2 (= num_kv_heads)", K, B, 2, LQ, LKV, MM, MM),       \
    MK(N " mh 3", K, B, 3, LQ, LKV, MM, MM),                        \
    MK(N " mh 5", K, 1, 5, 1, LKV, MM, MM),                         \
    MK(N " mh 4 (= num_heads)", K, B, H, LQ, LKV, ATTN_OK, MM),     \
    MK(N " mh 1", K, B, 1, LQ, LKV, ATTN_OK, ATTN_OK),              \
    MK(N " mq 2", K, B, 1, 2, LKV, MM, MM),                         \
    MK(N " len_kv 5", K, 1, 1, 1, 5, MM, MM),                       \
    MK(N " len_kv 1", K, 1, 1, 1, 1, MM, MM),                       \
    MK(N " all broadcast", K, 1, 1, 1, LKV, ATTN_OK, ATTN_OK)
    MASK_SHAPE_CASES(MK_BOOL, "bool"),
    MASK_SHAPE_CASES(MK_BIAS, "bias"),
};

static void set_case_mask(attn_mask *m, const fwd_case *c) {
    attn_status st = ATTN_OK;
    assert_int_equal(attn_mask_clear(m), ATTN_OK);
    switch (c->mk) {
    case MK_LEN: st = attn_mask_set_kv_lengths(m, lens_buf, c->d0, c->d1, (int)c->d2); break;
    case MK_LEN_BIG: st = attn_mask_set_kv_lengths(m, lens_big, B, 0, 0); break;
    case MK_LEN_NEG:
        st = attn_mask_set_kv_lengths(m, lens_neg, B, 0, 0);
        lens_neg[1] = -1;  /* the caller changes its array after set */
        break;
    case MK_BOOL: st = attn_mask_set_bool(m, keep_buf, c->d0, c->d1, c->d2, c->d3); break;
    case MK_BIAS: st = attn_mask_set_bias(m, bias_buf, c->d0, c->d1, c->d2, c->d3); break;
    default: break;
    }
    assert_int_equal(st, ATTN_OK);
}

static attn_status run_forward(int additive, const void *op, const fwd_case *c, attn_mask *m) {
    int n = c->nul;
    attn_context *ctx = n == NUL_CTX ? NULL : g_ctx;
    const float *q = (n == NUL_Q || n == NUL_QO || n == NUL_ALL) ? NULL : in_q;
    const float *k = (n == NUL_K || n == NUL_KV || n == NUL_ALL) ? NULL : in_k;
    const float *v = (n == NUL_V || n == NUL_KV || n == NUL_ALL) ? NULL : in_v;
    float *out = (n == NUL_OUT || n == NUL_QO || n == NUL_ALL) ? NULL : out_buf;
    float *w = (n == NUL_W || n == NUL_ALL) ? NULL : w_buf;
    const attn_mask *mask = c->mk == MK_NONE ? NULL : m;
    if (additive)
        return attn_additive_forward(ctx, n == NUL_OP ? NULL : op, c->batch, c->lq, c->lkv,
                                     c->dv, q, k, v, mask, out, w);
    return attn_mha_forward(ctx, n == NUL_OP ? NULL : op, c->batch, c->lq, c->lkv, q, k, v,
                            mask, out, w);
}

static void run_forward_table(int additive, const void *op) {
    const char *f = additive ? "attn_additive_forward" : "attn_mha_forward";
    attn_mask *m = NULL;
    assert_int_equal(attn_mask_create(&m), ATTN_OK);
    for (size_t i = 0; i < COUNT(fwd_cases); i++) {
        const fwd_case *c = &fwd_cases[i];
        int st = additive ? c->st_add : c->st_mha;
        if (st == SKIP)
            continue;
        set_case_mask(m, c);
        begin_case(c->name, (attn_status)st);
        end_case(run_forward(additive, op, c, m), (attn_status)st, f,
                 c->arg ? c->arg : (additive ? add_arg : mha_arg)[c->nul]);
        lens_neg[1] = 1;
    }
    attn_mask_destroy(m);
}

static void test_forward_errors(void **state) {
    (void)state;
    attn_mha *m = make_mha(1, 0xF);
    attn_additive *a = make_additive(1);
    run_forward_table(0, m);
    assert_int_equal(attn_mha_set_causal(m, ATTN_CAUSAL_BOTTOM_RIGHT), ATTN_OK);
    run_forward_table(0, m);  /* the causal setting does not change any check */
    run_forward_table(1, a);
    attn_additive_destroy(a);
    attn_mha_destroy(m);
}

/* ---- additive: set_weights, forward before set ------------------------ */

static void fail_additive_sets(attn_additive *a) {
    const char *f = "attn_additive_set_weights";
    const float *q1 = wts[1][0], *k1 = wts[1][1], *v1 = wts[1][2];
    EXPECT_FAIL(attn_additive_set_weights(NULL, q1, k1, v1), NUL, f, "op");
    EXPECT_FAIL(attn_additive_set_weights(a, NULL, k1, v1), NUL, f, "w_q");
    EXPECT_FAIL(attn_additive_set_weights(a, q1, NULL, v1), NUL, f, "w_k");
    EXPECT_FAIL(attn_additive_set_weights(a, q1, k1, NULL), NUL, f, "w_v");
    EXPECT_FAIL(attn_additive_set_weights(a, NULL, NULL, NULL), NUL, f, "w_q|w_k|w_v");
}

static void test_additive_set_weights_errors(void **state) {
    (void)state;
    static float o1[NOUT], w1[NW], o2[NOUT], w2[NW];
    const char *f = "attn_additive_forward";
    /* On a set op: the weights stay as they were, bit for bit. */
    g_case = "set op";
    attn_additive *a = make_additive(1);
    additive_into(a, o1, w1);
    fail_additive_sets(a);
    additive_into(a, o2, w2);
    assert_memory_equal(o1, o2, sizeof o1);
    assert_memory_equal(w1, w2, sizeof w1);
    attn_additive_destroy(a);

    /* Forward before set_weights, and after only failed ones. */
    a = make_additive(0);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            fail_additive_sets(a);
        begin_case(pass ? "forward after failed set_weights" : "forward before set_weights",
                   ATTN_ERR_STATE);
        end_case(attn_additive_forward(g_ctx, a, B, LQ, LKV, ADV, in_q, in_k, in_v, NULL,
                                       out_buf, w_buf),
                 ATTN_ERR_STATE, f, "op|weights|w_q|w_k|w_v");
    }
    attn_additive_destroy(a);
}

/* ---- attn_nadaraya_watson --------------------------------------------- */

enum { NW_CTX = 1, NW_Q = 2, NW_K = 4, NW_V = 8, NW_OUT = 16, NW_W = 32 };

typedef struct {
    const char *name;
    int nul;  /* NW_* bits: arguments passed as NULL */
    int64_t nq, nk; float w; attn_status st; const char *arg;
} nw_case;

static const nw_case nw_cases[] = {
    {"ctx NULL", NW_CTX, 3, 4, 1.0f, NUL, "ctx"},
    {"queries NULL", NW_Q, 3, 4, 1.0f, NUL, "queries"},
    {"keys NULL", NW_K, 3, 4, 1.0f, NUL, "keys"},
    {"values NULL", NW_V, 3, 4, 1.0f, NUL, "values"},
    {"out NULL", NW_OUT, 3, 4, 1.0f, NUL, "out"},
    {"keys NULL, n_queries 0", NW_K | NW_Q | NW_OUT, 0, 4, 1.0f, NUL, "keys"},
    {"queries NULL, n_keys 0", NW_Q | NW_K | NW_V, 3, 0, 1.0f, NUL, "queries"},
    {"out NULL, n_keys 0", NW_OUT | NW_K | NW_V, 3, 0, 1.0f, NUL, "out"},
    {"n_queries -1", 0, -1, 4, 1.0f, INV, "n_queries"},
    {"n_queries INT64_MIN", 0, INT64_MIN, 4, 1.0f, INV, "n_queries"},
    {"n_keys -1", 0, 3, -1, 1.0f, INV, "n_keys"},
    {"w NaN", 0, 3, 4, NAN, INV, "w"},
    {"w -NaN", 0, 3, 4, -NAN, INV, "w"},
    {"w +Inf", 0, 3, 4, INFINITY, INV, "w"},
    {"w -Inf", 0, 3, 4, -INFINITY, INV, "w"},
    {"n_queries 2^62", 0, P62, 4, 1.0f, OVF, "n_queries|queries|out|weights|size_t"},
    {"weights 2^70 floats", 0, P40, P30, 1.0f, OVF, "n_queries|n_keys|weights|size_t"},
    {"n_keys 2^31", NW_W, 1, P31, 1.0f, UNS, "n_keys"},
    {"all empty, all NULL", NW_Q | NW_K | NW_V | NW_OUT | NW_W, 0, 0, 1.0f, ATTN_OK, ""},
    {"n_queries 0: queries, out, weights NULL", NW_Q | NW_OUT | NW_W, 0, 4, 1.0f, ATTN_OK, ""},
    {"n_keys 0: keys, values NULL", NW_K | NW_V, 3, 0, 1.0f, ATTN_OK, ""},
    {"w -2.5 is finite", NW_W, 3, 4, -2.5f, ATTN_OK, ""},
    {"w 0 is finite", 0, 3, 4, 0.0f, ATTN_OK, ""},
};

static void test_nadaraya_watson_errors(void **state) {
    (void)state;
    const char *f = "attn_nadaraya_watson";
    for (size_t i = 0; i < COUNT(nw_cases); i++) {
        const nw_case *c = &nw_cases[i];
        int n = c->nul;
        begin_case(c->name, c->st);
        attn_status st = attn_nadaraya_watson(
            (n & NW_CTX) ? NULL : g_ctx, c->nq, c->nk, (n & NW_Q) ? NULL : in_q,
            (n & NW_K) ? NULL : in_k, (n & NW_V) ? NULL : in_v, c->w,
            (n & NW_OUT) ? NULL : out_buf, (n & NW_W) ? NULL : w_buf);
        end_case(st, c->st, f, c->arg);
    }
}

/* ---- attn_positional_encoding ----------------------------------------- */

typedef struct {
    const char *name;
    int null_out;
    int64_t len, dim, start; float base; attn_status st; const char *arg;
} pe_case;

static const pe_case pe_cases[] = {
    {"dim 3 (odd)", 0, 4, 3, 0, 10000.0f, INV, "dim"},
    {"dim 1", 0, 4, 1, 0, 10000.0f, INV, "dim"},
    {"dim 0", 0, 4, 0, 0, 10000.0f, INV, "dim"},
    {"dim -2", 0, 4, -2, 0, 10000.0f, INV, "dim"},
    {"len -1", 0, -1, 4, 0, 10000.0f, INV, "len"},
    {"len INT64_MIN", 0, INT64_MIN, 4, 0, 10000.0f, INV, "len"},
    {"start -1", 0, 4, 4, -1, 10000.0f, INV, "start"},
    {"start INT64_MAX + len 2", 0, 2, 4, INT64_MAX, 10000.0f, INV, "start|len"},
    {"start INT64_MAX - 1 + len 2", 0, 2, 4, INT64_MAX - 1, 10000.0f, INV, "start|len"},
    {"base NaN", 0, 4, 4, 0, NAN, INV, "base"},
    {"base +Inf", 0, 4, 4, 0, INFINITY, INV, "base"},
    {"base -Inf", 0, 4, 4, 0, -INFINITY, INV, "base"},
    {"base 1.0", 0, 4, 4, 0, 1.0f, INV, "base"},
    {"base 0.5", 0, 4, 4, 0, 0.5f, INV, "base"},
    {"base 0", 0, 4, 4, 0, 0.0f, INV, "base"},
    {"base -2", 0, 4, 4, 0, -2.0f, INV, "base"},
    {"out NULL, len 3", 1, 3, 4, 0, 10000.0f, NUL, "out"},
    {"len 2^62 x dim 8", 0, P62, 8, 0, 10000.0f, OVF, "len|dim|out|size_t"},
    {"len 2^32 x dim 2^32", 0, P32, P32, 0, 10000.0f, OVF, "len|dim|out|size_t"},
    {"len 0, out NULL", 1, 0, 4, 0, 10000.0f, ATTN_OK, ""},
    {"len 0 at start INT64_MAX", 1, 0, 4, INT64_MAX, 10000.0f, ATTN_OK, ""},
    {"last position INT64_MAX - 1", 0, 1, 4, INT64_MAX - 1, 10000.0f, ATTN_OK, ""},
    {"base just above 1", 0, 4, 4, 0, 1.0000001f, ATTN_OK, ""},
};

static void test_positional_encoding_errors(void **state) {
    (void)state;
    const char *f = "attn_positional_encoding";
    for (size_t i = 0; i < COUNT(pe_cases); i++) {
        const pe_case *c = &pe_cases[i];
        begin_case(c->name, c->st);
        end_case(attn_positional_encoding(c->null_out ? NULL : out_buf, c->len, c->dim,
                                          c->start, c->base),
                 c->st, f, c->arg);
    }
}

/* ---- the Transformer encoder layer ------------------------------------ */

/* The layer: d_model E (8), nhead H (4, head_dim 2), dim_feedforward EFF;
 * src [B, LQ, E] is in_q. Its flat parameters (ENC_P floats), two sets. The
 * outputs of its calls (out, d_src, d_params, and the overlapping buffers of
 * the overlap cases) all lie in enc_region, whose bytes a failed call must
 * leave as they were. */
enum { EFF = 16, EL = LQ };
enum { ENC_P = 4 * E * E + 4 * E + 2 * E * EFF + EFF + E + 4 * E, ENC_REGION = ENC_P + 2 * NOUT };
static float enc_params[2][ENC_P];
static float enc_region[ENC_REGION];
static unsigned char enc_region_ref[sizeof enc_region];
static float *const enc_out = enc_region, *const enc_dp = enc_region + NOUT;

static void fill_enc_params(void) {
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < ENC_P; i++)
            enc_params[s][i] = (float)((i * (7 + 2 * s)) % 23) / 23.0f - 0.4f;
}

/* As begin_case / end_case, and enc_region filled with plain values (the
 * overlap cases read src from it) that a failed call must not change. */
static void begin_enc_case(const char *name, attn_status want) {
    begin_case(name, want);
    for (int i = 0; i < ENC_REGION; i++)
        enc_region[i] = (float)((i * 13) % 17) / 17.0f - 0.5f;
    memcpy(enc_region_ref, enc_region, sizeof enc_region);
}
static void end_enc_case(attn_status got, attn_status want, const char *func, const char *arg) {
    end_case(got, want, func, arg);
    if (want != ATTN_OK && memcmp(enc_region, enc_region_ref, sizeof enc_region) != 0)
        fail_msg("[%s] an output of %s was written", g_case, func);
}

/* Post-norm ReLU, or pre-norm GELU; parameters from set 0 if `set`. */
static attn_encoder_layer *make_encoder(int pre, int set) {
    attn_encoder_layer *l = NULL;
    assert_int_equal(attn_encoder_layer_create(&l, E, H, EFF,
                                               pre ? ATTN_ACTIVATION_GELU : ATTN_ACTIVATION_RELU,
                                               pre, 1e-5f),
                     ATTN_OK);
    assert_non_null(l);
    if (set)
        assert_int_equal(attn_encoder_layer_set_params(l, enc_params[0]), ATTN_OK);
    return l;
}

/* A forward (training if act) of src = in_q into out; it must succeed. */
static void encoder_into(const attn_encoder_layer *l, const attn_mask *m, float *out,
                         attn_activations *act) {
    if (attn_encoder_layer_forward(g_ctx, l, B, EL, in_q, m, out, act) != ATTN_OK)
        fail_msg("[%s] encoder forward failed: %s", g_case, attn_last_error());
}

/* Every encoder call, successful, leaves the last error alone: create,
 * param_count, set_params, get_params, each causal value, dropout on and
 * off, the forwards (in place too), the backward (with and without outputs)
 * and destroy(NULL). */
static void check_encoder_keeps_last_error(void) {
    static float out[NOUT], d_src[NOUT], params[ENC_P], d_params[ENC_P];
    attn_encoder_layer *l = NULL;
    attn_activations *act = NULL;
    int64_t count = 0;
    attn_encoder_layer_destroy(NULL);
    assert_int_equal(attn_activations_create(&act), ATTN_OK);
    for (int pre = 0; pre < 2; pre++) {
        EXPECT_OK(attn_encoder_layer_create(&l, E, H, EFF, (attn_activation)pre, pre, 1e-5f));
        EXPECT_OK(attn_encoder_layer_param_count(l, &count));
        EXPECT_OK(attn_encoder_layer_set_params(l, enc_params[0]));
        EXPECT_OK(attn_encoder_layer_get_params(l, params));
        EXPECT_OK(attn_encoder_layer_set_causal(l, ATTN_CAUSAL_TOP_LEFT));
        EXPECT_OK(attn_encoder_layer_set_causal(l, ATTN_CAUSAL_BOTTOM_RIGHT));
        EXPECT_OK(attn_encoder_layer_set_causal(l, ATTN_CAUSAL_NONE));
        EXPECT_OK(attn_encoder_layer_set_dropout(l, 0.5f, 7));
        EXPECT_OK(attn_encoder_layer_forward(g_ctx, l, B, EL, in_q, NULL, out, NULL));
        EXPECT_OK(attn_encoder_layer_forward(g_ctx, l, B, EL, in_q, NULL, out, act));
        EXPECT_OK(attn_encoder_layer_backward(g_ctx, l, act, in_v, d_src, d_params));
        EXPECT_OK(attn_encoder_layer_backward(g_ctx, l, act, in_v, NULL, NULL));
        memcpy(out, in_q, sizeof out);
        EXPECT_OK(attn_encoder_layer_forward(g_ctx, l, B, EL, out, NULL, out, act));
        EXPECT_OK(attn_encoder_layer_set_dropout(l, 0.0f, 0));
        attn_encoder_layer_destroy(l);
    }
    attn_activations_destroy(act);
}

/* ---- attn_encoder_layer_create ---------------------------------------- */

typedef struct {
    const char *name;
    int null_out;
    int64_t d_model, nhead, ff;
    int activation, norm_first;
    float eps;
    attn_status st;
    const char *arg;
} enc_create_case;

#define EC(n, d, h, ff, act, nf, eps, st, arg) {n, 0, d, h, ff, act, nf, eps, st, arg}
#define ENC_OVF "d_model|dim_feedforward|in_proj_weight|linear1|parameters|size_t"
static const enc_create_case enc_create_cases[] = {
    {"layer NULL", 1, E, H, EFF, 0, 0, 1e-5f, NUL, "layer"},
    EC("d_model 0", 0, H, EFF, 0, 0, 1e-5f, INV, "d_model"),
    EC("d_model -1", -1, H, EFF, 0, 0, 1e-5f, INV, "d_model"),
    EC("d_model INT64_MIN", INT64_MIN, H, EFF, 0, 0, 1e-5f, INV, "d_model"),
    EC("nhead 0", E, 0, EFF, 0, 0, 1e-5f, INV, "nhead"),
    EC("nhead -1", E, -1, EFF, 0, 0, 1e-5f, INV, "nhead"),
    EC("dim_feedforward 0", E, H, 0, 0, 0, 1e-5f, INV, "dim_feedforward"),
    EC("dim_feedforward -1", E, H, -1, 0, 0, 1e-5f, INV, "dim_feedforward"),
    EC("activation 2", E, H, EFF, 2, 0, 1e-5f, INV, "activation"),
    EC("activation -1", E, H, EFF, -1, 0, 1e-5f, INV, "activation"),
    EC("activation INT_MAX", E, H, EFF, INT_MAX, 0, 1e-5f, INV, "activation"),
    EC("norm_first 2", E, H, EFF, 0, 2, 1e-5f, INV, "norm_first"),
    EC("norm_first -1", E, H, EFF, 0, -1, 1e-5f, INV, "norm_first"),
    EC("norm_first INT_MIN", E, H, EFF, 1, INT_MIN, 1e-5f, INV, "norm_first"),
    EC("eps 0", E, H, EFF, 0, 0, 0.0f, INV, "layer_norm_eps"),
    EC("eps -0", E, H, EFF, 0, 0, -0.0f, INV, "layer_norm_eps"),
    EC("eps -1e-5", E, H, EFF, 0, 0, -1e-5f, INV, "layer_norm_eps"),
    EC("eps NaN", E, H, EFF, 0, 0, NAN, INV, "layer_norm_eps"),
    EC("eps -NaN", E, H, EFF, 0, 0, -NAN, INV, "layer_norm_eps"),
    EC("eps +Inf", E, H, EFF, 0, 0, INFINITY, INV, "layer_norm_eps"),
    EC("eps -Inf", E, H, EFF, 0, 0, -INFINITY, INV, "layer_norm_eps"),
    EC("d_model 10 % nhead 4", 10, 4, EFF, 0, 0, 1e-5f, MM, "d_model|nhead"),
    EC("d_model 4 % nhead 8", 4, 8, EFF, 0, 0, 1e-5f, MM, "d_model|nhead"),
    EC("d_model 2^32 (in_proj)", P32, 1, 1, 0, 0, 1e-5f, OVF, ENC_OVF),
    EC("dim_feedforward 2^62 (linear1)", E, H, P62, 0, 0, 1e-5f, OVF, ENC_OVF),
    EC("dim_feedforward 2^31", 1, 1, P31, 0, 0, 1e-5f, UNS, "dim_feedforward"),
    EC("encoder: fixture, post-norm ReLU", E, H, EFF, 0, 0, 1e-5f, ATTN_OK, ""),
    EC("encoder: pre-norm GELU", E, H, EFF, 1, 1, 1e-5f, ATTN_OK, ""),
    EC("encoder: all 1, tiny eps", 1, 1, 1, 1, 0, 1e-30f, ATTN_OK, ""),
    EC("encoder: nhead = d_model, eps 1", E, E, 1, 0, 1, 1.0f, ATTN_OK, ""),
};

static void test_encoder_create_errors(void **state) {
    (void)state;
    const char *f = "attn_encoder_layer_create";
    for (size_t i = 0; i < COUNT(enc_create_cases); i++) {
        const enc_create_case *c = &enc_create_cases[i];
        void *obj = SENTINEL;
        begin_case(c->name, c->st);
        attn_status st = attn_encoder_layer_create(c->null_out ? NULL
                                                               : (attn_encoder_layer **)&obj,
                                                   c->d_model, c->nhead, c->ff,
                                                   (attn_activation)c->activation,
                                                   c->norm_first, c->eps);
        end_case(st, c->st, f, c->arg);
        if (c->st != ATTN_OK) {
            assert_ptr_equal(obj, SENTINEL);
            continue;
        }
        assert_true(obj != NULL && obj != SENTINEL);
        attn_encoder_layer_destroy(obj);
    }
}

/* ---- the encoder's setters and getters ---------------------------------- */

/* Every failing setter and getter call on layer l: statuses, messages, and
 * no output written (count, params). */
static void fail_encoder_setters(attn_encoder_layer *l) {
    const char *fc = "attn_encoder_layer_set_causal", *fd = "attn_encoder_layer_set_dropout";
    const char *fn = "attn_encoder_layer_param_count", *fg = "attn_encoder_layer_get_params";
    const char *fs = "attn_encoder_layer_set_params";
    EXPECT_FAIL(attn_encoder_layer_set_causal(NULL, ATTN_CAUSAL_TOP_LEFT), NUL, fc, "layer");
    const int bad_causal[] = {3, -1, 7, INT_MAX, INT_MIN};
    for (size_t i = 0; i < COUNT(bad_causal); i++)
        EXPECT_FAIL(attn_encoder_layer_set_causal(l, (attn_causal)bad_causal[i]), INV, fc,
                    "causal");
    EXPECT_FAIL(attn_encoder_layer_set_dropout(NULL, 0.1f, 1), NUL, fd, "layer");
    const float bad_p[] = {1.0f, 1.5f, -0.1f, -1e-30f, NAN, -NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < COUNT(bad_p); i++)
        EXPECT_FAIL(attn_encoder_layer_set_dropout(l, bad_p[i], 1), INV, fd, "p");
    int64_t count = -7;
    EXPECT_FAIL(attn_encoder_layer_param_count(NULL, &count), NUL, fn, "layer");
    assert_int_equal(count, -7);
    EXPECT_FAIL(attn_encoder_layer_param_count(l, NULL), NUL, fn, "count");
    begin_enc_case("get_params NULL", NUL);
    end_enc_case(attn_encoder_layer_get_params(NULL, enc_dp), NUL, fg, "layer");
    EXPECT_FAIL(attn_encoder_layer_get_params(l, NULL), NUL, fg, "params");
    EXPECT_FAIL(attn_encoder_layer_set_params(NULL, enc_params[1]), NUL, fs, "layer");
    EXPECT_FAIL(attn_encoder_layer_set_params(l, NULL), NUL, fs, "params");
}

/* Failed setters on a set layer with dropout: the layer computes bit for bit
 * as before (parameter set 1 never gets in, p and seed stay), its parameters
 * read back unchanged, and an act filled before them is not stale. */
static void check_encoder_setters(int pre) {
    static float o1[NOUT], o2[NOUT], t1[NOUT], t2[NOUT], g1[NOUT], g2[NOUT];
    static float p1[ENC_P], p2[ENC_P], dp1[ENC_P], dp2[ENC_P];
    attn_encoder_layer *l = make_encoder(pre, 1);
    attn_activations *act = NULL;
    assert_int_equal(attn_activations_create(&act), ATTN_OK);
    assert_int_equal(attn_encoder_layer_set_causal(l, ATTN_CAUSAL_TOP_LEFT), ATTN_OK);
    assert_int_equal(attn_encoder_layer_set_dropout(l, 0.5f, 11), ATTN_OK);
    int64_t count = 0;
    assert_int_equal(attn_encoder_layer_param_count(l, &count), ATTN_OK);
    assert_int_equal(count, ENC_P);
    encoder_into(l, NULL, o1, NULL);
    encoder_into(l, NULL, t1, act);
    assert_int_equal(attn_encoder_layer_backward(g_ctx, l, act, in_v, g1, dp1), ATTN_OK);
    assert_int_equal(attn_encoder_layer_get_params(l, p1), ATTN_OK);
    fail_encoder_setters(l);
    /* act is still the layer's: the failed setters changed nothing */
    assert_int_equal(attn_encoder_layer_backward(g_ctx, l, act, in_v, g2, dp2), ATTN_OK);
    assert_memory_equal(g1, g2, sizeof g1);
    assert_memory_equal(dp1, dp2, sizeof dp1);
    assert_int_equal(attn_encoder_layer_get_params(l, p2), ATTN_OK);
    assert_memory_equal(p1, p2, sizeof p1);
    assert_memory_equal(p1, enc_params[0], sizeof p1);
    encoder_into(l, NULL, o2, NULL);
    encoder_into(l, NULL, t2, act);
    assert_memory_equal(o1, o2, sizeof o1);
    assert_memory_equal(t1, t2, sizeof t1);
    attn_activations_destroy(act);
    attn_encoder_layer_destroy(l);
}

static void test_encoder_setter_errors(void **state) {
    (void)state;
    g_case = "post-norm layer";
    check_encoder_setters(0);
    g_case = "pre-norm layer";
    check_encoder_setters(1);
}

/* get_params and the forwards before set_params, and after a failed one:
 * ATTN_ERR_STATE naming the parameters, nothing written, act left empty. */
static void test_encoder_state(void **state) {
    (void)state;
    attn_encoder_layer *l = make_encoder(0, 0);
    attn_activations *act = NULL;
    assert_int_equal(attn_activations_create(&act), ATTN_OK);
    int64_t count = 0;
    save_error();
    EXPECT_OK(attn_encoder_layer_param_count(l, &count)); /* the count needs no parameters */
    assert_int_equal(count, ENC_P);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            assert_int_equal(attn_encoder_layer_set_params(l, NULL), NUL);
        begin_enc_case(pass ? "get_params after failed set_params" : "get_params before set",
                       ATTN_ERR_STATE);
        end_enc_case(attn_encoder_layer_get_params(l, enc_dp), ATTN_ERR_STATE,
                     "attn_encoder_layer_get_params", "parameters");
        for (int train = 0; train < 2; train++) {
            begin_enc_case(train ? "training forward before set" : "forward before set",
                           ATTN_ERR_STATE);
            end_enc_case(attn_encoder_layer_forward(g_ctx, l, B, EL, in_q, NULL, enc_out,
                                                    train ? act : NULL),
                         ATTN_ERR_STATE, "attn_encoder_layer_forward", "parameters");
        }
        begin_enc_case("backward before set", ATTN_ERR_STATE);
        end_enc_case(attn_encoder_layer_backward(g_ctx, l, act, in_v, enc_out, enc_dp),
                     ATTN_ERR_STATE, "attn_encoder_layer_backward", "act");
    }
    attn_activations_destroy(act);
    attn_encoder_layer_destroy(l);
}

/* ---- attn_encoder_layer_forward ---------------------------------------- */

enum { ENUL_NONE, ENUL_CTX, ENUL_LAYER, ENUL_SRC, ENUL_OUT, ENUL_ALL };
static const char *const enc_nul_arg[ENUL_ALL + 1] = {"", "ctx", "layer", "src", "out", ""};
/* Where out lies relative to src (both in enc_region): after it by one
 * float, before it, sharing only src's last float, just past it, or equal. */
enum { OV_NONE, OV_AFTER, OV_BEFORE, OV_LAST, OV_ADJACENT, OV_SAME };

typedef struct {
    const char *name;
    int nul, ov;
    int64_t batch, len;
    int mk;
    int64_t d0, d1, d2, d3;   /* as fwd_case: the mask's dims, len_kv = len */
    attn_status st;
    const char *arg;          /* NULL: the name of the NULL argument */
} enc_fwd_case;

#define EF_OVF "batch|len|src|out|size_t"
#define ENL(n, nul, b, l, st) {n, nul, OV_NONE, b, l, MK_NONE, 0, 0, 0, 0, st, NULL}
#define ESZ(n, b, l, st, arg) {n, ENUL_NONE, OV_NONE, b, l, MK_NONE, 0, 0, 0, 0, st, arg}
#define EOV(n, ov, st) {n, ENUL_NONE, ov, B, EL, MK_NONE, 0, 0, 0, 0, st, "out|src"}
#define EMK(n, k, d0, d1, d2, d3, st) {n, ENUL_NONE, OV_NONE, B, EL, k, d0, d1, d2, d3, st, "mask"}
static const enc_fwd_case enc_fwd_cases[] = {
    ENL("ctx NULL", ENUL_CTX, B, EL, NUL),
    ENL("layer NULL", ENUL_LAYER, B, EL, NUL),
    ENL("src NULL", ENUL_SRC, B, EL, NUL),
    ENL("out NULL", ENUL_OUT, B, EL, NUL),
    ENL("ctx NULL, batch 0", ENUL_CTX, 0, EL, NUL),
    ENL("batch 0: src, out NULL", ENUL_ALL, 0, EL, ATTN_OK),
    ENL("len 0: src, out NULL", ENUL_ALL, B, 0, ATTN_OK),
    ESZ("batch -1", -1, EL, INV, "batch"),
    ESZ("batch INT64_MIN", INT64_MIN, EL, INV, "batch"),
    ESZ("len -1", B, -1, INV, "len"),
    ESZ("len INT64_MIN", B, INT64_MIN, INV, "len"),
    ESZ("batch 2^62", P62, EL, OVF, EF_OVF),
    ESZ("len 2^62", 1, P62, OVF, EF_OVF),
    ESZ("batch INT64_MAX", INT64_MAX, 1, OVF, EF_OVF),
    ESZ("batch x len 2^31", P31, 1, UNS, "batch|len"),
    ESZ("batch x len 2^32", P16, P16, UNS, "batch|len"),
    EOV("out = src + 1 float", OV_AFTER, INV),
    EOV("out = src - 1 float", OV_BEFORE, INV),
    EOV("out shares src's last float", OV_LAST, INV),
    EOV("out just past src", OV_ADJACENT, ATTN_OK),
    EOV("out = src (in place)", OV_SAME, ATTN_OK),
    EMK("lengths batch 3", MK_LEN, 3, 0, 0, 0, MM),
    EMK("lengths batch 1", MK_LEN, 1, 0, 0, 0, MM),
    EMK("lengths per-query len_q 2", MK_LEN, B, 2, 1, 0, MM),
    EMK("lengths per-query ok", MK_LEN, B, EL, 1, 0, ATTN_OK),
    EMK("lengths ok", MK_LEN, B, 0, 0, 0, ATTN_OK),
    {"length above len", ENUL_NONE, OV_NONE, B, EL, MK_LEN_BIG, 0, 0, 0, 0, INV, LEN_ARGS},
    {"length made negative after set", ENUL_NONE, OV_NONE, B, EL, MK_LEN_NEG, 0, 0, 0, 0, INV,
     LEN_ARGS},
#define ENC_MASK_CASES(K, N)                                      \
    EMK(N " mb 3", K, 3, 1, EL, EL, MM),                          \
    EMK(N " mh 2", K, B, 2, EL, EL, MM),                          \
    EMK(N " mh 5", K, 1, 5, 1, EL, MM),                           \
    EMK(N " mh 4 (= nhead)", K, B, H, EL, EL, ATTN_OK),           \
    EMK(N " mh 1", K, B, 1, EL, EL, ATTN_OK),                     \
    EMK(N " mq 2", K, B, 1, 2, EL, MM),                           \
    EMK(N " len_kv 4", K, 1, 1, 1, EL + 1, MM),                   \
    EMK(N " len_kv 1", K, 1, 1, 1, 1, MM),                        \
    EMK(N " all broadcast", K, 1, 1, 1, EL, ATTN_OK)
    ENC_MASK_CASES(MK_BOOL, "bool"),
    ENC_MASK_CASES(MK_BIAS, "bias"),
};

static attn_status run_encoder_forward(const attn_encoder_layer *l, const enc_fwd_case *c,
                                       attn_mask *m, attn_activations *act) {
    int n = c->nul;
    const float *src = (n == ENUL_SRC || n == ENUL_ALL) ? NULL : in_q;
    float *out = (n == ENUL_OUT || n == ENUL_ALL) ? NULL : enc_out;
    /* src [B, EL, E] = 48 floats at 64 floats into enc_region */
    float *region_src = enc_region + NOUT;
    int64_t n_src = B * EL * E;
    switch (c->ov) {
    case OV_AFTER: src = region_src, out = region_src + 1; break;
    case OV_BEFORE: src = region_src, out = region_src - 1; break;
    case OV_LAST: src = region_src, out = region_src + n_src - 1; break;
    case OV_ADJACENT: src = region_src, out = region_src + n_src; break;
    case OV_SAME: src = region_src, out = region_src; break;
    default: break;
    }
    return attn_encoder_layer_forward(n == ENUL_CTX ? NULL : g_ctx, n == ENUL_LAYER ? NULL : l,
                                      c->batch, c->len, src, c->mk == MK_NONE ? NULL : m, out,
                                      act);
}

static void run_encoder_forward_table(const attn_encoder_layer *l, attn_activations *act) {
    const char *f = "attn_encoder_layer_forward";
    attn_mask *m = NULL;
    assert_int_equal(attn_mask_create(&m), ATTN_OK);
    for (size_t i = 0; i < COUNT(enc_fwd_cases); i++) {
        const enc_fwd_case *c = &enc_fwd_cases[i];
        /* set_case_mask takes the mask part of a fwd_case */
        const fwd_case mc = {c->name, NUL_NONE, B, EL, EL, ADV, c->mk, c->d0, c->d1, c->d2,
                             c->d3, 0, 0, NULL};
        set_case_mask(m, &mc);
        begin_enc_case(c->name, c->st);
        end_enc_case(run_encoder_forward(l, c, m, act), c->st, f,
                     c->arg ? c->arg : enc_nul_arg[c->nul]);
        lens_neg[1] = 1;
    }
    attn_mask_destroy(m);
}

static void test_encoder_forward_errors(void **state) {
    (void)state;
    attn_activations *act = NULL;
    assert_int_equal(attn_activations_create(&act), ATTN_OK);
    for (int pre = 0; pre < 2; pre++) {
        attn_encoder_layer *l = make_encoder(pre, 1);
        /* inference, then training; dropout and causal change no check */
        run_encoder_forward_table(l, NULL);
        run_encoder_forward_table(l, act);
        assert_int_equal(attn_encoder_layer_set_causal(l, ATTN_CAUSAL_TOP_LEFT), ATTN_OK);
        assert_int_equal(attn_encoder_layer_set_dropout(l, 0.25f, 5), ATTN_OK);
        run_encoder_forward_table(l, NULL);
        run_encoder_forward_table(l, act);
        attn_encoder_layer_destroy(l);
    }
    attn_activations_destroy(act);
}

/* ---- attn_encoder_layer_backward ---------------------------------------- */

/* One backward case: d_out, d_src and d_params as given (in enc_region for
 * the overlap cases). */
static void enc_backward_case(const char *name, const attn_encoder_layer *l,
                              const attn_activations *act, const float *d_out, float *d_src,
                              float *d_params, attn_status want, const char *arg) {
    begin_enc_case(name, want);
    end_enc_case(attn_encoder_layer_backward(g_ctx, l, act, d_out, d_src, d_params), want,
                 "attn_encoder_layer_backward", arg);
}

/* The failures of a backward whose act was filled by layer l; d_out is
 * in_v. Afterwards act still gives the gradients it gave before. */
static void fail_encoder_backward(const attn_encoder_layer *l, const attn_activations *act) {
    static float g1[NOUT], g2[NOUT], dp1[ENC_P], dp2[ENC_P];
    const char *f = "attn_encoder_layer_backward";
    assert_int_equal(attn_encoder_layer_backward(g_ctx, l, act, in_v, g1, dp1), ATTN_OK);
    float *r = enc_region;   /* [0, 48): d_out; the outputs after it */
    int64_t n = B * EL * E;
    begin_enc_case("ctx NULL", NUL);
    end_enc_case(attn_encoder_layer_backward(NULL, l, act, in_v, enc_out, enc_dp), NUL, f,
                 "ctx");
    enc_backward_case("layer NULL", NULL, act, in_v, enc_out, enc_dp, NUL, "layer");
    enc_backward_case("act NULL", l, NULL, in_v, enc_out, enc_dp, NUL, "act");
    enc_backward_case("d_out NULL", l, act, NULL, enc_out, enc_dp, NUL, "d_out");
    enc_backward_case("d_out NULL, no outputs", l, act, NULL, NULL, NULL, NUL, "d_out");
    enc_backward_case("d_src = d_out", l, act, r, r, enc_dp, INV, "d_src|d_out");
    enc_backward_case("d_src = d_out + 1", l, act, r, r + 1, enc_dp, INV, "d_src|d_out");
    enc_backward_case("d_src = d_out - 1", l, act, r + 1, r, enc_dp, INV, "d_src|d_out");
    enc_backward_case("d_src shares d_out's last float", l, act, r, r + n - 1, enc_dp, INV,
                      "d_src|d_out");
    enc_backward_case("d_params overlaps d_out", l, act, r, NULL, r + n - 1, INV,
                      "d_params|d_out");
    enc_backward_case("d_params = d_src", l, act, in_v, r, r, INV, "d_params|d_src");
    enc_backward_case("d_params = d_src + 1", l, act, in_v, r, r + 1, INV, "d_params|d_src");
    enc_backward_case("d_src inside d_params", l, act, in_v, r + 8, r, INV, "d_params|d_src");
    enc_backward_case("d_params shares d_src's last float", l, act, in_v, r, r + n - 1, INV,
                      "d_params|d_src");
    enc_backward_case("d_params just past d_src", l, act, in_v, r, r + n, ATTN_OK, "");
    enc_backward_case("d_src, d_params NULL", l, act, in_v, NULL, NULL, ATTN_OK, "");
    /* act is only read: the failures changed nothing */
    assert_int_equal(attn_encoder_layer_backward(g_ctx, l, act, in_v, g2, dp2), ATTN_OK);
    assert_memory_equal(g1, g2, sizeof g1);
    assert_memory_equal(dp1, dp2, sizeof dp1);
}

/* act with another owner or a changed layer: ATTN_ERR_STATE. */
static void test_encoder_backward_errors(void **state) {
    (void)state;
    const char *stale = "parameters|options";
    attn_encoder_layer *l = make_encoder(0, 1), *other = make_encoder(0, 1);
    attn_mha *m = make_mha(1, 0xF);
    attn_activations *act = NULL;
    attn_mask *mask = NULL;
    assert_int_equal(attn_activations_create(&act), ATTN_OK);
    assert_int_equal(attn_mask_create(&mask), ATTN_OK);
    g_case = "backward";
    enc_backward_case("act empty", l, act, in_v, enc_out, enc_dp, ATTN_ERR_STATE, "act");
    encoder_into(other, NULL, out_buf, act);
    enc_backward_case("act of another encoder layer", l, act, in_v, enc_out, enc_dp,
                      ATTN_ERR_STATE, "act");
    assert_int_equal(attn_mha_forward_train(g_ctx, m, B, LQ, LKV, in_q, in_k, in_v, NULL,
                                            out_buf, NULL, act),
                     ATTN_OK);
    enc_backward_case("act of a multi-head layer", l, act, in_v, enc_out, enc_dp,
                      ATTN_ERR_STATE, "act");
    for (int pre = 0; pre < 2; pre++) {
        attn_encoder_layer *p = pre ? make_encoder(1, 1) : l;
        assert_int_equal(attn_encoder_layer_set_dropout(p, 0.25f, 9), ATTN_OK);
        encoder_into(p, NULL, out_buf, act);
        fail_encoder_backward(p, act);
        /* Any setter call makes act stale, even one that sets what was set. */
        assert_int_equal(attn_encoder_layer_set_params(p, enc_params[0]), ATTN_OK);
        enc_backward_case("after set_params", p, act, in_v, enc_out, enc_dp, ATTN_ERR_STATE,
                          stale);
        encoder_into(p, NULL, out_buf, act);
        assert_int_equal(attn_encoder_layer_set_causal(p, ATTN_CAUSAL_NONE), ATTN_OK);
        enc_backward_case("after set_causal", p, act, in_v, enc_out, enc_dp, ATTN_ERR_STATE,
                          stale);
        encoder_into(p, NULL, out_buf, act);
        assert_int_equal(attn_encoder_layer_set_dropout(p, 0.25f, 9), ATTN_OK);
        enc_backward_case("after set_dropout", p, act, in_v, enc_out, enc_dp, ATTN_ERR_STATE,
                          stale);
        /* The mask's caller-owned lengths changed to invalid values. */
        int64_t lens[B] = {EL, 2};
        assert_int_equal(attn_mask_set_kv_lengths(mask, lens, B, 0, 0), ATTN_OK);
        encoder_into(p, mask, out_buf, act);
        lens[1] = EL + 1;
        enc_backward_case("length raised above len", p, act, in_v, enc_out, enc_dp, INV,
                          LEN_ARGS);
        lens[1] = -1;
        enc_backward_case("length made negative", p, act, in_v, enc_out, enc_dp, INV, LEN_ARGS);
        lens[1] = 2;
        enc_backward_case("lengths restored", p, act, in_v, enc_out, enc_dp, ATTN_OK, "");
        if (pre)
            attn_encoder_layer_destroy(p);
    }
    attn_mask_destroy(mask);
    attn_activations_destroy(act);
    attn_mha_destroy(m);
    attn_encoder_layer_destroy(other);
    attn_encoder_layer_destroy(l);
}

#define T(f) cmocka_unit_test_setup(f, reset_case)
int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_success_keeps_last_error),
        T(test_create_errors),
        T(test_mha_setter_errors),
        T(test_mha_get_property),
        T(test_mha_forward_state),
        T(test_forward_errors),
        T(test_additive_set_weights_errors),
        T(test_nadaraya_watson_errors),
        T(test_positional_encoding_errors),
        T(test_encoder_create_errors),
        T(test_encoder_setter_errors),
        T(test_encoder_state),
        T(test_encoder_forward_errors),
        T(test_encoder_backward_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
