/*
 * attn_internal.h — struct bodies and helpers shared by libattn's modules.
 * Nothing here is part of the ABI: the public header only names these types.
 */
#ifndef ATTN_INTERNAL_H
#define ATTN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attn.h"

/* ---- errors (status.c) ------------------------------------------------ */

/* Formats the calling thread's attn_last_error() message as "func: ..." and
 * returns `status`, so that every check is one line:
 *     return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "q is NULL"); */
attn_status attn_fail(attn_status status, const char *func, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- memory (alloc.c) ------------------------------------------------- */

/* Every allocation of the library goes through these two, so that tests can
 * inject failures in one place and so that nothing is allocated by accident
 * elsewhere. attn_alloc returns 64-byte aligned memory or NULL. */
void *attn_alloc(size_t bytes);
void  attn_free(void *p);

/* ---- size arithmetic (shape.c) ---------------------------------------- */

/* Whether the byte ranges [a, a + a_bytes) and [b, b + b_bytes) share a
 * byte. NULL or empty ranges overlap nothing. */
bool attn_ranges_overlap(const void *a, size_t a_bytes, const void *b, size_t b_bytes);

/* A float buffer of rows × cols, named for messages; p may be NULL (absent). */
typedef struct attn_buffer {
    const void *p;
    size_t rows, cols;
    const char *name;
} attn_buffer;

/* The gradient calls' rule: no output shares a byte with an input or with
 * another output, except that the first n_shared outputs may be the very
 * same pointer when their shapes are equal (self-attention: the buffer then
 * receives their sum). ATTN_ERR_INVALID_ARGUMENT "<out> overlaps <other>"
 * otherwise, checked output by output, inputs first. */
attn_status attn_check_outputs_disjoint(const attn_buffer *out, int n_out, int n_shared,
                                        const attn_buffer *in, int n_in, const char *func);

/* *out = a * b; false if the product does not fit in int64_t. a, b >= 0. */
bool attn_mul_i64(int64_t a, int64_t b, int64_t *out);

/* Element count of a tensor with n dims, and whether its byte count
 * (elements × elem_size) fits in size_t. Returns false on overflow. */
bool attn_tensor_elems(const int64_t *dims, int n, size_t elem_size, int64_t *elems);

/* The largest size the BLAS integer type (cblas `blasint`, int here) takes. */
#define ATTN_BLAS_INT_MAX 2147483647LL

/* The one-line checks every entry point is made of. Each returns ATTN_OK or
 * fails through attn_fail with a message naming func and the argument. */
/* values[i] >= min for all i, else ATTN_ERR_INVALID_ARGUMENT. */
attn_status attn_check_min(const int64_t *values, const char *const *names, int n, int64_t min,
                           const char *func);
/* p may be NULL only when the tensor has no elements (ATTN_ERR_NULL_POINTER). */
attn_status attn_check_data(const void *p, int64_t elems, const char *name, const char *func);
/* A float tensor of these dims fits in size_t bytes (ATTN_ERR_SIZE_OVERFLOW). */
attn_status attn_check_tensor(const int64_t *dims, int n, const char *name, const char *func);
/* value fits the BLAS integer type (ATTN_ERR_UNSUPPORTED). */
attn_status attn_check_blas(int64_t value, const char *name, const char *func);
/* causal is an attn_causal value (ATTN_ERR_INVALID_ARGUMENT). */
attn_status attn_check_causal(attn_causal causal, const char *func);

/* ---- vector loops ---------------------------------------------------- */

/* Builds a hot loop for AVX-512, AVX2 and the baseline, picked once at load
 * time by the CPU (softmax.c, layer_norm.c, relu_gelu.c). Not under GCC's
 * ThreadSanitizer: the clones' resolvers run while the library loads, before
 * TSan's runtime is up, and crash every program. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_THREAD__)
#define ATTN_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ATTN_VECTOR_CLONES
#endif

/* ---- threads (threadpool.c) ------------------------------------------- */

typedef struct attn_pool attn_pool;
/* One unit of parallel work: item in [0, n_items), worker in [0, n_workers]. */
typedef void (*attn_task_fn)(void *arg, int64_t item, int worker);

/* Starts n_workers background threads (n_workers >= 1). Returns
 * ATTN_ERR_OUT_OF_MEMORY if memory or a thread cannot be had. */
attn_status attn_pool_create(attn_pool **pool, int n_workers);
void        attn_pool_destroy(attn_pool *pool);
/* Runs fn for every item on the calling thread (worker 0) and background
 * workers 1..active (active <= n_workers) and returns when all are done.
 * Items are handed out dynamically; fn must not depend on which worker runs
 * an item (results stay bitwise identical for any schedule). */
void attn_pool_run(attn_pool *pool, int active, attn_task_fn fn, void *arg, int64_t n_items);

/* ---- OpenMP (openmp.c) ------------------------------------------------- */

/* True when libattn was built with OpenMP. */
bool attn_openmp_available(void);
/* omp_get_max_threads() of the calling thread (1 without OpenMP). */
int attn_openmp_max_threads(void);
/* Runs fn over n_items in an OpenMP parallel region of `threads` threads
 * (worker = omp_get_thread_num()); serially without OpenMP. */
void attn_openmp_run(int threads, attn_task_fn fn, void *arg, int64_t n_items);

/* ---- contexts (context.c) --------------------------------------------- */

/* Who runs a call's items; see context.c for how it is chosen. */
typedef enum attn_schedule {
    ATTN_SCHEDULE_POOL,          /* libattn's pool; the BLAS runs serially */
    ATTN_SCHEDULE_OPENMP,        /* an OpenMP region; an OpenMP BLAS is serial inside */
    ATTN_SCHEDULE_BLAS_THREADS,  /* the caller makes the GEMMs, the BLAS threads
                                    them; libattn's threads share the softmax */
} attn_schedule;

struct attn_context {
    int requested_threads;   /* 0 = the default, attn_default_threads() */
    attn_pool *pool;         /* NULL until a forward call needs > 1 thread */
    int pool_workers;        /* background threads in pool */
    float **scratch;         /* one buffer per thread (worker index) */
    size_t *scratch_floats;  /* capacity of each, in floats */
    int scratch_count;       /* entries in scratch / scratch_floats */
    attn_schedule schedule;  /* of the last attn_context_reserve */
    float *workspace;        /* the layers' projected activations */
    size_t workspace_floats;
};

/* The number of threads a forward call on ctx would use, never above
 * max_useful (the number of independent work items), never below 1. */
int attn_context_threads(const attn_context *ctx, int64_t max_useful);
/* The thread count of a context left at its default (before max_useful). */
int attn_default_threads(void);
/* The schedule a call on ctx uses, read from the BLAS's threads now; the
 * one a context left at its default uses. */
attn_schedule attn_context_schedule(const attn_context *ctx);
attn_schedule attn_default_schedule(void);

/* Makes sure ctx has `threads` threads and `threads` scratch buffers of at
 * least `floats` floats each. Allocates only what is missing; on failure
 * returns ATTN_ERR_OUT_OF_MEMORY with the context still usable. */
attn_status attn_context_reserve(attn_context *ctx, const char *func, int threads,
                                 size_t floats);

/* Makes sure ctx's workspace (one buffer, separate from the per-thread
 * scratch) holds `floats` floats and stores it in *out. Its contents do not
 * survive the next call. ATTN_ERR_OUT_OF_MEMORY with the context usable. */
attn_status attn_context_workspace(attn_context *ctx, const char *func, size_t floats,
                                   float **out);

/* Runs fn over n_items on `threads` threads of ctx (reserved before). */
void attn_context_run(attn_context *ctx, int threads, attn_task_fn fn, void *arg,
                      int64_t n_items);

/* ---- masks (mask.c) --------------------------------------------------- */

/* A broadcast [mb, mh, mq, len_kv] mask array (bool or bias). */
typedef struct attn_mask_array {
    bool set;
    const void *data;        /* may be NULL when the array is empty */
    int64_t mb, mh, mq, len_kv;
} attn_mask_array;

struct attn_mask {
    bool has_lengths;
    const int64_t *lengths;  /* may be NULL when batch (× len_q) is 0 */
    int64_t lengths_batch, lengths_len_q;
    int per_query;
    attn_mask_array keep;    /* uint8_t */
    attn_mask_array bias;    /* float */
};

/* The shapes a mask is checked against at forward. */
typedef struct attn_mask_dims {
    int64_t batch, heads, len_q, len_kv;
} attn_mask_dims;

/* Checks every kind set on mask against dims (shapes and length values).
 * mask may be NULL. */
attn_status attn_mask_validate(const attn_mask *mask, const attn_mask_dims *dims,
                               const char *func);

/* Row [len_kv] of a broadcast array for (b, h, i), or NULL if the kind is
 * not set. */
const void *attn_mask_row(const attn_mask_array *a, int64_t b, int64_t h, int64_t i,
                          size_t elem_size);

/* Keys >= the returned bound are masked by valid lengths for (b, i);
 * len_kv if no lengths are set. */
int64_t attn_mask_kv_limit(const attn_mask *mask, int64_t b, int64_t i, int64_t len_kv);

/* The per-batch bound only (per_query = 0), or len_kv: keys beyond it are
 * never read for batch row b. */
int64_t attn_mask_batch_limit(const attn_mask *mask, int64_t b, int64_t len_kv);

/* ---- score modifiers (score_modifiers.c) ------------------------------ */

/* The window, softcap and ALiBi settings of an SDPA op or MHA layer. */
typedef struct attn_score_mods {
    int64_t window_left, window_right;  /* -1: unbounded */
    float softcap;                      /* 0: off */
    float *alibi;                       /* NULL (off) or [heads_q] slopes, owned */
} attn_score_mods;

/* No modifier: the default of every op and layer. */
attn_score_mods attn_score_mods_none(void);
/* Whether any modifier is set. */
bool attn_score_mods_active(const attn_score_mods *m);
/* The setters' checks and stores: ATTN_ERR_INVALID_ARGUMENT (left or right
 * below -1; cap negative, NaN or infinite; a slope not finite) or
 * ATTN_ERR_OUT_OF_MEMORY (the slopes' copy), m unchanged on failure.
 * slopes NULL: Press et al.'s default slopes for `heads` heads. */
attn_status attn_score_mods_set_window(attn_score_mods *m, int64_t left, int64_t right,
                                       const char *f);
attn_status attn_score_mods_set_softcap(attn_score_mods *m, float cap, const char *f);
attn_status attn_score_mods_set_alibi(attn_score_mods *m, int64_t heads, const float *slopes,
                                      const char *f);
/* Frees the slopes: ALiBi off. */
void attn_score_mods_clear_alibi(attn_score_mods *m);
/* slopes[0..heads) = get_slopes(heads) of Press et al. 2022's code. */
void attn_alibi_default_slopes(int64_t heads, float *slopes);

/* ---- softmax (softmax.c) ---------------------------------------------- */

/* What a row of logits needs besides the logits themselves. Every index is
 * relative to the row's first computed key (row[0]). */
typedef struct attn_row_mask {
    int64_t visible_begin;    /* keys < this are masked (window) */
    int64_t visible_end;      /* keys >= this are masked (lengths, causal, window) */
    const uint8_t *keep;      /* NULL or [n]: 0 masks the key */
    const float *bias;        /* NULL or [n]: added to the logit */
    float softcap;            /* > 0: logit = softcap · tanh(logit / softcap) first */
    float *softcap_grad;      /* NULL or [n]: receives 1 − tanh² of each visible key,
                                 0 elsewhere (the backward's chain factor) */
    float alibi_slope;        /* != 0: adds −slope · |alibi_pos − j| */
    int64_t alibi_pos;        /* the query's aligned position, relative to row[0] */
} attn_row_mask;

/* Turns row[0..n) of scaled logits into exp(x − max) in place, applying m
 * (softcap, keep mask, bias, ALiBi in that order; masked keys get 0),
 * stores 1/sum in *inv_sum, and returns the row's log-sum-exp: the softmax
 * is row · *inv_sum. A row with no visible key becomes all zeros, *inv_sum
 * 0, and returns -INFINITY. */
float attn_softmax_row(float *row, int64_t n, const attn_row_mask *m, float *inv_sum);

/* Recomputes a row's softmax from the forward's log-sum-exp (the backward,
 * FlashAttention-2 Alg. 2 line 11): row[0..n) of scaled logits becomes
 * exp(x − lse) with m applied as attn_softmax_row applies it (masked keys
 * 0). An lse of ±INFINITY (a row with no visible key) gives zeros; NaN
 * logits or a NaN lse give NaN. */
void attn_softmax_row_from_lse(float *row, int64_t n, const attn_row_mask *m, float lse);

/* ---- dropout (dropout.c) ----------------------------------------------- */

/* Dropout on the attention weights: p in [0, 1), and what dropout.c derives
 * from it. */
typedef struct attn_dropout {
    float p;
    float scale;          /* 1 / (1 − p) */
    uint64_t seed;
    uint32_t threshold;   /* keep a weight when its Philox word >= this */
} attn_dropout;

attn_dropout attn_dropout_make(float p, uint64_t seed);
/* Philox 4x32-10: out = the 4 words of (counter, key). */
void attn_philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);
/* row[t] = keep(bh, i, j0 + t) ? row[t] · scale : 0 for t in [0, n), bh =
 * b · heads_q + h: row holds keys [j0, j0 + n). A dropped weight is exactly
 * 0, whatever row[t] was. */
