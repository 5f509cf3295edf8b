/*
 * test_onnx.c: libattn against the ONNX Attention conformance vectors
 * (tests/data/onnx-attention, the ONNX backend node tests of opsets 23 and 24
 * as case.json + raw little-endian .bin; see its README.md and PROVENANCE.md).
 *
 * Usage: test_onnx <onnx-attention folder>; a missing folder is a failure,
 * since the vectors are part of the project. Each test_attention_* case is one
 * CMocka test that runs and must match the stored outputs within the ONNX
 * runner's tolerance (|a - e| <= atol + rtol·|e|), or is skipped with its
 * reason printed. A case this file cannot read or translate fails.
 *
 * How an ONNX Attention node is expressed in libattn:
 * - 4-D Q/K/V (B, H, S, D): ATTN_LAYOUT_BHSD, sizes from the shapes.
 * - 3-D Q/K/V (B, S, H·D): ATTN_LAYOUT_BSHD, heads from q_num_heads and
 *   kv_num_heads, D = hidden / heads (Dv from V and kv_num_heads). ONNX splits
 *   the hidden axis head-major, which is BSHD; Y (B, Sq, Hq·Dv) is BSHD out.
 * - scale: attn_sdpa_set_scale((float)scale), as the JSON holds the model's
 *   float32 printed as a double. Absent, both default to 1/sqrt(D).
 * - is_causal = 1: ATTN_CAUSAL_TOP_LEFT (ONNX without a cache is top-left,
 *   also when Sq != T).
 * - attn_mask: bool -> attn_mask_set_bool (true = attend in both), float ->
 *   attn_mask_set_bias. ONNX broadcasts right-aligned, so rank r < 4 gets
 *   leading 1s: rank 2 (Sq, T) is mb = mh = 1, mq = Sq. A last dimension
 *   shorter than T is padded at the end with false / -INFINITY (opset 24).
 * - nonpad_kv_seqlen [B] without causal: attn_mask_set_kv_lengths, per_query 0.
 * - nonpad_kv_seqlen with is_causal (external cache): query i sees keys
 *   j <= nonpad[b] - Sq + i and j < nonpad[b]. Both bounds cut a prefix, so
 *   they are exactly the per-query lengths clamp(nonpad[b] - Sq + i + 1, 0,
 *   nonpad[b]) (per_query 1, causal NONE); the offset differs per batch row,
 *   which no attn_causal value expresses. Length 0 rows are zeros in both.
 * - qk_matmul_output in mode 3 (softmax probabilities): libattn's weights.
 * Skipped, having no libattn equivalent, each counted under the first reason
 * that applies in this order: softcap != 0; a KV cache inside the op
 * (past_* inputs or present_* outputs); qk_matmul_output in mode 0, 1 or 2;
 * any float16 tensor.
 */
#define _POSIX_C_SOURCE 200809L /* scandir, alphasort */

#include <attn.h>

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
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

/* case.json's 7 "inputs" then its 4 "outputs", by position. */
enum { Q, K, V, MASK, PAST_K, PAST_V, NONPAD, Y, PRESENT_K, PRESENT_V, QK, N_SLOTS };
enum { N_IN = Y, N_OUT = N_SLOTS - Y };

enum skip_kind { RUN, SKIP_SOFTCAP, SKIP_PAST_KV, SKIP_QK_MODE, SKIP_FP16, N_KINDS };
static const struct { const char *label, *reason; } skips[N_KINDS] = {
    {"", ""},
    {"softcap", "softcap (tanh capping of the scores) has no libattn equivalent"},
    {"past_kv", "a KV cache inside the operator (past/present key, value) is not libattn's"},
    {"qk_matmul_output mode 0-2", "qk_matmul_output modes 0-2 (pre-softmax scores): not libattn's"},
    {"float16", "float16 tensors: libattn is float32-only"},
};

typedef enum { DT_NONE, DT_FLOAT32, DT_FLOAT16, DT_BOOL, DT_INT64, DT_OTHER } dtype;
static const char *const dtype_name[] = {"none", "float32", "float16", "bool", "int64", "other"};
static const size_t itemsize[] = {0, 4, 2, 1, 8, 0};

