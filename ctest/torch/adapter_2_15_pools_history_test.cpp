// PyTorch 2.15's graph-capture pools and memory history through the adapter,
// inside real libtorch 2.15.0: everything goes through
// at::getHostAllocator(at::kXPU) after register_with_pytorch(). A CPU build
// has no c10 XPU streams, so the test answers the library's capture hooks
// itself: a thread-local current stream and a set of capturing streams it
// controls (what adapter/xpu_capture_hooks.cpp answers from c10 in an XPU
// build).
//   hooks     begin_allocate_to_pool before any hooks is a c10::Error, and the
//             filter is not leaked
//   routing   during a capture an allocation whose current stream a pool's
//             filter accepts comes from that pool; another stream's, a thread
//             without a current stream's, and any allocation once the capture
//             ended come from the default pool; filters are dropped at end
//   reuse     a pool block freed unused is reused within the pool during the
//             capture, and not by the default pool
//   retire    a pool block used on a capturing stream and freed gets no event
//             (it is not pending behind the held-back stream), is not reused,
//             stays active; release_pool gives the pool's free blocks to the
//             driver and records the retired block's event now: it comes back
//             through the default pool once the stream drains
//   held      a pool block still allocated at release_pool goes to the default
//             pool when freed
//   deferred  release_pool during the pool's own capture takes effect at its end
//   filters   an empty std::function accepts every stream; a filter that
//             throws declines it
//   history   a recorder that returns null or throws, or none; traces and
//             segments against the calls made, at each RecordContext level; a
//             stats reset while recording; the ring bound; external
//             registrations; recording off; every context released
//   errors    unknown pools, end without begin, release twice, begin twice,
//             the default pool {0, 0}: c10::Error naming the call and pool,
//             and the statistics identical before and after
#include <ATen/core/CachingHostAllocator.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "tensor_checks.h"
#include "test_support.h"
#include "xpu_host_allocator_adapter.h"

using c10::CachingDeviceAllocator::RecordContext;
using c10::CachingDeviceAllocator::TraceEntry;
using xpu_host_test::Checks;
using xpu_host_test::pointer_text;
using xpu_host_test::xpu_stream_key;

namespace {

c10::Stream stream(std::int64_t id) { return c10::Stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::XPU, 0), id); }
const c10::Stream kA = stream(21);
const c10::Stream kB = stream(22);
const c10::Stream kC = stream(23);

std::string pool_text(const c10::MempoolId_t& id) {
  return "(" + std::to_string(id.first) + ", " + std::to_string(id.second) + ")";
}

// --- the test's capture hooks ------------------------------------------------

thread_local std::optional<c10::Stream> current_stream;
std::mutex capturing_mutex;
std::set<std::tuple<int, int, std::int64_t>> capturing;

std::tuple<int, int, std::int64_t> key_of(xpu_host_stream s) { return {s.device_type, s.device_index, s.id}; }

bool hook_current_stream(void* /*user_data*/, xpu_host_stream* out) {
  if (!current_stream) return false;
  *out = xpu_stream_key(*current_stream);
  return true;
}

bool hook_is_capturing(void* /*user_data*/, xpu_host_stream s) {
  std::lock_guard<std::mutex> lock(capturing_mutex);
  return capturing.count(key_of(s)) != 0;
}

xpu_host_result install_hooks() {
  xpu_host_capture_hooks hooks{sizeof(xpu_host_capture_hooks), nullptr, &hook_current_stream, &hook_is_capturing};
  return xpu_host_set_capture_hooks(&hooks);
}

// The calling thread's current stream while it lives (none for nullopt).
class CurrentStream {
 public:
  explicit CurrentStream(std::optional<c10::Stream> s) : before_(current_stream) { current_stream = s; }
  ~CurrentStream() { current_stream = before_; }
  CurrentStream(const CurrentStream&) = delete;
  CurrentStream& operator=(const CurrentStream&) = delete;

 private:
  std::optional<c10::Stream> before_;
};

// `s` captures while it lives.
class Capturing {
 public:
  explicit Capturing(c10::Stream s) : key_(key_of(xpu_stream_key(s))) {
    std::lock_guard<std::mutex> lock(capturing_mutex);
    capturing.insert(key_);
  }
  ~Capturing() {
    std::lock_guard<std::mutex> lock(capturing_mutex);
    capturing.erase(key_);
  }
  Capturing(const Capturing&) = delete;
  Capturing& operator=(const Capturing&) = delete;

 private:
  std::tuple<int, int, std::int64_t> key_;
};

// A filter accepting one stream that counts its live copies: the adapter must
// delete the one it owns when the capture ends, or at once if begin fails.
struct CountedFilter {
  static inline std::atomic<int> live{0};
  c10::Stream accepted;
  explicit CountedFilter(c10::Stream s) : accepted(s) { ++live; }
  CountedFilter(const CountedFilter& other) : accepted(other.accepted) { ++live; }
  CountedFilter& operator=(const CountedFilter&) = default;
  ~CountedFilter() { --live; }
  bool operator()(c10::Stream s) const { return s == accepted; }
};

// --- looking at the allocator ------------------------------------------------

xpu_host_counters counters() {
  xpu_host_stats stats{sizeof(xpu_host_stats), {}};
  xpu_host_get_stats(&stats);
  return stats.counters;
}

std::string stat_text(const c10::CachingAllocator::Stat& s) {
  return std::to_string(s.current) + "/" + std::to_string(s.peak) + "/" + std::to_string(s.allocated) + "/" +
         std::to_string(s.freed);
}

