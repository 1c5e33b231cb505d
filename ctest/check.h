/* The checks of the C tests: each failure prints where it failed and the
 * library's last error, and the test ends with "N passed, N failed". */
#ifndef XPU_HOST_CTEST_CHECK_H
#define XPU_HOST_CTEST_CHECK_H

#include <stdio.h>

#include "xpu_caching_host_allocator.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                                            \
  do {                                                                                         \
    ++checks;                                                                                  \
    if (!(cond)) {                                                                             \
      ++failures;                                                                              \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
              xpu_host_last_error_message());                                                  \
    }                                                                                          \
  } while (0)

#define CHECK_OK(call) CHECK((call) == XPU_HOST_SUCCESS)

/* Prints the closing line; the process's exit status. */
static int report(void) {
  printf("%d passed, %d failed\n", checks - failures, failures);
  return failures == 0 ? 0 : 1;
}

#endif
