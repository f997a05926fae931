/* Unit tests for the webfuse2 binary codec in session/codec_webfuse2.c.
 *
 * Three groups: the test vectors of docs/webfuse2-protocol.md in all four directions (service
 * encodes the request, provider decodes it, provider encodes the response, service decodes it);
 * a round trip of every request and response type with values that use all 64 bits; and malformed
 * input. Messages under test are copied into heap blocks of exactly their size, so that a run with
 * -fsanitize=address catches any read past the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "session.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A string or bytes literal as pointer + length (without the terminating NUL). */
#define S(lit)                                                                                     \
    {                                                                                              \
        (lit), sizeof(lit) - 1                                                                     \
    }

/* ------------------------------------------------------------------------------------------------
 * Helpers
 * ----------------------------------------------------------------------------------------------*/

#define MAX_MSG 512

struct msg {
    unsigned char b[MAX_MSG];
    size_t n;
};

/* Hex digits, spaces ignored. */
static struct msg hex(const char *text)
{
    struct msg m = {{0}, 0};
    int hi = -1;

    for (; *text != '\0'; text++) {
        int v = 0;
        if (*text == ' ')
            continue;
        if (*text >= '0' && *text <= '9')
            v = *text - '0';
        else if (*text >= 'a' && *text <= 'f')
            v = *text - 'a' + 10;
        else
            fail_msg("bad hex digit '%c'", *text);
        if (hi < 0) {
            hi = v;
            continue;
        }
        assert_true(m.n < MAX_MSG);
        m.b[m.n++] = (unsigned char)(hi << 4 | v);
        hi = -1;
    }
    assert_int_equal(hi, -1);
    return m;
}

static struct msg msg_append(struct msg m, const char *more)
{
    struct msg tail = hex(more);

    assert_true(m.n + tail.n <= MAX_MSG);
    memcpy(m.b + m.n, tail.b, tail.n);
    m.n += tail.n;
    return m;
}

/* Decoding twice: once from a heap copy of exactly n bytes (ASan reports any read past it), and
 * once from m itself, so that borrowed pointers in the result point into m. Both must agree. */
static unsigned char *exact_copy(const struct msg *m, size_t n)
{
    unsigned char *copy = malloc(n > 0 ? n : 1);

    assert_non_null(copy);
    assert_true(n <= MAX_MSG);
    if (n > 0)
        memcpy(copy, m->b, n);
    return copy;
}

static int decode_request_prefix(const struct msg *m, size_t n, struct codec_wf2_request *req)
{
    unsigned char *copy = exact_copy(m, n);
    int rc = codec_wf2_decode_request(copy, n, req);

    free(copy);
    assert_int_equal(codec_wf2_decode_request(m->b, n, req), rc);
    return rc;
}

static int decode_response_prefix(const struct msg *m, size_t n, uint8_t expected, uint32_t size,
                                  struct codec_wf2_response *resp)
{
    unsigned char *copy = exact_copy(m, n);
    int rc = codec_wf2_decode_response(copy, n, expected, size, resp);

    free(copy);
    assert_int_equal(codec_wf2_decode_response(m->b, n, expected, size, resp), rc);
    return rc;
}

static int decode_request(const struct msg *m, struct codec_wf2_request *req)
{
    return decode_request_prefix(m, m->n, req);
}

static int decode_response(const struct msg *m, uint8_t expected, uint32_t size,
                           struct codec_wf2_response *resp)
{
    return decode_response_prefix(m, m->n, expected, size, resp);
}

/* A decoded string is borrowed from the message: it must lie inside it. */
static void assert_inside(const void *ptr, size_t len, const struct msg *m)
{
    const unsigned char *p = ptr;

    assert_non_null(p);
    assert_true(p >= m->b && p + len <= m->b + m->n);
}

static void assert_str_equal(struct codec_wf2_str expected, struct codec_wf2_str actual,
                             const struct msg *m)
{
    assert_int_equal(actual.len, expected.len);
    if (expected.len > 0)
        assert_memory_equal(actual.ptr, expected.ptr, expected.len);
    if (expected.ptr != NULL)
        assert_inside(actual.ptr, actual.len, m);
    else
        assert_null(actual.ptr);
}

static void assert_bytes_equal(struct codec_wf2_bytes expected, struct codec_wf2_bytes actual,
                               const struct msg *m)
{
    struct codec_wf2_str e = {expected.ptr, expected.len};
    struct codec_wf2_str a = {actual.ptr, actual.len};

    assert_str_equal(e, a, m);
}

static void assert_ts_equal(struct codec_wf2_timestamp expected, struct codec_wf2_timestamp actual)
{
    assert_int_equal(actual.sec, expected.sec);
    assert_int_equal(actual.nsec, expected.nsec);
}

/* Every field of a decoded request against the expected one; strings must point into m. */
static void assert_request_equal(const struct codec_wf2_request *e,
                                 const struct codec_wf2_request *a, const struct msg *m)
{
    assert_int_equal(a->id, e->id);
    assert_int_equal(a->type, e->type);
    assert_str_equal(e->path, a->path, m);
    assert_str_equal(e->path2, a->path2, m);
    assert_str_equal(e->target, a->target, m);
    assert_int_equal(a->mode, e->mode);
    assert_int_equal(a->uid, e->uid);
    assert_int_equal(a->gid, e->gid);
    assert_int_equal(a->rdev, e->rdev);
    assert_int_equal(a->size, e->size);
    assert_int_equal(a->offset, e->offset);
    assert_int_equal(a->read_size, e->read_size);
    assert_int_equal(a->max_entries, e->max_entries);
    assert_int_equal(a->handle, e->handle);
    assert_int_equal(a->flags, e->flags);
    assert_int_equal(a->access_mode, e->access_mode);
    assert_int_equal(a->rename_flags, e->rename_flags);
    assert_int_equal(a->datasync, e->datasync);
    assert_bytes_equal(e->data, a->data, m);
    assert_ts_equal(e->atime, a->atime);
    assert_ts_equal(e->mtime, a->mtime);
}

static void assert_attr_equal(const struct codec_wf2_attr *e, const struct codec_wf2_attr *a)
{
    assert_int_equal(a->inode, e->inode);
    assert_int_equal(a->nlink, e->nlink);
    assert_int_equal(a->mode, e->mode);
    assert_int_equal(a->uid, e->uid);
    assert_int_equal(a->gid, e->gid);
    assert_int_equal(a->rdev, e->rdev);
    assert_int_equal(a->size, e->size);
    assert_int_equal(a->blocks, e->blocks);
    assert_ts_equal(e->atime, a->atime);
    assert_ts_equal(e->mtime, a->mtime);
    assert_ts_equal(e->ctime, a->ctime);
}

static void assert_statfs_equal(const struct codec_wf2_statfs *e, const struct codec_wf2_statfs *a)
{
    assert_int_equal(a->bsize, e->bsize);
    assert_int_equal(a->frsize, e->frsize);
    assert_int_equal(a->blocks, e->blocks);
    assert_int_equal(a->bfree, e->bfree);
    assert_int_equal(a->bavail, e->bavail);
    assert_int_equal(a->files, e->files);
    assert_int_equal(a->ffree, e->ffree);
    assert_int_equal(a->namemax, e->namemax);
}

/* Every field of a decoded response against the expected one. The expected names are an array
 * (the encoder's input); the decoded ones are walked with the iterator, which must end exactly
 * after them. */
static void assert_response_equal(const struct codec_wf2_response *e,
                                  const struct codec_wf2_response *a, const struct msg *m)
{
    struct codec_wf2_names names = a->name_list;
    struct codec_wf2_dirents entries = a->entry_list;
    struct codec_wf2_str name;
    struct codec_wf2_dirent entry;
    size_t i;

    assert_int_equal(a->id, e->id);
    assert_int_equal(a->type, e->type);
    assert_int_equal(a->result, e->result);
    assert_attr_equal(&e->attr, &a->attr);
    assert_int_equal(a->handle, e->handle);
    assert_str_equal(e->target, a->target, m);
    assert_bytes_equal(e->data, a->data, m);
    assert_statfs_equal(&e->statfs, &a->statfs);
    assert_str_equal(e->credentials, a->credentials, m);
    assert_null(a->names);
    assert_int_equal(a->name_count, e->name_count);
    for (i = 0; i < e->name_count; i++) {
        assert_true(codec_wf2_names_next(&names, &name));
        assert_str_equal(e->names[i], name, m);
    }
    assert_false(codec_wf2_names_next(&names, &name));
    assert_int_equal(a->cookie, e->cookie);
    assert_null(a->entries);
    assert_int_equal(a->entry_count, e->entry_count);
    for (i = 0; i < e->entry_count; i++) {
        assert_true(codec_wf2_dirents_next(&entries, &entry));
        assert_str_equal(e->entries[i].name, entry.name, m);
        assert_attr_equal(&e->entries[i].attr, &entry.attr);
    }
    assert_false(codec_wf2_dirents_next(&entries, &entry));
}

static struct msg encode_request(const struct codec_wf2_request *req)
{
    struct msg m = {{0}, 0};

    assert_int_equal(codec_wf2_encode_request(m.b, sizeof(m.b), &m.n, req), 0);
    return m;
}

