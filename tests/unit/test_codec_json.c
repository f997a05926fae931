/* Unit tests for the JSON codec (session/codec_json.c): every message in both directions, the
 * status/errno mapping, and a table of malformed inputs, one cmocka test per table row. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <jansson.h>

#include "session.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Room for every message in this file, plus a NUL the tests add to print mismatches as text. */
#define WIRE_CAP 4096

/* The buffer size the read decoder gets in the malformed table: "too large" rows send 17 bytes. */
#define READ_CAP 16

struct wire {
    char buf[WIRE_CAP + 1];
    size_t len;
};

/* ------------------------------------------------------------------------------------------------
 * Helpers
 * ----------------------------------------------------------------------------------------------*/

/* Asserts that an encoder returned 0 and wrote exactly `expected`. */
static void assert_wire(int rc, struct wire *w, const char *expected)
{
    assert_int_equal(rc, 0);
    assert_true(w->len <= WIRE_CAP);
    w->buf[w->len] = '\0';
    assert_string_equal(w->buf, expected);
    assert_int_equal(w->len, strlen(expected));
}

static struct codec_json_msg *parse_text(const char *text)
{
    struct codec_json_msg *msg = NULL;

    assert_int_equal(codec_json_parse(text, strlen(text), &msg), 0);
    assert_non_null(msg);
    return msg;
}

static struct codec_json_msg *parse_wire(const struct wire *w)
{
    struct codec_json_msg *msg = NULL;

    assert_int_equal(codec_json_parse(w->buf, w->len, &msg), 0);
    assert_non_null(msg);
    return msg;
}

/* What decode_readdir reported, copied so it outlives the message. */
#define LISTING_MAX 8

struct listing {
    size_t count;
    char names[LISTING_MAX][64];
    uint64_t inos[LISTING_MAX];
    bool has_attr[LISTING_MAX];
    struct stat attrs[LISTING_MAX];
    size_t fail_at; /* return -ENOMEM for this entry (1-based); 0 = never */
};

static int listing_add(void *user, const char *name, uint64_t ino, const struct stat *attr)
{
    struct listing *l = user;

    if (l->count >= LISTING_MAX || strlen(name) >= sizeof(l->names[0]))
        return -E2BIG;
    strcpy(l->names[l->count], name);
    l->inos[l->count] = ino;
    l->has_attr[l->count] = attr != NULL;
    if (attr)
        l->attrs[l->count] = *attr;
    l->count++;
    return l->count == l->fail_at ? -ENOMEM : 0;
}

static struct stat stat_garbage(void)
{
    struct stat st;

    memset(&st, 0xa5, sizeof(st));
    return st;
}

/* ------------------------------------------------------------------------------------------------
 * Status codes
 * ----------------------------------------------------------------------------------------------*/

static const struct {
    int status;
    int neg_errno;
} status_table[] = {
    {CODEC_JSON_GOOD, 0},
    {CODEC_JSON_BAD, -EIO},
    {CODEC_JSON_BAD_NOTIMPLEMENTED, -ENOSYS},
    {CODEC_JSON_BAD_TIMEOUT, -ETIMEDOUT},
    {CODEC_JSON_BAD_BUSY, -EBUSY},
    {CODEC_JSON_BAD_FORMAT, -EIO},
    {CODEC_JSON_BAD_NOENTRY, -ENOENT},
    {CODEC_JSON_BAD_ACCESS_DENIED, -EACCES},
};

static void status_to_errno_follows_the_protocol_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_SIZE(status_table); i++) {
        int got = codec_json_status_to_errno(status_table[i].status);
        if (got != status_table[i].neg_errno)
            fail_msg("status %d: expected %d, got %d", status_table[i].status,
                     status_table[i].neg_errno, got);
    }
}

static void status_to_errno_maps_unknown_codes_to_eio(void **state)
{
    (void)state;
    assert_int_equal(codec_json_status_to_errno(6), -EIO);
    assert_int_equal(codec_json_status_to_errno(100), -EIO);
    assert_int_equal(codec_json_status_to_errno(103), -EIO);
    assert_int_equal(codec_json_status_to_errno(-1), -EIO);
}

static void errno_to_status_follows_the_protocol_table(void **state)
{
    (void)state;
    assert_int_equal(codec_json_errno_to_status(0), CODEC_JSON_GOOD);
    assert_int_equal(codec_json_errno_to_status(-ENOENT), CODEC_JSON_BAD_NOENTRY);
    assert_int_equal(codec_json_errno_to_status(-EACCES), CODEC_JSON_BAD_ACCESS_DENIED);
    assert_int_equal(codec_json_errno_to_status(-EPERM), CODEC_JSON_BAD_ACCESS_DENIED);
    assert_int_equal(codec_json_errno_to_status(-ENOSYS), CODEC_JSON_BAD_NOTIMPLEMENTED);
    assert_int_equal(codec_json_errno_to_status(-ETIMEDOUT), CODEC_JSON_BAD_TIMEOUT);
    assert_int_equal(codec_json_errno_to_status(-EBUSY), CODEC_JSON_BAD_BUSY);
}

static void errno_to_status_maps_unmapped_errnos_to_bad(void **state)
{
    (void)state;
    assert_int_equal(codec_json_errno_to_status(-EIO), CODEC_JSON_BAD);
    assert_int_equal(codec_json_errno_to_status(-EINVAL), CODEC_JSON_BAD);
    assert_int_equal(codec_json_errno_to_status(-ENOMEM), CODEC_JSON_BAD);
    assert_int_equal(codec_json_errno_to_status(-EROFS), CODEC_JSON_BAD);
}

static void specific_statuses_survive_errno_and_back(void **state)
{
    const int statuses[] = {CODEC_JSON_GOOD,
                            CODEC_JSON_BAD,
                            CODEC_JSON_BAD_NOTIMPLEMENTED,
                            CODEC_JSON_BAD_TIMEOUT,
                            CODEC_JSON_BAD_BUSY,
                            CODEC_JSON_BAD_NOENTRY,
                            CODEC_JSON_BAD_ACCESS_DENIED};
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_SIZE(statuses); i++) {
        int back = codec_json_errno_to_status(codec_json_status_to_errno(statuses[i]));
        if (back != statuses[i])
            fail_msg("status %d came back as %d", statuses[i], back);
    }
}

/* ------------------------------------------------------------------------------------------------
 * Envelopes
 * ----------------------------------------------------------------------------------------------*/

static void parse_request_reports_kind_method_and_id(void **state)
{
    struct codec_json_msg *msg = parse_text("{\"method\":\"add_filesystem\",\"params\":[\"test\"],"
                                            "\"id\":23}");

    (void)state;
    assert_int_equal(codec_json_msg_kind(msg), CODEC_JSON_REQUEST);
    assert_string_equal(codec_json_msg_method(msg), "add_filesystem");
    assert_int_equal(codec_json_msg_id(msg), 23);
    assert_int_equal(codec_json_msg_error_status(msg), 0);
    codec_json_msg_free(msg);
}

static void parse_notification_has_no_id(void **state)
{
    struct codec_json_msg *msg = parse_text("{\"method\":\"close\",\"params\":[\"t\",2,5,0]}");

    (void)state;
    assert_int_equal(codec_json_msg_kind(msg), CODEC_JSON_NOTIFICATION);
    assert_string_equal(codec_json_msg_method(msg), "close");
    assert_int_equal(codec_json_msg_id(msg), 0);
    codec_json_msg_free(msg);
}

static void parse_result_has_id_and_no_method(void **state)
{
    struct codec_json_msg *msg = parse_text("{\"result\":{},\"id\":42}");

    (void)state;
    assert_int_equal(codec_json_msg_kind(msg), CODEC_JSON_RESULT);
    assert_int_equal(codec_json_msg_id(msg), 42);
    assert_null(codec_json_msg_method(msg));
    assert_int_equal(codec_json_msg_error_status(msg), 0);
    codec_json_msg_free(msg);
}

static void parse_error_with_only_a_code_reports_the_status(void **state)
{
    struct codec_json_msg *msg = parse_text("{\"error\":{\"code\":101},\"id\":42}");

    (void)state;
    assert_int_equal(codec_json_msg_kind(msg), CODEC_JSON_ERROR);
    assert_int_equal(codec_json_msg_id(msg), 42);
    assert_int_equal(codec_json_msg_error_status(msg), CODEC_JSON_BAD_NOENTRY);
    assert_null(codec_json_msg_method(msg));
    codec_json_msg_free(msg);
}

static void parse_error_with_a_message_reports_the_status(void **state)
{
    struct codec_json_msg *msg =
        parse_text("{\"id\":7,\"error\":{\"message\":\"denied\",\"code\":102}}");

    (void)state;
    assert_int_equal(codec_json_msg_kind(msg), CODEC_JSON_ERROR);
    assert_int_equal(codec_json_msg_id(msg), 7);
    assert_int_equal(codec_json_msg_error_status(msg), CODEC_JSON_BAD_ACCESS_DENIED);
    codec_json_msg_free(msg);
}

static void parse_accepts_members_in_any_order_and_whitespace(void **state)
{
    struct codec_json_msg *msg =
        parse_text(" {\n\t\"id\" : 5 ,\"params\":[ \"x\" ], \"method\" : \"add_filesystem\" }\n");

    (void)state;
    assert_int_equal(codec_json_msg_kind(msg), CODEC_JSON_REQUEST);
    assert_string_equal(codec_json_msg_method(msg), "add_filesystem");
    assert_int_equal(codec_json_msg_id(msg), 5);
    codec_json_msg_free(msg);
}

static void parse_does_not_require_a_jsonrpc_member_but_tolerates_one(void **state)
{
    struct codec_json_msg *msg = parse_text("{\"jsonrpc\":\"2.0\",\"result\":{},\"id\":1}");

    (void)state;
    assert_int_equal(codec_json_msg_kind(msg), CODEC_JSON_RESULT);
    codec_json_msg_free(msg);
}

static void parse_accepts_full_64bit_ids(void **state)
{
    struct codec_json_msg *msg = parse_text("{\"result\":{},\"id\":9223372036854775807}");

    (void)state;
    assert_int_equal(codec_json_msg_id(msg), INT64_MAX);
    codec_json_msg_free(msg);
    msg = parse_text("{\"result\":{},\"id\":-9223372036854775808}");
    assert_int_equal(codec_json_msg_id(msg), INT64_MIN);
    codec_json_msg_free(msg);
}

static void parse_uses_the_length_not_a_nul_terminator(void **state)
{
    const char text[] = "{\"result\":{},\"id\":1}{\"garbage\"";
    struct codec_json_msg *msg = NULL;

    (void)state;
    assert_int_equal(codec_json_parse(text, strlen("{\"result\":{},\"id\":1}"), &msg), 0);
    assert_int_equal(codec_json_msg_id(msg), 1);
    codec_json_msg_free(msg);
}

static void msg_free_accepts_null(void **state)
{
    (void)state;
    codec_json_msg_free(NULL);
}

/* ------------------------------------------------------------------------------------------------
 * authenticate and add_filesystem (provider -> gateway)
 * ----------------------------------------------------------------------------------------------*/

static void decode_authenticate_reads_the_wire_form(void **state)
{
    struct codec_json_msg *msg =
        parse_text("{\"method\":\"authenticate\",\"params\":[\"username\",{\"username\":\"bob\","
                   "\"password\":\"secret\"}],\"id\":42}");
    const char *type = NULL, *username = NULL, *password = NULL;

    (void)state;
    assert_int_equal(codec_json_decode_authenticate(msg, &type, &username, &password), 0);
    assert_string_equal(type, "username");
    assert_string_equal(username, "bob");
    assert_string_equal(password, "secret");
    codec_json_msg_free(msg);
}

