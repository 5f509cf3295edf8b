/*
 * lm_model.c — the decoder-only language model of lm_model.h: its flat
 * parameters, forward, backward and cached decoding step. The attention
 * layers are libattn's encoder layers (causal); the embedding, the final
 * norm and the head are the few lines around them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lm_corpus.h"
#include "lm_model.h"

lm_config lm_config_default(int64_t vocab_size)
{
    return (lm_config){.vocab_size = vocab_size, .d_model = 128, .nhead = 4,
                       .dim_feedforward = 512, .num_layers = 4, .context = 128,
                       .layer_norm_eps = 1e-5f, .norm_first = 1,
                       .activation = ATTN_ACTIVATION_GELU};
}

/* ---- the flat parameters ------------------------------------------------------------ */

static void add_tensor(lm_model *m, int64_t *at, const char *name, int64_t rows, int64_t cols,
                       int decay)
{
    lm_tensor *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->offset = *at;
    t->ndim = cols > 0 ? 2 : 1;
    t->shape[0] = rows, t->shape[1] = cols;
    t->count = rows * (cols > 0 ? cols : 1);
    t->decay = decay;
    *at += t->count;
}

/* The encoder layer's tensors, in attn_encoder_layer_get_params' order. */
static void add_layer_tensors(lm_model *m, int64_t *at, int l)
{
    int64_t d = m->c.d_model, ff = m->c.dim_feedforward;
    static const struct {
        const char *name;
        int rows_d, rows_ff, cols_d, cols_ff, decay;
    } parts[12] = {
        {"self_attn.in_proj_weight", 3, 0, 1, 0, 1}, {"self_attn.in_proj_bias", 3, 0, 0, 0, 0},
        {"self_attn.out_proj.weight", 1, 0, 1, 0, 1}, {"self_attn.out_proj.bias", 1, 0, 0, 0, 0},
        {"linear1.weight", 0, 1, 1, 0, 1}, {"linear1.bias", 0, 1, 0, 0, 0},
        {"linear2.weight", 1, 0, 0, 1, 1}, {"linear2.bias", 1, 0, 0, 0, 0},
        {"norm1.weight", 1, 0, 0, 0, 0}, {"norm1.bias", 1, 0, 0, 0, 0},
        {"norm2.weight", 1, 0, 0, 0, 0}, {"norm2.bias", 1, 0, 0, 0, 0},
    };
    for (int k = 0; k < 12; k++) {
        char name[64];
        snprintf(name, sizeof name, "layers.%d.%s", l, parts[k].name);
        add_tensor(m, at, name, parts[k].rows_d * d + parts[k].rows_ff * ff,
                   parts[k].cols_d * d + parts[k].cols_ff * ff, parts[k].decay);
    }
}

