/*
 * blas.c — with blas_copy.c, the only file that knows which GEMM provider
 * libattn was built with (meson's -Dblas=, which defines one ATTN_BLAS_*
 * macro):
 *   ATTN_BLAS_OPENBLAS  OpenBLAS's cblas_sgemm (the default);
 *   ATTN_BLAS_CBLAS     any CBLAS pkg-config found (also OpenBLAS's fallback);
 *   ATTN_BLAS_BLIS      BLIS's CBLAS layer, declared by blis.h;
 *   ATTN_BLAS_ONEDNN    oneDNN's dnnl_sgemm, also for the two GEMVs.
 * Every matrix product of libattn goes through these wrappers, so the
 * provider, its interface and its integer type stay out of the rest of the
 * library and out of the public header. Here too are the provider's answers
 * about itself (name, version, kernel, threads), read and never set: its
 * thread count is process-global and belongs to the caller. And here is the
 * one exception to "the process's BLAS": with OpenBLAS's pthreads build on
 * several threads, libattn's GEMMs go to a copy of OpenBLAS's OpenMP build
 * of its own, run serially (blas_copy.c, "the copy"), so that each of
 * libattn's threads makes single-threaded GEMMs without changing the
 * process's thread count.
 *
 * Callers guarantee that every size fits the BLAS integer type (checked when
 * an op is created) and that m, n, k > 0: a zero leading dimension would make
 * the BLAS library report an illegal argument on stderr, and libattn never
 * prints.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

#if defined(ATTN_BLAS_ONEDNN)
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#elif defined(ATTN_BLAS_BLIS)
#include <blis.h>
#else
#include <cblas.h>
#endif

#include "attn_internal.h"

#if defined(ATTN_BLAS_ONEDNN)

/* ---- oneDNN ------------------------------------------------------------- */

/* dnnl_sgemm is row-major with cblas_sgemm's arguments, 'N'/'T' for the
 * transpositions and int64 sizes. Its threads are its CPU runtime's: with
 * OpenMP (Debian's libdnnl2) each call uses omp_get_max_threads() threads,
 * and one thread inside an OpenMP parallel region (its GEMM driver checks
 * omp_in_parallel()), which is what context.c's OpenMP schedule needs. */

int attn_blas_threads(void)
{
    switch (dnnl_version()->cpu_runtime) {
    case DNNL_RUNTIME_OMP: {
        int n = omp_get_max_threads();
        return n < 1 ? 1 : n;
    }
    default:
        return 1;  /* sequential; TBB or a threadpool: no way to ask here */
    }
}

attn_blas_threading attn_blas_threading_model(void)
{
    switch (dnnl_version()->cpu_runtime) {
    case DNNL_RUNTIME_SEQ: return ATTN_BLAS_THREADING_SERIAL;
    case DNNL_RUNTIME_OMP: return ATTN_BLAS_THREADING_OPENMP;
    default:               return ATTN_BLAS_THREADING_UNKNOWN;
    }
}

static const char *runtime_name(unsigned runtime)
{
    switch (runtime) {
    case DNNL_RUNTIME_SEQ:        return "sequential";
    case DNNL_RUNTIME_OMP:        return "OpenMP";
    case DNNL_RUNTIME_TBB:        return "TBB";
    case DNNL_RUNTIME_THREADPOOL: return "threadpool";
    default:                      return "unknown";
    }
}

/* The ISA oneDNN generates code for: the CPU's, capped by DNNL_MAX_CPU_ISA. */
static const char *isa_name(dnnl_cpu_isa_t isa)
{
    switch (isa) {
    case dnnl_cpu_isa_sse41:            return "sse41";
    case dnnl_cpu_isa_avx:              return "avx";
    case dnnl_cpu_isa_avx2:             return "avx2";
    case dnnl_cpu_isa_avx2_vnni:        return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic:       return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops:  return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core:      return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx:  return "avx512_core_amx";
    default:                            return "unknown";
    }
}

void attn_blas_config(char *buf, size_t size)
{
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, size, "oneDNN %d.%d.%d (git %s) %s runtime, ISA %s", v->major, v->minor,
             v->patch, v->hash ? v->hash : "N/A", runtime_name(v->cpu_runtime),
             isa_name(dnnl_get_effective_cpu_isa()));
}

const char *attn_blas_kernel(void)
{
    /* The ISA family of oneDNN's f32 GEMM kernels (its x64 gemm_info picks
     * avx512_core, avx2, avx or sse41 code; Xeon Phi has its own). The ISA
     * values are bit sets, each containing the ones below it. */
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    static const struct { unsigned isa; const char *name; } kernels[] = {
        {dnnl_cpu_isa_avx512_core, "avx512_core"},
        {dnnl_cpu_isa_avx512_mic, "avx512_mic"},
        {dnnl_cpu_isa_avx2, "avx2"},
        {dnnl_cpu_isa_avx, "avx"},
        {dnnl_cpu_isa_sse41, "sse41"},
    };
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if ((isa & kernels[i].isa) == kernels[i].isa)
            return kernels[i].name;
    return "unknown";
}

