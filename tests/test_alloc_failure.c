/*
 * test_alloc_failure.c — every allocation libattn makes can fail, and each
 * failure is handled: for every call that creates, sets or runs a handle
 * (context, mask, SDPA, MHA, additive, the Transformer encoder layer — post-
 * and pre-norm, its inference and training forwards and its backward — and
 * the context-only Nadaraya–Watson and positional encoding), the k-th
 * allocation of the call is made to fail for k = 1, 2, … until the call
 * succeeds without reaching a k-th allocation. Each failure must
 *   1. return ATTN_ERR_OUT_OF_MEMORY, with attn_last_error() naming the
 *      function;
 *   2. leave every output untouched: the handle out-pointer keeps its
 *      sentinel, out / weights / lse keep their byte pattern; the encoder's
 *      training forward leaves its act empty (a backward on it is
 *      ATTN_ERR_STATE), even when act held an earlier forward;
 *   3. leak nothing: a failed create leaves the count of live blocks as it
 *      was, and once everything is destroyed the count is back where it
 *      started (checked here in every build, and by LSan in the ASan build);
 *   4. leave the context usable: the same call, repeated on the same context
 *      without injection, succeeds with outputs bitwise equal to a run that
 *      never saw a failure.
 * Each k runs twice: only the k-th allocation fails, then the k-th and
 * every later one ("sticky", as when memory is really exhausted). Forward
 * calls run on fresh contexts with 1, 2 and 4 threads (the thread pool's own
 * allocations) and on a context warmed up by a smaller call, whose scratch
 * must grow. Thread creation failure (pthread_create, wrapped with
 * -Wl,--wrap) is injected the same way: OOM, and every thread already
 * started has exited when the call returns.
 *
 * The hook is in src/alloc.c: hidden symbols of the library's objects, which
 * this test links directly (tests/meson.build); the shipped libattn.so does
 * not export them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attn.h>

#include "../src/attn_internal.h" /* the schedule: which threads run the items */
#include "test_util.h"

/* ---- the hook (src/alloc.c) and the thread-creation wrapper ------------- */

extern atomic_llong attn_alloc_fail_countdown;
extern atomic_int attn_alloc_fail_sticky;
extern atomic_llong attn_alloc_calls;
extern atomic_llong attn_alloc_live;

static atomic_int thread_fail_countdown;   /* as attn_alloc_fail_countdown */
static atomic_int threads_running;         /* started by libattn, not yet returned */
static atomic_llong thread_creates;

typedef struct trampoline {
    void *(*fn)(void *);
    void *arg;
} trampoline;

static void *run_trampoline(void *p)
{
    trampoline t = *(trampoline *)p;
    free(p);
    void *r = t.fn(t.arg);
    atomic_fetch_sub(&threads_running, 1);
    return r;
}

int __real_pthread_create(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
int __wrap_pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *),
                          void *arg);

/* Every pthread_create of libattn's objects comes here (-Wl,--wrap). */
int __wrap_pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *),
                          void *arg)
{
    atomic_fetch_add(&thread_creates, 1);
    if (atomic_load(&thread_fail_countdown) > 0 && atomic_fetch_sub(&thread_fail_countdown, 1) == 1)
        return 11; /* EAGAIN: "insufficient resources" */
    trampoline *t = malloc(sizeof *t);
    if (!t)
        return 11;
    *t = (trampoline){fn, arg};
    atomic_fetch_add(&threads_running, 1);
    int rc = __real_pthread_create(th, attr, run_trampoline, t);
    if (rc != 0) {
        atomic_fetch_sub(&threads_running, 1);
        free(t);
    }
    return rc;
}

static void inject(long long k, int sticky)
{
    atomic_store(&attn_alloc_fail_sticky, sticky);
    atomic_store(&attn_alloc_fail_countdown, k);
}

static void no_injection(void)
{
    atomic_store(&attn_alloc_fail_countdown, 0);
    atomic_store(&attn_alloc_fail_sticky, 0);
    atomic_store(&thread_fail_countdown, 0);
}

/* ---- the calls under test ---------------------------------------------- */

typedef enum call_id {
    C_CONTEXT_CREATE, C_CONTEXT_SET,
    C_MASK_CREATE, C_MASK_SET,
    C_SDPA_CREATE, C_SDPA_SET, C_SDPA_FORWARD,
    C_SDPA_BACKWARD,
    C_MHA_CREATE, C_MHA_SET, C_MHA_FORWARD, C_MHA_FORWARD_TRAIN, C_MHA_BACKWARD,
    C_ADD_CREATE, C_ADD_SET, C_ADD_FORWARD, C_ADD_FORWARD_TRAIN, C_ADD_BACKWARD,
    C_NW, C_NW_BACKWARD, C_PE,
    /* the encoder layer, post-norm (ReLU) then pre-norm (GELU, causal): the
     * same five calls each, C_ENC_PRE_* - C_ENC_PRE_CREATE + C_ENC_CREATE */
    C_ENC_CREATE, C_ENC_SET, C_ENC_FORWARD, C_ENC_FORWARD_TRAIN, C_ENC_BACKWARD,
    C_ENC_PRE_CREATE, C_ENC_PRE_SET, C_ENC_PRE_FORWARD, C_ENC_PRE_FORWARD_TRAIN,
    C_ENC_PRE_BACKWARD,
    C_COUNT
} call_id;

