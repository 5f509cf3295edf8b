/*
 * lm_checkpoint.c — saving and loading the language model (see
 * lm_checkpoint.h). JSON goes through json-c, the arrays through npy.c.
 */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "cli.h"
#include "demo.h"
#include "lm_checkpoint.h"
#include "strbuf.h"
#include "tensor_io.h"

/* ---- saving ----------------------------------------------------------------------- */

/* JSON text of o (pretty, "/" unescaped, UTF-8 kept), malloc'd; frees o. */
static char *json_text(json_object *o, int pretty)
{
    const char *t = json_object_to_json_string_ext(
        o, JSON_C_TO_STRING_NOSLASHESCAPE | (pretty ? JSON_C_TO_STRING_PRETTY : 0));
    char *copy = t ? strdup(t) : NULL;
    json_object_put(o);
    return copy;
}

static char *config_json(const lm_model *m)
{
    const lm_config *c = &m->c;
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    char eps[32];  /* the float's shortest decimal form: 1e-05, not 9.99999974737875e-06 */
    snprintf(eps, sizeof eps, "%.7g", (double)c->layer_norm_eps);
    json_object_object_add(o, "vocab_size", json_object_new_int64(c->vocab_size));
    json_object_object_add(o, "d_model", json_object_new_int64(c->d_model));
    json_object_object_add(o, "nhead", json_object_new_int64(c->nhead));
    json_object_object_add(o, "dim_feedforward", json_object_new_int64(c->dim_feedforward));
    json_object_object_add(o, "num_layers", json_object_new_int64(c->num_layers));
    json_object_object_add(o, "context", json_object_new_int64(c->context));
    json_object_object_add(o, "activation", json_object_new_string(
        c->activation == ATTN_ACTIVATION_GELU ? "gelu" : "relu"));
    json_object_object_add(o, "layer_norm_eps", json_object_new_double_s(strtod(eps, NULL), eps));
    json_object_object_add(o, "norm_first", json_object_new_boolean(c->norm_first));
    json_object_object_add(o, "embedding_scale", json_object_new_double(sqrt((double)c->d_model)));
    json_object_object_add(o, "positional_encoding", json_object_new_string("sinusoidal"));
    json_object_object_add(o, "pe_base", json_object_new_int(10000));
    json_object_object_add(o, "positions",
                           json_object_new_string(lm_positions_names[c->positions]));
    return json_text(o, 1);
}

static char *vocab_json(const lm_vocab *v)
{
    json_object *a = json_object_new_array();
    if (!a)
        return NULL;
    json_object_array_add(a, json_object_new_string("<unk>"));
    json_object_array_add(a, json_object_new_string("<eos>"));
    for (int64_t t = LM_SPECIALS; t < v->size; t++) {
        char s[5] = {0};
        lm_utf8_encode(v->chars[t], s);
        json_object_array_add(a, json_object_new_string(s));
    }
    return json_text(a, 0);
}

