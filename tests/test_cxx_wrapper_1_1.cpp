// test_cxx_wrapper_1_1.cpp — the 1.1 part of include/attn.hpp: gradients
// (sdpa, mha, additive, Nadaraya–Watson, encoder layer, layer norm), dropout,
// score modifiers, RoPE, the KV cache and cached forwards, merging partial
// results, and the error paths, each checked against float64 references
// (test_util.c, reliability_util.c, or written here from the header's
// formulas) or central differences of a float64 loss. Two comparisons are
// with libattn's own numbers by definition: decoding with the cache against
// the same layer's full forward (which the header promises, and which is
// checked against float64 here and in test_encoder.c), and dropout's weights
// against the keep mask the op reports (Philox itself is checked against
// its published answers in test_python.py and test_dropout.c).
#include <attn.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

extern "C" {
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "reliability_util.h"
#include "test_util.h"
}

namespace {

static_assert(!std::is_copy_constructible<attn::activations>::value, "owners are move-only");
static_assert(!std::is_copy_constructible<attn::encoder_layer>::value, "owners are move-only");
static_assert(!std::is_copy_constructible<attn::rope>::value, "owners are move-only");
static_assert(!std::is_copy_constructible<attn::kv_cache>::value, "owners are move-only");
static_assert(std::is_nothrow_move_constructible<attn::kv_cache>::value, "cheap moves");
static_assert(std::is_nothrow_move_assignable<attn::encoder_layer>::value, "cheap moves");

const double TOL = 1e-5;

std::vector<float> normal(tu_rng *rng, std::int64_t n, float stddev = 1.0f)
{
    std::vector<float> x(static_cast<std::size_t>(n));
    tu_fill_normal(rng, x.data(), x.size(), 0.0f, stddev);
    return x;
}

void assert_close(const char *what, const std::vector<float> &got,
                  const std::vector<double> &want, std::int64_t row, double tol = TOL)
{
    assert_int_equal(got.size(), want.size());
    std::int64_t worst = -1;
    double err = tu_max_err(got.data(), want.data(), static_cast<std::int64_t>(got.size()), row,
                            &worst);
    if (!(err <= tol))
        fail_msg("%s: error %g at %lld (got %g, want %g)", what, err,
                 static_cast<long long>(worst), static_cast<double>(got[worst]), want[worst]);
}

// Expects `body` to throw attn::error with this status and a detail that
// starts with `prefix`.
template <class F>
void expect_error(F body, attn_status status, const char *prefix)
{
    try {
        body();
    } catch (const attn::error &e) {
        assert_int_equal(e.status(), status);
        if (e.detail().compare(0, std::strlen(prefix), prefix) != 0)
            fail_msg("detail \"%s\" does not start with \"%s\"", e.detail().c_str(), prefix);
        return;
    }
    fail_msg("no attn::error thrown (wanted %s)", attn_status_string(status));
}

// ∂L/∂p[i] of a float64 loss by central differences (test_util), for every
// index of p (the problems are small), compared with the library's gradient g.
template <class Loss>
void check_param_gradient(const char *what, std::vector<float> &p, const std::vector<float> &g,
                          Loss loss, double tol)
{
    struct call {
        Loss *loss;
        static double run(void *arg) { return (*static_cast<call *>(arg)->loss)(); }
    } c{&loss};
    double worst = 0;
    for (std::size_t i = 0; i < p.size(); i++) {
        double num = tu_central_difference(&p[i], 0x1p-10, call::run, &c);
        double e = std::fabs(num - g[i]) / (1.0 + std::fabs(num));
        if (!(e <= tol))
            fail_msg("%s: gradient[%zu] = %g, central difference %g", what, i,
                     static_cast<double>(g[i]), num);
        worst = e > worst ? e : worst;
    }
    print_message("%s vs central differences: largest error %.2g\n", what, worst);
}

// ---- scaled dot-product attention: backward, dropout, modifiers ----------

void sdpa_backward_matches_reference(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 11);
    const std::int64_t B = 2, Hq = 4, Hkv = 2, Lq = 6, Lkv = 9, D = 8, Dv = 5;
    attn::sdpa op(B, Hq, Hkv, Lq, Lkv, D, Dv);
    op.set_causal(ATTN_CAUSAL_BOTTOM_RIGHT).set_window(4, -1).set_softcap(3.0f);
    const std::vector<float> slopes = {0.5f, 0.25f, 0.125f, 0.0625f};
    op.set_alibi(slopes);
    std::vector<std::int64_t> lengths = {9, 7};
    attn::mask m;
    m.set_kv_lengths(lengths, B);
    ref_mask rm{};
    rm.lengths = lengths.data();

    std::vector<float> q = normal(&rng, B * Hq * Lq * D), k = normal(&rng, B * Hkv * Lkv * D),
                       v = normal(&rng, B * Hkv * Lkv * Dv), d_out = normal(&rng, B * Hq * Lq * Dv);
    attn::context ctx;
    std::vector<float> out(op.out_size()), lse(op.lse_size());
    op.forward(ctx, q, k, v, &m, out, {}, lse);
    std::vector<float> d_q(op.q_size()), d_k(op.k_size()), d_v(op.v_size());
    op.backward(ctx, q, k, v, &m, out, lse, d_out, d_q, d_k, d_v);

    ref_mods mods{1, 4, -1, 3.0, slopes.data()};
    ref_shape s{B, Hq, Hkv, Lq, Lkv, D, Dv, REF_BHSD, REF_CAUSAL_BOTTOM_RIGHT,
                1.0f / std::sqrt(static_cast<float>(D)), &mods};
    std::vector<double> rout(out.size()), rlse(lse.size());
    assert_int_equal(ref_sdpa(&s, q.data(), k.data(), v.data(), &rm, rout.data(), nullptr,
                              rlse.data()),
                     0);
    assert_close("sdpa out with window, softcap, alibi", out, rout, Dv);
    std::vector<double> rq(d_q.size()), rk(d_k.size()), rv(d_v.size());
    std::vector<double> mq(d_q.size()), mk(d_k.size()), mv(d_v.size());
    assert_int_equal(ref_sdpa_backward(&s, q.data(), k.data(), v.data(), &rm, d_out.data(), 0,
                                       rq.data(), rk.data(), rv.data()),
                     0);
    assert_int_equal(ref_sdpa_backward(&s, q.data(), k.data(), v.data(), &rm, d_out.data(), 1,
                                       mq.data(), mk.data(), mv.data()),
                     0);
    std::int64_t worst;
    assert_true(tu_max_err_scaled(d_q.data(), rq.data(), mq.data(), (std::int64_t)d_q.size(), D,
                                  &worst) <= TOL);
    assert_true(tu_max_err_scaled(d_k.data(), rk.data(), mk.data(), (std::int64_t)d_k.size(), D,
                                  &worst) <= TOL);
    assert_true(tu_max_err_scaled(d_v.data(), rv.data(), mv.data(), (std::int64_t)d_v.size(), Dv,
                                  &worst) <= TOL);

