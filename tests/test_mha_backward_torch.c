/*
 * test_mha_backward_torch.c: attn_mha_forward_train and attn_mha_backward
 * against PyTorch autograd (torch 1.13, float64) golden gradients of
 * torch.nn.MultiheadAttention, made by
 * tests/data/gen_torch_mha_backward_vectors.py (its header says how they
 * are computed, checked and regenerated) as one folder per case: case.json +
 * raw little-endian .bin tensors.
 *
 * Usage: test_mha_backward_torch <tests/data/mha_backward>. Every case
 * folder is one CMocka test, run as a user would:
 * attn_mha_create(embed_dim, num_heads, num_heads, kdim, vdim, bias);
 * attn_mha_param_count must equal the stored vector's length (and the
 * layout of attn_mha_get_params, computed here from the shapes, must be the
 * stored blocks'); attn_mha_set_params with the stored vector, and
 * attn_mha_get_params must give it back bitwise; the causal setting and the
 * masks of case.json (already in libattn's terms: kv lengths, keep mask,
 * bias) in one attn_mask; then
 *
 *   attn_mha_forward_train(query, key, value, mask) -> out, act
 *   attn_mha_backward(act, d_out) -> d_query, d_key, d_value, d_params
 *   attn_mha_forward(query, key, value, mask)       -> out, bitwise that of
 *                                                      forward_train
 *
 * Self-attention cases ("self_attention": true) pass one input as query, key
 * and value, and one buffer as d_query, d_key and d_value (the same pointer
 * thrice: libattn writes their sum, the gradient of the one input), compared
 * with the one golden.
 *
 * Tolerances (as test_sdpa_backward_torch): out must match torch's float64
 * out to |a - e| <= 1e-5 · (|e| + max|e| over that output row). d_query,
 * d_key and d_value to |a - e| <= 1e-5 · (|e| + max|e| over the whole
 * tensor): per tensor, not per row, because a gradient element is a sum of
 * terms that can cancel (a query row that sees one key has dS = 0, so its
 * d_query through the attention is exactly 0 in float64 and ~1e-7 in
 * float32). d_params likewise per parameter block (Wq, Wk, Wv, bq, bk, bv,
 * Wo, bo separately), with the block's "floor" from case.json:
 * |a - e| <= 1e-5 · (|e| + max(max|e| over the block, floor)). The floor is
 * 0 except for bk, whose gradient is exactly 0 in exact arithmetic (softmax
 * ignores a shift shared by a whole row of logits) and whose golden is
 * rounding noise; its floor is the magnitude of the terms that cancel (the
 * generator's header defines it). Outputs start as NaN, so an element never
 * written fails.
 */
#include <attn.h>

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "golden.h"

#define RTOL 1e-5

/* case.json's "files", in this order: the float32 inputs, then the float64
 * expected results. */
enum { PARAMS, QUERY, KEY, VALUE, D_OUT, OUT, D_QUERY, D_KEY, D_VALUE, D_PARAMS, N_FILES };
#define N_INPUTS OUT /* files before OUT are float32 */
static const char *const file_key[N_FILES] = {"params", "query",   "key",   "value",
                                              "d_out",  "out",     "d_query", "d_key",
                                              "d_value", "d_params"};
_Static_assert(N_FILES <= GOLDEN_MAX_FILES, "golden_files holds every file");

/* The parameter blocks of attn_mha_get_params, in order (bias blocks only
 * with bias = 1). */
enum { B_WQ, B_WK, B_WV, B_BQ, B_BK, B_BV, B_WO, B_BO, N_BLOCKS };
static const char *const block_name[N_BLOCKS] = {"Wq", "Wk", "Wv", "bq", "bk", "bv", "Wo", "bo"};

/* The worst errors of a case: out, d_query, d_key, d_value (self-attention:
 * d_input in the d_query slot, the other two unused), then each block. */
enum { W_OUT, W_DQ, W_DK, W_DV, W_BLOCK0, N_WORST = W_BLOCK0 + N_BLOCKS };

typedef struct {
    golden_case g; /* name, folder, error */
    int64_t embed_dim, num_heads, num_kv_heads, kdim, vdim, batch, len_q, len_kv, param_count;
    int bias, self_attention, causal;
    golden_tensor t[N_FILES];
    golden_masks masks;
    golden_block block[N_BLOCKS];
    double worst[N_WORST]; /* -1: not measured */
    int passed;
} bwd_case;

/* Everything a run allocates, so that one function frees it on every path.
 * Self-attention loads one input and one expected gradient: f.in[KEY],
 * f.in[VALUE], f.expect[D_KEY] and f.expect[D_VALUE] stay NULL. */