static int save_text(const char *cmd, const char *path, const char *text)
{
    if (!text)
        return cli_refuse(cmd, "%s: out of memory", path);
    strbuf sb = STRBUF_INIT;
    strbuf_puts(&sb, text);
    strbuf_puts(&sb, "\n");
    int rc = io_save_text(cmd, path, &sb);
    strbuf_free(&sb);
    return rc;
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* The file names of a checkpoint, in the order they are written. */
static int file_name(const lm_model *m, int k, char *name, size_t size)
{
    if (k == 0)
        return snprintf(name, size, "config.json");
    if (k == 1)
        return snprintf(name, size, "vocab.json");
    return snprintf(name, size, "%s.npy", m->tensors[k - 2].name);
}

/* Writes file k of the checkpoint into dir. */
static int write_file(const char *cmd, const char *dir, int k, const lm_model *m,
                      const lm_vocab *v)
{
    char name[96];
    file_name(m, k, name, sizeof name);
    char *path = join(dir, name);
    if (!path)
        return cli_refuse(cmd, "out of memory");
    int rc;
    if (k < 2) {
        char *text = k == 0 ? config_json(m) : vocab_json(v);
        rc = save_text(cmd, path, text);
        free(text);
    } else {
        const lm_tensor *t = &m->tensors[k - 2];
        rc = io_save_floats(cmd, path, m->params + t->offset, t->ndim, t->shape);
    }
    free(path);
    return rc;
}

/* Removes files 0 .. n - 1 from dir, then dir. */
static void remove_staging(const char *dir, const lm_model *m, int n)
{
    for (int k = 0; k < n; k++) {
        char name[96];
        file_name(m, k, name, sizeof name);
        char *path = join(dir, name);
        if (path)
            unlink(path);
        free(path);
    }
    rmdir(dir);
}

int lm_checkpoint_save(const char *cmd, const char *dir, const lm_model *m, const lm_vocab *v)
{
    int rc = demo_make_directories(dir);
    if (rc != CLI_OK)
        return rc;
    char stage_name[64];
    snprintf(stage_name, sizeof stage_name, ".checkpoint.tmp%ld", (long)getpid());
    char *stage = join(dir, stage_name);
    if (!stage)
        return cli_refuse(cmd, "out of memory");
    if (mkdir(stage, 0777) != 0) {
        rc = cli_refuse(cmd, "%s: cannot create: %s", stage, strerror(errno));
        free(stage);
        return rc;
    }
    int files = 2 + m->n_tensors, written = 0;
    for (; written < files && rc == CLI_OK; written++)
        rc = write_file(cmd, stage, written, m, v);
    /* Every file is whole in the staging directory: move them in. */
    for (int k = 0; k < files && rc == CLI_OK; k++) {
        char name[96];
        file_name(m, k, name, sizeof name);
        char *from = join(stage, name), *to = join(dir, name);
        if (!from || !to)
            rc = cli_refuse(cmd, "out of memory");
        else if (rename(from, to) != 0)
            rc = cli_refuse(cmd, "%s: cannot move into place: %s", to, strerror(errno));
        free(from), free(to);
    }
    remove_staging(stage, m, written);
    free(stage);
    return rc;
}

/* ---- loading ---------------------------------------------------------------------- */

static int read_json(const char *cmd, const char *dir, const char *name, json_object **out)
{
    char *path = join(dir, name);
    if (!path)
        return cli_refuse(cmd, "out of memory");
    unsigned char *bytes;
    size_t size;
    char err[FILE_ERROR_SIZE];
    int rc = CLI_OK;
    if (read_whole_file(path, &bytes, &size, err)) {
        rc = cli_refuse(cmd, "%s: %s", path, err);
    } else {
        json_tokener *tok = json_tokener_new();
        *out = tok && size <= INT32_MAX
                   ? json_tokener_parse_ex(tok, (const char *)bytes, (int)size) : NULL;
        if (*out && json_tokener_get_error(tok) != json_tokener_success) {
            json_object_put(*out);
            *out = NULL;
        }
        json_tokener_free(tok);
        free(bytes);
        if (!*out)
            rc = cli_refuse(cmd, "%s: not valid JSON", path);
    }
    free(path);
    return rc;
}

/* A whole number in [lo, hi] named key of o. */
static json_object *member(json_object *o, const char *key)
{
    json_object *v = NULL;
    return json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, key, &v)
               ? v : NULL;
}

static int config_int(const char *cmd, json_object *o, const char *key, int64_t lo, int64_t hi,
                      int64_t *value)
{
    json_object *item = member(o, key);
    if (!json_object_is_type(item, json_type_int) || json_object_get_int64(item) < lo ||
        json_object_get_int64(item) > hi)
        return cli_refuse(cmd, "config.json: \"%s\" is missing or not a whole number in "
                          "%lld .. %lld", key, (long long)lo, (long long)hi);
    *value = json_object_get_int64(item);
    return CLI_OK;
}

