/* Graph-capture pools and memory history through the C API, on the software
 * Level Zero driver behind the real loader. The test plays the host runtime:
 * its capture hooks report a current stream per thread and which streams are
 * being captured, and a gate holds a stream's work back, as a GPU still
 * running a graph would. */
#include "check.h"

#include <stdint.h>
#include <string.h>

static const xpu_host_stream stream1 = {12, 0, 1};
static const xpu_host_stream stream2 = {12, 0, 2};
static const xpu_host_pool_id pool = {1, 7};

/* The host runtime: the current stream and the one stream being captured. */
static _Thread_local xpu_host_stream current = {12, 0, 1};
static xpu_host_stream capturing = {0, 0, 0};

static bool same_stream(xpu_host_stream a, xpu_host_stream b) {
  return a.device_type == b.device_type && a.device_index == b.device_index && a.id == b.id;
}

static bool current_stream(void *user_data, xpu_host_stream *stream) {
  (void)user_data;
  *stream = current;
  return true;
}

static bool is_capturing(void *user_data, xpu_host_stream stream) {
  (void)user_data;
  return same_stream(stream, capturing);
}

/* A filter that accepts one stream; its user data counts its drops. */
typedef struct {
  xpu_host_stream accepted;
  int drops;
} filter_data;

static bool accept_one(void *user_data, xpu_host_stream stream) {
  return same_stream(stream, ((filter_data *)user_data)->accepted);
}

static void count_drop(void *user_data) { ((filter_data *)user_data)->drops++; }

static xpu_host_counters counters(void) {
  xpu_host_stats stats = {sizeof(xpu_host_stats), {0}};
  CHECK_OK(xpu_host_get_stats(&stats));
  return stats.counters;
}

typedef struct {
  void *data;
  void *context;
} block;

static block take(size_t size) {
  block b = {NULL, NULL};
  CHECK_OK(xpu_host_allocate(size, &b.data, &b.context));
  return b;
}

static void test_before_hooks(void) {
  filter_data data = {stream1, 0};
  CHECK(xpu_host_begin_allocate_to_pool(pool, accept_one, &data, count_drop) == XPU_HOST_ERROR_NO_CAPTURE_HOOKS);
  CHECK(data.drops == 0); /* refused: the user data stays the caller's */
  CHECK(xpu_host_set_capture_hooks(NULL) == XPU_HOST_ERROR_INVALID_ARGUMENT);
  xpu_host_capture_hooks half = {sizeof half, NULL, current_stream, NULL};
  CHECK(xpu_host_set_capture_hooks(&half) == XPU_HOST_ERROR_INVALID_ARGUMENT);
  xpu_host_capture_hooks hooks = {sizeof hooks, NULL, current_stream, is_capturing};
  CHECK_OK(xpu_host_set_capture_hooks(&hooks));
}

static void test_routing_and_reuse(void) {
  block before = take(4096);
  CHECK_OK(xpu_host_free(before.context));

  filter_data data = {stream1, 0};
  capturing = stream1;
  current = stream1;
  CHECK_OK(xpu_host_begin_allocate_to_pool(pool, accept_one, &data, count_drop));
  block captured = take(4096);
  CHECK(captured.data != before.data); /* the default pool's cached block is not the pool's */
  CHECK_OK(xpu_host_free(captured.context));
  block again = take(4096);
  CHECK(again.data == captured.data); /* never used: reused within the pool */

  current = stream2;
  block other = take(4096);
  CHECK(other.data == before.data); /* a stream the filter refuses: the default pool */
  CHECK_OK(xpu_host_free(other.context));
  current = stream1;

  CHECK_OK(xpu_host_free(again.context));
  capturing = (xpu_host_stream){0, 0, 0};
  CHECK_OK(xpu_host_end_allocate_to_pool(pool));
  CHECK(data.drops == 1);
  block after = take(4096);
  CHECK(after.data == before.data); /* outside the capture: the default pool again */
  CHECK_OK(xpu_host_free(after.context));

  int64_t freed = counters().num_host_free;
  CHECK_OK(xpu_host_release_pool(pool));
  CHECK(counters().num_host_free == freed + 1); /* the pool's free block went back */
}

