/*
 * rope.c — rotary position embedding (Su et al. 2021, "RoFormer", §3.4.2,
 * eq. 34): the first rotary_dim features of each head are taken as
 * rotary_dim/2 pairs, and pair i at position p is rotated by the angle
 * p · inv_freq[i]:
 *
 *   (x1, x2) -> (x1 cos θ − x2 sin θ,  x2 cos θ + x1 sin θ)
 *
 * with the pairs (x[i], x[i + rotary_dim/2]) in the half-split style
 * (GPT-NeoX, Llama, HF rotate_half) and (x[2i], x[2i+1]) in the interleaved
 * style (GPT-J, Meta's complex form). The inverse rotates by −θ: it is the
 * transpose, so it is also the backward.
 *
 * Accuracy: inv_freq is kept in double and the angle p · inv_freq[i] is
 * formed, reduced and turned into cos and sin in double (glibc's sin/cos
 * reduce exactly), so position 10^6 rotates as exactly as position 1. A
 * float32 angle, as PyTorch implementations form it, is off by ~0.03 rad
 * at 10^6. The cos/sin row is computed once per position and serves every
 * head of it; positions are shared out over the context's threads.
 */
#include <math.h>
#include <string.h>

#include "attn_internal.h"
#include "block_rows.h"

/* 2π, in double (M_PI is not ISO C). */
#define ATTN_TWO_PI 6.283185307179586476925286766559

/* Where the angles come from: base^(−2i/r) (with a scaling), the caller's
 * inv_freq, or the caller's cos/sin tables (ONNX RotaryEmbedding). */
struct attn_rope {
    int64_t head_dim, rotary_dim, pairs;
    float base;
    attn_rope_style style;
    double *inv_freq;        /* [pairs] */
    float *cos, *sin;        /* NULL, or [n_positions, pairs] (tables mode) */
    int64_t n_positions;
};

/* inv_freq[i] = base^(−2i/r) = exp(−(2i/r) · ln base), in double. */
static void default_inv_freq(const attn_rope *r, double *inv_freq)
{
    double log_base = log((double)r->base);
    for (int64_t i = 0; i < r->pairs; i++)
        inv_freq[i] = exp(-(double)(2 * i) / (double)r->rotary_dim * log_base);
}

static void drop_tables(attn_rope *r)
{
    attn_free(r->cos);
    attn_free(r->sin);
    r->cos = r->sin = NULL;
    r->n_positions = 0;
}

void attn_rope_destroy(attn_rope *rope)
{
    if (!rope)
        return;
    drop_tables(rope);
    attn_free(rope->inv_freq);
    attn_free(rope);
}

attn_status attn_rope_create(attn_rope **rope, int64_t head_dim, int64_t rotary_dim, float base,
                             attn_rope_style style)
{
    static const char *f = "attn_rope_create";
    if (!rope)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "rope is NULL");
    if (head_dim < 2)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "head_dim (%lld) is below 2",
                         (long long)head_dim);
    if (rotary_dim < 2 || rotary_dim % 2 != 0 || rotary_dim > head_dim)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f,
                         "rotary_dim (%lld) is not an even number in [2, head_dim = %lld]",
                         (long long)rotary_dim, (long long)head_dim);
    if (!(isfinite(base) && base > 1.0f))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "base (%g) is not finite and > 1",
                         (double)base);
    if (style != ATTN_ROPE_HALF && style != ATTN_ROPE_INTERLEAVED)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "style (%d) is not an attn_rope_style",
                         (int)style);
    const int64_t dims[1] = {rotary_dim};
    attn_status st = attn_check_tensor(dims, 1, "the frequencies", f);
    if (st != ATTN_OK)
        return st;
    attn_rope *r = attn_alloc(sizeof *r);
    double *inv_freq = attn_alloc((size_t)(rotary_dim / 2) * sizeof *inv_freq);
    if (!r || !inv_freq) {
        attn_free(r);
        attn_free(inv_freq);
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate the rotary embedding");
    }
    *r = (attn_rope){.head_dim = head_dim, .rotary_dim = rotary_dim, .pairs = rotary_dim / 2,
                     .base = base, .style = style, .inv_freq = inv_freq};
    default_inv_freq(r, r->inv_freq);
    *rope = r;
    return ATTN_OK;
}