/* One slot of case.json; type DT_NONE: the node leaves it empty. */
typedef struct { dtype type; int rank; int64_t shape[4]; char file[64]; } tensor_spec;

typedef struct {
    char name[128], dir[4096];
    char error[512]; /* why the case failed, or why its case.json is unusable */
    tensor_spec t[N_SLOTS];
    int is_causal, qk_mode, has_scale;
    int64_t q_heads, kv_heads; /* attributes of the 3-D cases */
    double softcap, scale, rtol, atol, max_err;
    enum skip_kind skip;
    int ran, passed;
} onnx_case;

/* The sizes of one run, in libattn's terms. */
typedef struct { int64_t b, hq, hkv, sq, t, d, dv; int bshd; } dims;

/* Everything a run allocates, so that one function frees it on every path. */
typedef struct {
    float *q, *k, *v, *y, *y_exp, *w, *w_exp;
    void *mask_file, *mask_padded;
    int64_t *nonpad, *lengths;
    attn_context *ctx; attn_sdpa *op; attn_mask *mask;
} run_state;

static int case_error(onnx_case *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    return 0;
}

/* 1 if a libattn call succeeded; else 0, and the failure is the case's error. */
#define CHECK(c, call) check((c), (call), #call)
static int check(onnx_case *c, attn_status st, const char *call)
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

static int parse_tensor(onnx_case *c, json_object *j, tensor_spec *t)
{
    if (j == NULL) /* JSON null: an empty optional slot */
        return 1;
    json_object *dtype_str = get(j, "dtype"), *shape = get(j, "shape"), *file = get(j, "file");
    if (dtype_str == NULL || file == NULL || !json_object_is_type(shape, json_type_array))
        return case_error(c, "a tensor lacks dtype, shape or file");
    for (t->type = DT_FLOAT32; t->type < DT_OTHER; t->type++)
        if (strcmp(json_object_get_string(dtype_str), dtype_name[t->type]) == 0)
            break;
    snprintf(t->file, sizeof t->file, "%s", json_object_get_string(file));
    t->rank = (int)json_object_array_length(shape);
    if (t->rank < 1 || t->rank > 4)
        return case_error(c, "%s has rank %d", t->file, t->rank);
    for (int i = 0; i < t->rank; i++)
        t->shape[i] = json_object_get_int64(json_object_array_get_idx(shape, (size_t)i));
    return 1;
}

static int parse_attributes(onnx_case *c, json_object *attrs)
{
    json_object_object_foreach(attrs, key, val) {
        if (strcmp(key, "is_causal") == 0)
            c->is_causal = json_object_get_int(val);
        else if (strcmp(key, "softcap") == 0)
            c->softcap = json_object_get_double(val);
        else if (strcmp(key, "qk_matmul_output_mode") == 0)
            c->qk_mode = json_object_get_int(val);
        else if (strcmp(key, "scale") == 0)
            c->has_scale = 1, c->scale = json_object_get_double(val);
        else if (strcmp(key, "q_num_heads") == 0)
            c->q_heads = json_object_get_int64(val);
        else if (strcmp(key, "kv_num_heads") == 0)
            c->kv_heads = json_object_get_int64(val);
        else if (strcmp(key, "softmax_precision") != 0 || json_object_get_int(val) != 1)
            /* softmax_precision 1 (float32) is what libattn computes in; any
             * other attribute is not translated, so it must not be ignored. */
            return case_error(c, "attribute %s = %s not handled", key, json_object_get_string(val));
    }
    if (c->qk_mode < 0 || c->qk_mode > 3)
        return case_error(c, "qk_matmul_output_mode %d is not defined", c->qk_mode);
    return 1;
}

