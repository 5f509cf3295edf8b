/*
 * version.c — the runtime library's version, to compare with the
 * ATTN_VERSION_* macros of the header a program was compiled with.
 */
#include "attn_internal.h"

unsigned attn_version_number(void)
{
    return ATTN_VERSION_NUMBER;
}

const char *attn_version_string(void)
{
    return ATTN_VERSION_STRING;
}