// Everything an error must leave as it was.
std::string snapshot(at::HostAllocator* allocator) {
  at::HostStats s = allocator->get_stats();
  xpu_host_counters c = counters();
  return "active_requests " + stat_text(s.active_requests) + ", active_bytes " + stat_text(s.active_bytes) +
         ", allocations " + stat_text(s.allocations) + ", allocated_bytes " + stat_text(s.allocated_bytes) +
         ", num_host_alloc " + std::to_string(s.num_host_alloc) + ", num_host_free " + std::to_string(s.num_host_free) +
         ", pending " + std::to_string(c.pending_blocks.current) + ", cached_bytes " + std::to_string(c.cached_bytes.current) +
         ", hits " + std::to_string(c.cache_hits) + ", misses " + std::to_string(c.cache_misses) + ", retired " +
         std::to_string(c.retired_blocks) + ", segments " + std::to_string(allocator->get_segments().size()) +
         ", history " + (allocator->is_history_enabled() ? "on" : "off") + " with " +
         std::to_string(allocator->get_traces().size()) + " entries";
}

std::optional<at::HostSegmentInfo> segment_of(at::HostAllocator* allocator, const void* p) {
  for (auto& s : allocator->get_segments()) {
    if (s.address == reinterpret_cast<std::size_t>(p)) return s;
  }
  return std::nullopt;
}

std::string segment_text(const std::optional<at::HostSegmentInfo>& s) {
  if (!s) return "no segment";
  return "segment " + pointer_text(reinterpret_cast<void*>(s->address)) + " of " + std::to_string(s->size) +
         " bytes, allocated " + std::to_string(s->allocated) + ", active " + std::to_string(s->active) + ", pool " +
         pool_text(s->owner_private_pool_id);
}

bool in_pool(at::HostAllocator* allocator, const void* p, const c10::MempoolId_t& pool) {
  auto s = segment_of(allocator, p);
  return s && s->owner_private_pool_id == pool;
}

// Holds up to `count` blocks of `size` at once; true if one of them is `wanted`.
bool handed_out_among(at::HostAllocator* allocator, std::size_t size, const void* wanted, int count) {
  std::vector<at::DataPtr> held;
  for (int i = 0; i < count; ++i) {
    held.push_back(allocator->allocate(size));
    if (held.back().get() == wanted) return true;
  }
  return false;
}

// Holds, at once, one block of `size` more than the cache has free blocks of
// that size (a multiple of 512: exact fit serves a request from blocks of its
// own size first), so that every one of them is taken: true if `wanted` is.
// A fixed count would not do: freed blocks go back on top of the calling
// thread's cache, and one returned from elsewhere may stay below them.
bool takes_back(at::HostAllocator* allocator, std::size_t size, const void* wanted) {
  int cached = 0;
  for (const auto& s : allocator->get_segments()) cached += !s.allocated && !s.active && s.size == size;
  return handed_out_among(allocator, size, wanted, cached + 1);
}

// A block of `size` allocated into `pool` by a capture of stream kA, begun and ended around it.
at::DataPtr allocate_captured(at::HostAllocator* allocator, const c10::MempoolId_t& pool, std::size_t size) {
  Capturing capture(kA);
  allocator->begin_allocate_to_pool(pool, CountedFilter(kA));
  CurrentStream current(kA);
  at::DataPtr block = allocator->allocate(size);
  allocator->end_allocate_to_pool(pool);
  return block;
}

// --- checks ------------------------------------------------------------------

void check_without_hooks(Checks& checks, at::HostAllocator* allocator) {
  std::string before = snapshot(allocator);
  checks.throws<c10::Error>("hooks: begin_allocate_to_pool before any capture hooks is a c10::Error naming the call and pool",
                            "xpu_host_begin_allocate_to_pool(pool (1, 0)) failed",
                            [&] { allocator->begin_allocate_to_pool({1, 0}, CountedFilter(kA)); });
  checks.check(CountedFilter::live == 0, "hooks: the refused filter is deleted", std::to_string(CountedFilter::live) + " alive");
  checks.check(snapshot(allocator) == before, "hooks: the refused begin changes nothing", snapshot(allocator) + " against " + before);
  checks.check(install_hooks() == XPU_HOST_SUCCESS, "hooks: xpu_host_set_capture_hooks takes the test's hooks");
}

void check_routing(Checks& checks, at::HostAllocator* allocator) {
  constexpr std::size_t kSize = 12288;
  const c10::MempoolId_t p1{1, 0}, p2{2, 0};
  at::DataPtr a, b, c, d, e;
  {
    Capturing capture_a(kA), capture_b(kB);
    allocator->begin_allocate_to_pool(p1, CountedFilter(kA));
    allocator->begin_allocate_to_pool(p2, CountedFilter(kB));
    checks.check(CountedFilter::live == 2, "routing: the library keeps both filters during the captures",
                 std::to_string(CountedFilter::live) + " alive");
    {
      CurrentStream current(kA);
      a = allocator->allocate(kSize);
    }
    {
      CurrentStream current(kB);
      b = allocator->allocate(kSize);
    }
    {
      CurrentStream current(kC);
      c = allocator->allocate(kSize);
    }
    d = allocator->allocate(kSize);  // no current stream
    checks.check(in_pool(allocator, a.get(), p1), "routing: the stream pool (1, 0)'s filter accepts gets a block of that pool",
                 segment_text(segment_of(allocator, a.get())));
    checks.check(in_pool(allocator, b.get(), p2), "routing: the stream pool (2, 0)'s filter accepts gets a block of that pool",
                 segment_text(segment_of(allocator, b.get())));
    checks.check(in_pool(allocator, c.get(), {0, 0}), "routing: a stream no filter accepts gets a default-pool block",
                 segment_text(segment_of(allocator, c.get())));
    checks.check(in_pool(allocator, d.get(), {0, 0}), "routing: a thread without a current stream gets a default-pool block",
                 segment_text(segment_of(allocator, d.get())));
    auto sa = segment_of(allocator, a.get());
    checks.check(sa && sa->allocated && sa->active && sa->size >= kSize, "routing: the pool block's segment is allocated and active",
                 segment_text(sa));
    allocator->end_allocate_to_pool(p1);
    allocator->end_allocate_to_pool(p2);
  }
  checks.check(CountedFilter::live == 0, "routing: end_allocate_to_pool drops the filters", std::to_string(CountedFilter::live) + " alive");
  {
    CurrentStream current(kA);
    e = allocator->allocate(kSize);
  }
  checks.check(in_pool(allocator, e.get(), {0, 0}), "routing: once the capture ended, the same stream gets a default-pool block",
               segment_text(segment_of(allocator, e.get())));

  // a and b were never used on a stream: freed, they wait in their pools,
  // which release_pool gives back to the driver.
  void* pa = a.get();
  void* pb = b.get();
  a.clear();
  b.clear();
  c.clear();
  d.clear();
  e.clear();
  at::HostStats before = allocator->get_stats();
  allocator->release_pool(p1);
  allocator->release_pool(p2);
  at::HostStats after = allocator->get_stats();
  checks.check(after.num_host_free == before.num_host_free + 2 && after.allocations.current == before.allocations.current - 2,
               "routing: release_pool gives the two pools' free blocks to the driver",
               "num_host_free " + std::to_string(before.num_host_free) + " -> " + std::to_string(after.num_host_free) +
                   ", allocations " + stat_text(before.allocations) + " -> " + stat_text(after.allocations));
  checks.check(!segment_of(allocator, pa) && !segment_of(allocator, pb), "routing: the released pools' blocks are no segments any more");
}