static int is_string(json_object *o, const char *s)
{
    return json_object_is_type(o, json_type_string) && strcmp(json_object_get_string(o), s) == 0;
}

static int parse_config(const char *cmd, json_object *o, lm_config *c)
{
    int rc;
    if ((rc = config_int(cmd, o, "vocab_size", LM_SPECIALS + 1, 1 << 21, &c->vocab_size)) ||
        (rc = config_int(cmd, o, "d_model", 2, 8192, &c->d_model)) ||
        (rc = config_int(cmd, o, "nhead", 1, 1024, &c->nhead)) ||
        (rc = config_int(cmd, o, "dim_feedforward", 1, 65536, &c->dim_feedforward)) ||
        (rc = config_int(cmd, o, "num_layers", 1, 256, &c->num_layers)) ||
        (rc = config_int(cmd, o, "context", 1, 1 << 20, &c->context)))
        return rc;
    if (c->d_model % 2 != 0 || c->d_model % c->nhead != 0)
        return cli_refuse(cmd, "config.json: d_model (%lld) must be even and a multiple of "
                          "nhead (%lld)", (long long)c->d_model, (long long)c->nhead);
    json_object *act = member(o, "activation"), *eps = member(o, "layer_norm_eps");
    json_object *nf = member(o, "norm_first"), *pe = member(o, "positional_encoding");
    json_object *pos = member(o, "positions");
    int number = json_object_is_type(eps, json_type_double) ||
                 json_object_is_type(eps, json_type_int);
    if (!is_string(act, "gelu") && !is_string(act, "relu"))
        return cli_refuse(cmd, "config.json: \"activation\" must be \"gelu\" or \"relu\"");
    if (!number || !(json_object_get_double(eps) > 0.0 && json_object_get_double(eps) < 1.0))
        return cli_refuse(cmd, "config.json: \"layer_norm_eps\" must be a number in (0, 1)");
    if (!json_object_is_type(nf, json_type_boolean))
        return cli_refuse(cmd, "config.json: \"norm_first\" must be true or false");
    if (pe && !is_string(pe, "sinusoidal"))
        return cli_refuse(cmd, "config.json: only \"sinusoidal\" positional encoding is known");
    c->positions = LM_POSITIONS_WINDOW;  /* absent: D2L's */
    for (int k = 0; pos && k < LM_POSITIONS_COUNT; k++)
        if (is_string(pos, lm_positions_names[k]))
            c->positions = (lm_positions)k, pos = NULL;
    if (pos)
        return cli_refuse(cmd, "config.json: \"positions\" must be \"window\", \"line\", "
                          "\"clause\" or \"grid\"");
    if (c->positions == LM_POSITIONS_GRID && c->d_model % 4 != 0)
        return cli_refuse(cmd, "config.json: \"grid\" positions need a d_model that is a "
                          "multiple of 4");
    c->activation = is_string(act, "gelu") ? ATTN_ACTIVATION_GELU : ATTN_ACTIVATION_RELU;
    c->layer_norm_eps = (float)json_object_get_double(eps);
    c->norm_first = json_object_get_boolean(nf);
    return CLI_OK;
}