attn_status lm_model_create(lm_model *m, const lm_config *c)
{
    *m = (lm_model){.c = *c};
    int64_t d = c->d_model, V = c->vocab_size, L = c->num_layers;
    m->layers = calloc((size_t)L, sizeof *m->layers);
    m->layer_offset = calloc((size_t)L, sizeof *m->layer_offset);
    m->tensors = calloc((size_t)(12 * L + 5), sizeof *m->tensors);
    /* The grid encodes each of its two coordinates on half the features. */
    int64_t pe_width = c->positions == LM_POSITIONS_GRID ? d / 2 : d;
    m->pe = malloc((size_t)(c->context * pe_width) * sizeof *m->pe);
    if (!m->layers || !m->layer_offset || !m->tensors || !m->pe) {
        lm_model_free(m);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    attn_status st = ATTN_OK;
    for (int64_t l = 0; l < L && st == ATTN_OK; l++) {
        st = attn_encoder_layer_create(&m->layers[l], d, c->nhead, c->dim_feedforward,
                                       c->activation, c->norm_first, c->layer_norm_eps);
        if (st == ATTN_OK)
            st = attn_encoder_layer_set_causal(m->layers[l], ATTN_CAUSAL_TOP_LEFT);
    }
    if (st == ATTN_OK && L > 0)
        st = attn_encoder_layer_param_count(m->layers[0], &m->layer_count);
    if (st == ATTN_OK)
        st = attn_positional_encoding(m->pe, c->context, pe_width, 0, 10000.0f);
    if (st != ATTN_OK) {
        lm_model_free(m);
        return st;
    }
    int64_t at = 0;
    add_tensor(m, &at, "tok_emb.weight", V, d, 1);
    for (int l = 0; l < (int)L; l++) {
        m->layer_offset[l] = at;
        add_layer_tensors(m, &at, l);
    }
    add_tensor(m, &at, "norm.weight", d, 0, 0);
    add_tensor(m, &at, "norm.bias", d, 0, 0);
    add_tensor(m, &at, "lm_head.weight", V, d, 1);
    add_tensor(m, &at, "lm_head.bias", V, 0, 0);
    m->count = at;
    m->params = calloc((size_t)at, sizeof(float));
    m->grads = calloc((size_t)at, sizeof(float));
    if (!m->params || !m->grads) {
        lm_model_free(m);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    m->tok_emb = m->params, m->d_tok_emb = m->grads;
    int64_t norm = m->tensors[m->n_tensors - 4].offset;
    m->norm_w = m->params + norm, m->norm_b = m->norm_w + d;
    m->d_norm_w = m->grads + norm, m->d_norm_b = m->d_norm_w + d;
    int64_t head = norm + 2 * d;
    nn_linear_place(&m->head, d, V, m->params, m->grads, &head);
    return ATTN_OK;
}

void lm_model_free(lm_model *m)
{
    for (int64_t l = 0; m->layers && l < m->c.num_layers; l++)
        attn_encoder_layer_destroy(m->layers[l]);
    free(m->layers), free(m->layer_offset), free(m->tensors), free(m->pe);
    free(m->params), free(m->grads), free(m->restart), free(m->structure);
    *m = (lm_model){0};
}

const char *const lm_positions_names[LM_POSITIONS_COUNT] = {"window", "line", "clause",
                                                            "grid"};

/* What a token does to the position of the next one (lm_model.restart). */
enum { GOES_ON = 0, NEW_CLAUSE = 1, NEW_LINE = 2 };

int lm_model_set_vocab(lm_model *m, const lm_vocab *v)
{
    free(m->restart), free(m->structure);
    m->restart = calloc((size_t)m->c.vocab_size, 1);
    m->structure = calloc((size_t)m->c.vocab_size, 1);
    if (!m->restart || !m->structure)
        return -1;
    lm_positions p = m->c.positions;
    int newline = lm_vocab_token(v, '\n');
    m->restart[LM_EOS] = NEW_LINE;
    m->structure[LM_EOS] = m->structure[newline] = 1;
    static const uint32_t clause_marks[5] = {0xFF0C, 0x3002, 0xFF1F, 0xFF01, 0xFF1B};
    if (p != LM_POSITIONS_WINDOW)
        m->restart[newline] = NEW_LINE;
    for (int k = 0; k < 5; k++) {
        int mark = lm_vocab_token(v, clause_marks[k]);
        m->structure[mark] = 1;
        if (p == LM_POSITIONS_CLAUSE || p == LM_POSITIONS_GRID)
            m->restart[mark] = NEW_CLAUSE;
    }
    /* A mark the vocabulary lacks maps to <unk>, which is neither. */
    m->restart[LM_UNK] = GOES_ON, m->structure[LM_UNK] = 0;
    return 0;
}

void lm_model_init(lm_model *m, prng *g)
{
    int64_t d = m->c.d_model;
    prng_fill_normal(g, m->tok_emb, m->c.vocab_size * d, 0.0, 1.0 / sqrt((double)d));
    for (int64_t l = 0; l < m->c.num_layers; l++)
        nn_encoder_layer_init(m->params + m->layer_offset[l], d, m->c.dim_feedforward, g);
    for (int64_t i = 0; i < d; i++)
        m->norm_w[i] = 1.0f, m->norm_b[i] = 0.0f;
    nn_linear_init(&m->head, g);
}

attn_status lm_model_sync(lm_model *m)
{
    for (int64_t l = 0; l < m->c.num_layers; l++) {
        attn_status st = attn_encoder_layer_set_params(m->layers[l],
                                                       m->params + m->layer_offset[l]);
        if (st != ATTN_OK)
            return st;
    }
    return ATTN_OK;
}

attn_status lm_model_set_dropout(lm_model *m, float p, uint64_t seed)
{
    for (int64_t l = 0; l < m->c.num_layers; l++) {
        /* A seed per layer: no two layers draw the same masks. */
        attn_status st = attn_encoder_layer_set_dropout(m->layers[l], p,
                                                        seed * 1000003u + (uint64_t)l);
        if (st != ATTN_OK)
            return st;
    }
    return ATTN_OK;
}

/* ---- batches ------------------------------------------------------------------------ */

attn_status lm_batch_create(lm_batch *b, const lm_model *m, int64_t rows)
{
    *b = (lm_batch){.cap_rows = rows};
    size_t nd = (size_t)(rows * m->c.d_model), nv = (size_t)(rows * m->c.vocab_size);
    b->x = malloc(nd * sizeof(float)), b->h = malloc(nd * sizeof(float));
    b->dx = malloc(nd * sizeof(float)), b->dy = malloc(nd * sizeof(float));
    b->logits = malloc(nv * sizeof(float)), b->d_logits = malloc(nv * sizeof(float));
    b->acts = calloc((size_t)m->c.num_layers, sizeof *b->acts);
    b->positions = malloc((size_t)(rows > 0 ? rows : 1) * sizeof *b->positions);
    if (!b->x || !b->h || !b->dx || !b->dy || !b->logits || !b->d_logits || !b->acts ||
        !b->positions) {
        lm_batch_free(b, m);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    for (int64_t l = 0; l < m->c.num_layers; l++) {
        attn_status st = attn_activations_create(&b->acts[l]);
        if (st != ATTN_OK) {
            lm_batch_free(b, m);
            return st;
        }
    }
    return ATTN_OK;
}

void lm_batch_free(lm_batch *b, const lm_model *m)
{
    for (int64_t l = 0; b->acts && l < m->c.num_layers; l++)
        attn_activations_destroy(b->acts[l]);
    free(b->acts);
    free(b->x), free(b->h), free(b->logits), free(b->d_logits);
    free(b->dx), free(b->dy), free(b->positions);
    *b = (lm_batch){0};
}

/* x[r] = tok_emb[tokens[r]] · √d + PE[positions[r]]; for the grid, the
 * first d/2 features get the place in the clause's half-width encoding and
 * the last d/2 the clause's index in the line (a 2-D sinusoidal encoding,
 * as vision Transformers encode rows and columns). */
static void embed(const lm_model *m, int64_t rows, const int *tokens, const int64_t *positions,
                  float *x)
{
    int64_t d = m->c.d_model, h = d / 2, ctx = m->c.context;
    float scale = sqrtf((float)d);
    for (int64_t r = 0; r < rows; r++) {
        const float *e = m->tok_emb + (int64_t)tokens[r] * d;
        float *y = x + r * d;
        if (m->c.positions != LM_POSITIONS_GRID) {
            const float *pe = m->pe + positions[r] * d;
            for (int64_t j = 0; j < d; j++)
                y[j] = e[j] * scale + pe[j];
            continue;
        }
        const float *place = m->pe + (positions[r] % ctx) * h;
        const float *clause = m->pe + (positions[r] / ctx) * h;
        for (int64_t j = 0; j < h; j++)
            y[j] = e[j] * scale + place[j], y[h + j] = e[h + j] * scale + clause[j];
    }
}

/* The position of the token after `token` at `position`: for the grid,
 * clause index · context + place in the clause. */
static int64_t next_position(const lm_model *m, int token, int64_t position)
{
    int64_t ctx = m->c.context, clause = position / ctx;
    switch (m->restart[token]) {
    case NEW_LINE:
        return 0;
    case NEW_CLAUSE:
        if (m->c.positions != LM_POSITIONS_GRID)
            return 0;
        return (clause + 1 < ctx ? clause + 1 : ctx - 1) * ctx;
    default:
        return position % ctx + 1 < ctx ? position + 1 : position;
    }
}

/* The positions of a batch of windows [batch, len], each from 0. */
static void window_positions(const lm_model *m, int64_t batch, int64_t len, const int *tokens,
                             int64_t *positions)
{
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < len; i++) {
            int64_t r = b * len + i;
            positions[r] = m->c.positions == LM_POSITIONS_WINDOW ? i
                           : i == 0             ? 0
                                                : next_position(m, tokens[r - 1], positions[r - 1]);
        }
}

attn_status lm_model_forward(attn_context *ctx, lm_model *m, lm_batch *b, int64_t batch,
                             int64_t len, const int *tokens, int training)
{
    int64_t rows = batch * len, d = m->c.d_model;
    if (rows > b->cap_rows || len > m->c.context)
        return ATTN_ERR_INVALID_ARGUMENT;
    window_positions(m, batch, len, tokens, b->positions);
    embed(m, rows, tokens, b->positions, b->x);
    for (int64_t l = 0; l < m->c.num_layers; l++) {
        attn_status st = attn_encoder_layer_forward(ctx, m->layers[l], batch, len, b->x, NULL,
                                                    b->x, training ? b->acts[l] : NULL);
        if (st != ATTN_OK)
            return st;
    }
    attn_status st = attn_layer_norm(rows, d, b->x, m->norm_w, m->norm_b, m->c.layer_norm_eps,
                                     b->h);
    if (st == ATTN_OK)
        nn_linear_forward(&m->head, rows, b->h, b->logits);
    return st;
}

attn_status lm_model_backward(attn_context *ctx, lm_model *m, lm_batch *b, int64_t batch,
                              int64_t len, const int *tokens)
{
    int64_t rows = batch * len, d = m->c.d_model;
    nn_linear_backward(&m->head, rows, b->h, b->d_logits, b->dy);
    attn_status st = attn_layer_norm_backward(rows, d, b->x, m->norm_w, m->c.layer_norm_eps,
                                              b->dy, b->dx, m->d_norm_w, m->d_norm_b);
    for (int64_t l = m->c.num_layers - 1; l >= 0 && st == ATTN_OK; l--) {
        st = attn_encoder_layer_backward(ctx, m->layers[l], b->acts[l], b->dx, b->dy,
                                         m->grads + m->layer_offset[l]);
        float *t = b->dx;  /* the layer's d_src is the next one's d_out */
        b->dx = b->dy, b->dy = t;
    }
    if (st != ATTN_OK)
        return st;
    /* The embedding: row tokens[r] of the table collects √d · dx[r]. */
    memset(m->d_tok_emb, 0, (size_t)(m->c.vocab_size * d) * sizeof(float));
    float scale = sqrtf((float)d);
    for (int64_t r = 0; r < rows; r++) {
        float *g = m->d_tok_emb + (int64_t)tokens[r] * d;
        for (int64_t j = 0; j < d; j++)
            g[j] += scale * b->dx[r * d + j];
    }
    return ATTN_OK;
}

/* Layer l's self-attention weights [nhead, len, len] for its input x [len,
 * d]: x normalised by the layer's norm1 first when pre-norm (into normed),
 * then an attn_mha with the layer's projections, which returns its weights
 * (its output goes to out). */
static attn_status layer_attention(attn_context *ctx, const lm_model *m, int64_t l, int64_t len,
                                   const float *x, float *normed, float *out, float *weights)
{
    int64_t d = m->c.d_model, ff = m->c.dim_feedforward;
    const float *p = m->params + m->layer_offset[l];
    /* The layer's norm1 follows its attention (4d² + 4d) and feed-forward
     * (2·d·ff + ff + d) parameters (attn_encoder_layer_get_params). */
    const float *norm1 = p + 4 * d * d + 4 * d + 2 * d * ff + ff + d;
    const float *in = x;
    attn_status st = ATTN_OK;
    if (m->c.norm_first) {
        st = attn_layer_norm(len, d, x, norm1, norm1 + d, m->c.layer_norm_eps, normed);
        in = normed;
    }
    attn_mha *mha = NULL;
    if (st == ATTN_OK)
        st = attn_mha_create(&mha, d, m->c.nhead, m->c.nhead, d, d, 1);
    if (st == ATTN_OK)
        st = attn_mha_set_params(mha, p);
    if (st == ATTN_OK)
        st = attn_mha_set_causal(mha, ATTN_CAUSAL_TOP_LEFT);
    if (st == ATTN_OK)
        st = attn_mha_forward(ctx, mha, 1, len, len, in, in, in, NULL, out, weights);
    attn_mha_destroy(mha);
    return st;
}

attn_status lm_model_attention(attn_context *ctx, lm_model *m, lm_batch *b, int64_t len,
                               const int *tokens, int64_t first_layer, float *weights)
{
    int64_t L = m->c.num_layers, per_layer = m->c.nhead * len * len;
    if (len > b->cap_rows || len > m->c.context || first_layer < 0 || first_layer >= L)
        return ATTN_ERR_INVALID_ARGUMENT;
    window_positions(m, 1, len, tokens, b->positions);
    embed(m, len, tokens, b->positions, b->x);
    attn_status st = ATTN_OK;
    for (int64_t l = 0; l < L && st == ATTN_OK; l++) {
        if (l >= first_layer)
            st = layer_attention(ctx, m, l, len, b->x, b->dx, b->h,
                                 weights + (l - first_layer) * per_layer);
        if (st == ATTN_OK && l + 1 < L)
            st = attn_encoder_layer_forward(ctx, m->layers[l], 1, len, b->x, NULL, b->x, NULL);
    }
    return st;
}

/* ---- decoding ---------------------------------------------------------------------- */

enum { LM_PAGE = 16 };

attn_status lm_decoder_create(lm_decoder *dec, const lm_model *m, int64_t max_seqs,
                              int64_t cap_rows)
{
    int64_t d = m->c.d_model, L = m->c.num_layers;
    *dec = (lm_decoder){.max_seqs = max_seqs, .cap_rows = cap_rows};
    dec->caches = calloc((size_t)L, sizeof *dec->caches);
    dec->x = malloc((size_t)(cap_rows * d) * sizeof(float));
    dec->h = malloc((size_t)(cap_rows * d) * sizeof(float));
    dec->logits = malloc((size_t)(max_seqs * m->c.vocab_size) * sizeof(float));
    dec->next_position = calloc((size_t)(max_seqs > 0 ? max_seqs : 1),
                                sizeof *dec->next_position);
    dec->positions = malloc((size_t)(cap_rows > 0 ? cap_rows : 1) * sizeof *dec->positions);
    if (!dec->caches || !dec->x || !dec->h || !dec->logits || !dec->next_position ||
        !dec->positions) {
        lm_decoder_free(dec, m);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    int64_t pages = max_seqs * ((m->c.context + LM_PAGE - 1) / LM_PAGE);
    for (int64_t l = 0; l < L; l++) {
        attn_status st = attn_kv_cache_create(&dec->caches[l], m->c.nhead, d / m->c.nhead,
                                              d / m->c.nhead, LM_PAGE, pages);
        if (st != ATTN_OK) {
            lm_decoder_free(dec, m);
            return st;
        }
    }
    return ATTN_OK;
}

void lm_decoder_free(lm_decoder *dec, const lm_model *m)
{
    for (int64_t l = 0; dec->caches && l < m->c.num_layers; l++)
        attn_kv_cache_destroy(dec->caches[l]);
    free(dec->caches), free(dec->x), free(dec->h), free(dec->logits), free(dec->next_position);
    free(dec->positions);
    *dec = (lm_decoder){0};
}

attn_status lm_decoder_open(lm_decoder *dec, const lm_model *m, int64_t *id)
{
    for (int64_t l = 0; l < m->c.num_layers; l++) {
        int64_t got;
        attn_status st = attn_kv_cache_seq_open(dec->caches[l], &got);
        if (st != ATTN_OK)
            return st;
        if ((l > 0 && got != *id) || got >= dec->max_seqs)
            return ATTN_ERR_STATE;  /* the caches are used alike: cannot happen */
        *id = got;
    }
    dec->next_position[*id] = 0;
    return ATTN_OK;
}

attn_status lm_decoder_step(attn_context *ctx, lm_decoder *dec, const lm_model *m,
                            int64_t n_seqs, const int64_t *seqs, const int64_t *cu,
                            const int *tokens)
{
    int64_t d = m->c.d_model, rows = n_seqs > 0 ? cu[n_seqs] : 0;
    if (rows > dec->cap_rows || n_seqs > dec->max_seqs)
        return ATTN_ERR_INVALID_ARGUMENT;
    int64_t *positions = dec->positions;
    attn_status st = ATTN_OK;
    for (int64_t s = 0; s < n_seqs && st == ATTN_OK; s++) {
        int64_t len;
        st = attn_kv_cache_seq_len(dec->caches[0], seqs[s], &len);
        if (st == ATTN_OK && len + cu[s + 1] - cu[s] > m->c.context)
            st = ATTN_ERR_INVALID_ARGUMENT;
        for (int64_t r = cu[s]; st == ATTN_OK && r < cu[s + 1]; r++) {
            if (m->c.positions == LM_POSITIONS_WINDOW) {
                positions[r] = len + r - cu[s];
                continue;
            }
            positions[r] = r == cu[s] ? dec->next_position[seqs[s]]
                                      : next_position(m, tokens[r - 1], positions[r - 1]);
        }
    }
    if (st == ATTN_OK)
        embed(m, rows, tokens, positions, dec->x);
    for (int64_t l = 0; l < m->c.num_layers && st == ATTN_OK; l++)
        st = attn_encoder_layer_forward_cached(ctx, m->layers[l], dec->caches[l], n_seqs, seqs,
                                               cu, dec->x, dec->x);
    for (int64_t s = 0; s < n_seqs && st == ATTN_OK; s++)  /* the tokens are in: advance */
        if (cu[s + 1] > cu[s])
            dec->next_position[seqs[s]] = next_position(m, tokens[cu[s + 1] - 1],
                                                        positions[cu[s + 1] - 1]);
    if (st != ATTN_OK)
        return st;
    /* Only each sequence's last new row is predicted from. */
    int64_t last = 0;
    for (int64_t s = 0; s < n_seqs; s++)
        if (cu[s + 1] > cu[s])
            memcpy(dec->h + (last++) * d, dec->x + (cu[s + 1] - 1) * d,
                   (size_t)d * sizeof(float));
    st = attn_layer_norm(last, d, dec->h, m->norm_w, m->norm_b, m->c.layer_norm_eps, dec->h);
    if (st == ATTN_OK)
        nn_linear_forward(&m->head, last, dec->h, dec->logits);
    return st;
}
