/*
 * test_runtime_info.c — attn_runtime_info() and its advice (issue 19).
 *
 * The text: every key once, the values the BLAS and the CPU report when
 * asked directly (the GEMM provider's own getters: openblas_get_corename()
 * and friends, BLIS's bli_info_*, oneDNN's dnnl_version(); /proc/cpuinfo),
 * snprintf semantics, no change to the BLAS. The advice: a pure function of (kernel,
 * CPU features), checked on a table of machines and, for every one of the
 * 2^13 feature sets and every kernel name, never naming a kernel whose
 * instructions the CPU lacks (with this file's own list of what each needs).
 *
 * Linked with the library's object files, not libattn.so, to reach the
 * internal advice functions, and with the provider meson chose (-Dblas=,
 * one ATTN_BLAS_* macro), whose getters it calls itself.
 */
#define _POSIX_C_SOURCE 200809L  /* blis.h's pthread types, as the library builds it */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "attn_internal.h"
#include "test_util.h"

/* ---- the provider, asked directly ---------------------------------------- */

/* The values attn_runtime_info() must show, each from the provider's own
 * getter: blas_kernel exactly, the start of the blas line, the thread count
 * and threading. */
typedef struct provider_view {
    char kernel[128];
    char blas_prefix[256];
    int threads;
    const char *threading;
} provider_view;

#if defined(ATTN_BLAS_OPENBLAS)
/* OpenBLAS's getters: strong references, so this build must link OpenBLAS. */
extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);
extern int openblas_get_num_threads(void);
extern int openblas_get_parallel(void);

static void provider_view_get(provider_view *v)
{
    snprintf(v->kernel, sizeof v->kernel, "%s", openblas_get_corename());
    snprintf(v->blas_prefix, sizeof v->blas_prefix, "%s", openblas_get_config());
    v->threads = openblas_get_num_threads();
    static const char *const models[] = {"serial", "pthreads", "openmp"};
    int p = openblas_get_parallel();
    v->threading = p >= 0 && p <= 2 ? models[p] : "unknown";
}
#elif defined(ATTN_BLAS_BLIS)
#include <blis.h>

static void provider_view_get(provider_view *v)
{
    bli_init();  /* before bli_arch_query_id(): see src/blas.c */
    snprintf(v->kernel, sizeof v->kernel, "%s", bli_arch_string(bli_arch_query_id()));
    snprintf(v->blas_prefix, sizeof v->blas_prefix, "BLIS %s ", bli_info_get_version_str());
    bool omp = bli_info_get_enable_openmp(), pth = bli_info_get_enable_pthreads();
    v->threading = omp ? "openmp" : pth ? "pthreads" : "serial";
    /* BLIS_NUM_THREADS (or OMP_NUM_THREADS), else the loops' ways, else 1. */
    dim_t n = bli_thread_get_num_threads();
    if (n < 1) {
        n = 1;
        dim_t ways[] = {bli_thread_get_jc_nt(), bli_thread_get_pc_nt(), bli_thread_get_ic_nt(),
                        bli_thread_get_jr_nt(), bli_thread_get_ir_nt()};
        for (int i = 0; i < 5; i++)
            n *= ways[i] > 1 ? ways[i] : 1;
    }
    v->threads = omp || pth ? (int)n : 1;
}
#elif defined(ATTN_BLAS_ONEDNN)
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