static struct msg encode_response(const struct codec_wf2_response *resp)
{
    struct msg m = {{0}, 0};

    assert_int_equal(codec_wf2_encode_response(m.b, sizeof(m.b), &m.n, resp), 0);
    return m;
}

static void assert_msg_equal(const struct msg *actual, const struct msg *expected)
{
    assert_int_equal(actual->n, expected->n);
    assert_memory_equal(actual->b, expected->b, expected->n);
}

/* ------------------------------------------------------------------------------------------------
 * Test vectors of docs/webfuse2-protocol.md
 * ----------------------------------------------------------------------------------------------*/

struct vector {
    struct codec_wf2_request req;
    const char *req_hex;
    int req_rc; /* what the provider's decode returns */
    struct codec_wf2_response resp;
    const char *resp_hex;
    int resp_rc;   /* what the service's decode returns */
    uint32_t size; /* the service's decode: bytes asked for (read) or sent (write) */
};

#define T_1700000000_5                                                                             \
    {                                                                                              \
        1700000000, 5                                                                              \
    }

static const struct vector getattr_ok = {
    .req = {.id = 1, .type = CODEC_WF2_GETATTR, .path = S("/")},
    .req_hex = "00000001 02 00000001 2f",
    .resp = {.id = 1,
             .type = CODEC_WF2_GETATTR,
             .result = 0,
             .attr = {.inode = 1,
                      .nlink = 2,
                      .mode = 040755,
                      .uid = 1000,
                      .gid = 1000,
                      .rdev = 0,
                      .size = 4096,
                      .blocks = 8,
                      .atime = T_1700000000_5,
                      .mtime = T_1700000000_5,
                      .ctime = T_1700000000_5}},
    .resp_hex = "00000001 82 00000000"
                "0000000000000001 0000000000000002 000041ed 000003e8 000003e8 0000000000000000"
                "0000000000001000 0000000000000008"
                "000000006553f100 00000005  000000006553f100 00000005  000000006553f100 00000005",
};

static const struct vector getattr_enoent = {
    .req = {.id = 1, .type = CODEC_WF2_GETATTR, .path = S("/")},
    .req_hex = "00000001 02 00000001 2f",
    .resp = {.id = 1, .type = CODEC_WF2_GETATTR, .result = -ENOENT},
    .resp_hex = "00000001 82 fffffffe",
};

static const struct codec_wf2_str names_a_bc[] = {S("a"), S("bc")};

static const struct vector readdir_ok = {
    .req = {.id = 2, .type = CODEC_WF2_READDIR, .path = S("/d")},
    .req_hex = "00000002 13 00000002 2f64",
    .resp = {.id = 2, .type = CODEC_WF2_READDIR, .names = names_a_bc, .name_count = 2},
    .resp_hex = "00000002 93 00000000 00000002 00000001 61 00000002 6263",
};

static const struct vector open_ok = {
    .req = {.id = 3, .type = CODEC_WF2_OPEN, .path = S("/f"), .flags = O_RDONLY | 0100000},
    .req_hex = "00000003 0b 00000002 2f66 00008000",
    .resp = {.id = 3, .type = CODEC_WF2_OPEN, .handle = 7},
    .resp_hex = "00000003 8b 00000000 0000000000000007",
};

static const struct vector read_ok = {
    .req = {.id = 4,
            .type = CODEC_WF2_READ,
            .path = S("/f"),
            .read_size = 4096,
            .offset = 0,
            .handle = 7},
    .req_hex = "00000004 10 00000002 2f66 00001000 0000000000000000 0000000000000007",
    .resp = {.id = 4, .type = CODEC_WF2_READ, .result = 3, .data = S("abc")},
    .resp_hex = "00000004 90 00000003 00000003 616263",
    .size = 4096,
};

static const struct vector write_ok = {
    .req = {.id = 5,
            .type = CODEC_WF2_WRITE,
            .path = S("/f"),
            .data = S("xy"),
            .offset = 10,
            .handle = 7},
    .req_hex = "00000005 11 00000002 2f66 00000002 7879 000000000000000a 0000000000000007",
    .resp = {.id = 5, .type = CODEC_WF2_WRITE, .result = 2},
    .resp_hex = "00000005 91 00000002",
    .size = 2,
};

static const struct vector create_ok = {
    .req = {.id = 6, .type = CODEC_WF2_CREATE, .path = S("/n"), .mode = 0100644},
    .req_hex = "00000006 0d 00000002 2f6e 000081a4",
    .resp = {.id = 6, .type = CODEC_WF2_CREATE, .handle = 9},
    .resp_hex = "00000006 8d 00000000 0000000000000009",
};

static const struct vector statfs_ok = {
    .req = {.id = 7, .type = CODEC_WF2_STATFS, .path = S("/")},
    .req_hex = "00000007 15 00000001 2f",
    .resp = {.id = 7,
             .type = CODEC_WF2_STATFS,
             .statfs = {.bsize = 4096,
                        .frsize = 4096,
                        .blocks = 1000,
                        .bfree = 500,
                        .bavail = 400,
                        .files = 100,
                        .ffree = 50,
                        .namemax = 255}},
    .resp_hex = "00000007 95 00000000 0000000000001000 0000000000001000 00000000000003e8"
                "00000000000001f4 0000000000000190 0000000000000064 0000000000000032"
                "00000000000000ff",
};

static const struct vector utimens_ok = {
    .req = {.id = 8,
            .type = CODEC_WF2_UTIMENS,
            .path = S("/f"),
            .atime = {1, 2},
            .mtime = {3, 4},
            .handle = CODEC_WF2_HANDLE_NONE},
    .req_hex = "00000008 16 00000002 2f66 0000000000000001 00000002 0000000000000003 00000004"
               "ffffffffffffffff",
    .resp = {.id = 8, .type = CODEC_WF2_UTIMENS, .result = 0},
    .resp_hex = "00000008 96 00000000",
};

static const struct vector rename_eexist = {
    .req = {.id = 9,
            .type = CODEC_WF2_RENAME,
            .path = S("/a"),
            .path2 = S("/b"),
            .rename_flags = CODEC_WF2_RENAME_NOREPLACE},
    .req_hex = "00000009 06 00000002 2f61 00000002 2f62 01",
    .resp = {.id = 9, .type = CODEC_WF2_RENAME, .result = -EEXIST},
    .resp_hex = "00000009 86 ffffffef",
};

/* The provider cannot decode 0x42 (-ENOSYS, but the id and payload come through) and answers
 * 0x80; the service reads that 0x80 as "not supported" (-ENOSYS). */
static const struct vector unknown_type = {
    .req = {.id = 0x23, .type = 0x42, .data = S("\x01\x02\x03")},
    .req_hex = "00000023 42 010203",
    .req_rc = -ENOSYS,
    .resp = {.id = 0x23, .type = CODEC_WF2_UNKNOWN, .result = -ENOSYS},
    .resp_hex = "00000023 80",
    .resp_rc = -ENOSYS,
};

static const struct vector getcreds_ok = {
    .req = {.id = 10, .type = CODEC_WF2_GETCREDS},
    .req_hex = "0000000a 17",
    .resp = {.id = 10, .type = CODEC_WF2_GETCREDS, .credentials = S("secret")},
    .resp_hex = "0000000a 97 00000006 736563726574",
};

/* The readdirplus extension (docs/protocols.md): a first page of one entry that says where to go
 * on, then the last page. */
static const struct codec_wf2_dirent dirent_a[] = {
    {S("a"),
     {.inode = 5,
      .nlink = 1,
      .mode = 0100644,
      .uid = 1000,
      .gid = 1000,
      .size = 3,
      .blocks = 8,
      .atime = T_1700000000_5,
      .mtime = T_1700000000_5,
      .ctime = T_1700000000_5}},
};

static const struct codec_wf2_dirent dirent_bc[] = {
    {S("bc"),
     {.inode = 6,
      .nlink = 2,
      .mode = 040755,
      .uid = 1000,
      .gid = 1000,
      .size = 4096,
      .blocks = 8,
      .atime = T_1700000000_5,
      .mtime = T_1700000000_5,
      .ctime = T_1700000000_5}},
};

#define ATTR_HEX(inode, nlink, mode, size)                                                         \
    inode nlink mode "000003e8 000003e8 0000000000000000" size "0000000000000008"                  \
                     "000000006553f100 00000005  000000006553f100 00000005"                        \
                     "000000006553f100 00000005"

static const struct vector readdirplus_first_page = {
    .req = {.id = 11, .type = CODEC_WF2_READDIRPLUS, .path = S("/d"), .max_entries = 1},
    .req_hex = "0000000b 18 00000002 2f64 0000000000000000 00000001",
    .resp = {.id = 11,
             .type = CODEC_WF2_READDIRPLUS,
             .cookie = 0x100000002ULL,
             .entries = dirent_a,
             .entry_count = 1},
    .resp_hex = "0000000b 98 00000000 0000000100000002 00000001 00000001 61" ATTR_HEX(
        "0000000000000005", "0000000000000001", "000081a4", "0000000000000003"),
    .size = 1,
};