void check_reuse_within_pool(Checks& checks, at::HostAllocator* allocator) {
  constexpr std::size_t kSize = 16384;
  const c10::MempoolId_t pool{3, 0};
  void* first = nullptr;
  {
    Capturing capture(kA);
    allocator->begin_allocate_to_pool(pool, CountedFilter(kA));
    {
      CurrentStream current(kA);
      first = allocator->allocate(kSize).get();  // freed at once, never used on a stream
      auto s = segment_of(allocator, first);
      checks.check(s && s->owner_private_pool_id == pool && !s->allocated && !s->active,
                   "reuse: a pool block freed unused is free in its pool", segment_text(s));
      {
        CurrentStream other(kB);
        at::DataPtr elsewhere = allocator->allocate(kSize);
        checks.check(elsewhere.get() != first && in_pool(allocator, elsewhere.get(), {0, 0}),
                     "reuse: the default pool does not take the pool's free block",
                     pointer_text(elsewhere.get()) + " against " + pointer_text(first));
      }
      at::DataPtr again = allocator->allocate(kSize);
      checks.check(again.get() == first && in_pool(allocator, again.get(), pool),
                   "reuse: the same capture gets the pool's free block again",
                   pointer_text(again.get()) + " against " + pointer_text(first));
    }
    allocator->end_allocate_to_pool(pool);
  }
  allocator->release_pool(pool);
}

void check_retired_then_released(Checks& checks, at::HostAllocator* allocator) {
  constexpr std::size_t kSize = 20480;
  const c10::MempoolId_t pool{4, 0};
  // Work held back on stream A: an event recorded on it now would stay pending.
  xpu_host_test::HeldBackStream held(checks, xpu_stream_key(kA));
  if (!held.holding()) return;

  void* retired = nullptr;
  void* unused = nullptr;
  xpu_host_counters before_free{};
  {
    Capturing capture(kA);
    allocator->begin_allocate_to_pool(pool, CountedFilter(kA));
    CurrentStream current(kA);
    {
      at::DataPtr r = allocator->allocate(kSize);
      retired = r.get();
      checks.check(allocator->record_event(r.get(), r.get_context(), kA), "retire: record_event of a pool block on the capturing stream is true");
      before_free = counters();
    }  // freed here
    xpu_host_counters after_free = counters();
    checks.check(after_free.pending_blocks.current == before_free.pending_blocks.current,
                 "retire: no event is recorded for a block allocated during capture (it is not pending behind the held-back stream)",
                 "pending blocks " + std::to_string(before_free.pending_blocks.current) + " -> " +
                     std::to_string(after_free.pending_blocks.current));
    checks.check(after_free.captured_blocks == before_free.captured_blocks + 1,
                 "retire: the library counts it among the blocks kept in their pool (captured_blocks)",
                 std::to_string(before_free.captured_blocks) + " -> " + std::to_string(after_free.captured_blocks));
    auto s = segment_of(allocator, retired);
    checks.check(s && !s->allocated && s->active && s->owner_private_pool_id == pool,
                 "retire: the freed block stays active in its pool's segments", segment_text(s));
    {
      at::DataPtr f = allocator->allocate(kSize);
      unused = f.get();
      checks.check(unused != retired && in_pool(allocator, unused, pool),
                   "retire: a later allocation of the same size in the pool does not get the retired block",
                   pointer_text(unused) + " against " + pointer_text(retired));
    }  // freed unused: free in the pool
    {
      CurrentStream other(kB);
      checks.check(!takes_back(allocator, kSize, retired),
                   "retire: default-pool allocations of the same size do not get the retired block either");
    }
    allocator->end_allocate_to_pool(pool);
  }

  at::HostStats before = allocator->get_stats();
  xpu_host_counters c_before = counters();
  allocator->release_pool(pool);
  at::HostStats after = allocator->get_stats();
  xpu_host_counters c_after = counters();
  checks.check(after.num_host_free == before.num_host_free + 1 && after.allocations.current == before.allocations.current - 1,
               "retire: release_pool gives the pool's free block to the driver and keeps the retired one",
               "num_host_free " + std::to_string(before.num_host_free) + " -> " + std::to_string(after.num_host_free) +
                   ", allocations " + stat_text(before.allocations) + " -> " + stat_text(after.allocations));
  checks.check(!segment_of(allocator, unused), "retire: the pool's free block is no segment any more");
  checks.check(c_after.pending_blocks.current == c_before.pending_blocks.current + 1,
               "retire: release_pool records the retired block's event on the stream that used it (pending now)",
               "pending blocks " + std::to_string(c_before.pending_blocks.current) + " -> " +
                   std::to_string(c_after.pending_blocks.current));
  checks.check(c_after.captured_blocks == c_before.captured_blocks - 1, "retire: release_pool no longer keeps it in the pool (captured_blocks)",
               std::to_string(c_before.captured_blocks) + " -> " + std::to_string(c_after.captured_blocks));
  auto s = segment_of(allocator, retired);
  checks.check(s && !s->allocated && s->active, "retire: while the stream is held back, the retired block stays active",
               segment_text(s));
  checks.check(!takes_back(allocator, kSize, retired),
               "retire: while the stream is held back, the retired block is not handed out");

  if (!held.release_and_drain()) return;
  bool back = xpu_host_test::poll_until([&] { return takes_back(allocator, kSize, retired); });
  checks.check(back, "retire: once the stream drains, the retired block comes back through the default pool's cache",
               "block " + pointer_text(retired) + " never came back within 5 s");
  at::DataPtr now = allocator->allocate(kSize);
  // Whichever block this is, it is the default pool's.
  checks.check(in_pool(allocator, now.get(), {0, 0}), "retire: after release, allocations come from the default pool",
               segment_text(segment_of(allocator, now.get())));
}

