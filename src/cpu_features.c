/*
 * cpu_features.c — which CPU this process runs on, and which vector
 * instructions it may use, for attn_runtime_info() and its advice.
 *
 * An instruction set is usable only when the CPU has it (cpuid) and the OS
 * saves its registers on a context switch (XCR0, read with xgetbv): a
 * hypervisor or kernel may hide AVX-512 state although cpuid lists AVX-512,
 * and an OpenBLAS kernel chosen from cpuid alone would then fault. The names
 * are those of Linux's /proc/cpuinfo, so the two can be compared by eye.
 */
#include <string.h>

#include "attn_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>

/* XCR0 bits: the register state the OS saves (Intel SDM vol. 1, 13.3). */
enum {
    XCR0_SSE       = 1u << 1,
    XCR0_YMM       = 1u << 2,
    XCR0_OPMASK    = 1u << 5,
    XCR0_ZMM_HI256 = 1u << 6,
    XCR0_HI16_ZMM  = 1u << 7,
    XCR0_TILECFG   = 1u << 17,
    XCR0_TILEDATA  = 1u << 18,
};

/* xgetbv as bytes, so that no -mxsave is needed to assemble it. Only valid
 * when cpuid reports OSXSAVE. */
static unsigned long long read_xcr0(void)
{
    unsigned eax, edx;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

/* cpuid leaf/subleaf into r[4] = {eax, ebx, ecx, edx}; zeros when the leaf
 * is beyond what the CPU reports. */
static void cpuid(unsigned leaf, unsigned subleaf, unsigned r[4])
{
    if (!__get_cpuid_count(leaf, subleaf, &r[0], &r[1], &r[2], &r[3]))
        r[0] = r[1] = r[2] = r[3] = 0;
}

/* Family and model as Linux computes them (arch/x86/lib/cpu.c): the
 * extended family is added only to family 0xf, the extended model only
 * from family 6 on. AMD Zen 4 shows as family 25 model 17 this way. */
static void family_model(unsigned signature, int *family, int *model)
{
    unsigned fam = (signature >> 8) & 0xf;
    if (fam == 0xf)
        fam += (signature >> 20) & 0xff;
    unsigned mod = (signature >> 4) & 0xf;
    if (fam >= 0x6)
        mod += ((signature >> 16) & 0xf) << 4;
    *family = (int)fam;
    *model = (int)mod;
}

static unsigned usable_features(void)
{
    unsigned l1[4], l7[4], l7s1[4];
    cpuid(1, 0, l1);
    cpuid(7, 0, l7);
    if (l7[0] >= 1)  /* leaf 7's highest subleaf */
        cpuid(7, 1, l7s1);
    else
        l7s1[0] = l7s1[1] = l7s1[2] = l7s1[3] = 0;

    unsigned f = 0;
    if (l1[2] & bit_SSE4_2)
        f |= ATTN_CPU_SSE4_2;
    if (!(l1[2] & bit_OSXSAVE))
        return f;  /* no xgetbv: the OS saves no AVX state */
    unsigned long long xcr0 = read_xcr0();
    bool ymm = (xcr0 & (XCR0_SSE | XCR0_YMM)) == (XCR0_SSE | XCR0_YMM);
    bool zmm = ymm && (xcr0 & (XCR0_OPMASK | XCR0_ZMM_HI256 | XCR0_HI16_ZMM)) ==
                          (XCR0_OPMASK | XCR0_ZMM_HI256 | XCR0_HI16_ZMM);
    /* Linux also wants a per-process arch_prctl(ARCH_REQ_XCOMP_PERM) before
     * the first tile instruction; that request is the user's (oneDNN makes
     * it), so here AMX means "the CPU has it and the OS manages its state". */
    bool tiles = (xcr0 & (XCR0_TILECFG | XCR0_TILEDATA)) == (XCR0_TILECFG | XCR0_TILEDATA);

    const struct { bool state; unsigned reg, mask, feature; } table[] = {
        {ymm, l1[2], bit_AVX, ATTN_CPU_AVX},
        {ymm, l7[1], bit_AVX2, ATTN_CPU_AVX2},
        {ymm, l1[2], bit_FMA, ATTN_CPU_FMA},
        {zmm, l7[1], bit_AVX512F, ATTN_CPU_AVX512F},
        {zmm, l7[1], bit_AVX512BW, ATTN_CPU_AVX512BW},
        {zmm, l7[1], bit_AVX512VL, ATTN_CPU_AVX512VL},
        {zmm, l7[1], bit_AVX512DQ, ATTN_CPU_AVX512DQ},
        {zmm, l7[1], bit_AVX512CD, ATTN_CPU_AVX512CD},
        {zmm, l7s1[0], 1u << 5, ATTN_CPU_AVX512_BF16},   /* leaf 7.1 EAX[5] */
        {zmm, l7[3], 1u << 23, ATTN_CPU_AVX512_FP16},    /* leaf 7.0 EDX[23] */
        {tiles, l7[3], 1u << 24, ATTN_CPU_AMX_TILE},     /* leaf 7.0 EDX[24] */
        {tiles, l7[3], 1u << 22, ATTN_CPU_AMX_BF16},     /* leaf 7.0 EDX[22] */
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].state && (table[i].reg & table[i].mask))
            f |= table[i].feature;
    return f;
}

void attn_cpu_detect(attn_cpu_info *info)
{
    memset(info, 0, sizeof *info);
    unsigned r[4];
    if (!__get_cpuid(0, &r[0], &r[1], &r[2], &r[3]))
        return;
    memcpy(info->vendor, &r[1], 4);  /* the vendor string is EBX, EDX, ECX */
    memcpy(info->vendor + 4, &r[3], 4);
    memcpy(info->vendor + 8, &r[2], 4);
    info->vendor[12] = '\0';
    cpuid(1, 0, r);
    family_model(r[0], &info->family, &info->model);
    info->features = usable_features();
    info->known = true;
}

#else /* not x86-64: nothing to ask, and no kernel advice to give */

void attn_cpu_detect(attn_cpu_info *info)
{
    memset(info, 0, sizeof *info);
}

#endif

const char *attn_cpu_feature_name(unsigned feature)
{
    static const char *const names[ATTN_CPU_FEATURE_COUNT] = {
        "sse4_2",   "avx",      "avx2",        "fma",         "avx512f",  "avx512bw", "avx512vl",
        "avx512dq", "avx512cd", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
    };
    for (int i = 0; i < ATTN_CPU_FEATURE_COUNT; i++)
        if (feature == 1u << i)
            return names[i];
    return NULL;
}
