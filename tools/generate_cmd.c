/*
 * generate_cmd.c — `attn generate`: text from a checkpoint of `attn train
 * lm`, token by token. The prompts (several decode together, as one ragged
 * batch) are prefilled in one call of every layer's cached step, then each
 * new token is one more step (lm_decoder_step); with --no-cache every token
 * recomputes the whole prefix through the full forward instead, for
 * comparison. Only the text goes to stdout; the statistics go to stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "explorer_page.h"
#include "lm_checkpoint.h"
#include "lm_corpus.h"
#include "lm_model.h"
#include "lm_sample.h"
#include "tensor_io.h"

#define CMD "generate"

enum { MAX_PROMPTS = 64 };

static const char usage[] =
    "Usage: attn generate --model DIR [--prompt TEXT]... [--max-new N]\n"
    "                     [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
    "                     [--greedy] [--no-cache] [--ignore-eos] [--threads T]\n"
    "\n"
    "Generates text with a language model trained by `attn train lm`, one\n"
    "character at a time, each prompt's text (the prompt, then what follows)\n"
    "on stdout, a blank line between prompts; statistics on stderr. A poem\n"
    "ends where the model emits its end-of-poem token.\n"
    "\n"
    "  --model DIR        the checkpoint directory (config.json, vocab.json, *.npy)\n"
    "  --prompt TEXT      the start of a poem (repeat: the prompts decode together\n"
    "                     as one batch); default: one empty prompt\n"
    "  --max-new N        at most N new characters per prompt (default: as many as\n"
    "                     the context leaves); prompt + N beyond the context is an\n"
    "                     error\n"
    "  --temperature T    divides the logits (default 0.8; > 0)\n"
    "  --top-k K          draw among the K likeliest characters (default 0: all)\n"
    "  --top-p P          and among the fewest whose probability reaches P\n"
    "                     (default 1: no cut; in (0, 1])\n"
    "  --seed S           the draws (default 1); prompt i uses seed S + i\n"
    "  --greedy           always the likeliest character (no draw)\n"
    "  --no-cache         recompute the whole prefix for every character (no KV\n"
    "                     cache), for comparison\n"
    "  --ignore-eos       go on past the end of a poem to --max-new characters\n"
    "                     (for measuring speed)\n"
    "  --threads T        libattn threads (default 0: all cores)\n"
    "  --attention FILE   also write the last layer's attention weights over the\n"
    "                     first prompt's text, float32 .npy [heads, n, n] (n: its\n"
    "                     characters and the poem's start token), for attn heatmap\n"
    "  --explore PAGE     also write every layer's attention weights over that text\n"
    "                     as an explorer page for the browser (see attn explore)\n"
    "  --logits FILE      also write the logits each character of the first prompt\n"
    "                     was chosen from, float32 .npy [steps, vocab_size] (the\n"
    "                     last row chose the end of the poem, if it came)\n"
    "  -h, --help         show this help\n"
    "\n"
    "Exit status: 0 on success, 1 if the checkpoint or a prompt is refused, 2\n"
    "for a usage error.\n";

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Every prompt's tokens: EOS then its characters, each sequence with room
 * for max_new more. */
typedef struct sequences {
    int64_t n;
    int **tokens;
    int64_t *len, *prompt_len, *max_new;
    int *done;
    int ignore_eos;      /* an end of poem is a token like any other */
    prng *rng;
    float *logits0;      /* --logits: each step's logits of prompt 0 [steps0, V] */
    int64_t steps0;
} sequences;

static void sequences_free(sequences *s)
{
    for (int64_t i = 0; s->tokens && i < s->n; i++)
        free(s->tokens[i]);
    free(s->tokens), free(s->len), free(s->prompt_len), free(s->max_new), free(s->done);
    free(s->rng), free(s->logits0);
}

