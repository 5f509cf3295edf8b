/*
 * lm_model.h — the character-level decoder-only Transformer of `attn train
 * lm` and `attn generate`, built from libattn's parts:
 *
 *   x      = tok_emb[token] · √d_model + PE[position]     D2L §10.6 / §11.7's
 *                                                          TransformerEncoder input;
 *                                                          PE sinusoidal, positions
 *                                                          0-based in the window, or
 *                                                          in the line or clause
 *                                                          (lm_positions)
 *   x      = layers[l](x), l = 0 .. num_layers − 1         attn_encoder_layer, causal,
 *                                                          pre-norm (norm_first), GELU
 *   logits = lm_head(norm(x))                              final LayerNorm; untied
 *                                                          linear head with bias
 *
 * The parameters are one flat array in the order of the equivalent PyTorch
 * module's state_dict (tok_emb.weight [V, d]; layers.l.* as
 * nn.TransformerEncoderLayer; norm.weight, norm.bias [d]; lm_head.weight
 * [V, d], lm_head.bias [V]), their gradients a second array of the same
 * layout, so the optimizer is one loop and a checkpoint is a walk over
 * lm_tensors.
 */
#ifndef ATTN_TOOLS_LM_MODEL_H
#define ATTN_TOOLS_LM_MODEL_H

#include <stdint.h>

#include <attn.h>

#include "lm_corpus.h"
#include "nn.h"
#include "prng.h"

/* The position a token's positional encoding encodes: its index in the
 * window (D2L's), its column in the line (0 after "\n" or EOS), or its
 * index in the clause (0 after "\n", EOS or one of ，。？！；). */
typedef enum lm_positions {
    LM_POSITIONS_WINDOW = 0,
    LM_POSITIONS_LINE = 1,
    LM_POSITIONS_CLAUSE = 2,
    LM_POSITIONS_GRID = 3,     /* (clause's index in the line, place in the clause), each
                                  on half the features; d_model a multiple of 4 */
    LM_POSITIONS_COUNT
} lm_positions;

/* The names of lm_positions in config.json and --positions. */
extern const char *const lm_positions_names[LM_POSITIONS_COUNT];

typedef struct lm_config {
    int64_t vocab_size, d_model, nhead, dim_feedforward, num_layers, context;
    float layer_norm_eps;
    int norm_first;            /* 1: pre-norm (the default); 0: post-norm */
    attn_activation activation;
    lm_positions positions;    /* what the positional encoding encodes */
} lm_config;

/* The defaults of the issue, sized for 2 cores: d_model 128, 4 heads,
 * dim_feedforward 512, 4 layers, context 128, pre-norm, GELU, eps 1e-5. */
lm_config lm_config_default(int64_t vocab_size);

/* One named tensor of the flat array. */
typedef struct lm_tensor {
    char name[64];         /* the state_dict key */
    int64_t offset, count;
    int ndim;
    int64_t shape[2];
    int decay;             /* a weight matrix (AdamW decays it) or not */
} lm_tensor;

typedef struct lm_model {
    lm_config c;
    float *params, *grads;
    int64_t count;
    lm_tensor *tensors;
    int n_tensors;
    float *tok_emb, *d_tok_emb;       /* [V, d] */
    attn_encoder_layer **layers;      /* own copies of params' layer blocks */
    int64_t layer_count, *layer_offset;
    float *norm_w, *norm_b, *d_norm_w, *d_norm_b;
    nn_linear head;
    float *pe;                        /* [context, d], or [context, d/2] for the grid */
    unsigned char *restart;           /* [V]: what the token does to the next position */
    unsigned char *structure;         /* [V]: <eos>, "\n" or a clause mark, whatever the
                                         positions (what --input-noise never touches) */
} lm_model;

/* Makes a model of config c with unset weights (lm_model_init or a
 * checkpoint fills them, then lm_model_sync). ATTN_OK or the failing
 * call's status. */
