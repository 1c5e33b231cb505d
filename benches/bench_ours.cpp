// Subject "ours": this library, reached only as PyTorch 2.4-2.7 reaches it:
// `at::xpu::getCachingHostAllocator()` (a c10::Allocator*, compiled against
// the real torch 2.5.1 headers), DataPtr destruction, and
// `at::xpu::CachingHostAllocator_recordEvent`. It is set up as PyTorch's
// start-up would set it up, through the SYCL integration
// (sycl/xpu_host_allocator_sycl.h): memory in the harness's SYCL context,
// events on the harness's queue of each stream, made as RecordWith says:
// BarrierUnlessIdle (the default), or with BENCH_OURS_RECORD=barrier Barrier
// (subject "ours-barrier"), =last-event LastEventUnlessIdle ("ours-last-event").
// BENCH_OURS_HISTORY=N records memory history, N entries at most, with no
// context recorder (what scenario 1's history row measures).
#include "scenarios.h"
#include "xpu_caching_host_allocator.h"
#include "xpu_host_allocator_sycl.h"
// PyTorch 2.4-2.7's at::xpu declarations, with c10::xpu::XPUStream as what it
// is: one c10::Stream (ATen/xpu/CachingHostAllocator.h pulls in SYCL).
#include "at_xpu_declarations.h"

namespace {

using xpu_host_allocator::RecordWith;

RecordWith record_with() {
  std::string asked = bench::env_or("BENCH_OURS_RECORD", "");
  if (asked == "barrier") return RecordWith::Barrier;
  if (asked == "last-event") return RecordWith::LastEventUnlessIdle;
  if (!asked.empty()) bench::die("BENCH_OURS_RECORD=%s: expected barrier or last-event", asked.c_str());
  return RecordWith::BarrierUnlessIdle;
}

sycl::queue* stream_queue(void*, xpu_host_stream stream) { return &bench::queue(stream.id); }

struct Ours {
  using Block = c10::DataPtr;
  static const char* name() {
    switch (record_with()) {
      case RecordWith::Barrier:
        return "ours-barrier";
      case RecordWith::LastEventUnlessIdle:
        return "ours-last-event";
      default:
        return "ours";
    }
  }
  static constexpr bool has_streams = true;

  Ours() {
    try {
      xpu_host_allocator::use_sycl_context(bench::ze().sycl_context, stream_queue, nullptr, record_with());
    } catch (const xpu_host_allocator::Error& e) {
      bench::die("use_sycl_context: %s", e.what());
    }
    if (xpu_host_init() != XPU_HOST_SUCCESS) bench::die("our allocator did not start: %s", xpu_host_last_error_message());
    long history = std::stol(bench::env_or("BENCH_OURS_HISTORY", "0"));
    if (history > 0 &&
        xpu_host_record_history(true, std::size_t(history), XPU_HOST_RECORD_CONTEXT_ALL, nullptr, false) != XPU_HOST_SUCCESS) {
      bench::die("xpu_host_record_history: %s", xpu_host_last_error_message());
    }
    allocator = at::xpu::getCachingHostAllocator();
  }

  Block allocate(std::size_t n) { return allocator->allocate(n); }
  static void* data(const Block& b) { return b.get(); }

  bool record(Block& b, std::int64_t stream) {
    c10::xpu::XPUStream s(c10::xpu::XPUStream::UNCHECKED,
                          c10::Stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::XPU, 0), stream));
    return at::xpu::CachingHostAllocator_recordEvent(b.get(), b.get_context(), s);
  }

  void empty_cache() { at::xpu::CachingHostAllocator_emptyCache(); }

  void extra(bench::Json& out) {
    xpu_host_stats stats{sizeof(xpu_host_stats)};
    if (xpu_host_get_stats(&stats) != XPU_HOST_SUCCESS) bench::die("xpu_host_get_stats failed");
    const xpu_host_counters& counters = stats.counters;
    out.add("stats_allocated_bytes_peak", counters.allocated_bytes.peak);
    out.add("stats_requested_bytes_peak", counters.requested_bytes.peak);
    out.add("stats_cache_hits", counters.cache_hits).add("stats_cache_misses", counters.cache_misses);
    out.add("conf", bench::env_or("XPU_CACHING_HOST_ALLOCATOR_CONF", ""));
    out.add("history", bench::env_or("BENCH_OURS_HISTORY", "0"));
  }

  c10::Allocator* allocator = nullptr;
};

}  // namespace

int main(int argc, char** argv) { return bench::bench_main<Ours>(argc, argv); }
