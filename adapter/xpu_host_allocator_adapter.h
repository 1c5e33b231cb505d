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

#include <cstddef>
#include <cstdint>

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

  // The virtuals PyTorch added after 2.8 (2.11: private pools for graph
  // capture; 2.14: memory history, external registrations) keep
  // at::HostAllocator's defaults: not implemented, or nothing to record. The
  // seven above are declared alike from 2.8 to 2.15 (docs/ABI.md section 9).
};

// The process's adapter, a static object: DataPtrs it hands out may outlive
// anything else.
HostAllocatorAdapter& host_allocator();

// Makes the adapter PyTorch's host allocator for XPU, through
// at::setHostAllocator(at::kXPU, &host_allocator(), priority). PyTorch XPU
// registers its own with priority 0 from a static initialiser; the default 1
// wins over it whichever runs first. at::setHostAllocator is not thread-safe:
// call this before other threads use PyTorch.
void register_with_pytorch(std::uint8_t priority = 1);

}  // namespace xpu_host_allocator