void attn_dropout_apply(const attn_dropout *d, int64_t bh, int64_t i, int64_t j0, float *row,
                        int64_t n);
/* Element dropout of row r of a [rows, n] activation at `site` (>= 1; the
 * attention weights are site 0): row[c] = keep(site, r, c) ? row[c] ·
 * scale : 0. Applied to a gradient, it is dropout's backward. */
void attn_dropout_apply_elements(const attn_dropout *d, uint32_t site, int64_t r, float *row,
                                 int64_t n);
/* keep[j] = 1 if weight (bh, i, j) is kept, else 0, for j in [0, n). */
void attn_dropout_keep_row(const attn_dropout *d, int64_t bh, int64_t i, uint8_t *keep,
                           int64_t n);
/* The largest batch · heads_q, len_q and len_kv dropout's counter takes. */
#define ATTN_DROPOUT_MAX_INDEX 4294967295LL
/* ATTN_ERR_UNSUPPORTED when d is active (p > 0) and a shape reaches what
 * the counter can number; d may be NULL. */
attn_status attn_dropout_check_range(const attn_dropout *d, int64_t batch, int64_t heads,
                                     int64_t len_q, int64_t len_kv, const char *func);
/* *d = attn_dropout_make(p, seed), or ATTN_ERR_INVALID_ARGUMENT (d kept)
 * when p is NaN or outside [0, 1). */
