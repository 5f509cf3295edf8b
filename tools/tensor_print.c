/*
 * tensor_print.c — PyTorch's tensor format (see tensor_print.h), after
 * torch/_tensor_str.py: _Formatter pads every element to the widest, and
 * _tensor_str_with_formatter joins the slices of a d-dimensional tensor with
 * "," + "\n" * (d - 1) + " " * (indent + 1), the indent growing by one per
 * bracket from len("tensor(").
 */
#include "tensor_print.h"

#include <string.h>

static int element_width(const float *x, int64_t n)
{
    int width = 1;
    for (int64_t i = 0; i < n; i++) {
        char s[64];
        int w = snprintf(s, sizeof s, "%.4f", (double)x[i]);
        width = w > width ? w : width;
    }
    return width;
}

static void print_slices(FILE *out, const float *x, int ndim, const int64_t *shape, int indent,
                         int width)
{
    int64_t inner = 1;
    for (int d = 1; d < ndim; d++)
        inner *= shape[d];
    fputc('[', out);
    for (int64_t i = 0; i < shape[0]; i++) {
        if (i > 0) {
            fputc(',', out);
            if (ndim == 1)
                fputc(' ', out);
            for (int nl = 0; nl < ndim - 1; nl++)
                fputc('\n', out);
            if (ndim > 1)
                fprintf(out, "%*s", indent + 1, "");
        }
        if (ndim == 1)
            fprintf(out, "%*.4f", width, (double)x[i]);
        else
            print_slices(out, x + i * inner, ndim - 1, shape + 1, indent + 1, width);
    }
    fputc(']', out);
}

void tensor_print(FILE *out, const char *name, const float *x, int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= shape[d];
    fprintf(out, "%s\n tensor(", name);
    print_slices(out, x, ndim, shape, (int)strlen("tensor("), element_width(x, n));
    fputs(")\n", out);
}
