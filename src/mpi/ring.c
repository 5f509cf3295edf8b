/*
 * ring.c — the ring attention plan: its shapes, the zig-zag shards of the
 * sequence, its settings, and the op each step computes with.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "ring_internal.h"

/* The zig-zag cut: 2·size chunks as even as possible, the first
 * seq_len mod 2·size of them one position longer. */
static int64_t chunk_length(int64_t seq_len, int size, int64_t c)
{
    int64_t n = 2 * (int64_t)size;
    return seq_len / n + (c < seq_len % n ? 1 : 0);
}

static int64_t chunk_start(int64_t seq_len, int size, int64_t c)
{
    int64_t n = 2 * (int64_t)size, rem = seq_len % n;
    return c * (seq_len / n) + (c < rem ? c : rem);
}

static attn_status check_sizes(int64_t batch, int64_t heads_q, int64_t heads_kv,
                               int64_t seq_len, int64_t dim_qk, int64_t dim_v, const char *f)
{
    if (batch < 0 || seq_len < 0)
        return ring_fail(ATTN_ERR_INVALID_ARGUMENT, f, "batch (%lld) and seq_len (%lld) must "
                         "be >= 0", (long long)batch, (long long)seq_len);
    if (heads_q < 1 || heads_kv < 1 || dim_qk < 1 || dim_v < 1)
        return ring_fail(ATTN_ERR_INVALID_ARGUMENT, f, "heads_q (%lld), heads_kv (%lld), "
                         "dim_qk (%lld) and dim_v (%lld) must be >= 1", (long long)heads_q,
                         (long long)heads_kv, (long long)dim_qk, (long long)dim_v);
    if (heads_q % heads_kv != 0)
        return ring_fail(ATTN_ERR_SHAPE_MISMATCH, f, "heads_q (%lld) is not a multiple of "
                         "heads_kv (%lld)", (long long)heads_q, (long long)heads_kv);
    /* The whole sequence through attn_sdpa_create: its limits (BLAS int,
     * size_t) bound every shard's op. */
    attn_sdpa *probe = NULL;
    attn_status st = attn_sdpa_create(&probe, batch, heads_q, heads_kv, seq_len, seq_len,
                                      dim_qk, dim_v);
    attn_sdpa_destroy(probe);
    return st;
}

/* The ranks agree on the sizes: the same six numbers everywhere. */
static attn_status check_same_sizes(MPI_Comm comm, const int64_t sizes[6], const char *f)
{
    int64_t lo[6], hi[6];
    int rc = MPI_Allreduce(sizes, lo, 6, MPI_INT64_T, MPI_MIN, comm);
    if (rc == MPI_SUCCESS)
        rc = MPI_Allreduce(sizes, hi, 6, MPI_INT64_T, MPI_MAX, comm);
    if (rc != MPI_SUCCESS)
        return ring_mpi_fail(rc, f, "MPI_Allreduce");
    static const char *const names[6] = {"batch", "heads_q", "heads_kv", "seq_len", "dim_qk",
                                         "dim_v"};
    for (int i = 0; i < 6; i++)
        if (lo[i] != hi[i])
            return ring_fail(ATTN_ERR_SHAPE_MISMATCH, f, "the ranks passed different %s "
                             "(from %lld to %lld)", names[i], (long long)lo[i],
                             (long long)hi[i]);
    return ATTN_OK;
}

void ring_release(attn_mpi_ring *ring)
{
    if (ring) {
        free(ring->chunk_a);
        free(ring->chunk_b);
        free(ring);
    }
}

attn_status ring_alloc(attn_mpi_ring **out, int rank, int size, const int64_t s[6],
                       const char *f)
{
    attn_mpi_ring *ring = calloc(1, sizeof *ring);
    if (ring) {
        ring->chunk_a = calloc((size_t)size, sizeof *ring->chunk_a);
        ring->chunk_b = calloc((size_t)size, sizeof *ring->chunk_b);
    }
    if (!ring || !ring->chunk_a || !ring->chunk_b) {
        ring_release(ring);
        return ring_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate the ring");
    }
    ring->rank = rank, ring->size = size;
    ring->batch = s[0], ring->heads_q = s[1], ring->heads_kv = s[2];
    ring->seq_len = s[3], ring->dim_qk = s[4], ring->dim_v = s[5];
    ring->layout = ATTN_LAYOUT_BHSD;
    ring->scale = (float)(1.0 / sqrt((double)s[4]));
    ring->causal = false;
    for (int r = 0; r < size; r++) {
        ring->chunk_a[r] = chunk_length(s[3], size, r);
        ring->chunk_b[r] = chunk_length(s[3], size, 2 * (int64_t)size - 1 - r);
        if (ring_len(ring, r) > ring->max_len)
            ring->max_len = ring_len(ring, r);
    }
    /* The largest message: a shard's keys and values (or their gradients). */
    int64_t shard = ring_shard_capacity(ring);
    if (ring_count(shard) < 0) {
        ring_release(ring);
        return ring_fail(ATTN_ERR_UNSUPPORTED, f, "a shard's keys and values are %lld "
                         "floats, above INT_MAX, the largest count of an MPI call",
                         (long long)shard);
    }
    *out = ring;
    return ATTN_OK;
}

