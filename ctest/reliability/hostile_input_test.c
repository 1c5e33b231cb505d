/* Hostile input on every C entry point: null and foreign pointers and contexts,
 * double free, free after empty_cache, sizes 0, 1, SIZE_MAX, SIZE_MAX/2+1,
 * unknown device indices and stream ids, bad buffers, settings after start,
 * and threads racing frees of one block against empty_cache. Each call must give
 * its defined answer (an error code, false, or success that changes nothing);
 * afterwards the statistics add up, blocks are reused correctly, and the
 * driver holds no memory of ours after empty_cache. Run plain, with the
 * loader's layers, under valgrind and with ASan/UBSan (CMakeLists.txt). */
#define _DEFAULT_SOURCE
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ze_software_driver.h>

#define CHECK_CODE(call, code) CHECK((call) == (code))
#define LAST_ERROR_MENTIONS(text) CHECK(strstr(xpu_host_last_error_message(), (text)) != NULL)

static long inputs = 0;              /* hostile calls made, for the report */
static long refused_allocations = 0; /* counted as cache misses, though nothing was allocated */
#define HOSTILE(call) (++inputs, (call))

static const xpu_host_stream stream0 = {12, 0, 0};

static void sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
  nanosleep(&ts, NULL);
}

static xpu_host_counters stats(void) {
  xpu_host_stats s = {sizeof(xpu_host_stats)};
  CHECK_OK(xpu_host_get_stats(&s));
  return s.counters;
}

static zex_software_driver_live_objects_t live_objects(void) {
  zex_software_driver_live_objects_t live = {0};
  ze_driver_handle_t driver;
  ze_context_handle_t context;
  zex_pfnSoftwareDriverGetLiveObjects_t get = NULL;
  CHECK_OK(xpu_host_get_context(&driver, &context));
  CHECK(zeDriverGetExtensionFunctionAddress(driver, ZEX_SOFTWARE_DRIVER_GET_LIVE_OBJECTS_NAME, (void **)&get) ==
        ZE_RESULT_SUCCESS);
  if (get != NULL) CHECK(get(&live) == ZE_RESULT_SUCCESS);
  return live;
}

/* Empties the cache until nothing waits for a stream and nothing is cached. */
static xpu_host_counters drain(void) {
  xpu_host_counters s = stats();
  for (int i = 0; i < 10000; ++i) {
    CHECK_OK(xpu_host_empty_cache());
    s = stats();
    if (s.pending_blocks.current == 0 && s.cached_bytes.current == 0) break;
    sleep_us(1000);
  }
  return s;
}

static bool dummy_record(void *u, xpu_host_stream s, ze_event_handle_t *e, void **t) {
  (void)u, (void)s, (void)e, (void)t;
  return false;
}
static void dummy_release(void *u, ze_event_handle_t e, void *t) { (void)u, (void)e, (void)t; }

