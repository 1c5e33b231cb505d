// A PrivateUse1 backend for tests, as PyTorch's open-registration tests
// make one: one device, no kernels, and hooks whose pinned-memory allocator
// is the host allocator registered for XPU. With it a CPU-only PyTorch takes
// its own pinned-memory paths -- tensor.pin_memory(), is_pinned(),
// torch.empty(..., pin_memory=True), DataLoader(pin_memory=True) -- through
// at::getHostAllocator(at::kXPU), which is what a PyTorch XPU build does with
// its XPU hooks.
#include <ATen/detail/PrivateUse1HooksInterface.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <c10/util/Exception.h>

#include <mutex>

#include "module.h"

namespace xpu_host_python {
namespace {

constexpr c10::DeviceType kType = c10::DeviceType::PrivateUse1;

struct TestGuard final : c10::impl::DeviceGuardImplInterface {
  c10::DeviceType type() const override { return kType; }
  c10::Device exchangeDevice(c10::Device device) const override {
    setDevice(device);
    return c10::Device(kType, 0);
  }
  c10::Device getDevice() const override { return c10::Device(kType, 0); }
  void setDevice(c10::Device device) const override {
    TORCH_CHECK(device.type() == kType && device.index() <= 0, "the test backend has one device, index 0; not ", device);
  }
  void uncheckedSetDevice(c10::Device /*device*/) const noexcept override {}
  c10::Stream getStream(c10::Device device) const override { return c10::Stream(c10::Stream::DEFAULT, device); }
  c10::Stream exchangeStream(c10::Stream stream) const override {
    return c10::Stream(c10::Stream::DEFAULT, stream.device());
  }
  c10::DeviceIndex deviceCount() const noexcept override { return 1; }
};

struct TestHooks final : at::PrivateUse1HooksInterface {
  bool isBuilt() const override { return true; }
  bool isAvailable() const override { return true; }
  bool hasPrimaryContext(c10::DeviceIndex /*device_index*/) const override { return true; }
  void init() const override {}
  c10::DeviceIndex deviceCount() const override { return 1; }
  void setCurrentDevice(c10::DeviceIndex /*device*/) const override {}
  c10::DeviceIndex getCurrentDevice() const override { return 0; }
  c10::DeviceIndex exchangeDevice(c10::DeviceIndex /*device*/) const override { return 0; }
  c10::DeviceIndex maybeExchangeDevice(c10::DeviceIndex /*device*/) const override { return 0; }
  at::Device getDeviceFromPtr(void* /*data*/) const override { return at::Device(kType, 0); }

  at::Allocator* getPinnedMemoryAllocator() const override {
    at::HostAllocator* allocator = registered_host_allocator();
    TORCH_CHECK(allocator != nullptr,
                "the test backend pins through at::getHostAllocator(at::kXPU), and none is registered: "
                "call xpu_caching_host_allocator.enable() first");
    return allocator;
  }

  // A PyTorch XPU build asks SYCL whether the pointer is host USM of its
  // context; here the library says whether the pointer is in its memory.
  bool isPinnedPtr(const void* data) const override { return data != nullptr && library_holds(data); }
};

}  // namespace

void register_test_backend() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Both live for the process: PyTorch keeps the pointers.
    static TestGuard guard;
    static c10::impl::DeviceGuardImplRegistrar guard_registrar(kType, &guard);
    static TestHooks hooks;
    at::RegisterPrivateUse1HooksInterface(&hooks);
  });
}

}  // namespace xpu_host_python
