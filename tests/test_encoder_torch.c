/*
 * test_encoder_torch.c: attn_encoder_layer_forward and
 * attn_encoder_layer_backward against PyTorch autograd (torch 1.13, float64)
 * golden outputs and gradients of torch.nn.TransformerEncoderLayer
 * (batch_first, dropout 0, ReLU or exact GELU, post- or pre-norm), made by
 * tests/data/gen_torch_encoder_vectors.py (its header says how they are
 * computed, checked against a NumPy recomputation and finite differences,
 * and regenerated) as one folder per case: case.json + raw little-endian
 * .bin tensors.
 *
 * Usage: test_encoder_torch <tests/data/encoder>. Every case folder is one
 * CMocka test, run as a user would: attn_encoder_layer_create(d_model,
 * nhead, dim_feedforward, activation, norm_first, layer_norm_eps);
 * attn_encoder_layer_param_count must equal the stored vector's length (and
 * the layout of attn_encoder_layer_get_params, computed here from the
 * shapes, must be the stored blocks'); the causal setting;
 * attn_encoder_layer_set_params with the stored vector, and
 * attn_encoder_layer_get_params must give it back bitwise; the masks of
 * case.json (already in libattn's terms: kv lengths, keep mask, bias) in one
 * attn_mask; then
 *
 *   attn_encoder_layer_forward(src, mask, act NULL) -> out (inference)
 *   attn_encoder_layer_forward(src, mask, act)      -> out (training), bitwise
 *                                                      the inference out
 *   attn_encoder_layer_backward(act, d_out)         -> d_src, d_params
 *   attn_encoder_layer_backward(act, d_out), d_src NULL    -> d_params, and
 *   attn_encoder_layer_backward(act, d_out), d_params NULL -> d_src, each
 *                                                      bitwise the first's
 *
 * The two partial backwards check that leaving an output out changes
 * nothing in the other (the header promises that act is only read, so the
 * backward may be repeated).
 *
 * Tolerances (as test_mha_backward_torch): each out must match torch's
 * float64 out to |a - e| <= 1e-5 · (|e| + max|e| over that output row of
 * d_model). d_src to |a - e| <= 1e-5 · (|e| + max|e| over the whole tensor):
 * per tensor, not per row, because a gradient element is a sum of terms that
 * can cancel. d_params likewise per parameter block (Wq, Wk, Wv, bq, bk, bv,
 * Wo, bo, W1, b1, W2, b2 and the two norms' weight and bias separately),
 * with the block's "floor" from case.json: |a - e| <= 1e-5 · (|e| +
 * max(max|e| over the block, floor)). The floor is 0 except for bk, whose
 * gradient is exactly 0 in exact arithmetic (softmax ignores a shift shared
 * by a whole row of logits) and whose golden is rounding noise; its floor is
 * the magnitude of the terms that cancel (the generator's header defines
 * it). Outputs start as NaN, so an element never written fails.
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
enum { PARAMS, SRC, D_OUT, OUT, D_SRC, D_PARAMS, N_FILES };
#define N_INPUTS OUT /* files before OUT are float32 */
static const char *const file_key[N_FILES] = {"params", "src",   "d_out",
                                              "out",    "d_src", "d_params"};
_Static_assert(N_FILES <= GOLDEN_MAX_FILES, "golden_files holds every file");

/* The parameter blocks of attn_encoder_layer_get_params, in order (all
 * present: the layer always has its biases and both norms). */
enum {
    B_WQ, B_WK, B_WV, B_BQ, B_BK, B_BV, B_WO, B_BO, B_W1, B_B1, B_W2, B_B2,
    B_N1W, B_N1B, B_N2W, B_N2B, N_BLOCKS
};
static const char *const block_name[N_BLOCKS] = {
    "Wq", "Wk", "Wv", "bq", "bk", "bv", "Wo", "bo", "W1", "b1", "W2", "b2",
    "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"};

/* The worst errors of a case: the training and the inference out, d_src,
 * then each block. */
enum { W_OUT, W_OUT_INF, W_DSRC, W_BLOCK0, N_WORST = W_BLOCK0 + N_BLOCKS };

typedef struct {
    golden_case g; /* name, folder, error */
    int64_t d_model, nhead, dim_feedforward, batch, len, param_count;
    int activation, norm_first, causal;
    double layer_norm_eps; /* as torch got it; the layer takes it as a float */
    golden_tensor t[N_FILES];
    golden_masks masks;
    golden_block block[N_BLOCKS];
    double worst[N_WORST]; /* -1: not measured */
    int passed;
} enc_case;

