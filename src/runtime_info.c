/*
 * runtime_info.c — attn_runtime_info(): what this process's libattn runs
 * on, as "key: value" lines, for logs, bug reports and `attn info`.
 *
 * Everything is read (cpuid, OpenBLAS's getters, the default thread count),
 * nothing is set: the BLAS's state is process-global and the caller's. The
 * blas_* lines are the process's BLAS; blas_copy says whether libattn's
 * GEMMs run on its own serial copy of OpenBLAS's OpenMP build instead
 * (blas_copy.c), and schedule how libattn's threads then share the cores.
 */
#include <stdarg.h>
#include <stdio.h>

#include "attn_internal.h"

/* snprintf into a buffer that may be too small or NULL: keeps writing what
 * fits, always NUL-terminated, and counts the whole text in len. */
typedef struct text {
    char *buf;
    size_t size, len;
} text;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void append(text *t, const char *fmt, ...)
{
    char *at = t->len < t->size ? t->buf + t->len : NULL;
    size_t room = t->len < t->size ? t->size - t->len : 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(at, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len += (size_t)n;
}

static const char *threading_name(attn_blas_threading model)
{
    switch (model) {
    case ATTN_BLAS_THREADING_SERIAL:   return "serial";
    case ATTN_BLAS_THREADING_PTHREADS: return "pthreads";
    case ATTN_BLAS_THREADING_OPENMP:   return "openmp";
    default:                           return "unknown";
    }
}

static const char *schedule_name(attn_schedule schedule)
{
    switch (schedule) {
    case ATTN_SCHEDULE_POOL:   return "pool";
    case ATTN_SCHEDULE_OPENMP: return "openmp";
    default:                   return "blas-threads";
    }
}

/* "AuthenticAMD family 25 model 17, avx avx2 fma ...", or "unknown". */
static void append_cpu(text *t, const attn_cpu_info *cpu)
{
    if (!cpu->known) {
        append(t, "cpu: unknown\n");
        return;
    }
    append(t, "cpu: %s family %d model %d,", cpu->vendor, cpu->family, cpu->model);
    bool any = false;
    for (int i = 0; i < ATTN_CPU_FEATURE_COUNT; i++)
        if (cpu->features & (1u << i)) {
            append(t, " %s", attn_cpu_feature_name(1u << i));
            any = true;
        }
    append(t, "%s\n", any ? "" : " (no SSE4.2 or AVX)");
}

size_t attn_runtime_info(char *buf, size_t size)
{
    text t = {buf, buf ? size : 0, 0};
    if (buf && size > 0)
        buf[0] = '\0';  /* even if every vsnprintf below failed */

    char config[256];
    attn_blas_config(config, sizeof config);
    attn_cpu_info cpu;
    attn_cpu_detect(&cpu);
    attn_setup setup = {
        .blas_kernel = attn_blas_kernel(),
        .cpu_features = cpu.features,
        .blas_threads = attn_blas_threads(),
        .blas_threading = attn_blas_threading_model(),
        .default_threads = attn_default_threads(),
        .blas_copy = attn_blas_copy_in_use(),
    };
    char advice[720];
    attn_advice(&setup, advice, sizeof advice);

    append(&t, "version: %s\n", attn_version_string());
    append(&t, "blas: %s\n", config);
    append(&t, "blas_kernel: %s\n", setup.blas_kernel);
    append(&t, "blas_threads: %d\n", setup.blas_threads);
    append(&t, "blas_threading: %s\n", threading_name(setup.blas_threading));
    char copy[320];
    attn_blas_copy_describe(copy, sizeof copy);
    append(&t, "blas_copy: %s\n", copy);
    append_cpu(&t, &cpu);
    append(&t, "threads: %d\n", setup.default_threads);
    append(&t, "schedule: %s\n", schedule_name(attn_default_schedule()));
    append(&t, "advice:%s%s\n", advice[0] ? " " : "", advice);
    return t.len;
}
