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
#define _POSIX_C_SOURCE 200809L /* stat */

#include <attn.h>

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

#include "golden.h"

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

typedef struct {
    golden_case g; /* name, folder, error (why the case failed, or why its case.json is unusable) */
    golden_tensor t[N_SLOTS]; /* the slots of case.json */
    dtype type[N_SLOTS];      /* each slot's dtype; DT_NONE: the node leaves it empty */
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

/* 1 if a libattn call succeeded; else 0, and the failure is the case's error. */
#define CHECK(c, call) golden_check(&(c)->g, (call), #call)

/* ---------------------------------------------------------------- case.json */

/* A slot of case.json: JSON null is an empty optional slot (DT_NONE). */
static int parse_tensor(onnx_case *c, json_object *j, int slot)
{
    if (j == NULL)
        return 1;
    if (!golden_parse_tensor(&c->g, j, NULL, 0, &c->t[slot]))
        return 0;
    for (c->type[slot] = DT_FLOAT32; c->type[slot] < DT_OTHER; c->type[slot]++)
        if (strcmp(c->t[slot].dtype, dtype_name[c->type[slot]]) == 0)
            break;
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
            return golden_error(&c->g, "attribute %s = %s not handled", key,
                                json_object_get_string(val));
    }
    if (c->qk_mode < 0 || c->qk_mode > 3)
        return golden_error(&c->g, "qk_matmul_output_mode %d is not defined", c->qk_mode);
    return 1;
}

static enum skip_kind classify(const onnx_case *c)
{
    if (c->softcap != 0)
        return SKIP_SOFTCAP;
    if (c->type[PAST_K] || c->type[PAST_V] || c->type[PRESENT_K] || c->type[PRESENT_V])
        return SKIP_PAST_KV;
    if (c->type[QK] && c->qk_mode != 3)
        return SKIP_QK_MODE;
    for (int i = 0; i < N_SLOTS; i++)
        if (c->type[i] == DT_FLOAT16)
            return SKIP_FP16;
    return RUN;
}

static int parse_case(golden_case *g, json_object *j)
{
    onnx_case *c = (onnx_case *)g;
    json_object *attrs = golden_get(j, "attributes"), *ins = golden_get(j, "inputs");
    json_object *outs = golden_get(j, "outputs"), *tol = golden_get(j, "tolerance_onnx_runner");
    json_object *rtol = golden_get(tol, "rtol"), *atol = golden_get(tol, "atol");
    if (attrs == NULL || rtol == NULL || atol == NULL ||
        !json_object_is_type(ins, json_type_array) || json_object_array_length(ins) != N_IN ||
        !json_object_is_type(outs, json_type_array) || json_object_array_length(outs) != N_OUT)
        return golden_error(g, "case.json lacks attributes, tolerance or 7 inputs and 4 outputs");
    c->rtol = json_object_get_double(rtol);
    c->atol = json_object_get_double(atol);
    for (size_t i = 0; i < N_SLOTS; i++) {
        json_object *slot = i < N_IN ? json_object_array_get_idx(ins, i)
                                     : json_object_array_get_idx(outs, i - N_IN);
        if (!parse_tensor(c, slot, (int)i))
            return 0;
    }
    if (!c->type[Q] || !c->type[K] || !c->type[V] || !c->type[Y])
        return golden_error(g, "Q, K, V or Y missing");
    if (!parse_attributes(c, attrs))
        return 0;
    c->skip = classify(c);
    return 1;
}

/* ---------------------------------------------------------------- tensors */

static void *alloc_bytes(size_t bytes)
{
    return malloc(bytes ? bytes : 1); /* malloc(0) may give NULL, which is no failure */
}

/* Reads a slot as `want`: raw little-endian, the host's order (main checks). */
static void *load_tensor(onnx_case *c, int slot, dtype want)
{
    const golden_tensor *t = &c->t[slot];
    void *buf = c->type[slot] == want ? golden_load_tensor(&c->g, t, itemsize[want]) : NULL;
    if (buf == NULL) /* golden_load_tensor's message, with the dtypes */
        golden_error(&c->g, "cannot read %s/%s as exactly %zu bytes of %s (case.json: %s)",
                     c->g.dir, t->file, (size_t)golden_numel(t) * itemsize[want],
                     dtype_name[want], dtype_name[c->type[slot]]);
    return buf;
}

/* Guards every buffer the library reads or writes against a misread shape. */
static int expect_numel(onnx_case *c, int slot, int64_t n)
{
    long long have = (long long)golden_numel(&c->t[slot]);
    return have == n || golden_error(&c->g, "%s has %lld elements, the op needs %lld",
                                     c->t[slot].file, have, (long long)n);
}

/* ---------------------------------------------------------------- mapping */

