/*
 * ring_gemm.c — the one matrix product the MHA layer's ring needs for its
 * projections (row-major C = op(A)·op(B) + beta·C), through the GEMM
 * provider libattn was built with (meson's ATTN_BLAS_* macro): oneDNN's
 * dnnl_sgemm, BLIS's CBLAS layer, or CBLAS (OpenBLAS). Never a hand-written
 * GEMM. libattn's own src/blas.c is internal to libattn, hence this small
 * switch.
 */
#if defined(ATTN_BLAS_ONEDNN)
#include <oneapi/dnnl/dnnl.h>
#elif defined(ATTN_BLAS_BLIS)
#include <blis.h>
#else
#include <cblas.h>
#endif
#include <string.h>

#include "ring_internal.h"

void ring_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float *a,
               int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (m == 0 || n == 0)
        return;
    if (k == 0) {  /* an empty sum; BLAS libraries may reject the zero sizes */
        if (beta == 0.0f)
            for (int64_t i = 0; i < m; i++)
                memset(c + i * ldc, 0, (size_t)n * sizeof(float));
        return;
    }
#if defined(ATTN_BLAS_ONEDNN)
    (void)dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, 1.0f, a, lda, b, ldb,
                     beta, c, ldc);
#else
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, a, (int)lda,
                b, (int)ldb, beta, c, (int)ldc);
#endif
}