static int encode_prompts(const lm_model *m, const lm_vocab *v, const char *const *prompts,
                          int n, int64_t max_new, uint64_t seed, sequences *s)
{
    *s = (sequences){.n = n};
    s->tokens = calloc((size_t)n, sizeof *s->tokens);
    s->len = calloc((size_t)n, sizeof *s->len);
    s->prompt_len = calloc((size_t)n, sizeof *s->prompt_len);
    s->max_new = calloc((size_t)n, sizeof *s->max_new);
    s->done = calloc((size_t)n, sizeof *s->done);
    s->rng = calloc((size_t)n, sizeof *s->rng);
    if (!s->tokens || !s->len || !s->prompt_len || !s->max_new || !s->done || !s->rng)
        return cli_refuse(CMD, "out of memory");
    int64_t context = m->c.context;
    for (int i = 0; i < n; i++) {
        const unsigned char *text = (const unsigned char *)prompts[i];
        int64_t bytes = (int64_t)strlen(prompts[i]), chars = lm_utf8_decode(text, bytes, NULL);
        if (chars < 0)
            return cli_refuse(CMD, "--prompt %d: not UTF-8 (byte %lld)", i + 1,
                              (long long)(-1 - chars));
        if (1 + chars > context)
            return cli_refuse(CMD, "--prompt %d: %lld characters leave no room in the "
                              "model's context of %lld (the poem's start token takes one)",
                              i + 1, (long long)chars, (long long)context);
        int64_t room = context - 1 - chars + 1;  /* the last new token is never fed */
        if (max_new > room)
            return cli_refuse(CMD, "--prompt %d (%lld characters) plus --max-new %lld exceeds "
                              "the model's context of %lld characters (at most %lld new)",
                              i + 1, (long long)chars, (long long)max_new, (long long)context,
                              (long long)room);
        s->max_new[i] = max_new > 0 ? max_new : room;
        s->tokens[i] = malloc((size_t)(1 + chars + s->max_new[i]) * sizeof(int));
        uint32_t *cp = malloc((size_t)(chars > 0 ? chars : 1) * sizeof *cp);
        if (!s->tokens[i] || !cp) {
            free(cp);
            return cli_refuse(CMD, "out of memory");
        }
        lm_utf8_decode(text, bytes, cp);
        s->tokens[i][0] = LM_EOS;
        for (int64_t k = 0; k < chars; k++) {
            int t = lm_vocab_token(v, cp[k]);
            if (t == LM_UNK) {
                char c[5] = {0};
                uint32_t unknown = cp[k];
                lm_utf8_encode(unknown, c);
                free(cp);
                return cli_refuse(CMD, "--prompt %d: the character '%s' (U+%04X, position %lld) "
                                  "is not in the model's vocabulary", i + 1, c,
                                  (unsigned)unknown, (long long)(k + 1));
            }
            s->tokens[i][1 + k] = t;
        }
        free(cp);
        s->len[i] = s->prompt_len[i] = 1 + chars;
        prng_seed(&s->rng[i], seed + (uint64_t)i);
    }
    return CLI_OK;
}

/* Chooses sequence i's next token from logits; marks it done at the end
 * of a poem or of its budget. */
static void take(sequences *s, int64_t i, const float *logits, const lm_model *m,
                 const lm_sampling *how, double *scratch)
{
    if (i == 0 && s->logits0)
        memcpy(s->logits0 + (s->steps0++) * m->c.vocab_size, logits,
               (size_t)m->c.vocab_size * sizeof(float));
    int t = lm_sample(logits, m->c.vocab_size, LM_EOS, how, &s->rng[i], scratch);
    if (t == LM_EOS && !s->ignore_eos) {
        s->done[i] = 1;
        return;
    }
    s->tokens[i][s->len[i]++] = t;
    if (s->len[i] - s->prompt_len[i] >= s->max_new[i])
        s->done[i] = 1;
}

typedef struct timing {
    double first_token, total;
    int64_t generated;
} timing;