static void provider_view_get(provider_view *v)
{
    const dnnl_version_t *ver = dnnl_version();
    snprintf(v->blas_prefix, sizeof v->blas_prefix, "oneDNN %d.%d.%d ", ver->major, ver->minor,
             ver->patch);
    bool omp = ver->cpu_runtime == DNNL_RUNTIME_OMP;
    v->threading = omp ? "openmp" : ver->cpu_runtime == DNNL_RUNTIME_SEQ ? "serial" : "unknown";
    v->threads = omp ? omp_get_max_threads() : 1;
    /* oneDNN's f32 GEMM kernels by ISA family, from the effective ISA. */
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    const char *k = "unknown";
    if ((isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core)
        k = "avx512_core";
    else if ((isa & dnnl_cpu_isa_avx512_mic) == dnnl_cpu_isa_avx512_mic)
        k = "avx512_mic";
    else if ((isa & dnnl_cpu_isa_avx2) == dnnl_cpu_isa_avx2)
        k = "avx2";
    else if ((isa & dnnl_cpu_isa_avx) == dnnl_cpu_isa_avx)
        k = "avx";
    else if ((isa & dnnl_cpu_isa_sse41) == dnnl_cpu_isa_sse41)
        k = "sse41";
    snprintf(v->kernel, sizeof v->kernel, "%s", k);
}
#else
/* Any CBLAS: OpenBLAS's getters if it is OpenBLAS (weak), else nothing. */
extern char *openblas_get_corename(void) __attribute__((weak));
extern char *openblas_get_config(void) __attribute__((weak));
extern int openblas_get_num_threads(void) __attribute__((weak));
extern int openblas_get_parallel(void) __attribute__((weak));

static void provider_view_get(provider_view *v)
{
    const char *kernel = openblas_get_corename ? openblas_get_corename() : NULL;
    snprintf(v->kernel, sizeof v->kernel, "%s", kernel && kernel[0] ? kernel : "unknown");
    snprintf(v->blas_prefix, sizeof v->blas_prefix, "%s",
             openblas_get_config ? openblas_get_config() : "unknown");
    v->threads = openblas_get_num_threads ? openblas_get_num_threads() : 1;
    static const char *const models[] = {"serial", "pthreads", "openmp"};
    int p = openblas_get_parallel ? openblas_get_parallel() : -1;
    v->threading = p >= 0 && p <= 2 ? models[p] : "unknown";
}
#endif

static const char *const keys[] = {"version", "blas",  "blas_kernel", "blas_threads",
                                   "blas_threading", "blas_copy", "cpu", "threads",
                                   "schedule", "advice"};
#define N_KEYS (sizeof keys / sizeof keys[0])

static char *info_text(void)
{
    size_t n = attn_runtime_info(NULL, 0);
    char *text = malloc(n + 1);
    assert_non_null(text);
    assert_int_equal(attn_runtime_info(text, n + 1), n);
    return text;
}

/* The value of "key: value" (or "" for "key:"), copied into out; false if
 * the key is not at the start of a line. */
static bool value_of(const char *text, const char *key, char *out, size_t size)
{
    size_t k = strlen(key);
    for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
        if (strncmp(line, key, k) == 0 && line[k] == ':') {
            const char *v = line + k + 1;
            if (*v == ' ')
                v++;
            snprintf(out, size, "%.*s", (int)strcspn(v, "\n"), v);
            return true;
        }
        if (!strchr(line, '\n'))
            break;
    }
    return false;
}

/* A sanitizer runtime in the process keeps the copy away (blas_copy.c). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define TEST_SANITIZED 1
#endif
#endif
#ifndef TEST_SANITIZED
#define TEST_SANITIZED 0
#endif

/* The blas_copy line (src/blas_copy.c): the copy of OpenBLAS's OpenMP
 * build runs libattn's GEMMs exactly when the process's OpenBLAS runs
 * pthreads on several threads, the build has a copy path whose file exists,
 * the environment does not turn it off and no sanitizer runs; with it the
 * schedule is the pool's, as with a serial BLAS. */
static void check_copy_line(const char *text, const provider_view *want)
{
    char copy[512], schedule[64];
    assert_true(value_of(text, "blas_copy", copy, sizeof copy));
    assert_true(value_of(text, "schedule", schedule, sizeof schedule));
    bool wanted = strcmp(want->threading, "pthreads") == 0 && want->threads > 1;
    const char *env = getenv("ATTN_BLAS_COPY");
    bool off = env && strcmp(env, "0") == 0;
    print_message("blas_copy: %s\n", copy);
    if (!wanted) {
        assert_true(strncmp(copy, "none", 4) == 0);
        return;
    }
    if (off) {
        assert_string_equal(copy, "off (ATTN_BLAS_COPY=0)");
        return;
    }
#if defined(ATTN_BLAS_COPY) && !TEST_SANITIZED
    if (access(ATTN_BLAS_COPY_PATH, R_OK) == 0) {
        if (strncmp(copy, ATTN_BLAS_COPY_PATH " ", strlen(ATTN_BLAS_COPY_PATH) + 1) != 0)
            fail_msg("the copy %s exists but blas_copy says '%s'", ATTN_BLAS_COPY_PATH, copy);
        assert_string_equal(schedule, "pool");
        return;
    }
#endif
    assert_true(strncmp(copy, "none", 4) == 0);
    assert_string_not_equal(schedule, "pool");
}