void check_allocated_at_release(Checks& checks, at::HostAllocator* allocator) {
  constexpr std::size_t kSize = 28672;
  const c10::MempoolId_t pool{5, 0};
  at::DataPtr kept = allocate_captured(allocator, pool, kSize);
  checks.check(in_pool(allocator, kept.get(), pool), "held: the block came from the pool", segment_text(segment_of(allocator, kept.get())));
  allocator->release_pool(pool);
  auto s = segment_of(allocator, kept.get());
  checks.check(s && s->allocated, "held: a block still allocated at release_pool stays allocated", segment_text(s));
  void* p = kept.get();
  kept.clear();
  checks.check(takes_back(allocator, kSize, p), "held: freed after release_pool, it is reused by the default pool");
}

// release_pool during the pool's own capture waits for the capture's end.
void check_release_during_capture(Checks& checks, at::HostAllocator* allocator) {
  constexpr std::size_t kSize = 30720;
  const c10::MempoolId_t pool{10, 0};
  void* first = nullptr;
  at::HostStats before_end;
  {
    Capturing capture(kA);
    allocator->begin_allocate_to_pool(pool, CountedFilter(kA));
    CurrentStream current(kA);
    first = allocator->allocate(kSize).get();  // freed unused: free in the pool
    allocator->release_pool(pool);
    at::DataPtr again = allocator->allocate(kSize);
    checks.check(again.get() == first && in_pool(allocator, again.get(), pool),
                 "deferred: after release_pool during its capture, the capture still allocates from the pool",
                 pointer_text(again.get()) + " against " + pointer_text(first));
    again.clear();
    before_end = allocator->get_stats();
    allocator->end_allocate_to_pool(pool);
  }
  at::HostStats after_end = allocator->get_stats();
  checks.check(after_end.num_host_free == before_end.num_host_free + 1 && !segment_of(allocator, first),
               "deferred: the capture's end carries out the release: the pool's free block goes to the driver",
               "num_host_free " + std::to_string(before_end.num_host_free) + " -> " + std::to_string(after_end.num_host_free));
  checks.throws<c10::Error>("deferred: the pool is released: another release_pool is a c10::Error",
                            "xpu_host_release_pool(pool (10, 0)) failed", [&] { allocator->release_pool(pool); });
}

// An empty std::function accepts every stream (the library's NULL filter); a
// filter that throws declines the stream: the library calls it from a C frame.
void check_unusual_filters(Checks& checks, at::HostAllocator* allocator) {
  constexpr std::size_t kSize = 32768;
  const c10::MempoolId_t any{7, 0}, throwing{8, 0};
  Capturing capture_c(kC), capture_a(kA);
  allocator->begin_allocate_to_pool(any, std::function<bool(c10::Stream)>());
  {
    CurrentStream current(kC);
    at::DataPtr block = allocator->allocate(kSize);
    checks.check(in_pool(allocator, block.get(), any), "filters: an empty std::function accepts every stream",
                 segment_text(segment_of(allocator, block.get())));
  }
  allocator->end_allocate_to_pool(any);
  allocator->release_pool(any);
  allocator->begin_allocate_to_pool(throwing, [](c10::Stream) -> bool { throw std::runtime_error("the test's filter throws"); });
  {
    CurrentStream current(kA);
    at::DataPtr block = allocator->allocate(kSize);
    checks.check(block.get() != nullptr && in_pool(allocator, block.get(), {0, 0}),
                 "filters: a filter that throws declines the stream (default pool), nothing unwinds through the library",
                 segment_text(segment_of(allocator, block.get())));
  }
  allocator->end_allocate_to_pool(throwing);
  allocator->release_pool(throwing);
}

// --- history -----------------------------------------------------------------

// The test's own GatheredContext: numbered, and counted while alive.
struct TestContext : c10::GatheredContext {
  static inline std::atomic<int> gathered{0};
  static inline std::atomic<int> live{0};
  int id;
  TestContext() : id(++gathered) { ++live; }
  ~TestContext() override { --live; }
};

std::shared_ptr<c10::GatheredContext> make_context() { return std::make_shared<TestContext>(); }

int context_id(const std::shared_ptr<c10::GatheredContext>& c) {
  auto* t = dynamic_cast<TestContext*>(c.get());
  return t != nullptr ? t->id : (c ? -2 : -1);  // -1: none, -2: not ours
}