    // Empty gradient views are not computed; d_q alone gives the same bits.
    std::vector<float> d_q_alone(op.q_size());
    op.backward(ctx, q, k, v, &m, out, lse, d_out, d_q_alone);
    assert_memory_equal(d_q_alone.data(), d_q.data(), d_q.size() * sizeof(float));

    // Clearing ALiBi changes the numbers back to the unmodified reference.
    op.clear_alibi().set_window(-1, -1).set_softcap(0.0f);
    op.forward(ctx, q, k, v, &m, out);
    s.mods = nullptr;
    assert_int_equal(ref_sdpa(&s, q.data(), k.data(), v.data(), &rm, rout.data(), nullptr,
                              nullptr),
                     0);
    assert_close("sdpa out after clearing the modifiers", out, rout, Dv);
}

void sdpa_dropout_uses_its_keep_mask(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 12);
    const std::int64_t B = 1, H = 2, L = 16, D = 4;
    attn::sdpa op(B, H, H, L, L, D, D);
    const float p = 0.25f;
    op.set_dropout(p, 1234);
    std::vector<std::uint8_t> keep = op.keep_mask();
    std::vector<float> q = normal(&rng, B * H * L * D), k = normal(&rng, B * H * L * D),
                       v = normal(&rng, B * H * L * D);
    attn::context ctx;
    std::vector<float> out(op.out_size()), w(op.weights_size());
    op.forward(ctx, q, k, v, nullptr, out, w);

    // The dropped weights are the float64 softmax's times keep / (1 − p).
    ref_shape s{B, H, H, L, L, D, D, REF_BHSD, REF_CAUSAL_NONE, 0.5, nullptr};
    std::vector<double> rw(w.size()), rout(out.size());
    assert_int_equal(ref_sdpa(&s, q.data(), k.data(), v.data(), nullptr, rout.data(),
                              rw.data(), nullptr),
                     0);
    std::size_t kept = 0;
    for (std::size_t i = 0; i < rw.size(); i++) {
        kept += keep[i] != 0;
        rw[i] = keep[i] ? rw[i] / (1.0 - p) : 0.0;
    }
    assert_close("dropped weights", w, rw, L);
    for (std::int64_t r = 0; r < B * H * L; r++)
        for (std::int64_t c = 0; c < D; c++) {
            double acc = 0;
            for (std::int64_t j = 0; j < L; j++)
                acc += rw[r * L + j] * v[(r / L) * L * D + j * D + c];
            rout[r * D + c] = acc;
        }
    assert_close("out with dropout", out, rout, D);
    // 512 draws at p = 0.25: 384 expected, sd 9.8.
    assert_true(kept > 330 && kept < 440);

    // The backward regenerates the mask: d_v = (P ∘ Z)ᵀ d_out, Z = keep / (1 − p).
    std::vector<float> lse(op.lse_size()), d_out = normal(&rng, B * H * L * D);
    op.forward(ctx, q, k, v, nullptr, out, {}, lse);
    std::vector<float> d_q(op.q_size()), d_k(op.k_size()), d_v(op.v_size());
    op.backward(ctx, q, k, v, nullptr, out, lse, d_out, d_q, d_k, d_v);
    std::vector<double> rd_v(d_v.size(), 0.0);
    for (std::int64_t r = 0; r < B * H * L; r++)   // row r = (b·H + h)·L + i
        for (std::int64_t j = 0; j < L; j++)
            for (std::int64_t c = 0; c < D; c++)
                rd_v[(r / L) * L * D + j * D + c] += rw[r * L + j] * d_out[r * D + c];
    assert_close("d_v with dropout", d_v, rd_v, D);
    op.set_dropout(0.0f, 0);
    for (std::uint8_t x : op.keep_mask())
        assert_int_equal(x, 1);
}

// ---- the multi-head layer: training, properties, RoPE ---------------------

struct mha_problem {
    static const std::int64_t E = 8, H = 2, B = 2, L = 5;
    std::vector<float> x, d_out;
    explicit mha_problem(tu_rng *rng) : x(normal(rng, B * L * E)), d_out(normal(rng, B * L * E))
    {
    }
};

// ru_mha pointing into a flat parameter vector: Wq [E, E], Wk [kv, kdim],
// Wv [kv, vdim], bq [E], bk [kv], bv [kv], Wo [E, E], bo [E] with kv = Hkv ·
// E / H (attn_mha_get_params' layout, bias); Hkv, kdim and vdim default to
// H, E and E. Top-left causal unless changed.
ru_mha mha_ref_of(const std::vector<float> &p, std::int64_t E, std::int64_t H,
                  std::int64_t Hkv = 0, std::int64_t kdim = 0, std::int64_t vdim = 0)
{
    Hkv = Hkv ? Hkv : H, kdim = kdim ? kdim : E, vdim = vdim ? vdim : E;
    const std::int64_t kv = E / H * Hkv;
    ru_mha m{};
    m.embed = E, m.heads = H, m.kv_heads = Hkv, m.kdim = kdim, m.vdim = vdim;
    m.causal = ATTN_CAUSAL_TOP_LEFT;
    const float *at = p.data();
    m.w[0] = at, at += E * E;
    m.w[1] = at, at += kv * kdim;
    m.w[2] = at, at += kv * vdim;
    m.b[0] = at, at += E;
    m.b[1] = at, at += kv;
    m.b[2] = at, at += kv;
    m.w[3] = at, at += E * E;
    m.b[3] = at;
    return m;
}

