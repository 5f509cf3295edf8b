/*
 * test_size_overflow.c — sizes whose products overflow are refused before
 * anything is allocated or read.
 *
 * For every call that takes sizes (the Transformer encoder layer's create and
 * forward, inference and training, the KV cache, the cached forward and
 * RoPE included), a table of dimensions whose
 * element count overflows int64_t (e.g. 2^62 × 8) or whose byte count
 * overflows size_t (2^62 floats = 2^64 bytes) must return
 * ATTN_ERR_SIZE_OVERFLOW with a message naming the function, and sizes that
 * fit but exceed what the BLAS interface (int) or the dropout counters take
 * must return ATTN_ERR_UNSUPPORTED where attn.h says so, with
 *   - no allocation attempted: the call count of the library's allocator
 *     (the hidden hook of src/alloc.c, reached by linking the library's
 *     objects) is unchanged;
 *   - no output written: the handle out-pointer keeps its sentinel, the
 *     (tiny, never-to-be-read) data buffers keep their byte pattern.
 * The same shapes one power of two below the limit are accepted, so the
 * checks are not stricter than size_t requires.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attn.h>

extern atomic_llong attn_alloc_calls;

#define P(n) ((int64_t)1 << (n))
#define PATTERN 0x5A

static char sentinel_obj;
#define SENTINEL ((void *)&sentinel_obj)

/* Tiny stand-ins for tensors the call must never read or write. */
static float in_a[64], in_b[64], in_c[64];
static float out_buf[64], w_buf[64], lse_buf[64];
static int64_t len_buf[64];
static uint8_t keep_buf[64];

typedef enum kind {
    K_SDPA_CREATE, K_SDPA_FORWARD, K_MHA_CREATE, K_MHA_FORWARD, K_ADD_CREATE, K_ADD_FORWARD,
    K_MASK_LENGTHS, K_MASK_BOOL, K_MASK_BIAS, K_NW, K_PE, K_ENC_CREATE, K_ENC_FORWARD,
    K_ENC_FORWARD_DROPOUT, K_CACHE_CREATE, K_CACHED_FORWARD, K_ROPE_APPLY, K_ROPE_TABLES
} kind;

typedef struct ocase {
    const char *name;
    kind k;
    int64_t a[7];        /* the sizes, in the call's argument order */
    attn_status want;    /* SIZE_OVERFLOW or UNSUPPORTED, or OK for the just-fitting twin */
    const char *func;
} ocase;

