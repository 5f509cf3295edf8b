/*
 * ring_bench.c — ring attention's time and memory per rank (issue 15;
 * docs/distributed.md), and the same messages alone, to tell communication
 * from computation.
 *
 *   mpirun [--bind-to none] -np P build/bench/attn-bench-ring [options]
 *     --len L        sequence length (default 8192)
 *     --heads H      query heads (8); --kv-heads (H); --dim head_dim (64)
 *     --no-causal    every query sees every key (default causal)
 *     --backward     time the backward too
 *     --reps N       runs of each (3); the medians are printed
 *     --simulate P   with one process: the compute of ranks 0 and P − 1 of
 *                    a P-rank ring, each one's P steps in sequence (the
 *                    slower is printed), and the bytes a rank would send
 *     --mha          the MHA layer over the ring instead (embed_dim = heads ×
 *                    head_dim, self-attention, training forward and
 *                    backward with d_params); with -np 1 also one process's
 *                    attn_mha_forward_train and attn_mha_backward, the same
 *                    layer and rows, to measure the ring's own cost
 *
 * Each rank makes random q, k, v for its own positions only. Times are the
 * slowest rank's; "messages alone" passes shards of the same sizes round
 * the ring with MPI_Sendrecv_replace and no attention (the forward's P − 1
 * passes; the backward's P − 1 of keys and values and P of their
 * gradients). Peak memory is the largest rank's peak resident set
 * (getrusage), which includes MPI's own buffers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <attn_mpi.h>

#include "bench_util.h"
#include "ring_internal.h"  /* the simulation's ring: ring_alloc, ring_step_op */

typedef struct options {
    int64_t len, heads, kv_heads, dim;
    int causal, backward, reps, simulate, mha;
} options;

static int parse(int argc, char **argv, options *o)
{
    *o = (options){8192, 8, 0, 64, 1, 0, 3, 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-causal"))
            o->causal = 0;
        else if (!strcmp(a, "--mha"))
            o->mha = 1;
        else if (!strcmp(a, "--backward"))
            o->backward = 1;
        else if (v && !strcmp(a, "--len"))
            o->len = atoll(v), i++;
        else if (v && !strcmp(a, "--heads"))
            o->heads = atoll(v), i++;
        else if (v && !strcmp(a, "--kv-heads"))
            o->kv_heads = atoll(v), i++;
        else if (v && !strcmp(a, "--dim"))
            o->dim = atoll(v), i++;
        else if (v && !strcmp(a, "--reps"))
            o->reps = atoi(v), i++;
        else if (v && !strcmp(a, "--simulate"))
            o->simulate = atoi(v), i++;
        else
            return -1;
    }
    if (o->kv_heads == 0)
        o->kv_heads = o->heads;
    return o->len >= 1 && o->heads >= 1 && o->kv_heads >= 1 && o->dim >= 1 && o->reps >= 1 &&
                   o->simulate >= 0 ? 0 : -1;
}

