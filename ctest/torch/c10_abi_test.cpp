// The allocator as PyTorch 2.4-2.7 sees it, compiled against the REAL torch
// 2.5.1 headers and linked to its libc10.so: reached only through
// c10::Allocator* and PyTorch's mangled at::xpu:: declarations (docs/ABI.md
// sections 1-6). With ZE_SOFTWARE_DRIVER_HOST_MEMORY_LIMIT set it also checks
// that running out of pinned memory throws and the allocator recovers. With
// XPU_HOST_TEST_LIBRARY_DIR set it first checks that the library was loaded
// from there (c10_abi.release: cargo's release build, whose frames the
// exceptions of check_errors cross; docs/ABI.md section 6).
#include <c10/core/Allocator.h>
#include <c10/core/Device.h>
#include <c10/core/Stream.h>

#include <cxxabi.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <typeinfo>

#include "allocator_checks.h"
#include "at_xpu_declarations.h"
#include "test_support.h"

using xpu_host_test::Checks;
using xpu_host_test::pointer_text;

namespace {

constexpr std::int64_t kStreamId = 3;

c10::xpu::XPUStream xpu_stream() { return xpu_host_test::xpu_stream(kStreamId); }

void* deleted_context = nullptr;
void recording_deleter(void* ctx) { deleted_context = ctx; }

template <class T>
T read_at(const void* object, std::size_t offset) {
  T value;
  std::memcpy(&value, static_cast<const unsigned char*>(object) + offset, sizeof value);
  return value;
}

void check_data_ptr_layout(Checks& checks) {
  static_assert(sizeof(c10::DataPtr) == 32 && alignof(c10::DataPtr) == 8, "docs/ABI.md section 4");
  int data = 0, ctx = 0;
  {
    c10::DataPtr p(&data, &ctx, recording_deleter, c10::Device(c10::DeviceType::CPU));
    checks.check(read_at<void*>(&p, 0) == &data, "DataPtr layout: data at offset 0");
    checks.check(read_at<c10::DeleterFnPtr>(&p, 8) == &recording_deleter, "DataPtr layout: deleter at offset 8");
    checks.check(read_at<void*>(&p, 16) == &ctx, "DataPtr layout: context at offset 16");
    checks.check(read_at<std::int8_t>(&p, 24) == 0, "DataPtr layout: device type at offset 24 (CPU = 0)");
    checks.check(read_at<std::int8_t>(&p, 25) == -1, "DataPtr layout: device index at offset 25 (-1)");
  }
  checks.check(deleted_context == &ctx, "DataPtr layout: the destructor calls the deleter with the context");
}

void check_other_virtuals(Checks& checks, c10::Allocator* allocator) {
  c10::DataPtr ours = allocator->allocate(256);
  checks.check(!allocator->is_simple_data_ptr(ours), "is_simple_data_ptr is false for our DataPtr (ctx != data)");
  int local = 0;
  c10::DataPtr simple(&local, &local, c10::detail::deleteNothing, c10::Device(c10::DeviceType::CPU));
  checks.check(allocator->is_simple_data_ptr(simple), "is_simple_data_ptr is true for a DataPtr whose data == ctx");
  checks.check(allocator->raw_deleter() == nullptr, "raw_deleter is null, as c10::Allocator's default");

  xpu_host_test::check_clone(checks, allocator);
  char byte = 0;
  checks.throws<std::exception>("copy_data with a null destination and n > 0 throws", "null pointer",
                                [&] { allocator->copy_data(nullptr, &byte, 1); });
  checks.throws<std::exception>("copy_data with a null source and n > 0 throws", "null pointer",
                                [&] { allocator->copy_data(&byte, nullptr, 1); });

  const std::type_info& dynamic_type = typeid(*allocator);
  checks.check(std::strcmp(dynamic_type.name(), "N26xpu_caching_host_allocator20CachingHostAllocatorE") == 0,
               "typeid(*allocator) is our class", dynamic_type.name());
  auto* si = dynamic_cast<const abi::__si_class_type_info*>(&dynamic_type);
  checks.check(si != nullptr && *si->__base_type == typeid(c10::Allocator),
               "the RTTI says our class derives from c10::Allocator (single inheritance)");
  checks.check(dynamic_cast<void*>(allocator) == static_cast<void*>(allocator),
               "dynamic_cast<void*> finds the object (offset-to-top 0)");
  struct SomeOtherAllocator : c10::Allocator {};
  checks.check(dynamic_cast<SomeOtherAllocator*>(allocator) == nullptr,
               "dynamic_cast to an unrelated c10::Allocator subclass walks our RTTI and says no");
  checks.check(dynamic_cast<c10::Allocator*>(allocator) == allocator, "dynamic_cast<c10::Allocator*> works");
}

void check_errors(Checks& checks, c10::Allocator* allocator) {
  checks.throws<std::runtime_error>("allocate(SIZE_MAX) throws std::runtime_error naming the size",
                                    std::to_string(SIZE_MAX), [&] { allocator->allocate(SIZE_MAX); });
  checks.throws<std::runtime_error>("allocate(SIZE_MAX/2+2) throws std::runtime_error naming the size",
                                    std::to_string(SIZE_MAX / 2 + 2), [&] { allocator->allocate(SIZE_MAX / 2 + 2); });
  c10::DataPtr after = allocator->allocate(4096);
  checks.check(after.get() != nullptr, "after those errors the allocator still allocates");
}

// Run only in the registration with the driver's memory limit set.
void check_memory_limit(Checks& checks, c10::Allocator* allocator, std::size_t limit) {
  checks.throws<std::runtime_error>("an allocation beyond the driver's memory limit throws out-of-memory",
                                    "out of pinned host memory", [&] { allocator->allocate(2 * limit); });
  c10::DataPtr small = allocator->allocate(limit / 4);
  checks.check(small.get() != nullptr, "after out-of-memory, an allocation within the limit still works");
  checks.throws<std::runtime_error>("out-of-memory again while a block is held", "out of pinned host memory",
                                    [&] { allocator->allocate(limit); });
}

// What PyTorch's own xpu_caching_host_allocator_test checks, through the mangled name.
void check_record_event(Checks& checks, c10::Allocator* allocator) {
  auto record = [](void* ptr, void* ctx) { return at::xpu::CachingHostAllocator_recordEvent(ptr, ctx, xpu_stream()); };
  int foreign = 0;
  {
    c10::DataPtr block = allocator->allocate(4096);
    char* base = static_cast<char*>(block.get());
    checks.check(record(base, block.get_context()), "recordEvent(our base pointer, our context) is true");
    checks.check(record(base + 128, block.get_context()), "recordEvent(interior pointer, our context), a slice, is true");
    checks.check(record(base, &foreign), "recordEvent(our base pointer, foreign context), from_blob of the base, is true");
    checks.check(!record(base + 128, &foreign), "recordEvent(interior pointer, foreign context) is false");
  }
  void* ordinary = std::malloc(4096);
  checks.check(!record(ordinary, ordinary), "recordEvent on malloc'd memory is false");
  std::free(ordinary);

  void* stale_data = nullptr;
  void* stale_ctx = nullptr;
  {
    c10::DataPtr block = allocator->allocate(1 << 20);
    stale_data = block.get();
    stale_ctx = block.get_context();
  }
  at::xpu::CachingHostAllocator_emptyCache();
  checks.check(!record(stale_data, stale_ctx), "recordEvent on a freed block after emptyCache is false");
}

// The directory the library that defines getCachingHostAllocator was loaded from.
void check_library_dir(Checks& checks, const char* expected) {
  Dl_info info{};
  std::string loaded = "(dladdr failed)";
  if (dladdr(reinterpret_cast<void*>(&at::xpu::getCachingHostAllocator), &info) != 0 && info.dli_fname != nullptr) {
    loaded = info.dli_fname;
  }
  auto real_dir = [](const std::string& path) {
    char resolved[PATH_MAX];
    return realpath(path.c_str(), resolved) != nullptr ? std::string(resolved) : path;
  };
  std::string loaded_dir = real_dir(loaded.substr(0, loaded.rfind('/')));
  checks.check(loaded_dir == real_dir(expected), "the library is the one in XPU_HOST_TEST_LIBRARY_DIR",
               "loaded " + loaded + ", expected a library in " + expected);
}

}  // namespace

