/**
 * @file attn.hpp
 * @brief libattn from C++17: owners, exceptions and checked views (header only).
 *
 * A thin layer over attn.h. Every C handle has a move-only owner that
 * destroys it (attn::context, attn::mask, attn::sdpa, attn::mha,
 * attn::additive); every failing call throws attn::error, which carries the
 * attn_status and the attn_last_error() text; and every tensor is passed as
 * an attn::view, a pointer and an extent made from a std::vector, a
 * std::array, a C array or a pointer and a count. The owners remember the
 * sizes they were made with, so a view whose extent does not match its
 * tensor throws ATTN_ERR_SHAPE_MISMATCH before libattn reads a byte.
 *
 * Everything here is inline: the wrapper adds no symbol to libattn.so and
 * needs no library of its own. Enum types (attn_layout, attn_causal,
 * attn_proj) and status values are those of attn.h.
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
 * (attn_mha_create). Move-only.
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

    /**
     * attn_mha_forward: query [batch, len_q, embed_dim], key [batch, len_kv,
     * kdim], value [batch, len_kv, vdim], out [batch, len_q, embed_dim];
     * weights empty or [batch, num_heads, len_q, len_kv]; m may be nullptr.
     */
    void forward(context &ctx, std::int64_t batch, std::int64_t len_q, std::int64_t len_kv,
                 in query, in key, in value, const mask *m, out o, out weights = {}) const
    {
        static const char fn[] = "attn::mha::forward";
        detail::extent(fn, "query", query, detail::product({batch, len_q, embed_dim_}));
        detail::extent(fn, "key", key, detail::product({batch, len_kv, kdim_}));
        detail::extent(fn, "value", value, detail::product({batch, len_kv, vdim_}));
        detail::extent(fn, "out", o, detail::product({batch, len_q, embed_dim_}));
        detail::extent(fn, "weights", weights,
                       detail::product({batch, num_heads_, len_q, len_kv}), true);
        check(attn_mha_forward(ctx.get(), h_.get(), batch, len_q, len_kv, query.data(),
                               key.data(), value.data(), m ? m->get() : nullptr, o.data(),
                               detail::opt(weights)));
    }

    /** The C handle, still owned by this object (nullptr after a move). */
    attn_mha *get() const noexcept { return h_.get(); }

private:
    using handle_type = detail::handle<attn_mha, attn_mha_destroy>;

    std::int64_t embed_dim_, num_heads_, kdim_, vdim_;
    std::int64_t kv_dim_ = 0;
    bool bias_;
    handle_type h_;
};

/**
 * Owns an attn_additive: additive (Bahdanau) attention
 * (attn_additive_create). Move-only.
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
        detail::extent(fn, "queries", queries, detail::product({batch, len_q, query_dim_}));
        detail::extent(fn, "keys", keys, detail::product({batch, len_kv, key_dim_}));
        detail::extent(fn, "values", values, detail::product({batch, len_kv, dim_v}));
        detail::extent(fn, "out", o, detail::product({batch, len_q, dim_v}));
        detail::extent(fn, "weights", weights, detail::product({batch, len_q, len_kv}), true);
        check(attn_additive_forward(ctx.get(), h_.get(), batch, len_q, len_kv, dim_v,
                                    queries.data(), keys.data(), values.data(),
                                    m ? m->get() : nullptr, o.data(), detail::opt(weights)));
    }

    /** The C handle, still owned by this object (nullptr after a move). */
    attn_additive *get() const noexcept { return h_.get(); }

private:
    using handle_type = detail::handle<attn_additive, attn_additive_destroy>;

    std::int64_t query_dim_, key_dim_, hidden_;
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