static void every_key_once(void **state)
{
    (void)state;
    char *text = info_text();
    assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
    for (size_t i = 0; i < N_KEYS; i++) {
        int count = 0;
        size_t k = strlen(keys[i]);
        for (const char *line = text; *line; line = strchr(line, '\n') + 1)
            count += strncmp(line, keys[i], k) == 0 && line[k] == ':';
        if (count != 1)
            fail_msg("key %s appears %d times in:\n%s", keys[i], count, text);
    }
    /* Every line is "key: value" or "key:". */
    for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
        size_t key_len = strspn(line, "abcdefghijklmnopqrstuvwxyz_");
        assert_true(key_len > 0);
        assert_true(line[key_len] == ':');
        assert_true(line[key_len + 1] == ' ' || line[key_len + 1] == '\n');
    }
    free(text);
}

static void values_match_the_sources(void **state)
{
    (void)state;
    char *text = info_text();
    char v[512];
    assert_true(value_of(text, "version", v, sizeof v));
    assert_string_equal(v, attn_version_string());
    provider_view want;
    provider_view_get(&want);
    assert_true(value_of(text, "blas_kernel", v, sizeof v));
    assert_string_equal(v, want.kernel);
    assert_true(value_of(text, "blas", v, sizeof v));
#if defined(ATTN_BLAS_OPENBLAS) || defined(ATTN_BLAS_CBLAS)
    assert_string_equal(v, want.blas_prefix);  /* openblas_get_config() verbatim */
#else
    if (strncmp(v, want.blas_prefix, strlen(want.blas_prefix)) != 0)
        fail_msg("blas: '%s' does not start with '%s'", v, want.blas_prefix);
#endif
    assert_true(value_of(text, "blas_threads", v, sizeof v));
    assert_int_equal(atoi(v), want.threads < 1 ? 1 : want.threads);
    assert_true(value_of(text, "threads", v, sizeof v));
    assert_int_equal(atoi(v), attn_default_threads());
    static const char *const schedules[] = {"pool", "openmp", "blas-threads"};
    assert_true(value_of(text, "schedule", v, sizeof v));
    assert_string_equal(v, schedules[attn_default_schedule()]);
    assert_true(value_of(text, "blas_threading", v, sizeof v));
    assert_string_equal(v, want.threading);
    check_copy_line(text, &want);
#if !defined(ATTN_BLAS_OPENBLAS) && !defined(ATTN_BLAS_CBLAS)
    /* OPENBLAS_CORETYPE advice only ever concerns OpenBLAS. */
    assert_true(value_of(text, "advice", v, sizeof v));
    assert_null(strstr(v, "OPENBLAS_CORETYPE"));
#endif
    free(text);
}

/* The cpu line against Linux's own view: the same family and model, and for
 * each listed extension, the same presence as in /proc/cpuinfo's flags
 * (Linux too lists only what the OS enables). */
static void cpu_matches_proc_cpuinfo(void **state)
{
    (void)state;
    if (tu_under_valgrind()) {
        print_message("cpu: under Valgrind, whose cpuid is not /proc/cpuinfo's: skipped\n");
        skip();
    }
#if defined(__x86_64__) && defined(__linux__)
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        skip();
    char line[8192], flags[8192] = "";
    int family = -1, model = -1;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "cpu family : %d", &family) == 1 && family >= 0)
            continue;
        if (strncmp(line, "model\t", 6) == 0)
            sscanf(strchr(line, ':') + 1, "%d", &model);
        if (strncmp(line, "flags", 5) == 0 && !flags[0])
            snprintf(flags, sizeof flags, " %s", strchr(line, ':') + 1);
        if (line[0] == '\n' && flags[0])
            break;  /* the first CPU is enough */
    }
    fclose(f);
    char *nl = strchr(flags, '\n');
    if (nl)
        *nl = ' ';

    char *text = info_text(), cpu[1024], want[64];
    assert_true(value_of(text, "cpu", cpu, sizeof cpu));
    snprintf(want, sizeof want, " family %d model %d,", family, model);
    if (!strstr(cpu, want))
        fail_msg("cpu line '%s' lacks '%s'", cpu, want);
    strcat(cpu, " ");
    for (int i = 0; i < ATTN_CPU_FEATURE_COUNT; i++) {
        char word[32];
        snprintf(word, sizeof word, " %s ", attn_cpu_feature_name(1u << i));
        bool in_linux = strstr(flags, word) != NULL, in_ours = strstr(cpu, word) != NULL;
        if (in_linux != in_ours)
            fail_msg("%s: /proc/cpuinfo %d, attn_runtime_info %d", word, in_linux, in_ours);
    }
    free(text);
