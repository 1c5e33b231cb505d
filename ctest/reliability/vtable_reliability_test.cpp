// Hostile input and injected faults through the c10::Allocator vtable, as
// PyTorch 2.4-2.7 reaches the allocator (compiled against the real torch 2.5.1
// headers, linked to its libc10). One mode per run, each registered with the
// software driver's knob it needs (CMakeLists.txt):
//   hostile             sizes 0, 1, SIZE_MAX, SIZE_MAX/2+1, copy_data with nulls,
//                       DataPtrs carrying our deleter with foreign, stale and
//                       double-freed contexts, recordEvent on foreign pointers
//                       and unknown devices: exceptions or false, never a crash
//   fail-host-alloc     ZE_SOFTWARE_DRIVER_FAIL_HOST_ALLOC_EVERY=1: allocate throws
//                       std::runtime_error after emptying the cache and retrying
//   fail-every-2nd      ZE_SOFTWARE_DRIVER_FAIL_HOST_ALLOC_EVERY=2: never seen by the caller
//   fail-event-pool     ZE_SOFTWARE_DRIVER_FAIL_EVENT_POOL_CREATE_EVERY=1: freeing a
//                       block used on a stream cannot record its event; the deleter
//                       (which cannot throw) reports it and the block is retired
// In every mode the allocator keeps working afterwards.
#include <c10/core/Allocator.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "at_xpu_declarations.h"
#include "reliability_checks.h"
#include "test_support.h"

using xpu_host_test::Checks;
using xpu_host_test::check_still_works;

namespace {

xpu_host_counters stats() {
  xpu_host_stats s{sizeof(xpu_host_stats)};
  xpu_host_get_stats(&s);
  return s.counters;
}

bool record(const c10::DataPtr& p, std::int8_t device = 0, std::int64_t id = 4) {
  c10::xpu::XPUStream stream(c10::xpu::XPUStream::UNCHECKED,
                             c10::Stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::XPU, device), id));
  return at::xpu::CachingHostAllocator_recordEvent(p.get(), p.get_context(), stream);
}

void hostile(Checks& checks, c10::Allocator* allocator) {
  c10::DataPtr empty = allocator->allocate(0);
  checks.check(empty.get() == nullptr && empty.get_context() == nullptr, "allocate(0) is a null DataPtr");
  c10::DataPtr one = allocator->allocate(1);
  checks.check(one.get() != nullptr, "allocate(1) gives memory");
  // Over any block: beyond PTRDIFF_MAX once aligned (exact fit, the default).
  for (std::size_t size : {SIZE_MAX, SIZE_MAX / 2 + 2, SIZE_MAX - 511, SIZE_MAX / 2 + 1, SIZE_MAX / 2}) {
    checks.throws<std::runtime_error>("allocate(" + std::to_string(size) + ") throws", "too large",
                                      [&] { allocator->allocate(size); });
  }
  // A block may have these sizes, but no driver gives them.
  for (std::size_t size : {SIZE_MAX / 2 - 511, std::size_t{1} << 62}) {
    checks.throws<std::runtime_error>("allocate(" + std::to_string(size) + "), which no driver gives, throws",
                                      "out of pinned host memory", [&] { allocator->allocate(size); });
  }

  char bytes[16] = {0};
  allocator->copy_data(nullptr, nullptr, 0);
  checks.check(true, "copy_data of 0 bytes with null pointers does nothing");
  checks.throws<std::runtime_error>("copy_data(dest, nullptr, 8) throws", "null", [&] { allocator->copy_data(bytes, nullptr, 8); });
  checks.throws<std::runtime_error>("copy_data(nullptr, src, 8) throws", "null", [&] { allocator->copy_data(nullptr, bytes, 8); });

  // DataPtrs that carry our deleter with contexts that are not a live block of
  // ours: their destruction reports the problem and changes nothing.
  c10::DeleterFnPtr deleter = one.get_deleter();
  int local = 0;
  std::vector<void*> heap_blocks;
  for (void* foreign : {static_cast<void*>(&local), std::malloc(32), one.get(), static_cast<void*>(static_cast<char*>(one.get_context()) + 1)}) {
    { c10::DataPtr bogus(&local, foreign, deleter, c10::Device(c10::DeviceType::CPU)); }
    checks.check(std::strstr(xpu_host_last_error_message(), "not a block of this allocator") != nullptr,
                 "a DataPtr with our deleter and a foreign context: reported when destroyed");
    if (foreign != &local && foreign != one.get() && foreign != static_cast<char*>(one.get_context()) + 1) heap_blocks.push_back(foreign);
  }
  for (void* p : heap_blocks) std::free(p);
  checks.check(stats().active_requests.current == 1, "the live block was untouched by them");

  void* stale = nullptr;
  {
    c10::DataPtr p = allocator->allocate(4096);
    stale = p.get_context();
  }
  deleter(stale);
  checks.check(std::strstr(xpu_host_last_error_message(), "freed twice") != nullptr, "a double free through the deleter is reported");
  at::xpu::CachingHostAllocator_emptyCache();
  deleter(stale);
  checks.check(std::strstr(xpu_host_last_error_message(), "not allocated") != nullptr ||
                   std::strstr(xpu_host_last_error_message(), "freed twice") != nullptr,
               "a free after emptyCache through the deleter is reported");
  deleter(nullptr);  // c10 never does this (unique_ptr skips null); reported, harmless
  checks.check(stats().active_requests.current == 1, "the deleter with a null context changes nothing");

  checks.check(record(one), "recordEvent on our block is true");
  checks.check(!record(one, 9), "recordEvent on a device that does not exist is false");
  checks.check(!record(one, -1), "recordEvent on device -1 is false");
  checks.check(record(one, 0, INT64_MIN) && record(one, 0, INT64_MAX), "stream ids are opaque: any id is a stream");
  c10::DataPtr foreign_data(&local, &local, c10::detail::deleteNothing, c10::Device(c10::DeviceType::CPU));
  checks.check(!record(foreign_data), "recordEvent on a foreign pointer is false");
  checks.check(!at::xpu::CachingHostAllocator_recordEvent(nullptr, nullptr, xpu_host_test::xpu_stream(1)),
               "recordEvent(nullptr, nullptr) is false");

  xpu_host_test::check_threads_against_empty_cache(checks, allocator, [] { at::xpu::CachingHostAllocator_emptyCache(); },
                                                   "the vtable");
}