static const struct vector readdirplus_last_page = {
    .req = {.id = 12,
            .type = CODEC_WF2_READDIRPLUS,
            .path = S("/d"),
            .offset = 0x100000002ULL,
            .max_entries = 1},
    .req_hex = "0000000c 18 00000002 2f64 0000000100000002 00000001",
    .resp = {.id = 12, .type = CODEC_WF2_READDIRPLUS, .entries = dirent_bc, .entry_count = 1},
    .resp_hex = "0000000c 98 00000000 0000000000000000 00000001 00000002 6263" ATTR_HEX(
        "0000000000000006", "0000000000000002", "000041ed", "0000000000001000"),
    .size = 1,
};

static const struct vector *const all_vectors[] = {
    &getattr_ok,
    &getattr_enoent,
    &readdir_ok,
    &open_ok,
    &read_ok,
    &write_ok,
    &create_ok,
    &statfs_ok,
    &utimens_ok,
    &rename_eexist,
    &unknown_type,
    &getcreds_ok,
    &readdirplus_first_page,
    &readdirplus_last_page,
};

static void service_encodes_request_to_spec_bytes(void **state)
{
    const struct vector *v = *state;
    struct msg expected = hex(v->req_hex);
    struct msg actual = encode_request(&v->req);

    assert_msg_equal(&actual, &expected);
}

static void provider_decodes_spec_request_to_fields(void **state)
{
    const struct vector *v = *state;
    struct msg m = hex(v->req_hex);
    struct codec_wf2_request req;

    assert_int_equal(decode_request(&m, &req), v->req_rc);
    assert_request_equal(&v->req, &req, &m);
}

static void provider_encodes_response_to_spec_bytes(void **state)
{
    const struct vector *v = *state;
    struct msg expected = hex(v->resp_hex);
    struct msg actual = encode_response(&v->resp);

    assert_msg_equal(&actual, &expected);
}

static void service_decodes_spec_response_to_fields(void **state)
{
    const struct vector *v = *state;
    struct msg m = hex(v->resp_hex);
    struct codec_wf2_response resp;

    assert_int_equal(decode_response(&m, v->req.type, v->size, &resp), v->resp_rc);
    assert_response_equal(&v->resp, &resp, &m);
}

/* Future optional fields: extra bytes after every vector change nothing. */
static void spec_messages_with_trailing_bytes_decode_the_same(void **state)
{
    struct codec_wf2_request req;
    struct codec_wf2_response resp;
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_SIZE(all_vectors); i++) {
        const struct vector *v = all_vectors[i];
        struct msg rq = msg_append(hex(v->req_hex), "a5 5a 00 ff");
        struct msg rs = msg_append(hex(v->resp_hex), "a5 5a 00 ff");
        struct codec_wf2_request expected_req = v->req;

        /* An unknown type's payload is everything after the header, trailing bytes included. */
        if (v->req_rc == -ENOSYS) {
            expected_req.data.ptr = rq.b + CODEC_WF2_HEADER_SIZE;
            expected_req.data.len = rq.n - CODEC_WF2_HEADER_SIZE;
        }
        assert_int_equal(decode_request(&rq, &req), v->req_rc);
        assert_request_equal(&expected_req, &req, &rq);
        assert_int_equal(decode_response(&rs, v->req.type, v->size, &resp), v->resp_rc);
        assert_response_equal(&v->resp, &resp, &rs);
    }
}

/* Too small a buffer: -ENOBUFS, the exact size needed, and the buffer untouched. */
static void encoders_report_the_needed_size_with_enobufs(void **state)
{
    unsigned char buf[MAX_MSG];
    size_t i, j, len;

    (void)state;
    for (i = 0; i < ARRAY_SIZE(all_vectors); i++) {
        const struct vector *v = all_vectors[i];
        struct msg rq = hex(v->req_hex);
        struct msg rs = hex(v->resp_hex);

        len = 0;
        assert_int_equal(codec_wf2_encode_request(NULL, 0, &len, &v->req), -ENOBUFS);
        assert_int_equal(len, rq.n);
        memset(buf, 0xa5, sizeof(buf));
        len = 0;
        assert_int_equal(codec_wf2_encode_request(buf, rq.n - 1, &len, &v->req), -ENOBUFS);
        assert_int_equal(len, rq.n);
        for (j = 0; j < sizeof(buf); j++)
            assert_int_equal(buf[j], 0xa5);
        /* An exact fit: the message and not one byte more. */
        assert_int_equal(codec_wf2_encode_request(buf, rq.n, &len, &v->req), 0);
        assert_int_equal(len, rq.n);
        assert_memory_equal(buf, rq.b, rq.n);
        assert_int_equal(buf[rq.n], 0xa5);

        len = 0;
        assert_int_equal(codec_wf2_encode_response(NULL, 0, &len, &v->resp), -ENOBUFS);
        assert_int_equal(len, rs.n);
        memset(buf, 0xa5, sizeof(buf));
        len = 0;
        assert_int_equal(codec_wf2_encode_response(buf, rs.n - 1, &len, &v->resp), -ENOBUFS);
        assert_int_equal(len, rs.n);
        for (j = 0; j < sizeof(buf); j++)
            assert_int_equal(buf[j], 0xa5);
        assert_int_equal(codec_wf2_encode_response(buf, rs.n, &len, &v->resp), 0);
        assert_int_equal(len, rs.n);
        assert_memory_equal(buf, rs.b, rs.n);
        assert_int_equal(buf[rs.n], 0xa5);
    }
}

/* ------------------------------------------------------------------------------------------------
 * Round trips of every type
 * ----------------------------------------------------------------------------------------------*/

/* Every request field set, with 64-bit values whose high and low halves differ, and negative i32
 * bits, so that a truncation or a sign slip shows. */
static struct codec_wf2_request every_request_field(uint8_t type)
{
    struct codec_wf2_request r = {
        .id = 0xfedcba98,
        .type = type,
        .path = S("/dir/file"),
        .path2 = S("/other/name"),
        .target = S("../target"),
        .mode = 0100644,
        .uid = 0x80000001,
        .gid = 0xfffffffe,
        .rdev = 0x0123456789abcdefULL,
        .size = 0x0000000500000001ULL,
        .offset = 0xfffffffe00000003ULL,
        .read_size = 0xfffffff0,
        .max_entries = 0x80000003,
        .handle = 0x8000000000000007ULL,
        .flags = INT32_MIN + 0101,
        .access_mode = 7,
        .rename_flags = CODEC_WF2_RENAME_EXCHANGE,
        .datasync = true,
        .data = S("hello, world"),
        .atime = {UINT64_MAX, 0x3fffffff},
        .mtime = {0x100000000ULL, 0x3ffffffe},
    };
    return r;
}

/* The fields of the protocol table's "request fields" column for r's type; the rest zero. */
static struct codec_wf2_request carried_request_fields(const struct codec_wf2_request *r)
{
    struct codec_wf2_request c = {.id = r->id, .type = r->type};

    if (r->type != CODEC_WF2_SYMLINK && r->type != CODEC_WF2_GETCREDS)
        c.path = r->path;
    switch (r->type) {
    case CODEC_WF2_ACCESS:
        c.access_mode = r->access_mode;
        break;
    case CODEC_WF2_SYMLINK:
        c.target = r->target;
        c.path2 = r->path2;
        break;
    case CODEC_WF2_LINK:
        c.path2 = r->path2;
        break;
    case CODEC_WF2_RENAME:
        c.path2 = r->path2;
        c.rename_flags = r->rename_flags;
        break;
    case CODEC_WF2_CHMOD:
    case CODEC_WF2_CREATE:
    case CODEC_WF2_MKDIR:
        c.mode = r->mode;
        break;
    case CODEC_WF2_CHOWN:
        c.uid = r->uid;
        c.gid = r->gid;
        break;
    case CODEC_WF2_TRUNCATE:
        c.size = r->size;
        c.handle = r->handle;
        break;
    case CODEC_WF2_FSYNC:
        c.datasync = r->datasync;
        c.handle = r->handle;
        break;
    case CODEC_WF2_OPEN:
        c.flags = r->flags;
        break;
    case CODEC_WF2_MKNOD:
        c.mode = r->mode;
        c.rdev = r->rdev;
        break;
    case CODEC_WF2_RELEASE:
        c.handle = r->handle;
        break;
    case CODEC_WF2_READ:
        c.read_size = r->read_size;
        c.offset = r->offset;
        c.handle = r->handle;
        break;
    case CODEC_WF2_WRITE:
        c.data = r->data;
        c.offset = r->offset;
        c.handle = r->handle;
        break;
    case CODEC_WF2_UTIMENS:
        c.atime = r->atime;
        c.mtime = r->mtime;
        c.handle = r->handle;
        break;
    case CODEC_WF2_READDIRPLUS:
        c.offset = r->offset;
        c.max_entries = r->max_entries;
        break;
    default:
        break;
    }
    return c;
}

/* Encoded sizes from the protocol table, for every_request_field(): header 5, path 4 + 9,
 * path2 4 + 11, target 4 + 9, data 4 + 12. */