static int parse_case(onnx_case *c, json_object *j)
{
    json_object *attrs = get(j, "attributes"), *ins = get(j, "inputs"), *outs = get(j, "outputs");
    json_object *tol = get(j, "tolerance_onnx_runner");
    json_object *rtol = get(tol, "rtol"), *atol = get(tol, "atol");
    if (attrs == NULL || rtol == NULL || atol == NULL ||
        !json_object_is_type(ins, json_type_array) || json_object_array_length(ins) != N_IN ||
        !json_object_is_type(outs, json_type_array) || json_object_array_length(outs) != N_OUT)
        return case_error(c, "case.json lacks attributes, tolerance or 7 inputs and 4 outputs");
    c->rtol = json_object_get_double(rtol);
    c->atol = json_object_get_double(atol);
    for (size_t i = 0; i < N_SLOTS; i++) {
        json_object *slot = i < N_IN ? json_object_array_get_idx(ins, i)
                                     : json_object_array_get_idx(outs, i - N_IN);
        if (!parse_tensor(c, slot, &c->t[i]))
            return 0;
    }
    if (!c->t[Q].type || !c->t[K].type || !c->t[V].type || !c->t[Y].type)
        return case_error(c, "Q, K, V or Y missing");
    return parse_attributes(c, attrs);
}

static enum skip_kind classify(const onnx_case *c)
{
    if (c->softcap != 0)
        return SKIP_SOFTCAP;
    if (c->t[PAST_K].type || c->t[PAST_V].type || c->t[PRESENT_K].type || c->t[PRESENT_V].type)
        return SKIP_PAST_KV;
    if (c->t[QK].type && c->qk_mode != 3)
        return SKIP_QK_MODE;
    for (int i = 0; i < N_SLOTS; i++)
        if (c->t[i].type == DT_FLOAT16)
            return SKIP_FP16;
    return RUN;
}

static void load_case(onnx_case *c, const char *root, const char *name)
{
    char path[4200];
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->dir, sizeof c->dir, "%s/%s", root, name);
    snprintf(path, sizeof path, "%s/case.json", c->dir);
    json_object *j = json_object_from_file(path);
    if (j == NULL)
        case_error(c, "cannot read %s: %s", path, json_util_get_last_err());
    else if (parse_case(c, j))
        c->skip = classify(c);
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

static void *alloc_bytes(size_t bytes)
{
    return malloc(bytes ? bytes : 1); /* malloc(0) may give NULL, which is no failure */
}

/* Reads a slot as `want`: raw little-endian, the host's order (main checks). */
static void *load_tensor(onnx_case *c, int slot, dtype want)
{
    const tensor_spec *t = &c->t[slot];
    size_t bytes = (size_t)numel(t) * itemsize[want];
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", c->dir, t->file);
    FILE *f = t->type == want ? fopen(path, "rb") : NULL;
    void *buf = f != NULL ? alloc_bytes(bytes) : NULL;
    /* The file must hold exactly shape × itemsize bytes: any other size means
     * that the shape or the dtype is misread. */
    int ok = buf != NULL && fread(buf, 1, bytes, f) == bytes && fgetc(f) == EOF;
    if (f != NULL)
        fclose(f);
    if (!ok) {
        free(buf);
        case_error(c, "cannot read %s as exactly %zu bytes of %s (case.json: %s)", path, bytes,
                   dtype_name[want], dtype_name[t->type]);
        return NULL;
    }
    return buf;
}

/* An output buffer of NaN, so that an element the library forgets to write
 * fails the comparison. */
static float *nan_buffer(int64_t n)
{
    float *p = alloc_bytes((size_t)n * sizeof *p);
    for (int64_t i = 0; p != NULL && i < n; i++)
        p[i] = NAN;
    return p;
}

/* Guards every buffer the library reads or writes against a misread shape. */
static int expect_numel(onnx_case *c, int slot, int64_t n)
{
    long long have = (long long)numel(&c->t[slot]);
    return have == n || case_error(c, "%s has %lld elements, the op needs %lld", c->t[slot].file,
                                   have, (long long)n);
}

/* ---------------------------------------------------------------- mapping */

