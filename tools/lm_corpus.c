/*
 * lm_corpus.c — poems from fortune files, the character vocabulary and the
 * training windows (see lm_corpus.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "lm_corpus.h"

/* ---- UTF-8 -------------------------------------------------------------------- */

int64_t lm_utf8_decode(const unsigned char *s, int64_t n, uint32_t *out)
{
    int64_t count = 0;
    for (int64_t i = 0; i < n;) {
        unsigned char b = s[i];
        int len = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3
                             : (b & 0xF8) == 0xF0 ? 4 : 0;
        if (len == 0 || i + len > n)
            return -1 - i;
        uint32_t c = len == 1 ? b : (uint32_t)(b & (0x7F >> len));
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return -1 - i;
            c = c << 6 | (s[i + k] & 0x3F);
        }
        static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (c < least[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return -1 - i;  /* overlong, beyond Unicode, or a surrogate */
        if (out)
            out[count] = c;
        count++;
        i += len;
    }
    return count;
}

int lm_utf8_encode(uint32_t c, char out[4])
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | c >> 6), out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | c >> 12), out[1] = (char)(0x80 | (c >> 6 & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | c >> 18), out[1] = (char)(0x80 | (c >> 12 & 0x3F));
    out[2] = (char)(0x80 | (c >> 6 & 0x3F)), out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* ---- poems ---------------------------------------------------------------------- */

/* Removes ESC [ parameters final-byte sequences (the terminal colours) and
 * carriage returns in place; returns the new length. */
static int64_t strip_escapes(uint32_t *c, int64_t n)
{
    int64_t w = 0;
    for (int64_t i = 0; i < n; i++) {
        if (c[i] == 0x1B && i + 1 < n && c[i + 1] == '[') {
            i += 2;
            while (i < n && !(c[i] >= 0x40 && c[i] <= 0x7E))
                i++;
            continue;  /* i is on the final byte (or past the end) */
        }
        if (c[i] != '\r')
            c[w++] = c[i];
    }
    return w;
}

static int is_blank_line(const uint32_t *c, int64_t b, int64_t e);

/* "%" alone on its line (trailing blanks allowed: song100 has one). */
static int is_separator_line(const uint32_t *c, int64_t b, int64_t e)
{
    return e > b && c[b] == '%' && is_blank_line(c, b + 1, e);
}

static int is_blank_line(const uint32_t *c, int64_t b, int64_t e)
{
    for (int64_t i = b; i < e; i++)
        if (c[i] != ' ' && c[i] != '\t' && c[i] != 0x3000)
            return 0;
    return 1;
}

/* Appends one poem from the lines of c[b .. e) (e is the start of the
 * separator line, or the end): its non-blank lines joined by "\n". */
static int add_poem(lm_poems *p, const uint32_t *c, int64_t b, int64_t e, int64_t *cap_text,
                    int64_t *cap_poems)
{
    if (p->n + 2 > *cap_poems) {
        int64_t cap = *cap_poems ? 2 * *cap_poems : 256;
        int64_t *s = realloc(p->start, (size_t)cap * sizeof *s);
        if (!s)
            return -1;
        p->start = s, *cap_poems = cap;
    }
    if (p->chars + (e - b) + 1 > *cap_text) {
        int64_t cap = 2 * (p->chars + (e - b) + 1);
        uint32_t *t = realloc(p->text, (size_t)cap * sizeof *t);
        if (!t)
            return -1;
        p->text = t, *cap_text = cap;
    }
    int64_t at = p->chars, line = b;
    for (int64_t i = b; i <= e; i++) {
        if (i < e && c[i] != '\n')
            continue;
        if (!is_blank_line(c, line, i)) {
            if (at > p->chars)
                p->text[at++] = '\n';
            memcpy(p->text + at, c + line, (size_t)(i - line) * sizeof *c);
            at += i - line;
        }
        line = i + 1;
    }
    if (at == p->chars)
        return 0;  /* an empty entry is no poem */
    p->start[p->n] = p->chars;
    p->n++;
    p->chars = at;
    p->start[p->n] = at;
    return 0;
}

const char *lm_poems_read(lm_poems *p, const char *path, char err[LM_ERROR_SIZE])
{
    unsigned char *bytes;
    size_t size;
    char ferr[FILE_ERROR_SIZE];
    if (read_whole_file(path, &bytes, &size, ferr)) {
        snprintf(err, LM_ERROR_SIZE, "%s: %s", path, ferr);
        return err;
    }
    int64_t n = lm_utf8_decode(bytes, (int64_t)size, NULL);
    if (n < 0) {
        snprintf(err, LM_ERROR_SIZE, "%s: not UTF-8 (an invalid byte at offset %lld)", path,
                 (long long)(-1 - n));
        free(bytes);
        return err;
    }
    uint32_t *c = malloc((size_t)(n > 0 ? n : 1) * sizeof *c);
    if (!c) {
        free(bytes);
        snprintf(err, LM_ERROR_SIZE, "%s: out of memory", path);
        return err;
    }
    lm_utf8_decode(bytes, (int64_t)size, c);
    free(bytes);
    n = strip_escapes(c, n);
    int64_t before = p->n, cap_text = p->chars + 1, cap_poems = p->n + 1, entry = 0;
    int failed = 0;
    /* An entry runs up to the next line holding only "%" (or the end). */
    for (int64_t i = 0, line = 0; i <= n && !failed; i++) {
        if (i < n && c[i] != '\n')
            continue;
        int separator = is_separator_line(c, line, i);
        if (i == n || separator) {
            /* The entry ends before its separator line, or with the file
             * (whose last line may lack its newline). */
            failed = add_poem(p, c, entry, separator ? line : n, &cap_text, &cap_poems) != 0;
            entry = i + 1;
        }
        line = i + 1;
    }
    free(c);
    if (failed) {
        snprintf(err, LM_ERROR_SIZE, "%s: out of memory", path);
        return err;
    }
    if (p->n == before) {
        snprintf(err, LM_ERROR_SIZE, "%s: no poem in it (entries separated by lines of \"%%\")",
                 path);
        return err;
    }
    return NULL;
}

void lm_poems_free(lm_poems *p)
{
    free(p->text), free(p->start);
    *p = (lm_poems){0};
}

/* Copies poem i of from to the end of to (whose arrays have room). */
static void copy_poem(const lm_poems *from, int64_t i, lm_poems *to)
{
    int64_t len = from->start[i + 1] - from->start[i];
    memcpy(to->text + to->chars, from->text + from->start[i], (size_t)len * sizeof *to->text);
    to->start[to->n++] = to->chars;
    to->chars += len;
    to->start[to->n] = to->chars;
}

static int alloc_like(lm_poems *p, const lm_poems *all)
{
    *p = (lm_poems){0};
    p->text = malloc((size_t)(all->chars > 0 ? all->chars : 1) * sizeof *p->text);
    p->start = calloc((size_t)(all->n + 1), sizeof *p->start);
    return p->text && p->start ? 0 : -1;
}

int lm_poems_split(const lm_poems *all, double fraction, uint64_t seed, lm_poems *train,
                   lm_poems *held_out)
{
    int64_t *order = malloc((size_t)(all->n > 0 ? all->n : 1) * sizeof *order);
    if (!order || alloc_like(train, all) || alloc_like(held_out, all)) {
        free(order);
        lm_poems_free(train), lm_poems_free(held_out);
        return -1;
    }
    for (int64_t i = 0; i < all->n; i++)
        order[i] = i;
    prng g;
    prng_seed(&g, seed);
    for (int64_t i = all->n - 1; i > 0; i--) {
        int64_t j = (int64_t)(prng_next(&g) % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j], order[j] = t;
    }
    int64_t held = (int64_t)(fraction * (double)all->n + 0.5);
    if (held < 1 && all->n >= 2 && fraction > 0.0)
        held = 1;
    /* Each set keeps the file order, so a listing of it reads as the book. */
    unsigned char *is_held = calloc((size_t)(all->n > 0 ? all->n : 1), 1);
    if (!is_held) {
        free(order);
        lm_poems_free(train), lm_poems_free(held_out);
        return -1;
    }
    for (int64_t i = 0; i < held; i++)
        is_held[order[i]] = 1;
    for (int64_t i = 0; i < all->n; i++)
        copy_poem(all, i, is_held[i] ? held_out : train);
    free(is_held);
    free(order);
    return 0;
}

/* ---- vocabulary ----------------------------------------------------------------- */

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int lm_vocab_build(lm_vocab *v, const lm_poems *p)
{
    *v = (lm_vocab){0};
    uint32_t *sorted = malloc((size_t)(p->chars + 1) * sizeof *sorted);
    if (!sorted)
        return -1;
    memcpy(sorted, p->text, (size_t)p->chars * sizeof *sorted);
    sorted[p->chars] = '\n';  /* a line break is always a token */
    qsort(sorted, (size_t)p->chars + 1, sizeof *sorted, compare_u32);
    v->chars = malloc((size_t)(p->chars + 1 + LM_SPECIALS) * sizeof *v->chars);
    if (!v->chars) {
        free(sorted);
        return -1;
    }
    v->chars[0] = v->chars[1] = 0;
    v->size = LM_SPECIALS;
    for (int64_t i = 0; i <= p->chars; i++)
        if (i == 0 || sorted[i] != sorted[i - 1])
            v->chars[v->size++] = sorted[i];
    free(sorted);
    return 0;
}

void lm_vocab_free(lm_vocab *v)
{
    free(v->chars);
    *v = (lm_vocab){0};
}

int lm_vocab_token(const lm_vocab *v, uint32_t c)
{
    int64_t lo = LM_SPECIALS, hi = v->size - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (v->chars[mid] == c)
            return (int)mid;
        if (v->chars[mid] < c)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return LM_UNK;
}

/* ---- windows -------------------------------------------------------------------- */

static int push_window(lm_windows *w, int64_t *cap, int64_t begin, int64_t len, int64_t skip)
{
    if (w->n == *cap) {
        int64_t c = *cap ? 2 * *cap : 512;
        int64_t *b = realloc(w->begin, (size_t)c * sizeof *b);
        if (b)
            w->begin = b;
        int64_t *l = realloc(w->len, (size_t)c * sizeof *l);
        if (l)
            w->len = l;
        int64_t *s = realloc(w->skip, (size_t)c * sizeof *s);
        if (s)
            w->skip = s;
        if (!b || !l || !s)
            return -1;
        *cap = c;
    }
    w->begin[w->n] = begin, w->len[w->n] = len, w->skip[w->n] = skip;
    w->n++;
    return 0;
}

/* The windows of one poem's tokens t[0 .. n) (n - 1 targets), at offset
 * `base` of w->tokens. */
static int poem_windows(lm_windows *w, int64_t *cap, const int *t, int64_t n, int64_t base,
                        int64_t context, int newline)
{
    int64_t begin = 0, covered = 0;  /* targets t[1 .. covered] are counted */
    for (;;) {
        int64_t len = n - 1 - begin < context ? n - 1 - begin : context;
        if (push_window(w, cap, base + begin, len, covered - begin) != 0)
            return -1;
        covered = begin + len;
        if (covered >= n - 1)
            return 0;
        /* The next window starts at the last line start after begin that
         * still leaves its first target uncounted; without one, right after
         * the counted targets (a line longer than the context). */
        int64_t next = covered;
        for (int64_t i = covered; i > begin + 1; i--)
            if (t[i - 1] == newline) {
                next = i;
                break;
            }
        begin = next;
    }
}

int lm_windows_make(lm_windows *w, const lm_poems *p, const lm_vocab *v, int64_t context)
{
    *w = (lm_windows){0};
    w->n_tokens = p->chars + 2 * p->n;
    w->tokens = malloc((size_t)(w->n_tokens > 0 ? w->n_tokens : 1) * sizeof *w->tokens);
    if (!w->tokens)
        return -1;
    int newline = lm_vocab_token(v, '\n');
    int64_t at = 0, cap = 0;
    for (int64_t i = 0; i < p->n; i++) {
        int64_t base = at;
        w->tokens[at++] = LM_EOS;
        for (int64_t c = p->start[i]; c < p->start[i + 1]; c++)
            w->tokens[at++] = lm_vocab_token(v, p->text[c]);
        w->tokens[at++] = LM_EOS;
        int rc = poem_windows(w, &cap, w->tokens + base, at - base, base, context, newline);
        if (rc != 0) {
            lm_windows_free(w);
            return -1;
        }
        w->targets += at - base - 1;
    }
    return 0;
}

void lm_windows_free(lm_windows *w)
{
    free(w->tokens), free(w->begin), free(w->len), free(w->skip);
    *w = (lm_windows){0};
}