static const size_t request_size[CODEC_WF2_TYPE_MAX + 1] = {
    [CODEC_WF2_ACCESS] = 5 + 13 + 1,
    [CODEC_WF2_GETATTR] = 5 + 13,
    [CODEC_WF2_READLINK] = 5 + 13,
    [CODEC_WF2_SYMLINK] = 5 + 13 + 15,
    [CODEC_WF2_LINK] = 5 + 13 + 15,
    [CODEC_WF2_RENAME] = 5 + 13 + 15 + 1,
    [CODEC_WF2_CHMOD] = 5 + 13 + 4,
    [CODEC_WF2_CHOWN] = 5 + 13 + 4 + 4,
    [CODEC_WF2_TRUNCATE] = 5 + 13 + 8 + 8,
    [CODEC_WF2_FSYNC] = 5 + 13 + 1 + 8,
    [CODEC_WF2_OPEN] = 5 + 13 + 4,
    [CODEC_WF2_MKNOD] = 5 + 13 + 4 + 8,
    [CODEC_WF2_CREATE] = 5 + 13 + 4,
    [CODEC_WF2_RELEASE] = 5 + 13 + 8,
    [CODEC_WF2_UNLINK] = 5 + 13,
    [CODEC_WF2_READ] = 5 + 13 + 4 + 8 + 8,
    [CODEC_WF2_WRITE] = 5 + 13 + 16 + 8 + 8,
    [CODEC_WF2_MKDIR] = 5 + 13 + 4,
    [CODEC_WF2_READDIR] = 5 + 13,
    [CODEC_WF2_RMDIR] = 5 + 13,
    [CODEC_WF2_STATFS] = 5 + 13,
    [CODEC_WF2_UTIMENS] = 5 + 13 + 12 + 12 + 8,
    [CODEC_WF2_GETCREDS] = 5,
    [CODEC_WF2_READDIRPLUS] = 5 + 13 + 8 + 4,
};

static const struct codec_wf2_str some_names[] = {S("x"), S(""), S("name with spaces"),
                                                  S("\xc3\xa4")};

static const struct codec_wf2_dirent some_dirents[] = {
    {S("x"), {.inode = 0x100000001ULL, .mode = 0100600, .size = 0x0000000500000001ULL}},
    {S("name with spaces"), {.inode = 2, .nlink = 3, .mode = 040700, .mtime = {UINT64_MAX, 7}}},
};

static struct codec_wf2_response every_response_field(uint8_t type)
{
    struct codec_wf2_response r = {
        .id = 0x01020304,
        .type = type,
        .result = type == CODEC_WF2_READ || type == CODEC_WF2_WRITE ? 12 : 0,
        .attr = {.inode = 0xfedcba9876543210ULL,
                 .nlink = 0x100000001ULL,
                 .mode = 0120777,
                 .uid = 0xfffffffe,
                 .gid = 0x80000000,
                 .rdev = 0x0000000800000009ULL,
                 .size = 0x0000000500000001ULL,
                 .blocks = 0x0000000100000000ULL,
                 .atime = {UINT64_MAX, 999999999},
                 .mtime = {0x80000000ULL, 1},
                 .ctime = {0x1122334455667788ULL, 0}},
        .handle = 0xfffffffffffffffeULL,
        .target = S("../../t"),
        .data = S("hello, world"),
        .statfs = {0x100000001ULL, 2, 0xffffffffffffffffULL, 4, 5, 0x600000000ULL, 7, 255},
        .credentials = S("Bearer abc"),
        .names = some_names,
        .name_count = ARRAY_SIZE(some_names),
        .cookie = 0xfffffffe00000001ULL,
        .entries = some_dirents,
        .entry_count = ARRAY_SIZE(some_dirents),
    };
    return r;
}

static struct codec_wf2_response carried_response_fields(const struct codec_wf2_response *r)
{
    struct codec_wf2_response c = {.id = r->id, .type = r->type, .result = r->result};

    switch (r->type) {
    case CODEC_WF2_GETATTR:
        c.attr = r->attr;
        break;
    case CODEC_WF2_READLINK:
        c.target = r->target;
        break;
    case CODEC_WF2_OPEN:
    case CODEC_WF2_CREATE:
        c.handle = r->handle;
        break;
    case CODEC_WF2_READ:
        c.data = r->data;
        break;
    case CODEC_WF2_READDIR:
        c.names = r->names;
        c.name_count = r->name_count;
        break;
    case CODEC_WF2_STATFS:
        c.statfs = r->statfs;
        break;
    case CODEC_WF2_GETCREDS:
        c.credentials = r->credentials;
        break;
    case CODEC_WF2_READDIRPLUS:
        c.cookie = r->cookie;
        c.entries = r->entries;
        c.entry_count = r->entry_count;
        break;
    default:
        break;
    }
    return c;
}

/* Header 5 + result 4, then: attributes 88, target 4 + 7, handle 8, data 4 + 12, names 4 +
 * (5 + 4 + 20 + 6), statistics 64, entries 8 + 4 + (5 + 88) + (20 + 88); getcreds: header +
 * credentials 4 + 10, no result. */
static const size_t response_size[CODEC_WF2_TYPE_MAX + 1] = {
    [CODEC_WF2_ACCESS] = 9,        [CODEC_WF2_GETATTR] = 9 + 88,
    [CODEC_WF2_READLINK] = 9 + 11, [CODEC_WF2_SYMLINK] = 9,
    [CODEC_WF2_LINK] = 9,          [CODEC_WF2_RENAME] = 9,
    [CODEC_WF2_CHMOD] = 9,         [CODEC_WF2_CHOWN] = 9,
    [CODEC_WF2_TRUNCATE] = 9,      [CODEC_WF2_FSYNC] = 9,
    [CODEC_WF2_OPEN] = 9 + 8,      [CODEC_WF2_MKNOD] = 9,
    [CODEC_WF2_CREATE] = 9 + 8,    [CODEC_WF2_RELEASE] = 9,
    [CODEC_WF2_UNLINK] = 9,        [CODEC_WF2_READ] = 9 + 16,
    [CODEC_WF2_WRITE] = 9,         [CODEC_WF2_MKDIR] = 9,
    [CODEC_WF2_READDIR] = 9 + 39,  [CODEC_WF2_RMDIR] = 9,
    [CODEC_WF2_STATFS] = 9 + 64,   [CODEC_WF2_UTIMENS] = 9,
    [CODEC_WF2_GETCREDS] = 5 + 14, [CODEC_WF2_READDIRPLUS] = 9 + 12 + 93 + 108,
};

static const uint8_t type_ids[CODEC_WF2_TYPE_MAX + 1] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c,
    0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
};

/* Only the type's fields go on the wire, at the size the table gives, and come back unchanged. */
static void request_round_trips_with_only_its_fields(void **state)
{
    uint8_t type = *(const uint8_t *)*state;
    struct codec_wf2_request full = every_request_field(type);
    struct codec_wf2_request carried = carried_request_fields(&full);
    struct codec_wf2_request decoded;
    struct msg m = encode_request(&full);
    struct msg from_carried = encode_request(&carried);

    assert_int_equal(m.n, request_size[type]);
    assert_msg_equal(&from_carried, &m);
    assert_int_equal(decode_request(&m, &decoded), 0);
    assert_request_equal(&carried, &decoded, &m);
}

static void response_round_trips_with_only_its_fields(void **state)
{
    uint8_t type = *(const uint8_t *)*state;
    struct codec_wf2_response full = every_response_field(type);
    struct codec_wf2_response carried = carried_response_fields(&full);
    struct codec_wf2_response decoded;
    struct msg m = encode_response(&full);
    struct msg from_carried = encode_response(&carried);

    assert_int_equal(m.n, response_size[type]);
    assert_msg_equal(&from_carried, &m);
    assert_int_equal(decode_response(&m, type, 12, &decoded), 0);
    assert_response_equal(&carried, &decoded, &m);
}

/* Every prefix of a valid request is too short for its fields: -EBADMSG, and once the header is
 * complete the id and type survive for an error answer, with no half-decoded field left. */
static void request_truncated_at_every_length_is_rejected(void **state)
{
    uint8_t type = *(const uint8_t *)*state;
    struct codec_wf2_request full = every_request_field(type);
    struct msg m = encode_request(&full);
    struct codec_wf2_request req;
    size_t n;

    for (n = 0; n < m.n; n++) {
        assert_int_equal(decode_request_prefix(&m, n, &req), -EBADMSG);
        assert_int_equal(req.id, n >= CODEC_WF2_HEADER_SIZE ? full.id : 0);
        assert_int_equal(req.type, n >= CODEC_WF2_HEADER_SIZE ? type : 0);
        assert_null(req.path.ptr);
        assert_int_equal(req.path.len, 0);
        assert_null(req.path2.ptr);
        assert_null(req.target.ptr);
        assert_null(req.data.ptr);
        assert_int_equal(req.mode, 0);
        assert_int_equal(req.handle, 0);
        assert_int_equal(req.read_size, 0);
        assert_int_equal(req.atime.sec, 0);
    }
}

/* Every prefix of a valid response: shorter than the header is -EBADMSG; the bare header is the
 * "not supported" echo (-ENOSYS); anything between is -EBADMSG with only id and type kept. */
