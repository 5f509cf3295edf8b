/*
 * mha_from_pytorch.c — runs a torch.nn.MultiheadAttention layer exported by
 * export_mha.py through libattn and compares with PyTorch's output
 * (docs/pytorch.md, "Worked example").
 *
 *     /usr/bin/python3 examples/pytorch/export_mha.py /tmp/mha
 *     ./build/examples/mha_from_pytorch /tmp/mha
 *
 * The directory holds raw arrays in the machine's byte order: the layer's
 * state_dict (in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias),
 * the input x [B, L, E] used as query, key and value, PyTorch's two masks in
 * PyTorch's polarity (key_padding_mask [B, L] and attn_mask [L, L], uint8,
 * 1 = do not attend), and PyTorch's out [B, L, E] and weights [B, H, L, L].
 * Exits 0 when out and weights agree within 1e-5 relative to their largest
 * magnitude, 1 otherwise.
 */
#include <attn.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOLERANCE 1e-5

/* Reads DIR/NAME into a new buffer of exactly `count` elements of `size`
 * bytes. Returns NULL, after a message, if the file is missing, has another
 * size, or memory is short. */
static void *load(const char *dir, const char *name, size_t size, size_t count)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
        fprintf(stderr, "%s/%s: path too long\n", dir, name);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return NULL;
    }
    void *data = malloc(count * size);
    if (!data) {
        fprintf(stderr, "%s: out of memory for %zu bytes\n", path, count * size);
        fclose(f);
        return NULL;
    }
    size_t got = fread(data, size, count, f);
    int extra = fgetc(f); /* EOF expected: the file must not be longer */
    int error = ferror(f);
    fclose(f);
    if (error || got != count || extra != EOF) {
        fprintf(stderr, "%s: %s; expected exactly %zu bytes (%zu elements of %zu bytes)\n",
                path, error ? "read error" : got != count ? "file too short" : "file too long",
                count * size, count, size);
        free(data);
        return NULL;
    }
    return data;
}

/* Reads "name value" from the config file, checking the name. */
static int read_field(FILE *f, const char *path, const char *want, int64_t *value)
{
    char name[64];
    if (fscanf(f, "%63s %" SCNd64, name, value) != 2 || strcmp(name, want) != 0) {
        fprintf(stderr, "%s: expected a line \"%s <integer>\"\n", path, want);
        return -1;
    }
    return 0;
}

