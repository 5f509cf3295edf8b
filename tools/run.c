/*
 * run.c — `attn run`: scaled dot-product attention on .npy files.
 *
 * The command reads and checks everything (options, files, shapes, masks, the
 * heatmap's size) before it computes, and computes before it writes, so a
 * refused run leaves no output behind. Shapes and masks follow the rules of
 * run_shapes.h; libattn does the arithmetic and has the last word on sizes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attn.h>

#include "cli.h"
#include "run_shapes.h"
#include "svg_heatmap.h"
#include "tensor_io.h"

#define CMD "run"

static const char usage[] =
    "Usage: attn run --query Q.npy --key K.npy --value V.npy --out O.npy [options]\n"
    "\n"
    "Scaled dot-product attention on NumPy .npy files:\n"
    "    O = softmax(scale * Q K^T + bias, masked) V\n"
    "\n"
    "Inputs (float32, or float64 converted to float32; Q, K, V with the same\n"
    "number of dimensions):\n"
    "  --query Q.npy       queries [B, Hq, Lq, D], or [B, Lq, D] (one head), or [Lq, D]\n"
    "  --key K.npy         keys [B, Hkv, Lkv, D]; Hq must be a multiple of Hkv\n"
    "                      (grouped-query attention)\n"
    "  --value V.npy       values [B, Hkv, Lkv, Dv]\n"
    "  --layout L          bhsd: 4-D files are [B, H, S, D] (the default);\n"
    "                      bshd: they are [B, S, H, D]\n"
    "\n"
    "Options:\n"
    "  --scale S           the factor on Q K^T (default 1/sqrt(D))\n"
    "  --causal MODE       none (the default); top-left: query i sees keys j <= i;\n"
    "                      bottom-right: query i sees keys j <= i + Lkv - Lq\n"
    "  --valid-lens L.npy  int32 or int64 lengths, [B] (per batch row) or [B, Lq]\n"
    "                      (per query): keys at positions >= the length are masked\n"
    "  --mask M.npy        bool or uint8 keep-mask (non-zero = attend) that\n"
    "                      broadcasts like NumPy against the weights [B, Hq, Lq, Lkv];\n"
    "                      a 2-D mask is [Lq, Lkv]\n"
    "  --bias B.npy        float32/float64 bias added to the scaled logits,\n"
    "                      broadcast like --mask (-inf masks a key)\n"
    "  --threads N         threads for libattn (default 0: all cores)\n"
    "\n"
    "Outputs (float32; each file is written completely or not at all):\n"
    "  --out O.npy         the attention output, shaped like Q with Dv last\n"
    "  --weights W.npy     the attention weights [B, Hq, Lq, Lkv]\n"
    "  --lse LSE.npy       the log-sum-exp of each row's logits [B, Hq, Lq]\n"
    "                      (-inf for a query that sees no key)\n"
    "  --heatmap W.svg     the weights as heatmaps: a row of panels per batch row,\n"
    "                      a column per head\n"
    "  -h, --help          show this help\n"
    "\n"
    "With 3-D inputs the weights are [B, Lq, Lkv] and lse [B, Lq]; with 2-D inputs\n"
    "[Lq, Lkv] and [Lq]. A query that sees no key gets zeros, never NaN.\n"
    "\n"
    "Exit status: 0 on success, 1 when an input, the computation or an output is\n"
    "refused (the message names the file, or gives libattn's status and message),\n"
    "2 for a usage error.\n";

typedef struct run_options {
    const char *query, *key, *value, *layout, *scale, *causal, *valid_lens, *mask, *bias,
        *threads, *out, *weights, *lse, *heatmap;
} run_options;

/* The options turned into libattn's terms. */
typedef struct run_settings {
    attn_layout layout;
    attn_causal causal;
    int has_scale, has_threads;
    float scale;
    int threads;
} run_settings;

/* Everything loaded and checked, ready for libattn. */
typedef struct run_inputs {
    npy_array q, k, v, lens, keep, bias;
    sdpa_shape shape;
    int per_query;
    int64_t keep_dims[4], bias_dims[4];
} run_inputs;

static int parse_options(int argc, char **argv, run_options *o, int *help)
{
    memset(o, 0, sizeof *o);
    const cli_option opts[] = {
        {"--query", NULL, &o->query},   {"--key", NULL, &o->key},
        {"--value", NULL, &o->value},   {"--layout", NULL, &o->layout},
        {"--scale", NULL, &o->scale},   {"--causal", NULL, &o->causal},
        {"--valid-lens", NULL, &o->valid_lens}, {"--mask", NULL, &o->mask},
        {"--bias", NULL, &o->bias},     {"--threads", NULL, &o->threads},
        {"--out", "-o", &o->out},       {"--weights", NULL, &o->weights},
        {"--lse", NULL, &o->lse},       {"--heatmap", NULL, &o->heatmap},
    };
    const char *positional[1];
    int n_positional;
    int rc = cli_parse(CMD, argc, argv, opts, sizeof opts / sizeof opts[0], positional, 0,
                       &n_positional, help);
    if (rc != CLI_OK || *help)
        return rc;
    if (!o->query || !o->key || !o->value || !o->out)
        return cli_usage_error(CMD, "--query, --key, --value and --out are required (missing: "
                                    "%s)", !o->query ? "--query" : !o->key ? "--key"
                                          : !o->value ? "--value" : "--out");
    return CLI_OK;
}

