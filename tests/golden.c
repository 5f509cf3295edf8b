/*
 * golden.c — the golden-vector tests' shared helpers (see golden.h):
 * case.json through json-c, the case folders, .bin tensors, masks,
 * parameter blocks and the normalised comparisons. No CMocka dependency.
 */
#define _POSIX_C_SOURCE 200809L /* scandir, alphasort */

#include "golden.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a case ----------------------------------------------------------- */

int golden_error(golden_case *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->error, sizeof g->error, fmt, ap);
    va_end(ap);
    return 0;
}

int golden_check(golden_case *g, attn_status st, const char *call)
{
    return st == ATTN_OK ||
           golden_error(g, "%s: %s (%s)", call, attn_status_string(st), attn_last_error());
}

/* ---- the data folder -------------------------------------------------- */

int golden_check_args(int argc, char **argv, const char *prog, const char *usage)
{
    const uint16_t one = 1;
    if (argc != 2) {
        fprintf(stderr, "usage: %s %s\n", argv[0], usage);
        return 2;
    }
    if (*(const unsigned char *)&one != 1) { /* the .bin files are little-endian */
        fprintf(stderr, "%s: needs a little-endian host\n", prog);
        return 1;
    }
    return 0;
}

static void load_case(golden_case *g, const char *root, const char *name, golden_parse_fn parse)
{
    char path[4200];
    snprintf(g->name, sizeof g->name, "%s", name);
    snprintf(g->dir, sizeof g->dir, "%s/%s", root, name);
    snprintf(path, sizeof path, "%s/case.json", g->dir);
    json_object *j = json_object_from_file(path);
    if (j == NULL)
        golden_error(g, "cannot read %s: %s", path, json_util_get_last_err());
    else
        parse(g, j);
    json_object_put(j);
}

void *golden_load_cases(const char *root, const char *prefix, size_t size, golden_parse_fn parse,
                        const char *prog, size_t *n)
{
    struct dirent **names = NULL;
    int count = scandir(root, &names, NULL, alphasort), kept = 0;
    for (int i = 0; i < count; i++) { /* keep the case folders, in their order */
        const char *d = names[i]->d_name;
        if (prefix != NULL ? strncmp(d, prefix, strlen(prefix)) == 0 : d[0] != '.')
            names[kept++] = names[i];
        else
            free(names[i]);
    }
    *n = (size_t)kept;
    unsigned char *cases = kept > 0 ? calloc((size_t)kept, size) : NULL;
    for (int i = 0; i < kept; i++) {
        if (cases != NULL)
            load_case((golden_case *)(void *)(cases + (size_t)i * size), root, names[i]->d_name,
                      parse);
        free(names[i]);
    }
    free(names);
    if (cases == NULL && prog != NULL) {
        if (kept == 0) /* the vectors are in the source tree: missing is a failure */
            fprintf(stderr, "%s: no case folder in %s\n", prog, root);
        else
            fprintf(stderr, "%s: out of memory\n", prog);
    }
    return cases;
}

/* ---- case.json -------------------------------------------------------- */

json_object *golden_get(json_object *j, const char *key)
{
    json_object *value;
    return json_object_object_get_ex(j, key, &value) ? value : NULL;
}

int golden_is_number(json_object *j)
{
    return json_object_is_type(j, json_type_double) || json_object_is_type(j, json_type_int);
}

int golden_parse_ints(golden_case *g, json_object *j, const char *const *keys, int n, int64_t *v)
{
    for (int i = 0; i < n; i++) {
        if (!json_object_is_type(golden_get(j, keys[i]), json_type_int))
            return golden_error(g, "case.json lacks the integer %s", keys[i]);
        v[i] = json_object_get_int64(golden_get(j, keys[i]));
    }
    return 1;
}