void mha_training_matches_reference(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 13);
    const std::int64_t E = mha_problem::E, H = mha_problem::H, B = mha_problem::B,
                       L = mha_problem::L;
    mha_problem pr(&rng);
    attn::mha layer(E, H);
    assert_int_equal(layer.param_count(), 4 * E * E + 4 * E);
    std::vector<float> params = normal(&rng, (std::int64_t)layer.param_count(), 0.3f);
    layer.set_params(params).set_causal(ATTN_CAUSAL_TOP_LEFT);
    assert_memory_equal(layer.params().data(), params.data(), params.size() * sizeof(float));
    assert_int_equal(layer.property(ATTN_MHA_HEAD_DIM), E / H);
    assert_int_equal(layer.property(ATTN_MHA_CAUSAL), ATTN_CAUSAL_TOP_LEFT);
    assert_int_equal(layer.property(ATTN_MHA_HAS_ROPE), 0);

    attn::context ctx;
    attn::activations act;
    std::vector<float> out(pr.x.size());
    layer.forward_train(ctx, B, L, L, pr.x, pr.x, pr.x, nullptr, out, {}, act);
    ru_mha ref = mha_ref_of(params, E, H);
    std::vector<double> rout(out.size());
    ru_ref_mha(&ref, B, L, L, pr.x.data(), pr.x.data(), pr.x.data(), nullptr, rout.data(),
               nullptr);
    assert_close("mha forward_train", out, rout, E);

    // Self-attention: one buffer receives d_query + d_key + d_value.
    std::vector<float> dx(pr.x.size()), d_params(params.size());
    layer.backward(ctx, act, pr.d_out, dx, dx, dx, d_params);
    std::int64_t at;
    double err = ru_mha_self_grad_error(&ref, B, L, pr.x.data(), pr.d_out.data(), dx.data(), &at);
    print_message("mha: d_x vs central differences %.2g\n", err);
    assert_true(err <= 1e-4);
    check_param_gradient("mha", params, d_params, [&] {
        ru_mha m = mha_ref_of(params, E, H);
        std::vector<double> o(out.size());
        ru_ref_mha(&m, B, L, L, pr.x.data(), pr.x.data(), pr.x.data(), nullptr, o.data(),
                   nullptr);
        double l = 0;
        for (std::size_t i = 0; i < o.size(); i++)
            l += pr.d_out[i] * o[i];
        return l;
    }, 1e-4);

    // Another layer's backward refuses these activations before libattn runs.
    attn::mha other(E, H);
    other.set_params(params);
    expect_error([&] { other.backward(ctx, act, pr.d_out, dx, {}, {}); }, ATTN_ERR_STATE,
                 "attn::mha::backward: act was not filled by this layer's forward_train");
    // Parameters set since the forward: libattn's own ATTN_ERR_STATE.
    layer.set_params(params);
    expect_error([&] { layer.backward(ctx, act, pr.d_out, dx, {}, {}); }, ATTN_ERR_STATE,
                 "attn_mha_backward");
}

// Cross-attention with GQA and kdim ≠ vdim ≠ embed_dim: every gradient in
// its own buffer, against central differences of the float64 layer.
void mha_cross_attention_gradients(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 24);
    const std::int64_t E = 8, H = 4, Hkv = 2, kdim = 5, vdim = 3, B = 2, Lq = 3, Lkv = 4;
    attn::mha layer(E, H, Hkv, kdim, vdim, true);
    const std::int64_t kv = E / H * Hkv;
    std::vector<float> params = normal(&rng, (std::int64_t)layer.param_count(), 0.3f);
    assert_int_equal(params.size(), 2 * E * E + kv * (kdim + vdim) + E + 2 * kv + E);
    layer.set_params(params).set_causal(ATTN_CAUSAL_BOTTOM_RIGHT);
    std::vector<float> q = normal(&rng, B * Lq * E), k = normal(&rng, B * Lkv * kdim),
                       v = normal(&rng, B * Lkv * vdim), d_out = normal(&rng, B * Lq * E);
    attn::context ctx;
    attn::activations act;
    std::vector<float> out(q.size());
    layer.forward_train(ctx, B, Lq, Lkv, q, k, v, nullptr, out, {}, act);
    std::vector<float> d_q(q.size()), d_k(k.size()), d_v(v.size()), d_params(params.size());
    layer.backward(ctx, act, d_out, d_q, d_k, d_v, d_params);
    auto reference = [&](std::vector<double> &o) {
        ru_mha m = mha_ref_of(params, E, H, Hkv, kdim, vdim);
        m.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
        ru_ref_mha(&m, B, Lq, Lkv, q.data(), k.data(), v.data(), nullptr, o.data(), nullptr);
    };
    std::vector<double> rout(out.size());
    reference(rout);
    assert_close("mha cross-attention forward_train", out, rout, E);
    auto loss = [&] {
        std::vector<double> o(out.size());
        reference(o);
        double l = 0;
        for (std::size_t i = 0; i < o.size(); i++)
            l += d_out[i] * o[i];
        return l;
    };
    check_param_gradient("mha cross d_query", q, d_q, loss, 1e-4);
    check_param_gradient("mha cross d_key", k, d_k, loss, 1e-4);
    check_param_gradient("mha cross d_value", v, d_v, loss, 1e-4);
    check_param_gradient("mha cross d_params", params, d_params, loss, 1e-4);
    std::vector<float> short_key(k.size() - 1);
    expect_error([&] { layer.backward(ctx, act, d_out, {}, short_key, {}); },
                 ATTN_ERR_SHAPE_MISMATCH,
                 "attn::mha::backward: d_key has 39 elements, the shapes need 40");
}

