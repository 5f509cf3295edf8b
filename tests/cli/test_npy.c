/*
 * test_npy.c — the .npy reader and writer of the attn program (tools/npy.c)
 * on buffers in memory, as a fuzzer would drive it:
 *   - every dtype survives encode → parse, bit for bit (NaN, ±Inf, -0.0,
 *     extreme integers), for scalars, empty and multi-dimensional shapes;
 *   - NumPy's header variants are read (versions 2.0 and 3.0, double quotes,
 *     keys in any order, no trailing comma);
 *   - each malformed file is refused with the message that says why;
 *   - every prefix of a valid file, and every single-byte change of its
 *     header, is parsed from an exactly-sized heap copy without a crash (run
 *     it under valgrind to see that nothing outside the buffer is read).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "npy.h"

/* A .npy file from its parts: version, header text (padded and ended with
 * '\n' here), and raw data bytes. */
static unsigned char *make_file(unsigned major, const char *dict, const void *data,
                                size_t data_size, size_t *size)
{
    size_t len_bytes = major == 1 ? 2 : 4;
    size_t header_len = strlen(dict) + 1;
    *size = 8 + len_bytes + header_len + data_size;
    unsigned char *b = malloc(*size);
    assert_non_null(b);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    for (size_t i = 0; i < len_bytes; i++)
        b[8 + i] = (unsigned char)(header_len >> (8 * i));
    memcpy(b + 8 + len_bytes, dict, header_len - 1);
    b[8 + len_bytes + header_len - 1] = '\n';
    if (data_size)
        memcpy(b + 8 + len_bytes + header_len, data, data_size);
    return b;
}

/* Parses from an exactly-sized heap copy, so that reading past the end is a
 * heap overflow that valgrind or ASan reports. */
static const char *parse_copy(const unsigned char *buf, size_t size, npy_array *arr, char *err)
{
    unsigned char *copy = malloc(size ? size : 1);
    assert_non_null(copy);
    if (size)
        memcpy(copy, buf, size);
    const char *e = npy_parse(size ? copy : NULL, size, arr, err);
    free(copy);
    return e;
}

/* ---- round trips ------------------------------------------------------- */

static void round_trip(npy_dtype dtype, int ndim, const int64_t *shape, const void *data)
{
    npy_array a = {.dtype = dtype, .ndim = ndim, .count = 1, .data = (void *)data};
    for (int d = 0; d < ndim; d++) {
        a.shape[d] = shape[d];
        a.count *= shape[d];
    }
    char err[NPY_ERROR_SIZE];
    unsigned char *buf;
    size_t size;
    const char *e = npy_encode(&a, &buf, &size, err);
    if (e)
        fail_msg("encode %s: %s", npy_dtype_name(dtype), e);
    size_t header_len = (size_t)buf[8] | (size_t)buf[9] << 8;
    assert_int_equal((10 + header_len) % 64, 0);  /* data aligned as NumPy aligns it */
    npy_array b;
    e = parse_copy(buf, size, &b, err);
    if (e)
        fail_msg("parse %s: %s", npy_dtype_name(dtype), e);
    assert_int_equal(b.dtype, dtype);
    assert_int_equal(b.ndim, ndim);
    assert_int_equal(b.count, a.count);
    for (int d = 0; d < ndim; d++)
        assert_int_equal(b.shape[d], shape[d]);
    if (a.count > 0)
        assert_memory_equal(b.data, data, (size_t)a.count * npy_dtype_size(dtype));
    npy_array_free(&b);
    assert_null(b.data);
    free(buf);
}

