/*
 * lm_checkpoint.h — the language model's checkpoint directory, laid out so
 * that a PyTorch user loads it in a few lines (examples/pytorch/lm_load.py):
 *
 *   config.json   vocab_size, d_model, nhead, dim_feedforward, num_layers,
 *                 context, activation ("gelu" or "relu"), layer_norm_eps,
 *                 norm_first, and how the input is formed (embedding_scale
 *                 √d_model, positional_encoding "sinusoidal", pe_base,
 *                 positions "window", "line", "clause" or "grid": lm_model.h)
 *   vocab.json    the tokens in order: "<unk>", "<eos>", then one character
 *                 per token in code-point order
 *   NAME.npy      one float32 array per tensor, NAME its state_dict key
 *                 (tok_emb.weight, layers.0.self_attn.in_proj_weight, ...,
 *                 norm.weight, lm_head.weight, lm_head.bias)
 *
 * A save writes everything into a fresh directory beside the files first
 * and moves the files in only when all were written, so a failed save
 * leaves the previous checkpoint whole. A load checks every tensor's shape
 * against config.json and the vocabulary's size against vocab_size.
 */
#ifndef ATTN_TOOLS_LM_CHECKPOINT_H
#define ATTN_TOOLS_LM_CHECKPOINT_H

#include "lm_corpus.h"
#include "lm_model.h"

/* CLI_OK, or CLI_REFUSED with the reason printed as "attn <cmd>: ...". */
int lm_checkpoint_save(const char *cmd, const char *dir, const lm_model *m, const lm_vocab *v);
/* Creates *m from dir's config (the weights set and synced) and *v from its
 * vocabulary. CLI_OK or CLI_REFUSED (printed); nothing to free on failure. */
int lm_checkpoint_load(const char *cmd, const char *dir, lm_model *m, lm_vocab *v);

#endif
