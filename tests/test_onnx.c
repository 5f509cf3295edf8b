/*
 * test_onnx.c: libattn against the ONNX Attention conformance vectors
 * (tests/data/onnx-attention, the ONNX backend node tests of opsets 23 and 24
 * as case.json + raw little-endian .bin; see its README.md and PROVENANCE.md).
 *
 * Usage: test_onnx <onnx-attention folder>; a missing folder is a failure,
 * since the vectors are part of the project. Each test_attention_* case is one
 * CMocka test that runs and must match the stored outputs within the ONNX
 * runner's tolerance (|a - e| <= atol + rtol·|e|). A case this file cannot
 * read or translate fails.
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
 * - softcap: attn_sdpa_set_softcap((float)softcap).
 * - past_key/past_value (B, Hkv, P, D) (a KV cache inside the op): each batch
 *   row is a sequence of an attn_kv_cache (pages of 4 tokens) to which its P
 *   past tokens and then its Skv new ones are appended; attn_kv_cache_read
 *   gives the T = P + Skv tokens back, which are present_key/present_value
 *   (compared, in (B, Hkv, T, D)) and the K, V the attention reads. Causal
 *   with a cache is offset P: query i sees keys j <= i + P, the per-query
 *   lengths min(i + P + 1, T) (per_query 1, causal NONE), which differs
 *   from bottom-right when Skv != Sq (the README's offset-12 case).
 * - qk_matmul_output: mode 3 (softmax probabilities) is libattn's weights w;
 *   modes 0-2 (scores before the softmax) are recovered from w and the lse:
 *   log w + lse is the final score (mode 2: after softcap and bias, −∞ where
 *   masked); minus the bias it is the score before the bias (mode 1, and
 *   mode 0, which the reference computes after the softcap too: README
 *   §10). A score of a masked key cannot be recovered that way; no mode 0-1
 *   vector has one (the runner fails if it meets one).
 * - float16 tensors (4 cases): read as float32, which is exact; libattn's
 *   float32 results are compared with the float16 expected values within the
 *   case's tolerance, as a float16 model that computes in float32 would see.
 * No case is skipped.
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
    int ran, passed;
} onnx_case;

/* The sizes of one run, in libattn's terms: t = p past + s_kv new keys. */
typedef struct { int64_t b, hq, hkv, sq, t, d, dv, p, s_kv; int bshd; } dims;

/* Everything a run allocates, so that one function frees it on every path. */
typedef struct {
    float *q, *k, *v, *y, *y_exp, *w, *w_exp, *lse, *scores;
    float *past_k, *past_v, *k_all, *v_all, *present_k, *present_v, *rows_k, *rows_v;
    void *mask_file, *mask_padded;
    int64_t *nonpad, *lengths;
    attn_context *ctx; attn_sdpa *op; attn_mask *mask; attn_kv_cache *cache;
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
    return 1;
}

/* ---------------------------------------------------------------- tensors */

static void *alloc_bytes(size_t bytes)
{
    return malloc(bytes ? bytes : 1); /* malloc(0) may give NULL, which is no failure */
}

/* Reads a slot as `want`: raw little-endian, the host's order (main checks). */
/* IEEE 754 binary16 to binary32 (exact: every half is a float). */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    float f;
    if (exp == 0x1f) {  /* Inf or NaN */
        uint32_t bits = sign | 0x7f800000u | (mant << 13);
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    f = exp == 0 ? ldexpf((float)mant, -24) : ldexpf((float)(mant | 0x400), (int)exp - 25);
    return sign ? -f : f;
}

/* A float16 slot read as float32 (libattn computes in float32: a float16
 * model converts its tensors, exactly, and rounds the results back). */
static float *load_half_as_float(onnx_case *c, int slot)
{
    const golden_tensor *t = &c->t[slot];
    uint16_t *h = golden_load_tensor(&c->g, t, 2);
    int64_t n = golden_numel(t);
    float *f = h ? alloc_bytes((size_t)n * sizeof *f) : NULL;
    for (int64_t i = 0; f && i < n; i++)
        f[i] = half_to_float(h[i]);
    free(h);
    return f;
}