static int derive_dims(onnx_case *c, dims *m)
{
    const int64_t *q = c->t[Q].shape, *k = c->t[K].shape, *v = c->t[V].shape;
    int rank = c->t[Q].rank;
    int64_t hq = c->q_heads, hkv = c->kv_heads;
    if (c->t[K].rank != rank || c->t[V].rank != rank || (rank != 3 && rank != 4))
        return case_error(c, "Q, K, V ranks %d, %d, %d", rank, c->t[K].rank, c->t[V].rank);
    if (rank == 4)
        *m = (dims){.b = q[0], .hq = q[1], .sq = q[2], .d = q[3],
                    .hkv = k[1], .t = k[2], .dv = v[3]};
    else if (hq < 1 || hkv < 1 || q[2] % hq != 0 || v[2] % hkv != 0)
        return case_error(c, "3-D hidden sizes do not split into q_num_heads, kv_num_heads");
    else
        *m = (dims){.b = q[0], .hq = hq, .sq = q[1], .d = q[2] / hq,
                    .hkv = hkv, .t = k[1], .dv = v[2] / hkv, .bshd = 1};
    return expect_numel(c, Q, m->b * m->hq * m->sq * m->d) &&
           expect_numel(c, K, m->b * m->hkv * m->t * m->d) &&
           expect_numel(c, V, m->b * m->hkv * m->t * m->dv) &&
           expect_numel(c, Y, m->b * m->hq * m->sq * m->dv);
}

/* Copies rows of n elements into rows of t, filling the tail with "masked". */
static void *pad_last_dim(const void *src, int64_t rows, int64_t n, int64_t t, int is_bool)
{
    size_t size = is_bool ? 1 : sizeof(float);
    unsigned char *dst = alloc_bytes((size_t)(rows * t) * size);
    for (int64_t r = 0; dst != NULL && r < rows; r++) {
        unsigned char *row = dst + (size_t)(r * t) * size;
        memcpy(row, (const unsigned char *)src + (size_t)(r * n) * size, (size_t)n * size);
        if (is_bool)
            memset(row + n, 0, (size_t)(t - n));
        for (int64_t j = n; !is_bool && j < t; j++)
            ((float *)(void *)row)[j] = -INFINITY;
    }
    return dst;
}

static int set_attn_mask(onnx_case *c, const dims *m, run_state *r)
{
    const tensor_spec *t = &c->t[MASK];
    int is_bool = t->type == DT_BOOL;
    int64_t s[4] = {1, 1, 1, 1};
    for (int i = 0; i < t->rank; i++)
        s[4 - t->rank + i] = t->shape[i]; /* numpy broadcasting aligns shapes on the right */
    if (s[3] > m->t)
        return case_error(c, "attn_mask's last dimension exceeds T = %lld", (long long)m->t);
    const void *data = r->mask_file = load_tensor(c, MASK, is_bool ? DT_BOOL : DT_FLOAT32);
    if (data == NULL)
        return 0;
    if (s[3] < m->t) {
        data = r->mask_padded = pad_last_dim(data, s[0] * s[1] * s[2], s[3], m->t, is_bool);
        if (data == NULL)
            return case_error(c, "out of memory");
    }
    if (is_bool)
        return CHECK(c, attn_mask_set_bool(r->mask, data, s[0], s[1], s[2], m->t));
    return CHECK(c, attn_mask_set_bias(r->mask, data, s[0], s[1], s[2], m->t));
}

static int set_nonpad(onnx_case *c, const dims *m, run_state *r)
{
    if (c->t[NONPAD].rank != 1 || c->t[NONPAD].shape[0] != m->b)
        return case_error(c, "nonpad_kv_seqlen is not [B]");
    if ((r->nonpad = load_tensor(c, NONPAD, DT_INT64)) == NULL)
        return 0;
    if (!c->is_causal)
        return CHECK(c, attn_mask_set_kv_lengths(r->mask, r->nonpad, m->b, 0, 0));
    if ((r->lengths = alloc_bytes((size_t)(m->b * m->sq) * sizeof *r->lengths)) == NULL)
        return case_error(c, "out of memory");
    for (int64_t b = 0; b < m->b; b++)
        for (int64_t i = 0; i < m->sq; i++) {
            int64_t len = r->nonpad[b] - m->sq + i + 1; /* keys 0 .. nonpad[b] - Sq + i */
            r->lengths[b * m->sq + i] = len < 0 ? 0 : len > r->nonpad[b] ? r->nonpad[b] : len;
        }
    return CHECK(c, attn_mask_set_kv_lengths(r->mask, r->lengths, m->b, m->sq, 1));
}