static const char *const call_func[C_COUNT] = {
    "attn_context_create", "attn_context_set_num_threads",
    "attn_mask_create", "attn_mask_set_*",
    "attn_sdpa_create", "attn_sdpa_set_*", "attn_sdpa_forward",
    "attn_sdpa_backward",
    "attn_mha_create", "attn_mha_set_*", "attn_mha_forward", "attn_mha_forward_train",
    "attn_mha_backward",
    "attn_additive_create", "attn_additive_set_weights", "attn_additive_forward",
    "attn_additive_forward_train", "attn_additive_backward",
    "attn_nadaraya_watson", "attn_nadaraya_watson_backward", "attn_positional_encoding",
    "attn_encoder_layer_create", "attn_encoder_layer_set_*", "attn_encoder_layer_forward",
    "attn_encoder_layer_forward", "attn_encoder_layer_backward",
    "attn_encoder_layer_create", "attn_encoder_layer_set_*", "attn_encoder_layer_forward",
    "attn_encoder_layer_forward", "attn_encoder_layer_backward",
};

/* Whether id is an encoder call of the pre-norm layer, and which call it
 * is (the post-norm id). */
static int enc_pre(call_id id)
{
    return id >= C_ENC_PRE_CREATE && id <= C_ENC_PRE_BACKWARD;
}
static call_id enc_call(call_id id)
{
    return enc_pre(id) ? (call_id)(id - C_ENC_PRE_CREATE + C_ENC_CREATE) : id;
}

/* The call as the report names it: the encoder's forwards share a function. */
static const char *call_label(call_id id)
{
    static const char *const enc[2][5] = {
        {"encoder create (post-norm)", "encoder set_* (post-norm)",
         "encoder forward (post-norm)", "encoder forward, training (post-norm)",
         "encoder backward (post-norm)"},
        {"encoder create (pre-norm)", "encoder set_* (pre-norm)", "encoder forward (pre-norm)",
         "encoder forward, training (pre-norm)", "encoder backward (pre-norm)"}};
    if (enc_call(id) < C_ENC_CREATE)
        return call_func[id];
    return enc[enc_pre(id)][enc_call(id) - C_ENC_CREATE];
}

/* Shapes: two blocks of query rows (len_q > 64), GQA, masks of every kind,
 * more than one block of projection rows for MHA (batch × len_q > 256). */
enum { B = 2, HQ = 4, HKV = 2, LQ = 70, LKV = 33, D = 8, DV = 5 };
enum { E = 16, NH = 4, NKV = 2, KD = 12, VD = 10, MLQ = 150, MLKV = 20 };
enum { AQD = 6, AKD = 9, AH = 7, ADV = 4 };
enum { NWQ = 150, NWK = 25, PEL = 30, PED = 12 };
/* The MHA layer's flat parameter count: Wq, Wk, Wv, bq, bk, bv, Wo, bo. */
enum { MHA_PARAMS = E * E + (E / NH * NKV) * (KD + VD) + E + 2 * (E / NH * NKV) + E * E + E };
/* The encoder layer: d_model E, ENH heads, a feed-forward of EFF; batch B of
 * EL positions: B·EL = 300 rows, more than one block of projection rows and
 * of 64 query rows. Its flat parameters: attention, linear1, linear2, norms. */
enum { ENH = 4, EFF = 24, EL = MLQ };
enum { ENC_PARAMS = 4 * E * E + 4 * E + 2 * E * EFF + EFF + E + 4 * E };

static char sentinel_obj;
#define SENTINEL ((void *)&sentinel_obj)
#define PATTERN 0xA5

/* Everything a call needs: made by fx_setup with injection off, so that
 * only the call under test sees failures. */
typedef struct fixture {
    call_id id;
    attn_context *ctx;
    attn_mask *mask;
    attn_mask *mha_mask;     /* per-batch lengths within MLKV, for MHA */
    attn_sdpa *sdpa;
    attn_mha *mha;
    attn_additive *add;
    /* inputs */
    float *q, *k, *v, *mq, *mk, *mv, *aq, *ak, *av;
    float *wq, *wk, *wv, *wo, *bq, *bk, *bv, *bo, *awq, *awk, *awv;
    int64_t lengths[B], mha_lengths[B];
    uint8_t *keep;
    float *bias;
    /* outputs: one contiguous region, pre-filled with PATTERN */
    unsigned char *outputs;
    size_t out_bytes;
    float *out, *w, *lse;    /* attn_sdpa_backward: d_q, d_k, d_v */
    /* the backward's inputs: a forward's out and lse, and d_out */
    float *fw_out, *fw_lse, *d_out;
    attn_activations *act;   /* the layers' training forwards and backwards */
    attn_encoder_layer *enc;
    attn_mask *enc_mask;     /* per-batch lengths within EL, for the encoder */
    float *esrc, *eparams;
    int64_t enc_lengths[B];
} fixture;

static float *frand(tu_rng *r, size_t n)
{
    float *p = malloc(n * sizeof *p);
    assert_non_null(p);
    tu_fill_normal(r, p, n, 0.0f, 1.0f);
    return p;
}

static void make_inputs(fixture *f)
{
    tu_rng r;
    tu_rng_seed(&r, 6);
    f->q = frand(&r, B * HQ * LQ * D);
    f->k = frand(&r, B * HKV * LKV * D);
    f->v = frand(&r, B * HKV * LKV * DV);
    f->mq = frand(&r, B * MLQ * E);
    f->mk = frand(&r, B * MLKV * KD);
    f->mv = frand(&r, B * MLKV * VD);
    f->aq = frand(&r, B * LQ * AQD);
    f->ak = frand(&r, B * LKV * AKD);
    f->av = frand(&r, B * LKV * ADV);
    f->wq = frand(&r, E * E), f->bq = frand(&r, E);
    f->wk = frand(&r, (E / NH * NKV) * KD), f->bk = frand(&r, E / NH * NKV);
    f->wv = frand(&r, (E / NH * NKV) * VD), f->bv = frand(&r, E / NH * NKV);
    f->wo = frand(&r, E * E), f->bo = frand(&r, E);
    f->awq = frand(&r, AH * AQD), f->awk = frand(&r, AH * AKD), f->awv = frand(&r, AH);
    f->esrc = frand(&r, B * EL * E);
    /* N(0, 0.3): the norms' weights near 0 still give finite, varied outputs */
    f->eparams = malloc(ENC_PARAMS * sizeof(float));
    assert_non_null(f->eparams);
    tu_fill_normal(&r, f->eparams, ENC_PARAMS, 0.0f, 0.3f);
    f->enc_lengths[0] = 90, f->enc_lengths[1] = EL;
    f->lengths[0] = 20, f->lengths[1] = LKV;
    f->mha_lengths[0] = 7, f->mha_lengths[1] = MLKV;
    /* bool [1, 1, LQ, LKV] keeping ~3/4; bias [B, 1, 1, LKV] with a -inf */
    f->keep = malloc(LQ * LKV);
    f->bias = frand(&r, B * LKV);
    assert_non_null(f->keep);
    for (int x = 0; x < LQ * LKV; x++)
        f->keep[x] = x % 4 != 1;
    f->bias[3] = -INFINITY;
}

