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
#define _POSIX_C_SOURCE 200809L /* scandir, alphasort */

#include <attn.h>

#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#define RTOL 1e-5

/* case.json's "files", in this order: the float32 inputs, then the float64
 * expected results. */
enum { Q, K, V, D_OUT, OUT, D_Q, D_K, D_V, N_FILES };
#define N_INPUTS OUT /* files before OUT are float32 */
static const char *const file_key[N_FILES] = {"q", "k", "v", "d_out",
                                              "out", "d_q", "d_k", "d_v"};
enum { MASK_LENGTHS, MASK_BOOL, MASK_BIAS, N_MASK_KINDS };
static const char *const mask_kind[N_MASK_KINDS] = {"kv_lengths", "bool", "bias"};
static const char *const mask_dtype[N_MASK_KINDS] = {"int64", "uint8", "float32"};
static const size_t mask_item[N_MASK_KINDS] = {sizeof(int64_t), sizeof(uint8_t), sizeof(float)};

/* The worst errors of a case: out, d_q, d_k, d_v. */
enum { W_OUT, W_DQ, W_DK, W_DV, N_WORST };
static const char *const worst_name[N_WORST] = {"out", "d_q", "d_k", "d_v"};

typedef struct { int present, rank; int64_t shape[4]; char file[64]; } tensor_spec;

typedef struct {
    char name[128], dir[4096];
    char error[512]; /* why the case failed, or why its case.json is unusable */
    int64_t batch, heads_q, heads_kv, len_q, len_kv, dim_qk, dim_v;
    int layout, causal, custom_scale, n_masks, per_query[N_MASK_KINDS];
    double scale;
    tensor_spec t[N_FILES], mask[N_MASK_KINDS];
    double worst[N_WORST];
    int passed;
} bwd_case;

/* Everything a run allocates, so that one function frees it on every path. */
typedef struct {
    float *in[N_INPUTS];
    double *expect[N_FILES]; /* OUT .. D_V */
    float *out, *lse, *d_q, *d_k, *d_v;
    void *mask_data[N_MASK_KINDS];
    attn_context *ctx; attn_sdpa *op; attn_mask *mask;
} run_state;

static int case_error(bwd_case *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    return 0;
}

#define CHECK(c, call) check((c), (call), #call)
static int check(bwd_case *c, attn_status st, const char *call)
{
    return st == ATTN_OK ||
           case_error(c, "%s: %s (%s)", call, attn_status_string(st), attn_last_error());
}

/* ---------------------------------------------------------------- case.json */

static json_object *get(json_object *j, const char *key) /* NULL if j or key is missing */
{
    json_object *value;
    return json_object_object_get_ex(j, key, &value) ? value : NULL;
}

static int parse_tensor(bwd_case *c, json_object *j, const char *dtype, tensor_spec *t)
{
    json_object *type = get(j, "dtype"), *shape = get(j, "shape"), *file = get(j, "file");
    if (type == NULL || file == NULL || !json_object_is_type(shape, json_type_array))
        return case_error(c, "a tensor lacks dtype, shape or file");
    snprintf(t->file, sizeof t->file, "%s", json_object_get_string(file));
    if (strcmp(json_object_get_string(type), dtype) != 0)
        return case_error(c, "%s is %s, not %s", t->file, json_object_get_string(type), dtype);
    t->rank = (int)json_object_array_length(shape);
    if (t->rank < 1 || t->rank > 4)
        return case_error(c, "%s has rank %d", t->file, t->rank);
    for (int i = 0; i < t->rank; i++)
        t->shape[i] = json_object_get_int64(json_object_array_get_idx(shape, (size_t)i));
    t->present = 1;
    return 1;
}

/* The tensor must have exactly this shape (rank from the number of sizes). */
static int expect_shape(bwd_case *c, const tensor_spec *t, int rank, int64_t d0, int64_t d1,
                        int64_t d2, int64_t d3)
{
    const int64_t want[4] = {d0, d1, d2, d3};
    int ok = t->rank == rank;
    for (int i = 0; ok && i < rank; i++)
        ok = t->shape[i] == want[i];
    return ok || case_error(c, "%s: shape does not fit the configuration", t->file);
}

