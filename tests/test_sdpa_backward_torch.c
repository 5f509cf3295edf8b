/*
 * test_sdpa_backward_torch.c: attn_sdpa_backward against PyTorch autograd
 * (torch 1.13, float64) golden gradients, made by
 * tests/data/gen_torch_backward_vectors.py (its header says how they are
 * computed and how to regenerate them) as one folder per case: case.json +
 * raw little-endian .bin tensors.
 *
 * Usage: test_sdpa_backward_torch <tests/data/sdpa_backward>. Every case
 * folder is one CMocka test, run as a user would: attn_sdpa_create(B, Hq,
 * Hkv, Lq, Lkv, Dqk, Dv), the layout, the causal setting and (custom_scale)
 * attn_sdpa_set_scale; otherwise the stored scale must be libattn's default
 * (float)(1.0 / sqrt(Dqk)) and the op keeps it. The masks of case.json
 * (already in libattn's terms: kv lengths, keep mask, bias) go into one
 * attn_mask. Then libattn's own attn_sdpa_forward gives out and lse, and
 * attn_sdpa_backward(out, lse, d_out) gives d_q, d_k, d_v.
 *
 * Tolerances: out must match torch's float64 out to
 * |a - e| <= 1e-5 · (|e| + max|e| over that output row), as in
 * test_mha_torch. Each gradient must match its float64 golden to
 * |a - e| <= 1e-5 · (|e| + max|e| over that whole gradient tensor):
 * normalised per tensor, not per row, because a gradient element is a sum
 * of terms that can cancel, and a whole row of it can come out exactly 0 in
 * float64 (e.g. d_q of a query row that sees one key, whose dS is
 * P·(dP - D) = 0) while float32 leaves ~1e-7 there, which no per-row or
 * per-element relative bound accepts. Rows and keys that nothing sees have
 * golden zeros, so they are held to 1e-5 of the tensor's largest element.
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

/* case.json's "files", in this order: the float32 inputs, then the float64
 * expected results. */
enum { Q, K, V, D_OUT, OUT, D_Q, D_K, D_V, N_FILES };
#define N_INPUTS OUT /* files before OUT are float32 */
static const char *const file_key[N_FILES] = {"q", "k", "v", "d_out",
                                              "out", "d_q", "d_k", "d_v"};
_Static_assert(N_FILES <= GOLDEN_MAX_FILES, "golden_files holds every file");

/* The worst errors of a case: out, d_q, d_k, d_v. */
enum { W_OUT, W_DQ, W_DK, W_DV, N_WORST };
static const char *const worst_name[N_WORST] = {"out", "d_q", "d_k", "d_v"};

typedef struct {
    golden_case g; /* name, folder, error */
    int64_t batch, heads_q, heads_kv, len_q, len_kv, dim_qk, dim_v;
    int layout, causal, custom_scale;
    double scale;
    golden_tensor t[N_FILES];
    golden_masks masks;
    double worst[N_WORST];
    int passed;
} bwd_case;

/* Everything a run allocates, so that one function frees it on every path. */
typedef struct {
    golden_files f; /* in[Q .. D_OUT], expect[OUT .. D_V], the masks */
    float *out, *lse, *d_q, *d_k, *d_v;
    attn_context *ctx; attn_sdpa *op; attn_mask *mask;
} run_state;

#define CHECK(c, call) golden_check(&(c)->g, (call), #call)

/* ---------------------------------------------------------------- case.json */

/* A [B, H, L, D] tensor in the case's layout (BSHD: [B, L, H, D]). */
static int expect_4d(bwd_case *c, const golden_tensor *t, int64_t h, int64_t l, int64_t d)
{
    return c->layout == ATTN_LAYOUT_BSHD ? golden_expect_shape(&c->g, t, 4, c->batch, l, h, d)
                                         : golden_expect_shape(&c->g, t, 4, c->batch, h, l, d);
}

