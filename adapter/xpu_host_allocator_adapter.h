// xpu_caching_host_allocator as PyTorch 2.8+'s host allocator for XPU.
//
// From 2.8 PyTorch no longer links at::xpu::getCachingHostAllocator() and
// friends: it asks at::getHostAllocator(at::kXPU) for an at::HostAllocator, a
// C++ class whose vtable grows from release to release. This adapter is
// compiled against the PyTorch being built, so its vtable is always that
// PyTorch's, and forwards every call to the library's C API.
//
//   xpu_host_allocator::register_with_pytorch();   // once, before other threads use PyTorch
//   at::getHostAllocator(at::kXPU)                 // is now the adapter
//
// Errors arrive as c10 exceptions: c10::OutOfMemoryError when pinned memory
// runs out, c10::Error otherwise, with the library's message.
#pragma once

#include <ATen/core/CachingHostAllocator.h>
// TORCH_VERSION_MAJOR and TORCH_VERSION_MINOR: in every release from 2.8 under
// torch/csrc/api/include (from 2.10 it forwards to torch/headeronly/version.h).
#include <torch/version.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

// Which of at::HostAllocator's later virtuals this PyTorch declares
// (docs/ABI.md section 9). An override cannot be declared on a condition a
// type trait computes, so the release number decides; the adapter's source
// checks at compile time that the class agrees with it.
#define XPU_HOST_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))
// 2.11: begin_allocate_to_pool, end_allocate_to_pool, release_pool.
#define XPU_HOST_TORCH_HAS_POOLS XPU_HOST_TORCH_AT_LEAST(2, 11)
// 2.14: record_history, is_history_enabled, get_segments, get_traces,
// record_external_register, record_external_unregister.
#define XPU_HOST_TORCH_HAS_HISTORY XPU_HOST_TORCH_AT_LEAST(2, 14)

namespace xpu_host_allocator {

class HostAllocatorAdapter final : public at::HostAllocator {
 public:
  // Pinned host memory, 512-aligned. The DataPtr's context is the block; its
  // deleter frees the block. n == 0 gives a null DataPtr.
  at::DataPtr allocate(std::size_t n) override;

  // Host memory on both sides: a plain copy (Allocator::clone relies on it).
  void copy_data(void* dest, const void* src, std::size_t count) const override;

  // True if ctx (or else ptr as a block's base address) is a block of ours,
  // which `stream` now uses: it is not reused until the work submitted to the
  // stream so far has completed.
  bool record_event(void* ptr, void* ctx, c10::Stream stream) override;

  // Returns every free cached block to the driver.
  void empty_cache() override;

  at::HostStats get_stats() override;
  void reset_accumulated_stats() override;
  void reset_peak_stats() override;

  // The seven above are declared alike from 2.8 to 2.15; the ones below only
  // in the releases that have them (docs/ABI.md section 9).

#if XPU_HOST_TORCH_HAS_POOLS
  // Private pools for graph capture (2.11). Until end_allocate_to_pool, an
  // allocation whose current stream (the capture hooks' answer: c10's XPU
  // streams when the adapter is built with xpu_capture_hooks.cpp, else what
  // the program set with xpu_host_set_capture_hooks) `filter` accepts comes
  // from pool `pool_id`. An empty filter accepts every stream; a filter that
  // throws declines the stream. Errors (no capture hooks, the default pool
  // {0, 0}, a pool a capture already records to) are c10::Error and change
  // nothing.
  void begin_allocate_to_pool(c10::MempoolId_t pool_id, std::function<bool(c10::Stream)> filter) override;
  // c10::Error if no capture records to `pool_id`.
  void end_allocate_to_pool(c10::MempoolId_t pool_id) override;
  // Gives back the use one begin_allocate_to_pool took; at the last one the
  // pool's free blocks go back to the driver, and its blocks retired during
  // capture come back to the default pool once the streams that used them
  // are done. c10::Error for a pool not known (never begun, or released).
  void release_pool(c10::MempoolId_t pool_id) override;
#endif

#if XPU_HOST_TORCH_HAS_HISTORY
  // Memory history (2.14), kept by the library in a ring of at most
  // max_entries (0 is a c10::Error). Contexts come from context_recorder,
  // called outside the allocator's locks; the last recorder given stays in
  // use for contexts gathered from then on.
  void record_history(bool enabled, c10::CachingDeviceAllocator::CreateContextFn context_recorder,
                      std::size_t max_entries, c10::CachingDeviceAllocator::RecordContext when,
                      bool clear_history) override;
  bool is_history_enabled() const override;
  // One segment per block holding memory (blocks are never split for
  // PyTorch), then the external registrations recorded while history was on.
  std::vector<at::HostSegmentInfo> get_segments() override;
  // Oldest first; time_.t_ in microseconds since the Unix epoch, as
  // PyTorch's own getTraces leaves it; device -1, stream null.
  std::vector<c10::CachingDeviceAllocator::TraceEntry> get_traces() override;
  // Memory pinned outside the allocator, recorded in the history (nothing
  // with history off). A null ptr is a c10::Error; an unknown ptr on
  // unregister is ignored.
  void record_external_register(void* ptr, std::size_t size) override;
  void record_external_unregister(void* ptr) override;
#endif
};

// The process's adapter, a static object: DataPtrs it hands out may outlive
// anything else.
HostAllocatorAdapter& host_allocator();

// Makes the adapter PyTorch's host allocator for XPU, through
// at::setHostAllocator(at::kXPU, &host_allocator(), priority). PyTorch XPU
// registers its own with priority 0 from a static initialiser; the default 1
// wins over it whichever runs first. at::setHostAllocator is not thread-safe:
// call this before other threads use PyTorch.
//
// Built with xpu_capture_hooks.cpp (XPU_HOST_ALLOCATOR_XPU_CAPTURE_HOOKS
// defined, PyTorch 2.11 or later, an XPU build of PyTorch), it first gives the
// library c10's current XPU stream and capture state through
// xpu_host_set_capture_hooks; a c10::Error if the library refuses them (a
// capture is under way). Without it, a program that captures sets the hooks
// itself.
void register_with_pytorch(std::uint8_t priority = 1);

}  // namespace xpu_host_allocator
