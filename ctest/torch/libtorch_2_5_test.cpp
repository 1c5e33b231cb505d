// Real libtorch 2.5.1 tensors on our memory: compiled against the torch 2.5.1
// wheel and linked to its libtorch_cpu.so. Tensors are made with the
// allocator from at::xpu::getCachingHostAllocator(), computed on with ATen
// ops, resized, sliced and wrapped with from_blob, and freed by PyTorch; then
// what PyTorch's own xpu_caching_host_allocator_test checks, and the
// stream-ordering scenario, with tensors.
#include <ATen/ATen.h>
#include <ATen/EmptyTensor.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "test_support.h"

// ATen/xpu/CachingHostAllocator.h pulls in SYCL; see c10_abi_test.cpp for why
// these declarations and this mirror are exact.
namespace c10::xpu {
class XPUStream {
 public:
  enum Unchecked { UNCHECKED };
  explicit XPUStream(Unchecked, Stream stream) : stream_(stream) {}

 private:
  Stream stream_;
};
static_assert(sizeof(XPUStream) == sizeof(c10::Stream) && alignof(XPUStream) == alignof(c10::Stream) &&
              std::is_trivially_copyable_v<XPUStream>);
}  // namespace c10::xpu

namespace at::xpu {
c10::Allocator* getCachingHostAllocator();
bool CachingHostAllocator_recordEvent(void* ptr, void* ctx, c10::xpu::XPUStream stream);
void CachingHostAllocator_emptyCache();
}  // namespace at::xpu

using xpu_host_test::Checks;
using xpu_host_test::pointer_text;

namespace {

constexpr std::int64_t kStreamId = 5;
const xpu_host_stream kStream = {12, 0, kStreamId};

bool record(void* ptr, void* ctx) {
  c10::Stream stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::XPU, 0), kStreamId);
  return at::xpu::CachingHostAllocator_recordEvent(ptr, ctx, c10::xpu::XPUStream(c10::xpu::XPUStream::UNCHECKED, stream));
}

// A CPU tensor whose storage comes from our allocator: what empty(..., pin_memory=True)
// makes in an XPU build.
at::Tensor pinned_empty(at::IntArrayRef sizes, at::ScalarType dtype = at::kFloat) {
  return at::Tensor(at::detail::empty_generic(sizes, at::xpu::getCachingHostAllocator(),
                                              c10::DispatchKeySet(c10::DispatchKey::CPU), dtype,
                                              c10::MemoryFormat::Contiguous));
}

void* context_of(const at::Tensor& t) { return t.storage().data_ptr().get_context(); }

std::int64_t active_requests() {
  xpu_host_stats stats{};
  xpu_host_get_stats(&stats);
  return stats.active_requests.current;
}