static void free_inputs(fixture *f)
{
    float *all[] = {f->q, f->k, f->v, f->mq, f->mk, f->mv, f->aq, f->ak, f->av, f->wq, f->wk,
                    f->wv, f->wo, f->bq, f->bk, f->bv, f->bo, f->awq, f->awk, f->awv, f->bias,
                    f->esrc, f->eparams};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    free(f->keep);
}

/* The output region of the call: out, then weights, then lse. */
static void make_outputs(fixture *f)
{
    size_t no = 0, nw = 0, nl = 0;
    switch (enc_call(f->id)) {
    case C_SDPA_FORWARD: no = B * HQ * LQ * DV, nw = B * HQ * LQ * LKV, nl = B * HQ * LQ; break;
    case C_SDPA_BACKWARD: no = B * HQ * LQ * D, nw = B * HKV * LKV * D, nl = B * HKV * LKV * DV;
        break;
    case C_MHA_FORWARD:  no = B * MLQ * E, nw = B * NH * MLQ * MLKV; break;
    case C_MHA_FORWARD_TRAIN: no = B * MLQ * E, nw = B * NH * MLQ * MLKV; break;
    case C_MHA_BACKWARD: /* d_query, d_key, then d_value and d_params */
        no = B * MLQ * E, nw = B * MLKV * KD, nl = B * MLKV * VD + MHA_PARAMS; break;
    case C_ADD_FORWARD:  no = B * LQ * ADV, nw = B * LQ * LKV; break;
    case C_ADD_FORWARD_TRAIN: no = B * LQ * ADV, nw = B * LQ * LKV; break;
    case C_ADD_BACKWARD: /* d_queries, d_keys, then d_values and d_params */
        no = B * LQ * AQD, nw = B * LKV * AKD, nl = B * LKV * ADV + AH * (AQD + AKD + 1); break;
    case C_NW:           no = NWQ, nw = NWQ * NWK; break;
    case C_NW_BACKWARD:  no = NWQ, nw = NWK, nl = NWK + 1; break; /* d_values, then d_w */
    case C_PE:           no = PEL * PED; break;
    case C_ENC_FORWARD: case C_ENC_FORWARD_TRAIN: no = B * EL * E; break;
    case C_ENC_BACKWARD: no = B * EL * E, nw = ENC_PARAMS; break; /* d_src, d_params */
    default: break;
    }
    f->out_bytes = (no + nw + nl) * sizeof(float);
    f->outputs = malloc(f->out_bytes + 1);
    assert_non_null(f->outputs);
    memset(f->outputs, PATTERN, f->out_bytes);
    f->out = (float *)f->outputs;
    f->w = f->out + no;
    f->lse = f->w + nw;
}

static void set_mask(fixture *f)
{
    assert_int_equal(attn_mask_set_kv_lengths(f->mask, f->lengths, B, 0, 0), ATTN_OK);
    assert_int_equal(attn_mask_set_bool(f->mask, f->keep, 1, 1, LQ, LKV), ATTN_OK);
    assert_int_equal(attn_mask_set_bias(f->mask, f->bias, B, 1, 1, LKV), ATTN_OK);
}

static void set_mha_weights(attn_mha *m, const fixture *f)
{
    assert_int_equal(attn_mha_set_weights(m, ATTN_PROJ_Q, f->wq, f->bq), ATTN_OK);
    assert_int_equal(attn_mha_set_weights(m, ATTN_PROJ_K, f->wk, f->bk), ATTN_OK);
    assert_int_equal(attn_mha_set_weights(m, ATTN_PROJ_V, f->wv, f->bv), ATTN_OK);
    assert_int_equal(attn_mha_set_weights(m, ATTN_PROJ_O, f->wo, f->bo), ATTN_OK);
}

/* A smaller call of the same kind, so that the call under test must grow
 * the warmed context's scratch, slots, workspace and pool. */
static void warm_up(fixture *f)
{
    float out[4096], w[4096];
    attn_sdpa *small = NULL;
    attn_activations *act = NULL;
    switch (enc_call(f->id)) {
    case C_SDPA_FORWARD:
        assert_int_equal(attn_sdpa_create(&small, 1, 1, 1, 3, 2, D, DV), ATTN_OK);
        assert_int_equal(attn_sdpa_forward(f->ctx, small, f->q, f->k, f->v, NULL, out, w, NULL),
                         ATTN_OK);
        attn_sdpa_destroy(small);
        break;
    case C_MHA_FORWARD:
        assert_int_equal(attn_mha_forward(f->ctx, f->mha, 1, 3, 2, f->mq, f->mk, f->mv, NULL, out,
                                          w),
                         ATTN_OK);
        break;
    case C_ADD_FORWARD:
        assert_int_equal(attn_additive_forward(f->ctx, f->add, 1, 3, 2, ADV, f->aq, f->ak, f->av,
                                               NULL, out, w),
                         ATTN_OK);
        break;
    case C_NW:
        assert_int_equal(attn_nadaraya_watson(f->ctx, 3, 2, f->q, f->k, f->v, 1.0f, out, w),
                         ATTN_OK);
        break;
    case C_ENC_FORWARD:
        assert_int_equal(attn_encoder_layer_forward(f->ctx, f->enc, 1, 3, f->esrc, NULL, out,
                                                    NULL),
                         ATTN_OK);
        break;
    case C_ENC_FORWARD_TRAIN:
    case C_ENC_BACKWARD: /* a small pair on an act of its own: f->act stays as made */
        assert_int_equal(attn_activations_create(&act), ATTN_OK);
        assert_int_equal(attn_encoder_layer_forward(f->ctx, f->enc, 1, 3, f->esrc, NULL, out,
                                                    act),
                         ATTN_OK);
        if (enc_call(f->id) == C_ENC_BACKWARD)
            assert_int_equal(attn_encoder_layer_backward(f->ctx, f->enc, act, f->esrc, out, w),
                             ATTN_OK);
        attn_activations_destroy(act);
        break;
    default:
        break;
    }
}

