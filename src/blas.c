/*
 * blas.c — the only file that includes cblas.h. Every matrix product of
 * libattn goes through these wrappers to cblas_sgemm (OpenBLAS, or any CBLAS
 * found by pkg-config), so the BLAS interface and its integer type stay out of
 * the rest of the library and out of the public header.
 *
 * Callers guarantee that every size fits the BLAS integer type (checked when
 * an op is created) and that m, n, k > 0: a zero leading dimension would make
 * the BLAS library report an illegal argument on stderr, and libattn never
 * prints.
 */
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>

#include "attn_internal.h"

/* OpenBLAS's getters, if the BLAS library is OpenBLAS: weak references, so
 * that libattn also links against a CBLAS that lacks them. Only read, never
 * set: the BLAS thread count is process-global and belongs to the caller. */
extern int openblas_get_num_threads(void) __attribute__((weak));
extern int openblas_get_parallel(void) __attribute__((weak));
extern char *openblas_get_config(void) __attribute__((weak));
extern char *openblas_get_corename(void) __attribute__((weak));

int attn_blas_threads(void)
{
    if (!openblas_get_num_threads)
        return 1;
    int n = openblas_get_num_threads();
    return n < 1 ? 1 : n;
}

attn_blas_threading attn_blas_threading_model(void)
{
    if (!openblas_get_parallel)
        return ATTN_BLAS_THREADING_UNKNOWN;
    switch (openblas_get_parallel()) {
    case 0:  return ATTN_BLAS_THREADING_SERIAL;
    case 1:  return ATTN_BLAS_THREADING_PTHREADS;
    case 2:  return ATTN_BLAS_THREADING_OPENMP;
    default: return ATTN_BLAS_THREADING_UNKNOWN;
    }
}

/* openblas_get_config() rebuilds its text in one static buffer at every
 * call (OpenBLAS 0.3.21, driver/others/openblas_get_config.c), so two threads
 * calling it at once race on that buffer; the mutex serialises libattn's own
 * calls and the copy out. */
static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;

void attn_blas_config(char *buf, size_t size)
{
    if (!openblas_get_config) {
        snprintf(buf, size, "unknown");
        return;
    }
    pthread_mutex_lock(&config_lock);
    const char *config = openblas_get_config();
    snprintf(buf, size, "%s", config ? config : "unknown");
    pthread_mutex_unlock(&config_lock);
}

const char *attn_blas_kernel(void)
{
    /* A pointer into OpenBLAS's constant table of names: no copy needed. */
    const char *name = openblas_get_corename ? openblas_get_corename() : NULL;
    return name && name[0] ? name : "unknown";
}

void attn_gemm_nt(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, alpha, a,
                (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

void attn_gemm_nn(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, alpha, a,
                (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

void attn_gemv_n(int64_t m, int64_t n, float alpha, const float *a, int64_t lda, const float *x,
                 float *y)
{
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)n, alpha, a, (int)lda, x, 1, 0.0f, y,
                1);
}

void attn_gemv_t(int64_t m, int64_t n, float alpha, const float *a, int64_t lda, const float *x,
                 float *y)
{
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)m, (int)n, alpha, a, (int)lda, x, 1, 0.0f, y, 1);
}
