// test_cxx_wrapper.cpp — include/attn.hpp, the header-only C++17 wrapper:
// every owner and function gives libattn's numbers (checked against float64
// references written here or in test_util.c), owners are move-only and free
// their handle once, views check extents, and failures throw attn::error
// with the status and attn_last_error()'s text, leaving outputs untouched.
#include <attn.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

extern "C" {
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "test_util.h"
}

namespace {

// ---- the wrapper's types ----------------------------------------------

static_assert(!std::is_copy_constructible<attn::context>::value, "owners are move-only");
static_assert(!std::is_copy_assignable<attn::mask>::value, "owners are move-only");
static_assert(!std::is_copy_constructible<attn::sdpa>::value, "owners are move-only");
static_assert(!std::is_copy_constructible<attn::mha>::value, "owners are move-only");
static_assert(!std::is_copy_constructible<attn::additive>::value, "owners are move-only");
static_assert(std::is_nothrow_move_constructible<attn::context>::value, "cheap moves");
static_assert(std::is_nothrow_move_assignable<attn::sdpa>::value, "cheap moves");
static_assert(std::is_nothrow_move_constructible<attn::mask>::value, "cheap moves");
static_assert(std::is_base_of<std::runtime_error, attn::error>::value, "a std exception");
// A mask keeps a pointer to its arrays: temporaries are refused at compile time.
template <class M, class = void>
struct takes_temporary : std::false_type {};
template <class M>
struct takes_temporary<M, decltype(void(std::declval<M &>().set_kv_lengths(
                              std::vector<std::int64_t>{1}, 1)))> : std::true_type {};
static_assert(!takes_temporary<attn::mask>::value, "mask setters refuse temporaries");

// The UvA tutorial 6 example (the seed).
const std::vector<float> uva_q = {0.3367f, 0.1288f, 0.2345f, 0.2303f, -1.1229f, -0.1863f};
const std::vector<float> uva_k = {2.2082f, -0.6380f, 0.4617f, 0.2674f, 0.5349f, 0.8094f};
const std::vector<float> uva_v = {1.1103f, -1.6898f, -0.9890f, 0.9580f, 1.3221f, 0.8172f};
const float uva_values[] = {0.5698f, -0.1520f, 0.5379f, -0.0265f, 0.2246f, 0.5556f};
const float uva_attention[] = {0.4028f, 0.2886f, 0.3086f, 0.3538f, 0.3069f,
                               0.3393f, 0.1303f, 0.4630f, 0.4067f};

std::vector<float> normal(tu_rng *rng, std::size_t n)
{
    std::vector<float> x(n);
    tu_fill_normal(rng, x.data(), n, 0.0f, 1.0f);
    return x;
}

void assert_close(const std::vector<float> &got, const std::vector<double> &want,
                  std::int64_t row, double tol)
{
    assert_int_equal(got.size(), want.size());
    std::int64_t worst = -1;
    double err = tu_max_err(got.data(), want.data(), (std::int64_t)got.size(), row, &worst);
    if (!(err <= tol))
        fail_msg("max error %g at %lld (got %g, want %g)", err, (long long)worst,
                 (double)got[(std::size_t)worst], want[(std::size_t)worst]);
}

// Expects `body` to throw attn::error with this status and detail.
template <class F>
void expect_error(F body, attn_status status, const char *detail)
{
    try {
        body();
    } catch (const attn::error &e) {
        assert_int_equal(e.status(), status);
        assert_string_equal(e.detail().c_str(), detail);
        assert_non_null(std::strstr(e.what(), detail));
        assert_non_null(std::strstr(e.what(), attn_status_string(status)));
        return;
    }
    fail_msg("no attn::error thrown (wanted %s)", attn_status_string(status));
}

// ---- tests -------------------------------------------------------------

void version_matches_header(void **)
{
    assert_string_equal(attn::version().c_str(), ATTN_VERSION_STRING);
    assert_int_equal(attn::version_number(), ATTN_VERSION_NUMBER);
}

void sdpa_reproduces_uva_example(void **)
{
    attn::context ctx;
    attn::sdpa op(1, 1, 1, 3, 3, 2, 2);
    std::vector<float> out = op.run(ctx, uva_q, uva_k, uva_v);
    for (int i = 0; i < 6; i++)
        assert_true(std::fabs(out[(std::size_t)i] - uva_values[i]) <= 2e-4f);

    std::vector<float> weights(op.weights_size()), lse(op.lse_size());
    std::vector<float> out2(op.out_size());
    op.forward(ctx, uva_q, uva_k, uva_v, nullptr, out2, weights, lse);
    assert_memory_equal(out.data(), out2.data(), out.size() * sizeof(float));
    for (int i = 0; i < 9; i++)
        assert_true(std::fabs(weights[(std::size_t)i] - uva_attention[i]) <= 1e-4f);
    // lse[i] = log Σ_j exp(q_i·k_j / sqrt(2)), in double.
    for (int i = 0; i < 3; i++) {
        double s = 0;
        for (int j = 0; j < 3; j++)
            s += std::exp((uva_q[2 * i] * (double)uva_k[2 * j] +
                           uva_q[2 * i + 1] * (double)uva_k[2 * j + 1]) / std::sqrt(2.0));
        assert_true(std::fabs(lse[(std::size_t)i] - std::log(s)) <= 1e-5);
    }
}

void views_from_arrays_and_pointers(void **)
{
    attn::context ctx(1);
    attn::sdpa op(1, 1, 1, 3, 3, 2, 2);
    const float q[6] = {0.3367f, 0.1288f, 0.2345f, 0.2303f, -1.1229f, -0.1863f};
    std::array<float, 6> k{};
    std::memcpy(k.data(), uva_k.data(), sizeof(float) * 6);
    float out[6];
    op.forward(ctx, q, k, attn::in(uva_v.data(), uva_v.size()), nullptr, attn::out(out, 6));
    for (int i = 0; i < 6; i++)
        assert_true(std::fabs(out[i] - uva_values[i]) <= 2e-4f);
    attn::view<float> mutable_view(out, 6);
    attn::in as_input = mutable_view;   // float view -> const float view
    assert_ptr_equal(as_input.data(), out);
    assert_int_equal(as_input.size(), 6);
    assert_true(attn::in().empty());
}

// GQA, both causal alignments, every mask kind, a custom scale and both
// layouts, against test_util's float64 reference.
void sdpa_masks_layouts_gqa(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 7);
    const std::int64_t B = 2, Hq = 4, Hkv = 2, Lq = 5, Lkv = 7, D = 8, Dv = 6;
    std::vector<float> q = normal(&rng, B * Hq * Lq * D), k = normal(&rng, B * Hkv * Lkv * D),
                       v = normal(&rng, B * Hkv * Lkv * Dv);
    std::vector<std::int64_t> lengths = {7, 4};
    std::vector<std::uint8_t> keep((std::size_t)(B * Lkv));
    for (std::size_t i = 0; i < keep.size(); i++)
        keep[i] = (std::uint8_t)(i % 3 != 1);
    std::vector<float> bias = normal(&rng, (std::size_t)(Hq * Lq * Lkv));