typedef struct {
    golden_files f; /* in[PARAMS .. D_OUT], expect[OUT .. D_PARAMS], the masks */
    float *params_back, *out, *out_inference, *d_query, *d_key, *d_value, *d_params;
    attn_context *ctx; attn_mha *mha; attn_mask *mask; attn_activations *act;
} run_state;

#define CHECK(c, call) golden_check(&(c)->g, (call), #call)

/* ---------------------------------------------------------------- case.json */

/* The block sizes of attn_mha_get_params's layout (0: absent), from the
 * header's comment, with Hkv = num_heads, so Hkv·head_dim = embed_dim. */
static void layout_sizes(const bwd_case *c, int64_t size[N_BLOCKS])
{
    int64_t e = c->embed_dim;
    size[B_WQ] = e * e, size[B_WK] = e * c->kdim, size[B_WV] = e * c->vdim;
    size[B_BQ] = size[B_BK] = size[B_BV] = c->bias ? e : 0;
    size[B_WO] = e * e;
    size[B_BO] = c->bias ? e : 0;
}

static int check_shapes(bwd_case *c)
{
    int64_t e = c->embed_dim, b = c->batch, q = c->len_q, kv = c->len_kv, size[N_BLOCKS];
    golden_case *g = &c->g;
    layout_sizes(c, size);
    /* case.json's param_blocks must be exactly that layout, contiguous, and
     * the parameter files must hold param_count floats. */
    int ok = golden_expect_shape(g, &c->t[QUERY], 3, b, q, e, 0) &&
             golden_expect_shape(g, &c->t[KEY], 3, b, kv, c->kdim, 0) &&
             golden_expect_shape(g, &c->t[VALUE], 3, b, kv, c->vdim, 0) &&
             golden_expect_shape(g, &c->t[D_OUT], 3, b, q, e, 0) &&
             golden_expect_shape(g, &c->t[OUT], 3, b, q, e, 0) &&
             golden_expect_shape(g, &c->t[D_QUERY], 3, b, q, e, 0) &&
             golden_expect_shape(g, &c->t[D_KEY], 3, b, kv, c->kdim, 0) &&
             golden_expect_shape(g, &c->t[D_VALUE], 3, b, kv, c->vdim, 0) &&
             golden_check_blocks(g, c->block, block_name, N_BLOCKS, size, c->param_count) &&
             golden_expect_shape(g, &c->t[PARAMS], 1, c->param_count, 0, 0, 0) &&
             golden_expect_shape(g, &c->t[D_PARAMS], 1, c->param_count, 0, 0, 0);
    if (ok && c->num_kv_heads != c->num_heads)
        ok = golden_error(g, "num_kv_heads %lld differs from num_heads",
                          (long long)c->num_kv_heads);
    ok = ok && golden_expect_mask_shapes(g, &c->masks, b, q);
    if (ok && c->self_attention) /* one input and one gradient file for all three */
        ok = (c->kdim == e && c->vdim == e && kv == q &&
              strcmp(c->t[KEY].file, c->t[QUERY].file) == 0 &&
              strcmp(c->t[VALUE].file, c->t[QUERY].file) == 0 &&
              strcmp(c->t[D_KEY].file, c->t[D_QUERY].file) == 0 &&
              strcmp(c->t[D_VALUE].file, c->t[D_QUERY].file) == 0) ||
             golden_error(g, "self-attention with kdim, vdim or len_kv apart, or with separate "
                             "input or gradient files");
    return ok;
}

static int parse_case(golden_case *g, json_object *j)
{
    static const char *const ints[] = {"embed_dim", "num_heads", "num_kv_heads", "kdim",
                                       "vdim",      "bias",      "batch",        "len_q",
                                       "len_kv",    "causal",    "param_count"};
    enum { N_INTS = sizeof ints / sizeof *ints };
    bwd_case *c = (bwd_case *)g;
    int64_t v[N_INTS];
    json_object *files = golden_get(j, "files"), *masks = golden_get(j, "masks");
    json_object *blocks = golden_get(j, "param_blocks"), *self = golden_get(j, "self_attention");
    for (int w = 0; w < N_WORST; w++)
        c->worst[w] = -1;
    if (!golden_parse_ints(g, j, ints, N_INTS, v))
        return 0;
    c->embed_dim = v[0], c->num_heads = v[1], c->num_kv_heads = v[2], c->kdim = v[3];
    c->vdim = v[4], c->bias = (int)v[5], c->batch = v[6], c->len_q = v[7], c->len_kv = v[8];
    c->causal = (int)v[9], c->param_count = v[10];
    if (files == NULL || !json_object_is_type(masks, json_type_array) ||
        !json_object_is_type(blocks, json_type_array) ||
        !json_object_is_type(self, json_type_boolean))
        return golden_error(g, "case.json lacks files, masks, param_blocks or the boolean "
                               "self_attention");
    c->self_attention = json_object_get_boolean(self);
    if (!golden_parse_files(g, files, file_key, N_FILES, N_INPUTS, c->t))
        return 0;
    /* floor_number 0: a "floor" only has to be there (json-c reads it) */
    return golden_parse_masks(g, masks, GOLDEN_N_MASK_KINDS, &c->masks) &&
           golden_parse_blocks(g, blocks, block_name, N_BLOCKS, 0, c->block) && check_shapes(c);
}

