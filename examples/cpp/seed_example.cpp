// seed_example.cpp — the UvA tutorial 6 example from C++, linked to the
// installed libattn through pkg-config:
//     c++ -std=c++17 seed_example.cpp $(pkg-config --cflags --libs attn)
#include <attn.h>

#include <cstdio>
#include <memory>
#include <vector>

int main()
{
    const std::vector<float> q = {0.3367f, 0.1288f, 0.2345f, 0.2303f, -1.1229f, -0.1863f};
    const std::vector<float> k = {2.2082f, -0.6380f, 0.4617f, 0.2674f, 0.5349f, 0.8094f};
    const std::vector<float> v = {1.1103f, -1.6898f, -0.9890f, 0.9580f, 1.3221f, 0.8172f};
    std::vector<float> values(3 * 2), attention(3 * 3);

    attn_context *ctx_raw = nullptr;
    attn_sdpa *op_raw = nullptr;
    attn_status st = attn_context_create(&ctx_raw);
    std::unique_ptr<attn_context, void (*)(attn_context *)> ctx(ctx_raw, attn_context_destroy);
    if (st == ATTN_OK)
        st = attn_sdpa_create(&op_raw, 1, 1, 1, 3, 3, 2, 2);
    std::unique_ptr<attn_sdpa, void (*)(attn_sdpa *)> op(op_raw, attn_sdpa_destroy);
    if (st == ATTN_OK)
        st = attn_sdpa_forward(ctx.get(), op.get(), q.data(), k.data(), v.data(), nullptr,
                               values.data(), attention.data(), nullptr);
    if (st != ATTN_OK) {
        std::fprintf(stderr, "%s: %s\n", attn_status_string(st), attn_last_error());
        return 1;
    }
    std::printf("Values\n");
    for (int i = 0; i < 3; i++)
        std::printf("  %7.4f %7.4f\n", values[2 * i], values[2 * i + 1]);
    std::printf("Attention\n");
    for (int i = 0; i < 3; i++)
        std::printf("  %.4f %.4f %.4f\n", attention[3 * i], attention[3 * i + 1],
                    attention[3 * i + 2]);
    return 0;
}