static void decode_authenticate_reports_absent_credentials_as_null(void **state)
{
    struct codec_json_msg *msg =
        parse_text("{\"method\":\"authenticate\",\"params\":[\"token\",{}],\"id\":1}");
    const char *type = NULL, *username = "x", *password = "x";

    (void)state;
    assert_int_equal(codec_json_decode_authenticate(msg, &type, &username, &password), 0);
    assert_string_equal(type, "token");
    assert_null(username);
    assert_null(password);
    codec_json_msg_free(msg);
}

static void encode_authenticate_writes_the_wire_form_and_decodes_back(void **state)
{
    struct wire w;
    struct codec_json_msg *msg;
    const char *type, *username, *password;

    (void)state;
    assert_wire(codec_json_encode_authenticate(w.buf, WIRE_CAP, &w.len, 42, "bob", "s\"cret"), &w,
                "{\"method\":\"authenticate\",\"params\":[\"username\",{\"username\":\"bob\","
                "\"password\":\"s\\\"cret\"}],\"id\":42}");
    msg = parse_wire(&w);
    assert_int_equal(codec_json_decode_authenticate(msg, &type, &username, &password), 0);
    assert_string_equal(type, "username");
    assert_string_equal(username, "bob");
    assert_string_equal(password, "s\"cret");
    codec_json_msg_free(msg);
}

static void decode_add_filesystem_reads_the_wire_form(void **state)
{
    struct codec_json_msg *msg =
        parse_text("{\"method\":\"add_filesystem\",\"params\":[\"test\"],\"id\":23}");
    const char *name = NULL;

    (void)state;
    assert_int_equal(codec_json_decode_add_filesystem(msg, &name), 0);
    assert_string_equal(name, "test");
    assert_int_equal(codec_json_msg_id(msg), 23);
    codec_json_msg_free(msg);
}

static void encode_add_filesystem_writes_the_wire_form_and_decodes_back(void **state)
{
    struct wire w;
    struct codec_json_msg *msg;
    const char *name = NULL;

    (void)state;
    assert_wire(codec_json_encode_add_filesystem(w.buf, WIRE_CAP, &w.len, 23, "my_fs"), &w,
                "{\"method\":\"add_filesystem\",\"params\":[\"my_fs\"],\"id\":23}");
    msg = parse_wire(&w);
    assert_int_equal(codec_json_msg_id(msg), 23);
    assert_int_equal(codec_json_decode_add_filesystem(msg, &name), 0);
    assert_string_equal(name, "my_fs");
    codec_json_msg_free(msg);
}

static void encode_filesystem_detached_is_a_notification_and_decodes_back(void **state)
{
    struct wire w;
    struct codec_json_msg *msg;
    const char *name = NULL;

    (void)state;
    assert_wire(codec_json_encode_filesystem_detached(w.buf, WIRE_CAP, &w.len, "fw.img"), &w,
                "{\"method\":\"filesystem_detached\",\"params\":[\"fw.img\"]}");
    msg = parse_wire(&w);
    assert_int_equal(codec_json_msg_kind(msg), CODEC_JSON_NOTIFICATION);
    assert_int_equal(codec_json_decode_filesystem_detached(msg, &name), 0);
    assert_string_equal(name, "fw.img");
    codec_json_msg_free(msg);
}

static void decode_filesystem_detached_refuses_requests_and_other_shapes(void **state)
{
    static const char *const texts[] = {
        "{\"method\":\"filesystem_detached\",\"params\":[\"a\"],\"id\":1}",
        "{\"method\":\"filesystem_detached\",\"params\":[]}",
        "{\"method\":\"filesystem_detached\",\"params\":[1]}",
        "{\"method\":\"close\",\"params\":[\"a\"]}",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        struct codec_json_msg *msg = parse_text(texts[i]);
        const char *name;
        assert_int_equal(codec_json_decode_filesystem_detached(msg, &name), -EBADMSG);
        codec_json_msg_free(msg);
    }
}

/* ------------------------------------------------------------------------------------------------
 * Gateway answers to the provider
 * ----------------------------------------------------------------------------------------------*/

static void encode_result_empty_writes_an_empty_object(void **state)
{
    struct wire w;
    struct codec_json_msg *msg;

    (void)state;
    assert_wire(codec_json_encode_result_empty(w.buf, WIRE_CAP, &w.len, 42), &w,
                "{\"result\":{},\"id\":42}");
    msg = parse_wire(&w);
    assert_int_equal(codec_json_msg_kind(msg), CODEC_JSON_RESULT);
    assert_int_equal(codec_json_msg_id(msg), 42);
    codec_json_msg_free(msg);
}

static void encode_add_filesystem_result_echoes_the_name(void **state)
{
    struct wire w;

    (void)state;
    assert_wire(codec_json_encode_add_filesystem_result(w.buf, WIRE_CAP, &w.len, 23, "test"), &w,
                "{\"result\":{\"id\":\"test\"},\"id\":23}");
}

static void encode_error_writes_code_and_message_and_parses_back(void **state)
{
    struct wire w;
    struct codec_json_msg *msg;

    (void)state;
    assert_wire(codec_json_encode_error(w.buf, WIRE_CAP, &w.len, 42, CODEC_JSON_BAD_NOENTRY), &w,
                "{\"error\":{\"code\":101,\"message\":\"no entry\"},\"id\":42}");
    msg = parse_wire(&w);
    assert_int_equal(codec_json_msg_kind(msg), CODEC_JSON_ERROR);
    assert_int_equal(codec_json_msg_id(msg), 42);
    assert_int_equal(codec_json_msg_error_status(msg), CODEC_JSON_BAD_NOENTRY);
    codec_json_msg_free(msg);
}

static void error_message_of_its_own_is_sent_and_read_back(void **state)
{
    struct wire w;
    struct codec_json_msg *msg;

    (void)state;
    assert_wire(codec_json_encode_error_message(w.buf, WIRE_CAP, &w.len, 7, CODEC_JSON_BAD,
                                                "filesystem name \"fw\" is taken"),
                &w,
                "{\"error\":{\"code\":1,\"message\":\"filesystem name \\\"fw\\\" is taken\"},"
                "\"id\":7}");
    msg = parse_wire(&w);
    assert_string_equal(codec_json_msg_error_message(msg), "filesystem name \"fw\" is taken");
    codec_json_msg_free(msg);
    /* Without a message, or one that is not a string: none. A result has none either. */
    static const char *const none[] = {
        "{\"error\":{\"code\":1},\"id\":7}",
        "{\"error\":{\"code\":1,\"message\":5},\"id\":7}",
        "{\"result\":{},\"id\":7}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(none); i++) {
        assert_int_equal(codec_json_parse(none[i], strlen(none[i]), &msg), 0);
        assert_null(codec_json_msg_error_message(msg));
        codec_json_msg_free(msg);
    }
}

static void encode_error_round_trips_every_status(void **state)
{
    struct wire w;
    struct codec_json_msg *msg;
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_SIZE(status_table); i++) {
        assert_int_equal(
            codec_json_encode_error(w.buf, WIRE_CAP, &w.len, (int64_t)i, status_table[i].status),
            0);
        msg = parse_wire(&w);
        assert_int_equal(codec_json_msg_error_status(msg), status_table[i].status);
        assert_int_equal(codec_json_msg_id(msg), (int64_t)i);
        codec_json_msg_free(msg);
    }
}

/* ------------------------------------------------------------------------------------------------
 * Gateway requests (gateway -> provider), encoded and decoded
 * ----------------------------------------------------------------------------------------------*/

static const struct {
    const char *name;
    int64_t id;
    struct fusebridge_request req;
    const char *wire;
} request_cases[] = {
    {"lookup",
     7,
     {.kind = FUSEBRIDGE_LOOKUP, .ino = 1, .name = "a.txt"},
     "{\"method\":\"lookup\",\"params\":[\"test\",1,\"a.txt\"],\"id\":7}"},
    {"getattr",
     8,
     {.kind = FUSEBRIDGE_GETATTR, .ino = 2},
     "{\"method\":\"getattr\",\"params\":[\"test\",2],\"id\":8}"},
    {"readdir",
     9,
     {.kind = FUSEBRIDGE_READDIR, .ino = 1},
     "{\"method\":\"readdir\",\"params\":[\"test\",1],\"id\":9}"},
    /* 32768: O_RDONLY | O_LARGEFILE as the kernel passes it (glibc's O_LARGEFILE is 0 on 64-bit) */
    {"open",
     10,
     {.kind = FUSEBRIDGE_OPEN, .ino = 2, .flags = 32768},
     "{\"method\":\"open\",\"params\":[\"test\",2,32768],\"id\":10}"},
    {"read",
     11,
     {.kind = FUSEBRIDGE_READ, .ino = 2, .fh = 5, .offset = 4096, .size = 65536},
     "{\"method\":\"read\",\"params\":[\"test\",2,5,4096,65536],\"id\":11}"},
    {"close",
     12,
     {.kind = FUSEBRIDGE_RELEASE, .ino = 2, .fh = 5, .flags = 32768},
     "{\"method\":\"close\",\"params\":[\"test\",2,5,32768]}"},
};

static void assert_request_equal(const struct fusebridge_request *got,
                                 const struct fusebridge_request *want)
{
    assert_int_equal(got->kind, want->kind);
    assert_int_equal(got->ino, want->ino);
    if (want->name != NULL)
        assert_string_equal(got->name, want->name);
    else
        assert_null(got->name);
    assert_int_equal(got->fh, want->fh);
    assert_int_equal(got->offset, want->offset);
    assert_int_equal(got->size, want->size);
    assert_int_equal(got->flags, want->flags);
}

static void encode_request_writes_each_method_in_its_wire_form(void **state)
{
    struct wire w;
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_SIZE(request_cases); i++) {
        int rc = codec_json_encode_request(w.buf, WIRE_CAP, &w.len, request_cases[i].id, "test",
                                           &request_cases[i].req);
        if (rc == 0)
            w.buf[w.len] = '\0';
        if (rc != 0 || strcmp(w.buf, request_cases[i].wire) != 0)
            fail_msg("%s: rc %d, wrote %s", request_cases[i].name, rc, rc == 0 ? w.buf : "-");
    }
}

static void release_is_encoded_as_close_notification_without_id(void **state)
{
    struct fusebridge_request req = {.kind = FUSEBRIDGE_RELEASE, .ino = 3, .fh = 9, .flags = 0};
    struct codec_json_msg *msg;
    struct wire w;

    (void)state;
    assert_wire(codec_json_encode_request(w.buf, WIRE_CAP, &w.len, 99, "fs", &req), &w,
                "{\"method\":\"close\",\"params\":[\"fs\",3,9,0]}");
    msg = parse_wire(&w);
    assert_int_equal(codec_json_msg_kind(msg), CODEC_JSON_NOTIFICATION);
    codec_json_msg_free(msg);
}

static void encoded_requests_decode_back_to_the_same_request(void **state)
{
    struct fusebridge_request got;
    struct codec_json_msg *msg;
    const char *fs;
    struct wire w;
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_SIZE(request_cases); i++) {
        const struct fusebridge_request *want = &request_cases[i].req;
        bool is_close = want->kind == FUSEBRIDGE_RELEASE;

        assert_int_equal(
            codec_json_encode_request(w.buf, WIRE_CAP, &w.len, request_cases[i].id, "test", want),
            0);
        msg = parse_wire(&w);
        assert_int_equal(codec_json_msg_kind(msg),
                         is_close ? CODEC_JSON_NOTIFICATION : CODEC_JSON_REQUEST);
        assert_int_equal(codec_json_msg_id(msg), is_close ? 0 : request_cases[i].id);
        assert_string_equal(codec_json_msg_method(msg), request_cases[i].name);
        memset(&got, 0xa5, sizeof(got));
        fs = NULL;
        assert_int_equal(codec_json_decode_request(msg, &fs, &got), 0);
        assert_string_equal(fs, "test");
        assert_request_equal(&got, want);
        codec_json_msg_free(msg);
    }
}