int golden_parse_tensor(golden_case *g, json_object *j, const char *dtype, int want_floor,
                        golden_tensor *t)
{
    json_object *type = golden_get(j, "dtype"), *shape = golden_get(j, "shape");
    json_object *file = golden_get(j, "file");
    if (type == NULL || file == NULL || !json_object_is_type(shape, json_type_array))
        return golden_error(g, "a tensor lacks dtype, shape or file");
    snprintf(t->file, sizeof t->file, "%s", json_object_get_string(file));
    snprintf(t->dtype, sizeof t->dtype, "%s", json_object_get_string(type));
    if (dtype != NULL && strcmp(json_object_get_string(type), dtype) != 0)
        return golden_error(g, "%s is %s, not %s", t->file, json_object_get_string(type), dtype);
    t->rank = (int)json_object_array_length(shape);
    if (t->rank < 1 || t->rank > 4)
        return golden_error(g, "%s has rank %d", t->file, t->rank);
    for (int i = 0; i < t->rank; i++)
        t->shape[i] = json_object_get_int64(json_object_array_get_idx(shape, (size_t)i));
    if (want_floor) {
        if (!golden_is_number(golden_get(j, "floor")))
            return golden_error(g, "%s lacks its floor", t->file);
        t->floor = json_object_get_double(golden_get(j, "floor"));
        if (!(t->floor >= 0 && isfinite(t->floor)))
            return golden_error(g, "%s has floor %g", t->file, t->floor);
    }
    t->present = 1;
    return 1;
}

int golden_parse_files(golden_case *g, json_object *files, const char *const *keys, int n,
                       int n_inputs, golden_tensor *t)
{
    for (int i = 0; i < n; i++) {
        json_object *f = golden_get(files, keys[i]);
        if (f == NULL)
            return golden_error(g, "files lacks %s", keys[i]);
        if (!golden_parse_tensor(g, f, i < n_inputs ? "float32" : "float64", 0, &t[i]))
            return 0;
    }
    return 1;
}

int golden_expect_shape(golden_case *g, const golden_tensor *t, int rank, int64_t d0,
                        int64_t d1, int64_t d2, int64_t d3)
{
    const int64_t want[4] = {d0, d1, d2, d3};
    int ok = t->rank == rank;
    for (int i = 0; ok && i < rank; i++)
        ok = t->shape[i] == want[i];
    return ok || golden_error(g, "%s: shape does not fit the configuration", t->file);
}

int64_t golden_numel(const golden_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->shape[i];
    return n;
}

/* ---- masks ------------------------------------------------------------ */

const char *const golden_mask_kind[GOLDEN_N_MASK_KINDS] = {"kv_lengths", "bool", "bias"};
static const char *const mask_dtype[GOLDEN_N_MASK_KINDS] = {"int64", "uint8", "float32"};
static const size_t mask_item[GOLDEN_N_MASK_KINDS] = {sizeof(int64_t), sizeof(uint8_t),
                                                      sizeof(float)};

int golden_parse_masks(golden_case *g, json_object *masks, int kinds, golden_masks *m)
{
    m->n = (int)json_object_array_length(masks);
    for (int i = 0; i < m->n; i++) {
        json_object *jm = json_object_array_get_idx(masks, (size_t)i);
        const char *kind = json_object_get_string(golden_get(jm, "kind"));
        int k = 0;
        while (k < kinds && (kind == NULL || strcmp(kind, golden_mask_kind[k]) != 0))
            k++;
        if (k == kinds || m->t[k].present)
            return golden_error(g, "mask kind %s unknown or repeated", kind ? kind : "(none)");
        m->per_query[k] = json_object_get_int(golden_get(jm, "per_query"));
        if (!golden_parse_tensor(g, jm, mask_dtype[k], 0, &m->t[k]))
            return 0;
    }
    return 1;
}

int golden_expect_lengths_shape(golden_case *g, const golden_masks *m, int64_t batch,
                                int64_t len_q)
{
    const golden_tensor *t = &m->t[GOLDEN_MASK_LENGTHS];
    if (!t->present)
        return 1;
    return m->per_query[GOLDEN_MASK_LENGTHS] ? golden_expect_shape(g, t, 2, batch, len_q, 0, 0)
                                             : golden_expect_shape(g, t, 1, batch, 0, 0, 0);
}

