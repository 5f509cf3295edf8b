/*
 * data_parallel.c — data parallelism's one collective: averaging a flat
 * gradient over the ranks (PyTorch DistributedDataParallel's all-reduce,
 * Li et al. 2020, §3.2), so every rank takes the same optimizer step.
 */
#include <limits.h>

#include "ring_internal.h"

/* MPI counts are int: a longer vector goes in pieces of 2^30 floats. */
#define PIECE ((int64_t)1 << 30)

attn_status ring_allreduce_sum(MPI_Comm comm, float *values, int64_t count, const char *func)
{
    for (int64_t at = 0; at < count; at += PIECE) {
        int n = (int)(count - at < PIECE ? count - at : PIECE);
        int rc = MPI_Allreduce(MPI_IN_PLACE, values + at, n, MPI_FLOAT, MPI_SUM, comm);
        if (rc != MPI_SUCCESS)
            return ring_mpi_fail(rc, func, "MPI_Allreduce");
    }
    return ATTN_OK;
}

attn_status attn_mpi_allreduce_mean(MPI_Comm comm, float *values, int64_t count)
{
    static const char *f = "attn_mpi_allreduce_mean";
    if (comm == MPI_COMM_NULL)  /* no collective is possible: fail alone */
        return attn_set_error(ATTN_ERR_INVALID_ARGUMENT, f, "comm is MPI_COMM_NULL");
    attn_status st = ATTN_OK;
    if (count < 0)
        st = ring_fail(ATTN_ERR_INVALID_ARGUMENT, f, "count (%lld) is negative",
                       (long long)count);
    else if (!values && count > 0)
        st = attn_set_error(ATTN_ERR_NULL_POINTER, f, "values is NULL");
    st = ring_agree(comm, NULL, st, f);
    if (st != ATTN_OK)
        return st;
    /* Every rank must pass the same count, or the pieces would not match. */
    int64_t mine[2] = {count, -count}, all[2];
    int rc = MPI_Allreduce(mine, all, 2, MPI_INT64_T, MPI_MIN, comm);
    if (rc != MPI_SUCCESS)
        return ring_mpi_fail(rc, f, "MPI_Allreduce");
    if (all[0] != -all[1])
        return ring_fail(ATTN_ERR_SHAPE_MISMATCH, f, "the ranks passed different counts "
                         "(from %lld to %lld)", (long long)all[0], (long long)-all[1]);
    int size = 1;
    rc = MPI_Comm_size(comm, &size);
    if (rc != MPI_SUCCESS)
        return ring_mpi_fail(rc, f, "MPI_Comm_size");
    st = ring_allreduce_sum(comm, values, count, f);
    if (st != ATTN_OK)
        return st;
    /* Every rank divides the same sum the same way: MPI_Allreduce gives
     * every rank the same sum in Open MPI and MPICH (the standard advises
     * it; tests/mpi/test_ring.c checks the means bit for bit). */
    for (int64_t i = 0; i < count; i++)
        values[i] /= (float)size;
    return ATTN_OK;
}
