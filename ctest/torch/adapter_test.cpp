// The PyTorch 2.8+ generation, inside real libtorch: built twice, against
// 2.8.0 (the first release of at::setHostAllocator) and 2.15.0. The adapter
// (adapter/xpu_host_allocator_adapter.h) registered with at::setHostAllocator
// is what at::getHostAllocator(at::kXPU) returns; tensors on its memory
// compute; record_event on an XPU c10::Stream orders reuse; get_stats counts
// what was done, under either release's names; errors arrive as c10
// exceptions. With ZE_SOFTWARE_DRIVER_HOST_MEMORY_LIMIT set, running out of
// memory is checked too.
#include <ATen/ATen.h>
#include <ATen/core/CachingHostAllocator.h>
#include <torch/version.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "allocator_checks.h"
#include "tensor_checks.h"
#include "xpu_host_allocator_adapter.h"

using xpu_host_test::Checks;

namespace {

constexpr std::int64_t kStreamId = 7;

c10::Stream xpu_stream() { return c10::Stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::XPU, 0), kStreamId); }

std::string stat_text(const c10::CachingAllocator::Stat& s) {
  return std::to_string(s.current) + "/" + std::to_string(s.peak) + "/" + std::to_string(s.allocated) + "/" +
         std::to_string(s.freed) + " (current/peak/allocated/freed)";
}

// The four counters at::HostStats names differently before 2.10, by what they count.
struct Counters {
  c10::CachingAllocator::Stat requests, blocks, active_bytes, held_bytes;
};

Counters counters(const at::HostStats& s) {
#if TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR < 10
  return {s.allocation, s.segment, s.allocated_bytes, s.reserved_bytes};
#else
  return {s.active_requests, s.allocations, s.active_bytes, s.allocated_bytes};
#endif
}

void check_registration(Checks& checks) {
  at::HostAllocator* before = nullptr;
  try {
    before = at::getHostAllocator(at::kXPU);
  } catch (const c10::Error&) {
    // A CPU-only libtorch has no XPU host allocator: PyTorch says so by throwing.
  }
  checks.check(before != &xpu_host_allocator::host_allocator(), "before registration at::getHostAllocator(kXPU) is not ours");
  xpu_host_allocator::register_with_pytorch();
  checks.check(at::getHostAllocator(at::kXPU) == &xpu_host_allocator::host_allocator(),
               "after register_with_pytorch(), at::getHostAllocator(kXPU) is the adapter");
  checks.check(at::getHostAllocator(at::kCPU) != &xpu_host_allocator::host_allocator(),
               "the adapter is registered for XPU only");
}

void check_data_ptrs(Checks& checks, at::HostAllocator* allocator) {
  xpu_host_test::check_allocate(checks, allocator);
  xpu_host_test::check_clone(checks, allocator);
  char byte = 0;
  checks.throws<c10::Error>("copy_data with a null pointer throws c10::Error", "null pointer",
                            [&] { allocator->copy_data(nullptr, &byte, 1); });

  at::DataPtr block = allocator->allocate(1000);
  int foreign = 0;
  char* base = static_cast<char*>(block.get());
  checks.check(allocator->record_event(base + 8, block.get_context(), xpu_stream()), "record_event(slice of ours) is true");
  checks.check(allocator->record_event(base, &foreign, xpu_stream()), "record_event(base, foreign context) is true");
  checks.check(!allocator->record_event(base + 8, &foreign, xpu_stream()), "record_event(interior, foreign context) is false");
}

