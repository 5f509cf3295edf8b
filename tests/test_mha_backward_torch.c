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
enum { PARAMS, QUERY, KEY, VALUE, D_OUT, OUT, D_QUERY, D_KEY, D_VALUE, D_PARAMS, N_FILES };
#define N_INPUTS OUT /* files before OUT are float32 */
static const char *const file_key[N_FILES] = {"params", "query",   "key",   "value",
                                              "d_out",  "out",     "d_query", "d_key",
                                              "d_value", "d_params"};
enum { MASK_LENGTHS, MASK_BOOL, MASK_BIAS, N_MASK_KINDS };
static const char *const mask_kind[N_MASK_KINDS] = {"kv_lengths", "bool", "bias"};
static const char *const mask_dtype[N_MASK_KINDS] = {"int64", "uint8", "float32"};
static const size_t mask_item[N_MASK_KINDS] = {sizeof(int64_t), sizeof(uint8_t), sizeof(float)};

/* The parameter blocks of attn_mha_get_params, in order (bias blocks only
 * with bias = 1). */
enum { B_WQ, B_WK, B_WV, B_BQ, B_BK, B_BV, B_WO, B_BO, N_BLOCKS };
static const char *const block_name[N_BLOCKS] = {"Wq", "Wk", "Wv", "bq", "bk", "bv", "Wo", "bo"};

/* The worst errors of a case: out, d_query, d_key, d_value (self-attention:
 * d_input in the d_query slot, the other two unused), then each block. */
enum { W_OUT, W_DQ, W_DK, W_DV, W_BLOCK0, N_WORST = W_BLOCK0 + N_BLOCKS };

typedef struct { int present, rank; int64_t shape[4]; char file[64]; } tensor_spec;

typedef struct {
    int present;
    int64_t offset, size;
    double floor;
} block_spec;

typedef struct {
    char name[128], dir[4096];
    char error[512]; /* why the case failed, or why its case.json is unusable */
    int64_t embed_dim, num_heads, num_kv_heads, kdim, vdim, batch, len_q, len_kv, param_count;
    int bias, self_attention, causal, n_masks, per_query[N_MASK_KINDS];
    tensor_spec t[N_FILES], mask[N_MASK_KINDS];
    block_spec block[N_BLOCKS];
    double worst[N_WORST]; /* -1: not measured */
    int passed;
} bwd_case;

/* Everything a run allocates, so that one function frees it on every path.
 * Self-attention loads one input and one expected gradient: in[KEY],
 * in[VALUE], expect[D_KEY] and expect[D_VALUE] stay NULL. */
typedef struct {
    float *in[N_INPUTS];
    double *expect[N_FILES]; /* OUT .. D_PARAMS */
    float *params_back, *out, *out_inference, *d_query, *d_key, *d_value, *d_params;
    void *mask_data[N_MASK_KINDS];
    attn_context *ctx; attn_mha *mha; attn_mask *mask; attn_activations *act;
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
                        int64_t d2)
{
    const int64_t want[3] = {d0, d1, d2};
    int ok = t->rank == rank;
    for (int i = 0; ok && i < rank; i++)
        ok = t->shape[i] == want[i];
    return ok || case_error(c, "%s: shape does not fit the configuration", t->file);
}

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

/* case.json's param_blocks must be exactly that layout, contiguous, and the
 * parameter files must hold param_count floats. */
