/*
 * test_layer_backward_torch.c: the gradients of the additive (Bahdanau)
 * layer and of Nadaraya–Watson kernel regression against PyTorch autograd
 * (torch 1.13, float64) golden gradients of D2L's AdditiveAttention
 * (§10.3.2) and NWKernelRegression (§10.2.4), made by
 * tests/data/gen_torch_layer_backward_vectors.py (its header says how they
 * are computed, checked against the analytic formulas and against finite
 * differences, and regenerated) as one folder per case: case.json + raw
 * little-endian .bin tensors.
 *
 * Usage: test_layer_backward_torch <tests/data/layer_backward>. Every case
 * folder is one CMocka test, run as a user would.
 *
 * "kind": "additive": attn_additive_create(query_dim, key_dim, hidden);
 * attn_additive_param_count must equal the stored vector's length (and the
 * layout W_q [hidden, query_dim], W_k [hidden, key_dim], w_v [hidden],
 * computed here from the sizes, must be the stored blocks');
 * attn_additive_set_params with the stored vector, and
 * attn_additive_get_params must give it back bitwise; the masks of case.json
 * (already in libattn's terms: kv lengths per batch row or per query, a
 * keep mask [B, 1, Lq, Lkv]) in one attn_mask; then
 *
 *   attn_additive_forward_train(queries, keys, values, mask) -> out, act
 *   attn_additive_backward(act, d_out) -> d_queries, d_keys, d_values,
 *                                         d_params
 *   attn_additive_forward(queries, keys, values, mask)      -> out, bitwise
 *                                         that of forward_train
 *
 * A case with "keys_are_values" passes one tensor as keys and values and one
 * buffer as d_keys and d_values (the same pointer twice: libattn writes
 * their sum), compared with torch's gradient of the one tensor.
 *
 * "kind": "nadaraya_watson": attn_nadaraya_watson(queries, keys, values, w)
 * -> out, then attn_nadaraya_watson_backward(..., d_out) -> d_queries,
 * d_keys, d_values, d_w.
 *
 * Tolerances (as test_mha_backward_torch): the additive layer's out must
 * match torch's float64 out to |a - e| <= 1e-5 · (|e| + max|e| over that
 * output row). Nadaraya–Watson's out rows are single numbers (dim_v = 1),
 * where a per-row bound would be purely relative, and a row is a weighted
 * mean of values of both signs that can come out near 0, so its out is
 * normalised over the whole tensor, as the gradients are. Every gradient
 * tensor (d_queries, d_keys, d_values, d_w) and every parameter block (W_q,
 * W_k, w_v separately) must match to
 * |a - e| <= 1e-5 · (|e| + max(max|e| over the tensor or block, floor)):
 * per tensor, not per row or element, because a gradient element is a sum
 * of terms that can cancel (a query row that sees one key has dS = 0).
 * The floor (case.json, per tensor and per block) is 0 except where a whole
 * block cancels in exact arithmetic: in D2L's own example every key is the
 * same vector (keys = torch.ones), so each row's weights are equal and
 * tanh(W_q q_i + W_k k_j) does not depend on j; Σ_j dS_ij = 0 then makes
 * d_queries, d_W_q, d_W_k and d_w_v exactly 0 in float64 (torch's goldens
 * are 0 or ~1e-17), while float32 leaves rounding of the size of the terms
 * that cancel. Normalising by the block's own maximum would demand that
 * rounding be below 1e-5 of nothing, so there the floor is the largest
 * magnitude of those terms (the gradient's formula with every factor made
 * absolute; the generator's header defines it), and the check says: the
 * float32 result is 0 to within 1e-5 of the terms it is made of. Outputs
 * start as NaN, so an element never written fails.
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

enum { KIND_ADDITIVE, KIND_NW, N_KINDS };
static const char *const kind_name[N_KINDS] = {"additive", "nadaraya_watson"};

/* case.json's "files", in this order: the float32 inputs, then the float64
 * expected results. The additive layer has no D_W, Nadaraya–Watson no
 * PARAMS or D_PARAMS. */
