/*
 * ring_attention.c — causal self-attention over a sequence split across MPI
 * processes with libattn-mpi's ring attention, checked against one
 * process's attn_sdpa_forward over the whole sequence.
 *
 *   mpicc ring_attention.c $(pkg-config --cflags --libs attn-mpi) -lm -o ring_attention
 *   mpirun -np 2 ./ring_attention [seq_len]
 *
 * Every rank makes the same q, k, v for the whole sequence from one seed
 * (a real program would load only its own rows), keeps the rows of its
 * positions (attn_mpi_ring_positions), runs the ring forward and backward,
 * and compares its rows with the single-process forward and backward that
 * it also computes. Rank 0 prints the largest differences.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attn_mpi.h>

enum { BATCH = 1, HEADS = 4, KV_HEADS = 2, DIM = 32 };

/* A fixed pseudo-random fill in [-1, 1) (a linear congruential generator:
 * the same numbers on every rank). */
static void fill(float *x, size_t n, unsigned seed)
{
    unsigned s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) / (float)(1u << 23) - 1.0f;
    }
}

/* Rows `pos` of a [BATCH, heads, len, DIM] (BHSD) tensor into one of n rows. */
static void take_rows(const float *whole, int64_t heads, int64_t len, const int64_t *pos,
                      int64_t n, float *local)
{
    for (int64_t bh = 0; bh < BATCH * heads; bh++)
        for (int64_t i = 0; i < n; i++)
            memcpy(local + (bh * n + i) * DIM, whole + (bh * len + pos[i]) * DIM,
                   DIM * sizeof(float));
}

/* The largest |a − b| over the n rows `pos` of whole, relative to the
 * largest |b| there. */
static double worst_difference(const float *local, const float *whole, int64_t heads,
                               int64_t len, const int64_t *pos, int64_t n)
{
    double diff = 0.0, size = 0.0;
    for (int64_t bh = 0; bh < BATCH * heads; bh++)
        for (int64_t i = 0; i < n; i++)
            for (int64_t d = 0; d < DIM; d++) {
                double a = local[(bh * n + i) * DIM + d];
                double b = whole[(bh * len + pos[i]) * DIM + d];
                diff = fmax(diff, fabs(a - b));
                size = fmax(size, fabs(b));
            }
    return size > 0.0 ? diff / size : diff;
}

#define CHECK(call)                                                                     \
    do {                                                                                \
        attn_status st_ = (call);                                                       \
        if (st_ != ATTN_OK) {                                                           \
            fprintf(stderr, "%s: %s\n", attn_status_string(st_), attn_last_error());   \
            MPI_Abort(MPI_COMM_WORLD, 1);                                               \
        }                                                                               \
    } while (0)

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0, ranks = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    const int64_t L = argc > 1 ? atoll(argv[1]) : 1000;
    const size_t nq = (size_t)(BATCH * HEADS * L * DIM), nk = (size_t)(BATCH * KV_HEADS * L * DIM);

    /* The whole sequence and one process's results. */
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *d_out = malloc(nq * 4);
    float *out = malloc(nq * 4), *lse = malloc(nq / DIM * 4);
    float *d_q = malloc(nq * 4), *d_k = malloc(nk * 4), *d_v = malloc(nk * 4);
    fill(q, nq, 1), fill(k, nk, 2), fill(v, nk, 3), fill(d_out, nq, 4);
    attn_context *ctx = NULL;
    attn_sdpa *op = NULL;
    CHECK(attn_context_create(&ctx));
    CHECK(attn_sdpa_create(&op, BATCH, HEADS, KV_HEADS, L, L, DIM, DIM));
    CHECK(attn_sdpa_set_causal(op, ATTN_CAUSAL_TOP_LEFT));
    CHECK(attn_sdpa_forward(ctx, op, q, k, v, NULL, out, NULL, lse));
    CHECK(attn_sdpa_backward(ctx, op, q, k, v, NULL, out, lse, d_out, d_q, d_k, d_v));

    /* The ring: this rank's rows only. */
    attn_mpi_ring *ring = NULL;
    CHECK(attn_mpi_ring_create(&ring, MPI_COMM_WORLD, BATCH, HEADS, KV_HEADS, L, DIM, DIM));
    CHECK(attn_mpi_ring_set_causal(ring, ATTN_CAUSAL_TOP_LEFT));
    int64_t n = 0;
    CHECK(attn_mpi_ring_local_len(ring, &n));
    int64_t *pos = malloc((size_t)(n + 1) * sizeof *pos);
    CHECK(attn_mpi_ring_positions(ring, pos));
    size_t lq = (size_t)(BATCH * HEADS * n * DIM) + 1;
    size_t lk = (size_t)(BATCH * KV_HEADS * n * DIM) + 1;
    float *my_q = malloc(lq * 4), *my_k = malloc(lk * 4), *my_v = malloc(lk * 4);
    float *my_d_out = malloc(lq * 4), *my_out = malloc(lq * 4), *my_lse = malloc(lq / DIM * 4 + 4);
    float *my_d_q = malloc(lq * 4), *my_d_k = malloc(lk * 4), *my_d_v = malloc(lk * 4);
    take_rows(q, HEADS, L, pos, n, my_q);
    take_rows(k, KV_HEADS, L, pos, n, my_k);
    take_rows(v, KV_HEADS, L, pos, n, my_v);
    take_rows(d_out, HEADS, L, pos, n, my_d_out);
    double t0 = MPI_Wtime();
    CHECK(attn_mpi_ring_forward(ctx, ring, my_q, my_k, my_v, my_out, my_lse));
    double t1 = MPI_Wtime();
    CHECK(attn_mpi_ring_backward(ctx, ring, my_q, my_k, my_v, my_out, my_lse, my_d_out, my_d_q,
                                 my_d_k, my_d_v));
    double t2 = MPI_Wtime();

    double mine[2] = {worst_difference(my_out, out, HEADS, L, pos, n),
                      fmax(worst_difference(my_d_q, d_q, HEADS, L, pos, n),
                           fmax(worst_difference(my_d_k, d_k, KV_HEADS, L, pos, n),
                                worst_difference(my_d_v, d_v, KV_HEADS, L, pos, n)))};
    double all[2] = {0.0, 0.0};  /* the result on rank 0 only */
    MPI_Reduce(mine, all, 2, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("ring attention: %d ranks, causal, seq_len %lld, %d heads (%d kv), head_dim %d; "
               "rank 0 holds %lld positions\n", ranks, (long long)L, HEADS, KV_HEADS, DIM,
               (long long)n);
        printf("ring vs one process: out %.2e, gradients %.2e (largest relative difference)\n",
               all[0], all[1]);
        printf("rank 0: forward %.3f s, backward %.3f s\n", t1 - t0, t2 - t1);
    }
    int ok = all[0] <= 1e-5 && all[1] <= 1e-5;
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);

    attn_mpi_ring_destroy(ring);
    attn_sdpa_destroy(op);
    attn_context_destroy(ctx);
    float *bufs[] = {q, k, v, d_out, out, lse, d_q, d_k, d_v, my_q, my_k, my_v, my_d_out,
                     my_out, my_lse, my_d_q, my_d_k, my_d_v};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(pos);
    MPI_Finalize();
    return ok ? 0 : 1;
}
