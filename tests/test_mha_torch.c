/*
 * test_mha_torch.c: attn_mha against torch.nn.MultiheadAttention (torch 1.13)
 * golden vectors, made by tests/data/gen_torch_vectors.py (its header says how
 * to regenerate them) as one folder per case: case.json + raw little-endian
 * .bin tensors.
 *
 * Usage: test_mha_torch <tests/data/mha>. Every case folder is one CMocka
 * test: attn_mha_create(embed_dim, num_heads, num_heads, kdim, vdim, bias),
 * the four attn_mha_set_weights, the causal setting and the masks of
 * case.json (already in libattn's terms: kv lengths, keep mask, bias), then
 * attn_mha_forward twice: with the per-head weights requested, and with
 * weights = NULL, whose out must be bitwise the same. out and weights must
 * match PyTorch's: |a - e| <= 1e-5 · (|e| + max|e| over that output row).
 * Outputs start as NaN, so an element never written fails.
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

/* case.json's "files", in this order. */
enum { WQ, WK, WV, WO, BQ, BK, BV, BO, QUERY, KEY, VALUE, OUT, WEIGHTS, N_FILES };
static const char *const file_key[N_FILES] = {"Wq", "Wk", "Wv", "Wo", "bq", "bk", "bv",
                                              "bo", "query", "key", "value", "out", "weights"};
_Static_assert(N_FILES <= GOLDEN_MAX_FILES, "golden_files holds every file");

typedef struct {
    golden_case g; /* name, folder, error */
    int64_t embed_dim, num_heads, kdim, vdim, batch, len_q, len_kv;
    int bias, self_attention, causal;
    golden_tensor t[N_FILES];
    golden_masks masks;
    double worst_out, worst_w;
    int passed;
} mha_case;

/* Everything a run allocates, so that one function frees it on every path. */
typedef struct {
    golden_files f; /* in[WQ .. WEIGHTS] (all float32), the masks */
    float *out, *out2, *w;
    attn_context *ctx; attn_mha *mha; attn_mask *mask;
} run_state;

#define CHECK(c, call) golden_check(&(c)->g, (call), #call)

/* ---------------------------------------------------------------- case.json */

static int check_shapes(mha_case *c)
{
    int64_t e = c->embed_dim, b = c->batch, q = c->len_q, kv = c->len_kv, h = c->num_heads;
    golden_case *g = &c->g;
    int ok = golden_expect_shape(g, &c->t[WQ], 2, e, e, 0, 0) &&
             golden_expect_shape(g, &c->t[WK], 2, e, c->kdim, 0, 0) &&
             golden_expect_shape(g, &c->t[WV], 2, e, c->vdim, 0, 0) &&
             golden_expect_shape(g, &c->t[WO], 2, e, e, 0, 0) &&
             golden_expect_shape(g, &c->t[QUERY], 3, b, q, e, 0) &&
             golden_expect_shape(g, &c->t[KEY], 3, b, kv, c->kdim, 0) &&
             golden_expect_shape(g, &c->t[VALUE], 3, b, kv, c->vdim, 0) &&
             golden_expect_shape(g, &c->t[OUT], 3, b, q, e, 0) &&
             golden_expect_shape(g, &c->t[WEIGHTS], 4, b, h, q, kv);
    for (int i = BQ; ok && i <= BO; i++)
        ok = c->bias ? golden_expect_shape(g, &c->t[i], 1, e, 0, 0, 0)
                     : (!c->t[i].present || golden_error(g, "a bias file on a layer without bias"));
    ok = ok && golden_expect_mask_shapes(g, &c->masks, b, q);
    return ok && (c->self_attention == 0 || (c->kdim == e && c->vdim == e && kv == q) ||
                  golden_error(g, "self-attention with kdim, vdim or len_kv apart"));
}

static int parse_case(golden_case *g, json_object *j)
{
    static const char *const ints[] = {"embed_dim", "num_heads", "kdim", "vdim", "batch",
                                       "len_q", "len_kv", "bias", "self_attention", "causal"};
    mha_case *c = (mha_case *)g;
    int64_t v[10];
    json_object *files = golden_get(j, "files"), *masks = golden_get(j, "masks");
    json_object *dtype = golden_get(j, "dtype");
    if (!golden_parse_ints(g, j, ints, 10, v))
        return 0;
    c->embed_dim = v[0], c->num_heads = v[1], c->kdim = v[2], c->vdim = v[3], c->batch = v[4];
    c->len_q = v[5], c->len_kv = v[6], c->bias = (int)v[7], c->self_attention = (int)v[8];
    c->causal = (int)v[9];
    if (files == NULL || !json_object_is_type(masks, json_type_array) || dtype == NULL ||
        strcmp(json_object_get_string(dtype), "float32") != 0)
        return golden_error(g, "case.json lacks files, masks, or dtype float32");
    for (int i = 0; i < N_FILES; i++) {
        json_object *f = golden_get(files, file_key[i]);
        if (f == NULL && (i < BQ || i > BO)) /* only the biases are optional */
            return golden_error(g, "files lacks %s", file_key[i]);
        if (f != NULL && !golden_parse_tensor(g, f, "float32", 0, &c->t[i]))
            return 0;
    }
    return golden_parse_masks(g, masks, GOLDEN_N_MASK_KINDS, &c->masks) && check_shapes(c);
}

/* ---------------------------------------------------------------- running */

