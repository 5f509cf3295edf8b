/*
 * golden.h — shared helpers of libattn's golden-vector tests (no CMocka
 * dependency): test_onnx.c, test_mha_torch.c, test_sdpa_backward_torch.c,
 * test_mha_backward_torch.c and test_layer_backward_torch.c. Their vectors
 * are one folder per case under a data folder: a case.json (read with json-c)
 * describing raw little-endian .bin tensors as {"file", "shape", "dtype"}.
 * The helpers report problems by their return value (0 or NULL = failed) and
 * a message in the case's error buffer, never by asserting; only main's two
 * helpers print (to stderr). What a test builds from a case and which
 * tensors it compares stay in the test.
 *
 *  1. golden_case: a case's name, folder and error message; golden_error and
 *     golden_check (a libattn status) fill the message;
 *  2. the data folder: golden_check_args (main's usage and byte-order
 *     checks) and golden_load_cases (lists the case folders, sorted, and
 *     reads each case.json through the test's parse function);
 *  3. case.json: golden_get, golden_parse_ints, golden_parse_tensor (one
 *     {file, shape, dtype[, floor]} entry), golden_expect_shape; the masks
 *     (kv lengths, bool keep mask, float bias: libattn's three kinds) and
 *     golden_set_masks, which loads them into one attn_mask; the parameter
 *     blocks of a flat parameter vector;
 *  4. tensors: golden_load_tensor (a whole .bin of exactly numel × item
 *     bytes), golden_load_files (a run's float32 inputs and float64 expected
 *     results), golden_nan_floats (outputs that fail if never written);
 *  5. comparisons: the normalised error
 *         |a − e| <= rtol · (|e| + max(max|e| over a group, floor))
 *     over rows, whole tensors or parameter blocks (golden_compare,
 *     golden_compare_f32, golden_compare_blocks), and bitwise equality
 *     (golden_same_bits).
 */
#ifndef GOLDEN_H
#define GOLDEN_H

#include <stddef.h>
#include <stdint.h>

#include <attn.h>
#include <json-c/json.h>

/* ---- a case ----------------------------------------------------------- */

/* The part every test's case struct starts with (as its first member, so
 * that golden_load_cases can fill an array of them). */
typedef struct golden_case {
    char name[128];  /* the case folder's name (the CMocka test's name) */
    char dir[4096];  /* <data folder>/<name> */
    char error[512]; /* why the case failed, or why its case.json is unusable; "" if neither */
} golden_case;

/* Formats the message into g->error (printf-style) and returns 0, so that a
 * check can be written `ok || golden_error(g, ...)`. */
