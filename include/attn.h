/**
 * @file attn.h
 * @brief libattn, attention for native programs.
 *
 * libattn computes the attention operation of Transformers on the CPU:
 *
 * @code{.unparsed}
 *     out = softmax(scale · Q Kᵀ + bias, masked) · V
 * @endcode
 *
 * (Vaswani et al., "Attention Is All You Need", 2017, eq. 1; D2L §10.3),
 * and the layers built on it: multi-head attention with PyTorch's numbers,
 * additive (Bahdanau) attention, Nadaraya–Watson kernel regression, and the
 * sinusoidal positional encoding.
 * Q·Kᵀ and P·V are computed by the BLAS library's cblas_sgemm; libattn adds the
 * scaling, the masks (valid lengths, boolean keep-masks, additive bias, causal),
 * a softmax that subtracts the row maximum, grouped-query heads, and a block
 * schedule whose scratch memory is O(block × len_kv) per thread, never
 * O(len_q × len_kv).
 *
 * A complete program (the worked example of the UvA deep-learning tutorial 6):
 *
 * @code{.c}
 *     #include <attn.h>
 *     #include <stdio.h>
 *
 *     int main(void) {
 *         const float q[] = {0.3367f, 0.1288f, 0.2345f, 0.2303f, -1.1229f, -0.1863f};
 *         const float k[] = {2.2082f, -0.6380f, 0.4617f, 0.2674f, 0.5349f, 0.8094f};
 *         const float v[] = {1.1103f, -1.6898f, -0.9890f, 0.9580f, 1.3221f, 0.8172f};
 *         float out[6], weights[9];
 *         attn_context *ctx = NULL;
 *         attn_sdpa *op = NULL;
 *         attn_status st = attn_context_create(&ctx);
 *         if (st == ATTN_OK)   // batch 1, 1 head, len_q 3, len_kv 3, dim_qk 2, dim_v 2
 *             st = attn_sdpa_create(&op, 1, 1, 1, 3, 3, 2, 2);
 *         if (st == ATTN_OK)
 *             st = attn_sdpa_forward(ctx, op, q, k, v, NULL, out, weights, NULL);
 *         if (st != ATTN_OK)
 *             fprintf(stderr, "%s: %s\n", attn_status_string(st), attn_last_error());
 *         else
 *             printf("%.4f %.4f\n", out[0], out[1]);   // 0.5697 -0.1520
 *         attn_sdpa_destroy(op);
 *         attn_context_destroy(ctx);
 *         return st == ATTN_OK ? 0 : 1;
 *     }
 * @endcode
 *
 * Build it with:  `cc example.c $(pkg-config --cflags --libs attn)`
 *
 * Tensors. Every tensor is a dense, row-major (C order) array of IEEE-754
 * binary32 `float` owned by the caller. Shapes are written outermost first:
 * [B, H, S, D] means element (b, h, s, d) is at ((b·H + h)·S + s)·D + d.
 * All sizes are int64_t. Counts of things (batch, len_q, len_kv) may be 0;
 * sizes of things (heads, dims) must be ≥ 1. A data pointer may be NULL only
 * when its tensor has no elements.
 *
 * Ownership and lifetime. Every object made by an attn_*_create function is
 * owned by the caller and released by the matching attn_*_destroy, which
 * accepts NULL. libattn keeps no caller pointer after a call returns, except
 * that an attn_mask references the caller's mask arrays (nothing is copied):
 * they must stay valid and unchanged until the last forward call that uses
 * the mask returns.
 *
 * Thread-safety. An attn_context holds threads and scratch memory: one thread
 * at a time may use it. Operation objects (attn_sdpa, attn_mha, attn_additive)
 * and masks are immutable during a forward call and may be shared by any
 * number of threads at once, each with its own context, as long as no thread
 * changes them meanwhile.
 * attn_last_error() is per thread. libattn never changes process-global state
 * of the BLAS library (such as openblas_set_num_threads): the number of BLAS
 * threads is the caller's to choose; libattn reads it and adapts its own
 * threads to it (attn_context_set_num_threads says how).
 *
 * Errors. Every call that can fail returns an attn_status. It validates every
 * argument before it writes any output, so a failed call leaves all outputs
 * untouched; attn_last_error() then says what was wrong, naming the function
 * and the argument. Successful calls leave attn_last_error() as it was.
 * libattn never prints, never aborts, and never reads or writes outside the
 * sizes it is given.
 *
 * Versioning. Programs built against major version N run with any library
 * whose soname is libattn.so.N; the soname changes only on an ABI break. Enum
 * values are fixed forever; new values and functions are only appended.
 */
#ifndef ATTN_H
#define ATTN_H

#include <stddef.h>
#include <stdint.h>

#include "attn_version.h"

/**
 * @def ATTN_API
 * Marks the functions that libattn exports (default visibility), so that
 * the library itself can build with hidden visibility.
 */
#if defined(_WIN32)
#  define ATTN_API __declspec(dllimport)
#elif defined(__GNUC__)
#  define ATTN_API __attribute__((visibility("default")))
#else
#  define ATTN_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * Basics: version, status codes, errors, contexts
 * ====================================================================== */
/**
 * @defgroup basics Basics: version, status codes, errors, contexts
 * @{
 */

/** The runtime library's version as MAJOR*10000 + MINOR*100 + PATCH, to compare
 * with ATTN_VERSION_NUMBER from the header a program was built with.
 * Never fails; thread-safe. */
ATTN_API unsigned attn_version_number(void);

/** The runtime library's version as "MAJOR.MINOR.PATCH": a static string,
 * never NULL, never to be freed. Thread-safe. */
ATTN_API const char *attn_version_string(void);

/** The result of every call that can fail. The values are fixed forever; new
 * ones are only appended. */
typedef enum attn_status {
    ATTN_OK                   = 0, /**< success */
    ATTN_ERR_NULL_POINTER     = 1, /**< a required pointer is NULL */
    ATTN_ERR_INVALID_ARGUMENT = 2, /**< a value outside its domain: negative size,
                                      unknown enum, non-finite scale */
    ATTN_ERR_SHAPE_MISMATCH   = 3, /**< sizes valid alone but inconsistent together
                                      (heads_q % heads_kv != 0, mask dims) */
    ATTN_ERR_SIZE_OVERFLOW    = 4, /**< a buffer's byte count does not fit in size_t */
    ATTN_ERR_OUT_OF_MEMORY    = 5, /**< an allocation or a thread creation failed */
    ATTN_ERR_UNSUPPORTED      = 6, /**< a valid request this build does not implement,
                                      e.g. a size beyond the BLAS integer type (int) */
    ATTN_ERR_STATE            = 7  /**< object not fully configured (e.g. weights not set) */
} attn_status;

/** A short English name of `status` ("ATTN_ERR_SHAPE_MISMATCH: ...").
 * A static string, never NULL, also for values outside the enum.
 * Thread-safe. */
ATTN_API const char *attn_status_string(attn_status status);

/** The detail of the calling thread's last failed call, for example
 * "attn_sdpa_create: heads_q (6) is not a multiple of heads_kv (4)", or ""
 * if no call of this thread has failed. Never NULL. The string is owned by
 * libattn and stays valid until this thread's next failing libattn call.
 * Thread-local: other threads' failures do not change it. */
ATTN_API const char *attn_last_error(void);

/** The execution context: worker threads and scratch memory reused from call
 * to call. Use one context per thread at a time; the same context may be
 * handed from one thread to another between calls. */
typedef struct attn_context attn_context;

/** Creates a context with the default thread count (0: libattn's choice,
 * see attn_context_set_num_threads).
 * Threads and scratch are made lazily by the first forward call that needs
 * them, so creation is cheap.
 * Returns ATTN_OK and sets *ctx; ATTN_ERR_NULL_POINTER if ctx is NULL;
 * ATTN_ERR_OUT_OF_MEMORY. On failure *ctx is left untouched.
 * Release with attn_context_destroy. Thread-safe. */
ATTN_API attn_status attn_context_create(attn_context **ctx);

/** Stops the context's threads and frees its memory. NULL is a no-op.
 * Must not run while a forward call is using the context. */
ATTN_API void attn_context_destroy(attn_context *ctx);

/** Sets how many threads forward calls on this context use, the calling
 * thread included: 1 means the calling thread only; n > 1 splits the work
 * over (batch, head, block of query rows) and over blocks of projection
 * rows. 0 (the default) lets libattn choose from how the BLAS library runs
 * its own threads, read at each call, never changed (docs/threading.md;
 * attn_runtime_info() names the choice on its "schedule" line):
 *  - one BLAS thread (a serial BLAS, OPENBLAS_NUM_THREADS=1, or
 *    openblas_set_num_threads(1)): all online cores, each making its own
 *    single-threaded GEMMs ("pool");
 *  - a BLAS threaded by OpenMP (Debian's libopenblas0-openmp; BLIS's OpenMP
 *    build and oneDNN with meson's -Dblas=), libattn built with OpenMP: as
 *    many threads as the BLAS would use (omp_get_max_threads(),
 *    OMP_NUM_THREADS) in an OpenMP parallel region, inside which the BLAS
 *    runs each GEMM on the calling thread: one team of threads, no
 *    contention ("openmp"; 1 thread when the caller is already inside a
 *    parallel region of its own). These threads are libgomp's: if it cannot
 *    create one, libgomp itself ends the process, where libattn's own
 *    threads would give ATTN_ERR_OUT_OF_MEMORY; and libgomp does not survive
 *    fork() once its threads exist: a child process must not use it
 *    (libattn there, as OpenBLAS's OpenMP build itself, would hang);
 *  - OpenBLAS with its own pthreads on several threads (Debian's default
 *    libopenblas0-pthread): libattn makes its GEMMs on a copy of its own of
 *    OpenBLAS's OpenMP build, the same version and kernel, run serially
 *    (loaded privately at the first such call, from libopenblas0-openmp;
 *    attn_runtime_info()'s "blas_copy" line), so this is the pool above,
 *    as fast as OPENBLAS_NUM_THREADS=1 within the noise (docs/threading.md).
 *    The process's OpenBLAS, its thread count and the caller's own BLAS
 *    calls are untouched; the copy's work buffers add 2–3.5 MiB of
 *    resident memory. ATTN_BLAS_COPY=0 in the environment turns it off;
 *  - a BLAS with its own pthreads on several threads and no copy (turned
 *    off, libopenblas0-openmp not installed, a sanitizer runtime in the
 *    process, another BLAS), or an OpenMP BLAS when libattn is built
 *    without OpenMP: the calling thread makes every GEMM, which the BLAS
 *    spreads over its threads, and all online cores share the softmax
 *    between the GEMMs of a block of 64K logits or more ("blas-threads").
 *    Threads of libattn's making GEMMs beside OpenBLAS's would fight them
 *    (its idle threads spin for ~0.1 s after each call): on 2 cores, 4–20×
 *    slower. This is 1.2–2× slower than the settings above (measured in
 *    docs/threading.md); attn_runtime_info()'s advice says what to set.
 * An explicit n is n libattn threads. With a pthreads BLAS on several
 * threads and no copy, n > 1 makes each thread call the BLAS on its own
 * (avoid it) and n = 1 keeps the GEMMs on the BLAS's threads and the
 * softmax on the caller.
 * Results are bitwise identical for any thread count as long as the BLAS
 * runs each GEMM on as many threads of its own: always with one BLAS thread,
 * with libattn's copy and with OpenBLAS's pthreads. Under the OpenMP schedule, n = 1 (or a call
 * with a single block of work) makes multi-threaded GEMMs where n > 1 makes
 * single-threaded ones, which the BLAS may round differently (within float
 * precision).
 * Returns ATTN_ERR_NULL_POINTER (ctx NULL), ATTN_ERR_INVALID_ARGUMENT
 * (n < 0 or n > 1024). Not thread-safe on the same context. */
ATTN_API attn_status attn_context_set_num_threads(attn_context *ctx, int n);

/** @} */

/* ======================================================================
 * Masks
 * ====================================================================== */
/**
 * @defgroup masks Masks
 *
 * A mask says which keys each query may attend, per call. It references the
 * caller's arrays, copies nothing, and is read only by forward calls: the
 * arrays must stay valid and unchanged until the last forward that uses the
 * mask returns. All kinds set on one mask combine: a key is attended only if
 * every kind allows it (and the op's causal setting too), and the bias is
 * added to the scaled logits of the keys that remain. Setting a kind again
 * replaces the earlier setting of that kind: a mask holds one array per
 * kind, so two boolean masks (say, left padding and a structure mask) are
 * combined by the caller (logical AND) into one.
 *
 * Broadcasting (bool and bias). The shape is [mb, mh, mq, len_kv] with
 * mb ∈ {1, batch}, mh ∈ {1, heads}, mq ∈ {1, len_q}; a dimension of 1 is
 * shared by every index of that dimension (as in NumPy). len_kv must equal the
 * op's len_kv. These are checked against the op at forward
 * (ATTN_ERR_SHAPE_MISMATCH). A mask may be used with several ops and by
 * several threads at once; it must not be changed while in use.
 *
 * Polarity. keep != 0 means "attend", as in PyTorch's
 * F.scaled_dot_product_attention and ONNX Attention. (PyTorch's
 * nn.MultiheadAttention bool masks mean the opposite: "masked out".)
 * @{
 */

