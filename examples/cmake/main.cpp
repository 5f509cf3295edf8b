// main.cpp — the UvA tutorial 6 example through <attn.hpp>, in a CMake
// project that found libattn with find_package(attn 1.1 REQUIRED).
#include <attn.hpp>

#include <cstdio>
#include <vector>

int main()
{
    const std::vector<float> q = {0.3367f, 0.1288f, 0.2345f, 0.2303f, -1.1229f, -0.1863f};
    const std::vector<float> k = {2.2082f, -0.6380f, 0.4617f, 0.2674f, 0.5349f, 0.8094f};
    const std::vector<float> v = {1.1103f, -1.6898f, -0.9890f, 0.9580f, 1.3221f, 0.8172f};
    try {
        attn::context ctx;
        attn::sdpa op(1, 1, 1, 3, 3, 2, 2);   // batch, heads_q, heads_kv, len_q, len_kv, d, d_v
        std::vector<float> values = op.run(ctx, q, k, v);
        std::printf("libattn %s (found by CMake)\n", attn_version_string());
        for (int i = 0; i < 3; i++)
            std::printf("  %7.4f %7.4f\n", values[2 * i], values[2 * i + 1]);
    } catch (const attn::error &e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
