#include "xpu_host_allocator_adapter.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "xpu_caching_host_allocator.h"
#if defined(XPU_HOST_ALLOCATOR_XPU_CAPTURE_HOOKS) && XPU_HOST_TORCH_HAS_POOLS
#include "xpu_capture_hooks.h"
#endif

namespace xpu_host_allocator {
namespace {

// The release number tells which virtuals to override (the header's
// XPU_HOST_TORCH_HAS_*). Where it says a virtual is missing, make sure the
// class agrees: a PyTorch that has it (a pre-release numbered like the
// release before) must fail here, not silently keep PyTorch's default.
// Where it says present, `override` checks it.
template <class T, class = void>
struct HasPoolVirtuals : std::false_type {};
template <class T>
struct HasPoolVirtuals<T, std::void_t<decltype(&T::begin_allocate_to_pool)>> : std::true_type {};
template <class T, class = void>
struct HasHistoryVirtuals : std::false_type {};
template <class T>
struct HasHistoryVirtuals<T, std::void_t<decltype(&T::record_history)>> : std::true_type {};
static_assert(HasPoolVirtuals<at::HostAllocator>::value == bool(XPU_HOST_TORCH_HAS_POOLS),
              "at::HostAllocator's pool virtuals and TORCH_VERSION_MINOR disagree (docs/ABI.md section 9)");
static_assert(HasHistoryVirtuals<at::HostAllocator>::value == bool(XPU_HOST_TORCH_HAS_HISTORY),
              "at::HostAllocator's history virtuals and TORCH_VERSION_MINOR disagree (docs/ABI.md section 9)");

// The library's message already names the library; `call` says which call failed.
[[noreturn]] void throw_error(xpu_host_result result, const char* call) {
  std::string message = std::string(call) + " failed: " + xpu_host_last_error_message();
  if (result == XPU_HOST_ERROR_OUT_OF_MEMORY) {
    TORCH_CHECK_WITH(OutOfMemoryError, false, message);
  }
  TORCH_CHECK(false, message);
}

void check(xpu_host_result result, const char* call) {
  if (result != XPU_HOST_SUCCESS) throw_error(result, call);
}

// A DataPtr's deleter runs in a destructor and must not throw: a failure here
// means the context was not ours or was freed twice, so say it loudly. In a
// forked child or at exit the library refuses by design (the memory is not the
// child's to give back), and tensors dying there are no news.
void free_block(void* context) {
  xpu_host_result result = xpu_host_free(context);
  if (result != XPU_HOST_SUCCESS && result != XPU_HOST_ERROR_FORKED && result != XPU_HOST_ERROR_EXITING) {
    TORCH_WARN("xpu_host_free failed: ", xpu_host_last_error_message());
  }
}

// c10's Stat and DurationStat, whatever namespace this PyTorch declares them in.
template <class Stat>
Stat to_stat(const xpu_host_stat& s) {
  Stat stat;
  stat.current = s.current;
  stat.peak = s.peak;
  stat.allocated = s.allocated;
  stat.freed = s.freed;
  return stat;
}

template <class DurationStat>
DurationStat to_duration(const xpu_host_duration_stat& s) {
  DurationStat stat;
  stat.total = s.total_us;
  stat.max = s.max_us;
  stat.min = s.min_us;
  stat.count = s.count;
  return stat;
}

// HostStats renamed its counters in 2.10; both spellings mean the same four
// numbers, which we keep under the 2.10 names.
template <class Stats, class = void>
struct HasActiveRequests : std::false_type {};
template <class Stats>
struct HasActiveRequests<Stats, std::void_t<decltype(std::declval<Stats&>().active_requests)>> : std::true_type {};

template <class Stats>
void fill_counters(Stats& stats, const xpu_host_counters& ours) {
  using Stat = decltype(stats.allocated_bytes);
  if constexpr (HasActiveRequests<Stats>::value) {  // 2.10 and later
    stats.active_requests = to_stat<Stat>(ours.active_requests);
    stats.active_bytes = to_stat<Stat>(ours.active_bytes);
    stats.allocations = to_stat<Stat>(ours.allocations);
    stats.allocated_bytes = to_stat<Stat>(ours.allocated_bytes);
    // bucket_allocation stays zero: our size classes are not PyTorch's
    // power-of-two buckets, and a made-up split would mislead.
  } else {  // 2.8 and 2.9: requests, segments, bytes requested, bytes reserved
    stats.allocation = to_stat<Stat>(ours.active_requests);
    stats.segment = to_stat<Stat>(ours.allocations);
    stats.allocated_bytes = to_stat<Stat>(ours.active_bytes);
    stats.reserved_bytes = to_stat<Stat>(ours.allocated_bytes);
  }
  using DurationStat = decltype(stats.host_alloc_time);
  stats.host_alloc_time = to_duration<DurationStat>(ours.host_alloc_time);
  stats.host_free_time = to_duration<DurationStat>(ours.host_free_time);
  stats.num_host_alloc = ours.num_host_alloc;
  stats.num_host_free = ours.num_host_free;
}

#if XPU_HOST_TORCH_HAS_POOLS
xpu_host_pool_id to_pool(const c10::MempoolId_t& id) { return {id.first, id.second}; }

// As `check`, naming the pool in the message: "xpu_host_release_pool(pool (1, 0)) failed: ...".
void check_pool(xpu_host_result result, const char* call, const c10::MempoolId_t& id) {
  if (result == XPU_HOST_SUCCESS) return;
  std::string named = std::string(call) + "(pool (" + std::to_string(id.first) + ", " + std::to_string(id.second) + "))";
  throw_error(result, named.c_str());
}

using StreamFilter = std::function<bool(c10::Stream)>;

// Called by the library under its pool lock, from a C frame: it must not
// throw, so a filter that throws declines the stream.
bool filter_trampoline(void* user_data, xpu_host_stream stream) noexcept {
  try {
    c10::Stream s(c10::Stream::UNSAFE,
                  c10::Device(static_cast<c10::DeviceType>(stream.device_type), static_cast<c10::DeviceIndex>(stream.device_index)),
                  stream.id);
    return (*static_cast<StreamFilter*>(user_data))(s);
  } catch (...) {
    return false;
  }
}

void drop_filter(void* user_data) noexcept { delete static_cast<StreamFilter*>(user_data); }
#endif

#if XPU_HOST_TORCH_HAS_HISTORY
using Context = std::shared_ptr<c10::GatheredContext>;

// The CreateContextFn of the last record_history that turned recording on.
// The library's recorder is one static object; it reads this at each gather.
std::atomic<c10::CachingDeviceAllocator::CreateContextFn> context_fn{nullptr};

// The library keeps a context as an opaque pointer: a heap box holding a
// shared_ptr, deleted by release_context when the library lets go of it.
void* gather_context(void* /*user_data*/) noexcept {
  c10::CachingDeviceAllocator::CreateContextFn fn = context_fn.load(std::memory_order_acquire);
  if (fn == nullptr) return nullptr;
  try {
    Context context = fn();
    return context ? new Context(std::move(context)) : nullptr;
  } catch (...) {
    return nullptr;  // called from a C frame: a recorder that throws records nothing
  }
}

void release_context(void* /*user_data*/, void* context) noexcept { delete static_cast<Context*>(context); }

const xpu_host_history_recorder recorder{sizeof(xpu_host_history_recorder), nullptr, &gather_context, &release_context};

Context context_of(void* box) { return box != nullptr ? *static_cast<const Context*>(box) : nullptr; }

// A visit runs inside a library call: what it throws is kept and rethrown
// once the library has returned.
template <class Item, class Out>
struct Visit {
  std::vector<Out> out;
  std::exception_ptr error;
  const char* what;