/** A mask: at most one array of each kind (valid lengths, boolean keep-mask,
 * additive bias), referenced, not copied (see the Masks section above). */
typedef struct attn_mask attn_mask;

/** Creates an empty mask (nothing masked).
 * Returns ATTN_ERR_NULL_POINTER (mask NULL), ATTN_ERR_OUT_OF_MEMORY; on
 * failure *mask is untouched. Release with attn_mask_destroy. Thread-safe. */
ATTN_API attn_status attn_mask_create(attn_mask **mask);

/** Frees the mask (not the caller's arrays it references). NULL is a no-op. */
ATTN_API void attn_mask_destroy(attn_mask *mask);

/** Removes every kind from the mask. Returns ATTN_ERR_NULL_POINTER if mask is
 * NULL. */
ATTN_API attn_status attn_mask_clear(attn_mask *mask);

/** Valid lengths (D2L §10.3.1 masked_softmax, `valid_lens`; section numbers
 * here are those of D2L's classic edition, chapter 10 "Attention
 * Mechanisms"): for batch row b (and query i when per_query = 1), keys at
 * positions >= length are masked.
 * @code{.unparsed}
 *   per_query = 0: lengths is [batch]; len_q is ignored.
 *   per_query = 1: lengths is [batch, len_q].
 * @endcode
 * Each length is in [0, len_kv] of the op; 0 masks every key of that row,
 * whose outputs are then zeros (lse -INFINITY). (D2L's masked_softmax, which
 * masks with -1e6, gives uniform weights there instead.)
 * With per_query = 0, keys at or beyond a batch row's length are never read,
 * so they may hold anything, NaN included; this is the padding mask of a
 * batch of sequences of different lengths.
 * Returns ATTN_ERR_NULL_POINTER (mask NULL, or lengths NULL with a non-empty
 * shape), ATTN_ERR_INVALID_ARGUMENT (batch < 0, len_q < 0 with per_query = 1,
 * per_query not 0 or 1, a negative length), ATTN_ERR_SIZE_OVERFLOW. At forward:
 * ATTN_ERR_SHAPE_MISMATCH if batch (or len_q for per_query = 1) differs from
 * the op's, ATTN_ERR_INVALID_ARGUMENT if a length is negative or above len_kv.
 */
ATTN_API attn_status attn_mask_set_kv_lengths(attn_mask *mask, const int64_t *lengths,
                                              int64_t batch, int64_t len_q, int per_query);

/** Boolean keep-mask: keep[b][h][i][j] != 0 means query i of head h of batch
 * row b may attend key j. Shape [mb, mh, mq, len_kv], broadcast as above
 * (heads is the op's heads_q).
 * Returns ATTN_ERR_NULL_POINTER (mask NULL, or keep NULL with a non-empty
 * shape), ATTN_ERR_INVALID_ARGUMENT (mb, mh or mq < 1, len_kv < 0),
 * ATTN_ERR_SIZE_OVERFLOW. */
ATTN_API attn_status attn_mask_set_bool(attn_mask *mask, const uint8_t *keep,
                                        int64_t mb, int64_t mh, int64_t mq, int64_t len_kv);

/** Additive bias: bias[b][h][i][j] is added to scale·q_i·k_j before the
 * softmax (ALiBi, relative positions, a float attention mask). -INFINITY masks
 * the key; +INFINITY and NaN are not meaningful and make the row NaN. Shape and
 * broadcasting as for attn_mask_set_bool; the statuses are the same. */
ATTN_API attn_status attn_mask_set_bias(attn_mask *mask, const float *bias,
                                        int64_t mb, int64_t mh, int64_t mq, int64_t len_kv);

/** @} */

/* ======================================================================
 * Scaled dot-product attention (SDPA)
 * ====================================================================== */
/**
 * @defgroup sdpa Scaled dot-product attention (SDPA)
 *
 * For every batch row b and query head h (Vaswani et al. 2017, eq. 1;
 * D2L §10.3.3):
 *
 * @code{.unparsed}
 *   logits[i][j] = scale · Σ_d Q[b,h,i,d] · K[b,g,j,d] + bias[b,h,i,j]
 *   weights[i][j] = exp(logits[i][j] − m_i) / Σ_j' exp(logits[i][j'] − m_i)
 *                   over the visible keys j (0 for masked keys),
 *                   m_i = max over the visible keys
 *   out[b,h,i,:]  = Σ_j weights[i][j] · V[b,g,j,:]
 *   lse[b,h,i]    = m_i + log Σ_j exp(logits[i][j] − m_i)
 * @endcode
 *
 * where g = h / (heads_q / heads_kv) is the key/value head that query head h
 * reads (grouped-query attention, Ainslie et al. 2023; multi-query when
 * heads_kv = 1). Accuracy: exp(x) is computed as exp2f(x · log2 e) with
 * glibc's vector exp2f (faster than its expf), so a weight e^-t carries a
 * relative error of about t · 2^-24 besides float rounding: measured at
 * most 5.3e-7 for t ≤ 10 and 3.9e-6 for t ≤ 87 (expf: 2.2e-7); terms
 * below e^-87 are 0. A query row with no visible key gives zeros in out and
 * weights and -INFINITY in lse, never NaN (as FlashAttention, ggml, ONNX
 * Attention-23 and PyTorch 2.5's F.scaled_dot_product_attention do; earlier
 * PyTorch SDPA and nn.MultiheadAttention give NaN).
 *
 * Causal alignment (ATTN_CAUSAL_*): with len_q queries and len_kv keys,
 * @code{.unparsed}
 *   TOP_LEFT      query i sees keys j <= i                  (PyTorch is_causal,
 *                                                            ONNX without cache)
 *   BOTTOM_RIGHT  query i sees keys j <= i + len_kv − len_q (FlashAttention 2;
 *                                                            the last query sees
 *                                                            every key: decoding)
 * @endcode
 * With BOTTOM_RIGHT and len_q > len_kv, the first len_q − len_kv queries see
 * no key (their outputs are zeros).
 *
 * NaN and Inf. A NaN in a query row reaches only that row's outputs. A NaN in
 * a key or value reaches the rows that can see it, and may reach rows for
 * which it is masked only through the 0·NaN of the P·V product; keys at or
 * beyond a batch row's per-batch valid length are never read at all.
 *
 * Memory. The work is split into blocks of query rows; scratch is
 * block_q × len_kv floats per thread, kept in the context: at most 4 MiB per
 * thread for len_kv ≤ 16384, and 64 × len_kv floats beyond. libattn never
 * allocates a [batch, heads, len_q, len_kv] buffer: only the caller's
 * `weights` array, when passed, holds one.
 * @{
 */

/** Memory layout of q, k, v and out. */
typedef enum attn_layout {
    ATTN_LAYOUT_BHSD = 0, /**< [batch, heads, seq, dim] (the default) */
    ATTN_LAYOUT_BSHD = 1  /**< [batch, seq, heads, dim], i.e. [B, S, H·D]: the
                             output of a projection, read in place through the
                             leading dimension H·D, never copied */
} attn_layout;

/** Which keys a query may see by position (see the table above). */
typedef enum attn_causal {
    ATTN_CAUSAL_NONE         = 0, /**< no positional restriction (the default) */
    ATTN_CAUSAL_TOP_LEFT     = 1, /**< query i sees keys j <= i */
    ATTN_CAUSAL_BOTTOM_RIGHT = 2  /**< query i sees keys j <= i + len_kv - len_q */
} attn_causal;

/** An SDPA operation: shapes and options. Immutable during forward, so one op
 * may serve many threads at once (each with its own context); the setters
 * must not run while a forward call uses the op. */
typedef struct attn_sdpa attn_sdpa;

/** Creates an SDPA operation for
 * @code{.unparsed}
 *   q   [batch, heads_q,  len_q,  dim_qk]
 *   k   [batch, heads_kv, len_kv, dim_qk]
 *   v   [batch, heads_kv, len_kv, dim_v]
 *   out [batch, heads_q,  len_q,  dim_v]
 * @endcode
 * (BHSD; see attn_sdpa_set_layout for BSHD), with layout BHSD, scale
 * 1/sqrt(dim_qk) and no causal restriction.
 * Ranges: batch, len_q, len_kv >= 0; heads_q, heads_kv, dim_qk, dim_v >= 1;
 * heads_q a multiple of heads_kv.
 * Returns ATTN_ERR_NULL_POINTER (op NULL), ATTN_ERR_INVALID_ARGUMENT (a size
 * out of its range), ATTN_ERR_SHAPE_MISMATCH (heads_q % heads_kv != 0),
 * ATTN_ERR_SIZE_OVERFLOW (a tensor's byte count does not fit in size_t),
 * ATTN_ERR_UNSUPPORTED (len_kv, a head dim, or heads × dim above INT_MAX,
 * the largest size the BLAS interface takes), ATTN_ERR_OUT_OF_MEMORY.
 * On failure *op is untouched. Release with attn_sdpa_destroy. Thread-safe. */
ATTN_API attn_status attn_sdpa_create(attn_sdpa **op, int64_t batch, int64_t heads_q,
                                      int64_t heads_kv, int64_t len_q, int64_t len_kv,
                                      int64_t dim_qk, int64_t dim_v);

/** Frees the operation. NULL is a no-op. */
ATTN_API void attn_sdpa_destroy(attn_sdpa *op);

/** Sets the layout of q, k, v and out (weights and lse are always
 * [batch, heads_q, len_q, ...]). Returns ATTN_ERR_NULL_POINTER,
 * ATTN_ERR_INVALID_ARGUMENT (not an attn_layout value). */
ATTN_API attn_status attn_sdpa_set_layout(attn_sdpa *op, attn_layout layout);

/** Sets the factor applied to q·k (default 1/sqrt(dim_qk), Vaswani et al. §3.2.1).
 * Any finite value is accepted. Returns ATTN_ERR_NULL_POINTER,
 * ATTN_ERR_INVALID_ARGUMENT (NaN or ±Inf). */
ATTN_API attn_status attn_sdpa_set_scale(attn_sdpa *op, float scale);

/** Sets the causal alignment. Returns ATTN_ERR_NULL_POINTER,
 * ATTN_ERR_INVALID_ARGUMENT (not an attn_causal value). */
ATTN_API attn_status attn_sdpa_set_causal(attn_sdpa *op, attn_causal causal);

/** Computes attention (formula above).
 * @code{.unparsed}
 *   q       [B, Hq, Lq, Dqk]  (or [B, Lq, Hq, Dqk] with ATTN_LAYOUT_BSHD)
 *   k       [B, Hkv, Lkv, Dqk] (or BSHD)
 *   v       [B, Hkv, Lkv, Dv]  (or BSHD)
 *   mask    NULL (no mask beyond the op's causal setting) or a mask whose
 *           shapes fit this op
 *   out     [B, Hq, Lq, Dv]   (in the layout of q), written completely
 *   weights NULL, or [B, Hq, Lq, Lkv] (always this order): the softmax
 *           probabilities, written completely (0 for masked keys)
 *   lse     NULL, or [B, Hq, Lq] (always this order): natural log of the
 *           softmax denominator, log Σ_j exp(scale·q·k_j + bias_j) over the
 *           visible keys; -INFINITY for a row with no visible key
 * @endcode
 * The inputs must not overlap the outputs.
 * Returns ATTN_ERR_NULL_POINTER (ctx, op, or a non-empty tensor NULL),
 * ATTN_ERR_SHAPE_MISMATCH (mask shapes do not fit the op),
 * ATTN_ERR_INVALID_ARGUMENT (a valid length negative or above len_kv),
 * ATTN_ERR_SIZE_OVERFLOW (the weights tensor's byte count does not fit in
 * size_t), ATTN_ERR_OUT_OF_MEMORY (scratch or threads could not be made).
 * On failure no output byte is written.
 * Thread-safety: concurrent calls may share op and mask, never ctx. */
ATTN_API attn_status attn_sdpa_forward(attn_context *ctx, const attn_sdpa *op,
                                       const float *q, const float *k, const float *v,
                                       const attn_mask *mask, float *out, float *weights,
                                       float *lse);

/** @} */

/* ======================================================================
 * Multi-head attention layer (PyTorch nn.MultiheadAttention numbers)
 * ====================================================================== */