static attn_status run_cached(attn_context *ctx, const lm_model *m, sequences *s,
                              const lm_sampling *how, double *scratch, timing *tm)
{
    int64_t total_prompt = 0;
    for (int64_t i = 0; i < s->n; i++)
        total_prompt += s->prompt_len[i];
    lm_decoder dec;
    attn_status st = lm_decoder_create(&dec, m, s->n, total_prompt > s->n ? total_prompt : s->n);
    int64_t *ids = malloc((size_t)s->n * sizeof *ids);
    int64_t *seqs = malloc((size_t)s->n * sizeof *seqs);
    int64_t *cu = malloc((size_t)(s->n + 1) * sizeof *cu);
    int64_t *who = malloc((size_t)s->n * sizeof *who);
    int *step = malloc((size_t)(total_prompt + s->n) * sizeof *step);
    if (st == ATTN_OK && (!ids || !seqs || !cu || !who || !step))
        st = ATTN_ERR_OUT_OF_MEMORY;
    for (int64_t i = 0; i < s->n && st == ATTN_OK; i++)
        st = lm_decoder_open(&dec, m, &ids[i]);
    double t0 = now();
    /* The prefill: every prompt whole; then one token per live sequence. */
    for (int first = 1; st == ATTN_OK; first = 0) {
        int64_t n = 0;
        cu[0] = 0;
        for (int64_t i = 0; i < s->n; i++) {
            if (s->done[i])
                continue;
            int64_t from = first ? 0 : s->len[i] - 1, count = s->len[i] - from;
            memcpy(step + cu[n], s->tokens[i] + from, (size_t)count * sizeof *step);
            seqs[n] = ids[i], who[n] = i;
            cu[n + 1] = cu[n] + count;
            n++;
        }
        if (n == 0)
            break;
        if ((st = lm_decoder_step(ctx, &dec, m, n, seqs, cu, step)) != ATTN_OK)
            break;
        for (int64_t k = 0; k < n; k++) {
            int64_t before = s->len[who[k]];
            take(s, who[k], dec.logits + k * m->c.vocab_size, m, how, scratch);
            tm->generated += s->len[who[k]] - before;
        }
        if (first)
            tm->first_token = now() - t0;
    }
    tm->total = now() - t0;
    lm_decoder_free(&dec, m);
    free(ids), free(seqs), free(cu), free(who), free(step);
    return st;
}

static attn_status run_uncached(attn_context *ctx, lm_model *m, sequences *s,
                                const lm_sampling *how, double *scratch, timing *tm)
{
    lm_batch b;
    attn_status st = lm_batch_create(&b, m, m->c.context);
    double t0 = now();
    for (int64_t i = 0; i < s->n && st == ATTN_OK; i++)
        while (!s->done[i] && st == ATTN_OK) {
            int64_t len = s->len[i];
            if ((st = lm_model_forward(ctx, m, &b, 1, len, s->tokens[i], 0)) != ATTN_OK)
                break;
            take(s, i, b.logits + (len - 1) * m->c.vocab_size, m, how, scratch);
            tm->generated += s->len[i] - len;
            if (i == 0 && len == s->prompt_len[0])
                tm->first_token = now() - t0;
        }
    tm->total = now() - t0;
    lm_batch_free(&b, m);
    return st;
}

static void print_text(const lm_vocab *v, const sequences *s)
{
    for (int64_t i = 0; i < s->n; i++) {
        if (i > 0)
            fputc('\n', stdout);
        for (int64_t k = 1; k < s->len[i]; k++) {
            char c[4];
            if (s->tokens[i][k] == LM_EOS)  /* --ignore-eos: poems apart as in a fortune file */
                fputs("\n%\n", stdout);
            else
                fwrite(c, 1, (size_t)lm_utf8_encode(v->chars[s->tokens[i][k]], c), stdout);
        }
        fputc('\n', stdout);
    }
    fflush(stdout);
}

typedef struct gen_options {
    const char *model, *max_new, *temperature, *top_k, *top_p, *seed, *threads, *logits;
    const char *attention, *explore;
    const char *prompts[MAX_PROMPTS];
    int n_prompts, greedy, no_cache, ignore_eos;
} gen_options;

/* A label for token t in the explorer: the character, "↵" for a line break,
 * or the special's name. */
static void token_label(const lm_vocab *v, int t, char out[8])
{
    if (t == LM_EOS || t == LM_UNK) {
        strcpy(out, t == LM_EOS ? "<eos>" : "<unk>");
    } else if (v->chars[t] == '\n') {
        strcpy(out, "\xE2\x86\xB5");  /* U+21B5 DOWNWARDS ARROW WITH CORNER LEFTWARDS */
    } else {
        int n = lm_utf8_encode(v->chars[t], out);
        out[n] = '\0';
    }
}