void fail_host_alloc(Checks& checks, c10::Allocator* allocator) {
  for (std::size_t size : {std::size_t{1}, std::size_t{4096}, std::size_t{1} << 20}) {
    long long attempts = stats().host_alloc_time.count;
    checks.throws<std::runtime_error>("allocate(" + std::to_string(size) + ") with every zeMemAllocHost failing throws",
                                      "out of pinned host memory", [&] { allocator->allocate(size); });
    checks.check(stats().host_alloc_time.count - attempts == 2, "one call, the cache emptied, one retry");
  }
  c10::DataPtr empty = allocator->allocate(0);
  checks.check(empty.get() == nullptr, "allocate(0) needs no memory and works");
  checks.check(stats().active_requests.current == 0 && stats().allocations.current == 0, "nothing is held after the failures");
}

void fail_every_2nd(Checks& checks, c10::Allocator* allocator) {
  std::vector<c10::DataPtr> held;
  for (int i = 0; i < 50; ++i) held.push_back(allocator->allocate(4096 * static_cast<std::size_t>(i + 1)));
  long long attempts = stats().host_alloc_time.count, misses = stats().cache_misses;
  checks.check(attempts > misses, "faults were injected (" + std::to_string(attempts - misses) + ") and retried");
  check_still_works(checks, allocator, "50 allocations with every 2nd zeMemAllocHost failing");
}

void fail_event_pool(Checks& checks, c10::Allocator* allocator) {
  xpu_host_test::check_retired_block_is_not_reused(checks, allocator, [](const c10::DataPtr& p) { return record(p); });
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  Checks checks("vtable_reliability_test " + mode);
  c10::Allocator* allocator = at::xpu::getCachingHostAllocator();
  if (!checks.check(allocator != nullptr, "getCachingHostAllocator")) return checks.finish();
  if (mode == "hostile") hostile(checks, allocator);
  else if (mode == "fail-host-alloc") fail_host_alloc(checks, allocator);
  else if (mode == "fail-every-2nd") fail_every_2nd(checks, allocator);
  else if (mode == "fail-event-pool") fail_event_pool(checks, allocator);
  else checks.check(false, "usage: vtable_reliability_test hostile|fail-host-alloc|fail-every-2nd|fail-event-pool");
  return checks.finish();
}
