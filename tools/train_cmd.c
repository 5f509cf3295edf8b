/*
 * train_cmd.c — `attn train MODEL`: models trained from C with libattn's
 * gradients, printing a progress line per epoch as a PyTorch training loop
 * does. Models: `nw`, D2L §10.2.4's parametric Nadaraya–Watson width,
 * `reverse`, UvA tutorial 6's sequence-reversal Transformer, and `lm`, a
 * character-level language model of Tang poems (lm_cmd.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "demo.h"
#include "lm_cmd.h"
#include "nw_train.h"
#include "reverse_train.h"

#ifdef ATTN_HAVE_MPI
#include <attn_mpi.h>
#endif

#define CMD "train"

static void print_usage(FILE *to);

static const char usage_models[] =
    "Usage: attn train nw [--epochs N] [--lr LR] [--seed S] [--out DIR]\n"
    "       attn train reverse [--epochs N] [--seed S] [--threads T] [--out DIR]\n"
    "                          [--train-size N] [--test-size N] [--mpi]\n"
    "       attn train lm [--corpus FILE]... [--epochs N] [--seed S] [--threads T]\n"
    "                     [--context N] [--positions P] [--out DIR]\n"
    "\n"
    "Trains a model with libattn's gradients and prints one progress line per\n"
    "epoch.\n"
    "\n"
    "  nw       D2L 10.2.4: the width w of the parametric Nadaraya-Watson\n"
    "           regression on D2L's 50 noisy samples of y = 2 sin(x) + x^0.8, each\n"
    "           input attending to the other 49; loss: sum of squared errors;\n"
    "           full-batch SGD.\n"
    "  reverse  UvA tutorial 6: a Transformer that reads 16 digits back reversed.\n"
    "           One-hot input, linear to d_model 32, sinusoidal positions, one\n"
    "           libattn encoder layer (1 head, dim_feedforward 64, post-norm, ReLU,\n"
    "           dropout 0), output network 32-32-10 with a layer norm;\n"
    "           cross-entropy, Adam lr 5e-4 with 50 warm-up steps and cosine decay,\n"
    "           gradient norm clipped to 5, batches of 128.\n"
    "\n"
    "  lm       a character-level GPT of Tang poems: token embedding times\n"
    "           sqrt(d_model) plus the sinusoidal encoding of each character's\n"
    "           place in its clause, 4 causal pre-norm libattn encoder layers\n"
    "           (d_model 128, 4 heads, dim_feedforward 512, GELU), a final layer\n"
    "           norm and a linear head; context 128 characters. Next-character\n"
    "           cross-entropy, AdamW (lr 1e-3, weight decay 0.1) with warm-up and\n"
    "           cosine decay, gradient norm clipped to 1, dropout 0.1, half the\n"
    "           input characters replaced by random ones, batches of 32 windows\n"
    "           that start where a poem (or, in a long poem, a line) starts; 5%\n"
    "           of the poems held out, the epoch with the lowest validation loss\n"
    "           kept. See docs/text-generation.md.\n"
    "\n"
    ;

/* Split in parts: ISO C's string literal limit is 4095 characters. */
static const char usage_lm[] =
    "Options of lm:\n"
    "  --corpus FILE    a fortune file of poems (entries between lines of \"%\";\n"
    "                   repeat for more). Default: fortunes-zh's tang300 and\n"
    "                   song100 in /usr/share/games/fortunes\n"
    "  --epochs N       epochs (default 40; 1 to 10000)\n"
    "  --seed S         the split, the initial weights, the batches and dropout\n"
    "                   (default 42)\n"
    "  --threads T      libattn threads (default 0: all cores)\n"
    "  --context N      the longest window, in characters (default 128: a whole\n"
    "                   poem; 8 to 8192)\n"
    "  --dropout P      dropout in every layer, in training (default 0.1)\n"
    "  --input-noise P  replace this share of the input characters by random ones\n"
    "                   in training (not line breaks or clause marks; the targets\n"
    "                   stay) (default 0.5)\n"
    "  --layers N       encoder layers (default 4)\n"
    "  --keep K         which epoch's parameters to keep: 'best' (the lowest\n"
    "                   validation loss; the default) or 'last'\n"
    "  --positions P    what the positional encoding encodes: 'window' (D2L's:\n"
    "                   the position in the window), 'line' (the column in the\n"
    "                   line), 'clause' (the place in the clause, restarting\n"
    "                   after each of the marks of the clauses) or 'grid' (the\n"
    "                   clause's index in the line and the place in the clause,\n"
    "                   each on half the features) (default clause)\n"
    "  --out DIR        write the checkpoint (config.json, vocab.json, one .npy per\n"
    "                   tensor named by its PyTorch state_dict key) of the epoch\n"
    "                   with the lowest validation loss, and lm-training-loss.svg\n"
    "The last line is \"validation loss: L nats/char (add-one unigram: U)\".\n"
    "\n"
    ;