/* Makes the prerequisites of call f->id (injection off). */
/* The backward's out, lse (a forward on a separate context, so that the
 * context under test starts cold) and d_out. */
static void make_backward_inputs(fixture *f)
{
    tu_rng r;
    tu_rng_seed(&r, 7);
    f->fw_out = malloc(B * HQ * LQ * DV * sizeof(float));
    f->fw_lse = malloc(B * HQ * LQ * sizeof(float));
    f->d_out = frand(&r, B * HQ * LQ * DV);
    assert_true(f->fw_out && f->fw_lse);
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_sdpa_forward(ctx, f->sdpa, f->q, f->k, f->v, f->mask, f->fw_out, NULL,
                                       f->fw_lse),
                     ATTN_OK);
    attn_context_destroy(ctx);
}

/* The layer's activations (made with injection off), and for the backward
 * a training forward on a separate context and its d_out. */
static void make_mha_training(fixture *f)
{
    assert_int_equal(attn_activations_create(&f->act), ATTN_OK);
    assert_int_equal(attn_mha_set_dropout(f->mha, 0.25f, 3), ATTN_OK);
    if (f->id != C_MHA_BACKWARD)
        return;
    tu_rng r;
    tu_rng_seed(&r, 8);
    f->d_out = frand(&r, B * MLQ * E);
    f->fw_out = malloc(B * MLQ * E * sizeof(float));
    assert_non_null(f->fw_out);
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_mha_forward_train(ctx, f->mha, B, MLQ, MLKV, f->mq, f->mk, f->mv,
                                            f->mha_mask, f->fw_out, NULL, f->act),
                     ATTN_OK);
    attn_context_destroy(ctx);
}

/* As make_mha_training, for the additive op. */
static void make_additive_training(fixture *f)
{
    assert_int_equal(attn_activations_create(&f->act), ATTN_OK);
    if (f->id != C_ADD_BACKWARD)
        return;
    tu_rng r;
    tu_rng_seed(&r, 9);
    f->d_out = frand(&r, B * LQ * ADV);
    f->fw_out = malloc(B * LQ * ADV * sizeof(float));
    assert_non_null(f->fw_out);
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_additive_forward_train(ctx, f->add, B, LQ, LKV, ADV, f->aq, f->ak,
                                                 f->av, f->mask, f->fw_out, NULL, f->act),
                     ATTN_OK);
    attn_context_destroy(ctx);
}

/* The encoder layer of call f->id (injection off): ReLU post-norm, or GELU
 * pre-norm with the causal mask; parameters and dropout set unless the call
 * under test sets them. */
static void make_encoder(fixture *f)
{
    int pre = enc_pre(f->id);
    call_id c = enc_call(f->id);
    assert_int_equal(attn_mask_create(&f->enc_mask), ATTN_OK);
    assert_int_equal(attn_mask_set_kv_lengths(f->enc_mask, f->enc_lengths, B, 0, 0), ATTN_OK);
    if (c == C_ENC_CREATE)
        return;
    assert_int_equal(attn_encoder_layer_create(&f->enc, E, ENH, EFF,
                                               pre ? ATTN_ACTIVATION_GELU : ATTN_ACTIVATION_RELU,
                                               pre, 1e-5f),
                     ATTN_OK);
    if (c == C_ENC_SET)
        return;
    assert_int_equal(attn_encoder_layer_set_params(f->enc, f->eparams), ATTN_OK);
    assert_int_equal(attn_encoder_layer_set_causal(f->enc, pre ? ATTN_CAUSAL_TOP_LEFT
                                                               : ATTN_CAUSAL_NONE),
                     ATTN_OK);
    /* dropout at all four sites in training; inference must ignore it */
    assert_int_equal(attn_encoder_layer_set_dropout(f->enc, 0.25f, 3), ATTN_OK);
}

/* As make_mha_training, for the encoder layer. The post-norm training
 * forward gets an act already filled by a smaller forward (which it must
 * grow), so that a failure can be seen to leave act empty as attn.h says;
 * the pre-norm one a new act (whose first allocations are swept too). */
static void make_encoder_training(fixture *f)
{
    assert_int_equal(attn_activations_create(&f->act), ATTN_OK);
    if (f->id == C_ENC_FORWARD_TRAIN) {
        float out[3 * E];
        attn_context *ctx = NULL;
        assert_int_equal(attn_context_create(&ctx), ATTN_OK);
        assert_int_equal(attn_encoder_layer_forward(ctx, f->enc, 1, 3, f->esrc, NULL, out,
                                                    f->act),
                         ATTN_OK);
        attn_context_destroy(ctx);
    }
    if (enc_call(f->id) != C_ENC_BACKWARD)
        return;
    tu_rng r;
    tu_rng_seed(&r, 10);
    f->d_out = frand(&r, B * EL * E);
    f->fw_out = malloc(B * EL * E * sizeof(float));
    assert_non_null(f->fw_out);
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_encoder_layer_forward(ctx, f->enc, B, EL, f->esrc, f->enc_mask,
                                                f->fw_out, f->act),
                     ATTN_OK);
    attn_context_destroy(ctx);
}

