/* Unit tests for auth/: the users file parser, password hashes, constant-time comparison and the
 * throttle. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "auth.h"

/* Made once with auth_password_hash (yescrypt) in setup: "secret". */
static char yescrypt_secret[256];

static int make_hashes(void **state)
{
    (void)state;
    return auth_password_hash("secret", yescrypt_secret, sizeof(yescrypt_secret));
}

/* A SHA-512 crypt hash of "secret" with the salt "saltsalt" (openssl passwd -6). */
static const char sha512_secret[] =
    "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S"
    "5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

static int parse(const char *text, struct auth_users **users, char *err, size_t cap)
{
    err[0] = '\0';
    return auth_users_parse(text, strlen(text), "users", users, err, cap);
}

static void parses_users_comments_and_blank_lines(void **state)
{
    (void)state;
    char text[1024], err[256];
    snprintf(text, sizeof(text),
             "# who may attach what\n"
             "\n"
             "alice:%s:firmware,logs\r\n"
             "   \t\n"
             "  # indented comment\n"
             "bob:%s:*\n",
             yescrypt_secret, sha512_secret);
    struct auth_users *users = NULL;
    assert_int_equal(parse(text, &users, err, sizeof(err)), 0);
    assert_int_equal(auth_users_count(users), 2);

    const struct auth_user *alice = auth_users_find(users, "alice");
    assert_non_null(alice);
    assert_string_equal(auth_user_name(alice), "alice");
    assert_string_equal(auth_user_hash(alice), yescrypt_secret);
    assert_true(auth_user_may_attach(alice, "firmware"));
    assert_true(auth_user_may_attach(alice, "logs"));
    assert_false(auth_user_may_attach(alice, "other"));
    assert_false(auth_user_may_attach(alice, "firm"));

    const struct auth_user *bob = auth_users_find(users, "bob");
    assert_non_null(bob);
    assert_true(auth_user_may_attach(bob, "anything"));
    assert_null(auth_users_find(users, "carol"));
    assert_null(auth_users_find(users, "Alice"));
    auth_users_free(users);
}

struct bad_case {
    const char *text;
    const char *message; /* expected in the error, after "users:LINE: " */
};

static void malformed_lines_name_file_and_line(void **state)
{
    (void)state;
    char y[400];
    snprintf(y, sizeof(y), "%s", yescrypt_secret);
    char texts[14][1200];
    const struct bad_case cases[] = {
        {texts[0], "users:2: expected NAME:HASH:FILESYSTEMS"},
        {texts[1], "users:1: bad user name"},
        {texts[2], "users:3: user \"alice\" is listed twice"},
        {texts[3], "users:1: the password hash of user \"alice\" is not a yescrypt"},
        {texts[4], "users:1: bad filesystem name \"..\""},
        {texts[5], "users:1: user \"alice\" has no filesystem names"},
        {texts[6], "users:1: \"*\" stands alone"},
        {texts[7], "users:1: expected NAME:HASH:FILESYSTEMS"},
        {texts[8], "users: no users in the file"},
        {texts[9], "users:1: the password hash of user \"alice\" is not a yescrypt"},
        {texts[10], "users:1: the password hash of user \"alice\" is not a yescrypt"},
        {texts[11], "users:1: the password hash of user \"alice\" is not a yescrypt"},
    };
    snprintf(texts[0], sizeof(texts[0]), "# ok\nalice %s *\n", y);
    snprintf(texts[1], sizeof(texts[1]), "al ice:%s:*\n", y);
    snprintf(texts[2], sizeof(texts[2]), "alice:%s:*\n\nalice:%s:a\n", y, y);
    snprintf(texts[3], sizeof(texts[3]), "alice:$1$md5salt$abcdefghijklmnopqrstuv:*\n");
    snprintf(texts[4], sizeof(texts[4]), "alice:%s:a,..\n", y);
    snprintf(texts[5], sizeof(texts[5]), "alice:%s:\n", y);
    snprintf(texts[6], sizeof(texts[6]), "alice:%s:a,*\n", y);
    snprintf(texts[7], sizeof(texts[7]), "alice:%s:a:b\n", y);
    snprintf(texts[8], sizeof(texts[8]), "# nobody\n\n");
    snprintf(texts[9], sizeof(texts[9]), "alice:plaintext:*\n");
    snprintf(texts[10], sizeof(texts[10]), "alice:$6$bad:*\n");       /* salt, no hash */
    snprintf(texts[11], sizeof(texts[11]), "alice:$y$j9T$salt$:*\n"); /* empty hash */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct auth_users *users = NULL;
        char err[256];
        assert_int_equal(parse(cases[i].text, &users, err, sizeof(err)), -EINVAL);
        assert_null(users);
        if (strstr(err, cases[i].message) != err) {
            print_error("case %zu: error \"%s\" does not start with \"%s\"\n", i, err,
                        cases[i].message);
            fail();
        }
    }
}