static void response_truncated_at_every_length_is_rejected(void **state)
{
    uint8_t type = *(const uint8_t *)*state;
    struct codec_wf2_response full = every_response_field(type);
    struct msg m = encode_response(&full);
    struct codec_wf2_response resp;
    size_t n;

    for (n = 0; n < m.n; n++) {
        int expected = n == CODEC_WF2_HEADER_SIZE ? -ENOSYS : -EBADMSG;
        assert_int_equal(decode_response_prefix(&m, n, type, 12, &resp), expected);
        assert_int_equal(resp.id, n >= CODEC_WF2_HEADER_SIZE ? full.id : 0);
        assert_int_equal(resp.type, n >= CODEC_WF2_HEADER_SIZE ? type : 0);
        assert_int_equal(resp.result, expected == -ENOSYS ? -ENOSYS : 0);
        assert_int_equal(resp.attr.inode, 0);
        assert_int_equal(resp.handle, 0);
        assert_null(resp.target.ptr);
        assert_null(resp.data.ptr);
        assert_null(resp.credentials.ptr);
        assert_int_equal(resp.name_count, 0);
        assert_int_equal(resp.statfs.bsize, 0);
        assert_int_equal(resp.cookie, 0);
        assert_int_equal(resp.entry_count, 0);
    }
}

/* ------------------------------------------------------------------------------------------------
 * Malformed and unusual input, table-driven
 * ----------------------------------------------------------------------------------------------*/

enum side { PROVIDER_DECODES_REQUEST, SERVICE_DECODES_RESPONSE };

struct decode_case {
    const char *what;
    enum side side;
    const char *hex;
    uint8_t expected; /* response side: the type of the request answered */
    uint32_t size;    /* response side: read size asked / write bytes sent */
    int rc;
};

static void run_decode_cases(const struct decode_case *cases, size_t count)
{
    struct codec_wf2_request req;
    struct codec_wf2_response resp;
    size_t i;
    int rc;

    for (i = 0; i < count; i++) {
        struct msg m = hex(cases[i].hex);
        if (cases[i].side == PROVIDER_DECODES_REQUEST)
            rc = decode_request(&m, &req);
        else
            rc = decode_response(&m, cases[i].expected, cases[i].size, &resp);
        if (rc != cases[i].rc)
            fail_msg("%s: returned %d, expected %d", cases[i].what, rc, cases[i].rc);
    }
}

static void string_length_past_the_end_is_rejected(void **state)
{
    static const struct decode_case cases[] = {
        {"getattr path: length 2, 1 byte", PROVIDER_DECODES_REQUEST, "00000001 02 00000002 2f", 0,
         0, -EBADMSG},
        {"getattr path: length 0xffffffff", PROVIDER_DECODES_REQUEST, "00000001 02 ffffffff 2f", 0,
         0, -EBADMSG},
        {"getattr path: length 0x80000000", PROVIDER_DECODES_REQUEST, "00000001 02 80000000 2f", 0,
         0, -EBADMSG},
        {"symlink linkpath: length 5, 2 bytes", PROVIDER_DECODES_REQUEST,
         "00000001 04 00000001 61 00000005 2f62", 0, 0, -EBADMSG},
        {"write data: length 16, 2 bytes", PROVIDER_DECODES_REQUEST,
         "00000005 11 00000002 2f66 00000010 7879", 0, 0, -EBADMSG},
        {"write data: length swallows the offset and handle", PROVIDER_DECODES_REQUEST,
         "00000005 11 00000002 2f66 00000012 7879 000000000000000a 0000000000000007", 0, 0,
         -EBADMSG},
        {"readlink target: length 4, 2 bytes", SERVICE_DECODES_RESPONSE,
         "00000001 83 00000000 00000004 2f61", CODEC_WF2_READLINK, 0, -EBADMSG},
        {"readdir: second name length 3, 2 bytes", SERVICE_DECODES_RESPONSE,
         "00000002 93 00000000 00000002 00000001 61 00000003 6263", CODEC_WF2_READDIR, 0, -EBADMSG},
        {"readdir: count 3, 2 names", SERVICE_DECODES_RESPONSE,
         "00000002 93 00000000 00000003 00000001 61 00000002 6263", CODEC_WF2_READDIR, 0, -EBADMSG},
        {"readdir: count 0xffffffff, no names", SERVICE_DECODES_RESPONSE,
         "00000002 93 00000000 ffffffff", CODEC_WF2_READDIR, 0, -EBADMSG},
        {"read data: length 3, 2 bytes", SERVICE_DECODES_RESPONSE,
         "00000004 90 00000003 00000003 6162", CODEC_WF2_READ, 4096, -EBADMSG},
        {"getcreds: length 7, 6 bytes", SERVICE_DECODES_RESPONSE,
         "0000000a 97 00000007 736563726574", CODEC_WF2_GETCREDS, 0, -EBADMSG},
        {"getcreds: length 0xffffffff", SERVICE_DECODES_RESPONSE, "0000000a 97 ffffffff",
         CODEC_WF2_GETCREDS, 0, -EBADMSG},
    };

    (void)state;
    run_decode_cases(cases, ARRAY_SIZE(cases));
}

static void response_of_another_type_is_a_protocol_error(void **state)
{
    static const struct decode_case cases[] = {
        {"readlink response to getattr", SERVICE_DECODES_RESPONSE,
         "00000001 83 00000000 00000001 2f", CODEC_WF2_GETATTR, 0, -EBADMSG},
        {"empty readlink response to getattr", SERVICE_DECODES_RESPONSE, "00000001 83",
         CODEC_WF2_GETATTR, 0, -EBADMSG},
        {"request type echoed back", SERVICE_DECODES_RESPONSE, "00000001 02 00000000",
         CODEC_WF2_GETATTR, 0, -EBADMSG},
        {"bare request type echoed back", SERVICE_DECODES_RESPONSE, "00000001 02",
         CODEC_WF2_GETATTR, 0, -EBADMSG},
        {"getcreds response to getattr", SERVICE_DECODES_RESPONSE,
         "00000001 97 00000006 736563726574", CODEC_WF2_GETATTR, 0, -EBADMSG},
        {"getattr response to getcreds", SERVICE_DECODES_RESPONSE, "0000000a 82 fffffffe",
         CODEC_WF2_GETCREDS, 0, -EBADMSG},
        {"0xc2 (an unknown type's echo) to getattr", SERVICE_DECODES_RESPONSE, "00000001 c2",
         CODEC_WF2_GETATTR, 0, -EBADMSG},
        {"0xff to read", SERVICE_DECODES_RESPONSE, "00000001 ff 00000000", CODEC_WF2_READ, 10,
         -EBADMSG},
        {"payload answering a type the codec does not know", SERVICE_DECODES_RESPONSE,
         "00000001 c2 00000000", 0x42, 0, -EBADMSG},
    };

    (void)state;
    run_decode_cases(cases, ARRAY_SIZE(cases));
}

static void result_out_of_range_is_a_protocol_error(void **state)
{
    static const struct decode_case cases[] = {
        {"getattr result 1", SERVICE_DECODES_RESPONSE, "00000001 82 00000001", CODEC_WF2_GETATTR, 0,
         -EBADMSG},
        {"unlink result 0x7fffffff", SERVICE_DECODES_RESPONSE, "00000001 8f 7fffffff",
         CODEC_WF2_UNLINK, 0, -EBADMSG},
        {"write result 3 for 2 bytes sent", SERVICE_DECODES_RESPONSE, "00000005 91 00000003",
         CODEC_WF2_WRITE, 2, -EBADMSG},
        {"write result 2 for 2 bytes sent", SERVICE_DECODES_RESPONSE, "00000005 91 00000002",
         CODEC_WF2_WRITE, 2, 0},
        {"write result 0 (nothing written)", SERVICE_DECODES_RESPONSE, "00000005 91 00000000",
         CODEC_WF2_WRITE, 2, 0},
        {"write result INT32_MAX for 4 GiB - 1 sent", SERVICE_DECODES_RESPONSE,
         "00000005 91 7fffffff", CODEC_WF2_WRITE, UINT32_MAX, 0},
        {"read 5 bytes when 4 were asked for", SERVICE_DECODES_RESPONSE,
         "00000004 90 00000005 00000005 6162636465", CODEC_WF2_READ, 4, -EBADMSG},
        {"read 4 bytes when 4 were asked for", SERVICE_DECODES_RESPONSE,
         "00000004 90 00000004 00000004 61626364", CODEC_WF2_READ, 4, 0},
        {"read result 3 with 2 data bytes", SERVICE_DECODES_RESPONSE,
         "00000004 90 00000003 00000002 6162 63", CODEC_WF2_READ, 4096, -EBADMSG},
        {"read result 2 with 3 data bytes", SERVICE_DECODES_RESPONSE,
         "00000004 90 00000002 00000003 616263", CODEC_WF2_READ, 4096, -EBADMSG},
        {"read result 1 when 0 were asked for", SERVICE_DECODES_RESPONSE,
         "00000004 90 00000001 00000001 61", CODEC_WF2_READ, 0, -EBADMSG},
        {"read result 3 without data", SERVICE_DECODES_RESPONSE, "00000004 90 00000003",
         CODEC_WF2_READ, 4096, -EBADMSG},
    };

    (void)state;
    run_decode_cases(cases, ARRAY_SIZE(cases));
}

/* Only read and write report byte counts: a positive result is rejected for every other type
 * whose response has a result, while the same message with result 0 decodes. */
