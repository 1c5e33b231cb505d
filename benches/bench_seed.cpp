// Subjects "seed-2.5.1" and "seed-2.15.0": PyTorch's own pinned-memory
// caching allocator for XPU, the `at::CachingHostAllocatorImpl` template of
// the wheel's real header ATen/core/CachingHostAllocator.h with the four
// overrides of that release's aten/src/ATen/xpu/CachingHostAllocator.cpp
// (2.5.1's is the seed this library replaces), on Intel's SYCL runtime over
// the software driver, as PyTorch XPU runs it:
//
//   allocate_host_memory  sycl::aligned_alloc_host(512, size, context)
//   free_block            sycl::free(ptr, context)
//   record_stream         XPUEvent::record(stream): a barrier on the stream's queue
//   query_event           XPUEvent::query(): the barrier's status is `complete`
//
// The context is the harness's (c10::xpu::get_device_context() in PyTorch),
// and a stream's queue is the harness's in-order queue of that id (what
// c10::xpu::XPUStream::queue() returns). XPUEvent is written out below as the
// wheels' ATen/xpu/XPUEvent.h (2.5) and c10/xpu/XPUEvent.h (2.15, for events
// without timing or IPC) have it: those headers need libc10_xpu, which the
// wheels do not hold. The allocator is wrapped in a c10::Allocator the way the
// XPU file wraps it (2.5: a CachingHostAllocatorInterface subclass whose
// allocate returns a DataPtr with raw_local_deleter; 2.15:
// DECLARE_HOST_ALLOCATOR). 2.15's XPU file turns the background thread off
// (pinned_use_background_threads returns false); with
// BENCH_TORCH_CONFIG_BACKGROUND=1 the template's own answer is used instead,
// read from PYTORCH_ALLOC_CONF (pinned_use_background_threads:True).
//
// BENCH_TORCH_VERSION is 205 or 215.
#include <ATen/core/CachingHostAllocator.h>
#include <c10/core/Stream.h>
#include <c10/core/impl/GPUTrace.h>

#include <memory>

#include "scenarios.h"

namespace {

// c10::xpu::XPUStream as the allocator uses it: one c10::Stream, hashable,
// constructible from a c10::Stream (2.8+ converts with S(stream)) and back,
// whose queue() is the harness's queue of that stream.
class BenchStream {
 public:
  explicit BenchStream(c10::Stream stream) : stream_(stream) {}
  c10::Stream unwrap() const { return stream_; }
  operator c10::Stream() const { return stream_; }  // as XPUStream converts
  std::int64_t id() const { return stream_.id(); }
  sycl::queue& queue() const { return bench::queue(stream_.id()); }
  bool operator==(const BenchStream& other) const { return stream_ == other.stream_; }
  bool operator!=(const BenchStream& other) const { return !(*this == other); }

 private:
  c10::Stream stream_;
};

c10::Stream xpu_stream(std::int64_t id) {
  return c10::Stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::XPU, 0), id);
}

// XPUEvent as the seed's (and 2.15's, without timing or IPC): created when
// first recorded, a new barrier on the stream's queue per record, complete
// when the barrier's status says so.
class XPUEvent {
 public:
  XPUEvent() noexcept = default;
  ~XPUEvent() {
    if (isCreated()) {
      const c10::impl::PyInterpreter* interp = c10::impl::GPUTrace::get_trace();
      if (C10_UNLIKELY(interp)) {
        (*interp)->trace_gpu_event_deletion(c10::kXPU, reinterpret_cast<uintptr_t>(event_.get()));
      }
    }
  }
  XPUEvent(const XPUEvent&) = delete;
  XPUEvent& operator=(const XPUEvent&) = delete;
  XPUEvent(XPUEvent&&) = default;
  XPUEvent& operator=(XPUEvent&&) = default;

  bool isCreated() const { return event_ != nullptr; }

  bool query() const {
    if (!isCreated()) return true;
    return event_->get_info<sycl::info::event::command_execution_status>() ==
           sycl::info::event_command_status::complete;
  }

  void record(const BenchStream& stream) {
    const bool first_record = !isCreated();
    event_.reset();
    event_ = std::make_unique<sycl::event>(stream.queue().ext_oneapi_submit_barrier());
    const c10::impl::PyInterpreter* interp = c10::impl::GPUTrace::get_trace();
    if (C10_UNLIKELY(interp)) {
      if (first_record) (*interp)->trace_gpu_event_creation(c10::kXPU, reinterpret_cast<uintptr_t>(event_.get()));
      (*interp)->trace_gpu_event_record(c10::kXPU, reinterpret_cast<uintptr_t>(event_.get()),
                                        reinterpret_cast<uintptr_t>(&stream.queue()));
    }
  }

