/* Fuzz target: the JSON protocol codec (session/codec_json.c), both sides.
 *
 * The input is one message as it arrives in a websocket frame. Every decoder runs on it: what the
 * gateway decodes (a provider's authenticate and add_filesystem, the results of lookup, getattr,
 * open, read and readdir) and what a provider decodes (the gateway's requests, the
 * filesystem_detached notification). A request the provider side accepts must survive the trip
 * through the gateway's encoder unchanged, as must read data through the provider's encoder.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "session.h"

/* Large enough for any read the fuzzer can build, so that the round trip below never runs out. */
#define READ_CAP (64 * 1024)
#define ENCODE_CAP (256 * 1024)

static int count_entry(void *user, const char *name, uint64_t ino, const struct stat *attr)
{
    (void)ino;
    /* Attributes are only reported for what JSON can describe. */
    FUZZ_CHECK(!attr || S_ISREG(attr->st_mode) || S_ISDIR(attr->st_mode));
    FUZZ_CHECK(name != NULL);
    (void)strlen(name);
    (*(size_t *)user)++;
    return 0;
}

static void gateway_side(const struct codec_json_msg *msg)
{
    const char *a, *b, *c;
    struct stat st;
    uint64_t handle;
    static unsigned char data[READ_CAP];
    size_t len, entries = 0;

    codec_json_decode_authenticate(msg, &a, &b, &c);
    codec_json_decode_add_filesystem(msg, &a);
    codec_json_decode_attr(msg, &st);
    codec_json_decode_open(msg, &handle);
    codec_json_decode_readdir(msg, count_entry, &entries);
    /* A small buffer too: data that does not fit must be refused, not written past the end. */
    if (codec_json_decode_read(msg, data, 16, &len) == 0)
        FUZZ_CHECK(len <= 16);
    if (codec_json_decode_read(msg, data, sizeof(data), &len) != 0)
        return;
    /* The provider's encoder and the gateway's decoder agree on every byte string. */
    static char text[ENCODE_CAP];
    static unsigned char again[READ_CAP];
    size_t text_len, again_len;
    struct codec_json_msg *copy;
    if (codec_json_encode_read_result(text, sizeof(text), &text_len, 1, data, len) != 0)
        return;
    FUZZ_CHECK(codec_json_parse(text, text_len, &copy) == 0);
    FUZZ_CHECK(codec_json_decode_read(copy, again, sizeof(again), &again_len) == 0);
    FUZZ_CHECK(again_len == len && memcmp(again, data, len) == 0);
    codec_json_msg_free(copy);
}

/* Encodes a request as the gateway would; 0 or the encoder's error. */
static int encode(const struct codec_json_msg *msg, const char *fs,
                  const struct fusebridge_request *req, char *buf, size_t *len)
{
    return codec_json_encode_request(buf, ENCODE_CAP, len, codec_json_msg_id(msg), fs, req);
}

static void provider_side(const struct codec_json_msg *msg)
{
    const char *fs, *name;
    struct fusebridge_request req;

    codec_json_decode_filesystem_detached(msg, &name);
    if (codec_json_decode_request(msg, &fs, &req) != 0)
        return;
    /* encode(decode(x)) is a fixed point: decoding it again and encoding gives the same bytes. */
    static char first[ENCODE_CAP], second[ENCODE_CAP];
    size_t first_len, second_len;
    if (encode(msg, fs, &req, first, &first_len) != 0)
        return; /* e.g. a negative id, which the gateway never sends */
    struct codec_json_msg *copy;
    const char *fs2;
    struct fusebridge_request req2;
    FUZZ_CHECK(codec_json_parse(first, first_len, &copy) == 0);
    FUZZ_CHECK(codec_json_decode_request(copy, &fs2, &req2) == 0);
    FUZZ_CHECK(encode(copy, fs2, &req2, second, &second_len) == 0);
    FUZZ_CHECK(first_len == second_len && memcmp(first, second, first_len) == 0);
    codec_json_msg_free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct codec_json_msg *msg;
    if (codec_json_parse(data, size, &msg) != 0)
        return 0;
    codec_json_msg_kind(msg);
    codec_json_msg_id(msg);
    const char *method = codec_json_msg_method(msg);
    if (method)
        (void)strlen(method);
    codec_json_status_to_errno(codec_json_msg_error_status(msg));
    gateway_side(msg);
    provider_side(msg);
    codec_json_msg_free(msg);
    return 0;
}