static void positive_result_is_rejected_for_every_type_but_read_and_write(void **state)
{
    struct codec_wf2_response resp;
    struct msg m;
    uint8_t t;

    (void)state;
    for (t = CODEC_WF2_ACCESS; t < CODEC_WF2_GETCREDS; t++) {
        if (t == CODEC_WF2_READ || t == CODEC_WF2_WRITE)
            continue;
        m = hex("00000001 00 00000001");
        m.b[4] = t | CODEC_WF2_RESPONSE;
        m.n = 100; /* zeros after the result: enough for every type's fields */
        assert_int_equal(decode_response(&m, t, 0, &resp), -EBADMSG);
        m.b[8] = 0;
        assert_int_equal(decode_response(&m, t, 0, &resp), 0);
        assert_int_equal(resp.result, 0);
    }
}

static void read_result_zero_is_end_of_file_without_data(void **state)
{
    struct msg eof = hex("00000004 90 00000000");
    struct msg eof_with_more = hex("00000004 90 00000000 00000000");
    struct codec_wf2_response resp;

    (void)state;
    assert_int_equal(decode_response(&eof, CODEC_WF2_READ, 4096, &resp), 0);
    assert_int_equal(resp.result, 0);
    assert_null(resp.data.ptr);
    assert_int_equal(resp.data.len, 0);
    assert_int_equal(decode_response(&eof_with_more, CODEC_WF2_READ, 0, &resp), 0);
    assert_int_equal(resp.result, 0);
    assert_int_equal(resp.data.len, 0);
}

/* After a negative result nothing is read, not even bytes that would be a malformed field. */
static void error_result_ends_the_response(void **state)
{
    struct msg getattr = hex("00000001 82 fffffffe 0000000000000001");
    struct msg readdir = hex("00000002 93 ffffffec ffffffff");
    struct msg read = hex("00000004 90 fffffffb 00000009 61");
    struct codec_wf2_response resp;

    (void)state;
    assert_int_equal(decode_response(&getattr, CODEC_WF2_GETATTR, 0, &resp), 0);
    assert_int_equal(resp.result, -ENOENT);
    assert_int_equal(resp.attr.inode, 0);
    assert_int_equal(decode_response(&readdir, CODEC_WF2_READDIR, 0, &resp), 0);
    assert_int_equal(resp.result, -ENOTDIR);
    assert_int_equal(resp.name_count, 0);
    assert_int_equal(decode_response(&read, CODEC_WF2_READ, 0, &resp), 0);
    assert_int_equal(resp.result, -EIO);
    assert_null(resp.data.ptr);
}

/* An errno the codec has no name for passes through as is, down to INT32_MIN. */
static void unknown_negative_results_pass_through(void **state)
{
    struct msg odd = hex("00000001 8f fffff060");
    struct msg min = hex("00000001 8f 80000000");
    struct codec_wf2_response resp = {.type = CODEC_WF2_UNLINK, .result = INT32_MIN};
    struct msg encoded;

    (void)state;
    assert_int_equal(decode_response(&odd, CODEC_WF2_UNLINK, 0, &resp), 0);
    assert_int_equal(resp.result, -4000);
    assert_int_equal(decode_response(&min, CODEC_WF2_UNLINK, 0, &resp), 0);
    assert_int_equal(resp.result, INT32_MIN);
    resp.id = 1;
    encoded = encode_response(&resp);
    assert_msg_equal(&encoded, &min);
}

/* 0x80, with or without bytes after it, answers any request as "not supported". */
static void unknown_response_means_not_supported_for_every_type(void **state)
{
    struct msg bare = hex("00000042 80");
    struct msg longer = hex("00000042 80 00000000 0102");
    struct codec_wf2_response resp;
    uint8_t t;

    (void)state;
    for (t = CODEC_WF2_UNKNOWN; t <= CODEC_WF2_TYPE_MAX; t++) {
        assert_int_equal(decode_response(&bare, t, 0, &resp), -ENOSYS);
        assert_int_equal(resp.id, 0x42);
        assert_int_equal(resp.type, CODEC_WF2_UNKNOWN);
        assert_int_equal(resp.result, -ENOSYS);
        assert_int_equal(decode_response(&longer, t, 0, &resp), -ENOSYS);
        assert_int_equal(resp.id, 0x42);
    }
}

/* The JavaScript and Python examples echo (type | 0x80) with nothing after it. */
static void empty_response_of_the_expected_type_means_not_supported(void **state)
{
    struct codec_wf2_response resp;
    struct msg m;
    uint8_t t;

    (void)state;
    for (t = CODEC_WF2_UNKNOWN; t <= 0x7f; t++) {
        m = hex("00000007 00");
        m.b[4] = t | CODEC_WF2_RESPONSE;
        assert_int_equal(decode_response(&m, t, 0, &resp), -ENOSYS);
        assert_int_equal(resp.id, 7);
        assert_int_equal(resp.type, t);
        assert_int_equal(resp.result, -ENOSYS);
    }
}

/* A provider must be able to answer any request it cannot decode: id, type and payload come out
 * of every type it does not know, including response types and 0x00. */
static void unknown_request_types_decode_as_enosys_with_id_and_payload(void **state)
{
    static const uint8_t unknown[] = {0x00, 0x19, 0x42, 0x7f, 0x80, 0x82, 0x97, 0xff};
    struct codec_wf2_request req;
    struct msg m, bare;
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_SIZE(unknown); i++) {
        m = hex("00000023 00 0102");
        m.b[4] = unknown[i];
        assert_int_equal(decode_request(&m, &req), -ENOSYS);
        assert_int_equal(req.id, 0x23);
        assert_int_equal(req.type, unknown[i]);
        assert_ptr_equal(req.data.ptr, m.b + 5);
        assert_int_equal(req.data.len, 2);
        assert_null(req.path.ptr);
        bare = m;
        bare.n = 5;
        assert_int_equal(decode_request(&bare, &req), -ENOSYS);
        assert_int_equal(req.id, 0x23);
        assert_int_equal(req.data.len, 0);
    }
}

static void known_request_types_are_not_enosys_even_when_empty(void **state)
{
    struct codec_wf2_request req;
    struct msg m;
    uint8_t t;

    (void)state;
    for (t = CODEC_WF2_ACCESS; t <= CODEC_WF2_TYPE_MAX; t++) {
        if (t == CODEC_WF2_GETCREDS)
            continue;
        m = hex("00000001 00");
        m.b[4] = t;
        assert_int_equal(decode_request(&m, &req), -EBADMSG);
    }
    m = hex("00000001 17");
    assert_int_equal(decode_request(&m, &req), 0);
    assert_int_equal(req.type, CODEC_WF2_GETCREDS);
}

static void header_is_read_from_any_message_of_five_bytes(void **state)
{
    struct msg request = hex("00000023 42");
    struct msg response = hex("ffffffff 80 01");
    uint32_t id = 0;
    uint8_t type = 0;

    (void)state;
    assert_int_equal(codec_wf2_decode_header(request.b, 4, &id, &type), -EBADMSG);
    assert_int_equal(codec_wf2_decode_header(request.b, 0, &id, &type), -EBADMSG);
    assert_int_equal(codec_wf2_decode_header(request.b, request.n, &id, &type), 0);
    assert_int_equal(id, 0x23);
    assert_int_equal(type, 0x42);
    assert_int_equal(codec_wf2_decode_header(response.b, response.n, &id, &type), 0);
    assert_int_equal(id, 0xffffffff);
    assert_int_equal(type, 0x80);
}

static void decode_response_rejects_a_response_type_as_expected(void **state)
{
    struct msg m = hex("00000001 82 00000000");
    struct codec_wf2_response resp;

    (void)state;
    assert_int_equal(decode_response(&m, 0x82, 0, &resp), -EINVAL);
}

/* ------------------------------------------------------------------------------------------------
 * Field encodings not covered by the spec's vectors
 * ----------------------------------------------------------------------------------------------*/

static void truncate_request_keeps_all_64_bits_of_size_and_handle(void **state)
{
    struct msg m = hex("00000001 09 00000002 2f66 0000000100000000 ffffffffffffffff");
    struct codec_wf2_request req;

    (void)state;
    assert_int_equal(decode_request(&m, &req), 0);
    assert_int_equal(req.size, 0x100000000ULL);
    assert_int_equal(req.handle, CODEC_WF2_HANDLE_NONE);
}

static void getattr_response_keeps_sizes_and_inodes_above_4_gib(void **state)
{
    struct msg m = hex("00000001 82 00000000"
                       "0000000200000001 0000000000000001 000081a4 00000000 00000000"
                       "0000000000000000 0000000500000000 0000000000000000"
                       "0000000000000000 00000000 0000000000000000 00000000"
                       "0000000000000000 00000000");
    struct codec_wf2_response resp;

    (void)state;
    assert_int_equal(decode_response(&m, CODEC_WF2_GETATTR, 0, &resp), 0);
    assert_int_equal(resp.attr.inode, 0x200000001ULL);
    assert_int_equal(resp.attr.size, 0x500000000ULL);
    assert_int_equal(resp.attr.mode, 0100644);
}

static void mknod_request_carries_rdev_as_u64(void **state)
{
    struct codec_wf2_request req = {.id = 1,
                                    .type = CODEC_WF2_MKNOD,
                                    .path = S("/p"),
                                    .mode = 010644,
                                    .rdev = 0x0000000100000002ULL};
    struct msg expected = hex("00000001 0c 00000002 2f70 000011a4 0000000100000002");
    struct msg actual = encode_request(&req);

    (void)state;
    assert_msg_equal(&actual, &expected);
}