attn_status attn_dropout_set(attn_dropout *d, float p, uint64_t seed, const char *func);

/* ---- attention pooling (attend.c) -------------------------------------- */

/* The geometry of a [batch, heads, len, dim] tensor in BHSD or BSHD layout. */
typedef struct attn_view {
    int64_t heads, len, dim;
    bool bshd;
} attn_view;

/* Offset of row 0 of head (b, h), and the distance between its rows. */
int64_t attn_view_offset(const attn_view *t, int64_t b, int64_t h);
int64_t attn_view_stride(const attn_view *t);

/* Writes the logits of query rows [i0, i0 + rows) of (batch b, query head h)
 * against keys [j0, j0 + n) into s, row-major with leading dimension n.
 * (The cached path's callback may take rows as heads h.. of query i0: its
 * argument says so, attn_block.head_rows.) */
typedef void (*attn_logits_fn)(const void *arg, int64_t b, int64_t h, int64_t i0, int64_t rows,
                               int64_t j0, int64_t n, float *s);
/* Writes out[rows, dim_v] (rows ldo apart) = p[rows, n] · V[j0 : j0 + n] of
 * batch row b, kv head g (the paged cache's values). */
typedef void (*attn_values_fn)(const void *arg, int64_t b, int64_t g, int64_t rows, int64_t j0,
                               int64_t n, const float *p, float *out, int64_t ldo);

typedef struct attn_attend_args {
    int64_t batch, heads_q, heads_kv, len_q, len_kv;
    attn_causal causal;
    const attn_mask *mask;   /* NULL or validated against these shapes */
    attn_logits_fn logits;
    const void *logits_arg;
    const float *v;          /* [batch, heads_kv, len_kv, dim_v] */
    attn_view v_view;
    float *out;              /* [batch, heads_q, len_q, dim_v] */
    attn_view out_view;
    float *weights;          /* NULL or [batch, heads_q, len_q, len_kv] */
    float *lse;              /* NULL or [batch, heads_q, len_q] */
    const attn_dropout *dropout; /* NULL: none; applied after the softmax */
    const attn_score_mods *mods; /* NULL: none */
    attn_values_fn values;       /* NULL: P·V reads v in place; else this computes it */
    const void *values_arg;
} attn_attend_args;

/* A range of keys [begin, end). */
typedef struct attn_key_range {
    int64_t begin, end;
} attn_key_range;

/* One block of work: query rows [i0, i0 + rows) of (batch row b, query
 * head h) — or, with head_rows, query i0 of the heads [h, h + rows), all of
 * one kv head (a decoding step's GQA group: its K and V are read once for
 * all of them) — against keys `keys`, with its output rows at out (ldo
 * apart) and row r's lse at lse[r · ld_lse] (lse NULL: not wanted). */
typedef struct attn_block {
    int64_t b, h, i0, rows;
    bool head_rows;
    attn_key_range keys;
    float *out;
    int64_t ldo;
    float *lse;
    int64_t ld_lse;
} attn_block;

/* The block's logits, masked softmax over blk->keys (each row normalised
 * over those keys; lse of those keys) and P·V, in s (rows × n floats of
 * scratch). The one block function of every forward schedule. */
void attn_attend_block(const attn_attend_args *a, const attn_block *blk, float *s);

/* The block schedule forward and backward share (block_rows.h): query rows
 * per block, the keys a block of rows [i0, i1) of batch row b may see
 * (valid lengths, causal, window; nothing outside is ever read; empty:
 * begin == end), and the mask of one row whose computed keys start at j0,
 * the one place masks and score modifiers are looked up for a row. */
int64_t attn_attend_block_rows(const attn_attend_args *a);
attn_key_range attn_attend_block_keys(const attn_attend_args *a, int64_t b, int64_t i0,
                                      int64_t i1);
attn_row_mask attn_attend_row_mask(const attn_attend_args *a, int64_t b, int64_t h, int64_t i,
                                   int64_t j0);

/* Under the BLAS-threaded schedule, the element-wise work of a block
 * (softmax, the backward's P and dS) is shared over libattn's threads only
 * from this many logits on (~20 µs of exp): waking the pool costs several
 * µs, which small causal blocks do not repay. */
#define ATTN_SHARED_SOFTMAX_MIN (64 * 1024)

/* out = masked softmax(logits) · V for every (b, h, i). Every argument must
 * have been validated; the only failure left is ATTN_ERR_OUT_OF_MEMORY (for
 * scratch or threads), reported before anything is written. */
attn_status attn_attend(attn_context *ctx, const attn_attend_args *a, const char *func);

/* ---- scaled dot-product attention (sdpa.c) ----------------------------- */

