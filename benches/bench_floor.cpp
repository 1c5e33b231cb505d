// Subject "floor": what scenarios 1 and 6 cost around any allocator, so that
// their targets can be read against what is left for the allocator itself.
// `c10::Allocator::allocate` through the vtable (the torch 2.5.1 headers, as
// for "ours"), a DataPtr with a deleter, and its destruction. For scenario 1's
// cycle the allocator does next to nothing: variant `none` hands out one fixed
// buffer, `cas` also makes one atomic compare-and-swap on allocate and one on
// free, the least a block handed between threads needs. For scenario 6's miss
// path, variant `raw` is raw zeMemAllocHost and zeMemFree behind that interface,
// with no cache.
#include <c10/core/Allocator.h>

#include <atomic>
#include <cstring>

#include "scenarios.h"

namespace {

// Scenario 1 frees each block before it allocates the next: one will do.
alignas(64) char buffer[64];
std::atomic<long> taken{0};

void free_nothing(void*) {}

void free_with_cas(void* context) {
  long expected = 1;
  static_cast<std::atomic<long>*>(context)->compare_exchange_strong(expected, 0);
}

struct Nothing final : c10::Allocator {
  c10::DataPtr allocate(std::size_t) override { return {buffer, buffer, &free_nothing, c10::Device(c10::DeviceType::CPU)}; }
  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }
};

struct OneCas final : c10::Allocator {
  c10::DataPtr allocate(std::size_t) override {
    long expected = 0;
    taken.compare_exchange_strong(expected, 1);
    return {buffer, &taken, &free_with_cas, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }
};

void free_raw(void* ptr) { bench::raw_free(ptr); }

struct Raw final : c10::Allocator {
  c10::DataPtr allocate(std::size_t n) override {
    void* ptr = bench::raw_allocate(n);
    return {ptr, ptr, &free_raw, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &free_raw; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }
};

struct Floor {
  using Block = c10::DataPtr;
  // Nothing is cached: each block went back to the driver when its DataPtr was destroyed.
  void empty_cache() {}
  Block allocate(std::size_t n) { return allocator->allocate(n); }
  static void* data(const Block& b) { return b.get(); }
  c10::Allocator* allocator;
};

}  // namespace

int main(int argc, char** argv) {
  std::string scenario = argc < 2 ? "" : argv[1];
  if (scenario != "cycle" && scenario != "miss") {
    std::fprintf(stderr, "usage: %s cycle [variant=none|cas] [key=value...]\n       %s miss [variant=raw] [key=value...]\n",
                 argv[0], argv[0]);
    return 2;
  }
  bench::Args args(argc, argv, 2);
  static Nothing nothing;
  static OneCas one_cas;
  static Raw raw;
  std::string variant = args.text("variant", scenario == "cycle" ? "none" : "raw");
  c10::Allocator* allocator = nullptr;
  if (scenario == "cycle" && variant == "none") allocator = &nothing;
  if (scenario == "cycle" && variant == "cas") allocator = &one_cas;
  if (scenario == "miss" && variant == "raw") allocator = &raw;
  if (!allocator) bench::die("unknown variant `%s` for %s", variant.c_str(), scenario.c_str());
  Floor floor{allocator};
  bench::Json out;
  out.add("subject", "floor-" + variant).add("scenario", scenario);
  if (scenario == "cycle")
    bench::cycle(floor, args, out);
  else
    bench::miss_path(floor, args, out);
  out.print();
  std::fflush(nullptr);
  _exit(0);
}
