/*
 * tensor_io.c — loading and saving the attn program's files (see
 * tensor_io.h). The format is npy.c's business; this file adds the file
 * system, the dtype each role accepts, and messages that name the file.
 */
#include "tensor_io.h"

#include <stdlib.h>

#include "atomic_file.h"
#include "cli.h"
#include "explorer_page.h"

static int load(const char *cmd, const char *path, npy_array *arr)
{
    char err[FILE_ERROR_SIZE > NPY_ERROR_SIZE ? FILE_ERROR_SIZE : NPY_ERROR_SIZE];
    unsigned char *bytes;
    size_t size;
    if (read_whole_file(path, &bytes, &size, err))
        return cli_refuse(cmd, "%s: %s", path, err);
    const char *e = npy_parse(bytes, size, arr, err);
    free(bytes);
    if (e)
        return cli_refuse(cmd, "%s: %s", path, e);
    return CLI_OK;
}

/* Replaces arr's elements by their float32 values. */
static int to_floats(const char *cmd, const char *path, npy_array *arr)
{
    if (arr->dtype == NPY_FLOAT32)
        return CLI_OK;
    float *f = malloc(arr->count ? (size_t)arr->count * sizeof *f : 1);
    if (!f) {
        npy_array_free(arr);
        return cli_refuse(cmd, "%s: out of memory converting %lld elements to float32", path,
                          (long long)arr->count);
    }
    for (int64_t i = 0; i < arr->count; i++) {
        switch (arr->dtype) {
        case NPY_FLOAT64: f[i] = (float)((const double *)arr->data)[i]; break;
        case NPY_BOOL:
        case NPY_UINT8:   f[i] = (float)((const uint8_t *)arr->data)[i]; break;
        case NPY_INT32:   f[i] = (float)((const int32_t *)arr->data)[i]; break;
        case NPY_INT64:   f[i] = (float)((const int64_t *)arr->data)[i]; break;
        case NPY_FLOAT32: break;
        }
    }
    free(arr->data);
    arr->data = f;
    arr->dtype = NPY_FLOAT32;
    return CLI_OK;
}

/* Refuses arr (and frees it) unless its dtype is one of the two given. */
static int expect_dtype(const char *cmd, const char *path, npy_array *arr, npy_dtype a,
                        npy_dtype b, const char *role)
{
    if (arr->dtype == a || arr->dtype == b)
        return CLI_OK;
    npy_dtype got = arr->dtype;
    npy_array_free(arr);
    return cli_refuse(cmd, "%s: %s must be %s or %s, not %s", path, role, npy_dtype_name(a),
                      npy_dtype_name(b), npy_dtype_name(got));
}

int io_load_floats(const char *cmd, const char *path, npy_array *arr)
{
    int rc = load(cmd, path, arr);
    if (rc == CLI_OK)
        rc = expect_dtype(cmd, path, arr, NPY_FLOAT32, NPY_FLOAT64, "this tensor");
    if (rc == CLI_OK)
        rc = to_floats(cmd, path, arr);
    return rc;
}

int io_load_any_as_floats(const char *cmd, const char *path, npy_array *arr)
{
    int rc = load(cmd, path, arr);
    return rc == CLI_OK ? to_floats(cmd, path, arr) : rc;
}

int io_load_keep_mask(const char *cmd, const char *path, npy_array *arr)
{
    int rc = load(cmd, path, arr);
    if (rc == CLI_OK)
        rc = expect_dtype(cmd, path, arr, NPY_BOOL, NPY_UINT8, "a keep-mask");
    if (rc == CLI_OK)
        arr->dtype = NPY_UINT8;  /* bools are stored as 0/1 bytes already */
    return rc;
}

int io_load_lengths(const char *cmd, const char *path, npy_array *arr)
{
    int rc = load(cmd, path, arr);
    if (rc == CLI_OK)
        rc = expect_dtype(cmd, path, arr, NPY_INT64, NPY_INT32, "valid lengths");
    if (rc != CLI_OK || arr->dtype == NPY_INT64)
        return rc;
    int64_t *v = malloc(arr->count ? (size_t)arr->count * sizeof *v : 1);
    if (!v) {
        npy_array_free(arr);
        return cli_refuse(cmd, "%s: out of memory", path);
    }
    for (int64_t i = 0; i < arr->count; i++)
        v[i] = ((const int32_t *)arr->data)[i];
    free(arr->data);
    arr->data = v;
    arr->dtype = NPY_INT64;
    return CLI_OK;
}

int io_save_floats(const char *cmd, const char *path, const float *data, int ndim,
                   const int64_t *shape)
{
    npy_array arr = {.dtype = NPY_FLOAT32, .ndim = ndim, .count = 1, .data = (void *)data};
    for (int d = 0; d < ndim; d++) {
        arr.shape[d] = shape[d];
        arr.count *= shape[d];
    }
    char err[FILE_ERROR_SIZE > NPY_ERROR_SIZE ? FILE_ERROR_SIZE : NPY_ERROR_SIZE];
    unsigned char *bytes;
    size_t size;
    if (npy_encode(&arr, &bytes, &size, err))
        return cli_refuse(cmd, "%s: %s", path, err);
    const char *e = atomic_write(path, bytes, size, err);
    free(bytes);
    return e ? cli_refuse(cmd, "%s: %s", path, e) : CLI_OK;
}

int io_save_text(const char *cmd, const char *path, const strbuf *sb)
{
    if (sb->failed)
        return cli_refuse(cmd, "%s: out of memory while drawing it", path);
    char err[FILE_ERROR_SIZE];
    const char *e = atomic_write(path, sb->data, sb->len, err);
    return e ? cli_refuse(cmd, "%s: %s", path, e) : CLI_OK;
}

int io_save_explorer(const char *cmd, const char *path, const char *subject,
                     const explorer_page *p, const char *too_large_hint)
{
    char err[EXPLORER_ERROR_SIZE];
    int bad = explorer_page_check(p, err);
    if (bad)
        return cli_refuse(cmd, "%s: %s%s%s", subject, err,
                          bad == EXPLORER_TOO_LARGE && too_large_hint ? " " : "",
                          bad == EXPLORER_TOO_LARGE && too_large_hint ? too_large_hint : "");
    strbuf sb = STRBUF_INIT;
    explorer_page_render(&sb, p);
    int rc = io_save_text(cmd, path, &sb);
    strbuf_free(&sb);
    return rc;
}
