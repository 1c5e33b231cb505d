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

/* A host-signalled event in the allocator's context that holds streams back:
 * work submitted to a stream after gate_hold waits until gate_open. */
typedef struct {
  ze_event_pool_handle_t pool;
  ze_event_handle_t event;
} gate;

static inline gate gate_create(void) {
  gate g = {NULL, NULL};
  ze_driver_handle_t driver;
  ze_context_handle_t context;
  CHECK_OK(xpu_host_get_context(&driver, &context));
  ze_event_pool_desc_t pool_desc = {ZE_STRUCTURE_TYPE_EVENT_POOL_DESC, NULL, ZE_EVENT_POOL_FLAG_HOST_VISIBLE, 1};
  CHECK(zeEventPoolCreate(context, &pool_desc, 0, NULL, &g.pool) == ZE_RESULT_SUCCESS);
  ze_event_desc_t event_desc = {ZE_STRUCTURE_TYPE_EVENT_DESC, NULL, 0, ZE_EVENT_SCOPE_FLAG_HOST, ZE_EVENT_SCOPE_FLAG_HOST};
  CHECK(zeEventCreate(g.pool, &event_desc, &g.event) == ZE_RESULT_SUCCESS);
  return g;
}

static inline ze_result_t gate_append_wait(void *event, ze_command_list_handle_t list) {
  ze_event_handle_t handle = event;
  return zeCommandListAppendWaitOnEvents(list, 1, &handle);
}

static inline void gate_hold(gate g, xpu_host_stream stream) {
  CHECK_OK(xpu_host_stream_submit(stream, gate_append_wait, g.event));
}

static inline void gate_open(gate g) { CHECK(zeEventHostSignal(g.event) == ZE_RESULT_SUCCESS); }

/* Only once nothing waits on it any more. */
static inline void gate_destroy(gate g) {
  CHECK(zeEventDestroy(g.event) == ZE_RESULT_SUCCESS);
  CHECK(zeEventPoolDestroy(g.pool) == ZE_RESULT_SUCCESS);
}

/* Prints the closing line; the process's exit status. */
static int report(void) {
  printf("%d passed, %d failed\n", checks - failures, failures);
  return failures == 0 ? 0 : 1;
}

#endif