/**
 * @defgroup mha Multi-head attention layer (PyTorch nn.MultiheadAttention numbers)
 *
 * Vaswani et al. 2017 §3.2.2; D2L §10.5. With head_dim = embed_dim / num_heads
 * and g = h / (num_heads / num_kv_heads):
 *
 * @code{.unparsed}
 *   Q = query · Wqᵀ + bq      [batch, len_q,  embed_dim]
 *   K = key   · Wkᵀ + bk      [batch, len_kv, num_kv_heads · head_dim]
 *   V = value · Wvᵀ + bv      [batch, len_kv, num_kv_heads · head_dim]
 *   A_h = softmax(Q_h K_gᵀ / sqrt(head_dim) + masks) V_g   for every head h
 *   out = concat_h(A_h) · Woᵀ + bo
 * @endcode
 *
 * Head h owns columns h·head_dim .. (h+1)·head_dim − 1 of Q and of A (and kv
 * head g those of K and V), exactly as torch.nn.MultiheadAttention splits its
 * in-projection. With num_kv_heads = num_heads and the weights of a PyTorch
 * layer (in_proj_weight split into three blocks of rows Wq, Wk, Wv — or
 * q_proj_weight, k_proj_weight, v_proj_weight when kdim or vdim differ from
 * embed_dim; in_proj_bias split likewise; out_proj as Wo), forward gives the
 * numbers of
 * nn.MultiheadAttention(embed_dim, num_heads, bias=..., kdim, vdim,
 * batch_first=True) to float32 rounding; `weights` is its
 * average_attn_weights=False output. num_kv_heads < num_heads is grouped-query
 * attention (Ainslie et al. 2023).
 *
 * Masks. PyTorch's nn.MultiheadAttention bool masks mean "masked out"
 * (True = do not attend); libattn's mean "attend": pass the logical NOT.
 * key_padding_mask of right-padded sequences is attn_mask_set_kv_lengths with
 * the unpadded lengths; a float attn_mask is attn_mask_set_bias; the heads
 * dimension of bool and bias masks is num_heads. Where PyTorch gives NaN for a
 * query that sees no key, libattn gives zeros.
 *
 * Each projection is one cblas_sgemm over all batch × sequence rows, the
 * heads are read in place from the projected buffers (BSHD), and the output
 * projection is one more sgemm. The projected activations live in the
 * context's workspace, so memory is O(batch · len · embed_dim) plus the
 * attention's O(block × len_kv) per thread.
 * @{
 */

/** Which projection attn_mha_set_weights sets. Values fixed forever. */
typedef enum attn_proj {
    ATTN_PROJ_Q = 0,  /**< weight [embed_dim, embed_dim], bias [embed_dim] */
    ATTN_PROJ_K = 1,  /**< weight [num_kv_heads·head_dim, kdim], bias [num_kv_heads·head_dim] */
    ATTN_PROJ_V = 2,  /**< weight [num_kv_heads·head_dim, vdim], bias [num_kv_heads·head_dim] */
    ATTN_PROJ_O = 3   /**< weight [embed_dim, embed_dim], bias [embed_dim] */
} attn_proj;

/** A multi-head attention layer: its shapes, a copy of its four projections,
 * and its causal setting. Immutable during forward: one layer may serve many
 * threads at once, each with its own context; the setters must not run while
 * a forward call uses the layer. */
typedef struct attn_mha attn_mha;

/** Creates a layer with no weights set (forward is ATTN_ERR_STATE until all
 * four projections are set) and no causal restriction.
 * @code{.unparsed}
 *   embed_dim, num_heads, num_kv_heads, kdim, vdim >= 1;
 *   embed_dim a multiple of num_heads, num_heads a multiple of num_kv_heads;
 *   bias 1: every projection has a bias vector; 0: none has.
 * @endcode
 * Returns ATTN_ERR_NULL_POINTER (mha NULL), ATTN_ERR_INVALID_ARGUMENT (a size
 * below 1, bias not 0 or 1), ATTN_ERR_SHAPE_MISMATCH (embed_dim % num_heads,
 * num_heads % num_kv_heads), ATTN_ERR_SIZE_OVERFLOW (a weight's byte count),
 * ATTN_ERR_UNSUPPORTED (embed_dim, kdim or vdim above INT_MAX),
 * ATTN_ERR_OUT_OF_MEMORY (the weights are allocated here). On failure *mha is
 * untouched. Release with attn_mha_destroy. Thread-safe. */
ATTN_API attn_status attn_mha_create(attn_mha **mha, int64_t embed_dim, int64_t num_heads,
                                     int64_t num_kv_heads, int64_t kdim, int64_t vdim,
                                     int bias);

/** Frees the layer and its weights. NULL is a no-op. */
ATTN_API void attn_mha_destroy(attn_mha *mha);

/** Copies one projection: weight is row-major [out_features, in_features] like
 * torch.nn.Linear.weight (shapes in attn_proj), bias is [out_features].
 * The caller's arrays are not referenced after the call.
 * Returns ATTN_ERR_NULL_POINTER (mha or weight NULL; bias NULL on a layer
 * made with bias = 1), ATTN_ERR_INVALID_ARGUMENT (which not an attn_proj;
 * bias non-NULL on a layer made with bias = 0). On failure the layer keeps
 * its previous weights. Not thread-safe on the same layer. */
ATTN_API attn_status attn_mha_set_weights(attn_mha *mha, attn_proj which, const float *weight,
                                          const float *bias);

/** Sets the causal alignment of the attention (see attn_causal), in addition
 * to any mask. Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT. */
ATTN_API attn_status attn_mha_set_causal(attn_mha *mha, attn_causal causal);

/** Runs the layer (formula above).
 * @code{.unparsed}
 *   query   [batch, len_q, embed_dim]
 *   key     [batch, len_kv, kdim]
 *   value   [batch, len_kv, vdim]   (self-attention: the same pointer thrice)
 *   mask    NULL, or a mask for batch, num_heads, len_q, len_kv
 *   out     [batch, len_q, embed_dim], written completely
 *   weights NULL, or [batch, num_heads, len_q, len_kv]: each head's softmax
 *           probabilities (PyTorch's average_attn_weights=False)
 * @endcode
 * batch, len_q, len_kv >= 0. out must not overlap the inputs.
 * Returns ATTN_ERR_NULL_POINTER (ctx, mha, or a non-empty tensor NULL),
 * ATTN_ERR_STATE (a projection not set; the message names which),
 * ATTN_ERR_INVALID_ARGUMENT (a negative size; a valid length out of range),
 * ATTN_ERR_SHAPE_MISMATCH (the mask), ATTN_ERR_SIZE_OVERFLOW (a tensor's byte
 * count), ATTN_ERR_UNSUPPORTED (batch × len_q, batch × len_kv or len_kv above
 * INT_MAX), ATTN_ERR_OUT_OF_MEMORY (workspace, scratch or threads). On failure
 * no output byte is written. Concurrent calls may share mha and mask, never
 * ctx. */
ATTN_API attn_status attn_mha_forward(attn_context *ctx, const attn_mha *mha, int64_t batch,
                                      int64_t len_q, int64_t len_kv, const float *query,
                                      const float *key, const float *value,
                                      const attn_mask *mask, float *out, float *weights);

/** @} */

/* ======================================================================
 * Additive (Bahdanau) attention
 * ====================================================================== */
/**
 * @defgroup additive Additive (Bahdanau) attention
 *
 * Bahdanau, Cho & Bengio 2015, eq. 6; D2L §10.3.2:
 *
 * @code{.unparsed}
 *   score(q, k) = w_vᵀ tanh(W_q q + W_k k)
 *   out = masked softmax(scores) · V
 * @endcode
 *
 * Queries and keys may have different sizes. The projections W_q q and W_k k
 * are computed once per query and per key (cblas_sgemm); the tanh and the dot
 * with w_v run over `hidden` for every (query, key) pair. Masks apply as in
 * SDPA with a heads dimension of 1; the layer has no causal setting. An op is
 * immutable during forward and may be shared by threads, each with its own
 * context.
 * @{
 */

/** An additive attention op: its sizes and a copy of its weights. */
typedef struct attn_additive attn_additive;

/** Creates an additive attention op with no weights set.
 * query_dim, key_dim, hidden >= 1.
 * Returns ATTN_ERR_NULL_POINTER (op NULL), ATTN_ERR_INVALID_ARGUMENT (a size
 * below 1), ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_UNSUPPORTED (a size above
 * INT_MAX), ATTN_ERR_OUT_OF_MEMORY. On failure *op is untouched. Release with
 * attn_additive_destroy. Thread-safe. */
ATTN_API attn_status attn_additive_create(attn_additive **op, int64_t query_dim,
                                          int64_t key_dim, int64_t hidden);

/** Frees the op. NULL is a no-op. */
ATTN_API void attn_additive_destroy(attn_additive *op);

/** Copies the weights: w_q [hidden, query_dim], w_k [hidden, key_dim] (as
 * torch.nn.Linear(query_dim, hidden, bias=False).weight), w_v [hidden].
 * Returns ATTN_ERR_NULL_POINTER (op or any weight NULL). Not thread-safe on
 * the same op. */
ATTN_API attn_status attn_additive_set_weights(attn_additive *op, const float *w_q,
                                               const float *w_k, const float *w_v);

/** Computes additive attention.
 * @code{.unparsed}
 *   queries [batch, len_q, query_dim]
 *   keys    [batch, len_kv, key_dim]
 *   values  [batch, len_kv, dim_v]
 *   mask    NULL, or a mask for batch, 1 head, len_q, len_kv
 *   out     [batch, len_q, dim_v], written completely
 *   weights NULL or [batch, len_q, len_kv]
 * @endcode
 * batch, len_q, len_kv >= 0; dim_v >= 1.
 * Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_STATE (weights not set),
 * ATTN_ERR_INVALID_ARGUMENT (a size out of range, a valid length out of
 * range), ATTN_ERR_SHAPE_MISMATCH (the mask), ATTN_ERR_SIZE_OVERFLOW,
 * ATTN_ERR_UNSUPPORTED (dim_v, len_kv, batch × len_q or batch × len_kv above
 * INT_MAX), ATTN_ERR_OUT_OF_MEMORY. On failure no output byte is written. */
ATTN_API attn_status attn_additive_forward(attn_context *ctx, const attn_additive *op,
                                           int64_t batch, int64_t len_q, int64_t len_kv,
                                           int64_t dim_v, const float *queries,
                                           const float *keys, const float *values,
                                           const attn_mask *mask, float *out, float *weights);

/** @} */

/* ======================================================================
 * Nadaraya–Watson kernel regression
 * ====================================================================== */
/**
 * @defgroup nadaraya_watson Nadaraya–Watson kernel regression
 *
 * Nadaraya 1964, Watson 1964; D2L §10.2: attention pooling with a Gaussian
 * kernel over scalar queries x and keys x_i,
 *
 * @code{.unparsed}
 *   score(x, x_i) = −((x − x_i) · w)² / 2
 *   f(x) = Σ_i softmax_i(score(x, x_i)) · y_i
 * @endcode
 *
 * w = 1 is the non-parametric form; a learned w (D2L's parametric form)
 * narrows (|w| > 1) or widens the kernel.
 * @{
 */

/** Nadaraya–Watson kernel regression (formula above).
 * @code{.unparsed}
 *   queries [n_queries], keys [n_keys], values [n_keys]
 *   out     [n_queries], written completely
 *   weights NULL or [n_queries, n_keys]
 * @endcode
 * n_queries, n_keys >= 0; with n_keys = 0 out is all zeros. The row maximum is
 * subtracted, so queries far from every key do not underflow to NaN.
 * Returns ATTN_ERR_NULL_POINTER (ctx, or a non-empty array NULL),
 * ATTN_ERR_INVALID_ARGUMENT (a negative count, w not finite),
 * ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_UNSUPPORTED (n_keys above INT_MAX),
 * ATTN_ERR_OUT_OF_MEMORY. On failure no output byte is written. */
ATTN_API attn_status attn_nadaraya_watson(attn_context *ctx, int64_t n_queries, int64_t n_keys,
                                          const float *queries, const float *keys,
                                          const float *values, float w, float *out,
                                          float *weights);

/** @} */

/* ======================================================================
 * Positional encoding
 * ====================================================================== */
/**
 * @defgroup positional Positional encoding
 *
 * The sinusoidal encoding of Vaswani et al. 2017 §3.5 (D2L §10.6.3):
 *
 * @code{.unparsed}
 *   P[p, 2i]     = sin(pos / base^(2i / dim))
 *   P[p, 2i + 1] = cos(pos / base^(2i / dim)),   pos = start + p
 * @endcode
 *
 * for p = 0 .. len − 1 and i = 0 .. dim/2 − 1 (base = 10000 in the paper).
 * The angle is computed in double precision, so positions up to 10^6 and
 * beyond keep float32 accuracy (a float32 angle loses it past ~10^4).
 * @{
 */

/** Writes the sinusoidal positional encoding (formula above) for positions
 * start .. start + len − 1.
 * @code{.unparsed}
 *   out [len, dim], written completely
 * @endcode
 * len >= 0; dim >= 2 and even; start >= 0 with start + len within int64_t;
 * base finite and > 1.
 * Returns ATTN_ERR_NULL_POINTER (out NULL with len > 0),
 * ATTN_ERR_INVALID_ARGUMENT (an odd or non-positive dim, a negative len or
 * start, start + len overflowing, a base that is not finite and > 1),
 * ATTN_ERR_SIZE_OVERFLOW (len × dim floats). Thread-safe; no context
 * needed. */
ATTN_API attn_status attn_positional_encoding(float *out, int64_t len, int64_t dim, int64_t start,
                                              float base);

/** @} */

/* ======================================================================
 * v1.1: runtime information
 * ====================================================================== */
