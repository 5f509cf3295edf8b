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

/* case.json's "files", in this order. */
enum { WQ, WK, WV, WO, BQ, BK, BV, BO, QUERY, KEY, VALUE, OUT, WEIGHTS, N_FILES };
static const char *const file_key[N_FILES] = {"Wq", "Wk", "Wv", "Wo", "bq", "bk", "bv",
                                              "bo", "query", "key", "value", "out", "weights"};
enum { MASK_LENGTHS, MASK_BOOL, MASK_BIAS, N_MASK_KINDS };
static const char *const mask_kind[N_MASK_KINDS] = {"kv_lengths", "bool", "bias"};
static const char *const mask_dtype[N_MASK_KINDS] = {"int64", "uint8", "float32"};
static const size_t mask_item[N_MASK_KINDS] = {sizeof(int64_t), sizeof(uint8_t), sizeof(float)};

typedef struct { int present, rank; int64_t shape[4]; char file[64]; } tensor_spec;

typedef struct {
    char name[128], dir[4096];
    char error[512]; /* why the case failed, or why its case.json is unusable */
    int64_t embed_dim, num_heads, kdim, vdim, batch, len_q, len_kv;
    int bias, self_attention, causal, n_masks, per_query[N_MASK_KINDS];
    tensor_spec t[N_FILES], mask[N_MASK_KINDS];
    double worst_out, worst_w;
    int passed;
} mha_case;

/* Everything a run allocates, so that one function frees it on every path. */
typedef struct {
    float *t[N_FILES], *out, *out2, *w;
    void *mask_data[N_MASK_KINDS];
    attn_context *ctx; attn_mha *mha; attn_mask *mask;
} run_state;

static int case_error(mha_case *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    return 0;
}

#define CHECK(c, call) check((c), (call), #call)
static int check(mha_case *c, attn_status st, const char *call)
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

static int parse_tensor(mha_case *c, json_object *j, const char *dtype, tensor_spec *t)
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
static int expect_shape(mha_case *c, const tensor_spec *t, int rank, int64_t d0, int64_t d1,
                        int64_t d2, int64_t d3)
{
    const int64_t want[4] = {d0, d1, d2, d3};
    int ok = t->rank == rank;
    for (int i = 0; ok && i < rank; i++)
        ok = t->shape[i] == want[i];
    return ok || case_error(c, "%s: shape does not fit the configuration", t->file);
}

static int check_shapes(mha_case *c)
{
    int64_t e = c->embed_dim, b = c->batch, q = c->len_q, kv = c->len_kv, h = c->num_heads;
    int ok = expect_shape(c, &c->t[WQ], 2, e, e, 0, 0) &&
             expect_shape(c, &c->t[WK], 2, e, c->kdim, 0, 0) &&
             expect_shape(c, &c->t[WV], 2, e, c->vdim, 0, 0) &&
             expect_shape(c, &c->t[WO], 2, e, e, 0, 0) &&
             expect_shape(c, &c->t[QUERY], 3, b, q, e, 0) &&
             expect_shape(c, &c->t[KEY], 3, b, kv, c->kdim, 0) &&
             expect_shape(c, &c->t[VALUE], 3, b, kv, c->vdim, 0) &&
             expect_shape(c, &c->t[OUT], 3, b, q, e, 0) &&
             expect_shape(c, &c->t[WEIGHTS], 4, b, h, q, kv);
    for (int i = BQ; ok && i <= BO; i++)
        ok = c->bias ? expect_shape(c, &c->t[i], 1, e, 0, 0, 0)
                     : (!c->t[i].present || case_error(c, "a bias file on a layer without bias"));
    if (ok && c->mask[MASK_LENGTHS].present)
        ok = c->per_query[MASK_LENGTHS]
                 ? expect_shape(c, &c->mask[MASK_LENGTHS], 2, b, q, 0, 0)
                 : expect_shape(c, &c->mask[MASK_LENGTHS], 1, b, 0, 0, 0);
    for (int k = MASK_BOOL; ok && k <= MASK_BIAS; k++) /* libattn checks broadcasting */
        ok = !c->mask[k].present || c->mask[k].rank == 4 ||
             case_error(c, "the %s mask is not 4-D", mask_kind[k]);
    return ok && (c->self_attention == 0 || (c->kdim == e && c->vdim == e && kv == q) ||
                  case_error(c, "self-attention with kdim, vdim or len_kv apart"));
}