static void fx_setup(fixture *f, call_id id, int threads, int warm)
{
    memset(f, 0, sizeof *f);
    f->id = id;
    make_inputs(f);
    make_outputs(f);
    f->ctx = SENTINEL, f->mask = SENTINEL, f->sdpa = SENTINEL, f->mha = SENTINEL;
    f->add = SENTINEL;
    /* The encoder layer exists only in the encoder's fixtures (NULL, from the
     * memset, elsewhere): a sentinel marks the create under test. */
    if (enc_call(id) == C_ENC_CREATE)
        f->enc = SENTINEL;
    if (id != C_CONTEXT_CREATE) {
        f->ctx = NULL;
        assert_int_equal(attn_context_create(&f->ctx), ATTN_OK);
        assert_int_equal(attn_context_set_num_threads(f->ctx, threads), ATTN_OK);
    }
    if (id != C_MASK_CREATE) {
        f->mask = NULL;
        assert_int_equal(attn_mask_create(&f->mask), ATTN_OK);
        if (id != C_MASK_SET)
            set_mask(f);
    }
    assert_int_equal(attn_mask_create(&f->mha_mask), ATTN_OK);
    assert_int_equal(attn_mask_set_kv_lengths(f->mha_mask, f->mha_lengths, B, 0, 0), ATTN_OK);
    if (id != C_SDPA_CREATE) {
        f->sdpa = NULL;
        assert_int_equal(attn_sdpa_create(&f->sdpa, B, HQ, HKV, LQ, LKV, D, DV), ATTN_OK);
        assert_int_equal(attn_sdpa_set_layout(f->sdpa, ATTN_LAYOUT_BSHD), ATTN_OK);
        assert_int_equal(attn_sdpa_set_causal(f->sdpa, ATTN_CAUSAL_BOTTOM_RIGHT), ATTN_OK);
    }
    if (id != C_MHA_CREATE) {
        f->mha = NULL;
        assert_int_equal(attn_mha_create(&f->mha, E, NH, NKV, KD, VD, 1), ATTN_OK);
        if (id != C_MHA_SET)
            set_mha_weights(f->mha, f);
    }
    if (id != C_ADD_CREATE) {
        f->add = NULL;
        assert_int_equal(attn_additive_create(&f->add, AQD, AKD, AH), ATTN_OK);
        if (id != C_ADD_SET)
            assert_int_equal(attn_additive_set_weights(f->add, f->awq, f->awk, f->awv), ATTN_OK);
    }
    if (id == C_SDPA_BACKWARD)
        make_backward_inputs(f);
    if (id == C_MHA_FORWARD_TRAIN || id == C_MHA_BACKWARD)
        make_mha_training(f);
    if (id == C_ADD_FORWARD_TRAIN || id == C_ADD_BACKWARD)
        make_additive_training(f);
    if (enc_call(id) >= C_ENC_CREATE)
        make_encoder(f);
    if (enc_call(id) == C_ENC_FORWARD_TRAIN || enc_call(id) == C_ENC_BACKWARD)
        make_encoder_training(f);
    if (warm)
        warm_up(f);
}

static void fx_teardown(fixture *f)
{
    if (f->ctx != SENTINEL)
        attn_context_destroy(f->ctx);
    if (f->mask != SENTINEL)
        attn_mask_destroy(f->mask);
    if (f->sdpa != SENTINEL)
        attn_sdpa_destroy(f->sdpa);
    if (f->mha != SENTINEL)
        attn_mha_destroy(f->mha);
    if (f->add != SENTINEL)
        attn_additive_destroy(f->add);
    if (f->enc != SENTINEL)
        attn_encoder_layer_destroy(f->enc);
    attn_mask_destroy(f->mha_mask);
    attn_mask_destroy(f->enc_mask);
    free(f->fw_out), free(f->fw_lse), free(f->d_out);
    attn_activations_destroy(f->act);
    free_inputs(f);
    free(f->outputs);
}

/* The encoder calls of fx_run (either layer). */
static attn_status fx_run_encoder(fixture *f)
{
    int pre = enc_pre(f->id);
    attn_status st;
    switch (enc_call(f->id)) {
    case C_ENC_CREATE:
        return attn_encoder_layer_create(&f->enc, E, ENH, EFF,
                                         pre ? ATTN_ACTIVATION_GELU : ATTN_ACTIVATION_RELU, pre,
                                         1e-5f);
    case C_ENC_SET:
        if ((st = attn_encoder_layer_set_params(f->enc, f->eparams)) != ATTN_OK ||
            (st = attn_encoder_layer_set_dropout(f->enc, 0.25f, 3)) != ATTN_OK)
            return st;
        return attn_encoder_layer_set_causal(f->enc, ATTN_CAUSAL_TOP_LEFT);
    case C_ENC_FORWARD:
        return attn_encoder_layer_forward(f->ctx, f->enc, B, EL, f->esrc, f->enc_mask, f->out,
                                          NULL);
    case C_ENC_FORWARD_TRAIN:
        return attn_encoder_layer_forward(f->ctx, f->enc, B, EL, f->esrc, f->enc_mask, f->out,
                                          f->act);
    case C_ENC_BACKWARD:
        return attn_encoder_layer_backward(f->ctx, f->enc, f->act, f->d_out, f->out, f->w);
    default:
        return ATTN_ERR_STATE;
    }
}

