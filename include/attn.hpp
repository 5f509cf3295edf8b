/**
 * @file attn.hpp
 * @brief libattn from C++17: owners, exceptions and checked views (header only).
 *
 * A thin layer over attn.h, all of it: every C handle has a move-only owner
 * that destroys it (attn::context, attn::mask, attn::sdpa, attn::mha,
 * attn::additive and, from 1.1, attn::activations, attn::encoder_layer,
 * attn::rope, attn::kv_cache); every C function has a method or a function
 * named after it (attn_mha_backward is attn::mha::backward), except
 * attn_set_error, which is for bindings that report their own errors through
 * attn_last_error (this one throws); every failing call throws attn::error,
 * which carries the attn_status and the attn_last_error() text; and every
 * tensor is passed as an attn::view, a pointer and an extent made from a
 * std::vector, a std::array, a C array or a pointer and a count. The owners
 * remember the sizes they were made with, so a view whose extent does not
 * match its tensor throws ATTN_ERR_SHAPE_MISMATCH before libattn reads a
 * byte. An empty view is an optional output not wanted (NULL in C).
 *
 * Everything here is inline: the wrapper adds no symbol to libattn.so and
 * needs no library of its own. Enum types (attn_layout, attn_causal,
 * attn_proj, attn_activation, attn_rope_style, attn_mha_property) and status
 * values are those of attn.h. A program that calls a 1.1 method needs
 * libattn 1.1 at run time, as a C program calling the same function does.
 *
 * The UvA tutorial 6 example:
 *
 * @code{.cpp}
 * #include <attn.hpp>
 * #include <cstdio>
 *
 * int main() {
 *     std::vector<float> q = {0.3367f, 0.1288f, 0.2345f, 0.2303f, -1.1229f, -0.1863f};
 *     std::vector<float> k = {2.2082f, -0.6380f, 0.4617f, 0.2674f, 0.5349f, 0.8094f};
 *     std::vector<float> v = {1.1103f, -1.6898f, -0.9890f, 0.9580f, 1.3221f, 0.8172f};
 *     try {
 *         attn::context ctx;
 *         attn::sdpa op(1, 1, 1, 3, 3, 2, 2);   // batch, heads_q, heads_kv, len_q, len_kv, dims
 *         std::vector<float> out = op.run(ctx, q, k, v);
 *         std::printf("%.4f %.4f\n", out[0], out[1]);   // 0.5697 -0.1520
 *     } catch (const attn::error &e) {
 *         std::fprintf(stderr, "%s\n", e.what());
 *         return 1;
 *     }
 * }
 * @endcode
 *
 * Build it with: `c++ -std=c++17 example.cpp $(pkg-config --cflags --libs attn)`
 *
 * Thread-safety and lifetimes are those of the C API: a context is used by
 * one thread at a time; ops and masks may be shared by threads during
 * forward calls; a mask references the caller's arrays, which must outlive
 * the forward calls that use it (the mask setters refuse temporaries).
 */
#ifndef ATTN_HPP
#define ATTN_HPP

#include "attn.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

/** The C++ wrapper of libattn. */
namespace attn {

/**
 * The exception every wrapper call throws on failure.
 *
 * status() is the attn_status of the failed call and detail() the text that
 * attn_last_error() gave right after it (for example
 * "attn_sdpa_create: heads_q (6) is not a multiple of heads_kv (4)"); what()
 * joins the detail and attn_status_string(status()). An extent checked by
 * the wrapper itself fails with ATTN_ERR_SHAPE_MISMATCH and a detail naming
 * the wrapper function and the tensor.
 */
class error : public std::runtime_error {
public:
    /** An error with this status and detail text. */
    error(attn_status status, const std::string &detail)
        : std::runtime_error(detail.empty() ? std::string(attn_status_string(status))
                                            : detail + " (" + attn_status_string(status) + ")"),
          status_(status), detail_(detail)
    {
    }

    /** The status of the failed call. */
    attn_status status() const noexcept { return status_; }

    /** The attn_last_error() text of the failed call. */
    const std::string &detail() const noexcept { return detail_; }

private:
    attn_status status_;
    std::string detail_;
};

/** Throws attn::error with attn_last_error() if status is not ATTN_OK. */
inline void check(attn_status status)
{
    if (status != ATTN_OK)
        throw error(status, attn_last_error());
}

/** The runtime library's version, "MAJOR.MINOR.PATCH" (attn_version_string). */
inline std::string version() { return attn_version_string(); }

/** The runtime library's version number (attn_version_number). */
inline unsigned version_number() noexcept { return attn_version_number(); }

/** What libattn runs on: its version, the BLAS, its kernel and threads, the
 * schedule and advice (attn_runtime_info's "key: value" lines, whole). */
inline std::string runtime_info()
{
    // The text may change between two calls (the BLAS's thread count is read
    // each time): ask again until the buffer held all of it.
    std::string text;
    std::size_t n = attn_runtime_info(nullptr, 0);
    do {
        text.assign(n, '\0');
        n = attn_runtime_info(&text[0], text.size() + 1);   // C++17: the NUL slot is writable
    } while (n > text.size());
    text.resize(n);
    return text;
}

/**
 * A pointer and an extent: T is float, const float, const uint8_t or
 * const int64_t. Made from a std::vector, a std::array, a C array, or a
 * pointer and a count. It owns nothing. A default-made view is empty
 * (nullptr, 0); for the optional outputs (weights, lse) it means "not
 * wanted".
 */
template <class T>
class view {
public:
    /** The element type without const. */
    using value_type = std::remove_const_t<T>;

    /** The empty view: no array. */
    constexpr view() noexcept = default;

    /** `size` elements from `data`. */
    constexpr view(T *data, std::size_t size) noexcept : data_(data), size_(size) {}

    /** The elements of a vector. */
    view(std::vector<value_type> &v) noexcept : data_(v.data()), size_(v.size()) {}

    /** The elements of a const vector (views of const elements only). */
    template <class U = T, class = std::enable_if_t<std::is_const<U>::value>>
    view(const std::vector<value_type> &v) noexcept : data_(v.data()), size_(v.size())
    {
    }

    /** The elements of a std::array. */
    template <std::size_t N>
    view(std::array<value_type, N> &a) noexcept : data_(a.data()), size_(N)
    {
    }

    /** The elements of a const std::array (views of const elements only). */
    template <std::size_t N, class U = T, class = std::enable_if_t<std::is_const<U>::value>>
    view(const std::array<value_type, N> &a) noexcept : data_(a.data()), size_(N)
    {
    }

    /** The elements of a C array. */
    template <std::size_t N>
    view(T (&a)[N]) noexcept : data_(a), size_(N)
    {
    }

    /** A view of mutable elements is also a view of const ones. */
    template <class U, class = std::enable_if_t<std::is_same<const U, T>::value &&
                                                !std::is_same<U, T>::value>>
    view(view<U> other) noexcept : data_(other.data()), size_(other.size())
    {
    }

    /** The first element (nullptr for the empty view). */
    constexpr T *data() const noexcept { return data_; }

    /** The number of elements. */
    constexpr std::size_t size() const noexcept { return size_; }

