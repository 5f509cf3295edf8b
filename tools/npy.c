/*
 * npy.c — NumPy .npy files in memory (see npy.h for the format and the
 * promises). Everything read from the buffer goes through a cursor that
 * checks its end first, and every size taken from the header is checked
 * against the bytes actually present before anything is allocated.
 */
#include "npy.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

typedef struct descr_entry {
    const char *descr;  /* as NumPy writes it */
    npy_dtype dtype;
} descr_entry;

/* NumPy writes '|' for one-byte types; '<' and '>' mean the same there. */
static const descr_entry descrs[] = {
    {"<f4", NPY_FLOAT32}, {"<f8", NPY_FLOAT64},
    {"|b1", NPY_BOOL},    {"<b1", NPY_BOOL},  {">b1", NPY_BOOL},
    {"|u1", NPY_UINT8},   {"<u1", NPY_UINT8}, {">u1", NPY_UINT8},
    {"<i4", NPY_INT32},   {"<i8", NPY_INT64},
};

const char *npy_dtype_name(npy_dtype dtype)
{
    switch (dtype) {
    case NPY_FLOAT32: return "float32";
    case NPY_FLOAT64: return "float64";
    case NPY_BOOL:    return "bool";
    case NPY_UINT8:   return "uint8";
    case NPY_INT32:   return "int32";
    case NPY_INT64:   return "int64";
    }
    return "unknown";
}

size_t npy_dtype_size(npy_dtype dtype)
{
    switch (dtype) {
    case NPY_BOOL:
    case NPY_UINT8:   return 1;
    case NPY_FLOAT32:
    case NPY_INT32:   return 4;
    case NPY_FLOAT64:
    case NPY_INT64:   return 8;
    }
    return 0;
}

static const char *descr_of(npy_dtype dtype)
{
    for (size_t i = 0; i < sizeof descrs / sizeof descrs[0]; i++)
        if (descrs[i].dtype == dtype)
            return descrs[i].descr;
    return NULL;
}

char *npy_shape_string(const npy_array *arr, char *out, size_t out_size)
{
    size_t used = 0;
    int n = snprintf(out, out_size, "(");
    for (int d = 0; d < arr->ndim && n >= 0; d++) {
        used += (size_t)n;
        if (used >= out_size)
            return out;
        n = snprintf(out + used, out_size - used, "%s%lld", d ? ", " : "",
                     (long long)arr->shape[d]);
    }
    if (n >= 0 && (used += (size_t)n) < out_size)
        snprintf(out + used, out_size - used, arr->ndim == 1 ? ",)" : ")");
    return out;
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static const char *fail(char *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, NPY_ERROR_SIZE, fmt, ap);
    va_end(ap);
    return err;
}

/* ---- the header dict ------------------------------------------------- */

/* A cursor over the header text: p never passes end. */
typedef struct cursor {
    const char *p, *end;
} cursor;

