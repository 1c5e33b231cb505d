/* Configuration through the C API and the environment, and the behaviour each
 * setting changes. One mode per process, since settings apply at start:
 *   config_test api       xpu_host_configure strings, good and bad
 *   config_test env       XPU_CACHING_HOST_ALLOCATOR_CONF and PYTORCH_ALLOC_CONF set by CTest
 *   config_test bad-env   a bad XPU_CACHING_HOST_ALLOCATOR_CONF set by CTest */
#define _POSIX_C_SOURCE 199309L
#include "check.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define MiB ((size_t)1 << 20)

static xpu_host_counters stats(void) {
  xpu_host_stats s = {sizeof(xpu_host_stats)};
  CHECK_OK(xpu_host_get_stats(&s));
  return s.counters;
}

static void api(void) {
  CHECK(xpu_host_configure("pinned_bogus:1") == XPU_HOST_ERROR_INVALID_CONFIGURATION);
  CHECK(strstr(xpu_host_last_error_message(), "unknown key `pinned_bogus`") != NULL);
  CHECK(xpu_host_configure("pinned_roundup_divisions:3") == XPU_HOST_ERROR_INVALID_CONFIGURATION);
  CHECK(strstr(xpu_host_last_error_message(), "pinned_roundup_divisions must be 1, 2, 4 or 8, not `3`") != NULL);
  CHECK(xpu_host_configure("pinned_max_cached_size_mb:lots") == XPU_HOST_ERROR_INVALID_CONFIGURATION);
  CHECK(xpu_host_configure(NULL) == XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK(xpu_host_configure("pinned_fit:power2") == XPU_HOST_ERROR_INVALID_CONFIGURATION);
  CHECK(strstr(xpu_host_last_error_message(), "pinned_fit must be exact or rounded, not `power2`") != NULL);
  CHECK_OK(xpu_host_configure("pinned_fit:rounded,pinned_roundup_divisions:4, pinned_max_cached_size_mb:2"));

  /* Four divisions: (1 MiB, 2 MiB] in steps of 256 KiB. */
  void *a, *actx, *b, *bctx;
  CHECK_OK(xpu_host_allocate(MiB + 1, &a, &actx));
  CHECK(stats().active_bytes.current == (int64_t)(MiB + 256 * 1024));
  CHECK_OK(xpu_host_allocate(MiB + 1, &b, &bctx));
  CHECK_OK(xpu_host_free(actx));
  CHECK_OK(xpu_host_free(bctx));
  /* The cap of 2 MiB holds one 1.25 MiB block; the oldest went back to the driver. */
  xpu_host_counters s = stats();
  CHECK(s.cached_bytes.current == (int64_t)(MiB + 256 * 1024));
  CHECK(s.num_host_free == 1 && s.allocations.current == 1);
  void *c, *cctx;
  CHECK_OK(xpu_host_allocate(MiB + 1, &c, &cctx));
  CHECK(c == b); /* the newer one stayed */

  xpu_host_size_class_stats classes[4] = {{sizeof(xpu_host_size_class_stats)}};
  size_t count = 0;
  CHECK_OK(xpu_host_get_size_class_stats(classes, 4, &count));
  CHECK(count == 1 && classes[0].block_size == MiB + 256 * 1024);
  CHECK(classes[0].allocations.current == 1 && classes[0].allocations.allocated == 2 && classes[0].cached == 0);
  CHECK(xpu_host_get_size_class_stats(NULL, 4, &count) == XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK_OK(xpu_host_get_size_class_stats(NULL, 0, &count));
  CHECK_OK(xpu_host_free(cctx));

  CHECK(xpu_host_configure("pinned_roundup_divisions:2") == XPU_HOST_ERROR_ALREADY_INITIALIZED);
}

static void env(void) {
  /* PYTORCH_ALLOC_CONF: pinned_max_round_threshold_mb:1 (its other keys are PyTorch's). */
  void *a, *actx;
  CHECK_OK(xpu_host_allocate(3 * MiB + 1, &a, &actx));
  CHECK(stats().active_bytes.current == (int64_t)(3 * MiB + 512));
  /* XPU_CACHING_HOST_ALLOCATOR_CONF: the background reclaimer polls without any allocation. */
  xpu_host_stream stream = {12, 0, 5};
  bool recorded = false;
  CHECK_OK(xpu_host_record_stream(a, actx, stream, &recorded));
  CHECK(recorded);
  CHECK_OK(xpu_host_free(actx));
  int reclaimed = 0;
  for (int i = 0; i < 5000 && !reclaimed; ++i) {
    reclaimed = stats().pending_blocks.current == 0;
    struct timespec ms = {0, 1000000};
    if (!reclaimed) nanosleep(&ms, NULL);
  }
  CHECK(reclaimed);
  CHECK(stats().cached_bytes.current == (int64_t)(3 * MiB + 512));
}

static void bad_env(void) {
  CHECK(xpu_host_init() == XPU_HOST_ERROR_INVALID_CONFIGURATION);
  CHECK(strstr(xpu_host_last_error_message(), "XPU_CACHING_HOST_ALLOCATOR_CONF: unknown key `pinned_bogus`") != NULL);
  void *a = NULL, *actx = NULL;
  CHECK(xpu_host_allocate(64, &a, &actx) == XPU_HOST_ERROR_INVALID_CONFIGURATION);
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "api") == 0) api();
  else if (strcmp(mode, "env") == 0) env();
  else if (strcmp(mode, "bad-env") == 0) bad_env();
  else {
    fprintf(stderr, "usage: config_test api|env|bad-env\n");
    return 2;
  }
  CHECK_OK(xpu_host_empty_cache());
  return report();
}
