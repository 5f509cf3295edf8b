// wrapper_example.cpp — libattn through its C++17 wrapper <attn.hpp>: the
// UvA tutorial 6 example, a padded batch with a valid-lengths mask, and the
// exception a wrong shape throws. Built against the installed library:
//     c++ -std=c++17 wrapper_example.cpp $(pkg-config --cflags --libs attn)
#include <attn.hpp>

#include <cstdint>
#include <cstdio>
#include <vector>

int main()
{
    try {
        attn::context ctx;

        // UvA tutorial 6: one sequence of 3 queries and 3 keys, d_k = 2.
        const std::vector<float> q = {0.3367f, 0.1288f, 0.2345f, 0.2303f, -1.1229f, -0.1863f};
        const std::vector<float> k = {2.2082f, -0.6380f, 0.4617f, 0.2674f, 0.5349f, 0.8094f};
        const std::vector<float> v = {1.1103f, -1.6898f, -0.9890f, 0.9580f, 1.3221f, 0.8172f};
        attn::sdpa op(1, 1, 1, 3, 3, 2, 2);   // batch, heads_q, heads_kv, len_q, len_kv, d, d_v
        std::vector<float> values(op.out_size()), attention(op.weights_size());
        op.forward(ctx, q, k, v, nullptr, values, attention);
        std::printf("Values\n");
        for (int i = 0; i < 3; i++)
            std::printf("  %7.4f %7.4f\n", values[2 * i], values[2 * i + 1]);
        std::printf("Attention\n");
        for (int i = 0; i < 3; i++)
            std::printf("  %.4f %.4f %.4f\n", attention[3 * i], attention[3 * i + 1],
                        attention[3 * i + 2]);

        // Two sequences padded to 4 keys; the first has only 2 real ones.
        // The mask references `lengths`, which outlives the forward call.
        std::vector<float> pq(2 * 1 * 2, 0.5f), pk(2 * 4 * 2, 1.0f), pv(2 * 4 * 1);
        for (std::size_t i = 0; i < pv.size(); i++)
            pv[i] = static_cast<float>(i);
        const std::vector<std::int64_t> lengths = {2, 4};
        attn::mask padding;
        padding.set_kv_lengths(lengths, 2);
        attn::sdpa padded(2, 1, 1, 1, 4, 2, 1);
        std::vector<float> mean = padded.run(ctx, pq, pk, pv, &padding);
        std::printf("Padded means: %.4f %.4f\n", mean[0], mean[1]);   // 0.5 (of 0, 1) and 5.5

        // A wrong extent never reaches libattn: it throws first.
        std::vector<float> too_short(5);
        op.forward(ctx, too_short, k, v, nullptr, values);
        std::printf("not reached\n");
        return 1;
    } catch (const attn::error &e) {
        std::printf("attn::error (status %d): %s\n", static_cast<int>(e.status()),
                    e.detail().c_str());
        return e.status() == ATTN_ERR_SHAPE_MISMATCH ? 0 : 1;
    }
}