    attn::mask m;
    m.set_kv_lengths(lengths, B).set_bool(keep, B, 1, 1, Lkv).set_bias(bias, 1, Hq, Lq, Lkv);
    ref_mask rm{};
    rm.lengths = lengths.data();
    rm.keep = keep.data();
    rm.keep_b = B, rm.keep_h = 1, rm.keep_q = 1;
    rm.bias = bias.data();
    rm.bias_b = 1, rm.bias_h = Hq, rm.bias_q = Lq;

    attn::context ctx;
    for (attn_causal causal : {ATTN_CAUSAL_NONE, ATTN_CAUSAL_TOP_LEFT, ATTN_CAUSAL_BOTTOM_RIGHT})
        for (attn_layout layout : {ATTN_LAYOUT_BHSD, ATTN_LAYOUT_BSHD}) {
            attn::sdpa op(B, Hq, Hkv, Lq, Lkv, D, Dv);
            op.set_causal(causal).set_layout(layout).set_scale(0.3f);
            std::vector<float> out(op.out_size()), w(op.weights_size()), lse(op.lse_size());
            op.forward(ctx, q, k, v, &m, out, w, lse);

            ref_shape s{B, Hq, Hkv, Lq, Lkv, D, Dv, (int)layout, (int)causal, 0.3f, nullptr};
            std::vector<double> rout(out.size()), rw(w.size()), rlse(lse.size());
            assert_int_equal(ref_sdpa(&s, q.data(), k.data(), v.data(), &rm, rout.data(),
                                      rw.data(), rlse.data()),
                             0);
            assert_close(out, rout, layout == ATTN_LAYOUT_BHSD ? Dv : Hq * Dv, 1e-5);
            assert_close(w, rw, Lkv, 1e-5);
            std::int64_t worst;
            assert_true(tu_max_err_lse(lse.data(), rlse.data(), (std::int64_t)lse.size(),
                                       &worst) <= 1e-5);
        }