static void test_no_events_in_capture(void) {
  gate g = gate_create();
  gate_hold(g, stream1);
  capturing = stream1;
  current = stream1;
  filter_data every = {stream1, 0}; /* no filter: every stream; its user data still dropped at the end */
  CHECK_OK(xpu_host_begin_allocate_to_pool(pool, NULL, &every, count_drop));
  block b = take(8192);
  memset(b.data, 0x5a, 8192);
  bool recorded = false;
  CHECK_OK(xpu_host_record_stream(b.data, b.context, stream1, &recorded));
  CHECK(recorded);
  CHECK_OK(xpu_host_free(b.context));
  CHECK(counters().captured_blocks == 1);
  CHECK(counters().pending_blocks.current == 0); /* no event was recorded for it */
  block next = take(8192);
  CHECK(next.data != b.data); /* kept until the pool's release */
  CHECK_OK(xpu_host_free(next.context));
  capturing = (xpu_host_stream){0, 0, 0};
  CHECK(every.drops == 0);
  CHECK_OK(xpu_host_end_allocate_to_pool(pool));
  CHECK(every.drops == 1);
  CHECK_OK(xpu_host_release_pool(pool));
  CHECK(counters().captured_blocks == 0);
  CHECK(counters().pending_blocks.current == 1); /* an event recorded now, behind the held work */
  block held = take(8192);
  CHECK(held.data != b.data);
  gate_open(g);
  CHECK_OK(xpu_host_free(held.context));
  /* Once the stream is done, the block is the default pool's again. */
  bool back = false;
  for (int i = 0; i < 10000 && !back; ++i) {
    CHECK_OK(xpu_host_empty_cache());
    back = counters().pending_blocks.current == 0;
  }
  CHECK(back);
  gate_destroy(g);
}

