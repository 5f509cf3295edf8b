/*
 * lm_checkpoint.c — saving and loading the language model (see
 * lm_checkpoint.h). JSON goes through cJSON, the arrays through npy.c.
 */
#include <cjson/cJSON.h>
#include <errno.h>
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

static char *config_json(const lm_model *m)
{
    const lm_config *c = &m->c;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "vocab_size", (double)c->vocab_size);
    cJSON_AddNumberToObject(o, "d_model", (double)c->d_model);
    cJSON_AddNumberToObject(o, "nhead", (double)c->nhead);
    cJSON_AddNumberToObject(o, "dim_feedforward", (double)c->dim_feedforward);
    cJSON_AddNumberToObject(o, "num_layers", (double)c->num_layers);
    cJSON_AddNumberToObject(o, "context", (double)c->context);
    cJSON_AddStringToObject(o, "activation",
                            c->activation == ATTN_ACTIVATION_GELU ? "gelu" : "relu");
    char eps[32];  /* the float's shortest decimal form: 1e-05, not 9.99999974737875e-06 */
    snprintf(eps, sizeof eps, "%.7g", (double)c->layer_norm_eps);
    cJSON_AddNumberToObject(o, "layer_norm_eps", strtod(eps, NULL));
    cJSON_AddBoolToObject(o, "norm_first", c->norm_first);
    cJSON_AddNumberToObject(o, "embedding_scale", sqrt((double)c->d_model));
    cJSON_AddStringToObject(o, "positional_encoding", "sinusoidal");
    cJSON_AddNumberToObject(o, "pe_base", 10000.0);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    return text;
}

static char *vocab_json(const lm_vocab *v)
{
    cJSON *a = cJSON_CreateArray();
    if (!a)
        return NULL;
    cJSON_AddItemToArray(a, cJSON_CreateString("<unk>"));
    cJSON_AddItemToArray(a, cJSON_CreateString("<eos>"));
    for (int64_t t = LM_SPECIALS; t < v->size; t++) {
        char s[5] = {0};
        lm_utf8_encode(v->chars[t], s);
        cJSON_AddItemToArray(a, cJSON_CreateString(s));
    }
    char *text = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return text;
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
        cJSON_free(text);
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

static int read_json(const char *cmd, const char *dir, const char *name, cJSON **out)
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
        *out = cJSON_ParseWithLength((const char *)bytes, size);
        free(bytes);
        if (!*out)
            rc = cli_refuse(cmd, "%s: not valid JSON", path);
    }
    free(path);
    return rc;
}

/* A whole number in [lo, hi] named key of o. */
static int config_int(const char *cmd, const cJSON *o, const char *key, int64_t lo, int64_t hi,
                      int64_t *value)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(item) || item->valuedouble != floor(item->valuedouble) ||
        item->valuedouble < (double)lo || item->valuedouble > (double)hi)
        return cli_refuse(cmd, "config.json: \"%s\" is missing or not a whole number in "
                          "%lld .. %lld", key, (long long)lo, (long long)hi);
    *value = (int64_t)item->valuedouble;
    return CLI_OK;
}

static int parse_config(const char *cmd, const cJSON *o, lm_config *c)
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
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(o, "activation");
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(o, "layer_norm_eps");
    const cJSON *nf = cJSON_GetObjectItemCaseSensitive(o, "norm_first");
    if (!cJSON_IsString(act) ||
        (strcmp(act->valuestring, "gelu") != 0 && strcmp(act->valuestring, "relu") != 0))
        return cli_refuse(cmd, "config.json: \"activation\" must be \"gelu\" or \"relu\"");
    if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0.0 && eps->valuedouble < 1.0))
        return cli_refuse(cmd, "config.json: \"layer_norm_eps\" must be a number in (0, 1)");
    if (!cJSON_IsBool(nf))
        return cli_refuse(cmd, "config.json: \"norm_first\" must be true or false");
    const cJSON *pe = cJSON_GetObjectItemCaseSensitive(o, "positional_encoding");
    if (pe && !(cJSON_IsString(pe) && strcmp(pe->valuestring, "sinusoidal") == 0))
        return cli_refuse(cmd, "config.json: only \"sinusoidal\" positional encoding is known");
    c->activation = strcmp(act->valuestring, "gelu") == 0 ? ATTN_ACTIVATION_GELU
                                                          : ATTN_ACTIVATION_RELU;
    c->layer_norm_eps = (float)eps->valuedouble;
    c->norm_first = cJSON_IsTrue(nf);
    return CLI_OK;
}

static int parse_vocab(const char *cmd, const cJSON *a, int64_t size, lm_vocab *v)
{
    if (!cJSON_IsArray(a))
        return cli_refuse(cmd, "vocab.json: not an array of strings");
    int64_t n = cJSON_GetArraySize(a);
    if (n != size)
        return cli_refuse(cmd, "vocab.json holds %lld tokens, config.json's vocab_size is %lld",
                          (long long)n, (long long)size);
    v->chars = calloc((size_t)n, sizeof *v->chars);
    if (!v->chars)
        return cli_refuse(cmd, "out of memory");
    v->size = n;
    int64_t t = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, a) {
        const char *s = cJSON_IsString(item) ? item->valuestring : NULL;
        uint32_t c[2];
        int64_t k = s ? lm_utf8_decode((const unsigned char *)s, (int64_t)strlen(s), c) : -1;
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
        t++;
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
    cJSON *config = NULL, *vocab = NULL;
    lm_config c = {0};
    int rc = read_json(cmd, dir, "config.json", &config);
    if (rc == CLI_OK)
        rc = parse_config(cmd, config, &c);
    if (rc == CLI_OK)
        rc = read_json(cmd, dir, "vocab.json", &vocab);
    if (rc == CLI_OK)
        rc = parse_vocab(cmd, vocab, c.vocab_size, v);
    cJSON_Delete(config), cJSON_Delete(vocab);
    if (rc == CLI_OK) {
        attn_status st = lm_model_create(m, &c);
        if (st != ATTN_OK)
            rc = cli_library_error(cmd, "the model", st);
    }
    if (rc == CLI_OK)
        rc = load_tensors(cmd, dir, m);
    if (rc == CLI_OK) {
        attn_status st = lm_model_sync(m);
        if (st != ATTN_OK)
            rc = cli_library_error(cmd, "the model", st);
    }
    if (rc != CLI_OK) {
        lm_model_free(m);
        lm_vocab_free(v);
    }
    return rc;
}