    // Per-query lengths and clear().
    std::vector<std::int64_t> per_query((std::size_t)(B * Lq));
    for (std::size_t i = 0; i < per_query.size(); i++)
        per_query[i] = (std::int64_t)(i % (std::size_t)(Lkv + 1));
    m.clear().set_kv_lengths_per_query(per_query, B, Lq);
    ref_mask rq{};
    rq.lengths = per_query.data();
    rq.per_query = 1;
    attn::sdpa op(B, Hq, Hkv, Lq, Lkv, D, Dv);
    std::vector<float> out = op.run(ctx, q, k, v, &m);
    ref_shape s{B, Hq, Hkv, Lq, Lkv, D, Dv, 0, 0, 1.0 / std::sqrt((double)D), nullptr};
    s.scale = (float)(1.0 / std::sqrt((double)D));
    std::vector<double> rout(out.size());
    assert_int_equal(ref_sdpa(&s, q.data(), k.data(), v.data(), &rq, rout.data(), nullptr,
                              nullptr),
                     0);
    assert_close(out, rout, Dv, 1e-5);
}

// Results are the same for any thread count, through the wrapper too.
void context_threads(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 11);
    attn::sdpa op(2, 4, 4, 130, 70, 16, 16);
    std::vector<float> q = normal(&rng, op.q_size()), k = normal(&rng, op.k_size()),
                       v = normal(&rng, op.v_size());
    attn::context one(1), two(2);
    std::vector<float> a = op.run(one, q, k, v), b = op.run(two, q, k, v);
    assert_memory_equal(a.data(), b.data(), a.size() * sizeof(float));
}