static int check_blocks(bwd_case *c)
{
    int64_t size[N_BLOCKS], offset = 0;
    layout_sizes(c, size);
    for (int b = 0; b < N_BLOCKS; b++) {
        if ((size[b] > 0) != c->block[b].present)
            return case_error(c, "param_blocks: %s %s", block_name[b],
                              size[b] > 0 ? "missing" : "on a layer without bias");
        if (size[b] == 0)
            continue;
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
    return expect_shape(c, &c->t[PARAMS], 1, offset, 0, 0) &&
           expect_shape(c, &c->t[D_PARAMS], 1, offset, 0, 0);
}

static int check_shapes(bwd_case *c)
{
    int64_t e = c->embed_dim, b = c->batch, q = c->len_q, kv = c->len_kv;
    int ok = expect_shape(c, &c->t[QUERY], 3, b, q, e) &&
             expect_shape(c, &c->t[KEY], 3, b, kv, c->kdim) &&
             expect_shape(c, &c->t[VALUE], 3, b, kv, c->vdim) &&
             expect_shape(c, &c->t[D_OUT], 3, b, q, e) &&
             expect_shape(c, &c->t[OUT], 3, b, q, e) &&
             expect_shape(c, &c->t[D_QUERY], 3, b, q, e) &&
             expect_shape(c, &c->t[D_KEY], 3, b, kv, c->kdim) &&
             expect_shape(c, &c->t[D_VALUE], 3, b, kv, c->vdim) && check_blocks(c);
    if (ok && c->num_kv_heads != c->num_heads)
        ok = case_error(c, "num_kv_heads %lld differs from num_heads",
                        (long long)c->num_kv_heads);
    if (ok && c->mask[MASK_LENGTHS].present)
        ok = c->per_query[MASK_LENGTHS]
                 ? expect_shape(c, &c->mask[MASK_LENGTHS], 2, b, q, 0)
                 : expect_shape(c, &c->mask[MASK_LENGTHS], 1, b, 0, 0);
    for (int k = MASK_BOOL; ok && k <= MASK_BIAS; k++) /* libattn checks broadcasting */
        ok = !c->mask[k].present || c->mask[k].rank == 4 ||
             case_error(c, "the %s mask is not 4-D", mask_kind[k]);
    if (ok && c->self_attention) /* one input and one gradient file for all three */
        ok = (c->kdim == e && c->vdim == e && kv == q &&
              strcmp(c->t[KEY].file, c->t[QUERY].file) == 0 &&
              strcmp(c->t[VALUE].file, c->t[QUERY].file) == 0 &&
              strcmp(c->t[D_KEY].file, c->t[D_QUERY].file) == 0 &&
              strcmp(c->t[D_VALUE].file, c->t[D_QUERY].file) == 0) ||
             case_error(c, "self-attention with kdim, vdim or len_kv apart, or with separate "
                           "input or gradient files");
    return ok;
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
            !json_object_is_type(shape, json_type_array) || get(jb, "floor") == NULL)
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

static int parse_case(bwd_case *c, json_object *j)
{
    static const char *const ints[] = {"embed_dim", "num_heads", "num_kv_heads", "kdim",
                                       "vdim",      "bias",      "batch",        "len_q",
                                       "len_kv",    "causal",    "param_count"};
    enum { N_INTS = sizeof ints / sizeof *ints };
    int64_t v[N_INTS];
    json_object *files = get(j, "files"), *masks = get(j, "masks");
    json_object *blocks = get(j, "param_blocks"), *self = get(j, "self_attention");
    for (size_t i = 0; i < N_INTS; i++) {
        if (!json_object_is_type(get(j, ints[i]), json_type_int))
            return case_error(c, "case.json lacks the integer %s", ints[i]);
        v[i] = json_object_get_int64(get(j, ints[i]));
    }
    c->embed_dim = v[0], c->num_heads = v[1], c->num_kv_heads = v[2], c->kdim = v[3];
    c->vdim = v[4], c->bias = (int)v[5], c->batch = v[6], c->len_q = v[7], c->len_kv = v[8];
    c->causal = (int)v[9], c->param_count = v[10];
    if (files == NULL || !json_object_is_type(masks, json_type_array) ||
        !json_object_is_type(blocks, json_type_array) ||
        !json_object_is_type(self, json_type_boolean))
        return case_error(c, "case.json lacks files, masks, param_blocks or the boolean "
                             "self_attention");
    c->self_attention = json_object_get_boolean(self);
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
    return parse_blocks(c, blocks) && check_shapes(c);
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
    free(r->d_query), free(r->d_key), free(r->d_value), free(r->d_params);
    attn_activations_destroy(r->act);
    attn_mask_destroy(r->mask);
    attn_mha_destroy(r->mha);
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

/* Self-attention skips the aliases of the query and of d_query. */
static int is_alias(const bwd_case *c, int i)
{
    return c->self_attention && (i == KEY || i == VALUE || i == D_KEY || i == D_VALUE);
}

/* Loads the case, makes the layer with its parameters (checking the count
 * and the bitwise round trip), the causal setting and the mask. */
static int configure(bwd_case *c, run_state *r)
{
    int64_t count = -1;
    for (int i = 0; i < N_INPUTS; i++)
        if (!is_alias(c, i) && (r->in[i] = load_tensor(c, &c->t[i], sizeof(float))) == NULL)
            return 0;
    for (int i = OUT; i < N_FILES; i++)
        if (!is_alias(c, i) && (r->expect[i] = load_tensor(c, &c->t[i], sizeof(double))) == NULL)
            return 0;
    if ((r->params_back = nan_buffer(c->param_count)) == NULL)
        return case_error(c, "out of memory");
    return CHECK(c, attn_context_create(&r->ctx)) &&
           CHECK(c, attn_mha_create(&r->mha, c->embed_dim, c->num_heads, c->num_heads, c->kdim,
                                    c->vdim, c->bias)) &&
           CHECK(c, attn_mha_param_count(r->mha, &count)) &&
           (count == c->param_count ||
            case_error(c, "attn_mha_param_count gives %lld, the stored vector has %lld",
                       (long long)count, (long long)c->param_count)) &&
           CHECK(c, attn_mha_set_params(r->mha, r->in[PARAMS])) &&
           CHECK(c, attn_mha_get_params(r->mha, r->params_back)) &&
           same_bits(c, "attn_mha_get_params", r->params_back, r->in[PARAMS], count) &&
           CHECK(c, attn_mha_set_causal(r->mha, (attn_causal)c->causal)) &&
           CHECK(c, attn_mask_create(&r->mask)) && set_masks(c, r) &&
           CHECK(c, attn_activations_create(&r->act));
}

static int compare_params(bwd_case *c, const float *a, const double *e)
{
    for (int b = 0; b < N_BLOCKS; b++) {
        const block_spec *s = &c->block[b];
        char what[32];
        if (!s->present)
            continue;
        snprintf(what, sizeof what, "d_params (%s)", block_name[b]);
        if (!compare(c, what, a + s->offset, e + s->offset, s->size, s->size, s->floor,
                     s->offset, &c->worst[W_BLOCK0 + b]))
            return 0;
    }
    return 1;
}

static int execute(bwd_case *c)
{
    run_state r = {0};
    int ok = 0;
    int64_t n_out = numel(&c->t[OUT]), n_dq = numel(&c->t[D_QUERY]),
            n_dk = numel(&c->t[D_KEY]), n_dv = numel(&c->t[D_VALUE]);
    if (!configure(c, &r))
        goto done;
    r.out = nan_buffer(n_out), r.out_inference = nan_buffer(n_out);
    r.d_query = nan_buffer(n_dq), r.d_params = nan_buffer(c->param_count);
    if (!c->self_attention)
        r.d_key = nan_buffer(n_dk), r.d_value = nan_buffer(n_dv);
    if (r.out == NULL || r.out_inference == NULL || r.d_query == NULL || r.d_params == NULL ||
        (!c->self_attention && (r.d_key == NULL || r.d_value == NULL))) {
        case_error(c, "out of memory");
        goto done;
    }
    const float *q = r.in[QUERY], *k = r.in[KEY], *v = r.in[VALUE];
    float *dq = r.d_query, *dk = r.d_key, *dv = r.d_value;
    if (c->self_attention) /* the same pointer thrice, inputs and gradients */
        k = v = q, dk = dv = dq;
    const attn_mask *mask = c->n_masks > 0 ? r.mask : NULL;
    int64_t b = c->batch, lq = c->len_q, lkv = c->len_kv;
    ok = CHECK(c, attn_mha_forward_train(r.ctx, r.mha, b, lq, lkv, q, k, v, mask, r.out, NULL,
                                         r.act)) &&
         compare(c, "out", r.out, r.expect[OUT], n_out, c->embed_dim, 0, 0, &c->worst[W_OUT]) &&
         CHECK(c, attn_mha_backward(r.ctx, r.mha, r.act, r.in[D_OUT], dq, dk, dv, r.d_params)) &&
         compare(c, c->self_attention ? "d_input" : "d_query", dq, r.expect[D_QUERY], n_dq, n_dq,
                 0, 0, &c->worst[W_DQ]) &&
         (c->self_attention ||
          (compare(c, "d_key", dk, r.expect[D_KEY], n_dk, n_dk, 0, 0, &c->worst[W_DK]) &&
           compare(c, "d_value", dv, r.expect[D_VALUE], n_dv, n_dv, 0, 0, &c->worst[W_DV]))) &&
         compare_params(c, r.d_params, r.expect[D_PARAMS]) &&
         CHECK(c, attn_mha_forward(r.ctx, r.mha, b, lq, lkv, q, k, v, mask, r.out_inference,
                                   NULL)) &&
         same_bits(c, "attn_mha_forward's out (vs attn_mha_forward_train's)", r.out_inference,
                   r.out, n_out);
done:
    run_state_free(&r);
    return ok;
}

static void test_case(void **state)
{
    bwd_case *c = *state;
    char blocks[256] = "";
    if (c->error[0] != '\0') /* case.json unusable: fail, never drop */
        fail_msg("%s: %s", c->name, c->error);
    if (!execute(c)) /* execute has freed everything, as fail_msg longjmps */
        fail_msg("%s: %s", c->name, c->error);
    for (int b = 0; b < N_BLOCKS; b++)
        if (c->block[b].present) {
            size_t used = strlen(blocks);
            snprintf(blocks + used, sizeof blocks - used, "%s%s %.3g", used ? ", " : "",
                     block_name[b], c->worst[W_BLOCK0 + b]);
        }
    if (c->self_attention)
        print_message("%s: worst rel error out %.3g, d_input %.3g; d_params: %s\n", c->name,
                      c->worst[W_OUT], c->worst[W_DQ], blocks);
    else
        print_message("%s: worst rel error out %.3g, d_query %.3g, d_key %.3g, d_value %.3g; "
                      "d_params: %s\n",
                      c->name, c->worst[W_OUT], c->worst[W_DQ], c->worst[W_DK], c->worst[W_DV],
                      blocks);
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
        fprintf(stderr, "usage: %s <tests/data/mha_backward>\n", argv[0]);
        return 2;
    }
    if (*(const unsigned char *)&one != 1) { /* the .bin files are little-endian */
        fprintf(stderr, "test_mha_backward_torch: needs a little-endian host\n");
        return 1;
    }
    int count = scandir(argv[1], &names, is_case_dir, alphasort);
    if (count <= 0) { /* the vectors are in the source tree: missing is a failure */
        fprintf(stderr, "test_mha_backward_torch: no case folder in %s\n", argv[1]);
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
        fprintf(stderr, "test_mha_backward_torch: out of memory\n");
        free(cases), free(tests);
        return 1;
    }
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
                          cases[worst_i[s]].name);
    print_message("\n");
    free(cases), free(tests);
    return failed != 0 || passed != n;
}
