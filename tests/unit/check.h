/* check.h - the unit tests' one assertion: CHECK(cond, fmt, ...) counts a pass
 * or prints "FAIL file:line: cond: message" and counts a failure; the test's
 * main prints "NAME: npass passed, nfail failed" from the two counters.
 * ASSERT(cond) is CHECK without a message; ASSERT_EQ(expected, actual) compares
 * two integers and prints both when they differ.
 * The counters are guarded by a lock, so checks may run on several threads
 * (test_api and test_exec check from worker threads).
 * Included once, by the test's single translation unit. */
#ifndef KILN_TESTS_UNIT_CHECK_H
#define KILN_TESTS_UNIT_CHECK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

static int npass, nfail;
static pthread_mutex_t check_lock = PTHREAD_MUTEX_INITIALIZER;

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        bool check_ok_ = (cond);                                                                             \
        pthread_mutex_lock(&check_lock);                                                                     \
        if (check_ok_) {                                                                                     \
            npass++;                                                                                         \
        } else {                                                                                             \
            nfail++;                                                                                         \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                           \
            printf(__VA_ARGS__);                                                                             \
            printf("\n");                                                                                    \
        }                                                                                                    \
        pthread_mutex_unlock(&check_lock);                                                                   \
    } while (0)

#define ASSERT(cond) CHECK(cond, "%s", "false")

#define ASSERT_EQ(expected, actual)                                                                          \
    do {                                                                                                     \
        long long e_ = (long long)(expected), a_ = (long long)(actual);                                      \
        CHECK(e_ == a_, "%s is %lld, expected %lld", #actual, a_, e_);                                       \
    } while (0)

#endif