// The layer's window, softcap and ALiBi against the float64 layer with the
// same modifiers; dropout leaves the inference forward alone and changes the
// training forward.
void mha_modifiers_and_dropout(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 25);
    const std::int64_t E = 8, H = 2, B = 1, L = 7;
    attn::mha layer(E, H);
    std::vector<float> params = normal(&rng, (std::int64_t)layer.param_count(), 0.3f);
    const std::vector<float> slopes = {0.3f, 0.7f};
    layer.set_params(params).set_causal(ATTN_CAUSAL_TOP_LEFT);
    layer.set_window(3, 0).set_softcap(2.0f).set_alibi(slopes);
    assert_int_equal(layer.property(ATTN_MHA_HAS_MODIFIERS), 1);
    std::vector<float> x = normal(&rng, B * L * E), out(x.size());
    attn::context ctx;
    layer.forward(ctx, B, L, L, x, x, x, nullptr, out);
    ru_mha ref = mha_ref_of(params, E, H);
    ref_mods mods{1, 3, 0, 2.0, slopes.data()};
    ref.mods = &mods;
    std::vector<double> rout(out.size());
    ru_ref_mha(&ref, B, L, L, x.data(), x.data(), x.data(), nullptr, rout.data(), nullptr);
    assert_close("mha with window, softcap and alibi", out, rout, E);
    layer.clear_alibi().set_window(-1, -1).set_softcap(0.0f);
    assert_int_equal(layer.property(ATTN_MHA_HAS_MODIFIERS), 0);

    std::vector<float> plain(x.size()), dropped(x.size()), inference(x.size());
    attn::activations act;
    layer.forward_train(ctx, B, L, L, x, x, x, nullptr, plain, {}, act);
    layer.set_dropout(0.5f, 9);
    assert_int_equal(layer.property(ATTN_MHA_HAS_DROPOUT), 1);
    layer.forward_train(ctx, B, L, L, x, x, x, nullptr, dropped, {}, act);
    layer.forward(ctx, B, L, L, x, x, x, nullptr, inference);
    assert_memory_equal(inference.data(), plain.data(), plain.size() * sizeof(float));
    assert_memory_not_equal(dropped.data(), plain.data(), plain.size() * sizeof(float));

    attn::encoder_layer enc(E, H, 16);
    std::vector<float> ep = normal(&rng, (std::int64_t)enc.param_count(), 0.3f);
    enc.set_params(ep);
    std::vector<float> e_plain(x.size()), e_dropped(x.size()), e_inference(x.size());
    enc.forward_train(ctx, B, L, x, nullptr, e_plain, act);
    enc.set_dropout(0.5f, 9);
    enc.forward_train(ctx, B, L, x, nullptr, e_dropped, act);
    enc.forward(ctx, B, L, x, nullptr, e_inference);
    assert_memory_equal(e_inference.data(), e_plain.data(), e_plain.size() * sizeof(float));
    assert_memory_not_equal(e_dropped.data(), e_plain.data(), e_plain.size() * sizeof(float));
}

void mha_rope_matches_reference(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 14);
    const std::int64_t E = 8, H = 2, B = 1, L = 6;
    attn::mha layer(E, H);
    std::vector<float> params = normal(&rng, (std::int64_t)layer.param_count(), 0.3f);
    layer.set_params(params).set_causal(ATTN_CAUSAL_TOP_LEFT);
    attn::rope r(E / H, E / H, 10000.0f, ATTN_ROPE_INTERLEAVED);
    layer.set_rope(r);
    assert_int_equal(layer.property(ATTN_MHA_HAS_ROPE), 1);
    std::vector<float> x = normal(&rng, B * L * E), out(x.size());
    attn::context ctx;
    layer.forward(ctx, B, L, L, x, x, x, nullptr, out);
    ru_mha ref = mha_ref_of(params, E, H);
    ref.rope_dim = E / H, ref.rope_style = 1, ref.rope_base = 10000.0;
    std::vector<double> rout(out.size());
    ru_ref_mha(&ref, B, L, L, x.data(), x.data(), x.data(), nullptr, rout.data(), nullptr);
    assert_close("mha with rope", out, rout, E);
    layer.clear_rope();
    assert_int_equal(layer.property(ATTN_MHA_HAS_ROPE), 0);
}

void rope_apply_matches_formula(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 15);
    const std::int64_t B = 2, H = 3, S = 4, D = 8, R = 6;
    std::vector<float> x = normal(&rng, B * S * H * D), y = x;
    std::vector<std::int64_t> positions = {0, 5, 9, 1000, 3, 2, 1, -4};
    attn::rope r(D, R, 500000.0f, ATTN_ROPE_HALF);
    attn::context ctx;
    r.apply(ctx, ATTN_LAYOUT_BSHD, B, H, S, y, positions);
    std::vector<double> inv(R / 2), want(x.size());
    ref_rope_inv_freq(500000.0, R, inv.data());
    for (std::int64_t b = 0; b < B; b++)
        for (std::int64_t s = 0; s < S; s++)
            for (std::int64_t h = 0; h < H; h++) {
                std::int64_t at = ((b * S + s) * H + h) * D;
                for (std::int64_t d = 0; d < D; d++)
                    want[at + d] = x[at + d];
                ref_rope_row(&want[at], 0, R, inv.data(),
                             static_cast<double>(positions[b * S + s]), 0);
            }
    assert_close("rope, BSHD, positions", y, want, D);
    // inverse = true undoes it; explicit frequencies give the same rotation.
    r.apply(ctx, ATTN_LAYOUT_BSHD, B, H, S, y, positions, 0, true);
    std::vector<double> xd(x.begin(), x.end());
    assert_close("rope inverse", y, xd, D);
    std::vector<float> inv_f(inv.begin(), inv.end()), z = x;
    attn::rope same(D, R);
    same.set_inv_freq(inv_f).apply(ctx, ATTN_LAYOUT_BSHD, B, H, S, z, positions);
    // The float inv_freq is rounded (2^-24 relative): at position 1000 that
    // turns an angle by up to ~1e-4 rad.
    assert_close("rope from inv_freq", z, want, D, 1e-3);
    // Tables of cos and sin at positions 0..9 give the rotation of those positions.
    const std::int64_t P = 10;
    std::vector<float> cos_t(P * R / 2), sin_t(P * R / 2);
    for (std::int64_t p = 0; p < P; p++)
        for (std::int64_t i = 0; i < R / 2; i++) {
            cos_t[p * R / 2 + i] = static_cast<float>(std::cos(p * inv[i]));
            sin_t[p * R / 2 + i] = static_cast<float>(std::sin(p * inv[i]));
        }
    attn::rope tables(D, R);
    tables.set_tables(cos_t, sin_t, P);
    std::vector<float> t = x;
    tables.apply(ctx, ATTN_LAYOUT_BHSD, B, H, S, t, {}, 3);   // positions 3..6
    std::vector<double> want_t(x.begin(), x.end());
    for (std::int64_t row = 0; row < B * H * S; row++)
        ref_rope_row(&want_t[row * D], 0, R, inv.data(), static_cast<double>(3 + row % S), 0);
    assert_close("rope from tables", t, want_t, D);
    // Linear scaling: base's frequencies divided by the factor.
    std::vector<double> inv_lin(inv);
    for (double &f : inv_lin)
        f /= 4.0;
    attn::rope lin(D, R, 500000.0f);
    lin.set_linear_scaling(4.0f);
    std::vector<float> u = x;
    lin.apply(ctx, ATTN_LAYOUT_BHSD, B, H, S, u, {}, 100);
    std::vector<double> want_u(x.begin(), x.end());
    for (std::int64_t row = 0; row < B * H * S; row++)
        ref_rope_row(&want_u[row * D], 0, R, inv_lin.data(), static_cast<double>(100 + row % S),
                     0);
    assert_close("rope with linear scaling", u, want_u, D);
    // Llama 3.1's scaling, from the header's formula (factor 8, 1, 4, L = 16).
    std::vector<double> inv_l3(inv);
    for (double &f : inv_l3) {
        const double wavelength = 2 * std::acos(-1.0) / f, Lo = 16.0;
        if (wavelength > Lo / 1.0)
            f /= 8.0;
        else if (wavelength >= Lo / 4.0) {
            const double smooth = (Lo / wavelength - 1.0) / (4.0 - 1.0);
            f = (1 - smooth) * f / 8.0 + smooth * f;
        }
    }
    attn::rope l3(D, R, 500000.0f);
    l3.set_llama3_scaling(8.0f, 1.0f, 4.0f, 16);
    std::vector<float> w3 = x;
    l3.apply(ctx, ATTN_LAYOUT_BHSD, B, H, S, w3, {}, 50);
    std::vector<double> want_w3(x.begin(), x.end());
    for (std::int64_t row = 0; row < B * H * S; row++)
        ref_rope_row(&want_w3[row * D], 0, R, inv_l3.data(), static_cast<double>(50 + row % S),
                     0);
    assert_close("rope with llama3 scaling", w3, want_w3, D);
    expect_error([&] { attn::rope bad(D, 5); }, ATTN_ERR_INVALID_ARGUMENT, "attn_rope_create");
    expect_error([&] { same.set_inv_freq(std::vector<float>(R)); }, ATTN_ERR_SHAPE_MISMATCH,
                 "attn::rope::set_inv_freq: inv_freq has 6 elements, the shapes need 3");
}

