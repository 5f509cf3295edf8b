/*
 * utf8.c — recognising UTF-8 (RFC 3629, table 3-7 of the Unicode standard).
 */
#include "utf8.h"

size_t utf8_sequence_length(const unsigned char *s)
{
    unsigned c = s[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;  /* the second byte's range narrows for some leads */
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;  /* overlong */
        if (c == 0xED) hi = 0x9F;  /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;  /* overlong */
        if (c == 0xF4) hi = 0x8F;  /* beyond U+10FFFF */
    } else
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)  /* stops at the NUL: 0 is no continuation byte */
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

long long utf8_first_invalid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t len = s[i] ? utf8_sequence_length(s + i) : 0;
        if (len == 0 || len > n - i)
            return (long long)i;
        i += len;
    }
    return -1;
}