static void run_state_free(run_state *r)
{
    golden_files_free(&r->f);
    free(r->out), free(r->out2), free(r->w);
    attn_mask_destroy(r->mask);
    attn_mha_destroy(r->mha);
    attn_context_destroy(r->ctx);
}

static int configure(mha_case *c, run_state *r)
{
    if (!golden_load_files(&c->g, c->t, N_FILES, N_FILES, NULL, &r->f)) /* present files */
        return 0;
    int ok = CHECK(c, attn_context_create(&r->ctx)) &&
             CHECK(c, attn_mha_create(&r->mha, c->embed_dim, c->num_heads, c->num_heads, c->kdim,
                                      c->vdim, c->bias)) &&
             CHECK(c, attn_mask_create(&r->mask)) &&
             (c->causal == ATTN_CAUSAL_NONE ||
              CHECK(c, attn_mha_set_causal(r->mha, (attn_causal)c->causal)));
    for (int p = 0; ok && p < 4; p++) /* ATTN_PROJ_Q .. O: Wq .. Wo, bq .. bo */
        ok = CHECK(c, attn_mha_set_weights(r->mha, (attn_proj)p, r->f.in[WQ + p], r->f.in[BQ + p]));
    return ok && golden_set_masks(&c->g, &c->masks, r->mask, c->batch, c->len_q, r->f.mask);
}

/* out and weights must match to |a - e| <= RTOL·(|e| + row max |e|), rows of
 * embed_dim and len_kv elements; worst_out and worst_w get the largest
 * |a - e| / (|e| + row max). */
static int execute(mha_case *c)
{
    run_state r = {0};
    int ok = 0;
    int64_t n_out = golden_numel(&c->t[OUT]), n_w = golden_numel(&c->t[WEIGHTS]);
    if (!configure(c, &r))
        goto done;
    r.out = golden_nan_floats(n_out), r.out2 = golden_nan_floats(n_out);
    r.w = golden_nan_floats(n_w);
    if (r.out == NULL || r.out2 == NULL || r.w == NULL) {
        golden_error(&c->g, "out of memory");
        goto done;
    }
    const float *q = r.f.in[QUERY], *k = r.f.in[KEY], *v = r.f.in[VALUE];
    if (c->self_attention) /* the same pointer thrice, as the header says */
        k = v = q;
    const attn_mask *mask = c->masks.n > 0 ? r.mask : NULL;
    ok = CHECK(c, attn_mha_forward(r.ctx, r.mha, c->batch, c->len_q, c->len_kv, q, k, v, mask,
                                   r.out, r.w)) &&
         CHECK(c, attn_mha_forward(r.ctx, r.mha, c->batch, c->len_q, c->len_kv, q, k, v, mask,
                                   r.out2, NULL)) &&
         (memcmp(r.out, r.out2, (size_t)n_out * sizeof *r.out) == 0 ||
          golden_error(&c->g, "out differs bitwise with weights = NULL")) &&
         golden_compare_f32(&c->g, "out", r.out, r.f.in[OUT], n_out, c->embed_dim, RTOL,
                            &c->worst_out) &&
         golden_compare_f32(&c->g, "weights", r.w, r.f.in[WEIGHTS], n_w, c->len_kv, RTOL,
                            &c->worst_w);
done:
    run_state_free(&r);
    return ok;
}

static void test_case(void **state)
{
    mha_case *c = *state;
    if (c->g.error[0] != '\0') /* case.json unusable: fail, never drop */
        fail_msg("%s: %s", c->g.name, c->g.error);
    if (!execute(c)) /* execute has freed everything, as fail_msg longjmps */
        fail_msg("%s: %s", c->g.name, c->g.error);
    print_message("%s: worst rel error out %.3g, weights %.3g\n", c->g.name, c->worst_out,
                  c->worst_w);
    c->passed = 1;
}

int main(int argc, char **argv)
{
    size_t n = 0;
    int status = golden_check_args(argc, argv, "test_mha_torch", "<tests/data/mha>");
    if (status != 0)
        return status;
    mha_case *cases = golden_load_cases(argv[1], NULL, sizeof *cases, parse_case,
                                        "test_mha_torch", &n);
    struct CMUnitTest *tests = cases != NULL ? calloc(n, sizeof *tests) : NULL;
    if (tests == NULL) {
        if (cases != NULL)
            fprintf(stderr, "test_mha_torch: out of memory\n");
        free(cases);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        tests[i] = (struct CMUnitTest){
            .name = cases[i].g.name, .test_func = test_case, .initial_state = &cases[i]};
    /* cmocka_run_group_tests_name() takes the sizeof of a static array; this
     * one is built at run time, so call the function the macro expands to. */
    int failed = _cmocka_run_group_tests("mha_torch", tests, n, NULL, NULL);
    size_t passed = 0, worst_i = 0;
    double worst = -1;
    for (size_t i = 0; i < n; i++) {
        double w = fmax(cases[i].worst_out, cases[i].worst_w);
        passed += (size_t)cases[i].passed;
        if (cases[i].passed && w > worst)
            worst = w, worst_i = i;
    }
    print_message("mha_torch: %zu cases, %zu passed; worst rel error %.3g (%s)\n", n, passed,
                  worst < 0 ? 0.0 : worst, worst < 0 ? "none passed" : cases[worst_i].g.name);
    free(cases), free(tests);
    return failed != 0 || passed != n;
}
