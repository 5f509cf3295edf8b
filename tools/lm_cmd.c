/*
 * lm_cmd.c — `attn train lm`: reads the poems, builds the vocabulary from
 * the training poems, trains the language model (lm_train.h) with a
 * progress line per epoch, and writes the checkpoint (lm_checkpoint.h) and
 * the loss curve into --out.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "lm_checkpoint.h"
#include "lm_cmd.h"
#include "lm_train.h"
#include "strbuf.h"
#include "svg_plot.h"
#include "tensor_io.h"

#define CMD "train"

const char *const lm_default_corpus[LM_DEFAULT_CORPUS] = {
    "/usr/share/games/fortunes/tang300", "/usr/share/games/fortunes/song100"};

/* Writes sb to dir/name. */
static int save_in(const char *dir, const char *name, const strbuf *sb)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    if (!path)
        return cli_refuse(CMD, "%s: out of memory", name);
    snprintf(path, n, "%s/%s", dir, name);
    int rc = io_save_text(CMD, path, sb);
    free(path);
    return rc;
}

/* The add-one (Laplace) unigram model of train's tokens, scored on held's
 * counted targets: the baseline a model must beat. */
static double unigram_loss(const lm_windows *train, const lm_windows *held, int64_t vocab)
{
    double *count = calloc((size_t)vocab, sizeof *count), total = 0.0, loss = 0.0;
    if (!count)
        return NAN;
    for (int64_t w = 0; w < train->n; w++)
        for (int64_t i = train->skip[w]; i < train->len[w]; i++)
            count[train->tokens[train->begin[w] + i + 1]] += 1.0, total += 1.0;
    int64_t n = 0;
    for (int64_t w = 0; w < held->n; w++)
        for (int64_t i = held->skip[w]; i < held->len[w]; i++, n++)
            loss -= log((count[held->tokens[held->begin[w] + i + 1]] + 1.0) /
                        (total + (double)vocab));
    free(count);
    return n > 0 ? loss / (double)n : NAN;
}

/* The held-out poems as a fortune file (entries between lines of "%"), so
 * that others can score the model on exactly them. */
static int save_held_out(const char *dir, const lm_poems *held)
{
    strbuf sb = STRBUF_INIT;
    for (int64_t p = 0; p < held->n; p++) {
        for (int64_t c = held->start[p]; c < held->start[p + 1]; c++) {
            char u[4];
            strbuf_append(&sb, u, (size_t)lm_utf8_encode(held->text[c], u));
        }
        strbuf_puts(&sb, "\n%\n");
    }
    int rc = save_in(dir, "heldout.txt", &sb);
    strbuf_free(&sb);
    return rc;
}

typedef struct progress {
    int width;
} progress;

static void print_progress(void *arg, int epoch, int epochs, const lm_epoch *e)
{
    const progress *p = arg;
    printf("epoch %*d/%d: train %.4f, validation %.4f nats/char, %.0f chars/s, %.1f s\n",
           p->width, epoch, epochs, e->train_loss, e->val_loss, e->chars_per_second,
           e->seconds);
    fflush(stdout);
}

static int save_loss_curve(const char *dir, const lm_train_result *r, int64_t per_epoch)
{
    int64_t n = r->steps;
    float *x = malloc((size_t)(n + 1) * sizeof *x), *y = malloc((size_t)(n + 1) * sizeof *y);
    float *vx = malloc((size_t)(r->epochs_run + 1) * sizeof *vx);
    float *vy = malloc((size_t)(r->epochs_run + 1) * sizeof *vy);
    if (!x || !y || !vx || !vy) {
        free(x), free(y), free(vx), free(vy);
        return cli_refuse(CMD, "out of memory");
    }
    double top = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = (float)(i + 1), y[i] = (float)r->step_loss[i];
        top = r->step_loss[i] > top ? r->step_loss[i] : top;
    }
    for (int e = 0; e < r->epochs_run; e++)
        vx[e] = (float)((e + 1) * per_epoch), vy[e] = (float)r->val_loss[e];
    const svg_series series[] = {
        {"train loss per step (nats per character)", x, y, n, SVG_MARK_LINE, "#0072b2"},
        {"validation loss per epoch", vx, vy, r->epochs_run, SVG_MARK_DASHED, "#d55e00"}};
    const svg_plot plot = {"step", "loss", 0.0, n > 1 ? (double)n : 2.0, 0.0,
                           top > 0.0 ? top * 1.05 : 1.0, series, 2};
    strbuf sb = STRBUF_INIT;
    svg_plot_render(&sb, &plot);
    int rc = save_in(dir, "lm-training-loss.svg", &sb);
    strbuf_free(&sb);
    free(x), free(y), free(vx), free(vy);
    return rc;
}