enum {
    PARAMS, QUERIES, KEYS, VALUES, D_OUT, OUT, D_QUERIES, D_KEYS, D_VALUES, D_PARAMS, D_W,
    N_FILES
};
#define N_INPUTS OUT /* files before OUT are float32 */
static const char *const file_key[N_FILES] = {"params",    "queries", "keys",     "values",
                                              "d_out",     "out",     "d_queries", "d_keys",
                                              "d_values",  "d_params", "d_w"};
_Static_assert(N_FILES <= GOLDEN_MAX_FILES, "golden_files holds every file");
static int has_file(int kind, int i)
{
    return kind == KIND_ADDITIVE ? i != D_W : i != PARAMS && i != D_PARAMS;
}
/* The gradient tensors that carry a floor in case.json (d_params: per block). */
static int has_floor(int i)
{
    return i == D_QUERIES || i == D_KEYS || i == D_VALUES || i == D_W;
}

/* The mask kinds the additive layer takes: kv_lengths and bool (no bias). */
#define N_MASK_KINDS (GOLDEN_MASK_BOOL + 1)

/* The parameter blocks of attn_additive_get_params, in order. */
enum { B_WQ, B_WK, B_WV, N_BLOCKS };
static const char *const block_name[N_BLOCKS] = {"W_q", "W_k", "w_v"};

/* The worst errors of a case (-1: not measured). */
enum { W_OUT, W_DQ, W_DK, W_DV, W_DW, W_BLOCK0, N_WORST = W_BLOCK0 + N_BLOCKS };
/* The file each measure before the blocks compares with (OUT has floor 0). */
static const int worst_file[W_BLOCK0] = {OUT, D_QUERIES, D_KEYS, D_VALUES, D_W};
static const char *const worst_name[N_WORST] = {"out",      "d_queries", "d_keys", "d_values",
                                                "d_w",      "W_q",       "W_k",    "w_v"};

typedef struct {
    golden_case g; /* name, folder, error */
    int kind;
    /* additive */
    int64_t query_dim, key_dim, hidden, batch, len_q, len_kv, dim_v, param_count;
    int keys_are_values;
    golden_masks masks;
    golden_block block[N_BLOCKS];
    /* Nadaraya–Watson */
    int64_t n_queries, n_keys;
    float w;
    golden_tensor t[N_FILES]; /* the gradients' .floor from case.json (has_floor) */
    double worst[N_WORST];
    int passed;
} bwd_case;

/* Everything a run allocates, so that one function frees it on every path.
 * With keys_are_values f.in[VALUES] and f.expect[D_VALUES] stay NULL. */
typedef struct {
    golden_files f; /* in[PARAMS .. D_OUT], expect[OUT .. D_W], the masks */
    float *params_back, *out, *out_inference, *d_queries, *d_keys, *d_values, *d_params;
    float d_w;
    attn_context *ctx;
    attn_additive *op;
    attn_mask *mask;
    attn_activations *act;
} run_state;

#define CHECK(c, call) golden_check(&(c)->g, (call), #call)

/* ---------------------------------------------------------------- case.json */

