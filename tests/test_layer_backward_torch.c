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
static int has_file(int kind, int i)
{
    return kind == KIND_ADDITIVE ? i != D_W : i != PARAMS && i != D_PARAMS;
}
/* The gradient tensors that carry a floor in case.json (d_params: per block). */
static int has_floor(int i)
{
    return i == D_QUERIES || i == D_KEYS || i == D_VALUES || i == D_W;
}

enum { MASK_LENGTHS, MASK_BOOL, N_MASK_KINDS };
static const char *const mask_kind[N_MASK_KINDS] = {"kv_lengths", "bool"};
static const char *const mask_dtype[N_MASK_KINDS] = {"int64", "uint8"};
static const size_t mask_item[N_MASK_KINDS] = {sizeof(int64_t), sizeof(uint8_t)};

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
    int present, rank;
    int64_t shape[4];
    char file[64];
    double floor;
} tensor_spec;

typedef struct {
    int present;
    int64_t offset, size;
    double floor;
} block_spec;

typedef struct {
    char name[128], dir[4096];
    char error[512]; /* why the case failed, or why its case.json is unusable */
    int kind;
    /* additive */
    int64_t query_dim, key_dim, hidden, batch, len_q, len_kv, dim_v, param_count;
    int keys_are_values, n_masks, per_query[N_MASK_KINDS];
    block_spec block[N_BLOCKS];
    /* Nadaraya–Watson */
    int64_t n_queries, n_keys;
    float w;
    tensor_spec t[N_FILES], mask[N_MASK_KINDS];
    double worst[N_WORST];
    int passed;
} bwd_case;

/* Everything a run allocates, so that one function frees it on every path.
 * With keys_are_values in[VALUES] and expect[D_VALUES] stay NULL. */