const char* action_name(TraceEntry::Action a) {
  switch (a) {
    case TraceEntry::ALLOC: return "alloc";
    case TraceEntry::FREE_REQUESTED: return "free_requested";
    case TraceEntry::FREE_COMPLETED: return "free_completed";
    case TraceEntry::SEGMENT_ALLOC: return "segment_alloc";
    case TraceEntry::SEGMENT_FREE: return "segment_free";
    default: return "other";
  }
}

std::string traces_text(const std::vector<TraceEntry>& traces) {
  std::string text;
  for (const auto& t : traces) {
    text += std::string(text.empty() ? "" : ", ") + action_name(t.action_) + " " + pointer_text(reinterpret_cast<void*>(t.addr_)) +
            " " + std::to_string(t.size_) + " ctx " + std::to_string(context_id(t.context_));
  }
  return "[" + text + "]";
}

std::vector<TraceEntry::Action> actions_of(const std::vector<TraceEntry>& traces) {
  std::vector<TraceEntry::Action> actions;
  for (const auto& t : traces) actions.push_back(t.action_);
  return actions;
}

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// One allocate and free of a fresh size at level `when`: the entries and who has contexts.
void check_level(Checks& checks, at::HostAllocator* allocator, RecordContext when, const std::string& level, std::size_t size) {
  allocator->empty_cache();  // nothing cached: the allocation is a miss, with a SEGMENT_ALLOC
  allocator->record_history(true, &make_context, 1000, when, /*clearHistory=*/true);
  checks.check(allocator->is_history_enabled() && allocator->get_traces().empty(),
               "history " + level + ": recording is on, and clearHistory left no entries");
  const std::int64_t start = now_us();
  const int gathered_before = TestContext::gathered;
  void* p = nullptr;
  int alloc_gathers = 0;
  {
    at::DataPtr block = allocator->allocate(size);
    p = block.get();
    alloc_gathers = TestContext::gathered - gathered_before;
    auto s = segment_of(allocator, p);
    bool wants = when != RecordContext::NEVER;
    checks.check(s && s->allocated && s->active && s->owner_private_pool_id == c10::MempoolId_t{0, 0} && s->size >= size &&
                     (context_id(s->context_when_allocated) > 0) == wants,
                 "history " + level + ": the live block's segment is allocated, active, default pool, " +
                     (wants ? "with" : "without") + " the context of its allocation",
                 segment_text(s) + ", context " + std::to_string(s ? context_id(s->context_when_allocated) : -1));
  }
  const int free_gathers = TestContext::gathered - gathered_before - alloc_gathers;
  { at::DataPtr hit = allocator->allocate(size); }
  allocator->empty_cache();
  const std::int64_t end = now_us();

  std::vector<TraceEntry> traces = allocator->get_traces();
  using A = TraceEntry;
  std::vector<A::Action> expected{A::SEGMENT_ALLOC,  A::ALLOC,          A::FREE_REQUESTED, A::FREE_COMPLETED,
                                  A::ALLOC,          A::FREE_REQUESTED, A::FREE_COMPLETED, A::SEGMENT_FREE};
  checks.check(actions_of(traces) == expected,
               "history " + level + ": allocate (a miss), free, allocate (a hit), free, empty_cache give segment_alloc, "
               "alloc, free_requested, free_completed, alloc, free_requested, free_completed, segment_free",
               traces_text(traces));
  if (traces.size() != expected.size()) return;
  bool same_block = std::all_of(traces.begin(), traces.end(), [&](const TraceEntry& t) {
    return t.addr_ == reinterpret_cast<std::size_t>(p) && t.size_ == traces[0].size_ && t.size_ >= size &&
           t.mempool_ == c10::MempoolId_t{0, 0} && t.device_ == -1 && t.stream_ == nullptr;
  });
  checks.check(same_block, "history " + level + ": every entry names the block's address and size, the default pool, no device or stream",
               traces_text(traces));
  bool in_order = true;
  for (std::size_t i = 0; i < traces.size(); ++i) {
    std::int64_t t = traces[i].time_.t_;
    in_order = in_order && t >= start - 1000 && t <= end + 1000 && (i == 0 || t >= traces[i - 1].time_.t_);
  }
  checks.check(in_order, "history " + level + ": times are microseconds since the epoch, during the calls, in order");

  // Who carries a context, level by level (c10's RecordContext).
  const bool alloc_ctx = when >= RecordContext::ALLOC;
  bool alloc_ok = (context_id(traces[1].context_) > 0) == alloc_ctx && (context_id(traces[4].context_) > 0) == alloc_ctx;
  checks.check(alloc_ok, "history " + level + ": alloc entries " + (alloc_ctx ? "carry" : "carry no") + " context",
               traces_text(traces));
  if (when == RecordContext::ALL) {
    bool free_ok = context_id(traces[2].context_) > 0 && context_id(traces[2].context_) != context_id(traces[1].context_) &&
                   context_id(traces[5].context_) > 0;
    checks.check(free_ok, "history ALL: free_requested entries carry a context of their own, gathered at the free",
                 traces_text(traces));
  } else {
    // A free entry may repeat its allocation's context (PyTorch's does at
    // ALLOC), never carry one of its own.
    bool no_free_ctx = true;
    int alloc_id = -1;
    for (const auto& t : traces) {
      if (t.action_ == TraceEntry::ALLOC) alloc_id = context_id(t.context_);
      if (t.action_ == TraceEntry::FREE_REQUESTED || t.action_ == TraceEntry::FREE_COMPLETED) {
        no_free_ctx = no_free_ctx && (!t.context_ || (alloc_ctx && context_id(t.context_) == alloc_id));
      }
    }
    checks.check(no_free_ctx, "history " + level + ": frees carry no context of their own", traces_text(traces));
  }
  if (when == RecordContext::STATE || when == RecordContext::NEVER) {
    bool none = std::all_of(traces.begin(), traces.end(), [](const TraceEntry& t) { return !t.context_; });
    checks.check(none, "history " + level + ": no entry carries a context", traces_text(traces));
  }
  const int want_alloc = when == RecordContext::NEVER ? 0 : 1;
  const int want_free = when == RecordContext::ALL ? 1 : 0;
  checks.check(alloc_gathers == want_alloc && free_gathers == want_free,
               "history " + level + ": the recorder is called " + std::to_string(want_alloc) + " time(s) per allocation and " +
                   std::to_string(want_free) + " per free",
               std::to_string(alloc_gathers) + " and " + std::to_string(free_gathers));
}

