// What every benchmark program shares: the SYCL context and in-order queues
// they all use, as c10 makes them (one context for the platform's devices,
// one queue per stream), the Level Zero context under it that they all
// allocate in, the software driver's live-object counters, clocks, arguments,
// one-line JSON results, and callgrind's collection switch.
//
// Each program measures one subject (ours, a PyTorch reference, UMF) and
// prints one JSON line per run; benches/run.py runs them in turn and turns
// their lines into the ratios of BENCHMARKS.md.
#pragma once

#include <level_zero/ze_api.h>
#include <sycl/ext/oneapi/backend/level_zero.hpp>
#include <sycl/sycl.hpp>

#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "ze_software_driver.h"

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define BENCH_HAVE_CALLGRIND 1
#endif
#endif

namespace bench {

[[noreturn]] inline void die(const char* format, ...) {
  std::va_list args;
  va_start(args, format);
  std::fprintf(stderr, "bench: ");
  std::vfprintf(stderr, format, args);
  std::fprintf(stderr, "\n");
  va_end(args);
  std::fflush(stderr);
  std::_Exit(2);
}

#define BENCH_ZE(call)                                                              \
  do {                                                                              \
    ze_result_t bench_result_ = (call);                                             \
    if (bench_result_ != ZE_RESULT_SUCCESS) ::bench::die("%s returned 0x%x", #call, \
                                                         (unsigned)bench_result_);  \
  } while (0)

inline std::uint64_t now_ns() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return std::uint64_t(t.tv_sec) * 1000000000u + std::uint64_t(t.tv_nsec);
}