    /** Whether the view has no element. */
    constexpr bool empty() const noexcept { return size_ == 0; }

private:
    T *data_ = nullptr;
    std::size_t size_ = 0;
};

/** Input floats. */
using in = view<const float>;
/** Output floats. */
using out = view<float>;

/// @cond ATTN_DETAIL
namespace detail {

/* Owns one C handle; Destroy accepts NULL. */
template <class T, void (*Destroy)(T *)>
class handle {
public:
    handle() noexcept = default;
    explicit handle(T *p) noexcept : p_(p) {}
    handle(handle &&o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    handle &operator=(handle &&o) noexcept
    {
        if (this != &o) {
            Destroy(p_);
            p_ = std::exchange(o.p_, nullptr);
        }
        return *this;
    }
    handle(const handle &) = delete;
    handle &operator=(const handle &) = delete;
    ~handle() { Destroy(p_); }
    T *get() const noexcept { return p_; }
    T *release() noexcept { return std::exchange(p_, nullptr); }

private:
    T *p_ = nullptr;
};

/* The product of sizes, or -1 if one is negative or the product overflows
 * (then libattn itself reports the error). */
inline std::int64_t product(std::initializer_list<std::int64_t> sizes) noexcept
{
    std::int64_t p = 1;
    for (std::int64_t s : sizes) {
        if (s < 0)
            return -1;
        if (s != 0 && p > INT64_MAX / s)
            return -1;
        p *= s;
    }
    return p;
}

/* Throws ATTN_ERR_SHAPE_MISMATCH unless the view holds exactly `want`
 * elements (want < 0: the sizes are invalid, libattn will say so). An
 * optional view may also be empty. */
template <class T>
void extent(const char *func, const char *name, view<T> v, std::int64_t want,
            bool optional = false)
{
    if (want < 0 || (optional && v.data() == nullptr && v.empty()))
        return;
    if (v.size() != static_cast<std::uint64_t>(want))
        throw error(ATTN_ERR_SHAPE_MISMATCH,
                    std::string(func) + ": " + name + " has " + std::to_string(v.size()) +
                        " elements, the shapes need " + std::to_string(want));
}

/* The C pointer of an optional output: NULL when the view is empty. */
template <class T>
T *opt(view<T> v) noexcept
{
    return v.empty() ? nullptr : v.data();
}

}  // namespace detail
/// @endcond

/**
 * Owns an attn_context: worker threads and scratch memory (see
 * attn_context_create). One thread at a time may use it. Move-only.
 */
class context {
public:
    /** A context with the default thread count (attn_context_create). */
    context()
    {
        attn_context *c = nullptr;
        check(attn_context_create(&c));
        h_ = handle_type(c);
    }

    /** A context whose forward calls use `num_threads` threads
     * (attn_context_set_num_threads; 0 is the default). */
    explicit context(int num_threads) : context() { set_num_threads(num_threads); }

    /** Sets the thread count (attn_context_set_num_threads). */
    context &set_num_threads(int n)
    {
        check(attn_context_set_num_threads(h_.get(), n));
        return *this;
    }

    /** The C handle, still owned by this object (nullptr after a move). */
    attn_context *get() const noexcept { return h_.get(); }

    /** Gives up ownership: the caller destroys the returned handle. */
    attn_context *release() noexcept { return h_.release(); }

private:
    using handle_type = detail::handle<attn_context, attn_context_destroy>;
    handle_type h_;
};

/**
 * Owns an attn_activations: what a training forward (mha::forward_train,
 * additive::forward_train, encoder_layer::forward_train) keeps for the
 * matching backward. It also remembers which layer filled it and the
 * shapes, so the backward checks d_out's extent and throws
 * ATTN_ERR_STATE for activations another layer (or no wrapper call)
 * filled. Fill it through the wrapper only: a C call given get() leaves the
 * record of the wrapper's last forward, whose shapes the backward would then
 * check. One forward/backward pair at a time; the next training forward
 * overwrites it. A training forward uses it alone; backwards only read it
 * and may share it. Move-only.
 */
class activations {
public:
    /** An empty store (attn_activations_create). */
    activations()
    {
        attn_activations *a = nullptr;
        check(attn_activations_create(&a));
        h_ = handle_type(a);
    }

    /** The C handle, still owned by this object (nullptr after a move). */
    attn_activations *get() const noexcept { return h_.get(); }

private:
    friend class mha;
    friend class additive;
    friend class encoder_layer;

    /* What the wrapper's last successful training forward put in it. */
    struct record {
        const void *layer = nullptr;   // the C handle of the layer, or none
        std::int64_t rows_q = -1, rows_kv = -1, dim_v = -1;
    };

    /* Forgets the record before a forward (kept only if it succeeds). */
    void begin() noexcept { filled_ = record(); }

    /* The record, checked against the layer a backward runs on. */
    const record &filled_by(const char *func, const void *layer) const
    {
        if (filled_.layer == nullptr || filled_.layer != layer)
            throw error(ATTN_ERR_STATE, std::string(func) +
                                            ": act was not filled by this layer's "
                                            "forward_train");
        return filled_;
    }

    using handle_type = detail::handle<attn_activations, attn_activations_destroy>;
    handle_type h_;
    record filled_;
};

/**
 * Owns an attn_rope: rotary position embedding for heads of head_dim
 * features, of which the first rotary_dim are rotated (attn_rope_create;
 * RoFormer, Su et al. 2021, eq. 34). Immutable during apply(): one rope may
 * serve several threads, each with its own context; mha::set_rope copies
 * it. Move-only.
 */
class rope {
public:
    /** attn_rope_create(head_dim, rotary_dim, base, style). */
    rope(std::int64_t head_dim, std::int64_t rotary_dim, float base = 10000.0f,
         attn_rope_style style = ATTN_ROPE_HALF)
        : head_dim_(head_dim), rotary_dim_(rotary_dim)
    {
        attn_rope *r = nullptr;
        check(attn_rope_create(&r, head_dim, rotary_dim, base, style));
        h_ = handle_type(r);
    }

    /** Linear position interpolation (attn_rope_set_linear_scaling). */
    rope &set_linear_scaling(float factor)
    {
        check(attn_rope_set_linear_scaling(h_.get(), factor));
        return *this;
    }

    /** Llama 3.1's frequency scaling (attn_rope_set_llama3_scaling). */
    rope &set_llama3_scaling(float factor, float low_freq_factor, float high_freq_factor,
                             std::int64_t original_max_positions)
    {
        check(attn_rope_set_llama3_scaling(h_.get(), factor, low_freq_factor, high_freq_factor,
                                           original_max_positions));
        return *this;
    }

    /** The caller's frequencies, inv_freq [rotary_dim / 2], copied
     * (attn_rope_set_inv_freq). */
    rope &set_inv_freq(in inv_freq)
    {
        detail::extent("attn::rope::set_inv_freq", "inv_freq", inv_freq, rotary_dim_ / 2);
        check(attn_rope_set_inv_freq(h_.get(), inv_freq.data()));
        return *this;
    }

    /** The caller's cos and sin tables, each [n_positions, rotary_dim / 2],
     * copied (attn_rope_set_tables). */
    rope &set_tables(in cos, in sin, std::int64_t n_positions)
    {
        static const char fn[] = "attn::rope::set_tables";
        detail::extent(fn, "cos", cos, detail::product({n_positions, rotary_dim_ / 2}));
        detail::extent(fn, "sin", sin, detail::product({n_positions, rotary_dim_ / 2}));
        check(attn_rope_set_tables(h_.get(), cos.data(), sin.data(), n_positions));
        return *this;
    }

    /**
     * Rotates x in place (attn_rope_apply): x is [batch, heads, seq,
     * head_dim] (BHSD) or [batch, seq, heads, head_dim] (BSHD); positions is
     * empty (start, start + 1, ... in every batch row) or [batch, seq];
     * inverse rotates by −θ (the backward).
     */
    void apply(context &ctx, attn_layout layout, std::int64_t batch, std::int64_t heads,
               std::int64_t seq, out x, view<const std::int64_t> positions = {},
               std::int64_t start = 0, bool inverse = false) const
    {
        static const char fn[] = "attn::rope::apply";
        detail::extent(fn, "x", x, detail::product({batch, heads, seq, head_dim_}));
        detail::extent(fn, "positions", positions, detail::product({batch, seq}), true);
        check(attn_rope_apply(ctx.get(), h_.get(), layout, batch, heads, seq, x.data(),
                              detail::opt(positions), start, inverse ? 1 : 0));
    }

    /** head_dim, as created. */
    std::int64_t head_dim() const noexcept { return head_dim_; }
    /** rotary_dim, as created. */
    std::int64_t rotary_dim() const noexcept { return rotary_dim_; }