static void every_dtype_round_trips_bit_for_bit(void **state)
{
    (void)state;
    const float f32[6] = {1.5f, -0.0f, INFINITY, -INFINITY, NAN, 1e-45f};
    const double f64[6] = {3.141592653589793, -0.0, INFINITY, -INFINITY, NAN, 4.9e-324};
    const uint8_t b8[6] = {0, 1, 1, 0, 1, 0};
    const uint8_t u8[6] = {0, 1, 127, 128, 254, 255};
    const int32_t i32[6] = {0, -1, INT32_MIN, INT32_MAX, 42, -42};
    const int64_t i64[6] = {0, -1, INT64_MIN, INT64_MAX, 1ll << 40, -(1ll << 40)};
    const int64_t shape2[2] = {2, 3}, shape1[1] = {6}, shape3[3] = {1, 3, 2};
    const void *data[6] = {f32, f64, b8, u8, i32, i64};
    for (npy_dtype t = NPY_FLOAT32; t <= NPY_INT64; t++) {
        round_trip(t, 2, shape2, data[t]);
        round_trip(t, 1, shape1, data[t]);
        round_trip(t, 3, shape3, data[t]);
        round_trip(t, 0, NULL, data[t]);  /* a scalar */
    }
}

static void empty_and_many_dimensional_shapes_round_trip(void **state)
{
    (void)state;
    const float one = 7.0f;
    const int64_t empty[3] = {4, 0, 5}, ones[NPY_MAX_DIMS] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                                               1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                                               1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    round_trip(NPY_FLOAT32, 3, empty, &one);
    round_trip(NPY_FLOAT32, NPY_MAX_DIMS, ones, &one);
}

static void encode_refuses_inconsistent_arrays(void **state)
{
    (void)state;
    float x[2] = {0};
    char err[NPY_ERROR_SIZE];
    unsigned char *buf = (unsigned char *)"untouched";
    size_t size = 99;
    npy_array negative = {.dtype = NPY_FLOAT32, .ndim = 1, .shape = {-2}, .count = 2, .data = x};
    assert_non_null(npy_encode(&negative, &buf, &size, err));
    assert_non_null(strstr(err, "negative"));
    assert_null(buf);
    npy_array wrong = {.dtype = NPY_FLOAT32, .ndim = 1, .shape = {3}, .count = 2, .data = x};
    assert_non_null(npy_encode(&wrong, &buf, &size, err));
    assert_non_null(strstr(err, "does not match the shape"));
}

/* ---- NumPy's header variants ------------------------------------------- */

static void numpy_header_variants_are_read(void **state)
{
    (void)state;
    static const char *const dicts[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
        "{\"shape\": (2,), \"fortran_order\": False, \"descr\": \"<f4\"}",
        "  {'descr':'<f4','fortran_order':False,'shape':(2,)}   ",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2,), }",
    };
    const float data[2] = {1.0f, 2.0f};
    for (unsigned major = 1; major <= 3; major++) {
        for (size_t k = 0; k < sizeof dicts / sizeof dicts[0]; k++) {
            size_t size;
            unsigned char *b = make_file(major, dicts[k], data, sizeof data, &size);
            npy_array a;
            char err[NPY_ERROR_SIZE];
            const char *e = parse_copy(b, size, &a, err);
            if (e)
                fail_msg("version %u, header %s: %s", major, dicts[k], e);
            assert_int_equal(a.count, 2);
            assert_true(((float *)a.data)[1] == 2.0f);
            npy_array_free(&a);
            free(b);
        }
    }
}

static void bool_bytes_other_than_one_read_as_true(void **state)
{
    (void)state;
    const uint8_t data[3] = {0, 2, 255};
    size_t size;
    unsigned char *b = make_file(1, "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }",
                                 data, 3, &size);
    npy_array a;
    char err[NPY_ERROR_SIZE];
    assert_null(parse_copy(b, size, &a, err));
    const uint8_t *v = a.data;
    assert_true(v[0] == 0 && v[1] == 1 && v[2] == 1);
    npy_array_free(&a);
    free(b);
}

/* ---- malformed files --------------------------------------------------- */

typedef struct malformed_case {
    const char *name;
    unsigned major;
    const char *dict;      /* NULL: use raw bytes instead */
    size_t data_size;      /* bytes of data after the header */
    const char *message;   /* must appear in the error */
} malformed_case;

