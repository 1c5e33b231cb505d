/* The C API through the generated header, on the software Level Zero driver
 * behind the real loader: allocation and reuse, the stream-ordering guarantee
 * with work held back on the stream, statistics, and every error path. */
#define _POSIX_C_SOURCE 199309L
#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


static const xpu_host_stream stream1 = {12, 0, 1};
static const xpu_host_stream stream2 = {12, 0, 2};

typedef struct {
  void *data;
  void *ctx;
} block;

static block alloc_block(size_t size) {
  block b = {NULL, NULL};
  CHECK_OK(xpu_host_allocate(size, &b.data, &b.ctx));
  return b;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void test_allocate_and_reuse(ze_context_handle_t context) {
  block none = alloc_block(0);
  CHECK(none.data == NULL && none.ctx == NULL);

  block a = alloc_block(1000);
  CHECK(a.data != NULL && a.ctx != NULL);
  CHECK((uintptr_t)a.data % 512 == 0);
  memset(a.data, 0xab, 1000);

  /* Pinned in the allocator's context, interior pointers too: what is_pinned asks. */
  ze_memory_allocation_properties_t props = {0};
  props.stype = ZE_STRUCTURE_TYPE_MEMORY_ALLOCATION_PROPERTIES;
  ze_device_handle_t device = NULL;
  CHECK(zeMemGetAllocProperties(context, (char *)a.data + 10, &props, &device) == ZE_RESULT_SUCCESS);
  CHECK(props.type == ZE_MEMORY_TYPE_HOST);

  CHECK_OK(xpu_host_free(a.ctx));
  block again = alloc_block(1000);
  CHECK(again.data == a.data && again.ctx == a.ctx);
  CHECK_OK(xpu_host_free(again.ctx));
  CHECK_OK(xpu_host_free(NULL));
}

/* The test that matters most: memory handed to a stream is not reused until the
 * stream has finished with it, however long the stream is held back. */
static void test_stream_ordering(void) {
  /* Hold stream1 back until the host opens the gate. */
  gate g = gate_create();
  gate_hold(g, stream1);

  block a = alloc_block(4096);
  bool recorded = false;
  CHECK_OK(xpu_host_record_stream(a.data, a.ctx, stream1, &recorded));
  CHECK(recorded);
  CHECK_OK(xpu_host_free(a.ctx));

  xpu_host_stats stats = {sizeof(xpu_host_stats)};
  CHECK_OK(xpu_host_get_stats(&stats));
  CHECK(stats.counters.pending_blocks.current == 1);

  /* Another stream is not held back by stream1. */
  block c = alloc_block(4096);
  CHECK(c.data != a.data);
  CHECK_OK(xpu_host_record_stream(c.data, c.ctx, stream2, &recorded));
  CHECK_OK(xpu_host_free(c.ctx));

  for (int i = 0; i < 20; ++i) {
    block b = alloc_block(4096);
    CHECK(b.data != a.data);
    CHECK_OK(xpu_host_free(b.ctx));
    sleep_ms(1);
  }

  gate_open(g);
  /* Once the stream drains the block is free again. Blocks that complete in the
   * same poll join the free list in any order, so take more blocks at once than
   * are cached: the original must be among them. */
  int reused = 0;
  for (int i = 0; i < 5000 && !reused; ++i) {
    block held[4];
    for (int j = 0; j < 4; ++j) {
      held[j] = alloc_block(4096);
      reused |= held[j].data == a.data && held[j].ctx == a.ctx;
    }
    for (int j = 0; j < 4; ++j) CHECK_OK(xpu_host_free(held[j].ctx));
    if (!reused) sleep_ms(1);
  }
  CHECK(reused);
  CHECK_OK(xpu_host_get_stats(&stats));
  CHECK(stats.counters.pending_blocks.current == 0);

  gate_destroy(g);
}

static void test_record_stream_targets(void) {
  block a = alloc_block(2048);
  bool recorded = true;
  /* A slice: our context, an interior pointer. */
  CHECK_OK(xpu_host_record_stream((char *)a.data + 8, a.ctx, stream2, &recorded));
  CHECK(recorded);
  /* Memory wrapped without its context: the base address is enough ... */
  CHECK_OK(xpu_host_record_stream(a.data, NULL, stream2, &recorded));
  CHECK(recorded);
  /* ... an interior one is not, nor memory that is not ours. */
  CHECK_OK(xpu_host_record_stream((char *)a.data + 8, NULL, stream2, &recorded));
  CHECK(!recorded);
  int local = 0;
  CHECK_OK(xpu_host_record_stream(&local, &local, stream2, &recorded));
  CHECK(!recorded);
  /* PyTorch's C names answer the same. */
  CHECK(CachingHostAllocator_recordEvent(a.data, a.ctx, stream2));
  CHECK(!CachingHostAllocator_recordEvent(&local, &local, stream2));
  /* A stream on a device that does not exist is refused up front. */
  xpu_host_stream no_device = {12, 42, 0};
  CHECK(xpu_host_record_stream(a.data, a.ctx, no_device, &recorded) == XPU_HOST_ERROR_LEVEL_ZERO);
  CHECK(strstr(xpu_host_last_error_message(), "no device with index 42") != NULL);
  CHECK(!CachingHostAllocator_recordEvent(a.data, a.ctx, no_device));
  CHECK_OK(xpu_host_free(a.ctx));

  /* Stale after emptyCache: once the stream is done, the block goes back to the driver. */
  int gone = 0;
  for (int i = 0; i < 5000 && !gone; ++i) {
    CachingHostAllocator_emptyCache();
    xpu_host_stats stats = {sizeof(xpu_host_stats)};
    CHECK_OK(xpu_host_get_stats(&stats));
    gone = stats.counters.pending_blocks.current == 0 && stats.counters.cached_bytes.current == 0;
    if (!gone) sleep_ms(1);
  }
  CHECK(gone);
  CHECK(!CachingHostAllocator_recordEvent(a.data, a.ctx, stream2));
}

static void test_errors(void) {
  void *data = (void *)1, *ctx = (void *)1;
  CHECK(xpu_host_allocate(SIZE_MAX, &data, &ctx) == XPU_HOST_ERROR_SIZE_TOO_LARGE);
  CHECK(strstr(xpu_host_last_error_message(), "too large") != NULL);
  CHECK(xpu_host_allocate(SIZE_MAX / 2 + 2, &data, &ctx) == XPU_HOST_ERROR_SIZE_TOO_LARGE);
  CHECK(data == (void *)1 && ctx == (void *)1); /* untouched on failure */
  CHECK(xpu_host_allocate(64, NULL, &ctx) == XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK(xpu_host_allocate(64, &data, NULL) == XPU_HOST_ERROR_INVALID_ARGUMENT);

  int local = 0;
  CHECK(xpu_host_free(&local) == XPU_HOST_ERROR_UNKNOWN_BLOCK);
  CHECK(strstr(xpu_host_last_error_message(), "not a block of this allocator") != NULL);
  block a = alloc_block(100);
  CHECK_OK(xpu_host_free(a.ctx));
  CHECK(xpu_host_free(a.ctx) == XPU_HOST_ERROR_NOT_ALLOCATED);
  CHECK(strstr(xpu_host_last_error_message(), "freed twice") != NULL);

  bool recorded;
  CHECK(xpu_host_record_stream(a.data, a.ctx, stream1, NULL) == XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK_OK(xpu_host_record_stream(a.data, a.ctx, stream1, &recorded));
  CHECK(!recorded); /* freed blocks take no streams */

  CHECK(xpu_host_use_context((ze_driver_handle_t)1, (ze_context_handle_t)1) != XPU_HOST_SUCCESS);
  CHECK(xpu_host_set_stream_hooks(NULL) == XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK(xpu_host_stream_submit(stream1, NULL, NULL) == XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK(xpu_host_get_stats(NULL) == XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK(xpu_host_describe(NULL, 10, NULL) == XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK(xpu_host_get_context(NULL, NULL) == XPU_HOST_ERROR_INVALID_ARGUMENT);
}

static void test_settings_after_start(ze_driver_handle_t driver, ze_context_handle_t context) {
  CHECK(xpu_host_use_context(driver, context) == XPU_HOST_ERROR_ALREADY_INITIALIZED);
  CHECK(strstr(xpu_host_last_error_message(), "before the allocator is first used") != NULL);
}

static void test_stats(void) {
  CHECK_OK(xpu_host_empty_cache());
  xpu_host_reset_accumulated_stats();
  xpu_host_reset_peak_stats();
  /* Exact fit, the default: requests aligned to 512 bytes. */
  block a = alloc_block(1000), b = alloc_block(3000);
  xpu_host_stats s = {sizeof(xpu_host_stats)};
  CHECK_OK(xpu_host_get_stats(&s));
  CHECK(s.counters.active_requests.current == 2 && s.counters.active_requests.allocated == 2);
  CHECK(s.counters.active_bytes.current == 1024 + 3072);
  CHECK(s.counters.requested_bytes.current == 4000);
  CHECK(s.counters.allocations.current == 2 && s.counters.allocated_bytes.current == 1024 + 3072);
  CHECK(s.counters.num_host_alloc == 2 && s.counters.cache_misses == 2);
  /* The only blocks, both small: chunks of one 64 KiB slab, whose rest is the backend's unused room. */
  CHECK(s.counters.backend_unused_bytes == 65536 - 1024 - 3072);
  CHECK_OK(xpu_host_free(a.ctx));
  CHECK_OK(xpu_host_free(b.ctx));
  CHECK_OK(xpu_host_get_stats(&s));
  CHECK(s.counters.active_requests.current == 0 && s.counters.active_requests.peak == 2 && s.counters.active_requests.freed == 2);
  CHECK(s.counters.cached_bytes.current == 1024 + 3072);
  CHECK_OK(xpu_host_empty_cache());
  CHECK_OK(xpu_host_get_stats(&s));
  CHECK(s.counters.allocations.current == 0 && s.counters.allocated_bytes.current == 0 && s.counters.num_host_free == 2);
  CHECK(s.counters.backend_unused_bytes == 0);

  char line[1024];
  size_t needed = 0;
  CHECK_OK(xpu_host_stats_string(line, sizeof line, &needed));
  CHECK(needed > 1 && needed <= sizeof line && strstr(line, "active_requests: 0/2/2/2") != NULL);
  char tiny[4];
  CHECK_OK(xpu_host_stats_string(tiny, sizeof tiny, &needed));
  CHECK(strlen(tiny) == 3 && needed > sizeof tiny);
  printf("stats: %s\n", line);
}

int main(void) {
  CHECK_OK(xpu_host_init());
  char description[512];
  CHECK_OK(xpu_host_describe(description, sizeof description, NULL));
  printf("backend: %s\n", description);
  CHECK(strstr(description, "software") != NULL);

  ze_driver_handle_t driver = NULL;
  ze_context_handle_t context = NULL;
  CHECK_OK(xpu_host_get_context(&driver, &context));
  CHECK(getCachingHostAllocator() != NULL);

  test_allocate_and_reuse(context);
  test_stream_ordering();
  test_record_stream_targets();
  test_errors();
  test_settings_after_start(driver, context);
  test_stats();

  return report();
}