int golden_expect_mask_shapes(golden_case *g, const golden_masks *m, int64_t batch,
                              int64_t len_q)
{
    int ok = golden_expect_lengths_shape(g, m, batch, len_q);
    for (int k = GOLDEN_MASK_BOOL; ok && k <= GOLDEN_MASK_BIAS; k++)
        ok = !m->t[k].present || m->t[k].rank == 4 ||
             golden_error(g, "the %s mask is not 4-D", golden_mask_kind[k]);
    return ok;
}

int golden_set_masks(golden_case *g, const golden_masks *m, attn_mask *mask, int64_t batch,
                     int64_t len_q, void *data[GOLDEN_N_MASK_KINDS])
{
    for (int k = 0; k < GOLDEN_N_MASK_KINDS; k++) {
        const golden_tensor *s = &m->t[k];
        if (!s->present)
            continue;
        if ((data[k] = golden_load_tensor(g, s, mask_item[k])) == NULL)
            return 0;
        const int64_t *d = s->shape;
        attn_status st =
            k == GOLDEN_MASK_LENGTHS
                ? attn_mask_set_kv_lengths(mask, data[k], batch, len_q, m->per_query[k])
            : k == GOLDEN_MASK_BOOL ? attn_mask_set_bool(mask, data[k], d[0], d[1], d[2], d[3])
                                    : attn_mask_set_bias(mask, data[k], d[0], d[1], d[2], d[3]);
        if (!golden_check(g, st, golden_mask_kind[k]))
            return 0;
    }
    return 1;
}

/* ---- parameter blocks ------------------------------------------------- */

int golden_parse_blocks(golden_case *g, json_object *blocks, const char *const *names, int n,
                        int floor_number, golden_block *block)
{
    size_t count = json_object_array_length(blocks);
    for (size_t i = 0; i < count; i++) {
        json_object *jb = json_object_array_get_idx(blocks, i), *shape = golden_get(jb, "shape");
        json_object *jfloor = golden_get(jb, "floor");
        const char *name = json_object_get_string(golden_get(jb, "name"));
        int b = 0;
        while (b < n && (name == NULL || strcmp(name, names[b]) != 0))
            b++;
        if (b == n || block[b].present)
            return golden_error(g, "param block %s unknown or repeated", name ? name : "(none)");
        if (!json_object_is_type(golden_get(jb, "offset"), json_type_int) ||
            !json_object_is_type(shape, json_type_array) ||
            (floor_number ? !golden_is_number(jfloor) : jfloor == NULL))
            return golden_error(g, "param block %s lacks offset, shape or floor", name);
        block[b].offset = json_object_get_int64(golden_get(jb, "offset"));
        block[b].size = 1;
        for (size_t d = 0; d < json_object_array_length(shape); d++)
            block[b].size *= json_object_get_int64(json_object_array_get_idx(shape, d));
        block[b].floor = json_object_get_double(jfloor);
        block[b].present = 1;
    }
    return 1;
}

int golden_check_blocks(golden_case *g, const golden_block *block, const char *const *names,
                        int n, const int64_t *size, int64_t param_count)
{
    int64_t offset = 0;
    for (int b = 0; b < n; b++) {
        if ((size[b] > 0) != block[b].present)
            return golden_error(g, "param_blocks: %s %s", names[b],
                                size[b] > 0 ? "missing" : "on a layer without bias");
        if (size[b] == 0)
            continue;
        if (block[b].offset != offset || block[b].size != size[b])
            return golden_error(g, "param_blocks: %s at %lld size %lld, expected at %lld size %lld",
                                names[b], (long long)block[b].offset, (long long)block[b].size,
                                (long long)offset, (long long)size[b]);
        if (!(block[b].floor >= 0 && isfinite(block[b].floor)))
            return golden_error(g, "param_blocks: %s has floor %g", names[b], block[b].floor);
        offset += size[b];
    }
    if (offset != param_count)
        return golden_error(g, "param_count %lld, the layout gives %lld", (long long)param_count,
                            (long long)offset);
    return 1;
}

/* ---- tensors ---------------------------------------------------------- */