typedef struct {
    float *in[N_INPUTS];
    double *expect[N_FILES]; /* OUT .. D_W */
    float *params_back, *out, *out_inference, *d_queries, *d_keys, *d_values, *d_params;
    float d_w;
    void *mask_data[N_MASK_KINDS];
    attn_context *ctx;
    attn_additive *op;
    attn_mask *mask;
    attn_activations *act;
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

static int is_number(json_object *j)
{
    return json_object_is_type(j, json_type_double) || json_object_is_type(j, json_type_int);
}

static int parse_tensor(bwd_case *c, json_object *j, const char *dtype, int want_floor,
                        tensor_spec *t)
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
    if (want_floor) {
        if (!is_number(get(j, "floor")))
            return case_error(c, "%s lacks its floor", t->file);
        t->floor = json_object_get_double(get(j, "floor"));
        if (!(t->floor >= 0 && isfinite(t->floor)))
            return case_error(c, "%s has floor %g", t->file, t->floor);
    }
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

/* case.json's param_blocks must be attn_additive_get_params's layout (from
 * attn.h: W_q [hidden, query_dim], W_k [hidden, key_dim], w_v [hidden]),
 * contiguous, and the parameter files must hold param_count floats. */
static int check_blocks(bwd_case *c)
{
    const int64_t size[N_BLOCKS] = {c->hidden * c->query_dim, c->hidden * c->key_dim,
                                    c->hidden};
    int64_t offset = 0;
    for (int b = 0; b < N_BLOCKS; b++) {
        if (!c->block[b].present)
            return case_error(c, "param_blocks: %s missing", block_name[b]);
        if (c->block[b].offset != offset || c->block[b].size != size[b])
            return case_error(c, "param_blocks: %s at %lld size %lld, expected at %lld size %lld",
                              block_name[b], (long long)c->block[b].offset,
                              (long long)c->block[b].size, (long long)offset, (long long)size[b]);
        if (!(c->block[b].floor >= 0 && isfinite(c->block[b].floor)))
            return case_error(c, "param_blocks: %s has floor %g", block_name[b],
                              c->block[b].floor);
        offset += size[b];
    }
    if (offset != c->param_count)
        return case_error(c, "param_count %lld, the layout gives %lld", (long long)c->param_count,
                          (long long)offset);
    return expect_shape(c, &c->t[PARAMS], 1, offset, 0, 0, 0) &&
           expect_shape(c, &c->t[D_PARAMS], 1, offset, 0, 0, 0);
}

static int check_additive_shapes(bwd_case *c)
{
    int64_t b = c->batch, q = c->len_q, kv = c->len_kv, dv = c->dim_v;
    int ok = expect_shape(c, &c->t[QUERIES], 3, b, q, c->query_dim, 0) &&
             expect_shape(c, &c->t[KEYS], 3, b, kv, c->key_dim, 0) &&
             expect_shape(c, &c->t[VALUES], 3, b, kv, dv, 0) &&
             expect_shape(c, &c->t[D_OUT], 3, b, q, dv, 0) &&
             expect_shape(c, &c->t[OUT], 3, b, q, dv, 0) &&
             expect_shape(c, &c->t[D_QUERIES], 3, b, q, c->query_dim, 0) &&
             expect_shape(c, &c->t[D_KEYS], 3, b, kv, c->key_dim, 0) &&
             expect_shape(c, &c->t[D_VALUES], 3, b, kv, dv, 0) && check_blocks(c);
    if (ok && c->mask[MASK_LENGTHS].present)
        ok = c->per_query[MASK_LENGTHS]
                 ? expect_shape(c, &c->mask[MASK_LENGTHS], 2, b, q, 0, 0)
                 : expect_shape(c, &c->mask[MASK_LENGTHS], 1, b, 0, 0, 0);
    if (ok && c->mask[MASK_BOOL].present) /* the additive layer's masks have 1 head */
        ok = expect_shape(c, &c->mask[MASK_BOOL], 4, b, 1, q, kv);
    if (ok && c->keys_are_values) /* one input and one gradient file for both */
        ok = (c->key_dim == dv && strcmp(c->t[VALUES].file, c->t[KEYS].file) == 0 &&
              strcmp(c->t[D_VALUES].file, c->t[D_KEYS].file) == 0) ||
             case_error(c, "keys_are_values with key_dim != dim_v, or with separate input or "
                           "gradient files");
    return ok;
}

static int check_nw_shapes(bwd_case *c)
{
    int64_t nq = c->n_queries, nk = c->n_keys;
    return expect_shape(c, &c->t[QUERIES], 1, nq, 0, 0, 0) &&
           expect_shape(c, &c->t[KEYS], 1, nk, 0, 0, 0) &&
           expect_shape(c, &c->t[VALUES], 1, nk, 0, 0, 0) &&
           expect_shape(c, &c->t[D_OUT], 1, nq, 0, 0, 0) &&
           expect_shape(c, &c->t[OUT], 1, nq, 0, 0, 0) &&
           expect_shape(c, &c->t[D_QUERIES], 1, nq, 0, 0, 0) &&
           expect_shape(c, &c->t[D_KEYS], 1, nk, 0, 0, 0) &&
           expect_shape(c, &c->t[D_VALUES], 1, nk, 0, 0, 0) &&
           expect_shape(c, &c->t[D_W], 1, 1, 0, 0, 0);
}

static int parse_blocks(bwd_case *c, json_object *blocks)
{
    size_t n = json_object_array_length(blocks);
    for (size_t i = 0; i < n; i++) {
        json_object *jb = json_object_array_get_idx(blocks, i), *shape = get(jb, "shape");
        const char *name = json_object_get_string(get(jb, "name"));
        int b = 0;
        while (b < N_BLOCKS && (name == NULL || strcmp(name, block_name[b]) != 0))
            b++;
        if (b == N_BLOCKS || c->block[b].present)
            return case_error(c, "param block %s unknown or repeated", name ? name : "(none)");
        if (!json_object_is_type(get(jb, "offset"), json_type_int) ||
            !json_object_is_type(shape, json_type_array) || !is_number(get(jb, "floor")))
            return case_error(c, "param block %s lacks offset, shape or floor", name);
        c->block[b].offset = json_object_get_int64(get(jb, "offset"));
        c->block[b].size = 1;
        for (size_t d = 0; d < json_object_array_length(shape); d++)
            c->block[b].size *= json_object_get_int64(json_object_array_get_idx(shape, d));
        c->block[b].floor = json_object_get_double(get(jb, "floor"));
        c->block[b].present = 1;
    }
    return 1;
}

static int parse_ints(bwd_case *c, json_object *j, const char *const *keys, int n, int64_t *v)
{
    for (int i = 0; i < n; i++) {
        if (!json_object_is_type(get(j, keys[i]), json_type_int))
            return case_error(c, "case.json lacks the integer %s", keys[i]);
        v[i] = json_object_get_int64(get(j, keys[i]));
    }
    return 1;
}

static int parse_additive(bwd_case *c, json_object *j)
{
    static const char *const ints[] = {"query_dim", "key_dim", "hidden", "batch",
                                       "len_q",     "len_kv",  "dim_v",  "param_count"};
    int64_t v[8];
    json_object *masks = get(j, "masks"), *blocks = get(j, "param_blocks");
    json_object *kv_same = get(j, "keys_are_values");
    if (!parse_ints(c, j, ints, 8, v))
        return 0;
    c->query_dim = v[0], c->key_dim = v[1], c->hidden = v[2], c->batch = v[3];
    c->len_q = v[4], c->len_kv = v[5], c->dim_v = v[6], c->param_count = v[7];
    if (!json_object_is_type(masks, json_type_array) ||
        !json_object_is_type(blocks, json_type_array) ||
        !json_object_is_type(kv_same, json_type_boolean))
        return case_error(c, "case.json lacks masks, param_blocks or the boolean "
                             "keys_are_values");
    c->keys_are_values = json_object_get_boolean(kv_same);
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
        if (!parse_tensor(c, m, mask_dtype[k], 0, &c->mask[k]))
            return 0;
    }
    return parse_blocks(c, blocks) && check_additive_shapes(c);
}