int main() {
  Checks checks("c10_abi_test");
  if (const char* dir = std::getenv("XPU_HOST_TEST_LIBRARY_DIR")) check_library_dir(checks, dir);
  check_data_ptr_layout(checks);

  c10::Allocator* allocator = at::xpu::getCachingHostAllocator();
  if (!checks.check(allocator != nullptr, "at::xpu::getCachingHostAllocator() returns an allocator")) return checks.finish();
  checks.check(at::xpu::getCachingHostAllocator() == allocator, "getCachingHostAllocator returns the same object every time");

  xpu_host_test::check_allocate(checks, allocator);
  check_other_virtuals(checks, allocator);
  check_errors(checks, allocator);
  check_record_event(checks, allocator);
  xpu_host_test::check_stream_ordering(
      checks, "stream ordering through c10::Allocator", xpu_host_test::c_stream(kStreamId), [&] { return allocator->allocate(8192); },
      [](const c10::DataPtr& p) { return std::make_pair(p.get(), p.get_context()); },
      [](const c10::DataPtr& p) { return at::xpu::CachingHostAllocator_recordEvent(p.get(), p.get_context(), xpu_stream()); });

  if (const char* limit = std::getenv("ZE_SOFTWARE_DRIVER_HOST_MEMORY_LIMIT")) {
    at::xpu::CachingHostAllocator_emptyCache();
    check_memory_limit(checks, allocator, std::strtoull(limit, nullptr, 10));
  }
  return checks.finish();
}