static void overlong_line_and_nul_are_refused(void **state)
{
    (void)state;
    char text[AUTH_LINE_MAX + 100];
    memset(text, 'a', sizeof(text) - 2);
    text[sizeof(text) - 2] = '\n';
    text[sizeof(text) - 1] = '\0';
    struct auth_users *users = NULL;
    char err[256];
    assert_int_equal(parse(text, &users, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "users:1: line longer than"));

    static const char with_nul[] = "alice:$6$x$y:*\0\n";
    assert_int_equal(
        auth_users_parse(with_nul, sizeof(with_nul) - 1, "users", &users, err, sizeof(err)),
        -EINVAL);
    assert_non_null(strstr(err, "users:1: NUL byte"));
}

static void load_reports_missing_file(void **state)
{
    (void)state;
    struct auth_users *users = NULL;
    char err[256];
    assert_int_equal(auth_users_load("/nonexistent/webfuse-users", &users, err, sizeof(err)),
                     -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/webfuse-users"));
}

static void passwords_verify_against_both_formats(void **state)
{
    (void)state;
    assert_int_equal(auth_password_verify(yescrypt_secret, "secret"), 0);
    assert_int_equal(auth_password_verify(yescrypt_secret, "Secret"), -EACCES);
    assert_int_equal(auth_password_verify(yescrypt_secret, ""), -EACCES);
    assert_int_equal(auth_password_verify(sha512_secret, "secret"), 0);
    assert_int_equal(auth_password_verify(sha512_secret, "secret2"), -EACCES);
    assert_int_equal(auth_password_verify("$1$abc$def", "secret"), -EINVAL);

    char longer[AUTH_PASSWORD_MAX + 2];
    memset(longer, 'x', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    assert_int_equal(auth_password_verify(yescrypt_secret, longer), -EINVAL);
}

static void hashes_are_yescrypt_with_fresh_salt(void **state)
{
    (void)state;
    char a[256], b[256];
    assert_int_equal(auth_password_hash("pw", a, sizeof(a)), 0);
    assert_int_equal(auth_password_hash("pw", b, sizeof(b)), 0);
    assert_memory_equal(a, "$y$", 3);
    assert_string_not_equal(a, b);
    assert_int_equal(auth_password_verify(a, "pw"), 0);
    assert_int_equal(auth_password_verify(b, "pw"), 0);
    char tiny[8];
    assert_int_equal(auth_password_hash("pw", tiny, sizeof(tiny)), -ENOBUFS);
}

static void decoy_hash_never_matches_an_empty_password(void **state)
{
    (void)state;
    char text[512], err[256];
    snprintf(text, sizeof(text), "alice:%s:*\n", yescrypt_secret);
    struct auth_users *users = NULL;
    assert_int_equal(parse(text, &users, err, sizeof(err)), 0);
    const char *decoy = auth_users_decoy_hash(users);
    assert_memory_equal(decoy, "$y$", 3);
    assert_int_equal(auth_password_verify(decoy, ""), -EACCES);
    assert_int_equal(auth_password_verify(decoy, "secret"), -EACCES);
    auth_users_free(users);
}

static double seconds_to_verify(const char *hash, const char *password)
{
    double best = 1e9;
    for (int run = 0; run < 3; run++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        assert_int_equal(auth_password_verify(hash, password), -EACCES);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
        best = s < best ? s : best;
    }
    return best;
}

/* A login is checked against auth_users_hash_for: a wrong password of the right length fails
 * the user's own hash, and an unknown or malformed name gets the decoy, which costs as much
 * (the strongest format in the file, here yescrypt although bob has SHA-512) and never
 * matches. */
static void unknown_users_are_checked_against_the_decoy(void **state)
{
    (void)state;
    char text[1024], err[256];
    snprintf(text, sizeof(text), "alice:%s:*\nbob:%s:*\n", yescrypt_secret, sha512_secret);
    struct auth_users *users = NULL;
    assert_int_equal(parse(text, &users, err, sizeof(err)), 0);
    bool known = false;
    const char *alice = auth_users_hash_for(users, "alice", &known);
    assert_true(known);
    assert_string_equal(alice, yescrypt_secret);
    assert_int_equal(auth_password_verify(alice, "secret"), 0);
    assert_int_equal(auth_password_verify(alice, "secreT"), -EACCES); /* same length */
    assert_int_equal(auth_password_verify(alice, "terces"), -EACCES);
    const char *names[] = {"mallory", "Alice", "alice ", "", "al:ice", "alice\n"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        known = true;
        const char *hash = auth_users_hash_for(users, names[i], &known);
        assert_false(known);
        assert_ptr_equal(hash, auth_users_decoy_hash(users));
    }
    const char *decoy = auth_users_decoy_hash(users);
    assert_memory_equal(decoy, "$y$", 3);
    assert_int_equal(auth_password_verify(decoy, "secret"), -EACCES);
    /* An unknown user costs about what a wrong password costs (generous slack: busy machine). */
    double wrong = seconds_to_verify(alice, "secreT");
    double unknown = seconds_to_verify(decoy, "secreT");
    if (unknown < wrong / 2 || unknown > wrong * 2) {
        print_error("wrong password %.4f s, unknown user %.4f s\n", wrong, unknown);
        fail();
    }
    auth_users_free(users);
}

static void equal_compares_whole_strings(void **state)
{
    (void)state;
    assert_true(auth_equal("abc", 3, "abc", 3));
    assert_false(auth_equal("abc", 3, "abd", 3));
    assert_false(auth_equal("abc", 3, "ab", 2));
    assert_false(auth_equal("ab", 2, "abc", 3));
    assert_false(auth_equal("abc", 3, "", 0));
    assert_true(auth_equal("", 0, "", 0));
    /* Embedded NULs count as bytes, not as the end. */
    assert_false(auth_equal("a\0b", 3, "a\0c", 3));
}

static double seconds_for(const char *expected, const char *given, int rounds)
{
    struct timespec a, b;
    size_t elen = strlen(expected), glen = strlen(given);
    volatile bool sink = false;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < rounds; i++)
        sink ^= auth_equal(expected, elen, given, glen);
    clock_gettime(CLOCK_MONOTONIC, &b);
    (void)sink;
    return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

/* Where the first difference is must not change the time: a mismatch in the first byte and one
 * in the last byte take about as long (with generous slack for a busy machine). */
static void equal_takes_the_same_time_wherever_the_difference_is(void **state)
{
    (void)state;
    char expected[4097], first[4097], last[4097];
    memset(expected, 'k', sizeof(expected) - 1);
    expected[sizeof(expected) - 1] = '\0';
    memcpy(first, expected, sizeof(first));
    memcpy(last, expected, sizeof(last));
    first[0] = 'x';
    last[sizeof(last) - 2] = 'x';
    double best_first = 1e9, best_last = 1e9;
    for (int run = 0; run < 5; run++) {
        double f = seconds_for(expected, first, 2000);
        double l = seconds_for(expected, last, 2000);
        best_first = f < best_first ? f : best_first;
        best_last = l < best_last ? l : best_last;
    }
    double ratio = best_first > best_last ? best_first / best_last : best_last / best_first;
    if (ratio > 1.5) {
        print_error("first-byte mismatch %.6f s, last-byte mismatch %.6f s\n", best_first,
                    best_last);
        fail();
    }
}

static void line_format_writes_a_line_the_parser_takes(void **state)
{
    (void)state;
    char line[1024], err[256];
    assert_int_equal(
        auth_line_format("alice", yescrypt_secret, "fw,logs", line, sizeof(line), err, sizeof(err)),
        0);
    char expected[1024];
    snprintf(expected, sizeof(expected), "alice:%s:fw,logs", yescrypt_secret);
    assert_string_equal(line, expected);
    struct auth_users *users = NULL;
    assert_int_equal(parse(line, &users, err, sizeof(err)), 0);
    auth_users_free(users);

    assert_int_equal(
        auth_line_format("al:ice", yescrypt_secret, "*", line, sizeof(line), err, sizeof(err)),
        -EINVAL);
    assert_int_equal(
        auth_line_format("alice", yescrypt_secret, "a,,b", line, sizeof(line), err, sizeof(err)),
        -EINVAL);
    assert_int_equal(auth_line_format("alice", yescrypt_secret, "*", line, 10, err, sizeof(err)),
                     -ENOBUFS);
}

/* One attempt from `address` at `now` that ends in a failure; returns how long it waited. */
static uint64_t failed_attempt(struct auth_throttle *t, const char *address, uint64_t now)
{
    uint64_t wait = 12345;
    assert_int_equal(auth_throttle_begin(t, address, now, &wait), 0);
    auth_throttle_failure(t, address, "alice", now + wait);
    return wait;
}

static uint64_t wait_of(struct auth_throttle *t, const char *address, uint64_t now)
{
    uint64_t wait = 12345;
    assert_int_equal(auth_throttle_begin(t, address, now, &wait), 0);
    return wait;
}

/* A throttle where `address` has used up its free failures at `now` (they did not wait). */
static struct auth_throttle *throttle_after_free_failures(const char *address, uint64_t now)
{
    struct auth_throttle *t;
    assert_int_equal(auth_throttle_new(&t), 0);
    for (int i = 0; i < AUTH_THROTTLE_FREE_FAILURES; i++)
        assert_int_equal(failed_attempt(t, address, now), 0);
    return t;
}

static void throttle_delays_after_five_failures_and_grows(void **state)
{
    (void)state;
    uint64_t now = 1000000;
    struct auth_throttle *t = throttle_after_free_failures("10.0.0.1", now);
    /* One after the other (each after the previous one's answer): 1 s, 2, 4, ... up to 60. */
    uint64_t expected[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        uint64_t wait = failed_attempt(t, "10.0.0.1", now);
        assert_int_equal(wait, expected[i]);
        now += wait;
    }
    assert_int_equal(wait_of(t, "10.0.0.2", now), 0); /* others are not slowed */
    /* Forgotten after a quiet while, and cleared by a success. */
    assert_int_equal(wait_of(t, "10.0.0.1", now + AUTH_THROTTLE_FORGET_MS), 0);
    for (int i = 0; i < 6; i++)
        failed_attempt(t, "10.0.0.3", now); /* the sixth is answered at now + 1 s */
    assert_int_equal(wait_of(t, "10.0.0.3", now + 1000), 2000);
    auth_throttle_success(t, "10.0.0.3", "alice", now + 3000);
    assert_int_equal(wait_of(t, "10.0.0.3", now + 3000), 0);
    auth_throttle_free(t);
}

static void throttle_queues_parallel_attempts_behind_one_another(void **state)
{
    (void)state;
    uint64_t now = 1000000;
    struct auth_throttle *t = throttle_after_free_failures("10.0.0.1", now);
    /* Five at once: each waits its delay after the turn of the one before it. */
    assert_int_equal(wait_of(t, "10.0.0.1", now), 1000);
    assert_int_equal(wait_of(t, "10.0.0.1", now), 1000 + 2000);
    assert_int_equal(wait_of(t, "10.0.0.1", now), 1000 + 2000 + 4000);
    assert_int_equal(wait_of(t, "10.0.0.1", now), 7000 + 8000);
    assert_int_equal(wait_of(t, "10.0.0.1", now), 15000 + 16000);
    /* No attempt waits longer than the longest delay: the next (31 + 32 s) is refused unchecked
     * and does not count: once the five are answered (failed), the next waits 32 s, not 60. */
    uint64_t wait;
    assert_int_equal(auth_throttle_begin(t, "10.0.0.1", now, &wait), -EAGAIN);
    for (int i = 0; i < 5; i++)
        auth_throttle_failure(t, "10.0.0.1", "alice", now + 31000);
    assert_int_equal(wait_of(t, "10.0.0.1", now + 40000), 32000);
    auth_throttle_free(t);
}

static void throttle_counts_attempts_in_progress(void **state)
{
    (void)state;
    struct auth_throttle *t;
    assert_int_equal(auth_throttle_new(&t), 0);
    uint64_t now = 1000000;
    /* Attempts whose answers are not known yet count: the sixth at once is delayed. */
    for (int i = 0; i < AUTH_THROTTLE_FREE_FAILURES; i++)
        assert_int_equal(wait_of(t, "10.0.0.1", now), 0);
    assert_int_equal(wait_of(t, "10.0.0.1", now), 1000);
    /* Attempts nobody heard the answer of stop counting. */
    for (int i = 0; i < 6; i++)
        auth_throttle_abandon(t, "10.0.0.1", now + 1000);
    assert_int_equal(wait_of(t, "10.0.0.1", now + 1000), 0);
    /* A success clears the failures; an attempt still out then counts from zero. */
    for (int i = 0; i < 5; i++)
        failed_attempt(t, "10.0.0.2", now);
    assert_int_equal(wait_of(t, "10.0.0.2", now), 1000);        /* A */
    assert_int_equal(wait_of(t, "10.0.0.2", now), 1000 + 2000); /* B */
    auth_throttle_success(t, "10.0.0.2", "alice", now + 1000);  /* A succeeds */
    auth_throttle_failure(t, "10.0.0.2", "alice", now + 3000);  /* B fails */
    assert_int_equal(wait_of(t, "10.0.0.2", now + 3000), 0);
    auth_throttle_free(t);
}

/* A login of one's own account does not wash out guesses at another's: only the user whose
 * logins failed clears the failures by logging in. */
static void throttle_is_cleared_only_by_the_user_who_failed(void **state)
{
    (void)state;
    uint64_t now = 1000000;
    struct auth_throttle *t;
    assert_int_equal(auth_throttle_new(&t), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(wait_of(t, "10.0.0.9", now), 0);
        auth_throttle_failure(t, "10.0.0.9", "admin", now); /* guesses at admin's password */
    }
    assert_int_equal(wait_of(t, "10.0.0.9", now), 0);
    auth_throttle_success(t, "10.0.0.9", "mallory", now); /* mallory's own account */
    assert_int_equal(wait_of(t, "10.0.0.9", now), 0);     /* the fifth failure's turn: free */
    auth_throttle_failure(t, "10.0.0.9", "admin", now);
    assert_int_equal(wait_of(t, "10.0.0.9", now), 1000); /* the sixth waits: nothing was cleared */
    auth_throttle_failure(t, "10.0.0.9", "root", now + 1000);
    /* Failures for several users stay even when one of them logs in. */
    assert_int_equal(wait_of(t, "10.0.0.9", now + 1000), 2000);
    auth_throttle_success(t, "10.0.0.9", "admin", now + 3000);
    assert_int_equal(wait_of(t, "10.0.0.9", now + 3000), 2000); /* still six failures */
    /* Mistyped passwords of the one who then logs in are cleared. */
    for (int i = 0; i < 4; i++)
        failed_attempt(t, "10.0.0.8", now); /* alice's */
    assert_int_equal(wait_of(t, "10.0.0.8", now), 0);
    auth_throttle_success(t, "10.0.0.8", "alice", now);
    for (int i = 0; i < 5; i++)
        assert_int_equal(failed_attempt(t, "10.0.0.8", now), 0); /* counted from zero */
    /* Several users' failures (a shared address) are still forgotten 15 minutes after the last
     * one, however many logins succeed meanwhile. */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(wait_of(t, "10.0.0.7", now), 0);
        auth_throttle_failure(t, "10.0.0.7", i % 2 ? "bob" : "carol", now);
    }
    uint64_t later = now;
    for (; later < now + AUTH_THROTTLE_FORGET_MS - 60000; later += 60000) {
        assert_int_equal(wait_of(t, "10.0.0.7", later), 1000);
        auth_throttle_success(t, "10.0.0.7", "alice", later + 1000);
    }
    assert_int_equal(wait_of(t, "10.0.0.7", now + AUTH_THROTTLE_FORGET_MS), 0);
    auth_throttle_free(t);
}

static void throttle_table_is_bounded_and_evicts_the_stalest(void **state)
{
    (void)state;
    struct auth_throttle *t;
    assert_int_equal(auth_throttle_new(&t), 0);
    for (int i = 0; i < 6; i++)
        auth_throttle_failure(t, "192.168.1.1", "alice", 100 + (uint64_t)i);
    char address[64];
    for (int i = 0; i < AUTH_THROTTLE_ADDRESSES; i++) {
        snprintf(address, sizeof(address), "10.1.%d.%d", i / 256, i % 256);
        auth_throttle_failure(t, address, "alice", 1000 + (uint64_t)i);
    }
    /* The oldest entry made room; the newest are still there. */
    assert_int_equal(wait_of(t, "192.168.1.1", 5000), 0);
    for (int i = 0; i < 4; i++)
        auth_throttle_failure(t, address, "alice", 5000);
    assert_true(wait_of(t, address, 5000) > 0);
    auth_throttle_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_users_comments_and_blank_lines),
        cmocka_unit_test(malformed_lines_name_file_and_line),
        cmocka_unit_test(overlong_line_and_nul_are_refused),
        cmocka_unit_test(load_reports_missing_file),
        cmocka_unit_test(passwords_verify_against_both_formats),
        cmocka_unit_test(hashes_are_yescrypt_with_fresh_salt),
        cmocka_unit_test(decoy_hash_never_matches_an_empty_password),
        cmocka_unit_test(unknown_users_are_checked_against_the_decoy),
        cmocka_unit_test(equal_compares_whole_strings),
        cmocka_unit_test(equal_takes_the_same_time_wherever_the_difference_is),
        cmocka_unit_test(line_format_writes_a_line_the_parser_takes),
        cmocka_unit_test(throttle_delays_after_five_failures_and_grows),
        cmocka_unit_test(throttle_queues_parallel_attempts_behind_one_another),
        cmocka_unit_test(throttle_counts_attempts_in_progress),
        cmocka_unit_test(throttle_is_cleared_only_by_the_user_who_failed),
        cmocka_unit_test(throttle_table_is_bounded_and_evicts_the_stalest),
    };
    return cmocka_run_group_tests(tests, make_hashes, NULL);
}
