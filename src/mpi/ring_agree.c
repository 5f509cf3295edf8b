/*
 * ring_agree.c — how the ranks of a collective call agree on its status
 * before any message of the call is sent: a rank whose arguments are wrong
 * must not leave the others waiting for its shard, so every rank returns
 * the first failing rank's status and message.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ring_internal.h"

/* As attn_last_error()'s buffer: the longest message libattn keeps. */
#define MESSAGE_CAPACITY 256

attn_status ring_fail(attn_status status, const char *func, const char *fmt, ...)
{
    char message[MESSAGE_CAPACITY];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    return attn_set_error(status, func, message);
}

attn_status ring_mpi_fail(int code, const char *func, const char *call)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "MPI error %d", code);
    return ring_fail(ATTN_ERR_COMMUNICATION, func, "%s failed: %s", call, text);
}

int ring_count(int64_t n)
{
    return n >= 0 && n <= INT_MAX ? (int)n : -1;
}

/* The ring's calls, numbered in this list: ranks in different calls must
 * not go on exchanging shards. Any other call (create, the all-reduce) is 0. */
static const char *const ring_calls[] = {
    "attn_mpi_ring_forward", "attn_mpi_ring_backward",
    "attn_mpi_ring_mha_forward", "attn_mpi_ring_mha_backward",
};

/* Which collective call func is. */
static int call_of(const char *func)
{
    for (int i = 0; i < (int)(sizeof ring_calls / sizeof ring_calls[0]); i++)
        if (strcmp(func, ring_calls[i]) == 0)
            return i + 1;
    return 0;
}

/* What every rank of a call must share, as non-negative integers to
 * compare: the call, the ring's layout, causal, its scale's bits (sign
 * apart), and the caller's fingerprint in three pieces. */
#define SETTINGS 8
static void settings_of(const attn_mpi_ring *ring, const char *func, uint64_t fingerprint,
                        int out[SETTINGS])
{
    uint32_t bits = 0;
    if (ring)
        memcpy(&bits, &ring->scale, sizeof bits);
    out[0] = call_of(func);
    out[1] = ring ? (int)ring->layout : 0;
    out[2] = ring ? (int)ring->causal : 0;
    out[3] = (int)(bits & 0x7fffffffu);
    out[4] = (int)(bits >> 31);
    out[5] = (int)(fingerprint & 0x3fffff);
    out[6] = (int)((fingerprint >> 22) & 0x1fffff);
    out[7] = (int)(fingerprint >> 43);
}

attn_status ring_agree(MPI_Comm comm, const attn_mpi_ring *ring, attn_status local,
                       const char *func)
{
    return ring_agree_layer(comm, ring, local, func, 0);
}

attn_status ring_agree_layer(MPI_Comm comm, const attn_mpi_ring *ring, attn_status local,
                             const char *func, uint64_t fingerprint)
{
    int rank = 0;
    int rc = MPI_Comm_rank(comm, &rank);
    /* One MPI_MIN reduction finds the first failing rank, the smallest
     * settings and, through their negations, the largest. */
    int s[SETTINGS];
    settings_of(ring, func, fingerprint, s);
    int mine[1 + 2 * SETTINGS], all[1 + 2 * SETTINGS];
    mine[0] = local == ATTN_OK ? INT_MAX : rank;
    for (int i = 0; i < SETTINGS; i++)
        mine[1 + i] = s[i], mine[1 + SETTINGS + i] = -s[i];
    if (rc == MPI_SUCCESS)
        rc = MPI_Allreduce(mine, all, 1 + 2 * SETTINGS, MPI_INT, MPI_MIN, comm);
    if (rc != MPI_SUCCESS)
        return ring_mpi_fail(rc, func, "MPI_Allreduce");
    if (all[0] != INT_MAX) {
        /* The first failing rank tells its status and message. */
        struct {
            int status;
            char message[MESSAGE_CAPACITY];
        } report = {(int)local, ""};
        if (rank == all[0])
            snprintf(report.message, sizeof report.message, "%s", attn_last_error());
        rc = MPI_Bcast(&report, (int)sizeof report, MPI_BYTE, all[0], comm);
        if (rc != MPI_SUCCESS)
            return ring_mpi_fail(rc, func, "MPI_Bcast");
        report.message[sizeof report.message - 1] = '\0';
        /* "func: rank R: detail": the failing rank's "func: " prefix, when
         * its message has it, is said once. */
        const char *detail = report.message;
        size_t n = strlen(func);
        if (strncmp(detail, func, n) == 0 && strncmp(detail + n, ": ", 2) == 0)
            detail += n + 2;
        char text[MESSAGE_CAPACITY + 16];
        snprintf(text, sizeof text, "rank %d: %s", all[0], detail);
        return attn_set_error((attn_status)report.status, func, text);
    }
    if (all[1] != -all[1 + SETTINGS])
        return ring_fail(ATTN_ERR_STATE, func, "the ranks are in different calls (forward, "
                         "backward, the layer's or SDPA's): every rank must make the same "
                         "calls in order");
    static const char *const names[5] = {"", "layout", "causal setting", "scale", "scale"};
    for (int i = 1; i < 5; i++)
        if (ring && all[1 + i] != -all[1 + SETTINGS + i])
            return ring_fail(ATTN_ERR_STATE, func, "the ranks' rings have different %ss "
                             "(set each rank's ring the same way)", names[i]);
    for (int i = 5; i < SETTINGS; i++)
        if (all[1 + i] != -all[1 + SETTINGS + i])
            return ring_fail(ATTN_ERR_STATE, func, "the ranks' layers differ (parameters, "
                             "settings, or which gradients are asked for): every rank "
                             "must pass the same layer");
    return ATTN_OK;
}
