/*
 * ring_pass.c — passing key/value shards (and their gradients) round the
 * ring: rank r sends to r + 1 and receives from r − 1, with non-blocking
 * calls posted before a step's attention and waited for after it, so the
 * next shard travels while the current one is computed.
 */
#include "ring_internal.h"

/* Within the ring's own communicator, one tag serves every message: the
 * messages between two ranks are matched in the order they were sent. */
#define RING_TAG 17

int64_t ring_shard_floats(const attn_mpi_ring *ring, int s)
{
    return ring->batch * ring->heads_kv * ring_len(ring, s) * (ring->dim_qk + ring->dim_v);
}

int64_t ring_shard_capacity(const attn_mpi_ring *ring)
{
    return ring->batch * ring->heads_kv * ring->max_len * (ring->dim_qk + ring->dim_v);
}

attn_status ring_pass_post(const attn_mpi_ring *ring, const float *send, int leaving,
                           float *recv, int arriving, MPI_Request reqs[2], const char *func)
{
    int next = (ring->rank + 1) % ring->size;
    int prev = (ring->rank + ring->size - 1) % ring->size;
    /* Counts were checked against INT_MAX when the ring was made. */
    int rc = MPI_Irecv(recv, ring_count(ring_shard_floats(ring, arriving)), MPI_FLOAT, prev,
                       RING_TAG, ring->comm, &reqs[0]);
    if (rc != MPI_SUCCESS)
        return ring_mpi_fail(rc, func, "MPI_Irecv");
    rc = MPI_Isend(send, ring_count(ring_shard_floats(ring, leaving)), MPI_FLOAT, next,
                   RING_TAG, ring->comm, &reqs[1]);
    if (rc != MPI_SUCCESS) {
        reqs[1] = MPI_REQUEST_NULL;  /* the receive stays for ring_pass_drain */
        return ring_mpi_fail(rc, func, "MPI_Isend");
    }
    return ATTN_OK;
}

void ring_pass_drain(MPI_Request *reqs, int n)
{
    for (int i = 0; i < n; i++)
        if (reqs[i] != MPI_REQUEST_NULL) {
            MPI_Cancel(&reqs[i]);
            MPI_Wait(&reqs[i], MPI_STATUS_IGNORE);
            reqs[i] = MPI_REQUEST_NULL;
        }
}

attn_status ring_pass_wait(MPI_Request reqs[2], const char *func)
{
    int rc = MPI_Waitall(2, reqs, MPI_STATUSES_IGNORE);
    if (rc == MPI_SUCCESS)
        return ATTN_OK;
    attn_status st = ring_mpi_fail(rc, func, "MPI_Waitall");
    ring_pass_drain(reqs, 2);
    return st;
}
