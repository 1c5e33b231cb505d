// The allocator through its SYCL integration (sycl/xpu_host_allocator_sycl.h),
// on Intel's SYCL runtime over the software driver. One mode per process: the
// integration is set up once, before the allocator's first use.
//
//   integration_test canary [barrier|last-event] [no-record]
//       Many iterations over two in-order queues while the driver delays every
//       command: host-to-device copies from our blocks and device-to-host
//       copies into them, each block recorded on its queue and freed at once;
//       whoever gets a block next writes its own pattern into it at once, and
//       some blocks are held for a while. A violation is a device copy that
//       did not read what its block held when it was enqueued, or a held
//       block whose pattern changed. With no-record the blocks are not
//       recorded: the negative control, which must find violations. Events
//       are made as RecordWith::BarrierUnlessIdle (the default), Barrier or
//       LastEventUnlessIdle (v2 only) says.
//       XPU_HOST_SYCL_CANARY_COPIES sets the number of device copies (4,000).
//   integration_test pinned     every block is host USM of the SYCL context
//   integration_test idle       a block recorded on a queue with nothing pending needs no event
//   integration_test out-of-memory   (run with a driver memory limit of 8 MiB)
//   integration_test lookup-failure
//   integration_test errors     a null lookup, a call after the allocator started
#include <sycl/sycl.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <string>
#include <vector>

#include "sycl_checks.h"
#include "xpu_caching_host_allocator.h"
#include "xpu_host_allocator_sycl.h"

namespace {

constexpr int kQueues = 2;
// Stream ids at and above kQueues have no queue; kThrowingStream's lookup throws.
constexpr std::int64_t kThrowingStream = 100;

struct Runtime {
  sycl::context context;
  sycl::device device;
  std::vector<sycl::queue> queues;
};

Runtime& runtime() {
  static Runtime runtime = [] {
    std::vector<sycl::device> devices = level_zero_platform().get_devices();
    sycl::context context(devices);
    std::vector<sycl::queue> queues;
    for (int i = 0; i < kQueues; ++i) queues.emplace_back(context, devices[0], sycl::property::queue::in_order());
    return Runtime{context, devices[0], std::move(queues)};
  }();
  return runtime;
}

xpu_host_stream stream(std::int64_t id) { return xpu_host_stream{12, 0, id}; }

sycl::queue* lookup(void* user_data, xpu_host_stream stream) {
  auto& queues = *static_cast<std::vector<sycl::queue>*>(user_data);
  if (stream.id == kThrowingStream) throw std::runtime_error("this lookup throws");
  return stream.id >= 0 && stream.id < static_cast<std::int64_t>(queues.size()) ? &queues[stream.id] : nullptr;
}

void use_runtime(xpu_host_allocator::RecordWith record_with = xpu_host_allocator::RecordWith::BarrierUnlessIdle) {
  xpu_host_allocator::use_sycl_context(runtime().context, lookup, &runtime().queues, record_with);
}

struct Block {
  void* data = nullptr;
  void* ctx = nullptr;
  std::uint64_t tag = 0;
};

xpu_host_counters stats() {
  xpu_host_stats s{sizeof(xpu_host_stats)};
  CHECK(xpu_host_get_stats(&s) == XPU_HOST_SUCCESS);
  return s.counters;
}

// ---- canary ---------------------------------------------------------------

constexpr std::size_t kBlockSize = 16 << 10;
constexpr std::size_t kWords = kBlockSize / sizeof(std::uint64_t);
constexpr int kBatch = 64;  // iterations between checks of the device buffers
constexpr std::size_t kHeld = 8;  // blocks held back at a time
// What device-to-host copies write: never a tag.
constexpr std::uint64_t kDeviceWord = 0xd0d0d0d0d0d0d0d0ull;

void fill(const Block& block) { std::fill_n(static_cast<std::uint64_t*>(block.data), kWords, block.tag); }

bool holds(const void* data, std::uint64_t word) {
  const auto* words = static_cast<const std::uint64_t*>(data);
  return std::all_of(words, words + kWords, [word](std::uint64_t w) { return w == word; });
}

class Canary {
 public:
  explicit Canary(bool record) : record_(record) {
    Runtime& rt = runtime();
    // Written by a copy: a fill of a pattern is a kernel, which host-only code has not.
    std::vector<std::uint64_t> device_words(kWords, kDeviceWord);
    for (sycl::queue& queue : rt.queues) {
      auto* source = static_cast<std::uint64_t*>(sycl::malloc_device(kBlockSize, rt.device, rt.context));
      queue.memcpy(source, device_words.data(), kBlockSize);
      sources_.push_back(source);
      for (int j = 0; j < kBatch; ++j) {
        targets_.push_back(static_cast<std::uint64_t*>(sycl::malloc_device(kBlockSize, rt.device, rt.context)));
      }
    }
    for (sycl::queue& queue : rt.queues) queue.wait();
  }