/* The two inputs of the scaled dot-product logits. */
typedef struct attn_qk {
    const float *q;          /* [batch, heads_q, len_q, dim_qk] */
    attn_view q_view;
    const float *k;          /* [batch, heads_kv, len_kv, dim_qk] */
    attn_view k_view;
    float scale;
} attn_qk;

/* attn_attend with logits scale · Q Kᵀ (fills a->logits). Used by SDPA and by
 * the multi-head layer on its projections. */
attn_status attn_dot_product_attend(attn_context *ctx, const attn_qk *qk, attn_attend_args *a,
                                    const char *func);
/* Sets a->logits to scale · Q Kᵀ of qk, as attn_dot_product_attend does. */
void attn_dot_product_logits(const attn_qk *qk, attn_attend_args *a);

/* ---- rotary position embedding (rope.c) -------------------------------- */

/* A deep copy of src (the layer's own, attn_mha_set_rope):
 * ATTN_ERR_OUT_OF_MEMORY. */
attn_status attn_rope_copy(const attn_rope *src, attn_rope **dst, const char *f);
int64_t attn_rope_head_dim(const attn_rope *rope);
/* ATTN_ERR_INVALID_ARGUMENT unless every position (positions [batch, seq],
 * or start .. start + seq − 1 when NULL) is one the rope can rotate by:
 * [0, n_positions) with tables, any that does not overflow with angles. */
attn_status attn_rope_check_positions(const attn_rope *rope, int64_t batch, int64_t seq,
                                      const int64_t *positions, int64_t start, const char *f);
/* Rotates x (view: heads, len = seq, dim = the rope's head_dim) in place on
 * checked arguments; fails only with ATTN_ERR_OUT_OF_MEMORY (scratch,
 * threads), before writing, and not at all after attn_rope_reserve of the
 * same view and batch on ctx. */
attn_status attn_rope_reserve(attn_context *ctx, const attn_rope *rope, attn_view view,
                              int64_t batch, const char *f);
attn_status attn_rope_run(attn_context *ctx, const attn_rope *rope, attn_view view,
                          int64_t batch, float *x, const int64_t *positions, int64_t start,
                          int inverse, const char *f);

/* ---- merging partial attention (merge.c) -------------------------------- */

/* One row of attn_merge_partials: outs[p] [dim_v] and lses[p] of n_parts
 * parts into out [dim_v] (may be outs[0]) and *lse. */
void attn_merge_row(int64_t n_parts, int64_t dim_v, const float *const *outs,
                    const float *lses, float *out, float *lse);

/* ---- the paged KV cache (kv_cache.c) ------------------------------------ */

/* One sequence: its length in tokens and its page table. */
typedef struct attn_kv_seq {
    bool open;
    int64_t len;              /* tokens */
    int64_t n_pages, cap_pages;
    int64_t *pages;           /* [cap_pages]: page p holds tokens p·page_size .. */
} attn_kv_seq;

struct attn_kv_cache {
    int64_t heads_kv, dim_qk, dim_v, page_size, num_pages;
    float *k;                 /* [num_pages, heads_kv, page_size, dim_qk] */
    float *v;                 /* [num_pages, heads_kv, page_size, dim_v] */
    int64_t *refs;            /* [num_pages]: sequences holding each page */
    int64_t *free_pages;      /* [num_pages]: a stack of the n_free free pages */
    int64_t n_free;
    attn_kv_seq *seqs;        /* [cap_seqs]; ids are indices */
    int64_t n_seqs, cap_seqs;
};

/* Head g's rows of a page: [page_size, dim_qk] keys, [page_size, dim_v]
 * values, row-major. */
float *attn_kv_cache_k_rows(const attn_kv_cache *c, int64_t page, int64_t g);
float *attn_kv_cache_v_rows(const attn_kv_cache *c, int64_t page, int64_t g);
/* The open sequence seq, or NULL with ATTN_ERR_INVALID_ARGUMENT's message. */
const attn_kv_seq *attn_kv_cache_seq(const attn_kv_cache *c, int64_t seq, const char *f);
/* Free pages that appending n tokens to s takes (new pages, and a copy of
 * a shared last page). */
int64_t attn_kv_cache_pages_needed(const attn_kv_cache *cache, const attn_kv_seq *s, int64_t n);
/* ATTN_ERR_STATE ("out of pages") when needed > the free pages. */
attn_status attn_kv_cache_check_room(const attn_kv_cache *cache, int64_t n, int64_t needed,
                                     const char *f);
/* Grows seq's page table for n more tokens: ATTN_ERR_OUT_OF_MEMORY, with
 * nothing visible changed. */
attn_status attn_kv_cache_reserve_table(attn_kv_cache *cache, int64_t seq, int64_t n,
                                        const char *f);
/* Appends n tokens (row t of k at k + t·ldk, heads_kv × dim_qk floats;
 * likewise v) after the checks and reservations above: cannot fail. */
void attn_kv_cache_write(attn_kv_cache *cache, int64_t seq, int64_t n, const float *k,
                         int64_t ldk, const float *v, int64_t ldv);

/* ---- attention against the cache (attend_cached.c) ----------------------- */

/* One cached attention call: the new queries of n_seqs sequences. */
typedef struct attn_cached_call {
    attn_context *ctx;
    const attn_kv_cache *cache;
    int64_t n_seqs;
    const int64_t *seqs, *cu_q;      /* checked: open sequences, cu_q from 0 up */
    const float *q;                  /* [total_q, heads_q, dim_qk] */
    int64_t heads_q, heads_kv, dim_qk, dim_v;
    float scale;
    const attn_score_mods *mods;     /* NULL: none */
    float *out;                      /* [total_q, heads_q, dim_v] */
    float *lse;                      /* NULL or [total_q, heads_q] */
} attn_cached_call;

/* How a call runs: its items, threads, scratch and the partial results of
 * split key blocks. */
typedef struct attn_cached_plan attn_cached_plan;

/* Plans c for sequences of lens[s] tokens (their lengths when it runs) and
 * reserves its threads and scratch: ATTN_ERR_OUT_OF_MEMORY, nothing
 * written. c must outlive the plan. */
attn_status attn_cached_plan_make(attn_context *ctx, const attn_cached_call *c,
                                  const int64_t *lens, attn_cached_plan **plan, const char *f);
/* Floats of partial results attn_cached_run needs (0: none). */
size_t attn_cached_plan_partial_floats(const attn_cached_plan *plan);
/* Runs the plan: out and lse of every query row. Cannot fail. */
void attn_cached_run(attn_cached_plan *plan, float *partials);
void attn_cached_plan_free(attn_cached_plan *plan);
/* The checks both cached forwards make: n_seqs >= 0; seqs and cu_q
 * present; cu_q from 0, non-decreasing; every sequence open. */