/**
 * @defgroup runtime_info Runtime information (v1.1)
 *
 * What this process's libattn runs on: the BLAS library, the kernels it
 * picked for this CPU, its threads, the CPU's usable vector instructions and
 * libattn's default thread count, with one line of advice when the setup is
 * known to be slow. For logs, bug reports and `attn info`. Added in 1.1.0:
 * check attn_version_number() >= 10100 before calling it from a program that
 * may run with an older libattn.so.1.
 * @{
 */

/** Writes a description of this process's setup into buf, snprintf-style.
 *
 * The text is one "key: value" line per fact, each ending in '\n', in this
 * order (more keys may be added in later versions, anywhere; a reader looks
 * keys up by name):
 * @code{.unparsed}
 *   version:        libattn's version, as attn_version_string()
 *   blas:           the BLAS library and its version as it describes itself
 *                   (OpenBLAS: openblas_get_config(), e.g. "OpenBLAS 0.3.21
 *                   NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Cooperlake
 *                   MAX_THREADS=64"), or "unknown" for another CBLAS
 *   blas_kernel:    the kernel set OpenBLAS runs (openblas_get_corename(),
 *                   e.g. "Haswell"; the value OPENBLAS_CORETYPE takes), or
 *                   "unknown"
 *   blas_threads:   the BLAS's thread count per call (1 when unknown)
 *   blas_threading: pthreads, openmp, serial or unknown
 *   blas_copy:      where libattn's own GEMMs run when the BLAS above is
 *                   OpenBLAS's pthreads build on several threads: the path
 *                   of libattn's private, serially run copy of OpenBLAS's
 *                   OpenMP build and what it is, or "none (why)" / "off
 *                   (ATTN_BLAS_COPY=0)" (attn_context_set_num_threads)
 *   cpu:            vendor, family and model as Linux shows them, then the
 *                   vector extensions this process may use (the CPU has them
 *                   by cpuid and the OS saves their registers by xgetbv), in
 *                   Linux's names: sse4_2 avx avx2 fma avx512f avx512bw
 *                   avx512vl avx512dq avx512cd avx512_bf16 avx512_fp16
 *                   amx_tile amx_bf16; e.g. "AuthenticAMD family 25 model 17,
 *                   sse4_2 avx avx2 fma avx512f ...". "unknown" off x86-64.
 *   threads:        the thread count a context left at its default uses
 *                   (attn_context_set_num_threads with n = 0)
 *   schedule:       how such a context shares the cores with the BLAS
 *                   (attn_context_set_num_threads): pool (libattn's threads,
 *                   one BLAS thread each, or the copy), openmp (an OpenMP parallel region,
 *                   the BLAS serial inside) or blas-threads (the GEMMs from
 *                   the calling thread, threaded by the BLAS)
 *   advice:         empty (the line is then "advice:"), or one sentence when
 *                   the setup is known to be slow, naming the environment
 *                   variable and value that fix it. The value is chosen from
 *                   the CPU's features and never needs an instruction the CPU
 *                   lacks: e.g. OpenBLAS 0.3.21 runs its generic Prescott
 *                   kernels on Intel CPUs it does not know, where
 *                   OPENBLAS_CORETYPE=Cooperlake runs sgemm ~6x faster.
 * @endcode
 *
 * Writes at most size bytes including the terminating NUL: a text longer
 * than size - 1 is cut there and still NUL-terminated. buf may be NULL when
 * size is 0. Returns the length of the whole text (without the NUL), whatever
 * size is, so `attn_runtime_info(NULL, 0) + 1` is the buffer size needed
 * (500 to 1000 bytes today, the most with both advice sentences; a
 * 2048-byte buffer is ample).
 *
 * Never fails; allocates nothing of its own; buf is the caller's. Like the
 * first computing call, it loads libattn's copy of OpenBLAS when the
 * blas_copy line says it is in use. Thread-safe: any number of threads may
 * call it at once. It only reads (cpuid, xgetbv and the BLAS's getters): it
 * never changes any process-global state of the BLAS, such as its thread
 * count or kernel. */
ATTN_API size_t attn_runtime_info(char *buf, size_t size);

/** @} */

/* ======================================================================
 * v1.1: training
 * ====================================================================== */
/**
 * @defgroup training Training: gradients (v1.1)
 *
 * The backward passes of the attention calls, so that a program can train
 * with libattn. Conventions (the same for every gradient call): every
 * gradient output is overwritten completely, never accumulated into; an
 * output passed as NULL is not computed; a query row with no visible key
 * gets zero gradients, never NaN. Added in 1.1.0: check
 * attn_version_number() >= 10100 before calling them from a program that
 * may run with an older libattn.so.1.
 * @{
 */

/** What a layer's training forward keeps for its backward
 * (attn_activations_create). */
typedef struct attn_activations attn_activations;

/** Sets dropout on the attention weights of every later attn_sdpa_forward
 * and attn_sdpa_backward with this op: after the softmax, each weight is
 * kept with probability 1 − p and then scaled by 1 / (1 − p), or set to 0
 * (Srivastava et al. 2014; PyTorch's dropout_p of
 * scaled_dot_product_attention and nn.MultiheadAttention). The weights that
 * attn_sdpa_forward writes are these dropped, rescaled ones (the matrix
 * that multiplies v, as nn.MultiheadAttention returns them); lse is the
 * softmax's, before dropout. p = 0 (the default) disables dropout: set it
 * for inference.
 *
 * The keep decision of weight (b, h, i, j) is a pure function of (seed, b,
 * h, i, j): Philox 4x32-10 (Salmon et al. 2011, "Parallel Random Numbers:
 * As Easy as 1, 2, 3") with key (seed mod 2^32, seed >> 32) and counter
 * (j / 4, i, b·heads_q + h, 0), whose word j mod 4 keeps the weight when it
 * is >= round(p · 2^32). So forward and backward agree without storing a
 * mask, the thread count never changes it, and a program draws a fresh
 * mask per training step by passing a new seed (e.g. seed = step).
 * attn_dropout_keep_mask writes the decisions out.
 *
 * Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT (p NaN or outside
 * [0, 1)). A forward or backward with p > 0 on shapes whose batch·heads_q,
 * len_q or len_kv / 4 reach 2^32 returns ATTN_ERR_UNSUPPORTED.
 * Not thread-safe with calls that use the op at the same time. */
ATTN_API attn_status attn_sdpa_set_dropout(attn_sdpa *op, float p, uint64_t seed);

/** Writes the keep mask that attn_sdpa_forward and attn_sdpa_backward use
 * with this op's dropout setting: keep [B, Hq, Lq, Lkv] (always this order),
 * 1 where the weight is kept, 0 where it is dropped; all 1 when the op's p
 * is 0. It describes dropout only, not the attention masks. For tests and
 * for programs that check or store the mask.
 * Returns ATTN_ERR_NULL_POINTER (op, or keep with B·Hq·Lq·Lkv > 0),
 * ATTN_ERR_SIZE_OVERFLOW (the mask's size does not fit in size_t),
 * ATTN_ERR_UNSUPPORTED (as attn_sdpa_set_dropout). Thread-safe for a const
 * op. */
ATTN_API attn_status attn_dropout_keep_mask(const attn_sdpa *op, uint8_t *keep);

/** Gradients of attn_sdpa_forward: given d_out = ∂L/∂out, writes
 * d_q = ∂L/∂q, d_k = ∂L/∂k and d_v = ∂L/∂v for the forward made with the
 * same op (shapes, layout, scale, causal, dropout p and seed) and the same
 * mask. With dropout, the forward's keep mask Z is regenerated: dV uses
 * the dropped weights, and dP is multiplied by Z before dS.
 *
 * Formula: the FlashAttention-2 backward (Dao 2023, "FlashAttention-2:
 * Faster Attention with Better Parallelism and Work Partitioning",
 * Algorithm 2). With P the forward's weights, recomputed block by block
 * from the logits and lse as P = exp(scale·q·kᵀ + bias − lse):
 * @code{.unparsed}
 *   dV = Pᵀ dO,  dP = dO Vᵀ,  D_i = Σ_c dO[i,c] · O[i,c],
 *   dS = P ∘ (dP − D),  dQ = scale · dS K,  dK = scale · dSᵀ Q
 * @endcode
 * (with dropout: dV = (P ∘ Z)ᵀ dO and dP = (dO Vᵀ) ∘ Z, Z = keep / (1 − p)).
 * Shapes (layout of the op, as attn_sdpa_forward):
 * @code{.unparsed}
 *   q, k, v  the forward's inputs
 *   mask     the forward's mask (NULL if it had none); its arrays must hold
 *            the same values
 *   out      [B, Hq, Lq, Dv]  the forward's out (layout of q)
 *   lse      [B, Hq, Lq]      the forward's lse (always this order), required;
 *            -INFINITY or +INFINITY mark a row with no visible key
 *   d_out    [B, Hq, Lq, Dv]  ∂L/∂out (layout of q)
 *   d_q      NULL or [B, Hq, Lq, Dqk]  (layout of q), written completely
 *   d_k      NULL or [B, Hkv, Lkv, Dqk] (layout of k), written completely;
 *            with GQA/MQA the sum over the query heads of each group
 *   d_v      NULL or [B, Hkv, Lkv, Dv]  (layout of v), likewise
 * @endcode
 * Keys the forward never read (at or beyond a valid length, past the causal
 * limit of every row of a block) are not read here either, and get zero
 * gradients. A masked key's NaN value never reaches d_q or d_k (its weight
 * 0 makes its dS exactly 0); a masked key's NaN in k can reach d_q through
 * the 0·NaN of the dS·K product when the key is masked by a boolean mask or
 * a -INFINITY bias, as in the forward's P·V.
 *
 * Results are bitwise identical for any number of libattn threads (for a
 * given number of BLAS threads per GEMM): each (batch row, kv head) is
 * reduced in one fixed order. Extra memory: 2 × block × Lkv floats per
 * thread (3 × with a softcap, for its 1 − tanh² factors), where a block of query rows holds at most 4 MiB of logits (256
 * rows up to Lkv = 4096, down to 64 from Lkv > 8192; 64 with causal): at
 * most ~8 MiB per thread, never Lq × Lkv (measured at Lq = Lkv = 16384, 8
 * heads, d 64: 11.9 MiB beyond the inputs and gradients on 2 threads).
 *
 * Returns ATTN_ERR_NULL_POINTER (ctx, op, or a non-empty q, k, v, out, lse
 * or d_out NULL), ATTN_ERR_SHAPE_MISMATCH (mask shapes do not fit the op),
 * ATTN_ERR_INVALID_ARGUMENT (a valid length negative or above len_kv; a
 * gradient output overlapping an input or another gradient output),
 * ATTN_ERR_OUT_OF_MEMORY (scratch or threads could not be made). On failure
 * no output byte is written.
 * Thread-safety: concurrent calls may share op and mask, never ctx. */
ATTN_API attn_status attn_sdpa_backward(attn_context *ctx, const attn_sdpa *op,
                                        const float *q, const float *k, const float *v,
                                        const attn_mask *mask, const float *out,
                                        const float *lse, const float *d_out, float *d_q,
                                        float *d_k, float *d_v);

/** What a layer's training forward keeps for its backward (an opaque,
 * growable buffer owned by the caller): copies of the inputs, the
 * projections, the attention output and its lse, the shapes, which layer
 * filled it and the mask pointer. O(batch · len · embed_dim) floats, never
 * len_q × len_kv. One object serves one forward/backward pair at a time: a
 * training forward overwrites what the last one kept. It grows as needed
 * and keeps its memory for the next step.
 * Returns ATTN_ERR_NULL_POINTER (act NULL), ATTN_ERR_OUT_OF_MEMORY.
 * Thread-safety: one thread at a time per object. */
ATTN_API attn_status attn_activations_create(attn_activations **act);

/** Frees act and what it holds. NULL is a no-op. */
ATTN_API void attn_activations_destroy(attn_activations *act);

/** The number of floats in the layer's flat parameter vector (see
 * attn_mha_get_params): 2·E² + Hkv·hd·(kdim + vdim), plus E + 2·Hkv·hd + E
 * with bias. Returns ATTN_ERR_NULL_POINTER (mha or count). Thread-safe for
 * a const mha. */
ATTN_API attn_status attn_mha_param_count(const attn_mha *mha, int64_t *count);

/** Copies the layer's parameters into params [count], in the order of
 * nn.MultiheadAttention's named_parameters():
 * @code{.unparsed}
 *   Wq [E, E], Wk [Hkv·hd, kdim], Wv [Hkv·hd, vdim]   in_proj_weight's three row
 *                       blocks when kdim = vdim = E, else q/k/v_proj_weight
 *   bq [E], bk [Hkv·hd], bv [Hkv·hd]                  in_proj_bias (bias = 1 only)
 *   Wo [E, E]                                          out_proj.weight
 *   bo [E]                                             out_proj.bias (bias = 1 only)
 * @endcode
 * (E = embed_dim, hd = head_dim, Hkv = num_kv_heads; with Hkv = num_heads a
 * state_dict maps 1:1, in this order). So an optimizer is one loop over one
 * array, and attn_mha_backward's d_params has the same layout.
 * Returns ATTN_ERR_NULL_POINTER (mha or params), ATTN_ERR_STATE (a
 * projection not set yet). Thread-safe for a const mha. */