static int configure(onnx_case *c, const dims *m, run_state *r)
{
    return CHECK(c, attn_context_create(&r->ctx)) &&
           CHECK(c, attn_sdpa_create(&r->op, m->b, m->hq, m->hkv, m->sq, m->t, m->d, m->dv)) &&
           CHECK(c, attn_mask_create(&r->mask)) &&
           (!m->bshd || CHECK(c, attn_sdpa_set_layout(r->op, ATTN_LAYOUT_BSHD))) &&
           (!c->has_scale || CHECK(c, attn_sdpa_set_scale(r->op, (float)c->scale))) &&
           /* with nonpad_kv_seqlen, the causal bound is in the per-query lengths */
           (!c->is_causal || c->t[NONPAD].type ||
            CHECK(c, attn_sdpa_set_causal(r->op, ATTN_CAUSAL_TOP_LEFT))) &&
           (!c->t[MASK].type || set_attn_mask(c, m, r)) &&
           (!c->t[NONPAD].type || set_nonpad(c, m, r));
}

/* ---------------------------------------------------------------- running */

static int compare(onnx_case *c, const char *what, const float *a, const float *e, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double got = a[i], want = e[i];
        double err = got == want ? 0.0 : fabs(got - want); /* == also for equal infinities */
        if (isnan(want))
            return case_error(c, "%s[%lld]: NaN expected (never in these vectors)", what,
                              (long long)i);
        if (!(err <= c->atol + c->rtol * fabs(want))) /* written so that a NaN fails */
            return case_error(c, "%s[%lld]: got %.9g, expected %.9g (|diff| %.3g > %g + %g * |e|)",
                              what, (long long)i, got, want, err, c->atol, c->rtol);
        c->max_err = fmax(c->max_err, err);
    }
    return 1;
}

static void run_state_free(run_state *r)
{
    free(r->q), free(r->k), free(r->v), free(r->y), free(r->y_exp), free(r->w), free(r->w_exp);
    free(r->mask_file), free(r->mask_padded), free(r->nonpad), free(r->lengths);
    attn_mask_destroy(r->mask);
    attn_sdpa_destroy(r->op);
    attn_context_destroy(r->ctx);
}

static int execute(onnx_case *c)
{
    dims m = {0};
    run_state r = {0};
    int ok = 0, want_w = c->t[QK].type != DT_NONE; /* mode 3: classify skipped modes 0-2 */
    if (!derive_dims(c, &m))
        return 0;
    int64_t n_y = m.b * m.hq * m.sq * m.dv, n_w = m.b * m.hq * m.sq * m.t;
    if (!(r.q = load_tensor(c, Q, DT_FLOAT32)) || !(r.k = load_tensor(c, K, DT_FLOAT32)) ||
        !(r.v = load_tensor(c, V, DT_FLOAT32)) || !(r.y_exp = load_tensor(c, Y, DT_FLOAT32)) ||
        (want_w && (!expect_numel(c, QK, n_w) || !(r.w_exp = load_tensor(c, QK, DT_FLOAT32)))) ||
        !configure(c, &m, &r))
        goto done;
    r.y = nan_buffer(n_y);
    r.w = want_w ? nan_buffer(n_w) : NULL;
    if (r.y == NULL || (want_w && r.w == NULL)) {
        case_error(c, "out of memory");
        goto done;
    }
    /* Without mask inputs the mask is passed as NULL, to exercise that path too. */
    const attn_mask *mask = c->t[MASK].type || c->t[NONPAD].type ? r.mask : NULL;
    ok = CHECK(c, attn_sdpa_forward(r.ctx, r.op, r.q, r.k, r.v, mask, r.y, r.w, NULL)) &&
         compare(c, "Y", r.y, r.y_exp, n_y) &&
         (!want_w || compare(c, "weights", r.w, r.w_exp, n_w));
done:
    run_state_free(&r);
    return ok;
}