// ---- additive attention and Nadaraya–Watson -------------------------------

void additive_training_matches_reference(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 16);
    const std::int64_t B = 2, Lq = 3, Lkv = 5, Dq = 4, Dk = 3, Hd = 6, Dv = 2;
    attn::additive op(Dq, Dk, Hd);
    std::vector<float> params = normal(&rng, (std::int64_t)op.param_count(), 0.5f);
    assert_int_equal(params.size(), Hd * (Dq + Dk + 1));
    op.set_params(params);
    std::vector<float> q = normal(&rng, B * Lq * Dq), k = normal(&rng, B * Lkv * Dk),
                       v = normal(&rng, B * Lkv * Dv), d_out = normal(&rng, B * Lq * Dv);
    attn::context ctx;
    attn::activations act;
    std::vector<float> out(B * Lq * Dv);
    op.forward_train(ctx, B, Lq, Lkv, Dv, q, k, v, nullptr, out, {}, act);
    auto reference = [&](std::vector<double> &o) {
        ru_additive a{Dq, Dk, Hd, params.data(), params.data() + Hd * Dq,
                      params.data() + Hd * (Dq + Dk)};
        ru_ref_additive(&a, B, Lq, Lkv, Dv, q.data(), k.data(), v.data(), nullptr, o.data(),
                        nullptr);
    };
    std::vector<double> rout(out.size());
    reference(rout);
    assert_close("additive forward_train", out, rout, Dv);
    std::vector<float> d_params(params.size()), d_q(q.size()), d_k(k.size()), d_v(v.size());
    op.backward(ctx, act, d_out, d_q, d_k, d_v, d_params);
    auto loss = [&] {
        std::vector<double> o(out.size());
        reference(o);
        double l = 0;
        for (std::size_t i = 0; i < o.size(); i++)
            l += d_out[i] * o[i];
        return l;
    };
    check_param_gradient("additive d_params", params, d_params, loss, 1e-4);
    check_param_gradient("additive d_queries", q, d_q, loss, 1e-4);
    check_param_gradient("additive d_keys", k, d_k, loss, 1e-4);
    check_param_gradient("additive d_values", v, d_v, loss, 1e-4);
    std::vector<float> three(3);
    expect_error([&] { op.backward(ctx, act, d_out, {}, {}, three); },
                 ATTN_ERR_SHAPE_MISMATCH,
                 "attn::additive::backward: d_values has 3 elements, the shapes need 20");
}

void nadaraya_watson_backward_matches_formula(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 17);
    const std::size_t nq = 7, nk = 11;
    std::vector<float> x = normal(&rng, nq), keys = normal(&rng, nk), vals = normal(&rng, nk),
                       d_out = normal(&rng, nq);
    const float w = 1.7f;
    attn::context ctx;
    std::vector<float> d_x(nq), d_k(nk), d_v(nk);
    float d_w = attn::nadaraya_watson_backward(ctx, x, keys, vals, w, d_out, d_x, d_k, d_v);
    // D2L eq. 10.2.6 and the header's derivatives, in double.
    std::vector<double> rx(nq), rk(nk), rv(nk);
    double rw = 0;
    for (std::size_t i = 0; i < nq; i++) {
        std::vector<double> a(nk);
        double mx = -INFINITY, sum = 0, o = 0;
        for (std::size_t j = 0; j < nk; j++) {
            double t = (x[i] - (double)keys[j]) * w;
            a[j] = -t * t / 2;
            mx = a[j] > mx ? a[j] : mx;
        }
        for (std::size_t j = 0; j < nk; j++)
            sum += (a[j] = std::exp(a[j] - mx));
        for (std::size_t j = 0; j < nk; j++)
            o += (a[j] /= sum) * vals[j];
        for (std::size_t j = 0; j < nk; j++) {
            double ds = a[j] * d_out[i] * (vals[j] - o), diff = x[i] - (double)keys[j];
            rx[i] -= ds * diff * w * w;
            rk[j] += ds * diff * w * w;
            rv[j] += a[j] * d_out[i];
            rw -= ds * diff * diff * w;
        }
    }
    assert_close("nw d_queries", d_x, rx, nq);
    assert_close("nw d_keys", d_k, rk, nk);
    assert_close("nw d_values", d_v, rv, nk);
    assert_true(std::fabs(d_w - rw) <= TOL * (1 + std::fabs(rw)));
}

// ---- layer norm and the encoder layer -------------------------------------

void ref_layer_norm(const double *x, std::int64_t rows, std::int64_t n, const float *w,
                    const float *b, double eps, double *y)
{
    for (std::int64_t r = 0; r < rows; r++) {
        double mean = 0, var = 0;
        for (std::int64_t c = 0; c < n; c++)
            mean += x[r * n + c] / n;
        for (std::int64_t c = 0; c < n; c++)
            var += (x[r * n + c] - mean) * (x[r * n + c] - mean) / n;
        for (std::int64_t c = 0; c < n; c++)
            y[r * n + c] = (x[r * n + c] - mean) / std::sqrt(var + eps) * w[c] + b[c];
    }
}

