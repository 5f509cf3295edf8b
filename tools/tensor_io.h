/*
 * tensor_io.h — the attn program's files: .npy tensors in the dtypes each
 * role accepts, and outputs written completely or not at all.
 *
 * Every function prints its own message on failure, "attn <cmd>: <path>:
 * <problem>", and returns CLI_REFUSED; on success it returns CLI_OK.
 */
#ifndef ATTN_TOOLS_TENSOR_IO_H
#define ATTN_TOOLS_TENSOR_IO_H

#include <stdint.h>

#include "npy.h"
#include "strbuf.h"

/* Floating-point data (Q, K, V, a bias): float32, or float64 converted to
 * float32 (values beyond float32's range become ±inf, as NumPy's astype
 * does). On success arr->dtype is NPY_FLOAT32. */
int io_load_floats(const char *cmd, const char *path, npy_array *arr);

/* Any numeric dtype converted to float32 (for pictures of weights or masks). */
int io_load_any_as_floats(const char *cmd, const char *path, npy_array *arr);

/* A keep-mask: bool or uint8 (non-zero = attend). On success arr->dtype is
 * NPY_UINT8. */
int io_load_keep_mask(const char *cmd, const char *path, npy_array *arr);

/* Lengths: int32 or int64. On success arr->dtype is NPY_INT64. */
int io_load_lengths(const char *cmd, const char *path, npy_array *arr);

/* Writes float32 data of the given shape as a .npy file. */
int io_save_floats(const char *cmd, const char *path, const float *data, int ndim,
                   const int64_t *shape);

/* Writes the text in sb (an SVG document) to path; refuses if sb ran out of
 * memory while it was built. */
int io_save_text(const char *cmd, const char *path, const strbuf *sb);

/* Checks the explorer's page p (explorer_page.h), refusing it as
 * "<subject>: <problem>[ <hint>]" (hint: what to do when it is too large,
 * or NULL), then writes it to path. */
struct explorer_page;
int io_save_explorer(const char *cmd, const char *path, const char *subject,
                     const struct explorer_page *p, const char *too_large_hint);

#endif