static void test_case(void **state)
{
    onnx_case *c = *state;
    if (c->error[0] != '\0') /* case.json unusable: fail, never drop */
        fail_msg("%s: %s", c->name, c->error);
    if (c->skip != RUN) {
        print_message("%s: skipped: %s\n", c->name, skips[c->skip].reason);
        skip();
    }
    c->ran = 1;
    if (!execute(c)) /* execute has freed everything, as fail_msg longjmps */
        fail_msg("%s: %s", c->name, c->error);
    print_message("%s: max abs error %.3g\n", c->name, c->max_err);
    c->passed = 1;
}

/* ---------------------------------------------------------------- main */

static void print_summary(const onnx_case *cases, size_t n)
{
    int ran = 0, passed = 0, count[N_KINDS] = {0};
    double max_err = 0;
    for (size_t i = 0; i < n; i++) {
        ran += cases[i].ran;
        passed += cases[i].passed;
        count[cases[i].skip]++; /* RUN also holds the cases whose case.json is unusable */
        max_err = fmax(max_err, cases[i].max_err);
    }
    print_message("onnx: %zu cases, %d ran, %d passed, %d skipped (%s: %d, %s: %d, %s: %d, "
                  "%s: %d); max abs error %.3g\n", n, ran, passed, (int)n - count[RUN],
                  skips[1].label, count[1], skips[2].label, count[2], skips[3].label, count[3],
                  skips[4].label, count[4], max_err);
}

static int is_case_dir(const struct dirent *e)
{
    return strncmp(e->d_name, "test_attention_", 15) == 0;
}

/* Reads every test_attention_* folder's case.json. Listing the folder rather
 * than index.json makes sure that no case is left out. NULL on failure. */
static onnx_case *load_cases(const char *root, size_t *n)
{
    struct dirent **names;
    int count = scandir(root, &names, is_case_dir, alphasort);
    if (count <= 0)
        return NULL;
    onnx_case *cases = calloc((size_t)count, sizeof *cases);
    for (int i = 0; i < count; i++) {
        if (cases != NULL)
            load_case(&cases[i], root, names[i]->d_name);
        free(names[i]);
    }
    free(names);
    *n = (size_t)count;
    return cases;
}

int main(int argc, char **argv)
{
    size_t n = 0;
    const uint16_t one = 1;
    if (argc != 2) {
        fprintf(stderr, "usage: %s <onnx-attention folder>\n", argv[0]);
        return 2;
    }
    if (*(const unsigned char *)&one != 1) { /* the .bin files are little-endian */
        fprintf(stderr, "test_onnx: needs a little-endian host\n");
        return 1;
    }
    struct stat folder;
    const char *why = stat(argv[1], &folder) != 0 ? strerror(errno)
                      : !S_ISDIR(folder.st_mode) ? "not a directory" : NULL;
    if (why != NULL) {
        /* The vectors are in the repository: their absence is a broken
         * checkout or build setup, never a reason to skip. */
        fprintf(stderr, "test_onnx: FAILED, no conformance folder at %s (%s); it is part of "
                        "the project (tests/data/onnx-attention/PROVENANCE.md)\n",
                argv[1], why);
        return 1;
    }
    onnx_case *cases = load_cases(argv[1], &n);
    struct CMUnitTest *tests = calloc(n ? n : 1, sizeof *tests);
    if (cases == NULL || tests == NULL) {
        fprintf(stderr, "test_onnx: no test_attention_* case readable in %s\n", argv[1]);
        free(cases), free(tests);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        tests[i] = (struct CMUnitTest){
            .name = cases[i].name, .test_func = test_case, .initial_state = &cases[i]};
    /* cmocka_run_group_tests_name() takes the sizeof of a static array; this
     * one is built at run time, so call the function the macro expands to. */
    int failed = _cmocka_run_group_tests("onnx", tests, n, NULL, NULL);
    print_summary(cases, n);
    free(cases), free(tests);
    return failed != 0;
}