/* A [B, H, L, D] tensor in the case's layout (BSHD: [B, L, H, D]). */
static int expect_4d(bwd_case *c, const tensor_spec *t, int64_t h, int64_t l, int64_t d)
{
    return c->layout == ATTN_LAYOUT_BSHD ? expect_shape(c, t, 4, c->batch, l, h, d)
                                         : expect_shape(c, t, 4, c->batch, h, l, d);
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
             expect_4d(c, &c->t[D_V], hkv, lkv, c->dim_v);
    if (ok && c->mask[MASK_LENGTHS].present)
        ok = c->per_query[MASK_LENGTHS]
                 ? expect_shape(c, &c->mask[MASK_LENGTHS], 2, c->batch, lq, 0, 0)
                 : expect_shape(c, &c->mask[MASK_LENGTHS], 1, c->batch, 0, 0, 0);
    for (int k = MASK_BOOL; ok && k <= MASK_BIAS; k++) /* libattn checks broadcasting */
        ok = !c->mask[k].present || c->mask[k].rank == 4 ||
             case_error(c, "the %s mask is not 4-D", mask_kind[k]);
    if (ok && !c->custom_scale && (float)c->scale != (float)(1.0 / sqrt((double)c->dim_qk)))
        ok = case_error(c, "scale %.9g is not the default of dim_qk %lld and custom_scale is 0",
                        c->scale, (long long)c->dim_qk);
    return ok;
}

static int parse_case(bwd_case *c, json_object *j)
{
    static const char *const ints[] = {"batch",  "heads_q", "heads_kv", "len_q",
                                       "len_kv", "dim_qk",  "dim_v",    "layout",
                                       "causal", "custom_scale"};
    enum { N_INTS = sizeof ints / sizeof *ints };
    int64_t v[N_INTS];
    json_object *files = get(j, "files"), *masks = get(j, "masks"), *scale = get(j, "scale");
    for (size_t i = 0; i < N_INTS; i++) {
        if (!json_object_is_type(get(j, ints[i]), json_type_int))
            return case_error(c, "case.json lacks the integer %s", ints[i]);
        v[i] = json_object_get_int64(get(j, ints[i]));
    }
    c->batch = v[0], c->heads_q = v[1], c->heads_kv = v[2], c->len_q = v[3], c->len_kv = v[4];
    c->dim_qk = v[5], c->dim_v = v[6], c->layout = (int)v[7], c->causal = (int)v[8];
    c->custom_scale = (int)v[9];
    if (files == NULL || !json_object_is_type(masks, json_type_array) ||
        !json_object_is_type(scale, json_type_double))
        return case_error(c, "case.json lacks files, masks, or the number scale");
    c->scale = json_object_get_double(scale);
    for (int i = 0; i < N_FILES; i++) {
        json_object *f = get(files, file_key[i]);
        if (f == NULL)
            return case_error(c, "files lacks %s", file_key[i]);
        if (!parse_tensor(c, f, i < N_INPUTS ? "float32" : "float64", &c->t[i]))
            return 0;
    }
    c->n_masks = (int)json_object_array_length(masks);
    for (int i = 0; i < c->n_masks; i++) {
        json_object *m = json_object_array_get_idx(masks, (size_t)i);
        const char *kind = json_object_get_string(get(m, "kind"));
        int k = 0;
        while (k < N_MASK_KINDS && (kind == NULL || strcmp(kind, mask_kind[k]) != 0))
            k++;
        if (k == N_MASK_KINDS || c->mask[k].present)
            return case_error(c, "mask kind %s unknown or repeated", kind ? kind : "(none)");
        c->per_query[k] = json_object_get_int(get(m, "per_query"));
        if (!parse_tensor(c, m, mask_dtype[k], &c->mask[k]))
            return 0;
    }
    return check_shapes(c);
}

static void load_case(bwd_case *c, const char *root, const char *name)
{
    char path[4200];
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->dir, sizeof c->dir, "%s/%s", root, name);
    snprintf(path, sizeof path, "%s/case.json", c->dir);
    json_object *j = json_object_from_file(path);
    if (j == NULL)
        case_error(c, "cannot read %s: %s", path, json_util_get_last_err());
    else
        parse_case(c, j);
    json_object_put(j);
}

/* ---------------------------------------------------------------- tensors */

static int64_t numel(const tensor_spec *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->shape[i];
    return n;
}