void layer_norm_and_backward_match_reference(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 18);
    const std::int64_t rows = 5, n = 7;
    std::vector<float> x = normal(&rng, rows * n), w = normal(&rng, n), b = normal(&rng, n),
                       d_y = normal(&rng, rows * n), y(x.size());
    attn::layer_norm(rows, n, x, w, b, 1e-5f, y);
    std::vector<double> xd(x.begin(), x.end()), ry(y.size());
    ref_layer_norm(xd.data(), rows, n, w.data(), b.data(), 1e-5f, ry.data());
    assert_close("layer_norm", y, ry, n);

    std::vector<float> d_x(x.size()), d_w(n), d_b(n);
    attn::layer_norm_backward(rows, n, x, w, 1e-5f, d_y, d_x, d_w, d_b);
    // Gradients of L = Σ d_y · y by central differences of the float64 norm.
    std::vector<float> all(x);
    all.insert(all.end(), w.begin(), w.end());
    all.insert(all.end(), b.begin(), b.end());
    std::vector<float> grads(d_x);
    grads.insert(grads.end(), d_w.begin(), d_w.end());
    grads.insert(grads.end(), d_b.begin(), d_b.end());
    check_param_gradient("layer_norm", all, grads, [&] {
        std::vector<double> xs(all.begin(), all.begin() + rows * n), o(xs.size());
        ref_layer_norm(xs.data(), rows, n, &all[rows * n], &all[rows * n + n], 1e-5f, o.data());
        double l = 0;
        for (std::size_t i = 0; i < o.size(); i++)
            l += d_y[i] * o[i];
        return l;
    }, 1e-4);
}

// nn.TransformerEncoderLayer (post-norm, GELU: smooth, so that central
// differences see no kink) in double, from the flat parameters
// (attn_encoder_layer_get_params' layout).
std::vector<double> ref_encoder(const std::vector<float> &p, const std::vector<float> &x,
                                std::int64_t B, std::int64_t L, std::int64_t d,
                                std::int64_t nh, std::int64_t ff)
{
    const std::int64_t rows = B * L;
    ru_mha m = mha_ref_of(p, d, nh);
    m.causal = ATTN_CAUSAL_TOP_LEFT;
    std::vector<double> sa(rows * d), h(rows * d), h1(rows * d), f(rows * ff), y(rows * d);
    ru_ref_mha(&m, B, L, L, x.data(), x.data(), x.data(), nullptr, sa.data(), nullptr);
    const float *w1 = p.data() + 4 * d * d + 4 * d, *b1 = w1 + ff * d, *w2 = b1 + ff,
                *b2 = w2 + d * ff, *n1w = b2 + d, *n1b = n1w + d, *n2w = n1b + d, *n2b = n2w + d;
    for (std::int64_t i = 0; i < rows * d; i++)
        h[i] = x[i] + sa[i];
    ref_layer_norm(h.data(), rows, d, n1w, n1b, 1e-5f, h1.data());
    for (std::int64_t r = 0; r < rows; r++) {
        for (std::int64_t o = 0; o < ff; o++) {
            double s = b1[o];
            for (std::int64_t c = 0; c < d; c++)
                s += h1[r * d + c] * w1[o * d + c];
            f[r * ff + o] = s / 2 * (1 + std::erf(s / std::sqrt(2.0)));   // exact GELU
        }
        for (std::int64_t o = 0; o < d; o++) {
            double s = b2[o];
            for (std::int64_t c = 0; c < ff; c++)
                s += f[r * ff + c] * w2[o * ff + c];
            h[r * d + o] = h1[r * d + o] + s;
        }
    }
    ref_layer_norm(h.data(), rows, d, n2w, n2b, 1e-5f, y.data());
    return y;
}

void encoder_layer_matches_reference(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 19);
    const std::int64_t B = 2, L = 4, d = 8, nh = 2, ff = 12;
    attn::encoder_layer layer(d, nh, ff, ATTN_ACTIVATION_GELU);
    layer.set_causal(ATTN_CAUSAL_TOP_LEFT);
    std::vector<float> p = normal(&rng, (std::int64_t)layer.param_count(), 0.3f);
    assert_int_equal(p.size(), 4 * d * d + 4 * d + 2 * d * ff + ff + d + 4 * d);
    for (std::int64_t i = 0; i < 2 * d; i++)   // norm weights near 1
        p[p.size() - 4 * d + (i / d) * 2 * d + i % d] += 1.0f;
    layer.set_params(p);
    std::vector<float> x = normal(&rng, B * L * d), d_out = normal(&rng, B * L * d);
    attn::context ctx;
    std::vector<float> out(x.size());
    layer.forward(ctx, B, L, x, nullptr, out);
    assert_close("encoder forward", out, ref_encoder(p, x, B, L, d, nh, ff), d);

    attn::activations act;
    std::vector<float> out_train(x.size()), d_src(x.size()), d_params(p.size());
    layer.forward_train(ctx, B, L, x, nullptr, out_train, act);
    assert_memory_equal(out_train.data(), out.data(), out.size() * sizeof(float));
    layer.backward(ctx, act, d_out, d_src, d_params);
    auto loss = [&] {
        std::vector<double> o = ref_encoder(p, x, B, L, d, nh, ff);
        double l = 0;
        for (std::size_t i = 0; i < o.size(); i++)
            l += d_out[i] * o[i];
        return l;
    };
    check_param_gradient("encoder d_params", p, d_params, loss, 1e-4);
    check_param_gradient("encoder d_src", x, d_src, loss, 1e-4);

    // In place: out may be src.
    std::vector<float> inplace = x;
    layer.forward(ctx, B, L, inplace, nullptr, inplace);
    assert_memory_equal(inplace.data(), out.data(), out.size() * sizeof(float));
    expect_error([&] { layer.backward(ctx, attn::activations(), d_out, d_src); },
                 ATTN_ERR_STATE, "attn::encoder_layer::backward: act was not filled");
}

// ---- decoding: the KV cache, cached forwards, merging ---------------------

