// Subject "floor": what scenarios 1 and 6 cost around any allocator, so that
// their targets can be read against what is left for the allocator itself.
// `c10::Allocator::allocate` through the vtable (the torch 2.5.1 headers, as
// for "ours"), a DataPtr with a deleter, and its destruction. For scenario 1's
// cycle the allocator does next to nothing: variant `none` hands out one fixed
// buffer, `cas` also makes one atomic compare-and-swap on allocate and one on
// free, the least a block handed between threads needs. `cache` is a cache of
// blocks per thread at its leanest: the block on top of the thread's stack for
// the request's power-of-two class, claimed with one compare-and-swap and put
// back with one, and four plain counters with a peak; `cache-plain` is the
// same with a plain load and store where those are. For scenario 6's miss
// path, variant `raw` is raw zeMemAllocHost and zeMemFree behind that interface,
// with no cache.
#include <c10/core/Allocator.h>

#include <algorithm>
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

// What every allocator here has beyond `allocate`: no raw deleter but its own
// (Raw), and a real copy.
struct FloorAllocator : c10::Allocator {
  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }
};

struct Nothing final : FloorAllocator {
  c10::DataPtr allocate(std::size_t) override { return {buffer, buffer, &free_nothing, c10::Device(c10::DeviceType::CPU)}; }
};

struct OneCas final : FloorAllocator {
  c10::DataPtr allocate(std::size_t) override {
    long expected = 0;
    taken.compare_exchange_strong(expected, 1);
    return {buffer, &taken, &free_with_cas, c10::Device(c10::DeviceType::CPU)};
  }
};

struct MiniBlock {
  std::atomic<unsigned long> state{kHandedOut};
  void* address;
  std::size_t size, requested, klass;
  static constexpr unsigned long kCached = 0, kHandedOut = 1;

  // One compare-and-swap, or (`atomic` false) a plain load and store.
  template <bool atomic>
  bool move(unsigned long from, unsigned long to) {
    if (atomic) return state.compare_exchange_strong(from, to);
    if (state.load(std::memory_order_relaxed) != from) return false;
    state.store(to, std::memory_order_relaxed);
    return true;
  }
};

// What one thread holds; the timed cycle never finds a stack empty or full.
struct MiniCache {
  MiniBlock* blocks[64][16];
  unsigned count[64];
  long requests, active, asked, cached, peak;
};
thread_local MiniCache mini;

template <bool atomic>
void free_to_mini(void* context) {
  auto* b = static_cast<MiniBlock*>(context);
  MiniCache& t = mini;
  unsigned& count = t.count[b->klass];
  if (count == 16 || !b->move<atomic>(MiniBlock::kHandedOut, MiniBlock::kCached))
    bench::die("floor-cache: a free it cannot cache");
  t.blocks[b->klass][count++] = b;
  t.requests -= 1;
  t.active -= b->size;
  t.asked -= b->requested;
  t.cached += b->size;
}

template <bool atomic>
struct MiniThreadCache final : FloorAllocator {
  c10::DataPtr allocate(std::size_t n) override {
    std::size_t klass = n < 2 ? 0 : 64 - __builtin_clzl(n - 1);
    MiniCache& t = mini;
    unsigned& count = t.count[klass];
    MiniBlock* b = count ? t.blocks[klass][count - 1] : nullptr;
    if (b && b->move<atomic>(MiniBlock::kCached, MiniBlock::kHandedOut)) {
      count -= 1;
      t.cached -= b->size;
    } else {
      // Only before the timed rounds; never given back.
      b = new MiniBlock;
      b->size = std::size_t(1) << klass;
      b->klass = klass;
      b->address = std::aligned_alloc(512, std::max<std::size_t>(b->size, 512));
    }
    b->requested = n;
    t.requests += 1;
    t.active += b->size;
    t.asked += n;
    if (t.active > t.peak) t.peak = t.active;
    return {b->address, b, &free_to_mini<atomic>, c10::Device(c10::DeviceType::CPU)};
  }
};

void free_raw(void* ptr) { bench::raw_free(ptr); }

struct Raw final : FloorAllocator {
  c10::DataPtr allocate(std::size_t n) override {
    void* ptr = bench::raw_allocate(n);
    return {ptr, ptr, &free_raw, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &free_raw; }
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
    std::fprintf(stderr, "usage: %s cycle [variant=none|cas|cache|cache-plain] [key=value...]\n       %s miss [variant=raw] [key=value...]\n",
                 argv[0], argv[0]);
    return 2;
  }
  bench::Args args(argc, argv, 2);
  static Nothing nothing;
  static OneCas one_cas;
  static MiniThreadCache<true> cache;
  static MiniThreadCache<false> cache_plain;
  static Raw raw;
  std::string variant = args.text("variant", scenario == "cycle" ? "none" : "raw");
  c10::Allocator* allocator = nullptr;
  if (scenario == "cycle" && variant == "none") allocator = &nothing;
  if (scenario == "cycle" && variant == "cas") allocator = &one_cas;
  if (scenario == "cycle" && variant == "cache") allocator = &cache;
  if (scenario == "cycle" && variant == "cache-plain") allocator = &cache_plain;
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