// attn::mha against a float64 transcription of attn.h's MHA formula.
void mha_matches_reference(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 3);
    const std::int64_t E = 8, H = 4, Hkv = 2, kd = 5, vd = 3, B = 2, L = 3, S = 4;
    const std::int64_t hd = E / H, kv = Hkv * hd;
    std::vector<float> wq = normal(&rng, E * E), wk = normal(&rng, kv * kd),
                       wv = normal(&rng, kv * vd), wo = normal(&rng, E * E);
    std::vector<float> bq = normal(&rng, E), bk = normal(&rng, kv), bv = normal(&rng, kv),
                       bo = normal(&rng, E);
    std::vector<float> x = normal(&rng, B * L * E), key = normal(&rng, B * S * kd),
                       val = normal(&rng, B * S * vd);

    attn::mha layer(E, H, Hkv, kd, vd, true);
    layer.set_weights(ATTN_PROJ_Q, wq, bq)
        .set_weights(ATTN_PROJ_K, wk, bk)
        .set_weights(ATTN_PROJ_V, wv, bv)
        .set_weights(ATTN_PROJ_O, wo, bo)
        .set_causal(ATTN_CAUSAL_BOTTOM_RIGHT);
    attn::context ctx;
    std::vector<float> out((std::size_t)(B * L * E)), w((std::size_t)(B * H * L * S));
    layer.forward(ctx, B, L, S, x, key, val, nullptr, out, w);

    auto linear = [](const std::vector<float> &in, std::int64_t rows, std::int64_t n_in,
                     const std::vector<float> &wt, const std::vector<float> &b,
                     std::int64_t n_out) {
        std::vector<double> y((std::size_t)(rows * n_out));
        for (std::int64_t r = 0; r < rows; r++)
            for (std::int64_t o = 0; o < n_out; o++) {
                double s = b[(std::size_t)o];
                for (std::int64_t i = 0; i < n_in; i++)
                    s += (double)in[(std::size_t)(r * n_in + i)] * wt[(std::size_t)(o * n_in + i)];
                y[(std::size_t)(r * n_out + o)] = s;
            }
        return y;
    };
    std::vector<double> Q = linear(x, B * L, E, wq, bq, E), K = linear(key, B * S, kd, wk, bk, kv),
                        V = linear(val, B * S, vd, wv, bv, kv);
    std::vector<double> A((std::size_t)(B * L * E)), rw(w.size());
    for (std::int64_t b = 0; b < B; b++)
        for (std::int64_t h = 0; h < H; h++) {
            std::int64_t g = h / (H / Hkv);
            for (std::int64_t i = 0; i < L; i++) {
                std::vector<double> l((std::size_t)S);
                double m = -INFINITY, sum = 0;
                std::int64_t visible = i + S - L;   // bottom-right: j <= i + S - L
                for (std::int64_t j = 0; j <= visible; j++) {
                    double d = 0;
                    for (std::int64_t c = 0; c < hd; c++)
                        d += Q[(std::size_t)((b * L + i) * E + h * hd + c)] *
                             K[(std::size_t)((b * S + j) * kv + g * hd + c)];
                    l[(std::size_t)j] = d / std::sqrt((double)hd);
                    m = std::fmax(m, l[(std::size_t)j]);
                }
                for (std::int64_t j = 0; j <= visible; j++)
                    sum += std::exp(l[(std::size_t)j] - m);
                for (std::int64_t j = 0; j <= visible; j++) {
                    double p = std::exp(l[(std::size_t)j] - m) / sum;
                    rw[(std::size_t)(((b * H + h) * L + i) * S + j)] = p;
                    for (std::int64_t c = 0; c < hd; c++)
                        A[(std::size_t)((b * L + i) * E + h * hd + c)] +=
                            p * V[(std::size_t)((b * S + j) * kv + g * hd + c)];
                }
            }
        }
    std::vector<double> rout((std::size_t)(B * L * E));
    for (std::int64_t r = 0; r < B * L; r++)
        for (std::int64_t o = 0; o < E; o++) {
            double s = bo[(std::size_t)o];
            for (std::int64_t i = 0; i < E; i++)
                s += A[(std::size_t)(r * E + i)] * wo[(std::size_t)(o * E + i)];
            rout[(std::size_t)(r * E + o)] = s;
        }
    assert_close(out, rout, E, 1e-4);
    assert_close(w, rw, S, 1e-5);

    // The PyTorch-shaped constructor: kdim = vdim = embed_dim, no bias.
    attn::mha plain(E, H, false);
    plain.set_weights(ATTN_PROJ_Q, wq).set_weights(ATTN_PROJ_K, wo);
    expect_error([&] { plain.forward(ctx, B, L, L, x, x, x, nullptr, out); }, ATTN_ERR_STATE,
                 "attn_mha_forward: projection(s) V, O not set: "
                 "call attn_mha_set_weights for each");
}