static int check_shapes(bwd_case *c)
{
    int64_t hq = c->heads_q, hkv = c->heads_kv, lq = c->len_q, lkv = c->len_kv;
    int ok = expect_4d(c, &c->t[Q], hq, lq, c->dim_qk) &&
             expect_4d(c, &c->t[K], hkv, lkv, c->dim_qk) &&
             expect_4d(c, &c->t[V], hkv, lkv, c->dim_v) &&
             expect_4d(c, &c->t[D_OUT], hq, lq, c->dim_v) &&
             expect_4d(c, &c->t[OUT], hq, lq, c->dim_v) &&
             expect_4d(c, &c->t[D_Q], hq, lq, c->dim_qk) &&
             expect_4d(c, &c->t[D_K], hkv, lkv, c->dim_qk) &&
             expect_4d(c, &c->t[D_V], hkv, lkv, c->dim_v) &&
             golden_expect_mask_shapes(&c->g, &c->masks, c->batch, lq);
    if (ok && !c->custom_scale && (float)c->scale != (float)(1.0 / sqrt((double)c->dim_qk)))
        ok = golden_error(&c->g, "scale %.9g is not the default of dim_qk %lld and custom_scale "
                                 "is 0", c->scale, (long long)c->dim_qk);
    return ok;
}

static int parse_case(golden_case *g, json_object *j)
{
    static const char *const ints[] = {"batch",  "heads_q", "heads_kv", "len_q",
                                       "len_kv", "dim_qk",  "dim_v",    "layout",
                                       "causal", "custom_scale"};
    enum { N_INTS = sizeof ints / sizeof *ints };
    bwd_case *c = (bwd_case *)g;
    int64_t v[N_INTS];
    json_object *files = golden_get(j, "files"), *masks = golden_get(j, "masks");
    json_object *scale = golden_get(j, "scale");
    if (!golden_parse_ints(g, j, ints, N_INTS, v))
        return 0;
    c->batch = v[0], c->heads_q = v[1], c->heads_kv = v[2], c->len_q = v[3], c->len_kv = v[4];
    c->dim_qk = v[5], c->dim_v = v[6], c->layout = (int)v[7], c->causal = (int)v[8];
    c->custom_scale = (int)v[9];
    if (files == NULL || !json_object_is_type(masks, json_type_array) ||
        !json_object_is_type(scale, json_type_double))
        return golden_error(g, "case.json lacks files, masks, or the number scale");
    c->scale = json_object_get_double(scale);
    if (!golden_parse_files(g, files, file_key, N_FILES, N_INPUTS, c->t))
        return 0;
    return golden_parse_masks(g, masks, GOLDEN_N_MASK_KINDS, &c->masks) && check_shapes(c);
}

/* ---------------------------------------------------------------- running */

static void run_state_free(run_state *r)
{
    golden_files_free(&r->f);
    free(r->out), free(r->lse), free(r->d_q), free(r->d_k), free(r->d_v);
    attn_mask_destroy(r->mask);
    attn_sdpa_destroy(r->op);
    attn_context_destroy(r->ctx);
}

static int configure(bwd_case *c, run_state *r)
{
    if (!golden_load_files(&c->g, c->t, N_FILES, N_INPUTS, NULL, &r->f))
        return 0;
    return CHECK(c, attn_context_create(&r->ctx)) &&
           CHECK(c, attn_sdpa_create(&r->op, c->batch, c->heads_q, c->heads_kv, c->len_q,
                                     c->len_kv, c->dim_qk, c->dim_v)) &&
           CHECK(c, attn_sdpa_set_layout(r->op, (attn_layout)c->layout)) &&
           CHECK(c, attn_sdpa_set_causal(r->op, (attn_causal)c->causal)) &&
           (!c->custom_scale || CHECK(c, attn_sdpa_set_scale(r->op, (float)c->scale))) &&
           CHECK(c, attn_mask_create(&r->mask)) &&
           golden_set_masks(&c->g, &c->masks, r->mask, c->batch, c->len_q, r->f.mask);
}

/* out is compared per output row (dim_v elements), each gradient as a whole
 * tensor (see the header), with no floor. */
