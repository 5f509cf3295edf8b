/*
 * prng.h — the demo's own random numbers, the same on every machine.
 *
 * The demo's "random" weights, queries and training data must print the same
 * numbers everywhere, so they cannot come from rand() (whose sequence the C
 * standard leaves to each libc). SplitMix64 (Steele, Lea & Flood 2014; the
 * seeder of xoshiro) gives 64-bit words from a counter; uniforms take the top
 * 53 bits, and normals come from the Box–Muller transform.
 */
#ifndef ATTN_TOOLS_PRNG_H
#define ATTN_TOOLS_PRNG_H

#include <stdint.h>

typedef struct prng {
    uint64_t state;
    int has_spare;   /* Box–Muller makes normals in pairs */
    double spare;
} prng;

/* Starts the sequence of seed. */
void prng_seed(prng *g, uint64_t seed);

/* The next 64-bit word (SplitMix64). */
uint64_t prng_next(prng *g);

/* Uniform in [0, 1), a multiple of 2^-53. */
double prng_uniform(prng *g);

/* Normal with the given mean and standard deviation. */
double prng_normal(prng *g, double mean, double stddev);

/* Fills x[0 .. n) with uniforms in [lo, hi). */
void prng_fill_uniform(prng *g, float *x, int64_t n, double lo, double hi);

/* Fills x[0 .. n) with normals of the given mean and standard deviation. */
void prng_fill_normal(prng *g, float *x, int64_t n, double mean, double stddev);

#endif