static int check_additive_shapes(bwd_case *c)
{
    int64_t b = c->batch, q = c->len_q, kv = c->len_kv, dv = c->dim_v;
    golden_case *g = &c->g;
    /* case.json's param_blocks must be attn_additive_get_params's layout
     * (from attn.h: W_q [hidden, query_dim], W_k [hidden, key_dim], w_v
     * [hidden]), contiguous, and the parameter files must hold param_count
     * floats. */
    const int64_t size[N_BLOCKS] = {c->hidden * c->query_dim, c->hidden * c->key_dim,
                                    c->hidden};
    int ok = golden_expect_shape(g, &c->t[QUERIES], 3, b, q, c->query_dim, 0) &&
             golden_expect_shape(g, &c->t[KEYS], 3, b, kv, c->key_dim, 0) &&
             golden_expect_shape(g, &c->t[VALUES], 3, b, kv, dv, 0) &&
             golden_expect_shape(g, &c->t[D_OUT], 3, b, q, dv, 0) &&
             golden_expect_shape(g, &c->t[OUT], 3, b, q, dv, 0) &&
             golden_expect_shape(g, &c->t[D_QUERIES], 3, b, q, c->query_dim, 0) &&
             golden_expect_shape(g, &c->t[D_KEYS], 3, b, kv, c->key_dim, 0) &&
             golden_expect_shape(g, &c->t[D_VALUES], 3, b, kv, dv, 0) &&
             golden_check_blocks(g, c->block, block_name, N_BLOCKS, size, c->param_count) &&
             golden_expect_shape(g, &c->t[PARAMS], 1, c->param_count, 0, 0, 0) &&
             golden_expect_shape(g, &c->t[D_PARAMS], 1, c->param_count, 0, 0, 0) &&
             golden_expect_lengths_shape(g, &c->masks, b, q);
    if (ok && c->masks.t[GOLDEN_MASK_BOOL].present) /* the additive layer's masks have 1 head */
        ok = golden_expect_shape(g, &c->masks.t[GOLDEN_MASK_BOOL], 4, b, 1, q, kv);
    if (ok && c->keys_are_values) /* one input and one gradient file for both */
        ok = (c->key_dim == dv && strcmp(c->t[VALUES].file, c->t[KEYS].file) == 0 &&
              strcmp(c->t[D_VALUES].file, c->t[D_KEYS].file) == 0) ||
             golden_error(g, "keys_are_values with key_dim != dim_v, or with separate input or "
                             "gradient files");
    return ok;
}

static int check_nw_shapes(bwd_case *c)
{
    int64_t nq = c->n_queries, nk = c->n_keys;
    golden_case *g = &c->g;
    return golden_expect_shape(g, &c->t[QUERIES], 1, nq, 0, 0, 0) &&
           golden_expect_shape(g, &c->t[KEYS], 1, nk, 0, 0, 0) &&
           golden_expect_shape(g, &c->t[VALUES], 1, nk, 0, 0, 0) &&
           golden_expect_shape(g, &c->t[D_OUT], 1, nq, 0, 0, 0) &&
           golden_expect_shape(g, &c->t[OUT], 1, nq, 0, 0, 0) &&
           golden_expect_shape(g, &c->t[D_QUERIES], 1, nq, 0, 0, 0) &&
           golden_expect_shape(g, &c->t[D_KEYS], 1, nk, 0, 0, 0) &&
           golden_expect_shape(g, &c->t[D_VALUES], 1, nk, 0, 0, 0) &&
           golden_expect_shape(g, &c->t[D_W], 1, 1, 0, 0, 0);
}

static int parse_additive(bwd_case *c, json_object *j)
{
    static const char *const ints[] = {"query_dim", "key_dim", "hidden", "batch",
                                       "len_q",     "len_kv",  "dim_v",  "param_count"};
    golden_case *g = &c->g;
    int64_t v[8];
    json_object *masks = golden_get(j, "masks"), *blocks = golden_get(j, "param_blocks");
    json_object *kv_same = golden_get(j, "keys_are_values");
    if (!golden_parse_ints(g, j, ints, 8, v))
        return 0;
    c->query_dim = v[0], c->key_dim = v[1], c->hidden = v[2], c->batch = v[3];
    c->len_q = v[4], c->len_kv = v[5], c->dim_v = v[6], c->param_count = v[7];
    if (!json_object_is_type(masks, json_type_array) ||
        !json_object_is_type(blocks, json_type_array) ||
        !json_object_is_type(kv_same, json_type_boolean))
        return golden_error(g, "case.json lacks masks, param_blocks or the boolean "
                               "keys_are_values");
    c->keys_are_values = json_object_get_boolean(kv_same);
    /* floor_number 1: each block's "floor" must be a JSON number */
    return golden_parse_masks(g, masks, N_MASK_KINDS, &c->masks) &&
           golden_parse_blocks(g, blocks, block_name, N_BLOCKS, 1, c->block) &&
           check_additive_shapes(c);
}

static int parse_nw(bwd_case *c, json_object *j)
{
    static const char *const ints[] = {"n_queries", "n_keys"};
    int64_t v[2];
    json_object *w = golden_get(j, "w");
    if (!golden_parse_ints(&c->g, j, ints, 2, v))
        return 0;
    c->n_queries = v[0], c->n_keys = v[1];
    if (!golden_is_number(w))
        return golden_error(&c->g, "case.json lacks the number w");
    double wd = json_object_get_double(w);
    c->w = (float)wd;
    if ((double)c->w != wd) /* the generator gives torch a float32 value */
        return golden_error(&c->g, "w = %.17g is not a float32 value", wd);
    return check_nw_shapes(c);
}