 private:
  std::unique_ptr<sycl::event> event_;
};

}  // namespace

template <>
struct std::hash<BenchStream> {
  std::size_t operator()(const BenchStream& s) const noexcept { return std::hash<c10::Stream>{}(s.unwrap()); }
};

namespace {

using Block = at::HostBlock<BenchStream>;

constexpr std::size_t kHostAlignment = 512;

bool use_configured_background() {
  static bool configured = std::getenv("BENCH_TORCH_CONFIG_BACKGROUND") != nullptr;
  return configured;
}

struct XPUCachingHostAllocatorImpl : public at::CachingHostAllocatorImpl<BenchStream, XPUEvent> {
  void allocate_host_memory(size_t size, void** ptr) override {
    *ptr = sycl::aligned_alloc_host(kHostAlignment, size, bench::ze().sycl_context);
  }

  void free_block(Block* block) override { sycl::free(block->ptr_, bench::ze().sycl_context); }

  void record_stream(std::optional<std::vector<XPUEvent>>& events, BenchStream stream) override {
    XPUEvent event;
    event.record(stream);
    events->push_back(std::move(event));
  }

  bool query_event(XPUEvent& event) override { return event.query(); }

#if BENCH_TORCH_VERSION >= 215
  bool pinned_use_background_threads() override {
    return use_configured_background() && CachingHostAllocatorImpl::pinned_use_background_threads();
  }
  BenchStream get_current_stream() const override { return BenchStream(xpu_stream(0)); }
  bool stream_is_capturing(BenchStream) const override { return false; }
#endif
};

#if BENCH_TORCH_VERSION >= 215
DECLARE_HOST_ALLOCATOR(XPUCachingHostAllocator, XPUCachingHostAllocatorImpl, raw_local_deleter, caching_host_allocator)

// at::getHostAllocator(at::kXPU)->record_event(ptr, ctx, stream.unwrap())
__attribute__((noinline)) bool record_event(at::HostAllocator* allocator, void* ptr, void* ctx, std::int64_t id) {
  return allocator->record_event(ptr, ctx, xpu_stream(id));
}
#else
void raw_local_deleter(void* ptr);

struct XPUCachingHostAllocator final : public at::CachingHostAllocatorInterface<XPUCachingHostAllocatorImpl> {
  at::DataPtr allocate(size_t size) override {
    auto ptr_and_ctx = impl_->allocate(size);
    return {ptr_and_ctx.first, ptr_and_ctx.second, &raw_local_deleter, at::DeviceType::CPU};
  }
};

XPUCachingHostAllocator caching_host_allocator;

void raw_local_deleter(void* ptr) { caching_host_allocator.free(ptr); }

// at::xpu::CachingHostAllocator_recordEvent(ptr, ctx, stream)
__attribute__((noinline)) bool record_event(XPUCachingHostAllocator* allocator, void* ptr, void* ctx, std::int64_t id) {
  return allocator->record_event(ptr, ctx, BenchStream(xpu_stream(id)));
}
#endif

// getCachingHostAllocator() is in another translation unit in PyTorch: hide
// the object's type from the optimiser so that allocate stays a virtual call.
template <class T>
T* opaque(T* p) {
  asm volatile("" : "+r"(p));
  return p;
}

struct Seed {
  using Block = c10::DataPtr;
  static const char* name() {
#if BENCH_TORCH_VERSION >= 215
    return use_configured_background() ? "seed-2.15.0-configured" : "seed-2.15.0";
#else
    return "seed-2.5.1";
#endif
  }
  static constexpr bool has_streams = true;

  Seed() { bench::ze(); }

  Block allocate(std::size_t n) { return allocator->allocate(n); }
  static void* data(const Block& b) { return b.get(); }

  bool record(Block& b, std::int64_t stream) {
    return record_event(opaque(&caching_host_allocator), b.get(), b.get_context(), stream);
  }

  void empty_cache() { caching_host_allocator.empty_cache(); }

  void extra(bench::Json& out) {
#if BENCH_TORCH_VERSION >= 215
    out.add("background_thread", int(caching_host_allocator.impl_->pinned_use_background_threads()));
#endif
  }

  c10::Allocator* allocator = opaque<c10::Allocator>(&caching_host_allocator);
};

}  // namespace

int main(int argc, char** argv) { return bench::bench_main<Seed>(argc, argv); }
