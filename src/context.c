/*
 * context.c — attn_context: the threads and scratch memory that forward calls
 * reuse. Both are made lazily, on the first call that needs them, and only
 * grow, so a steady stream of same-shaped calls allocates nothing.
 */
#define _GNU_SOURCE  /* sched_getaffinity, CPU_COUNT */
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "attn_internal.h"

/* More threads than this is a mistake, not a configuration. */
#define ATTN_MAX_THREADS 1024

attn_status attn_context_create(attn_context **ctx)
{
    if (!ctx)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "ctx is NULL");
    attn_context *c = attn_alloc(sizeof *c);
    if (!c)
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, __func__, "cannot allocate the context");
    *c = (attn_context){0};
    *ctx = c;
    return ATTN_OK;
}

void attn_context_destroy(attn_context *ctx)
{
    if (!ctx)
        return;
    attn_pool_destroy(ctx->pool);
    for (int i = 0; i < ctx->scratch_count; i++)
        attn_free(ctx->scratch[i]);
    attn_free(ctx->scratch);
    attn_free(ctx->scratch_floats);
    attn_free(ctx->workspace);
    attn_free(ctx);
}

attn_status attn_context_set_num_threads(attn_context *ctx, int n)
{
    if (!ctx)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "ctx is NULL");
    if (n < 0 || n > ATTN_MAX_THREADS)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, __func__,
                         "n (%d) is outside [0, %d]", n, ATTN_MAX_THREADS);
    ctx->requested_threads = n;
    return ATTN_OK;
}

/* The cores this process may run on: its CPU affinity where the system
 * tells it (mpirun, taskset, cgroup cpusets pin a process to fewer cores
 * than are online: one thread per online core would then share a core; at
 * 2 ranks on 2 cores mpirun binds each rank to one), else the online
 * cores. OpenBLAS counts its threads the same way. */
static int usable_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) >= 1)
        n = CPU_COUNT(&set);
#endif
    if (n < 1)
        return 1;
    return n > ATTN_MAX_THREADS ? ATTN_MAX_THREADS : (int)n;
}

/* How the work of a call shares the cores with the BLAS library's threads.
 * libattn's threads each call BLAS, so the two kinds of threads must not
 * both run on every core at once (measured on 2 cores: 4-20x slower than
 * either alone, docs/threading.md). libattn never changes the BLAS's thread
 * count (it is process-global and belongs to the caller); it reads it and
 * picks:
 *  - a serial BLAS (one BLAS thread): libattn's own pool takes the items,
 *    on every core;
 *  - a BLAS threaded by OpenMP (OpenBLAS's OpenMP build; BLIS's and
 *    oneDNN's with -Dblas=): the items run inside an OpenMP parallel region,
 *    where the BLAS runs each call on one thread by its own rule
 *    (omp_in_parallel()). Always, even at one BLAS thread: such a BLAS sizes
 *    each call by the calling thread's omp_get_max_threads(), so threads of
 *    libattn's own pool would each run multi-threaded GEMMs. Without OpenMP
 *    in libattn (-Dopenmp=disabled), the BLAS-threaded schedule below;
 *  - OpenBLAS with its own pthread pool (Debian's default) on several
 *    threads: libattn's GEMMs go to its copy of OpenBLAS's OpenMP build,
 *    run serially (blas_copy.c), so this is the serial case: the pool;
 *  - a BLAS with its own pthread pool on several threads and no copy
 *    (ATTN_BLAS_COPY=0, libopenblas0-openmp not installed, a sanitizer
 *    runtime in the process): the calling thread makes the GEMMs,
 *    which the BLAS spreads over its threads, and libattn's threads share
 *    only the softmax between them (attend.c; blocks of 64K logits or
 *    more). Threads of libattn's making GEMMs beside the BLAS's would fight
 *    them: OpenBLAS's idle workers spin for ~0.1 s after each call.
 * The BLAS meant is the one libattn's GEMMs run on (attn_gemm_threading). */
attn_schedule attn_default_schedule(void)
{
    if (attn_gemm_threading() == ATTN_BLAS_THREADING_OPENMP)
        return attn_openmp_available() ? ATTN_SCHEDULE_OPENMP : ATTN_SCHEDULE_BLAS_THREADS;
    return attn_gemm_threads() <= 1 ? ATTN_SCHEDULE_POOL : ATTN_SCHEDULE_BLAS_THREADS;
}

int attn_default_threads(void)
{
    if (attn_default_schedule() == ATTN_SCHEDULE_OPENMP)
        return attn_openmp_max_threads();
    return usable_cores();
}