attn_status attn_cached_check_queries(const attn_kv_cache *cache, int64_t n_seqs,
                                      const int64_t *seqs, const int64_t *cu_q, const char *f);
/* The cache holds heads_kv heads of these dims (ATTN_ERR_SHAPE_MISMATCH),
 * and q, out of total_q rows fit and are present. */
attn_status attn_cached_check_tensors(const attn_kv_cache *cache, int64_t heads_kv,
                                      int64_t dim_qk, int64_t dim_v, int64_t total_q,
                                      int64_t heads_q, const float *q, const float *out,
                                      const char *f);
/* A cached call with op's heads, dims, scale and modifiers (sdpa.c). */
attn_cached_call attn_sdpa_cached_call(const attn_sdpa *op);

/* ---- training state (activations.c) ------------------------------------ */

/* Slots of an attn_activations: what a layer's training forward keeps. */
enum { ATTN_ACT_SLOTS = 10 };

struct attn_activations {
    const void *owner;        /* the layer whose forward filled it; NULL: empty */
    uint64_t version;         /* the owner's parameter version at that forward */
    int64_t batch, len_q, len_kv, dim_v;
    const attn_mask *mask;    /* the forward's mask (caller memory) */
    float *buf;               /* every slot, one allocation */
    size_t capacity;          /* floats in buf */
    float *slot[ATTN_ACT_SLOTS];
    attn_activations *inner;  /* NULL, or a composite layer's sublayer's tape (the
                                 encoder layer's attention); freed with act */
};

/* Empties act and makes slot[i] hold floats[i] floats (n <= ATTN_ACT_SLOTS),
 * growing its buffer if needed: ATTN_ERR_OUT_OF_MEMORY (act stays empty) or
 * ATTN_ERR_SIZE_OVERFLOW. */
attn_status attn_activations_reserve(attn_activations *act, const size_t *floats, int n,
                                     const char *func);

/* The ATTN_ERR_STATE rule of every layer backward: act is not NULL, holds
 * the `forward` (a function name) of this owner, and the owner's version is
 * still the one that forward saw. owner_noun names the owner in the message
 * ("op", "layer"), changed says what a new version means ("op's weights").
 * Returns ATTN_OK, ATTN_ERR_NULL_POINTER or ATTN_ERR_STATE (message set). */
attn_status attn_activations_check_filled(const attn_activations *act, const void *owner,
                                          uint64_t version, const char *forward,
                                          const char *owner_noun, const char *changed,
                                          const char *func);

/* act's inner tape, created empty on first use: ATTN_ERR_OUT_OF_MEMORY. */
attn_status attn_activations_inner(attn_activations *act, attn_activations **inner,
                                   const char *func);

/* A number no earlier call returned: layers take a new one whenever their
 * parameters or options change, so that a backward can tell. Thread-safe. */
uint64_t attn_next_version(void);

/* ---- the SDPA backward (backward.c) ------------------------------------ */

/* Everything attn_dot_product_backward reads and writes. */
typedef struct attn_backward_args {
    const attn_attend_args *fwd;  /* the forward's geometry, mask, v, out; its logits
                                     callback set by attn_dot_product_attend's rule */
    const attn_qk *qk;            /* q, k, scale */
    const float *lse;             /* [batch, heads_q, len_q] */
    const float *d_out;           /* in out's view */
    float *d_q, *d_k, *d_v;       /* NULL (not computed) or in the views of q, k, v */
} attn_backward_args;

/* d_q, d_k, d_v of out = attention(q, k, v) given d_out (FlashAttention-2
 * backward). Every argument must have been validated; the only failure left
 * is ATTN_ERR_OUT_OF_MEMORY, reported before anything is written. */
attn_status attn_dot_product_backward(attn_context *ctx, const attn_backward_args *ba,
                                      const char *func);
/* Makes the threads and scratch attn_dot_product_backward of these shapes
 * (a's geometry, causal, mask) takes, so that a composite layer can fail
 * before it writes any output: the backward then finds them made.
 * ATTN_ERR_OUT_OF_MEMORY. */
attn_status attn_dot_product_backward_reserve(attn_context *ctx, const attn_attend_args *a,
                                              const char *func);

/* ---- the multi-head layer (mha.c, mha_train.c) ------------------------- */

enum { ATTN_MHA_PROJ = 4 };

struct attn_mha {
    int64_t embed_dim, num_heads, num_kv_heads, head_dim, kdim, vdim;
    int64_t kv_dim;                 /* num_kv_heads × head_dim */
    bool has_bias;
    attn_causal causal;
    float *weight[ATTN_MHA_PROJ];   /* [out_features, in_features] */
    float *bias[ATTN_MHA_PROJ];     /* [out_features], NULL without bias */
    bool set[ATTN_MHA_PROJ];
    uint64_t version;               /* attn_next_version() at the last change */
    attn_dropout dropout;           /* training forwards only */
    attn_score_mods mods;           /* window, softcap, ALiBi */
    attn_rope *rope;                /* NULL, or the layer's copy (Q and K rotated) */
};

/* The positions the layer's RoPE rotates query row 0 at (key row 0 is at
 * 0): the aligned position of attend.c, len_kv − len_q unless causal is
 * top-left. */
int64_t attn_mha_query_start(const attn_mha *m, int64_t len_q, int64_t len_kv);

/* The layer's score modifiers, or NULL when none is set. */
const attn_score_mods *attn_mha_mods(const attn_mha *m);

int64_t attn_mha_out_features(const attn_mha *m, attn_proj p);
int64_t attn_mha_in_features(const attn_mha *m, attn_proj p);
/* ATTN_ERR_STATE naming every projection not set yet. */
attn_status attn_mha_check_weights_set(const attn_mha *m, const char *f);

/* One forward call's arguments. */
typedef struct attn_mha_call {
    int64_t batch, len_q, len_kv;
    const float *query, *key, *value;
    float *out, *weights;
} attn_mha_call;

/* Where a forward puts its projections Q [B·Lq, E], K, V [B·Lkv, kv_dim]
 * and attention output A [B·Lq, E]; lse (NULL or [B, H, Lq]); dropout. */
typedef struct attn_mha_buffers {
    float *qp, *kp, *vp, *ap, *lse;
    const attn_dropout *dropout;
} attn_mha_buffers;

/* The BSHD views of the projections, and the attention's scale. */
typedef struct attn_mha_views {
    attn_view q, kv;
    float scale;
} attn_mha_views;
attn_mha_views attn_mha_attention_views(const attn_mha *m, int64_t len_q, int64_t len_kv);