static void decode_request_reads_each_literal_wire_form(void **state)
{
    struct fusebridge_request got;
    struct codec_json_msg *msg;
    const char *fs;
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_SIZE(request_cases); i++) {
        msg = parse_text(request_cases[i].wire);
        fs = NULL;
        assert_int_equal(codec_json_decode_request(msg, &fs, &got), 0);
        assert_string_equal(fs, "test");
        assert_request_equal(&got, &request_cases[i].req);
        codec_json_msg_free(msg);
    }
}

static void request_fields_keep_their_full_range(void **state)
{
    struct fusebridge_request read_req = {.kind = FUSEBRIDGE_READ,
                                          .ino = INT64_MAX,
                                          .fh = INT64_MAX,
                                          .offset = INT64_MAX,
                                          .size = UINT32_MAX};
    struct fusebridge_request open_req = {.kind = FUSEBRIDGE_OPEN, .ino = 1, .flags = INT32_MIN};
    struct fusebridge_request got;
    struct codec_json_msg *msg;
    const char *fs;
    struct wire w;

    (void)state;
    assert_wire(codec_json_encode_request(w.buf, WIRE_CAP, &w.len, INT64_MIN, "t", &read_req), &w,
                "{\"method\":\"read\",\"params\":[\"t\",9223372036854775807,9223372036854775807,"
                "9223372036854775807,4294967295],\"id\":-9223372036854775808}");
    msg = parse_wire(&w);
    assert_int_equal(codec_json_msg_id(msg), INT64_MIN);
    assert_int_equal(codec_json_decode_request(msg, &fs, &got), 0);
    assert_request_equal(&got, &read_req);
    codec_json_msg_free(msg);

    assert_int_equal(codec_json_encode_request(w.buf, WIRE_CAP, &w.len, 1, "t", &open_req), 0);
    msg = parse_wire(&w);
    assert_int_equal(codec_json_decode_request(msg, &fs, &got), 0);
    assert_int_equal(got.flags, INT32_MIN);
    codec_json_msg_free(msg);
}

static void encode_request_rejects_values_above_int64_max_with_einval(void **state)
{
    const uint64_t too_big = (uint64_t)INT64_MAX + 1;
    struct fusebridge_request ino = {.kind = FUSEBRIDGE_GETATTR, .ino = too_big};
    struct fusebridge_request fh = {.kind = FUSEBRIDGE_READ, .ino = 1, .fh = UINT64_MAX};
    struct fusebridge_request offset = {.kind = FUSEBRIDGE_READ, .ino = 1, .offset = too_big};
    struct fusebridge_request release = {.kind = FUSEBRIDGE_RELEASE, .ino = 1, .fh = too_big};
    struct wire w;

    (void)state;
    assert_int_equal(codec_json_encode_request(w.buf, WIRE_CAP, &w.len, 1, "t", &ino), -EINVAL);
    assert_int_equal(codec_json_encode_request(w.buf, WIRE_CAP, &w.len, 1, "t", &fh), -EINVAL);
    assert_int_equal(codec_json_encode_request(w.buf, WIRE_CAP, &w.len, 1, "t", &offset), -EINVAL);
    assert_int_equal(codec_json_encode_request(w.buf, WIRE_CAP, &w.len, 1, "t", &release), -EINVAL);
}

static void encode_request_rejects_a_non_utf8_name_with_einval(void **state)
{
    struct fusebridge_request req = {.kind = FUSEBRIDGE_LOOKUP, .ino = 1, .name = "caf\xe9.txt"};
    struct fusebridge_request getattr = {.kind = FUSEBRIDGE_GETATTR, .ino = 1};
    struct wire w;

    (void)state;
    w.len = 12345;
    assert_int_equal(codec_json_encode_request(w.buf, WIRE_CAP, &w.len, 1, "t", &req), -EINVAL);
    assert_int_equal(w.len, 12345);
    /* a truncated sequence and an overlong encoding are not UTF-8 either */
    req.name = "ab\xc3";
    assert_int_equal(codec_json_encode_request(w.buf, WIRE_CAP, &w.len, 1, "t", &req), -EINVAL);
    req.name = "\xc0\xaf";
    assert_int_equal(codec_json_encode_request(w.buf, WIRE_CAP, &w.len, 1, "t", &req), -EINVAL);
    /* the filesystem name goes through the same check */
    assert_int_equal(codec_json_encode_request(w.buf, WIRE_CAP, &w.len, 1, "\xff", &getattr),
                     -EINVAL);
}

static void encode_request_writes_utf8_names_raw_and_escapes_specials(void **state)
{
    struct fusebridge_request req = {.kind = FUSEBRIDGE_LOOKUP, .ino = 1};
    struct fusebridge_request got;
    struct codec_json_msg *msg;
    const char *fs;
    struct wire w;

    (void)state;
    req.name = "\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80";
    assert_wire(
        codec_json_encode_request(w.buf, WIRE_CAP, &w.len, 1, "t", &req), &w,
        "{\"method\":\"lookup\",\"params\":[\"t\",1,\"\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80\"],"
        "\"id\":1}");
    req.name = "q\"b\\s\n\x01";
    assert_wire(codec_json_encode_request(w.buf, WIRE_CAP, &w.len, 1, "t", &req), &w,
                "{\"method\":\"lookup\",\"params\":[\"t\",1,\"q\\\"b\\\\s\\n\\u0001\"],\"id\":1}");
    msg = parse_wire(&w);
    assert_int_equal(codec_json_decode_request(msg, &fs, &got), 0);
    assert_string_equal(got.name, "q\"b\\s\n\x01");
    codec_json_msg_free(msg);
}

static void decode_request_decodes_unicode_escapes_in_names(void **state)
{
    struct codec_json_msg *msg = parse_text("{\"method\":\"lookup\",\"params\":[\"t\\u0065st\",1,"
                                            "\"\\u00e9t\\u00e9 \\ud83d\\ude00\"],\"id\":1}");
    struct fusebridge_request got;
    const char *fs = NULL;

    (void)state;
    assert_int_equal(codec_json_decode_request(msg, &fs, &got), 0);
    assert_string_equal(fs, "test");
    assert_string_equal(got.name, "\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80");
    codec_json_msg_free(msg);
}

/* ------------------------------------------------------------------------------------------------
 * Attributes (lookup / getattr results)
 * ----------------------------------------------------------------------------------------------*/

static void decode_attr_reads_a_full_file_entry(void **state)
{
    struct codec_json_msg *msg =
        parse_text("{\"result\":{\"inode\":2,\"mode\":420,\"type\":\"file\",\"size\":5,"
                   "\"atime\":1,\"mtime\":2,\"ctime\":3},\"id\":42}");
    struct stat st = stat_garbage();

    (void)state;
    assert_int_equal(codec_json_decode_attr(msg, &st), 0);
    assert_int_equal(st.st_ino, 2);
    assert_int_equal(st.st_mode, S_IFREG | 0644);
    assert_int_equal(st.st_nlink, 1);
    assert_int_equal(st.st_size, 5);
    assert_int_equal(st.st_blocks, 1);
    assert_int_equal(st.st_atim.tv_sec, 1);
    assert_int_equal(st.st_mtim.tv_sec, 2);
    assert_int_equal(st.st_ctim.tv_sec, 3);
    assert_int_equal(st.st_uid, 0);
    assert_int_equal(st.st_gid, 0);
    codec_json_msg_free(msg);
}

static void decode_attr_defaults_omitted_members_of_a_directory_to_zero(void **state)
{
    struct codec_json_msg *msg =
        parse_text("{\"id\":3,\"result\":{\"type\":\"dir\",\"mode\":493}}");
    struct stat st = stat_garbage();

    (void)state;
    assert_int_equal(codec_json_decode_attr(msg, &st), 0);
    assert_int_equal(st.st_mode, S_IFDIR | 0755);
    assert_int_equal(st.st_nlink, 2);
    assert_int_equal(st.st_ino, 0);
    assert_int_equal(st.st_size, 0);
    assert_int_equal(st.st_blocks, 0);
    assert_int_equal(st.st_atim.tv_sec, 0);
    assert_int_equal(st.st_mtim.tv_sec, 0);
    assert_int_equal(st.st_ctim.tv_sec, 0);
    codec_json_msg_free(msg);
}

static void decode_attr_keeps_only_permission_bits_of_mode(void **state)
{
    /* 0100644 claims a regular file and 0177777 everything; "type" decides, mode gives 07777 */
    struct codec_json_msg *msg =
        parse_text("{\"result\":{\"mode\":33188,\"type\":\"dir\"},\"id\":1}");
    struct stat st;

    (void)state;
    assert_int_equal(codec_json_decode_attr(msg, &st), 0);
    assert_int_equal(st.st_mode, S_IFDIR | 0644);
    codec_json_msg_free(msg);
    msg = parse_text("{\"result\":{\"mode\":65535,\"type\":\"file\"},\"id\":1}");
    assert_int_equal(codec_json_decode_attr(msg, &st), 0);
    assert_int_equal(st.st_mode, S_IFREG | 07777);
    codec_json_msg_free(msg);
}

static void decode_attr_rounds_blocks_up_to_512_bytes(void **state)
{
    const struct {
        const char *wire;
        long long blocks;
    } cases[] = {
        {"{\"result\":{\"mode\":0,\"type\":\"file\",\"size\":511},\"id\":1}", 1},
        {"{\"result\":{\"mode\":0,\"type\":\"file\",\"size\":512},\"id\":1}", 1},
        {"{\"result\":{\"mode\":0,\"type\":\"file\",\"size\":513},\"id\":1}", 2},
        {"{\"result\":{\"mode\":0,\"type\":\"file\",\"size\":9223372036854775807},\"id\":1}",
         18014398509481984LL},
    };
    struct codec_json_msg *msg;
    struct stat st;
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_SIZE(cases); i++) {
        msg = parse_text(cases[i].wire);
        assert_int_equal(codec_json_decode_attr(msg, &st), 0);
        assert_int_equal(st.st_blocks, cases[i].blocks);
        codec_json_msg_free(msg);
    }
}

static void decode_attr_accepts_64bit_inode_and_size(void **state)
{
    struct codec_json_msg *msg =
        parse_text("{\"result\":{\"inode\":9223372036854775807,\"mode\":420,\"type\":\"file\","
                   "\"size\":4294967296},\"id\":1}");
    struct stat st;

    (void)state;
    assert_int_equal(codec_json_decode_attr(msg, &st), 0);
    assert_int_equal(st.st_ino, INT64_MAX);
    assert_int_equal(st.st_size, 4294967296LL);
    codec_json_msg_free(msg);
}

/* getattr answers may carry a meaningless inode; it reads as 0 ("none") for the caller to judge. */
static void decode_attr_reports_an_inode_below_one_as_zero(void **state)
{
    static const char *const texts[] = {
        "{\"result\":{\"inode\":0,\"mode\":420,\"type\":\"file\"},\"id\":1}",
        "{\"result\":{\"inode\":-2,\"mode\":420,\"type\":\"file\"},\"id\":1}",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        struct codec_json_msg *msg = parse_text(texts[i]);
        struct stat st;
        st.st_ino = 77;
        assert_int_equal(codec_json_decode_attr(msg, &st), 0);
        assert_int_equal(st.st_ino, 0);
        codec_json_msg_free(msg);
    }
}

static void encode_attr_result_writes_the_wire_form_and_decodes_back(void **state)
{
    struct stat st, got;
    struct codec_json_msg *msg;
    struct wire w;

    (void)state;
    memset(&st, 0, sizeof(st));
    st.st_ino = 2;
    st.st_mode = S_IFREG | 0644;
    st.st_size = 5;
    st.st_atim.tv_sec = 1;
    st.st_mtim.tv_sec = 2;
    st.st_ctim.tv_sec = 3;
    assert_wire(codec_json_encode_attr_result(w.buf, WIRE_CAP, &w.len, 42, &st), &w,
                "{\"result\":{\"inode\":2,\"mode\":420,\"type\":\"file\",\"size\":5,\"atime\":1,"
                "\"mtime\":2,\"ctime\":3},\"id\":42}");
    msg = parse_wire(&w);
    assert_int_equal(codec_json_decode_attr(msg, &got), 0);
    assert_int_equal(got.st_ino, 2);
    assert_int_equal(got.st_mode, S_IFREG | 0644);
    assert_int_equal(got.st_size, 5);
    assert_int_equal(got.st_atim.tv_sec, 1);
    assert_int_equal(got.st_mtim.tv_sec, 2);
    assert_int_equal(got.st_ctim.tv_sec, 3);
    codec_json_msg_free(msg);
}

