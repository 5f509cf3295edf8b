/*
 * blas_copy.c — a second OpenBLAS, run serially, for libattn's own GEMMs
 * when the process's OpenBLAS runs its pthreads on several threads ("the
 * copy").
 *
 * Why: Debian's default OpenBLAS (libopenblas0-pthread) threads every call
 * over its own pthreads, and 0.3.21 offers a library no per-call or
 * per-thread thread count; the only setter, openblas_set_num_threads, is
 * process-global and the caller's. So libattn could only make its GEMMs
 * from one thread and let OpenBLAS split each small block GEMM over the
 * cores: 1.2-2x slower than with one BLAS thread (docs/threading.md). The
 * copy is OpenBLAS's OpenMP build of the same version and kernel, loaded
 * privately. That build sizes each call by the calling thread's own OpenMP
 * thread count (omp_get_max_threads(), a per-thread setting), so libattn
 * sets it to 1 around each call: every thread of libattn's pool then makes
 * single-threaded GEMMs, as with OPENBLAS_NUM_THREADS=1, and no OpenMP
 * thread is ever started. The process's BLAS, its thread count and the
 * caller's own BLAS calls stay untouched.
 *
 * Why the OpenMP build and not the serial one: Debian builds the serial one
 * without USE_LOCKING, so two threads calling it at once may take the same
 * work buffer; the OpenMP build takes its buffers under atomic locks, since
 * OpenMP threads call it at once.
 *
 * How: dlopen(RTLD_LOCAL | RTLD_DEEPBIND). LOCAL keeps the copy's symbols
 * out of the process's scope (nobody else binds to them); DEEPBIND makes
 * the copy's own internal calls bind to itself rather than to the pthreads
 * OpenBLAS already loaded under the same names. Loaded once, the first time
 * it is wanted, and never unloaded (another thread's GEMM may be running).
 *
 * When not: when the process's OpenBLAS is serial, OpenMP, or on one thread
 * (nothing to gain: read at every call); ATTN_BLAS_COPY=0 in the
 * environment; meson's -Dblas_copy=disabled; the file missing
 * (libopenblas0-openmp not installed); its kernel not the process's (the
 * copy must compute what the process's BLAS would); a sanitizer runtime in
 * the process (ASan's, TSan's, MSan's and HWASan's dlopen end the process
 * on RTLD_DEEPBIND). Then libattn uses the process's BLAS (context.c).
 */
#include <stdio.h>

#include "attn_internal.h"

#if defined(ATTN_BLAS_COPY)

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

static struct {
    __typeof__(cblas_sgemm) *sgemm;  /* NULL: no copy */
    __typeof__(cblas_sgemv) *sgemv;
    int (*omp_get_max_threads)(void);   /* the copy's libgomp */
    void (*omp_set_num_threads)(int);
    char why[200];                   /* when there is no copy: why */
} copy;
static pthread_once_t copy_once = PTHREAD_ONCE_INIT;

/* The sanitizers' dlopen interceptors end the process on RTLD_DEEPBIND. */
static const char *sanitizer_present(void)
{
    static const char *const runtimes[] = {"__asan_init", "__tsan_init", "__msan_init",
                                           "__hwasan_init"};
    for (size_t i = 0; i < sizeof runtimes / sizeof runtimes[0]; i++)
        if (dlsym(RTLD_DEFAULT, runtimes[i]))
            return runtimes[i];
    return NULL;
}

/* dlsym returns an object pointer, which POSIX lets a program use as a
 * function pointer and ISO C does not convert: through a union. */
typedef void (*any_function)(void);
static any_function symbol(void *handle, const char *name)
{
    union {
        void *object;
        any_function function;
    } u = {dlsym(handle, name)};
    return u.function;
}

static void set_why(const char *fmt, const char *detail)
{
    snprintf(copy.why, sizeof copy.why, fmt, detail ? detail : "");
}

