/*
 * lm_cmd.h — the language model's commands: `attn train lm` (lm_cmd.c)
 * and `attn generate` (generate_cmd.c).
 */
#ifndef ATTN_TOOLS_LM_CMD_H
#define ATTN_TOOLS_LM_CMD_H

#include <attn.h>

#include "lm_train.h"

/* Debian's fortunes-zh: the 300 Tang poems and the 100 Song lyrics. */
enum { LM_DEFAULT_CORPUS = 2 };
extern const char *const lm_default_corpus[LM_DEFAULT_CORPUS];

/* Trains on the poems of files with a progress line per epoch (positions
 * in the line or in the window: lm_config); writes the
 * checkpoint and lm-training-loss.svg into dir (unless NULL). Returns an
 * exit status (cli.h), the reasons printed. */
int lm_train_report(attn_context *ctx, const char *const *files, int n_files,
                    const lm_train_config *tc, lm_positions positions, int64_t context,
                    int64_t layers, const char *dir);

#endif
