// Shared by the two files of the extension xpu_caching_host_allocator._C.
#pragma once

#include <ATen/core/CachingHostAllocator.h>

namespace xpu_host_python {

// The host allocator PyTorch has for XPU, or null if none is registered.
at::HostAllocator* registered_host_allocator() noexcept;

// Whether `ptr` lies in memory the library holds (a block handed out,
// cached or waiting for events, or an external registration), as
// xpu_host_get_segments lists it.
bool library_holds(const void* ptr);

// The PrivateUse1 test backend (test_backend.cpp): hooks whose pinned-memory
// allocator is the host allocator registered for XPU, and a device guard for
// one device, so that tensor.pin_memory() and DataLoader(pin_memory=True)
// allocate from it on a CPU-only PyTorch. Registered once per process.
void register_test_backend();

}  // namespace xpu_host_python