static void load_copy(void)
{
    const char *env = getenv("ATTN_BLAS_COPY");
    if (env && strcmp(env, "0") == 0) {
        set_why("off (ATTN_BLAS_COPY=0)%s", NULL);
        return;
    }
    const char *sanitizer = sanitizer_present();
    if (sanitizer) {
        set_why("none (a sanitizer runtime is loaded: %s)", sanitizer);
        return;
    }
    void *handle = dlopen(ATTN_BLAS_COPY_PATH, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!handle) {
        set_why("none (%s; Debian: apt-get install libopenblas0-openmp)", dlerror());
        return;
    }
    __typeof__(cblas_sgemm) *sgemm = (__typeof__(cblas_sgemm) *)symbol(handle, "cblas_sgemm");
    __typeof__(cblas_sgemv) *sgemv = (__typeof__(cblas_sgemv) *)symbol(handle, "cblas_sgemv");
    int (*parallel)(void) = (int (*)(void))symbol(handle, "openblas_get_parallel");
    char *(*corename)(void) = (char *(*)(void))symbol(handle, "openblas_get_corename");
    int (*get_threads)(void) = (int (*)(void))symbol(handle, "omp_get_max_threads");
    void (*set_threads)(int) = (void (*)(int))symbol(handle, "omp_set_num_threads");
    const char *kernel = corename ? corename() : NULL;
    if (!sgemm || !sgemv || !parallel || !kernel || !get_threads || !set_threads) {
        set_why("none (%s is not OpenBLAS's OpenMP build)", ATTN_BLAS_COPY_PATH);
    } else if (parallel() != 2) {
        set_why("none (%s is not OpenBLAS's OpenMP build)", ATTN_BLAS_COPY_PATH);
    } else if (strcmp(kernel, attn_blas_kernel()) != 0) {
        set_why("none (its kernel, %s, is not the process's BLAS's)", kernel);
    } else {
        copy.omp_get_max_threads = get_threads, copy.omp_set_num_threads = set_threads;
        copy.sgemv = sgemv;
        copy.sgemm = sgemm;
        return;
    }
    dlclose(handle);
}

/* The process's OpenBLAS would spread each of libattn's GEMMs over its own
 * pthreads. Read at every call: the caller may change its thread count. */
static bool copy_wanted(void)
{
    return attn_blas_threading_model() == ATTN_BLAS_THREADING_PTHREADS && attn_blas_threads() > 1;
}

bool attn_blas_copy_in_use(void)
{
    if (!copy_wanted())
        return false;
    pthread_once(&copy_once, load_copy);
    return copy.sgemm != NULL;
}

/* The calling thread's OpenMP thread count, set to 1 for one call of the
 * copy and given back after: the count is per thread (an OpenMP ICV), so
 * this touches no other thread, and the caller's own setting is back before
 * libattn returns. */
static int serial_begin(void)
{
    int saved = copy.omp_get_max_threads();
    if (saved != 1)
        copy.omp_set_num_threads(1);
    return saved;
}

static void serial_end(int saved)
{
    if (saved != 1)
        copy.omp_set_num_threads(saved);
}

void attn_blas_copy_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                          float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                          float beta, float *c, int64_t ldc)
{
    int saved = serial_begin();
    copy.sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
               trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, alpha, a, (int)lda,
               b, (int)ldb, beta, c, (int)ldc);
    serial_end(saved);
}

void attn_blas_copy_sgemv(bool trans, int64_t m, int64_t n, float alpha, const float *a,
                          int64_t lda, const float *x, float beta, float *y)
{
    int saved = serial_begin();
    copy.sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, (int)m, (int)n, alpha, a,
               (int)lda, x, 1, beta, y, 1);
    serial_end(saved);
}

void attn_blas_copy_describe(char *buf, size_t size)
{
    if (attn_blas_copy_in_use())
        snprintf(buf, size, "%s (OpenBLAS's OpenMP build, run serially: libattn's GEMMs)",
                 ATTN_BLAS_COPY_PATH);
    else if (!copy_wanted())
        snprintf(buf, size, "none (not needed: the BLAS is not pthreads on several threads)");
    else
        snprintf(buf, size, "%s", copy.why);
}

#else

bool attn_blas_copy_in_use(void)
{
    return false;
}

void attn_blas_copy_describe(char *buf, size_t size)
{
#if defined(ATTN_BLAS_OPENBLAS)
    /* -Dblas_copy=disabled, or 'auto' found no openblas-pthread directory
     * beside which to look for the OpenMP build (meson.build). */
    snprintf(buf, size, "none (built without a copy path: meson -Dblas_copy)");
#else
    snprintf(buf, size, "none (the GEMM provider is not OpenBLAS)");
#endif
}

#endif