/* Everything a run allocates, so that one function frees it on every path. */
typedef struct {
    golden_files f; /* in[PARAMS .. D_OUT], expect[OUT .. D_PARAMS], the masks */
    float *params_back, *out, *out_inference, *d_src, *d_params, *d_src_again,
        *d_params_again;
    attn_context *ctx; attn_encoder_layer *layer; attn_mask *mask; attn_activations *act;
} run_state;

#define CHECK(c, call) golden_check(&(c)->g, (call), #call)

/* ---------------------------------------------------------------- case.json */

/* The block sizes of attn_encoder_layer_get_params's layout, from the
 * header's comment (d = d_model, ff = dim_feedforward). */
static void layout_sizes(const enc_case *c, int64_t size[N_BLOCKS])
{
    int64_t d = c->d_model, ff = c->dim_feedforward;
    size[B_WQ] = size[B_WK] = size[B_WV] = size[B_WO] = d * d;
    size[B_BQ] = size[B_BK] = size[B_BV] = size[B_BO] = d;
    size[B_W1] = size[B_W2] = ff * d;
    size[B_B1] = ff;
    size[B_B2] = size[B_N1W] = size[B_N1B] = size[B_N2W] = size[B_N2B] = d;
}

static int check_shapes(enc_case *c)
{
    int64_t d = c->d_model, b = c->batch, l = c->len, size[N_BLOCKS];
    golden_case *g = &c->g;
    layout_sizes(c, size);
    /* case.json's param_blocks must be exactly that layout, contiguous, and
     * the parameter files must hold param_count floats. */
    int ok = golden_expect_shape(g, &c->t[SRC], 3, b, l, d, 0) &&
             golden_expect_shape(g, &c->t[D_OUT], 3, b, l, d, 0) &&
             golden_expect_shape(g, &c->t[OUT], 3, b, l, d, 0) &&
             golden_expect_shape(g, &c->t[D_SRC], 3, b, l, d, 0) &&
             golden_check_blocks(g, c->block, block_name, N_BLOCKS, size, c->param_count) &&
             golden_expect_shape(g, &c->t[PARAMS], 1, c->param_count, 0, 0, 0) &&
             golden_expect_shape(g, &c->t[D_PARAMS], 1, c->param_count, 0, 0, 0);
    /* Options the generator never writes would make the create fail with a
     * library status; name the case.json fault instead. */
    if (ok && ((c->activation != ATTN_ACTIVATION_RELU &&
                c->activation != ATTN_ACTIVATION_GELU) ||
               (c->norm_first != 0 && c->norm_first != 1) ||
               !(c->layer_norm_eps > 0 && isfinite(c->layer_norm_eps))))
        ok = golden_error(g, "activation %d, norm_first %d or layer_norm_eps %g out of range",
                          c->activation, c->norm_first, c->layer_norm_eps);
    return ok && golden_expect_mask_shapes(g, &c->masks, b, l);
}

static int parse_case(golden_case *g, json_object *j)
{
    static const char *const ints[] = {"d_model", "nhead", "dim_feedforward", "activation",
                                       "norm_first", "batch", "len", "causal", "param_count"};
    enum { N_INTS = sizeof ints / sizeof *ints };
    enc_case *c = (enc_case *)g;
    int64_t v[N_INTS];
    json_object *files = golden_get(j, "files"), *masks = golden_get(j, "masks");
    json_object *blocks = golden_get(j, "param_blocks"), *eps = golden_get(j, "layer_norm_eps");
    for (int w = 0; w < N_WORST; w++)
        c->worst[w] = -1;
    if (!golden_parse_ints(g, j, ints, N_INTS, v))
        return 0;
    c->d_model = v[0], c->nhead = v[1], c->dim_feedforward = v[2], c->activation = (int)v[3];
    c->norm_first = (int)v[4], c->batch = v[5], c->len = v[6], c->causal = (int)v[7];
    c->param_count = v[8];
    if (files == NULL || !json_object_is_type(masks, json_type_array) ||
        !json_object_is_type(blocks, json_type_array) || !golden_is_number(eps))
        return golden_error(g, "case.json lacks files, masks, param_blocks or the number "
                               "layer_norm_eps");
    c->layer_norm_eps = json_object_get_double(eps);
    if (!golden_parse_files(g, files, file_key, N_FILES, N_INPUTS, c->t))
        return 0;
    /* floor_number 1: the generator writes every floor as a JSON number */
    return golden_parse_masks(g, masks, GOLDEN_N_MASK_KINDS, &c->masks) &&
           golden_parse_blocks(g, blocks, block_name, N_BLOCKS, 1, c->block) && check_shapes(c);
}