static int execute(bwd_case *c)
{
    run_state r = {0};
    int ok = 0;
    golden_case *g = &c->g;
    int64_t n_out = golden_numel(&c->t[OUT]), n_dq = golden_numel(&c->t[D_Q]),
            n_dk = golden_numel(&c->t[D_K]), n_dv = golden_numel(&c->t[D_V]);
    if (!configure(c, &r))
        goto done;
    r.out = golden_nan_floats(n_out), r.lse = golden_nan_floats(c->batch * c->heads_q * c->len_q);
    r.d_q = golden_nan_floats(n_dq), r.d_k = golden_nan_floats(n_dk);
    r.d_v = golden_nan_floats(n_dv);
    if (r.out == NULL || r.lse == NULL || r.d_q == NULL || r.d_k == NULL || r.d_v == NULL) {
        golden_error(g, "out of memory");
        goto done;
    }
    const float *q = r.f.in[Q], *k = r.f.in[K], *v = r.f.in[V];
    const attn_mask *mask = c->masks.n > 0 ? r.mask : NULL;
    ok = CHECK(c, attn_sdpa_forward(r.ctx, r.op, q, k, v, mask, r.out, NULL, r.lse)) &&
         golden_compare(g, "out", r.out, r.f.expect[OUT], n_out, c->dim_v, 0, 0, RTOL,
                        &c->worst[W_OUT]) &&
         CHECK(c, attn_sdpa_backward(r.ctx, r.op, q, k, v, mask, r.out, r.lse, r.f.in[D_OUT],
                                     r.d_q, r.d_k, r.d_v)) &&
         golden_compare(g, "d_q", r.d_q, r.f.expect[D_Q], n_dq, n_dq, 0, 0, RTOL, &c->worst[W_DQ]) &&
         golden_compare(g, "d_k", r.d_k, r.f.expect[D_K], n_dk, n_dk, 0, 0, RTOL, &c->worst[W_DK]) &&
         golden_compare(g, "d_v", r.d_v, r.f.expect[D_V], n_dv, n_dv, 0, 0, RTOL, &c->worst[W_DV]);
done:
    run_state_free(&r);
    return ok;
}

static void test_case(void **state)
{
    bwd_case *c = *state;
    if (c->g.error[0] != '\0') /* case.json unusable: fail, never drop */
        fail_msg("%s: %s", c->g.name, c->g.error);
    if (!execute(c)) /* execute has freed everything, as fail_msg longjmps */
        fail_msg("%s: %s", c->g.name, c->g.error);
    print_message("%s: worst rel error out %.3g, d_q %.3g, d_k %.3g, d_v %.3g\n", c->g.name,
                  c->worst[W_OUT], c->worst[W_DQ], c->worst[W_DK], c->worst[W_DV]);
    c->passed = 1;
}

int main(int argc, char **argv)
{
    size_t n = 0;
    int status = golden_check_args(argc, argv, "test_sdpa_backward_torch",
                                   "<tests/data/sdpa_backward>");
    if (status != 0)
        return status;
    bwd_case *cases = golden_load_cases(argv[1], NULL, sizeof *cases, parse_case,
                                        "test_sdpa_backward_torch", &n);
    struct CMUnitTest *tests = cases != NULL ? calloc(n, sizeof *tests) : NULL;
    if (tests == NULL) {
        if (cases != NULL)
            fprintf(stderr, "test_sdpa_backward_torch: out of memory\n");
        free(cases);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        tests[i] = (struct CMUnitTest){
            .name = cases[i].g.name, .test_func = test_case, .initial_state = &cases[i]};
    /* cmocka_run_group_tests_name() takes the sizeof of a static array; this
     * one is built at run time, so call the function the macro expands to. */
    int failed = _cmocka_run_group_tests("sdpa_backward_torch", tests, n, NULL, NULL);
    size_t passed = 0, worst_i[N_WORST] = {0};
    double worst[N_WORST] = {-1, -1, -1, -1};
    for (size_t i = 0; i < n; i++) {
        passed += (size_t)cases[i].passed;
        for (int w = 0; w < N_WORST; w++)
            if (cases[i].passed && cases[i].worst[w] > worst[w])
                worst[w] = cases[i].worst[w], worst_i[w] = i;
    }
    print_message("sdpa_backward_torch: %zu cases, %zu passed", n, passed);
    for (int w = 0; w < N_WORST && passed > 0; w++)
        print_message("; worst %s %.3g (%s)", worst_name[w], worst[w], cases[worst_i[w]].g.name);
    print_message("\n");
    free(cases), free(tests);
    return failed != 0 || passed != n;
}