    /** The C handle, still owned by this object (nullptr after a move). */
    attn_rope *get() const noexcept { return h_.get(); }

private:
    using handle_type = detail::handle<attn_rope, attn_rope_destroy>;
    std::int64_t head_dim_, rotary_dim_;
    handle_type h_;
};

/**
 * Owns an attn_kv_cache: paged keys and values of many sequences
 * (attn_kv_cache_create; PagedAttention, Kwon et al. 2023). Calls that change
 * it (seq_open, seq_close, seq_fork, seq_truncate, append, and the layers'
 * forward_cached) must not overlap any other call on it; seq_len, read and
 * sdpa::forward_cached only read it. Move-only.
 */
class kv_cache {
public:
    /** num_pages pages of page_size tokens, heads_kv heads of keys of dim_qk
     * and values of dim_v floats (attn_kv_cache_create). */
    kv_cache(std::int64_t heads_kv, std::int64_t dim_qk, std::int64_t dim_v,
             std::int64_t page_size, std::int64_t num_pages)
        : heads_kv_(heads_kv), dim_qk_(dim_qk), dim_v_(dim_v)
    {
        attn_kv_cache *c = nullptr;
        check(attn_kv_cache_create(&c, heads_kv, dim_qk, dim_v, page_size, num_pages));
        h_ = handle_type(c);
    }

    /** Opens an empty sequence and returns its id (attn_kv_cache_seq_open). */
    std::int64_t seq_open()
    {
        std::int64_t seq = -1;
        check(attn_kv_cache_seq_open(h_.get(), &seq));
        return seq;
    }

    /** Closes seq (attn_kv_cache_seq_close). */
    void seq_close(std::int64_t seq) { check(attn_kv_cache_seq_close(h_.get(), seq)); }

    /** Opens a sequence sharing src's tokens and returns its id
     * (attn_kv_cache_seq_fork; copy-on-write pages). */
    std::int64_t seq_fork(std::int64_t src)
    {
        std::int64_t dst = -1;
        check(attn_kv_cache_seq_fork(h_.get(), src, &dst));
        return dst;
    }

    /** Keeps the first len tokens of seq (attn_kv_cache_seq_truncate). */
    void seq_truncate(std::int64_t seq, std::int64_t len)
    {
        check(attn_kv_cache_seq_truncate(h_.get(), seq, len));
    }

    /** The number of tokens of seq (attn_kv_cache_seq_len). */
    std::int64_t seq_len(std::int64_t seq) const
    {
        std::int64_t len = -1;
        check(attn_kv_cache_seq_len(h_.get(), seq, &len));
        return len;
    }

    /** Appends n tokens to seq: k [n, heads_kv, dim_qk], v [n, heads_kv,
     * dim_v], token-major, copied (attn_kv_cache_append). */
    void append(std::int64_t seq, std::int64_t n, in k, in v)
    {
        static const char fn[] = "attn::kv_cache::append";
        detail::extent(fn, "k", k, detail::product({n, heads_kv_, dim_qk_}));
        detail::extent(fn, "v", v, detail::product({n, heads_kv_, dim_v_}));
        check(attn_kv_cache_append(h_.get(), seq, n, k.data(), v.data()));
    }

    /** Copies tokens [start, start + n) of seq into k [n, heads_kv, dim_qk]
     * and v [n, heads_kv, dim_v]; either may be an empty view (not copied)
     * (attn_kv_cache_read). */
    void read(std::int64_t seq, std::int64_t start, std::int64_t n, out k, out v = {}) const
    {
        static const char fn[] = "attn::kv_cache::read";
        detail::extent(fn, "k", k, detail::product({n, heads_kv_, dim_qk_}), true);
        detail::extent(fn, "v", v, detail::product({n, heads_kv_, dim_v_}), true);
        check(attn_kv_cache_read(h_.get(), seq, start, n, detail::opt(k), detail::opt(v)));
    }

    /** heads_kv, as created. */
    std::int64_t heads_kv() const noexcept { return heads_kv_; }
    /** dim_qk, as created. */
    std::int64_t dim_qk() const noexcept { return dim_qk_; }
    /** dim_v, as created. */
    std::int64_t dim_v() const noexcept { return dim_v_; }

    /** The C handle, still owned by this object (nullptr after a move). */
    attn_kv_cache *get() const noexcept { return h_.get(); }

private:
    using handle_type = detail::handle<attn_kv_cache, attn_kv_cache_destroy>;
    std::int64_t heads_kv_, dim_qk_, dim_v_;
    handle_type h_;
};

/// @cond ATTN_DETAIL
namespace detail {

/* The number of query rows cu_q gives n_seqs sequences (cu_q[n_seqs]),
 * after checking that seqs and cu_q hold n_seqs and n_seqs + 1 elements;
 * -1 (unchecked: libattn reports it) when that last offset is negative. */
inline std::int64_t total_q(const char *func, view<const std::int64_t> seqs,
                            view<const std::int64_t> cu_q)
{
    extent(func, "cu_q", cu_q, static_cast<std::int64_t>(seqs.size()) + 1);
    if (cu_q.data() == nullptr)
        throw error(ATTN_ERR_NULL_POINTER, std::string(func) + ": cu_q is NULL");
    const std::int64_t total = cu_q.data()[cu_q.size() - 1];   // cu_q[n_seqs]
    return total < 0 ? -1 : total;
}

}  // namespace detail
/// @endcond

/**
 * Owns an attn_mask. It references the caller's arrays (nothing is
 * copied): they must stay valid and unchanged until the last forward call
 * that uses the mask returns, which is why the setters refuse temporary
 * vectors. Move-only.
 */
class mask {
public:
    /** An empty mask (attn_mask_create). */
    mask()
    {
        attn_mask *m = nullptr;
        check(attn_mask_create(&m));
        h_ = handle_type(m);
    }

    /** Valid lengths per batch row: lengths has `batch` elements
     * (attn_mask_set_kv_lengths with per_query = 0). */
    mask &set_kv_lengths(view<const std::int64_t> lengths, std::int64_t batch)
    {
        detail::extent("attn::mask::set_kv_lengths", "lengths", lengths, batch);
        check(attn_mask_set_kv_lengths(h_.get(), lengths.data(), batch, 0, 0));
        return *this;
    }

    /** Valid lengths per query: lengths is [batch, len_q]
     * (attn_mask_set_kv_lengths with per_query = 1). */
    mask &set_kv_lengths_per_query(view<const std::int64_t> lengths, std::int64_t batch,
                                   std::int64_t len_q)
    {
        detail::extent("attn::mask::set_kv_lengths_per_query", "lengths", lengths,
                       detail::product({batch, len_q}));
        check(attn_mask_set_kv_lengths(h_.get(), lengths.data(), batch, len_q, 1));
        return *this;
    }

    /** Boolean keep-mask [mb, mh, mq, len_kv], non-zero = attend
     * (attn_mask_set_bool). */
    mask &set_bool(view<const std::uint8_t> keep, std::int64_t mb, std::int64_t mh,
                   std::int64_t mq, std::int64_t len_kv)
    {
        detail::extent("attn::mask::set_bool", "keep", keep,
                       detail::product({mb, mh, mq, len_kv}));
        check(attn_mask_set_bool(h_.get(), keep.data(), mb, mh, mq, len_kv));
        return *this;
    }

    /** Additive bias [mb, mh, mq, len_kv] (attn_mask_set_bias). */
    mask &set_bias(view<const float> bias, std::int64_t mb, std::int64_t mh, std::int64_t mq,
                   std::int64_t len_kv)
    {
        detail::extent("attn::mask::set_bias", "bias", bias,
                       detail::product({mb, mh, mq, len_kv}));
        check(attn_mask_set_bias(h_.get(), bias.data(), mb, mh, mq, len_kv));
        return *this;
    }

    /// @cond ATTN_DETAIL
    // A mask would keep a pointer into a temporary: refused at compile time.
    mask &set_kv_lengths(std::vector<std::int64_t> &&, std::int64_t) = delete;
    mask &set_kv_lengths_per_query(std::vector<std::int64_t> &&, std::int64_t,
                                   std::int64_t) = delete;
    mask &set_bool(std::vector<std::uint8_t> &&, std::int64_t, std::int64_t, std::int64_t,
                   std::int64_t) = delete;
    mask &set_bias(std::vector<float> &&, std::int64_t, std::int64_t, std::int64_t,
                   std::int64_t) = delete;
    /// @endcond