attn_schedule attn_context_schedule(const attn_context *ctx)
{
    attn_schedule s = attn_default_schedule();
    /* An explicit thread count is libattn's own threads, each making its own
     * GEMMs: with a pthreads BLAS on several threads, the caller's choice.
     * Not with an OpenMP BLAS in a build without OpenMP: threads of the pool
     * would run GEMMs as wide as their own OpenMP default, unlike the
     * calling thread's, and the bits would depend on who ran an item. */
    if (s == ATTN_SCHEDULE_BLAS_THREADS && ctx->requested_threads > 1 &&
        attn_gemm_threading() != ATTN_BLAS_THREADING_OPENMP)
        return ATTN_SCHEDULE_POOL;
    return s;
}

int attn_context_threads(const attn_context *ctx, int64_t max_useful)
{
    int n = ctx->requested_threads ? ctx->requested_threads : attn_default_threads();
    if (max_useful < n)
        n = max_useful < 1 ? 1 : (int)max_useful;
    return n;
}

/* Grows the per-thread arrays of scratch pointers to `threads` entries. */
static attn_status reserve_slots(attn_context *ctx, int threads)
{
    if (threads <= ctx->scratch_count)
        return ATTN_OK;
    float **scratch = attn_alloc(sizeof *scratch * (size_t)threads);
    size_t *floats = attn_alloc(sizeof *floats * (size_t)threads);
    if (!scratch || !floats) {
        attn_free(scratch);
        attn_free(floats);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    for (int i = 0; i < threads; i++) {
        bool old = i < ctx->scratch_count;
        scratch[i] = old ? ctx->scratch[i] : NULL;
        floats[i] = old ? ctx->scratch_floats[i] : 0;
    }
    attn_free(ctx->scratch);
    attn_free(ctx->scratch_floats);
    ctx->scratch = scratch;
    ctx->scratch_floats = floats;
    ctx->scratch_count = threads;
    return ATTN_OK;
}

static attn_status reserve_pool(attn_context *ctx, int threads)
{
    int workers = threads - 1;
    if (workers <= ctx->pool_workers)
        return ATTN_OK;
    attn_pool *pool = NULL;
    attn_status st = attn_pool_create(&pool, workers);
    if (st != ATTN_OK)
        return st;
    attn_pool_destroy(ctx->pool);
    ctx->pool = pool;
    ctx->pool_workers = workers;
    return ATTN_OK;
}

attn_status attn_context_reserve(attn_context *ctx, const char *func, int threads, size_t floats)
{
    if (floats == 0)
        floats = 1;  /* a real buffer even when len_kv is 0: no offsets from NULL */
    if (reserve_slots(ctx, threads) != ATTN_OK)
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, func, "cannot allocate scratch for %d threads",
                         threads);
    for (int i = 0; i < threads; i++) {
        if (ctx->scratch_floats[i] >= floats)
            continue;
        float *buf = attn_alloc(floats * sizeof(float));
        if (!buf)
            return attn_fail(ATTN_ERR_OUT_OF_MEMORY, func,
                             "cannot allocate %zu bytes of scratch", floats * sizeof(float));
        attn_free(ctx->scratch[i]);
        ctx->scratch[i] = buf;
        ctx->scratch_floats[i] = floats;
    }
    ctx->schedule = attn_context_schedule(ctx);
    if (threads > 1 && ctx->schedule != ATTN_SCHEDULE_OPENMP &&
        reserve_pool(ctx, threads) != ATTN_OK)
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, func, "cannot start %d threads", threads - 1);
    return ATTN_OK;
}

attn_status attn_context_workspace(attn_context *ctx, const char *func, size_t floats,
                                   float **out)
{
    if (floats == 0)
        floats = 1;  /* a real buffer even for empty tensors: no offsets from NULL */
    if (ctx->workspace_floats < floats) {
        if (floats > SIZE_MAX / sizeof(float))
            return attn_fail(ATTN_ERR_SIZE_OVERFLOW, func, "workspace of %zu floats overflows",
                             floats);
        float *buf = attn_alloc(floats * sizeof(float));
        if (!buf)
            return attn_fail(ATTN_ERR_OUT_OF_MEMORY, func,
                             "cannot allocate %zu bytes of workspace", floats * sizeof(float));
        attn_free(ctx->workspace);
        ctx->workspace = buf;
        ctx->workspace_floats = floats;
    }
    *out = ctx->workspace;
    return ATTN_OK;
}

void attn_context_run(attn_context *ctx, int threads, attn_task_fn fn, void *arg,
                      int64_t n_items)
{
    if (threads <= 1 || n_items <= 1) {
        for (int64_t i = 0; i < n_items; i++)
            fn(arg, i, 0);
        return;
    }
    if (ctx->schedule == ATTN_SCHEDULE_OPENMP)
        attn_openmp_run(threads, fn, arg, n_items);
    else
        attn_pool_run(ctx->pool, threads - 1, fn, arg, n_items);
}