  ~Canary() {
    for (void* p : sources_) sycl::free(p, runtime().context);
    for (void* p : targets_) sycl::free(p, runtime().context);
  }

  void run(long copies) {
    while (copies_ < copies) batch();
    while (!held_.empty()) release_held();
    for (sycl::queue& queue : runtime().queues) queue.wait();
  }

  long copies() const { return copies_; }
  long checked() const { return checked_; }
  long violations() const { return violations_; }

 private:
  // A new block of ours, with its new owner's pattern written at once.
  Block take() {
    Block block;
    CHECK(xpu_host_allocate(kBlockSize, &block.data, &block.ctx) == XPU_HOST_SUCCESS);
    CHECK(sycl::get_pointer_type(block.data, runtime().context) == sycl::usm::alloc::host);
    block.tag = ++last_tag_;
    fill(block);
    return block;
  }

  void give_back(const Block& block, int queue) {
    if (record_) {
      bool recorded = false;
      CHECK(xpu_host_record_stream(block.data, block.ctx, stream(queue), &recorded) == XPU_HOST_SUCCESS);
      CHECK(recorded);
    }
    CHECK(xpu_host_free(block.ctx) == XPU_HOST_SUCCESS);
  }

  void release_held() {
    Block block = held_.front();
    held_.pop_front();
    ++checked_;
    if (!holds(block.data, block.tag)) ++violations_;  // a late device write landed in it
    CHECK(xpu_host_free(block.ctx) == XPU_HOST_SUCCESS);
  }

  void batch() {
    Runtime& rt = runtime();
    std::vector<std::uint64_t> expected(targets_.size());
    for (int j = 0; j < kBatch; ++j) {
      for (int q = 0; q < kQueues; ++q) {
        sycl::queue& queue = rt.queues[q];
        // Host to device: must read the pattern written before the enqueue.
        Block from = take();
        std::size_t target = q * kBatch + j;
        queue.memcpy(targets_[target], from.data, kBlockSize);
        expected[target] = from.tag;
        give_back(from, q);
        // Device to host: must land before anyone else gets the block.
        Block into = take();
        queue.memcpy(into.data, sources_[q], kBlockSize);
        give_back(into, q);
        copies_ += 2;
        held_.push_back(take());
        if (held_.size() > kHeld) release_held();
      }
    }
    std::vector<std::uint64_t> copy(kWords);
    for (int q = 0; q < kQueues; ++q) {
      for (int j = 0; j < kBatch; ++j) {
        std::size_t target = q * kBatch + j;
        rt.queues[q].memcpy(copy.data(), targets_[target], kBlockSize).wait();
        ++checked_;
        if (!holds(copy.data(), expected[target])) ++violations_;
      }
    }
  }