static void access_request_carries_mode_as_one_byte(void **state)
{
    struct codec_wf2_request req = {
        .id = 1, .type = CODEC_WF2_ACCESS, .path = S("/f"), .access_mode = 4};
    struct msg expected = hex("00000001 01 00000002 2f66 04");
    struct msg actual = encode_request(&req);

    (void)state;
    assert_msg_equal(&actual, &expected);
}

static void fsync_datasync_is_one_byte_and_any_nonzero_byte_is_true(void **state)
{
    struct codec_wf2_request req = {
        .id = 1, .type = CODEC_WF2_FSYNC, .path = S("/f"), .datasync = true, .handle = 3};
    struct msg expected = hex("00000001 0a 00000002 2f66 01 0000000000000003");
    struct msg actual = encode_request(&req);
    struct msg two = hex("00000001 0a 00000002 2f66 02 0000000000000003");
    struct msg zero = hex("00000001 0a 00000002 2f66 00 0000000000000003");

    (void)state;
    assert_msg_equal(&actual, &expected);
    assert_int_equal(decode_request(&two, &req), 0);
    assert_true(req.datasync);
    assert_int_equal(decode_request(&zero, &req), 0);
    assert_false(req.datasync);
    assert_int_equal(req.handle, 3);
}

static void symlink_request_sends_target_before_linkpath(void **state)
{
    struct codec_wf2_request req = {
        .id = 1, .type = CODEC_WF2_SYMLINK, .target = S("t"), .path2 = S("/l")};
    struct msg expected = hex("00000001 04 00000001 74 00000002 2f6c");
    struct msg actual = encode_request(&req);

    (void)state;
    assert_msg_equal(&actual, &expected);
}

static void empty_readdir_list_has_no_names(void **state)
{
    struct msg m = hex("00000002 93 00000000 00000000");
    struct codec_wf2_response resp;
    struct codec_wf2_str name;

    (void)state;
    assert_int_equal(decode_response(&m, CODEC_WF2_READDIR, 0, &resp), 0);
    assert_int_equal(resp.name_count, 0);
    assert_false(codec_wf2_names_next(&resp.name_list, &name));
}

/* The iterator consumes its copy; the list in the response can be walked again. */
static void readdir_names_can_be_walked_twice(void **state)
{
    struct msg m = hex(readdir_ok.resp_hex);
    struct codec_wf2_response resp;
    struct codec_wf2_names walk;
    struct codec_wf2_str name;
    int pass;

    (void)state;
    assert_int_equal(decode_response(&m, CODEC_WF2_READDIR, 0, &resp), 0);
    for (pass = 0; pass < 2; pass++) {
        walk = resp.name_list;
        assert_true(codec_wf2_names_next(&walk, &name));
        assert_int_equal(name.len, 1);
        assert_memory_equal(name.ptr, "a", 1);
        assert_ptr_equal(name.ptr, m.b + 17);
        assert_true(codec_wf2_names_next(&walk, &name));
        assert_int_equal(name.len, 2);
        assert_memory_equal(name.ptr, "bc", 2);
        assert_false(codec_wf2_names_next(&walk, &name));
    }
}

/* A page with more entries than asked for could be any size; an empty page that says more follow
 * would have the gateway ask for nothing forever. An empty last page is an empty directory. */
static void readdirplus_pages_are_held_to_their_bounds(void **state)
{
    struct msg empty_last = hex("0000000d 98 00000000 0000000000000000 00000000");
    struct msg empty_more = hex("0000000b 98 00000000 0000000000000001 00000000");
    struct msg page = hex(readdirplus_first_page.resp_hex);
    struct codec_wf2_response resp;
    struct codec_wf2_dirent entry;
    unsigned char buf[64];
    size_t len;
    struct codec_wf2_response bad = {.id = 1, .type = CODEC_WF2_READDIRPLUS, .cookie = 1};

    (void)state;
    assert_int_equal(decode_response(&empty_last, CODEC_WF2_READDIRPLUS, 16, &resp), 0);
    assert_int_equal(resp.entry_count, 0);
    assert_false(codec_wf2_dirents_next(&resp.entry_list, &entry));
    assert_int_equal(decode_response(&empty_more, CODEC_WF2_READDIRPLUS, 16, &resp), -EBADMSG);
    assert_int_equal(decode_response(&page, CODEC_WF2_READDIRPLUS, 1, &resp), 0);
    assert_int_equal(decode_response(&page, CODEC_WF2_READDIRPLUS, 0, &resp), -EBADMSG);
    assert_int_equal(resp.id, 11);
    assert_int_equal(resp.entry_count, 0);
    assert_int_equal(codec_wf2_encode_response(buf, sizeof(buf), &len, &bad), -EINVAL);
    bad.cookie = 0;
    bad.entry_count = 1;
    assert_int_equal(codec_wf2_encode_response(buf, sizeof(buf), &len, &bad), -EINVAL);
    assert_string_equal(codec_wf2_type_name(0x98), "readdirplus");
}

/* ------------------------------------------------------------------------------------------------
 * Encoder input checks
 * ----------------------------------------------------------------------------------------------*/

static void encode_request_rejects_what_cannot_be_sent(void **state)
{
    unsigned char buf[64];
    size_t len = 0;
    struct codec_wf2_request response_type = {.id = 1, .type = 0x82, .path = S("/")};
    struct codec_wf2_request null_path = {.id = 1, .type = CODEC_WF2_GETATTR, .path = {NULL, 1}};
    struct codec_wf2_request null_data = {
        .id = 1, .type = CODEC_WF2_WRITE, .path = S("/f"), .data = {NULL, 2}};
    struct codec_wf2_request null_raw = {.id = 1, .type = 0x42, .data = {NULL, 2}};
    struct codec_wf2_request empty_raw = {.id = 1, .type = 0x42};

    (void)state;
    assert_int_equal(codec_wf2_encode_request(buf, sizeof(buf), &len, &response_type), -EINVAL);
    response_type.type = 0xff;
    assert_int_equal(codec_wf2_encode_request(buf, sizeof(buf), &len, &response_type), -EINVAL);
    assert_int_equal(codec_wf2_encode_request(buf, sizeof(buf), &len, &null_path), -EINVAL);
    assert_int_equal(codec_wf2_encode_request(buf, sizeof(buf), &len, &null_data), -EINVAL);
    assert_int_equal(codec_wf2_encode_request(buf, sizeof(buf), &len, &null_raw), -EINVAL);
    /* -EINVAL wins over -ENOBUFS: a bigger buffer would not help. */
    assert_int_equal(codec_wf2_encode_request(NULL, 0, &len, &null_path), -EINVAL);
    assert_int_equal(codec_wf2_encode_request(buf, sizeof(buf), &len, &empty_raw), 0);
    assert_int_equal(len, 5);
}

static void encode_rejects_strings_longer_than_u32(void **state)
{
    unsigned char buf[64];
    size_t len = 0;
    struct codec_wf2_request req = {.id = 1, .type = CODEC_WF2_GETATTR, .path = S("/")};
    struct codec_wf2_response resp = {.id = 1, .type = CODEC_WF2_READLINK, .target = S("/")};

    (void)state;
    if (SIZE_MAX <= UINT32_MAX)
        skip();
    /* The codec must refuse on the length alone, before touching the bytes. */
    req.path.len = (size_t)UINT32_MAX + 1;
    assert_int_equal(codec_wf2_encode_request(buf, sizeof(buf), &len, &req), -EINVAL);
    resp.target.len = (size_t)UINT32_MAX + 1;
    assert_int_equal(codec_wf2_encode_response(buf, sizeof(buf), &len, &resp), -EINVAL);
}

static void encode_response_rejects_what_cannot_be_sent(void **state)
{
    unsigned char buf[64];
    size_t len = 0;
    struct codec_wf2_response positive = {.id = 1, .type = CODEC_WF2_GETATTR, .result = 1};
    struct codec_wf2_response short_read = {
        .id = 1, .type = CODEC_WF2_READ, .result = 3, .data = S("ab")};
    struct codec_wf2_response past_max = {.id = 1, .type = CODEC_WF2_TYPE_MAX + 1};
    struct codec_wf2_response response_type = {.id = 1, .type = 0x82};
    struct codec_wf2_response null_names = {.id = 1, .type = CODEC_WF2_READDIR, .name_count = 1};
    struct codec_wf2_response write_count = {.id = 1, .type = CODEC_WF2_WRITE, .result = 7};

    (void)state;
    assert_int_equal(codec_wf2_encode_response(buf, sizeof(buf), &len, &positive), -EINVAL);
    assert_int_equal(codec_wf2_encode_response(buf, sizeof(buf), &len, &short_read), -EINVAL);
    assert_int_equal(codec_wf2_encode_response(buf, sizeof(buf), &len, &past_max), -EINVAL);
    assert_int_equal(codec_wf2_encode_response(buf, sizeof(buf), &len, &response_type), -EINVAL);
    assert_int_equal(codec_wf2_encode_response(buf, sizeof(buf), &len, &null_names), -EINVAL);
    assert_int_equal(codec_wf2_encode_response(NULL, 0, &len, &positive), -EINVAL);
    assert_int_equal(codec_wf2_encode_response(buf, sizeof(buf), &len, &write_count), 0);
    assert_int_equal(len, 9);
}

