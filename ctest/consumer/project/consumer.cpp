// A program built against the INSTALLED library (by find_package or by
// pkg-config): the generated C header and PyTorch 2.4-2.7's mangled at::xpu::
// functions, declared here as PyTorch declares them (no PyTorch headers here).
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "xpu_caching_host_allocator.h"

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
}  // namespace xpu
}  // namespace c10

namespace at::xpu {
c10::Allocator* getCachingHostAllocator();
bool CachingHostAllocator_recordEvent(void* ptr, void* ctx, c10::xpu::XPUStream stream);
void CachingHostAllocator_emptyCache();
}  // namespace at::xpu

static int passed = 0;
static int failed = 0;

static void check(bool ok, const char* name) {
  ++(ok ? passed : failed);
  std::printf("consumer: %s %s%s%s\n", ok ? "ok  " : "FAIL", name, ok ? "" : ": ", ok ? "" : xpu_host_last_error_message());
}

int main() {
  check(xpu_host_init() == XPU_HOST_SUCCESS, "xpu_host_init finds the driver");

  void* data = nullptr;
  void* ctx = nullptr;
  check(xpu_host_allocate(4096, &data, &ctx) == XPU_HOST_SUCCESS && data != nullptr && ctx != nullptr, "xpu_host_allocate");
  if (data != nullptr) std::memset(data, 1, 4096);
  check(at::xpu::CachingHostAllocator_recordEvent(data, ctx, c10::xpu::XPUStream(0, 1)),
        "at::xpu::CachingHostAllocator_recordEvent on our block is true");
  int local = 0;
  check(!at::xpu::CachingHostAllocator_recordEvent(&local, &local, c10::xpu::XPUStream(0, 1)),
        "at::xpu::CachingHostAllocator_recordEvent on foreign memory is false");
  check(xpu_host_free(ctx) == XPU_HOST_SUCCESS, "xpu_host_free");

  check(at::xpu::getCachingHostAllocator() != nullptr &&
            static_cast<void*>(at::xpu::getCachingHostAllocator()) == getCachingHostAllocator(),
        "at::xpu::getCachingHostAllocator is the C getCachingHostAllocator");
  at::xpu::CachingHostAllocator_emptyCache();

  xpu_host_stats stats{sizeof(xpu_host_stats)};
  check(xpu_host_get_stats(&stats) == XPU_HOST_SUCCESS && stats.counters.active_requests.allocated >= 1, "xpu_host_get_stats counts the request");
  check(xpu_host_allocate(SIZE_MAX, &data, &ctx) == XPU_HOST_ERROR_SIZE_TOO_LARGE && std::strlen(xpu_host_last_error_message()) > 0,
        "an impossible size is an error code with a message");

  std::printf("consumer: %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
