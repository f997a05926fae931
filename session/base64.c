/* base64 (RFC 4648 section 4, standard alphabet, with padding).
 *
 * The decoder is strict on purpose: the JSON codec uses it on provider input, and accepting only
 * the canonical encoding (length a multiple of 4, padding only at the end, zero pad bits, no
 * whitespace) keeps "count must equal the decoded length" meaningful and makes encode/decode a
 * bijection.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>

#include "session.h"

static const char base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The 6-bit value of each alphabet character, -1 for every other byte ('=' and whitespace too).
 * A table, because decoding sits on the read path of every JSON provider. */
#define B64_ROW_INVALID -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1
static const signed char base64_values[256] = {
    B64_ROW_INVALID,
    B64_ROW_INVALID,
    -1,
    -1,
    -1,
    -1,
    -1,
    -1,
    -1,
    -1,
    -1,
    -1,
    -1,
    62,
    -1,
    -1,
    -1,
    63,
    52,
    53,
    54,
    55,
    56,
    57,
    58,
    59,
    60,
    61,
    -1,
    -1,
    -1,
    -1,
    -1,
    -1,
    -1,
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    13,
    14,
    15,
    16,
    17,
    18,
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    -1,
    -1,
    -1,
    -1,
    -1,
    -1,
    26,
    27,
    28,
    29,
    30,
    31,
    32,
    33,
    34,
    35,
    36,
    37,
    38,
    39,
    40,
    41,
    42,
    43,
    44,
    45,
    46,
    47,
    48,
    49,
    50,
    51,
    -1,
    -1,
    -1,
    -1,
    -1,
    B64_ROW_INVALID,
    B64_ROW_INVALID,
    B64_ROW_INVALID,
    B64_ROW_INVALID,
    B64_ROW_INVALID,
    B64_ROW_INVALID,
    B64_ROW_INVALID,
    B64_ROW_INVALID,
};

size_t base64_encoded_size(size_t n)
{
    /* Written without n + 2 so that it cannot wrap for any n below SIZE_MAX / 4 * 3. */
    return (n / 3 + (n % 3 != 0)) * 4;
}

void base64_encode(const void *data, size_t n, char *out)
{
    const unsigned char *in = data;
    size_t i;

    for (i = 0; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = base64_alphabet[v >> 18];
        *out++ = base64_alphabet[(v >> 12) & 63];
        *out++ = base64_alphabet[(v >> 6) & 63];
        *out++ = base64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *out++ = base64_alphabet[v >> 18];
        *out++ = base64_alphabet[(v >> 12) & 63];
        *out++ = '=';
        *out++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *out++ = base64_alphabet[v >> 18];
        *out++ = base64_alphabet[(v >> 12) & 63];
        *out++ = base64_alphabet[(v >> 6) & 63];
        *out++ = '=';
    }
}

/* Number of '=' ending a quantum-aligned text: 0, 1 or 2. Any other '=' ("A===", "Zg==Zm9v") is
 * not in the alphabet and fails when its quantum is decoded. */
static int base64_padding(const char *text, size_t n)
{
    if (n == 0 || text[n - 1] != '=')
        return 0;
    return text[n - 2] == '=' ? 2 : 1;
}

/* Decodes the 4 characters at q into v; -1 when one of the first `chars` is not in the alphabet. */
static int base64_quantum(const char *q, int chars, uint32_t *v)
{
    const unsigned char *u = (const unsigned char *)q;
    int a = base64_values[u[0]], b = base64_values[u[1]];
    int c = chars > 2 ? base64_values[u[2]] : 0;
    int d = chars > 3 ? base64_values[u[3]] : 0;
    if ((a | b | c | d) < 0)
        return -1;
    *v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
    return 0;
}

long base64_decode(const char *text, size_t n, void *out, size_t cap)
{
    unsigned char *dst = out;
    size_t decoded, i;
    int pad;

    if (n % 4 != 0)
        return -EINVAL;
    pad = base64_padding(text, n);
    decoded = n / 4 * 3 - (size_t)pad;
    if (decoded > cap || decoded > LONG_MAX)
        return -ENOBUFS;

    /* Every quantum but the last is four characters and three bytes: no padding to look at. */
    for (i = 0; i + 4 < n; i += 4) {
        const unsigned char *q = (const unsigned char *)text + i;
        int a = base64_values[q[0]], b = base64_values[q[1]];
        int c = base64_values[q[2]], d = base64_values[q[3]];
        if ((a | b | c | d) < 0)
            return -EINVAL;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        dst[0] = (unsigned char)(v >> 16);
        dst[1] = (unsigned char)(v >> 8);
        dst[2] = (unsigned char)v;
        dst += 3;
    }
    for (; i < n; i += 4) {
        bool last = i + 4 == n;
        int chars = last ? 4 - pad : 4;
        int bytes = chars - 1;
        uint32_t v;

        if (base64_quantum(text + i, chars, &v) < 0)
            return -EINVAL;
        /* Canonical form: the bits below the last byte a short quantum carries must be zero. */
        if (last && pad > 0 && (v & ((1u << (8 * pad)) - 1)) != 0)
            return -EINVAL;
        *dst++ = (unsigned char)(v >> 16);
        if (bytes > 1)
            *dst++ = (unsigned char)(v >> 8);
        if (bytes > 2)
            *dst++ = (unsigned char)v;
    }
    return (long)decoded;
}
