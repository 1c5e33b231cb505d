#include "xpu_host_allocator_sycl.h"

#include <sycl/ext/oneapi/backend/level_zero.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <utility>

namespace xpu_host_allocator {
namespace {

// What the hooks need, kept for the life of the process: the C API asks that
// user_data outlive every call of a hook, and that the Level Zero context
// stay valid, which holding the sycl::context ensures.
struct Hooks {
  sycl::context context;
  QueueLookup lookup;
  void* user_data;
  RecordWith record_with;
};

std::atomic<std::uint64_t> recorded{0}, not_needed{0}, failed{0}, released{0};

// After a record found `busy_queue` with work pending, this thread's next
// records on it skip asking whether it is empty this many times: a stream
// that is busy tends to stay busy (compute queued behind the copies), and the
// question costs about a sixth of the barrier it cannot spare then. An idle
// queue is asked every time.
constexpr unsigned kBusyRecordsUnasked = 15;
thread_local const sycl::queue* busy_queue = nullptr;
thread_local unsigned unasked_left = 0;

// Whether `queue` has nothing pending, as far as this thread needs to know.
bool is_idle(const sycl::queue& queue) {
  if (&queue == busy_queue && unasked_left > 0) {
    --unasked_left;
    return false;
  }
  if (queue.ext_oneapi_empty()) {
    busy_queue = nullptr;
    return true;
  }
  busy_queue = &queue;
  unasked_left = kBusyRecordsUnasked;
  return false;
}

// The event the allocator waits for on `queue`, or none if the queue has no
// work pending.
std::optional<sycl::event> stream_event(sycl::queue& queue, RecordWith record_with) {
  if (record_with != RecordWith::Barrier && is_idle(queue)) {
    return std::nullopt;
  }
  bool last_event_is_enough = record_with == RecordWith::LastEventUnlessIdle && queue.is_in_order() &&
                              // Events discarded by the queue cannot be waited on.
                              !queue.has_property<sycl::ext::oneapi::property::queue::discard_events>();
  if (last_event_is_enough) {
    // None if nothing was ever submitted: then there is nothing to wait for.
    return queue.ext_oneapi_get_last_event();
  }
  return queue.ext_oneapi_submit_barrier();
}

// The record hook: noexcept, since it is called from the library's Rust code.
bool record(void* user_data, xpu_host_stream stream, ze_event_handle_t* event, void** token) noexcept {
  const Hooks& hooks = *static_cast<const Hooks*>(user_data);
  try {
    sycl::queue* queue = hooks.lookup(hooks.user_data, stream);
    if (queue == nullptr) {
      failed.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    std::optional<sycl::event> last = stream_event(*queue, hooks.record_with);
    if (!last) {
      *event = nullptr;
      *token = nullptr;
      not_needed.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    // The sycl::event is kept until the release hook, so that the runtime
    // does not reuse its Level Zero event while the allocator polls it.
    auto kept = std::make_unique<sycl::event>(std::move(*last));
    *event = sycl::get_native<sycl::backend::ext_oneapi_level_zero>(*kept);
    *token = kept.release();
    recorded.fetch_add(1, std::memory_order_relaxed);
    return true;
  } catch (...) {
    failed.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
}

void release(void*, ze_event_handle_t, void* token) noexcept {
  delete static_cast<sycl::event*>(token);
  released.fetch_add(1, std::memory_order_relaxed);
}

void check(xpu_host_result result, const char* call) {
  if (result != XPU_HOST_SUCCESS) {
    throw Error(result, std::string(call) + " failed: " + xpu_host_last_error_message());
  }
}

}  // namespace

SyclEventCounts sycl_event_counts() noexcept {
  return {recorded.load(std::memory_order_relaxed), not_needed.load(std::memory_order_relaxed),
          failed.load(std::memory_order_relaxed), released.load(std::memory_order_relaxed)};
}

void use_sycl_context(const sycl::context& context, QueueLookup lookup, void* user_data, RecordWith record_with) {
  if (context.get_backend() != sycl::backend::ext_oneapi_level_zero) {
    throw Error(XPU_HOST_ERROR_INVALID_ARGUMENT,
                "xpu_host_allocator::use_sycl_context: the context is not of the Level Zero backend; "
                "pinned memory comes from Level Zero's zeMemAllocHost");
  }
  if (lookup == nullptr) {
    throw Error(XPU_HOST_ERROR_INVALID_ARGUMENT, "xpu_host_allocator::use_sycl_context: the queue lookup is null");
  }
  ze_driver_handle_t driver = sycl::get_native<sycl::backend::ext_oneapi_level_zero>(context.get_platform());
  ze_context_handle_t native = sycl::get_native<sycl::backend::ext_oneapi_level_zero>(context);
  check(xpu_host_use_context(driver, native), "xpu_host_use_context");
  // Never freed once the library holds it: a hook may run at any time until
  // the process ends.
  auto hooks = std::make_unique<Hooks>(Hooks{context, lookup, user_data, record_with});
  xpu_host_stream_hooks table = {sizeof(xpu_host_stream_hooks), hooks.get(), &record, &release};
  check(xpu_host_set_stream_hooks(&table), "xpu_host_set_stream_hooks");
  hooks.release();
}

}  // namespace xpu_host_allocator