static void *load_tensor(onnx_case *c, int slot, dtype want)
{
    const golden_tensor *t = &c->t[slot];
    if (want == DT_FLOAT32 && c->type[slot] == DT_FLOAT16)
        return load_half_as_float(c, slot);
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
                    .hkv = k[1], .s_kv = k[2], .dv = v[3]};
    else if (hq < 1 || hkv < 1 || q[2] % hq != 0 || v[2] % hkv != 0)
        return golden_error(&c->g, "3-D hidden sizes do not split into q_num_heads, kv_num_heads");
    else
        *m = (dims){.b = q[0], .hq = hq, .sq = q[1], .d = q[2] / hq,
                    .hkv = hkv, .s_kv = k[1], .dv = v[2] / hkv, .bshd = 1};
    if (c->type[PAST_K] != c->type[PAST_V])
        return golden_error(&c->g, "past_key without past_value, or the reverse");
    if (c->type[PAST_K]) {
        if (c->t[PAST_K].rank != 4 || c->type[NONPAD])
            return golden_error(&c->g, "past_key is not 4-D, or comes with nonpad_kv_seqlen");
        m->p = c->t[PAST_K].shape[2];
    }
    m->t = m->p + m->s_kv;
    return expect_numel(c, Q, m->b * m->hq * m->sq * m->d) &&
           expect_numel(c, K, m->b * m->hkv * m->s_kv * m->d) &&
           expect_numel(c, V, m->b * m->hkv * m->s_kv * m->dv) &&
           (!c->type[PAST_K] || (expect_numel(c, PAST_K, m->b * m->hkv * m->p * m->d) &&
                                 expect_numel(c, PAST_V, m->b * m->hkv * m->p * m->dv))) &&
           (!c->type[PRESENT_K] || expect_numel(c, PRESENT_K, m->b * m->hkv * m->t * m->d)) &&
           (!c->type[PRESENT_V] || expect_numel(c, PRESENT_V, m->b * m->hkv * m->t * m->dv)) &&
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
    /* a float16 mask is read as float32 too (load_tensor) */
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

/* Causal with past keys: query i sees keys j <= i + P, a prefix of the T
 * keys, so per-query lengths express it. */
static int set_past_causal(onnx_case *c, const dims *m, run_state *r)
{
    if ((r->lengths = alloc_bytes((size_t)(m->b * m->sq) * sizeof *r->lengths)) == NULL)
        return golden_error(&c->g, "out of memory");
    for (int64_t b = 0; b < m->b; b++)
        for (int64_t i = 0; i < m->sq; i++)
            r->lengths[b * m->sq + i] = m->p + i + 1 < m->t ? m->p + i + 1 : m->t;
    return CHECK(c, attn_mask_set_kv_lengths(r->mask, r->lengths, m->b, m->sq, 1));
}

static int configure(onnx_case *c, const dims *m, run_state *r)
{
    int past = c->type[PAST_K] != DT_NONE;
    return CHECK(c, attn_context_create(&r->ctx)) &&
           CHECK(c, attn_sdpa_create(&r->op, m->b, m->hq, m->hkv, m->sq, m->t, m->d, m->dv)) &&
           CHECK(c, attn_mask_create(&r->mask)) &&
           (!m->bshd || CHECK(c, attn_sdpa_set_layout(r->op, ATTN_LAYOUT_BSHD))) &&
           (!c->has_scale || CHECK(c, attn_sdpa_set_scale(r->op, (float)c->scale))) &&
           CHECK(c, attn_sdpa_set_softcap(r->op, (float)c->softcap)) &&
           /* with nonpad_kv_seqlen or a past, the causal bound is in the
            * per-query lengths */
           (!c->is_causal || c->type[NONPAD] || past ||
            CHECK(c, attn_sdpa_set_causal(r->op, ATTN_CAUSAL_TOP_LEFT))) &&
           (!c->is_causal || !past || set_past_causal(c, m, r)) &&
           (!c->type[MASK] || set_attn_mask(c, m, r)) &&
           (!c->type[NONPAD] || set_nonpad(c, m, r));
}

/* ---------------------------------------------------------------- the cache */

/* Offset of row (b, h, s) of a (B, H, S, dim) tensor, or of a (B, S, H·dim)
 * one when bshd. */
static int64_t row_at(int bshd, int64_t heads, int64_t len, int64_t dim, int64_t b, int64_t h,
                      int64_t s)
{
    return bshd ? ((b * len + s) * heads + h) * dim : ((b * heads + h) * len + s) * dim;
}

/* Appends n tokens of batch row b of x (B, Hkv, S, dim) or (B, S, Hkv·dim),
 * starting at token s0, token-major through rows. */
static void gather_rows(const float *x, int bshd, int64_t hkv, int64_t len, int64_t dim,
                        int64_t b, int64_t n, float *rows)
{
    for (int64_t s = 0; s < n; s++)
        for (int64_t g = 0; g < hkv; g++)
            memcpy(rows + (s * hkv + g) * dim, x + row_at(bshd, hkv, len, dim, b, g, s),
                   (size_t)dim * sizeof(float));
}

/* Each batch row's past then new keys and values through an attn_kv_cache
 * sequence, read back: present_* (B, Hkv, T, D) and the K, V the attention
 * reads, in the op's layout. */