#else
    skip();
#endif
}

static void snprintf_semantics(void **state)
{
    (void)state;
    size_t n = attn_runtime_info(NULL, 0);
    assert_true(n > 100 && n < 1024);
    char *full = info_text();
    assert_int_equal(strlen(full), n);

    /* size 0 with a real buffer writes nothing. */
    char guard[4] = {'x', 'x', 'x', 'x'};
    assert_int_equal(attn_runtime_info(guard, 0), n);
    assert_memory_equal(guard, "xxxx", 4);

    /* Cut texts: the prefix that fits, NUL-terminated, nothing beyond size. */
    const size_t sizes[] = {1, 2, 10, n / 2, n, n + 1};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t size = sizes[i];
        char *buf = malloc(n + 16);
        assert_non_null(buf);
        memset(buf, '#', n + 16);
        assert_int_equal(attn_runtime_info(buf, size), n);
        assert_int_equal(strlen(buf), size - 1 < n ? size - 1 : n);
        assert_memory_equal(buf, full, strlen(buf));
        for (size_t j = size; j < n + 16; j++)
            assert_int_equal(buf[j], '#');
        free(buf);
    }
    free(full);
}

static void leaves_the_blas_alone(void **state)
{
    (void)state;
    provider_view before, after;
    provider_view_get(&before);
    const char *kernel = attn_blas_kernel();
    free(info_text());
    provider_view_get(&after);
    assert_int_equal(after.threads, before.threads);
    assert_string_equal(after.kernel, before.kernel);
    assert_string_equal(attn_blas_kernel(), kernel);
}

/* ---- the advice, as a pure function ----------------------------------- */

#define AVX2_FMA (ATTN_CPU_SSE4_2 | ATTN_CPU_AVX | ATTN_CPU_AVX2 | ATTN_CPU_FMA)
#define AVX512 (AVX2_FMA | ATTN_CPU_AVX512F | ATTN_CPU_AVX512BW | ATTN_CPU_AVX512VL | \
                ATTN_CPU_AVX512DQ | ATTN_CPU_AVX512CD)
#define AVX512_BF16 (AVX512 | ATTN_CPU_AVX512_BF16)

typedef struct advice_case {
    const char *what;
    const char *kernel;
    unsigned features;
    const char *advised;  /* NULL: no advice */
} advice_case;