void kv_cache_sequence_operations(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 20);
    const std::int64_t Hkv = 2, Dk = 3, Dv = 2, page = 4;
    attn::kv_cache cache(Hkv, Dk, Dv, page, 8);
    const std::int64_t a = cache.seq_open();
    std::vector<float> k = normal(&rng, 6 * Hkv * Dk), v = normal(&rng, 6 * Hkv * Dv);
    cache.append(a, 6, k, v);
    assert_int_equal(cache.seq_len(a), 6);
    const std::int64_t b = cache.seq_fork(a);
    assert_true(b != a);
    cache.seq_truncate(b, 5);
    std::vector<float> k_more = normal(&rng, Hkv * Dk), v_more = normal(&rng, Hkv * Dv);
    cache.append(b, 1, k_more, v_more);   // copy-on-write of the shared page
    std::vector<float> rk(6 * Hkv * Dk), rv(6 * Hkv * Dv);
    cache.read(a, 0, 6, rk, rv);
    assert_memory_equal(rk.data(), k.data(), k.size() * sizeof(float));
    assert_memory_equal(rv.data(), v.data(), v.size() * sizeof(float));
    std::vector<float> last(Hkv * Dk);
    cache.read(b, 5, 1, last);   // keys only
    assert_memory_equal(last.data(), k_more.data(), last.size() * sizeof(float));
    cache.read(b, 0, 5, attn::out(rk.data(), 5 * Hkv * Dk));
    assert_memory_equal(rk.data(), k.data(), 5 * Hkv * Dk * sizeof(float));
    cache.seq_close(a);
    expect_error([&] { cache.seq_len(a); }, ATTN_ERR_INVALID_ARGUMENT,
                 "attn_kv_cache_seq_len");
    expect_error([&] { cache.append(b, 2, k, v); }, ATTN_ERR_SHAPE_MISMATCH,
                 "attn::kv_cache::append: k has 36 elements, the shapes need 12");
    assert_int_equal(cache.seq_len(b), 6);
}

void mha_decoding_matches_full_forward(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 21);
    const std::int64_t E = 8, H = 4, L = 7;
    attn::mha layer(E, H, 2, E, E, true);   // GQA: 2 kv heads
    std::vector<float> params = normal(&rng, (std::int64_t)layer.param_count(), 0.3f);
    layer.set_params(params).set_causal(ATTN_CAUSAL_BOTTOM_RIGHT);
    std::vector<float> x = normal(&rng, 2 * L * E);   // two sequences
    attn::kv_cache cache(2, E / H, E / H, 3, 16);
    const std::vector<std::int64_t> seqs = {cache.seq_open(), cache.seq_open()};
    attn::context ctx;
    // Both sequences token by token, in one call per step.
    std::vector<float> out(x.size());
    for (std::int64_t t = 0; t < L; t++) {
        std::vector<float> step(2 * E), got(2 * E);
        for (int s = 0; s < 2; s++)
            std::memcpy(&step[s * E], &x[(s * L + t) * E], E * sizeof(float));
        const std::vector<std::int64_t> cu_q = {0, 1, 2};
        layer.forward_cached(ctx, cache, seqs, cu_q, step, got);
        for (int s = 0; s < 2; s++)
            std::memcpy(&out[(s * L + t) * E], &got[s * E], E * sizeof(float));
    }
    assert_int_equal(cache.seq_len(seqs[1]), L);
    ru_mha ref = mha_ref_of(params, E, H, 2);
    ref.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    std::vector<double> want(out.size());
    ru_ref_mha(&ref, 2, L, L, x.data(), x.data(), x.data(), nullptr, want.data(), nullptr);
    assert_close("mha decoded token by token", out, want, E);

    // The cached keys through the sdpa op: a 2-token chunk of sequence 0
    // against all 7 + 2 keys, bottom-right causal, with lse.
    const std::int64_t Hq = 4, Hkv = 2, D = 2;
    attn::sdpa op(1, Hq, Hkv, 1, 1, D, D);
    std::vector<float> k_new = normal(&rng, 2 * Hkv * D), v_new = normal(&rng, 2 * Hkv * D);
    cache.append(seqs[0], 2, k_new, v_new);
    std::vector<float> q = normal(&rng, 2 * Hq * D), o(2 * Hq * D), lse(2 * Hq);
    const std::vector<std::int64_t> one = {seqs[0]}, cu = {0, 2};
    op.forward_cached(ctx, cache, one, cu, q, o, lse);
    std::vector<float> k_all(9 * Hkv * D), v_all(9 * Hkv * D);
    cache.read(seqs[0], 0, 9, k_all, v_all);
    ref_shape s{1, Hq, Hkv, 2, 9, D, D, REF_BSHD, REF_CAUSAL_BOTTOM_RIGHT,
                1.0f / std::sqrt(2.0f), nullptr};
    std::vector<double> ro(o.size()), rlse(lse.size());
    assert_int_equal(ref_sdpa(&s, q.data(), k_all.data(), v_all.data(), nullptr, ro.data(),
                              nullptr, rlse.data()),
                     0);
    assert_close("sdpa forward_cached", o, ro, Hq * D);
    // lse is [total_q, heads_q] here, the reference's [batch, heads_q, len_q].
    std::vector<double> rlse_t(rlse.size());
    for (std::int64_t i = 0; i < 2; i++)
        for (std::int64_t h = 0; h < Hq; h++)
            rlse_t[i * Hq + h] = rlse[h * 2 + i];
    std::int64_t worst;
    assert_true(tu_max_err_lse(lse.data(), rlse_t.data(), 2 * Hq, &worst) <= TOL);
    expect_error([&] { op.forward_cached(ctx, cache, one, std::vector<std::int64_t>{0}, q, o); },
                 ATTN_ERR_SHAPE_MISMATCH,
                 "attn::sdpa::forward_cached: cu_q has 1 elements, the shapes need 2");
}

void encoder_layer_decoding_matches_forward(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 22);
    const std::int64_t L = 6, d = 8, nh = 2, ff = 16;
    attn::encoder_layer layer(d, nh, ff, ATTN_ACTIVATION_GELU, true);
    std::vector<float> p = normal(&rng, (std::int64_t)layer.param_count(), 0.3f);
    layer.set_params(p).set_causal(ATTN_CAUSAL_TOP_LEFT);
    std::vector<float> x = normal(&rng, L * d), full(x.size());
    attn::context ctx;
    layer.forward(ctx, 1, L, x, nullptr, full);
    attn::kv_cache cache(nh, d / nh, d / nh, 4, 4);
    const std::vector<std::int64_t> seq = {cache.seq_open()};
    // A 4-token prefill, then 2 tokens one at a time (in place).
    std::vector<float> got = x;
    layer.forward_cached(ctx, cache, seq, std::vector<std::int64_t>{0, 4},
                         attn::in(got.data(), 4 * d), attn::out(got.data(), 4 * d));
    for (std::int64_t t = 4; t < L; t++)
        layer.forward_cached(ctx, cache, seq, std::vector<std::int64_t>{0, 1},
                             attn::in(&got[t * d], d), attn::out(&got[t * d], d));
    std::vector<double> want(full.begin(), full.end());
    assert_close("encoder layer decoded vs its forward", got, want, d, 1e-5);
}

