/*
 * mpi_test_util.c — see mpi_test_util.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mpi_test_util.h"
#include "test_util.h"

float *floats(int64_t n)
{
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    assert_non_null(p);
    tu_fill_nan(p, (size_t)(n > 0 ? n : 0));
    return p;
}

double *doubles(int64_t n)
{
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    assert_non_null(p);
    return p;
}

double max_over_ranks(double x)
{
    double all = 0.0;
    assert_int_equal(MPI_Allreduce(&x, &all, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD),
                     MPI_SUCCESS);
    return all;
}

int same_bits_everywhere(const float *a, const float *b, int64_t n)
{
    int same = n == 0 || memcmp(a, b, (size_t)n * sizeof(float)) == 0, all = 0;
    assert_int_equal(MPI_Allreduce(&same, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD),
                     MPI_SUCCESS);
    return all;
}

void expect_everywhere(attn_status got, attn_status want, const char *message_part)
{
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    char message[512], first[512];
    snprintf(message, sizeof message, "%s", attn_last_error());
    /* Past "function: ": ranks in different calls each name their own. */
    const char *detail = strstr(message, ": ");
    snprintf(first, sizeof first, "%s", detail ? detail : message);
    assert_int_equal(MPI_Bcast(first, (int)sizeof first, MPI_CHAR, 0, MPI_COMM_WORLD),
                     MPI_SUCCESS);
    int same = want == ATTN_OK || strcmp(first, detail ? detail : message) == 0;
    int mine[3] = {(int)got, -(int)got, same && strstr(message, message_part) != NULL}, all[3];
    assert_int_equal(MPI_Allreduce(mine, all, 3, MPI_INT, MPI_MIN, MPI_COMM_WORLD),
                     MPI_SUCCESS);
    if (all[0] != (int)want || -all[1] != (int)want || all[2] != 1)
        fail_msg("rank %d: %s \"%s\", want %s with \"%s\" and the same message on every "
                 "rank", rank, attn_status_string(got), message, attn_status_string(want),
                 message_part);
}
