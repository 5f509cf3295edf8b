/*
 * info_cmd.c — `attn info`: attn_runtime_info()'s text, verbatim, so that a
 * bug report or a log can say which BLAS, kernels, threads and CPU features
 * this machine gives libattn, and whether a setting would make it faster.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define CMD "info"

static const char usage[] =
    "Usage: attn info\n"
    "\n"
    "Prints what libattn runs on here, one \"key: value\" line per fact:\n"
    "version, blas (the BLAS library as it describes itself), blas_kernel (the\n"
    "kernel set OpenBLAS picked, as OPENBLAS_CORETYPE names it), blas_threads,\n"
    "blas_threading, blas_copy (libattn's own serial copy of OpenBLAS's OpenMP\n"
    "build for its GEMMs when the BLAS runs pthreads on several threads, or\n"
    "why not), cpu (vendor, family/model and the usable vector extensions),\n"
    "threads (libattn's default thread count), schedule and advice (empty, or\n"
    "the setting that makes this machine faster). It never sets the BLAS's\n"
    "state. ATTN_BLAS_COPY=0 in the environment turns the copy off.\n"
    "\n"
    "Options:\n"
    "  -h, --help   show this help\n"
    "\n"
    "Exit status: 0 on success, 1 if memory runs out, 2 for a usage error.\n";

char *cli_runtime_info(void)
{
    size_t n = attn_runtime_info(NULL, 0) + 1;
    char *text = malloc(n);
    if (text)
        attn_runtime_info(text, n);
    return text;
}

int cli_runtime_advice(char *buf, size_t size)
{
    buf[0] = '\0';
    char *text = cli_runtime_info();
    if (!text)
        return 0;
    const char *line = strstr(text, "\nadvice: ");
    if (line) {
        line += strlen("\nadvice: ");
        snprintf(buf, size, "%.*s", (int)strcspn(line, "\n"), line);
    }
    free(text);
    return buf[0] != '\0';
}

int cmd_info(int argc, char **argv)
{
    const char *positional[1];
    int n_positional, help;
    int rc = cli_parse(CMD, argc, argv, NULL, 0, positional, 0, &n_positional, &help);
    if (rc != CLI_OK)
        return rc;
    if (help) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    char *text = cli_runtime_info();
    if (!text)
        return cli_refuse(CMD, "out of memory");
    fputs(text, stdout);
    free(text);
    return CLI_OK;
}