/* The call under test. A create call writes its handle over the sentinel. */
static attn_status fx_run(fixture *f)
{
    attn_status st;
    switch (f->id) {
    case C_CONTEXT_CREATE: return attn_context_create(&f->ctx);
    case C_CONTEXT_SET:    return attn_context_set_num_threads(f->ctx, 3);
    case C_MASK_CREATE:    return attn_mask_create(&f->mask);
    case C_MASK_SET:
        if ((st = attn_mask_set_kv_lengths(f->mask, f->lengths, B, 0, 0)) != ATTN_OK ||
            (st = attn_mask_set_bool(f->mask, f->keep, 1, 1, LQ, LKV)) != ATTN_OK ||
            (st = attn_mask_set_bias(f->mask, f->bias, B, 1, 1, LKV)) != ATTN_OK ||
            (st = attn_mask_clear(f->mask)) != ATTN_OK)
            return st;
        return attn_mask_set_kv_lengths(f->mask, f->lengths, B, 0, 0);
    case C_SDPA_CREATE:    return attn_sdpa_create(&f->sdpa, B, HQ, HKV, LQ, LKV, D, DV);
    case C_SDPA_SET:
        if ((st = attn_sdpa_set_layout(f->sdpa, ATTN_LAYOUT_BHSD)) != ATTN_OK ||
            (st = attn_sdpa_set_causal(f->sdpa, ATTN_CAUSAL_TOP_LEFT)) != ATTN_OK)
            return st;
        return attn_sdpa_set_scale(f->sdpa, 0.25f);
    case C_SDPA_FORWARD:
        return attn_sdpa_forward(f->ctx, f->sdpa, f->q, f->k, f->v, f->mask, f->out, f->w,
                                 f->lse);
    case C_SDPA_BACKWARD:
        return attn_sdpa_backward(f->ctx, f->sdpa, f->q, f->k, f->v, f->mask, f->fw_out,
                                  f->fw_lse, f->d_out, f->out, f->w, f->lse);
    case C_MHA_CREATE:     return attn_mha_create(&f->mha, E, NH, NKV, KD, VD, 1);
    case C_MHA_SET:
        if ((st = attn_mha_set_causal(f->mha, ATTN_CAUSAL_TOP_LEFT)) != ATTN_OK)
            return st;
        for (int p = 0; p < 4; p++) {
            const float *w[4] = {f->wq, f->wk, f->wv, f->wo}, *b[4] = {f->bq, f->bk, f->bv, f->bo};
            if ((st = attn_mha_set_weights(f->mha, (attn_proj)p, w[p], b[p])) != ATTN_OK)
                return st;
        }
        return ATTN_OK;
    case C_MHA_FORWARD:
        return attn_mha_forward(f->ctx, f->mha, B, MLQ, MLKV, f->mq, f->mk, f->mv, f->mha_mask,
                                f->out, f->w);
    case C_MHA_FORWARD_TRAIN:
        return attn_mha_forward_train(f->ctx, f->mha, B, MLQ, MLKV, f->mq, f->mk, f->mv,
                                      f->mha_mask, f->out, f->w, f->act);
    case C_MHA_BACKWARD:
        return attn_mha_backward(f->ctx, f->mha, f->act, f->d_out, f->out, f->w, f->lse,
                                 f->lse + B * MLKV * VD);
    case C_ADD_CREATE:     return attn_additive_create(&f->add, AQD, AKD, AH);
    case C_ADD_SET:        return attn_additive_set_weights(f->add, f->awq, f->awk, f->awv);
    case C_ADD_FORWARD: /* the SDPA mask fits: its bool mask broadcasts over heads */
        return attn_additive_forward(f->ctx, f->add, B, LQ, LKV, ADV, f->aq, f->ak, f->av,
                                     f->mask, f->out, f->w);
    case C_ADD_FORWARD_TRAIN:
        return attn_additive_forward_train(f->ctx, f->add, B, LQ, LKV, ADV, f->aq, f->ak, f->av,
                                           f->mask, f->out, f->w, f->act);
    case C_ADD_BACKWARD:
        return attn_additive_backward(f->ctx, f->add, f->act, f->d_out, f->out, f->w, f->lse,
                                      f->lse + B * LKV * ADV);
    case C_NW:
        return attn_nadaraya_watson(f->ctx, NWQ, NWK, f->q, f->k, f->v, 1.5f, f->out, f->w);
    case C_NW_BACKWARD:  /* d_out: the first NWQ of v */
        return attn_nadaraya_watson_backward(f->ctx, NWQ, NWK, f->q, f->k, f->v, 1.5f, f->v,
                                             f->out, f->w, f->lse, f->lse + NWK);
    case C_PE:             return attn_positional_encoding(f->out, PEL, PED, 7, 10000.0f);
    default:               return fx_run_encoder(f);
    }
}

/* ---- the driver ---------------------------------------------------------- */

static int starts_with_func(const char *msg, call_id id)
{
    const char *f = call_func[id];
    size_t n = strcspn(f, "*");
    return strncmp(msg, f, n) == 0;
}

/* After a failed training forward of the encoder: act is empty (attn.h:
 * "ATTN_ERR_OUT_OF_MEMORY (act is then empty)"), so a backward on it is
 * ATTN_ERR_STATE and writes nothing, rather than the gradients of whatever
 * act held before. */
static void check_act_emptied(fixture *f, long long k, int sticky)
{
    if (enc_call(f->id) != C_ENC_FORWARD_TRAIN)
        return;
    static float d_params[ENC_PARAMS];
    memset(d_params, PATTERN, sizeof d_params);
    attn_status st = attn_encoder_layer_backward(f->ctx, f->enc, f->act, f->esrc, NULL,
                                                 d_params);
    if (st != ATTN_ERR_STATE)
        fail_msg("%s: allocation %lld%s failed, but act is not empty: the backward gave %s",
                 call_label(f->id), k, sticky ? "+" : "", attn_status_string(st));
    for (size_t x = 0; x < sizeof d_params; x++)
        assert_int_equal(((unsigned char *)d_params)[x], PATTERN);
}

/* The outputs of a clean run of the call (no injection), to compare the
 * recovered runs with: copies of the output region. */