static int run_cache(onnx_case *c, const dims *m, run_state *r)
{
    int64_t page = 4, pages = m->b * ((m->t + page - 1) / page + 1);
    int64_t nk = m->b * m->hkv * m->t * m->d, nv = m->b * m->hkv * m->t * m->dv;
    if (!(r->past_k = load_tensor(c, PAST_K, DT_FLOAT32)) ||
        !(r->past_v = load_tensor(c, PAST_V, DT_FLOAT32)) ||
        !CHECK(c, attn_kv_cache_create(&r->cache, m->hkv, m->d, m->dv, page, pages)))
        return 0;
    r->rows_k = alloc_bytes((size_t)(m->t * m->hkv * m->d) * sizeof(float));
    r->rows_v = alloc_bytes((size_t)(m->t * m->hkv * m->dv) * sizeof(float));
    r->present_k = alloc_bytes((size_t)nk * sizeof(float));
    r->present_v = alloc_bytes((size_t)nv * sizeof(float));
    r->k_all = alloc_bytes((size_t)nk * sizeof(float));
    r->v_all = alloc_bytes((size_t)nv * sizeof(float));
    if (!r->rows_k || !r->rows_v || !r->present_k || !r->present_v || !r->k_all || !r->v_all)
        return golden_error(&c->g, "out of memory");
    for (int64_t b = 0; b < m->b; b++) {
        int64_t seq;
        if (!CHECK(c, attn_kv_cache_seq_open(r->cache, &seq)))
            return 0;
        gather_rows(r->past_k, 0, m->hkv, m->p, m->d, b, m->p, r->rows_k);
        gather_rows(r->past_v, 0, m->hkv, m->p, m->dv, b, m->p, r->rows_v);
        if (!CHECK(c, attn_kv_cache_append(r->cache, seq, m->p, r->rows_k, r->rows_v)))
            return 0;
        gather_rows(r->k, m->bshd, m->hkv, m->s_kv, m->d, b, m->s_kv, r->rows_k);
        gather_rows(r->v, m->bshd, m->hkv, m->s_kv, m->dv, b, m->s_kv, r->rows_v);
        if (!CHECK(c, attn_kv_cache_append(r->cache, seq, m->s_kv, r->rows_k, r->rows_v)) ||
            !CHECK(c, attn_kv_cache_read(r->cache, seq, 0, m->t, r->rows_k, r->rows_v)))
            return 0;
        for (int64_t t = 0; t < m->t; t++)
            for (int64_t g = 0; g < m->hkv; g++) {
                const float *rk = r->rows_k + (t * m->hkv + g) * m->d;
                const float *rv = r->rows_v + (t * m->hkv + g) * m->dv;
                size_t bk = (size_t)m->d * sizeof(float), bv = (size_t)m->dv * sizeof(float);
                memcpy(r->present_k + row_at(0, m->hkv, m->t, m->d, b, g, t), rk, bk);
                memcpy(r->present_v + row_at(0, m->hkv, m->t, m->dv, b, g, t), rv, bv);
                memcpy(r->k_all + row_at(m->bshd, m->hkv, m->t, m->d, b, g, t), rk, bk);
                memcpy(r->v_all + row_at(m->bshd, m->hkv, m->t, m->dv, b, g, t), rv, bv);
            }
    }
    return 1;
}

/* ---------------------------------------------------------------- scores */

/* The bias the mask adds at (b, h, i, j), 0 without a float mask. */
static float bias_at(const onnx_case *c, const dims *m, const run_state *r, int64_t b, int64_t h,
                     int64_t i, int64_t j)
{
    if (c->type[MASK] != DT_FLOAT32 && c->type[MASK] != DT_FLOAT16)
        return 0.0f;
    const golden_tensor *t = &c->t[MASK];
    int64_t s[4] = {1, 1, 1, 1};
    for (int d = 0; d < t->rank; d++)
        s[4 - t->rank + d] = t->shape[d];
    const float *bias = r->mask_padded ? r->mask_padded : r->mask_file;
    int64_t bb = s[0] == 1 ? 0 : b, hh = s[1] == 1 ? 0 : h, ii = s[2] == 1 ? 0 : i;
    return bias[((bb * s[1] + hh) * s[2] + ii) * m->t + j];
}

