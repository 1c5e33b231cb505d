/* The library's main job in one page: pinned memory handed to a stream is not
 * reused until the stream is done with it, and is reused as soon as it is.
 * Run it with scripts/demo, which picks the GPU driver or the software one. */
#define _POSIX_C_SOURCE 199309L
#include "xpu_caching_host_allocator.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define MiB (1024u * 1024u)

static int fail(const char *what) {
  fprintf(stderr, "demo: %s failed: %s\n", what, xpu_host_last_error_message());
  return 1;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

typedef struct {
  void *data;
  size_t size;
} fill_args;

/* Device work on the stream: fill the block with 0x5a. */
static ze_result_t fill(void *user_data, ze_command_list_handle_t list) {
  fill_args *args = user_data;
  unsigned char pattern = 0x5a;
  return zeCommandListAppendMemoryFill(list, args->data, &pattern, 1, args->size, NULL, 0, NULL);
}

static void print_stats(const char *when) {
  xpu_host_stats s = {sizeof(xpu_host_stats)};
  if (xpu_host_get_stats(&s) != XPU_HOST_SUCCESS) return;
  printf("  %-28s pinned %5.1f MiB in %lld block(s), in use %lld, waiting on streams %lld, cached %5.1f MiB\n",
         when, s.counters.allocated_bytes.current / (double)MiB, (long long)s.counters.allocations.current,
         (long long)s.counters.active_requests.current, (long long)s.counters.pending_blocks.current,
         s.counters.cached_bytes.current / (double)MiB);
}

int main(void) {
  if (xpu_host_init() != XPU_HOST_SUCCESS) return fail("starting the allocator");
  char description[512];
  if (xpu_host_describe(description, sizeof description, NULL) != XPU_HOST_SUCCESS) return fail("describe");
  printf("Level Zero: %s\n\n", description);

  const xpu_host_stream stream = {12 /* XPU */, 0, 0};
  const size_t size = 3 * MiB; /* a block of 3 MiB: exact fit (PyTorch would round it to 4 MiB) */

  void *first, *first_ctx;
  if (xpu_host_allocate(size, &first, &first_ctx) != XPU_HOST_SUCCESS) return fail("allocate");
  printf("1. allocated %zu bytes of pinned memory at %p\n", size, first);

  fill_args args = {first, size};
  if (xpu_host_stream_submit(stream, fill, &args) != XPU_HOST_SUCCESS) return fail("submitting a fill");
  bool recorded = false;
  if (xpu_host_record_stream(first, first_ctx, stream, &recorded) != XPU_HOST_SUCCESS || !recorded)
    return fail("record_stream");
  if (xpu_host_free(first_ctx) != XPU_HOST_SUCCESS) return fail("free");
  double freed_at = now_ms();
  printf("2. queued a device fill of it on stream %lld, recorded the stream, freed it\n", (long long)stream.id);
  print_stats("while the fill runs:");

  void *second, *second_ctx;
  if (xpu_host_allocate(size, &second, &second_ctx) != XPU_HOST_SUCCESS) return fail("allocate");
  printf("3. allocated the same size again: %p, %s\n", second,
         second == first ? "THE BLOCK THE DEVICE MAY STILL WRITE (bug!)" : "a different block, since the stream may still use the first");
  if (xpu_host_free(second_ctx) != XPU_HOST_SUCCESS) return fail("free");

  void *third = NULL, *third_ctx = NULL;
  for (int attempt = 0; attempt < 10000 && third != first; ++attempt) {
    if (third_ctx && xpu_host_free(third_ctx) != XPU_HOST_SUCCESS) return fail("free");
    if (xpu_host_allocate(size, &third, &third_ctx) != XPU_HOST_SUCCESS) return fail("allocate");
    if (third != first) {
      struct timespec ms = {0, 1000000};
      nanosleep(&ms, NULL);
    }
  }
  if (third != first) {
    fprintf(stderr, "demo: the first block never came back\n");
    return 1;
  }
  const unsigned char *bytes = third;
  printf("4. once the stream finished (%.1f ms after the free), the first block came back: %p, "
         "holding the device's 0x%02x bytes\n", now_ms() - freed_at, third, bytes[size - 1]);
  if (xpu_host_free(third_ctx) != XPU_HOST_SUCCESS) return fail("free");
  print_stats("after the frees:");

  if (xpu_host_empty_cache() != XPU_HOST_SUCCESS) return fail("empty_cache");
  printf("5. emptied the cache\n");
  print_stats("after empty_cache:");

  char line[1024];
  if (xpu_host_stats_string(line, sizeof line, NULL) != XPU_HOST_SUCCESS) return fail("stats");
  printf("\nstatistics: %s\n", line);
  return 0;
}