/* The explorer's page of every layer's weights over tokens [n]. */
static int save_explorer(const lm_vocab *v, const lm_model *m, const char *model_dir,
                         const int *tokens, int64_t n, const float *w, const char *path)
{
    char (*text)[8] = malloc((size_t)n * sizeof *text);
    const char **labels = malloc((size_t)n * sizeof *labels);
    int rc = CLI_OK;
    if (!text || !labels)
        rc = cli_refuse(CMD, "%s: out of memory", path);
    for (int64_t i = 0; rc == CLI_OK && i < n; i++) {
        token_label(v, tokens[i], text[i]);
        labels[i] = text[i];
    }
    const explorer_page page = {
        .title = "attn generate: every layer's attention over the first prompt's text",
        .source = model_dir,
        .shape = {m->c.num_layers, 1, m->c.nhead, n, n},
        .weights = w,
        .query_tokens = labels,
        .n_query_tokens = n,
    };
    if (rc == CLI_OK)
        rc = io_save_explorer(CMD, path, path, &page, NULL);
    free(text);
    free(labels);
    return rc;
}

/* Before generating: the page of --explore can hold every layer's weights
 * over the longest text prompt 0 may reach, or the request is refused now,
 * not after the work. */
static int check_page_room(const lm_model *m, const sequences *s)
{
    int64_t n = s->len[0] + s->max_new[0];
    n = n < m->c.context ? n : m->c.context;
    const int64_t shape[5] = {m->c.num_layers, 1, m->c.nhead, n, n};
    char err[EXPLORER_ERROR_SIZE];
    if (explorer_page_check_shape(shape, err))
        return cli_refuse(CMD, "--explore: %lld layers of %lld heads over up to %lld "
                          "characters: %s (ask for fewer characters with --max-new)",
                          (long long)shape[0], (long long)shape[2], (long long)n, err);
    return CLI_OK;
}

/* The attention weights over prompt 0's final text: the last layer's as
 * .npy (--attention), every layer's as the explorer (--explore). */
static int save_attention(attn_context *ctx, lm_model *m, const lm_vocab *v, const sequences *s,
                          const gen_options *o)
{
    int64_t n = s->len[0] < m->c.context ? s->len[0] : m->c.context, h = m->c.nhead;
    int64_t L = m->c.num_layers, first = o->explore ? 0 : L - 1;
    float *w = malloc((size_t)((L - first) * h * n * n) * sizeof *w);
    lm_batch b;
    attn_status st = lm_batch_create(&b, m, n);
    if (st == ATTN_OK && !w)
        st = ATTN_ERR_OUT_OF_MEMORY;
    if (st == ATTN_OK)
        st = lm_model_attention(ctx, m, &b, n, s->tokens[0], first, w);
    const int64_t shape[3] = {h, n, n};
    int rc = st != ATTN_OK ? cli_status_error(CMD, "the attention", st) : CLI_OK;
    if (rc == CLI_OK && o->attention)
        rc = io_save_floats(CMD, o->attention, w + (L - 1 - first) * h * n * n, 3, shape);
    if (rc == CLI_OK && o->explore)
        rc = save_explorer(v, m, o->model, s->tokens[0], n, w, o->explore);
    lm_batch_free(&b, m);
    free(w);
    return rc;
}

static int parse_options(int argc, char **argv, gen_options *o, lm_sampling *how, int *max_new,
                         int *seed, int *threads, int *help)
{
    const cli_option opts[] = {{"--model", NULL, &o->model}, {"--max-new", NULL, &o->max_new},
                               {"--temperature", NULL, &o->temperature},
                               {"--top-k", NULL, &o->top_k}, {"--top-p", NULL, &o->top_p},
                               {"--seed", NULL, &o->seed}, {"--threads", NULL, &o->threads},
                               {"--logits", NULL, &o->logits},
                               {"--attention", NULL, &o->attention},
                               {"--explore", NULL, &o->explore}};
    const cli_flag flags[] = {{"--greedy", &o->greedy}, {"--no-cache", &o->no_cache},
                              {"--ignore-eos", &o->ignore_eos}};
    const cli_list lists[] = {{"--prompt", o->prompts, &o->n_prompts, MAX_PROMPTS}};
    const cli_options all = {opts, sizeof opts / sizeof opts[0], flags, 3, lists, 1};
    const char *positional[1];
    int n_positional, top_k = 0, rc;
    if ((rc = cli_parse_all(CMD, argc, argv, &all, positional, 0, &n_positional, help)) ||
        *help)
        return rc;
    if (!o->model)
        return cli_usage_error(CMD, "--model DIR is required");
    *how = (lm_sampling){.greedy = o->greedy, .temperature = 0.8, .top_k = 0, .top_p = 1.0};
    *max_new = 0, *seed = 1, *threads = 0;
    if ((o->max_new && (rc = cli_parse_int(CMD, "--max-new", o->max_new, max_new))) ||
        (o->temperature &&
         (rc = cli_parse_double(CMD, "--temperature", o->temperature, &how->temperature))) ||
        (o->top_k && (rc = cli_parse_int(CMD, "--top-k", o->top_k, &top_k))) ||
        (o->top_p && (rc = cli_parse_double(CMD, "--top-p", o->top_p, &how->top_p))) ||
        (o->seed && (rc = cli_parse_int(CMD, "--seed", o->seed, seed))) ||
        (o->threads && (rc = cli_parse_int(CMD, "--threads", o->threads, threads))))
        return rc;
    if (o->max_new && *max_new < 1)
        return cli_usage_error(CMD, "--max-new: %d is not at least 1", *max_new);
    if (!(how->temperature > 0.0 && how->temperature < 1e6))
        return cli_usage_error(CMD, "--temperature: %g is not in (0, 1e6)", how->temperature);
    if (top_k < 0)
        return cli_usage_error(CMD, "--top-k: %d is negative", top_k);
    if (!(how->top_p > 0.0 && how->top_p <= 1.0))
        return cli_usage_error(CMD, "--top-p: %g is not in (0, 1]", how->top_p);
    if (*seed < 0)
        return cli_usage_error(CMD, "--seed: %d is negative", *seed);
    if (*threads < 0 || *threads > 1024)
        return cli_usage_error(CMD, "--threads: %d is not in 0 .. 1024", *threads);
    how->top_k = top_k;
    if (o->n_prompts == 0)
        o->prompts[o->n_prompts++] = "";
    return CLI_OK;
}