ATTN_API attn_status attn_mha_get_params(const attn_mha *mha, float *params);

/** Copies params [count] (the layout of attn_mha_get_params) into the
 * layer, setting all four projections; activations filled before are then
 * stale (attn_mha_backward returns ATTN_ERR_STATE for them). Returns
 * ATTN_ERR_NULL_POINTER. Not thread-safe with other calls on the same mha. */
ATTN_API attn_status attn_mha_set_params(attn_mha *mha, const float *params);

/** Dropout on the layer's attention weights in attn_mha_forward_train (and
 * so in attn_mha_backward), as nn.MultiheadAttention's dropout in training
 * mode: p in [0, 1), the mask from seed as attn_sdpa_set_dropout describes
 * (with b, h the batch row and head of the layer's attention). Never
 * applied by attn_mha_forward, the inference call: the layer cannot forget
 * eval mode. Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT (p
 * NaN or outside [0, 1)). */
ATTN_API attn_status attn_mha_set_dropout(attn_mha *mha, float p, uint64_t seed);

/** attn_mha_forward for training: the same out and weights (with dropout if
 * set), and fills act with what attn_mha_backward needs. Statuses as
 * attn_mha_forward, plus ATTN_ERR_NULL_POINTER (act),
 * ATTN_ERR_UNSUPPORTED (dropout set and batch · num_heads, len_q or
 * len_kv / 4 reach 2^32) and ATTN_ERR_OUT_OF_MEMORY when act cannot grow
 * (act is then empty). act keeps a pointer to mask (caller memory) for the
 * backward. Thread-safety: concurrent calls may share mha and mask, never
 * ctx or act. */
ATTN_API attn_status attn_mha_forward_train(attn_context *ctx, const attn_mha *mha,
                                            int64_t batch, int64_t len_q, int64_t len_kv,
                                            const float *query, const float *key,
                                            const float *value, const attn_mask *mask,
                                            float *out, float *weights, attn_activations *act);

/** Gradients of the last attn_mha_forward_train that filled act, given
 * d_out = ∂L/∂out [batch, len_q, embed_dim]: d_query [batch, len_q,
 * embed_dim], d_key [batch, len_kv, kdim], d_value [batch, len_kv, vdim]
 * and d_params [count] (the layout of attn_mha_get_params), each NULL or
 * overwritten. The mask that forward used must still hold the same values;
 * the layer's parameters must not have changed since (ATTN_ERR_STATE).
 * Self-attention: when two or three of d_query, d_key, d_value are the same
 * pointer, that buffer receives their sum (the gradient with respect to the
 * one input passed as query, key and value).
 * Formula: the chain rule through out = A·Woᵀ + bo, the FlashAttention-2
 * backward of attn_sdpa_backward for A, and the three input projections.
 * Returns ATTN_ERR_NULL_POINTER (ctx, mha, act, a non-empty d_out),
 * ATTN_ERR_STATE (act empty, filled by another layer, or the layer's
 * parameters set since), ATTN_ERR_INVALID_ARGUMENT (an output overlapping
 * d_out or, unless equal as above, another output), ATTN_ERR_OUT_OF_MEMORY.
 * Bitwise the same for any number of libattn threads (for a given number of
 * BLAS threads per GEMM). act is only read: the backward may be repeated.
 * Thread-safety: concurrent calls may share mha and act, never ctx. */
ATTN_API attn_status attn_mha_backward(attn_context *ctx, const attn_mha *mha,
                                       const attn_activations *act, const float *d_out,
                                       float *d_query, float *d_key, float *d_value,
                                       float *d_params);

/** The number of floats in the additive layer's flat parameter vector:
 * hidden · (query_dim + key_dim + 1). Returns ATTN_ERR_NULL_POINTER (op or
 * count). Thread-safe for a const op. */
ATTN_API attn_status attn_additive_param_count(const attn_additive *op, int64_t *count);

/** Copies the parameters into params [count] in the order of
 * attn_additive_set_weights: W_q [hidden, query_dim], W_k [hidden, key_dim],
 * w_v [hidden]. (D2L's AdditiveAttention module lists W_k first in its
 * state_dict, as W_k.weight, W_q.weight, w_v.weight with w_v as a
 * [1, hidden] matrix: map a state_dict by name, not by position.)
 * Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_STATE (weights not set yet).
 * Thread-safe for a const op. */
ATTN_API attn_status attn_additive_get_params(const attn_additive *op, float *params);

/** Copies params [count] (the layout of attn_additive_get_params) into the
 * op; activations filled before are then stale (attn_additive_backward
 * returns ATTN_ERR_STATE for them). Returns ATTN_ERR_NULL_POINTER. Not
 * thread-safe with other calls on the same op. */
ATTN_API attn_status attn_additive_set_params(attn_additive *op, const float *params);

/** attn_additive_forward for training: the same out and weights, and fills
 * act for attn_additive_backward (copies of the inputs, the projected
 * queries and keys, and out; act keeps a pointer to mask). Statuses as
 * attn_additive_forward, plus ATTN_ERR_NULL_POINTER (act),
 * ATTN_ERR_OUT_OF_MEMORY when act cannot grow (act is then empty).
 * Thread-safety: concurrent calls may share op and mask, never ctx or act. */
ATTN_API attn_status attn_additive_forward_train(attn_context *ctx, const attn_additive *op,
                                                 int64_t batch, int64_t len_q, int64_t len_kv,
                                                 int64_t dim_v, const float *queries,
                                                 const float *keys, const float *values,
                                                 const attn_mask *mask, float *out,
                                                 float *weights, attn_activations *act);

/** Gradients of the last attn_additive_forward_train that filled act, given
 * d_out [batch, len_q, dim_v]: d_queries [batch, len_q, query_dim], d_keys
 * [batch, len_kv, key_dim], d_values [batch, len_kv, dim_v], d_params
 * [count]; each NULL or overwritten. With t = tanh(W_q q_i + W_k k_j) and
 * dS_ij = P_ij (d_out_i · v_j − d_out_i · out_i) (the softmax Jacobian):
 * @code{.unparsed}
 *   ∂/∂(W_q q_i) = Σ_j dS_ij · w_v ∘ (1 − t²),  ∂/∂(W_k k_j) = Σ_i (same),
 *   ∂/∂w_v = Σ_ij dS_ij · t,  d_values_j = Σ_i P_ij d_out_i,
 * @endcode
 * then through the two projections (D2L §10.3.2; Bahdanau et al. 2015). As
 * for attn_mha_backward, outputs of the same shape passed as the same
 * pointer receive their sum (keys and values are often one tensor in D2L),
 * and a mismatched act is ATTN_ERR_STATE. Returns ATTN_ERR_NULL_POINTER,
 * ATTN_ERR_STATE, ATTN_ERR_INVALID_ARGUMENT (overlapping outputs),
 * ATTN_ERR_OUT_OF_MEMORY. The same bits for any number of threads. act is
 * only read. Thread-safety: concurrent calls may share op and act, never
 * ctx. */
ATTN_API attn_status attn_additive_backward(attn_context *ctx, const attn_additive *op,
                                            const attn_activations *act, const float *d_out,
                                            float *d_queries, float *d_keys, float *d_values,
                                            float *d_params);

/** Gradients of attn_nadaraya_watson: given d_out = ∂L/∂out [n_queries],
 * writes ∂L/∂queries, ∂L/∂keys, ∂L/∂values and ∂L/∂w, the kernel width of
 * D2L §10.2.4's parametric regression, for the same queries, keys, values
 * and w. With a_ij the weights and out_i = Σ_j a_ij v_j (D2L eq. 10.2.6):
 * @code{.unparsed}
 *   dS_ij       = a_ij · d_out_i · (v_j − out_i)          (softmax Jacobian)
 *   d_queries_i = −Σ_j dS_ij · (x_i − k_j) · w²
 *   d_keys_j    =  Σ_i dS_ij · (x_i − k_j) · w²
 *   d_values_j  =  Σ_i a_ij · d_out_i
 *   d_w         = −Σ_ij dS_ij · (x_i − k_j)² · w
 * @endcode
 * d_queries [n_queries], d_keys [n_keys], d_values [n_keys] and d_w (one
 * float) may each be NULL (not computed); each is overwritten. With
 * n_keys = 0 every gradient is 0. Sums run over the queries in order on the
 * calling thread, in double, rounded once to float: the same bits every
 * call.
 * Returns ATTN_ERR_NULL_POINTER (ctx, or a non-empty queries, keys, values
 * or d_out NULL), ATTN_ERR_INVALID_ARGUMENT (a negative count, w not finite,
 * an output overlapping an input or another output), ATTN_ERR_SIZE_OVERFLOW,
 * ATTN_ERR_UNSUPPORTED (n_keys above INT_MAX), ATTN_ERR_OUT_OF_MEMORY. On
 * failure no output byte is written. Thread-safety: as attn_nadaraya_watson
 * (one context per thread). */
ATTN_API attn_status attn_nadaraya_watson_backward(attn_context *ctx, int64_t n_queries,
                                                   int64_t n_keys, const float *queries,
                                                   const float *keys, const float *values,
                                                   float w, const float *d_out,
                                                   float *d_queries, float *d_keys,
                                                   float *d_values, float *d_w);

/** @} */

/**
 * @defgroup encoder Transformer encoder layer (PyTorch nn.TransformerEncoderLayer numbers, v1.1)
 *
 * One layer of the Transformer's encoder (Vaswani et al. 2017 §3.1; D2L
 * §10.7.2-10.7.4): multi-head self-attention and a position-wise feed-forward
 * network, each wrapped in a residual connection and a layer normalisation
 * ("add & norm"). With x = src [batch, len, d_model], SA the self-attention
 * of the multi-head layer above (num_heads = nhead, bias, no GQA), LN the
 * layer normalisation of Ba et al. 2016 over d_model (biased variance, eps
 * layer_norm_eps, then weight and bias) and act ReLU or the exact GELU
 * x·Φ(x) = x/2·(1 + erf(x/√2)) (Hendrycks and Gimpel 2016):
 *
 * @code{.unparsed}
 *   FF(y) = linear2(drop(act(linear1(y))))        linear1: d_model → dim_feedforward
 *   post-norm (norm_first = 0; Vaswani, D2L, UvA tutorial 6):
 *     h   = LN1(x + drop1(SA(x)))
 *     out = LN2(h + drop2(FF(h)))
 *   pre-norm (norm_first = 1; GPT-2, Xiong et al. 2020):
 *     h   = x + drop1(SA(LN1(x)))
 *     out = h + drop2(FF(LN2(h)))
 * @endcode
 *
 * With the parameters of a PyTorch layer (see attn_encoder_layer_get_params)
 * the numbers are those of nn.TransformerEncoderLayer(d_model, nhead,
 * dim_feedforward, dropout, activation, layer_norm_eps, batch_first=True,
 * norm_first) of PyTorch 1.13 to float32 rounding, and the gradients those of
 * its autograd. Masks are the multi-head layer's (attn_mha_forward): PyTorch's
 * src_key_padding_mask of right-padded sequences is attn_mask_set_kv_lengths,
 * its bool src_mask is the logical NOT given to attn_mask_set_bool, a float
 * src_mask is attn_mask_set_bias, and its causal triangle is
 * attn_encoder_layer_set_causal(ATTN_CAUSAL_TOP_LEFT). A query that sees no
 * key gets zeros from the attention (PyTorch: NaN), then the rest of the
 * layer as usual.
 *
 * Every product goes through cblas_sgemm, over blocks of 256 of the
 * batch × len rows (the attention's as in attn_mha_forward); layer
 * normalisation, the activation, dropout and
 * the residual additions are vectorised loops over the same rows on the
 * context's threads. Memory: O(batch · len · (d_model + dim_feedforward))
 * floats in the context, plus the attention's O(block × len) per thread.
 * Added in 1.1.0.
 * @{
 */

/** The feed-forward activation of attn_encoder_layer_create. Values fixed
 * forever. */
typedef enum attn_activation {
    ATTN_ACTIVATION_RELU = 0, /**< max(x, 0), PyTorch's "relu" (its default) */
    ATTN_ACTIVATION_GELU = 1  /**< x·Φ(x) with the exact erf, PyTorch's "gelu" (not tanh's) */
} attn_activation;

/** A Transformer encoder layer: its shapes, options and parameters. */
typedef struct attn_encoder_layer attn_encoder_layer;

/** Creates a layer of d_model features, nhead heads (head_dim = d_model /
 * nhead) and a feed-forward of dim_feedforward hidden units, with the
 * activation, norm_first (0 = post-norm, 1 = pre-norm) and the layer norms'
 * eps (PyTorch's default 1e-5). Its parameters are unset (forward is
 * ATTN_ERR_STATE) until attn_encoder_layer_set_params; there is no causal
 * mask and no dropout. *layer is written only on success.
 * Returns ATTN_ERR_NULL_POINTER (layer), ATTN_ERR_INVALID_ARGUMENT (d_model,
 * nhead or dim_feedforward < 1; an unknown activation; norm_first not 0 or
 * 1; layer_norm_eps not finite or <= 0), ATTN_ERR_SHAPE_MISMATCH (d_model
 * not a multiple of nhead), ATTN_ERR_SIZE_OVERFLOW (the parameters' bytes
 * do not fit in size_t: so for any d_model above INT_MAX),
 * ATTN_ERR_UNSUPPORTED (dim_feedforward above INT_MAX), ATTN_ERR_OUT_OF_MEMORY.
 * Release with attn_encoder_layer_destroy. Thread-safe. */