static float *random_floats(int64_t n, unsigned seed)
{
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
    if (!x) {
        fprintf(stderr, "out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) / (float)(1u << 23) - 1.0f;
    }
    return x;
}

static void check(attn_status st)
{
    if (st != ATTN_OK) {
        fprintf(stderr, "%s: %s\n", attn_status_string(st), attn_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

static double slowest(double t)
{
    double all;
    MPI_Allreduce(&t, &all, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return all;
}

static double peak_mib(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return slowest((double)u.ru_maxrss / 1024.0);
}

/* The ring's messages alone: `passes` shifts of a shard of `floats` floats. */
static double messages_alone(int64_t floats, int passes)
{
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    float *buf = random_floats(floats, 5);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = bench_now();
    for (int p = 0; p < passes && size > 1; p++)
        MPI_Sendrecv_replace(buf, (int)floats, MPI_FLOAT, (rank + 1) % size, 3,
                             (rank + size - 1) % size, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    double t = slowest(bench_now() - t0);
    free(buf);
    return t;
}

static void run_ring(const options *o)
{
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    attn_mpi_ring *ring = NULL;
    check(attn_mpi_ring_create(&ring, MPI_COMM_WORLD, 1, o->heads, o->kv_heads, o->len, o->dim,
                               o->dim));
    check(attn_mpi_ring_set_causal(ring, o->causal ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE));
    int64_t n = 0;
    check(attn_mpi_ring_local_len(ring, &n));
    const int64_t nq = o->heads * n * o->dim, nk = o->kv_heads * n * o->dim;
    float *q = random_floats(nq, 1 + (unsigned)rank), *k = random_floats(nk, 7 + (unsigned)rank);
    float *v = random_floats(nk, 13 + (unsigned)rank), *d_out = random_floats(nq, 17);
    float *out = random_floats(nq, 0), *lse = random_floats(o->heads * n, 0);
    float *d_q = random_floats(nq, 0), *d_k = random_floats(nk, 0), *d_v = random_floats(nk, 0);
    attn_context *ctx = NULL;
    check(attn_context_create(&ctx));
    check(attn_mpi_ring_forward(ctx, ring, q, k, v, out, lse));  /* warm-up */
    double fwd[64], bwd[64], comm_f[64], comm_b[64];
    int reps = o->reps > 64 ? 64 : o->reps;
    int64_t shard_max = 0, local = o->kv_heads * n * 2 * o->dim;
    MPI_Allreduce(&local, &shard_max, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    for (int r = 0; r < reps; r++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = bench_now();
        check(attn_mpi_ring_forward(ctx, ring, q, k, v, out, lse));
        fwd[r] = slowest(bench_now() - t0);
        bwd[r] = 0.0;
        if (o->backward) {
            MPI_Barrier(MPI_COMM_WORLD);
            t0 = bench_now();
            check(attn_mpi_ring_backward(ctx, ring, q, k, v, out, lse, d_out, d_q, d_k, d_v));
            bwd[r] = slowest(bench_now() - t0);
        }
        comm_f[r] = messages_alone(shard_max, size - 1);
        comm_b[r] = o->backward ? messages_alone(shard_max, 2 * size - 1) : 0.0;
    }
    double mib = peak_mib();
    if (rank == 0) {
        printf("ring: np %d, L %lld, heads %lld/%lld, head_dim %lld, %s, %lld positions/rank: "
               "forward %.3f s (messages alone %.3f s)", size, (long long)o->len,
               (long long)o->heads, (long long)o->kv_heads, (long long)o->dim,
               o->causal ? "causal" : "not causal", (long long)n, bench_median(fwd, reps),
               bench_median(comm_f, reps));
        if (o->backward)
            printf(", backward %.3f s (messages alone %.3f s)", bench_median(bwd, reps),
                   bench_median(comm_b, reps));
        printf(", peak RSS %.0f MiB/rank, median of %d\n", mib, reps);
    }
    attn_context_destroy(ctx);
    attn_mpi_ring_destroy(ring);
    float *bufs[] = {q, k, v, d_out, out, lse, d_q, d_k, d_v};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
}

/* ---- --mha: the layer over the ring ------------------------------------------ */

typedef struct mha_times {
    double forward, backward;
} mha_times;

/* The median forward and backward of the layer over the ring, or of one
 * process's training calls (single; -np 1 only). */
static mha_times time_mha(const options *o, attn_context *ctx, const attn_mpi_ring *ring,
                          attn_mha *mha, int64_t n, int single)
{
    const int64_t E = o->heads * o->dim;
    int64_t count = 0;
    check(attn_mha_param_count(mha, &count));
    float *x = random_floats(n * E, 3), *out = random_floats(n * E, 0);
    float *d_out = random_floats(n * E, 19), *dx = random_floats(n * E, 0);
    float *d_params = random_floats(count, 0);
    attn_mpi_activations *act = NULL;
    attn_activations *act1 = NULL;
    check(attn_mpi_activations_create(&act));
    check(attn_activations_create(&act1));
    double fwd[64], bwd[64];
    int reps = o->reps > 64 ? 64 : o->reps;
    for (int r = -1; r < reps; r++) {  /* r = -1: warm-up */
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = bench_now();
        check(single ? attn_mha_forward_train(ctx, mha, 1, n, n, x, x, x, NULL, out, NULL, act1)
                     : attn_mpi_ring_mha_forward(ctx, ring, mha, x, x, x, out, act));
        double t1 = slowest(bench_now() - t0);
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = bench_now();
        check(single ? attn_mha_backward(ctx, mha, act1, d_out, dx, dx, dx, d_params)
                     : attn_mpi_ring_mha_backward(ctx, ring, mha, act, d_out, dx, dx, dx,
                                                  d_params));
        double t2 = slowest(bench_now() - t0);
        if (r >= 0)
            fwd[r] = t1, bwd[r] = t2;
    }
    attn_mpi_activations_destroy(act);
    attn_activations_destroy(act1);
    float *bufs[] = {x, out, d_out, dx, d_params};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    return (mha_times){bench_median(fwd, reps), bench_median(bwd, reps)};
}

static void run_mha(const options *o)
{
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const int64_t E = o->heads * o->dim;
    attn_mpi_ring *ring = NULL;
    check(attn_mpi_ring_create(&ring, MPI_COMM_WORLD, 1, o->heads, o->kv_heads, o->len, o->dim,
                               o->dim));
    attn_mha *mha = NULL;
    check(attn_mha_create(&mha, E, o->heads, o->kv_heads, E, E, 1));
    int64_t count = 0;
    check(attn_mha_param_count(mha, &count));
    float *params = random_floats(count, 23);  /* the same on every rank */
    for (int64_t i = 0; i < count; i++)
        params[i] *= 0.05f;
    check(attn_mha_set_params(mha, params));
    check(attn_mha_set_causal(mha, o->causal ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE));
    int64_t n = 0;
    check(attn_mpi_ring_local_len(ring, &n));
    attn_context *ctx = NULL;
    check(attn_context_create(&ctx));
    mha_times ring_t = time_mha(o, ctx, ring, mha, n, 0);
    mha_times one = {0.0, 0.0};
    if (size == 1)
        one = time_mha(o, ctx, ring, mha, n, 1);
    double mib = peak_mib();
    if (rank == 0) {
        printf("mha ring: np %d, L %lld, embed_dim %lld, heads %lld/%lld, %s, %lld "
               "positions/rank: forward %.3f s, backward %.3f s", size, (long long)o->len,
               (long long)E, (long long)o->heads, (long long)o->kv_heads,
               o->causal ? "causal" : "not causal", (long long)n, ring_t.forward,
               ring_t.backward);
        if (size == 1)
            printf("; one process's attn_mha_forward_train %.3f s, attn_mha_backward %.3f s",
                   one.forward, one.backward);
        printf(", peak RSS %.0f MiB/rank, median of %d\n", mib, o->reps);
    }
    free(params);
    attn_context_destroy(ctx);
    attn_mha_destroy(mha);
    attn_mpi_ring_destroy(ring);
}

/* ---- --simulate P: ranks of a P-rank ring, in one process ------------------- */

/* One step of rank r with rank s's shard: the very op and mask the ring
 * makes for it (src/mpi/ring.c's ring_step_op; this program is linked with
 * libattn-mpi's objects). Returns its seconds. */
static double simulated_step(attn_context *ctx, const attn_mpi_ring *ring, int s,
                             int backward, float *const buf[9])
{
    attn_sdpa *op = NULL;
    attn_mask *mask = NULL;
    int64_t *lengths = malloc((size_t)ring->batch * sizeof *lengths);
    check(ring_step_op(ring, s, "simulate", &op, &mask, lengths));
    double t0 = bench_now();
    if (backward)
        check(attn_sdpa_backward(ctx, op, buf[0], buf[1], buf[2], mask, buf[3], buf[4], buf[5],
                                 buf[6], buf[7], buf[8]));
    else
        check(attn_sdpa_forward(ctx, op, buf[0], buf[1], buf[2], mask, buf[3], NULL, buf[4]));
    double t = bench_now() - t0;
    attn_sdpa_destroy(op);
    attn_mask_destroy(mask);
    free(lengths);
    return t;
}

static void simulate(const options *o)
{
    const int P = o->simulate;
    const int64_t sizes[6] = {1, o->heads, o->kv_heads, o->len, o->dim, o->dim};
    attn_mpi_ring *rings[2] = {NULL, NULL};
    /* Rank 0 (its other steps take later ranks' shards: STEP_QUERY_SUFFIX)
     * and rank P − 1 (earlier ranks': STEP_KEY_PREFIX); the slower of the
     * two is the ring's time. */
    for (int i = 0; i < 2; i++) {
        check(ring_alloc(&rings[i], i == 0 ? 0 : P - 1, P, sizes, "simulate"));
        rings[i]->causal = o->causal;
    }
    const int64_t m = rings[0]->max_len + 1;
    float *buf[9];  /* q, k, v, out, lse, d_out, d_q, d_k, d_v */
    for (int i = 0; i < 9; i++)
        buf[i] = random_floats(o->heads * m * o->dim, 3 + (unsigned)i);
    for (int64_t i = 0; i < o->heads * m; i++)
        buf[4][i] = 10.0f;  /* an lse for the backward: any finite value times the same */
    attn_context *ctx = NULL;
    check(attn_context_create(&ctx));
    double fwd[64], bwd[64];
    int reps = o->reps > 64 ? 64 : o->reps;
    for (int rep = 0; rep < reps; rep++) {
        fwd[rep] = bwd[rep] = 0.0;
        for (int i = 0; i < (P > 1 ? 2 : 1); i++) {
            double f = 0.0, b = 0.0;
            for (int t = 0; t < P; t++) {
                int s = (rings[i]->rank - t + P) % P;
                f += simulated_step(ctx, rings[i], s, 0, buf);
                if (o->backward)
                    b += simulated_step(ctx, rings[i], s, 1, buf);
            }
            fwd[rep] = fwd[rep] > f ? fwd[rep] : f;
            bwd[rep] = bwd[rep] > b ? bwd[rep] : b;
        }
    }
    printf("ring simulated: np %d, L %lld, heads %lld/%lld, head_dim %lld, %s: the slower "
           "of ranks 0 and %d: forward %.3f s", P, (long long)o->len, (long long)o->heads,
           (long long)o->kv_heads, (long long)o->dim, o->causal ? "causal" : "not causal",
           P - 1, bench_median(fwd, reps));
    if (o->backward)
        printf(", backward %.3f s", bench_median(bwd, reps));
    printf("; each rank sends %d shards of %.1f MiB forward (%d backward)\n", P - 1,
           (double)ring_shard_capacity(rings[0]) * 4.0 / 1048576.0, 2 * P - 1);
    attn_context_destroy(ctx);
    for (int i = 0; i < 9; i++)
        free(buf[i]);
    ring_release(rings[0]);
    ring_release(rings[1]);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    options o;
    if (parse(argc, argv, &o) != 0) {
        fprintf(stderr, "usage: attn-bench-ring [--len L] [--heads H] [--kv-heads H] "
                        "[--dim D] [--no-causal] [--backward] [--reps N] [--simulate P] [--mha]\n");
        MPI_Finalize();
        return 2;
    }
    if (o.simulate > 0)
        simulate(&o);
    else if (o.mha)
        run_mha(&o);
    else
        run_ring(&o);
    MPI_Finalize();
    return 0;
}
