/*
 * cli.h — what the subcommands of the attn program share: exit statuses,
 * how messages look, and option parsing.
 *
 * Messages go to stderr as "attn <command>: <file>: <problem>", so each one
 * names the file and says what is wrong with it; results go to stdout.
 */
#ifndef ATTN_TOOLS_CLI_H
#define ATTN_TOOLS_CLI_H

#include <stddef.h>

#include <attn.h>

/* Exit statuses of every subcommand (documented in docs/attn.1). */
enum {
    CLI_OK = 0,       /* success */
    CLI_REFUSED = 1,  /* an input, the computation or an output was refused */
    CLI_USAGE = 2     /* the command line itself is wrong */
};

/* The subcommands: argv[0] is the subcommand's name. Each returns an exit
 * status above. */
int cmd_demo(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_heatmap(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_explore(int argc, char **argv);

/* attn_runtime_info()'s whole text in a malloc'd string (the caller frees
 * it), or NULL when memory runs out. */
char *cli_runtime_info(void);

/* The value of its "advice:" line into buf (snprintf semantics): returns 1
 * when there is advice, 0 when it is empty (or memory ran out). */
int cli_runtime_advice(char *buf, size_t size);

/* Prints "attn <cmd>: <message>\n" to stderr; returns CLI_REFUSED. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
int cli_refuse(const char *cmd, const char *fmt, ...);

/* Prints "attn <cmd>: <message>" and a hint at --help to stderr; returns
 * CLI_USAGE. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
int cli_usage_error(const char *cmd, const char *fmt, ...);

/* Prints what libattn said about a failed call: "attn <cmd>: <what>:
 * <attn_last_error()> (<attn_status_string(status)>)"; returns CLI_REFUSED. */
int cli_library_error(const char *cmd, const char *what, attn_status status);

/* For a status that may come from the program's own code as well as from
 * libattn: "out of memory" for ATTN_ERR_OUT_OF_MEMORY (whose libattn text
 * may be stale when the program's own allocation failed), otherwise
 * cli_library_error. */
int cli_status_error(const char *cmd, const char *what, attn_status status);

/* One option that takes a value: "--name VALUE", "--name=VALUE", or
 * "ALIAS VALUE" (alias may be NULL). *value starts as NULL (not given). */
typedef struct cli_option {
    const char *name;
    const char *alias;
    const char **value;
} cli_option;

/* An option without a value ("--greedy"): sets *flag to 1. */
typedef struct cli_flag {
    const char *name;
    int *flag;
} cli_flag;

/* An option that may be repeated ("--prompt A --prompt B"): each value goes
 * to values[(*n_values)++], at most max_values of them. */
typedef struct cli_list {
    const char *name;
    const char **values;
    int *n_values;
    int max_values;
} cli_list;

/* The options of one command: any of the three kinds (arrays may be NULL
 * with a count of 0). */
typedef struct cli_options {
    const cli_option *opts;
    size_t n_opts;
    const cli_flag *flags;
    size_t n_flags;
    const cli_list *lists;
    size_t n_lists;
} cli_options;

/* Parses argv[1 .. argc) against opts. "-h"/"--help" sets *help (and stops
 * the parse); arguments that do not start with '-' (and all after "--") are
 * positional and go to positional[], at most max_positional of them.
 * Returns CLI_OK, or prints a usage error (an unknown option, a missing
 * value, an option given twice, too many positional arguments) and returns
 * CLI_USAGE. */
int cli_parse(const char *cmd, int argc, char **argv, const cli_option *opts, size_t n_opts,
              const char **positional, int max_positional, int *n_positional, int *help);
/* cli_parse with flags and repeated options too. */
int cli_parse_all(const char *cmd, int argc, char **argv, const cli_options *o,
                  const char **positional, int max_positional, int *n_positional, int *help);

/* Reads a whole string as a finite or non-finite double / an int; on
 * malformed text prints a usage error naming the option and returns
 * CLI_USAGE. */
int cli_parse_double(const char *cmd, const char *option, const char *text, double *value);
int cli_parse_int(const char *cmd, const char *option, const char *text, int *value);

#endif
