/*
 * cblas.h for attn-bench built with -Dblas=onednn: the two CBLAS functions
 * its floor calls, implemented by onednn_cblas.c over dnnl_sgemm, so that the
 * floor times the same provider as libattn without a second BLAS library.
 * Only the bench sees this header (bench/meson.build).
 */
#ifndef ATTN_BENCH_ONEDNN_CBLAS_H
#define ATTN_BENCH_ONEDNN_CBLAS_H

enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112, CblasConjTrans = 113 };

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE transa,
                 enum CBLAS_TRANSPOSE transb, int m, int n, int k, float alpha, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc);
void cblas_sgemv(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE trans, int m, int n, float alpha,
                 const float *a, int lda, const float *x, int incx, float beta, float *y,
                 int incy);

#endif