ATTN_API attn_status attn_encoder_layer_create(attn_encoder_layer **layer, int64_t d_model,
                                               int64_t nhead, int64_t dim_feedforward,
                                               attn_activation activation, int norm_first,
                                               float layer_norm_eps);

/** Frees the layer. NULL is a no-op. */
ATTN_API void attn_encoder_layer_destroy(attn_encoder_layer *layer);

/** The causal mask of the self-attention (ATTN_CAUSAL_TOP_LEFT: position i
 * sees positions j <= i, PyTorch's generate_square_subsequent_mask; with
 * len_q = len_kv the two alignments are the same), applied with any mask
 * given to forward. Activations filled before are then stale. Returns
 * ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT (not an attn_causal).
 * Not thread-safe with other calls on the same layer. */
ATTN_API attn_status attn_encoder_layer_set_causal(attn_encoder_layer *layer,
                                                   attn_causal causal);

/** Dropout of the training forward (attn_encoder_layer_forward with act),
 * where PyTorch's layer applies it in training mode: on the attention
 * weights, after the feed-forward activation, and on each block's output
 * before its residual addition (dropout1, dropout2). Each kept value is
 * scaled by 1 / (1 − p). p in [0, 1); a new layer has p = 0 (PyTorch's
 * module default is 0.1: a caller porting a model sets it). Inference
 * (act NULL) never drops.
 *
 * The keep decisions are pure functions of seed, as for
 * attn_sdpa_set_dropout: the attention weights' exactly as there; element
 * (r, c) of the activation's output [batch·len, dim_feedforward] and of
 * each block's output [batch·len, d_model] (r = b·len + i) from the same
 * Philox 4x32-10 and key with counter (c / 4, r mod 2^32, r >> 32, site),
 * word c mod 4, site 1 for the activation, 2 for block 1 and 3 for block 2
 * (the attention's counters end in 0, so no two sites share a draw). So
 * backward regenerates the masks and threads do not change them; pass a
 * new seed per step.
 * Activations filled before are then stale. Returns ATTN_ERR_NULL_POINTER,
 * ATTN_ERR_INVALID_ARGUMENT (p NaN or outside [0, 1)). Not thread-safe with
 * other calls on the same layer. */
ATTN_API attn_status attn_encoder_layer_set_dropout(attn_encoder_layer *layer, float p,
                                                    uint64_t seed);

/** The number of floats of the layer's flat parameter vector:
 * 4·d² + 4·d (attention) + 2·d·ff + ff + d (feed-forward) + 4·d (norms),
 * d = d_model, ff = dim_feedforward. Returns ATTN_ERR_NULL_POINTER (layer or
 * count). Thread-safe for a const layer. */
ATTN_API attn_status attn_encoder_layer_param_count(const attn_encoder_layer *layer,
                                                    int64_t *count);

/** Copies the parameters into params [count] in the order of
 * nn.TransformerEncoderLayer's named_parameters() (so a state_dict maps 1:1,
 * in order):
 * @code{.unparsed}
 *   self_attn.in_proj_weight [3d, d]   Wq, Wk, Wv (attn_mha_get_params' first blocks)
 *   self_attn.in_proj_bias [3d]        bq, bk, bv
 *   self_attn.out_proj.weight [d, d]
 *   self_attn.out_proj.bias [d]
 *   linear1.weight [ff, d], linear1.bias [ff]
 *   linear2.weight [d, ff], linear2.bias [d]
 *   norm1.weight [d], norm1.bias [d]
 *   norm2.weight [d], norm2.bias [d]
 * @endcode
 * (the first 4·d² + 4·d floats are the layout of attn_mha_get_params).
 * attn_encoder_layer_backward's d_params has the same layout.
 * Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_STATE (parameters not set yet).
 * Thread-safe for a const layer. */
ATTN_API attn_status attn_encoder_layer_get_params(const attn_encoder_layer *layer,
                                                   float *params);

/** Copies params [count] (the layout of attn_encoder_layer_get_params) into
 * the layer. Activations filled before are then stale. Returns
 * ATTN_ERR_NULL_POINTER. Not thread-safe with other calls on the same
 * layer. */
ATTN_API attn_status attn_encoder_layer_set_params(attn_encoder_layer *layer,
                                                   const float *params);

/** out [batch, len, d_model] = the layer applied to src [batch, len,
 * d_model], with mask (NULL or as for attn_mha_forward with heads = nhead,
 * len_q = len_kv = len) and the layer's causal mask. out may be the same
 * pointer as src (in place); otherwise they must not overlap.
 *
 * act NULL is inference (no dropout). With act (attn_activations_create),
 * this is the training forward: dropout as set, and act keeps what
 * attn_encoder_layer_backward needs (the input, the attention's tape, the
 * normalisations' inputs and statistics, the feed-forward's hidden
 * activations: batch · len · (8·d_model + 2·dim_feedforward + nhead + 6)
 * floats) and a pointer to mask, which must stay valid and unchanged until
 * the backward.
 *
 * Returns ATTN_ERR_NULL_POINTER (ctx, layer, or a non-empty src or out),
 * ATTN_ERR_INVALID_ARGUMENT (batch or len negative, a valid length out of
 * range, out overlapping src without being it), ATTN_ERR_SHAPE_MISMATCH
 * (mask shapes), ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_UNSUPPORTED (batch·len
 * above INT_MAX; dropout set and batch·nhead, len / 4 reach 2^32),
 * ATTN_ERR_STATE (parameters not set), ATTN_ERR_OUT_OF_MEMORY (act is then
 * empty). On failure out is untouched. Bitwise the same for any number of
 * libattn threads (for a given number of BLAS threads per GEMM).
 * Thread-safety: concurrent calls may share layer and mask, never ctx or
 * act. */
ATTN_API attn_status attn_encoder_layer_forward(attn_context *ctx,
                                                const attn_encoder_layer *layer, int64_t batch,
                                                int64_t len, const float *src,
                                                const attn_mask *mask, float *out,
                                                attn_activations *act);

/** Gradients of the last training attn_encoder_layer_forward that filled
 * act, given d_out = ∂L/∂out [batch, len, d_model]: d_src [batch, len,
 * d_model] and d_params [count] (the layout of
 * attn_encoder_layer_get_params), each NULL (not computed) or overwritten.
 * Formula: the chain rule through the layer (layer norm: dx = rstd·(g −
 * mean(g) − x̂·mean(g·x̂)) with g = dy·weight; GELU: Φ(x) + x·φ(x)), the
 * attention's as attn_mha_backward.
 * Returns ATTN_ERR_NULL_POINTER (ctx, layer, act, a non-empty d_out),
 * ATTN_ERR_STATE (act empty, filled by another layer, or the layer's
 * parameters or options set since), ATTN_ERR_INVALID_ARGUMENT (the mask's
 * lengths changed to invalid values; an output overlapping d_out or the
 * other output), ATTN_ERR_OUT_OF_MEMORY. On failure no output byte is
 * written. Bitwise the same for any number of libattn threads. act is only
 * read: the backward may be repeated. Thread-safety: concurrent calls may
 * share layer and act, never ctx. */
ATTN_API attn_status attn_encoder_layer_backward(attn_context *ctx,
                                                 const attn_encoder_layer *layer,
                                                 const attn_activations *act,
                                                 const float *d_out, float *d_src,
                                                 float *d_params);

/** Layer normalisation (Ba, Kiros and Hinton 2016; torch.nn.LayerNorm over
 * the last dimension): for each of `rows` rows of x [rows, features],
 * y = (x − mean) / sqrt(var + eps) · weight + bias, with the biased variance
 * (divided by features) as PyTorch. The encoder layer's norms are this
 * function; a program calls it for the norms around a stack of layers (the
 * final norm of a pre-norm stack, GPT-2's ln_f) or in its own heads.
 * Sums run in double, the mean is kept to more than float precision, so
 * rows far from 0 (1e4 ± 1e-2) keep their digits. weight, bias [features];
 * y [rows, features] may be x (in place) but must not overlap it otherwise,
 * nor weight or bias. Runs on the calling thread; no allocation.
 * Returns ATTN_ERR_NULL_POINTER (a non-empty x or y, weight, bias),
 * ATTN_ERR_INVALID_ARGUMENT (rows < 0, features < 1, eps not finite and > 0,
 * overlaps), ATTN_ERR_SIZE_OVERFLOW. Added in 1.1.0. Thread-safe. */
ATTN_API attn_status attn_layer_norm(int64_t rows, int64_t features, const float *x,
                                     const float *weight, const float *bias, float eps,
                                     float *y);

/** Gradients of attn_layer_norm with the same x, weight and eps, given
 * d_y = ∂L/∂y [rows, features]: with x̂ = (x − mean)·rstd and g = d_y·weight,
 * d_x = rstd·(g − mean(g) − x̂·mean(g·x̂)) [rows, features],
 * d_weight = Σ_rows d_y·x̂ and d_bias = Σ_rows d_y [features]; each NULL (not
 * computed) or overwritten. d_x may be d_y (in place); no other output may
 * share a byte with an input or another output. Sums run over the rows in
 * order, in double: the same bits every call.
 * Returns ATTN_ERR_NULL_POINTER (a non-empty x or d_y, weight),
 * ATTN_ERR_INVALID_ARGUMENT (as attn_layer_norm; overlapping outputs),
 * ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_OUT_OF_MEMORY (3 floats per row of
 * statistics). On failure no output is written. Added in 1.1.0.
 * Thread-safe. */
ATTN_API attn_status attn_layer_norm_backward(int64_t rows, int64_t features, const float *x,
                                              const float *weight, float eps, const float *d_y,
                                              float *d_x, float *d_weight, float *d_bias);

/** @} */

/**
 * @defgroup modifiers Score modifiers: sliding window, softcap, ALiBi (v1.1)
 *
 * Settings of an SDPA op (attn_sdpa_set_*) or a multi-head layer
 * (attn_mha_set_*, with its num_heads as heads_q) that change the logits
 * between the scaled product and the softmax. Each one applies, with the
 * same meaning, in the forward (inference and training), in the backward
 * and in the cached forward of the decoding calls. All are off by default.
 *
 * They are measured from the query's aligned position p, the point of the
 * key axis facing query row i:
 * @code{.unparsed}
 *   p = i                     with ATTN_CAUSAL_TOP_LEFT
 *   p = i + len_kv − len_q    with ATTN_CAUSAL_BOTTOM_RIGHT, and without causal
 *                             (FlashAttention's alignment: the last query faces
 *                             the last key)
 * @endcode
 * The logit of query i and key j, with s = scale · q_i · k_j, becomes
 * @code{.unparsed}
 *   s = cap · tanh(s / cap)          softcap (Gemma 2; 0 = off)
 *   s = s + bias_ij                  the mask's additive bias
 *   s = s − slope_h · |p − j|        ALiBi (Press et al. 2022, §3)
 * @endcode
 * in this order (scale, softcap, bias, ALiBi: a masked key stays masked and
 * never becomes −cap), and key j is visible only when the masks allow it
 * and p − left <= j <= p + right (the window, inclusive at both ends, as
 * FlashAttention's window_size and ONNX Attention-25's left/right window
 * sizes; −1 leaves a side unbounded). A row left with no visible key gives
 * zeros and lse −∞ as with the other masks.
 *
 * Converters: HF transformers' sliding_window = W (W keys including the
 * query's own) is (left, right) = (W − 1, 0) with causal; llama.cpp's n_swa
 * (STANDARD) is (n_swa − 1, 0); xFormers' and MLX's window_size = W is
 * (W − 1, 0). HF Gemma-2's attn_logit_softcapping is cap. FlashAttention's
 * alibi_slopes [heads] are slopes. BLOOM's bias slope·j gives the same
 * weights as ALiBi under causal masking (they differ by a per-row constant)
 * but not without it, where ALiBi's |p − j| is symmetric.
 *
 * The window also makes the computation smaller: a block of query rows
 * computes only the keys some row of it may see, so a window of w keys
 * costs O(len_q · (w + block)) per head instead of O(len_q · len_kv), in
 * the forward and the backward. Keys outside the window of every row of a
 * block are never read (they may hold NaN); a NaN key or value inside
 * another row's window of the same block may reach a row only through the
 * 0·NaN of the P·V product, as with the other masks.
 *
 * Every setter returns ATTN_ERR_NULL_POINTER (op or mha NULL) and the ones
 * below; on failure the setting is unchanged. On an MHA layer, a change
 * makes activations filled before stale (attn_mha_backward: ATTN_ERR_STATE).
 * The setters must not run while another call uses the op or layer.
 * Added in 1.1.0.
 * @{
 */

