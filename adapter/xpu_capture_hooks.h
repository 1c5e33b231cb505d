// The library's capture hooks (xpu_host_set_capture_hooks) answered by c10's
// XPU API: the calling thread's current XPUStream, and whether that stream's
// SYCL queue is recording a graph. Only for an XPU build of PyTorch 2.11 or
// later (the first with private pools): xpu_capture_hooks.cpp includes
// c10/xpu/XPUStream.h, which needs SYCL's headers and libc10_xpu.
//
// adapter/CMakeLists.txt compiles it, and defines
// XPU_HOST_ALLOCATOR_XPU_CAPTURE_HOOKS for the adapter, when configured with
// -DXPU_HOST_ALLOCATOR_ADAPTER_XPU_CAPTURE_HOOKS=ON; register_with_pytorch()
// then installs the hooks. A PyTorch build that compiles the adapter's files
// itself does the same: compile xpu_capture_hooks.cpp too and define the macro.
#pragma once

namespace xpu_host_allocator {

// Hands the hooks to xpu_host_set_capture_hooks; c10::Error if it refuses.
void install_xpu_capture_hooks();

}  // namespace xpu_host_allocator