void merge_partials_matches_reference(void **)
{
    tu_rng rng;
    tu_rng_seed(&rng, 23);
    const std::int64_t H = 2, Lq = 3, L1 = 4, L2 = 5, D = 4;
    std::vector<float> q = normal(&rng, H * Lq * D), k = normal(&rng, H * (L1 + L2) * D),
                       v = normal(&rng, H * (L1 + L2) * D);
    // Each part's keys are a contiguous range of every head's keys (BHSD).
    auto part = [&](const std::vector<float> &t, std::int64_t from, std::int64_t n) {
        std::vector<float> r;
        for (std::int64_t h = 0; h < H; h++)
            r.insert(r.end(), t.begin() + (h * (L1 + L2) + from) * D,
                     t.begin() + (h * (L1 + L2) + from + n) * D);
        return r;
    };
    attn::context ctx;
    attn::sdpa op1(1, H, H, Lq, L1, D, D), op2(1, H, H, Lq, L2, D, D);
    std::vector<float> o1(op1.out_size()), l1(op1.lse_size()), o2(op2.out_size()),
        l2(op2.lse_size());
    std::vector<float> k1 = part(k, 0, L1), v1 = part(v, 0, L1), k2 = part(k, L1, L2),
                       v2 = part(v, L1, L2);
    op1.forward(ctx, q, k1, v1, nullptr, o1, {}, l1);
    op2.forward(ctx, q, k2, v2, nullptr, o2, {}, l2);
    std::vector<float> o(o1.size()), lse(l1.size());
    attn::merge_partials(H * Lq, D, {o1, o2}, {l1, l2}, o, lse);
    ref_shape s{1, H, H, Lq, L1 + L2, D, D, REF_BHSD, REF_CAUSAL_NONE, 0.5, nullptr};
    std::vector<double> ro(o.size()), rlse(lse.size());
    assert_int_equal(ref_sdpa(&s, q.data(), k.data(), v.data(), nullptr, ro.data(), nullptr,
                              rlse.data()),
                     0);
    assert_close("merged", o, ro, D);
    std::int64_t worst;
    assert_true(tu_max_err_lse(lse.data(), rlse.data(), H * Lq, &worst) <= TOL);
    // In place into the first part.
    attn::merge_partials(H * Lq, D, {o1, o2}, {l1, l2}, o1, l1);
    assert_memory_equal(o1.data(), o.data(), o.size() * sizeof(float));
    expect_error([&] { attn::merge_partials(H * Lq, D, {o1, o2}, {l1}, o, lse); },
                 ATTN_ERR_SHAPE_MISMATCH, "attn::merge_partials: 2 outs but 1 lses");
    expect_error([&] { attn::merge_partials(H * Lq, D, {o1, k1}, {l1, l2}, o, lse); },
                 ATTN_ERR_SHAPE_MISMATCH,
                 "attn::merge_partials: outs[1] has 32 elements, the shapes need 24");
}

// ---- the rest --------------------------------------------------------------

void runtime_info_is_the_c_text(void **)
{
    std::string text = attn::runtime_info();
    char buf[4096];
    std::size_t n = attn_runtime_info(buf, sizeof buf);
    assert_int_equal(text.size(), n);
    assert_string_equal(text.c_str(), buf);
    assert_non_null(std::strstr(text.c_str(), "\nblas: "));
}

// A failed call leaves its outputs untouched: the wrapper's own checks and
// libattn's.
void failures_leave_outputs_alone(void **)
{
    attn::context ctx;
    attn::sdpa op(1, 1, 1, 2, 2, 2, 2);
    std::vector<float> q(4, 1.0f), out(4, 1.0f), lse(2, 1.0f), d_q(4, 7.0f);
    expect_error([&] { op.backward(ctx, q, q, q, nullptr, out, lse, std::vector<float>(3), d_q); },
                 ATTN_ERR_SHAPE_MISMATCH,
                 "attn::sdpa::backward: d_out has 3 elements, the shapes need 4");
    // The same buffer as an input and a gradient: libattn refuses overlaps.
    expect_error([&] { op.backward(ctx, q, q, q, nullptr, out, lse, out, out); },
                 ATTN_ERR_INVALID_ARGUMENT, "attn_sdpa_backward");
    for (float x : d_q)
        assert_true(x == 7.0f);
    expect_error([&] { op.set_dropout(1.0f, 0); }, ATTN_ERR_INVALID_ARGUMENT,
                 "attn_sdpa_set_dropout");
    expect_error([&] { attn::kv_cache(1, 1, 1, 0, 1); }, ATTN_ERR_INVALID_ARGUMENT,
                 "attn_kv_cache_create");
    expect_error([&] { attn::encoder_layer(6, 4, 8); }, ATTN_ERR_SHAPE_MISMATCH,
                 "attn_encoder_layer_create");
    attn::mha layer(4, 2);
    expect_error([&] { layer.property(static_cast<attn_mha_property>(99)); },
                 ATTN_ERR_INVALID_ARGUMENT, "attn_mha_get_property");
    expect_error([&] { layer.params(); }, ATTN_ERR_STATE, "attn_mha_get_params");
}

}  // namespace

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sdpa_backward_matches_reference),
        cmocka_unit_test(sdpa_dropout_uses_its_keep_mask),
        cmocka_unit_test(mha_training_matches_reference),
        cmocka_unit_test(mha_cross_attention_gradients),
        cmocka_unit_test(mha_modifiers_and_dropout),
        cmocka_unit_test(mha_rope_matches_reference),
        cmocka_unit_test(rope_apply_matches_formula),
        cmocka_unit_test(additive_training_matches_reference),
        cmocka_unit_test(nadaraya_watson_backward_matches_formula),
        cmocka_unit_test(layer_norm_and_backward_match_reference),
        cmocka_unit_test(encoder_layer_matches_reference),
        cmocka_unit_test(kv_cache_sequence_operations),
        cmocka_unit_test(mha_decoding_matches_full_forward),
        cmocka_unit_test(encoder_layer_decoding_matches_forward),
        cmocka_unit_test(merge_partials_matches_reference),
        cmocka_unit_test(runtime_info_is_the_c_text),
        cmocka_unit_test(failures_leave_outputs_alone),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