static const advice_case advice_cases[] = {
    {"Prescott on AVX-512 + BF16 (Emerald Rapids)", "Prescott",
     AVX512_BF16 | ATTN_CPU_AVX512_FP16 | ATTN_CPU_AMX_TILE | ATTN_CPU_AMX_BF16, "Cooperlake"},
    {"Prescott on AVX-512 without BF16 (Skylake-SP)", "Prescott", AVX512, "SkylakeX"},
    {"Prescott on AVX2 + FMA", "Prescott", AVX2_FMA, "Haswell"},
    {"Prescott on AVX-512 without DQ: not SkylakeX", "Prescott", AVX512 & ~ATTN_CPU_AVX512DQ,
     "Haswell"},
    {"Prescott on AVX2 without FMA: not Haswell", "Prescott", AVX2_FMA & ~ATTN_CPU_FMA,
     "Sandybridge"},
    {"Prescott on AVX only", "Prescott", ATTN_CPU_SSE4_2 | ATTN_CPU_AVX, "Sandybridge"},
    {"Prescott on SSE4.2 only", "Prescott", ATTN_CPU_SSE4_2, "Nehalem"},
    {"Prescott on a CPU with nothing listed", "Prescott", 0, NULL},
    {"Haswell on AVX2", "Haswell", AVX2_FMA, NULL},
    {"Zen on AVX2 (Zen 3)", "Zen", AVX2_FMA, NULL},
    {"Sandybridge on AVX only", "Sandybridge", ATTN_CPU_SSE4_2 | ATTN_CPU_AVX, NULL},
    {"SkylakeX on AVX-512", "SkylakeX", AVX512, NULL},
    {"Cooperlake on AVX-512 + BF16", "Cooperlake", AVX512_BF16, NULL},
    {"Haswell on AVX-512 + BF16", "Haswell", AVX512_BF16, "Cooperlake"},
    {"Zen on AVX-512 + BF16 (Zen 4)", "Zen", AVX512_BF16, "Cooperlake"},
    {"SkylakeX on AVX-512 + BF16", "SkylakeX", AVX512_BF16, "Cooperlake"},
    {"Cooperlake on a CPU without BF16: already above, no advice", "Cooperlake", AVX512, NULL},
    {"Bulldozer (FMA4) on AVX only: never advised, same level", "Bulldozer",
     ATTN_CPU_SSE4_2 | ATTN_CPU_AVX, NULL},
    {"an unknown kernel", "SapphireRapids", AVX512_BF16, NULL},
    {"not OpenBLAS", "unknown", AVX512_BF16, NULL},
    {"no kernel name", NULL, AVX512_BF16, NULL},
};

static void advice_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof advice_cases / sizeof advice_cases[0]; i++) {
        const advice_case *c = &advice_cases[i];
        const char *got = attn_advise_kernel(c->kernel, c->features);
        if ((got == NULL) != (c->advised == NULL) ||
            (got && strcmp(got, c->advised) != 0))
            fail_msg("%s: advised %s, expected %s", c->what, got ? got : "nothing",
                     c->advised ? c->advised : "nothing");

        attn_setup setup = {c->kernel, c->features, 1, ATTN_BLAS_THREADING_PTHREADS, 2, false};
        char text[1024], want[64];
        size_t n = attn_advice(&setup, text, sizeof text);
        assert_int_equal(n, strlen(text));
        if (!c->advised) {
            assert_string_equal(text, "");
            continue;
        }
        snprintf(want, sizeof want, "OPENBLAS_CORETYPE=%s ", c->advised);
        if (!strstr(text, want) || !strstr(text, c->kernel) || strchr(text, '\n'))
            fail_msg("%s: advice '%s'", c->what, text);
    }
}

/* What each kernel the advice may name needs, written here from OpenBLAS's
 * build flags, independently of src/advice.c. */
static const struct {
    const char *name;
    unsigned needs;
} kernel_needs[] = {
    {"Cooperlake", AVX512_BF16 & ~ATTN_CPU_SSE4_2},
    {"SkylakeX", AVX512 & ~ATTN_CPU_SSE4_2},
    {"Haswell", ATTN_CPU_AVX | ATTN_CPU_AVX2 | ATTN_CPU_FMA},
    {"Sandybridge", ATTN_CPU_AVX},
    {"Nehalem", ATTN_CPU_SSE4_2},
    {"Prescott", 0},
};

static const char *const running_kernels[] = {
    "Prescott", "Core2",       "Penryn",   "Dunnington", "Nehalem",     "Atom",
    "Nano",     "Opteron",     "Opteron_SSE3", "Barcelona", "Bobcat",  "Sandybridge",
    "Bulldozer", "Piledriver", "Steamroller", "Excavator", "Haswell",   "Zen",
    "SkylakeX", "Cooperlake",  "unknown",  "Katmai",     "",            "cooperlake",
};