attn_status lm_model_create(lm_model *m, const lm_config *c);
void lm_model_free(lm_model *m);
/* PyTorch's initialisation of the equivalent modules, except tok_emb:
 * N(0, 1/d_model) so that tok_emb · √d_model has unit variance, the scale of
 * the positional encoding (nn.Embedding's N(0, 1) would bury it). */
void lm_model_init(lm_model *m, prng *g);
/* Marks the tokens after which positions restart (EOS, and "\n" or the
 * clause marks of v as c.positions says) and the structure tokens (all of
 * those). 0, or -1 out of memory. */
int lm_model_set_vocab(lm_model *m, const lm_vocab *v);
/* Copies the layers' blocks of params into the encoder layers (after an
 * optimizer step or a load), and sets their causal mask. */
attn_status lm_model_sync(lm_model *m);
/* Sets the layers' dropout (training only) with a new seed. */
attn_status lm_model_set_dropout(lm_model *m, float p, uint64_t seed);

/* Activations of a batch of at most `rows` = batch · len rows. */
typedef struct lm_batch {
    int64_t cap_rows;
    float *x, *h, *logits, *d_logits, *dx, *dy;  /* x: the layers, in place */
    int64_t *positions;
    attn_activations **acts;          /* [num_layers] */
} lm_batch;

attn_status lm_batch_create(lm_batch *b, const lm_model *m, int64_t rows);
void lm_batch_free(lm_batch *b, const lm_model *m);

/* logits [batch, len, V] of tokens [batch, len] at positions 0 .. len − 1;
 * training (keeps what lm_model_backward needs) or inference. */
attn_status lm_model_forward(attn_context *ctx, lm_model *m, lm_batch *b, int64_t batch,
                             int64_t len, const int *tokens, int training);
/* Every parameter's gradient into m->grads from b->d_logits, for the last
 * training forward. */
attn_status lm_model_backward(attn_context *ctx, lm_model *m, lm_batch *b, int64_t batch,
                              int64_t len, const int *tokens);

/* The attention weights [num_layers - first_layer, nhead, len, len] of the
 * layers from first_layer on, over tokens [len] (inference, positions from
 * 0): the layers run as in lm_model_forward, and before each of those, its
 * self-attention (its input normalised by its norm1 when pre-norm) runs
 * again as an attn_mha with the layer's projections, which returns its
 * weights. */
attn_status lm_model_attention(attn_context *ctx, lm_model *m, lm_batch *b, int64_t len,
                               const int *tokens, int64_t first_layer, float *weights);

/* Decoding with one KV cache per layer. */
typedef struct lm_decoder {
    attn_kv_cache **caches;           /* [num_layers] */
    int64_t max_seqs, cap_rows;
    int64_t *next_position;           /* [max_seqs] by sequence id: the next position */
    int64_t *positions;               /* [cap_rows]: a step's positions */
    float *x, *h, *logits;            /* [cap_rows, d], [cap_rows, d], [max_seqs, V] */
} lm_decoder;

/* Caches for up to max_seqs sequences of the model's context, and buffers
 * for steps of up to cap_rows new tokens in all. */
attn_status lm_decoder_create(lm_decoder *dec, const lm_model *m, int64_t max_seqs,
                              int64_t cap_rows);
void lm_decoder_free(lm_decoder *dec, const lm_model *m);
/* Opens a sequence in every layer's cache: *id. */
attn_status lm_decoder_open(lm_decoder *dec, const lm_model *m, int64_t *id);
/* Appends the new tokens of n_seqs sequences (rows as cu says) and writes
 * the logits of each sequence's last new token to dec->logits, one row per
 * sequence that has new tokens, in order. ATTN_ERR_INVALID_ARGUMENT if a
 * sequence would outgrow the context (nothing appended). After any other
 * failure some layers' caches may hold the new tokens: the decoder must
 * not be used further. */
attn_status lm_decoder_step(attn_context *ctx, lm_decoder *dec, const lm_model *m,
                            int64_t n_seqs, const int64_t *seqs, const int64_t *cu,
                            const int *tokens);

#endif