void additive_matches_reference(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 5);
    const std::int64_t B = 2, L = 3, S = 4, qd = 5, kd = 2, hid = 6, dv = 3;
    std::vector<float> wq = normal(&rng, hid * qd), wk = normal(&rng, hid * kd),
                       wv = normal(&rng, hid);
    std::vector<float> q = normal(&rng, B * L * qd), k = normal(&rng, B * S * kd),
                       v = normal(&rng, B * S * dv);
    std::vector<std::int64_t> lengths = {2, 4};
    attn::mask m;
    m.set_kv_lengths(lengths, B);
    attn::additive op(qd, kd, hid);
    op.set_weights(wq, wk, wv);
    attn::context ctx;
    std::vector<float> out((std::size_t)(B * L * dv)), w((std::size_t)(B * L * S));
    op.forward(ctx, B, L, S, dv, q, k, v, &m, out, w);

    // at(x, i): element i of a float vector, in double.
    auto at = [](const std::vector<float> &x, std::int64_t i) { return (double)x[(std::size_t)i]; };
    std::vector<double> rout(out.size()), rw(w.size());
    for (std::int64_t b = 0; b < B; b++)
        for (std::int64_t i = 0; i < L; i++) {
            const std::int64_t n = lengths[(std::size_t)b];
            std::vector<double> score((std::size_t)n);
            double m_ = -INFINITY, sum = 0;
            for (std::int64_t j = 0; j < n; j++) {
                double s = 0;   // w_vᵀ tanh(W_q q + W_k k)
                for (std::int64_t h = 0; h < hid; h++) {
                    double a = 0;
                    for (std::int64_t c = 0; c < qd; c++)
                        a += at(wq, h * qd + c) * at(q, (b * L + i) * qd + c);
                    for (std::int64_t c = 0; c < kd; c++)
                        a += at(wk, h * kd + c) * at(k, (b * S + j) * kd + c);
                    s += at(wv, h) * std::tanh(a);
                }
                score[(std::size_t)j] = s;
                m_ = std::fmax(m_, s);
            }
            for (std::int64_t j = 0; j < n; j++)
                sum += std::exp(score[(std::size_t)j] - m_);
            for (std::int64_t j = 0; j < n; j++) {
                const double p = std::exp(score[(std::size_t)j] - m_) / sum;
                rw[(std::size_t)((b * L + i) * S + j)] = p;
                for (std::int64_t c = 0; c < dv; c++)
                    rout[(std::size_t)((b * L + i) * dv + c)] += p * at(v, (b * S + j) * dv + c);
            }
        }
    assert_close(out, rout, dv, 1e-5);
    assert_close(w, rw, S, 1e-5);
}

void nadaraya_watson_and_positional(void **)
{
    const std::vector<float> xq = {0.5f, 2.0f}, xk = {0.0f, 1.0f, 3.0f}, y = {1.0f, 2.0f, 4.0f};
    const float w = 1.5f;
    attn::context ctx;
    std::vector<float> out(2), weights(6);
    attn::nadaraya_watson(ctx, xq, xk, y, w, out, weights);
    for (std::size_t i = 0; i < 2; i++) {
        double s[3], sum = 0, f = 0;
        for (std::size_t j = 0; j < 3; j++) {
            double d = (xq[i] - (double)xk[j]) * w;
            s[j] = std::exp(-d * d / 2);
            sum += s[j];
        }
        for (std::size_t j = 0; j < 3; j++) {
            assert_true(std::fabs(weights[i * 3 + j] - s[j] / sum) <= 1e-6);
            f += s[j] / sum * y[j];
        }
        assert_true(std::fabs(out[i] - f) <= 1e-5);
    }

    std::vector<float> p = attn::positional_encoding(4, 6, 10);
    std::vector<float> p2(24);
    attn::positional_encoding(p2, 4, 6, 10, 10000.0f);
    assert_memory_equal(p.data(), p2.data(), 24 * sizeof(float));
    for (int pos = 0; pos < 4; pos++)
        for (int i = 0; i < 3; i++) {
            double angle = (pos + 10) / std::pow(10000.0, 2.0 * i / 6);
            assert_true(std::fabs(p[(std::size_t)(pos * 6 + 2 * i)] - std::sin(angle)) <= 1e-6);
            assert_true(std::fabs(p[(std::size_t)(pos * 6 + 2 * i + 1)] - std::cos(angle)) <= 1e-6);
        }
}

// Owners free their handle once and hand it over on a move.
void owners_move_and_release(void **)
{
    attn::sdpa a(1, 1, 1, 3, 3, 2, 2);
    attn_sdpa *raw = a.get();
    assert_non_null(raw);
    attn::sdpa b(std::move(a));
    assert_ptr_equal(b.get(), raw);
    assert_null(a.get());   // NOLINT(bugprone-use-after-move): the moved-from state is tested
    attn::sdpa c(1, 2, 2, 1, 1, 1, 1);
    c = std::move(b);       // c's old handle is destroyed here
    assert_ptr_equal(c.get(), raw);

    attn::context ctx;
    std::vector<float> out(6, -7.0f);
    // A moved-from owner holds NULL: libattn reports it, nothing is written.
    expect_error([&] { a.forward(ctx, uva_q, uva_k, uva_v, nullptr, out); },
                 ATTN_ERR_NULL_POINTER, "attn_sdpa_forward: op is NULL");
    for (float x : out)
        assert_true(x == -7.0f);

    attn::context moved(std::move(ctx));
    attn_context *raw_ctx = moved.release();
    assert_non_null(raw_ctx);
    assert_null(moved.get());
    attn_context_destroy(raw_ctx);

    attn::mask m1;
    attn::mask m2(std::move(m1));
    assert_null(m1.get());   // NOLINT(bugprone-use-after-move)
    attn_mask *raw_mask = m2.release();
    attn_mask_destroy(raw_mask);
}