/* Reads a whole .bin that must hold exactly numel × item bytes. */
static void *load_tensor(bwd_case *c, const tensor_spec *t, size_t item)
{
    size_t bytes = (size_t)numel(t) * item;
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", c->dir, t->file);
    FILE *f = fopen(path, "rb");
    void *buf = f != NULL ? malloc(bytes ? bytes : 1) : NULL;
    int ok = buf != NULL && fread(buf, 1, bytes, f) == bytes && fgetc(f) == EOF;
    if (f != NULL)
        fclose(f);
    if (!ok) {
        free(buf);
        case_error(c, "cannot read %s as exactly %zu bytes", path, bytes);
        return NULL;
    }
    return buf;
}

static float *nan_buffer(int64_t n)
{
    float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    for (int64_t i = 0; p != NULL && i < n; i++)
        p[i] = NAN;
    return p;
}

/* ---------------------------------------------------------------- running */

/* |a - e| <= RTOL·(|e| + max|e| over each group of `group` elements: an
 * output row, or the whole tensor with group = n); *worst gets the largest
 * |a - e| / (|e| + group max). */
static int compare(bwd_case *c, const char *what, const float *a, const double *e, int64_t n,
                   int64_t group, double *worst)
{
    for (int64_t r = 0; r < n / group; r++) {
        double group_max = 0;
        for (int64_t i = r * group; i < (r + 1) * group; i++)
            group_max = fmax(group_max, fabs(e[i]));
        for (int64_t i = r * group; i < (r + 1) * group; i++) {
            double err = fabs((double)a[i] - e[i]), scale = fabs(e[i]) + group_max;
            double rel = err == 0 ? 0 : scale > 0 ? err / scale : INFINITY;
            if (!(err <= RTOL * scale)) /* written so that a NaN fails */
                return case_error(c, "%s[%lld]: got %.9g, expected %.17g (rel error %.3g > %g)",
                                  what, (long long)i, a[i], e[i], rel, RTOL);
            *worst = fmax(*worst, rel);
        }
    }
    return 1;
}

static void run_state_free(run_state *r)
{
    for (int i = 0; i < N_INPUTS; i++)
        free(r->in[i]);
    for (int i = OUT; i < N_FILES; i++)
        free(r->expect[i]);
    for (int k = 0; k < N_MASK_KINDS; k++)
        free(r->mask_data[k]);
    free(r->out), free(r->lse), free(r->d_q), free(r->d_k), free(r->d_v);
    attn_mask_destroy(r->mask);
    attn_sdpa_destroy(r->op);
    attn_context_destroy(r->ctx);
}

static int set_masks(bwd_case *c, run_state *r)
{
    for (int k = 0; k < N_MASK_KINDS; k++) {
        const tensor_spec *s = &c->mask[k];
        if (!s->present)
            continue;
        if ((r->mask_data[k] = load_tensor(c, s, mask_item[k])) == NULL)
            return 0;
        const int64_t *d = s->shape;
        const void *m = r->mask_data[k];
        attn_status st =
            k == MASK_LENGTHS ? attn_mask_set_kv_lengths(r->mask, m, c->batch, c->len_q,
                                                         c->per_query[k])
            : k == MASK_BOOL  ? attn_mask_set_bool(r->mask, m, d[0], d[1], d[2], d[3])
                              : attn_mask_set_bias(r->mask, m, d[0], d[1], d[2], d[3]);
        if (!check(c, st, mask_kind[k]))
            return 0;
    }
    return 1;
}

static int configure(bwd_case *c, run_state *r)
{
    for (int i = 0; i < N_INPUTS; i++)
        if ((r->in[i] = load_tensor(c, &c->t[i], sizeof(float))) == NULL)
            return 0;
    for (int i = OUT; i < N_FILES; i++)
        if ((r->expect[i] = load_tensor(c, &c->t[i], sizeof(double))) == NULL)
            return 0;
    return CHECK(c, attn_context_create(&r->ctx)) &&
           CHECK(c, attn_sdpa_create(&r->op, c->batch, c->heads_q, c->heads_kv, c->len_q,
                                     c->len_kv, c->dim_qk, c->dim_v)) &&
           CHECK(c, attn_sdpa_set_layout(r->op, (attn_layout)c->layout)) &&
           CHECK(c, attn_sdpa_set_causal(r->op, (attn_causal)c->causal)) &&
           (!c->custom_scale || CHECK(c, attn_sdpa_set_scale(r->op, (float)c->scale))) &&
           CHECK(c, attn_mask_create(&r->mask)) && set_masks(c, r);
}

