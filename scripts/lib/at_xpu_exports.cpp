// Compiled by scripts/check-xpu-exports against the real
// ATen/xpu/CachingHostAllocator.h of each PyTorch release from 2.4 to 2.7
// (docs/ABI.md sections 1 and 2). The object's undefined at::xpu:: symbols are
// the names a PyTorch XPU build of that release links, which the script finds
// among the library's exports; and the XPUStream that recordEvent takes by
// value travels as xpu_host_stream does, in two integer registers.
#include <ATen/xpu/CachingHostAllocator.h>

#include <type_traits>

#include "xpu_caching_host_allocator.h"

static_assert(sizeof(c10::xpu::XPUStream) == sizeof(xpu_host_stream), "XPUStream is 16 bytes, as xpu_host_stream");
static_assert(alignof(c10::xpu::XPUStream) == alignof(xpu_host_stream), "XPUStream is 8-aligned, as xpu_host_stream");
static_assert(std::is_trivially_copyable_v<c10::xpu::XPUStream> &&
                  std::is_trivially_destructible_v<c10::xpu::XPUStream>,
              "XPUStream is passed in registers, not through memory");

// Used, so that the object names the symbol each declaration mangles to.
extern void* const at_xpu_exports[3];
void* const at_xpu_exports[3] = {
    reinterpret_cast<void*>(&at::xpu::getCachingHostAllocator),
    reinterpret_cast<void*>(&at::xpu::CachingHostAllocator_recordEvent),
    reinterpret_cast<void*>(&at::xpu::CachingHostAllocator_emptyCache),
};