int golden_error(golden_case *g, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* 1 if st is ATTN_OK; else 0, with g->error = "<call>: <status> (<attn_last_error>)".
 * A test's CHECK(c, call) passes the call's text as `call`. */
int golden_check(golden_case *g, attn_status st, const char *call);

/* ---- the data folder -------------------------------------------------- */

/* The start of a golden test's main: argc must be 2 (else prints
 * "usage: <argv[0]> <usage>" and returns 2) and the host little-endian, as
 * the .bin files are (else prints "<prog>: needs a little-endian host" and
 * returns 1). Returns 0 when both hold. */
int golden_check_args(int argc, char **argv, const char *prog, const char *usage);

/* Reads one case.json: parse gets the case and the parsed JSON, and reports
 * a problem in g->error (its return value is not used). */
typedef int (*golden_parse_fn)(golden_case *g, json_object *j);

/* Lists root's case folders — the entries whose names start with prefix, or
 * when prefix is NULL every entry not starting with '.' — in alphasort
 * order, and returns a zeroed array of *n cases of `size` bytes each (each
 * starting with a golden_case) in that order. For each: name and dir are
 * set, then <dir>/case.json is read and given to parse; an unreadable file
 * sets error ("cannot read <path>: <json-c's reason>") instead. Listing the
 * folder rather than an index makes sure that no case is left out.
 * Returns NULL with *n = 0 when root cannot be listed or holds no case, or
 * with *n > 0 when out of memory; when prog is not NULL it has then printed
 * "<prog>: no case folder in <root>" or "<prog>: out of memory" to stderr.
 * The caller frees the array. */
void *golden_load_cases(const char *root, const char *prefix, size_t size, golden_parse_fn parse,
                        const char *prog, size_t *n);

/* ---- case.json -------------------------------------------------------- */

/* j's member `key`, or NULL if j is NULL or has no such member. */
json_object *golden_get(json_object *j, const char *key);

/* Whether j is a JSON number (an integer or a double). */
int golden_is_number(json_object *j);

/* v[i] = the integer member keys[i] of j, for i < n. Fails with "case.json
 * lacks the integer <key>" at the first one that is missing or no integer. */
int golden_parse_ints(golden_case *g, json_object *j, const char *const *keys, int n,
                      int64_t *v);

/* One tensor of case.json: a .bin file of `shape` (rank 1 to 4) and dtype. */
typedef struct golden_tensor {
    int present;     /* parsed */
    int rank;
    int64_t shape[4];
    char file[64];   /* relative to the case's folder */
    char dtype[16];  /* as case.json says ("float32", "float64", "int64", ...) */
    double floor;    /* the tolerance's floor (golden_compare); 0 unless parsed */
} golden_tensor;

/* Parses {"file", "shape", "dtype"} (and with want_floor the number "floor",
 * finite and >= 0) into t. Fails with "a tensor lacks dtype, shape or
 * file", "<file> is <dtype>, not <want>" (dtype not NULL: the dtype it must
 * have), "<file> has rank <r>" (not 1 to 4), "<file> lacks its floor" or
 * "<file> has floor <f>". */
int golden_parse_tensor(golden_case *g, json_object *j, const char *dtype, int want_floor,
                        golden_tensor *t);

/* The tensors keys[0 .. n) of case.json's "files" object into t[0 .. n): the
 * first n_inputs float32, the others float64, none with a floor. Fails with
 * "files lacks <key>" or golden_parse_tensor's messages. */
int golden_parse_files(golden_case *g, json_object *files, const char *const *keys, int n,
                       int n_inputs, golden_tensor *t);

/* t must be of rank `rank` with the first `rank` of d0..d3 as its sizes (the
 * others are ignored); else "<file>: shape does not fit the configuration". */
int golden_expect_shape(golden_case *g, const golden_tensor *t, int rank, int64_t d0,
                        int64_t d1, int64_t d2, int64_t d3);

/* The number of elements of t (1 for rank 0). */
int64_t golden_numel(const golden_tensor *t);

/* ---- masks ------------------------------------------------------------ */

/* The mask kinds of case.json's "masks" array, already in libattn's terms:
 * {"kind": "kv_lengths", "per_query": 0 or 1, dtype int64, shape [batch] or
 * [batch, len_q]} (attn_mask_set_kv_lengths), {"kind": "bool", dtype uint8,
 * 4-D} (attn_mask_set_bool) and {"kind": "bias", dtype float32, 4-D}
 * (attn_mask_set_bias). */
enum { GOLDEN_MASK_LENGTHS, GOLDEN_MASK_BOOL, GOLDEN_MASK_BIAS, GOLDEN_N_MASK_KINDS };
extern const char *const golden_mask_kind[GOLDEN_N_MASK_KINDS]; /* "kv_lengths", "bool", "bias" */

typedef struct golden_masks {
    int n;                                  /* entries of the "masks" array */
    int per_query[GOLDEN_N_MASK_KINDS];     /* each entry's "per_query" */
    golden_tensor t[GOLDEN_N_MASK_KINDS];   /* by kind; .present if given */
} golden_masks;

/* Parses the "masks" array (the caller checks that it is one) into m,
 * accepting the first `kinds` kinds of the enum (2: no bias). Fails with
 * "mask kind <kind> unknown or repeated" or golden_parse_tensor's messages
 * (each kind has its dtype). */
int golden_parse_masks(golden_case *g, json_object *masks, int kinds, golden_masks *m);

/* A kv_lengths mask, if given, must be [batch] (per_query 0) or
 * [batch, len_q] (per_query 1). */
int golden_expect_lengths_shape(golden_case *g, const golden_masks *m, int64_t batch,
                                int64_t len_q);

/* golden_expect_lengths_shape, then the bool and bias masks must be 4-D
 * ("the <kind> mask is not 4-D"; libattn checks their broadcasting). */
int golden_expect_mask_shapes(golden_case *g, const golden_masks *m, int64_t batch,
                              int64_t len_q);

/* Loads each given mask's file into data[kind] (the caller frees them, on
 * failure too) and sets it on mask: kv_lengths with (batch, len_q,
 * per_query), bool and bias with their 4-D shape. A failed setter is the
 * case's error as golden_check(g, status, "<kind>"). */
int golden_set_masks(golden_case *g, const golden_masks *m, attn_mask *mask, int64_t batch,
                     int64_t len_q, void *data[GOLDEN_N_MASK_KINDS]);

/* ---- parameter blocks ------------------------------------------------- */

/* One block of a flat parameter vector ("param_blocks" of case.json). */
typedef struct golden_block {
    int present;
    int64_t offset, size; /* in floats; size = the product of "shape" */
    double floor;         /* the tolerance's floor of the block's gradient */
} golden_block;

/* Parses the "param_blocks" array (the caller checks that it is one) of
 * {"name", "offset", "shape", "floor"} into block[], indexed by the position
 * of the name in names[0 .. n-1]. floor_number = 1: "floor" must be a JSON
 * number; 0: it must be present (json-c converts it). Fails with "param
 * block <name> unknown or repeated" or "param block <name> lacks offset,
 * shape or floor". */
int golden_parse_blocks(golden_case *g, json_object *blocks, const char *const *names, int n,
                        int floor_number, golden_block *block);

/* The blocks must be the layout `size` (size[b] = 0: block b must be absent:
 * "param_blocks: <name> on a layer without bias"; else present: "param_blocks:
 * <name> missing"), stored contiguously in that order from offset 0, with
 * finite floors >= 0, and add up to param_count floats. */
int golden_check_blocks(golden_case *g, const golden_block *block, const char *const *names,
                        int n, const int64_t *size, int64_t param_count);

/* ---- tensors ---------------------------------------------------------- */

/* Reads <g->dir>/<t->file>, which must hold exactly numel(t) × item bytes
 * (any other size means that the shape or the dtype is misread): raw, in the
 * host's byte order (golden_check_args made sure it is little-endian).
 * Returns a malloc'd buffer, or NULL with "cannot read <path> as exactly
 * <bytes> bytes". */
void *golden_load_tensor(golden_case *g, const golden_tensor *t, size_t item);

/* n floats of NaN (malloc'd; NULL if out of memory), so that an output
 * element the library forgets to write fails the comparison. */
float *golden_nan_floats(int64_t n);

/* The files a run loads: by the test's file index, its float32 inputs and
 * float64 expected results, and by mask kind the masks' data. NULL where not
 * loaded; a zeroed struct holds nothing. */
#define GOLDEN_MAX_FILES 16
typedef struct golden_files {
    float *in[GOLDEN_MAX_FILES];
    double *expect[GOLDEN_MAX_FILES];
    void *mask[GOLDEN_N_MASK_KINDS];
} golden_files;

/* Whether file i of the case is not to be loaded (an alias of another). */
typedef int (*golden_skip_fn)(const golden_case *g, int i);

/* Loads, in order, each file t[i] (i < n <= GOLDEN_MAX_FILES) that is
 * present and not skipped (skip may be NULL): i < n_inputs as float32 into
 * f->in[i], the others as float64 into f->expect[i]. Stops at the first
 * that cannot be read (golden_load_tensor's message); the caller frees f
 * with golden_files_free either way. */
int golden_load_files(golden_case *g, const golden_tensor *t, int n, int n_inputs,
                      golden_skip_fn skip, golden_files *f);

/* Frees everything f holds and zeroes it. */
void golden_files_free(golden_files *f);

/* ---- comparisons ------------------------------------------------------ */

/* The n elements of a and e are split into groups of `group` consecutive
 * elements (an output row, or the whole tensor with group = n; n must be a
 * multiple of group). Each element must satisfy
 *
 *     |a − e| <= rtol · (|e| + max(floor, max|e| over its group))
 *
 * (written so that a NaN fails). On the first that does not: 0, with
 * "<what>[<first + i>]: got <a>, expected <e> (rel error <r> > <rtol>)".
 * *worst becomes the largest of itself, 0 and each element's
 * |a − e| / (|e| + that max) (0 where a == e, +INFINITY where the scale is
 * 0). `first` is the index of a[0] in the message (a block's offset). */
int golden_compare(golden_case *g, const char *what, const float *a, const double *e,
                   int64_t n, int64_t group, double floor, int64_t first, double rtol,
                   double *worst);

/* The same with float32 expected values (floor 0, first 0; the message
 * prints e with 9 significant digits rather than 17). */
int golden_compare_f32(golden_case *g, const char *what, const float *a, const float *e,
                       int64_t n, int64_t group, double rtol, double *worst);

/* golden_compare of each present block of a flat parameter gradient, as a
 * whole with its floor: a + offset against e + offset, what = "d_params
 * (<name>)", first = offset, the worst into worst[b]. */
int golden_compare_blocks(golden_case *g, const float *a, const double *e,
                          const golden_block *block, const char *const *names, int n,
                          double rtol, double *worst);

/* a and b (n floats) must be the same bits; else "<what>[i]: <a>, expected
 * bitwise <b>". */
int golden_same_bits(golden_case *g, const char *what, const float *a, const float *b,
                     int64_t n);

#endif /* GOLDEN_H */