std::shared_ptr<c10::GatheredContext> no_context() { return nullptr; }
std::shared_ptr<c10::GatheredContext> throwing_context() { throw std::runtime_error("the test's recorder throws"); }

// A recorder that gives nothing, or throws (from a C frame in the library):
// entries and segments without contexts, and the allocator unharmed.
void check_unusual_recorders(Checks& checks, at::HostAllocator* allocator) {
  for (auto [fn, name] : {std::pair{&no_context, "returns null"}, std::pair{&throwing_context, "throws"}}) {
    allocator->record_history(true, fn, 100, RecordContext::ALL, true);
    at::DataPtr block = allocator->allocate(35840);
    auto s = segment_of(allocator, block.get());
    void* p = block.get();
    block.clear();
    std::vector<TraceEntry> traces = allocator->get_traces();
    // (A miss may first give a cached block of another size back: other entries.)
    bool recorded = std::any_of(traces.begin(), traces.end(), [&](const TraceEntry& t) {
      return t.action_ == TraceEntry::ALLOC && t.addr_ == reinterpret_cast<std::size_t>(p);
    });
    bool none = std::all_of(traces.begin(), traces.end(), [](const TraceEntry& t) { return !t.context_; });
    checks.check(s && !s->context_when_allocated && recorded && none,
                 std::string("history: a recorder that ") + name + " leaves entries and segments without context",
                 traces_text(traces));
  }
  allocator->record_history(true, nullptr, 100, RecordContext::ALL, true);
  { at::DataPtr block = allocator->allocate(35840); }
  std::vector<TraceEntry> traces = allocator->get_traces();
  checks.check(traces.size() >= 3 && std::none_of(traces.begin(), traces.end(), [](const TraceEntry& t) { return t.context_ != nullptr; }),
               "history: no recorder at all records entries without context", traces_text(traces));
  allocator->record_history(false, nullptr, 100, RecordContext::NEVER, true);
}

void check_history_levels(Checks& checks, at::HostAllocator* allocator) {
  check_level(checks, allocator, RecordContext::ALL, "ALL", 36864);
  check_level(checks, allocator, RecordContext::ALLOC, "ALLOC", 37376);
  check_level(checks, allocator, RecordContext::STATE, "STATE", 37888);
  check_level(checks, allocator, RecordContext::NEVER, "NEVER", 38400);
}

void check_history_segments(Checks& checks, at::HostAllocator* allocator) {
  allocator->record_history(true, &make_context, 1000, RecordContext::ALL, true);
  constexpr std::size_t kSize = 39936;
  const c10::MempoolId_t pool{6, 0};
  at::DataPtr live = allocator->allocate(kSize);
  at::DataPtr in_pool_block = allocate_captured(allocator, pool, kSize);
  // Last, so that no later miss can give it back to the driver before the segments are read.
  void* freed = allocator->allocate(kSize + 512).get();
  std::vector<TraceEntry> traces = allocator->get_traces();
  auto alloc_context_of = [&](const void* p) {
    int id = -1;
    for (const auto& t : traces) {
      if (t.action_ == TraceEntry::ALLOC && t.addr_ == reinterpret_cast<std::size_t>(p)) id = context_id(t.context_);
    }
    return id;
  };
  auto s_live = segment_of(allocator, live.get());
  auto s_freed = segment_of(allocator, freed);
  auto s_pool = segment_of(allocator, in_pool_block.get());
  checks.check(s_live && s_live->allocated && s_live->active && s_live->owner_private_pool_id == c10::MempoolId_t{0, 0} &&
                   context_id(s_live->context_when_allocated) > 0 &&
                   context_id(s_live->context_when_allocated) == alloc_context_of(live.get()),
               "history segments: a live block is allocated, active, with its alloc entry's context", segment_text(s_live));
  checks.check(s_freed && !s_freed->allocated && !s_freed->active, "history segments: a freed cached block is neither allocated nor active",
               segment_text(s_freed));
  checks.check(s_pool && s_pool->allocated && s_pool->owner_private_pool_id == pool &&
                   context_id(s_pool->context_when_allocated) == alloc_context_of(in_pool_block.get()),
               "history segments: a pool block names its pool and carries its alloc entry's context", segment_text(s_pool));
  bool pool_entry = std::any_of(traces.begin(), traces.end(), [&](const TraceEntry& t) {
    return t.action_ == TraceEntry::ALLOC && t.addr_ == reinterpret_cast<std::size_t>(in_pool_block.get()) && t.mempool_ == pool;
  });
  checks.check(pool_entry, "history segments: the pool block's alloc entry names its pool", traces_text(traces));
  const std::size_t live_blocks = static_cast<std::size_t>(allocator->get_stats().allocations.current);
  std::size_t listed = allocator->get_segments().size();
  checks.check(listed == live_blocks, "history segments: one segment per block held from the driver",
               std::to_string(listed) + " segments, " + std::to_string(live_blocks) + " blocks");
  in_pool_block.clear();
  allocator->release_pool(pool);
}