  template <class Map>
  bool take(const Item* item, Map map) noexcept {
    try {
      TORCH_CHECK(item->size >= sizeof(Item), "xpu_caching_host_allocator: the library's ", what, " is ", item->size,
                  " bytes, smaller than this header's ", sizeof(Item));
      out.push_back(map(*item));
      return true;
    } catch (...) {
      error = std::current_exception();
      return false;
    }
  }

  std::vector<Out> result(xpu_host_result status, const char* call) {
    if (error) std::rethrow_exception(error);
    check(status, call);
    return std::move(out);
  }
};
#endif

}  // namespace

at::DataPtr HostAllocatorAdapter::allocate(std::size_t n) {
  void* data = nullptr;
  void* context = nullptr;
  check(xpu_host_allocate(n, &data, &context), "xpu_host_allocate");
  return {data, context, &free_block, c10::Device(c10::DeviceType::CPU)};
}

void HostAllocatorAdapter::copy_data(void* dest, const void* src, std::size_t count) const {
  if (count == 0) return;
  TORCH_CHECK(dest != nullptr && src != nullptr, "xpu_caching_host_allocator: copy_data of ", count, " bytes with a null pointer");
  std::memcpy(dest, src, count);
}

bool HostAllocatorAdapter::record_event(void* ptr, void* ctx, c10::Stream stream) {
  xpu_host_stream key{static_cast<std::int8_t>(stream.device_type()), static_cast<std::int8_t>(stream.device_index()),
                      stream.id()};
  bool recorded = false;
  check(xpu_host_record_stream(ptr, ctx, key, &recorded), "xpu_host_record_stream");
  return recorded;
}

void HostAllocatorAdapter::empty_cache() { check(xpu_host_empty_cache(), "xpu_host_empty_cache"); }

at::HostStats HostAllocatorAdapter::get_stats() {
  // `{}` zeroes counters just as leaving it out would, but -Wextra
  // (scripts/check-adapter-compiles) warns when a member is left out.
  xpu_host_stats ours{sizeof(xpu_host_stats), {}};
  check(xpu_host_get_stats(&ours), "xpu_host_get_stats");
  at::HostStats stats;
  fill_counters(stats, ours.counters);
  return stats;
}

void HostAllocatorAdapter::reset_accumulated_stats() { xpu_host_reset_accumulated_stats(); }

void HostAllocatorAdapter::reset_peak_stats() { xpu_host_reset_peak_stats(); }

#if XPU_HOST_TORCH_HAS_POOLS
void HostAllocatorAdapter::begin_allocate_to_pool(c10::MempoolId_t pool_id, std::function<bool(c10::Stream)> filter) {
  // The library owns the filter from a successful begin until the capture
  // ends, and drops it then; after a failure it is still ours.
  StreamFilter* owned = filter ? new StreamFilter(std::move(filter)) : nullptr;
  xpu_host_result result = xpu_host_begin_allocate_to_pool(to_pool(pool_id), owned != nullptr ? &filter_trampoline : nullptr,
                                                           owned, owned != nullptr ? &drop_filter : nullptr);
  if (result != XPU_HOST_SUCCESS) delete owned;
  check_pool(result, "xpu_host_begin_allocate_to_pool", pool_id);
}

void HostAllocatorAdapter::end_allocate_to_pool(c10::MempoolId_t pool_id) {
  check_pool(xpu_host_end_allocate_to_pool(to_pool(pool_id)), "xpu_host_end_allocate_to_pool", pool_id);
}

void HostAllocatorAdapter::release_pool(c10::MempoolId_t pool_id) {
  check_pool(xpu_host_release_pool(to_pool(pool_id)), "xpu_host_release_pool", pool_id);
}
#endif

#if XPU_HOST_TORCH_HAS_HISTORY
void HostAllocatorAdapter::record_history(bool enabled, c10::CachingDeviceAllocator::CreateContextFn context_recorder,
                                          std::size_t max_entries, c10::CachingDeviceAllocator::RecordContext when,
                                          bool clear_history) {
  // c10's RecordContext and the library's share their numbers.
  using RecordContext = c10::CachingDeviceAllocator::RecordContext;
  static_assert(static_cast<int>(RecordContext::NEVER) == XPU_HOST_RECORD_CONTEXT_NEVER &&
                static_cast<int>(RecordContext::STATE) == XPU_HOST_RECORD_CONTEXT_STATE &&
                static_cast<int>(RecordContext::ALLOC) == XPU_HOST_RECORD_CONTEXT_ALLOC &&
                static_cast<int>(RecordContext::ALL) == XPU_HOST_RECORD_CONTEXT_ALL);
  // As PyTorch's own: turning recording off keeps the recorder, and gathers
  // nothing more.
  c10::CachingDeviceAllocator::CreateContextFn before = context_fn.load(std::memory_order_relaxed);
  if (enabled) context_fn.store(context_recorder, std::memory_order_release);
  xpu_host_result result = xpu_host_record_history(
      enabled, max_entries, static_cast<xpu_host_record_context>(static_cast<int>(when)), enabled ? &recorder : nullptr,
      clear_history);
  if (result != XPU_HOST_SUCCESS) {
    context_fn.store(before, std::memory_order_release);  // the library changed nothing; neither do we
    throw_error(result, "xpu_host_record_history");
  }
}

bool HostAllocatorAdapter::is_history_enabled() const { return xpu_host_history_enabled(); }

std::vector<at::HostSegmentInfo> HostAllocatorAdapter::get_segments() {
  Visit<xpu_host_segment, at::HostSegmentInfo> visit{{}, nullptr, "xpu_host_segment"};
  xpu_host_result result = xpu_host_get_segments(
      [](void* user_data, const xpu_host_segment* segment) noexcept {
        return static_cast<decltype(visit)*>(user_data)->take(segment, [](const xpu_host_segment& s) {
          at::HostSegmentInfo info;
          info.address = s.address;
          info.size = s.bytes;
          info.allocated = s.allocated;
          info.active = s.active;
          info.owner_private_pool_id = {s.pool.first, s.pool.second};
          info.context_when_allocated = context_of(s.context);
          return info;
        });
      },
      &visit);
  return visit.result(result, "xpu_host_get_segments");
}

std::vector<c10::CachingDeviceAllocator::TraceEntry> HostAllocatorAdapter::get_traces() {
  using TraceEntry = c10::CachingDeviceAllocator::TraceEntry;
  // c10's first five actions and the library's share their numbers.
  static_assert(static_cast<int>(TraceEntry::ALLOC) == XPU_HOST_TRACE_ALLOC &&
                static_cast<int>(TraceEntry::FREE_REQUESTED) == XPU_HOST_TRACE_FREE_REQUESTED &&
                static_cast<int>(TraceEntry::FREE_COMPLETED) == XPU_HOST_TRACE_FREE_COMPLETED &&
                static_cast<int>(TraceEntry::SEGMENT_ALLOC) == XPU_HOST_TRACE_SEGMENT_ALLOC &&
                static_cast<int>(TraceEntry::SEGMENT_FREE) == XPU_HOST_TRACE_SEGMENT_FREE);
  Visit<xpu_host_trace_entry, TraceEntry> visit{{}, nullptr, "xpu_host_trace_entry"};
  xpu_host_result result = xpu_host_get_traces(
      [](void* user_data, const xpu_host_trace_entry* entry) noexcept {
        return static_cast<decltype(visit)*>(user_data)->take(entry, [](const xpu_host_trace_entry& e) {
          TraceEntry te(static_cast<TraceEntry::Action>(e.action), /*device=*/-1, e.address, e.bytes, /*stream=*/nullptr,
                        c10::MempoolId_t{e.pool.first, e.pool.second}, c10::approx_time_t{}, context_of(e.context));
          // PyTorch's getTraces leaves microseconds in time_.t_, over the
          // approximate clock reading the constructor stored.
          te.time_.t_ = e.time_us;
          return te;
        });
      },
      &visit);
  return visit.result(result, "xpu_host_get_traces");
}

void HostAllocatorAdapter::record_external_register(void* ptr, std::size_t size) {
  check(xpu_host_record_external_register(ptr, size), "xpu_host_record_external_register");
}

void HostAllocatorAdapter::record_external_unregister(void* ptr) {
  check(xpu_host_record_external_unregister(ptr), "xpu_host_record_external_unregister");
}
#endif

HostAllocatorAdapter& host_allocator() {
  // Never destroyed: PyTorch's registry keeps the pointer, and tensors freed
  // during static destruction still call into it.
  static HostAllocatorAdapter* instance = new HostAllocatorAdapter;
  return *instance;
}

void register_with_pytorch(std::uint8_t priority) {
#if defined(XPU_HOST_ALLOCATOR_XPU_CAPTURE_HOOKS) && XPU_HOST_TORCH_HAS_POOLS
  install_xpu_capture_hooks();
#endif
  at::setHostAllocator(at::kXPU, &host_allocator(), priority);
}

}  // namespace xpu_host_allocator
