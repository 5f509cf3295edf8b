/*
 * lm_corpus.h — the text side of `attn train lm` and `attn generate`: poems
 * read from fortune files (Debian's fortunes-zh: /usr/share/games/fortunes/
 * tang300, song100), a character vocabulary, and the token windows the
 * model trains on.
 *
 * A fortune file is UTF-8 text whose entries are separated by lines holding
 * only "%"; fortunes-zh colours its titles and authors with terminal escape
 * sequences (ESC [ ... m), which are removed. Each entry is one poem: its
 * non-empty lines joined by "\n" (title, author, then the body lines).
 *
 * Tokens are characters (Unicode code points) with two more: LM_UNK for a
 * character the vocabulary lacks and LM_EOS, the poem boundary, which starts
 * every poem's token sequence and ends it (GPT-2's <|endoftext|> plays both
 * parts the same way):  EOS c_1 c_2 ... c_n EOS.
 */
#ifndef ATTN_TOOLS_LM_CORPUS_H
#define ATTN_TOOLS_LM_CORPUS_H

#include <stdint.h>

#include "prng.h"

enum { LM_UNK = 0, LM_EOS = 1, LM_SPECIALS = 2 };

#define LM_ERROR_SIZE 512

/* Poems as code points: poem p is text[start[p] .. start[p + 1]). */
typedef struct lm_poems {
    uint32_t *text;
    int64_t *start;
    int64_t n, chars;
} lm_poems;

/* Appends the poems of the fortune file at path. Returns NULL or the error
 * (missing, unreadable, not UTF-8 — with the byte offset — or holding no
 * poem) in err. */
const char *lm_poems_read(lm_poems *p, const char *path, char err[LM_ERROR_SIZE]);
void lm_poems_free(lm_poems *p);

/* Splits the poems into a training and a held-out set: a shuffle by seed,
 * then the first round(fraction · n) (at least 1 when n >= 2) held out. */
int lm_poems_split(const lm_poems *all, double fraction, uint64_t seed, lm_poems *train,
                   lm_poems *held_out);

/* The vocabulary: token t >= LM_SPECIALS is the code point chars[t]. */
typedef struct lm_vocab {
    uint32_t *chars;   /* [size]; chars[0], chars[1] unused (the specials) */
    int64_t size;
} lm_vocab;

/* Every distinct character of the poems, in code-point order, after the
 * specials. 0 or -1 (out of memory). */
int lm_vocab_build(lm_vocab *v, const lm_poems *p);
void lm_vocab_free(lm_vocab *v);
/* The token of code point c: LM_UNK if it is not in the vocabulary. */
int lm_vocab_token(const lm_vocab *v, uint32_t c);

/* Training windows of at most `context` inputs, each starting at a poem's
 * start or, in a poem longer than the context, at a line start, so that
 * positions count from where a poem or a line begins. Window w reads
 * tokens[begin[w] .. begin[w] + len[w]] (len + 1 tokens: inputs and the
 * next-token targets); its first `skip[w]` targets were already predicted
 * by the previous window and are not counted again. */
typedef struct lm_windows {
    int *tokens;        /* every poem's EOS c_1 ... c_n EOS, one after another */
    int64_t n_tokens;
    int64_t *begin, *len, *skip;
    int64_t n;
    int64_t targets;    /* the counted targets of all windows: each poem's n + 1 */
} lm_windows;

int lm_windows_make(lm_windows *w, const lm_poems *p, const lm_vocab *v, int64_t context);
void lm_windows_free(lm_windows *w);

/* Decoding and encoding UTF-8 (RFC 3629: no overlongs, no surrogates).
 * lm_utf8_decode returns the number of code points, or -1 - (the offset of
 * the first invalid byte). out may be NULL to count. */
int64_t lm_utf8_decode(const unsigned char *s, int64_t n, uint32_t *out);
/* Writes c's bytes (1 to 4) to out; returns how many. */
int lm_utf8_encode(uint32_t c, char out[4]);

#endif