/* Every check of attn_mha_forward. */
attn_status attn_mha_validate_forward(attn_context *ctx, const attn_mha *m,
                                      const attn_mha_call *c, const attn_mask *mask,
                                      const char *f);
/* The forward on validated arguments, into buf; fails only for scratch or
 * threads, before anything is written. */
attn_status attn_mha_run(attn_context *ctx, const attn_mha *mha, const attn_mha_call *c,
                         const attn_mask *mask, attn_mha_buffers *buf, const char *f);

/* attn_mha_forward_train on validated arguments (attn_mha_validate_forward,
 * act not NULL, dropout's range): fills act. ATTN_ERR_OUT_OF_MEMORY or
 * ATTN_ERR_SIZE_OVERFLOW (act then empty) only. */
attn_status attn_mha_forward_train_run(attn_context *ctx, const attn_mha *mha,
                                       const attn_mha_call *c, const attn_mask *mask,
                                       attn_activations *act, const char *f);
/* The workspace floats attn_mha_backward_run takes for act's shapes. */
size_t attn_mha_backward_floats(const attn_mha *m, const attn_activations *act);
/* Makes the threads and scratch attn_mha_backward_run takes for act, so
 * that it cannot fail afterwards. ATTN_ERR_OUT_OF_MEMORY. */
attn_status attn_mha_backward_reserve(attn_context *ctx, const attn_mha *m,
                                      const attn_activations *act, const char *f);
/* attn_mha_backward on checked arguments: grad = {d_query, d_key, d_value,
 * d_params}, ws of attn_mha_backward_floats floats (not an output). Fails
 * only where attn_mha_backward_reserve would, before writing. */
attn_status attn_mha_backward_run(attn_context *ctx, const attn_mha *mha,
                                  const attn_activations *act, const float *d_out,
                                  float *const grad[4], float *ws, const char *f);

/* One cached step of the layer (mha_cached.c), in three parts so that a
 * caller (the encoder layer's cached forward) can reserve its own buffers
 * with the step's and run its own passes around it. */
typedef struct attn_mha_step_buffers {
    float *qp, *kp, *vp, *ap; /* Q [total_q, E], K, V [total_q, kv_dim], A [total_q, E] */
    float *partials;          /* the attention's partial results, then the caller's floats */
} attn_mha_step_buffers;

typedef struct attn_mha_step {
    const attn_mha *mha;
    attn_kv_cache *cache;     /* call.cache, which the run appends to */
    attn_cached_call call;
    attn_cached_plan *plan;
    int64_t *lens;
    int threads;
    attn_mha_step_buffers buf;
} attn_mha_step;

/* Every check and reservation of attn_mha_forward_cached for query and out
 * (checked, not kept), with extra_floats more of workspace for the caller
 * at *extra (extra may be NULL when extra_floats is 0). On failure *step
 * holds nothing and nothing is written. */
attn_status attn_mha_step_prepare(attn_context *ctx, const attn_mha *mha, attn_kv_cache *cache,
                                  int64_t n_seqs, const int64_t *seqs, const int64_t *cu_q,
                                  const float *query, const float *out, size_t extra_floats,
                                  attn_mha_step *step, float **extra, const char *f);
/* Projects query [total_q, E], appends K and V, attends and projects into
 * out [total_q, E]. Cannot fail. query and out may be any floats of the
 * prepared shapes that are not the step's buffers. */
void attn_mha_step_run(attn_mha_step *step, const float *query, float *out);
/* Releases what prepare took (not the context's workspace). */
void attn_mha_step_end(attn_mha_step *step);

/* ---- the Transformer encoder layer (encoder.c, encoder_train.c) --------- */

/* The feed-forward's and the norms' parameters, in named_parameters order
 * after the attention's: offsets into the layer's `tail` array. */
typedef struct attn_encoder_tail {
    int64_t w1, b1, w2, b2, norm1_w, norm1_b, norm2_w, norm2_b, count;
} attn_encoder_tail;

struct attn_encoder_layer {
    int64_t d_model, nhead, dim_feedforward;
    attn_activation activation;
    bool norm_first;
    float eps;
    attn_mha *self_attn;      /* owns in_proj and out_proj */
    float *tail;              /* linear1, linear2, norm1, norm2 [tail_layout.count] */
    attn_encoder_tail at;     /* where each lives in tail */
    bool set;                 /* parameters given */
    uint64_t version;         /* attn_next_version() at the last change */
    attn_dropout dropout;     /* the element sites (the attention's is self_attn's) */
};

/* Dropout sites of the element masks (dropout.c's counter word 3). */
enum { ATTN_DROP_SITE_FF = 1, ATTN_DROP_SITE_BLOCK1 = 2, ATTN_DROP_SITE_BLOCK2 = 3 };

/* What the training forward keeps in act's slots (the attention's tape is
 * act->inner): the norms' inputs and statistics, the feed-forward's input,
 * its pre-activation and its (dropped) activation. */
enum {
    ATTN_ENC_LN1_IN,   /* [n, d] post-norm: x + drop1(SA(x)); pre-norm: x */
    ATTN_ENC_LN2_IN,   /* [n, d] post-norm: h + drop2(FF(h)); pre-norm: h */
    ATTN_ENC_FF_IN,    /* [n, d] linear1's input: post-norm h, pre-norm LN2(h) */
    ATTN_ENC_HIDDEN,   /* [n, ff] linear1's output */
    ATTN_ENC_ACT_OUT,  /* [n, ff] linear2's input: drop(act(hidden)) */
    ATTN_ENC_STATS1,   /* [n, ATTN_LAYER_NORM_STATS] LN1's statistics per row */
    ATTN_ENC_STATS2,   /* LN2's */
    ATTN_ENC_SLOTS
};

/* Rows per item of the encoder's row-wise passes, and item's rows
 * [*r0, *r1) of a pass over `rows` rows. */
#define ATTN_ENC_BLOCK_ROWS 32
static inline void attn_enc_block(int64_t item, int64_t rows, int64_t *r0, int64_t *r1)
{
    *r0 = item * ATTN_ENC_BLOCK_ROWS;
    *r1 = rows - *r0 < ATTN_ENC_BLOCK_ROWS ? rows : *r0 + ATTN_ENC_BLOCK_ROWS;
}
/* The number of those blocks. */
static inline int64_t attn_enc_blocks(int64_t rows)
{
    return (rows + ATTN_ENC_BLOCK_ROWS - 1) / ATTN_ENC_BLOCK_ROWS;
}

/* The attention's share of the flat parameters (attn_mha_param_count). */
int64_t attn_encoder_attention_params(const attn_encoder_layer *l);