    /** Removes every kind (attn_mask_clear). */
    mask &clear()
    {
        check(attn_mask_clear(h_.get()));
        return *this;
    }

    /** The C handle, still owned by this object (nullptr after a move). */
    attn_mask *get() const noexcept { return h_.get(); }

    /** Gives up ownership: the caller destroys the returned handle. */
    attn_mask *release() noexcept { return h_.release(); }

private:
    using handle_type = detail::handle<attn_mask, attn_mask_destroy>;
    handle_type h_;
};

/**
 * Owns an attn_sdpa: scaled dot-product attention for fixed shapes
 * (attn_sdpa_create). Immutable during forward: one op may serve several
 * threads, each with its own context. Move-only.
 */
class sdpa {
public:
    /** q [batch, heads_q, len_q, dim_qk], k [batch, heads_kv, len_kv, dim_qk],
     * v [batch, heads_kv, len_kv, dim_v] (attn_sdpa_create). */
    sdpa(std::int64_t batch, std::int64_t heads_q, std::int64_t heads_kv, std::int64_t len_q,
         std::int64_t len_kv, std::int64_t dim_qk, std::int64_t dim_v)
        : batch_(batch), heads_q_(heads_q), heads_kv_(heads_kv), len_q_(len_q),
          len_kv_(len_kv), dim_qk_(dim_qk), dim_v_(dim_v)
    {
        attn_sdpa *op = nullptr;
        check(attn_sdpa_create(&op, batch, heads_q, heads_kv, len_q, len_kv, dim_qk, dim_v));
        h_ = handle_type(op);
    }

    /** attn_sdpa_set_layout. */
    sdpa &set_layout(attn_layout layout)
    {
        check(attn_sdpa_set_layout(h_.get(), layout));
        return *this;
    }

    /** attn_sdpa_set_scale. */
    sdpa &set_scale(float scale)
    {
        check(attn_sdpa_set_scale(h_.get(), scale));
        return *this;
    }

    /** attn_sdpa_set_causal. */
    sdpa &set_causal(attn_causal causal)
    {
        check(attn_sdpa_set_causal(h_.get(), causal));
        return *this;
    }

    /** Dropout p in [0, 1) on the weights, its mask a function of seed
     * (attn_sdpa_set_dropout); 0 turns it off. */
    sdpa &set_dropout(float p, std::uint64_t seed)
    {
        check(attn_sdpa_set_dropout(h_.get(), p, seed));
        return *this;
    }

    /** The sliding window: keys p − left .. p + right, −1 unbounded
     * (attn_sdpa_set_window). */
    sdpa &set_window(std::int64_t left, std::int64_t right)
    {
        check(attn_sdpa_set_window(h_.get(), left, right));
        return *this;
    }

    /** The logit softcap, 0 = off (attn_sdpa_set_softcap). */
    sdpa &set_softcap(float cap)
    {
        check(attn_sdpa_set_softcap(h_.get(), cap));
        return *this;
    }

    /** ALiBi with Press et al.'s slopes (attn_sdpa_set_alibi with NULL). */
    sdpa &set_alibi()
    {
        check(attn_sdpa_set_alibi(h_.get(), nullptr));
        return *this;
    }

    /** ALiBi with slopes [heads_q], copied (attn_sdpa_set_alibi). */
    sdpa &set_alibi(in slopes)
    {
        detail::extent("attn::sdpa::set_alibi", "slopes", slopes, heads_q_);
        check(attn_sdpa_set_alibi(h_.get(), slopes.data()));
        return *this;
    }

    /** Turns ALiBi off (attn_sdpa_clear_alibi). */
    sdpa &clear_alibi()
    {
        check(attn_sdpa_clear_alibi(h_.get()));
        return *this;
    }

    /** The dropout keep mask [batch, heads_q, len_q, len_kv] of the op's
     * setting, 1 = kept (attn_dropout_keep_mask). */
    void keep_mask(view<std::uint8_t> keep) const
    {
        detail::extent("attn::sdpa::keep_mask", "keep", keep,
                       static_cast<std::int64_t>(weights_size()));
        check(attn_dropout_keep_mask(h_.get(), keep.data()));
    }

    /** keep_mask() into a new vector, which it returns. */
    std::vector<std::uint8_t> keep_mask() const
    {
        std::vector<std::uint8_t> keep(weights_size());
        keep_mask(keep);
        return keep;
    }

    /** Elements of q. */
    std::size_t q_size() const noexcept { return size({batch_, heads_q_, len_q_, dim_qk_}); }
    /** Elements of k. */
    std::size_t k_size() const noexcept { return size({batch_, heads_kv_, len_kv_, dim_qk_}); }
    /** Elements of v. */
    std::size_t v_size() const noexcept { return size({batch_, heads_kv_, len_kv_, dim_v_}); }
    /** Elements of out. */
    std::size_t out_size() const noexcept { return size({batch_, heads_q_, len_q_, dim_v_}); }
    /** Elements of weights. */
    std::size_t weights_size() const noexcept
    {
        return size({batch_, heads_q_, len_q_, len_kv_});
    }
    /** Elements of lse. */
    std::size_t lse_size() const noexcept { return size({batch_, heads_q_, len_q_}); }

    /**
     * attn_sdpa_forward: every extent must equal the op's; weights and lse
     * may be empty views (not wanted); m may be nullptr.
     */
    void forward(context &ctx, in q, in k, in v, const mask *m, out o, out weights = {},
                 out lse = {}) const
    {
        static const char fn[] = "attn::sdpa::forward";
        detail::extent(fn, "q", q, static_cast<std::int64_t>(q_size()));
        detail::extent(fn, "k", k, static_cast<std::int64_t>(k_size()));
        detail::extent(fn, "v", v, static_cast<std::int64_t>(v_size()));
        detail::extent(fn, "out", o, static_cast<std::int64_t>(out_size()));
        detail::extent(fn, "weights", weights, static_cast<std::int64_t>(weights_size()), true);
        detail::extent(fn, "lse", lse, static_cast<std::int64_t>(lse_size()), true);
        check(attn_sdpa_forward(ctx.get(), h_.get(), q.data(), k.data(), v.data(),
                                m ? m->get() : nullptr, o.data(), detail::opt(weights),
                                detail::opt(lse)));
    }

    /** forward() into a new vector, which it returns. */
    std::vector<float> run(context &ctx, in q, in k, in v, const mask *m = nullptr) const
    {
        std::vector<float> o(out_size());
        forward(ctx, q, k, v, m, o);
        return o;
    }

    /**
     * attn_sdpa_backward: q, k, v, m, out and lse are the forward's (lse is
     * required), d_out has out's extent; d_q, d_k and d_v have q's, k's and
     * v's extents, or are empty views (not computed).
     */
    void backward(context &ctx, in q, in k, in v, const mask *m, in o, in lse, in d_out,
                  out d_q, out d_k = {}, out d_v = {}) const
    {
        static const char fn[] = "attn::sdpa::backward";
        detail::extent(fn, "q", q, static_cast<std::int64_t>(q_size()));
        detail::extent(fn, "k", k, static_cast<std::int64_t>(k_size()));
        detail::extent(fn, "v", v, static_cast<std::int64_t>(v_size()));
        detail::extent(fn, "out", o, static_cast<std::int64_t>(out_size()));
        detail::extent(fn, "lse", lse, static_cast<std::int64_t>(lse_size()));
        detail::extent(fn, "d_out", d_out, static_cast<std::int64_t>(out_size()));
        detail::extent(fn, "d_q", d_q, static_cast<std::int64_t>(q_size()), true);
        detail::extent(fn, "d_k", d_k, static_cast<std::int64_t>(k_size()), true);
        detail::extent(fn, "d_v", d_v, static_cast<std::int64_t>(v_size()), true);
        check(attn_sdpa_backward(ctx.get(), h_.get(), q.data(), k.data(), v.data(),
                                 m ? m->get() : nullptr, o.data(), lse.data(), d_out.data(),
                                 detail::opt(d_q), detail::opt(d_k), detail::opt(d_v)));
    }

