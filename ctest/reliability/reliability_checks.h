// Checks the reliability tests share across front ends: the c10::Allocator
// vtable (torch 2.5.1 headers) and the PyTorch 2.8+ adapter (torch 2.15.0
// headers). Templates, so each test compiles them against its own c10.
#pragma once

#include <cstddef>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace xpu_host_test {

// The allocator still hands out memory that holds what is written into it.
template <class Allocator>
void check_still_works(Checks& checks, Allocator* allocator, const std::string& after) {
  auto p = allocator->allocate(10000);
  bool ok = p.get() != nullptr;
  if (ok) {
    std::memset(p.get(), 0x3c, 10000);
    ok = static_cast<unsigned char*>(p.get())[9999] == 0x3c;
  }
  checks.check(ok, "after " + after + " the allocator still allocates usable memory");
}

// Three threads allocate, write and free through `allocator` while a fourth
// empties the cache with `empty_cache()`; then the allocator still works.
template <class Allocator, class EmptyCache>
void check_threads_against_empty_cache(Checks& checks, Allocator* allocator, EmptyCache empty_cache, const std::string& front) {
  std::vector<std::thread> threads;
  bool good[3] = {true, true, true};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        if (t == 3) {
          empty_cache();
          continue;
        }
        std::size_t size = 1 + static_cast<std::size_t>((i * 7919 + t * 104729) % 70000);
        auto p = allocator->allocate(size);
        std::memset(p.get(), t + 1, size);
        good[t] = good[t] && static_cast<unsigned char*>(p.get())[size - 1] == t + 1;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  checks.check(good[0] && good[1] && good[2], "threads allocating through " + front + " against a concurrent empty cache");
  check_still_works(checks, allocator, "hostile input");
}

// With event pool creation failing, a block used on a stream cannot get its
// event when it is freed: `record(data_ptr)` records it, the DataPtr's
// destruction frees it, the deleter (which cannot throw) reports it, and the
// block is retired: never handed out again, while the allocator goes on.
template <class Allocator, class Record>
void check_retired_block_is_not_reused(Checks& checks, Allocator* allocator, Record record) {
  void* retired = nullptr;
  {
    auto p = allocator->allocate(8192);
    retired = p.get();
    checks.check(record(p), "the block is recorded on a stream");
  }
  checks.check(std::strstr(xpu_host_last_error_message(), "zeEventPoolCreate") != nullptr &&
                   std::strstr(xpu_host_last_error_message(), "retired") != nullptr,
               "the free reports that no event could be recorded and the block is retired");
  bool reused = false;
  for (int i = 0; i < 10; ++i) {
    auto p = allocator->allocate(8192);
    reused = reused || p.get() == retired;
  }
  checks.check(!reused, "a retired block is never handed out again");
  check_still_works(checks, allocator, "a failed event record");
}

}  // namespace xpu_host_test