#define F4(shape) "{'descr': '<f4', 'fortran_order': False, 'shape': " shape ", }"

static const malformed_case malformed[] = {
    {"fortran_order", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16,
     "Fortran-order arrays are not supported"},
    {"big_endian_float", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8,
     "big-endian data ('>f4')"},
    {"big_endian_int", 1, "{'descr': '>i8', 'fortran_order': False, 'shape': (2,), }", 16,
     "big-endian data ('>i8')"},
    {"object_dtype", 1, "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", 16,
     "object arrays ('|O') cannot be read"},
    {"structured_dtype", 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
     8, "structured dtypes"},
    {"unicode_dtype", 1, "{'descr': '<U3', 'fortran_order': False, 'shape': (2,), }", 24,
     "dtype '<U3' is not supported"},
    {"native_order_marker", 1, "{'descr': '=f4', 'fortran_order': False, 'shape': (2,), }", 8,
     "dtype '=f4' is not supported"},
    {"truncated_data", 1, F4("(2, 3)"), 20,
     "truncated: the header's shape (2, 3) of float32 needs 24 bytes of data, 20 follow"},
    {"data_beyond_shape", 1, F4("(2,)"), 12, "4 bytes follow the 8 bytes of data"},
    {"shape_overflow", 1, F4("(4611686018427387904, 2)"), 0, "too large to address"},
    {"dimension_above_int64", 1, F4("(9223372036854775808,)"), 0,
     "non-negative integers below 2^63"},
    {"negative_dimension", 1, F4("(-1,)"), 0, "non-negative integers below 2^63"},
    {"float_dimension", 1, F4("(2.0,)"), 0, "'shape' tuple is malformed"},
    {"shape_not_tuple", 1, F4("[2]"), 0, "'shape' is not a tuple"},
    {"too_many_dimensions", 1,
     F4("(1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1)"), 4,
     "more than 32 dimensions"},
    {"missing_descr", 1, "{'fortran_order': False, 'shape': (2,), }", 8, "missing key 'descr'"},
    {"missing_shape", 1, "{'descr': '<f4', 'fortran_order': False, }", 8, "missing key 'shape'"},
    {"duplicate_key", 1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
                         "'shape': (2,), }", 8, "key 'descr' appears twice"},
    {"unknown_key", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8,
     "unexpected key 'x'"},
    {"fortran_order_not_bool", 1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }", 8,
     "'fortran_order' is neither True nor False"},
    {"not_a_dict", 1, "('<f4', False, (2,))", 8, "not a Python dict literal"},
    {"unterminated_dict", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", 8,
     "malformed dict"},
    {"text_after_dict", 1, F4("(2,)") " extra", 8, "unexpected text after the dict"},
    {"escape_in_string", 1, "{'descr': '<f\\4', 'fortran_order': False, 'shape': (2,), }", 8,
     "'descr' is not a short string"},
    {"version_2_truncated_length", 2, NULL, 0, "the file ends inside the header length"},
    {"version_4", 4, F4("(2,)"), 8, "unsupported .npy format version 4.0"},
};

static void each_malformed_file_is_refused_with_its_reason(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof malformed / sizeof malformed[0]; k++) {
        const malformed_case *c = &malformed[k];
        unsigned char zeros[64] = {0};
        size_t size;
        unsigned char *b;
        if (c->dict) {
            b = make_file(c->major, c->dict, zeros, c->data_size, &size);
        } else {  /* a version 2.0 preamble cut inside its 4-byte length */
            b = make_file(c->major, "{}", NULL, 0, &size);
            size = 10;
        }
        npy_array a = {.data = zeros};
        char err[NPY_ERROR_SIZE];
        const char *e = parse_copy(b, size, &a, err);
        if (!e)
            fail_msg("%s: accepted", c->name);
        if (!strstr(e, c->message))
            fail_msg("%s: message \"%s\" lacks \"%s\"", c->name, e, c->message);
        assert_null(a.data);  /* nothing allocated, nothing to free */
        free(b);
    }
}