/* ---- additive attention (additive.c, additive_train.c) ----------------- */

struct attn_additive {
    int64_t query_dim, key_dim, hidden;
    float *w_q;   /* [hidden, query_dim] */
    float *w_k;   /* [hidden, key_dim] */
    float *w_v;   /* [hidden] */
    bool set;
    uint64_t version;  /* attn_next_version() at the last change */
};

typedef struct attn_additive_call {
    int64_t batch, len_q, len_kv, dim_v;
    const float *queries, *keys, *values;
    float *out, *weights;
} attn_additive_call;

/* The projected queries and keys, for the logits callback. */
typedef struct attn_additive_logits_arg {
    const float *qh;   /* [batch, len_q, hidden] */
    const float *kh;   /* [batch, len_kv, hidden] */
    const float *w_v;
    int64_t len_q, len_kv, hidden;
} attn_additive_logits_arg;

/* w_vᵀ tanh(qh + kh) over hidden features. */
float attn_additive_score(const float *qh, const float *kh, const float *w_v, int64_t hidden);
/* The pooling's arguments of a call (one head, the logits of x). */
attn_attend_args attn_additive_attend_args(const attn_additive_call *c, const attn_mask *mask,
                                           const attn_additive_logits_arg *x);
/* Every check of attn_additive_forward. */
attn_status attn_additive_validate_forward(attn_context *ctx, const attn_additive *op,
                                           const attn_additive_call *c, const attn_mask *mask,
                                           const char *f);
/* The forward on validated arguments, projecting into qh [B·Lq, hidden] and
 * kh [B·Lkv, hidden]; fails only for scratch or threads, before writing. */
attn_status attn_additive_run(attn_context *ctx, const attn_additive *op,
                              const attn_additive_call *c, const attn_mask *mask, float *qh,
                              float *kh, const char *f);

/* ---- linear projections (linear.c) ------------------------------------ */

/* y[rows, out_features] = x[rows, in_features] · Wᵀ + b (b may be NULL), with
 * W row-major [out_features, in_features] as torch.nn.Linear, over blocks of
 * rows on up to `threads` threads of ctx (reserved by the caller). */
void attn_linear(attn_context *ctx, int threads, int64_t rows, int64_t in_features,
                 int64_t out_features, const float *x, const float *w, const float *b, float *y);
/* The number of independent blocks attn_linear splits `rows` into. */
int64_t attn_linear_items(int64_t rows);

/* The gradients of y = x Wᵀ + b (torch.nn.Linear's backward):
 * dx[rows, in] = dy[rows, out] · W (+ beta · dx), over attn_linear's row
 * blocks; and dW[out, in] = dyᵀ · x, db[out] = Σ_rows dy (dW or db may be
 * NULL), over blocks of output features, each one GEMM over all rows (no
 * partial sums: the same bits for any thread count). */
void attn_linear_backward_input(attn_context *ctx, int threads, int64_t rows, int64_t in_features,
                                int64_t out_features, const float *dy, const float *w,
                                float beta, float *dx);
void attn_linear_backward_params(attn_context *ctx, int threads, int64_t rows,
                                 int64_t in_features, int64_t out_features, const float *x,
                                 const float *dy, float *dw, float *db);
/* The number of blocks attn_linear_backward_params splits out_features into. */
int64_t attn_linear_param_items(int64_t out_features);

/* ---- layer normalisation (layer_norm.c) -------------------------------- */

/* Floats of one row's statistics: the mean as two floats hi + lo (float32
 * alone would lose x − mean for rows far from 0), rstd. */
#define ATTN_LAYER_NORM_STATS 3
/* y[0..n) = (x − mean) · rstd · weight + bias (torch.nn.LayerNorm over one
 * row), rstd = 1 / sqrt(var + eps), and the row's statistics into
 * stats[0 .. ATTN_LAYER_NORM_STATS) unless stats is NULL. y may be x. */
void attn_layer_norm_row(const float *x, int64_t n, const float *weight, const float *bias,
                         float eps, float *y, float *stats);
/* dx[0..n) = the input gradient of that row given dy (and its x and stats),
 * plus add[0..n) unless add is NULL. dx may be dy or add. */
void attn_layer_norm_backward_row(const float *x, const float *stats, const float *weight,
                                  const float *dy, int64_t n, const float *add, float *dx);
/* Features per block of attn_layer_norm_param_grads. */
#define ATTN_LAYER_NORM_FEATURE_BLOCK 64
/* d_weight[c] = Σ_r dy[r, c] · x̂[r, c] and d_bias[c] = Σ_r dy[r, c] for c in
 * [c0, c0 + m), m <= ATTN_LAYER_NORM_FEATURE_BLOCK, over rows × n arrays x
 * and dy with stats [rows, ATTN_LAYER_NORM_STATS]: rows in order, in
 * double. Either output may be NULL (not written). */
void attn_layer_norm_param_grads(const float *x, const float *stats, const float *dy,
                                 int64_t rows, int64_t n, int64_t c0, int64_t m,
                                 float *d_weight, float *d_bias);

/* ---- feed-forward activations (relu_gelu.c) ----------------------------- */

/* y[0..n) = a(x) (ReLU or the exact GELU); y may be x. */
void attn_activation_forward(attn_activation a, const float *x, float *y, int64_t n);
/* dx[0..n) = dy · a'(x); dx may be dy. */
void attn_activation_backward(attn_activation a, const float *x, const float *dy, float *dx,
                              int64_t n);

/* ---- BLAS (blas.c, the only file that knows the GEMM provider) -------- */

/* How many threads the BLAS library runs each call on (1 when unknown). */
int attn_blas_threads(void);

/* How the BLAS library runs its threads (openblas_get_parallel(), BLIS's
 * build, oneDNN's CPU runtime). */
typedef enum attn_blas_threading {
    ATTN_BLAS_THREADING_UNKNOWN,   /* a CBLAS with no way to ask */
    ATTN_BLAS_THREADING_SERIAL,    /* built without threads */
    ATTN_BLAS_THREADING_PTHREADS,  /* its own pthread pool (Debian's default) */
    ATTN_BLAS_THREADING_OPENMP,    /* OpenMP: serial inside a parallel region */
} attn_blas_threading;
attn_blas_threading attn_blas_threading_model(void);

/* The BLAS libattn's own GEMMs run on at this call: the process's BLAS, or
 * the copy (blas_copy.c), which runs serially. The schedule (context.c)
 * follows these; attn_blas_threads() and attn_blas_threading_model() stay
 * the process's BLAS, as reported. */