/* ---------------------------------------------------------------- running */

static void run_state_free(run_state *r)
{
    golden_files_free(&r->f);
    free(r->params_back), free(r->out), free(r->out_inference);
    free(r->d_query), free(r->d_key), free(r->d_value), free(r->d_params);
    attn_activations_destroy(r->act);
    attn_mask_destroy(r->mask);
    attn_mha_destroy(r->mha);
    attn_context_destroy(r->ctx);
}

/* Self-attention skips the aliases of the query and of d_query. */
static int is_alias(const golden_case *g, int i)
{
    return ((const bwd_case *)g)->self_attention &&
           (i == KEY || i == VALUE || i == D_KEY || i == D_VALUE);
}

/* Loads the case, makes the layer with its parameters (checking the count
 * and the bitwise round trip), the causal setting and the mask. */
static int configure(bwd_case *c, run_state *r)
{
    golden_case *g = &c->g;
    int64_t count = -1;
    if (!golden_load_files(g, c->t, N_FILES, N_INPUTS, is_alias, &r->f))
        return 0;
    if ((r->params_back = golden_nan_floats(c->param_count)) == NULL)
        return golden_error(g, "out of memory");
    return CHECK(c, attn_context_create(&r->ctx)) &&
           CHECK(c, attn_mha_create(&r->mha, c->embed_dim, c->num_heads, c->num_heads, c->kdim,
                                    c->vdim, c->bias)) &&
           CHECK(c, attn_mha_param_count(r->mha, &count)) &&
           (count == c->param_count ||
            golden_error(g, "attn_mha_param_count gives %lld, the stored vector has %lld",
                         (long long)count, (long long)c->param_count)) &&
           CHECK(c, attn_mha_set_params(r->mha, r->f.in[PARAMS])) &&
           CHECK(c, attn_mha_get_params(r->mha, r->params_back)) &&
           golden_same_bits(g, "attn_mha_get_params", r->params_back, r->f.in[PARAMS], count) &&
           CHECK(c, attn_mha_set_causal(r->mha, (attn_causal)c->causal)) &&
           CHECK(c, attn_mask_create(&r->mask)) &&
           golden_set_masks(g, &c->masks, r->mask, c->batch, c->len_q, r->f.mask) &&
           CHECK(c, attn_activations_create(&r->act));
}

/* out is compared per output row (embed_dim elements), the input gradients
 * as whole tensors and d_params per block with its floor (see the header). */
static int execute(bwd_case *c)
{
    run_state r = {0};
    int ok = 0;
    golden_case *g = &c->g;
    int64_t n_out = golden_numel(&c->t[OUT]), n_dq = golden_numel(&c->t[D_QUERY]),
            n_dk = golden_numel(&c->t[D_KEY]), n_dv = golden_numel(&c->t[D_VALUE]);
    if (!configure(c, &r))
        goto done;
    r.out = golden_nan_floats(n_out), r.out_inference = golden_nan_floats(n_out);
    r.d_query = golden_nan_floats(n_dq), r.d_params = golden_nan_floats(c->param_count);
    if (!c->self_attention)
        r.d_key = golden_nan_floats(n_dk), r.d_value = golden_nan_floats(n_dv);
    if (r.out == NULL || r.out_inference == NULL || r.d_query == NULL || r.d_params == NULL ||
        (!c->self_attention && (r.d_key == NULL || r.d_value == NULL))) {
        golden_error(g, "out of memory");
        goto done;
    }
    const float *q = r.f.in[QUERY], *k = r.f.in[KEY], *v = r.f.in[VALUE];
    float *dq = r.d_query, *dk = r.d_key, *dv = r.d_value;
    if (c->self_attention) /* the same pointer thrice, inputs and gradients */
        k = v = q, dk = dv = dq;
    const attn_mask *mask = c->masks.n > 0 ? r.mask : NULL;
    int64_t b = c->batch, lq = c->len_q, lkv = c->len_kv;
    ok = CHECK(c, attn_mha_forward_train(r.ctx, r.mha, b, lq, lkv, q, k, v, mask, r.out, NULL,
                                         r.act)) &&
         golden_compare(g, "out", r.out, r.f.expect[OUT], n_out, c->embed_dim, 0, 0, RTOL,
                        &c->worst[W_OUT]) &&
         CHECK(c, attn_mha_backward(r.ctx, r.mha, r.act, r.f.in[D_OUT], dq, dk, dv, r.d_params)) &&
         golden_compare(g, c->self_attention ? "d_input" : "d_query", dq, r.f.expect[D_QUERY], n_dq,
                        n_dq, 0, 0, RTOL, &c->worst[W_DQ]) &&
         (c->self_attention ||
          (golden_compare(g, "d_key", dk, r.f.expect[D_KEY], n_dk, n_dk, 0, 0, RTOL,
                          &c->worst[W_DK]) &&
           golden_compare(g, "d_value", dv, r.f.expect[D_VALUE], n_dv, n_dv, 0, 0, RTOL,
                          &c->worst[W_DV]))) &&
         golden_compare_blocks(g, r.d_params, r.f.expect[D_PARAMS], c->block, block_name, N_BLOCKS,
                               RTOL, &c->worst[W_BLOCK0]) &&
         CHECK(c, attn_mha_forward(r.ctx, r.mha, b, lq, lkv, q, k, v, mask, r.out_inference,
                                   NULL)) &&
         golden_same_bits(g, "attn_mha_forward's out (vs attn_mha_forward_train's)",
                          r.out_inference, r.out, n_out);
done:
    run_state_free(&r);
    return ok;
}