attn_status attn_mpi_ring_create(attn_mpi_ring **ring, MPI_Comm comm, int64_t batch,
                                 int64_t heads_q, int64_t heads_kv, int64_t seq_len,
                                 int64_t dim_qk, int64_t dim_v)
{
    static const char *f = "attn_mpi_ring_create";
    if (comm == MPI_COMM_NULL)  /* no collective is possible: fail alone */
        return attn_set_error(ATTN_ERR_INVALID_ARGUMENT, f, "comm is MPI_COMM_NULL");
    int rank = 0, size = 1;
    int rc = MPI_Comm_rank(comm, &rank);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_size(comm, &size);
    if (rc != MPI_SUCCESS)
        return ring_mpi_fail(rc, f, "MPI_Comm_rank");

    attn_status st = ring ? check_sizes(batch, heads_q, heads_kv, seq_len, dim_qk, dim_v, f)
                          : attn_set_error(ATTN_ERR_NULL_POINTER, f, "ring is NULL");
    st = ring_agree(comm, NULL, st, f);
    if (st != ATTN_OK)
        return st;
    const int64_t sizes[6] = {batch, heads_q, heads_kv, seq_len, dim_qk, dim_v};
    st = check_same_sizes(comm, sizes, f);
    if (st != ATTN_OK)
        return st;

    attn_mpi_ring *made = NULL;
    st = ring_agree(comm, NULL, ring_alloc(&made, rank, size, sizes, f), f);
    if (st != ATTN_OK) {
        ring_release(made);
        return st;
    }
    rc = MPI_Comm_dup(comm, &made->comm);
    if (rc == MPI_SUCCESS) {
        rc = MPI_Comm_set_errhandler(made->comm, MPI_ERRORS_RETURN);
        if (rc != MPI_SUCCESS)
            MPI_Comm_free(&made->comm);
    }
    if (rc != MPI_SUCCESS) {
        ring_release(made);
        return ring_mpi_fail(rc, f, "MPI_Comm_dup");
    }
    *ring = made;
    return ATTN_OK;
}

void attn_mpi_ring_destroy(attn_mpi_ring *ring)
{
    if (!ring)
        return;
    MPI_Comm_free(&ring->comm);
    ring_release(ring);
}

attn_status attn_mpi_ring_set_layout(attn_mpi_ring *ring, attn_layout layout)
{
    static const char *f = "attn_mpi_ring_set_layout";
    if (!ring)
        return attn_set_error(ATTN_ERR_NULL_POINTER, f, "ring is NULL");
    if (layout != ATTN_LAYOUT_BHSD && layout != ATTN_LAYOUT_BSHD)
        return ring_fail(ATTN_ERR_INVALID_ARGUMENT, f, "layout (%d) is not an attn_layout",
                         (int)layout);
    ring->layout = layout;
    return ATTN_OK;
}

attn_status attn_mpi_ring_set_scale(attn_mpi_ring *ring, float scale)
{
    static const char *f = "attn_mpi_ring_set_scale";
    if (!ring)
        return attn_set_error(ATTN_ERR_NULL_POINTER, f, "ring is NULL");
    if (!isfinite(scale))
        return ring_fail(ATTN_ERR_INVALID_ARGUMENT, f, "scale (%g) is not finite",
                         (double)scale);
    ring->scale = scale;
    return ATTN_OK;
}

attn_status attn_mpi_ring_set_causal(attn_mpi_ring *ring, attn_causal causal)
{
    static const char *f = "attn_mpi_ring_set_causal";
    if (!ring)
        return attn_set_error(ATTN_ERR_NULL_POINTER, f, "ring is NULL");
    if (causal != ATTN_CAUSAL_NONE && causal != ATTN_CAUSAL_TOP_LEFT &&
        causal != ATTN_CAUSAL_BOTTOM_RIGHT)
        return ring_fail(ATTN_ERR_INVALID_ARGUMENT, f, "causal (%d) is not an attn_causal",
                         (int)causal);
    ring->causal = causal != ATTN_CAUSAL_NONE;
    return ATTN_OK;
}

attn_status attn_mpi_ring_local_len(const attn_mpi_ring *ring, int64_t *len)
{
    static const char *f = "attn_mpi_ring_local_len";
    if (!ring || !len)
        return attn_set_error(ATTN_ERR_NULL_POINTER, f, ring ? "len is NULL" : "ring is NULL");
    *len = ring_len(ring, ring->rank);
    return ATTN_OK;
}