void attn_gemm_nt(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    (void)dnnl_sgemm('N', 'T', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void attn_gemm_nn(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    (void)dnnl_sgemm('N', 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void attn_gemm_tn(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    (void)dnnl_sgemm('T', 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* The GEMVs as GEMMs with N = 1 (x and y are columns, leading dimension 1):
 * oneDNN's GEMM driver sends M = 1 or N = 1 to its GEMV kernels, so this
 * reads A once, like cblas_sgemv, without a second BLAS library (and its
 * threads) next to oneDNN. */
void attn_gemv_n(int64_t m, int64_t n, float alpha, const float *a, int64_t lda, const float *x,
                 float beta, float *y)
{
    (void)dnnl_sgemm('N', 'N', m, 1, n, alpha, a, lda, x, 1, beta, y, 1);
}

void attn_gemv_t(int64_t m, int64_t n, float alpha, const float *a, int64_t lda, const float *x,
                 float beta, float *y)
{
    (void)dnnl_sgemm('T', 'N', n, 1, m, alpha, a, lda, x, 1, beta, y, 1);
}

#else /* a CBLAS: OpenBLAS, BLIS, or any other */

#if defined(ATTN_BLAS_BLIS)

/* ---- BLIS ----------------------------------------------------------------- */

/* BLIS's thread count: BLIS_NUM_THREADS (0.9 also reads OMP_NUM_THREADS), or
 * else the product of the per-loop ways (BLIS_JC_NT, ...), or else one
 * thread: BLIS runs serially unless told otherwise. */
int attn_blas_threads(void)
{
    if (!bli_info_get_enable_openmp() && !bli_info_get_enable_pthreads())
        return 1;
    dim_t n = bli_thread_get_num_threads();
    if (n >= 1)
        return n > 1024 ? 1024 : (int)n;
    dim_t ways[] = {bli_thread_get_jc_nt(), bli_thread_get_pc_nt(), bli_thread_get_ic_nt(),
                    bli_thread_get_jr_nt(), bli_thread_get_ir_nt()};
    n = 1;
    for (size_t i = 0; i < sizeof ways / sizeof ways[0]; i++)
        if (ways[i] > 1 && n <= 1024)
            n *= ways[i];
    return n > 1024 ? 1024 : (int)n;
}

/* From the library loaded, not blis.h: Debian installs the OpenMP, pthreads
 * and serial builds as alternatives of one libblis.so.4. With OpenMP a call
 * made inside a parallel region gets one thread as long as OpenMP's nesting
 * is off (the default: OMP_MAX_ACTIVE_LEVELS unset). */
attn_blas_threading attn_blas_threading_model(void)
{
    if (bli_info_get_enable_openmp())
        return ATTN_BLAS_THREADING_OPENMP;
    if (bli_info_get_enable_pthreads())
        return ATTN_BLAS_THREADING_PTHREADS;
    return ATTN_BLAS_THREADING_SERIAL;
}

void attn_blas_config(char *buf, size_t size)
{
    const char *threads = bli_info_get_enable_openmp()     ? "OpenMP"
                          : bli_info_get_enable_pthreads() ? "pthreads"
                                                           : "serial";
    snprintf(buf, size, "BLIS %s %s, configuration %s", bli_info_get_version_str(), threads,
             attn_blas_kernel());
}

const char *attn_blas_kernel(void)
{
    /* The sub-configuration BLIS picked from cpuid ("zen3", "skx", "haswell",
     * "generic"); BLIS_ARCH_TYPE overrides it. A constant string. Asked
     * before BLIS's first computation with BLIS_ARCH_TYPE set, BLIS 0.9
     * aborts ("Accessed uninitialized context in gks"): bli_init() first,
     * which every computing call makes anyway (once per process). */
    bli_init();
    const char *name = bli_arch_string(bli_arch_query_id());
    return name && name[0] ? name : "unknown";
}

#else

/* ---- OpenBLAS, or any CBLAS ---------------------------------------------- */

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

#endif

/* ---- the products, through the CBLAS interface ---------------------------- */

/* With the copy in use (blas_copy.c), every product goes to it. */
#if defined(ATTN_BLAS_COPY)
#define COPY_GEMM(ta, tb)                                                                  \
    if (attn_blas_copy_in_use()) {                                                         \
        attn_blas_copy_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);        \
        return;                                                                            \
    }
#define COPY_GEMV(t)                                                                       \
    if (attn_blas_copy_in_use()) {                                                         \
        attn_blas_copy_sgemv(t, m, n, alpha, a, lda, x, beta, y);                          \
        return;                                                                            \
    }
#else
#define COPY_GEMM(ta, tb)
#define COPY_GEMV(t)
#endif

void attn_gemm_nt(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    COPY_GEMM(false, true)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, alpha, a,
                (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

void attn_gemm_nn(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    COPY_GEMM(false, false)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, alpha, a,
                (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

void attn_gemm_tn(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    COPY_GEMM(true, false)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, (int)n, (int)k, alpha, a,
                (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

void attn_gemv_n(int64_t m, int64_t n, float alpha, const float *a, int64_t lda, const float *x,
                 float beta, float *y)
{
    COPY_GEMV(false)
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)n, alpha, a, (int)lda, x, 1, beta, y,
                1);
}

void attn_gemv_t(int64_t m, int64_t n, float alpha, const float *a, int64_t lda, const float *x,
                 float beta, float *y)
{
    COPY_GEMV(true)
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)m, (int)n, alpha, a, (int)lda, x, 1, beta, y, 1);
}

#endif

/* ---- the BLAS libattn's own GEMMs run on: the process's, or the copy ----- */

int attn_gemm_threads(void)
{
    return attn_blas_copy_in_use() ? 1 : attn_blas_threads();
}

attn_blas_threading attn_gemm_threading(void)
{
    return attn_blas_copy_in_use() ? ATTN_BLAS_THREADING_SERIAL : attn_blas_threading_model();
}
