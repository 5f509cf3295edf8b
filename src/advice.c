/*
 * advice.c — the "advice" line of attn_runtime_info(): what in this
 * process's setup is known to be slow, and the setting that fixes it.
 *
 * A pure function of plain values (attn_setup), so that a test can ask what
 * it would say on any machine. Two independent parts, each empty when fine:
 *   1. the BLAS kernel: OpenBLAS 0.3.21 picks its kernels from the CPU model
 *      and falls back to its generic Prescott (SSE3) kernels, silently, on
 *      CPUs it does not know (Intel family 6 model 207, Emerald Rapids:
 *      ~6x slower sgemm; upstream fixed it in 0.3.25, OpenBLAS issue 4267);
 *   2. threads: OpenBLAS's pthreads build on several threads, where libattn
 *      cannot use its own threads for the GEMMs (thread_advice).
 */
#include <stdio.h>
#include <string.h>

#include "attn_internal.h"

/* ISA levels, in the order of what a kernel needs. The advice compares
 * kernels by level only: two kernels of one level (Haswell and Zen) are
 * both fine. */
enum { L_SSE3, L_SSE4, L_AVX, L_AVX2, L_AVX512, L_AVX512_BF16 };

static const char *const level_names[] = {"SSE3", "SSSE3/SSE4", "AVX", "AVX2", "AVX-512",
                                          "AVX-512 (BF16)"};

#define NEEDS_AVX2 (ATTN_CPU_AVX | ATTN_CPU_AVX2 | ATTN_CPU_FMA)
#define NEEDS_AVX512                                                                   \
    (NEEDS_AVX2 | ATTN_CPU_AVX512F | ATTN_CPU_AVX512BW | ATTN_CPU_AVX512VL |          \
     ATTN_CPU_AVX512DQ | ATTN_CPU_AVX512CD)

/* The kernel sets of Debian's OpenBLAS 0.3.21 DYNAMIC_ARCH build for x86-64
 * (the gotoblas_* tables its libopenblas.so.0 defines; 0.3.21 has no
 * SapphireRapids), by the name openblas_get_corename() returns, which is also
 * the OPENBLAS_CORETYPE value that selects it. OPENBLAS_CORETYPE is obeyed
 * without checking the CPU, so a kernel may be advised only when the CPU has
 * everything its compiler flags allow (-march=skylake-avx512 for SkylakeX,
 * -march=cooperlake for Cooperlake, whose AVX512-VNNI every CPU with
 * AVX512-BF16 also has). `needs` is filled in for the kernels the advice may
 * name; the others only have a level. gflops: one 2048³ sgemm on 1 thread of
 * the Intel Xeon (family 6 model 207) where the fallback was found (0 = not
 * measured); see docs/threading.md. */
typedef struct kernel {
    const char *name;
    int level;
    unsigned needs;    /* ATTN_CPU_* bits; 0 for kernels never advised */
    bool advisable;
    double gflops;
} kernel;

static const kernel kernels[] = {
    /* advisable, best first */
    {"Cooperlake", L_AVX512_BF16, NEEDS_AVX512 | ATTN_CPU_AVX512_BF16, true, 142},
    {"SkylakeX", L_AVX512, NEEDS_AVX512, true, 107},
    {"Haswell", L_AVX2, NEEDS_AVX2, true, 73},
    {"Sandybridge", L_AVX, ATTN_CPU_AVX, true, 0},
    {"Nehalem", L_SSE4, ATTN_CPU_SSE4_2, true, 0},
    {"Prescott", L_SSE3, 0, true, 24},
    /* the others OpenBLAS may pick by CPU model */
    {"Zen", L_AVX2, 0, false, 0},
    {"Bulldozer", L_AVX, 0, false, 0},  /* AMD's FMA4: never advised */
    {"Piledriver", L_AVX, 0, false, 0},
    {"Steamroller", L_AVX, 0, false, 0},
    {"Excavator", L_AVX, 0, false, 0},
    {"Core2", L_SSE4, 0, false, 0},     /* SSSE3 */
    {"Penryn", L_SSE4, 0, false, 0},
    {"Dunnington", L_SSE4, 0, false, 0},
    {"Atom", L_SSE4, 0, false, 0},
    {"Nano", L_SSE4, 0, false, 0},
    {"Barcelona", L_SSE4, 0, false, 0}, /* AMD's SSE4a */
    {"Bobcat", L_SSE4, 0, false, 0},
    {"Opteron_SSE3", L_SSE3, 0, false, 0},
    {"Opteron", L_SSE3, 0, false, 0},
};
#define N_KERNELS (sizeof kernels / sizeof kernels[0])