    /**
     * attn_sdpa_forward_cached: the new queries of the sequences seqs [n]
     * against their cached keys and values; cu_q [n + 1] gives each its rows
     * of q [total_q, heads_q, dim_qk], out [total_q, heads_q, dim_v] and lse
     * (empty, or [total_q, heads_q]), total_q = cu_q[n]. The op's batch,
     * lengths, layout, causal and dropout are not used.
     */
    void forward_cached(context &ctx, const kv_cache &cache, view<const std::int64_t> seqs,
                        view<const std::int64_t> cu_q, in q, out o, out lse = {}) const
    {
        static const char fn[] = "attn::sdpa::forward_cached";
        const std::int64_t total_q = detail::total_q(fn, seqs, cu_q);
        detail::extent(fn, "q", q, detail::product({total_q, heads_q_, dim_qk_}));
        detail::extent(fn, "out", o, detail::product({total_q, heads_q_, dim_v_}));
        detail::extent(fn, "lse", lse, detail::product({total_q, heads_q_}), true);
        check(attn_sdpa_forward_cached(ctx.get(), h_.get(), cache.get(),
                                       static_cast<std::int64_t>(seqs.size()), seqs.data(),
                                       cu_q.data(), q.data(), o.data(), detail::opt(lse)));
    }

    /** The C handle, still owned by this object (nullptr after a move). */
    attn_sdpa *get() const noexcept { return h_.get(); }

private:
    using handle_type = detail::handle<attn_sdpa, attn_sdpa_destroy>;

    static std::size_t size(std::initializer_list<std::int64_t> dims) noexcept
    {
        return static_cast<std::size_t>(detail::product(dims));
    }

    std::int64_t batch_, heads_q_, heads_kv_, len_q_, len_kv_, dim_qk_, dim_v_;
    handle_type h_;
};

/**
 * Owns an attn_mha: a multi-head attention layer with PyTorch's numbers
 * (attn_mha_create). Concurrent forward, forward_train and backward calls
 * may share it, each with its own context (and activations); setters must
 * not overlap any call on it. Move-only.
 */
class mha {
public:
    /** attn_mha_create(embed_dim, num_heads, num_kv_heads, kdim, vdim, bias). */
    mha(std::int64_t embed_dim, std::int64_t num_heads, std::int64_t num_kv_heads,
        std::int64_t kdim, std::int64_t vdim, bool bias)
        : embed_dim_(embed_dim), num_heads_(num_heads), kdim_(kdim), vdim_(vdim), bias_(bias)
    {
        attn_mha *layer = nullptr;
        check(attn_mha_create(&layer, embed_dim, num_heads, num_kv_heads, kdim, vdim,
                              bias ? 1 : 0));
        h_ = handle_type(layer);
        kv_dim_ = embed_dim / num_heads * num_kv_heads;   // sizes valid: create succeeded
    }

    /** The layer of nn.MultiheadAttention(embed_dim, num_heads, bias=bias). */
    mha(std::int64_t embed_dim, std::int64_t num_heads, bool bias = true)
        : mha(embed_dim, num_heads, num_heads, embed_dim, embed_dim, bias)
    {
    }

    /**
     * attn_mha_set_weights: weight [out_features, in_features] and bias
     * [out_features] of one projection (see attn_proj); bias is an empty view
     * on a layer made without biases.
     */
    mha &set_weights(attn_proj which, in weight, in bias = {})
    {
        static const char fn[] = "attn::mha::set_weights";
        std::int64_t rows = -1, cols = -1;
        switch (which) {
        case ATTN_PROJ_Q: rows = embed_dim_; cols = embed_dim_; break;
        case ATTN_PROJ_K: rows = kv_dim_; cols = kdim_; break;
        case ATTN_PROJ_V: rows = kv_dim_; cols = vdim_; break;
        case ATTN_PROJ_O: rows = embed_dim_; cols = embed_dim_; break;
        }
        detail::extent(fn, "weight", weight, rows < 0 ? -1 : detail::product({rows, cols}));
        if (bias_)
            detail::extent(fn, "bias", bias, rows);
        check(attn_mha_set_weights(h_.get(), which, weight.data(), detail::opt(bias)));
        return *this;
    }

    /** attn_mha_set_causal. */
    mha &set_causal(attn_causal causal)
    {
        check(attn_mha_set_causal(h_.get(), causal));
        return *this;
    }

    /** Dropout p in [0, 1) on the attention weights of forward_train, its
     * mask a function of seed (attn_mha_set_dropout); forward never drops. */
    mha &set_dropout(float p, std::uint64_t seed)
    {
        check(attn_mha_set_dropout(h_.get(), p, seed));
        return *this;
    }

    /** The sliding window of the layer's attention (attn_mha_set_window). */
    mha &set_window(std::int64_t left, std::int64_t right)
    {
        check(attn_mha_set_window(h_.get(), left, right));
        return *this;
    }

    /** The logit softcap, 0 = off (attn_mha_set_softcap). */
    mha &set_softcap(float cap)
    {
        check(attn_mha_set_softcap(h_.get(), cap));
        return *this;
    }

    /** ALiBi with Press et al.'s slopes (attn_mha_set_alibi with NULL). */
    mha &set_alibi()
    {
        check(attn_mha_set_alibi(h_.get(), nullptr));
        return *this;
    }

    /** ALiBi with slopes [num_heads], copied (attn_mha_set_alibi). */
    mha &set_alibi(in slopes)
    {
        detail::extent("attn::mha::set_alibi", "slopes", slopes, num_heads_);
        check(attn_mha_set_alibi(h_.get(), slopes.data()));
        return *this;
    }

    /** Turns ALiBi off (attn_mha_clear_alibi). */
    mha &clear_alibi()
    {
        check(attn_mha_clear_alibi(h_.get()));
        return *this;
    }

    /** Gives the layer a copy of r: queries and keys are rotated
     * (attn_mha_set_rope). */
    mha &set_rope(const rope &r)
    {
        check(attn_mha_set_rope(h_.get(), r.get()));
        return *this;
    }

    /** Removes the layer's rope (attn_mha_set_rope with NULL). */
    mha &clear_rope()
    {
        check(attn_mha_set_rope(h_.get(), nullptr));
        return *this;
    }

    /** A size or setting of the layer (attn_mha_get_property). */
    std::int64_t property(attn_mha_property what) const
    {
        std::int64_t value = 0;
        check(attn_mha_get_property(h_.get(), what, &value));
        return value;
    }

    /** The number of floats of the flat parameter vector
     * (attn_mha_param_count). */
    std::size_t param_count() const
    {
        std::int64_t n = 0;
        check(attn_mha_param_count(h_.get(), &n));
        return static_cast<std::size_t>(n);
    }

    /** Copies the parameters into params [param_count()], in the order of
     * nn.MultiheadAttention's named_parameters() (attn_mha_get_params). */
    void get_params(out params) const
    {
        detail::extent("attn::mha::get_params", "params", params,
                       static_cast<std::int64_t>(param_count()));
        check(attn_mha_get_params(h_.get(), params.data()));
    }

    /** get_params() into a new vector, which it returns. */
    std::vector<float> params() const
    {
        std::vector<float> p(param_count());
        get_params(p);
        return p;
    }

    /** Sets every projection from params [param_count()]
     * (attn_mha_set_params). */
    mha &set_params(in params)
    {
        detail::extent("attn::mha::set_params", "params", params,
                       static_cast<std::int64_t>(param_count()));
        check(attn_mha_set_params(h_.get(), params.data()));
        return *this;
    }

    /**
     * attn_mha_forward: query [batch, len_q, embed_dim], key [batch, len_kv,
     * kdim], value [batch, len_kv, vdim], out [batch, len_q, embed_dim];
     * weights empty or [batch, num_heads, len_q, len_kv]; m may be nullptr.
     */
    void forward(context &ctx, std::int64_t batch, std::int64_t len_q, std::int64_t len_kv,
                 in query, in key, in value, const mask *m, out o, out weights = {}) const
    {
        static const char fn[] = "attn::mha::forward";
        check_io(fn, batch, len_q, len_kv, query, key, value, o, weights);
        check(attn_mha_forward(ctx.get(), h_.get(), batch, len_q, len_kv, query.data(),
                               key.data(), value.data(), m ? m->get() : nullptr, o.data(),
                               detail::opt(weights)));
    }