static void encode_attr_result_sends_directories_as_dir_with_permission_bits_only(void **state)
{
    struct stat st, got;
    struct codec_json_msg *msg;
    struct wire w;

    (void)state;
    memset(&st, 0, sizeof(st));
    st.st_ino = INT64_MAX;
    st.st_mode = S_IFDIR | S_ISVTX | 0755;
    st.st_size = 4096;
    assert_wire(codec_json_encode_attr_result(w.buf, WIRE_CAP, &w.len, 1, &st), &w,
                "{\"result\":{\"inode\":9223372036854775807,\"mode\":1005,\"type\":\"dir\","
                "\"size\":4096,\"atime\":0,\"mtime\":0,\"ctime\":0},\"id\":1}");
    msg = parse_wire(&w);
    assert_int_equal(codec_json_decode_attr(msg, &got), 0);
    assert_int_equal(got.st_mode, S_IFDIR | S_ISVTX | 0755);
    assert_int_equal(got.st_nlink, 2);
    assert_int_equal(got.st_ino, INT64_MAX);
    codec_json_msg_free(msg);
}

static void encode_attr_result_sends_times_before_1970_as_zero(void **state)
{
    struct stat st;
    struct wire w;

    (void)state;
    memset(&st, 0, sizeof(st));
    st.st_ino = 5;
    st.st_mode = S_IFREG | 0600;
    st.st_atim.tv_sec = -1;
    st.st_mtim.tv_sec = -86400;
    st.st_ctim.tv_sec = 7;
    assert_wire(codec_json_encode_attr_result(w.buf, WIRE_CAP, &w.len, 1, &st), &w,
                "{\"result\":{\"inode\":5,\"mode\":384,\"type\":\"file\",\"size\":0,\"atime\":0,"
                "\"mtime\":0,\"ctime\":7},\"id\":1}");
}

static void encode_attr_result_rejects_other_file_types_with_einval(void **state)
{
    const mode_t types[] = {S_IFLNK, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK};
    struct stat st;
    struct wire w;
    size_t i;

    (void)state;
    memset(&st, 0, sizeof(st));
    st.st_ino = 3;
    for (i = 0; i < ARRAY_SIZE(types); i++) {
        st.st_mode = types[i] | 0644;
        assert_int_equal(codec_json_encode_attr_result(w.buf, WIRE_CAP, &w.len, 1, &st), -EINVAL);
    }
}

static void encode_attr_result_rejects_an_inode_above_int64_max_with_einval(void **state)
{
    struct stat st;
    struct wire w;

    (void)state;
    memset(&st, 0, sizeof(st));
    st.st_mode = S_IFREG | 0644;
    st.st_ino = (ino_t)INT64_MAX + 1;
    assert_int_equal(codec_json_encode_attr_result(w.buf, WIRE_CAP, &w.len, 1, &st), -EINVAL);
}

static void encode_attr_result_rejects_a_negative_size_with_einval(void **state)
{
    struct stat st;
    struct wire w;

    (void)state;
    memset(&st, 0, sizeof(st));
    st.st_ino = 2;
    st.st_mode = S_IFREG | 0644;
    st.st_size = -1;
    assert_int_equal(codec_json_encode_attr_result(w.buf, WIRE_CAP, &w.len, 1, &st), -EINVAL);
}

/* ------------------------------------------------------------------------------------------------
 * open
 * ----------------------------------------------------------------------------------------------*/

static void decode_open_reads_the_handle(void **state)
{
    struct codec_json_msg *msg = parse_text("{\"result\":{\"handle\":7},\"id\":42}");
    uint64_t handle = 0;

    (void)state;
    assert_int_equal(codec_json_decode_open(msg, &handle), 0);
    assert_int_equal(handle, 7);
    codec_json_msg_free(msg);
}

static void encode_open_result_writes_the_wire_form_and_decodes_back(void **state)
{
    struct codec_json_msg *msg;
    uint64_t handle = 0;
    struct wire w;

    (void)state;
    assert_wire(codec_json_encode_open_result(w.buf, WIRE_CAP, &w.len, 42, 7), &w,
                "{\"result\":{\"handle\":7},\"id\":42}");
    assert_int_equal(codec_json_encode_open_result(w.buf, WIRE_CAP, &w.len, 42, INT64_MAX), 0);
    msg = parse_wire(&w);
    assert_int_equal(codec_json_decode_open(msg, &handle), 0);
    assert_int_equal(handle, INT64_MAX);
    codec_json_msg_free(msg);
}

static void encode_open_result_rejects_a_handle_above_int64_max_with_einval(void **state)
{
    struct wire w;

    (void)state;
    assert_int_equal(codec_json_encode_open_result(w.buf, WIRE_CAP, &w.len, 1, UINT64_MAX),
                     -EINVAL);
}

/* ------------------------------------------------------------------------------------------------
 * read
 * ----------------------------------------------------------------------------------------------*/

