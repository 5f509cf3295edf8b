/* main.c — the same example through the C API, in the same CMake project:
 * attn::attn serves C and C++ alike. */
#include <attn.h>

#include <stdio.h>

int main(void)
{
    const float q[6] = {0.3367f, 0.1288f, 0.2345f, 0.2303f, -1.1229f, -0.1863f};
    const float k[6] = {2.2082f, -0.6380f, 0.4617f, 0.2674f, 0.5349f, 0.8094f};
    const float v[6] = {1.1103f, -1.6898f, -0.9890f, 0.9580f, 1.3221f, 0.8172f};
    float values[6];
    attn_context *ctx = NULL;
    attn_sdpa *op = NULL;
    attn_status st = attn_context_create(&ctx);
    if (st == ATTN_OK)
        st = attn_sdpa_create(&op, 1, 1, 1, 3, 3, 2, 2);
    if (st == ATTN_OK)
        st = attn_sdpa_forward(ctx, op, q, k, v, NULL, values, NULL, NULL);
    if (st != ATTN_OK)
        fprintf(stderr, "%s\n", attn_last_error());
    else
        for (int i = 0; i < 3; i++)
            printf("  %7.4f %7.4f\n", values[2 * i], values[2 * i + 1]);
    attn_sdpa_destroy(op);
    attn_context_destroy(ctx);
    return st == ATTN_OK ? 0 : 1;
}
