/* The C ABI's promises to programs built against another version of the
 * header (README: "Conventions and ABI stability"): the version, and structs
 * that carry their size. An older program's struct lacks the newest field: the
 * library writes its fields and not one byte past them. A newer program's
 * struct has a field the library does not know: the library fills its own and
 * says where they end. */
#include "check.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CANARY 0xAB

/* Whether bytes [from, to) of `bytes` all still hold the canary. */
static int untouched(const unsigned char *bytes, size_t from, size_t to) {
  for (size_t i = from; i < to; i++) {
    if (bytes[i] != CANARY) return 0;
  }
  return 1;
}

static void test_version(void) {
  uint32_t version = xpu_host_version();
  CHECK(version == XPU_HOST_VERSION);
  CHECK(version >> 16 == XPU_HOST_VERSION_MAJOR);
  CHECK(((version >> 8) & 0xff) == XPU_HOST_VERSION_MINOR);
  CHECK((version & 0xff) == XPU_HOST_VERSION_PATCH);
}

static void test_stats(void) {
  xpu_host_stats full = {sizeof(xpu_host_stats)};
  CHECK_OK(xpu_host_get_stats(&full));
  CHECK(full.size == sizeof(xpu_host_stats));
  CHECK(full.counters.active_requests.current == 1);

  /* An older program: its xpu_host_stats ends before cache_misses. */
  const size_t older = offsetof(xpu_host_stats, counters.cache_misses);
  union {
    xpu_host_stats stats;
    unsigned char bytes[sizeof(xpu_host_stats) + 64];
  } buffer;
  memset(&buffer, CANARY, sizeof buffer);
  buffer.stats.size = older;
  CHECK_OK(xpu_host_get_stats(&buffer.stats));
  CHECK(buffer.stats.size == older);
  CHECK(buffer.stats.counters.active_requests.current == 1 && buffer.stats.counters.cache_hits == full.counters.cache_hits);
  CHECK(untouched(buffer.bytes, older, sizeof buffer.bytes));

  /* A newer program: 64 bytes of fields this library does not know. */
  memset(&buffer, CANARY, sizeof buffer);
  buffer.stats.size = sizeof buffer.bytes;
  CHECK_OK(xpu_host_get_stats(&buffer.stats));
  CHECK(buffer.stats.size == sizeof(xpu_host_stats));
  CHECK(buffer.stats.counters.cache_misses == full.counters.cache_misses);
  CHECK(untouched(buffer.bytes, sizeof(xpu_host_stats), sizeof buffer.bytes));

  /* A program that forgot to set it. */
  memset(&buffer, 0, sizeof buffer);
  CHECK(xpu_host_get_stats(&buffer.stats) == XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(xpu_host_last_error_message(), "xpu_host_stats.size") != NULL);
}

/* An array of an older program's xpu_host_size_class_stats, one field
 * shorter: the stride is the older size, and every element keeps its tail. */
static void test_size_class_stats(void) {
  const size_t older = offsetof(xpu_host_size_class_stats, cached);
  unsigned char bytes[4 * sizeof(xpu_host_size_class_stats)];
  memset(bytes, CANARY, sizeof bytes);
  size_t first_size = older;
  memcpy(bytes, &first_size, sizeof first_size);
  size_t count = 0;
  CHECK_OK(xpu_host_get_size_class_stats((xpu_host_size_class_stats *)bytes, 3, &count));
  CHECK(count == 1);
  xpu_host_size_class_stats element;
  memcpy(&element, bytes, older);
  CHECK(element.size == older && element.block_size == 4096 && element.allocations.current == 1);
  /* Each element filled up to the older size; nothing of the element after
   * the last class, nor beyond the three asked for. */
  CHECK(untouched(bytes, older, sizeof bytes));
}

static bool dummy_record(void *user_data, xpu_host_stream stream, ze_event_handle_t *event, void **token) {
  (void)user_data, (void)stream, (void)event, (void)token;
  return false;
}

/* Hooks from a program whose struct ends before `release`: the missing hook
 * reads as null, so the call is refused rather than reading past the end. */
static void test_hooks(void) {
  xpu_host_stream_hooks hooks = {offsetof(xpu_host_stream_hooks, release), NULL, dummy_record, NULL};
  memset(&hooks.release, CANARY, sizeof hooks.release);
  CHECK(xpu_host_set_stream_hooks(&hooks) == XPU_HOST_ERROR_INVALID_ARGUMENT);
  hooks.size = 0;
  CHECK(xpu_host_set_stream_hooks(&hooks) == XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(xpu_host_last_error_message(), "xpu_host_stream_hooks.size") != NULL);
}

int main(void) {
  test_version();
  test_hooks();
  void *data = NULL, *context = NULL;
  CHECK_OK(xpu_host_allocate(4096, &data, &context));
  test_stats();
  test_size_class_stats();
  CHECK_OK(xpu_host_free(context));
  printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
