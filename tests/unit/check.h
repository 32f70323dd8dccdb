/* check.h - the unit tests' one assertion: CHECK(cond, fmt, ...) counts a pass
 * or prints "FAIL file:line: cond: message" and counts a failure; the test's
 * main prints "NAME: npass passed, nfail failed" from the two counters.
 * Included once, by the test's single translation unit. */
#ifndef KILN_TESTS_UNIT_CHECK_H
#define KILN_TESTS_UNIT_CHECK_H

#include <stdio.h>

static int npass, nfail;

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (cond) {                                                                                          \
            npass++;                                                                                         \
        } else {                                                                                             \
            nfail++;                                                                                         \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                           \
            printf(__VA_ARGS__);                                                                             \
            printf("\n");                                                                                    \
        }                                                                                                    \
    } while (0)

#endif