#define OVF ATTN_ERR_SIZE_OVERFLOW
#define UNS ATTN_ERR_UNSUPPORTED
static const ocase cases[] = {
    /* sdpa_create(batch, heads_q, heads_kv, len_q, len_kv, dim_qk, dim_v) */
    {"sdpa q: 2^62 x 8 elements", K_SDPA_CREATE, {P(62), 1, 1, 1, 1, 8, 8}, OVF, "attn_sdpa_create"},
    {"sdpa q: 2^62 floats = 2^64 bytes", K_SDPA_CREATE, {P(60), 1, 1, 1, 1, 4, 4}, OVF, "attn_sdpa_create"},
    {"sdpa k: len_kv 2^61 x 8", K_SDPA_CREATE, {1, 1, 1, 1, P(61), 8, 1}, OVF, "attn_sdpa_create"},
    {"sdpa out: dim_v 2^62 x len_q 8", K_SDPA_CREATE, {1, 1, 1, 8, 1, 1, P(62)}, OVF, "attn_sdpa_create"},
    {"sdpa heads 2^40 x len 2^30", K_SDPA_CREATE, {1, P(40), 1, P(30), 1, 1, 1}, OVF, "attn_sdpa_create"},
    {"sdpa q: 2^61 floats fit", K_SDPA_CREATE, {P(59), 1, 1, 1, 1, 4, 4}, ATTN_OK, "attn_sdpa_create"},
    /* sdpa_forward on (1, 1, 1, len_q, len_kv, 1, 1) with weights requested */
    {"sdpa weights: 2^40 x 2^30", K_SDPA_FORWARD, {1, 1, 1, P(40), P(30), 1, 1}, OVF, "attn_sdpa_forward"},
    /* mha_create(embed_dim, num_heads, num_kv_heads, kdim, vdim) */
    {"mha K weight: 8 x kdim 2^62", K_MHA_CREATE, {8, 1, 1, P(62), 8}, OVF, "attn_mha_create"},
    {"mha V weight: 8 x vdim 2^61", K_MHA_CREATE, {8, 1, 1, 8, P(61)}, OVF, "attn_mha_create"},
    {"mha Q weight: embed_dim 2^32 squared", K_MHA_CREATE, {P(32), 1, 1, 8, 8}, OVF, "attn_mha_create"},
    /* mha_forward(batch, len_q, len_kv) on an (8, 1, 1, 8, 8) layer; a[3] = 1: weights */
    {"mha query: batch 2^62 x 8 x 8", K_MHA_FORWARD, {P(62), 8, 1, 0}, OVF, "attn_mha_forward"},
    {"mha key: len_kv 2^61 x 8", K_MHA_FORWARD, {1, 1, P(61), 0}, OVF, "attn_mha_forward"},
    {"mha weights: 2^40 x 2^40", K_MHA_FORWARD, {1, P(40), P(40), 1}, OVF, "attn_mha_forward"},
    /* additive_create(query_dim, key_dim, hidden) */
    {"additive w_q: hidden 2^62 x 8", K_ADD_CREATE, {8, 1, P(62)}, OVF, "attn_additive_create"},
    {"additive w_k: 2^31 x 2^33", K_ADD_CREATE, {1, P(33), P(31)}, OVF, "attn_additive_create"},
    /* additive_forward(batch, len_q, len_kv, dim_v) on an (8, 8, 8) op; a[4] = 1: weights */
    {"additive queries: batch 2^62 x 8", K_ADD_FORWARD, {P(62), 1, 1, 1, 0}, OVF, "attn_additive_forward"},
    {"additive values: dim_v 2^62 x 8", K_ADD_FORWARD, {1, 1, 8, P(62), 0}, OVF, "attn_additive_forward"},
    {"additive weights: 2^40 x 2^40", K_ADD_FORWARD, {1, P(40), P(40), 1, 1}, OVF, "attn_additive_forward"},
    /* mask setters */
    {"lengths: 2^62 x len_q 8", K_MASK_LENGTHS, {P(62), 8, 1}, OVF, "attn_mask_set_kv_lengths"},
    {"lengths: 2^61 int64 = 2^64 bytes", K_MASK_LENGTHS, {P(61), 1, 1}, OVF, "attn_mask_set_kv_lengths"},
    {"bool: 2^62 x 8", K_MASK_BOOL, {P(62), 1, 1, 8}, OVF, "attn_mask_set_bool"},
    {"bool: 2^32 x 2^32", K_MASK_BOOL, {1, P(32), 1, P(32)}, OVF, "attn_mask_set_bool"},
    {"bias: 2^62 floats = 2^64 bytes", K_MASK_BIAS, {P(61), 1, 1, 2}, OVF, "attn_mask_set_bias"},
    {"bias: 2^60 floats fit", K_MASK_BIAS, {P(59), 1, 1, 2}, ATTN_OK, "attn_mask_set_bias"},
    /* nadaraya_watson(n_queries, n_keys), a[2] = 1: weights */
    {"nw queries: 2^62 floats", K_NW, {P(62), 1, 0}, OVF, "attn_nadaraya_watson"},
    {"nw weights: 2^62 x 8", K_NW, {P(62) / 8, 64, 1}, OVF, "attn_nadaraya_watson"},
    /* positional_encoding(len, dim) */
    {"positional: 2^62 x 8", K_PE, {P(62), 8}, OVF, "attn_positional_encoding"},
    {"positional: 2^61 x 2 floats = 2^64 bytes", K_PE, {P(61), 2}, OVF, "attn_positional_encoding"},
#define ENC_C "attn_encoder_layer_create"
#define ENC_F "attn_encoder_layer_forward"
    /* encoder_layer_create(d_model, nhead, dim_feedforward). No twin that
     * fits: the layer allocates its parameters at create. A d_model beyond
     * INT_MAX cannot reach ATTN_ERR_UNSUPPORTED: 3·d_model² floats overflow
     * first. */
    {"encoder in_proj: 3 x 2^32 x 2^32", K_ENC_CREATE, {P(32), 1, 1}, OVF, ENC_C},
    {"encoder in_proj: 3 x 2^61 x 2^61", K_ENC_CREATE, {P(61), 1, 1}, OVF, ENC_C},
    {"encoder d_model 2^62: 3 x d_model", K_ENC_CREATE, {P(62), 1, 1}, OVF, ENC_C},
    {"encoder d_model 2^31 (beyond INT_MAX)", K_ENC_CREATE, {P(31), 1, 1}, OVF, ENC_C},
    {"encoder linear1: ff 2^62 x 8", K_ENC_CREATE, {8, 1, P(62)}, OVF, ENC_C},
    {"encoder linear1: 2^62 floats = 2^64 bytes", K_ENC_CREATE, {2, 1, P(61)}, OVF, ENC_C},
    /* every tensor fits (in_proj 3·2^60 floats), the flat vector does not */
    {"encoder parameters: 4 x 2^60 floats", K_ENC_CREATE, {P(30), 1, 1}, OVF, ENC_C},
    {"encoder dim_feedforward 2^31", K_ENC_CREATE, {1, 1, P(31)}, UNS, ENC_C},
    /* encoder_layer_forward(batch, len) on an (8, 1, 8) layer; a[2] = 1: training (act) */
    {"encoder src: batch 2^62 x 8 x 8", K_ENC_FORWARD, {P(62), 8, 0}, OVF, ENC_F},
    {"encoder src: 2^62 floats = 2^64 bytes", K_ENC_FORWARD, {1, P(59), 0}, OVF, ENC_F},
    {"encoder src: 2^31 x 2^31 x 8", K_ENC_FORWARD, {P(31), P(31), 0}, OVF, ENC_F},
    {"encoder training src: batch 2^62 x 8", K_ENC_FORWARD, {P(62), 1, 1}, OVF, ENC_F},
    {"encoder training src: 2^62 floats", K_ENC_FORWARD, {P(59), 1, 1}, OVF, ENC_F},
    {"encoder batch x len 2^31", K_ENC_FORWARD, {P(31), 1, 0}, UNS, ENC_F},
    {"encoder training batch x len 2^32", K_ENC_FORWARD, {P(16), P(16), 1}, UNS, ENC_F},
    /* on a (256, 256 heads, 1) layer with dropout: batch·nhead reaches 2^32 */
    {"encoder dropout: batch x nhead 2^32", K_ENC_FORWARD_DROPOUT, {P(24), 1}, UNS, ENC_F},
#undef ENC_C
#undef ENC_F
    /* kv_cache_create(heads_kv, dim_qk, dim_v, page_size, num_pages) */
    {"cache keys: 2^30 pages x 2^30 x 8", K_CACHE_CREATE, {1, 8, 8, P(30), P(30)}, OVF,
     "attn_kv_cache_create"},
    {"cache values: 2^62 floats = 2^64 bytes", K_CACHE_CREATE, {1, 1, 4, P(30), P(30)}, OVF,
     "attn_kv_cache_create"},
    /* sdpa_forward_cached of total_q = a[0] rows on a (1 head, dims 8) cache */
    {"cached q: 2^61 rows x 8", K_CACHED_FORWARD, {P(61)}, OVF, "attn_sdpa_forward_cached"},
    /* rope_apply(batch, heads, seq) with head_dim 8; set_tables(n_positions), 4 pairs */
    {"rope x: 2^62 x 8", K_ROPE_APPLY, {P(62), 1, 1}, OVF, "attn_rope_apply"},
    {"rope x: 2^31 x 2^31 x 2 x 8", K_ROPE_APPLY, {P(31), P(31), 2}, OVF, "attn_rope_apply"},
    {"rope tables: 2^61 x 4", K_ROPE_TABLES, {P(61)}, OVF, "attn_rope_set_tables"},
};

