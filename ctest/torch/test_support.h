// What the PyTorch tests share: named checks that end with the line
// "N passed, N failed", and a stream held back on a host-signalled Level Zero
// event (the allocator must not reuse memory the stream may still use).
//
// Only the C API, Level Zero and the standard library are used here, so the
// same header serves tests built against torch 2.5.1 (old string ABI) and
// 2.15.0 (new string ABI).
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>
#include <typeinfo>
#include <utility>
#include <vector>

#include <level_zero/ze_api.h>

#include "xpu_caching_host_allocator.h"

namespace xpu_host_test {

class Checks {
 public:
  explicit Checks(std::string program) : program_(std::move(program)) {}

  bool check(bool ok, const std::string& name, const std::string& detail = "") {
    ++(ok ? passed_ : failed_);
    if (ok) {
      std::printf("%s: ok   %s\n", program_.c_str(), name.c_str());
    } else {
      std::printf("%s: FAIL %s%s%s (last library error: \"%s\")\n", program_.c_str(), name.c_str(),
                  detail.empty() ? "" : ": ", detail.c_str(), xpu_host_last_error_message());
    }
    std::fflush(stdout);
    return ok;
  }

  // `body` must throw an exception of class E (or derived) whose what()
  // contains `mention`.
  template <class E, class Body>
  bool throws(const std::string& name, const std::string& mention, Body body) {
    try {
      body();
    } catch (const std::exception& e) {
      std::string what = e.what();
      if (dynamic_cast<const E*>(&e) == nullptr)
        return check(false, name, "threw an exception of another class (" + std::string(typeid(e).name()) + "): " + what);
      return check(what.find(mention) != std::string::npos, name,
                   "the exception's message \"" + what + "\" does not mention \"" + mention + "\"");
    } catch (...) {
      return check(false, name, "threw something that is not a std::exception");
    }
    return check(false, name, "did not throw");
  }

  // Prints the closing line and returns the process's exit status.
  int finish() const {
    std::printf("%s: %d passed, %d failed\n", program_.c_str(), passed_, failed_);
    return failed_ == 0 ? 0 : 1;
  }

 private:
  std::string program_;
  int passed_ = 0;
  int failed_ = 0;
};

inline std::string pointer_text(const void* p) {
  char text[32];
  std::snprintf(text, sizeof text, "%p", p);
  return text;
}

// Polls `done` every millisecond for up to `seconds`; nothing in the allocator
// blocks, so reuse shows up only on a later allocation.
template <class Done>
bool poll_until(Done done, double seconds = 5.0) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Work held back on one of the library's own streams: the stream's command
// list waits on an event that only the host signals.
class HeldBackStream {
 public:
  HeldBackStream(Checks& checks, xpu_host_stream stream) : checks_(checks), stream_(stream) {
    ze_driver_handle_t driver = nullptr;
    ze_context_handle_t context = nullptr;
    if (!checks_.check(xpu_host_get_context(&driver, &context) == XPU_HOST_SUCCESS, "held-back stream: the allocator's context"))
      return;
    ze_event_pool_desc_t pool_desc = {ZE_STRUCTURE_TYPE_EVENT_POOL_DESC, nullptr, ZE_EVENT_POOL_FLAG_HOST_VISIBLE, 2};
    ze_event_desc_t gate_desc = {ZE_STRUCTURE_TYPE_EVENT_DESC, nullptr, 0, ZE_EVENT_SCOPE_FLAG_HOST, ZE_EVENT_SCOPE_FLAG_HOST};
    ze_event_desc_t drained_desc = gate_desc;
    drained_desc.index = 1;
    bool made = zeEventPoolCreate(context, &pool_desc, 0, nullptr, &pool_) == ZE_RESULT_SUCCESS &&
                zeEventCreate(pool_, &gate_desc, &gate_) == ZE_RESULT_SUCCESS &&
                zeEventCreate(pool_, &drained_desc, &drained_) == ZE_RESULT_SUCCESS;
    if (!checks_.check(made, "held-back stream: event pool and events")) return;
    holding_ = checks_.check(xpu_host_stream_submit(stream, append_wait, gate_) == XPU_HOST_SUCCESS,
                             "held-back stream: a wait on a host event appended to the stream");
  }

