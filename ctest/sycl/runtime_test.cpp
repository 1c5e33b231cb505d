// Intel's SYCL runtime on the software driver, as PyTorch XPU uses it: what a
// host-only SYCL program built with g++ needs from the driver.
//
//   runtime_test v1|v2   the adapter the run is to have chosen
//
// CTest runs it on loader 1.20.6 with UR_ADAPTERS_FORCE_LOAD naming each
// adapter, and with the default choice (v2 for the IP version the driver is
// told to report, v1 without), each plain, validated and intercepted. The
// driver delays every command (ZE_SOFTWARE_DRIVER_COMMAND_LATENCY_US), so that
// work is still pending when the host looks.
#include <level_zero/ze_api.h>
#include <sycl/ext/oneapi/backend/level_zero.hpp>
#include <sycl/sycl.hpp>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <variant>
#include <vector>

#include "sycl_checks.h"

namespace {

constexpr std::size_t kSize = 1 << 16;

void check_copies_and_fills(sycl::queue& queue, sycl::device& device, sycl::context& context) {
  auto* host = static_cast<unsigned char*>(sycl::aligned_alloc_host(512, kSize, context));
  auto* device_memory = static_cast<unsigned char*>(sycl::malloc_device(kSize, device, context));
  CHECK(host != nullptr && device_memory != nullptr);
  CHECK(reinterpret_cast<std::uintptr_t>(host) % 512 == 0);
  CHECK(sycl::get_pointer_type(host, context) == sycl::usm::alloc::host);
  CHECK(sycl::get_pointer_type(device_memory, context) == sycl::usm::alloc::device);

  for (std::size_t i = 0; i < kSize; ++i) host[i] = static_cast<unsigned char>(i * 7 + 3);
  queue.memcpy(device_memory, host, kSize).wait();
  std::memset(host, 0, kSize);
  sycl::event back = queue.memcpy(host, device_memory, kSize);
  back.wait();
  CHECK(back.get_info<sycl::info::event::command_execution_status>() ==
        sycl::info::event_command_status::complete);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < kSize; ++i) wrong += host[i] != static_cast<unsigned char>(i * 7 + 3);
  CHECK(wrong == 0);

  queue.memset(device_memory, 0x5a, kSize);
  queue.memcpy(host, device_memory, kSize);
  queue.wait();
  wrong = 0;
  for (std::size_t i = 0; i < kSize; ++i) wrong += host[i] != 0x5a;
  CHECK(wrong == 0);

  sycl::free(device_memory, context);
  sycl::free(host, context);
}

// A barrier's native event is what the allocator polls.
void check_barrier_and_native_handles(sycl::platform& platform, sycl::context& context, sycl::queue& queue,
                                      sycl::device& device) {
  auto* device_memory = static_cast<unsigned char*>(sycl::malloc_device(kSize, device, context));
  queue.memset(device_memory, 1, kSize);
  sycl::event barrier = queue.ext_oneapi_submit_barrier();
  auto native_platform = sycl::get_native<sycl::backend::ext_oneapi_level_zero>(platform);
  auto native_context = sycl::get_native<sycl::backend::ext_oneapi_level_zero>(context);
  auto native_queue = sycl::get_native<sycl::backend::ext_oneapi_level_zero>(queue);
  ze_event_handle_t native_event = sycl::get_native<sycl::backend::ext_oneapi_level_zero>(barrier);
  CHECK(native_platform != nullptr && native_context != nullptr && native_event != nullptr);
  // A command list or a command queue, whichever the adapter uses.
  CHECK(std::visit([](auto handle) { return handle != nullptr; }, native_queue));
  CHECK(zeEventQueryStatus(native_event) == ZE_RESULT_NOT_READY);  // the driver delays the memset
  barrier.wait();
  CHECK(zeEventQueryStatus(native_event) == ZE_RESULT_SUCCESS);
  CHECK(barrier.get_info<sycl::info::event::command_execution_status>() ==
        sycl::info::event_command_status::complete);

  // Memory the allocator takes with zeMemAllocHost in the native context is
  // host USM to SYCL: what is_pinned() asks.
  ze_host_mem_alloc_desc_t desc = {ZE_STRUCTURE_TYPE_HOST_MEM_ALLOC_DESC, nullptr, 0};
  void* pinned = nullptr;
  CHECK(zeMemAllocHost(native_context, &desc, 4096, 512, &pinned) == ZE_RESULT_SUCCESS);
  CHECK(sycl::get_pointer_type(pinned, context) == sycl::usm::alloc::host);
  CHECK(sycl::get_pointer_type(static_cast<char*>(pinned) + 100, context) == sycl::usm::alloc::host);
  CHECK(zeMemFree(native_context, pinned) == ZE_RESULT_SUCCESS);
  queue.wait();
  sycl::free(device_memory, context);
}

// Two in-order queues: the second waits for the first through an event, as
// PyTorch's streams do with XPUEvent::block.
void check_two_queues(sycl::queue& first, sycl::queue& second, sycl::device& device, sycl::context& context) {
  auto* a = static_cast<std::uint32_t*>(sycl::malloc_device(kSize, device, context));
  auto* b = static_cast<std::uint32_t*>(sycl::malloc_device(kSize, device, context));
  std::vector<std::uint32_t> host(kSize / 4, 0);
  sycl::event produced = first.memset(a, 0x11, kSize);
  sycl::event copied = second.submit([&](sycl::handler& h) {
    h.depends_on(produced);
    h.memcpy(b, a, kSize);
  });
  second.memcpy(host.data(), b, kSize).wait();
  CHECK(copied.get_info<sycl::info::event::command_execution_status>() ==
        sycl::info::event_command_status::complete);
  std::size_t wrong = 0;
  for (std::uint32_t word : host) wrong += word != 0x11111111u;
  CHECK(wrong == 0);
  sycl::free(b, context);
  sycl::free(a, context);
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc != 2 || (std::string(argv[1]) != "v1" && std::string(argv[1]) != "v2")) {
    std::fprintf(stderr, "usage: %s v1|v2   (the adapter the runtime is to choose)\n", argv[0]);
    return 2;
  }
  sycl::platform platform = level_zero_platform();
  std::string name = platform.get_info<sycl::info::platform::name>();
  std::printf("platform: %s\n", name.c_str());
  bool v2 = name.find("V2") != std::string::npos;
  CHECK(v2 == (std::string(argv[1]) == "v2"));
  std::vector<sycl::device> devices = platform.get_devices();
  CHECK(devices.size() == 1);
  std::printf("device: %s\n", devices[0].get_info<sycl::info::device::name>().c_str());

  // As c10 does: one context for the platform's devices, in-order queues on it.
  sycl::context context(devices);
  sycl::queue first(context, devices[0], sycl::property::queue::in_order());
  sycl::queue second(context, devices[0], sycl::property::queue::in_order());
  CHECK(first.is_in_order() && second.is_in_order());

  check_copies_and_fills(first, devices[0], context);
  check_barrier_and_native_handles(platform, context, first, devices[0]);
  check_two_queues(first, second, devices[0], context);
  return report();
} catch (const sycl::exception& e) {
  std::fprintf(stderr, "sycl::exception: %s\n", e.what());
  return 1;
}
