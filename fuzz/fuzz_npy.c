/*
 * fuzz_npy.c — libFuzzer target for the .npy reader of the attn program
 * (tools/npy.h: npy_parse on a memory buffer).
 *
 * Checks, besides "no crash, no ASan/UBSan report, no leak":
 *   - a refused buffer returns err, holding a non-empty message, and leaves
 *     *arr empty (data NULL);
 *   - an accepted buffer gives a well-formed array: a known dtype, 0..32
 *     dimensions, none negative, count = the product of the shape (1 for a
 *     scalar), exactly count × itemsize bytes of data following the header
 *     (so never an allocation larger than the input), bool elements 0 or 1;
 *   - every element of data is readable (ASan checks the allocation);
 *   - npy_shape_string stays within its buffer, also a tiny one;
 *   - round trip: npy_encode of the array, parsed again, gives the same
 *     dtype, shape and element bytes, and encoding that gives the same file.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"

#define CHECK(cond, msg)                                  \
    do {                                                  \
        if (!(cond)) {                                    \
            fprintf(stderr, "fuzz_npy: %s\n", msg);       \
            abort();                                      \
        }                                                 \
    } while (0)

static void expect_same(const npy_array *a, const npy_array *b)
{
    CHECK(a->dtype == b->dtype && a->ndim == b->ndim && a->count == b->count,
          "round trip changed dtype, ndim or count");
    CHECK(!memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof a->shape[0]),
          "round trip changed the shape");
    CHECK(!memcmp(a->data, b->data, (size_t)a->count * npy_dtype_size(a->dtype)),
          "round trip changed the data");
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size)
{
    npy_array arr;
    char err[NPY_ERROR_SIZE];
    memset(err, 0, sizeof err);
    const char *e = npy_parse(size ? buf : NULL, size, &arr, err);
    if (e) {
        CHECK(e == err && err[0] != '\0', "a refusal without a message");
        CHECK(memchr(err, '\0', sizeof err) != NULL, "message not terminated");
        CHECK(arr.data == NULL, "a refusal left data allocated");
        return 0;
    }
    size_t item = npy_dtype_size(arr.dtype);
    CHECK(item == 1 || item == 4 || item == 8, "unknown dtype accepted");
    CHECK(arr.ndim >= 0 && arr.ndim <= NPY_MAX_DIMS, "ndim out of range");
    CHECK(arr.data != NULL, "accepted without data");
    uint64_t count = 1;
    int empty = 0;
    for (int d = 0; d < arr.ndim; d++) {
        CHECK(arr.shape[d] >= 0, "negative dimension accepted");
        empty |= arr.shape[d] == 0;
        if (!empty)
            count *= (uint64_t)arr.shape[d];
    }
    CHECK((uint64_t)arr.count == (empty ? 0 : count), "count is not the product of the shape");
    CHECK((size_t)arr.count <= size / item, "more data than the input holds");
    const unsigned char *p = arr.data;
    unsigned sum = 0;
    for (size_t i = 0; i < (size_t)arr.count * item; i++)
        sum += p[i];
    if (arr.dtype == NPY_BOOL)
        for (int64_t i = 0; i < arr.count; i++)
            CHECK(p[i] <= 1, "bool element not 0 or 1");
    char tiny[5], shape[NPY_MAX_DIMS * 22 + 4];
    memset(tiny, 'x', sizeof tiny);
    npy_shape_string(&arr, tiny, sizeof tiny);
    CHECK(memchr(tiny, '\0', sizeof tiny) != NULL, "shape string not terminated");
    npy_shape_string(&arr, shape, sizeof shape);
    CHECK(shape[0] == '(' && strchr(shape, ')') != NULL, "shape string malformed");

    unsigned char *enc = NULL, *enc2 = NULL;
    size_t n = 0, n2 = 0;
    e = npy_encode(&arr, &enc, &n, err);
    CHECK(e == NULL && enc != NULL, "an accepted array does not encode");
    npy_array back;
    e = npy_parse(enc, n, &back, err);
    CHECK(e == NULL, "an encoded array does not parse");
    expect_same(&arr, &back);
    e = npy_encode(&back, &enc2, &n2, err);
    CHECK(e == NULL && n2 == n && !memcmp(enc, enc2, n), "encoding is not stable");
    free(enc), free(enc2);
    npy_array_free(&back);
    npy_array_free(&arr);
    CHECK(arr.data == NULL && arr.ndim == 0, "npy_array_free left the array set");
    return (int)(sum & 0); /* sum keeps the reads */
}
