/*
 * onednn_cblas.c — attn-bench's floor over oneDNN (-Dblas=onednn), and the small
 * linear layers of `attn train reverse` (tools/nn.c) in that build: the
 * cblas_sgemm and cblas_sgemv calls of the floor as dnnl_sgemm calls, each on
 * one thread, as the floor is defined (the BLAS on one thread, the heads
 * split over the cores by the bench's own threads). oneDNN would otherwise
 * start omp_get_max_threads() OpenMP threads from each of the floor's
 * threads: 4 threads on 2 cores. The thread count is the calling thread's
 * OpenMP setting, so it is set to 1 around each call and put back: libattn,
 * timed next on the same main thread, sees the caller's setting.
 *
 * Row-major only (all the bench uses); incx and incy must be 1.
 */
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

#include "cblas.h"

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE transa,
                 enum CBLAS_TRANSPOSE transb, int m, int n, int k, float alpha, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    (void)order;
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    (void)dnnl_sgemm(transa == CblasNoTrans ? 'N' : 'T', transb == CblasNoTrans ? 'N' : 'T', m,
                     n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    omp_set_num_threads(threads);
}

void cblas_sgemv(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE trans, int m, int n, float alpha,
                 const float *a, int lda, const float *x, int incx, float beta, float *y,
                 int incy)
{
    (void)order;
    (void)incx;
    (void)incy;
    /* y = op(A) x as a GEMM with N = 1 (x and y columns), as src/blas.c does. */
    if (trans == CblasNoTrans)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, 1, n, alpha, a, lda, x, 1,
                    beta, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, 1, m, alpha, a, lda, x, 1, beta,
                    y, 1);
}
