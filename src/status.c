/*
 * status.c — the one error model: status names and the thread-local detail
 * message behind attn_last_error().
 */
#include <stdarg.h>
#include <stdio.h>

#include "attn_internal.h"

/* Long enough for a function name and two or three numbers; longer messages
 * are cut, never overflowed (vsnprintf). */
#define ATTN_ERROR_CAPACITY 256

static _Thread_local char last_error[ATTN_ERROR_CAPACITY];

const char *attn_status_string(attn_status status)
{
    switch (status) {
    case ATTN_OK:                   return "ATTN_OK: success";
    case ATTN_ERR_NULL_POINTER:     return "ATTN_ERR_NULL_POINTER: a required pointer is NULL";
    case ATTN_ERR_INVALID_ARGUMENT: return "ATTN_ERR_INVALID_ARGUMENT: a value outside its domain";
    case ATTN_ERR_SHAPE_MISMATCH:   return "ATTN_ERR_SHAPE_MISMATCH: sizes inconsistent together";
    case ATTN_ERR_SIZE_OVERFLOW:    return "ATTN_ERR_SIZE_OVERFLOW: a buffer size does not fit in size_t";
    case ATTN_ERR_OUT_OF_MEMORY:    return "ATTN_ERR_OUT_OF_MEMORY: allocation failed";
    case ATTN_ERR_UNSUPPORTED:      return "ATTN_ERR_UNSUPPORTED: not implemented by this build";
    case ATTN_ERR_STATE:            return "ATTN_ERR_STATE: object not fully configured";
    case ATTN_ERR_COMMUNICATION:    return "ATTN_ERR_COMMUNICATION: a message passing call failed";
    }
    return "unknown attn_status";
}

const char *attn_last_error(void)
{
    return last_error;
}

attn_status attn_fail(attn_status status, const char *func, const char *fmt, ...)
{
    int used = snprintf(last_error, sizeof last_error, "%s: ", func);
    if (used < 0 || (size_t)used >= sizeof last_error)
        return status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error + used, sizeof last_error - (size_t)used, fmt, ap);
    va_end(ap);
    return status;
}

attn_status attn_set_error(attn_status status, const char *func, const char *message)
{
    /* Copies first: message may be attn_last_error() itself. */
    char copy[ATTN_ERROR_CAPACITY], name[ATTN_ERROR_CAPACITY];
    snprintf(copy, sizeof copy, "%s", message ? message : "");
    snprintf(name, sizeof name, "%s", func ? func : "");
    return attn_fail(status, name, "%s", copy);
}