static attn_context *g_ctx;
static attn_mha *g_mha;
static attn_additive *g_add;
/* Encoder layers: (8, 1, 8), and (256, 256 heads, 1) with dropout set, whose
 * counters batch·nhead reach 2^32 at a batch of only 2^24 rows; the act
 * their training forwards fill. */
static attn_encoder_layer *g_enc, *g_enc_heads;
static attn_activations *g_act;
/* A cache of one head of dims 8 with one open sequence, its op, and a rope. */
static attn_kv_cache *g_cache;
static attn_sdpa *g_cached_op;
static attn_rope *g_rope;
static int64_t g_seq;

/* A layer with all-zero parameters (their values are never read). */
static attn_encoder_layer *zero_encoder(int64_t d_model, int64_t nhead, int64_t ff)
{
    attn_encoder_layer *l = NULL;
    int64_t count = 0;
    if (attn_encoder_layer_create(&l, d_model, nhead, ff, ATTN_ACTIVATION_RELU, 0, 1e-5f) !=
            ATTN_OK ||
        attn_encoder_layer_param_count(l, &count) != ATTN_OK)
        return NULL;
    float *params = calloc((size_t)count, sizeof *params);
    attn_status st = params ? attn_encoder_layer_set_params(l, params) : ATTN_ERR_OUT_OF_MEMORY;
    free(params);
    if (st != ATTN_OK) {
        attn_encoder_layer_destroy(l);
        return NULL;
    }
    return l;
}

