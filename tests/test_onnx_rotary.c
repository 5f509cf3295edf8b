/*
 * test_onnx_rotary.c: attn_rope against the ONNX RotaryEmbedding
 * conformance vectors (tests/data/onnx-rotary-embedding: the ONNX backend
 * node tests of opset 23 as case.json + raw little-endian .bin; see its
 * README.md and PROVENANCE.md).
 *
 * Usage: test_onnx_rotary <onnx-rotary-embedding folder>; a missing folder
 * is a failure, since the vectors are part of the project. Every
 * test_rotary_embedding* folder is one CMocka test that must match the
 * stored output within a normalised error of TOL
 * (|a − e| <= TOL · (|e| + max|e| over the head's row)); none is skipped.
 *
 * How an ONNX RotaryEmbedding node is expressed in libattn:
 * - 4-D input (B, H, S, D): ATTN_LAYOUT_BHSD; 3-D input (B, S, H·D) with
 *   num_heads: ATTN_LAYOUT_BSHD with D = hidden / num_heads.
 * - rotary_embedding_dim (0 = D): rotary_dim; interleaved 1:
 *   ATTN_ROPE_INTERLEAVED, 0: ATTN_ROPE_HALF.
 * - cos_cache / sin_cache (P, rotary_dim/2) with position_ids (B, S):
 *   attn_rope_set_tables(cos, sin, P) and positions = position_ids.
 * - Without position_ids the caches are (B, S, rotary_dim/2), one table per
 *   batch row: batch row b is rotated alone with tables cos[b], sin[b] of S
 *   rows at positions 0 .. S − 1 (positions NULL, start 0).
 * The caches hold arbitrary numbers rather than cosines, so libattn must
 * use them as given.
 */
#define _POSIX_C_SOURCE 200809L /* stat */

#include <attn.h>

#include <errno.h>
#include <sys/stat.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "golden.h"

#define TOL 1e-5

enum { INPUT, COS, SIN, POSITIONS, OUTPUT, N_TENSORS };
static const char *const tensor_key[N_TENSORS] = {"input", "cos_cache", "sin_cache",
                                                  "position_ids", "output"};
static const char *const tensor_dtype[N_TENSORS] = {"float32", "float32", "float32", "int64",
                                                    "float32"};

typedef struct rotary_case {
    golden_case g;                /* first: golden_load_cases fills it */
    golden_tensor t[N_TENSORS];
    int interleaved;
    int64_t num_heads, rotary_dim;  /* 0: absent / all of D */
    double max_err;
    int passed;
} rotary_case;

static int parse_attributes(rotary_case *c, json_object *attrs)
{
    json_object_object_foreach(attrs, key, val) {
        if (strcmp(key, "interleaved") == 0)
            c->interleaved = json_object_get_int(val);
        else if (strcmp(key, "num_heads") == 0)
            c->num_heads = json_object_get_int64(val);
        else if (strcmp(key, "rotary_embedding_dim") == 0)
            c->rotary_dim = json_object_get_int64(val);
        else  /* an attribute not translated must not be ignored */
            return golden_error(&c->g, "attribute %s = %s not handled", key,
                                json_object_get_string(val));
    }
    return 1;
}

static int parse_case(golden_case *g, json_object *j)
{
    rotary_case *c = (rotary_case *)g;
    json_object *attrs = golden_get(j, "attributes"), *ins = golden_get(j, "inputs");
    json_object *outs = golden_get(j, "outputs");
    if (attrs == NULL || ins == NULL || outs == NULL)
        return golden_error(g, "case.json lacks attributes, inputs or outputs");
    for (int i = 0; i < N_TENSORS; i++) {
        json_object *t = golden_get(i == OUTPUT ? outs : ins, tensor_key[i]);
        if (t == NULL && i != POSITIONS)  /* position_ids is optional */
            return golden_error(g, "case.json lacks %s", tensor_key[i]);
        if (t != NULL && !golden_parse_tensor(g, t, tensor_dtype[i], 0, &c->t[i]))
            return 0;
    }
    return parse_attributes(c, attrs);
}

/* The node's geometry in libattn's terms. */
typedef struct geometry {
    int64_t b, h, s, d, rotary_dim, pairs;
    attn_layout layout;
} geometry;

static int derive(rotary_case *c, geometry *m)
{
    const golden_tensor *in = &c->t[INPUT];
    if (in->rank == 4) {
        *m = (geometry){in->shape[0], in->shape[1], in->shape[2], in->shape[3], 0, 0,
                        ATTN_LAYOUT_BHSD};
    } else if (in->rank == 3 && c->num_heads > 0 && in->shape[2] % c->num_heads == 0) {
        *m = (geometry){in->shape[0], c->num_heads, in->shape[1], in->shape[2] / c->num_heads, 0,
                        0, ATTN_LAYOUT_BSHD};
    } else {
        return golden_error(&c->g, "input of rank %d (num_heads %lld) is not translated",
                            in->rank, (long long)c->num_heads);
    }
    m->rotary_dim = c->rotary_dim > 0 ? c->rotary_dim : m->d;
    m->pairs = m->rotary_dim / 2;
    const golden_tensor *cs = &c->t[COS];
    int with_ids = c->t[POSITIONS].present;
    if (with_ids ? !golden_expect_shape(&c->g, &c->t[POSITIONS], 2, m->b, m->s, 0, 0) ||
                       !golden_expect_shape(&c->g, cs, 2, cs->shape[0], m->pairs, 0, 0)
                 : !golden_expect_shape(&c->g, cs, 3, m->b, m->s, m->pairs, 0))
        return 0;
    return golden_expect_shape(&c->g, &c->t[SIN], cs->rank, cs->shape[0], cs->shape[1],
                               cs->shape[2], 0) &&
           golden_expect_shape(&c->g, &c->t[OUTPUT], in->rank, in->shape[0], in->shape[1],
                               in->shape[2], in->shape[3]);
}

