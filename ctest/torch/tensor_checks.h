// Checks with real ATen tensors on memory from one of our front ends (the
// at::xpu:: functions of PyTorch 2.4-2.7, or the at::HostAllocator adapter of
// 2.8+): tensors made with its allocator, computed on with ATen ops, resized,
// sliced and wrapped with from_blob, and freed by PyTorch; what PyTorch's own
// xpu_caching_host_allocator_test checks; and the stream-ordering scenario.
// Header-only, so each test compiles it against its own torch headers.
#pragma once

#include <ATen/ATen.h>
#include <ATen/EmptyTensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "test_support.h"

namespace xpu_host_test {

// A c10::Stream as the C API names it (the layout of docs/ABI.md section 2).
inline xpu_host_stream xpu_stream_key(const c10::Stream& stream) {
  return {static_cast<std::int8_t>(stream.device_type()), static_cast<std::int8_t>(stream.device_index()), stream.id()};
}

// How a test reaches the allocator.
struct FrontEnd {
  c10::Allocator* allocator;
  // recordEvent(ptr, ctx) on the test's stream.
  std::function<bool(void*, void*)> record;
  std::function<void()> empty_cache;
};

// A CPU tensor whose storage comes from our allocator: what empty(..., pin_memory=True)
// makes in an XPU build.
inline at::Tensor pinned_empty(const FrontEnd& front, at::IntArrayRef sizes, at::ScalarType dtype = at::kFloat) {
  return at::Tensor(at::detail::empty_generic(sizes, front.allocator,
                                              c10::DispatchKeySet(c10::DispatchKey::CPU), dtype,
                                              c10::MemoryFormat::Contiguous));
}

inline void* context_of(const at::Tensor& t) { return t.storage().data_ptr().get_context(); }

inline std::int64_t active_requests() {
  xpu_host_stats stats{sizeof(xpu_host_stats)};
  xpu_host_get_stats(&stats);
  return stats.counters.active_requests.current;
}

inline void check_tensors_compute(Checks& checks, const FrontEnd& front) {
  std::int64_t active_before = active_requests();
  {
    at::Tensor a = pinned_empty(front, {64, 32});
    checks.check(a.storage().allocator() == front.allocator, "the tensor's storage uses our allocator");
    checks.check(reinterpret_cast<std::uintptr_t>(a.data_ptr()) % 512 == 0, "the tensor's data is 512-aligned");
    checks.check(a.device().is_cpu(), "the tensor is a CPU tensor", a.device().str());
    checks.check(active_requests() == active_before + 1, "the allocator counts the tensor's block as in use");

    a.copy_(at::arange(64 * 32, at::kFloat).reshape({64, 32}));
    at::Tensor b = pinned_empty(front, {32, 16});
    b.fill_(0.5);
    at::Tensor product = at::mm(a, b);
    at::Tensor expected = at::mm(at::arange(64 * 32, at::kFloat).reshape({64, 32}), at::full({32, 16}, 0.5));
    checks.check(at::allclose(product, expected), "mm of two tensors on our memory is right");
    at::Tensor into = pinned_empty(front, {64, 16});
    at::mm_out(into, a, b);
    checks.check(at::equal(into, product), "mm_out writes into a tensor on our memory");
    checks.check(a.sum().item<double>() == (64.0 * 32 - 1) * 64 * 32 / 2, "sum over our memory is right");

    at::Tensor doubles = pinned_empty(front, {1000}, at::kDouble);
    doubles.uniform_(-1, 1);
    checks.check((doubles.abs() <= 1).all().item<bool>(), "an in-place random fill of a double tensor stays in range");

    // Growing a tensor makes PyTorch allocate a bigger block from the storage's
    // allocator and copy the old bytes over.
    at::Tensor grown = pinned_empty(front, {100});
    grown.copy_(at::arange(100, at::kFloat));
    void* old_data = grown.data_ptr();
    grown.resize_({100000});
    checks.check(grown.storage().allocator() == front.allocator, "resize_ keeps our allocator");
    checks.check(grown.data_ptr() != old_data && front.record(grown.data_ptr(), context_of(grown)),
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

inline void check_record_event(Checks& checks, const FrontEnd& front) {
  {
    at::Tensor pinned = pinned_empty(front, {1024});
    void* base = pinned.data_ptr();
    checks.check(front.record(base, context_of(pinned)), "recordEvent on a pinned tensor is true");
    at::Tensor alias = at::from_blob(base, {1024}, at::kFloat);
    checks.check(front.record(alias.data_ptr(), context_of(alias)),
                 "recordEvent on a from_blob alias of the base pointer is true (ctx " + pointer_text(context_of(alias)) + ")");
    at::Tensor with_deleter = at::from_blob(base, {1024}, [](void*) {}, at::kFloat);
    checks.check(context_of(with_deleter) != nullptr && front.record(with_deleter.data_ptr(), context_of(with_deleter)),
                 "recordEvent on a from_blob alias with a deleter (a foreign context) is true");
    at::Tensor slice = pinned.slice(0, 100, 200);
    checks.check(front.record(slice.data_ptr(), context_of(slice)), "recordEvent on a slice is true");
    at::Tensor interior = at::from_blob(static_cast<float*>(base) + 100, {100}, at::kFloat);
    checks.check(!front.record(interior.data_ptr(), context_of(interior)), "recordEvent on a from_blob of an interior pointer is false");
  }
  at::Tensor ordinary = at::ones({1024});
  checks.check(!front.record(ordinary.data_ptr(), context_of(ordinary)), "recordEvent on an ordinary CPU tensor is false");

  void* data = nullptr;
  void* ctx = nullptr;
  {
    at::Tensor t = pinned_empty(front, {3000});
    data = t.data_ptr();
    ctx = context_of(t);
  }
  {
    at::Tensor t = pinned_empty(front, {3000});
    checks.check(t.data_ptr() == data && context_of(t) == ctx,
                 "a freed block of the same size is reused (same data pointer, same context)");
  }
  front.empty_cache();
  checks.check(!front.record(data, ctx), "recordEvent on a stale pointer and context after emptyCache is false");
}

// The stream-ordering scenario with tensors: `stream` is the one front.record records on.
inline void check_stream_ordering_with_tensors(Checks& checks, const FrontEnd& front, xpu_host_stream stream) {
  check_stream_ordering(
      checks, "stream ordering with tensors", stream,
      [&] {
        at::Tensor t = pinned_empty(front, {4096});
        t.fill_(1);
        return t;
      },
      [](const at::Tensor& t) { return std::make_pair(t.data_ptr(), context_of(t)); },
      [&](const at::Tensor& t) { return front.record(t.data_ptr(), context_of(t)); });
}

}  // namespace xpu_host_test