static int parse_case(golden_case *g, json_object *j)
{
    bwd_case *c = (bwd_case *)g;
    json_object *files = golden_get(j, "files");
    const char *kind = json_object_get_string(golden_get(j, "kind"));
    for (int w = 0; w < N_WORST; w++)
        c->worst[w] = -1;
    c->kind = 0;
    while (c->kind < N_KINDS && (kind == NULL || strcmp(kind, kind_name[c->kind]) != 0))
        c->kind++;
    if (c->kind == N_KINDS)
        return golden_error(g, "case.json's kind %s is neither additive nor nadaraya_watson",
                            kind ? kind : "(none)");
    if (files == NULL)
        return golden_error(g, "case.json lacks files");
    for (int i = 0; i < N_FILES; i++) {
        json_object *f = golden_get(files, file_key[i]);
        if (!has_file(c->kind, i))
            continue;
        if (f == NULL)
            return golden_error(g, "files lacks %s", file_key[i]);
        if (!golden_parse_tensor(g, f, i < N_INPUTS ? "float32" : "float64", has_floor(i),
                                 &c->t[i]))
            return 0;
    }
    return c->kind == KIND_ADDITIVE ? parse_additive(c, j) : parse_nw(c, j);
}

/* ---------------------------------------------------------------- running */

/* A whole gradient tensor, normalised over the tensor with its floor. */
static int compare_grad(bwd_case *c, int file, const char *what, const float *a,
                        const double *e, double *worst)
{
    int64_t n = golden_numel(&c->t[file]);
    return golden_compare(&c->g, what, a, e, n, n, c->t[file].floor, 0, RTOL, worst);
}

static void run_state_free(run_state *r)
{
    golden_files_free(&r->f);
    free(r->params_back), free(r->out), free(r->out_inference);
    free(r->d_queries), free(r->d_keys), free(r->d_values), free(r->d_params);
    attn_activations_destroy(r->act);
    attn_mask_destroy(r->mask);
    attn_additive_destroy(r->op);
    attn_context_destroy(r->ctx);
}

/* keys_are_values skips the alias of the keys and of d_keys (the files of
 * the other kind are not present). */
static int is_alias(const golden_case *g, int i)
{
    return ((const bwd_case *)g)->keys_are_values && (i == VALUES || i == D_VALUES);
}

/* Loads the case's inputs and expected results, allocates the NaN-filled
 * outputs and makes the context. */
static int load_all(bwd_case *c, run_state *r)
{
    golden_case *g = &c->g;
    if (!golden_load_files(g, c->t, N_FILES, N_INPUTS, is_alias, &r->f))
        return 0;
    int64_t n_out = golden_numel(&c->t[OUT]);
    r->out = golden_nan_floats(n_out), r->out_inference = golden_nan_floats(n_out);
    r->d_queries = golden_nan_floats(golden_numel(&c->t[D_QUERIES]));
    r->d_keys = golden_nan_floats(golden_numel(&c->t[D_KEYS]));
    if (!c->keys_are_values)
        r->d_values = golden_nan_floats(golden_numel(&c->t[D_VALUES]));
    if (c->kind == KIND_ADDITIVE)
        r->params_back = golden_nan_floats(c->param_count),
        r->d_params = golden_nan_floats(c->param_count);
    r->d_w = NAN;
    if (r->out == NULL || r->out_inference == NULL || r->d_queries == NULL ||
        r->d_keys == NULL || (!c->keys_are_values && r->d_values == NULL) ||
        (c->kind == KIND_ADDITIVE && (r->params_back == NULL || r->d_params == NULL)))
        return golden_error(g, "out of memory");
    return CHECK(c, attn_context_create(&r->ctx));
}

/* The additive layer with its parameters (checking the count and the
 * bitwise round trip), and the mask. */