static int execute(bwd_case *c)
{
    run_state r = {0};
    int ok = 0;
    int64_t n_out = numel(&c->t[OUT]), n_dq = numel(&c->t[D_Q]), n_dk = numel(&c->t[D_K]),
            n_dv = numel(&c->t[D_V]);
    if (!configure(c, &r))
        goto done;
    r.out = nan_buffer(n_out), r.lse = nan_buffer(c->batch * c->heads_q * c->len_q);
    r.d_q = nan_buffer(n_dq), r.d_k = nan_buffer(n_dk), r.d_v = nan_buffer(n_dv);
    if (r.out == NULL || r.lse == NULL || r.d_q == NULL || r.d_k == NULL || r.d_v == NULL) {
        case_error(c, "out of memory");
        goto done;
    }
    const float *q = r.in[Q], *k = r.in[K], *v = r.in[V];
    const attn_mask *mask = c->n_masks > 0 ? r.mask : NULL;
    ok = CHECK(c, attn_sdpa_forward(r.ctx, r.op, q, k, v, mask, r.out, NULL, r.lse)) &&
         compare(c, "out", r.out, r.expect[OUT], n_out, c->dim_v, &c->worst[W_OUT]) &&
         CHECK(c, attn_sdpa_backward(r.ctx, r.op, q, k, v, mask, r.out, r.lse, r.in[D_OUT],
                                     r.d_q, r.d_k, r.d_v)) &&
         compare(c, "d_q", r.d_q, r.expect[D_Q], n_dq, n_dq, &c->worst[W_DQ]) &&
         compare(c, "d_k", r.d_k, r.expect[D_K], n_dk, n_dk, &c->worst[W_DK]) &&
         compare(c, "d_v", r.d_v, r.expect[D_V], n_dv, n_dv, &c->worst[W_DV]);
done:
    run_state_free(&r);
    return ok;
}

static void test_case(void **state)
{
    bwd_case *c = *state;
    if (c->error[0] != '\0') /* case.json unusable: fail, never drop */
        fail_msg("%s: %s", c->name, c->error);
    if (!execute(c)) /* execute has freed everything, as fail_msg longjmps */
        fail_msg("%s: %s", c->name, c->error);
    print_message("%s: worst rel error out %.3g, d_q %.3g, d_k %.3g, d_v %.3g\n", c->name,
                  c->worst[W_OUT], c->worst[W_DQ], c->worst[W_DK], c->worst[W_DV]);
    c->passed = 1;
}

static int is_case_dir(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

int main(int argc, char **argv)
{
    const uint16_t one = 1;
    struct dirent **names = NULL;
    if (argc != 2) {
        fprintf(stderr, "usage: %s <tests/data/sdpa_backward>\n", argv[0]);
        return 2;
    }
    if (*(const unsigned char *)&one != 1) { /* the .bin files are little-endian */
        fprintf(stderr, "test_sdpa_backward_torch: needs a little-endian host\n");
        return 1;
    }
    int count = scandir(argv[1], &names, is_case_dir, alphasort);
    if (count <= 0) { /* the vectors are in the source tree: missing is a failure */
        fprintf(stderr, "test_sdpa_backward_torch: no case folder in %s\n", argv[1]);
        free(names);
        return 1;
    }
    size_t n = (size_t)count;
    bwd_case *cases = calloc(n, sizeof *cases);
    struct CMUnitTest *tests = calloc(n, sizeof *tests);
    for (size_t i = 0; i < n; i++) {
        if (cases != NULL && tests != NULL) {
            load_case(&cases[i], argv[1], names[i]->d_name);
            tests[i] = (struct CMUnitTest){
                .name = cases[i].name, .test_func = test_case, .initial_state = &cases[i]};
        }
        free(names[i]);
    }
    free(names);
    if (cases == NULL || tests == NULL) {
        fprintf(stderr, "test_sdpa_backward_torch: out of memory\n");
        free(cases), free(tests);
        return 1;
    }
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
        print_message("; worst %s %.3g (%s)", worst_name[w], worst[w], cases[worst_i[w]].name);
    print_message("\n");
    free(cases), free(tests);
    return failed != 0 || passed != n;
}