static void never_a_missing_instruction(void **state)
{
    (void)state;
    long advised = 0;
    for (unsigned f = 0; f < 1u << ATTN_CPU_FEATURE_COUNT; f++)
        for (size_t k = 0; k < sizeof running_kernels / sizeof running_kernels[0]; k++) {
            const char *got = attn_advise_kernel(running_kernels[k], f);
            if (!got)
                continue;
            advised++;
            size_t j = 0;
            while (j < sizeof kernel_needs / sizeof kernel_needs[0] &&
                   strcmp(kernel_needs[j].name, got) != 0)
                j++;
            if (j == sizeof kernel_needs / sizeof kernel_needs[0])
                fail_msg("advised %s, which this test does not know", got);
            if (kernel_needs[j].needs & ~f)
                fail_msg("%s on features 0x%x: advised %s, which needs 0x%x", running_kernels[k],
                         f, got, kernel_needs[j].needs);
            assert_int_equal(attn_kernel_needs(got), kernel_needs[j].needs);
            assert_true(strcmp(got, running_kernels[k]) != 0);
        }
    assert_true(advised > 0);
}

/* The threading sentence: only OpenBLAS's pthreads on several threads, where
 * libattn cannot give its own threads single-threaded GEMMs; it names both
 * settings that fix it, and joins a kernel sentence with "; ". */
static void thread_advice(void **state)
{
    (void)state;
    static const struct {
        attn_blas_threading threading;
        int blas_threads;
        bool copy;  /* libattn's GEMMs on its copy of the OpenMP build */
        bool advised;
    } cases[] = {
        {ATTN_BLAS_THREADING_PTHREADS, 2, false, true},
        {ATTN_BLAS_THREADING_PTHREADS, 64, false, true},
        {ATTN_BLAS_THREADING_PTHREADS, 2, true, false},
        {ATTN_BLAS_THREADING_PTHREADS, 1, false, false},
        {ATTN_BLAS_THREADING_OPENMP, 2, false, false},
        {ATTN_BLAS_THREADING_OPENMP, 1, false, false},
        {ATTN_BLAS_THREADING_SERIAL, 1, false, false},
        {ATTN_BLAS_THREADING_UNKNOWN, 1, false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        attn_setup setup = {"Haswell", ATTN_CPU_AVX | ATTN_CPU_AVX2 | ATTN_CPU_FMA,
                            cases[i].blas_threads, cases[i].threading, 2, cases[i].copy};
        char text[1024];
        size_t n = attn_advice(&setup, text, sizeof text);
        assert_int_equal(n, strlen(text));
        if (!cases[i].advised) {
            assert_string_equal(text, "");
            continue;
        }
        char threads[32];
        snprintf(threads, sizeof threads, " %d pthreads", cases[i].blas_threads);
        if (!strstr(text, "OPENBLAS_NUM_THREADS=1") || !strstr(text, "libopenblas0-openmp") ||
            !strstr(text, threads) || strchr(text, '\n'))
            fail_msg("pthreads x %d: advice '%s'", cases[i].blas_threads, text);
    }
    /* BLIS's pthreads build (kernel "zen3"): OpenBLAS's advice would name
     * the wrong variable, so none. */
    attn_setup blis = {"zen3", ATTN_CPU_AVX | ATTN_CPU_AVX2 | ATTN_CPU_FMA, 2,
                       ATTN_BLAS_THREADING_PTHREADS, 2, false};
    char none[64];
    attn_advice(&blis, none, sizeof none);
    assert_string_equal(none, "");

    attn_setup both = {"Prescott", ATTN_CPU_AVX | ATTN_CPU_AVX2 | ATTN_CPU_FMA, 2,
                       ATTN_BLAS_THREADING_PTHREADS, 2, false};
    char text[1024];
    attn_advice(&both, text, sizeof text);
    const char *sep = strstr(text, "; ");
    assert_non_null(sep);
    assert_non_null(strstr(text, "OPENBLAS_CORETYPE=Haswell "));
    assert_true(strstr(text, "OPENBLAS_CORETYPE") < sep && strstr(text, "OPENBLAS_NUM_THREADS") > sep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_key_once),
        cmocka_unit_test(values_match_the_sources),
        cmocka_unit_test(cpu_matches_proc_cpuinfo),
        cmocka_unit_test(snprintf_semantics),
        cmocka_unit_test(leaves_the_blas_alone),
        cmocka_unit_test(advice_table),
        cmocka_unit_test(never_a_missing_instruction),
        cmocka_unit_test(thread_advice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
