/*
 * cli.c — exit statuses, messages and option parsing (see cli.h).
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void vmessage(const char *cmd, const char *fmt, va_list ap)
{
    fprintf(stderr, "attn %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_refuse(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(cmd, fmt, ap);
    va_end(ap);
    return CLI_REFUSED;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(cmd, fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try 'attn %s --help' for more information.\n", cmd);
    return CLI_USAGE;
}

int cli_library_error(const char *cmd, const char *what, attn_status status)
{
    return cli_refuse(cmd, "%s: %s (%s)", what, attn_last_error(), attn_status_string(status));
}

int cli_status_error(const char *cmd, const char *what, attn_status status)
{
    if (status == ATTN_ERR_OUT_OF_MEMORY)
        return cli_refuse(cmd, "%s: out of memory", what);
    return cli_library_error(cmd, what, status);
}

/* The option that arg names, and its value if arg is "--name=VALUE".
 * Returns NULL if arg names no option. */
static const cli_option *match(const cli_option *opts, size_t n_opts, const char *arg,
                               const char **inline_value)
{
    *inline_value = NULL;
    for (size_t k = 0; k < n_opts; k++) {
        size_t len = strlen(opts[k].name);
        if (strncmp(arg, opts[k].name, len) == 0 && (arg[len] == '\0' || arg[len] == '=')) {
            if (arg[len] == '=')
                *inline_value = arg + len + 1;
            return &opts[k];
        }
        if (opts[k].alias && strcmp(arg, opts[k].alias) == 0)
            return &opts[k];
    }
    return NULL;
}

/* Takes arg (and maybe argv[*i + 1]) as a flag or a repeated option of o:
 * 1 if it was one, 0 if not, or a usage error's status (negated). */
static int match_other(const char *cmd, const cli_options *o, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    for (size_t k = 0; k < o->n_flags; k++)
        if (strcmp(arg, o->flags[k].name) == 0) {
            *o->flags[k].flag = 1;
            return 1;
        }
    for (size_t k = 0; k < o->n_lists; k++) {
        const cli_list *l = &o->lists[k];
        size_t len = strlen(l->name);
        if (strncmp(arg, l->name, len) != 0 || (arg[len] != '\0' && arg[len] != '='))
            continue;
        const char *value = arg[len] == '=' ? arg + len + 1 : NULL;
        if (!value) {
            if (*i + 1 >= argc)
                return -cli_usage_error(cmd, "option '%s' needs a value", l->name);
            value = argv[++*i];
        }
        if (*l->n_values >= l->max_values)
            return -cli_usage_error(cmd, "option '%s' is given more than %d times", l->name,
                                    l->max_values);
        l->values[(*l->n_values)++] = value;
        return 1;
    }
    return 0;
}

int cli_parse_all(const char *cmd, int argc, char **argv, const cli_options *o,
                  const char **positional, int max_positional, int *n_positional, int *help)
{
    int only_positional = 0;
    *help = 0;
    *n_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (only_positional || arg[0] != '-' || strcmp(arg, "-") == 0) {
            if (*n_positional >= max_positional)
                return cli_usage_error(cmd, "unexpected argument '%s'", arg);
            positional[(*n_positional)++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_positional = 1;
            continue;
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            *help = 1;
            return CLI_OK;
        }
        int other = match_other(cmd, o, argc, argv, &i);
        if (other < 0)
            return -other;
        if (other > 0)
            continue;
        const char *value;
        const cli_option *opt = match(o->opts, o->n_opts, arg, &value);
        if (!opt)
            return cli_usage_error(cmd, "unknown option '%s'", arg);
        if (!value) {
            if (i + 1 >= argc)
                return cli_usage_error(cmd, "option '%s' needs a value", opt->name);
            value = argv[++i];
        }
        if (*opt->value)
            return cli_usage_error(cmd, "option '%s' is given twice", opt->name);
        *opt->value = value;
    }
    return CLI_OK;
}

int cli_parse(const char *cmd, int argc, char **argv, const cli_option *opts, size_t n_opts,
              const char **positional, int max_positional, int *n_positional, int *help)
{
    const cli_options o = {opts, n_opts, NULL, 0, NULL, 0};
    return cli_parse_all(cmd, argc, argv, &o, positional, max_positional, n_positional, help);
}

int cli_parse_double(const char *cmd, const char *option, const char *text, double *value)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || errno == ERANGE)
        return cli_usage_error(cmd, "%s: '%s' is not a number", option, text);
    *value = v;
    return CLI_OK;
}

int cli_parse_int(const char *cmd, const char *option, const char *text, int *value)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || v < INT_MIN || v > INT_MAX)
        return cli_usage_error(cmd, "%s: '%s' is not an integer", option, text);
    *value = (int)v;
    return CLI_OK;
}
