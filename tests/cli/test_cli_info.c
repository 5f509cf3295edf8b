/*
 * test_cli_info.c — `attn info` prints attn_runtime_info()'s text verbatim
 * (API.md: what other programs read from the attn program), and refuses
 * arguments it does not take.
 *
 * usage: test_cli_info PATH/TO/attn
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include <attn.h>

#include "test_util.h"

static const char *attn_program;
/* Put before the program in run()'s command line ("taskset -c 0 "). */
static const char *run_prefix = "";

/* Runs "attn ARGS" through the shell; returns its stdout (malloc'd) and sets
 * *status to its exit status. */
static char *run(const char *args, int *status)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s'%s' %s 2>/dev/null", run_prefix, attn_program, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    size_t n;
    while ((n = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
    }
    out[len] = '\0';
    int rc = pclose(p);
    *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    return out;
}

static void prints_the_library_text(void **state)
{
    (void)state;
    if (tu_under_valgrind()) {
        /* the attn program may run natively beside this emulated process:
         * two CPUs, two texts */
        print_message("attn info: under Valgrind, whose cpuid differs: skipped\n");
        skip();
    }
    size_t n = attn_runtime_info(NULL, 0);
    char *want = malloc(n + 1);
    assert_non_null(want);
    attn_runtime_info(want, n + 1);
    int status;
    char *got = run("info", &status);
    assert_int_equal(status, 0);
    assert_string_equal(got, want);
    free(got);
    free(want);
}

static void help_and_usage_errors(void **state)
{
    (void)state;
    int status;
    char *out = run("info --help", &status);
    assert_int_equal(status, 0);
    assert_non_null(strstr(out, "Usage: attn info"));
    free(out);
    free(run("info extra", &status));
    assert_int_equal(status, 2);
    free(run("info --frobnicate", &status));
    assert_int_equal(status, 2);
    out = run("--help", &status);
    assert_non_null(strstr(out, "  info "));
    free(out);
}

/* A process pinned to one core (taskset; mpirun binds each of 2 ranks on 2
 * cores so) uses one thread by default, as OpenBLAS does: one thread per
 * online core would share that core. */
static void affinity_narrows_the_threads(void **state)
{
    (void)state;
    if (system("taskset -c 0 true >/dev/null 2>&1") != 0) {
        print_message("taskset cannot pin to core 0 here: skipped\n");
        skip();
    }
    int status;
    run_prefix = "taskset -c 0 ";
    char *out = run("info", &status);
    run_prefix = "";
    assert_int_equal(status, 0);
    if (!strstr(out, "\nthreads: 1\n"))
        fail_msg("taskset -c 0 attn info: no line \"threads: 1\" in:\n%s", out);
    free(out);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_cli_info PATH/TO/attn\n");
        return 2;
    }
    attn_program = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(prints_the_library_text),
        cmocka_unit_test(help_and_usage_errors),
        cmocka_unit_test(affinity_narrows_the_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