static int derive_dims(onnx_case *c, dims *m)
{
    const int64_t *q = c->t[Q].shape, *k = c->t[K].shape, *v = c->t[V].shape;
    int rank = c->t[Q].rank;
    int64_t hq = c->q_heads, hkv = c->kv_heads;
    if (c->t[K].rank != rank || c->t[V].rank != rank || (rank != 3 && rank != 4))
        return golden_error(&c->g, "Q, K, V ranks %d, %d, %d", rank, c->t[K].rank, c->t[V].rank);
    if (rank == 4)
        *m = (dims){.b = q[0], .hq = q[1], .sq = q[2], .d = q[3],
                    .hkv = k[1], .t = k[2], .dv = v[3]};
    else if (hq < 1 || hkv < 1 || q[2] % hq != 0 || v[2] % hkv != 0)
        return golden_error(&c->g, "3-D hidden sizes do not split into q_num_heads, kv_num_heads");
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
    const golden_tensor *t = &c->t[MASK];
    int is_bool = c->type[MASK] == DT_BOOL;
    int64_t s[4] = {1, 1, 1, 1};
    for (int i = 0; i < t->rank; i++)
        s[4 - t->rank + i] = t->shape[i]; /* numpy broadcasting aligns shapes on the right */
    if (s[3] > m->t)
        return golden_error(&c->g, "attn_mask's last dimension exceeds T = %lld", (long long)m->t);
    const void *data = r->mask_file = load_tensor(c, MASK, is_bool ? DT_BOOL : DT_FLOAT32);
    if (data == NULL)
        return 0;
    if (s[3] < m->t) {
        data = r->mask_padded = pad_last_dim(data, s[0] * s[1] * s[2], s[3], m->t, is_bool);
        if (data == NULL)
            return golden_error(&c->g, "out of memory");
    }
    if (is_bool)
        return CHECK(c, attn_mask_set_bool(r->mask, data, s[0], s[1], s[2], m->t));
    return CHECK(c, attn_mask_set_bias(r->mask, data, s[0], s[1], s[2], m->t));
}

static int set_nonpad(onnx_case *c, const dims *m, run_state *r)
{
    if (c->t[NONPAD].rank != 1 || c->t[NONPAD].shape[0] != m->b)
        return golden_error(&c->g, "nonpad_kv_seqlen is not [B]");
    if ((r->nonpad = load_tensor(c, NONPAD, DT_INT64)) == NULL)
        return 0;
    if (!c->is_causal)
        return CHECK(c, attn_mask_set_kv_lengths(r->mask, r->nonpad, m->b, 0, 0));
    if ((r->lengths = alloc_bytes((size_t)(m->b * m->sq) * sizeof *r->lengths)) == NULL)
        return golden_error(&c->g, "out of memory");
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
           (!c->is_causal || c->type[NONPAD] ||
            CHECK(c, attn_sdpa_set_causal(r->op, ATTN_CAUSAL_TOP_LEFT))) &&
           (!c->type[MASK] || set_attn_mask(c, m, r)) &&
           (!c->type[NONPAD] || set_nonpad(c, m, r));
}

/* ---------------------------------------------------------------- running */

static int compare(onnx_case *c, const char *what, const float *a, const float *e, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double got = a[i], want = e[i];
        double err = got == want ? 0.0 : fabs(got - want); /* == also for equal infinities */
        if (isnan(want))
            return golden_error(&c->g, "%s[%lld]: NaN expected (never in these vectors)", what,
                                (long long)i);
        if (!(err <= c->atol + c->rtol * fabs(want))) /* written so that a NaN fails */
            return golden_error(&c->g,
                                "%s[%lld]: got %.9g, expected %.9g (|diff| %.3g > %g + %g * |e|)",
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
    int ok = 0, want_w = c->type[QK] != DT_NONE; /* mode 3: classify skipped modes 0-2 */
    if (!derive_dims(c, &m))
        return 0;
    int64_t n_y = m.b * m.hq * m.sq * m.dv, n_w = m.b * m.hq * m.sq * m.t;
    if (!(r.q = load_tensor(c, Q, DT_FLOAT32)) || !(r.k = load_tensor(c, K, DT_FLOAT32)) ||
        !(r.v = load_tensor(c, V, DT_FLOAT32)) || !(r.y_exp = load_tensor(c, Y, DT_FLOAT32)) ||
        (want_w && (!expect_numel(c, QK, n_w) || !(r.w_exp = load_tensor(c, QK, DT_FLOAT32)))) ||
        !configure(c, &m, &r))
        goto done;
    r.y = golden_nan_floats(n_y);
    r.w = want_w ? golden_nan_floats(n_w) : NULL;
    if (r.y == NULL || (want_w && r.w == NULL)) {
        golden_error(&c->g, "out of memory");
        goto done;
    }
    /* Without mask inputs the mask is passed as NULL, to exercise that path too. */
    const attn_mask *mask = c->type[MASK] || c->type[NONPAD] ? r.mask : NULL;
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
    if (c->g.error[0] != '\0') /* case.json unusable: fail, never drop */
        fail_msg("%s: %s", c->g.name, c->g.error);
    if (c->skip != RUN) {
        print_message("%s: skipped: %s\n", c->g.name, skips[c->skip].reason);
        skip();
    }
    c->ran = 1;
    if (!execute(c)) /* execute has freed everything, as fail_msg longjmps */
        fail_msg("%s: %s", c->g.name, c->g.error);
    print_message("%s: max abs error %.3g\n", c->g.name, c->max_err);
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

int main(int argc, char **argv)
{
    size_t n = 0;
    int status = golden_check_args(argc, argv, "test_onnx", "<onnx-attention folder>");
    if (status != 0)
        return status;
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
    /* Every test_attention_* folder is a case (golden_load_cases lists the
     * folder rather than index.json, so that no case is left out). */
    onnx_case *cases = golden_load_cases(argv[1], "test_attention_", sizeof *cases, parse_case,
                                         NULL, &n);
    struct CMUnitTest *tests = calloc(n ? n : 1, sizeof *tests);
    if (cases == NULL || tests == NULL) {
        fprintf(stderr, "test_onnx: no test_attention_* case readable in %s\n", argv[1]);
        free(cases), free(tests);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        tests[i] = (struct CMUnitTest){
            .name = cases[i].g.name, .test_func = test_case, .initial_state = &cases[i]};
    /* cmocka_run_group_tests_name() takes the sizeof of a static array; this
     * one is built at run time, so call the function the macro expands to. */
    int failed = _cmocka_run_group_tests("onnx", tests, n, NULL, NULL);
    print_summary(cases, n);
    free(cases), free(tests);
    return failed != 0;
}
