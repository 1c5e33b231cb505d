#include "xpu_host_allocator_adapter.h"

#include <c10/util/Exception.h>

#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "xpu_caching_host_allocator.h"

namespace xpu_host_allocator {
namespace {

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

HostAllocatorAdapter& host_allocator() {
  // Never destroyed: PyTorch's registry keeps the pointer, and tensors freed
  // during static destruction still call into it.
  static HostAllocatorAdapter* instance = new HostAllocatorAdapter;
  return *instance;
}

void register_with_pytorch(std::uint8_t priority) { at::setHostAllocator(at::kXPU, &host_allocator(), priority); }

}  // namespace xpu_host_allocator
