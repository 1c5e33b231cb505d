// Links a C++ caller written against PyTorch 2.4-2.7's at::xpu declarations
// (ATen/xpu/CachingHostAllocator.h, which cannot be included here: it pulls in
// SYCL) and calls each through its mangled name. The types mirror c10's; the
// torch ABI test asserts that mirror against the real c10::Stream.
#include <cstdint>
#include <cstdio>

namespace c10 {
struct Allocator;
namespace xpu {
// c10::xpu::XPUStream: one c10::Stream {Device{int8 type, int8 index}, int64 id}.
class XPUStream {
 public:
  XPUStream(std::int8_t device_index, std::int64_t id) : type_(12), index_(device_index), id_(id) {}
 private:
  std::int8_t type_;
  std::int8_t index_;
  std::int64_t id_;
};
static_assert(sizeof(XPUStream) == 16 && alignof(XPUStream) == 8, "XPUStream is two eightbytes");
}  // namespace xpu
}  // namespace c10

namespace at::xpu {
c10::Allocator* getCachingHostAllocator();
bool CachingHostAllocator_recordEvent(void* ptr, void* ctx, c10::xpu::XPUStream stream);
void CachingHostAllocator_emptyCache();
}  // namespace at::xpu

int main() {
  c10::Allocator* allocator = at::xpu::getCachingHostAllocator();
  int local = 0;
  bool foreign = at::xpu::CachingHostAllocator_recordEvent(&local, &local, c10::xpu::XPUStream(0, 0));
  at::xpu::CachingHostAllocator_emptyCache();
  if (allocator == nullptr || foreign) {
    std::fprintf(stderr, "link_test: allocator=%p, foreign memory recorded=%d\n", static_cast<void*>(allocator), foreign);
    return 1;
  }
  std::printf("link_test: the three at::xpu symbols resolve and answer\n");
  return 0;
}