/* Before the allocator starts: settings that must be refused change nothing. */
static void before_start(void) {
  CHECK_CODE(HOSTILE(xpu_host_configure(NULL)), XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK_CODE(HOSTILE(xpu_host_configure("pinned_bogus:1")), XPU_HOST_ERROR_INVALID_CONFIGURATION);
  LAST_ERROR_MENTIONS("pinned_bogus");
  CHECK_CODE(HOSTILE(xpu_host_configure("pinned_roundup_divisions:3")), XPU_HOST_ERROR_INVALID_CONFIGURATION);
  CHECK_CODE(HOSTILE(xpu_host_configure("pinned_max_cached_size_mb:-1")), XPU_HOST_ERROR_INVALID_CONFIGURATION);
  CHECK_CODE(HOSTILE(xpu_host_configure("pinned_max_cached_size_mb:99999999999999999999999")),
             XPU_HOST_ERROR_INVALID_CONFIGURATION);
  CHECK_CODE(HOSTILE(xpu_host_configure("pinned_use_background_threads")), XPU_HOST_ERROR_INVALID_CONFIGURATION);
  CHECK_CODE(HOSTILE(xpu_host_configure("\xff\xfe:1")), XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK_CODE(HOSTILE(xpu_host_set_stream_hooks(NULL)), XPU_HOST_ERROR_INVALID_ARGUMENT);
  xpu_host_stream_hooks half = {sizeof(xpu_host_stream_hooks), NULL, dummy_record, NULL};
  CHECK_CODE(HOSTILE(xpu_host_set_stream_hooks(&half)), XPU_HOST_ERROR_INVALID_ARGUMENT);
  int local = 0;
  CHECK(HOSTILE(xpu_host_use_context(NULL, NULL)) != XPU_HOST_SUCCESS);
  CHECK(HOSTILE(xpu_host_use_context((ze_driver_handle_t)&local, (ze_context_handle_t)&local)) != XPU_HOST_SUCCESS);
  /* Reading before the start touches nothing. */
  xpu_host_counters s = stats();
  CHECK(s.allocations.current == 0 && s.num_host_alloc == 0);
  size_t count = 99;
  CHECK_OK(xpu_host_get_size_class_stats(NULL, 0, &count));
  CHECK(count == 0);
  CHECK_OK(HOSTILE(xpu_host_empty_cache()));
  CHECK_OK(HOSTILE(xpu_host_free(NULL)));
  xpu_host_reset_peak_stats();
  xpu_host_reset_accumulated_stats();
}

static void sizes(void) {
  void *data = (void *)1, *ctx = (void *)1;
  CHECK_OK(HOSTILE(xpu_host_allocate(0, &data, &ctx)));
  CHECK(data == NULL && ctx == NULL);
  CHECK_OK(HOSTILE(xpu_host_allocate(1, &data, &ctx)));
  CHECK(data != NULL && ctx != NULL && (uintptr_t)data % 512 == 0);
  if (data != NULL) *(volatile char *)data = 1;
  CHECK_OK(xpu_host_free(ctx));

  /* Sizes over any block (exact fit, the default: beyond PTRDIFF_MAX once
   * aligned to 512 bytes): refused before anything is asked of the driver. */
  const size_t too_large[] = {SIZE_MAX, SIZE_MAX / 2 + 2, SIZE_MAX - 511, SIZE_MAX / 2 + 1, SIZE_MAX / 2};
  for (size_t i = 0; i < sizeof too_large / sizeof *too_large; ++i) {
    data = (void *)1, ctx = (void *)1;
    CHECK_CODE(HOSTILE(xpu_host_allocate(too_large[i], &data, &ctx)), XPU_HOST_ERROR_SIZE_TOO_LARGE);
    LAST_ERROR_MENTIONS("too large");
    CHECK(data == (void *)1 && ctx == (void *)1); /* untouched on failure */
  }
  /* Sizes a block may have but that no driver gives: out of memory after
   * emptying the cache and retrying, nothing held. */
  const size_t refused[] = {SIZE_MAX / 2 - 511, (size_t)1 << 62, (size_t)1 << 48};
  for (size_t i = 0; i < sizeof refused / sizeof *refused; ++i) {
    CHECK_CODE(HOSTILE(xpu_host_allocate(refused[i], &data, &ctx)), XPU_HOST_ERROR_OUT_OF_MEMORY);
    LAST_ERROR_MENTIONS("out of pinned host memory");
    ++refused_allocations;
  }
  CHECK_CODE(HOSTILE(xpu_host_allocate(64, NULL, &ctx)), XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK_CODE(HOSTILE(xpu_host_allocate(64, &data, NULL)), XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK_CODE(HOSTILE(xpu_host_allocate(SIZE_MAX, NULL, NULL)), XPU_HOST_ERROR_INVALID_ARGUMENT);
  xpu_host_counters s = stats();
  CHECK(s.active_requests.current == 0 && s.allocations.current <= 1); /* the 1-byte block, unless an OOM emptied the cache */
}

static void foreign_and_stale_contexts(void) {
  void *data, *ctx;
  CHECK_OK(xpu_host_allocate(4096, &data, &ctx));
  int local = 0;
  void *heap = malloc(64);
  void *foreign[] = {&local, heap, data, (char *)data + 8, (char *)ctx + 1, (char *)ctx - 1, (char *)ctx + 3,
                     (void *)1, (void *)(uintptr_t)-1, (void *)(uintptr_t)-512, (void *)(uintptr_t)0x1000};
  for (size_t i = 0; i < sizeof foreign / sizeof *foreign; ++i) {
    CHECK_CODE(HOSTILE(xpu_host_free(foreign[i])), XPU_HOST_ERROR_UNKNOWN_BLOCK);
    bool recorded = true;
    CHECK_OK(HOSTILE(xpu_host_record_stream(foreign[i], foreign[i], stream0, &recorded)));
    CHECK(!recorded || foreign[i] == data); /* data as its own base address is ours */
    CHECK(HOSTILE(CachingHostAllocator_recordEvent(foreign[i], foreign[i], stream0)) == (foreign[i] == data));
  }
  free(heap);
  /* The block was untouched by all of that. */
  CHECK(stats().active_requests.current == 1);
  bool recorded = false;
  CHECK_CODE(HOSTILE(xpu_host_record_stream(data, ctx, stream0, NULL)), XPU_HOST_ERROR_INVALID_ARGUMENT);

  /* Double free; free, record and recordEvent of a stale context. */
  CHECK_OK(xpu_host_free(ctx));
  CHECK_CODE(HOSTILE(xpu_host_free(ctx)), XPU_HOST_ERROR_NOT_ALLOCATED);
  LAST_ERROR_MENTIONS("freed twice");
  CHECK_OK(HOSTILE(xpu_host_record_stream(data, ctx, stream0, &recorded)));
  CHECK(!recorded);
  CHECK(!HOSTILE(CachingHostAllocator_recordEvent(data, ctx, stream0)));
  /* After empty_cache the memory went back to the driver: still a defined answer. */
  CHECK_OK(xpu_host_empty_cache());
  CachingHostAllocator_emptyCache();
  CHECK_CODE(HOSTILE(xpu_host_free(ctx)), XPU_HOST_ERROR_NOT_ALLOCATED);
  CHECK_OK(HOSTILE(xpu_host_record_stream(data, ctx, stream0, &recorded)));
  CHECK(!recorded);
  CHECK(!HOSTILE(CachingHostAllocator_recordEvent(data, NULL, stream0)));
  CHECK(stats().active_requests.current == 0);
}

static ze_result_t do_nothing(void *user_data, ze_command_list_handle_t list) {
  (void)list;
  return (ze_result_t)(uintptr_t)user_data;
}

static void streams(void) {
  void *data, *ctx;
  CHECK_OK(xpu_host_allocate(2048, &data, &ctx));
  bool recorded = true;
  const int8_t bad_devices[] = {1, 42, 127, -1, -128};
  for (size_t i = 0; i < sizeof bad_devices / sizeof *bad_devices; ++i) {
    xpu_host_stream bad = {12, bad_devices[i], 0};
    CHECK_CODE(HOSTILE(xpu_host_record_stream(data, ctx, bad, &recorded)), XPU_HOST_ERROR_LEVEL_ZERO);
    LAST_ERROR_MENTIONS("no device with index");
    CHECK(!HOSTILE(CachingHostAllocator_recordEvent(data, ctx, bad)));
    CHECK_CODE(HOSTILE(xpu_host_stream_submit(bad, do_nothing, NULL)), XPU_HOST_ERROR_LEVEL_ZERO);
  }
  /* Stream ids and device types are opaque keys: any value is a stream. */
  const xpu_host_stream odd[] = {{12, 0, INT64_MIN}, {12, 0, INT64_MAX}, {12, 0, -1}, {0, 0, 5}, {-1, 0, 6}, {99, 0, 7}};
  for (size_t i = 0; i < sizeof odd / sizeof *odd; ++i) {
    CHECK_OK(HOSTILE(xpu_host_record_stream(data, ctx, odd[i], &recorded)));
    CHECK(recorded);
  }
  CHECK_OK(xpu_host_free(ctx)); /* records an event on each of those streams */
  CHECK_CODE(HOSTILE(xpu_host_stream_submit(stream0, NULL, NULL)), XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK_CODE(HOSTILE(xpu_host_stream_submit(stream0, do_nothing, (void *)(uintptr_t)ZE_RESULT_ERROR_UNKNOWN)),
             XPU_HOST_ERROR_LEVEL_ZERO);
  LAST_ERROR_MENTIONS("submit callback returned");
  CHECK_OK(HOSTILE(xpu_host_stream_submit(stream0, do_nothing, NULL)));
  CHECK(drain().pending_blocks.current == 0);
}

static void buffers_and_settings(void) {
  char buffer[8];
  size_t needed = 0;
  CHECK_CODE(HOSTILE(xpu_host_describe(NULL, 10, &needed)), XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK_OK(HOSTILE(xpu_host_describe(NULL, 0, NULL)));
  CHECK_OK(HOSTILE(xpu_host_describe(NULL, 0, &needed)));
  CHECK(needed > 1);
  memset(buffer, 'x', sizeof buffer);
  CHECK_OK(HOSTILE(xpu_host_describe(buffer, 1, NULL)));
  CHECK(buffer[0] == '\0' && buffer[1] == 'x');
  CHECK_OK(HOSTILE(xpu_host_stats_string(buffer, sizeof buffer, &needed)));
  CHECK(strlen(buffer) == sizeof buffer - 1 && needed > sizeof buffer);
  CHECK_CODE(HOSTILE(xpu_host_stats_string(NULL, 1, NULL)), XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK_CODE(HOSTILE(xpu_host_get_stats(NULL)), XPU_HOST_ERROR_INVALID_ARGUMENT);
  size_t count = 0;
  xpu_host_size_class_stats one = {0};
  CHECK_CODE(HOSTILE(xpu_host_get_size_class_stats(&one, 1, &count)), XPU_HOST_ERROR_INVALID_ARGUMENT);
  one.size = sizeof one;
  CHECK_CODE(HOSTILE(xpu_host_get_size_class_stats(NULL, 4, &count)), XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK_CODE(HOSTILE(xpu_host_get_size_class_stats(&one, 1, NULL)), XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK_OK(HOSTILE(xpu_host_get_size_class_stats(&one, 1, &count)));
  xpu_host_stats unsized = {0};
  CHECK_CODE(HOSTILE(xpu_host_get_stats(&unsized)), XPU_HOST_ERROR_INVALID_ARGUMENT);
  ze_driver_handle_t driver = NULL;
  ze_context_handle_t context = NULL;
  CHECK_CODE(HOSTILE(xpu_host_get_context(NULL, &context)), XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK_CODE(HOSTILE(xpu_host_get_context(&driver, NULL)), XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK_OK(xpu_host_get_context(&driver, &context));
  /* Settings once started. */
  CHECK_CODE(HOSTILE(xpu_host_configure("pinned_roundup_divisions:2")), XPU_HOST_ERROR_ALREADY_INITIALIZED);
  CHECK_CODE(HOSTILE(xpu_host_use_context(driver, context)), XPU_HOST_ERROR_ALREADY_INITIALIZED);
  xpu_host_stream_hooks hooks = {sizeof(xpu_host_stream_hooks), NULL, dummy_record, dummy_release};
  CHECK_CODE(HOSTILE(xpu_host_set_stream_hooks(&hooks)), XPU_HOST_ERROR_ALREADY_INITIALIZED);
  CHECK_OK(HOSTILE(xpu_host_init()));
  CHECK(xpu_host_last_error_message() != NULL);
}

/* Threads race: two frees of one block (held pending on a gated stream so that
 * nobody can get it again in between) give exactly one success, while other
 * threads churn and empty the cache. */
typedef struct {
  void *ctx;
  atomic_int go;
  xpu_host_result result[2];
} race;

static race races[200];
static atomic_int stop_churn;
static atomic_long churned;

static void *racer(void *arg) {
  int side = (int)(intptr_t)arg;
  for (int i = 0; i < 200; ++i) {
    while (!atomic_load(&races[i].go)) {
    }
    races[i].result[side] = xpu_host_free(races[i].ctx);
  }
  return NULL;
}

static void *churn(void *arg) {
  int emptier = (int)(intptr_t)arg;
  unsigned seed = 12345u + (unsigned)emptier;
  while (!atomic_load(&stop_churn)) {
    if (emptier) {
      CHECK_OK(xpu_host_empty_cache());
      atomic_fetch_add(&churned, 1);
      continue;
    }
    void *data, *ctx;
    size_t size = 1 + (size_t)(rand_r(&seed) % 100000);
    if (xpu_host_allocate(size, &data, &ctx) != XPU_HOST_SUCCESS) {
      CHECK(false);
      continue;
    }
    memset(data, 0x77, size);
    for (size_t i = 0; i < size; i += 997) CHECK(((unsigned char *)data)[i] == 0x77);
    CHECK_OK(xpu_host_free(ctx));
    /* A second free of ctx here could free the block another thread got since
     * (a context names a block, whoever holds it): the racers test double
     * frees on blocks nobody can get again. Foreign pointers are safe. */
    CHECK_CODE(xpu_host_free(data), XPU_HOST_ERROR_UNKNOWN_BLOCK);
    atomic_fetch_add(&churned, 1);
  }
  return NULL;
}

static void concurrency(void) {
  gate g = gate_create();
  xpu_host_stream held = {12, 0, 77};
  gate_hold(g, held);
  for (int i = 0; i < 200; ++i) {
    void *data;
    CHECK_OK(xpu_host_allocate(512 + (size_t)i, &data, &races[i].ctx));
    bool recorded = false;
    CHECK_OK(xpu_host_record_stream(data, races[i].ctx, held, &recorded));
    CHECK(recorded);
  }
  pthread_t threads[5];
  for (int side = 0; side < 2; ++side) pthread_create(&threads[side], NULL, racer, (void *)(intptr_t)side);
  for (int t = 2; t < 5; ++t) pthread_create(&threads[t], NULL, churn, (void *)(intptr_t)(t == 4));
  for (int i = 0; i < 200; ++i) {
    atomic_store(&races[i].go, 1);
    sleep_us(200);
  }
  for (int side = 0; side < 2; ++side) pthread_join(threads[side], NULL);
  atomic_store(&stop_churn, 1);
  for (int t = 2; t < 5; ++t) pthread_join(threads[t], NULL);
  int exactly_one = 0;
  for (int i = 0; i < 200; ++i) {
    xpu_host_result a = races[i].result[0], b = races[i].result[1];
    exactly_one += (a == XPU_HOST_SUCCESS && b == XPU_HOST_ERROR_NOT_ALLOCATED) ||
                   (b == XPU_HOST_SUCCESS && a == XPU_HOST_ERROR_NOT_ALLOCATED);
  }
  CHECK(exactly_one == 200);
  inputs += 400 + atomic_load(&churned); /* racing frees, foreign frees, concurrent empty_cache */
  CHECK(stats().pending_blocks.current == 200);
  gate_open(g);
  CHECK(drain().pending_blocks.current == 0);
  /* The gate stays: the stream's list may still hold the wait until it ran. */
}

/* After everything: the counters add up, reuse is right, nothing is left. */
static void still_sound(void) {
  xpu_host_counters s = drain();
  CHECK(s.active_requests.current == 0 && s.active_bytes.current == 0 && s.requested_bytes.current == 0);
  CHECK(s.pending_blocks.current == 0 && s.cached_bytes.current == 0);
  CHECK(s.allocations.current == 0 && s.allocated_bytes.current == 0);
  CHECK(s.cache_hits + s.cache_misses == s.active_requests.allocated + refused_allocations);

  enum { N = 32 };
  void *data[N], *ctx[N];
  for (int i = 0; i < N; ++i) {
    CHECK_OK(xpu_host_allocate(1000 * (size_t)(i + 1), &data[i], &ctx[i]));
    memset(data[i], i, 1000 * (size_t)(i + 1));
  }
  for (int i = 0; i < N; ++i) {
    for (size_t j = 0; j < 1000 * (size_t)(i + 1); j += 101) CHECK(((unsigned char *)data[i])[j] == i);
    for (int k = 0; k < i; ++k) CHECK(data[k] != data[i] && ctx[k] != ctx[i]);
  }
  for (int i = 0; i < N; ++i) CHECK_OK(xpu_host_free(ctx[i]));
  void *again, *again_ctx;
  CHECK_OK(xpu_host_allocate(32000, &again, &again_ctx));
  CHECK(again == data[N - 1] && again_ctx == ctx[N - 1]); /* LIFO reuse of its class */
  CHECK_OK(xpu_host_free(again_ctx));
  s = drain();
  CHECK(s.allocations.current == 0);
  zex_software_driver_live_objects_t live = live_objects();
  CHECK(live.allocations == 0 && live.allocated_bytes == 0);
  printf("reliability: hostile input: %ld hostile calls, every answer as defined; driver after empty_cache: %llu allocations\n",
         inputs, (unsigned long long)live.allocations);
}

int main(void) {
  before_start();
  CHECK_OK(xpu_host_init());
  sizes();
  foreign_and_stale_contexts();
  streams();
  buffers_and_settings();
  concurrency();
  still_sound();
  return report();
}