attn_status attn_rope_set_linear_scaling(attn_rope *rope, float factor)
{
    if (!rope)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "rope is NULL");
    if (!(isfinite(factor) && factor > 0.0f))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, __func__, "factor (%g) is not finite and > 0",
                         (double)factor);
    drop_tables(rope);
    default_inv_freq(rope, rope->inv_freq);
    for (int64_t i = 0; i < rope->pairs; i++)
        rope->inv_freq[i] /= (double)factor;
    return ATTN_OK;
}

/* HF transformers' _compute_llama3_parameters (modeling_rope_utils.py),
 * in double: wavelengths above original / low_freq_factor are slowed by
 * factor, those below original / high_freq_factor kept, and the ones
 * between blended linearly in original / wavelength. */
static double llama3_inv_freq(double inv_freq, double factor, double low, double high,
                              double original)
{
    double wavelen = ATTN_TWO_PI / inv_freq;
    if (wavelen > original / low)
        return inv_freq / factor;
    if (wavelen < original / high)
        return inv_freq;
    double smooth = (original / wavelen - low) / (high - low);
    return (1.0 - smooth) * inv_freq / factor + smooth * inv_freq;
}

attn_status attn_rope_set_llama3_scaling(attn_rope *rope, float factor, float low_freq_factor,
                                         float high_freq_factor, int64_t original_max_positions)
{
    static const char *f = "attn_rope_set_llama3_scaling";
    if (!rope)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "rope is NULL");
    if (!(isfinite(factor) && factor > 0.0f))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "factor (%g) is not finite and > 0",
                         (double)factor);
    if (!(isfinite(low_freq_factor) && low_freq_factor > 0.0f))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f,
                         "low_freq_factor (%g) is not finite and > 0", (double)low_freq_factor);
    if (!(isfinite(high_freq_factor) && high_freq_factor > low_freq_factor))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f,
                         "high_freq_factor (%g) is not finite and > low_freq_factor (%g)",
                         (double)high_freq_factor, (double)low_freq_factor);
    if (original_max_positions < 1)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "original_max_positions (%lld) is below 1",
                         (long long)original_max_positions);
    drop_tables(rope);
    default_inv_freq(rope, rope->inv_freq);
    for (int64_t i = 0; i < rope->pairs; i++)
        rope->inv_freq[i] = llama3_inv_freq(rope->inv_freq[i], factor, low_freq_factor,
                                            high_freq_factor, (double)original_max_positions);
    return ATTN_OK;
}

/* The index of the first non-finite value of x[0..n), or -1. */
static int64_t first_nonfinite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return i;
    return -1;
}

attn_status attn_rope_set_inv_freq(attn_rope *rope, const float *inv_freq)
{
    if (!rope)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "rope is NULL");
    if (!inv_freq)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "inv_freq is NULL");
    int64_t bad = first_nonfinite(inv_freq, rope->pairs);
    if (bad >= 0)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, __func__, "inv_freq[%lld] (%g) is not finite",
                         (long long)bad, (double)inv_freq[bad]);
    drop_tables(rope);
    for (int64_t i = 0; i < rope->pairs; i++)
        rope->inv_freq[i] = inv_freq[i];
    return ATTN_OK;
}

attn_status attn_rope_set_tables(attn_rope *rope, const float *cos, const float *sin,
                                 int64_t n_positions)
{
    static const char *f = "attn_rope_set_tables";
    if (!rope)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "rope is NULL");
    if (n_positions < 1)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "n_positions (%lld) is below 1",
                         (long long)n_positions);
    const int64_t dims[2] = {n_positions, rope->pairs};
    attn_status st = attn_check_tensor(dims, 2, "cos", f);
    if (st != ATTN_OK)
        return st;
    if (!cos)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "cos is NULL");
    if (!sin)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "sin is NULL");
    int64_t n = n_positions * rope->pairs, bad;
    if ((bad = first_nonfinite(cos, n)) >= 0)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "cos[%lld] (%g) is not finite",
                         (long long)bad, (double)cos[bad]);
    if ((bad = first_nonfinite(sin, n)) >= 0)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "sin[%lld] (%g) is not finite",
                         (long long)bad, (double)sin[bad]);
    float *c = attn_alloc((size_t)n * sizeof *c), *s = attn_alloc((size_t)n * sizeof *s);
    if (!c || !s) {
        attn_free(c);
        attn_free(s);
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot copy the tables (%lld floats each)",
                         (long long)n);
    }
    memcpy(c, cos, (size_t)n * sizeof *c);
    memcpy(s, sin, (size_t)n * sizeof *s);
    drop_tables(rope);
    rope->cos = c, rope->sin = s, rope->n_positions = n_positions;
    return ATTN_OK;
}