static void decode_read_copies_identity_data(void **state)
{
    struct codec_json_msg *msg = parse_text(
        "{\"result\":{\"data\":\"hello\",\"format\":\"identity\",\"count\":5},\"id\":42}");
    char buf[16];
    size_t len = 0;

    (void)state;
    assert_int_equal(codec_json_decode_read(msg, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    codec_json_msg_free(msg);
}

static void decode_read_counts_identity_data_in_utf8_bytes(void **state)
{
    struct codec_json_msg *msg = parse_text(
        "{\"result\":{\"data\":\"h\\u00e9\",\"format\":\"identity\",\"count\":3},\"id\":1}");
    char buf[16];
    size_t len = 0;

    (void)state;
    assert_int_equal(codec_json_decode_read(msg, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "h\xc3\xa9", 3);
    codec_json_msg_free(msg);
}

static void decode_read_keeps_nul_bytes_of_identity_data(void **state)
{
    struct codec_json_msg *msg = parse_text(
        "{\"result\":{\"data\":\"a\\u0000b\",\"format\":\"identity\",\"count\":3},\"id\":1}");
    char buf[16];
    size_t len = 0;

    (void)state;
    assert_int_equal(codec_json_decode_read(msg, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "a\0b", 3);
    codec_json_msg_free(msg);
}

static void decode_read_decodes_base64_data(void **state)
{
    struct codec_json_msg *msg = parse_text(
        "{\"id\":42,\"result\":{\"count\":5,\"format\":\"base64\",\"data\":\"aGVsbG8=\"}}");
    char buf[16];
    size_t len = 0;

    (void)state;
    assert_int_equal(codec_json_decode_read(msg, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    codec_json_msg_free(msg);
}

/* A long read result: its data string is taken from the message bytes without jansson; the
 * answer must be the same as from the parsed tree, whatever the member order and spacing. */
static void decode_read_decodes_long_base64_data(void **state)
{
    unsigned char data[3000];
    char text[8192];
    char encoded[4100];
    unsigned char buf[3000];
    size_t len = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 7);
    base64_encode(data, sizeof(data), encoded);
    encoded[base64_encoded_size(sizeof(data))] = '\0';
    snprintf(text, sizeof(text),
             " { \"id\" : 9 , \"result\" : { \"format\":\"base64\", \"note\":\"{\\\"data\\\":1}\","
             " \"data\" : \"%s\" , \"count\" : 3000 , \"x\":[{\"data\":\"a\"},\"]\"] } } ",
             encoded);
    struct codec_json_msg *msg = parse_text(text);
    assert_int_equal(codec_json_decode_read(msg, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, sizeof(data));
    assert_memory_equal(buf, data, sizeof(data));
    codec_json_msg_free(msg);
}

/* The shortcut must not let through what jansson would refuse. */
static void parse_refuses_long_read_results_jansson_refuses(void **state)
{
    char a[1500];
    char text[4096];
    struct codec_json_msg *msg = NULL;

    (void)state;
    memset(a, 'A', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    snprintf(text, sizeof(text),
             "{\"result\":{\"data\":\"%s\",\"data\":\"%s\",\"format\":\"identity\",\"count\":1499},"
             "\"id\":1}",
             a, a);
    assert_int_equal(codec_json_parse(text, strlen(text), &msg), -EBADMSG);
    snprintf(text, sizeof(text),
             "{\"result\":{\"data\":\"%s\",\"format\":\"identity\",\"count\":1499},\"id\":1} x", a);
    assert_int_equal(codec_json_parse(text, strlen(text), &msg), -EBADMSG);
    snprintf(text, sizeof(text),
             "{\"result\":{\"data\":\"%s\",\"format\":\"identity\",\"count\":1499,},\"id\":1}", a);
    assert_int_equal(codec_json_parse(text, strlen(text), &msg), -EBADMSG);
}

static void decode_read_accepts_the_c_library_empty_read(void **state)
{
    struct codec_json_msg *msg =
        parse_text("{\"result\":{\"data\":\"\",\"format\":\"identity\",\"count\":0},\"id\":42}");
    size_t len = 99;

    (void)state;
    assert_int_equal(codec_json_decode_read(msg, NULL, 0, &len), 0);
    assert_int_equal(len, 0);
    codec_json_msg_free(msg);
}

static void decode_read_accepts_data_exactly_as_large_as_cap(void **state)
{
    struct codec_json_msg *identity =
        parse_text("{\"result\":{\"data\":\"0123456789abcdef\",\"format\":\"identity\","
                   "\"count\":16},\"id\":1}");
    struct codec_json_msg *base64 =
        parse_text("{\"result\":{\"data\":\"MDEyMzQ1Njc4OWFiY2RlZg==\",\"format\":\"base64\","
                   "\"count\":16},\"id\":1}");
    char buf[READ_CAP];
    size_t len = 0;

    (void)state;
    assert_int_equal(codec_json_decode_read(identity, buf, READ_CAP, &len), 0);
    assert_int_equal(len, READ_CAP);
    assert_memory_equal(buf, "0123456789abcdef", READ_CAP);
    assert_int_equal(codec_json_decode_read(base64, buf, READ_CAP, &len), 0);
    assert_int_equal(len, READ_CAP);
    assert_memory_equal(buf, "0123456789abcdef", READ_CAP);
    codec_json_msg_free(identity);
    codec_json_msg_free(base64);
}

static void encode_read_result_sends_base64(void **state)
{
    struct wire w;

    (void)state;
    assert_wire(codec_json_encode_read_result(w.buf, WIRE_CAP, &w.len, 42, "hello", 5), &w,
                "{\"result\":{\"data\":\"aGVsbG8=\",\"format\":\"base64\",\"count\":5},\"id\":42}");
}

static void encode_read_result_sends_empty_reads_as_identity(void **state)
{
    struct wire w;

    (void)state;
    assert_wire(codec_json_encode_read_result(w.buf, WIRE_CAP, &w.len, 42, NULL, 0), &w,
                "{\"result\":{\"data\":\"\",\"format\":\"identity\",\"count\":0},\"id\":42}");
}

static void encoded_binary_read_decodes_back_byte_for_byte(void **state)
{
    unsigned char data[256], back[256];
    struct codec_json_msg *msg;
    size_t i, len = 0;
    struct wire w;

    (void)state;
    for (i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(255 - i);
    assert_int_equal(codec_json_encode_read_result(w.buf, WIRE_CAP, &w.len, 5, data, sizeof(data)),
                     0);
    msg = parse_wire(&w);
    memset(back, 0, sizeof(back));
    assert_int_equal(codec_json_decode_read(msg, back, sizeof(back), &len), 0);
    assert_int_equal(len, sizeof(data));
    assert_memory_equal(back, data, sizeof(data));
    codec_json_msg_free(msg);
}

/* ------------------------------------------------------------------------------------------------
 * readdir
 * ----------------------------------------------------------------------------------------------*/

static void decode_readdir_reports_entries_in_order(void **state)
{
    struct codec_json_msg *msg = parse_text(
        "{\"result\":[{\"name\":\".\",\"inode\":1},{\"name\":\"..\",\"inode\":1},"
        "{\"inode\":2,\"name\":\"a.txt\"},{\"name\":\"\\u00e9\",\"inode\":3}],\"id\":42}");
    struct listing l = {0};

    (void)state;
    assert_int_equal(codec_json_decode_readdir(msg, listing_add, &l), 0);
    assert_int_equal(l.count, 4);
    assert_string_equal(l.names[0], ".");
    assert_string_equal(l.names[1], "..");
    assert_string_equal(l.names[2], "a.txt");
    assert_string_equal(l.names[3], "\xc3\xa9");
    assert_int_equal(l.inos[0], 1);
    assert_int_equal(l.inos[1], 1);
    assert_int_equal(l.inos[2], 2);
    assert_int_equal(l.inos[3], 3);
    codec_json_msg_free(msg);
}

static void decode_readdir_tolerates_untrusted_dot_inodes(void **state)
{
    struct codec_json_msg *msg =
        parse_text("{\"result\":[{\"name\":\".\",\"inode\":0},{\"name\":\"..\",\"inode\":-1},"
                   "{\"name\":\"a\",\"inode\":5}],\"id\":1}");
    struct listing l = {0};

    (void)state;
    assert_int_equal(codec_json_decode_readdir(msg, listing_add, &l), 0);
    assert_int_equal(l.count, 3);
    assert_int_equal(l.inos[0], 0);
    assert_int_equal(l.inos[1], 0);
    assert_int_equal(l.inos[2], 5);
    codec_json_msg_free(msg);
}

static void decode_readdir_of_an_empty_array_calls_back_never(void **state)
{
    struct codec_json_msg *msg = parse_text("{\"result\":[],\"id\":1}");
    struct listing l = {0};

    (void)state;
    assert_int_equal(codec_json_decode_readdir(msg, listing_add, &l), 0);
    assert_int_equal(l.count, 0);
    codec_json_msg_free(msg);
}

static void decode_readdir_stops_at_a_negative_callback_value(void **state)
{
    struct codec_json_msg *msg =
        parse_text("{\"result\":[{\"name\":\"a\",\"inode\":2},{\"name\":\"b\",\"inode\":3},"
                   "{\"name\":\"c\",\"inode\":4}],\"id\":1}");
    struct listing l = {.fail_at = 2};

    (void)state;
    assert_int_equal(codec_json_decode_readdir(msg, listing_add, &l), -ENOMEM);
    assert_int_equal(l.count, 2);
    codec_json_msg_free(msg);
}

static int count_and_return_one(void *user, const char *name, uint64_t ino, const struct stat *attr)
{
    (void)name;
    (void)ino;
    (void)attr;
    ++*(size_t *)user;
    return 1;
}

static void decode_readdir_continues_after_a_positive_callback_value(void **state)
{
    struct codec_json_msg *msg =
        parse_text("{\"result\":[{\"name\":\"a\",\"inode\":2},{\"name\":\"b\",\"inode\":3}],"
                   "\"id\":1}");
    size_t calls = 0;

    (void)state;
    assert_int_equal(codec_json_decode_readdir(msg, count_and_return_one, &calls), 0);
    assert_int_equal(calls, 2);
    codec_json_msg_free(msg);
}

static void decode_readdir_with_a_bad_entry_calls_back_for_none(void **state)
{
    struct codec_json_msg *msg =
        parse_text("{\"result\":[{\"name\":\"a\",\"inode\":2},{\"name\":\"b\"}],\"id\":1}");
    struct listing l = {0};

    (void)state;
    assert_int_equal(codec_json_decode_readdir(msg, listing_add, &l), -EBADMSG);
    assert_int_equal(l.count, 0);
    codec_json_msg_free(msg);
}

static void encode_readdir_result_writes_the_wire_form_and_decodes_back(void **state)
{
    const struct codec_json_dirent entries[] = {
        {".", 1, NULL}, {"..", 1, NULL}, {"a.txt", 2, NULL}, {"\xc3\xa9", INT64_MAX, NULL}};
    struct codec_json_msg *msg;
    struct listing l = {0};
    struct wire w;

    (void)state;
    assert_wire(codec_json_encode_readdir_result(w.buf, WIRE_CAP, &w.len, 42, entries, 4), &w,
                "{\"result\":[{\"name\":\".\",\"inode\":1},{\"name\":\"..\",\"inode\":1},"
                "{\"name\":\"a.txt\",\"inode\":2},{\"name\":\"\xc3\xa9\","
                "\"inode\":9223372036854775807}],\"id\":42}");
    msg = parse_wire(&w);
    assert_int_equal(codec_json_decode_readdir(msg, listing_add, &l), 0);
    assert_int_equal(l.count, 4);
    assert_string_equal(l.names[2], "a.txt");
    assert_string_equal(l.names[3], "\xc3\xa9");
    assert_int_equal(l.inos[3], INT64_MAX);
    codec_json_msg_free(msg);
}

static void encode_readdir_result_of_no_entries_is_an_empty_array(void **state)
{
    struct wire w;

    (void)state;
    assert_wire(codec_json_encode_readdir_result(w.buf, WIRE_CAP, &w.len, 1, NULL, 0), &w,
                "{\"result\":[],\"id\":1}");
}

static void encode_readdir_result_rejects_bad_entries_with_einval(void **state)
{
    const struct codec_json_dirent non_utf8[] = {{"ok", 2, NULL}, {"\xfe", 3, NULL}};
    const struct codec_json_dirent huge_ino[] = {{"big", UINT64_MAX, NULL}};
    struct wire w;

    (void)state;
    assert_int_equal(codec_json_encode_readdir_result(w.buf, WIRE_CAP, &w.len, 1, non_utf8, 2),
                     -EINVAL);
    assert_int_equal(codec_json_encode_readdir_result(w.buf, WIRE_CAP, &w.len, 1, huge_ino, 1),
                     -EINVAL);
}

/* Our extension: entries carry the attributes of a getattr result, so the gateway needs no
 * lookup per entry. First-generation entries (no "type", no "mode") come without. */
static void readdir_entries_with_attributes_round_trip(void **state)
{
    struct stat file = {.st_ino = 2, .st_mode = S_IFREG | 0640, .st_size = 5000000000};
    struct stat dir = {.st_ino = 3, .st_mode = S_IFDIR | 0755};
    struct stat fifo = {.st_ino = 4, .st_mode = S_IFIFO | 0644};
    const struct codec_json_dirent entries[] = {
        {"f", 2, &file}, {"d", 3, &dir}, {"p", 4, &fifo}, {"old", 5, NULL}};
    struct codec_json_msg *msg;
    struct listing l = {0};
    struct wire w;

    (void)state;
    file.st_mtim.tv_sec = 1700000000;
    assert_wire(codec_json_encode_readdir_result(w.buf, WIRE_CAP, &w.len, 7, entries, 4), &w,
                "{\"result\":[{\"name\":\"f\",\"inode\":2,\"mode\":416,\"type\":\"file\","
                "\"size\":5000000000,\"atime\":0,\"mtime\":1700000000,\"ctime\":0},"
                "{\"name\":\"d\",\"inode\":3,\"mode\":493,\"type\":\"dir\",\"size\":0,"
                "\"atime\":0,\"mtime\":0,\"ctime\":0},{\"name\":\"p\",\"inode\":4},"
                "{\"name\":\"old\",\"inode\":5}],\"id\":7}");
    msg = parse_wire(&w);
    assert_int_equal(codec_json_decode_readdir(msg, listing_add, &l), 0);
    assert_int_equal(l.count, 4);
    assert_true(l.has_attr[0]);
    assert_int_equal(l.attrs[0].st_mode, S_IFREG | 0640);
    assert_int_equal(l.attrs[0].st_size, 5000000000);
    assert_int_equal(l.attrs[0].st_mtim.tv_sec, 1700000000);
    assert_int_equal(l.attrs[0].st_ino, 2);
    assert_true(l.has_attr[1]);
    assert_int_equal(l.attrs[1].st_mode, S_IFDIR | 0755);
    assert_int_equal(l.attrs[1].st_ino, 3);
    assert_false(l.has_attr[2]); /* a FIFO cannot be described in JSON: looked up instead */
    assert_false(l.has_attr[3]);
    codec_json_msg_free(msg);
}

/* "." and ".." are not trusted with inodes, and not with attributes either. */
static void readdir_dot_entries_never_carry_attributes(void **state)
{
    struct codec_json_msg *msg =
        parse_text("{\"result\":[{\"name\":\".\",\"inode\":0,\"type\":\"bogus\"},"
                   "{\"name\":\"a\",\"inode\":9,\"type\":\"dir\",\"mode\":448}],\"id\":1}");
    struct listing l = {0};

    (void)state;
    assert_int_equal(codec_json_decode_readdir(msg, listing_add, &l), 0);
    assert_int_equal(l.count, 2);
    assert_false(l.has_attr[0]);
    assert_true(l.has_attr[1]);
    assert_int_equal(l.attrs[1].st_mode, S_IFDIR | 0700);
    assert_int_equal(l.attrs[1].st_nlink, 2);
    codec_json_msg_free(msg);
}

/* ------------------------------------------------------------------------------------------------
 * Buffer sizes
 * ----------------------------------------------------------------------------------------------*/

static void encoder_reports_enobufs_with_the_size_needed(void **state)
{
    struct fusebridge_request req = {.kind = FUSEBRIDGE_GETATTR, .ino = 2};
    const char *expected = "{\"method\":\"getattr\",\"params\":[\"test\",2],\"id\":8}";
    const size_t needed = strlen(expected);
    struct wire w;

    (void)state;
    memset(w.buf, '#', sizeof(w.buf));
    w.len = 0;
    assert_int_equal(codec_json_encode_request(w.buf, needed - 1, &w.len, 8, "test", &req),
                     -ENOBUFS);
    assert_int_equal(w.len, needed);
    /* nothing written at or past cap */
    assert_int_equal(w.buf[needed - 1], '#');
    assert_int_equal(w.buf[needed], '#');
}

static void encoder_succeeds_with_exactly_the_size_needed(void **state)
{
    struct fusebridge_request req = {.kind = FUSEBRIDGE_GETATTR, .ino = 2};
    const char *expected = "{\"method\":\"getattr\",\"params\":[\"test\",2],\"id\":8}";
    struct wire w;

    (void)state;
    memset(w.buf, '#', sizeof(w.buf));
    assert_int_equal(codec_json_encode_request(w.buf, strlen(expected), &w.len, 8, "test", &req),
                     0);
    assert_int_equal(w.len, strlen(expected));
    assert_memory_equal(w.buf, expected, w.len);
    assert_int_equal(w.buf[w.len], '#');
}

static void encoder_measures_with_a_null_buffer_of_size_zero(void **state)
{
    size_t len = 0;

    (void)state;
    assert_int_equal(codec_json_encode_read_result(NULL, 0, &len, 42, "hello", 5), -ENOBUFS);
    assert_int_equal(len, strlen("{\"result\":{\"data\":\"aGVsbG8=\",\"format\":\"base64\","
                                 "\"count\":5},\"id\":42}"));
    assert_int_equal(codec_json_encode_result_empty(NULL, 0, &len, 1), -ENOBUFS);
    assert_int_equal(len, strlen("{\"result\":{},\"id\":1}"));
}

/* ------------------------------------------------------------------------------------------------
 * Allocation failures
 *
 * jansson's allocator hooks take no user pointer, so the budget has to be file-static; the tests
 * that set it restore the default allocator before they assert anything.
 * ----------------------------------------------------------------------------------------------*/

static long alloc_budget; /* allocations left before jansson's malloc fails; < 0 = unlimited */

static void *budget_malloc(size_t size)
{
    if (alloc_budget == 0)
        return NULL;
    if (alloc_budget > 0)
        alloc_budget--;
    return malloc(size);
}

/* Runs fn with 0, 1, 2, ... jansson allocations allowed: each run must fail with -ENOMEM (never
 * -EINVAL, never a crash or leak under ASan) until one budget is enough and it succeeds. */
static void assert_enomem_until_enough_memory(const char *what, int (*fn)(struct wire *w))
{
    long budget;
    struct wire w;
    int rc = -ENOMEM;

    for (budget = 0; budget < 1000 && rc == -ENOMEM; budget++) {
        alloc_budget = budget;
        json_set_alloc_funcs(budget_malloc, free);
        rc = fn(&w);
        json_set_alloc_funcs(malloc, free);
    }
    if (rc != 0)
        fail_msg("%s: expected -ENOMEM and then 0, got %d with budget %ld", what, rc, budget - 1);
    /* budget 0 must have failed, or the loop proved nothing */
    assert_true(budget > 1);
}

static int oom_lookup(struct wire *w)
{
    struct fusebridge_request req = {.kind = FUSEBRIDGE_LOOKUP, .ino = 1, .name = "a.txt"};

    return codec_json_encode_request(w->buf, WIRE_CAP, &w->len, 1, "test", &req);
}

static int oom_read_request(struct wire *w)
{
    struct fusebridge_request req = {.kind = FUSEBRIDGE_READ, .ino = 2, .fh = 3, .size = 4096};

    return codec_json_encode_request(w->buf, WIRE_CAP, &w->len, 1, "test", &req);
}

static int oom_close(struct wire *w)
{
    struct fusebridge_request req = {.kind = FUSEBRIDGE_RELEASE, .ino = 2, .fh = 3};

    return codec_json_encode_request(w->buf, WIRE_CAP, &w->len, 1, "test", &req);
}

static int oom_result_empty(struct wire *w)
{
    return codec_json_encode_result_empty(w->buf, WIRE_CAP, &w->len, 1);
}

static int oom_add_filesystem_result(struct wire *w)
{
    return codec_json_encode_add_filesystem_result(w->buf, WIRE_CAP, &w->len, 1, "test");
}

static int oom_error(struct wire *w)
{
    return codec_json_encode_error(w->buf, WIRE_CAP, &w->len, 1, CODEC_JSON_BAD_NOENTRY);
}

static int oom_authenticate(struct wire *w)
{
    return codec_json_encode_authenticate(w->buf, WIRE_CAP, &w->len, 1, "bob", "secret");
}

static int oom_add_filesystem(struct wire *w)
{
    return codec_json_encode_add_filesystem(w->buf, WIRE_CAP, &w->len, 1, "test");
}

static int oom_attr(struct wire *w)
{
    struct stat st;

    memset(&st, 0, sizeof(st));
    st.st_ino = 2;
    st.st_mode = S_IFREG | 0644;
    return codec_json_encode_attr_result(w->buf, WIRE_CAP, &w->len, 1, &st);
}

static int oom_open(struct wire *w)
{
    return codec_json_encode_open_result(w->buf, WIRE_CAP, &w->len, 1, 7);
}

static int oom_readdir(struct wire *w)
{
    const struct codec_json_dirent entries[] = {{".", 1, NULL}, {"a", 2, NULL}, {"b", 3, NULL}};

    return codec_json_encode_readdir_result(w->buf, WIRE_CAP, &w->len, 1, entries, 3);
}

static void every_encoder_fails_with_enomem_when_allocation_fails(void **state)
{
    const struct {
        const char *what;
        int (*fn)(struct wire *w);
    } encoders[] = {
        {"lookup", oom_lookup},
        {"read request", oom_read_request},
        {"close", oom_close},
        {"result_empty", oom_result_empty},
        {"add_filesystem_result", oom_add_filesystem_result},
        {"error", oom_error},
        {"authenticate", oom_authenticate},
        {"add_filesystem", oom_add_filesystem},
        {"attr", oom_attr},
        {"open", oom_open},
        {"readdir", oom_readdir},
    };
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_SIZE(encoders); i++)
        assert_enomem_until_enough_memory(encoders[i].what, encoders[i].fn);
}

/* jansson's parser reports its allocation failures as syntax errors (a failed string copy becomes
 * an invalid token), so a parse may fail with either code; what must hold is that it fails cleanly
 * (no crash, no leak under ASan) and succeeds once memory suffices. */
static void parse_fails_cleanly_when_allocation_fails(void **state)
{
    const char *text =
        "{\"result\":[{\"name\":\"a\",\"inode\":2},{\"name\":\"\\u00e9\",\"inode\":3}],\"id\":1}";
    struct codec_json_msg *msg = NULL;
    struct listing l = {0};
    long budget;
    int rc = -ENOMEM;

    (void)state;
    for (budget = 0; budget < 1000 && rc != 0; budget++) {
        alloc_budget = budget;
        json_set_alloc_funcs(budget_malloc, free);
        rc = codec_json_parse(text, strlen(text), &msg);
        json_set_alloc_funcs(malloc, free);
        if (rc != 0 && rc != -ENOMEM && rc != -EBADMSG)
            fail_msg("budget %ld: unexpected %d", budget, rc);
    }
    assert_int_equal(rc, 0);
    assert_true(budget > 1);
    assert_int_equal(codec_json_decode_readdir(msg, listing_add, &l), 0);
    assert_int_equal(l.count, 2);
    assert_string_equal(l.names[1], "\xc3\xa9");
    codec_json_msg_free(msg);
}

/* ------------------------------------------------------------------------------------------------
 * Malformed input: one cmocka test per row
 * ----------------------------------------------------------------------------------------------*/

/* Which call must fail with -EBADMSG. For every stage but PARSE the envelope itself is valid, so
 * the row also checks that codec_json_parse accepts it: the failure belongs to the decoder. */
enum stage {
    AT_PARSE,
    AT_AUTHENTICATE,
    AT_ADD_FILESYSTEM,
    AT_ATTR,
    AT_OPEN,
    AT_READ,
    AT_READDIR,
    AT_REQUEST,
};

struct malformed {
    const char *name;
    enum stage stage;
    const char *wire;
};

#define R(body) "{\"result\":" body ",\"id\":1}"
#define CALL(method, params) "{\"method\":\"" method "\",\"params\":" params ",\"id\":1}"
#define NOTE(method, params) "{\"method\":\"" method "\",\"params\":" params "}"
#define FILE_ATTR(extra) R("{\"mode\":420,\"type\":\"file\"" extra "}")
#define READ_RESULT(data, format, count)                                                           \
    R("{\"data\":" data ",\"format\":" format ",\"count\":" count "}")

static struct malformed malformed_inputs[] = {
    /* envelopes */
    {"parse_rejects_text_that_is_not_json", AT_PARSE, "hello"},
    {"parse_rejects_empty_input", AT_PARSE, ""},
    {"parse_rejects_truncated_json", AT_PARSE, "{\"method\":\"lookup\""},
    {"parse_rejects_trailing_bytes_after_the_object", AT_PARSE, R("{}") " x"},
    {"parse_rejects_two_objects", AT_PARSE, R("{}") R("{}")},
    {"parse_rejects_a_top_level_array", AT_PARSE, "[" R("{}") "]"},
    {"parse_rejects_a_top_level_string", AT_PARSE, "\"result\""},
    {"parse_rejects_a_top_level_number", AT_PARSE, "42"},
    {"parse_rejects_a_float_id_on_a_result", AT_PARSE, "{\"result\":{},\"id\":1.0}"},
    {"parse_rejects_an_exponent_id", AT_PARSE, "{\"result\":{},\"id\":1e3}"},
    {"parse_rejects_a_float_id_on_a_request", AT_PARSE,
     "{\"method\":\"m\",\"params\":[],\"id\":2.5}"},
    {"parse_rejects_a_string_id_on_a_result", AT_PARSE, "{\"result\":{},\"id\":\"1\"}"},
    {"parse_rejects_a_string_id_on_a_request", AT_PARSE,
     "{\"method\":\"m\",\"params\":[],\"id\":\"1\"}"},
    {"parse_rejects_a_null_id", AT_PARSE, "{\"result\":{},\"id\":null}"},
    {"parse_rejects_a_boolean_id", AT_PARSE, "{\"result\":{},\"id\":true}"},
    {"parse_rejects_a_request_without_params", AT_PARSE, "{\"method\":\"lookup\",\"id\":1}"},
    {"parse_rejects_params_that_are_an_object", AT_PARSE, CALL("lookup", "{}")},
    {"parse_rejects_params_that_are_a_string", AT_PARSE, CALL("lookup", "\"t\"")},
    {"parse_rejects_a_method_that_is_not_a_string", AT_PARSE,
     "{\"method\":1,\"params\":[],\"id\":1}"},
    {"parse_rejects_a_method_with_an_embedded_nul", AT_PARSE, CALL("look\\u0000up", "[]")},
    {"parse_rejects_an_empty_object", AT_PARSE, "{}"},
    {"parse_rejects_an_id_alone", AT_PARSE, "{\"id\":1}"},
    {"parse_rejects_an_unknown_envelope", AT_PARSE, "{\"foo\":\"bar\",\"id\":1}"},
    {"parse_rejects_a_result_without_id", AT_PARSE, "{\"result\":{}}"},
    {"parse_rejects_an_error_without_id", AT_PARSE, "{\"error\":{\"code\":1}}"},
    {"parse_rejects_an_error_without_code", AT_PARSE, "{\"error\":{},\"id\":1}"},
    {"parse_rejects_an_error_with_only_a_message", AT_PARSE,
     "{\"error\":{\"message\":\"x\"},\"id\":1}"},
    {"parse_rejects_an_error_with_a_float_code", AT_PARSE, "{\"error\":{\"code\":1.0},\"id\":1}"},
    {"parse_rejects_an_error_with_a_string_code", AT_PARSE,
     "{\"error\":{\"code\":\"101\"},\"id\":1}"},
    {"parse_rejects_an_error_that_is_not_an_object", AT_PARSE, "{\"error\":101,\"id\":1}"},
    {"parse_rejects_an_error_code_beyond_int", AT_PARSE,
     "{\"error\":{\"code\":4294967397},\"id\":1}"},
    {"parse_rejects_a_result_and_an_error_together", AT_PARSE,
     "{\"result\":{},\"error\":{\"code\":1},\"id\":1}"},
    {"parse_rejects_an_id_above_int64_max", AT_PARSE, "{\"result\":{},\"id\":9223372036854775808}"},
    {"parse_rejects_an_id_below_int64_min", AT_PARSE,
     "{\"result\":{},\"id\":-9223372036854775809}"},
    {"parse_rejects_an_inode_above_int64_max", AT_PARSE,
     CALL("getattr", "[\"t\",9223372036854775808]")},
    {"parse_rejects_a_twenty_digit_size", AT_PARSE, FILE_ATTR(",\"size\":18446744073709551616")},
    {"parse_rejects_duplicate_keys", AT_PARSE, "{\"id\":1,\"id\":2,\"result\":{}}"},
    {"parse_rejects_invalid_utf8_bytes", AT_PARSE, CALL("\xff", "[]")},
    {"parse_rejects_an_unpaired_surrogate_escape", AT_PARSE, CALL("m", "[\"\\ud83d\"]")},
    {"parse_rejects_a_raw_control_character_in_a_string", AT_PARSE, CALL("m", "[\"a\nb\"]")},

    /* authenticate */
    {"authenticate_rejects_a_different_method", AT_AUTHENTICATE, CALL("add_filesystem", "[\"t\"]")},
    {"authenticate_rejects_a_notification", AT_AUTHENTICATE,
     NOTE("authenticate", "[\"username\",{}]")},
    {"authenticate_rejects_one_param", AT_AUTHENTICATE, CALL("authenticate", "[\"username\"]")},
    {"authenticate_rejects_three_params", AT_AUTHENTICATE,
     CALL("authenticate", "[\"username\",{},1]")},
    {"authenticate_rejects_a_type_that_is_not_a_string", AT_AUTHENTICATE,
     CALL("authenticate", "[1,{}]")},
    {"authenticate_rejects_credentials_that_are_not_an_object", AT_AUTHENTICATE,
     CALL("authenticate", "[\"username\",\"bob\"]")},
    {"authenticate_rejects_a_username_that_is_not_a_string", AT_AUTHENTICATE,
     CALL("authenticate", "[\"username\",{\"username\":1,\"password\":\"p\"}]")},
    {"authenticate_rejects_a_password_that_is_not_a_string", AT_AUTHENTICATE,
     CALL("authenticate", "[\"username\",{\"username\":\"u\",\"password\":null}]")},
    {"authenticate_rejects_a_result", AT_AUTHENTICATE, R("{}")},

    /* add_filesystem */
    {"add_filesystem_rejects_no_params", AT_ADD_FILESYSTEM, CALL("add_filesystem", "[]")},
    {"add_filesystem_rejects_two_params", AT_ADD_FILESYSTEM,
     CALL("add_filesystem", "[\"a\",\"b\"]")},
    {"add_filesystem_rejects_a_name_that_is_not_a_string", AT_ADD_FILESYSTEM,
     CALL("add_filesystem", "[1]")},
    {"add_filesystem_rejects_a_name_with_an_embedded_nul", AT_ADD_FILESYSTEM,
     CALL("add_filesystem", "[\"a\\u0000b\"]")},
    {"add_filesystem_rejects_a_notification", AT_ADD_FILESYSTEM, NOTE("add_filesystem", "[\"t\"]")},
    {"add_filesystem_rejects_a_different_method", AT_ADD_FILESYSTEM,
     CALL("authenticate", "[\"t\"]")},

    /* attributes */
    {"attr_rejects_an_unknown_type", AT_ATTR, R("{\"mode\":420,\"type\":\"link\"}")},
    {"attr_rejects_a_type_in_other_case", AT_ATTR, R("{\"mode\":420,\"type\":\"File\"}")},
    {"attr_rejects_a_missing_type", AT_ATTR, R("{\"mode\":420}")},
    {"attr_rejects_a_type_that_is_not_a_string", AT_ATTR, R("{\"mode\":420,\"type\":1}")},
    {"attr_rejects_a_missing_mode", AT_ATTR, R("{\"type\":\"file\"}")},
    {"attr_rejects_a_float_mode", AT_ATTR, R("{\"mode\":420.0,\"type\":\"file\"}")},
    {"attr_rejects_a_string_mode", AT_ATTR, R("{\"mode\":\"0644\",\"type\":\"file\"}")},
    {"attr_rejects_a_negative_mode", AT_ATTR, R("{\"mode\":-1,\"type\":\"file\"}")},
    {"attr_rejects_a_negative_size", AT_ATTR, FILE_ATTR(",\"size\":-1")},
    {"attr_rejects_a_float_size", AT_ATTR, FILE_ATTR(",\"size\":5.0")},
    {"attr_rejects_a_null_size", AT_ATTR, FILE_ATTR(",\"size\":null")},
    {"attr_rejects_a_negative_atime", AT_ATTR, FILE_ATTR(",\"atime\":-1")},
    {"attr_rejects_a_float_mtime", AT_ATTR, FILE_ATTR(",\"mtime\":1.5")},
    {"attr_rejects_a_string_ctime", AT_ATTR, FILE_ATTR(",\"ctime\":\"3\"")},
    {"attr_rejects_a_float_inode", AT_ATTR, FILE_ATTR(",\"inode\":2.0")},
    {"attr_rejects_a_result_that_is_an_array", AT_ATTR, R("[]")},
    {"attr_rejects_an_error_response", AT_ATTR, "{\"error\":{\"code\":101},\"id\":1}"},
    {"attr_rejects_a_request", AT_ATTR, CALL("getattr", "[\"t\",1]")},

    /* open */
    {"open_rejects_a_missing_handle", AT_OPEN, R("{}")},
    {"open_rejects_a_float_handle", AT_OPEN, R("{\"handle\":1.0}")},
    {"open_rejects_a_string_handle", AT_OPEN, R("{\"handle\":\"1\"}")},
    {"open_rejects_a_negative_handle", AT_OPEN, R("{\"handle\":-1}")},
    {"open_rejects_a_result_that_is_a_number", AT_OPEN, R("7")},
    {"open_rejects_an_error_response", AT_OPEN, "{\"error\":{\"code\":102},\"id\":1}"},

    /* read (decoded into READ_CAP bytes) */
    {"read_rejects_an_identity_count_mismatch", AT_READ,
     READ_RESULT("\"hello\"", "\"identity\"", "4")},
    {"read_rejects_an_identity_count_that_counts_characters_not_bytes", AT_READ,
     READ_RESULT("\"h\\u00e9\"", "\"identity\"", "2")},
    {"read_rejects_a_base64_count_mismatch", AT_READ,
     READ_RESULT("\"aGVsbG8=\"", "\"base64\"", "6")},
    {"read_rejects_a_base64_count_of_the_encoded_length", AT_READ,
     READ_RESULT("\"aGVsbG8=\"", "\"base64\"", "8")},
    {"read_rejects_invalid_base64_characters", AT_READ,
     READ_RESULT("\"aGVs*G8=\"", "\"base64\"", "5")},
    {"read_rejects_base64_without_padding", AT_READ, READ_RESULT("\"aGVsbG8\"", "\"base64\"", "5")},
    {"read_rejects_base64_with_whitespace", AT_READ,
     READ_RESULT("\"aGVs\\nbG8=\"", "\"base64\"", "5")},
    {"read_rejects_identity_data_larger_than_cap", AT_READ,
     READ_RESULT("\"0123456789abcdefg\"", "\"identity\"", "17")},
    {"read_rejects_base64_data_larger_than_cap", AT_READ,
     READ_RESULT("\"MDEyMzQ1Njc4OWFiY2RlZmc=\"", "\"base64\"", "17")},
    {"read_rejects_an_unknown_format", AT_READ, READ_RESULT("\"68656c6c6f\"", "\"hex\"", "5")},
    {"read_rejects_a_format_that_is_not_a_string", AT_READ, READ_RESULT("\"hello\"", "1", "5")},
    {"read_rejects_a_missing_format", AT_READ, R("{\"data\":\"hello\",\"count\":5}")},
    {"read_rejects_missing_data", AT_READ, R("{\"format\":\"identity\",\"count\":0}")},
    {"read_rejects_data_that_is_not_a_string", AT_READ, READ_RESULT("[]", "\"identity\"", "0")},
    {"read_rejects_a_missing_count", AT_READ, R("{\"data\":\"hello\",\"format\":\"identity\"}")},
    {"read_rejects_a_float_count", AT_READ, READ_RESULT("\"hello\"", "\"identity\"", "5.0")},
    {"read_rejects_a_string_count", AT_READ, READ_RESULT("\"hello\"", "\"identity\"", "\"5\"")},
    {"read_rejects_a_negative_count", AT_READ, READ_RESULT("\"\"", "\"identity\"", "-1")},
    {"read_rejects_a_result_that_is_a_string", AT_READ, R("\"hello\"")},
    {"read_rejects_an_error_response", AT_READ, "{\"error\":{\"code\":1},\"id\":1}"},

    /* readdir */
    {"readdir_rejects_an_entry_without_name", AT_READDIR, R("[{\"inode\":2}]")},
    {"readdir_rejects_an_entry_without_inode", AT_READDIR, R("[{\"name\":\"a\"}]")},
    {"readdir_rejects_a_name_that_is_not_a_string", AT_READDIR, R("[{\"name\":1,\"inode\":2}]")},
    {"readdir_rejects_a_name_with_an_embedded_nul", AT_READDIR,
     R("[{\"name\":\"a\\u0000b\",\"inode\":2}]")},
    {"readdir_rejects_a_float_inode", AT_READDIR, R("[{\"name\":\"a\",\"inode\":2.0}]")},
    {"readdir_rejects_a_string_inode", AT_READDIR, R("[{\"name\":\"a\",\"inode\":\"2\"}]")},
    {"readdir_rejects_inode_zero_for_a_real_entry", AT_READDIR,
     R("[{\"name\":\"a\",\"inode\":0}]")},
    {"readdir_rejects_a_negative_inode_for_a_real_entry", AT_READDIR,
     R("[{\"name\":\"a\",\"inode\":-3}]")},
    {"readdir_rejects_a_dot_entry_with_a_string_inode", AT_READDIR,
     R("[{\"name\":\"..\",\"inode\":\"1\"}]")},
    {"readdir_rejects_an_entry_that_is_a_string", AT_READDIR, R("[\"a\"]")},
    {"readdir_rejects_an_entry_that_is_an_array", AT_READDIR, R("[[\"a\",2]]")},
    {"readdir_rejects_a_result_that_is_an_object", AT_READDIR, R("{\"a\":2}")},
    {"readdir_rejects_an_entry_with_a_type_but_no_mode", AT_READDIR,
     R("[{\"name\":\"a\",\"inode\":2,\"type\":\"file\"}]")},
    {"readdir_rejects_an_entry_with_a_mode_but_no_type", AT_READDIR,
     R("[{\"name\":\"a\",\"inode\":2,\"mode\":420}]")},
    {"readdir_rejects_an_entry_of_an_unknown_type", AT_READDIR,
     R("[{\"name\":\"a\",\"inode\":2,\"type\":\"link\",\"mode\":420}]")},
    {"readdir_rejects_an_entry_with_a_string_size", AT_READDIR,
     R("[{\"name\":\"a\",\"inode\":2,\"type\":\"file\",\"mode\":420,\"size\":\"1\"}]")},
    {"readdir_rejects_an_entry_with_a_negative_mtime", AT_READDIR,
     R("[{\"name\":\"a\",\"inode\":2,\"type\":\"file\",\"mode\":420,\"mtime\":-1}]")},
    {"readdir_rejects_an_error_response", AT_READDIR, "{\"error\":{\"code\":101},\"id\":1}"},

    /* provider side: requests from the gateway */
    {"request_rejects_an_unknown_method", AT_REQUEST, CALL("write", "[\"t\",2]")},
    {"request_rejects_lookup_with_two_params", AT_REQUEST, CALL("lookup", "[\"t\",1]")},
    {"request_rejects_lookup_with_four_params", AT_REQUEST, CALL("lookup", "[\"t\",1,\"a\",0]")},
    {"request_rejects_getattr_with_one_param", AT_REQUEST, CALL("getattr", "[\"t\"]")},
    {"request_rejects_getattr_with_three_params", AT_REQUEST, CALL("getattr", "[\"t\",1,0]")},
    {"request_rejects_readdir_with_one_param", AT_REQUEST, CALL("readdir", "[\"t\"]")},
    {"request_rejects_readdir_with_three_params", AT_REQUEST, CALL("readdir", "[\"t\",1,0]")},
    {"request_rejects_open_with_two_params", AT_REQUEST, CALL("open", "[\"t\",2]")},
    {"request_rejects_open_with_four_params", AT_REQUEST, CALL("open", "[\"t\",2,0,0]")},
    {"request_rejects_read_with_four_params", AT_REQUEST, CALL("read", "[\"t\",2,5,0]")},
    {"request_rejects_read_with_six_params", AT_REQUEST, CALL("read", "[\"t\",2,5,0,10,0]")},
    {"request_rejects_close_with_three_params", AT_REQUEST, NOTE("close", "[\"t\",2,5]")},
    {"request_rejects_close_with_five_params", AT_REQUEST, NOTE("close", "[\"t\",2,5,0,0]")},
    {"request_rejects_no_params", AT_REQUEST, CALL("getattr", "[]")},
    {"request_rejects_a_filesystem_that_is_not_a_string", AT_REQUEST, CALL("getattr", "[1,2]")},
    {"request_rejects_a_null_filesystem", AT_REQUEST, CALL("getattr", "[null,2]")},
    {"request_rejects_a_string_inode", AT_REQUEST, CALL("getattr", "[\"t\",\"2\"]")},
    {"request_rejects_a_float_inode", AT_REQUEST, CALL("getattr", "[\"t\",2.0]")},
    {"request_rejects_a_negative_inode", AT_REQUEST, CALL("getattr", "[\"t\",-2]")},
    {"request_rejects_a_lookup_name_that_is_not_a_string", AT_REQUEST,
     CALL("lookup", "[\"t\",1,7]")},
    {"request_rejects_a_lookup_name_with_an_embedded_nul", AT_REQUEST,
     CALL("lookup", "[\"t\",1,\"a\\u0000b\"]")},
    {"request_rejects_open_flags_beyond_int32", AT_REQUEST, CALL("open", "[\"t\",2,2147483648]")},
    {"request_rejects_float_open_flags", AT_REQUEST, CALL("open", "[\"t\",2,0.0]")},
    {"request_rejects_a_float_read_handle", AT_REQUEST, CALL("read", "[\"t\",2,5.0,0,10]")},
    {"request_rejects_a_negative_read_offset", AT_REQUEST, CALL("read", "[\"t\",2,5,-1,10]")},
    {"request_rejects_a_read_length_beyond_uint32", AT_REQUEST,
     CALL("read", "[\"t\",2,5,0,4294967296]")},
    {"request_rejects_a_negative_read_length", AT_REQUEST, CALL("read", "[\"t\",2,5,0,-1]")},
    {"request_rejects_a_string_close_handle", AT_REQUEST, NOTE("close", "[\"t\",2,\"5\",0]")},
    {"request_rejects_close_flags_beyond_int32", AT_REQUEST,
     NOTE("close", "[\"t\",2,5,2147483648]")},
    {"request_rejects_close_sent_as_a_request_with_id", AT_REQUEST, CALL("close", "[\"t\",2,5,0]")},
    {"request_rejects_lookup_sent_as_a_notification", AT_REQUEST,
     NOTE("lookup", "[\"t\",1,\"a\"]")},
    {"request_rejects_a_provider_request", AT_REQUEST, CALL("add_filesystem", "[\"t\"]")},
    {"request_rejects_a_result", AT_REQUEST, R("{}")},
    {"request_rejects_an_error_response", AT_REQUEST, "{\"error\":{\"code\":1},\"id\":1}"},
};

static int ignore_entry(void *user, const char *name, uint64_t ino, const struct stat *attr)
{
    (void)name;
    (void)ino;
    (void)attr;
    ++*(size_t *)user;
    return 0;
}

/* Runs the decoder of `stage` on msg; -EBADMSG is what every row expects. */
static int decode_at(enum stage stage, const struct codec_json_msg *msg, size_t *callbacks)
{
    const char *a, *b, *c;
    struct fusebridge_request req;
    char buf[READ_CAP];
    struct stat st;
    uint64_t handle;
    size_t len;

    switch (stage) {
    case AT_AUTHENTICATE:
        return codec_json_decode_authenticate(msg, &a, &b, &c);
    case AT_ADD_FILESYSTEM:
        return codec_json_decode_add_filesystem(msg, &a);
    case AT_ATTR:
        return codec_json_decode_attr(msg, &st);
    case AT_OPEN:
        return codec_json_decode_open(msg, &handle);
    case AT_READ:
        return codec_json_decode_read(msg, buf, sizeof(buf), &len);
    case AT_READDIR:
        return codec_json_decode_readdir(msg, ignore_entry, callbacks);
    case AT_REQUEST:
        return codec_json_decode_request(msg, &a, &req);
    default:
        fail_msg("no decoder for stage %d", (int)stage);
        return 0;
    }
}

static void malformed_input_is_rejected_with_ebadmsg(void **state)
{
    const struct malformed *m = *state;
    struct codec_json_msg *msg = NULL;
    size_t callbacks = 0;
    int rc;

    rc = codec_json_parse(m->wire, strlen(m->wire), &msg);
    if (m->stage == AT_PARSE) {
        if (rc == 0)
            codec_json_msg_free(msg);
        assert_int_equal(rc, -EBADMSG);
        assert_null(msg);
        return;
    }
    if (rc != 0)
        fail_msg("the envelope of %s should parse, got %d", m->wire, rc);
    rc = decode_at(m->stage, msg, &callbacks);
    codec_json_msg_free(msg);
    assert_int_equal(rc, -EBADMSG);
    assert_int_equal(callbacks, 0);
}

int main(void)
{
    static const struct CMUnitTest named[] = {
        cmocka_unit_test(status_to_errno_follows_the_protocol_table),
        cmocka_unit_test(status_to_errno_maps_unknown_codes_to_eio),
        cmocka_unit_test(errno_to_status_follows_the_protocol_table),
        cmocka_unit_test(errno_to_status_maps_unmapped_errnos_to_bad),
        cmocka_unit_test(specific_statuses_survive_errno_and_back),
        cmocka_unit_test(parse_request_reports_kind_method_and_id),
        cmocka_unit_test(parse_notification_has_no_id),
        cmocka_unit_test(parse_result_has_id_and_no_method),
        cmocka_unit_test(parse_error_with_only_a_code_reports_the_status),
        cmocka_unit_test(parse_error_with_a_message_reports_the_status),
        cmocka_unit_test(parse_accepts_members_in_any_order_and_whitespace),
        cmocka_unit_test(parse_does_not_require_a_jsonrpc_member_but_tolerates_one),
        cmocka_unit_test(parse_accepts_full_64bit_ids),
        cmocka_unit_test(parse_uses_the_length_not_a_nul_terminator),
        cmocka_unit_test(msg_free_accepts_null),
        cmocka_unit_test(decode_authenticate_reads_the_wire_form),
        cmocka_unit_test(decode_authenticate_reports_absent_credentials_as_null),
        cmocka_unit_test(encode_authenticate_writes_the_wire_form_and_decodes_back),
        cmocka_unit_test(decode_add_filesystem_reads_the_wire_form),
        cmocka_unit_test(encode_add_filesystem_writes_the_wire_form_and_decodes_back),
        cmocka_unit_test(encode_filesystem_detached_is_a_notification_and_decodes_back),
        cmocka_unit_test(decode_filesystem_detached_refuses_requests_and_other_shapes),
        cmocka_unit_test(encode_result_empty_writes_an_empty_object),
        cmocka_unit_test(encode_add_filesystem_result_echoes_the_name),
        cmocka_unit_test(encode_error_writes_code_and_message_and_parses_back),
        cmocka_unit_test(encode_error_round_trips_every_status),
        cmocka_unit_test(error_message_of_its_own_is_sent_and_read_back),
        cmocka_unit_test(encode_request_writes_each_method_in_its_wire_form),
        cmocka_unit_test(release_is_encoded_as_close_notification_without_id),
        cmocka_unit_test(encoded_requests_decode_back_to_the_same_request),
        cmocka_unit_test(decode_request_reads_each_literal_wire_form),
        cmocka_unit_test(request_fields_keep_their_full_range),
        cmocka_unit_test(encode_request_rejects_values_above_int64_max_with_einval),
        cmocka_unit_test(encode_request_rejects_a_non_utf8_name_with_einval),
        cmocka_unit_test(encode_request_writes_utf8_names_raw_and_escapes_specials),
        cmocka_unit_test(decode_request_decodes_unicode_escapes_in_names),
        cmocka_unit_test(decode_attr_reads_a_full_file_entry),
        cmocka_unit_test(decode_attr_defaults_omitted_members_of_a_directory_to_zero),
        cmocka_unit_test(decode_attr_keeps_only_permission_bits_of_mode),
        cmocka_unit_test(decode_attr_rounds_blocks_up_to_512_bytes),
        cmocka_unit_test(decode_attr_accepts_64bit_inode_and_size),
        cmocka_unit_test(decode_attr_reports_an_inode_below_one_as_zero),
        cmocka_unit_test(encode_attr_result_writes_the_wire_form_and_decodes_back),
        cmocka_unit_test(encode_attr_result_sends_directories_as_dir_with_permission_bits_only),
        cmocka_unit_test(encode_attr_result_sends_times_before_1970_as_zero),
        cmocka_unit_test(encode_attr_result_rejects_other_file_types_with_einval),
        cmocka_unit_test(encode_attr_result_rejects_an_inode_above_int64_max_with_einval),
        cmocka_unit_test(encode_attr_result_rejects_a_negative_size_with_einval),
        cmocka_unit_test(decode_open_reads_the_handle),
        cmocka_unit_test(encode_open_result_writes_the_wire_form_and_decodes_back),
        cmocka_unit_test(encode_open_result_rejects_a_handle_above_int64_max_with_einval),
        cmocka_unit_test(decode_read_copies_identity_data),
        cmocka_unit_test(decode_read_counts_identity_data_in_utf8_bytes),
        cmocka_unit_test(decode_read_keeps_nul_bytes_of_identity_data),
        cmocka_unit_test(decode_read_decodes_base64_data),
        cmocka_unit_test(decode_read_decodes_long_base64_data),
        cmocka_unit_test(parse_refuses_long_read_results_jansson_refuses),
        cmocka_unit_test(decode_read_accepts_the_c_library_empty_read),
        cmocka_unit_test(decode_read_accepts_data_exactly_as_large_as_cap),
        cmocka_unit_test(encode_read_result_sends_base64),
        cmocka_unit_test(encode_read_result_sends_empty_reads_as_identity),
        cmocka_unit_test(encoded_binary_read_decodes_back_byte_for_byte),
        cmocka_unit_test(decode_readdir_reports_entries_in_order),
        cmocka_unit_test(decode_readdir_tolerates_untrusted_dot_inodes),
        cmocka_unit_test(decode_readdir_of_an_empty_array_calls_back_never),
        cmocka_unit_test(decode_readdir_stops_at_a_negative_callback_value),
        cmocka_unit_test(decode_readdir_continues_after_a_positive_callback_value),
        cmocka_unit_test(decode_readdir_with_a_bad_entry_calls_back_for_none),
        cmocka_unit_test(encode_readdir_result_writes_the_wire_form_and_decodes_back),
        cmocka_unit_test(encode_readdir_result_of_no_entries_is_an_empty_array),
        cmocka_unit_test(encode_readdir_result_rejects_bad_entries_with_einval),
        cmocka_unit_test(readdir_entries_with_attributes_round_trip),
        cmocka_unit_test(readdir_dot_entries_never_carry_attributes),
        cmocka_unit_test(encoder_reports_enobufs_with_the_size_needed),
        cmocka_unit_test(encoder_succeeds_with_exactly_the_size_needed),
        cmocka_unit_test(encoder_measures_with_a_null_buffer_of_size_zero),
        cmocka_unit_test(every_encoder_fails_with_enomem_when_allocation_fails),
        cmocka_unit_test(parse_fails_cleanly_when_allocation_fails),
    };
    /* The malformed rows become tests of their own, named after the row. */
    struct CMUnitTest tests[ARRAY_SIZE(named) + ARRAY_SIZE(malformed_inputs)];
    size_t i;

    for (i = 0; i < ARRAY_SIZE(named); i++)
        tests[i] = named[i];
    for (i = 0; i < ARRAY_SIZE(malformed_inputs); i++) {
        struct CMUnitTest *t = &tests[ARRAY_SIZE(named) + i];
        *t = (struct CMUnitTest)cmocka_unit_test_prestate(malformed_input_is_rejected_with_ebadmsg,
                                                          &malformed_inputs[i]);
        t->name = malformed_inputs[i].name;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