static void skip_space(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool take(cursor *c, char ch)
{
    skip_space(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static bool take_word(cursor *c, const char *word)
{
    size_t n = strlen(word);
    skip_space(c);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, word, n) == 0) {
        c->p += n;
        return true;
    }
    return false;
}

/* A Python string literal without escapes ('...' or "..."), copied into out
 * (at most out_size - 1 characters, longer strings are refused). */
static bool take_string(cursor *c, char *out, size_t out_size)
{
    skip_space(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return false;
    char quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        if (*c->p == '\\' || n + 1 >= out_size)
            return false;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return false;
    c->p++;
    out[n] = '\0';
    return true;
}

/* A non-negative decimal integer that fits in int64_t. */
static bool take_dim(cursor *c, int64_t *value)
{
    skip_space(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return false;
    int64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        int digit = *c->p++ - '0';
        if (v > (INT64_MAX - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    *value = v;
    return true;
}

/* A tuple of dimensions: "()", "(5,)", "(3, 2)", "(3, 2,)". */
static const char *take_shape(cursor *c, npy_array *arr, char *err)
{
    if (!take(c, '('))
        return fail(err, "header: 'shape' is not a tuple");
    arr->ndim = 0;
    while (!take(c, ')')) {
        if (arr->ndim == NPY_MAX_DIMS)
            return fail(err, "header: more than %d dimensions", NPY_MAX_DIMS);
        if (!take_dim(c, &arr->shape[arr->ndim]))
            return fail(err, "header: 'shape' holds something other than non-negative "
                             "integers below 2^63");
        arr->ndim++;
        if (!take(c, ',')) {
            if (!take(c, ')'))
                return fail(err, "header: 'shape' tuple is malformed");
            break;
        }
    }
    return NULL;
}

static const char *take_descr(cursor *c, npy_array *arr, char *err)
{
    skip_space(c);
    if (c->p < c->end && *c->p == '[')
        return fail(err, "structured dtypes (a list as 'descr') are not supported");
    char descr[32];
    if (!take_string(c, descr, sizeof descr))
        return fail(err, "header: 'descr' is not a short string");
    for (size_t i = 0; i < sizeof descrs / sizeof descrs[0]; i++) {
        if (strcmp(descr, descrs[i].descr) == 0) {
            arr->dtype = descrs[i].dtype;
            return NULL;
        }
    }
    if (descr[0] == '|' && descr[1] == 'O')
        return fail(err, "object arrays ('%s') cannot be read: they hold Python objects, "
                         "not numbers", descr);
    if (descr[0] == '>')
        return fail(err, "big-endian data ('%s') is not supported; convert it with "
                         "a.astype(a.dtype.newbyteorder('<'))", descr);
    return fail(err, "dtype '%s' is not supported; use float32, float64, bool, uint8, int32 "
                     "or int64", descr);
}

/* Parses the dict; every key must appear exactly once, as np.load requires. */
static const char *parse_header(cursor *c, npy_array *arr, char *err)
{
    bool seen_descr = false, seen_order = false, seen_shape = false;
    if (!take(c, '{'))
        return fail(err, "header: not a Python dict literal");
    while (!take(c, '}')) {
        char key[32];
        if (!take_string(c, key, sizeof key) || !take(c, ':'))
            return fail(err, "header: malformed dict (expected 'key': value)");
        const char *e = NULL;
        bool *seen;
        if (strcmp(key, "descr") == 0) {
            seen = &seen_descr;
            e = take_descr(c, arr, err);
        } else if (strcmp(key, "fortran_order") == 0) {
            seen = &seen_order;
            if (take_word(c, "True"))
                e = fail(err, "Fortran-order arrays are not supported; save "
                              "np.ascontiguousarray(a) instead");
            else if (!take_word(c, "False"))
                e = fail(err, "header: 'fortran_order' is neither True nor False");
        } else if (strcmp(key, "shape") == 0) {
            seen = &seen_shape;
            e = take_shape(c, arr, err);
        } else {
            return fail(err, "header: unexpected key '%s'", key);
        }
        if (e)
            return e;
        if (*seen)
            return fail(err, "header: key '%s' appears twice", key);
        *seen = true;
        if (!take(c, ',')) {
            if (!take(c, '}'))
                return fail(err, "header: malformed dict (expected ',' or '}')");
            break;
        }
    }
    if (!seen_descr || !seen_order || !seen_shape)
        return fail(err, "header: missing key '%s'",
                    !seen_descr ? "descr" : !seen_order ? "fortran_order" : "shape");
    skip_space(c);
    if (c->p != c->end)
        return fail(err, "header: unexpected text after the dict");
    return NULL;
}

/* ---- the whole file ---------------------------------------------------- */

static uint64_t load_le(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

static void store_le(unsigned char *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++, v >>= 8)
        p[i] = (unsigned char)(v & 0xff);
}

/* Reads the magic, version and header length; sets *header and *header_len. */
static const char *parse_preamble(const unsigned char *b, size_t size, size_t *header,
                                  size_t *header_len, char *err)
{
    if (size < 10)
        return fail(err, "not a .npy file: %zu bytes is shorter than the smallest header",
                    size);
    if (memcmp(b, magic, sizeof magic) != 0)
        return fail(err, "not a .npy file: it does not begin with \"\\x93NUMPY\"");
    unsigned major = b[6], minor = b[7];
    if (major < 1 || major > 3 || minor != 0)
        return fail(err, "unsupported .npy format version %u.%u (1.0, 2.0 and 3.0 are read)",
                    major, minor);
    size_t len_bytes = major == 1 ? 2 : 4;
    if (size < 8 + len_bytes)
        return fail(err, "truncated: the file ends inside the header length");
    *header = 8 + len_bytes;
    uint64_t len = load_le(b + 8, len_bytes);
    if (len > size - *header)
        return fail(err, "the header length field says %llu bytes, but only %zu follow it",
                    (unsigned long long)len, size - *header);
    *header_len = (size_t)len;
    /* NumPy always ends the header with '\n'; a length field that points
     * elsewhere is lying about where the data starts. */
    if (len == 0 || b[*header + len - 1] != '\n')
        return fail(err, "the header does not end with a newline where its length field "
                         "(%llu bytes) says it ends", (unsigned long long)len);
    return NULL;
}

/* The element count and data bytes of the shape, or an error on overflow. */
static const char *data_size(npy_array *arr, size_t *bytes, char *err)
{
    uint64_t count = 1;
    bool overflow = false;
    for (int d = 0; d < arr->ndim; d++) {
        uint64_t n = (uint64_t)arr->shape[d];
        if (n != 0 && count > (uint64_t)INT64_MAX / n)
            overflow = true;
        else
            count *= n;
    }
    /* A zero dimension makes the array empty whatever the others say. */
    for (int d = 0; d < arr->ndim; d++)
        if (arr->shape[d] == 0)
            count = 0, overflow = false;
    size_t item = npy_dtype_size(arr->dtype);
    if (overflow || count > SIZE_MAX / item) {
        char shape[96];
        return fail(err, "the header's shape %s is too large to address",
                    npy_shape_string(arr, shape, sizeof shape));
    }
    arr->count = (int64_t)count;
    *bytes = (size_t)count * item;
    return NULL;
}

/* Converts little-endian elements to host values. A 4- or 8-byte word
 * assembled from its bytes and copied into place has the host's byte order
 * whatever type its bits make, float or integer. */
static void decode(npy_array *arr, const unsigned char *src)
{
    size_t item = npy_dtype_size(arr->dtype);
    unsigned char *dst = arr->data;
    for (int64_t i = 0; i < arr->count; i++, src += item, dst += item) {
        uint64_t v = load_le(src, item);
        if (item == 8) {
            memcpy(dst, &v, 8);
        } else if (item == 4) {
            uint32_t u = (uint32_t)v;
            memcpy(dst, &u, 4);
        } else {
            *dst = arr->dtype == NPY_BOOL ? v != 0 : (unsigned char)v;
        }
    }
}

const char *npy_parse(const void *buf, size_t size, npy_array *arr, char err[NPY_ERROR_SIZE])
{
    const unsigned char *b = buf;
    memset(arr, 0, sizeof *arr);
    size_t header = 0, header_len = 0, bytes = 0;
    const char *e = parse_preamble(b, size, &header, &header_len, err);
    if (e)
        return e;
    npy_array parsed = {0};
    cursor c = {(const char *)b + header, (const char *)b + header + header_len};
    if ((e = parse_header(&c, &parsed, err)) || (e = data_size(&parsed, &bytes, err)))
        return e;
    size_t present = size - header - header_len;
    char shape[96];
    if (present < bytes)
        return fail(err, "truncated: the header's shape %s of %s needs %zu bytes of data, "
                         "%zu follow the header", npy_shape_string(&parsed, shape, sizeof shape),
                    npy_dtype_name(parsed.dtype), bytes, present);
    if (present > bytes)
        return fail(err, "%zu bytes follow the %zu bytes of data that the header's shape %s "
                         "of %s describes", present - bytes, bytes,
                    npy_shape_string(&parsed, shape, sizeof shape), npy_dtype_name(parsed.dtype));
    parsed.data = malloc(bytes ? bytes : 1);
    if (!parsed.data)
        return fail(err, "out of memory for %zu bytes of data", bytes);
    decode(&parsed, b + header + header_len);
    *arr = parsed;
    return NULL;
}

/* ---- encoding ---------------------------------------------------------- */

/* The header dict padded with spaces and '\n' so that preamble + header is a
 * multiple of 64 bytes (NumPy's alignment since 1.9, good for mmap). */
static size_t format_header(const npy_array *arr, char *out, size_t cap, size_t preamble)
{
    char shape[NPY_MAX_DIMS * 22 + 4];
    int n = snprintf(out, cap, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     descr_of(arr->dtype), npy_shape_string(arr, shape, sizeof shape));
    size_t len = (size_t)n;
    size_t total = (preamble + len + 1 + 63) / 64 * 64;
    while (preamble + len + 1 < total)
        out[len++] = ' ';
    out[len++] = '\n';
    return len;
}

/* The inverse of decode: host values to little-endian elements. */
static void encode_elements(const npy_array *arr, unsigned char *dst)
{
    size_t item = npy_dtype_size(arr->dtype);
    const unsigned char *src = arr->data;
    for (int64_t i = 0; i < arr->count; i++, src += item, dst += item) {
        uint64_t v;
        if (item == 8) {
            memcpy(&v, src, 8);
        } else if (item == 4) {
            uint32_t u;
            memcpy(&u, src, 4);
            v = u;
        } else {
            v = arr->dtype == NPY_BOOL ? *src != 0 : *src;
        }
        store_le(dst, v, item);
    }
}

const char *npy_encode(const npy_array *arr, unsigned char **buf, size_t *size,
                       char err[NPY_ERROR_SIZE])
{
    *buf = NULL;
    *size = 0;
    if (!descr_of(arr->dtype))
        return fail(err, "cannot encode: dtype %d is not an npy_dtype", (int)arr->dtype);
    if (arr->ndim < 0 || arr->ndim > NPY_MAX_DIMS)
        return fail(err, "cannot encode: %d dimensions", arr->ndim);
    npy_array check = *arr;
    for (int d = 0; d < arr->ndim; d++)
        if (arr->shape[d] < 0)
            return fail(err, "cannot encode: dimension %d is negative", d);
    size_t bytes = 0;
    const char *e = data_size(&check, &bytes, err);
    if (e)
        return e;
    if (check.count != arr->count)
        return fail(err, "cannot encode: count %lld does not match the shape",
                    (long long)arr->count);
    /* With at most NPY_MAX_DIMS dimensions the header stays below 1 KB, so
     * version 1.0 (a 2-byte length) always suffices. */
    char header[NPY_MAX_DIMS * 22 + 192];
    const size_t preamble = 10;
    size_t len = format_header(arr, header, sizeof header, preamble);
    if (bytes > SIZE_MAX - preamble - len)
        return fail(err, "cannot encode: %zu bytes of data is too large", bytes);
    unsigned char *out = malloc(preamble + len + bytes);
    if (!out)
        return fail(err, "cannot encode: out of memory for %zu bytes", preamble + len + bytes);
    memcpy(out, magic, sizeof magic);
    out[6] = 1;
    out[7] = 0;
    store_le(out + 8, len, 2);
    memcpy(out + preamble, header, len);
    encode_elements(arr, out + preamble + len);
    *buf = out;
    *size = preamble + len + bytes;
    return NULL;
}

void npy_array_free(npy_array *arr)
{
    if (!arr)
        return;
    free(arr->data);
    memset(arr, 0, sizeof *arr);
}