/** Sets the sliding window: key j is visible to the query at aligned
 * position p only if p − left <= j <= p + right; −1 leaves that side
 * unbounded; (−1, −1), the default, is no window. With causal set, right is
 * moot beyond 0. Returns ATTN_ERR_INVALID_ARGUMENT (left or right below −1). */
ATTN_API attn_status attn_sdpa_set_window(attn_sdpa *op, int64_t left, int64_t right);

/** Sets the logit softcap: s = cap · tanh(s / cap) after the scale, before
 * bias, ALiBi and masks; cap = 0 (the default) turns it off. The backward
 * multiplies dS by 1 − tanh²(s / cap). Returns ATTN_ERR_INVALID_ARGUMENT
 * (cap negative, NaN or infinite). */
ATTN_API attn_status attn_sdpa_set_softcap(attn_sdpa *op, float cap);

/** Turns ALiBi on: head h's logits get −slopes[h] · |p − j|. slopes
 * [heads_q] is copied; NULL takes the slopes of Press et al. 2022
 * (ofirpress/attention_with_linear_biases get_slopes: 2^(−8(h+1)/n) for n a
 * power of two; otherwise those of the largest power of two c below n, then
 * 2^(−8(2k+1)/(2c)) for the rest), which FlashAttention, ggml (max_bias 8)
 * and HF use. The bias is symmetric in p − j, so without causal masking it
 * also lowers keys after p. Returns ATTN_ERR_INVALID_ARGUMENT (a slope NaN
 * or infinite), ATTN_ERR_OUT_OF_MEMORY. */
ATTN_API attn_status attn_sdpa_set_alibi(attn_sdpa *op, const float *slopes);

/** Turns ALiBi off (the default). Returns ATTN_ERR_NULL_POINTER. */
ATTN_API attn_status attn_sdpa_clear_alibi(attn_sdpa *op);

/** attn_sdpa_set_window for the multi-head layer's attention. */
ATTN_API attn_status attn_mha_set_window(attn_mha *mha, int64_t left, int64_t right);
/** attn_sdpa_set_softcap for the multi-head layer's attention. */
ATTN_API attn_status attn_mha_set_softcap(attn_mha *mha, float cap);
/** attn_sdpa_set_alibi for the multi-head layer's attention: slopes
 * [num_heads], copied; NULL for Press et al.'s. */
ATTN_API attn_status attn_mha_set_alibi(attn_mha *mha, const float *slopes);
/** attn_sdpa_clear_alibi for the multi-head layer. */
ATTN_API attn_status attn_mha_clear_alibi(attn_mha *mha);

/** @} */

/**
 * @defgroup rope Rotary position embedding (RoPE, v1.1)
 *
 * Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position
 * Embedding", §3.4.2 (eq. 34): the first rotary_dim features of each head
 * are rotary_dim/2 pairs, and pair i of the row at position p is rotated by
 * θ = p · inv_freq[i]:
 * @code{.unparsed}
 *   (x1, x2) -> (x1·cos θ − x2·sin θ,  x2·cos θ + x1·sin θ)
 *   ATTN_ROPE_HALF:         x1 = x[i], x2 = x[i + rotary_dim/2]   (GPT-NeoX, Llama,
 *                           HF rotate_half, ONNX interleaved = 0)
 *   ATTN_ROPE_INTERLEAVED:  x1 = x[2i], x2 = x[2i + 1]            (GPT-J, Meta's
 *                           complex form x·e^{iθ}, ONNX interleaved = 1)
 *   inv_freq[i] = base^(−2i / rotary_dim)
 * @endcode
 * Features from rotary_dim on are left as they are (partial rotary, as
 * GPT-NeoX's rotary_pct and ONNX's rotary_embedding_dim; ONNX's 0 is
 * rotary_dim = head_dim). The frequencies come from exactly one source, the
 * last one set: base (at create), a linear or Llama-3 scaling of base's,
 * the caller's inv_freq, or the caller's cos/sin tables.
 *
 * Accuracy: inv_freq is kept in double, and θ is formed and its cos and sin
 * taken in double, so a row at position 10^6 is rotated to float32
 * rounding (a float32 θ, as most PyTorch code forms it, is ~0.03 rad off
 * there).
 *
 * Converters: HF transformers' rope_theta is base, partial_rotary_factor ·
 * head_dim is rotary_dim, rope_scaling {"rope_type": "linear", "factor"} is
 * attn_rope_set_linear_scaling and {"rope_type": "llama3", ...} is
 * attn_rope_set_llama3_scaling; HF's default inv_freq is computed in float32
 * from the same formula. llama.cpp's LLAMA_ROPE_TYPE_NEOX is
 * ATTN_ROPE_HALF and LLAMA_ROPE_TYPE_NORM is ATTN_ROPE_INTERLEAVED;
 * FlashAttention's rotary_interleaved = True is ATTN_ROPE_INTERLEAVED.
 *
 * A rope is immutable during attn_rope_apply, so one rope may serve many
 * threads at once; its setters must not run during a call that uses it.
 * attn_mha_set_rope copies it. Added in 1.1.0.
 * @{
 */

/** The pairing of the rotated features. Values fixed forever. */
typedef enum attn_rope_style {
    ATTN_ROPE_HALF = 0,        /**< pairs (x[i], x[i + rotary_dim/2]) */
    ATTN_ROPE_INTERLEAVED = 1  /**< pairs (x[2i], x[2i + 1]) */
} attn_rope_style;

/** A rotary embedding: head size, rotated features, frequencies. */
typedef struct attn_rope attn_rope;

/** Creates a rotary embedding for heads of head_dim features, rotating the
 * first rotary_dim (even, 2 <= rotary_dim <= head_dim) with frequencies
 * base^(−2i/rotary_dim) (base > 1: 10000 in the paper and Llama 2, 500000
 * in Llama 3). Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT
 * (head_dim < 2, rotary_dim odd or out of range, base not finite or <= 1,
 * style not an attn_rope_style), ATTN_ERR_OUT_OF_MEMORY. *rope untouched on
 * failure. Release with attn_rope_destroy. Thread-safe. */
ATTN_API attn_status attn_rope_create(attn_rope **rope, int64_t head_dim, int64_t rotary_dim,
                                      float base, attn_rope_style style);

/** Frees the rope. NULL is a no-op. */
ATTN_API void attn_rope_destroy(attn_rope *rope);

/** Linear position interpolation (Chen et al. 2023; HF rope_type "linear"):
 * θ = (p / factor) · inv_freq, i.e. base's frequencies divided by factor.
 * Replaces any other frequency source. Returns ATTN_ERR_NULL_POINTER,
 * ATTN_ERR_INVALID_ARGUMENT (factor not finite or <= 0). */
ATTN_API attn_status attn_rope_set_linear_scaling(attn_rope *rope, float factor);

/** Llama 3.1's frequency scaling (HF rope_type "llama3",
 * _compute_llama3_parameters): with wavelength λ_i = 2π / inv_freq[i] and
 * L = original_max_positions, frequencies with λ > L / low_freq_factor are
 * divided by factor, those with λ < L / high_freq_factor kept, and those
 * between blended: (1 − s)·inv_freq/factor + s·inv_freq with
 * s = (L/λ − low_freq_factor) / (high_freq_factor − low_freq_factor).
 * Llama 3.1 uses (8, 1, 4, 8192). Replaces any other frequency source.
 * Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT (factor or
 * low_freq_factor not finite or <= 0, high_freq_factor not finite or
 * <= low_freq_factor, original_max_positions < 1). */
ATTN_API attn_status attn_rope_set_llama3_scaling(attn_rope *rope, float factor,
                                                  float low_freq_factor, float high_freq_factor,
                                                  int64_t original_max_positions);

/** The caller's frequencies: inv_freq [rotary_dim/2], copied (YaRN, NTK or
 * any scheme computed elsewhere). Replaces any other frequency source.
 * Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT (a value NaN or
 * infinite). */
ATTN_API attn_status attn_rope_set_inv_freq(attn_rope *rope, const float *inv_freq);

/** The caller's tables instead of angles (ONNX RotaryEmbedding's cos_cache
 * and sin_cache): cos, sin [n_positions, rotary_dim/2], copied; row p gives
 * the cos and sin of every pair at position p (the values are used as
 * given, so a magnitude folded in, as YaRN's attention factor, is applied
 * once). Positions must then be in [0, n_positions). Replaces any other
 * frequency source. Returns ATTN_ERR_NULL_POINTER,
 * ATTN_ERR_INVALID_ARGUMENT (n_positions < 1, a value NaN or infinite),
 * ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_OUT_OF_MEMORY; the rope is unchanged on
 * failure. */
ATTN_API attn_status attn_rope_set_tables(attn_rope *rope, const float *cos, const float *sin,
                                          int64_t n_positions);

/** Rotates x in place:
 * @code{.unparsed}
 *   x          [batch, heads, seq, head_dim] (ATTN_LAYOUT_BHSD) or
 *              [batch, seq, heads, head_dim] (ATTN_LAYOUT_BSHD; a [B, S, H·D]
 *              projection as it comes out of a linear layer)
 *   positions  [batch, seq] position of each row, or NULL for start, start + 1, ...
 *              in every batch row
 *   inverse    0: rotate by θ; 1: by −θ (the backward: the rotation's transpose,
 *              so d_x = attn_rope_apply(d_y, inverse = 1); also undoing a rotation)
 * @endcode
 * Positions may be negative with angles (a rotation by a negative angle:
 * what matters is p − p' between a query and a key); with tables they must
 * be in [0, n_positions). Runs on the context's threads, over positions;
 * every head of a position uses one cos/sin row.
 * Returns ATTN_ERR_NULL_POINTER (ctx, rope, or x with elements),
 * ATTN_ERR_INVALID_ARGUMENT (layout, inverse not 0 or 1, batch or seq
 * negative, heads < 1, a position outside the tables or start + seq
 * overflowing), ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_OUT_OF_MEMORY (scratch of
 * rotary_dim floats per thread); x is untouched on failure. Thread-safe with
 * a const rope, each thread with its own context. */
ATTN_API attn_status attn_rope_apply(attn_context *ctx, const attn_rope *rope,
                                     attn_layout layout, int64_t batch, int64_t heads,
                                     int64_t seq, float *x, const int64_t *positions,
                                     int64_t start, int inverse);

/** Gives the multi-head layer a copy of rope (NULL removes it): every
 * forward rotates the projected queries and keys (not the values) before
 * the attention, and the backward rotates their gradients back. Key j is at
 * position j; query i at its aligned position (the score modifiers' p: i
 * with ATTN_CAUSAL_TOP_LEFT, i + len_kv − len_q otherwise), so that
 * self-attention rotates both at 0, 1, ...; attn_mha_forward_cached rotates
 * the new tokens at the positions after the cached ones. Activations filled
 * before are then stale. Returns ATTN_ERR_NULL_POINTER (mha),
 * ATTN_ERR_SHAPE_MISMATCH (the rope's head_dim is not embed_dim / num_heads),
 * ATTN_ERR_OUT_OF_MEMORY; the layer is unchanged on failure. With tables, a
 * forward whose positions fall outside them returns
 * ATTN_ERR_INVALID_ARGUMENT. Not thread-safe with other calls on the same
 * mha. */
ATTN_API attn_status attn_mha_set_rope(attn_mha *mha, const attn_rope *rope);

/** @} */

/**
 * @defgroup decoding Decoding: the paged KV cache and cached attention (v1.1)
 *
 * Autoregressive decoding (D2L §10.7.6's prediction; seed 004's text
 * generation) attends each new token to every earlier one. The cache keeps
 * the earlier tokens' keys and values, so a step computes the new tokens'
 * projections only and reads the cached K and V once.
 *
 * Storage is paged (Kwon et al. 2023, "Efficient Memory Management for
 * Large Language Model Serving with PagedAttention", §4.2): the cache owns
 * num_pages pages of page_size tokens for all its sequences; a sequence
 * takes a page when it needs one and gives its pages back when closed or
 * truncated, so memory is the pages and nothing per token beyond them.
 * Fork shares the source's pages (copy-on-write: a shared page is copied
 * only when one of its sequences appends into it), for beam search and
 * shared prompts; truncate rolls a sequence back (speculative decoding).
 *
 * Causality in the cache is bottom-right per sequence (FlashAttention
 * >= 2.1, vLLM, MLX): of the n_q new tokens of a sequence of n tokens
 * (after their append), query i sees keys j <= n − n_q + i, its aligned
 * position p. The score modifiers apply with that p, and the RoPE of
 * attn_mha_forward_cached rotates the new tokens at positions len .. len +
 * n_q − 1, len the cached length before them.
 *
 * Converters: HF transformers' DynamicCache.update(k, v, layer) is
 * attn_kv_cache_append (one cache per layer); its crop(n) is
 * attn_kv_cache_seq_truncate; llama.cpp's llama_kv_self_seq_rm(seq, p0, -1)
 * is truncate to p0 and llama_kv_self_seq_cp is fork; FlashAttention's
 * kvcache call, given new k and v, cache_seqlens, a block_table and
 * causal=True, is append followed by attn_sdpa_forward_cached, and its
 * varlen call's cu_seqlens_q is cu_q (docs/decoding.md has the names).
 *
 * A cache is not thread-safe: calls that change it (open, close, fork,
 * truncate, append, attn_mha_forward_cached) must not overlap any other
 * call on it; calls that only read it (seq_len, attn_sdpa_forward_cached)
 * may run at once. Added in 1.1.0.
 * @{
 */

