// Hostile input and injected faults through the PyTorch 2.8+ adapter
// (adapter/), registered as at::getHostAllocator(at::kXPU) inside real libtorch
// 2.15.0. One mode per run, each registered with the driver knob it needs:
//   hostile          sizes 0, 1, SIZE_MAX, SIZE_MAX/2+1, copy_data with nulls,
//                    record_event on foreign, interior and stale pointers and
//                    on devices that do not exist, DataPtrs with the adapter's
//                    deleter and foreign or double-freed contexts, threads
//                    allocating against empty_cache: a c10 exception or false,
//                    never a crash
//   fail-host-alloc  ZE_SOFTWARE_DRIVER_FAIL_HOST_ALLOC_EVERY=1: allocate throws
//                    c10::OutOfMemoryError after emptying the cache and retrying
//   fail-event-pool  ZE_SOFTWARE_DRIVER_FAIL_EVENT_POOL_CREATE_EVERY=1: the free of
//                    a block used on a stream cannot record its event; the deleter
//                    warns (it cannot throw) and the block is retired
// In every mode the allocator keeps working afterwards.
#include <ATen/core/CachingHostAllocator.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "reliability_checks.h"
#include "test_support.h"
#include "xpu_host_allocator_adapter.h"

using xpu_host_test::Checks;
using xpu_host_test::check_still_works;

namespace {

c10::Stream stream_on(std::int8_t device, std::int64_t id = 9) {
  return c10::Stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::XPU, device), id);
}

std::int64_t active_requests() {
  xpu_host_stats s{sizeof(xpu_host_stats)};
  xpu_host_get_stats(&s);
  return s.counters.active_requests.current;
}

void hostile(Checks& checks, at::HostAllocator* allocator) {
  at::DataPtr empty = allocator->allocate(0);
  checks.check(empty.get() == nullptr, "allocate(0) is a null DataPtr");
  at::DataPtr one = allocator->allocate(1);
  checks.check(one.get() != nullptr, "allocate(1) gives memory");
  for (std::size_t size : {SIZE_MAX, SIZE_MAX / 2 + 2, SIZE_MAX / 2 + 1}) {
    checks.throws<c10::Error>("allocate(" + std::to_string(size) + ") throws c10::Error", "too large",
                              [&] { allocator->allocate(size); });
  }
  checks.throws<c10::OutOfMemoryError>("allocate(2^62), which no driver gives, throws c10::OutOfMemoryError",
                                       "out of pinned host memory", [&] { allocator->allocate(std::size_t{1} << 62); });
  char bytes[8] = {0};
  allocator->copy_data(nullptr, nullptr, 0);
  checks.throws<c10::Error>("copy_data(nullptr, src, 8) throws", "null", [&] { allocator->copy_data(nullptr, bytes, 8); });

  int local = 0;
  char* base = static_cast<char*>(one.get());
  checks.check(allocator->record_event(base, one.get_context(), stream_on(0)), "record_event on our block is true");
  checks.check(!allocator->record_event(&local, &local, stream_on(0)), "record_event on a foreign pointer is false");
  checks.check(!allocator->record_event(nullptr, nullptr, stream_on(0)), "record_event(nullptr, nullptr) is false");
  checks.check(allocator->record_event(base, one.get_context(), stream_on(0, INT64_MIN)), "any stream id is a stream");
  checks.throws<c10::Error>("record_event on device 9 throws c10::Error", "no device with index 9",
                            [&] { allocator->record_event(base, one.get_context(), stream_on(9)); });
  checks.throws<c10::Error>("record_event on device -1 throws c10::Error", "no device with index -1",
                            [&] { allocator->record_event(base, one.get_context(), stream_on(-1)); });

  // DataPtrs with the adapter's deleter and contexts that are not a live block.
  c10::DeleterFnPtr deleter = one.get_deleter();
  void* heap = std::malloc(32);
  for (void* foreign : {static_cast<void*>(&local), heap, static_cast<void*>(base)}) {
    { at::DataPtr bogus(&local, foreign, deleter, c10::Device(c10::DeviceType::CPU)); }
  }
  std::free(heap);
  checks.check(std::strstr(xpu_host_last_error_message(), "not a block of this allocator") != nullptr,
               "DataPtrs with foreign contexts: reported when destroyed, nothing freed");
  void* stale = nullptr;
  {
    at::DataPtr p = allocator->allocate(4096);
    stale = p.get_context();
  }
  deleter(stale);
  checks.check(std::strstr(xpu_host_last_error_message(), "freed twice") != nullptr, "a double free through the deleter is reported");
  allocator->empty_cache();
  deleter(stale);
  checks.check(active_requests() == 1, "only the 1-byte block is in use after all that");

  xpu_host_test::check_threads_against_empty_cache(checks, allocator, [&] { allocator->empty_cache(); }, "the adapter");
}

void fail_host_alloc(Checks& checks, at::HostAllocator* allocator) {
  for (std::size_t size : {std::size_t{1}, std::size_t{1} << 20}) {
    checks.throws<c10::OutOfMemoryError>("allocate(" + std::to_string(size) + ") with every zeMemAllocHost failing",
                                         "out of pinned host memory", [&] { allocator->allocate(size); });
  }
  at::HostStats stats = allocator->get_stats();
  checks.check(stats.num_host_alloc == 0, "no host allocation succeeded, none is counted");
  checks.check(active_requests() == 0, "nothing is held after the failures");
}

void fail_event_pool(Checks& checks, at::HostAllocator* allocator) {
  xpu_host_test::check_retired_block_is_not_reused(
      checks, allocator, [&](const at::DataPtr& p) { return allocator->record_event(p.get(), p.get_context(), stream_on(0)); });
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  Checks checks("adapter_reliability_test " + mode);
  xpu_host_allocator::register_with_pytorch();
  at::HostAllocator* allocator = at::getHostAllocator(at::kXPU);
  if (mode == "hostile") hostile(checks, allocator);
  else if (mode == "fail-host-alloc") fail_host_alloc(checks, allocator);
  else if (mode == "fail-event-pool") fail_event_pool(checks, allocator);
  else checks.check(false, "usage: adapter_reliability_test hostile|fail-host-alloc|fail-event-pool");
  return checks.finish();
}