static void test_bad_pool_calls(void) {
  xpu_host_counters before = counters();
  filter_data data = {stream1, 0};
  xpu_host_pool_id default_pool = {0, 0};
  CHECK(xpu_host_begin_allocate_to_pool(default_pool, accept_one, &data, count_drop) == XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK(xpu_host_end_allocate_to_pool(pool) == XPU_HOST_ERROR_UNKNOWN_POOL);
  CHECK(strstr(xpu_host_last_error_message(), "no capture is recording") != NULL);
  CHECK(xpu_host_release_pool(pool) == XPU_HOST_ERROR_UNKNOWN_POOL);
  CHECK_OK(xpu_host_begin_allocate_to_pool(pool, accept_one, &data, count_drop));
  CHECK(xpu_host_begin_allocate_to_pool(pool, accept_one, &data, count_drop) == XPU_HOST_ERROR_POOL_BUSY);
  xpu_host_capture_hooks hooks = {sizeof hooks, NULL, current_stream, is_capturing};
  CHECK(xpu_host_set_capture_hooks(&hooks) == XPU_HOST_ERROR_POOL_BUSY);
  CHECK(data.drops == 0);
  CHECK_OK(xpu_host_end_allocate_to_pool(pool));
  CHECK(data.drops == 1);
  CHECK_OK(xpu_host_release_pool(pool));
  CHECK(xpu_host_release_pool(pool) == XPU_HOST_ERROR_UNKNOWN_POOL);
  CHECK(strstr(xpu_host_last_error_message(), "released already") != NULL);
  xpu_host_counters after = counters();
  CHECK(after.allocations.current == before.allocations.current);
  CHECK(after.num_host_alloc == before.num_host_alloc);
}

/* --- history ------------------------------------------------------------- */

static int gathered = 0;
static int released = 0;

static void *gather(void *user_data) {
  (void)user_data;
  return (void *)(uintptr_t)++gathered;
}

static void release(void *user_data, void *context) {
  (void)user_data;
  (void)context;
  ++released;
}

typedef struct {
  int count;
  xpu_host_trace_entry entries[64];
} traces;

static bool keep_trace(void *user_data, const xpu_host_trace_entry *entry) {
  traces *t = user_data;
  CHECK(entry->size == sizeof *entry);
  if (t->count < 64) t->entries[t->count++] = *entry;
  return true;
}

typedef struct {
  int count;
  int allocated;
  int with_context;
  uintptr_t external;
} segments;

static bool count_segment(void *user_data, const xpu_host_segment *segment) {
  segments *s = user_data;
  s->count++;
  s->allocated += segment->allocated;
  s->with_context += segment->context != NULL;
  if (segment->bytes == 77) s->external = segment->address;
  return true;
}

static void test_history(void) {
  CHECK(!xpu_host_history_enabled());
  xpu_host_history_recorder recorder = {sizeof recorder, NULL, gather, release};
  CHECK(xpu_host_record_history(true, 0, XPU_HOST_RECORD_CONTEXT_ALL, &recorder, false) == XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK(xpu_host_get_traces(NULL, NULL) == XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK(xpu_host_record_history(true, 8, 4, &recorder, false) == XPU_HOST_ERROR_INVALID_ARGUMENT);
  CHECK(!xpu_host_history_enabled());
  CHECK_OK(xpu_host_empty_cache());
  CHECK_OK(xpu_host_record_history(true, 8, XPU_HOST_RECORD_CONTEXT_ALL, &recorder, true));
  CHECK(xpu_host_history_enabled());

  block b = take(1000);
  CHECK_OK(xpu_host_free(b.context));
  CHECK_OK(xpu_host_empty_cache());
  traces t = {0};
  CHECK_OK(xpu_host_get_traces(keep_trace, &t));
  CHECK(t.count == 5);
  xpu_host_trace_action expected[] = {XPU_HOST_TRACE_SEGMENT_ALLOC, XPU_HOST_TRACE_ALLOC, XPU_HOST_TRACE_FREE_REQUESTED,
                                      XPU_HOST_TRACE_FREE_COMPLETED, XPU_HOST_TRACE_SEGMENT_FREE};
  for (int i = 0; i < 5 && i < t.count; ++i) {
    CHECK(t.entries[i].action == expected[i]);
    CHECK(t.entries[i].address == (uintptr_t)b.data);
    CHECK(t.entries[i].bytes == 1024);
    CHECK(t.entries[i].pool.first == 0 && t.entries[i].pool.second == 0);
    CHECK(t.entries[i].stream.device_type == -1);
    CHECK(t.entries[i].time_us > 0);
  }
  CHECK(t.count == 5 && t.entries[1].context != NULL && t.entries[2].context != NULL);
  CHECK(t.count == 5 && t.entries[3].context == t.entries[1].context); /* the allocation's */

  /* Segments: live blocks with their contexts, then external registrations. */
  block live1 = take(512), live2 = take(512);
  static char external[77];
  CHECK_OK(xpu_host_record_external_register(external, sizeof external));
  CHECK(xpu_host_record_external_register(NULL, 1) == XPU_HOST_ERROR_INVALID_ARGUMENT);
  segments s = {0};
  CHECK_OK(xpu_host_get_segments(count_segment, &s));
  CHECK(s.count == 3 && s.allocated == 3 && s.with_context == 3);
  CHECK(s.external == (uintptr_t)external);
  CHECK_OK(xpu_host_record_external_unregister(external));
  CHECK_OK(xpu_host_record_external_unregister(external)); /* unknown now: ignored */

  /* A reset of the statistics while recording changes nothing recorded. */
  xpu_host_reset_peak_stats();
  xpu_host_reset_accumulated_stats();
  /* The ring keeps the newest 8. */
  for (int i = 0; i < 10; ++i) {
    block x = take(2048);
    CHECK_OK(xpu_host_free(x.context));
  }
  t.count = 0;
  CHECK_OK(xpu_host_get_traces(keep_trace, &t));
  CHECK(t.count == 8);
  CHECK(t.entries[7].action == XPU_HOST_TRACE_FREE_COMPLETED);

  CHECK_OK(xpu_host_record_history(false, 0, XPU_HOST_RECORD_CONTEXT_NEVER, NULL, false));
  CHECK(!xpu_host_history_enabled());
  CHECK_OK(xpu_host_free(live1.context));
  t.count = 0;
  CHECK_OK(xpu_host_get_traces(keep_trace, &t));
  CHECK(t.count == 8 && t.entries[7].action == XPU_HOST_TRACE_FREE_COMPLETED);
  CHECK_OK(xpu_host_free(live2.context));
  CHECK_OK(xpu_host_record_history(false, 0, XPU_HOST_RECORD_CONTEXT_NEVER, NULL, true));
  t.count = 0;
  CHECK_OK(xpu_host_get_traces(keep_trace, &t));
  CHECK(t.count == 0);
  CHECK(released == gathered); /* every context gathered came back */
}

int main(void) {
  CHECK_OK(xpu_host_init());
  test_before_hooks();
  test_routing_and_reuse();
  test_no_events_in_capture();
  test_bad_pool_calls();
  test_history();
  return report();
}
