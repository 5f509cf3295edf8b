/*
 * mpi_test_util.h — what libattn-mpi's tests share: buffers, and verdicts
 * reduced over MPI_COMM_WORLD before any assert, so that a failure on one
 * rank fails every rank instead of leaving the others waiting in the next
 * collective call.
 */
#ifndef MPI_TEST_UTIL_H
#define MPI_TEST_UTIL_H

#include <stdint.h>

#include "attn_mpi.h"

/* n floats filled with NaN (at least one, so that n = 0 is not NULL). */
float *floats(int64_t n);
/* n doubles, zero. */
double *doubles(int64_t n);
/* The largest of x over the ranks. */
double max_over_ranks(double x);
/* Whether every rank's n floats of a and b have the same bits. */
int same_bits_everywhere(const float *a, const float *b, int64_t n);
/* Fails (on every rank) unless every rank got the status want, with a
 * message containing message_part, and, for a failure, the same message
 * past its "function: " as every other rank. */
void expect_everywhere(attn_status got, attn_status want, const char *message_part);

#endif /* MPI_TEST_UTIL_H */
