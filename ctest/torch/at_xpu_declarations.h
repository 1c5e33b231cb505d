// PyTorch 2.4-2.7's ATen/xpu/CachingHostAllocator.h, which cannot be included
// here: through c10/xpu/XPUStream.h it pulls in SYCL. These are its three
// declarations, with a mirror of c10::xpu::XPUStream: the same name (so the
// same mangled names, docs/ABI.md section 1) and the same layout, one c10::Stream
// (docs/ABI.md section 2), held against the real c10::Stream below.
#pragma once

#include <c10/core/Allocator.h>
#include <c10/core/Stream.h>

#include <cstdint>
#include <type_traits>

#include "xpu_caching_host_allocator.h"

namespace c10::xpu {
class XPUStream {
 public:
  enum Unchecked { UNCHECKED };
  explicit XPUStream(Unchecked, Stream stream) : stream_(stream) {}
  Stream unwrap() const { return stream_; }

 private:
  Stream stream_;
};
static_assert(sizeof(XPUStream) == sizeof(c10::Stream) && sizeof(XPUStream) == 16, "XPUStream is one c10::Stream, 16 bytes");
static_assert(alignof(XPUStream) == alignof(c10::Stream) && alignof(XPUStream) == 8, "XPUStream aligns as c10::Stream");
static_assert(std::is_trivially_copyable_v<c10::Stream> && std::is_trivially_copyable_v<XPUStream>,
              "passed by value in two registers (docs/ABI.md section 2)");
}  // namespace c10::xpu

namespace at::xpu {
c10::Allocator* getCachingHostAllocator();
bool CachingHostAllocator_recordEvent(void* ptr, void* ctx, c10::xpu::XPUStream stream);
void CachingHostAllocator_emptyCache();
}  // namespace at::xpu

// The C layout of the stream argument is the one c10::Stream has.
static_assert(sizeof(xpu_host_stream) == sizeof(c10::Stream) && alignof(xpu_host_stream) == alignof(c10::Stream));
static_assert(static_cast<int>(c10::DeviceType::CPU) == 0 && static_cast<int>(c10::DeviceType::XPU) == 12);

namespace xpu_host_test {

// Stream `id` of XPU device 0, as PyTorch passes it, and as the C API names it.
inline c10::xpu::XPUStream xpu_stream(std::int64_t id) {
  return c10::xpu::XPUStream(c10::xpu::XPUStream::UNCHECKED,
                             c10::Stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::XPU, 0), id));
}

inline xpu_host_stream c_stream(std::int64_t id) { return xpu_host_stream{12, 0, id}; }

}  // namespace xpu_host_test
