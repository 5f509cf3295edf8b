/*
 * bench_util.h — what every libattn benchmark program shares: a monotonic
 * clock and the median of a set of timings (the machines are noisy: every
 * figure a bench prints is a median of several runs).
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

/* Seconds on CLOCK_MONOTONIC. */
double bench_now(void);

/* The median of v[0..n) (n >= 1); sorts v in place. */
double bench_median(double *v, int n);

#endif /* BENCH_UTIL_H */
