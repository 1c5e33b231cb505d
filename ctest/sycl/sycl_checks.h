// The checks of the SYCL tests: each failure prints where it failed, and the
// test ends with "N checks, N failed".
#pragma once

#include <sycl/sycl.hpp>

#include <cstdio>

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                          \
  do {                                                                       \
    ++checks;                                                                \
    if (!(cond)) {                                                           \
      ++failures;                                                            \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                        \
  } while (0)

// The exit status of a test: 0 if every check passed.
inline int report() {
  std::printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}

// The one Level Zero platform: the software driver's.
inline sycl::platform level_zero_platform() {
  for (const sycl::platform& platform : sycl::platform::get_platforms()) {
    if (platform.get_backend() == sycl::backend::ext_oneapi_level_zero) return platform;
  }
  throw sycl::exception(sycl::errc::platform, "no Level Zero platform: is ZE_ENABLE_ALT_DRIVERS set?");
}
