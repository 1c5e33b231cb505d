// Subject "ours": this library, reached only as PyTorch 2.4-2.7 reaches it:
// `at::xpu::getCachingHostAllocator()` (a c10::Allocator*, compiled against
// the real torch 2.5.1 headers), DataPtr destruction, and
// `at::xpu::CachingHostAllocator_recordEvent`, whose events go on the
// library's own command list per stream. It allocates in the harness's
// context, handed over with xpu_host_use_context as PyTorch's start-up would.
#include "scenarios.h"
#include "xpu_caching_host_allocator.h"
// PyTorch 2.4-2.7's at::xpu declarations, with c10::xpu::XPUStream as what it
// is: one c10::Stream (ATen/xpu/CachingHostAllocator.h pulls in SYCL).
#include "at_xpu_declarations.h"

namespace {

struct Ours {
  using Block = c10::DataPtr;
  static const char* name() { return "ours"; }
  static constexpr bool has_streams = true;

  Ours() {
    if (xpu_host_use_context(bench::ze().driver, bench::ze().context) != XPU_HOST_SUCCESS ||
        xpu_host_init() != XPU_HOST_SUCCESS)
      bench::die("our allocator did not start: %s", xpu_host_last_error_message());
    allocator = at::xpu::getCachingHostAllocator();
  }

  Block allocate(std::size_t n) { return allocator->allocate(n); }
  static void* data(const Block& b) { return b.get(); }

  bool record(Block& b, std::int64_t stream) {
    c10::xpu::XPUStream s(c10::xpu::XPUStream::UNCHECKED,
                          c10::Stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::XPU, 0), stream));
    return at::xpu::CachingHostAllocator_recordEvent(b.get(), b.get_context(), s);
  }

  template <class F>
  void submit(std::int64_t stream, F f) {
    auto trampoline = [](void* user, ze_command_list_handle_t list) -> ze_result_t {
      (*static_cast<F*>(user))(list);
      return ZE_RESULT_SUCCESS;
    };
    if (xpu_host_stream_submit(xpu_host_stream{12, 0, stream}, trampoline, &f) != XPU_HOST_SUCCESS)
      bench::die("xpu_host_stream_submit: %s", xpu_host_last_error_message());
  }

  void empty_cache() { at::xpu::CachingHostAllocator_emptyCache(); }

  void extra(bench::Json& out) {
    xpu_host_stats stats{};
    if (xpu_host_get_stats(&stats) != XPU_HOST_SUCCESS) bench::die("xpu_host_get_stats failed");
    out.add("stats_allocated_bytes_peak", stats.allocated_bytes.peak);
    out.add("stats_requested_bytes_peak", stats.requested_bytes.peak);
    out.add("stats_cache_hits", stats.cache_hits).add("stats_cache_misses", stats.cache_misses);
    out.add("conf", bench::env_or("XPU_CACHING_HOST_ALLOCATOR_CONF", ""));
  }

  c10::Allocator* allocator = nullptr;
};

}  // namespace

int main(int argc, char** argv) { return bench::bench_main<Ours>(argc, argv); }