/* ---------------------------------------------------------------- running */

static void run_state_free(run_state *r)
{
    golden_files_free(&r->f);
    free(r->params_back), free(r->out), free(r->out_inference);
    free(r->d_src), free(r->d_params), free(r->d_src_again), free(r->d_params_again);
    attn_activations_destroy(r->act);
    attn_mask_destroy(r->mask);
    attn_encoder_layer_destroy(r->layer);
    attn_context_destroy(r->ctx);
}

/* Loads the case, makes the layer with its options and parameters (checking
 * the count and the bitwise round trip), the causal setting and the mask. */
static int configure(enc_case *c, run_state *r)
{
    golden_case *g = &c->g;
    int64_t count = -1;
    if (!golden_load_files(g, c->t, N_FILES, N_INPUTS, NULL, &r->f))
        return 0;
    if ((r->params_back = golden_nan_floats(c->param_count)) == NULL)
        return golden_error(g, "out of memory");
    return CHECK(c, attn_context_create(&r->ctx)) &&
           CHECK(c, attn_encoder_layer_create(&r->layer, c->d_model, c->nhead,
                                              c->dim_feedforward, (attn_activation)c->activation,
                                              c->norm_first, (float)c->layer_norm_eps)) &&
           CHECK(c, attn_encoder_layer_param_count(r->layer, &count)) &&
           (count == c->param_count ||
            golden_error(g, "attn_encoder_layer_param_count gives %lld, the stored vector has "
                            "%lld", (long long)count, (long long)c->param_count)) &&
           CHECK(c, attn_encoder_layer_set_causal(r->layer, (attn_causal)c->causal)) &&
           CHECK(c, attn_encoder_layer_set_params(r->layer, r->f.in[PARAMS])) &&
           CHECK(c, attn_encoder_layer_get_params(r->layer, r->params_back)) &&
           golden_same_bits(g, "attn_encoder_layer_get_params", r->params_back,
                            r->f.in[PARAMS], count) &&
           CHECK(c, attn_mask_create(&r->mask)) &&
           golden_set_masks(g, &c->masks, r->mask, c->batch, c->len, r->f.mask) &&
           CHECK(c, attn_activations_create(&r->act));
}

/* out is compared per output row (d_model elements), d_src as a whole
 * tensor and d_params per block with its floor (see the header). */
static int execute(enc_case *c)
{
    run_state r = {0};
    int ok = 0;
    golden_case *g = &c->g;
    int64_t n = golden_numel(&c->t[OUT]), count = c->param_count;
    if (!configure(c, &r))
        goto done;
    r.out = golden_nan_floats(n), r.out_inference = golden_nan_floats(n);
    r.d_src = golden_nan_floats(n), r.d_src_again = golden_nan_floats(n);
    r.d_params = golden_nan_floats(count), r.d_params_again = golden_nan_floats(count);
    if (r.out == NULL || r.out_inference == NULL || r.d_src == NULL || r.d_src_again == NULL ||
        r.d_params == NULL || r.d_params_again == NULL) {
        golden_error(g, "out of memory");
        goto done;
    }
    const attn_mask *mask = c->masks.n > 0 ? r.mask : NULL;
    const float *src = r.f.in[SRC], *d_out = r.f.in[D_OUT];
    int64_t b = c->batch, l = c->len, d = c->d_model;
    /* Inference first, so that the training forward's act is the one the
     * backwards read with nothing run in between. */
    ok = CHECK(c, attn_encoder_layer_forward(r.ctx, r.layer, b, l, src, mask, r.out_inference,
                                             NULL)) &&
         golden_compare(g, "out (inference)", r.out_inference, r.f.expect[OUT], n, d, 0, 0, RTOL,
                        &c->worst[W_OUT_INF]) &&
         CHECK(c, attn_encoder_layer_forward(r.ctx, r.layer, b, l, src, mask, r.out, r.act)) &&
         golden_compare(g, "out", r.out, r.f.expect[OUT], n, d, 0, 0, RTOL, &c->worst[W_OUT]) &&
         golden_same_bits(g, "the training forward's out (vs the inference forward's)", r.out,
                          r.out_inference, n) &&
         CHECK(c, attn_encoder_layer_backward(r.ctx, r.layer, r.act, d_out, r.d_src,
                                              r.d_params)) &&
         golden_compare(g, "d_src", r.d_src, r.f.expect[D_SRC], n, n, 0, 0, RTOL,
                        &c->worst[W_DSRC]) &&
         golden_compare_blocks(g, r.d_params, r.f.expect[D_PARAMS], c->block, block_name,
                               N_BLOCKS, RTOL, &c->worst[W_BLOCK0]) &&
         CHECK(c, attn_encoder_layer_backward(r.ctx, r.layer, r.act, d_out, NULL,
                                              r.d_params_again)) &&
         golden_same_bits(g, "d_params without d_src (vs with it)", r.d_params_again,
                          r.d_params, count) &&
         CHECK(c, attn_encoder_layer_backward(r.ctx, r.layer, r.act, d_out, r.d_src_again,
                                              NULL)) &&
         golden_same_bits(g, "d_src without d_params (vs with it)", r.d_src_again, r.d_src, n);
done:
    run_state_free(&r);
    return ok;
}

