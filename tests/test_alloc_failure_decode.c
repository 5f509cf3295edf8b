/*
 * test_alloc_failure_decode.c — test_alloc_failure.c's rules for the calls
 * of decoding (the KV cache, the cached forwards, RoPE, the score
 * modifiers, merge): the k-th allocation of the call fails, for k = 1, 2,
 * … until the call succeeds without reaching a k-th allocation, once alone
 * and once "sticky" (every later one fails too). Each failure must
 *   1. return ATTN_ERR_OUT_OF_MEMORY with attn_last_error() naming the
 *      function;
 *   2. change nothing: the out-pointer of a create keeps its sentinel,
 *      outputs keep their byte pattern, the cache its sequences, lengths
 *      and contents (read back), a rope or op its settings (the same
 *      outputs as before);
 *   3. leak nothing (the count of live blocks of src/alloc.c's hook);
 *   4. leave everything usable: the same call again succeeds, with the
 *      outputs of a run that never failed.
 * Forwards run on contexts of 1 and 2 threads, fresh each time.
 *
 * Like test_alloc_failure, it links the library's object files to reach
 * the hidden hook (tests/meson.build).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attn.h>

#include "test_util.h"

extern atomic_llong attn_alloc_fail_countdown;
extern atomic_int attn_alloc_fail_sticky;
extern atomic_llong attn_alloc_calls;
extern atomic_llong attn_alloc_live;

static void inject(long long k, int sticky)
{
    atomic_store(&attn_alloc_fail_sticky, sticky);
    atomic_store(&attn_alloc_fail_countdown, k);
}

static void no_injection(void)
{
    atomic_store(&attn_alloc_fail_countdown, 0);
    atomic_store(&attn_alloc_fail_sticky, 0);
}

enum { HQ = 4, HKV = 2, D = 8, PAGE = 4, E = HQ * D };
#define PATTERN 0xA5
static char sentinel_obj;
#define SENTINEL ((void *)&sentinel_obj)

typedef enum call_id {
    C_CACHE_CREATE, C_SEQ_OPEN, C_SEQ_FORK, C_APPEND, C_SDPA_CACHED, C_MHA_CACHED,
    C_ROPE_CREATE, C_ROPE_TABLES, C_ROPE_APPLY, C_MHA_SET_ROPE, C_SET_ALIBI, C_MERGE,
    C_ENCODER_CACHED, C_COUNT
} call_id;

static const char *const call_func[C_COUNT] = {
    "attn_kv_cache_create", "attn_kv_cache_seq_open", "attn_kv_cache_seq_fork",
    "attn_kv_cache_append", "attn_sdpa_forward_cached", "attn_mha_forward_cached",
    "attn_rope_create", "attn_rope_set_tables", "attn_rope_apply", "attn_mha_set_rope",
    "attn_sdpa_set_alibi", "attn_merge_partials", "attn_encoder_layer_forward_cached",
};

/* What a call needs, made with injection off. */
typedef struct fixture {
    call_id id;
    int threads;
    attn_context *ctx;
    attn_kv_cache *cache;
    attn_sdpa *op;
    attn_mha *mha;
    attn_rope *rope;
    attn_encoder_layer *layer;
    void *made;              /* a create's out-pointer */
    int64_t seqs[9], n_seqs, cu[10], fork_dst;
    float *q, *x, *kv, *tables;
    unsigned char out[4096]; /* the call's outputs, pre-filled with PATTERN */
    float state[8192];       /* what the call must not change, read before */
    size_t state_floats;
} fixture;

static float *frand(size_t n, uint64_t seed)
{
    tu_rng r;
    tu_rng_seed(&r, seed);
    float *p = malloc(n * sizeof *p);
    tu_fill_normal(&r, p, n, 0.0f, 1.0f);
    return p;
}

/* Everything visible of the cache, the op and the layer: each open
 * sequence's length and tokens, and the op's and the layer's outputs on
 * fixed inputs (which show their modifiers and rope). */
