// xpu_caching_host_allocator on Intel's SYCL runtime: the one call a SYCL
// program (PyTorch XPU among them) makes at start-up so that pinned memory
// comes from its sycl::context and stream events from its own queues.
//
//   xpu_host_allocator::use_sycl_context(context, lookup, user_data);   // before the first allocation
//
// After it, every block is host USM of `context`
// (sycl::get_pointer_type(ptr, context) == sycl::usm::alloc::host, so
// PyTorch's tensor.is_pinned() holds), and a block recorded on a stream is
// handed out again only once the work submitted to that stream's queue before
// its free has completed.
//
// It talks to the library only through the C API; it needs the SYCL headers
// and libsycl, nothing of PyTorch.
#pragma once

#include <sycl/sycl.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "xpu_caching_host_allocator.h"

namespace xpu_host_allocator {

// The SYCL queue of `stream`, or null if it has none. PyTorch passes c10's
// lookup (the queue of c10::xpu::XPUStream); a test passes its own. Called
// from any thread, concurrently, each time a block used on the stream is
// freed. The queue must stay alive until the work submitted to it has run; an
// exception thrown here counts as a failed lookup.
using QueueLookup = sycl::queue* (*)(void* user_data, xpu_host_stream stream);

// How the allocator's event for a stream is made when a block it used is freed.
enum class RecordWith {
  // No event if the queue has nothing pending (queue.ext_oneapi_empty(): a
  // query, no command), else a barrier. The default. A thread that found a
  // queue busy skips the question for its next 15 records on that queue.
  BarrierUnlessIdle,
  // Always queue.ext_oneapi_submit_barrier(), as PyTorch's own
  // XPUEvent::record does.
  Barrier,
  // No event if the queue has nothing pending (asked as above), else on an
  // in-order queue the event of its last command
  // (queue.ext_oneapi_get_last_event()), elsewhere a barrier. For the v2
  // Level Zero adapter only: with v1 (2026.2) that call waits until the queue
  // has run everything, and behind a stream that waits on the host it never
  // returns. On v2 it costs about what a barrier does.
  LastEventUnlessIdle,
};

// A failure of use_sycl_context: what went wrong, and the library's result
// code (XPU_HOST_ERROR_INVALID_ARGUMENT for a bad argument of this call).
class Error : public std::runtime_error {
 public:
  Error(xpu_host_result result, const std::string& message) : std::runtime_error(message), result_(result) {}
  xpu_host_result result() const noexcept { return result_; }

 private:
  xpu_host_result result_;
};

// Makes the allocator take its memory from `context`'s native Level Zero
// context (and its platform's driver), and record stream events on the queues
// `lookup` returns, made as `record_with` says. `user_data` is passed to
// `lookup` and must stay valid for the life of the process.
//
// Call it once, before the allocator is first used. Throws Error for a context
// of another backend than Level Zero, a null lookup, or a call after the
// allocator started (XPU_HOST_ERROR_ALREADY_INITIALIZED), with the library's
// message. Thread-safe; the last call before the allocator starts wins.
//
// When a lookup fails or recording throws, the free that needed the event
// returns an error and the block is never handed out again (it is retired):
// without an event nobody can tell when the stream is done with it.
void use_sycl_context(const sycl::context& context, QueueLookup lookup, void* user_data = nullptr,
                      RecordWith record_with = RecordWith::BarrierUnlessIdle);

// What the record and release hooks have done since the process started:
// events recorded, records that needed none (an idle queue), records
// that failed (no queue, or the runtime threw), and events released. Once the
// allocator holds no pending block, released == recorded.
struct SyclEventCounts {
  std::uint64_t recorded;
  std::uint64_t not_needed;
  std::uint64_t failed;
  std::uint64_t released;
};

SyclEventCounts sycl_event_counts() noexcept;

}  // namespace xpu_host_allocator