static const char usage_rest[] =
    "Options of reverse:\n"
    "  --epochs N       epochs (default 10, as the tutorial; 1 to 1000)\n"
    "  --seed S         draws the data, the initial weights and the batches\n"
    "                   (default 42)\n"
    "  --threads T      libattn threads (default 0: all cores)\n"
    "  --out DIR        also draw reverse-training-loss.svg (the loss per step)\n"
    "                   and reverse-attention.svg (the trained attention map of\n"
    "                   the first test sequence: the anti-diagonal) in DIR, with\n"
    "                   the map's weights as reverse-attention.npy [1, 16, 16]\n"
    "  --train-size N   training sequences (default 50000; at least 128)\n"
    "  --test-size N    test sequences (default 1000)\n"
    "  --mpi            data-parallel over the processes of mpirun (a build with\n"
    "                   libattn-mpi): each of P processes (P divides 128) takes\n"
    "                   128/P sequences of every batch and the gradients are\n"
    "                   averaged before each step; process 0 prints and writes\n"
    "                   --out's files (mpirun -np 2 attn train reverse --mpi)\n"
    "The last line is \"test accuracy: NN.NN%\" (the share of test tokens\n"
    "predicted right).\n"
    "\n"
    "Options of nw:\n"
    "  --epochs N   epochs (default 5, as D2L; 1 to 100000)\n"
    "  --lr LR      learning rate (default 0.5, as D2L)\n"
    "  --seed S     draws the initial w from U[0, 1) (default 7, the demo's)\n"
    "  --out DIR    also draw nw-training-loss.svg and nw-trained-fit.svg in DIR\n"
    "  -h, --help   show this help\n"
    "\n"
    "The last line is \"learnt w: W\". Exit status: 0 on success, 1 if training\n"
    "fails or a picture cannot be written, 2 for a usage error.\n";

static void print_usage(FILE *to)
{
    fputs(usage_models, to);
    fputs(usage_lm, to);
    fputs(usage_rest, to);
}

typedef struct progress {
    int width;  /* digits of the epoch count */
} progress;

static void print_progress(void *arg, int epoch, int epochs, double loss, float w)
{
    const progress *p = arg;
    printf("epoch %*d/%d: loss %.6f, w %.6f\n", p->width, epoch, epochs, loss, (double)w);
    fflush(stdout);
}