/* qk_matmul_output modes 0-2 from the weights and lse (see the top). */
static int recover_scores(onnx_case *c, const dims *m, run_state *r)
{
    int64_t n = m->b * m->hq * m->sq * m->t;
    if ((r->scores = alloc_bytes((size_t)n * sizeof(float))) == NULL)
        return golden_error(&c->g, "out of memory");
    for (int64_t b = 0; b < m->b; b++)
        for (int64_t h = 0; h < m->hq; h++)
            for (int64_t i = 0; i < m->sq; i++) {
                int64_t row = (b * m->hq + h) * m->sq + i;
                for (int64_t j = 0; j < m->t; j++) {
                    double w = r->w[row * m->t + j];
                    double score = log(w) + r->lse[row];  /* −∞ where w = 0 */
                    if (c->qk_mode < 2) {
                        if (w == 0.0)
                            return golden_error(&c->g, "the mode-%d score at (%lld, %lld, %lld, "
                                                "%lld) is masked: not recoverable", c->qk_mode,
                                                (long long)b, (long long)h, (long long)i,
                                                (long long)j);
                        score -= bias_at(c, m, r, b, h, i, j);
                    }
                    r->scores[row * m->t + j] = (float)score;
                }
            }
    return 1;
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
    free(r->lse), free(r->scores), free(r->past_k), free(r->past_v), free(r->k_all);
    free(r->v_all), free(r->present_k), free(r->present_v), free(r->rows_k), free(r->rows_v);
    free(r->mask_file), free(r->mask_padded), free(r->nonpad), free(r->lengths);
    attn_kv_cache_destroy(r->cache);
    attn_mask_destroy(r->mask);
    attn_sdpa_destroy(r->op);
    attn_context_destroy(r->ctx);
}

/* Compares an output slot, when the case has it, with `got`. */
static int compare_slot(onnx_case *c, int slot, const char *what, const float *got, int64_t n)
{
    if (!c->type[slot])
        return 1;
    float *want = load_tensor(c, slot, DT_FLOAT32);
    int ok = want != NULL && compare(c, what, got, want, n);
    free(want);
    return ok;
}

static int execute(onnx_case *c)
{
    dims m = {0};
    run_state r = {0};
    int ok = 0, want_w = c->type[QK] != DT_NONE, past = c->type[PAST_K] != DT_NONE;
    if (!derive_dims(c, &m))
        return 0;
    int64_t n_y = m.b * m.hq * m.sq * m.dv, n_w = m.b * m.hq * m.sq * m.t;
    if (!(r.q = load_tensor(c, Q, DT_FLOAT32)) || !(r.k = load_tensor(c, K, DT_FLOAT32)) ||
        !(r.v = load_tensor(c, V, DT_FLOAT32)) || !(r.y_exp = load_tensor(c, Y, DT_FLOAT32)) ||
        (want_w && (!expect_numel(c, QK, n_w) || !(r.w_exp = load_tensor(c, QK, DT_FLOAT32)))) ||
        (past && !run_cache(c, &m, &r)) || !configure(c, &m, &r))
        goto done;
    r.y = golden_nan_floats(n_y);
    r.w = want_w ? golden_nan_floats(n_w) : NULL;
    r.lse = want_w ? golden_nan_floats(m.b * m.hq * m.sq) : NULL;
    if (r.y == NULL || (want_w && (r.w == NULL || r.lse == NULL))) {
        golden_error(&c->g, "out of memory");
        goto done;
    }
    /* Without mask inputs the mask is passed as NULL, to exercise that path too. */
    const attn_mask *mask =
        c->type[MASK] || c->type[NONPAD] || (past && c->is_causal) ? r.mask : NULL;
    const float *k = past ? r.k_all : r.k, *v = past ? r.v_all : r.v;
    ok = CHECK(c, attn_sdpa_forward(r.ctx, r.op, r.q, k, v, mask, r.y, r.w, r.lse)) &&
         compare(c, "Y", r.y, r.y_exp, n_y) &&
         (!want_w || c->qk_mode == 3 || recover_scores(c, &m, &r)) &&
         (!want_w || compare(c, "qk_matmul_output", c->qk_mode == 3 ? r.w : r.scores, r.w_exp,
                             n_w)) &&
         (!past || (compare_slot(c, PRESENT_K, "present_key", r.present_k,
                                 m.b * m.hkv * m.t * m.d) &&
                    compare_slot(c, PRESENT_V, "present_value", r.present_v,
                                 m.b * m.hkv * m.t * m.dv)));
done:
    run_state_free(&r);
    return ok;
}

static void test_case(void **state)
{
    onnx_case *c = *state;
    if (c->g.error[0] != '\0') /* case.json unusable: fail, never drop */
        fail_msg("%s: %s", c->g.name, c->g.error);
    c->ran = 1;
    if (!execute(c)) /* execute has freed everything, as fail_msg longjmps */
        fail_msg("%s: %s", c->g.name, c->g.error);
    print_message("%s: max abs error %.3g\n", c->g.name, c->max_err);
    c->passed = 1;
}

/* ---------------------------------------------------------------- main */

static void print_summary(const onnx_case *cases, size_t n)
{
    int ran = 0, passed = 0;
    double max_err = 0;
    for (size_t i = 0; i < n; i++) {
        ran += cases[i].ran;
        passed += cases[i].passed;
        max_err = fmax(max_err, cases[i].max_err);
    }
    print_message("onnx: %zu cases, %d ran, %d passed; max abs error %.3g\n", n, ran, passed,
                  max_err);
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