static unsigned char *clean_outputs(call_id id, int threads)
{
    fixture f;
    fx_setup(&f, id, threads, 0);
    assert_int_equal(fx_run(&f), ATTN_OK);
    unsigned char *copy = malloc(f.out_bytes + 1);
    assert_non_null(copy);
    memcpy(copy, f.outputs, f.out_bytes);
    fx_teardown(&f);
    return copy;
}

typedef struct tally {
    long long points;    /* allocations the call makes */
    long long failures;  /* injected failures checked */
} tally;

/* One injected failure (or the successful run that ends the sweep). Returns
 * 1 if the call failed (the sweep goes on), 0 if it succeeded. */
static int one_injection(call_id id, int threads, int warm, long long k, int sticky,
                         const unsigned char *clean, tally *t)
{
    long long live0 = atomic_load(&attn_alloc_live);
    fixture f;
    fx_setup(&f, id, threads, warm);
    void *handles_before[6] = {f.ctx, f.mask, f.sdpa, f.mha, f.add, f.enc};
    long long live1 = atomic_load(&attn_alloc_live), calls0 = atomic_load(&attn_alloc_calls);

    inject(k, sticky);
    attn_status st = fx_run(&f);
    long long made = atomic_load(&attn_alloc_calls) - calls0;
    no_injection();

    if (made < k) { /* the k-th allocation never came: the call is done */
        if (st != ATTN_OK)
            fail_msg("%s (threads %d, warm %d): %s without an injected failure: %s",
                     call_label(id), threads, warm, attn_status_string(st), attn_last_error());
        t->points = made;
        if (clean && memcmp(f.outputs, clean, f.out_bytes) != 0)
            fail_msg("%s: outputs differ from the clean run", call_label(id));
        fx_teardown(&f);
        assert_int_equal(atomic_load(&attn_alloc_live), live0);
        return 0;
    }

    t->failures++;
    if (st != ATTN_ERR_OUT_OF_MEMORY)
        fail_msg("%s (threads %d, warm %d): allocation %lld%s failed: got %s, want "
                 "ATTN_ERR_OUT_OF_MEMORY",
                 call_label(id), threads, warm, k, sticky ? "+" : "", attn_status_string(st));
    if (!starts_with_func(attn_last_error(), id))
        fail_msg("%s: allocation %lld failed: message \"%s\" does not name the function",
                 call_label(id), k, attn_last_error());
    void *handles_after[6] = {f.ctx, f.mask, f.sdpa, f.mha, f.add, f.enc};
    if (memcmp(handles_before, handles_after, sizeof handles_before) != 0)
        fail_msg("%s: allocation %lld failed but a handle out-pointer was written",
                 call_label(id), k);
    for (size_t x = 0; x < f.out_bytes; x++)
        if (f.outputs[x] != PATTERN)
            fail_msg("%s (threads %d, warm %d): allocation %lld%s failed but output byte %zu "
                     "was written",
                     call_label(id), threads, warm, k, sticky ? "+" : "", x);
    /* a failed create owns nothing afterwards */
    if (handles_before[0] == SENTINEL || handles_before[1] == SENTINEL ||
        handles_before[2] == SENTINEL || handles_before[3] == SENTINEL ||
        handles_before[4] == SENTINEL || handles_before[5] == SENTINEL)
        if (atomic_load(&attn_alloc_live) != live1)
            fail_msg("%s: allocation %lld%s failed and %lld blocks leaked", call_label(id), k,
                     sticky ? "+" : "", atomic_load(&attn_alloc_live) - live1);
    check_act_emptied(&f, k, sticky);

    /* The same call again, on the same context: it works and gives the
     * outputs of a run that never failed. */
    st = fx_run(&f);
    if (st != ATTN_OK)
        fail_msg("%s (threads %d, warm %d): after allocation %lld failed, the retry gave %s: %s",
                 call_label(id), threads, warm, k, attn_status_string(st), attn_last_error());
    if (clean && memcmp(f.outputs, clean, f.out_bytes) != 0)
        fail_msg("%s (threads %d, warm %d): after allocation %lld failed, the retry's outputs "
                 "differ from a clean run",
                 call_label(id), threads, warm, k);
    fx_teardown(&f);
    if (atomic_load(&attn_alloc_live) != live0)
        fail_msg("%s (threads %d, warm %d): allocation %lld%s failed: %lld blocks still live "
                 "after every handle was destroyed",
                 call_label(id), threads, warm, k, sticky ? "+" : "",
                 atomic_load(&attn_alloc_live) - live0);
    return 1;
}

static long long total_points, total_failures;

/* k = 1, 2, … until the call succeeds, single and sticky failures. */
static void sweep(call_id id, int threads, int warm)
{
    unsigned char *clean = clean_outputs(id, threads);
    tally t = {0, 0};
    for (int sticky = 0; sticky < 2; sticky++)
        for (long long k = 1; one_injection(id, threads, warm, k, sticky, clean, &t); k++)
            assert_true(k < 1000);
    free(clean);
    print_message("alloc-failure: %-28s threads %d%s: %lld allocations, %lld injected failures "
                  "ok\n",
                  call_label(id), threads, warm ? ", warmed context" : "", t.points, t.failures);
    total_points += t.points;
    total_failures += t.failures;
}

static void test_create_calls(void **state)
{
    (void)state;
    static const call_id ids[] = {C_CONTEXT_CREATE, C_MASK_CREATE, C_SDPA_CREATE, C_MHA_CREATE,
                                  C_ADD_CREATE, C_ENC_CREATE, C_ENC_PRE_CREATE};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        sweep(ids[i], 1, 0);
}

/* Setters never allocate: the sweep ends at k = 1 with 0 allocations. */
static void test_set_calls(void **state)
{
    (void)state;
    static const call_id ids[] = {C_CONTEXT_SET, C_MASK_SET, C_SDPA_SET, C_MHA_SET, C_ADD_SET,
                                  C_PE, C_ENC_SET, C_ENC_PRE_SET};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        sweep(ids[i], 1, 0);
}