static int train_nw(int argc, char **argv)
{
    const char *epochs_s = NULL, *lr_s = NULL, *seed_s = NULL, *dir = NULL;
    const cli_option opts[] = {{"--epochs", NULL, &epochs_s}, {"--lr", NULL, &lr_s},
                               {"--seed", NULL, &seed_s}, {"--out", "-o", &dir}};
    const char *positional[1];
    int n_positional, help;
    int rc = cli_parse(CMD, argc, argv, opts, 4, positional, 0, &n_positional, &help);
    if (rc != CLI_OK)
        return rc;
    if (help) {
        print_usage(stdout);
        return CLI_OK;
    }
    int epochs = 5, seed = 7;
    double lr = 0.5;
    if (epochs_s && (rc = cli_parse_int(CMD, "--epochs", epochs_s, &epochs)) != CLI_OK)
        return rc;
    if (lr_s && (rc = cli_parse_double(CMD, "--lr", lr_s, &lr)) != CLI_OK)
        return rc;
    if (seed_s && (rc = cli_parse_int(CMD, "--seed", seed_s, &seed)) != CLI_OK)
        return rc;
    if (epochs < 1 || epochs > 100000)
        return cli_usage_error(CMD, "--epochs: %d is not in 1 .. 100000", epochs);
    if (!(lr > 0.0 && lr < 1e6))
        return cli_usage_error(CMD, "--lr: %g is not a positive learning rate below 1e6", lr);
    if (seed < 0)
        return cli_usage_error(CMD, "--seed: %d is negative", seed);
    if (dir && (dir[0] == '\0' || (rc = demo_make_directories(dir)) != CLI_OK))
        return dir[0] == '\0' ? cli_usage_error(CMD, "--out: the directory name is empty") : rc;

    double *losses = malloc((size_t)epochs * sizeof *losses);
    if (!losses)
        return cli_refuse(CMD, "out of memory");
    demo_env env = {NULL, dir};
    attn_status st = attn_context_create(&env.ctx);
    nw_data d;
    nw_make_data(&d, 42);
    float w = nw_initial_w((unsigned long long)seed);
    progress p = {0};
    for (int e = epochs; e > 0; e /= 10)
        p.width++;
    if (st == ATTN_OK) {
        printf("attn train nw: D2L 10.2.4, %d samples, SGD lr %g, %d epochs, initial w %.6f\n",
               NW_TRAIN, lr, epochs, (double)w);
        st = nw_train(env.ctx, &d, &w, epochs, (float)lr, losses, print_progress, &p);
    }
    if (st != ATTN_OK)
        rc = cli_library_error(CMD, "nw", st);
    if (rc == CLI_OK && dir) {
        float fit[NW_TEST];
        st = attn_nadaraya_watson(env.ctx, NW_TEST, NW_TRAIN, d.x_test, d.x_train, d.y_train, w,
                                  fit, NULL);
        rc = st != ATTN_OK ? cli_library_error(CMD, "nw fit", st)
                           : nw_save_loss_curve(&env, "nw-training-loss.svg", losses, epochs);
        if (rc == CLI_OK)
            rc = nw_save_fit(&env, "nw-trained-fit.svg", &d, fit, w);
    }
    if (rc == CLI_OK)
        printf("learnt w: %.6f\n", (double)w);
    attn_context_destroy(env.ctx);
    free(losses);
    return rc;
}

/* ---- reverse -------------------------------------------------------------------- */

static int parse_size(const char *option, const char *text, int64_t min, int64_t *value)
{
    int v, rc = cli_parse_int(CMD, option, text, &v);
    if (rc != CLI_OK)
        return rc;
    if (v < min || v > 10000000)
        return cli_usage_error(CMD, "%s: %d is not in %lld .. 10000000", option, v,
                               (long long)min);
    *value = v;
    return CLI_OK;
}

#ifdef ATTN_HAVE_MPI
/* reverse_allreduce_fn over MPI_COMM_WORLD: the gradient's and the loss's
 * means, the correct tokens' sum. */
static attn_status allreduce_world(void *arg, float *grads, int64_t count, double stats[2])
{
    (void)arg;
    attn_status st = attn_mpi_allreduce_mean(MPI_COMM_WORLD, grads, count);
    if (st != ATTN_OK)
        return st;
    int ranks = 1;
    double sums[2];
    if (MPI_Comm_size(MPI_COMM_WORLD, &ranks) != MPI_SUCCESS ||
        MPI_Allreduce(stats, sums, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
        return attn_set_error(ATTN_ERR_COMMUNICATION, "attn train reverse --mpi",
                              "MPI_Allreduce of the loss failed");
    stats[0] = sums[0] / ranks, stats[1] = sums[1];
    return ATTN_OK;
}
#endif

/* --mpi: MPI_Init, and this process's share of every batch; processes but
 * the first print nothing and write no file. Returns CLI_OK or an error. */
static int start_data_parallel(reverse_config *c, const char **dir, int *started)
{
#ifdef ATTN_HAVE_MPI
    int argc = 0;
    char **argv = NULL;
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS)
        return cli_usage_error(CMD, "--mpi: MPI_Init failed");
    *started = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->ranks);
    if (REVERSE_BATCH % c->ranks != 0)
        return cli_usage_error(CMD, "--mpi: %d processes do not divide the batch of %d",
                               c->ranks, REVERSE_BATCH);
    c->allreduce = allreduce_world;
    if (c->rank != 0) {
        *dir = NULL;
        if (!freopen("/dev/null", "w", stdout))
            return cli_usage_error(CMD, "--mpi: cannot silence process %d", c->rank);
    }
    return CLI_OK;
#else
    (void)c, (void)dir, (void)started;
    return cli_usage_error(CMD, "--mpi: this attn was built without libattn-mpi (install "
                           "libopenmpi-dev, then meson setup -Dmpi=enabled)");
#endif
}