static int read_settings(const run_options *o, run_settings *s)
{
    memset(s, 0, sizeof *s);
    if (!o->layout || strcmp(o->layout, "bhsd") == 0)
        s->layout = ATTN_LAYOUT_BHSD;
    else if (strcmp(o->layout, "bshd") == 0)
        s->layout = ATTN_LAYOUT_BSHD;
    else
        return cli_usage_error(CMD, "--layout: '%s' is neither bhsd nor bshd", o->layout);
    if (!o->causal || strcmp(o->causal, "none") == 0)
        s->causal = ATTN_CAUSAL_NONE;
    else if (strcmp(o->causal, "top-left") == 0)
        s->causal = ATTN_CAUSAL_TOP_LEFT;
    else if (strcmp(o->causal, "bottom-right") == 0)
        s->causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    else
        return cli_usage_error(CMD, "--causal: '%s' is not none, top-left or bottom-right",
                               o->causal);
    double scale;
    if (o->scale) {
        if (cli_parse_double(CMD, "--scale", o->scale, &scale) != CLI_OK)
            return CLI_USAGE;
        s->has_scale = 1;
        s->scale = (float)scale;  /* libattn refuses a non-finite one */
    }
    if (o->threads) {
        if (cli_parse_int(CMD, "--threads", o->threads, &s->threads) != CLI_OK)
            return CLI_USAGE;
        s->has_threads = 1;
    }
    return CLI_OK;
}

static void free_inputs(run_inputs *in)
{
    npy_array_free(&in->q);
    npy_array_free(&in->k);
    npy_array_free(&in->v);
    npy_array_free(&in->lens);
    npy_array_free(&in->keep);
    npy_array_free(&in->bias);
}

static int load_inputs(const run_options *o, const run_settings *set, run_inputs *in)
{
    if (io_load_floats(CMD, o->query, &in->q) || io_load_floats(CMD, o->key, &in->k) ||
        io_load_floats(CMD, o->value, &in->v))
        return CLI_REFUSED;
    const qkv_files f = {o->query, o->key, o->value, &in->q, &in->k, &in->v};
    if (run_shape_read(&f, set->layout == ATTN_LAYOUT_BSHD, &in->shape))
        return CLI_REFUSED;
    if (o->valid_lens && (io_load_lengths(CMD, o->valid_lens, &in->lens) ||
                          run_lengths_check(o->valid_lens, &in->lens, &in->shape,
                                            &in->per_query)))
        return CLI_REFUSED;
    if (o->mask && (io_load_keep_mask(CMD, o->mask, &in->keep) ||
                    run_mask_dims(o->mask, &in->keep, &in->shape, in->keep_dims)))
        return CLI_REFUSED;
    if (o->bias && (io_load_floats(CMD, o->bias, &in->bias) ||
                    run_mask_dims(o->bias, &in->bias, &in->shape, in->bias_dims)))
        return CLI_REFUSED;
    return CLI_OK;
}

/* The element count of a shape, or -1 if it does not fit in size_t bytes of
 * floats. */
static int64_t checked_count(const int64_t *shape, int ndim)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] != 0 && n > (int64_t)(SIZE_MAX / sizeof(float)) / shape[d])
            return -1;
        n *= shape[d];
    }
    return n;
}

/* A zeroed float buffer for an output of the given shape. */
static int alloc_output(const char *path, const int64_t *shape, int ndim, float **buf)
{
    int64_t n = checked_count(shape, ndim);
    *buf = n >= 0 ? calloc(n ? (size_t)n : 1, sizeof(float)) : NULL;
    if (!*buf)
        return cli_refuse(CMD, "%s: cannot allocate %lld floats for it", path, (long long)n);
    return CLI_OK;
}

static int set_mask(const run_options *o, const run_inputs *in, attn_mask **mask)
{
    if (!o->valid_lens && !o->mask && !o->bias)
        return CLI_OK;
    attn_status st = attn_mask_create(mask);
    if (st)
        return cli_library_error(CMD, "attn_mask_create", st);
    const sdpa_shape *s = &in->shape;
    if (o->valid_lens && (st = attn_mask_set_kv_lengths(*mask, in->lens.data, s->batch, s->len_q,
                                                        in->per_query)))
        return cli_library_error(CMD, o->valid_lens, st);
    const int64_t *d = in->keep_dims;
    if (o->mask && (st = attn_mask_set_bool(*mask, in->keep.data, d[0], d[1], d[2], d[3])))
        return cli_library_error(CMD, o->mask, st);
    d = in->bias_dims;
    if (o->bias && (st = attn_mask_set_bias(*mask, in->bias.data, d[0], d[1], d[2], d[3])))
        return cli_library_error(CMD, o->bias, st);
    return CLI_OK;
}