static size_t observe(fixture *f, float *to)
{
    size_t n = 0;
    if (f->cache)
        for (int64_t s = 0; s < 9; s++) {
            int64_t len = -1;
            if (attn_kv_cache_seq_len(f->cache, s, &len) != ATTN_OK)
                continue;
            to[n++] = (float)len;
            assert_int_equal(attn_kv_cache_read(f->cache, s, 0, len, to + n, NULL), ATTN_OK);
            n += (size_t)(len * HKV * D);
        }
    if (f->op && f->id == C_SET_ALIBI) {
        attn_sdpa_forward(f->ctx, f->op, f->q, f->kv, f->kv, NULL, to + n, NULL, NULL);
        n += 2 * HQ * D;
    }
    if (f->rope && f->id == C_ROPE_TABLES) {
        memcpy(to + n, f->x, 3 * HQ * D * sizeof(float));
        attn_rope_apply(f->ctx, f->rope, ATTN_LAYOUT_BSHD, 1, HQ, 3, to + n, NULL, 0, 0);
        n += 3 * HQ * D;
    }
    if (f->mha && f->id == C_MHA_SET_ROPE) {
        attn_mha_forward(f->ctx, f->mha, 1, 3, 3, f->x, f->x, f->x, NULL, to + n, NULL);
        n += 3 * E;
    }
    assert_true(n <= 8192);
    return n;
}

static void make_cache(fixture *f, int64_t n_seqs)
{
    assert_int_equal(attn_kv_cache_create(&f->cache, HKV, D, D, PAGE, 64), ATTN_OK);
    f->kv = frand(20 * HKV * D, 3);
    for (int64_t s = 0; s < n_seqs; s++) {
        assert_int_equal(attn_kv_cache_seq_open(f->cache, &f->seqs[s]), ATTN_OK);
        assert_int_equal(attn_kv_cache_append(f->cache, f->seqs[s], 5 + s, f->kv, f->kv),
                         ATTN_OK);
        f->cu[s + 1] = f->cu[s] + 1;
    }
    f->n_seqs = n_seqs;
}

static void make_mha(fixture *f)
{
    assert_int_equal(attn_mha_create(&f->mha, E, HQ, HKV, E, E, 1), ATTN_OK);
    int64_t count;
    assert_int_equal(attn_mha_param_count(f->mha, &count), ATTN_OK);
    float *p = frand((size_t)count, 5);
    assert_int_equal(attn_mha_set_params(f->mha, p), ATTN_OK);
    free(p);
}

static void fx_setup(fixture *f, call_id id, int threads)
{
    memset(f, 0, sizeof *f);
    f->id = id;
    f->threads = threads;
    f->made = SENTINEL;
    memset(f->out, PATTERN, sizeof f->out);
    assert_int_equal(attn_context_create(&f->ctx), ATTN_OK);
    assert_int_equal(attn_context_set_num_threads(f->ctx, threads), ATTN_OK);
    f->q = frand(9 * HQ * D, 1);
    f->x = frand(9 * E, 2);
    switch (id) {
    case C_SEQ_OPEN: make_cache(f, 8); break;  /* the 9th outgrows the table */
    case C_SEQ_FORK: make_cache(f, 8); break;
    case C_APPEND: make_cache(f, 2); break;    /* 20 tokens outgrow a page table */
    case C_SDPA_CACHED:
        make_cache(f, 3);
        assert_int_equal(attn_sdpa_create(&f->op, 1, HQ, HKV, 1, 1, D, D), ATTN_OK);
        assert_int_equal(attn_sdpa_set_window(f->op, 3, 0), ATTN_OK);
        break;
    case C_MHA_CACHED: {
        make_cache(f, 3);
        make_mha(f);
        attn_rope *r = NULL;
        assert_int_equal(attn_rope_create(&r, D, D, 100.0f, ATTN_ROPE_HALF), ATTN_OK);
        assert_int_equal(attn_mha_set_rope(f->mha, r), ATTN_OK);
        attn_rope_destroy(r);
        break;
    }
    case C_ROPE_TABLES: case C_ROPE_APPLY:
        assert_int_equal(attn_rope_create(&f->rope, D, D, 100.0f, ATTN_ROPE_INTERLEAVED),
                         ATTN_OK);
        f->tables = frand(2 * 50 * D / 2, 4);
        break;
    case C_MHA_SET_ROPE:
        make_mha(f);
        assert_int_equal(attn_rope_create(&f->rope, D, 6, 100.0f, ATTN_ROPE_HALF), ATTN_OK);
        break;
    case C_ENCODER_CACHED: {
        /* nhead = HKV: the cache's heads; d_model = HKV · D. */
        make_cache(f, 3);
        assert_int_equal(attn_encoder_layer_create(&f->layer, HKV * D, HKV, 24,
                                                   ATTN_ACTIVATION_GELU, 1, 1e-5f),
                         ATTN_OK);
        int64_t count;
        assert_int_equal(attn_encoder_layer_param_count(f->layer, &count), ATTN_OK);
        float *p = frand((size_t)count, 6);
        assert_int_equal(attn_encoder_layer_set_params(f->layer, p), ATTN_OK);
        assert_int_equal(attn_encoder_layer_set_causal(f->layer, ATTN_CAUSAL_TOP_LEFT),
                         ATTN_OK);
        free(p);
        break;
    }
    case C_SET_ALIBI:
        assert_int_equal(attn_sdpa_create(&f->op, 1, HQ, HKV, 2, 3, D, D), ATTN_OK);
        f->kv = frand(3 * HKV * D * 4, 3);
        break;
    default: break;
    }
    f->state_floats = observe(f, f->state);
}

