/*
 * tensor_print.h — tensors printed the way PyTorch prints them, so the
 * demo's output can be read side by side with the seeds' notebooks.
 */
#ifndef ATTN_TOOLS_TENSOR_PRINT_H
#define ATTN_TOOLS_TENSOR_PRINT_H

#include <stdint.h>
#include <stdio.h>

/* Prints what Python's print(name + "\n", t) prints for a float tensor t of
 * the given shape (1 to 4 dimensions): the name on its own line, then
 * " tensor([[ 0.3367,  0.1288],\n        [ 0.2345,  0.2303]])". Elements have
 * 4 decimals, right-aligned to a common width, and slices of 3-D and 4-D
 * tensors are separated by blank lines, as in torch._tensor_str. (PyTorch's
 * scientific notation for wide ranges is not imitated.) */
void tensor_print(FILE *out, const char *name, const float *x, int ndim, const int64_t *shape);

#endif