/* Runs libattn; on refusal prints its status and message. */
static int compute(const run_options *o, const run_settings *set, const run_inputs *in,
                   float *out, float *weights, float *lse)
{
    const sdpa_shape *s = &in->shape;
    char files[1024];
    snprintf(files, sizeof files, "%s, %s, %s", o->query, o->key, o->value);
    attn_context *ctx = NULL;
    attn_sdpa *op = NULL;
    attn_mask *mask = NULL;
    int rc = CLI_OK;
    attn_status st = attn_context_create(&ctx);
    if (st)
        rc = cli_library_error(CMD, "attn_context_create", st);
    else if (set->has_threads && (st = attn_context_set_num_threads(ctx, set->threads)))
        rc = cli_library_error(CMD, "--threads", st);
    else if ((st = attn_sdpa_create(&op, s->batch, s->heads_q, s->heads_kv, s->len_q, s->len_kv,
                                    s->dim_qk, s->dim_v)))
        rc = cli_library_error(CMD, files, st);
    else if ((st = attn_sdpa_set_layout(op, set->layout)))
        rc = cli_library_error(CMD, "--layout", st);
    else if (set->has_scale && (st = attn_sdpa_set_scale(op, set->scale)))
        rc = cli_library_error(CMD, "--scale", st);
    else if ((st = attn_sdpa_set_causal(op, set->causal)))
        rc = cli_library_error(CMD, "--causal", st);
    else if ((rc = set_mask(o, in, &mask)) == CLI_OK &&
             (st = attn_sdpa_forward(ctx, op, in->q.data, in->k.data, in->v.data, mask, out,
                                     weights, lse)))
        rc = cli_library_error(CMD, files, st);
    attn_mask_destroy(mask);
    attn_sdpa_destroy(op);
    attn_context_destroy(ctx);
    return rc;
}

/* The heatmap of the weights, checked before anything is computed. */
static int prepare_heatmap(const run_options *o, const sdpa_shape *s, svg_heatmap *h)
{
    memset(h, 0, sizeof *h);
    if (!o->heatmap)
        return CLI_OK;
    int64_t w[4];
    int n = run_weights_shape(s, w);
    svg_heatmap_set_shape(h, n, w);
    char err[SVG_HEATMAP_ERROR_SIZE];
    if (svg_heatmap_check(h, err))
        return cli_refuse(CMD, "%s: %s", o->heatmap, err);
    return CLI_OK;
}

static int write_heatmap(const char *path, svg_heatmap *h, const float *weights)
{
    strbuf sb = STRBUF_INIT;
    h->values = weights;
    svg_heatmap_render(&sb, h);
    int rc = io_save_text(CMD, path, &sb);
    strbuf_free(&sb);
    return rc;
}

static int run_checked(const run_options *o, const run_settings *set, const run_inputs *in)
{
    const sdpa_shape *s = &in->shape;
    int64_t out_shape[4], w_shape[4], lse_shape[3];
    int out_nd = run_out_shape(s, out_shape), w_nd = run_weights_shape(s, w_shape);
    int lse_nd = run_lse_shape(s, lse_shape);
    svg_heatmap h;
    float *out = NULL, *weights = NULL, *lse = NULL;
    int want_weights = o->weights || o->heatmap;
    int rc = prepare_heatmap(o, s, &h);
    if (rc == CLI_OK)
        rc = alloc_output(o->out, out_shape, out_nd, &out);
    if (rc == CLI_OK && want_weights)
        rc = alloc_output(o->weights ? o->weights : o->heatmap, w_shape, w_nd, &weights);
    if (rc == CLI_OK && o->lse)
        rc = alloc_output(o->lse, lse_shape, lse_nd, &lse);
    if (rc == CLI_OK)
        rc = compute(o, set, in, out, weights, lse);
    if (rc == CLI_OK)
        rc = io_save_floats(CMD, o->out, out, out_nd, out_shape);
    if (rc == CLI_OK && o->weights)
        rc = io_save_floats(CMD, o->weights, weights, w_nd, w_shape);
    if (rc == CLI_OK && o->lse)
        rc = io_save_floats(CMD, o->lse, lse, lse_nd, lse_shape);
    if (rc == CLI_OK && o->heatmap)
        rc = write_heatmap(o->heatmap, &h, weights);
    free(out);
    free(weights);
    free(lse);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    run_options o;
    run_settings set;
    int help;
    int rc = parse_options(argc, argv, &o, &help);
    if (rc != CLI_OK)
        return rc;
    if (help) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    if ((rc = read_settings(&o, &set)) != CLI_OK)
        return rc;
    run_inputs in;
    memset(&in, 0, sizeof in);
    rc = load_inputs(&o, &set, &in);
    if (rc == CLI_OK)
        rc = run_checked(&o, &set, &in);
    free_inputs(&in);
    return rc;
}
