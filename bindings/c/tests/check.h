/* Shared checking macros of the C test suites (one translation unit each):
 * CHECK counts and reports, CHECK_STATUS compares a flowrt_status and prints
 * the library's message on mismatch. Each suite ends with
 * printf("%d passed, %d failed\n", passed, failed). */
#ifndef FLOWRT_TESTS_CHECK_H
#define FLOWRT_TESTS_CHECK_H

#include <stdio.h>

#include "flowrt.h"

static int passed = 0, failed = 0;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (cond) { passed++; }                                                \
        else { failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__);           \
               printf(__VA_ARGS__); printf("\n"); }                            \
    } while (0)

#define CHECK_STATUS(call, expected)                                           \
    do {                                                                       \
        flowrt_status s_ = (call);                                             \
        CHECK(s_ == (expected), "%s returned %d (%s), expected %d: %s", #call, \
              (int)s_, flowrt_status_string(s_), (int)(expected),              \
              flowrt_last_error_message());                                    \
    } while (0)

#endif
