/*
 * openmp.c — running a call's items in an OpenMP parallel region.
 *
 * Used only when the BLAS library is OpenBLAS built with OpenMP (Debian's
 * libopenblas0-openmp): OpenBLAS runs a call made inside a parallel region
 * on one thread (its num_cpu_avail() checks omp_in_parallel()), so libattn's
 * items and the BLAS then share one team of OpenMP threads instead of two
 * kinds of threads fighting over the cores, and libattn never has to touch
 * the BLAS's thread count. Elsewhere libattn uses its own pool
 * (threadpool.c), whose workers sleep between jobs. The results are the
 * same bits as the pool's: each item is computed whole by one thread.
 */
#include "attn_internal.h"

#if defined(_OPENMP)
#include <omp.h>

bool attn_openmp_available(void)
{
    return true;
}

int attn_openmp_max_threads(void)
{
    return omp_get_max_threads();
}

void attn_openmp_run(int threads, attn_task_fn fn, void *arg, int64_t n_items)
{
    /* dynamic, 1: items differ in cost (causal blocks); which thread runs
     * an item never changes its result. */
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t i = 0; i < n_items; i++)
        fn(arg, i, omp_get_thread_num());
}

#else

bool attn_openmp_available(void)
{
    return false;
}

int attn_openmp_max_threads(void)
{
    return 1;
}

void attn_openmp_run(int threads, attn_task_fn fn, void *arg, int64_t n_items)
{
    (void)threads;
    for (int64_t i = 0; i < n_items; i++)
        fn(arg, i, 0);
}

#endif
