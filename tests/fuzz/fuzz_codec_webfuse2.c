/* Fuzz target: the webfuse2 codec (session/codec_webfuse2.c), both directions' decoders.
 *
 * Input: 1 byte, the request type a response answers (its low 7 bits); 4 bytes big-endian, the
 * size that request asked for (read) or sent (write); then one message. The message is decoded as
 * a request (what a provider does) and as a response to that type (what the gateway does).
 * Whatever decodes must encode again, and encode(decode(x)) must be a fixed point: decoding and
 * encoding it once more gives the same bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "session.h"

#define PREFIX 5

/* A heap copy of exactly n bytes, so that AddressSanitizer sees any read past the end. */
static unsigned char *exact_copy(const void *data, size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    FUZZ_CHECK(p != NULL);
    if (n)
        memcpy(p, data, n);
    return p;
}

static void check_fixed_point_request(const struct codec_wf2_request *req)
{
    size_t len, len2;
    FUZZ_CHECK(codec_wf2_encode_request(NULL, 0, &len, req) == -ENOBUFS);
    unsigned char *first = malloc(len);
    FUZZ_CHECK(first != NULL);
    FUZZ_CHECK(codec_wf2_encode_request(first, len, &len2, req) == 0 && len2 == len);
    struct codec_wf2_request again;
    FUZZ_CHECK(codec_wf2_decode_request(first, len, &again) == 0);
    unsigned char *second = malloc(len);
    FUZZ_CHECK(second != NULL);
    FUZZ_CHECK(codec_wf2_encode_request(second, len, &len2, &again) == 0);
    FUZZ_CHECK(len2 == len && memcmp(first, second, len) == 0);
    free(first);
    free(second);
}

static void fuzz_request(const unsigned char *msg, size_t n)
{
    struct codec_wf2_request req;
    int rc = codec_wf2_decode_request(msg, n, &req);
    FUZZ_CHECK(rc == 0 || rc == -ENOSYS || rc == -EBADMSG);
    codec_wf2_type_name(req.type);
    if (rc == 0)
        check_fixed_point_request(&req);
}

/* The decoded name list as the array the encoder takes; NULL when there are none. */
static struct codec_wf2_str *names_array(const struct codec_wf2_response *resp)
{
    if (resp->name_count == 0)
        return NULL;
    struct codec_wf2_str *names = calloc(resp->name_count, sizeof(*names));
    FUZZ_CHECK(names != NULL);
    struct codec_wf2_names walk = resp->name_list;
    size_t i = 0;
    while (codec_wf2_names_next(&walk, &names[i]))
        i++;
    FUZZ_CHECK(i == resp->name_count);
    return names;
}

/* The decoded READDIRPLUS entries as the array the encoder takes; NULL when there are none. */
static struct codec_wf2_dirent *dirents_array(const struct codec_wf2_response *resp)
{
    if (resp->entry_count == 0)
        return NULL;
    FUZZ_CHECK(resp->entry_count <= 0xffffffffu);
    struct codec_wf2_dirent *entries = calloc(resp->entry_count, sizeof(*entries));
    FUZZ_CHECK(entries != NULL);
    struct codec_wf2_dirents walk = resp->entry_list;
    size_t i = 0;
    while (codec_wf2_dirents_next(&walk, &entries[i]))
        i++;
    FUZZ_CHECK(i == resp->entry_count);
    return entries;
}

static void check_fixed_point_response(struct codec_wf2_response *resp, uint8_t expected,
                                       uint32_t size)
{
    struct codec_wf2_str *names = names_array(resp);
    resp->names = names;
    struct codec_wf2_dirent *entries = dirents_array(resp);
    resp->entries = entries;
    size_t len, len2;
    FUZZ_CHECK(codec_wf2_encode_response(NULL, 0, &len, resp) == -ENOBUFS);
    unsigned char *first = malloc(len);
    FUZZ_CHECK(first != NULL);
    FUZZ_CHECK(codec_wf2_encode_response(first, len, &len2, resp) == 0 && len2 == len);
    struct codec_wf2_response again;
    FUZZ_CHECK(codec_wf2_decode_response(first, len, expected, size, &again) == 0);
    struct codec_wf2_str *names2 = names_array(&again);
    again.names = names2;
    struct codec_wf2_dirent *entries2 = dirents_array(&again);
    again.entries = entries2;
    unsigned char *second = malloc(len);
    FUZZ_CHECK(second != NULL);
    FUZZ_CHECK(codec_wf2_encode_response(second, len, &len2, &again) == 0);
    FUZZ_CHECK(len2 == len && memcmp(first, second, len) == 0);
    free(names);
    free(names2);
    free(entries);
    free(entries2);
    free(first);
    free(second);
}

static void fuzz_response(const unsigned char *msg, size_t n, uint8_t expected, uint32_t size)
{
    struct codec_wf2_response resp;
    int rc = codec_wf2_decode_response(msg, n, expected, size, &resp);
    FUZZ_CHECK(rc == 0 || rc == -ENOSYS || rc == -EBADMSG);
    if (rc != 0)
        return;
    FUZZ_CHECK(resp.type == expected);
    if (expected == CODEC_WF2_READ) { /* never more than asked for */
        FUZZ_CHECK(resp.result <= 0 || (uint32_t)resp.result <= size);
        FUZZ_CHECK(resp.result <= 0 || resp.data.len == (size_t)resp.result);
    }
    if (expected == CODEC_WF2_READDIRPLUS) /* never more entries than asked for */
        FUZZ_CHECK(resp.entry_count <= size && (resp.entry_count > 0 || resp.cookie == 0));
    check_fixed_point_response(&resp, expected, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < PREFIX)
        return 0;
    uint8_t expected = data[0] & (uint8_t)~CODEC_WF2_RESPONSE;
    uint32_t asked =
        (uint32_t)data[1] << 24 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 8 | data[4];
    size_t n = size - PREFIX;
    unsigned char *msg = exact_copy(data + PREFIX, n);
    uint32_t id;
    uint8_t type;
    if (codec_wf2_decode_header(msg, n, &id, &type) == 0)
        codec_wf2_type_name(type);
    fuzz_request(msg, n);
    fuzz_response(msg, n, expected, asked);
    free(msg);
    return 0;
}
