// xpu_caching_host_allocator._C: what the Python package needs from C++.
//
// Built against the installed PyTorch (>= 2.8) with its own headers and
// pybind11, and linked with the adapter (adapter/): the only C++ in the
// package. Everything else of the package goes through the library's C API
// with ctypes, with or without PyTorch.
#include <torch/extension.h>

#include <ATen/EmptyTensor.h>
#include <ATen/core/CachingHostAllocator.h>

#include <cstdint>
#include <string>

#include "module.h"
#include "xpu_caching_host_allocator.h"
#include "xpu_host_allocator_adapter.h"

namespace xpu_host_python {

at::HostAllocator* registered_host_allocator() noexcept {
  try {
    return at::getHostAllocator(at::kXPU);
  } catch (...) {
    return nullptr;  // none registered: getHostAllocator checks and throws
  }
}

bool library_holds(const void* ptr) {
  struct Search {
    std::uintptr_t address;
    bool found;
  } search{reinterpret_cast<std::uintptr_t>(ptr), false};
  xpu_host_result result = xpu_host_get_segments(
      [](void* user_data, const xpu_host_segment* segment) noexcept {
        auto* s = static_cast<Search*>(user_data);
        if (s->address >= segment->address && s->address - segment->address < segment->bytes) {
          s->found = true;
          return false;
        }
        return true;
      },
      &search);
  TORCH_CHECK(result == XPU_HOST_SUCCESS, "xpu_host_get_segments failed: ", xpu_host_last_error_message());
  return search.found;
}

namespace {

// The adapter's instance, as the process sees it.
bool is_registered() noexcept { return registered_host_allocator() == &xpu_host_allocator::host_allocator(); }

void register_with_pytorch(int priority) {
  TORCH_CHECK(priority >= 0 && priority <= 255, "priority must be 0 to 255, got ", priority);
  xpu_host_allocator::register_with_pytorch(static_cast<std::uint8_t>(priority));
}

std::string registered_name() {
  at::HostAllocator* allocator = registered_host_allocator();
  if (allocator == nullptr) return "";
  if (allocator == &xpu_host_allocator::host_allocator()) return "xpu_caching_host_allocator";
  return typeid(*allocator).name();
}

// A CPU uint8 tensor of `size` bytes whose storage comes from
// at::getHostAllocator(at::kXPU)->allocate, as PyTorch's pinned tensors'
// does (empty_cpu with pin_memory asks the accelerator hooks for the same
// allocator).
at::Tensor empty_pinned(std::int64_t size) {
  TORCH_CHECK(size >= 0, "empty_pinned: size must be 0 or more, got ", size);
  at::HostAllocator* allocator = registered_host_allocator();
  TORCH_CHECK(allocator != nullptr,
              "empty_pinned: PyTorch has no host allocator for XPU: call xpu_caching_host_allocator.enable() first");
  return at::Tensor(at::detail::empty_generic({size}, allocator, c10::DispatchKeySet(c10::DispatchKey::CPU), at::kByte,
                                              std::nullopt));
}

// Whether PyTorch's registered XPU host allocator says it can record an
// event for the block under `tensor` (its record_event), for tests of the
// stream bookkeeping through PyTorch's own interface.
bool record_event(const at::Tensor& tensor, std::int64_t stream_id) {
  at::HostAllocator* allocator = registered_host_allocator();
  TORCH_CHECK(allocator != nullptr, "record_event: PyTorch has no host allocator for XPU");
  const c10::DataPtr& data = tensor.storage().data_ptr();
  c10::Stream stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::XPU, 0), stream_id);
  return allocator->record_event(data.get(), data.get_context(), stream);
}

}  // namespace
}  // namespace xpu_host_python

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace py = pybind11;
  using namespace xpu_host_python;
  m.doc() = "The PyTorch side of xpu_caching_host_allocator (built against torch " XPU_HOST_PYTHON_TORCH_VERSION ")";
  m.attr("TORCH_VERSION") = XPU_HOST_PYTHON_TORCH_VERSION;
  m.def("register_with_pytorch", &register_with_pytorch, py::arg("priority"),
        "at::setHostAllocator(at::kXPU, adapter, priority)", py::call_guard<py::gil_scoped_release>());
  m.def("is_registered", &is_registered, "whether at::getHostAllocator(at::kXPU) is this package's adapter");
  m.def("registered_name", &registered_name, "what at::getHostAllocator(at::kXPU) is: ours, another's type, or ''");
  m.def("empty_pinned", &empty_pinned, py::arg("size"), py::call_guard<py::gil_scoped_release>());
  m.def("record_event", &record_event, py::arg("tensor"), py::arg("stream_id"),
        py::call_guard<py::gil_scoped_release>());
  m.def("library_holds", [](std::uintptr_t address) { return library_holds(reinterpret_cast<const void*>(address)); },
        py::arg("address"), py::call_guard<py::gil_scoped_release>());
  m.def("register_test_backend", &register_test_backend);
}