static int setup(void **state)
{
    (void)state;
    float w[64] = {0};
    if (attn_context_create(&g_ctx) != ATTN_OK || attn_mha_create(&g_mha, 8, 1, 1, 8, 8, 0) ||
        attn_additive_create(&g_add, 8, 8, 8) != ATTN_OK)
        return -1;
    for (int p = 0; p < 4; p++)
        if (attn_mha_set_weights(g_mha, (attn_proj)p, w, NULL) != ATTN_OK)
            return -1;
    g_enc = zero_encoder(8, 1, 8), g_enc_heads = zero_encoder(256, 256, 1);
    if (!g_enc || !g_enc_heads || attn_encoder_layer_set_dropout(g_enc_heads, 0.5f, 1) ||
        attn_activations_create(&g_act) != ATTN_OK)
        return -1;
    if (attn_kv_cache_create(&g_cache, 1, 8, 8, 4, 2) != ATTN_OK ||
        attn_kv_cache_seq_open(g_cache, &g_seq) != ATTN_OK ||
        attn_sdpa_create(&g_cached_op, 1, 1, 1, 1, 1, 8, 8) != ATTN_OK ||
        attn_rope_create(&g_rope, 8, 8, 10000.0f, ATTN_ROPE_HALF) != ATTN_OK)
        return -1;
    return attn_additive_set_weights(g_add, w, w, w) == ATTN_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    attn_rope_destroy(g_rope);
    attn_sdpa_destroy(g_cached_op);
    attn_kv_cache_destroy(g_cache);
    attn_activations_destroy(g_act);
    attn_encoder_layer_destroy(g_enc_heads);
    attn_encoder_layer_destroy(g_enc);
    attn_additive_destroy(g_add);
    attn_mha_destroy(g_mha);
    attn_context_destroy(g_ctx);
    return 0;
}