void check_reset_while_recording(Checks& checks, at::HostAllocator* allocator) {
  allocator->record_history(true, &make_context, 1000, RecordContext::ALLOC, true);
  at::DataPtr block = allocator->allocate(40448);
  std::size_t entries = allocator->get_traces().size();
  allocator->reset_accumulated_stats();
  allocator->reset_peak_stats();
  at::HostStats s = allocator->get_stats();
  checks.check(s.num_host_alloc == 0 && s.active_requests.allocated == 0 && s.active_requests.current >= 1,
               "reset while recording: the stats are reset", "num_host_alloc " + std::to_string(s.num_host_alloc) +
                                                                  ", active_requests " + stat_text(s.active_requests));
  checks.check(allocator->is_history_enabled() && allocator->get_traces().size() == entries,
               "reset while recording: recording stays on and keeps its entries",
               std::to_string(allocator->get_traces().size()) + " entries, " + std::to_string(entries) + " before");
  void* p = block.get();
  block.clear();
  std::vector<TraceEntry> traces = allocator->get_traces();
  checks.check(traces.size() == entries + 2 && traces[entries].action_ == TraceEntry::FREE_REQUESTED &&
                   traces[entries + 1].action_ == TraceEntry::FREE_COMPLETED &&
                   traces[entries].addr_ == reinterpret_cast<std::size_t>(p),
               "reset while recording: the free after the reset is recorded", traces_text(traces));
}

void check_ring(Checks& checks, at::HostAllocator* allocator) {
  allocator->empty_cache();
  allocator->record_history(true, &make_context, 4, RecordContext::ALLOC, true);
  std::vector<at::DataPtr> blocks;
  for (int i = 0; i < 6; ++i) blocks.push_back(allocator->allocate(41472 + 1024 * i));  // six misses: 12 entries
  std::vector<TraceEntry> traces = allocator->get_traces();
  auto at = [&](std::size_t i) { return reinterpret_cast<std::size_t>(blocks[i].get()); };
  bool newest = traces.size() == 4 && traces[0].action_ == TraceEntry::SEGMENT_ALLOC && traces[0].addr_ == at(4) &&
                traces[1].action_ == TraceEntry::ALLOC && traces[1].addr_ == at(4) &&
                traces[2].action_ == TraceEntry::SEGMENT_ALLOC && traces[2].addr_ == at(5) &&
                traces[3].action_ == TraceEntry::ALLOC && traces[3].addr_ == at(5);
  checks.check(newest, "ring: with max_entries 4, twelve entries keep the newest four, oldest first", traces_text(traces));
  checks.throws<c10::Error>("ring: max_entries 0 is a c10::Error", "xpu_host_record_history failed",
                            [&] { allocator->record_history(true, &make_context, 0, RecordContext::ALLOC, false); });
  checks.check(allocator->is_history_enabled() && allocator->get_traces().size() == 4,
               "ring: the refused call changed nothing (recording on, four entries)");
  blocks.clear();
}

void check_external(Checks& checks, at::HostAllocator* allocator) {
  alignas(64) static char memory[8192];
  allocator->record_history(true, &make_context, 1000, RecordContext::ALL, true);
  const std::size_t address = reinterpret_cast<std::size_t>(memory);
  allocator->record_external_register(memory, sizeof memory);
  std::vector<TraceEntry> traces = allocator->get_traces();
  checks.check(actions_of(traces) == std::vector<TraceEntry::Action>{TraceEntry::SEGMENT_ALLOC, TraceEntry::ALLOC} &&
                   traces[0].addr_ == address && traces[1].addr_ == address && traces[0].size_ == sizeof memory &&
                   traces[1].size_ == sizeof memory && context_id(traces[1].context_) > 0,
               "external: register records segment_alloc and alloc (with a context) of the memory", traces_text(traces));
  auto s = segment_of(allocator, memory);
  checks.check(s && s->size == sizeof memory && s->allocated && s->active && s->owner_private_pool_id == c10::MempoolId_t{0, 0} &&
                   context_id(s->context_when_allocated) == context_id(traces[1].context_),
               "external: the registration is a segment, allocated, active, default pool, with its context", segment_text(s));
  allocator->record_external_unregister(memory);
  traces = allocator->get_traces();
  std::vector<TraceEntry::Action> expected{TraceEntry::SEGMENT_ALLOC, TraceEntry::ALLOC, TraceEntry::FREE_REQUESTED,
                                           TraceEntry::FREE_COMPLETED, TraceEntry::SEGMENT_FREE};
  checks.check(actions_of(traces) == expected && std::all_of(traces.begin(), traces.end(), [&](const TraceEntry& t) {
                 return t.addr_ == address && t.size_ == sizeof memory;
               }),
               "external: unregister records free_requested, free_completed, segment_free", traces_text(traces));
  checks.check(!segment_of(allocator, memory), "external: once unregistered, it is no segment");
  allocator->record_external_unregister(memory);
  checks.check(allocator->get_traces().size() == expected.size(), "external: unregistering an unknown pointer records nothing");
  checks.throws<c10::Error>("external: registering a null pointer is a c10::Error", "xpu_host_record_external_register failed",
                            [&] { allocator->record_external_register(nullptr, 16); });
}

