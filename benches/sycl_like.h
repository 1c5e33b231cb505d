// What the PyTorch references record their stream events with, standing in
// for SYCL over Level Zero, which these machines do not have.
//
// Streams: one in-order immediate command list per stream id, created on first
// use in the harness's context, appended to under a per-list mutex (SYCL's
// queue takes its own lock to submit), found by id in a fixed table (PyTorch
// finds a stream's queue by index).
//
// Events, as `at::xpu::XPUEvent::record` gets one from
// `queue.ext_oneapi_submit_barrier()` on SYCL's Level Zero backend (Unified
// Runtime): per record, three heap objects (XPUEvent's unique_ptr<sycl::event>,
// sycl::event's shared event_impl, UR's ur_event) and a Level Zero event from
// a context-wide cache of released events (UR's default event caching), reset
// with zeEventHostReset when reused; new events come from pools of 256 (UR's
// events per pool). The barrier is zeCommandListAppendBarrier(list, event).
// `query()` is zeEventQueryStatus; destroying the event returns its Level
// Zero event to the cache.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "common.h"

namespace bench::sycl_like {

constexpr std::uint32_t kEventsPerPool = 256;

class EventCache {
 public:
  ze_event_handle_t acquire() {
    std::lock_guard<std::mutex> guard(mutex_);
    if (!free_.empty()) {
      ze_event_handle_t event = free_.back();
      free_.pop_back();
      BENCH_ZE(zeEventHostReset(event));
      return event;
    }
    if (pool_ == nullptr || next_index_ == kEventsPerPool) {
      ze_event_pool_desc_t desc = {ZE_STRUCTURE_TYPE_EVENT_POOL_DESC, nullptr, ZE_EVENT_POOL_FLAG_HOST_VISIBLE,
                                   kEventsPerPool};
      BENCH_ZE(zeEventPoolCreate(ze().context, &desc, 0, nullptr, &pool_));
      next_index_ = 0;
    }
    ze_event_desc_t desc = {ZE_STRUCTURE_TYPE_EVENT_DESC, nullptr, next_index_++, ZE_EVENT_SCOPE_FLAG_HOST,
                            ZE_EVENT_SCOPE_FLAG_HOST};
    ze_event_handle_t event = nullptr;
    BENCH_ZE(zeEventCreate(pool_, &desc, &event));
    return event;
  }

  void release(ze_event_handle_t event) {
    std::lock_guard<std::mutex> guard(mutex_);
    free_.push_back(event);
  }

 private:
  std::mutex mutex_;
  std::vector<ze_event_handle_t> free_;
  ze_event_pool_handle_t pool_ = nullptr;
  std::uint32_t next_index_ = 0;
};

inline EventCache& event_cache() {
  static EventCache* cache = new EventCache;  // never destroyed: events may outlive static destructors
  return *cache;
}

// ur_event_handle_t_: owns the Level Zero event while referenced.
struct UrEvent {
  explicit UrEvent(ze_event_handle_t event) : ze_event(event) {}
  ~UrEvent() { event_cache().release(ze_event); }
  ze_event_handle_t ze_event;
};

// sycl::detail::event_impl: holds the UR event.
struct EventImpl {
  explicit EventImpl(ze_event_handle_t event) : ur(new UrEvent(event)) {}
  std::unique_ptr<UrEvent> ur;
};

// sycl::event: a shared handle to its impl.
struct SyclEvent {
  std::shared_ptr<EventImpl> impl;
};

class Streams {
 public:
  static constexpr int kMaxStreams = 64;

  // Runs f(list) on the stream's command list with its lock held.
  template <class F>
  void submit(std::int64_t id, F&& f) {
    List& list = get(id);
    std::lock_guard<std::mutex> guard(list.mutex);
    f(list.handle);
  }

 private:
  struct List {
    std::mutex mutex;
    ze_command_list_handle_t handle = nullptr;
  };

  List& get(std::int64_t id) {
    if (id < 0 || id >= kMaxStreams) die("stream id %lld out of range", (long long)id);
    List* list = lists_[id].load(std::memory_order_acquire);
    if (list) return *list;
    std::lock_guard<std::mutex> guard(create_mutex_);
    list = lists_[id].load(std::memory_order_relaxed);
    if (!list) {
      list = new List;
      ze_command_queue_desc_t desc = {ZE_STRUCTURE_TYPE_COMMAND_QUEUE_DESC, nullptr, 0, 0, 0,
                                      ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS, ZE_COMMAND_QUEUE_PRIORITY_NORMAL};
      BENCH_ZE(zeCommandListCreateImmediate(ze().context, ze().device, &desc, &list->handle));
      lists_[id].store(list, std::memory_order_release);
    }
    return *list;
  }

  std::mutex create_mutex_;
  std::array<std::atomic<List*>, kMaxStreams> lists_{};
};

inline Streams& streams() {
  static Streams* s = new Streams;
  return *s;
}

// queue.ext_oneapi_submit_barrier()
inline SyclEvent submit_barrier(std::int64_t stream_id) {
  ze_event_handle_t event = event_cache().acquire();
  SyclEvent result{std::make_shared<EventImpl>(event)};
  streams().submit(stream_id, [&](ze_command_list_handle_t list) {
    BENCH_ZE(zeCommandListAppendBarrier(list, event, 0, nullptr));
  });
  return result;
}

// at::xpu::XPUEvent as the allocator uses it: movable, not copyable; record()
// replaces the event, query() is true for an event never recorded.
class XPUEvent {
 public:
  XPUEvent() = default;
  XPUEvent(XPUEvent&&) = default;
  XPUEvent& operator=(XPUEvent&&) = default;
  XPUEvent(const XPUEvent&) = delete;
  XPUEvent& operator=(const XPUEvent&) = delete;

  void record(std::int64_t stream_id) { event_ = std::make_unique<SyclEvent>(submit_barrier(stream_id)); }

  bool query() const {
    if (!event_) return true;
    return zeEventQueryStatus(event_->impl->ur->ze_event) == ZE_RESULT_SUCCESS;
  }

 private:
  std::unique_ptr<SyclEvent> event_;
};

}  // namespace bench::sycl_like