// Numbers after a known sequence, from a clean start (nothing in use or cached).
void check_stats(Checks& checks, at::HostAllocator* allocator) {
  // Blocks recorded on streams earlier are given back once their events complete.
  xpu_host_test::poll_until([&] {
    allocator->empty_cache();
    return counters(allocator->get_stats()).blocks.current == 0;
  });
  allocator->reset_accumulated_stats();
  allocator->reset_peak_stats();
  at::HostStats start = allocator->get_stats();
  Counters c = counters(start);
  checks.check(c.requests.current == 0 && c.blocks.current == 0, "stats: nothing in use or held after empty_cache",
               "requests " + stat_text(c.requests) + ", blocks " + stat_text(c.blocks));
  checks.check(start.num_host_alloc == 0 && c.requests.allocated == 0 && start.host_alloc_time.count == 0,
               "stats: reset_accumulated_stats zeroes the totals");

  constexpr int kBlocks = 3;
  constexpr std::size_t kSize = 40000;
  {
    std::vector<at::DataPtr> held;
    for (int i = 0; i < kBlocks; ++i) held.push_back(allocator->allocate(kSize));
    at::HostStats s = allocator->get_stats();
    c = counters(s);
    checks.check(c.requests.current == kBlocks && c.requests.allocated == kBlocks, "stats: three blocks in use",
                 stat_text(c.requests));
    checks.check(c.blocks.current == kBlocks && s.num_host_alloc == kBlocks && s.host_alloc_time.count == kBlocks,
                 "stats: three blocks from the driver", stat_text(c.blocks) + ", num_host_alloc " + std::to_string(s.num_host_alloc));
    checks.check(c.active_bytes.current >= kBlocks * static_cast<std::int64_t>(kSize) &&
                     c.held_bytes.current == c.active_bytes.current,
                 "stats: bytes in use cover the requests, all of the held bytes",
                 "in use " + stat_text(c.active_bytes) + ", held " + stat_text(c.held_bytes));
  }
  c = counters(allocator->get_stats());
  checks.check(c.requests.current == 0 && c.requests.freed == kBlocks && c.requests.peak == kBlocks,
               "stats: the three frees are counted, the peak stays", stat_text(c.requests));
  checks.check(c.blocks.current == kBlocks && c.active_bytes.current == 0, "stats: freed blocks stay cached",
               stat_text(c.blocks));

  { at::DataPtr hit = allocator->allocate(kSize); }
  checks.check(allocator->get_stats().num_host_alloc == kBlocks, "stats: a cache hit asks the driver for nothing");

  allocator->empty_cache();
  at::HostStats emptied = allocator->get_stats();
  c = counters(emptied);
  checks.check(c.blocks.current == 0 && c.held_bytes.current == 0 && emptied.num_host_free == kBlocks,
               "stats: empty_cache gives the three blocks back",
               stat_text(c.blocks) + ", num_host_free " + std::to_string(emptied.num_host_free));
  allocator->reset_peak_stats();
  checks.check(counters(allocator->get_stats()).requests.peak == 0, "stats: reset_peak_stats brings peaks down to current");
}

void check_errors(Checks& checks, at::HostAllocator* allocator) {
  checks.throws<c10::Error>("allocate(SIZE_MAX) throws c10::Error naming the size", std::to_string(SIZE_MAX),
                            [&] { allocator->allocate(SIZE_MAX); });
  checks.throws<c10::Error>("the error says which call failed", "xpu_host_allocate failed",
                            [&] { allocator->allocate(SIZE_MAX / 2 + 2); });
  at::DataPtr after = allocator->allocate(4096);
  checks.check(after.get() != nullptr, "after an error the adapter still allocates");
}

void check_memory_limit(Checks& checks, at::HostAllocator* allocator, std::size_t limit) {
  allocator->empty_cache();
  checks.throws<c10::OutOfMemoryError>("beyond the driver's memory limit, allocate throws c10::OutOfMemoryError",
                                       "out of pinned host memory", [&] { allocator->allocate(2 * limit); });
  checks.throws<c10::OutOfMemoryError>("a tensor beyond the limit throws c10::OutOfMemoryError through ATen",
                                       "out of pinned host memory", [&] {
                                         xpu_host_test::FrontEnd front{allocator, nullptr, nullptr};
                                         xpu_host_test::pinned_empty(front, {static_cast<std::int64_t>(limit)});
                                       });
  at::DataPtr small = allocator->allocate(limit / 4);
  checks.check(small.get() != nullptr, "after out-of-memory, an allocation within the limit works");
}

}  // namespace

int main() {
  Checks checks("adapter_" + std::to_string(TORCH_VERSION_MAJOR) + "_" + std::to_string(TORCH_VERSION_MINOR) + "_test");
  check_registration(checks);
  at::HostAllocator* allocator = at::getHostAllocator(at::kXPU);
  xpu_host_test::FrontEnd front{
      allocator, [allocator](void* ptr, void* ctx) { return allocator->record_event(ptr, ctx, xpu_stream()); },
      [allocator] { allocator->empty_cache(); }};

  check_data_ptrs(checks, allocator);
  check_stats(checks, allocator);
  xpu_host_test::check_tensors_compute(checks, front);
  xpu_host_test::check_record_event(checks, front);
  xpu_host_test::check_stream_ordering_with_tensors(checks, front, xpu_host_test::xpu_stream_key(xpu_stream()));
  xpu_host_test::check_stream_ordering(
      checks, "stream ordering through record_event", xpu_host_test::xpu_stream_key(xpu_stream()),
      [&] { return allocator->allocate(8192); },
      [](const at::DataPtr& p) { return std::make_pair(p.get(), p.get_context()); },
      [&](const at::DataPtr& p) { return allocator->record_event(p.get(), p.get_context(), xpu_stream()); });
  check_errors(checks, allocator);
  if (const char* limit = std::getenv("ZE_SOFTWARE_DRIVER_HOST_MEMORY_LIMIT")) {
    check_memory_limit(checks, allocator, std::strtoull(limit, nullptr, 10));
  }
  return checks.finish();
}
