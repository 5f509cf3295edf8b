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
    ATTN_ERR_STATE            = 7, /**< object not fully configured (e.g. weights not set) */
    ATTN_ERR_COMMUNICATION    = 8  /**< a message passing call failed (libattn-mpi's MPI;
                                      added in 1.1.0) */
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

/** For libraries built on libattn that report through its one error model
 * (libattn-mpi, language bindings): sets the calling thread's
 * attn_last_error() text to "func: message" (cut at 255 bytes; a NULL func
 * or message counts as "") and returns status unchanged, so that
 * `return attn_set_error(ATTN_ERR_SHAPE_MISMATCH, "f", "...");` reads as
 * libattn's own failures do. Never fails; thread-safe (the text is the
 * calling thread's). Added in 1.1.0. */
ATTN_API attn_status attn_set_error(attn_status status, const char *func, const char *message);

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
 *    openblas_set_num_threads(1)): one thread per core this process may
 *    run on (its CPU affinity, which mpirun, taskset and cpusets narrow;
 *    OpenBLAS counts the same way), each making its own
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
 *    spreads over its threads, and all the process's cores share the softmax
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

/** What attn_mha_get_property reads from a layer. Values fixed forever. */
typedef enum attn_mha_property {
    ATTN_MHA_EMBED_DIM = 0,      /**< embed_dim, as created */
    ATTN_MHA_NUM_HEADS = 1,      /**< num_heads */
    ATTN_MHA_NUM_KV_HEADS = 2,   /**< num_kv_heads */
    ATTN_MHA_HEAD_DIM = 3,       /**< embed_dim / num_heads */
    ATTN_MHA_KDIM = 4,           /**< kdim: the features of a key row */
    ATTN_MHA_VDIM = 5,           /**< vdim: the features of a value row */
    ATTN_MHA_BIAS = 6,           /**< 1 if the projections have biases, else 0 */
    ATTN_MHA_CAUSAL = 7,         /**< the attn_causal value set (ATTN_CAUSAL_NONE at create) */
    ATTN_MHA_HAS_MODIFIERS = 8,  /**< 1 if a window, softcap or ALiBi is set (attn_modifiers.h) */
    ATTN_MHA_HAS_ROPE = 9,       /**< 1 if attn_mha_set_rope gave the layer a rope */
    ATTN_MHA_HAS_DROPOUT = 10    /**< 1 if attn_mha_set_dropout set p > 0 */
} attn_mha_property;

/** Reads one of the layer's sizes or settings into *value (zstd's
 * ZSTD_CCtx_getParameter pattern: one call, an enum that grows), so that
 * bindings and libraries built on libattn (libattn-mpi) can size their
 * buffers and refuse settings they cannot honour. Added in 1.1.0.
 * Returns ATTN_ERR_NULL_POINTER (mha or value NULL),
 * ATTN_ERR_INVALID_ARGUMENT (what not an attn_mha_property value; *value is
 * then untouched). Thread-safe for a const mha. */
ATTN_API attn_status attn_mha_get_property(const attn_mha *mha, attn_mha_property what,
                                           int64_t *value);

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
 * v1.1: one header per concept, each a part of this one (as oneDNN's
 * dnnl.h includes its parts). They use the types above.
 * ====================================================================== */
/** Defined only while attn.h includes its parts below: each part refuses to
 *  be included on its own, outside attn.h's extern "C" block. */
#define ATTN_H_INSIDE
#include "attn_training.h"
#include "attn_encoder.h"
#include "attn_modifiers.h"
#include "attn_rope.h"
#include "attn_decoding.h"
#undef ATTN_H_INSIDE


#ifdef __cplusplus
}
#endif

#endif /* ATTN_H */