static void end_data_parallel(int started)
{
#ifdef ATTN_HAVE_MPI
    if (started)
        MPI_Finalize();
#else
    (void)started;
#endif
}

static int train_reverse(int argc, char **argv)
{
    const char *epochs_s = NULL, *seed_s = NULL, *threads_s = NULL, *dir = NULL;
    const char *train_s = NULL, *test_s = NULL;
    int mpi = 0;
    const cli_option opts[] = {{"--epochs", NULL, &epochs_s}, {"--seed", NULL, &seed_s},
                               {"--threads", NULL, &threads_s}, {"--out", "-o", &dir},
                               {"--train-size", NULL, &train_s}, {"--test-size", NULL, &test_s}};
    const cli_flag flags[] = {{"--mpi", &mpi}};
    const cli_options o = {opts, 6, flags, 1, NULL, 0};
    const char *positional[1];
    int n_positional, help;
    int rc = cli_parse_all(CMD, argc, argv, &o, positional, 0, &n_positional, &help);
    if (rc != CLI_OK)
        return rc;
    if (help) {
        print_usage(stdout);
        return CLI_OK;
    }
    reverse_config c = {.epochs = 10, .seed = 42, .train_size = 50000, .test_size = 1000};
    int seed = 42, threads = 0;
    if (epochs_s && (rc = cli_parse_int(CMD, "--epochs", epochs_s, &c.epochs)) != CLI_OK)
        return rc;
    if (seed_s && (rc = cli_parse_int(CMD, "--seed", seed_s, &seed)) != CLI_OK)
        return rc;
    if (threads_s && (rc = cli_parse_int(CMD, "--threads", threads_s, &threads)) != CLI_OK)
        return rc;
    if ((train_s && (rc = parse_size("--train-size", train_s, REVERSE_BATCH, &c.train_size))) ||
        (test_s && (rc = parse_size("--test-size", test_s, 1, &c.test_size))))
        return rc;
    if (c.epochs < 1 || c.epochs > 1000)
        return cli_usage_error(CMD, "--epochs: %d is not in 1 .. 1000", c.epochs);
    if (seed < 0)
        return cli_usage_error(CMD, "--seed: %d is negative", seed);
    if (threads < 0 || threads > 1024)
        return cli_usage_error(CMD, "--threads: %d is not in 0 .. 1024", threads);
    c.seed = (uint64_t)seed;
    int started = 0;
    if (mpi && (rc = start_data_parallel(&c, &dir, &started)) != CLI_OK) {
        end_data_parallel(started);
        return rc;
    }
    if (dir && (dir[0] == '\0' || (rc = demo_make_directories(dir)) != CLI_OK)) {
        end_data_parallel(started);
        return dir[0] == '\0' ? cli_usage_error(CMD, "--out: the directory name is empty") : rc;
    }

    demo_env env = {NULL, dir};
    attn_status st = attn_context_create(&env.ctx);
    if (st == ATTN_OK)
        st = attn_context_set_num_threads(env.ctx, threads);
    if (st != ATTN_OK) {
        attn_context_destroy(env.ctx);
        end_data_parallel(started);
        return cli_library_error(CMD, "reverse", st);
    }
    rc = reverse_report(&env, &c, "attn train reverse");
    attn_context_destroy(env.ctx);
    end_data_parallel(started);
    return rc;
}

/* ---- lm ------------------------------------------------------------------------- */

enum { MAX_CORPUS = 64 };