void check_tensors_compute(Checks& checks) {
  std::int64_t active_before = active_requests();
  {
    at::Tensor a = pinned_empty({64, 32});
    checks.check(a.storage().allocator() == at::xpu::getCachingHostAllocator(), "the tensor's storage uses our allocator");
    checks.check(reinterpret_cast<std::uintptr_t>(a.data_ptr()) % 512 == 0, "the tensor's data is 512-aligned");
    checks.check(a.device().is_cpu(), "the tensor is a CPU tensor", a.device().str());
    checks.check(active_requests() == active_before + 1, "the allocator counts the tensor's block as in use");

    a.copy_(at::arange(64 * 32, at::kFloat).reshape({64, 32}));
    at::Tensor b = pinned_empty({32, 16});
    b.fill_(0.5);
    at::Tensor product = at::mm(a, b);
    at::Tensor expected = at::mm(at::arange(64 * 32, at::kFloat).reshape({64, 32}), at::full({32, 16}, 0.5));
    checks.check(at::allclose(product, expected), "mm of two tensors on our memory is right");
    at::Tensor into = pinned_empty({64, 16});
    at::mm_out(into, a, b);
    checks.check(at::equal(into, product), "mm_out writes into a tensor on our memory");
    checks.check(a.sum().item<double>() == (64.0 * 32 - 1) * 64 * 32 / 2, "sum over our memory is right");

    at::Tensor doubles = pinned_empty({1000}, at::kDouble);
    doubles.uniform_(-1, 1);
    checks.check((doubles.abs() <= 1).all().item<bool>(), "an in-place random fill of a double tensor stays in range");

    // Growing a tensor makes PyTorch allocate a bigger block from the storage's
    // allocator and copy the old bytes over.
    at::Tensor grown = pinned_empty({100});
    grown.copy_(at::arange(100, at::kFloat));
    void* old_data = grown.data_ptr();
    grown.resize_({100000});
    checks.check(grown.storage().allocator() == at::xpu::getCachingHostAllocator(), "resize_ keeps our allocator");
    checks.check(grown.data_ptr() != old_data && record(grown.data_ptr(), context_of(grown)),
                 "resize_ to a bigger size moves the tensor to a new block of ours");
    checks.check(at::equal(grown.narrow(0, 0, 100), at::arange(100, at::kFloat)), "resize_ keeps the old values");
    grown.resize_({10});
    checks.check(grown.data_ptr() != nullptr && grown.numel() == 10, "resize_ to a smaller size keeps the block");

    at::Tensor rows = a.slice(0, 10, 20);
    checks.check(context_of(rows) == context_of(a) && rows.data_ptr() != a.data_ptr(),
                 "a slice shares the block (same context, interior pointer)");
    rows.mul_(2);
    checks.check(a[15][3].item<float>() == 2 * (15 * 32 + 3), "writing through a slice writes our memory");

    at::Tensor alias = at::from_blob(a.data_ptr(), {64 * 32}, at::kFloat);
    checks.check(alias[40].item<float>() == a.view({-1})[40].item<float>(), "from_blob reads our memory");
    checks.check(active_requests() == active_before + 5, "five blocks in use: a, b, into, doubles, grown (product is not ours, resize_ freed grown's first block)",
                 std::to_string(active_requests() - active_before));
  }
  checks.check(active_requests() == active_before, "PyTorch frees every block when its tensors go away",
               std::to_string(active_requests() - active_before) + " still in use");
}

void check_record_event(Checks& checks) {
  {
    at::Tensor pinned = pinned_empty({1024});
    void* base = pinned.data_ptr();
    checks.check(record(base, context_of(pinned)), "recordEvent on a pinned tensor is true");
    at::Tensor alias = at::from_blob(base, {1024}, at::kFloat);
    checks.check(record(alias.data_ptr(), context_of(alias)),
                 "recordEvent on a from_blob alias of the base pointer is true (ctx " + pointer_text(context_of(alias)) + ")");
    at::Tensor with_deleter = at::from_blob(base, {1024}, [](void*) {}, at::kFloat);
    checks.check(context_of(with_deleter) != nullptr && record(with_deleter.data_ptr(), context_of(with_deleter)),
                 "recordEvent on a from_blob alias with a deleter (a foreign context) is true");
    at::Tensor slice = pinned.slice(0, 100, 200);
    checks.check(record(slice.data_ptr(), context_of(slice)), "recordEvent on a slice is true");
    at::Tensor interior = at::from_blob(static_cast<float*>(base) + 100, {100}, at::kFloat);
    checks.check(!record(interior.data_ptr(), context_of(interior)), "recordEvent on a from_blob of an interior pointer is false");
  }
  at::Tensor ordinary = at::ones({1024});
  checks.check(!record(ordinary.data_ptr(), context_of(ordinary)), "recordEvent on an ordinary CPU tensor is false");

  void* data = nullptr;
  void* ctx = nullptr;
  {
    at::Tensor t = pinned_empty({3000});
    data = t.data_ptr();
    ctx = context_of(t);
  }
  {
    at::Tensor t = pinned_empty({3000});
    checks.check(t.data_ptr() == data && context_of(t) == ctx,
                 "a freed block of the same size is reused (same data pointer, same context)");
  }
  at::xpu::CachingHostAllocator_emptyCache();
  checks.check(!record(data, ctx), "recordEvent on a stale pointer and context after emptyCache is false");
}

}  // namespace

int main() {
  Checks checks("libtorch_2_5_test");
  check_tensors_compute(checks);
  check_record_event(checks);
  xpu_host_test::check_stream_ordering(
      checks, "stream ordering with tensors", kStream,
      [] {
        at::Tensor t = pinned_empty({4096});
        t.fill_(1);
        return t;
      },
      [](const at::Tensor& t) { return std::make_pair(t.data_ptr(), context_of(t)); },
      [](const at::Tensor& t) { return record(t.data_ptr(), context_of(t)); });
  return checks.finish();
}
