/* Unit tests for the escaping of text from the network in log/log.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

static size_t escape(char *out, size_t size, const char *text)
{
    return log_escape(out, size, text, strlen(text));
}

static void printable_utf8_passes_unchanged(void **state)
{
    (void)state;
    char out[64];
    const char *text = "firmware-2.1 \xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa6 a\\b";
    assert_int_equal(escape(out, sizeof(out), text), strlen(text));
    assert_string_equal(out, text);
}

static void control_characters_become_hex_escapes(void **state)
{
    (void)state;
    char out[64];
    escape(out, sizeof(out), "x\n2026 forged\r\t\x1b[31mred\x7f");
    assert_string_equal(out, "x\\x0a2026 forged\\x0d\\x09\\x1b[31mred\\x7f");
}

static void c1_controls_separators_and_bidi_overrides_are_escaped(void **state)
{
    (void)state;
    char out[128];
    /* U+0085 (NEL), U+009B (CSI), U+2028, U+2029, U+202E (right-to-left override), U+2066; then
     * U+00A0 and U+2030, their neighbours, which stay */
    escape(out, sizeof(out),
           "a\xc2\x85"
           "b\xc2\x9b"
           "c\xe2\x80\xa8\xe2\x80\xa9\xe2\x80\xae\xe2\x81\xa6"
           "d\xc2\xa0\xe2\x80\xb0");
    assert_string_equal(out, "a\\xc2\\x85b\\xc2\\x9bc\\xe2\\x80\\xa8\\xe2\\x80\\xa9\\xe2\\x80\\xae"
                             "\\xe2\\x81\\xa6d\xc2\xa0\xe2\x80\xb0");
}

static void bytes_outside_utf8_become_hex_escapes(void **state)
{
    (void)state;
    char out[64];
    /* a lone continuation byte, Latin-1, an overlong '/', a surrogate, past U+10FFFF, and a
     * sequence cut off by the end */
    escape(out, sizeof(out),
           "\x80"
           "a\xe9"
           "b\xc0\xaf"
           "\xed\xa0\x80"
           "\xf4\x90\x80\x80"
           "\xe2\x82");
    assert_string_equal(out, "\\x80a\\xe9b\\xc0\\xaf\\xed\\xa0\\x80\\xf4\\x90\\x80\\x80\\xe2\\x82");
}

static void a_nul_inside_the_text_is_escaped(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(log_escape(out, sizeof(out), "a\0b", 3), 3);
    assert_string_equal(out, "a\\x00b");
}

static void output_stops_before_what_does_not_fit_whole(void **state)
{
    (void)state;
    char out[6];
    /* "ab" fits, the escape of \n (4 bytes) would need 7 with the NUL: 2 bytes were taken */
    assert_int_equal(escape(out, sizeof(out), "ab\ncd"), 2);
    assert_string_equal(out, "ab");
    /* never half a character: the euro sign needs 3 bytes, 2 are left */
    char small[5];
    assert_int_equal(escape(small, sizeof(small), "ab\xe2\x82\xac"), 2);
    assert_string_equal(small, "ab");
    assert_int_equal(escape(small, 1, "abc"), 0);
    assert_string_equal(small, "");
    /* an escape that exactly fills the room left */
    char exact[7];
    assert_int_equal(escape(exact, sizeof(exact), "ab\ncd"), 3);
    assert_string_equal(exact, "ab\\x0a");
}

static void utf8_char_lengths(void **state)
{
    (void)state;
    assert_int_equal(log_utf8_char((const unsigned char *)"a", 1), 1);
    assert_int_equal(log_utf8_char((const unsigned char *)"\xc3\xa9", 2), 2);
    assert_int_equal(log_utf8_char((const unsigned char *)"\xef\xbf\xbf", 3), 3);
    assert_int_equal(log_utf8_char((const unsigned char *)"\xf4\x8f\xbf\xbf", 4), 4);
    assert_int_equal(log_utf8_char((const unsigned char *)"\xc3\xa9", 1), 0);     /* cut off */
    assert_int_equal(log_utf8_char((const unsigned char *)"\xe0\x9f\xbf", 3), 0); /* overlong */
    assert_int_equal(log_utf8_char((const unsigned char *)"\xf5\x80\x80\x80", 4), 0);
    assert_int_equal(log_utf8_char((const unsigned char *)"\xf0\x8f\xbf\xbf", 4), 0); /* overlong */
    assert_int_equal(log_utf8_char((const unsigned char *)"\xe2\x82"
                                                          "a",
                                   3),
                     0); /* cut, then text */
    assert_int_equal(log_utf8_char((const unsigned char *)"", 0), 0);
}

/* What log_warn writes for `text` (into line, NUL-terminated); returns its length. */
static size_t logged(const char *text, char *line, size_t size)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int saved = dup(STDERR_FILENO);
    assert_true(dup2(fds[1], STDERR_FILENO) >= 0);
    log_warn("refused filesystem \"%s\"", text);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[1]);
    ssize_t n = read(fds[0], line, size - 1);
    close(fds[0]);
    assert_true(n > 0);
    line[n] = '\0';
    return (size_t)n;
}

/* A message with a newline from a peer stays one line in the log. */
static void a_logged_line_cannot_be_split(void **state)
{
    (void)state;
    char line[512];
    size_t n = logged("x\n2026-12-05T00:00:00.000Z webfused info: forged", line, sizeof(line));
    assert_non_null(strstr(line, "refused filesystem \"x\\x0a2026-12-05T00:00:00.000Z webfused"));
    assert_ptr_equal(strchr(line, '\n'), line + n - 1);
}

/* A message that escapes to more than a line holds is cut at a whole escape, still one line. */
static void a_long_logged_line_is_cut_whole(void **state)
{
    (void)state;
    char text[1001];
    memset(text, '\n', 1000);
    text[1000] = '\0';
    char line[4096];
    size_t n = logged(text, line, sizeof(line));
    assert_true(n < 2048);
    assert_ptr_equal(strchr(line, '\n'), line + n - 1);
    const char *first = strstr(line, "\\x0a");
    assert_non_null(first);
    assert_int_equal((size_t)(line + n - 1 - first) % 4, 0); /* only whole escapes follow */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(printable_utf8_passes_unchanged),
        cmocka_unit_test(control_characters_become_hex_escapes),
        cmocka_unit_test(bytes_outside_utf8_become_hex_escapes),
        cmocka_unit_test(a_nul_inside_the_text_is_escaped),
        cmocka_unit_test(output_stops_before_what_does_not_fit_whole),
        cmocka_unit_test(utf8_char_lengths),
        cmocka_unit_test(c1_controls_separators_and_bidi_overrides_are_escaped),
        cmocka_unit_test(a_logged_line_cannot_be_split),
        cmocka_unit_test(a_long_logged_line_is_cut_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