static int parse_case(mha_case *c, json_object *j)
{
    static const char *const ints[] = {"embed_dim", "num_heads", "kdim", "vdim", "batch",
                                       "len_q", "len_kv", "bias", "self_attention", "causal"};
    int64_t v[10];
    json_object *files = get(j, "files"), *masks = get(j, "masks"), *dtype = get(j, "dtype");
    for (size_t i = 0; i < 10; i++) {
        if (!json_object_is_type(get(j, ints[i]), json_type_int))
            return case_error(c, "case.json lacks the integer %s", ints[i]);
        v[i] = json_object_get_int64(get(j, ints[i]));
    }
    c->embed_dim = v[0], c->num_heads = v[1], c->kdim = v[2], c->vdim = v[3], c->batch = v[4];
    c->len_q = v[5], c->len_kv = v[6], c->bias = (int)v[7], c->self_attention = (int)v[8];
    c->causal = (int)v[9];
    if (files == NULL || !json_object_is_type(masks, json_type_array) || dtype == NULL ||
        strcmp(json_object_get_string(dtype), "float32") != 0)
        return case_error(c, "case.json lacks files, masks, or dtype float32");
    for (int i = 0; i < N_FILES; i++) {
        json_object *f = get(files, file_key[i]);
        if (f == NULL && (i < BQ || i > BO)) /* only the biases are optional */
            return case_error(c, "files lacks %s", file_key[i]);
        if (f != NULL && !parse_tensor(c, f, "float32", &c->t[i]))
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

static void load_case(mha_case *c, const char *root, const char *name)
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
static void *load_tensor(mha_case *c, const tensor_spec *t, size_t item)
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

/* |a - e| <= RTOL·(|e| + row max |e|) for rows of `row` elements; *worst gets
 * the largest |a - e| / (|e| + row max). */
static int compare(mha_case *c, const char *what, const float *a, const float *e, int64_t n,
                   int64_t row, double *worst)
{
    for (int64_t r = 0; r < n / row; r++) {
        double row_max = 0;
        for (int64_t i = r * row; i < (r + 1) * row; i++)
            row_max = fmax(row_max, fabs(e[i]));
        for (int64_t i = r * row; i < (r + 1) * row; i++) {
            double err = fabs((double)a[i] - e[i]), scale = fabs(e[i]) + row_max;
            double rel = err == 0 ? 0 : scale > 0 ? err / scale : INFINITY;
            if (!(err <= RTOL * scale)) /* written so that a NaN fails */
                return case_error(c, "%s[%lld]: got %.9g, expected %.9g (rel error %.3g > %g)",
                                  what, (long long)i, a[i], e[i], rel, RTOL);
            *worst = fmax(*worst, rel);
        }
    }
    return 1;
}

static void run_state_free(run_state *r)
{
    for (int i = 0; i < N_FILES; i++)
        free(r->t[i]);
    for (int k = 0; k < N_MASK_KINDS; k++)
        free(r->mask_data[k]);
    free(r->out), free(r->out2), free(r->w);
    attn_mask_destroy(r->mask);
    attn_mha_destroy(r->mha);
    attn_context_destroy(r->ctx);
}

static int set_masks(mha_case *c, run_state *r)
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

static int configure(mha_case *c, run_state *r)
{
    for (int i = 0; i < N_FILES; i++)
        if (c->t[i].present && (r->t[i] = load_tensor(c, &c->t[i], sizeof(float))) == NULL)
            return 0;
    int ok = CHECK(c, attn_context_create(&r->ctx)) &&
             CHECK(c, attn_mha_create(&r->mha, c->embed_dim, c->num_heads, c->num_heads, c->kdim,
                                      c->vdim, c->bias)) &&
             CHECK(c, attn_mask_create(&r->mask)) &&
             (c->causal == ATTN_CAUSAL_NONE ||
              CHECK(c, attn_mha_set_causal(r->mha, (attn_causal)c->causal)));
    for (int p = 0; ok && p < 4; p++) /* ATTN_PROJ_Q .. O: Wq .. Wo, bq .. bo */
        ok = CHECK(c, attn_mha_set_weights(r->mha, (attn_proj)p, r->t[WQ + p], r->t[BQ + p]));
    return ok && set_masks(c, r);
}

static int execute(mha_case *c)
{
    run_state r = {0};
    int ok = 0;
    int64_t n_out = numel(&c->t[OUT]), n_w = numel(&c->t[WEIGHTS]);
    if (!configure(c, &r))
        goto done;
    r.out = nan_buffer(n_out), r.out2 = nan_buffer(n_out), r.w = nan_buffer(n_w);
    if (r.out == NULL || r.out2 == NULL || r.w == NULL) {
        case_error(c, "out of memory");
        goto done;
    }
    const float *q = r.t[QUERY], *k = r.t[KEY], *v = r.t[VALUE];
    if (c->self_attention) /* the same pointer thrice, as the header says */
        k = v = q;
    const attn_mask *mask = c->n_masks > 0 ? r.mask : NULL;
    ok = CHECK(c, attn_mha_forward(r.ctx, r.mha, c->batch, c->len_q, c->len_kv, q, k, v, mask,
                                   r.out, r.w)) &&
         CHECK(c, attn_mha_forward(r.ctx, r.mha, c->batch, c->len_q, c->len_kv, q, k, v, mask,
                                   r.out2, NULL)) &&
         (memcmp(r.out, r.out2, (size_t)n_out * sizeof *r.out) == 0 ||
          case_error(c, "out differs bitwise with weights = NULL")) &&
         compare(c, "out", r.out, r.t[OUT], n_out, c->embed_dim, &c->worst_out) &&
         compare(c, "weights", r.w, r.t[WEIGHTS], n_w, c->len_kv, &c->worst_w);
done:
    run_state_free(&r);
    return ok;
}

static void test_case(void **state)
{
    mha_case *c = *state;
    if (c->error[0] != '\0') /* case.json unusable: fail, never drop */
        fail_msg("%s: %s", c->name, c->error);
    if (!execute(c)) /* execute has freed everything, as fail_msg longjmps */
        fail_msg("%s: %s", c->name, c->error);
    print_message("%s: worst rel error out %.3g, weights %.3g\n", c->name, c->worst_out,
                  c->worst_w);
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
        fprintf(stderr, "usage: %s <tests/data/mha>\n", argv[0]);
        return 2;
    }
    if (*(const unsigned char *)&one != 1) { /* the .bin files are little-endian */
        fprintf(stderr, "test_mha_torch: needs a little-endian host\n");
        return 1;
    }
    int count = scandir(argv[1], &names, is_case_dir, alphasort);
    if (count <= 0) { /* the vectors are in the source tree: missing is a failure */
        fprintf(stderr, "test_mha_torch: no case folder in %s\n", argv[1]);
        free(names);
        return 1;
    }
    size_t n = (size_t)count;
    mha_case *cases = calloc(n, sizeof *cases);
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
        fprintf(stderr, "test_mha_torch: out of memory\n");
        free(cases), free(tests);
        return 1;
    }
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
                  worst < 0 ? 0.0 : worst, worst < 0 ? "none passed" : cases[worst_i].name);
    free(cases), free(tests);
    return failed != 0 || passed != n;
}
