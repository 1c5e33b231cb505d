// Subject "floor": what scenario 1's cycle costs around any allocator, so that
// a target for that cycle can be read against what is left for the allocator
// itself. `c10::Allocator::allocate` through the vtable (the torch 2.5.1
// headers, as for "ours"), a DataPtr with a deleter, and its destruction; the
// allocator does next to nothing: variant `none` hands out one fixed buffer,
// `cas` also makes one atomic compare-and-swap on allocate and one on free, the
// least a block handed between threads needs. Scenario 1 only.
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

struct Floor {
  using Block = c10::DataPtr;
  Block allocate(std::size_t n) { return allocator->allocate(n); }
  static void* data(const Block& b) { return b.get(); }
  c10::Allocator* allocator;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "cycle") != 0) {
    std::fprintf(stderr, "usage: %s cycle [variant=none|cas] [key=value...]\n", argv[0]);
    return 2;
  }
  bench::Args args(argc, argv, 2);
  static Nothing nothing;
  static OneCas one_cas;
  std::string variant = args.text("variant", "none");
  if (variant != "none" && variant != "cas") bench::die("unknown variant `%s`", variant.c_str());
  Floor floor{variant == "cas" ? static_cast<c10::Allocator*>(&one_cas) : &nothing};
  bench::Json out;
  out.add("subject", "floor-" + variant).add("scenario", "cycle");
  bench::cycle(floor, args, out);
  out.print();
  std::fflush(nullptr);
  _exit(0);
}