static void test_case(void **state)
{
    bwd_case *c = *state;
    char blocks[256] = "";
    if (c->g.error[0] != '\0') /* case.json unusable: fail, never drop */
        fail_msg("%s: %s", c->g.name, c->g.error);
    if (!execute(c)) /* execute has freed everything, as fail_msg longjmps */
        fail_msg("%s: %s", c->g.name, c->g.error);
    for (int b = 0; b < N_BLOCKS; b++)
        if (c->block[b].present) {
            size_t used = strlen(blocks);
            snprintf(blocks + used, sizeof blocks - used, "%s%s %.3g", used ? ", " : "",
                     block_name[b], c->worst[W_BLOCK0 + b]);
        }
    if (c->self_attention)
        print_message("%s: worst rel error out %.3g, d_input %.3g; d_params: %s\n", c->g.name,
                      c->worst[W_OUT], c->worst[W_DQ], blocks);
    else
        print_message("%s: worst rel error out %.3g, d_query %.3g, d_key %.3g, d_value %.3g; "
                      "d_params: %s\n",
                      c->g.name, c->worst[W_OUT], c->worst[W_DQ], c->worst[W_DK], c->worst[W_DV],
                      blocks);
    c->passed = 1;
}

int main(int argc, char **argv)
{
    size_t n = 0;
    int status = golden_check_args(argc, argv, "test_mha_backward_torch",
                                   "<tests/data/mha_backward>");
    if (status != 0)
        return status;
    bwd_case *cases = golden_load_cases(argv[1], NULL, sizeof *cases, parse_case,
                                        "test_mha_backward_torch", &n);
    struct CMUnitTest *tests = cases != NULL ? calloc(n, sizeof *tests) : NULL;
    if (tests == NULL) {
        if (cases != NULL)
            fprintf(stderr, "test_mha_backward_torch: out of memory\n");
        free(cases);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        tests[i] = (struct CMUnitTest){
            .name = cases[i].g.name, .test_func = test_case, .initial_state = &cases[i]};
    /* cmocka_run_group_tests_name() takes the sizeof of a static array; this
     * one is built at run time, so call the function the macro expands to. */
    int failed = _cmocka_run_group_tests("mha_backward_torch", tests, n, NULL, NULL);
    /* The summary: the worst of each measure over the passed cases (d_query
     * holds self-attention's d_input; d_params is the worst block). */
    static const char *const summary_name[] = {"out", "d_query", "d_key", "d_value",
                                               "d_params"};
    enum { N_SUMMARY = sizeof summary_name / sizeof *summary_name };
    size_t passed = 0, worst_i[N_SUMMARY] = {0};
    double worst[N_SUMMARY] = {-1, -1, -1, -1, -1};
    for (size_t i = 0; i < n; i++) {
        if (!cases[i].passed)
            continue;
        passed++;
        for (int w = 0; w < N_WORST; w++) {
            int s = w < W_BLOCK0 ? w : N_SUMMARY - 1;
            if (cases[i].worst[w] > worst[s])
                worst[s] = cases[i].worst[w], worst_i[s] = i;
        }
    }
    print_message("mha_backward_torch: %zu cases, %zu passed", n, passed);
    for (int s = 0; s < N_SUMMARY; s++)
        if (worst[s] >= 0)
            print_message("; worst %s %.3g (%s)", summary_name[s], worst[s],
                          cases[worst_i[s]].g.name);
    print_message("\n");
    free(cases), free(tests);
    return failed != 0 || passed != n;
}