static int configure_additive(bwd_case *c, run_state *r)
{
    golden_case *g = &c->g;
    int64_t count = -1;
    return CHECK(c, attn_additive_create(&r->op, c->query_dim, c->key_dim, c->hidden)) &&
           CHECK(c, attn_additive_param_count(r->op, &count)) &&
           (count == c->param_count ||
            golden_error(g, "attn_additive_param_count gives %lld, the stored vector has %lld",
                         (long long)count, (long long)c->param_count)) &&
           CHECK(c, attn_additive_set_params(r->op, r->f.in[PARAMS])) &&
           CHECK(c, attn_additive_get_params(r->op, r->params_back)) &&
           golden_same_bits(g, "attn_additive_get_params", r->params_back, r->f.in[PARAMS], count) &&
           CHECK(c, attn_mask_create(&r->mask)) &&
           golden_set_masks(g, &c->masks, r->mask, c->batch, c->len_q, r->f.mask) &&
           CHECK(c, attn_activations_create(&r->act));
}

static int run_additive(bwd_case *c, run_state *r)
{
    golden_case *g = &c->g;
    const float *q = r->f.in[QUERIES], *k = r->f.in[KEYS], *v = r->f.in[VALUES];
    float *dk = r->d_keys, *dv = r->d_values;
    if (c->keys_are_values) /* the same pointer twice, input and gradient */
        v = k, dv = dk;
    if (!configure_additive(c, r))
        return 0;
    const attn_mask *mask = c->masks.n > 0 ? r->mask : NULL;
    int64_t b = c->batch, lq = c->len_q, lkv = c->len_kv, d = c->dim_v;
    return CHECK(c, attn_additive_forward_train(r->ctx, r->op, b, lq, lkv, d, q, k, v, mask,
                                                r->out, NULL, r->act)) &&
           golden_compare(g, "out", r->out, r->f.expect[OUT], golden_numel(&c->t[OUT]), d, 0, 0,
                          RTOL, &c->worst[W_OUT]) &&
           CHECK(c, attn_additive_backward(r->ctx, r->op, r->act, r->f.in[D_OUT], r->d_queries,
                                           dk, dv, r->d_params)) &&
           compare_grad(c, D_QUERIES, "d_queries", r->d_queries, r->f.expect[D_QUERIES],
                        &c->worst[W_DQ]) &&
           compare_grad(c, D_KEYS, c->keys_are_values ? "d_keys + d_values" : "d_keys", dk,
                        r->f.expect[D_KEYS], &c->worst[W_DK]) &&
           (c->keys_are_values || compare_grad(c, D_VALUES, "d_values", dv,
                                               r->f.expect[D_VALUES], &c->worst[W_DV])) &&
           golden_compare_blocks(g, r->d_params, r->f.expect[D_PARAMS], c->block, block_name,
                                 N_BLOCKS, RTOL, &c->worst[W_BLOCK0]) &&
           CHECK(c, attn_additive_forward(r->ctx, r->op, b, lq, lkv, d, q, k, v, mask,
                                          r->out_inference, NULL)) &&
           golden_same_bits(g, "attn_additive_forward's out (vs attn_additive_forward_train's)",
                            r->out_inference, r->out, golden_numel(&c->t[OUT]));
}

static int run_nw(bwd_case *c, run_state *r)
{
    const float *x = r->f.in[QUERIES], *k = r->f.in[KEYS], *v = r->f.in[VALUES];
    int64_t nq = c->n_queries, nk = c->n_keys;
    /* out normalised over the whole tensor: see the header. */
    return CHECK(c, attn_nadaraya_watson(r->ctx, nq, nk, x, k, v, c->w, r->out, NULL)) &&
           golden_compare(&c->g, "out", r->out, r->f.expect[OUT], nq, nq, 0, 0, RTOL,
                          &c->worst[W_OUT]) &&
           CHECK(c, attn_nadaraya_watson_backward(r->ctx, nq, nk, x, k, v, c->w, r->f.in[D_OUT],
                                                  r->d_queries, r->d_keys, r->d_values,
                                                  &r->d_w)) &&
           compare_grad(c, D_QUERIES, "d_queries", r->d_queries, r->f.expect[D_QUERIES],
                        &c->worst[W_DQ]) &&
           compare_grad(c, D_KEYS, "d_keys", r->d_keys, r->f.expect[D_KEYS], &c->worst[W_DK]) &&
           compare_grad(c, D_VALUES, "d_values", r->d_values, r->f.expect[D_VALUES],
                        &c->worst[W_DV]) &&
           compare_grad(c, D_W, "d_w", &r->d_w, r->f.expect[D_W], &c->worst[W_DW]);
}

