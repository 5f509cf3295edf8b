/*
 * demo.h — the examples `attn demo` runs, and the helpers they share.
 *
 * Each example prints its numbers to stdout, writes its pictures into the
 * demo's directory, and returns a cli.h exit status. Their data is built in:
 * fixed numbers from the seeds, or the fixed sequence of prng.h.
 */
#ifndef ATTN_TOOLS_DEMO_H
#define ATTN_TOOLS_DEMO_H

#include <attn.h>

#include "explorer_page.h"
#include "strbuf.h"
#include "svg_heatmap.h"

typedef struct demo_env {
    attn_context *ctx;
    const char *dir;   /* where the pictures go */
} demo_env;

/* 1. UvA tutorial 6: scaled dot-product attention, seq_len 3, d_k 2. */
int demo_uva(const demo_env *env);

/* 2. D2L §10.3: dot-product and additive attention with valid_lens [2, 6]. */
int demo_masked(const demo_env *env);

/* 3. D2L §10.2: Nadaraya–Watson kernel regression, w = 1 and w = 3. */
int demo_kernel_regression(const demo_env *env);

/* 4. D2L §10.2.4: the width w learnt by SGD with the backward (nw_train.h). */
int demo_nw_training(const demo_env *env);

/* 5. Causal multi-head self-attention over a positionally encoded sequence. */
int demo_mha(const demo_env *env);

/* 6. UvA tutorial 6: the sequence-reversal Transformer, 4 epochs. */
int demo_reverse(const demo_env *env);
/* Trains the reversal model of c on env->ctx, printing a header naming
 * `who`, a line per epoch, the time, and last "test accuracy: NN.NN%";
 * with env->dir, also the loss curve, the attention map and its weights
 * (reverse-*.svg, reverse-attention.npy). A cli.h status. */
struct reverse_config;
int reverse_report(const demo_env *env, const struct reverse_config *c, const char *who);
/* The pictures of a Nadaraya–Watson training run, also drawn by `attn train
 * nw`: the loss per epoch, and the fit with the learnt w over the data. */
struct nw_data;
int nw_save_loss_curve(const demo_env *env, const char *name, const double *losses, int epochs);
int nw_save_fit(const demo_env *env, const char *name, const struct nw_data *d, const float *fit,
                float w);

/* mkdir -p DIR; a cli.h status (messages name `attn demo`). */
int demo_make_directories(const char *dir);

/* Reports a libattn failure of an example; returns CLI_REFUSED. */
int demo_fail(const char *what, attn_status status);

/* "<dir>/<name>" in a malloc'd string (the caller frees it), or NULL after
 * printing that memory ran out. */
char *demo_path(const demo_env *env, const char *name);

/* Writes sb as <dir>/<name> and prints "picture: <dir>/<name>". */
int demo_save(const demo_env *env, const char *name, const strbuf *sb);

/* Draws h and saves it as <dir>/<name>. */
int demo_save_heatmap(const demo_env *env, const char *name, const svg_heatmap *h);

/* Writes the explorer's page for p as <dir>/<name> and prints
 * "explorer: <dir>/<name>". */
int demo_save_explorer(const demo_env *env, const char *name, const explorer_page *p);

#endif
