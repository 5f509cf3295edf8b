/*
 * demo.c — `attn demo`: the seeds' worked examples on built-in data.
 *
 * This is how a reader meets the project, so the output follows the seeds:
 * the same tensors, printed the way PyTorch prints them, and the same
 * pictures (D2L's show_heatmaps) as SVG files in one directory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "demo.h"
#include "tensor_io.h"

#define CMD "demo"

static const char usage[] =
    "Usage: attn demo [--out DIR]\n"
    "\n"
    "Runs the seeds' worked examples on data built into the program, prints the\n"
    "numbers a reader of the seeds expects, and draws SVG pictures into DIR:\n"
    "  1. UvA Deep Learning tutorial 6: scaled dot-product attention on its\n"
    "     seq_len 3, d_k 2 example (Q, K, V, Values, Attention)\n"
    "     -> uva-attention.svg\n"
    "  2. D2L 10.3: dot-product and additive attention with valid_lens [2, 6]\n"
    "     -> masked-attention.svg\n"
    "  3. D2L 10.2: Nadaraya-Watson kernel regression, non-parametric (w = 1)\n"
    "     and parametric (w = 3), with each fit's error against the truth\n"
    "     -> nw-attention.svg, nw-regression.svg\n"
    "  4. D2L 10.2.4: the parametric width w trained by SGD (lr 0.5, 5 epochs),\n"
    "     each training input attending to the other 49; loss per epoch, learnt w\n"
    "     -> nw-training-loss.svg, nw-trained-fit.svg\n"
    "  5. causal multi-head self-attention (4 heads) over a sequence with\n"
    "     sinusoidal positional encoding -> mha-causal.svg, and mha-causal.html:\n"
    "     the same weights in the browser (attn explore's page)\n"
    "  6. UvA tutorial 6: a Transformer trained to reverse sequences of 16\n"
    "     digits (4 epochs of attn train reverse; about 8 s on 2 cores): loss\n"
    "     per epoch, test accuracy, the trained attention map (the\n"
    "     anti-diagonal) -> reverse-training-loss.svg, reverse-attention.svg,\n"
    "     reverse-attention.npy, reverse-attention.html\n"
    "\n"
    "Options:\n"
    "  --out DIR    where the pictures go (default: attn-demo; created if needed)\n"
    "  -h, --help   show this help\n"
    "\n"
    "Exit status: 0 on success, 1 if an example fails or a picture cannot be\n"
    "written, 2 for a usage error.\n";

int demo_fail(const char *what, attn_status status)
{
    return cli_library_error(CMD, what, status);
}

char *demo_path(const demo_env *env, const char *name)
{
    size_t n = strlen(env->dir) + strlen(name) + 2;
    char *path = malloc(n);
    if (path)
        snprintf(path, n, "%s/%s", env->dir, name);
    else
        cli_refuse(CMD, "%s: out of memory", name);
    return path;
}

int demo_save(const demo_env *env, const char *name, const strbuf *sb)
{
    char *path = demo_path(env, name);
    if (!path)
        return CLI_REFUSED;
    int rc = io_save_text(CMD, path, sb);
    if (rc == CLI_OK)
        printf("picture: %s\n", path);
    free(path);
    return rc;
}

int demo_save_heatmap(const demo_env *env, const char *name, const svg_heatmap *h)
{
    char err[SVG_HEATMAP_ERROR_SIZE];
    if (svg_heatmap_check(h, err))
        return cli_refuse(CMD, "%s: %s", name, err);
    strbuf sb = STRBUF_INIT;
    svg_heatmap_render(&sb, h);
    int rc = demo_save(env, name, &sb);
    strbuf_free(&sb);
    return rc;
}

int demo_save_explorer(const demo_env *env, const char *name, const explorer_page *p)
{
    char *path = demo_path(env, name);
    if (!path)
        return CLI_REFUSED;
    int rc = io_save_explorer(CMD, path, name, p, NULL);
    if (rc == CLI_OK)
        printf("explorer: %s (open it in a browser)\n", path);
    free(path);
    return rc;
}

/* mkdir -p: makes dir and its missing parents. */
int demo_make_directories(const char *dir)
{
    size_t n = strlen(dir);
    char *path = malloc(n + 1);
    if (!path)
        return cli_refuse(CMD, "%s: out of memory", dir);
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST) {
            int rc = cli_refuse(CMD, "%s: cannot create the directory: %s", path,
                                strerror(errno));
            free(path);
            return rc;
        }
        path[i] = saved;
    }
    free(path);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return cli_refuse(CMD, "%s: not a directory", dir);
    return CLI_OK;
}

int cmd_demo(int argc, char **argv)
{
    const char *dir = NULL;
    const cli_option opts[] = {{"--out", "-o", &dir}};
    const char *positional[1];
    int n_positional, help;
    int rc = cli_parse(CMD, argc, argv, opts, 1, positional, 0, &n_positional, &help);
    if (rc != CLI_OK)
        return rc;
    if (help) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    demo_env env = {NULL, dir ? dir : "attn-demo"};
    if (env.dir[0] == '\0')
        return cli_usage_error(CMD, "--out: the directory name is empty");
    if ((rc = demo_make_directories(env.dir)) != CLI_OK)
        return rc;
    attn_status st = attn_context_create(&env.ctx);
    if (st)
        return demo_fail("attn_context_create", st);
    printf("attn demo: the seeds' worked examples, computed by libattn %s\n",
           attn_version_string());
    /* On stderr, so that the printed numbers stay the seeds' own. */
    char advice[1024];
    if (cli_runtime_advice(advice, sizeof advice))
        fprintf(stderr, "attn demo: advice: %s\n", advice);
    int (*const examples[])(const demo_env *) = {demo_uva, demo_masked, demo_kernel_regression,
                                                 demo_nw_training, demo_mha, demo_reverse};
    for (size_t i = 0; i < sizeof examples / sizeof examples[0] && rc == CLI_OK; i++) {
        printf("\n");
        rc = examples[i](&env);
        fflush(stdout);
    }
    attn_context_destroy(env.ctx);
    return rc;
}