/* Errors carry only the result, whatever else the struct holds. */
static void error_response_encodes_only_the_result(void **state)
{
    struct codec_wf2_response resp = every_response_field(CODEC_WF2_READDIR);
    struct msg expected = hex("01020304 93 ffffffec");
    struct msg actual;

    (void)state;
    resp.result = -ENOTDIR;
    actual = encode_response(&resp);
    assert_msg_equal(&actual, &expected);
}

static void type_names_cover_requests_and_responses(void **state)
{
    (void)state;
    assert_string_equal(codec_wf2_type_name(CODEC_WF2_GETATTR), "getattr");
    assert_string_equal(codec_wf2_type_name(CODEC_WF2_GETATTR | CODEC_WF2_RESPONSE), "getattr");
    assert_string_equal(codec_wf2_type_name(0x97), "getcreds");
    assert_string_equal(codec_wf2_type_name(CODEC_WF2_WRITE), "write");
    assert_string_equal(codec_wf2_type_name(0x00), "unknown");
    assert_string_equal(codec_wf2_type_name(0x80), "unknown");
    assert_string_equal(codec_wf2_type_name(0x42), "unknown");
    assert_string_equal(codec_wf2_type_name(0xff), "unknown");
}

/* ------------------------------------------------------------------------------------------------
 * Registration
 * ----------------------------------------------------------------------------------------------*/

/* One cmocka test per (vector or type, behaviour), named after both. clang-format cannot lay out
 * brace lists inside macros. */
/* clang-format off */
#define NAMED_TEST(name, fn, state) {name, fn, NULL, NULL, (void *)(state)}

#define VECTOR_TESTS(v)                                                                            \
    NAMED_TEST(#v "_service_encodes_request_to_spec_bytes",                                        \
               service_encodes_request_to_spec_bytes, &(v)),                                       \
    NAMED_TEST(#v "_provider_decodes_spec_request_to_fields",                                      \
               provider_decodes_spec_request_to_fields, &(v)),                                     \
    NAMED_TEST(#v "_provider_encodes_response_to_spec_bytes",                                      \
               provider_encodes_response_to_spec_bytes, &(v)),                                     \
    NAMED_TEST(#v "_service_decodes_spec_response_to_fields",                                      \
               service_decodes_spec_response_to_fields, &(v))

#define TYPE_TESTS(t, name)                                                                        \
    NAMED_TEST(name "_request_round_trips_with_only_its_fields",                                   \
               request_round_trips_with_only_its_fields, &type_ids[t]),                            \
    NAMED_TEST(name "_response_round_trips_with_only_its_fields",                                  \
               response_round_trips_with_only_its_fields, &type_ids[t]),                           \
    NAMED_TEST(name "_request_truncated_at_every_length_is_rejected",                              \
               request_truncated_at_every_length_is_rejected, &type_ids[t]),                       \
    NAMED_TEST(name "_response_truncated_at_every_length_is_rejected",                             \
               response_truncated_at_every_length_is_rejected, &type_ids[t])
/* clang-format on */

/* The provider reads file data straight into its answer after this head: head plus data must be
 * the spec's read answer, and an error or end of file is the bare result. */
static void read_head_with_data_is_the_spec_read_response(void **state)
{
    struct msg expected = hex("00000004 90 00000003 00000003 616263");
    unsigned char buf[CODEC_WF2_READ_HEAD_SIZE + 3];

    (void)state;
    assert_int_equal(codec_wf2_encode_read_head(buf, 4, 3), CODEC_WF2_READ_HEAD_SIZE);
    memcpy(buf + CODEC_WF2_READ_HEAD_SIZE, "abc", 3);
    assert_int_equal(expected.n, sizeof(buf));
    assert_memory_equal(buf, expected.b, sizeof(buf));

    expected = hex("00000004 90 fffffffe");
    assert_int_equal(codec_wf2_encode_read_head(buf, 4, -2), expected.n);
    assert_memory_equal(buf, expected.b, expected.n);
    expected = hex("00000004 90 00000000");
    assert_int_equal(codec_wf2_encode_read_head(buf, 4, 0), expected.n);
    assert_memory_equal(buf, expected.b, expected.n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        VECTOR_TESTS(getattr_ok),
        VECTOR_TESTS(getattr_enoent),
        VECTOR_TESTS(readdir_ok),
        VECTOR_TESTS(open_ok),
        VECTOR_TESTS(read_ok),
        VECTOR_TESTS(write_ok),
        VECTOR_TESTS(create_ok),
        VECTOR_TESTS(statfs_ok),
        VECTOR_TESTS(utimens_ok),
        VECTOR_TESTS(rename_eexist),
        VECTOR_TESTS(unknown_type),
        VECTOR_TESTS(getcreds_ok),
        VECTOR_TESTS(readdirplus_first_page),
        VECTOR_TESTS(readdirplus_last_page),
        cmocka_unit_test(spec_messages_with_trailing_bytes_decode_the_same),
        cmocka_unit_test(encoders_report_the_needed_size_with_enobufs),
        cmocka_unit_test(read_head_with_data_is_the_spec_read_response),
        TYPE_TESTS(CODEC_WF2_ACCESS, "access"),
        TYPE_TESTS(CODEC_WF2_GETATTR, "getattr"),
        TYPE_TESTS(CODEC_WF2_READLINK, "readlink"),
        TYPE_TESTS(CODEC_WF2_SYMLINK, "symlink"),
        TYPE_TESTS(CODEC_WF2_LINK, "link"),
        TYPE_TESTS(CODEC_WF2_RENAME, "rename"),
        TYPE_TESTS(CODEC_WF2_CHMOD, "chmod"),
        TYPE_TESTS(CODEC_WF2_CHOWN, "chown"),
        TYPE_TESTS(CODEC_WF2_TRUNCATE, "truncate"),
        TYPE_TESTS(CODEC_WF2_FSYNC, "fsync"),
        TYPE_TESTS(CODEC_WF2_OPEN, "open"),
        TYPE_TESTS(CODEC_WF2_MKNOD, "mknod"),
        TYPE_TESTS(CODEC_WF2_CREATE, "create"),
        TYPE_TESTS(CODEC_WF2_RELEASE, "release"),
        TYPE_TESTS(CODEC_WF2_UNLINK, "unlink"),
        TYPE_TESTS(CODEC_WF2_READ, "read"),
        TYPE_TESTS(CODEC_WF2_WRITE, "write"),
        TYPE_TESTS(CODEC_WF2_MKDIR, "mkdir"),
        TYPE_TESTS(CODEC_WF2_READDIR, "readdir"),
        TYPE_TESTS(CODEC_WF2_RMDIR, "rmdir"),
        TYPE_TESTS(CODEC_WF2_STATFS, "statfs"),
        TYPE_TESTS(CODEC_WF2_UTIMENS, "utimens"),
        TYPE_TESTS(CODEC_WF2_GETCREDS, "getcreds"),
        TYPE_TESTS(CODEC_WF2_READDIRPLUS, "readdirplus"),
        cmocka_unit_test(string_length_past_the_end_is_rejected),
        cmocka_unit_test(response_of_another_type_is_a_protocol_error),
        cmocka_unit_test(result_out_of_range_is_a_protocol_error),
        cmocka_unit_test(positive_result_is_rejected_for_every_type_but_read_and_write),
        cmocka_unit_test(read_result_zero_is_end_of_file_without_data),
        cmocka_unit_test(error_result_ends_the_response),
        cmocka_unit_test(unknown_negative_results_pass_through),
        cmocka_unit_test(unknown_response_means_not_supported_for_every_type),
        cmocka_unit_test(empty_response_of_the_expected_type_means_not_supported),
        cmocka_unit_test(unknown_request_types_decode_as_enosys_with_id_and_payload),
        cmocka_unit_test(known_request_types_are_not_enosys_even_when_empty),
        cmocka_unit_test(header_is_read_from_any_message_of_five_bytes),
        cmocka_unit_test(decode_response_rejects_a_response_type_as_expected),
        cmocka_unit_test(truncate_request_keeps_all_64_bits_of_size_and_handle),
        cmocka_unit_test(getattr_response_keeps_sizes_and_inodes_above_4_gib),
        cmocka_unit_test(mknod_request_carries_rdev_as_u64),
        cmocka_unit_test(access_request_carries_mode_as_one_byte),
        cmocka_unit_test(fsync_datasync_is_one_byte_and_any_nonzero_byte_is_true),
        cmocka_unit_test(symlink_request_sends_target_before_linkpath),
        cmocka_unit_test(empty_readdir_list_has_no_names),
        cmocka_unit_test(readdir_names_can_be_walked_twice),
        cmocka_unit_test(readdirplus_pages_are_held_to_their_bounds),
        cmocka_unit_test(encode_request_rejects_what_cannot_be_sent),
        cmocka_unit_test(encode_rejects_strings_longer_than_u32),
        cmocka_unit_test(encode_response_rejects_what_cannot_be_sent),
        cmocka_unit_test(error_response_encodes_only_the_result),
        cmocka_unit_test(type_names_cover_requests_and_responses),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