void check_recording_off(Checks& checks, at::HostAllocator* allocator) {
  alignas(64) static char memory[4096];
  allocator->record_history(true, &make_context, 1000, RecordContext::ALL, true);
  { at::DataPtr block = allocator->allocate(48640); }
  std::size_t kept = allocator->get_traces().size();
  bool turned_off = true;
  try {
    // max_entries means nothing when turning recording off, 0 included (as in PyTorch).
    allocator->record_history(false, nullptr, 0, RecordContext::NEVER, false);
  } catch (const c10::Error& e) {
    turned_off = false;
    checks.check(false, "off: record_history(false, ..., max_entries 0) does not throw", e.what());
  }
  checks.check(turned_off && !allocator->is_history_enabled(), "off: is_history_enabled is false");
  checks.check(kept > 0 && allocator->get_traces().size() == kept, "off: the entries recorded so far can still be read",
               std::to_string(allocator->get_traces().size()) + " of " + std::to_string(kept));
  const int gathered = TestContext::gathered;
  {
    at::DataPtr block = allocator->allocate(48640);
    at::DataPtr other = allocator->allocate(49152);
  }
  allocator->record_external_register(memory, sizeof memory);
  bool listed = segment_of(allocator, memory).has_value();
  allocator->record_external_unregister(memory);
  checks.check(allocator->get_traces().size() == kept && TestContext::gathered == gathered,
               "off: allocations, frees and external registrations record nothing and gather no context",
               traces_text(allocator->get_traces()));
  checks.check(!listed, "off: an external registration is not listed in the segments");
  allocator->record_history(false, nullptr, 1000, RecordContext::NEVER, true);
  checks.check(allocator->get_traces().empty(), "off: clearHistory with recording off drops the entries");
  allocator->empty_cache();
  checks.check(TestContext::live == 0, "history: every context the recorder gave is released once nothing keeps it",
               std::to_string(TestContext::live) + " alive");
}

// --- errors ------------------------------------------------------------------

void check_errors(Checks& checks, at::HostAllocator* allocator) {
  // Each must throw, naming the call and the pool, and change nothing.
  auto refused = [&](const std::string& name, const std::string& mention, const std::function<void()>& body) {
    std::string before = snapshot(allocator);
    checks.throws<c10::Error>("errors: " + name, mention, body);
    std::string after = snapshot(allocator);
    checks.check(after == before, "errors: " + name + ": the statistics are identical", after + " against " + before);
  };
  refused("release_pool of a pool never begun", "xpu_host_release_pool(pool (77, 0)) failed",
          [&] { allocator->release_pool({77, 0}); });
  refused("end_allocate_to_pool without begin", "xpu_host_end_allocate_to_pool(pool (78, 0)) failed",
          [&] { allocator->end_allocate_to_pool({78, 0}); });
  refused("begin_allocate_to_pool on the default pool (0, 0)", "xpu_host_begin_allocate_to_pool(pool (0, 0)) failed",
          [&] { allocator->begin_allocate_to_pool({0, 0}, CountedFilter(kA)); });
  refused("end_allocate_to_pool of the default pool (0, 0)", "xpu_host_end_allocate_to_pool(pool (0, 0)) failed",
          [&] { allocator->end_allocate_to_pool({0, 0}); });
  refused("release_pool of the default pool (0, 0)", "xpu_host_release_pool(pool (0, 0)) failed",
          [&] { allocator->release_pool({0, 0}); });
  checks.check(CountedFilter::live == 0, "errors: refused filters are deleted", std::to_string(CountedFilter::live) + " alive");

  const c10::MempoolId_t pool{9, 0};
  constexpr std::size_t kSize = 8192;
  {
    Capturing capture(kA);
    allocator->begin_allocate_to_pool(pool, CountedFilter(kA));
    refused("begin_allocate_to_pool twice on the same pool", "xpu_host_begin_allocate_to_pool(pool (9, 0)) failed",
            [&] { allocator->begin_allocate_to_pool(pool, CountedFilter(kB)); });
    checks.check(CountedFilter::live == 1, "errors: the second begin's filter is deleted, the first kept",
                 std::to_string(CountedFilter::live) + " alive");
    checks.check(install_hooks() == XPU_HOST_ERROR_POOL_BUSY, "errors: xpu_host_set_capture_hooks during a capture is refused (pool busy)");
    CurrentStream current(kA);
    at::DataPtr block = allocator->allocate(kSize);
    checks.check(in_pool(allocator, block.get(), pool), "errors: after the refusals, the capture still routes to its pool",
                 segment_text(segment_of(allocator, block.get())));
    block.clear();
    allocator->end_allocate_to_pool(pool);
  }
  checks.check(CountedFilter::live == 0, "errors: end_allocate_to_pool drops the first filter");
  refused("end_allocate_to_pool twice", "xpu_host_end_allocate_to_pool(pool (9, 0)) failed",
          [&] { allocator->end_allocate_to_pool(pool); });
  // The refused second begin took no use: one release_pool gives the pool back.
  allocator->release_pool(pool);
  refused("release_pool twice", "xpu_host_release_pool(pool (9, 0)) failed", [&] { allocator->release_pool(pool); });
  {
    CurrentStream current(kA);
    at::DataPtr block = allocator->allocate(kSize);
    checks.check(block.get() != nullptr && in_pool(allocator, block.get(), {0, 0}),
                 "errors: afterwards the allocator works, from the default pool");
  }
}

}  // namespace

int main() {
  Checks checks("adapter_2_15_pools_history_test");
  xpu_host_allocator::register_with_pytorch();
  at::HostAllocator* allocator = at::getHostAllocator(at::kXPU);
  if (!checks.check(allocator == &xpu_host_allocator::host_allocator(), "at::getHostAllocator(kXPU) is the adapter")) {
    return checks.finish();
  }
  try {
    check_without_hooks(checks, allocator);
    check_routing(checks, allocator);
    check_reuse_within_pool(checks, allocator);
    check_retired_then_released(checks, allocator);
    check_allocated_at_release(checks, allocator);
    check_release_during_capture(checks, allocator);
    check_unusual_filters(checks, allocator);
    check_unusual_recorders(checks, allocator);
    check_history_levels(checks, allocator);
    check_history_segments(checks, allocator);
    check_reset_while_recording(checks, allocator);
    check_ring(checks, allocator);
    check_external(checks, allocator);
    check_recording_off(checks, allocator);
    check_errors(checks, allocator);
  } catch (const std::exception& e) {
    checks.check(false, "no unexpected exception", e.what());
  }
  return checks.finish();
}
