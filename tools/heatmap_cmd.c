/*
 * heatmap_cmd.c — `attn heatmap`: D2L's show_heatmaps for saved weights.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "svg_heatmap.h"
#include "tensor_io.h"

#define CMD "heatmap"

static const char usage[] =
    "Usage: attn heatmap W.npy -o W.svg [--xlabel TEXT] [--ylabel TEXT] [--titles A,B,...]\n"
    "\n"
    "Draws attention weights (or any 2-D to 4-D array: float32, float64, bool,\n"
    "uint8, int32 or int64) as heatmaps in an SVG file, like D2L's show_heatmaps:\n"
    "  2-D [q, k]              one panel\n"
    "  3-D [cols, q, k]        one row of panels\n"
    "  4-D [rows, cols, q, k]  a grid of panels\n"
    "Each panel has q rows (queries, top to bottom) and k columns (keys, left to\n"
    "right); one colour bar (matplotlib's 'Reds') spans the minimum and maximum\n"
    "finite value of all panels; NaN cells are left blank.\n"
    "\n"
    "Options:\n"
    "  -o, --out W.svg     the SVG file to write (completely or not at all)\n"
    "  --xlabel TEXT       the label under the bottom row (default: Keys)\n"
    "  --ylabel TEXT       the label beside the first column (default: Queries)\n"
    "  --titles A,B,...    comma-separated titles: one per column of panels, or one\n"
    "                      per panel (row by row)\n"
    "  -h, --help          show this help\n"
    "\n"
    "At most 1000000 cells are drawn.\n"
    "Exit status: 0 on success, 1 when the file is refused or cannot be drawn or\n"
    "written, 2 for a usage error.\n";

/* Splits "A,B,C" into a malloc'd array of pointers into a malloc'd copy. */
static char **split_titles(const char *text, int64_t *count, char **copy)
{
    *copy = malloc(strlen(text) + 1);
    int64_t n = 1;
    for (const char *p = text; *p; p++)
        n += *p == ',';
    char **titles = malloc((size_t)n * sizeof *titles);
    if (!*copy || !titles) {
        free(*copy);
        free(titles);
        *copy = NULL;
        return NULL;
    }
    strcpy(*copy, text);
    titles[0] = *copy;
    int64_t k = 1;
    for (char *p = *copy; *p; p++)
        if (*p == ',') {
            *p = '\0';
            titles[k++] = p + 1;
        }
    *count = n;
    return titles;
}

static int draw(const char *in_path, const char *out_path, const npy_array *w,
                const char *xlabel, const char *ylabel, const char *titles_text)
{
    svg_heatmap h = {.values = w->data, .xlabel = xlabel, .ylabel = ylabel};
    if (svg_heatmap_set_shape(&h, w->ndim, w->shape) != 0) {
        char shape[128];
        return cli_refuse(CMD, "%s: weights must be 2-D, 3-D or 4-D; the shape is %s", in_path,
                          npy_shape_string(w, shape, sizeof shape));
    }
    char *copy = NULL;
    char **titles = NULL;
    if (titles_text) {
        titles = split_titles(titles_text, &h.n_titles, &copy);
        if (!titles)
            return cli_refuse(CMD, "--titles: out of memory");
        h.titles = (const char *const *)titles;
    }
    char err[SVG_HEATMAP_ERROR_SIZE];
    int rc;
    if (svg_heatmap_check(&h, err)) {
        rc = cli_refuse(CMD, "%s: %s", in_path, err);
    } else {
        strbuf sb = STRBUF_INIT;
        svg_heatmap_render(&sb, &h);
        rc = io_save_text(CMD, out_path, &sb);
        strbuf_free(&sb);
    }
    free(titles);
    free(copy);
    return rc;
}

int cmd_heatmap(int argc, char **argv)
{
    const char *out = NULL, *xlabel = NULL, *ylabel = NULL, *titles = NULL;
    const cli_option opts[] = {
        {"--out", "-o", &out},
        {"--xlabel", NULL, &xlabel},
        {"--ylabel", NULL, &ylabel},
        {"--titles", NULL, &titles},
    };
    const char *positional[1];
    int n_positional, help;
    int rc = cli_parse(CMD, argc, argv, opts, sizeof opts / sizeof opts[0], positional, 1,
                       &n_positional, &help);
    if (rc != CLI_OK)
        return rc;
    if (help) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    if (n_positional != 1)
        return cli_usage_error(CMD, "which weights file? (attn heatmap W.npy -o W.svg)");
    if (!out)
        return cli_usage_error(CMD, "-o W.svg is required");
    npy_array w;
    if (io_load_any_as_floats(CMD, positional[0], &w) != CLI_OK)
        return CLI_REFUSED;
    rc = draw(positional[0], out, &w, xlabel, ylabel, titles);
    npy_array_free(&w);
    return rc;
}