static int parse_nw(bwd_case *c, json_object *j)
{
    static const char *const ints[] = {"n_queries", "n_keys"};
    int64_t v[2];
    json_object *w = get(j, "w");
    if (!parse_ints(c, j, ints, 2, v))
        return 0;
    c->n_queries = v[0], c->n_keys = v[1];
    if (!is_number(w))
        return case_error(c, "case.json lacks the number w");
    double wd = json_object_get_double(w);
    c->w = (float)wd;
    if ((double)c->w != wd) /* the generator gives torch a float32 value */
        return case_error(c, "w = %.17g is not a float32 value", wd);
    return check_nw_shapes(c);
}

static int parse_case(bwd_case *c, json_object *j)
{
    json_object *files = get(j, "files");
    const char *kind = json_object_get_string(get(j, "kind"));
    c->kind = 0;
    while (c->kind < N_KINDS && (kind == NULL || strcmp(kind, kind_name[c->kind]) != 0))
        c->kind++;
    if (c->kind == N_KINDS)
        return case_error(c, "case.json's kind %s is neither additive nor nadaraya_watson",
                          kind ? kind : "(none)");
    if (files == NULL)
        return case_error(c, "case.json lacks files");
    for (int i = 0; i < N_FILES; i++) {
        json_object *f = get(files, file_key[i]);
        if (!has_file(c->kind, i))
            continue;
        if (f == NULL)
            return case_error(c, "files lacks %s", file_key[i]);
        if (!parse_tensor(c, f, i < N_INPUTS ? "float32" : "float64", has_floor(i), &c->t[i]))
            return 0;
    }
    return c->kind == KIND_ADDITIVE ? parse_additive(c, j) : parse_nw(c, j);
}

static void load_case(bwd_case *c, const char *root, const char *name)
{
    char path[4200];
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->dir, sizeof c->dir, "%s/%s", root, name);
    for (int w = 0; w < N_WORST; w++)
        c->worst[w] = -1;
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

/* |a - e| <= RTOL·(|e| + max(max|e| over each group of `group` elements,
 * floor)): a group is an output row, or the whole tensor or parameter block
 * with group = n; *worst gets the largest |a - e| / (|e| + that). `first` is
 * the index of a[0] in the message (a block's offset in d_params). */
static int compare(bwd_case *c, const char *what, const float *a, const double *e, int64_t n,
                   int64_t group, double floor, int64_t first, double *worst)
{
    *worst = fmax(*worst, 0);
    for (int64_t r = 0; r < n / group; r++) {
        double group_max = floor;
        for (int64_t i = r * group; i < (r + 1) * group; i++)
            group_max = fmax(group_max, fabs(e[i]));
        for (int64_t i = r * group; i < (r + 1) * group; i++) {
            double err = fabs((double)a[i] - e[i]), scale = fabs(e[i]) + group_max;
            double rel = err == 0 ? 0 : scale > 0 ? err / scale : INFINITY;
            if (!(err <= RTOL * scale)) /* written so that a NaN fails */
                return case_error(c, "%s[%lld]: got %.9g, expected %.17g (rel error %.3g > %g)",
                                  what, (long long)(first + i), a[i], e[i], rel, RTOL);
            *worst = fmax(*worst, rel);
        }
    }
    return 1;
}

/* A whole gradient tensor, normalised over the tensor with its floor. */
static int compare_grad(bwd_case *c, int file, const char *what, const float *a,
                        const double *e, double *worst)
{
    int64_t n = numel(&c->t[file]);
    return compare(c, what, a, e, n, n, c->t[file].floor, 0, worst);
}