/* Runs the case; *made is what a create call wrote over the sentinel. */
static attn_status run_case(const ocase *c, void **made, attn_sdpa *op, attn_mask *mask)
{
    const int64_t *a = c->a;
    switch (c->k) {
    case K_SDPA_CREATE:
        return attn_sdpa_create((attn_sdpa **)made, a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
    case K_SDPA_FORWARD:
        return attn_sdpa_forward(g_ctx, op, in_a, in_b, in_c, NULL, out_buf, w_buf, lse_buf);
    case K_MHA_CREATE:
        return attn_mha_create((attn_mha **)made, a[0], a[1], a[2], a[3], a[4], 1);
    case K_MHA_FORWARD:
        return attn_mha_forward(g_ctx, g_mha, a[0], a[1], a[2], in_a, in_b, in_c, NULL, out_buf,
                                a[3] ? w_buf : NULL);
    case K_ADD_CREATE:
        return attn_additive_create((attn_additive **)made, a[0], a[1], a[2]);
    case K_ADD_FORWARD:
        return attn_additive_forward(g_ctx, g_add, a[0], a[1], a[2], a[3], in_a, in_b, in_c, NULL,
                                     out_buf, a[4] ? w_buf : NULL);
    case K_MASK_LENGTHS:
        return attn_mask_set_kv_lengths(mask, len_buf, a[0], a[1], (int)a[2]);
    case K_MASK_BOOL:
        return attn_mask_set_bool(mask, keep_buf, a[0], a[1], a[2], a[3]);
    case K_MASK_BIAS:
        return attn_mask_set_bias(mask, in_a, a[0], a[1], a[2], a[3]);
    case K_NW:
        return attn_nadaraya_watson(g_ctx, a[0], a[1], in_a, in_b, in_c, 1.0f, out_buf,
                                    a[2] ? w_buf : NULL);
    case K_PE:
        return attn_positional_encoding(out_buf, a[0], a[1], 0, 10000.0f);
    case K_ENC_CREATE:
        return attn_encoder_layer_create((attn_encoder_layer **)made, a[0], a[1], a[2],
                                         ATTN_ACTIVATION_GELU, 1, 1e-5f);
    case K_ENC_FORWARD:
        return attn_encoder_layer_forward(g_ctx, g_enc, a[0], a[1], in_a, NULL, out_buf,
                                          a[2] ? g_act : NULL);
    case K_CACHE_CREATE:
        return attn_kv_cache_create((attn_kv_cache **)made, a[0], a[1], a[2], a[3], a[4]);
    case K_CACHED_FORWARD: {
        const int64_t cu[2] = {0, a[0]};
        return attn_sdpa_forward_cached(g_ctx, g_cached_op, g_cache, 1, &g_seq, cu, in_a, out_buf,
                                        lse_buf);
    }
    case K_ROPE_APPLY:
        return attn_rope_apply(g_ctx, g_rope, ATTN_LAYOUT_BHSD, a[0], a[1], a[2], out_buf, NULL,
                               0, 0);
    case K_ROPE_TABLES:
        return attn_rope_set_tables(g_rope, in_a, in_b, a[0]);
    case K_ENC_FORWARD_DROPOUT: /* in place: at these sizes any two buffers would overlap */
        return attn_encoder_layer_forward(g_ctx, g_enc_heads, a[0], a[1], out_buf, NULL,
                                          out_buf, g_act);
    }
    return ATTN_ERR_STATE;
}

static void test_overflow_table(void **state)
{
    (void)state;
    int overflows = 0, unsupported = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const ocase *c = &cases[i];
        attn_sdpa *op = NULL;
        attn_mask *mask = NULL;
        if (c->k == K_SDPA_FORWARD)
            assert_int_equal(attn_sdpa_create(&op, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4],
                                              c->a[5], c->a[6]),
                             ATTN_OK);
        assert_int_equal(attn_mask_create(&mask), ATTN_OK);
        memset(out_buf, PATTERN, sizeof out_buf), memset(w_buf, PATTERN, sizeof w_buf);
        memset(lse_buf, PATTERN, sizeof lse_buf);
        void *made = SENTINEL;

        long long calls0 = atomic_load(&attn_alloc_calls);
        attn_status st = run_case(c, &made, op, mask);
        long long calls = atomic_load(&attn_alloc_calls) - calls0;

        if (st != c->want)
            fail_msg("%s: got %s, want %s (%s)", c->name, attn_status_string(st),
                     attn_status_string(c->want), attn_last_error());
        if (st == ATTN_OK) {
            /* the twin below the limit: a create allocates just its handle */
            print_message("size-overflow: %-40s accepted\n", c->name);
            if (c->k == K_SDPA_CREATE)
                attn_sdpa_destroy(made);
        } else {
            overflows += st == OVF, unsupported += st == UNS;
            if (strncmp(attn_last_error(), c->func, strlen(c->func)) != 0)
                fail_msg("%s: message \"%s\" does not start with %s", c->name, attn_last_error(),
                         c->func);
            if (calls != 0)
                fail_msg("%s: %lld allocation(s) attempted before the overflow was reported",
                         c->name, calls);
            assert_ptr_equal(made, SENTINEL);
            for (size_t x = 0; x < sizeof out_buf; x++)
                if (((unsigned char *)out_buf)[x] != PATTERN ||
                    ((unsigned char *)w_buf)[x] != PATTERN ||
                    ((unsigned char *)lse_buf)[x] != PATTERN)
                    fail_msg("%s: an output was written", c->name);
            print_message("size-overflow: %-40s %s, 0 allocations\n", c->name,
                          st == OVF ? "ATTN_ERR_SIZE_OVERFLOW" : "ATTN_ERR_UNSUPPORTED");
        }
        attn_mask_destroy(mask);
        attn_sdpa_destroy(op);
    }
    print_message("size-overflow: %d overflowing shapes refused before any allocation, and %d "
                  "beyond the BLAS or dropout limits (ATTN_ERR_UNSUPPORTED)\n",
                  overflows, unsupported);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overflow_table),
    };
    return cmocka_run_group_tests_name("size_overflow", tests, setup, teardown);
}