static void preamble_problems_are_refused_with_their_reason(void **state)
{
    (void)state;
    char err[NPY_ERROR_SIZE];
    npy_array a;
    assert_non_null(strstr(npy_parse(NULL, 0, &a, err), "0 bytes is shorter"));
    assert_non_null(strstr(parse_copy((const unsigned char *)"\x93NUMPX\x01\x00\x00\x00", 10, &a,
                                      err), "does not begin with"));
    size_t size;
    unsigned char *b = make_file(1, F4("(2,)"), "\0\0\0\0\0\0\0\0", 8, &size);
    b[8] = 0xff;  /* a header length far beyond the file */
    assert_non_null(strstr(parse_copy(b, size, &a, err), "the header length field says 255"));
    b[8] = 20;  /* a header length that ends inside the dict */
    assert_non_null(strstr(parse_copy(b, size, &a, err), "does not end with a newline"));
    b[8] = 0;
    b[9] = 0;  /* no header at all */
    assert_non_null(strstr(parse_copy(b, size, &a, err), "does not end with a newline"));
    free(b);
}

/* ---- no crash on any input ------------------------------------------- */

static void every_prefix_and_header_byte_change_is_handled(void **state)
{
    (void)state;
    const float data[6] = {1, 2, 3, 4, 5, 6};
    const int64_t shape[2] = {2, 3};
    npy_array a = {.dtype = NPY_FLOAT32, .ndim = 2, .shape = {shape[0], shape[1]}, .count = 6,
                   .data = (void *)data};
    char err[NPY_ERROR_SIZE];
    unsigned char *buf;
    size_t size;
    assert_null(npy_encode(&a, &buf, &size, err));
    for (size_t n = 0; n < size; n++) {  /* every truncation is refused */
        npy_array b;
        assert_non_null(parse_copy(buf, n, &b, err));
        assert_null(b.data);
    }
    size_t header_end = size - sizeof data;
    long accepted = 0;
    for (size_t pos = 0; pos < header_end; pos++) {
        unsigned char saved = buf[pos];
        for (unsigned v = 0; v < 256; v++) {
            buf[pos] = (unsigned char)v;
            npy_array b;
            if (!parse_copy(buf, size, &b, err)) {
                accepted++;
                assert_true(b.count * (int64_t)npy_dtype_size(b.dtype) <= (int64_t)size);
                npy_array_free(&b);
            }
        }
        buf[pos] = saved;
    }
    print_message("%ld of %zu one-byte header changes still parse (spaces, quotes, ...)\n",
                  accepted, header_end * 256);
    free(buf);
}

static void shape_strings_print_like_numpy(void **state)
{
    (void)state;
    char s[64];
    npy_array a = {.ndim = 0};
    assert_string_equal(npy_shape_string(&a, s, sizeof s), "()");
    a.ndim = 1;
    a.shape[0] = 5;
    assert_string_equal(npy_shape_string(&a, s, sizeof s), "(5,)");
    a.ndim = 3;
    a.shape[1] = 0;
    a.shape[2] = 12;
    assert_string_equal(npy_shape_string(&a, s, sizeof s), "(5, 0, 12)");
    assert_string_equal(npy_shape_string(&a, s, 5), "(5, ");  /* truncated, terminated */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_dtype_round_trips_bit_for_bit),
        cmocka_unit_test(empty_and_many_dimensional_shapes_round_trip),
        cmocka_unit_test(encode_refuses_inconsistent_arrays),
        cmocka_unit_test(numpy_header_variants_are_read),
        cmocka_unit_test(bool_bytes_other_than_one_read_as_true),
        cmocka_unit_test(each_malformed_file_is_refused_with_its_reason),
        cmocka_unit_test(preamble_problems_are_refused_with_their_reason),
        cmocka_unit_test(every_prefix_and_header_byte_change_is_handled),
        cmocka_unit_test(shape_strings_print_like_numpy),
    };
    return cmocka_run_group_tests_name("npy", tests, NULL, NULL);
}