static void test_forward_calls(void **state)
{
    (void)state;
    static const call_id ids[] = {C_SDPA_FORWARD, C_SDPA_BACKWARD, C_MHA_FORWARD,
                                  C_MHA_FORWARD_TRAIN, C_MHA_BACKWARD, C_ADD_FORWARD,
                                  C_ADD_FORWARD_TRAIN, C_ADD_BACKWARD, C_NW, C_NW_BACKWARD,
                                  C_ENC_FORWARD, C_ENC_FORWARD_TRAIN, C_ENC_BACKWARD,
                                  C_ENC_PRE_FORWARD, C_ENC_PRE_FORWARD_TRAIN,
                                  C_ENC_PRE_BACKWARD};
    /* 0: the default, whose schedule follows the BLAS's threads (with a
     * multi-threaded pthreads BLAS, a pool that shares the softmax only).
     * ATTN_TEST_QUICK=1 (.ci/reliability.sh's Valgrind run, ~50x slower;
     * its alloc-failure check runs them all under ASan) keeps 2 threads. */
    static const int threads[] = {2, 0, 1, 4};
    const char *quick = getenv("ATTN_TEST_QUICK");
    size_t n_threads = quick && quick[0] == '1' ? 1 : sizeof threads / sizeof threads[0];
    if (n_threads == 1)
        print_message("alloc-failure: quick mode (ATTN_TEST_QUICK): 2 threads only\n");
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        for (size_t t = 0; t < n_threads; t++)
            for (int warm = 0; warm < 2; warm++)
                sweep(ids[i], threads[t], warm);
}

/* The j-th pthread_create of a 4-thread context fails: OOM, outputs
 * untouched, every thread started before it has exited, no leak, and the
 * context works afterwards. */
static void test_thread_creation_failure(void **state)
{
    (void)state;
    if (attn_default_schedule() == ATTN_SCHEDULE_OPENMP) {
        /* With OpenBLAS's OpenMP build the items run on libgomp's threads,
         * which libattn does not create (and libgomp aborts when it cannot). */
        print_message("alloc-failure: OpenMP schedule, libattn creates no threads: skipped\n");
        skip();
    }
    static const call_id ids[] = {C_SDPA_FORWARD, C_SDPA_BACKWARD, C_MHA_FORWARD,
                                  C_MHA_FORWARD_TRAIN, C_MHA_BACKWARD, C_ADD_FORWARD,
                                  C_ADD_FORWARD_TRAIN, C_ADD_BACKWARD, C_NW, C_NW_BACKWARD,
                                  C_ENC_FORWARD, C_ENC_FORWARD_TRAIN, C_ENC_BACKWARD,
                                  C_ENC_PRE_FORWARD, C_ENC_PRE_FORWARD_TRAIN,
                                  C_ENC_PRE_BACKWARD};
    long long checked = 0;
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        unsigned char *clean = clean_outputs(ids[i], 4);
        for (int j = 1;; j++) {
            long long live0 = atomic_load(&attn_alloc_live);
            fixture f;
            fx_setup(&f, ids[i], 4, 0);
            long long creates0 = atomic_load(&thread_creates);
            atomic_store(&thread_fail_countdown, j);
            attn_status st = fx_run(&f);
            long long made = atomic_load(&thread_creates) - creates0;
            no_injection();
            if (made < j) {
                assert_int_equal(st, ATTN_OK);
                assert_memory_equal(f.outputs, clean, f.out_bytes);
                fx_teardown(&f);
                break;
            }
            checked++;
            if (st != ATTN_ERR_OUT_OF_MEMORY)
                fail_msg("%s: thread %d not created: got %s", call_label(ids[i]), j,
                         attn_status_string(st));
            assert_true(starts_with_func(attn_last_error(), ids[i]));
            for (size_t x = 0; x < f.out_bytes; x++)
                if (f.outputs[x] != PATTERN)
                    fail_msg("%s: thread %d not created, but output byte %zu was written",
                             call_label(ids[i]), j, x);
            check_act_emptied(&f, j, 0);
            /* the threads of the failed pool have all exited; the MHA calls
             * keep the 1-worker pool their projections started before (the
             * context's, stopped by attn_context_destroy below) */
            int kept = (ids[i] == C_MHA_FORWARD || ids[i] == C_MHA_FORWARD_TRAIN ||
                        ids[i] == C_MHA_BACKWARD) && j > 1;
            if (atomic_load(&threads_running) != kept)
                fail_msg("%s: thread %d not created, and %d started threads still run (want %d)",
                         call_label(ids[i]), j, atomic_load(&threads_running), kept);
            assert_int_equal(fx_run(&f), ATTN_OK);
            assert_memory_equal(f.outputs, clean, f.out_bytes);
            fx_teardown(&f);
            assert_int_equal(atomic_load(&threads_running), 0);
            assert_int_equal(atomic_load(&attn_alloc_live), live0);
        }
        free(clean);
    }
    print_message("alloc-failure: pthread_create failures checked: %lld\n", checked);
    /* 3 workers each for SDPA, additive, MHA; 2 for NW; 3 for each of the
     * encoder's six calls */
    assert_true(checked >= 30);
}

static int report(void **state)
{
    (void)state;
    print_message("alloc-failure: %lld allocation points, %lld injected failures, all "
                  "ATTN_ERR_OUT_OF_MEMORY with outputs untouched and nothing leaked\n",
                  total_points, total_failures);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_calls),
        cmocka_unit_test(test_set_calls),
        cmocka_unit_test(test_forward_calls),
        cmocka_unit_test(test_thread_creation_failure),
    };
    return cmocka_run_group_tests_name("alloc_failure", tests, NULL, report);
}