static int train_lm(int argc, char **argv)
{
    const char *epochs_s = NULL, *seed_s = NULL, *threads_s = NULL, *dir = NULL;
    const char *positions = NULL, *context_s = NULL, *keep = NULL, *dropout_s = NULL;
    const char *noise_s = NULL, *layers_s = NULL;
    const char *files[MAX_CORPUS];
    int n_files = 0;
    const cli_option opts[] = {{"--epochs", NULL, &epochs_s},
                               {"--seed", NULL, &seed_s},
                               {"--threads", NULL, &threads_s},
                               {"--out", "-o", &dir},
                               {"--positions", NULL, &positions},
                               {"--context", NULL, &context_s},
                               {"--keep", NULL, &keep},
                               {"--dropout", NULL, &dropout_s},
                               {"--input-noise", NULL, &noise_s},
                               {"--layers", NULL, &layers_s}};
    const cli_list lists[] = {{"--corpus", files, &n_files, MAX_CORPUS}};
    const cli_options o = {opts, 10, NULL, 0, lists, 1};
    const char *positional[1];
    int n_positional, help;
    int rc = cli_parse_all(CMD, argc, argv, &o, positional, 0, &n_positional, &help);
    if (rc != CLI_OK)
        return rc;
    if (help) {
        print_usage(stdout);
        return CLI_OK;
    }
    lm_train_config tc = lm_train_config_default();
    int seed = 42, threads = 0, context = 128;
    if ((epochs_s && (rc = cli_parse_int(CMD, "--epochs", epochs_s, &tc.epochs)) != CLI_OK) ||
        (seed_s && (rc = cli_parse_int(CMD, "--seed", seed_s, &seed)) != CLI_OK) ||
        (threads_s && (rc = cli_parse_int(CMD, "--threads", threads_s, &threads)) != CLI_OK) ||
        (context_s && (rc = cli_parse_int(CMD, "--context", context_s, &context)) != CLI_OK))
        return rc;
    if (dropout_s && (rc = cli_parse_double(CMD, "--dropout", dropout_s, &tc.dropout)) != CLI_OK)
        return rc;
    if (!(tc.dropout >= 0.0 && tc.dropout < 1.0))
        return cli_usage_error(CMD, "--dropout: %g is not in [0, 1)", tc.dropout);
    if (noise_s && (rc = cli_parse_double(CMD, "--input-noise", noise_s, &tc.input_noise)))
        return rc;
    if (!(tc.input_noise >= 0.0 && tc.input_noise < 1.0))
        return cli_usage_error(CMD, "--input-noise: %g is not in [0, 1)", tc.input_noise);
    int layers = 4;
    if (layers_s && (rc = cli_parse_int(CMD, "--layers", layers_s, &layers)) != CLI_OK)
        return rc;
    if (layers < 1 || layers > 64)
        return cli_usage_error(CMD, "--layers: %d is not in 1 .. 64", layers);
    if (keep && strcmp(keep, "best") != 0 && strcmp(keep, "last") != 0)
        return cli_usage_error(CMD, "--keep: '%s' is not best or last", keep);
    tc.keep_last = keep && strcmp(keep, "last") == 0;
    if (context < 8 || context > 8192)
        return cli_usage_error(CMD, "--context: %d is not in 8 .. 8192", context);
    if (tc.epochs < 1 || tc.epochs > 10000)
        return cli_usage_error(CMD, "--epochs: %d is not in 1 .. 10000", tc.epochs);
    if (seed < 0)
        return cli_usage_error(CMD, "--seed: %d is negative", seed);
    if (threads < 0 || threads > 1024)
        return cli_usage_error(CMD, "--threads: %d is not in 0 .. 1024", threads);
    if (dir && dir[0] == '\0')
        return cli_usage_error(CMD, "--out: the directory name is empty");
    lm_positions pos = LM_POSITIONS_CLAUSE;
    if (positions) {
        int k = 0;
        while (k < LM_POSITIONS_COUNT && strcmp(positions, lm_positions_names[k]) != 0)
            k++;
        if (k == LM_POSITIONS_COUNT)
            return cli_usage_error(CMD, "--positions: '%s' is not window, line, clause or grid",
                                   positions);
        pos = (lm_positions)k;
    }
    tc.seed = (uint64_t)seed;
    if (n_files == 0) {
        for (int f = 0; f < LM_DEFAULT_CORPUS; f++)
            files[n_files++] = lm_default_corpus[f];
    }
    attn_context *ctx = NULL;
    attn_status st = attn_context_create(&ctx);
    if (st == ATTN_OK)
        st = attn_context_set_num_threads(ctx, threads);
    rc = st == ATTN_OK ? lm_train_report(ctx, files, n_files, &tc, pos, context, layers, dir)
                       : cli_library_error(CMD, "lm", st);
    attn_context_destroy(ctx);
    return rc;
}

int cmd_train(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (strcmp(argv[1], "nw") == 0)
        return train_nw(argc - 1, argv + 1);
    if (strcmp(argv[1], "reverse") == 0)
        return train_reverse(argc - 1, argv + 1);
    if (strcmp(argv[1], "lm") == 0)
        return train_lm(argc - 1, argv + 1);
    return cli_usage_error(CMD, "unknown model '%s' (models: nw, reverse, lm)", argv[1]);
}