static attn_status fx_run(fixture *f)
{
    switch (f->id) {
    case C_CACHE_CREATE:
        return attn_kv_cache_create((attn_kv_cache **)&f->made, HKV, D, D, PAGE, 16);
    case C_SEQ_OPEN:
        return attn_kv_cache_seq_open(f->cache, (int64_t *)(void *)f->out);
    case C_SEQ_FORK:
        return attn_kv_cache_seq_fork(f->cache, f->seqs[3], (int64_t *)(void *)f->out);
    case C_APPEND:
        return attn_kv_cache_append(f->cache, f->seqs[1], 20, f->kv, f->kv);
    case C_SDPA_CACHED:
        return attn_sdpa_forward_cached(f->ctx, f->op, f->cache, f->n_seqs, f->seqs, f->cu, f->q,
                                        (float *)(void *)f->out,
                                        (float *)(void *)(f->out + 1024));
    case C_MHA_CACHED:
        return attn_mha_forward_cached(f->ctx, f->mha, f->cache, f->n_seqs, f->seqs, f->cu,
                                       f->x, (float *)(void *)f->out);
    case C_ROPE_CREATE:
        return attn_rope_create((attn_rope **)&f->made, D, D, 100.0f, ATTN_ROPE_HALF);
    case C_ROPE_TABLES:
        return attn_rope_set_tables(f->rope, f->tables, f->tables + 50 * D / 2, 50);
    case C_ROPE_APPLY:
        return attn_rope_apply(f->ctx, f->rope, ATTN_LAYOUT_BHSD, 2, HQ, 3,
                               (float *)(void *)f->out, NULL, 0, 0);
    case C_MHA_SET_ROPE:
        return attn_mha_set_rope(f->mha, f->rope);
    case C_SET_ALIBI:
        return attn_sdpa_set_alibi(f->op, NULL);
    case C_MERGE: {
        const float *outs[2] = {f->q, f->q + 2 * D};
        const float *lses[2] = {f->x, f->x + 2};
        return attn_merge_partials(2, 2, D, outs, lses, (float *)(void *)f->out,
                                   (float *)(void *)(f->out + 1024));
    }
    case C_ENCODER_CACHED:
        return attn_encoder_layer_forward_cached(f->ctx, f->layer, f->cache, f->n_seqs, f->seqs,
                                                 f->cu, f->x, (float *)(void *)f->out);
    default: return ATTN_ERR_INVALID_ARGUMENT;
    }
}

static void fx_teardown(fixture *f)
{
    if (f->made != SENTINEL) {
        if (f->id == C_CACHE_CREATE)
            attn_kv_cache_destroy(f->made);
        else
            attn_rope_destroy(f->made);
    }
    attn_kv_cache_destroy(f->cache);
    attn_sdpa_destroy(f->op);
    attn_mha_destroy(f->mha);
    attn_rope_destroy(f->rope);
    attn_encoder_layer_destroy(f->layer);
    attn_context_destroy(f->ctx);
    free(f->q), free(f->x), free(f->kv), free(f->tables);
}

/* The outputs of a run that never failed. */
static void clean_run(call_id id, int threads, unsigned char *out, float *state, size_t *n)
{
    fixture f;
    fx_setup(&f, id, threads);
    assert_int_equal(fx_run(&f), ATTN_OK);
    memcpy(out, f.out, sizeof f.out);
    *n = observe(&f, state);
    fx_teardown(&f);
}

static long long total_points, total_failures;

