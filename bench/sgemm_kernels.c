/*
 * sgemm_kernels.c — GFLOP/s of one square sgemm under the OpenBLAS kernel
 * set this process runs, to compare the kernels OPENBLAS_CORETYPE selects
 * (docs/threading.md, "Which BLAS kernel runs"):
 *
 *   for k in Prescott Haswell Zen SkylakeX Cooperlake; do
 *       OPENBLAS_CORETYPE=$k OPENBLAS_NUM_THREADS=1 build/bench/sgemm-kernels
 *   done
 *
 * Prints "kernel N GFLOP/s (best|median of R runs)": one warm-up call,
 * then R timed calls of C = A·B with N×N row-major float matrices.
 *
 * Built with another -Dblas= provider it times that provider's sgemm
 * (docs/threading.md, "Which GEMM provider"), its threads set as that
 * provider reads them (BLIS_NUM_THREADS, OMP_NUM_THREADS for oneDNN), and
 * names the provider's kernel: BLIS's configuration, oneDNN's CPU ISA.
 *
 * usage: sgemm-kernels [N] [RUNS]   (defaults 2048 and 5)
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(ATTN_BLAS_ONEDNN)
#include <oneapi/dnnl/dnnl.h>
static const char *kernel_name(void)  /* the ISA family of its f32 GEMM (src/blas.c) */
{
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    return (isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core ? "oneDNN-avx512_core"
           : (isa & dnnl_cpu_isa_avx2) == dnnl_cpu_isa_avx2             ? "oneDNN-avx2"
                                                                        : "oneDNN";
}
#elif defined(ATTN_BLAS_BLIS)
#include <blis.h>
#define kernel_name() bli_arch_string(bli_arch_query_id())
#else
#include <cblas.h>
extern char *openblas_get_corename(void) __attribute__((weak));
#define kernel_name() (openblas_get_corename ? openblas_get_corename() : "unknown")
#endif

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2048, runs = argc > 2 ? atoi(argv[2]) : 5;
    if (n < 1 || n > 16384 || runs < 1 || runs > 100) {
        fprintf(stderr, "usage: sgemm-kernels [N] [RUNS]\n");
        return 2;
    }
    size_t elems = (size_t)n * (size_t)n;
    float *a = malloc(elems * sizeof *a), *b = malloc(elems * sizeof *b),
          *c = malloc(elems * sizeof *c);
    double *t = malloc((size_t)runs * sizeof *t);
    if (!a || !b || !c || !t) {
        fprintf(stderr, "sgemm-kernels: out of memory\n");
        return 1;
    }
    unsigned s = 1;
    for (size_t i = 0; i < elems; i++) {
        s = s * 1103515245u + 12345u;
        a[i] = (float)((s >> 8) & 0xffff) / 65536.0f - 0.5f;
        b[i] = (float)((s >> 4) & 0xffff) / 65536.0f - 0.5f;
    }
    for (int r = -1; r < runs; r++) {
        double t0 = now();
       #if defined(ATTN_BLAS_ONEDNN)
        dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
#else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f,
                    c, n);
#endif
        if (r >= 0)
            t[r] = now() - t0;
    }
    qsort(t, (size_t)runs, sizeof *t, by_value);
    double flops = 2.0 * n * (double)n * n;
    printf("%s %d %.1f GFLOP/s best, %.1f median of %d runs\n",
           kernel_name(), n, flops / t[0] * 1e-9,
           flops / t[runs / 2] * 1e-9, runs);
    free(a);
    free(b);
    free(c);
    free(t);
    return 0;
}