static int parse_vocab(const char *cmd, json_object *a, int64_t size, lm_vocab *v)
{
    if (!json_object_is_type(a, json_type_array))
        return cli_refuse(cmd, "vocab.json: not an array of strings");
    int64_t n = (int64_t)json_object_array_length(a);
    if (n != size)
        return cli_refuse(cmd, "vocab.json holds %lld tokens, config.json's vocab_size is %lld",
                          (long long)n, (long long)size);
    v->chars = calloc((size_t)n, sizeof *v->chars);
    if (!v->chars)
        return cli_refuse(cmd, "out of memory");
    v->size = n;
    for (int64_t t = 0; t < n; t++) {
        json_object *item = json_object_array_get_idx(a, (size_t)t);
        const char *s = json_object_is_type(item, json_type_string) ? json_object_get_string(item)
                                                                   : NULL;
        /* Counted first: only a one-character string is decoded into c. */
        uint32_t c[1];
        int64_t bytes = s ? (int64_t)strlen(s) : 0;
        int64_t k = s ? lm_utf8_decode((const unsigned char *)s, bytes, NULL) : -1;
        if (k == 1)
            lm_utf8_decode((const unsigned char *)s, bytes, c);
        if (t == LM_UNK || t == LM_EOS) {
            if (!s || strcmp(s, t == LM_UNK ? "<unk>" : "<eos>") != 0)
                return cli_refuse(cmd, "vocab.json: token %lld must be \"%s\"", (long long)t,
                                  t == LM_UNK ? "<unk>" : "<eos>");
        } else if (k != 1 || (t > LM_SPECIALS && c[0] <= v->chars[t - 1])) {
            return cli_refuse(cmd, "vocab.json: token %lld is not one character after the "
                              "previous one in code-point order", (long long)t);
        } else {
            v->chars[t] = c[0];
        }
    }
    return CLI_OK;
}

static int load_tensors(const char *cmd, const char *dir, lm_model *m)
{
    for (int k = 0; k < m->n_tensors; k++) {
        const lm_tensor *t = &m->tensors[k];
        char name[96];
        snprintf(name, sizeof name, "%s.npy", t->name);
        char *path = join(dir, name);
        if (!path)
            return cli_refuse(cmd, "out of memory");
        npy_array arr;
        int rc = io_load_floats(cmd, path, &arr);
        if (rc == CLI_OK) {
            int same = arr.ndim == t->ndim && arr.shape[0] == t->shape[0] &&
                       (t->ndim == 1 || arr.shape[1] == t->shape[1]);
            if (!same) {
                char got[160];
                rc = cli_refuse(cmd, "%s: shape %s, config.json makes it [%lld%s%lld]", path,
                                npy_shape_string(&arr, got, sizeof got),
                                (long long)t->shape[0], t->ndim == 2 ? ", " : "",
                                t->ndim == 2 ? (long long)t->shape[1] : 0LL);
            } else {
                memcpy(m->params + t->offset, arr.data, (size_t)t->count * sizeof(float));
            }
            npy_array_free(&arr);
        }
        free(path);
        if (rc != CLI_OK)
            return rc;
    }
    return CLI_OK;
}

int lm_checkpoint_load(const char *cmd, const char *dir, lm_model *m, lm_vocab *v)
{
    *m = (lm_model){0};
    *v = (lm_vocab){0};
    json_object *config = NULL, *vocab = NULL;
    lm_config c = {0};
    int rc = read_json(cmd, dir, "config.json", &config);
    if (rc == CLI_OK)
        rc = parse_config(cmd, config, &c);
    if (rc == CLI_OK)
        rc = read_json(cmd, dir, "vocab.json", &vocab);
    if (rc == CLI_OK)
        rc = parse_vocab(cmd, vocab, c.vocab_size, v);
    json_object_put(config), json_object_put(vocab);
    if (rc == CLI_OK) {
        attn_status st = lm_model_create(m, &c);
        if (st != ATTN_OK)
            rc = cli_status_error(cmd, "the model", st);
    }
    if (rc == CLI_OK && lm_model_set_vocab(m, v) != 0)
        rc = cli_refuse(cmd, "out of memory");
    if (rc == CLI_OK)
        rc = load_tensors(cmd, dir, m);
    if (rc == CLI_OK) {
        attn_status st = lm_model_sync(m);
        if (st != ATTN_OK)
            rc = cli_status_error(cmd, "the model", st);
    }
    if (rc != CLI_OK) {
        lm_model_free(m);
        lm_vocab_free(v);
    }
    return rc;
}