static int one_injection(call_id id, int threads, long long k, int sticky,
                         const unsigned char *clean, const float *clean_state,
                         size_t clean_floats, long long *points)
{
    long long live0 = atomic_load(&attn_alloc_live);
    fixture f;
    fx_setup(&f, id, threads);
    long long live1 = atomic_load(&attn_alloc_live), calls0 = atomic_load(&attn_alloc_calls);
    inject(k, sticky);
    attn_status st = fx_run(&f);
    long long made = atomic_load(&attn_alloc_calls) - calls0;
    no_injection();
    const char *name = call_func[id];
    if (made < k) {
        if (st != ATTN_OK)
            fail_msg("%s: %s without an injected failure: %s", name, attn_status_string(st),
                     attn_last_error());
        *points = made;
        fx_teardown(&f);
        assert_int_equal(atomic_load(&attn_alloc_live), live0);
        return 0;
    }
    total_failures++;
    if (st != ATTN_ERR_OUT_OF_MEMORY)
        fail_msg("%s (threads %d): allocation %lld%s failed: got %s", name, threads, k,
                 sticky ? "+" : "", attn_status_string(st));
    if (strncmp(attn_last_error(), name, strlen(name)) != 0)
        fail_msg("%s: message \"%s\" does not name the function", name, attn_last_error());
    if (f.made != SENTINEL)
        fail_msg("%s: allocation %lld failed but the out-pointer was written", name, k);
    for (size_t x = 0; x < sizeof f.out; x++)
        if (f.out[x] != PATTERN)
            fail_msg("%s (threads %d): allocation %lld%s failed but output byte %zu was written",
                     name, threads, k, sticky ? "+" : "", x);
    float now[8192];
    size_t n = observe(&f, now);
    if (n != f.state_floats || memcmp(now, f.state, n * sizeof(float)) != 0)
        fail_msg("%s (threads %d): allocation %lld%s failed and the cache, op, rope or layer "
                 "changed", name, threads, k, sticky ? "+" : "");
    if (f.id == C_CACHE_CREATE || f.id == C_ROPE_CREATE)
        if (atomic_load(&attn_alloc_live) != live1)
            fail_msg("%s: allocation %lld failed and %lld blocks leaked", name, k,
                     atomic_load(&attn_alloc_live) - live1);
    /* Again, without failure: the outputs and state of a clean run. */
    st = fx_run(&f);
    if (st != ATTN_OK)
        fail_msg("%s: after allocation %lld failed, the retry gave %s: %s", name, k,
                 attn_status_string(st), attn_last_error());
    if (memcmp(f.out, clean, sizeof f.out) != 0)
        fail_msg("%s (threads %d): after allocation %lld failed, the retry's outputs differ",
                 name, threads, k);
    n = observe(&f, now);
    if (n != clean_floats || memcmp(now, clean_state, n * sizeof(float)) != 0)
        fail_msg("%s (threads %d): after allocation %lld failed, the retry left another state",
                 name, threads, k);
    fx_teardown(&f);
    if (atomic_load(&attn_alloc_live) != live0)
        fail_msg("%s: allocation %lld%s failed: %lld blocks still live at the end", name, k,
                 sticky ? "+" : "", atomic_load(&attn_alloc_live) - live0);
    return 1;
}

static void sweep(call_id id, int threads)
{
    unsigned char clean[4096];
    static float clean_state[8192];
    size_t clean_floats;
    clean_run(id, threads, clean, clean_state, &clean_floats);
    long long points = 0, failures0 = total_failures;
    for (int sticky = 0; sticky < 2; sticky++)
        for (long long k = 1; one_injection(id, threads, k, sticky, clean, clean_state,
                                            clean_floats, &points);
             k++)
            assert_true(k < 1000);
    print_message("alloc-failure: %-26s threads %d: %lld allocations, %lld injected failures "
                  "ok\n", call_func[id], threads, points, total_failures - failures0);
    total_points += points;
}

static void test_decoding_calls(void **state)
{
    (void)state;
    for (int id = 0; id < C_COUNT; id++)
        for (int threads = 1; threads <= 2; threads++)
            sweep((call_id)id, threads);
    print_message("alloc-failure (decoding): %lld allocation points, %lld injected failures, "
                  "all ATTN_ERR_OUT_OF_MEMORY with nothing changed and nothing leaked\n",
                  total_points, total_failures);
    assert_true(total_failures > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoding_calls),
    };
    return cmocka_run_group_tests_name("alloc_failure_decode", tests, NULL, NULL);
}
