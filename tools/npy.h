/*
 * npy.h — NumPy .npy files in memory: parse and encode.
 *
 * The format (numpy/lib/format.py, NEP 1): the magic "\x93NUMPY", a major and
 * minor version byte, the header length (2 bytes little-endian in version
 * 1.0, 4 bytes in 2.0 and 3.0), then the header, a Python dict literal
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }
 * padded with spaces and ended by '\n', then the raw elements in C order.
 * Version 3.0 only allows UTF-8 in the header, which matters to nobody here.
 *
 * What is read: versions 1.0, 2.0 and 3.0; C order; little-endian (or
 * byte-order-free) float32, float64, bool, uint8, int32 and int64. Anything
 * else is refused with a message saying what and why: Fortran order,
 * big-endian data, object and structured dtypes, a truncated file, a header
 * or data size that does not match the file.
 *
 * The parser works on a buffer in memory and never reads outside
 * [buf, buf + size), so a fuzzer can drive it directly; it allocates at most
 * the size of the data it was given, never a size taken on trust from the
 * header. Elements are decoded byte by byte, so it is also right on a
 * big-endian host.
 */
#ifndef ATTN_TOOLS_NPY_H
#define ATTN_TOOLS_NPY_H

#include <stddef.h>
#include <stdint.h>

/* NumPy's own limit was 32 dimensions for most of its history. */
#define NPY_MAX_DIMS 32

/* Room for any message npy_parse or npy_encode returns. */
#define NPY_ERROR_SIZE 256

/* The element types read and written. */
typedef enum npy_dtype {
    NPY_FLOAT32 = 0, /* '<f4', C float */
    NPY_FLOAT64 = 1, /* '<f8', C double */
    NPY_BOOL    = 2, /* '|b1', uint8_t 0 or 1 */
    NPY_UINT8   = 3, /* '|u1', uint8_t */
    NPY_INT32   = 4, /* '<i4', int32_t */
    NPY_INT64   = 5  /* '<i8', int64_t */
} npy_dtype;

/* A dense C-order array. `data` holds `count` elements of the dtype's C type
 * (see npy_dtype) in the host's byte order. */
typedef struct npy_array {
    npy_dtype dtype;
    int ndim;                     /* 0 (a scalar) .. NPY_MAX_DIMS */
    int64_t shape[NPY_MAX_DIMS];
    int64_t count;                /* product of the shape; 1 for a scalar */
    void *data;                   /* malloc'd by npy_parse; never NULL after it */
} npy_array;

/* NumPy's name of a dtype ("float32"); "unknown" outside the enum. */
const char *npy_dtype_name(npy_dtype dtype);

/* Bytes per element (1, 4 or 8); 0 outside the enum. */
size_t npy_dtype_size(npy_dtype dtype);

/* Writes the shape as NumPy prints it, "(3, 2)", "(5,)" or "()", into out
 * (truncated to out_size). Returns out. */
char *npy_shape_string(const npy_array *arr, char *out, size_t out_size);

/* Parses a whole .npy file held in buf[0 .. size). On success returns NULL
 * and fills *arr, whose data the caller frees with npy_array_free. On failure
 * returns err, holding a message such as "truncated: the header's shape (3, 2)
 * of float32 needs 24 bytes of data, 20 follow the header"; *arr is then
 * empty (data NULL) and nothing is allocated. buf may be NULL when size is 0. */
const char *npy_parse(const void *buf, size_t size, npy_array *arr, char err[NPY_ERROR_SIZE]);

/* Encodes arr (dtype, ndim, shape and count elements of data) as a .npy file
 * in a malloc'd buffer (*buf, *size; free with free). Writes version 1.0 with
 * the header padded so the data starts at a multiple of 64 bytes, as NumPy
 * does. Returns NULL or err (a negative dimension, a count that does not
 * match the shape, out of memory). */
const char *npy_encode(const npy_array *arr, unsigned char **buf, size_t *size,
                       char err[NPY_ERROR_SIZE]);

/* Frees arr->data and empties *arr. NULL and empty arrays are fine. */
void npy_array_free(npy_array *arr);

#endif