  bool record_;
  std::vector<std::uint64_t*> sources_, targets_;
  std::deque<Block> held_;
  std::uint64_t last_tag_ = 0;
  long copies_ = 0, checked_ = 0, violations_ = 0;
};

int canary(xpu_host_allocator::RecordWith record_with, const char* making, bool record) {
  use_runtime(record_with);
  const char* configured = std::getenv("XPU_HOST_SYCL_CANARY_COPIES");
  long copies = configured != nullptr ? std::atol(configured) : 4000;
  Canary canary(record);
  canary.run(copies);
  CHECK(xpu_host_empty_cache() == XPU_HOST_SUCCESS);
  xpu_host_counters s = stats();
  xpu_host_allocator::SyclEventCounts events = xpu_host_allocator::sycl_event_counts();
  std::printf("canary (%s, %s): %ld device copies, %ld checks, %ld violations; events: %llu recorded, "
              "%llu released, %llu not needed, %llu failed; %lld new blocks (num_host_alloc)\n",
              making, record ? "recorded" : "not recorded", canary.copies(),
              canary.checked(), canary.violations(), static_cast<unsigned long long>(events.recorded),
              static_cast<unsigned long long>(events.released), static_cast<unsigned long long>(events.not_needed),
              static_cast<unsigned long long>(events.failed), static_cast<long long>(s.num_host_alloc));
  if (!record) {
    CHECK(canary.violations() > 0);  // the negative control sees what recording prevents
    return report();
  }
  CHECK(canary.violations() == 0);
  // Every event released exactly once, and nothing held once emptied.
  CHECK(events.recorded > 0 && events.released == events.recorded && events.failed == 0);
  CHECK(s.active_requests.current == 0 && s.pending_blocks.current == 0);
  CHECK(s.allocations.current == 0 && s.allocated_bytes.current == 0);
  return report();
}

// ---- the other modes ------------------------------------------------------

int pinned() {
  use_runtime();
  std::vector<Block> blocks;
  for (std::size_t size : {1ul, 100ul, 512ul, 4095ul, 65536ul, 1ul << 20, 3ul << 20, 64ul << 20}) {
    for (int i = 0; i < 3; ++i) {
      Block block;
      CHECK(xpu_host_allocate(size, &block.data, &block.ctx) == XPU_HOST_SUCCESS);
      CHECK(reinterpret_cast<std::uintptr_t>(block.data) % 512 == 0);
      CHECK(sycl::get_pointer_type(block.data, runtime().context) == sycl::usm::alloc::host);
      CHECK(sycl::get_pointer_type(static_cast<char*>(block.data) + size - 1, runtime().context) ==
            sycl::usm::alloc::host);
      blocks.push_back(block);
    }
  }
  // The allocator's context is SYCL's own.
  ze_driver_handle_t driver = nullptr;
  ze_context_handle_t context = nullptr;
  CHECK(xpu_host_get_context(&driver, &context) == XPU_HOST_SUCCESS);
  CHECK(context == sycl::get_native<sycl::backend::ext_oneapi_level_zero>(runtime().context));
  for (const Block& block : blocks) CHECK(xpu_host_free(block.ctx) == XPU_HOST_SUCCESS);
  CHECK(xpu_host_empty_cache() == XPU_HOST_SUCCESS);
  return report();
}

// A block used on a queue whose work has all run: no event to wait for, and
// the block is handed out again at once.
int idle() {
  use_runtime();
  sycl::queue& queue = runtime().queues[0];
  queue.wait();
  Block block;
  CHECK(xpu_host_allocate(8192, &block.data, &block.ctx) == XPU_HOST_SUCCESS);
  bool recorded = false;
  CHECK(xpu_host_record_stream(block.data, block.ctx, stream(0), &recorded) == XPU_HOST_SUCCESS && recorded);
  CHECK(xpu_host_free(block.ctx) == XPU_HOST_SUCCESS);
  xpu_host_allocator::SyclEventCounts events = xpu_host_allocator::sycl_event_counts();
  CHECK(events.not_needed == 1 && events.recorded == 0);
  Block again;
  CHECK(xpu_host_allocate(8192, &again.data, &again.ctx) == XPU_HOST_SUCCESS);
  CHECK(again.data == block.data);
  CHECK(xpu_host_free(again.ctx) == XPU_HOST_SUCCESS);
  CHECK(xpu_host_empty_cache() == XPU_HOST_SUCCESS);
  xpu_host_counters s = stats();
  CHECK(s.allocations.current == 0 && s.pending_blocks.current == 0);
  return report();
}

// The driver holds at most 8 MiB: a bigger request fails with a clear error,
// and the allocator goes on serving what fits.
int out_of_memory() {
  use_runtime();
  Block big;
  CHECK(xpu_host_allocate(16 << 20, &big.data, &big.ctx) == XPU_HOST_ERROR_OUT_OF_MEMORY);
  std::string message = xpu_host_last_error_message();
  std::printf("error: %s\n", message.c_str());
  CHECK(message.find("zeMemAllocHost") != std::string::npos);
  CHECK(big.data == nullptr && big.ctx == nullptr);

  Block block;
  CHECK(xpu_host_allocate(1 << 20, &block.data, &block.ctx) == XPU_HOST_SUCCESS);
  std::memset(block.data, 0x3c, 1 << 20);
  sycl::queue& queue = runtime().queues[0];
  void* device_memory = sycl::malloc_device(1 << 20, runtime().device, runtime().context);
  queue.memcpy(device_memory, block.data, 1 << 20);
  bool recorded = false;
  CHECK(xpu_host_record_stream(block.data, block.ctx, stream(0), &recorded) == XPU_HOST_SUCCESS && recorded);
  CHECK(xpu_host_free(block.ctx) == XPU_HOST_SUCCESS);
  std::vector<unsigned char> back(1 << 20);
  queue.memcpy(back.data(), device_memory, 1 << 20).wait();
  CHECK(std::all_of(back.begin(), back.end(), [](unsigned char b) { return b == 0x3c; }));
  sycl::free(device_memory, runtime().context);
  CHECK(xpu_host_empty_cache() == XPU_HOST_SUCCESS);
  return report();
}

// A stream whose queue cannot be found: the free reports it, the block is
// retired (never handed out again), and the allocator goes on serving.
int lookup_failure() {
  use_runtime();
  for (std::int64_t id : {std::int64_t{7}, kThrowingStream}) {
    Block block;
    CHECK(xpu_host_allocate(4096, &block.data, &block.ctx) == XPU_HOST_SUCCESS);
    bool recorded = false;
    CHECK(xpu_host_record_stream(block.data, block.ctx, stream(id), &recorded) == XPU_HOST_SUCCESS && recorded);
    CHECK(xpu_host_free(block.ctx) == XPU_HOST_ERROR_LEVEL_ZERO);
    std::string message = xpu_host_last_error_message();
    std::printf("error: %s\n", message.c_str());
    CHECK(message.find("record hook failed") != std::string::npos);
    CHECK(message.find("retired") != std::string::npos);
    Block next;
    CHECK(xpu_host_allocate(4096, &next.data, &next.ctx) == XPU_HOST_SUCCESS);
    CHECK(next.data != block.data);
    CHECK(xpu_host_record_stream(next.data, next.ctx, stream(1), &recorded) == XPU_HOST_SUCCESS && recorded);
    CHECK(xpu_host_free(next.ctx) == XPU_HOST_SUCCESS);
  }
  CHECK(xpu_host_allocator::sycl_event_counts().failed == 2);
  return report();
}

int errors() {
  try {
    xpu_host_allocator::use_sycl_context(runtime().context, nullptr);
    CHECK(false);
  } catch (const xpu_host_allocator::Error& e) {
    CHECK(e.result() == XPU_HOST_ERROR_INVALID_ARGUMENT);
    CHECK(std::string(e.what()).find("lookup is null") != std::string::npos);
  }
  CHECK(xpu_host_init() == XPU_HOST_SUCCESS);
  try {
    use_runtime();
    CHECK(false);
  } catch (const xpu_host_allocator::Error& e) {
    std::printf("error: %s\n", e.what());
    CHECK(e.result() == XPU_HOST_ERROR_ALREADY_INITIALIZED);
    CHECK(std::string(e.what()).find("xpu_host_use_context failed") != std::string::npos);
  }
  // The allocator started on its own context, and still serves.
  Block block;
  CHECK(xpu_host_allocate(4096, &block.data, &block.ctx) == XPU_HOST_SUCCESS);
  CHECK(xpu_host_free(block.ctx) == XPU_HOST_SUCCESS);
  return report();
}

}  // namespace

int main(int argc, char** argv) try {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string mode = args.empty() ? "" : args[0];
  auto has = [&](const char* word) { return std::find(args.begin(), args.end(), word) != args.end(); };
  if (mode == "canary") {
    using xpu_host_allocator::RecordWith;
    if (has("barrier")) return canary(RecordWith::Barrier, "barriers", !has("no-record"));
    if (has("last-event")) return canary(RecordWith::LastEventUnlessIdle, "last events", !has("no-record"));
    return canary(RecordWith::BarrierUnlessIdle, "barriers unless idle", !has("no-record"));
  }
  if (mode == "pinned") return pinned();
  if (mode == "idle") return idle();
  if (mode == "out-of-memory") return out_of_memory();
  if (mode == "lookup-failure") return lookup_failure();
  if (mode == "errors") return errors();
  std::fprintf(stderr,
               "usage: %s canary [barrier|last-event] [no-record] | pinned | idle | out-of-memory | lookup-failure | "
               "errors\n",
               argv[0]);
  return 2;
} catch (const std::exception& e) {
  std::fprintf(stderr, "exception: %s\n", e.what());
  return 1;
}