int cmd_generate(int argc, char **argv)
{
    gen_options o = {0};
    lm_sampling how;
    int max_new, seed, threads, help;
    int rc = parse_options(argc, argv, &o, &how, &max_new, &seed, &threads, &help);
    if (rc != CLI_OK || help) {
        if (help)
            fputs(usage, stdout);
        return rc;
    }
    lm_model m;
    lm_vocab v;
    if ((rc = lm_checkpoint_load(CMD, o.model, &m, &v)) != CLI_OK)
        return rc;
    sequences s;
    attn_context *ctx = NULL;
    double *scratch = malloc((size_t)(2 * m.c.vocab_size) * sizeof *scratch);
    rc = encode_prompts(&m, &v, o.prompts, o.n_prompts, max_new, (uint64_t)seed, &s);
    s.ignore_eos = o.ignore_eos;
    if (rc == CLI_OK && o.logits &&
        !(s.logits0 = malloc((size_t)((s.max_new[0] + 1) * m.c.vocab_size) * sizeof(float))))
        rc = cli_refuse(CMD, "out of memory");
    if (rc == CLI_OK && !scratch)
        rc = cli_refuse(CMD, "out of memory");
    if (rc == CLI_OK && o.explore)
        rc = check_page_room(&m, &s);
    attn_status st = ATTN_OK;
    if (rc == CLI_OK) {
        st = attn_context_create(&ctx);
        if (st == ATTN_OK)
            st = attn_context_set_num_threads(ctx, threads);
        timing tm = {0};
        if (st == ATTN_OK)
            st = o.no_cache ? run_uncached(ctx, &m, &s, &how, scratch, &tm)
                            : run_cached(ctx, &m, &s, &how, scratch, &tm);
        if (st != ATTN_OK) {
            rc = cli_status_error(CMD, "the model", st);
        } else {
            /* The text first: an output that cannot be written does not
             * lose it. */
            print_text(&v, &s);
            fprintf(stderr, "attn generate: %lld characters in %.3f s (%.1f per second, %s); "
                    "time to first character %.1f ms\n", (long long)tm.generated, tm.total,
                    tm.total > 0.0 ? (double)tm.generated / tm.total : 0.0,
                    o.no_cache ? "no cache: the whole prefix each time" : "KV cache",
                    1e3 * tm.first_token);
            const int64_t shape[2] = {s.steps0, m.c.vocab_size};
            if (o.logits)
                rc = io_save_floats(CMD, o.logits, s.logits0, 2, shape);
            if (rc == CLI_OK && (o.attention || o.explore))
                rc = save_attention(ctx, &m, &v, &s, &o);
        }
    }
    attn_context_destroy(ctx);
    free(scratch);
    sequences_free(&s);
    lm_model_free(&m);
    lm_vocab_free(&v);
    return rc;
}