/* max |a - b| and max |b| over n floats. */
static void compare(const float *a, const float *b, size_t n, double *max_diff, double *max_ref)
{
    *max_diff = 0.0;
    *max_ref = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > *max_diff || isnan(d))
            *max_diff = d;
        if (fabs((double)b[i]) > *max_ref)
            *max_ref = fabs((double)b[i]);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR   (DIR written by export_mha.py)\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];

    /* Shapes. */
    char path[4096];
    snprintf(path, sizeof path, "%s/config.txt", dir);
    FILE *cf = fopen(path, "r");
    if (!cf) {
        perror(path);
        return 1;
    }
    int64_t E, H, B, L, bias;
    int bad = read_field(cf, path, "embed_dim", &E) || read_field(cf, path, "num_heads", &H) ||
              read_field(cf, path, "batch", &B) || read_field(cf, path, "seq_len", &L) ||
              read_field(cf, path, "bias", &bias);
    fclose(cf);
    if (bad)
        return 1;
    if (E < 1 || H < 1 || B < 1 || L < 1 || E > 65536 || H > E || B > 65536 || L > 65536 ||
        (bias != 0 && bias != 1)) {
        fprintf(stderr, "%s: sizes out of range for this example\n", path);
        return 1;
    }
    size_t e = (size_t)E, h = (size_t)H, b = (size_t)B, l = (size_t)L;

    /* Everything the program allocates, freed at the end whatever happens. */
    float *in_w = NULL, *in_b = NULL, *out_w = NULL, *out_b = NULL, *x = NULL;
    float *ref_out = NULL, *ref_weights = NULL, *out = NULL, *weights = NULL;
    uint8_t *padding = NULL, *masked = NULL, *keep = NULL;
    int64_t *lengths = NULL;
    attn_context *ctx = NULL;
    attn_mha *mha = NULL;
    attn_mask *mask = NULL;
    int rc = 1;

    in_w = load(dir, "in_proj_weight.bin", sizeof(float), 3 * e * e);
    out_w = load(dir, "out_proj.weight.bin", sizeof(float), e * e);
    if (bias) {
        in_b = load(dir, "in_proj_bias.bin", sizeof(float), 3 * e);
        out_b = load(dir, "out_proj.bias.bin", sizeof(float), e);
    }
    x = load(dir, "x.bin", sizeof(float), b * l * e);
    padding = load(dir, "key_padding_mask.bin", 1, b * l);
    masked = load(dir, "attn_mask.bin", 1, l * l);
    ref_out = load(dir, "out.bin", sizeof(float), b * l * e);
    ref_weights = load(dir, "weights.bin", sizeof(float), b * h * l * l);
    out = malloc(b * l * e * sizeof(float));
    weights = malloc(b * h * l * l * sizeof(float));
    keep = malloc(l * l);
    lengths = malloc(b * sizeof(int64_t));
    if (!in_w || !out_w || (bias && (!in_b || !out_b)) || !x || !padding || !masked ||
        !ref_out || !ref_weights)
        goto done;
    if (!out || !weights || !keep || !lengths) {
        fprintf(stderr, "out of memory\n");
        goto done;
    }

    /* key_padding_mask (1 = padding) of right-padded rows -> valid lengths. */
    for (size_t r = 0; r < b; r++) {
        size_t n = 0;
        while (n < l && !padding[r * l + n])
            n++;
        for (size_t j = n; j < l; j++)
            if (!padding[r * l + j]) {
                fprintf(stderr, "key_padding_mask row %zu is not right-padded: use "
                        "attn_mask_set_bool with shape [B, 1, 1, L] instead\n", r);
                goto done;
            }
        lengths[r] = (int64_t)n;
    }
    /* attn_mask (1 = not allowed) -> libattn's keep mask (1 = attend). */
    for (size_t i = 0; i < l * l; i++)
        keep[i] = !masked[i];

    /* in_proj_weight is [Wq; Wk; Wv], each [E, E]: rows 0..E-1, E..2E-1, 2E..3E-1. */
    attn_status st = attn_context_create(&ctx);
    if (!st) st = attn_mha_create(&mha, E, H, H, E, E, (int)bias);
    if (!st) st = attn_mha_set_weights(mha, ATTN_PROJ_Q, in_w, bias ? in_b : NULL);
    if (!st) st = attn_mha_set_weights(mha, ATTN_PROJ_K, in_w + e * e, bias ? in_b + e : NULL);
    if (!st) st = attn_mha_set_weights(mha, ATTN_PROJ_V, in_w + 2 * e * e,
                                       bias ? in_b + 2 * e : NULL);
    if (!st) st = attn_mha_set_weights(mha, ATTN_PROJ_O, out_w, out_b);
    if (!st) st = attn_mask_create(&mask);
    if (!st) st = attn_mask_set_kv_lengths(mask, lengths, B, L, 0);
    if (!st) st = attn_mask_set_bool(mask, keep, 1, 1, L, L);
    if (!st) st = attn_mha_forward(ctx, mha, B, L, L, x, x, x, mask, out, weights);
    if (st) {
        fprintf(stderr, "libattn: %s (%s)\n", attn_status_string(st), attn_last_error());
        goto done;
    }

    double diff_out, ref_max_out, diff_w, ref_max_w;
    compare(out, ref_out, b * l * e, &diff_out, &ref_max_out);
    compare(weights, ref_weights, b * h * l * l, &diff_w, &ref_max_w);
    double rel_out = diff_out / ref_max_out, rel_w = diff_w / ref_max_w;
    printf("libattn %s, MultiheadAttention(embed_dim=%" PRId64 ", num_heads=%" PRId64
           "), batch %" PRId64 ", seq_len %" PRId64 "\n",
           attn_version_string(), E, H, B, L);
    printf("out     max |libattn - torch| = %.3e  (max |torch| = %.3f, relative %.3e)\n",
           diff_out, ref_max_out, rel_out);
    printf("weights max |libattn - torch| = %.3e  (max |torch| = %.3f, relative %.3e)\n",
           diff_w, ref_max_w, rel_w);
    rc = rel_out <= TOLERANCE && rel_w <= TOLERANCE ? 0 : 1;
    printf("%s (tolerance %.0e relative)\n", rc == 0 ? "OK" : "MISMATCH", TOLERANCE);

done:
    attn_mask_destroy(mask); /* before the arrays it references */
    attn_mha_destroy(mha);
    attn_context_destroy(ctx);
    free(in_w);
    free(in_b);
    free(out_w);
    free(out_b);
    free(x);
    free(padding);
    free(masked);
    free(keep);
    free(lengths);
    free(ref_out);
    free(ref_weights);
    free(out);
    free(weights);
    return rc;
}