    /**
     * attn_mha_forward_train: forward() that also fills act for backward(),
     * with dropout if set. act keeps a pointer to the mask m (the C
     * attn_mask it owns): m and the arrays it references must stay alive and
     * unchanged (not destroyed, moved from, cleared or set) until the last
     * backward that uses act.
     */
    void forward_train(context &ctx, std::int64_t batch, std::int64_t len_q,
                       std::int64_t len_kv, in query, in key, in value, const mask *m, out o,
                       out weights, activations &act) const
    {
        static const char fn[] = "attn::mha::forward_train";
        check_io(fn, batch, len_q, len_kv, query, key, value, o, weights);
        act.begin();
        check(attn_mha_forward_train(ctx.get(), h_.get(), batch, len_q, len_kv, query.data(),
                                     key.data(), value.data(), m ? m->get() : nullptr,
                                     o.data(), detail::opt(weights), act.get()));
        act.filled_ = {h_.get(), batch * len_q, batch * len_kv, embed_dim_};
    }

    /**
     * attn_mha_backward of the forward_train that filled act: d_out [batch,
     * len_q, embed_dim]; d_query [batch, len_q, embed_dim], d_key [batch,
     * len_kv, kdim], d_value [batch, len_kv, vdim] and d_params
     * [param_count()] are each an empty view (not computed) or overwritten.
     * Views of one buffer passed as two or three of d_query, d_key, d_value
     * receive their sum (self-attention).
     */
    void backward(context &ctx, const activations &act, in d_out, out d_query, out d_key,
                  out d_value, out d_params = {}) const
    {
        static const char fn[] = "attn::mha::backward";
        const activations::record &r = act.filled_by(fn, h_.get());
        detail::extent(fn, "d_out", d_out, detail::product({r.rows_q, embed_dim_}));
        detail::extent(fn, "d_query", d_query, detail::product({r.rows_q, embed_dim_}), true);
        detail::extent(fn, "d_key", d_key, detail::product({r.rows_kv, kdim_}), true);
        detail::extent(fn, "d_value", d_value, detail::product({r.rows_kv, vdim_}), true);
        detail::extent(fn, "d_params", d_params, static_cast<std::int64_t>(param_count()),
                       true);
        check(attn_mha_backward(ctx.get(), h_.get(), act.get(), d_out.data(),
                                detail::opt(d_query), detail::opt(d_key), detail::opt(d_value),
                                detail::opt(d_params)));
    }

    /**
     * attn_mha_forward_cached: projects query [total_q, embed_dim] (the new
     * tokens of the sequences seqs [n], rows as cu_q [n + 1] says), appends
     * their keys and values to cache, attends to every cached token of the
     * same sequence, and writes out [total_q, embed_dim]; total_q = cu_q[n].
     */
    void forward_cached(context &ctx, kv_cache &cache, view<const std::int64_t> seqs,
                        view<const std::int64_t> cu_q, in query, out o) const
    {
        static const char fn[] = "attn::mha::forward_cached";
        const std::int64_t total_q = detail::total_q(fn, seqs, cu_q);
        detail::extent(fn, "query", query, detail::product({total_q, embed_dim_}));
        detail::extent(fn, "out", o, detail::product({total_q, embed_dim_}));
        check(attn_mha_forward_cached(ctx.get(), h_.get(), cache.get(),
                                      static_cast<std::int64_t>(seqs.size()), seqs.data(),
                                      cu_q.data(), query.data(), o.data()));
    }

    /** The C handle, still owned by this object (nullptr after a move). */
    attn_mha *get() const noexcept { return h_.get(); }

private:
    using handle_type = detail::handle<attn_mha, attn_mha_destroy>;

    /* The extents of forward's and forward_train's tensors. */
    void check_io(const char *fn, std::int64_t batch, std::int64_t len_q, std::int64_t len_kv,
                  in query, in key, in value, out o, out weights) const
    {
        detail::extent(fn, "query", query, detail::product({batch, len_q, embed_dim_}));
        detail::extent(fn, "key", key, detail::product({batch, len_kv, kdim_}));
        detail::extent(fn, "value", value, detail::product({batch, len_kv, vdim_}));
        detail::extent(fn, "out", o, detail::product({batch, len_q, embed_dim_}));
        detail::extent(fn, "weights", weights,
                       detail::product({batch, num_heads_, len_q, len_kv}), true);
    }

    std::int64_t embed_dim_, num_heads_, kdim_, vdim_;
    std::int64_t kv_dim_ = 0;
    bool bias_;
    handle_type h_;
};

/**
 * Owns an attn_additive: additive (Bahdanau) attention
 * (attn_additive_create). Concurrent forward, forward_train and backward
 * calls may share it, each with its own context (and activations); setters
 * must not overlap any call on it. Move-only.
 */
class additive {
public:
    /** attn_additive_create(query_dim, key_dim, hidden). */
    additive(std::int64_t query_dim, std::int64_t key_dim, std::int64_t hidden)
        : query_dim_(query_dim), key_dim_(key_dim), hidden_(hidden)
    {
        attn_additive *op = nullptr;
        check(attn_additive_create(&op, query_dim, key_dim, hidden));
        h_ = handle_type(op);
    }

    /** attn_additive_set_weights: w_q [hidden, query_dim], w_k [hidden,
     * key_dim], w_v [hidden]. */
    additive &set_weights(in w_q, in w_k, in w_v)
    {
        static const char fn[] = "attn::additive::set_weights";
        detail::extent(fn, "w_q", w_q, detail::product({hidden_, query_dim_}));
        detail::extent(fn, "w_k", w_k, detail::product({hidden_, key_dim_}));
        detail::extent(fn, "w_v", w_v, hidden_);
        check(attn_additive_set_weights(h_.get(), w_q.data(), w_k.data(), w_v.data()));
        return *this;
    }

    /**
     * attn_additive_forward: queries [batch, len_q, query_dim], keys [batch,
     * len_kv, key_dim], values [batch, len_kv, dim_v], out [batch, len_q,
     * dim_v]; weights empty or [batch, len_q, len_kv]; m may be nullptr.
     */
    void forward(context &ctx, std::int64_t batch, std::int64_t len_q, std::int64_t len_kv,
                 std::int64_t dim_v, in queries, in keys, in values, const mask *m, out o,
                 out weights = {}) const
    {
        static const char fn[] = "attn::additive::forward";
        check_io(fn, batch, len_q, len_kv, dim_v, queries, keys, values, o, weights);
        check(attn_additive_forward(ctx.get(), h_.get(), batch, len_q, len_kv, dim_v,
                                    queries.data(), keys.data(), values.data(),
                                    m ? m->get() : nullptr, o.data(), detail::opt(weights)));
    }

    /** The number of floats of the flat parameter vector
     * (attn_additive_param_count): hidden · (query_dim + key_dim + 1). */
    std::size_t param_count() const
    {
        std::int64_t n = 0;
        check(attn_additive_param_count(h_.get(), &n));
        return static_cast<std::size_t>(n);
    }

    /** Copies W_q, W_k, w_v into params [param_count()]
     * (attn_additive_get_params). */
    void get_params(out params) const
    {
        detail::extent("attn::additive::get_params", "params", params,
                       static_cast<std::int64_t>(param_count()));
        check(attn_additive_get_params(h_.get(), params.data()));
    }

    /** get_params() into a new vector, which it returns. */
    std::vector<float> params() const
    {
        std::vector<float> p(param_count());
        get_params(p);
        return p;
    }

    /** Sets W_q, W_k, w_v from params [param_count()]
     * (attn_additive_set_params). */
    additive &set_params(in params)
    {
        detail::extent("attn::additive::set_params", "params", params,
                       static_cast<std::int64_t>(param_count()));
        check(attn_additive_set_params(h_.get(), params.data()));
        return *this;
    }