static int execute(bwd_case *c)
{
    run_state r = {0};
    int ok = load_all(c, &r) && (c->kind == KIND_ADDITIVE ? run_additive(c, &r)
                                                          : run_nw(c, &r));
    run_state_free(&r);
    return ok;
}

static void test_case(void **state)
{
    bwd_case *c = *state;
    char line[512] = "";
    if (c->g.error[0] != '\0') /* case.json unusable: fail, never drop */
        fail_msg("%s: %s", c->g.name, c->g.error);
    if (!execute(c)) /* execute has freed everything, as fail_msg longjmps */
        fail_msg("%s: %s", c->g.name, c->g.error);
    for (int w = 0; w < N_WORST; w++)
        if (c->worst[w] >= 0) {
            size_t used = strlen(line);
            snprintf(line + used, sizeof line - used, "%s%s%s %.3g", used ? ", " : "",
                     w == W_DK && c->keys_are_values ? "d_keys + d_values" : worst_name[w],
                     (w >= W_BLOCK0 ? c->block[w - W_BLOCK0].floor
                                    : c->t[worst_file[w]].floor) > 0 ? " (floor)" : "",
                     c->worst[w]);
        }
    print_message("%s: worst rel error %s\n", c->g.name, line);
    c->passed = 1;
}

int main(int argc, char **argv)
{
    size_t n = 0;
    int status = golden_check_args(argc, argv, "test_layer_backward_torch",
                                   "<tests/data/layer_backward>");
    if (status != 0)
        return status;
    bwd_case *cases = golden_load_cases(argv[1], NULL, sizeof *cases, parse_case,
                                        "test_layer_backward_torch", &n);
    struct CMUnitTest *tests = cases != NULL ? calloc(n, sizeof *tests) : NULL;
    if (tests == NULL) {
        if (cases != NULL)
            fprintf(stderr, "test_layer_backward_torch: out of memory\n");
        free(cases);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        tests[i] = (struct CMUnitTest){
            .name = cases[i].g.name, .test_func = test_case, .initial_state = &cases[i]};
    /* cmocka_run_group_tests_name() takes the sizeof of a static array; this
     * one is built at run time, so call the function the macro expands to. */
    int failed = _cmocka_run_group_tests("layer_backward_torch", tests, n, NULL, NULL);
    /* The summary: per kind, the worst of each measure over the passed cases. */
    size_t passed = 0, n_kind[N_KINDS] = {0}, worst_i[N_KINDS][N_WORST] = {{0}};
    double worst[N_KINDS][N_WORST];
    for (int k = 0; k < N_KINDS; k++)
        for (int w = 0; w < N_WORST; w++)
            worst[k][w] = -1;
    for (size_t i = 0; i < n; i++) {
        if (!cases[i].passed)
            continue;
        passed++;
        n_kind[cases[i].kind]++;
        for (int w = 0; w < N_WORST; w++)
            if (cases[i].worst[w] > worst[cases[i].kind][w])
                worst[cases[i].kind][w] = cases[i].worst[w], worst_i[cases[i].kind][w] = i;
    }
    print_message("layer_backward_torch: %zu cases, %zu passed", n, passed);
    for (int k = 0; k < N_KINDS; k++) {
        if (n_kind[k] == 0)
            continue;
        print_message("; %s (%zu):", kind_name[k], n_kind[k]);
        for (int w = 0; w < N_WORST; w++)
            if (worst[k][w] >= 0)
                print_message(" %s %.3g (%s)", worst_name[w], worst[k][w],
                              cases[worst_i[k][w]].g.name);
    }
    print_message("\n");
    free(cases), free(tests);
    return failed != 0 || passed != n;
}