int attn_gemm_threads(void);
attn_blas_threading attn_gemm_threading(void);

/* ---- the copy (blas_copy.c) ---- */
#if defined(ATTN_BLAS_OPENBLAS) && defined(ATTN_BLAS_COPY_PATH)
#define ATTN_BLAS_COPY 1
#endif
/* Whether this call's GEMMs go to the copy: the process's OpenBLAS runs its
 * pthreads on several threads and the copy loaded (at the first such call).
 * Thread-safe. Always false without ATTN_BLAS_COPY. */
bool attn_blas_copy_in_use(void);
#if defined(ATTN_BLAS_COPY)
/* The copy's cblas_sgemm / cblas_sgemv, row-major, on the calling thread;
 * only when in use. */
void attn_blas_copy_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                          float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                          float beta, float *c, int64_t ldc);
void attn_blas_copy_sgemv(bool trans, int64_t m, int64_t n, float alpha, const float *a,
                          int64_t lda, const float *x, float beta, float *y);
#endif
/* The "blas_copy" line of attn_runtime_info: its path, or "none (why)". */
void attn_blas_copy_describe(char *buf, size_t size);

/* C[m×n] = alpha · A[m×k] · B[n×k]ᵀ (+ beta·C), row-major with leading dims. */
void attn_gemm_nt(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/* C[m×n] = alpha · A[m×k] · B[k×n] (+ beta·C), row-major with leading dims. */
void attn_gemm_nn(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* C[m×n] = alpha · A[k×m]ᵀ · B[k×n] (+ beta·C), row-major with leading dims
 * (the backward's Pᵀ·dO and dSᵀ·Q). */
void attn_gemm_tn(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* y[m] = alpha · A[m×n] · x[n] (+ beta · y), row-major A. For one query row
 * (decoding) a GEMV reads K or V once, where a GEMM with M = 1 would first
 * pack all of it. */
void attn_gemv_n(int64_t m, int64_t n, float alpha, const float *a, int64_t lda, const float *x,
                 float beta, float *y);
/* y[n] = alpha · A[m×n]ᵀ · x[m] (+ beta · y), row-major A. */
void attn_gemv_t(int64_t m, int64_t n, float alpha, const float *a, int64_t lda, const float *x,
                 float beta, float *y);

/* ---- runtime information (cpu_features.c, advice.c, runtime_info.c) --- */

/* The vector ISA extensions a kernel may need, as bits. Each is set only
 * when the CPU has it (cpuid) AND the OS saves its register state (xgetbv:
 * YMM for AVX, opmask and ZMM for AVX-512, the tile state for AMX), i.e.
 * when an instruction using it would not fault here. */
enum {
    ATTN_CPU_SSE4_2      = 1u << 0,
    ATTN_CPU_AVX         = 1u << 1,
    ATTN_CPU_AVX2        = 1u << 2,
    ATTN_CPU_FMA         = 1u << 3,
    ATTN_CPU_AVX512F     = 1u << 4,
    ATTN_CPU_AVX512BW    = 1u << 5,
    ATTN_CPU_AVX512VL    = 1u << 6,
    ATTN_CPU_AVX512DQ    = 1u << 7,
    ATTN_CPU_AVX512CD    = 1u << 8,
    ATTN_CPU_AVX512_BF16 = 1u << 9,
    ATTN_CPU_AVX512_FP16 = 1u << 10,
    ATTN_CPU_AMX_TILE    = 1u << 11,
    ATTN_CPU_AMX_BF16    = 1u << 12,
};
#define ATTN_CPU_FEATURE_COUNT 13

/* What cpuid says about the CPU this process runs on. */
typedef struct attn_cpu_info {
    bool known;          /* false off x86-64: everything below is empty */
    char vendor[13];     /* "GenuineIntel", "AuthenticAMD", ... */
    int family, model;   /* as Linux's /proc/cpuinfo shows them */
    unsigned features;   /* ATTN_CPU_* bits usable here */
} attn_cpu_info;

/* Reads cpuid and xgetbv; never fails (unknown CPUs give known = false).
 * Thread-safe: it writes only *info. */
void attn_cpu_detect(attn_cpu_info *info);

/* The Linux /proc/cpuinfo name of one ATTN_CPU_* bit ("avx512_bf16"), or
 * NULL for anything else. */
const char *attn_cpu_feature_name(unsigned feature);

/* The BLAS's self-description (openblas_get_config(), e.g. "OpenBLAS 0.3.21
 * DYNAMIC_ARCH ..."; "BLIS 0.9.0 OpenMP, configuration zen3"; "oneDNN 2.6.3
 * ...") copied into buf (snprintf semantics), or "unknown" for a BLAS that
 * does not say. Thread-safe (blas.c serialises the copy out of
 * OpenBLAS's static buffer). */
void attn_blas_config(char *buf, size_t size);

/* The kernel set the BLAS runs (openblas_get_corename(), e.g. "Haswell":
 * also the OPENBLAS_CORETYPE value that selects it; BLIS's configuration,
 * e.g. "zen3"; oneDNN's GEMM ISA, e.g. "avx512_core"), or "unknown". Static
 * storage; never NULL. */
const char *attn_blas_kernel(void);

/* Everything the advice is computed from: plain values, so that the advice
 * is a pure function that tests can feed with any machine. */
typedef struct attn_setup {
    const char *blas_kernel;            /* attn_blas_kernel(); "unknown" or NULL if not OpenBLAS */
    unsigned cpu_features;              /* ATTN_CPU_* */
    int blas_threads;                   /* attn_blas_threads() */
    attn_blas_threading blas_threading; /* attn_blas_threading_model() */
    int default_threads;                /* attn_default_threads() */
    bool blas_copy;                     /* attn_blas_copy_in_use(): GEMMs on the copy */
} attn_setup;

/* The OPENBLAS_CORETYPE value to advise: the fastest OpenBLAS 0.3.21 kernel
 * whose instructions the CPU has, when `kernel` is strictly below it in ISA
 * level; NULL when `kernel` is fine or unknown. Pure. */
const char *attn_advise_kernel(const char *kernel, unsigned cpu_features);

/* The ATTN_CPU_* bits a kernel named by attn_advise_kernel needs (0 for any
 * other name). */
unsigned attn_kernel_needs(const char *kernel);

/* The advice line of attn_runtime_info: empty, or one sentence naming what
 * is slow and the setting that fixes it. snprintf semantics: writes at most
 * size bytes with the NUL, returns the whole length. Pure. */
size_t attn_advice(const attn_setup *setup, char *buf, size_t size);

#endif /* ATTN_INTERNAL_H */