  bool holding() const { return holding_; }

  // Signals the host event, then waits (at most 5 s) until everything the
  // stream had been given has run: a signal appended now, on the in-order
  // list, comes after every event the allocator recorded on it so far.
  bool release_and_drain() {
    checks_.check(zeEventHostSignal(gate_) == ZE_RESULT_SUCCESS, "held-back stream: the host signals the event");
    released_ = true;
    bool appended = xpu_host_stream_submit(stream_, append_signal, drained_) == XPU_HOST_SUCCESS;
    drained_ok_ = appended && zeEventHostSynchronize(drained_, 5'000'000'000ull) == ZE_RESULT_SUCCESS;
    return checks_.check(drained_ok_, "held-back stream: the stream drains once the event is signalled");
  }

  // The events are destroyed only once the stream has drained: before that its
  // command list may still use them, and a leaked event in a failing test is
  // the lesser harm.
  ~HeldBackStream() {
    if (!released_ && gate_ != nullptr) zeEventHostSignal(gate_);
    if (!drained_ok_) return;
    zeEventDestroy(drained_);
    zeEventDestroy(gate_);
    zeEventPoolDestroy(pool_);
  }

  HeldBackStream(const HeldBackStream&) = delete;
  HeldBackStream& operator=(const HeldBackStream&) = delete;

 private:
  static ze_result_t append_wait(void* event, ze_command_list_handle_t list) {
    ze_event_handle_t handle = static_cast<ze_event_handle_t>(event);
    return zeCommandListAppendWaitOnEvents(list, 1, &handle);
  }

  static ze_result_t append_signal(void* event, ze_command_list_handle_t list) {
    return zeCommandListAppendSignalEvent(list, static_cast<ze_event_handle_t>(event));
  }

  Checks& checks_;
  xpu_host_stream stream_;
  ze_event_pool_handle_t pool_ = nullptr;
  ze_event_handle_t gate_ = nullptr;
  ze_event_handle_t drained_ = nullptr;
  bool holding_ = false;
  bool released_ = false;
  bool drained_ok_ = false;
};

// The property that must never break, through whatever front end `hold`
// allocates with: a block used on a held-back stream is not handed out again
// until the stream has drained, and then it is.
//   hold()          allocates `size`-ish memory and returns an owner (DataPtr, Tensor, ...)
//   ids(owner)      returns {data pointer, context} of the owner's block
//   record(owner)   records the owner's block on `stream`, returns what recordEvent returned
// Destroying an owner frees its block.
template <class Hold, class Ids, class Record>
void check_stream_ordering(Checks& checks, const std::string& name, xpu_host_stream stream, Hold hold, Ids ids, Record record) {
  HeldBackStream held(checks, stream);
  if (!held.holding()) return;

  std::pair<void*, void*> first;
  {
    auto owner = hold();
    first = ids(owner);
    checks.check(record(owner), name + ": the block is recorded on the held-back stream");
  }  // freed here, while the stream still holds it

  // All held at once, so that each is a cache miss, the moment an allocator
  // that polls only on a miss looks at the pending block.
  constexpr int kWhileHeld = 20;
  bool distinct = true;
  {
    std::vector<decltype(hold())> owners;
    for (int i = 0; i < kWhileHeld; ++i) {
      owners.push_back(hold());
      distinct = distinct && ids(owners.back()) != first;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  checks.check(distinct, name + ": while the stream is held back, the same size gets a different block",
               "the block " + pointer_text(first.first) + " was handed out again before the stream drained");

  if (!held.release_and_drain()) return;
  // More owners at once than blocks were cached above, so that the last ones
  // miss the cache whatever the allocator's policy, and it polls.
  bool reused = poll_until([&] {
    std::vector<decltype(hold())> owners;
    for (int i = 0; i < 2 * kWhileHeld; ++i) {
      owners.push_back(hold());
      if (ids(owners.back()) == first) return true;
    }
    return false;
  });
  checks.check(reused, name + ": once the stream drains, the original block comes back",
               "block " + pointer_text(first.first) + " never came back within 5 s");
}

}  // namespace xpu_host_test