#define CHECK(c, call) golden_check(&(c)->g, (call), #call)

/* Rotates x (the whole input, or batch row b alone when tables are per
 * batch row) with the tables at row `table`. */
static int run(rotary_case *c, const geometry *m, attn_context *ctx, attn_rope *rope, float *x,
               const void *ids, const float *cos, const float *sin)
{
    if (ids)
        return CHECK(c, attn_rope_set_tables(rope, cos, sin, c->t[COS].shape[0])) &&
               CHECK(c, attn_rope_apply(ctx, rope, m->layout, m->b, m->h, m->s, x, ids, 0, 0));
    int64_t per_batch = m->h * m->s * m->d, table = m->s * m->pairs;
    for (int64_t b = 0; b < m->b; b++)
        if (!CHECK(c, attn_rope_set_tables(rope, cos + b * table, sin + b * table, m->s)) ||
            !CHECK(c, attn_rope_apply(ctx, rope, m->layout, 1, m->h, m->s, x + b * per_batch,
                                      NULL, 0, 0)))
            return 0;
    return 1;
}

static int execute(rotary_case *c)
{
    geometry m = {0};
    if (!derive(c, &m))
        return 0;
    int ok = 0;
    attn_context *ctx = NULL;
    attn_rope *rope = NULL;
    void *buf[N_TENSORS] = {0};
    for (int i = 0; i < N_TENSORS; i++)
        if (c->t[i].present && !(buf[i] = golden_load_tensor(&c->g, &c->t[i], i == POSITIONS
                                                                             ? sizeof(int64_t)
                                                                             : sizeof(float))))
            goto done;
    if (!CHECK(c, attn_context_create(&ctx)) ||
        !CHECK(c, attn_rope_create(&rope, m.d, m.rotary_dim, 10000.0f,
                                   c->interleaved ? ATTN_ROPE_INTERLEAVED : ATTN_ROPE_HALF)) ||
        !run(c, &m, ctx, rope, buf[INPUT], buf[POSITIONS], buf[COS], buf[SIN]))
        goto done;
    ok = golden_compare_f32(&c->g, "output", buf[INPUT], buf[OUTPUT], golden_numel(&c->t[INPUT]),
                            m.d, TOL, &c->max_err);
done:
    for (int i = 0; i < N_TENSORS; i++)
        free(buf[i]);
    attn_rope_destroy(rope);
    attn_context_destroy(ctx);
    return ok;
}

static void test_case(void **state)
{
    rotary_case *c = *state;
    if (c->g.error[0] != '\0')  /* case.json unusable: fail, never drop */
        fail_msg("%s: %s", c->g.name, c->g.error);
    if (!execute(c))
        fail_msg("%s: %s", c->g.name, c->g.error);
    print_message("%s: max normalised error %.3g\n", c->g.name, c->max_err);
    c->passed = 1;
}

int main(int argc, char **argv)
{
    size_t n = 0;
    int status = golden_check_args(argc, argv, "test_onnx_rotary",
                                   "<onnx-rotary-embedding folder>");
    if (status != 0)
        return status;
    struct stat folder;
    const char *why = stat(argv[1], &folder) != 0 ? strerror(errno)
                      : !S_ISDIR(folder.st_mode) ? "not a directory" : NULL;
    if (why != NULL) {
        fprintf(stderr, "test_onnx_rotary: FAILED, no conformance folder at %s (%s); it is part "
                        "of the project (tests/data/onnx-rotary-embedding/PROVENANCE.md)\n",
                argv[1], why);
        return 1;
    }
    rotary_case *cases = golden_load_cases(argv[1], "test_rotary_embedding", sizeof *cases,
                                           parse_case, "test_onnx_rotary", &n);
    struct CMUnitTest *tests = calloc(n ? n : 1, sizeof *tests);
    if (cases == NULL || tests == NULL) {
        free(cases), free(tests);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        tests[i] = (struct CMUnitTest){
            .name = cases[i].g.name, .test_func = test_case, .initial_state = &cases[i]};
    /* Built at run time: the function cmocka_run_group_tests_name expands to. */
    int failed = _cmocka_run_group_tests("onnx rotary embedding", tests, n, NULL, NULL);
    int passed = 0;
    for (size_t i = 0; i < n; i++)
        passed += cases[i].passed;
    print_message("onnx rotary embedding: %zu cases, %d passed\n", n, passed);
    free(tests);
    free(cases);
    return failed != 0;
}