void *golden_load_tensor(golden_case *g, const golden_tensor *t, size_t item)
{
    size_t bytes = (size_t)golden_numel(t) * item;
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", g->dir, t->file);
    FILE *f = fopen(path, "rb");
    void *buf = f != NULL ? malloc(bytes ? bytes : 1) : NULL; /* malloc(0) may give NULL */
    int ok = buf != NULL && fread(buf, 1, bytes, f) == bytes && fgetc(f) == EOF;
    if (f != NULL)
        fclose(f);
    if (!ok) {
        free(buf);
        golden_error(g, "cannot read %s as exactly %zu bytes", path, bytes);
        return NULL;
    }
    return buf;
}

float *golden_nan_floats(int64_t n)
{
    float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    for (int64_t i = 0; p != NULL && i < n; i++)
        p[i] = NAN;
    return p;
}

int golden_load_files(golden_case *g, const golden_tensor *t, int n, int n_inputs,
                      golden_skip_fn skip, golden_files *f)
{
    for (int i = 0; i < n && i < GOLDEN_MAX_FILES; i++) {
        if (!t[i].present || (skip != NULL && skip(g, i)))
            continue;
        if (i < n_inputs ? (f->in[i] = golden_load_tensor(g, &t[i], sizeof(float))) == NULL
                         : (f->expect[i] = golden_load_tensor(g, &t[i], sizeof(double))) == NULL)
            return 0;
    }
    return 1;
}

void golden_files_free(golden_files *f)
{
    for (int i = 0; i < GOLDEN_MAX_FILES; i++)
        free(f->in[i]), free(f->expect[i]);
    for (int k = 0; k < GOLDEN_N_MASK_KINDS; k++)
        free(f->mask[k]);
    memset(f, 0, sizeof *f);
}

/* ---- comparisons ------------------------------------------------------ */

/* golden_compare with the expected values in e64 (float64) or, when it is
 * NULL, in e32 (float32, printed with 9 digits). */
static int compare(golden_case *g, const char *what, const float *a, const double *e64,
                   const float *e32, int64_t n, int64_t group, double floor, int64_t first,
                   double rtol, double *worst)
{
    int digits = e64 != NULL ? 17 : 9;
    *worst = fmax(*worst, 0);
    for (int64_t r = 0; r < n / group; r++) {
        double group_max = floor;
        for (int64_t i = r * group; i < (r + 1) * group; i++)
            group_max = fmax(group_max, fabs(e64 != NULL ? e64[i] : e32[i]));
        for (int64_t i = r * group; i < (r + 1) * group; i++) {
            double e = e64 != NULL ? e64[i] : e32[i];
            double err = fabs((double)a[i] - e), scale = fabs(e) + group_max;
            double rel = err == 0 ? 0 : scale > 0 ? err / scale : INFINITY;
            if (!(err <= rtol * scale)) /* written so that a NaN fails */
                return golden_error(g, "%s[%lld]: got %.9g, expected %.*g (rel error %.3g > %g)",
                                    what, (long long)(first + i), a[i], digits, e, rel, rtol);
            *worst = fmax(*worst, rel);
        }
    }
    return 1;
}

int golden_compare(golden_case *g, const char *what, const float *a, const double *e,
                   int64_t n, int64_t group, double floor, int64_t first, double rtol,
                   double *worst)
{
    return compare(g, what, a, e, NULL, n, group, floor, first, rtol, worst);
}

int golden_compare_f32(golden_case *g, const char *what, const float *a, const float *e,
                       int64_t n, int64_t group, double rtol, double *worst)
{
    return compare(g, what, a, NULL, e, n, group, 0, 0, rtol, worst);
}

int golden_compare_blocks(golden_case *g, const float *a, const double *e,
                          const golden_block *block, const char *const *names, int n,
                          double rtol, double *worst)
{
    for (int b = 0; b < n; b++) {
        const golden_block *s = &block[b];
        char what[32];
        if (!s->present)
            continue;
        snprintf(what, sizeof what, "d_params (%s)", names[b]);
        if (!golden_compare(g, what, a + s->offset, e + s->offset, s->size, s->size, s->floor,
                            s->offset, rtol, &worst[b]))
            return 0;
    }
    return 1;
}

int golden_same_bits(golden_case *g, const char *what, const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof *a) != 0)
            return golden_error(g, "%s[%lld]: %.9g, expected bitwise %.9g", what, (long long)i,
                                a[i], b[i]);
    return 1;
}
