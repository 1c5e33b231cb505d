// Real libtorch 2.5.1 tensors on our memory: compiled against the torch 2.5.1
// wheel and linked to its libtorch_cpu.so. Tensors are made with the
// allocator from at::xpu::getCachingHostAllocator(), computed on with ATen
// ops, resized, sliced and wrapped with from_blob, and freed by PyTorch; then
// what PyTorch's own xpu_caching_host_allocator_test checks, and the
// stream-ordering scenario, with tensors.
#include <ATen/ATen.h>

#include <cstdint>

#include "at_xpu_declarations.h"
#include "tensor_checks.h"

using xpu_host_test::Checks;

namespace {

constexpr std::int64_t kStreamId = 5;

bool record(void* ptr, void* ctx) {
  return at::xpu::CachingHostAllocator_recordEvent(ptr, ctx, xpu_host_test::xpu_stream(kStreamId));
}

}  // namespace

int main() {
  Checks checks("libtorch_2_5_test");
  xpu_host_test::FrontEnd front{at::xpu::getCachingHostAllocator(), record, at::xpu::CachingHostAllocator_emptyCache};
  xpu_host_test::check_tensors_compute(checks, front);
  xpu_host_test::check_record_event(checks, front);
  xpu_host_test::check_stream_ordering_with_tensors(checks, front, xpu_host_test::c_stream(kStreamId));
  return checks.finish();
}
