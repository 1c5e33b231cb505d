// Checks of any c10::Allocator front end of ours (the at::xpu:: one of
// PyTorch 2.4-2.7, the at::HostAllocator adapter of 2.8+), header-only so that
// each test compiles them against its own torch headers.
#pragma once

#include <c10/core/Allocator.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "test_support.h"

namespace xpu_host_test {

inline void check_allocate(Checks& checks, c10::Allocator* allocator) {
  void* data = nullptr;
  void* ctx = nullptr;
  {
    c10::DataPtr p = allocator->allocate(1000);
    data = p.get();
    ctx = p.get_context();
    checks.check(data != nullptr, "allocate(1000): data is not null");
    checks.check(reinterpret_cast<std::uintptr_t>(data) % 512 == 0, "allocate(1000): data is 512-aligned", pointer_text(data));
    checks.check(ctx != nullptr && ctx != data, "allocate(1000): the context is a block handle, not the data pointer",
                 "ctx " + pointer_text(ctx));
    checks.check(p.device().type() == c10::DeviceType::CPU && p.device().index() == -1, "allocate(1000): device is {CPU, -1}",
                 p.device().str());
    checks.check(p.get_deleter() != nullptr, "allocate(1000): a deleter is set");
    if (data != nullptr) {
      std::memset(data, 0x5a, 1000);
      checks.check(static_cast<unsigned char*>(data)[999] == 0x5a, "allocate(1000): the memory is writable");
    }
  }
  c10::DataPtr again = allocator->allocate(1000);
  checks.check(again.get() == data && again.get_context() == ctx,
               "destroying the DataPtr frees the block: the same size gets the same data pointer and context",
               "got " + pointer_text(again.get()) + ", freed " + pointer_text(data));

  c10::DataPtr empty = allocator->allocate(0);
  checks.check(empty.get() == nullptr && empty.get_context() == nullptr, "allocate(0): null data and null context");
}

// Allocator::clone (not virtual) allocates through the vtable and copies through copy_data.
inline void check_clone(Checks& checks, c10::Allocator* allocator) {
  std::vector<unsigned char> source(3000);
  for (std::size_t i = 0; i < source.size(); ++i) source[i] = static_cast<unsigned char>(i * 7);
  c10::DataPtr copy = allocator->clone(source.data(), source.size());
  checks.check(copy.get() != nullptr && std::memcmp(copy.get(), source.data(), source.size()) == 0,
               "clone copies the bytes (through our copy_data)");
  checks.check(copy.get_context() != nullptr && copy.get_context() != copy.get(), "clone's memory is one of our blocks");
}

}  // namespace xpu_host_test