attn_status attn_mpi_ring_positions(const attn_mpi_ring *ring, int64_t *positions)
{
    static const char *f = "attn_mpi_ring_positions";
    if (!ring)
        return attn_set_error(ATTN_ERR_NULL_POINTER, f, "ring is NULL");
    int r = ring->rank;
    if (!positions && ring_len(ring, r) > 0)
        return attn_set_error(ATTN_ERR_NULL_POINTER, f, "positions is NULL");
    int64_t a0 = chunk_start(ring->seq_len, ring->size, r);
    int64_t b0 = chunk_start(ring->seq_len, ring->size, 2 * (int64_t)ring->size - 1 - r);
    for (int64_t i = 0; i < ring->chunk_a[r]; i++)
        positions[i] = a0 + i;
    for (int64_t i = 0; i < ring->chunk_b[r]; i++)
        positions[ring->chunk_a[r] + i] = b0 + i;
    return ATTN_OK;
}

step_kind ring_step_kind(const attn_mpi_ring *ring, int source)
{
    if (!ring->causal)
        return STEP_ALL;
    if (source == ring->rank)
        return STEP_DIAGONAL;
    return source < ring->rank ? STEP_KEY_PREFIX : STEP_QUERY_SUFFIX;
}

attn_status ring_step_op(const attn_mpi_ring *ring, int source, const char *func,
                         attn_sdpa **op, attn_mask **mask, int64_t *lengths)
{
    *op = NULL;
    *mask = NULL;
    step_kind kind = ring_step_kind(ring, source);
    int64_t len_q = kind == STEP_QUERY_SUFFIX ? ring->chunk_b[ring->rank]
                                              : ring_len(ring, ring->rank);
    attn_status st = attn_sdpa_create(op, ring->batch, ring->heads_q, ring->heads_kv, len_q,
                                      ring_len(ring, source), ring->dim_qk, ring->dim_v);
    if (st == ATTN_OK)
        st = attn_sdpa_set_layout(*op, ring->layout);
    if (st == ATTN_OK)
        st = attn_sdpa_set_scale(*op, ring->scale);
    if (st == ATTN_OK && kind == STEP_DIAGONAL)
        st = attn_sdpa_set_causal(*op, ATTN_CAUSAL_TOP_LEFT);
    if (st == ATTN_OK && kind == STEP_KEY_PREFIX) {
        /* The shard's first chunk precedes every local query; its second
         * follows them all: a valid length, and the keys beyond it are
         * never read (src/attend.c). */
        for (int64_t b = 0; b < ring->batch; b++)
            lengths[b] = ring->chunk_a[source];
        st = attn_mask_create(mask);
        if (st == ATTN_OK)
            st = attn_mask_set_kv_lengths(*mask, lengths, ring->batch, len_q, 0);
    }
    if (st != ATTN_OK) {
        attn_sdpa_destroy(*op);
        attn_mask_destroy(*mask);
        *op = NULL;
        *mask = NULL;
        if (st == ATTN_ERR_OUT_OF_MEMORY)
            st = ring_fail(st, func, "cannot make the op of the step with rank %d's shard",
                           source);
    }
    return st;
}

attn_status ring_steps_make(const attn_mpi_ring *ring, ring_steps *steps, const char *func)
{
    size_t n = (size_t)ring->size;
    steps->ops = calloc(n, sizeof *steps->ops);
    steps->masks = calloc(n, sizeof *steps->masks);
    steps->lengths = calloc(n * (size_t)(ring->batch > 0 ? ring->batch : 1),
                            sizeof *steps->lengths);
    if (!steps->ops || !steps->masks || !steps->lengths)
        return ring_fail(ATTN_ERR_OUT_OF_MEMORY, func, "cannot allocate the steps' ops");
    for (int s = 0; s < ring->size; s++) {
        attn_status st = ring_step_op(ring, s, func, &steps->ops[s], &steps->masks[s],
                                      steps->lengths + (size_t)s * (size_t)ring->batch);
        if (st != ATTN_OK)
            return st;
    }
    return ATTN_OK;
}

void ring_steps_free(const attn_mpi_ring *ring, ring_steps *steps)
{
    for (int s = 0; steps->ops && s < ring->size; s++) {
        attn_sdpa_destroy(steps->ops[s]);
        attn_mask_destroy(steps->masks[s]);
    }
    free(steps->ops);
    free(steps->masks);
    free(steps->lengths);
}

attn_status ring_check_pointers(const attn_mpi_ring *ring, const attn_context *ctx,
                                const float *q, const float *k, const float *v,
                                const float *out, const float *lse, const float *d_out,
                                bool backward, const char *func)
{
    const int64_t len = ring_len(ring, ring->rank);
    const int64_t bq = ring->batch * ring->heads_q * len, bk = ring->batch * ring->heads_kv * len;
    const int64_t bb = backward ? bq : 0;  /* lse and d_out: the backward's inputs */
    const struct {
        const void *ptr;
        int64_t n;
        const char *name;
    } need[] = {{ctx, 1, "ctx"}, {q, bq, "q"}, {k, bk, "k"}, {v, bk, "v"}, {out, bq, "out"},
                {lse, bb, "lse"}, {d_out, bb, "d_out"}};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!need[i].ptr && need[i].n > 0)
            return ring_fail(ATTN_ERR_NULL_POINTER, func, "%s is NULL", need[i].name);
    return ATTN_OK;
}