// Keeps the compiler from dropping a result it cannot see used.
inline void keep(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

// Streams 0 to kStreams - 1 exist; stream ids index them.
constexpr std::int64_t kStreams = 4;

// The SYCL context and queues, and the Level Zero driver and context under
// them, which every subject allocates in (ours is handed them with
// use_sycl_context, as PyTorch's start-up would), plus the harness's own
// events: never destroyed, so nothing depends on exit order.
struct Ze {
  sycl::context sycl_context;
  sycl::device sycl_device;
  std::vector<sycl::queue> queues;
  ze_driver_handle_t driver = nullptr;
  ze_context_handle_t context = nullptr;
  ze_device_handle_t device = nullptr;
  zex_pfnSoftwareDriverGetLiveObjects_t live = nullptr;
  ze_event_pool_handle_t harness_pool = nullptr;
  std::uint32_t harness_events = 0;
};

inline sycl::platform level_zero_platform() {
  for (const sycl::platform& platform : sycl::platform::get_platforms()) {
    if (platform.get_backend() == sycl::backend::ext_oneapi_level_zero) return platform;
  }
  die("no Level Zero platform (is ZE_ENABLE_ALT_DRIVERS set to the software driver?)");
}

inline Ze& ze() {
  static Ze* z = [] {
    sycl::platform platform = level_zero_platform();
    std::vector<sycl::device> devices = platform.get_devices();
    auto* z = new Ze{sycl::context(devices), devices[0], {}};
    for (std::int64_t i = 0; i < kStreams; ++i) {
      z->queues.emplace_back(z->sycl_context, z->sycl_device, sycl::property::queue::in_order());
    }
    z->driver = sycl::get_native<sycl::backend::ext_oneapi_level_zero>(platform);
    z->context = sycl::get_native<sycl::backend::ext_oneapi_level_zero>(z->sycl_context);
    z->device = sycl::get_native<sycl::backend::ext_oneapi_level_zero>(z->sycl_device);
    void* live = nullptr;
    BENCH_ZE(zeDriverGetExtensionFunctionAddress(z->driver, ZEX_SOFTWARE_DRIVER_GET_LIVE_OBJECTS_NAME, &live));
    z->live = reinterpret_cast<zex_pfnSoftwareDriverGetLiveObjects_t>(live);
    ze_event_pool_desc_t pool_desc = {ZE_STRUCTURE_TYPE_EVENT_POOL_DESC, nullptr, ZE_EVENT_POOL_FLAG_HOST_VISIBLE, 64};
    BENCH_ZE(zeEventPoolCreate(z->context, &pool_desc, 0, nullptr, &z->harness_pool));
    return z;
  }();
  return *z;
}

inline sycl::queue& queue(std::int64_t stream) {
  if (stream < 0 || stream >= kStreams) die("no stream %lld", static_cast<long long>(stream));
  return ze().queues[std::size_t(stream)];
}

inline zex_software_driver_live_objects_t live_objects() {
  zex_software_driver_live_objects_t live{};
  BENCH_ZE(ze().live(&live));
  return live;
}

// An event of the harness (not of any subject), signalled by the host: to hold a stream back.
inline ze_event_handle_t harness_event() {
  ze_event_desc_t desc = {ZE_STRUCTURE_TYPE_EVENT_DESC, nullptr, ze().harness_events++, ZE_EVENT_SCOPE_FLAG_HOST,
                          ZE_EVENT_SCOPE_FLAG_HOST};
  if (desc.index >= 64) die("out of harness events");
  ze_event_handle_t event = nullptr;
  BENCH_ZE(zeEventCreate(ze().harness_pool, &desc, &event));
  return event;
}

// Waits until everything submitted to `stream` so far has run (not timed).
inline void sync_stream(std::int64_t stream) { queue(stream).wait(); }

// Holds `stream` back until the host signals `gate`: work submitted to it
// after this waits, as behind a kernel that takes long.
inline void hold_stream(std::int64_t stream, ze_event_handle_t gate) {
  namespace level_zero = sycl::ext::oneapi::level_zero;
  sycl::event held = sycl::make_event<sycl::backend::ext_oneapi_level_zero>({gate, level_zero::ownership::keep},
                                                                             ze().sycl_context);
  queue(stream).ext_oneapi_submit_barrier({held});
}

// key=value arguments after the scenario name.
class Args {
 public:
  Args(int argc, char** argv, int first) {
    for (int i = first; i < argc; ++i) {
      const char* eq = std::strchr(argv[i], '=');
      if (!eq) die("argument `%s` is not key=value", argv[i]);
      values_[std::string(argv[i], std::size_t(eq - argv[i]))] = eq + 1;
    }
  }
  long number(const std::string& key, long fallback) const {
    auto it = values_.find(key);
    return it == values_.end() ? fallback : std::strtol(it->second.c_str(), nullptr, 0);
  }
  std::string text(const std::string& key, const std::string& fallback) const {
    auto it = values_.find(key);
    return it == values_.end() ? fallback : it->second;
  }
  std::vector<std::size_t> sizes(const std::string& key, std::vector<std::size_t> fallback) const {
    auto it = values_.find(key);
    if (it == values_.end()) return fallback;
    std::vector<std::size_t> sizes;
    std::stringstream in(it->second);
    std::string item;
    while (std::getline(in, item, ',')) sizes.push_back(std::strtoull(item.c_str(), nullptr, 0));
    return sizes;
  }

 private:
  std::map<std::string, std::string> values_;
};

// One JSON object on one line.
class Json {
 public:
  Json& add(const std::string& key, double value) {
    char text[64];
    std::snprintf(text, sizeof text, "%.6g", value);
    return raw(key, text);
  }
  Json& add(const std::string& key, std::uint64_t value) { return raw(key, std::to_string(value)); }
  Json& add(const std::string& key, std::int64_t value) { return raw(key, std::to_string(value)); }
  Json& add(const std::string& key, int value) { return raw(key, std::to_string(value)); }
  Json& add(const std::string& key, const std::string& value) { return raw(key, "\"" + value + "\""); }
  Json& add(const std::string& key, const char* value) { return add(key, std::string(value)); }
  Json& add(const std::string& key, const std::vector<double>& values) {
    std::string text = "[";
    for (std::size_t i = 0; i < values.size(); ++i) {
      char item[64];
      std::snprintf(item, sizeof item, "%s%.6g", i ? "," : "", values[i]);
      text += item;
    }
    return raw(key, text + "]");
  }
  Json& raw(const std::string& key, const std::string& value) {
    text_ += (text_.empty() ? "{" : ",") + ("\"" + key + "\":") + value;
    return *this;
  }
  void print() const {
    std::printf("%s}\n", text_.c_str());
    std::fflush(stdout);
  }

 private:
  std::string text_;
};

// Under `valgrind --tool=callgrind --collect-atstart=no`, only what runs
// between collect_on() and collect_off() is counted.
inline bool& callgrind_enabled() {
  static bool enabled = std::getenv("BENCH_CALLGRIND") != nullptr;
  return enabled;
}
inline void collect_on() {
#ifdef BENCH_HAVE_CALLGRIND
  if (callgrind_enabled()) CALLGRIND_TOGGLE_COLLECT;
#endif
}
inline void collect_off() {
#ifdef BENCH_HAVE_CALLGRIND
  if (callgrind_enabled()) CALLGRIND_TOGGLE_COLLECT;
#endif
}

// Raw zeMemAllocHost/zeMemFree, as PyTorch's allocate_host_memory calls it.
constexpr std::size_t kHostAlignment = 512;

inline void* raw_allocate(std::size_t size) {
  ze_host_mem_alloc_desc_t desc = {ZE_STRUCTURE_TYPE_HOST_MEM_ALLOC_DESC, nullptr, 0};
  void* ptr = nullptr;
  BENCH_ZE(zeMemAllocHost(ze().context, &desc, size, kHostAlignment, &ptr));
  return ptr;
}

inline void raw_free(void* ptr) { BENCH_ZE(zeMemFree(ze().context, ptr)); }

inline std::string env_or(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value ? value : fallback;
}

}  // namespace bench