static void test_case(void **state)
{
    enc_case *c = *state;
    char blocks[512] = "";
    if (c->g.error[0] != '\0') /* case.json unusable: fail, never drop */
        fail_msg("%s: %s", c->g.name, c->g.error);
    if (!execute(c)) /* execute has freed everything, as fail_msg longjmps */
        fail_msg("%s: %s", c->g.name, c->g.error);
    for (int b = 0; b < N_BLOCKS; b++) {
        size_t used = strlen(blocks);
        snprintf(blocks + used, sizeof blocks - used, "%s%s %.3g", used ? ", " : "",
                 block_name[b], c->worst[W_BLOCK0 + b]);
    }
    print_message("%s: worst rel error out %.3g (inference %.3g), d_src %.3g; d_params: %s\n",
                  c->g.name, c->worst[W_OUT], c->worst[W_OUT_INF], c->worst[W_DSRC], blocks);
    c->passed = 1;
}

int main(int argc, char **argv)
{
    size_t n = 0;
    int status = golden_check_args(argc, argv, "test_encoder_torch", "<tests/data/encoder>");
    if (status != 0)
        return status;
    enc_case *cases = golden_load_cases(argv[1], NULL, sizeof *cases, parse_case,
                                        "test_encoder_torch", &n);
    struct CMUnitTest *tests = cases != NULL ? calloc(n, sizeof *tests) : NULL;
    if (tests == NULL) {
        if (cases != NULL)
            fprintf(stderr, "test_encoder_torch: out of memory\n");
        free(cases);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        tests[i] = (struct CMUnitTest){
            .name = cases[i].g.name, .test_func = test_case, .initial_state = &cases[i]};
    /* cmocka_run_group_tests_name() takes the sizeof of a static array; this
     * one is built at run time, so call the function the macro expands to. */
    int failed = _cmocka_run_group_tests("encoder_torch", tests, n, NULL, NULL);
    /* The summary: the worst of each measure over the passed cases (out is
     * the worse of the two forwards; d_params is the worst block). */
    static const char *const summary_name[] = {"out", "d_src", "d_params"};
    enum { N_SUMMARY = sizeof summary_name / sizeof *summary_name };
    size_t passed = 0, worst_i[N_SUMMARY] = {0};
    double worst[N_SUMMARY] = {-1, -1, -1};
    for (size_t i = 0; i < n; i++) {
        if (!cases[i].passed)
            continue;
        passed++;
        for (int w = 0; w < N_WORST; w++) {
            int s = w <= W_OUT_INF ? 0 : w == W_DSRC ? 1 : 2;
            if (cases[i].worst[w] > worst[s])
                worst[s] = cases[i].worst[w], worst_i[s] = i;
        }
    }
    print_message("encoder_torch: %zu cases, %zu passed", n, passed);
    for (int s = 0; s < N_SUMMARY; s++)
        if (worst[s] >= 0)
            print_message("; worst %s %.3g (%s)", summary_name[s], worst[s],
                          cases[worst_i[s]].g.name);
    print_message("\n");
    free(cases), free(tests);
    return failed != 0 || passed != n;
}
