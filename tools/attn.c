/*
 * attn.c — the attn program: `attn demo`, `attn run`, `attn heatmap`,
 * `attn info`, `attn train`, `attn generate`, `attn explore`.
 *
 * main only dispatches: each subcommand lives in its own file, parses its
 * own options and returns an exit status (cli.h). The library never prints;
 * this program does.
 */
#include <stdio.h>
#include <string.h>

#include <attn.h>

#include "cli.h"

static const char usage[] =
    "Usage: attn COMMAND [options]\n"
    "\n"
    "Attention on the CPU with libattn, from the command line.\n"
    "\n"
    "Commands:\n"
    "  demo [--out DIR]   run the seeds' worked examples (UvA tutorial 6, D2L 10.2\n"
    "                     and 10.3, multi-head self-attention) on built-in data,\n"
    "                     print their numbers and draw them into DIR (./attn-demo)\n"
    "  run                scaled dot-product attention on NumPy .npy files, with\n"
    "                     masks, valid lengths, bias, causal modes and GQA\n"
    "  heatmap            draw saved attention weights (.npy) as SVG heatmaps\n"
    "  explore            write saved attention weights (.npy) as an interactive\n"
    "                     page for the browser: head view, matrix view, selectors\n"
    "  info               print what libattn runs on here (BLAS, its kernels and\n"
    "                     threads, the CPU's vector extensions) and any advice\n"
    "  train nw           train D2L 10.2.4's Nadaraya-Watson width by SGD with\n"
    "                     libattn's gradients, a progress line per epoch\n"
    "  train reverse      train UvA tutorial 6's sequence-reversal Transformer\n"
    "  train lm           train a character-level GPT on the Tang poems\n"
    "  generate           write poems with a model of `attn train lm`, character by\n"
    "                     character with a KV cache\n"
    "\n"
    "  attn COMMAND --help   describes every option of COMMAND\n"
    "  attn --version        prints the versions of attn and of libattn\n"
    "\n"
    "Exit status: 0 on success, 1 when an input, the computation or an output is\n"
    "refused, 2 for a usage error. See attn(1).\n";

typedef struct command {
    const char *name;
    int (*main)(int argc, char **argv);
} command;

static const command commands[] = {
    {"demo", cmd_demo},
    {"run", cmd_run},
    {"heatmap", cmd_heatmap},
    {"info", cmd_info},
    {"train", cmd_train},
    {"generate", cmd_generate},
    {"explore", cmd_explore},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "help") == 0) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    if (strcmp(name, "--version") == 0) {
        /* The header the program was built with, and the library it runs with. */
        printf("attn %s (libattn %s)\n", ATTN_VERSION_STRING, attn_version_string());
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(name, commands[i].name) == 0)
            return commands[i].main(argc - 1, argv + 1);
    fprintf(stderr, "attn: unknown command '%s'\n\n%s", name, usage);
    return CLI_USAGE;
}
