/*
 * threadpool.c — the worker threads of a context.
 *
 * Why not OpenMP: its idle workers spin after a parallel region, and on a
 * 2-core machine spinning workers starve the BLAS library's own threads
 * (measured 10× slow-downs, ../shared/PERF-NOTES.md). These workers sleep on
 * a condition variable between jobs. Items are handed out one at a time from
 * an atomic counter; the result of an item never depends on which thread ran
 * it, so outputs are bitwise identical for any schedule.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "attn_internal.h"

typedef struct worker_start {
    struct attn_pool *pool;
    int index;                   /* 1..n_workers; 0 is the calling thread */
} worker_start;

struct attn_pool {
    pthread_t *threads;
    worker_start *starts;        /* read by each worker as it starts */
    int n_workers;

    pthread_mutex_t lock;
    pthread_cond_t job_ready;    /* workers wait here for a new generation */
    pthread_cond_t job_done;     /* the caller waits here for busy == 0 */
    uint64_t generation;         /* bumped once per job */
    int busy;                    /* workers still inside the current job */
    bool stop;

    attn_task_fn fn;
    void *arg;
    int active;                  /* workers 1..active take part in this job */
    int64_t n_items;
    atomic_int_fast64_t next_item;
};

static void drain_items(attn_pool *pool, int worker)
{
    for (;;) {
        int64_t item = atomic_fetch_add(&pool->next_item, 1);
        if (item >= pool->n_items)
            return;
        pool->fn(pool->arg, item, worker);
    }
}

static void *worker_main(void *p)
{
    worker_start *start = p;
    attn_pool *pool = start->pool;
    int index = start->index;
    uint64_t seen = 0;

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (!pool->stop && pool->generation == seen)
            pthread_cond_wait(&pool->job_ready, &pool->lock);
        if (pool->stop)
            break;
        seen = pool->generation;
        pthread_mutex_unlock(&pool->lock);

        if (index <= pool->active)
            drain_items(pool, index);

        pthread_mutex_lock(&pool->lock);
        if (--pool->busy == 0)
            pthread_cond_signal(&pool->job_done);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* Stops and joins the first `started` workers. */
static void stop_workers(attn_pool *pool, int started)
{
    pthread_mutex_lock(&pool->lock);
    pool->stop = true;
    pthread_cond_broadcast(&pool->job_ready);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < started; i++)
        pthread_join(pool->threads[i], NULL);
}

static void free_pool(attn_pool *pool)
{
    pthread_cond_destroy(&pool->job_done);
    pthread_cond_destroy(&pool->job_ready);
    pthread_mutex_destroy(&pool->lock);
    attn_free(pool->starts);
    attn_free(pool->threads);
    attn_free(pool);
}

attn_status attn_pool_create(attn_pool **out, int n_workers)
{
    attn_pool *pool = attn_alloc(sizeof *pool);
    pthread_t *threads = attn_alloc(sizeof *threads * (size_t)n_workers);
    worker_start *starts = attn_alloc(sizeof *starts * (size_t)n_workers);
    if (!pool || !threads || !starts) {
        attn_free(pool);
        attn_free(threads);
        attn_free(starts);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    *pool = (attn_pool){.threads = threads, .starts = starts, .n_workers = n_workers};
    atomic_init(&pool->next_item, 0);
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->job_ready, NULL);
    pthread_cond_init(&pool->job_done, NULL);

    for (int i = 0; i < n_workers; i++) {
        starts[i] = (worker_start){.pool = pool, .index = i + 1};
        if (pthread_create(&threads[i], NULL, worker_main, &starts[i]) != 0) {
            stop_workers(pool, i);
            free_pool(pool);
            return ATTN_ERR_OUT_OF_MEMORY;  /* no thread could be had */
        }
    }
    *out = pool;
    return ATTN_OK;
}

void attn_pool_destroy(attn_pool *pool)
{
    if (!pool)
        return;
    stop_workers(pool, pool->n_workers);
    free_pool(pool);
}

void attn_pool_run(attn_pool *pool, int active, attn_task_fn fn, void *arg, int64_t n_items)
{
    pthread_mutex_lock(&pool->lock);
    pool->active = active;
    pool->fn = fn;
    pool->arg = arg;
    pool->n_items = n_items;
    atomic_store(&pool->next_item, 0);
    pool->busy = pool->n_workers;
    pool->generation++;
    pthread_cond_broadcast(&pool->job_ready);
    pthread_mutex_unlock(&pool->lock);

    drain_items(pool, 0);

    /* Wait for every worker to leave the job, not only for the items to be
     * taken: a worker still inside fn may be using arg. */
    pthread_mutex_lock(&pool->lock);
    while (pool->busy > 0)
        pthread_cond_wait(&pool->job_done, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
}