/* a and b (n floats) must be the same bits. */
static int same_bits(bwd_case *c, const char *what, const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof *a) != 0)
            return case_error(c, "%s[%lld]: %.9g, expected bitwise %.9g", what, (long long)i,
                              a[i], b[i]);
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
    free(r->params_back), free(r->out), free(r->out_inference);
    free(r->d_queries), free(r->d_keys), free(r->d_values), free(r->d_params);
    attn_activations_destroy(r->act);
    attn_mask_destroy(r->mask);
    attn_additive_destroy(r->op);
    attn_context_destroy(r->ctx);
}

/* keys_are_values skips the alias of the keys and of d_keys. */
static int is_alias(const bwd_case *c, int i)
{
    return c->keys_are_values && (i == VALUES || i == D_VALUES);
}

/* Loads the case's inputs and expected results, allocates the NaN-filled
 * outputs and makes the context. */
static int load_all(bwd_case *c, run_state *r)
{
    for (int i = 0; i < N_FILES; i++) {
        if (!has_file(c->kind, i) || is_alias(c, i))
            continue;
        if (i < N_INPUTS ? (r->in[i] = load_tensor(c, &c->t[i], sizeof(float))) == NULL
                         : (r->expect[i] = load_tensor(c, &c->t[i], sizeof(double))) == NULL)
            return 0;
    }
    int64_t n_out = numel(&c->t[OUT]);
    r->out = nan_buffer(n_out), r->out_inference = nan_buffer(n_out);
    r->d_queries = nan_buffer(numel(&c->t[D_QUERIES]));
    r->d_keys = nan_buffer(numel(&c->t[D_KEYS]));
    if (!c->keys_are_values)
        r->d_values = nan_buffer(numel(&c->t[D_VALUES]));
    if (c->kind == KIND_ADDITIVE)
        r->params_back = nan_buffer(c->param_count), r->d_params = nan_buffer(c->param_count);
    r->d_w = NAN;
    if (r->out == NULL || r->out_inference == NULL || r->d_queries == NULL ||
        r->d_keys == NULL || (!c->keys_are_values && r->d_values == NULL) ||
        (c->kind == KIND_ADDITIVE && (r->params_back == NULL || r->d_params == NULL)))
        return case_error(c, "out of memory");
    return CHECK(c, attn_context_create(&r->ctx));
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
        attn_status st = k == MASK_LENGTHS
                             ? attn_mask_set_kv_lengths(r->mask, m, c->batch, c->len_q,
                                                        c->per_query[k])
                             : attn_mask_set_bool(r->mask, m, d[0], d[1], d[2], d[3]);
        if (!check(c, st, mask_kind[k]))
            return 0;
    }
    return 1;
}

/* The additive layer with its parameters (checking the count and the
 * bitwise round trip), and the mask. */
static int configure_additive(bwd_case *c, run_state *r)
{
    int64_t count = -1;
    return CHECK(c, attn_additive_create(&r->op, c->query_dim, c->key_dim, c->hidden)) &&
           CHECK(c, attn_additive_param_count(r->op, &count)) &&
           (count == c->param_count ||
            case_error(c, "attn_additive_param_count gives %lld, the stored vector has %lld",
                       (long long)count, (long long)c->param_count)) &&
           CHECK(c, attn_additive_set_params(r->op, r->in[PARAMS])) &&
           CHECK(c, attn_additive_get_params(r->op, r->params_back)) &&
           same_bits(c, "attn_additive_get_params", r->params_back, r->in[PARAMS], count) &&
           CHECK(c, attn_mask_create(&r->mask)) && set_masks(c, r) &&
           CHECK(c, attn_activations_create(&r->act));
}

static int compare_params(bwd_case *c, const float *a, const double *e)
{
    for (int b = 0; b < N_BLOCKS; b++) {
        const block_spec *s = &c->block[b];
        char what[32];
        snprintf(what, sizeof what, "d_params (%s)", block_name[b]);
        if (!compare(c, what, a + s->offset, e + s->offset, s->size, s->size, s->floor,
                     s->offset, &c->worst[W_BLOCK0 + b]))
            return 0;
    }
    return 1;
}

