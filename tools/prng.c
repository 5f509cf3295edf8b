/*
 * prng.c — SplitMix64 and Box–Muller (see prng.h).
 */
#include "prng.h"

#include <math.h>

void prng_seed(prng *g, uint64_t seed)
{
    g->state = seed;
    g->has_spare = 0;
    g->spare = 0.0;
}

uint64_t prng_next(prng *g)
{
    uint64_t z = (g->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double prng_uniform(prng *g)
{
    return (double)(prng_next(g) >> 11) * 0x1.0p-53;
}

double prng_normal(prng *g, double mean, double stddev)
{
    if (g->has_spare) {
        g->has_spare = 0;
        return mean + stddev * g->spare;
    }
    /* 1 - u lies in (0, 1], so the logarithm is finite. */
    double r = sqrt(-2.0 * log(1.0 - prng_uniform(g)));
    double theta = 2.0 * 3.14159265358979323846 * prng_uniform(g);
    g->spare = r * sin(theta);
    g->has_spare = 1;
    return mean + stddev * r * cos(theta);
}

void prng_fill_uniform(prng *g, float *x, int64_t n, double lo, double hi)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(lo + (hi - lo) * prng_uniform(g));
}

void prng_fill_normal(prng *g, float *x, int64_t n, double mean, double stddev)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)prng_normal(g, mean, stddev);
}