attn_status attn_rope_copy(const attn_rope *src, attn_rope **dst, const char *f)
{
    attn_rope *r = attn_alloc(sizeof *r);
    double *inv_freq = attn_alloc((size_t)src->pairs * sizeof *inv_freq);
    size_t table = (size_t)(src->n_positions * src->pairs) * sizeof(float);
    float *c = src->cos ? attn_alloc(table) : NULL, *s = src->cos ? attn_alloc(table) : NULL;
    if (!r || !inv_freq || (src->cos && (!c || !s))) {
        attn_free(r), attn_free(inv_freq), attn_free(c), attn_free(s);
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot copy the rotary embedding");
    }
    *r = *src;
    r->inv_freq = inv_freq;
    memcpy(inv_freq, src->inv_freq, (size_t)src->pairs * sizeof *inv_freq);
    r->cos = c, r->sin = s;
    if (c) {
        memcpy(c, src->cos, table);
        memcpy(s, src->sin, table);
    }
    *dst = r;
    return ATTN_OK;
}

int64_t attn_rope_head_dim(const attn_rope *rope)
{
    return rope->head_dim;
}

/* ---- applying it ------------------------------------------------------- */

attn_status attn_rope_check_positions(const attn_rope *rope, int64_t batch, int64_t seq,
                                      const int64_t *positions, int64_t start, const char *f)
{
    /* Tables have rows [0, n_positions); angles take any position (a
     * negative one rotates backwards) whose arithmetic does not overflow. */
    int64_t lo = rope->cos ? 0 : INT64_MIN, hi = rope->cos ? rope->n_positions : INT64_MAX;
    if (positions) {
        for (int64_t i = 0; i < batch * seq; i++)
            if (positions[i] < lo || positions[i] >= hi)
                return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f,
                                 "positions[%lld] (%lld) is outside the tables' [0, %lld)",
                                 (long long)i, (long long)positions[i], (long long)hi);
        return ATTN_OK;
    }
    if (seq > 0 && (start < lo || start > hi - seq))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f,
                         rope->cos ? "positions %lld .. %lld + %lld are outside the tables' "
                                     "[0, %lld)"
                                   : "positions %lld .. %lld + %lld overflow (limit %lld)",
                         (long long)start, (long long)start, (long long)seq, (long long)hi);
    return ATTN_OK;
}

/* cos and sin of pair i at position p, rows of `pairs` floats. */
static void angles_at(const attn_rope *r, int64_t p, float *cos_row, float *sin_row)
{
    if (r->cos) {
        memcpy(cos_row, r->cos + p * r->pairs, (size_t)r->pairs * sizeof(float));
        memcpy(sin_row, r->sin + p * r->pairs, (size_t)r->pairs * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < r->pairs; i++) {
        double theta = (double)p * r->inv_freq[i];
        cos_row[i] = (float)cos(theta);
        sin_row[i] = (float)sin(theta);
    }
}

/* Rotates one head's row x[0..rotary_dim) by the angles (sin already
 * negated for the inverse). */
static void rotate_row(const attn_rope *r, float *x, const float *c, const float *s)
{
    int64_t n = r->pairs;
    if (r->style == ATTN_ROPE_HALF) {
        float *x1 = x, *x2 = x + n;
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            float a = x1[i], b = x2[i];
            x1[i] = a * c[i] - b * s[i];
            x2[i] = b * c[i] + a * s[i];
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            float a = x[2 * i], b = x[2 * i + 1];
            x[2 * i] = a * c[i] - b * s[i];
            x[2 * i + 1] = b * c[i] + a * s[i];
        }
    }
}

typedef struct rope_job {
    const attn_rope *rope;
    attn_view view;
    int64_t seq, rows_per_item, rows;
    float *x;
    const int64_t *positions;
    int64_t start;
    int inverse;
    attn_context *ctx;
} rope_job;