static int run_additive(bwd_case *c, run_state *r)
{
    const float *q = r->in[QUERIES], *k = r->in[KEYS], *v = r->in[VALUES];
    float *dk = r->d_keys, *dv = r->d_values;
    if (c->keys_are_values) /* the same pointer twice, input and gradient */
        v = k, dv = dk;
    if (!configure_additive(c, r))
        return 0;
    const attn_mask *mask = c->n_masks > 0 ? r->mask : NULL;
    int64_t b = c->batch, lq = c->len_q, lkv = c->len_kv, d = c->dim_v;
    return CHECK(c, attn_additive_forward_train(r->ctx, r->op, b, lq, lkv, d, q, k, v, mask,
                                                r->out, NULL, r->act)) &&
           compare(c, "out", r->out, r->expect[OUT], numel(&c->t[OUT]), d, 0, 0,
                   &c->worst[W_OUT]) &&
           CHECK(c, attn_additive_backward(r->ctx, r->op, r->act, r->in[D_OUT], r->d_queries,
                                           dk, dv, r->d_params)) &&
           compare_grad(c, D_QUERIES, "d_queries", r->d_queries, r->expect[D_QUERIES],
                        &c->worst[W_DQ]) &&
           compare_grad(c, D_KEYS, c->keys_are_values ? "d_keys + d_values" : "d_keys", dk,
                        r->expect[D_KEYS], &c->worst[W_DK]) &&
           (c->keys_are_values || compare_grad(c, D_VALUES, "d_values", dv,
                                               r->expect[D_VALUES], &c->worst[W_DV])) &&
           compare_params(c, r->d_params, r->expect[D_PARAMS]) &&
           CHECK(c, attn_additive_forward(r->ctx, r->op, b, lq, lkv, d, q, k, v, mask,
                                          r->out_inference, NULL)) &&
           same_bits(c, "attn_additive_forward's out (vs attn_additive_forward_train's)",
                     r->out_inference, r->out, numel(&c->t[OUT]));
}

static int run_nw(bwd_case *c, run_state *r)
{
    const float *x = r->in[QUERIES], *k = r->in[KEYS], *v = r->in[VALUES];
    int64_t nq = c->n_queries, nk = c->n_keys;
    /* out normalised over the whole tensor: see the header. */
    return CHECK(c, attn_nadaraya_watson(r->ctx, nq, nk, x, k, v, c->w, r->out, NULL)) &&
           compare(c, "out", r->out, r->expect[OUT], nq, nq, 0, 0, &c->worst[W_OUT]) &&
           CHECK(c, attn_nadaraya_watson_backward(r->ctx, nq, nk, x, k, v, c->w, r->in[D_OUT],
                                                  r->d_queries, r->d_keys, r->d_values,
                                                  &r->d_w)) &&
           compare_grad(c, D_QUERIES, "d_queries", r->d_queries, r->expect[D_QUERIES],
                        &c->worst[W_DQ]) &&
           compare_grad(c, D_KEYS, "d_keys", r->d_keys, r->expect[D_KEYS], &c->worst[W_DK]) &&
           compare_grad(c, D_VALUES, "d_values", r->d_values, r->expect[D_VALUES],
                        &c->worst[W_DV]) &&
           compare_grad(c, D_W, "d_w", &r->d_w, r->expect[D_W], &c->worst[W_DW]);
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
    if (c->error[0] != '\0') /* case.json unusable: fail, never drop */
        fail_msg("%s: %s", c->name, c->error);
    if (!execute(c)) /* execute has freed everything, as fail_msg longjmps */
        fail_msg("%s: %s", c->name, c->error);
    for (int w = 0; w < N_WORST; w++)
        if (c->worst[w] >= 0) {
            size_t used = strlen(line);
            snprintf(line + used, sizeof line - used, "%s%s%s %.3g", used ? ", " : "",
                     w == W_DK && c->keys_are_values ? "d_keys + d_values" : worst_name[w],
                     (w >= W_BLOCK0 ? c->block[w - W_BLOCK0].floor
                                    : c->t[worst_file[w]].floor) > 0 ? " (floor)" : "",
                     c->worst[w]);
        }
    print_message("%s: worst rel error %s\n", c->name, line);
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
        fprintf(stderr, "usage: %s <tests/data/layer_backward>\n", argv[0]);
        return 2;
    }
    if (*(const unsigned char *)&one != 1) { /* the .bin files are little-endian */
        fprintf(stderr, "test_layer_backward_torch: needs a little-endian host\n");
        return 1;
    }
    int count = scandir(argv[1], &names, is_case_dir, alphasort);
    if (count <= 0) { /* the vectors are in the source tree: missing is a failure */
        fprintf(stderr, "test_layer_backward_torch: no case folder in %s\n", argv[1]);
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
        fprintf(stderr, "test_layer_backward_torch: out of memory\n");
        free(cases), free(tests);
        return 1;
    }
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
                              cases[worst_i[k][w]].name);
    }
    print_message("\n");
    free(cases), free(tests);
    return failed != 0 || passed != n;
}
