// test_cxx_header.cpp — the public header compiles as C++17 (warning-free at
// -Wall -Wextra -Wpedantic) and its C linkage works: a C++ program calls the
// library and gets the UvA tutorial's numbers.
#include <attn.h>

#include <cmath>
#include <cstdio>
#include <memory>

namespace {

struct context_deleter {
    void operator()(attn_context *c) const { attn_context_destroy(c); }
};
struct sdpa_deleter {
    void operator()(attn_sdpa *s) const { attn_sdpa_destroy(s); }
};

}  // namespace

int main()
{
    static_assert(ATTN_OK == 0 && ATTN_ERR_STATE == 7, "status values are fixed");
    static_assert(ATTN_LAYOUT_BSHD == 1 && ATTN_CAUSAL_BOTTOM_RIGHT == 2, "enum values are fixed");

    const float q[] = {0.3367f, 0.1288f, 0.2345f, 0.2303f, -1.1229f, -0.1863f};
    const float k[] = {2.2082f, -0.6380f, 0.4617f, 0.2674f, 0.5349f, 0.8094f};
    const float v[] = {1.1103f, -1.6898f, -0.9890f, 0.9580f, 1.3221f, 0.8172f};
    const float want[] = {0.5698f, -0.1520f, 0.5379f, -0.0265f, 0.2246f, 0.5556f};
    float out[6];

    attn_context *raw_ctx = nullptr;
    attn_sdpa *raw_op = nullptr;
    if (attn_context_create(&raw_ctx) != ATTN_OK)
        return 1;
    std::unique_ptr<attn_context, context_deleter> ctx(raw_ctx);
    if (attn_sdpa_create(&raw_op, 1, 1, 1, 3, 3, 2, 2) != ATTN_OK)
        return 1;
    std::unique_ptr<attn_sdpa, sdpa_deleter> op(raw_op);

    if (attn_sdpa_forward(ctx.get(), op.get(), q, k, v, nullptr, out, nullptr, nullptr) != ATTN_OK) {
        std::fprintf(stderr, "forward: %s\n", attn_last_error());
        return 1;
    }
    for (int i = 0; i < 6; i++)
        if (std::fabs(out[i] - want[i]) > 2e-4f) {
            std::fprintf(stderr, "out[%d] = %f, want %f\n", i, out[i], want[i]);
            return 1;
        }
    // The error path from C++: a NULL op pointer.
    if (attn_sdpa_create(nullptr, 1, 1, 1, 1, 1, 1, 1) != ATTN_ERR_NULL_POINTER ||
        attn_last_error()[0] == '\0')
        return 1;
    std::puts("C++17: header compiles, UvA example reproduced, error path reported");
    return 0;
}
