// The capture hooks of xpu_capture_hooks.h, from c10's XPU API.
//
// Compiled only against an XPU build of PyTorch 2.11 or later (see the
// header). scripts/check-adapter-compiles compiles it against every release
// from 2.11 with the SYCL headers of the intel-sycl-rt wheel; the CPU wheels it
// uses lack c10/xpu/impl/xpu_cmake_macros.h, so that compile defines
// C10_USING_CUSTOM_GENERATED_MACROS, which an XPU build does not need.
#include "xpu_capture_hooks.h"

#include <c10/util/Exception.h>
#include <c10/xpu/XPUStream.h>
#include <torch/version.h>

#include <cstdint>
#include <string>

#include "xpu_caching_host_allocator.h"

#if !(TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 11))
#error "the XPU capture hooks serve the private pools of PyTorch 2.11 and later: build without them for this PyTorch"
#endif

// 2.11 has no XPUStream::is_capturing(); its XPUGraphsC10Utils.h maps the
// queue's state to c10::xpu::CaptureStatus.
#if TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR == 11
#include <c10/xpu/XPUGraphsC10Utils.h>
#endif

namespace xpu_host_allocator {
namespace {

// Both hooks are called by the library under its pool lock, from a C frame:
// they must not throw, and must not call the allocator (c10's stream calls
// do not).

bool current_stream(void* /*user_data*/, xpu_host_stream* stream) noexcept {
  try {
    c10::xpu::XPUStream current = c10::xpu::getCurrentXPUStream();
    *stream = {static_cast<std::int8_t>(current.device_type()), static_cast<std::int8_t>(current.device_index()),
               current.id()};
    return true;
  } catch (...) {
    return false;  // no XPU device, or c10 could not set one up: no current stream
  }
}

bool is_capturing(void* /*user_data*/, xpu_host_stream stream) noexcept {
  if (stream.device_type != static_cast<std::int8_t>(c10::DeviceType::XPU)) return false;
  try {
    c10::xpu::XPUStream xpu_stream = c10::xpu::XPUStream::unpack3(stream.id, stream.device_index, c10::DeviceType::XPU);
#if TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR == 11
    return c10::xpu::CaptureStatus(xpu_stream.queue().ext_oneapi_get_state()) == c10::xpu::CaptureStatus::Recording;
#else
    return xpu_stream.is_capturing();
#endif
  } catch (...) {
    return false;  // not one of c10's streams: nothing c10 captures
  }
}

}  // namespace

void install_xpu_capture_hooks() {
  xpu_host_capture_hooks hooks{sizeof(xpu_host_capture_hooks), nullptr, &current_stream, &is_capturing};
  xpu_host_result result = xpu_host_set_capture_hooks(&hooks);
  TORCH_CHECK(result == XPU_HOST_SUCCESS, "xpu_host_set_capture_hooks failed: ", xpu_host_last_error_message());
}

}  // namespace xpu_host_allocator