/** Paged K/V storage for many sequences (opaque). */
typedef struct attn_kv_cache attn_kv_cache;

/** Creates a cache of num_pages pages, each holding page_size tokens of
 * heads_kv heads (keys of dim_qk, values of dim_v floats): num_pages ×
 * page_size × heads_kv × (dim_qk + dim_v) floats, allocated here once.
 * All sizes >= 1. Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT
 * (a size below 1), ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_UNSUPPORTED (a dim or
 * page_size above INT_MAX), ATTN_ERR_OUT_OF_MEMORY; *cache untouched on
 * failure. Release with attn_kv_cache_destroy. */
ATTN_API attn_status attn_kv_cache_create(attn_kv_cache **cache, int64_t heads_kv,
                                          int64_t dim_qk, int64_t dim_v, int64_t page_size,
                                          int64_t num_pages);

/** Frees the cache and every sequence in it. NULL is a no-op. */
ATTN_API void attn_kv_cache_destroy(attn_kv_cache *cache);

/** Opens an empty sequence and stores its id (the smallest id not in use, a
 * small non-negative integer) in *seq. Takes no page. Returns
 * ATTN_ERR_NULL_POINTER, ATTN_ERR_OUT_OF_MEMORY (the sequence table). */
ATTN_API attn_status attn_kv_cache_seq_open(attn_kv_cache *cache, int64_t *seq);

/** Closes seq, giving back the pages no other sequence shares; its id may
 * be handed out again. Returns ATTN_ERR_NULL_POINTER,
 * ATTN_ERR_INVALID_ARGUMENT (seq not open). */
ATTN_API attn_status attn_kv_cache_seq_close(attn_kv_cache *cache, int64_t seq);

/** Opens a new sequence *dst with src's tokens, sharing src's pages (no
 * copy now; a shared, partly filled last page is copied when either
 * appends to it). Returns ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT
 * (src not open), ATTN_ERR_OUT_OF_MEMORY (tables); nothing changes on
 * failure. */
ATTN_API attn_status attn_kv_cache_seq_fork(attn_kv_cache *cache, int64_t src, int64_t *dst);

/** Keeps the first len tokens of seq (0 <= len <= its length) and gives
 * back the pages past them that no other sequence shares. Returns
 * ATTN_ERR_NULL_POINTER, ATTN_ERR_INVALID_ARGUMENT (seq not open, len out
 * of range). */
ATTN_API attn_status attn_kv_cache_seq_truncate(attn_kv_cache *cache, int64_t seq, int64_t len);

/** The number of tokens of seq. Returns ATTN_ERR_NULL_POINTER,
 * ATTN_ERR_INVALID_ARGUMENT (seq not open). */
ATTN_API attn_status attn_kv_cache_seq_len(const attn_kv_cache *cache, int64_t seq,
                                           int64_t *len);

/** Appends n >= 0 tokens to seq: k [n, heads_kv, dim_qk] and v [n, heads_kv,
 * dim_v] (token-major, as a BSHD row of one batch), copied into its pages.
 * Returns ATTN_ERR_NULL_POINTER (cache; k or v with n > 0),
 * ATTN_ERR_INVALID_ARGUMENT (seq not open, n negative, the sequence's
 * length would overflow), ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_STATE (not
 * enough free pages: nothing is
 * appended, the cache is unchanged), ATTN_ERR_OUT_OF_MEMORY (the page
 * table). */
ATTN_API attn_status attn_kv_cache_append(attn_kv_cache *cache, int64_t seq, int64_t n,
                                          const float *k, const float *v);

/** Copies tokens [start, start + n) of seq out of the cache: k [n, heads_kv,
 * dim_qk] and v [n, heads_kv, dim_v], token-major as attn_kv_cache_append
 * takes them; either may be NULL (not copied). For checkpoints, for
 * frameworks that want the concatenated keys (ONNX Attention's present_key,
 * HF's cache tensors) and for tests. Returns ATTN_ERR_NULL_POINTER (cache),
 * ATTN_ERR_INVALID_ARGUMENT (seq not open, the range not within its
 * tokens). Thread-safe with other calls that only read the cache. */
ATTN_API attn_status attn_kv_cache_read(const attn_kv_cache *cache, int64_t seq, int64_t start,
                                        int64_t n, float *k, float *v);

/** Attention of the new queries of n_seqs sequences against their cached
 * keys and values, in one call (continuous batching; chunked prefill with
 * several new tokens per sequence; one token each for decoding):
 * @code{.unparsed}
 *   seqs  [n_seqs]      open sequences of cache (append their new K, V first)
 *   cu_q  [n_seqs + 1]  cu_q[0] = 0, non-decreasing: sequence s owns query rows
 *                       cu_q[s] .. cu_q[s+1] − 1 (its n_q new tokens, in order)
 *   q     [total_q, heads_q, dim_qk]   total_q = cu_q[n_seqs]
 *   out   [total_q, heads_q, dim_v], written completely
 *   lse   NULL or [total_q, heads_q]: natural log-sum-exp of each row,
 *         −∞ for a row that sees no key
 * @endcode
 * The op gives heads_q, heads_kv, dim_qk, dim_v (which must match the
 * cache), the scale and the score modifiers; its batch, len_q, len_kv,
 * layout, causal and dropout settings are not used: causality is
 * bottom-right per sequence (above), and there is no dropout. A sequence
 * with n_q > its length has n_q − n empty first rows (zeros), as
 * ATTN_CAUSAL_BOTTOM_RIGHT with len_q > len_kv.
 *
 * The work is split over the context's threads by (sequence, query head,
 * block of query rows) and, when those are fewer than the threads, by
 * blocks of keys whose partial results are merged by their log-sum-exp
 * (flash-decoding; attn_merge_partials): one long sequence still uses
 * every core. Each block's logits and P·V go through cblas_sgemm (or
 * cblas_sgemv for one query row) page by page; the softmax, masks and
 * modifiers are attn_sdpa_forward's. Memory: scratch of block × keys per
 * thread and, when keys are split, their partial outputs.
 * Returns ATTN_ERR_NULL_POINTER (ctx, op, cache, seqs or cu_q with
 * n_seqs > 0, q or out with total_q > 0), ATTN_ERR_INVALID_ARGUMENT (n_seqs
 * negative, a sequence not open, cu_q not starting at 0 or decreasing),
 * ATTN_ERR_SHAPE_MISMATCH (heads_kv or a dim differs from the cache's),
 * ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_OUT_OF_MEMORY; on failure nothing is
 * written. Thread-safe with other calls that only read the cache, each
 * with its own context. */
ATTN_API attn_status attn_sdpa_forward_cached(attn_context *ctx, const attn_sdpa *op,
                                              const attn_kv_cache *cache, int64_t n_seqs,
                                              const int64_t *seqs, const int64_t *cu_q,
                                              const float *q, float *out, float *lse);

/** The multi-head layer's step with a cache: projects query [total_q,
 * embed_dim] (the new tokens of n_seqs sequences, rows as cu_q says) to Q,
 * K and V, applies the layer's RoPE (attn_mha_set_rope) to Q and K at the
 * positions after each sequence's cached length, appends K and V to the
 * cache (heads_kv = num_kv_heads, dims = head_dim), attends as
 * attn_sdpa_forward_cached with the layer's score modifiers, and projects
 * the result: out [total_q, embed_dim]. Self-attention only (kdim = vdim =
 * embed_dim). Decoding token by token gives the numbers of one causal
 * attn_mha_forward over the whole sequence (ATTN_CAUSAL_BOTTOM_RIGHT or
 * TOP_LEFT, which agree for self-attention) to float32 rounding.
 * Returns the statuses of attn_sdpa_forward_cached, plus
 * ATTN_ERR_INVALID_ARGUMENT (a sequence listed twice; with RoPE tables, a
 * position outside them), ATTN_ERR_STATE (weights not set; or not enough
 * free pages for the new tokens of every sequence, counted as the appends
 * take them, a shared page copied only while still shared: nothing is
 * appended), ATTN_ERR_SHAPE_MISMATCH (kdim or vdim not embed_dim, the
 * cache's heads or dims not the layer's), ATTN_ERR_UNSUPPORTED (total_q
 * above INT_MAX, the GEMMs' largest size); on failure the
 * cache and out are unchanged. Not thread-safe with other calls on the same
 * cache. */
ATTN_API attn_status attn_mha_forward_cached(attn_context *ctx, const attn_mha *mha,
                                             attn_kv_cache *cache, int64_t n_seqs,
                                             const int64_t *seqs, const int64_t *cu_q,
                                             const float *query, float *out);

/** The encoder layer's step with a cache, for decoding a stack of layers
 * (a decoder-only language model: causal pre- or post-norm layers) token
 * by token or chunk by chunk: src [total_q, d_model] holds the new tokens
 * of n_seqs sequences (rows as cu_q says, as for attn_sdpa_forward_cached);
 * the self-attention appends their K and V to cache and attends to every
 * cached token of the same sequence and to the new ones before it
 * (attn_mha_forward_cached); the norms, the feed-forward and the residuals
 * run on the new rows only. out [total_q, d_model] may be src (in place);
 * otherwise they must not overlap.
 *
 * One cache per layer: a stack of N layers keeps N caches, each created
 * with heads_kv = nhead and dim_qk = dim_v = d_model / nhead, and every
 * layer's call takes the same seqs and cu_q (open, fork, truncate and
 * close a sequence in every cache alike). The layer must be causal
 * (attn_encoder_layer_set_causal; either alignment, they agree for
 * self-attention): then decoding a sequence in any chunks gives the numbers
 * of one attn_encoder_layer_forward over the whole sequence to float32
 * rounding (the sums of the attention run in another order). The layer's
 * self-attention keeps any RoPE or score modifiers given to it before
 * (none can be set through the encoder layer's calls). No dropout: this is
 * inference. Formula: the layer's (attn_encoder_layer_forward; Vaswani et
 * al. 2017 §3.1, D2L §10.7) on each new row, its attention restricted to
 * the keys before it (the decoder's masked self-attention, §3.2.3).
 *
 * Returns ATTN_ERR_NULL_POINTER (ctx, layer, cache; seqs or cu_q with
 * n_seqs > 0; src or out with rows), ATTN_ERR_INVALID_ARGUMENT (n_seqs
 * negative, a sequence not open or listed twice, cu_q not starting at 0 or
 * decreasing, out overlapping src without being it), ATTN_ERR_STATE
 * (parameters not set; the layer not causal; not enough free pages for
 * every sequence's new tokens, as attn_mha_forward_cached counts them),
 * ATTN_ERR_SHAPE_MISMATCH (the cache's heads or dims not the layer's),
 * ATTN_ERR_SIZE_OVERFLOW, ATTN_ERR_UNSUPPORTED (total_q above INT_MAX),
 * ATTN_ERR_OUT_OF_MEMORY. Every check and allocation comes first: on
 * failure the cache and out are unchanged. Memory: the context's workspace
 * of total_q · (6·d_model + dim_feedforward) floats plus the attention's.
 * Added in 1.1.0. Not thread-safe with other calls on the same cache;
 * concurrent calls may share the layer. */
ATTN_API attn_status attn_encoder_layer_forward_cached(attn_context *ctx,
                                                       const attn_encoder_layer *layer,
                                                       attn_kv_cache *cache, int64_t n_seqs,
                                                       const int64_t *seqs, const int64_t *cu_q,
                                                       const float *src, float *out);

/** Exact softmax attention over the union of n_parts disjoint key sets,
 * from each part's output and log-sum-exp for the same queries
 * (flash-decoding; ring attention, Liu et al. 2023):
 * @code{.unparsed}
 *   lse = log Σ_p exp(lse_p),   out = Σ_p exp(lse_p − lse) · out_p
 *   outs  n_parts pointers to [rows, dim_v]     lses  n_parts pointers to [rows]
 *   out   [rows, dim_v]                         lse   [rows]
 * @endcode
 * A part whose lse is −∞ (or +∞, FlashAttention-2's empty marker)
 * contributes nothing, whatever its out holds; a row empty in every part
 * gets zeros and −∞. NaN in a part's lse or in a contributing out gives
 * NaN. out and lse may be outs[0] and lses[0] (in place); no other overlap.
 * Computed in double per row. Returns ATTN_ERR_NULL_POINTER (outs, lses, a
 * part, out or lse with rows > 0), ATTN_ERR_INVALID_ARGUMENT (n_parts < 1,
 * rows < 0, dim_v < 1, an overlap other than out = outs[0] and lse =
 * lses[0]), ATTN_ERR_SIZE_OVERFLOW; nothing is written on failure.
 * Thread-safe. */
ATTN_API attn_status attn_merge_partials(int64_t n_parts, int64_t rows, int64_t dim_v,
                                         const float *const *outs, const float *const *lses,
                                         float *out, float *lse);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* ATTN_H */