// The exception path: libattn's own errors and the wrapper's extent checks.
void errors_throw_with_status_and_message(void **)
{
    expect_error([] { attn::sdpa op(1, 6, 4, 3, 3, 2, 2); }, ATTN_ERR_SHAPE_MISMATCH,
                 "attn_sdpa_create: heads_q (6) is not a multiple of heads_kv (4)");
    expect_error([] { attn::context ctx(-1); }, ATTN_ERR_INVALID_ARGUMENT,
                 "attn_context_set_num_threads: n (-1) is outside [0, 1024]");
    expect_error([] { attn::mha layer(10, 4, true); }, ATTN_ERR_SHAPE_MISMATCH,
                 "attn_mha_create: embed_dim (10) is not a multiple of num_heads (4)");

    attn::context ctx;
    attn::sdpa op(1, 1, 1, 3, 3, 2, 2);
    std::vector<float> short_q(uva_q.begin(), uva_q.end() - 1), out(6, -7.0f), lse(2);
    expect_error([&] { op.forward(ctx, short_q, uva_k, uva_v, nullptr, out); },
                 ATTN_ERR_SHAPE_MISMATCH,
                 "attn::sdpa::forward: q has 5 elements, the shapes need 6");
    expect_error([&] { op.forward(ctx, uva_q, uva_k, uva_v, nullptr, out, {}, lse); },
                 ATTN_ERR_SHAPE_MISMATCH,
                 "attn::sdpa::forward: lse has 2 elements, the shapes need 3");
    for (float x : out)
        assert_true(x == -7.0f);

    attn::mask m;
    std::vector<std::int64_t> lengths = {5};   // above len_kv = 3: found at forward
    m.set_kv_lengths(lengths, 1);
    expect_error([&] { op.forward(ctx, uva_q, uva_k, uva_v, &m, out); },
                 ATTN_ERR_INVALID_ARGUMENT,
                 "attn_sdpa_forward: valid length 5 (index 0) is outside [0, len_kv = 3]");
    for (float x : out)
        assert_true(x == -7.0f);
    std::vector<std::uint8_t> keep(4);
    expect_error([&] { m.set_bool(keep, 1, 1, 1, 3); }, ATTN_ERR_SHAPE_MISMATCH,
                 "attn::mask::set_bool: keep has 4 elements, the shapes need 3");
    expect_error([&] { op.set_scale(NAN); }, ATTN_ERR_INVALID_ARGUMENT,
                 "attn_sdpa_set_scale: scale (nan) is not finite");

    // A std::exception handler sees the same text.
    try {
        attn::positional_encoding(3, 5);
        fail_msg("no exception");
    } catch (const std::exception &e) {
        assert_non_null(std::strstr(e.what(), "ATTN_ERR_INVALID_ARGUMENT"));
    }
}

}  // namespace

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_matches_header),
        cmocka_unit_test(sdpa_reproduces_uva_example),
        cmocka_unit_test(views_from_arrays_and_pointers),
        cmocka_unit_test(sdpa_masks_layouts_gqa),
        cmocka_unit_test(context_threads),
        cmocka_unit_test(mha_matches_reference),
        cmocka_unit_test(additive_matches_reference),
        cmocka_unit_test(nadaraya_watson_and_positional),
        cmocka_unit_test(owners_move_and_release),
        cmocka_unit_test(errors_throw_with_status_and_message),
    };
    return cmocka_run_group_tests_name("test_cxx_wrapper", tests, nullptr, nullptr);
}