    /** attn_additive_forward_train: forward() that also fills act for
     * backward(); act keeps a pointer to the mask m: m and its arrays must
     * stay alive and unchanged until the last backward that uses act. */
    void forward_train(context &ctx, std::int64_t batch, std::int64_t len_q,
                       std::int64_t len_kv, std::int64_t dim_v, in queries, in keys, in values,
                       const mask *m, out o, out weights, activations &act) const
    {
        static const char fn[] = "attn::additive::forward_train";
        check_io(fn, batch, len_q, len_kv, dim_v, queries, keys, values, o, weights);
        act.begin();
        check(attn_additive_forward_train(ctx.get(), h_.get(), batch, len_q, len_kv, dim_v,
                                          queries.data(), keys.data(), values.data(),
                                          m ? m->get() : nullptr, o.data(),
                                          detail::opt(weights), act.get()));
        act.filled_ = {h_.get(), batch * len_q, batch * len_kv, dim_v};
    }

    /**
     * attn_additive_backward of the forward_train that filled act: d_out
     * [batch, len_q, dim_v]; d_queries [batch, len_q, query_dim], d_keys
     * [batch, len_kv, key_dim], d_values [batch, len_kv, dim_v] and d_params
     * [param_count()] are each an empty view or overwritten (outputs of one
     * shape passed as one buffer receive their sum).
     */
    void backward(context &ctx, const activations &act, in d_out, out d_queries, out d_keys,
                  out d_values, out d_params = {}) const
    {
        static const char fn[] = "attn::additive::backward";
        const activations::record &r = act.filled_by(fn, h_.get());
        detail::extent(fn, "d_out", d_out, detail::product({r.rows_q, r.dim_v}));
        detail::extent(fn, "d_queries", d_queries, detail::product({r.rows_q, query_dim_}),
                       true);
        detail::extent(fn, "d_keys", d_keys, detail::product({r.rows_kv, key_dim_}), true);
        detail::extent(fn, "d_values", d_values, detail::product({r.rows_kv, r.dim_v}), true);
        detail::extent(fn, "d_params", d_params, static_cast<std::int64_t>(param_count()),
                       true);
        check(attn_additive_backward(ctx.get(), h_.get(), act.get(), d_out.data(),
                                     detail::opt(d_queries), detail::opt(d_keys),
                                     detail::opt(d_values), detail::opt(d_params)));
    }

    /** The C handle, still owned by this object (nullptr after a move). */
    attn_additive *get() const noexcept { return h_.get(); }

private:
    using handle_type = detail::handle<attn_additive, attn_additive_destroy>;

    /* The extents of forward's and forward_train's tensors. */
    void check_io(const char *fn, std::int64_t batch, std::int64_t len_q, std::int64_t len_kv,
                  std::int64_t dim_v, in queries, in keys, in values, out o, out weights) const
    {
        detail::extent(fn, "queries", queries, detail::product({batch, len_q, query_dim_}));
        detail::extent(fn, "keys", keys, detail::product({batch, len_kv, key_dim_}));
        detail::extent(fn, "values", values, detail::product({batch, len_kv, dim_v}));
        detail::extent(fn, "out", o, detail::product({batch, len_q, dim_v}));
        detail::extent(fn, "weights", weights, detail::product({batch, len_q, len_kv}), true);
    }

    std::int64_t query_dim_, key_dim_, hidden_;
    handle_type h_;
};

/**
 * Owns an attn_encoder_layer: one Transformer encoder layer with the numbers
 * of PyTorch's nn.TransformerEncoderLayer(batch_first=True)
 * (attn_encoder_layer_create; Vaswani et al. 2017 §3.1, D2L §10.7). Its
 * parameters are unset until set_params. Concurrent forward calls may share
 * it, each with its own context; setters must not overlap them. Move-only.
 */
class encoder_layer {
public:
    /** attn_encoder_layer_create(d_model, nhead, dim_feedforward, activation,
     * norm_first, layer_norm_eps). */
    encoder_layer(std::int64_t d_model, std::int64_t nhead, std::int64_t dim_feedforward,
                  attn_activation activation = ATTN_ACTIVATION_RELU, bool norm_first = false,
                  float layer_norm_eps = 1e-5f)
        : d_model_(d_model)
    {
        attn_encoder_layer *l = nullptr;
        check(attn_encoder_layer_create(&l, d_model, nhead, dim_feedforward, activation,
                                        norm_first ? 1 : 0, layer_norm_eps));
        h_ = handle_type(l);
    }

    /** The self-attention's causal mask (attn_encoder_layer_set_causal). */
    encoder_layer &set_causal(attn_causal causal)
    {
        check(attn_encoder_layer_set_causal(h_.get(), causal));
        return *this;
    }

    /** Dropout p in [0, 1) where PyTorch's layer drops in training mode,
     * masks a function of seed (attn_encoder_layer_set_dropout). */
    encoder_layer &set_dropout(float p, std::uint64_t seed)
    {
        check(attn_encoder_layer_set_dropout(h_.get(), p, seed));
        return *this;
    }

    /** The number of floats of the flat parameter vector
     * (attn_encoder_layer_param_count). */
    std::size_t param_count() const
    {
        std::int64_t n = 0;
        check(attn_encoder_layer_param_count(h_.get(), &n));
        return static_cast<std::size_t>(n);
    }

    /** Copies the parameters into params [param_count()], in the order of
     * nn.TransformerEncoderLayer's named_parameters()
     * (attn_encoder_layer_get_params). */
    void get_params(out params) const
    {
        detail::extent("attn::encoder_layer::get_params", "params", params,
                       static_cast<std::int64_t>(param_count()));
        check(attn_encoder_layer_get_params(h_.get(), params.data()));
    }

    /** get_params() into a new vector, which it returns. */
    std::vector<float> params() const
    {
        std::vector<float> p(param_count());
        get_params(p);
        return p;
    }

    /** Sets every parameter from params [param_count()]
     * (attn_encoder_layer_set_params). */
    encoder_layer &set_params(in params)
    {
        detail::extent("attn::encoder_layer::set_params", "params", params,
                       static_cast<std::int64_t>(param_count()));
        check(attn_encoder_layer_set_params(h_.get(), params.data()));
        return *this;
    }

    /** Inference (attn_encoder_layer_forward with act NULL): out [batch, len,
     * d_model] from src of the same extent (out may be src); m may be
     * nullptr. */
    void forward(context &ctx, std::int64_t batch, std::int64_t len, in src, const mask *m,
                 out o) const
    {
        check_rows("attn::encoder_layer::forward", batch, len, src, o);
        check(attn_encoder_layer_forward(ctx.get(), h_.get(), batch, len, src.data(),
                                         m ? m->get() : nullptr, o.data(), nullptr));
    }

    /** The training forward (attn_encoder_layer_forward with act): dropout as
     * set, and act keeps what backward() needs and a pointer to the mask m:
     * m and its arrays must stay alive and unchanged until the last backward
     * that uses act. */
    void forward_train(context &ctx, std::int64_t batch, std::int64_t len, in src,
                       const mask *m, out o, activations &act) const
    {
        check_rows("attn::encoder_layer::forward_train", batch, len, src, o);
        act.begin();
        check(attn_encoder_layer_forward(ctx.get(), h_.get(), batch, len, src.data(),
                                         m ? m->get() : nullptr, o.data(), act.get()));
        act.filled_ = {h_.get(), batch * len, batch * len, d_model_};
    }

    /** attn_encoder_layer_backward of the forward_train that filled act:
     * d_out and d_src [batch, len, d_model], d_params [param_count()]; d_src
     * and d_params are each an empty view (not computed) or overwritten. */
    void backward(context &ctx, const activations &act, in d_out, out d_src,
                  out d_params = {}) const
    {
        static const char fn[] = "attn::encoder_layer::backward";
        const activations::record &r = act.filled_by(fn, h_.get());
        detail::extent(fn, "d_out", d_out, detail::product({r.rows_q, d_model_}));
        detail::extent(fn, "d_src", d_src, detail::product({r.rows_q, d_model_}), true);
        detail::extent(fn, "d_params", d_params, static_cast<std::int64_t>(param_count()),
                       true);
        check(attn_encoder_layer_backward(ctx.get(), h_.get(), act.get(), d_out.data(),
                                          detail::opt(d_src), detail::opt(d_params)));
    }