/* The poems of every corpus file, split into training and held-out poems. */
static int read_corpus(const char *const *files, int n_files, uint64_t seed, lm_poems *train,
                       lm_poems *held)
{
    lm_poems all = {0};
    char err[LM_ERROR_SIZE];
    for (int f = 0; f < n_files; f++)
        if (lm_poems_read(&all, files[f], err)) {
            lm_poems_free(&all);
            return cli_refuse(CMD, "lm: %s", err);
        }
    if (all.n < 2) {
        lm_poems_free(&all);
        return cli_refuse(CMD, "lm: the corpus holds %lld poem; at least 2 are needed (one to "
                          "validate on)", (long long)all.n);
    }
    int rc = lm_poems_split(&all, 0.05, seed, train, held);
    lm_poems_free(&all);
    return rc == 0 ? CLI_OK : cli_refuse(CMD, "lm: out of memory");
}

int lm_train_report(attn_context *ctx, const char *const *files, int n_files,
                    const lm_train_config *tc, lm_positions positions, int64_t context,
                    int64_t layers, const char *dir)
{
    lm_poems train = {0}, held = {0};
    lm_vocab v = {0};
    lm_windows tw = {0}, hw = {0};
    lm_model m = {0};
    lm_train_result r = {0};
    int rc = read_corpus(files, n_files, tc->seed, &train, &held);
    if (rc != CLI_OK)
        return rc;
    lm_config c = lm_config_default(0);
    c.context = context;
    c.num_layers = layers;
    if (lm_vocab_build(&v, &train) != 0 || lm_windows_make(&tw, &train, &v, c.context) != 0 ||
        lm_windows_make(&hw, &held, &v, c.context) != 0) {
        rc = cli_refuse(CMD, "lm: out of memory");
        goto done;
    }
    c.vocab_size = v.size;
    c.positions = positions;
    attn_status st = lm_model_create(&m, &c);
    if (st != ATTN_OK) {
        rc = cli_status_error(CMD, "lm", st);
        goto done;
    }
    if (lm_model_set_vocab(&m, &v) != 0) {
        rc = cli_refuse(CMD, "lm: out of memory");
        goto done;
    }
    printf("attn train lm: %lld poems (%lld characters) for training, %lld held out; "
           "vocabulary %lld; %lld layers, d_model %lld, %lld heads, dim_feedforward %lld, "
           "context %lld, positions in the %s: %lld parameters; AdamW lr %g, weight decay "
           "%g, dropout %g, batch %lld, input noise %g, %d epochs\n",
           (long long)train.n, (long long)train.chars, (long long)held.n, (long long)v.size,
           (long long)c.num_layers, (long long)c.d_model, (long long)c.nhead,
           (long long)c.dim_feedforward, (long long)c.context,
           lm_positions_names[c.positions], (long long)m.count, tc->lr,
           tc->weight_decay, tc->dropout, (long long)tc->batch, tc->input_noise, tc->epochs);
    fflush(stdout);
    progress p = {0};
    for (int e = tc->epochs; e > 0; e /= 10)
        p.width++;
    st = lm_train(ctx, &m, &tw, &hw, tc, &r, print_progress, &p);
    if (st != ATTN_OK) {
        rc = cli_status_error(CMD, "lm", st);
        goto done;
    }
    printf("trained in %.1f s: %lld steps; kept epoch %d\n", r.seconds, (long long)r.steps,
           tc->keep_last ? r.epochs_run : r.best_epoch);
    if (dir) {
        rc = lm_checkpoint_save(CMD, dir, &m, &v);
        if (rc == CLI_OK)
            rc = save_loss_curve(dir, &r, (tw.n + tc->batch - 1) / tc->batch);
        if (rc == CLI_OK)
            rc = save_held_out(dir, &held);
        if (rc == CLI_OK)
            printf("checkpoint written to %s\n", dir);
    }
    if (rc == CLI_OK)
        printf("validation loss: %.4f nats/char (add-one unigram: %.4f)\n",
               tc->keep_last ? r.val_loss[r.epochs_run - 1] : r.best_val_loss,
               unigram_loss(&tw, &hw, v.size));
done:
    lm_train_result_free(&r);
    lm_model_free(&m);
    lm_windows_free(&tw), lm_windows_free(&hw);
    lm_vocab_free(&v);
    lm_poems_free(&train), lm_poems_free(&held);
    return rc;
}