static const kernel *find_kernel(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < N_KERNELS; i++)
        if (strcmp(kernels[i].name, name) == 0)
            return &kernels[i];
    return NULL;
}

/* The best advisable kernel whose needs the CPU meets (Prescott at least). */
static const kernel *best_kernel(unsigned cpu_features)
{
    for (size_t i = 0; i < N_KERNELS; i++)
        if (kernels[i].advisable && (kernels[i].needs & ~cpu_features) == 0)
            return &kernels[i];
    return NULL;  /* not reached: Prescott needs nothing */
}

unsigned attn_kernel_needs(const char *name)
{
    const kernel *k = find_kernel(name);
    return k && k->advisable ? k->needs : 0;
}

const char *attn_advise_kernel(const char *running, unsigned cpu_features)
{
    const kernel *now = find_kernel(running);
    const kernel *best = best_kernel(cpu_features);
    if (!now || !best || now->level >= best->level)
        return NULL;
    return best->name;
}

/* Part 1: the kernel sentence, or "". */
static void kernel_advice(const attn_setup *s, char *buf, size_t size)
{
    buf[0] = '\0';
    const char *name = attn_advise_kernel(s->blas_kernel, s->cpu_features);
    if (!name)
        return;
    const kernel *now = find_kernel(s->blas_kernel), *best = find_kernel(name);
    char speed[96] = "";
    if (now->gflops > 0 && best->gflops > 0)
        snprintf(speed, sizeof speed, " (sgemm measured %.1fx faster with it on an Intel Xeon)",
                 best->gflops / now->gflops);
    char running[64];
    if (now->level == L_SSE3)
        snprintf(running, sizeof running, "its generic %s kernels", now->name);
    else
        snprintf(running, sizeof running, "its %s kernels (%s)", now->name,
                 level_names[now->level]);
    snprintf(buf, size,
             "OpenBLAS runs %s on a CPU with %s: set OPENBLAS_CORETYPE=%s in the environment "
             "before the program starts%s; see docs/threading.md",
             running, level_names[best->level], name, speed);
}

/* Part 2: threads, or "". With OpenBLAS's pthreads build on several threads
 * and no copy of its OpenMP build to run libattn's GEMMs (blas_copy.c),
 * libattn cannot give its own threads single-threaded GEMMs without changing
 * the process-global BLAS thread count, which is the caller's: the calling
 * thread makes the GEMMs and libattn's threads share only the softmax
 * (context.c). Measured on 2 cores (docs/threading.md): 1.2-2x the time of
 * the best setting. Either of two settings, both the caller's, gives that. */
static void thread_advice(const attn_setup *s, char *buf, size_t size)
{
    buf[0] = '\0';
    if (s->blas_threading != ATTN_BLAS_THREADING_PTHREADS || s->blas_threads <= 1 ||
        s->blas_copy)
        return;
    /* The sentence names OpenBLAS's variable and package: only for OpenBLAS
     * (its kernel names; BLIS's pthreads build reports "zen3" and the like,
     * and is set with BLIS_NUM_THREADS, which docs/threading.md gives). */
    if (!find_kernel(s->blas_kernel))
        return;
    snprintf(buf, size,
             "OpenBLAS runs each call on its own %d pthreads, so libattn makes its GEMMs from "
             "one thread and shares only the softmax (1.2-2x slower, measured on 2 cores): "
             "set OPENBLAS_NUM_THREADS=1 before the program starts, or install "
             "libopenblas0-openmp for libattn to load for its GEMMs (blas_copy says why it "
             "did not); see docs/threading.md",
             s->blas_threads);
}

size_t attn_advice(const attn_setup *setup, char *buf, size_t size)
{
    char kernel_part[320], thread_part[384];
    kernel_advice(setup, kernel_part, sizeof kernel_part);
    thread_advice(setup, thread_part, sizeof thread_part);
    const char *sep = kernel_part[0] && thread_part[0] ? "; " : "";
    int n = snprintf(buf, size, "%s%s%s", kernel_part, sep, thread_part);
    return n < 0 ? 0 : (size_t)n;
}