static void rope_item(void *arg, int64_t item, int worker)
{
    const rope_job *j = arg;
    const attn_rope *r = j->rope;
    float *c = j->ctx->scratch[worker], *s = c + r->pairs;
    int64_t stride = attn_view_stride(&j->view);
    int64_t end = (item + 1) * j->rows_per_item < j->rows ? (item + 1) * j->rows_per_item
                                                          : j->rows;
    for (int64_t row = item * j->rows_per_item; row < end; row++) {
        int64_t b = row / j->seq, t = row % j->seq;
        angles_at(r, j->positions ? j->positions[row] : j->start + t, c, s);
        if (j->inverse)
            for (int64_t i = 0; i < r->pairs; i++)
                s[i] = -s[i];
        for (int64_t h = 0; h < j->view.heads; h++)
            rotate_row(r, j->x + attn_view_offset(&j->view, b, h) + t * stride, c, s);
    }
}

/* Positions per item: enough rotations (heads × pairs each) to repay a
 * wake-up of the pool, ~16k. */
static int64_t rows_per_item(const attn_rope *r, int64_t heads)
{
    int64_t per_row = heads * r->pairs;
    int64_t rows = 16384 / (per_row > 0 ? per_row : 1);
    return rows > 0 ? rows : 1;
}

/* The items and threads of a run over rows positions. */
static int64_t run_items(const attn_rope *rope, attn_view view, int64_t rows)
{
    return attn_ceil_div(rows, rows_per_item(rope, view.heads));
}

attn_status attn_rope_reserve(attn_context *ctx, const attn_rope *rope, attn_view view,
                              int64_t batch, const char *f)
{
    int64_t rows = batch * view.len;
    if (rows == 0)
        return ATTN_OK;
    int threads = attn_context_threads(ctx, run_items(rope, view, rows));
    return attn_context_reserve(ctx, f, threads, (size_t)(2 * rope->pairs));
}

attn_status attn_rope_run(attn_context *ctx, const attn_rope *rope, attn_view view,
                          int64_t batch, float *x, const int64_t *positions, int64_t start,
                          int inverse, const char *f)
{
    int64_t rows = batch * view.len;
    if (rows == 0)
        return ATTN_OK;
    attn_status st = attn_rope_reserve(ctx, rope, view, batch, f);
    if (st != ATTN_OK)
        return st;
    int64_t per_item = rows_per_item(rope, view.heads);
    int64_t items = run_items(rope, view, rows);
    int threads = attn_context_threads(ctx, items);
    rope_job job = {.rope = rope, .view = view, .seq = view.len, .rows_per_item = per_item,
                    .rows = rows, .x = x, .positions = positions, .start = start,
                    .inverse = inverse, .ctx = ctx};
    attn_context_run(ctx, threads, rope_item, &job, items);
    return ATTN_OK;
}

attn_status attn_rope_apply(attn_context *ctx, const attn_rope *rope, attn_layout layout,
                            int64_t batch, int64_t heads, int64_t seq, float *x,
                            const int64_t *positions, int64_t start, int inverse)
{
    static const char *f = "attn_rope_apply";
    if (!ctx)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "ctx is NULL");
    if (!rope)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "rope is NULL");
    if (layout != ATTN_LAYOUT_BHSD && layout != ATTN_LAYOUT_BSHD)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "layout (%d) is not an attn_layout",
                         (int)layout);
    if (inverse != 0 && inverse != 1)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "inverse (%d) is not 0 or 1", inverse);
    const int64_t counts[2] = {batch, seq};
    static const char *count_names[2] = {"batch", "seq"};
    attn_status st;
    if ((st = attn_check_min(counts, count_names, 2, 0, f)) != ATTN_OK)
        return st;
    if (heads < 1)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "heads (%lld) is below 1",
                         (long long)heads);
    const int64_t dims[4] = {batch, heads, seq, rope->head_dim}, pos_dims[2] = {batch, seq};
    if ((st = attn_check_tensor(dims, 4, "x", f)) != ATTN_OK ||
        (st = attn_check_data(x, batch * heads * seq * rope->head_dim, "x", f)) != ATTN_OK)
        return st;
    int64_t n_pos;
    if (positions && !attn_tensor_elems(pos_dims, 2, sizeof(int64_t), &n_pos))
        return attn_fail(ATTN_ERR_SIZE_OVERFLOW, f, "positions [%lld, %lld] overflow",
                         (long long)batch, (long long)seq);
    if ((st = attn_rope_check_positions(rope, batch, seq, positions, start, f)) != ATTN_OK)
        return st;
    const attn_view view = {heads, seq, rope->head_dim, layout == ATTN_LAYOUT_BSHD};
    return attn_rope_run(ctx, rope, view, batch, x, positions, start, inverse, f);
}