    /** attn_encoder_layer_forward_cached: the new tokens src [total_q,
     * d_model] of the sequences seqs [n] (rows as cu_q [n + 1] says) through
     * the causal layer with cache (heads_kv = nhead, dims d_model / nhead);
     * out [total_q, d_model] may be src. */
    void forward_cached(context &ctx, kv_cache &cache, view<const std::int64_t> seqs,
                        view<const std::int64_t> cu_q, in src, out o) const
    {
        static const char fn[] = "attn::encoder_layer::forward_cached";
        const std::int64_t total_q = detail::total_q(fn, seqs, cu_q);
        detail::extent(fn, "src", src, detail::product({total_q, d_model_}));
        detail::extent(fn, "out", o, detail::product({total_q, d_model_}));
        check(attn_encoder_layer_forward_cached(ctx.get(), h_.get(), cache.get(),
                                                static_cast<std::int64_t>(seqs.size()),
                                                seqs.data(), cu_q.data(), src.data(),
                                                o.data()));
    }

    /** The C handle, still owned by this object (nullptr after a move). */
    attn_encoder_layer *get() const noexcept { return h_.get(); }

private:
    using handle_type = detail::handle<attn_encoder_layer, attn_encoder_layer_destroy>;

    void check_rows(const char *fn, std::int64_t batch, std::int64_t len, in src, out o) const
    {
        detail::extent(fn, "src", src, detail::product({batch, len, d_model_}));
        detail::extent(fn, "out", o, detail::product({batch, len, d_model_}));
    }

    std::int64_t d_model_;
    handle_type h_;
};

/**
 * attn_nadaraya_watson: n_queries = queries.size(), n_keys = keys.size();
 * values has n_keys elements, out n_queries, weights is empty or
 * [n_queries, n_keys].
 */
inline void nadaraya_watson(context &ctx, in queries, in keys, in values, float w, out o,
                            out weights = {})
{
    static const char fn[] = "attn::nadaraya_watson";
    const auto nq = static_cast<std::int64_t>(queries.size());
    const auto nk = static_cast<std::int64_t>(keys.size());
    detail::extent(fn, "values", values, nk);
    detail::extent(fn, "out", o, nq);
    detail::extent(fn, "weights", weights, detail::product({nq, nk}), true);
    check(attn_nadaraya_watson(ctx.get(), nq, nk, queries.data(), keys.data(), values.data(), w,
                               o.data(), detail::opt(weights)));
}

/**
 * attn_nadaraya_watson_backward: the gradients of nadaraya_watson() with the
 * same queries, keys, values and w, given d_out [n_queries]; d_queries
 * [n_queries], d_keys and d_values [n_keys] are each an empty view (not
 * computed) or overwritten. Returns ∂L/∂w, the kernel width's gradient
 * (D2L §10.2.4).
 */
inline float nadaraya_watson_backward(context &ctx, in queries, in keys, in values, float w,
                                      in d_out, out d_queries = {}, out d_keys = {},
                                      out d_values = {})
{
    static const char fn[] = "attn::nadaraya_watson_backward";
    const auto nq = static_cast<std::int64_t>(queries.size());
    const auto nk = static_cast<std::int64_t>(keys.size());
    detail::extent(fn, "values", values, nk);
    detail::extent(fn, "d_out", d_out, nq);
    detail::extent(fn, "d_queries", d_queries, nq, true);
    detail::extent(fn, "d_keys", d_keys, nk, true);
    detail::extent(fn, "d_values", d_values, nk, true);
    float d_w = 0.0f;
    check(attn_nadaraya_watson_backward(ctx.get(), nq, nk, queries.data(), keys.data(),
                                        values.data(), w, d_out.data(), detail::opt(d_queries),
                                        detail::opt(d_keys), detail::opt(d_values), &d_w));
    return d_w;
}

/** attn_layer_norm: y [rows, features] = the normalised rows of x [rows,
 * features], times weight [features], plus bias [features]; y may be x. */
inline void layer_norm(std::int64_t rows, std::int64_t features, in x, in weight, in bias,
                       float eps, out y)
{
    static const char fn[] = "attn::layer_norm";
    detail::extent(fn, "x", x, detail::product({rows, features}));
    detail::extent(fn, "weight", weight, features);
    detail::extent(fn, "bias", bias, features);
    detail::extent(fn, "y", y, detail::product({rows, features}));
    check(attn_layer_norm(rows, features, x.data(), weight.data(), bias.data(), eps, y.data()));
}

/** attn_layer_norm_backward: given d_y [rows, features], d_x [rows,
 * features], d_weight and d_bias [features], each an empty view (not
 * computed) or overwritten; d_x may be d_y. */
inline void layer_norm_backward(std::int64_t rows, std::int64_t features, in x, in weight,
                                float eps, in d_y, out d_x, out d_weight = {},
                                out d_bias = {})
{
    static const char fn[] = "attn::layer_norm_backward";
    detail::extent(fn, "x", x, detail::product({rows, features}));
    detail::extent(fn, "weight", weight, features);
    detail::extent(fn, "d_y", d_y, detail::product({rows, features}));
    detail::extent(fn, "d_x", d_x, detail::product({rows, features}), true);
    detail::extent(fn, "d_weight", d_weight, features, true);
    detail::extent(fn, "d_bias", d_bias, features, true);
    check(attn_layer_norm_backward(rows, features, x.data(), weight.data(), eps, d_y.data(),
                                   detail::opt(d_x), detail::opt(d_weight),
                                   detail::opt(d_bias)));
}

/**
 * attn_merge_partials: the exact attention over the union of disjoint key
 * sets from each part's output outs[p] [rows, dim_v] and log-sum-exp
 * lses[p] [rows]; out [rows, dim_v] and lse [rows] may be outs[0] and
 * lses[0] (in place).
 */
inline void merge_partials(std::int64_t rows, std::int64_t dim_v, const std::vector<in> &outs,
                           const std::vector<in> &lses, out o, out lse)
{
    static const char fn[] = "attn::merge_partials";
    if (outs.size() != lses.size())
        throw error(ATTN_ERR_SHAPE_MISMATCH, std::string(fn) + ": " +
                                                 std::to_string(outs.size()) + " outs but " +
                                                 std::to_string(lses.size()) + " lses");
    std::vector<const float *> out_ptrs, lse_ptrs;
    for (std::size_t p = 0; p < outs.size(); p++) {
        const std::string i = "[" + std::to_string(p) + "]";
        detail::extent(fn, ("outs" + i).c_str(), outs[p], detail::product({rows, dim_v}));
        detail::extent(fn, ("lses" + i).c_str(), lses[p], rows);
        out_ptrs.push_back(outs[p].data());
        lse_ptrs.push_back(lses[p].data());
    }
    detail::extent(fn, "out", o, detail::product({rows, dim_v}));
    detail::extent(fn, "lse", lse, rows);
    check(attn_merge_partials(static_cast<std::int64_t>(outs.size()), rows, dim_v,
                              out_ptrs.data(), lse_ptrs.data(), o.data(), lse.data()));
}

/** attn_positional_encoding into o, which has len × dim elements. */
inline void positional_encoding(out o, std::int64_t len, std::int64_t dim,
                                std::int64_t start = 0, float base = 10000.0f)
{
    detail::extent("attn::positional_encoding", "out", o, detail::product({len, dim}));
    check(attn_positional_encoding(o.data(), len, dim, start, base));
}

/** attn_positional_encoding into a new [len, dim] vector, which it returns. */
inline std::vector<float> positional_encoding(std::int64_t len, std::int64_t dim,
                                              std::int64_t start = 0, float base = 10000.0f)
{
    const std::int64_t n = detail::product({len, dim});
    std::vector<float> o(n > 0 ? static_cast<std::size_t>(n) : 0);
    check(attn_positional_encoding(o.data(), len, dim, start, base));
    return o;
}

}  // namespace attn

#endif /* ATTN_HPP */
