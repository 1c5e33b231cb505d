// The scenarios of issue 6, written once for any subject. A subject S has:
//
//   static const char* name();
//   static constexpr bool has_streams;
//   Block allocate(std::size_t n);        // Block frees itself when destroyed
//   static void* data(const Block&);
//   bool record(Block&, std::int64_t stream);   // if has_streams: the harness's queue(stream) uses it
//   void empty_cache();
//   void extra(Json&);                    // its own statistics, if any
//
// Each scenario prints one JSON line; benches/run.py reads them.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common.h"

namespace bench {

constexpr std::int64_t kStream = 1;      // the stream of scenario 3, the fast stream of scenario 4
constexpr std::int64_t kHeldStream = 2;  // the held-back stream of scenario 4

inline double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
inline double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// A fixed pseudo-random sequence, the same in every program.
struct Lcg {
  std::uint64_t state;
  std::uint32_t next() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return std::uint32_t(state >> 33);
  }
};

const std::vector<std::size_t> kCycleSizes = {4096, 65536, 1 << 20, 3000000};

// Scenario 1: allocate + free of sizes the cache holds, one thread. A cycle is
// one allocate and one free (DataPtr destruction).
template <class S>
void cycle(S& s, const Args& args, Json& out) {
  auto sizes = args.sizes("sizes", kCycleSizes);
  long rounds = args.number("rounds", 50000), trials = args.number("trials", 7);
  for (int warm = 0; warm < 2; ++warm)
    for (auto size : sizes) {
      auto block = s.allocate(size);
      keep(S::data(block));
    }
  std::uint64_t calls_before = live_objects().host_alloc_calls;
  std::vector<double> ns;
  for (long t = 0; t < trials; ++t) {
    std::uint64_t start = now_ns();
    collect_on();
    for (long r = 0; r < rounds; ++r)
      for (auto size : sizes) {
        auto block = s.allocate(size);
        keep(S::data(block));
      }
    collect_off();
    ns.push_back(double(now_ns() - start) / double(rounds * sizes.size()));
  }
  out.add("cycles", long(rounds * sizes.size())).add("ns_per_cycle", min_of(ns)).add("trials_ns", ns);
  out.add("misses", live_objects().host_alloc_calls - calls_before);
}

// Scenario 2: the same cycle on `threads` threads at once, against one thread,
// in alternating trials. Aggregate time per cycle = wall time / all cycles.
template <class S>
void cycle_threads(S& s, const Args& args, Json& out) {
  auto sizes = args.sizes("sizes", kCycleSizes);
  long rounds = args.number("rounds", 50000), trials = args.number("trials", 5);
  int threads = int(args.number("threads", 2));
  auto run = [&](int n) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> workers;
    for (int i = 0; i < n; ++i)
      workers.emplace_back([&] {
        for (auto size : sizes) {
          auto block = s.allocate(size);
          keep(S::data(block));
        }
        ready.fetch_add(1);
        while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
        for (long r = 0; r < rounds; ++r)
          for (auto size : sizes) {
            auto block = s.allocate(size);
            keep(S::data(block));
          }
      });
    while (ready.load() < n) std::this_thread::yield();
    std::uint64_t start = now_ns();
    go.store(true, std::memory_order_release);
    for (auto& w : workers) w.join();
    return double(now_ns() - start) / double(n * rounds * sizes.size());
  };
  // What the machine itself gives: the same threads doing arithmetic only.
  auto arithmetic = [&](int n) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> workers;
    for (int i = 0; i < n; ++i)
      workers.emplace_back([&, i] {
        Lcg rng{std::uint64_t(i)};
        ready.fetch_add(1);
        while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
        for (long r = 0; r < rounds * long(sizes.size()) * 8; ++r) rng.next();
        keep(&rng);
      });
    while (ready.load() < n) std::this_thread::yield();
    std::uint64_t start = now_ns();
    go.store(true, std::memory_order_release);
    for (auto& w : workers) w.join();
    return double(now_ns() - start) / double(n);
  };
  std::vector<double> single, aggregate, machine_single, machine_aggregate;
  for (long t = 0; t < trials; ++t) {
    single.push_back(run(1));
    aggregate.push_back(run(threads));
    machine_single.push_back(arithmetic(1));
    machine_aggregate.push_back(arithmetic(threads));
  }
  double one = min_of(single), all = min_of(aggregate);
  out.add("threads", threads).add("cycles_per_thread", long(rounds * sizes.size()));
  out.add("ns_per_cycle_1_thread", one).add("ns_per_cycle_aggregate", all).add("scaling", one / all);
  out.add("machine_scaling", min_of(machine_single) / min_of(machine_aggregate));
  out.add("trials_1_thread_ns", single).add("trials_aggregate_ns", aggregate);
}

// Scenario 2b: one thread allocates and another frees, as PyTorch's pin-memory
// thread pins batches that the main thread drops. Blocks go from the allocating
// thread to the freeing one through a ring of `depth` slots, sizes as in
// scenario 1. Time per allocation, over the allocating thread's wall time; the
// first trial (not counted) fills the cache.
template <class S>
void handoff(S& s, const Args& args, Json& out) {
  auto sizes = args.sizes("sizes", kCycleSizes);
  long count = args.number("count", 200000), trials = args.number("trials", 7);
  long depth = args.number("depth", 8);
  if (depth < 1 || count < 1 || trials < 1) die("handoff needs depth, count and trials of at least 1");
  // Spins, then yields: on a machine with as many cores as threads a waiter
  // must not keep the other thread off its core.
  auto wait_until = [](auto&& ready) {
    for (int spins = 0; !ready(); ++spins)
      if (spins > 1000) std::this_thread::yield();
  };
  std::vector<double> ns;
  for (long t = 0; t <= trials; ++t) {
    std::vector<std::optional<typename S::Block>> ring(static_cast<std::size_t>(depth));
    std::atomic<long> produced{0}, consumed{0};
    std::thread freeing([&] {
      for (long i = 0; i < count; ++i) {
        wait_until([&] { return produced.load(std::memory_order_acquire) > i; });
        ring[std::size_t(i % depth)].reset();
        consumed.store(i + 1, std::memory_order_release);
      }
    });
    std::uint64_t start = now_ns();
    for (long i = 0; i < count; ++i) {
      wait_until([&] { return i - consumed.load(std::memory_order_acquire) < depth; });
      auto& slot = ring[std::size_t(i % depth)];
      slot.emplace(s.allocate(sizes[std::size_t(i) % sizes.size()]));
      keep(S::data(*slot));
      produced.store(i + 1, std::memory_order_release);
    }
    freeing.join();
    if (t > 0) ns.push_back(double(now_ns() - start) / double(count));
  }
  out.add("count", count).add("depth", depth).add("ns_per_allocation", min_of(ns)).add("trials_ns", ns);
}

// Scenario 3: allocate, record on a stream, free, in batches; after each batch
// (not timed) the harness waits for the stream, so the next batch finds the
// blocks' events complete (each command on the stream takes
// ZE_SOFTWARE_DRIVER_COMMAND_LATENCY_US). Within a batch the events just
// recorded are still pending. The stream has no work of its own at each free
// unless busy=1: then it is held back for the whole batch (by a wait on an
// event the harness signals after it), as when the copy that used the block
// has not run yet.
template <class S>
void stream_cycle(S& s, const Args& args, Json& out) {
  auto sizes = args.sizes("sizes", {65536, 1 << 20});
  long batch = args.number("batch", 32), batches = args.number("batches", 100), trials = args.number("trials", 3);
  bool busy = args.number("busy", 0) != 0;
  static ze_event_handle_t gate = harness_event();
  auto hold = [&] {
    if (busy) hold_stream(kStream, gate);
  };
  auto release = [&] {
    if (busy) BENCH_ZE(zeEventHostSignal(gate));
    sync_stream(kStream);
    if (busy) BENCH_ZE(zeEventHostReset(gate));
  };
  auto one_batch = [&] {
    for (long i = 0; i < batch; ++i) {
      auto block = s.allocate(sizes[std::size_t(i) % sizes.size()]);
      if (!s.record(block, kStream)) die("record_event was refused");
    }
  };
  // Enough blocks for a whole batch whatever the events do, so that no trial
  // misses however late or early its events complete.
  {
    std::vector<typename S::Block> blocks;
    for (long i = 0; i < batch; ++i) blocks.push_back(s.allocate(sizes[std::size_t(i) % sizes.size()]));
  }
  for (int warm = 0; warm < 2; ++warm) {
    hold();
    one_batch();
    release();
  }
  std::uint64_t calls_before = live_objects().host_alloc_calls;
  std::vector<double> ns;
  for (long t = 0; t < trials; ++t) {
    std::uint64_t total = 0;
    for (long b = 0; b < batches; ++b) {
      hold();
      std::uint64_t start = now_ns();
      collect_on();
      one_batch();
      collect_off();
      total += now_ns() - start;
      release();
    }
    ns.push_back(double(total) / double(batch * batches));
  }
  out.add("cycles", batch * batches).add("ns_per_cycle", min_of(ns)).add("trials_ns", ns);
  out.add("latency_us", env_or("ZE_SOFTWARE_DRIVER_COMMAND_LATENCY_US", "0")).add("busy", int(busy));
  out.add("misses", live_objects().host_alloc_calls - calls_before);
}

// Scenario 4: a held-back stream (waiting on an event the harness signals only
// at the end) and a fast one. Each iteration uses one block on the fast stream,
// and every `held_every`-th iteration one more on the held stream; then waits
// for the fast stream. Measures the new pinned bytes, and how long fast-stream
// blocks wait between their free and their reuse, in µs and in iterations (a
// block still waiting at the end counts until the end).
template <class S>
void held_stream(S& s, const Args& args, Json& out) {
  std::size_t size = std::size_t(args.number("size", 65536));
  long iterations = args.number("iterations", 1000), held_every = args.number("held_every", 4);
  ze_event_handle_t gate = harness_event();
  hold_stream(kHeldStream, gate);
  sync_stream(kStream);
  auto before = live_objects();
  struct Freed {
    std::uint64_t ns;
    long iteration;
  };
  std::unordered_map<void*, Freed> freed_at;
  std::vector<double> waits_us, waits_iterations;
  long fast_frees = 0, reuses = 0, iteration = 0;
  auto take = [&](void* p) {
    auto it = freed_at.find(p);
    if (it == freed_at.end()) return;
    waits_us.push_back(double(now_ns() - it->second.ns) / 1000.0);
    waits_iterations.push_back(double(iteration - it->second.iteration));
    ++reuses;
    freed_at.erase(it);
  };
  std::uint64_t start = now_ns();
  for (long i = 0; i < iterations; ++i) {
    iteration = i;
    void* p;
    {
      auto block = s.allocate(size);
      p = S::data(block);
      take(p);
      if (!s.record(block, kStream)) die("record_event was refused");
    }
    freed_at[p] = Freed{now_ns(), i};
    ++fast_frees;
    if (i % held_every == held_every - 1) {
      auto block = s.allocate(size);
      take(S::data(block));
      if (!s.record(block, kHeldStream)) die("record_event was refused");
    }
    sync_stream(kStream);
  }
  std::uint64_t end = now_ns();
  for (auto& [p, freed] : freed_at) {
    waits_us.push_back(double(end - freed.ns) / 1000.0);
    waits_iterations.push_back(double(iterations - freed.iteration));
  }
  auto after = live_objects();
  BENCH_ZE(zeEventHostSignal(gate));
  sync_stream(kHeldStream);
  auto mean_of = [](const std::vector<double>& v) {
    double sum = 0;
    for (double x : v) sum += x;
    return sum / double(v.size());
  };
  out.add("iterations", iterations).add("held_every", held_every).add("size", std::uint64_t(size));
  out.add("new_bytes", after.allocated_bytes - before.allocated_bytes);
  out.add("new_allocations", after.host_alloc_calls - before.host_alloc_calls);
  out.add("fast_frees", fast_frees).add("reuses", reuses);
  out.add("mean_wait_us", mean_of(waits_us)).add("mean_wait_iterations", mean_of(waits_iterations));
  out.add("phase_us", double(end - start) / 1000.0);
}

// Scenario 5: reserved bytes (what the driver holds for the process, sampled
// after every allocation) per requested byte (the bytes of the live requests),
// both at their peaks.
template <class S>
class MemoryTrace {
 public:
  explicit MemoryTrace(S& s)
      : s_(s), base_(live_objects().allocated_bytes), calls_base_(live_objects().host_alloc_calls) {}

  typename S::Block allocate(std::size_t size) {
    auto block = s_.allocate(size);
    requested_ += size;
    peak_requested_ = std::max(peak_requested_, requested_);
    peak_reserved_ = std::max(peak_reserved_, live_objects().allocated_bytes - base_);
    ++allocations_;
    return block;
  }
  void released(std::size_t size) { requested_ -= size; }

  void report(Json& out) const {
    out.add("allocations", allocations_).add("peak_requested", peak_requested_).add("peak_reserved", peak_reserved_);
    out.add("reserved_per_requested", double(peak_reserved_) / double(peak_requested_));
    out.add("host_allocations", live_objects().host_alloc_calls - calls_base_);
  }

 private:
  S& s_;
  std::uint64_t base_, calls_base_, requested_ = 0, peak_requested_ = 0, peak_reserved_ = 0, allocations_ = 0;
};

// Batches in flight through an input pipeline: once more than `depth` are,
// the oldest is consumed and its blocks freed, first to last.
template <class S>
class InFlight {
 public:
  InFlight(MemoryTrace<S>& trace, long depth) : trace_(trace), depth_(depth) {}

  void push(std::vector<typename S::Block> blocks, std::size_t bytes) {
    batches_.push_back(Batch{std::move(blocks), bytes});
    if (long(batches_.size()) > depth_) {
      trace_.released(batches_.front().bytes);
      batches_.pop_front();
    }
  }

 private:
  struct Batch {
    std::vector<typename S::Block> blocks;
    std::size_t bytes;
  };
  MemoryTrace<S>& trace_;
  long depth_;
  std::deque<Batch> batches_;
};

// 5a: a data loader pinning batches of images (uint8, 3 x r x r, r varying as
// in multi-scale training) with their labels (int64), batch sizes 8-64, with
// `prefetch` batches in flight before the oldest is consumed and freed.
template <class S>
void memory_loader(S& s, const Args& args, Json& out) {
  long steps = args.number("steps", 400), prefetch = args.number("prefetch", 4);
  const std::size_t resolutions[] = {224, 256, 288, 320, 352, 384};
  MemoryTrace<S> trace(s);
  InFlight<S> in_flight(trace, prefetch);
  Lcg rng{42};
  for (long step = 0; step < steps; ++step) {
    std::size_t batch = 8 + rng.next() % 57, r = resolutions[rng.next() % 6];
    std::size_t images = batch * 3 * r * r, labels = batch * 8;
    auto image_block = trace.allocate(images);
    auto label_block = trace.allocate(labels);
    // Labels freed first, as they always were.
    std::vector<typename S::Block> blocks;
    blocks.push_back(std::move(label_block));
    blocks.push_back(std::move(image_block));
    in_flight.push(std::move(blocks), images + labels);
  }
  trace.report(out);
  out.add("steps", steps).add("prefetch", prefetch);
}

// 5b: CPU offload of model weights (vLLM --cpu-offload-gb): every parameter of
// `layers` decoder layers of a 13B Llama-like model (hidden 5120, MLP 13824,
// fp16), plus embedding and LM head, pinned and kept.
template <class S>
void memory_offload(S& s, const Args& args, Json& out) {
  long layers = args.number("layers", 8);
  const std::size_t hidden = 5120, mlp = 13824, vocab = 32000, fp16 = 2;
  std::vector<std::size_t> sizes = {vocab * hidden * fp16};
  for (long l = 0; l < layers; ++l) {
    for (int i = 0; i < 4; ++i) sizes.push_back(hidden * hidden * fp16);  // q, k, v, o
    for (int i = 0; i < 3; ++i) sizes.push_back(hidden * mlp * fp16);     // gate, up, down
    for (int i = 0; i < 2; ++i) sizes.push_back(hidden * fp16);           // norms
  }
  sizes.push_back(hidden * fp16);
  sizes.push_back(vocab * hidden * fp16);
  MemoryTrace<S> trace(s);
  std::vector<typename S::Block> weights;
  for (auto size : sizes) weights.push_back(trace.allocate(size));
  trace.report(out);
  out.add("layers", layers);
}

// 5c: variable-length NLP batches in a 4-deep input pipeline: per batch,
// input ids, attention mask and labels (int64, B x L each), B from 4 to 32 and
// L log-uniform from 64 to 4096 tokens in steps of 64, as packed text batches
// vary; `depth` batches in flight before the oldest is consumed and freed.
template <class S>
void memory_nlp(S& s, const Args& args, Json& out) {
  long steps = args.number("steps", 400), depth = args.number("depth", 4);
  MemoryTrace<S> trace(s);
  InFlight<S> in_flight(trace, depth);
  Lcg rng{7};
  for (long step = 0; step < steps; ++step) {
    std::size_t batch = 4 + rng.next() % 29;
    double log2_length = 6 + double(rng.next() % 6000) / 1000;
    std::size_t length = std::max<std::size_t>(64, std::size_t(std::exp2(log2_length)) / 64 * 64);
    std::vector<typename S::Block> tensors;
    for (int tensor = 0; tensor < 3; ++tensor) tensors.push_back(trace.allocate(batch * length * 8));
    in_flight.push(std::move(tensors), 3 * batch * length * 8);
  }
  trace.report(out);
  out.add("steps", steps).add("depth", depth);
}

// 5d: KV-cache offload to host memory (vLLM's swap space): each step swaps
// out the KV blocks of one sequence, a run of 1 to 24 pages of 2 MiB, into
// one pinned buffer; while more than `capacity` pages are out, a sequence
// picked at random is swapped back in and its buffer freed.
template <class S>
void memory_kv(S& s, const Args& args, Json& out) {
  long steps = args.number("steps", 600), capacity = args.number("capacity", 192);
  const std::size_t page = 2 << 20;
  MemoryTrace<S> trace(s);
  struct Swapped {
    typename S::Block buffer;
    long pages;
  };
  std::map<long, Swapped> swapped;  // by step, so that "the k-th" is the same in every program
  long pages_out = 0;
  Lcg rng{11};
  for (long step = 0; step < steps; ++step) {
    long pages = 1 + long(rng.next() % 24);
    swapped.emplace(step, Swapped{trace.allocate(std::size_t(pages) * page), pages});
    pages_out += pages;
    while (pages_out > capacity) {
      auto victim = std::next(swapped.begin(), long(rng.next() % swapped.size()));
      pages_out -= victim->second.pages;
      trace.released(std::size_t(victim->second.pages) * page);
      swapped.erase(victim);
    }
  }
  trace.report(out);
  out.add("steps", steps).add("capacity", capacity);
}

// Scenario 6: the miss path. Each trial allocates `count` blocks at once from
// an empty cache (every one new memory from the driver), timing only the
// allocations; trials of the subject alternate with trials of raw
// zeMemAllocHost in the same process. Sizes are powers of two, which every
// size-class setting keeps as they are, so both ask the driver for the same bytes.
// With control=1 the subject's trials call raw zeMemAllocHost too: the ratio
// then shows what the harness itself adds (1 if it is fair).
template <class S>
void miss_path(S& s, const Args& args, Json& out) {
  auto sizes = args.sizes("sizes", {65536, 262144, 1 << 20, 4 << 20});
  long count = args.number("count", 256), trials = args.number("trials", 21);
  bool control = args.number("control", 0) != 0;
  std::vector<double> subject_ns, raw_ns;
  std::uint64_t misses = 0;
  bool counting = false;  // callgrind counts the subject's measured trials only
  auto subject_trial = [&] {
    s.empty_cache();
    std::vector<typename S::Block> blocks;
    std::vector<void*> raw_blocks;
    if (control)
      raw_blocks.reserve(std::size_t(count));
    else
      blocks.reserve(std::size_t(count));
    std::uint64_t calls = live_objects().host_alloc_calls;
    std::uint64_t start = now_ns();
    if (counting) collect_on();
    for (long i = 0; i < count; ++i) {
      std::size_t size = sizes[std::size_t(i) % sizes.size()];
      if (control)
        raw_blocks.push_back(raw_allocate(size));
      else
        blocks.push_back(s.allocate(size));
    }
    if (counting) collect_off();
    subject_ns.push_back(double(now_ns() - start) / double(count));
    misses += live_objects().host_alloc_calls - calls;
    for (void* p : raw_blocks) raw_free(p);
    blocks.clear();
    s.empty_cache();
  };
  auto raw_trial = [&] {
    std::vector<void*> blocks;
    blocks.reserve(std::size_t(count));
    std::uint64_t start = now_ns();
    for (long i = 0; i < count; ++i) blocks.push_back(raw_allocate(sizes[std::size_t(i) % sizes.size()]));
    raw_ns.push_back(double(now_ns() - start) / double(count));
    for (void* p : blocks) raw_free(p);
  };
  subject_trial();  // warm-up of both paths
  raw_trial();
  subject_ns.clear();
  raw_ns.clear();
  misses = 0;
  counting = true;
  for (long t = 0; t < trials; ++t) {
    if (t % 2) {
      raw_trial();
      subject_trial();
    } else {
      subject_trial();
      raw_trial();
    }
  }
  out.add("count", count).add("cycles", count * trials).add("ns_per_allocation", median_of(subject_ns)).add("raw_ns_per_allocation", median_of(raw_ns));
  out.add("ratio_to_raw", median_of(subject_ns) / median_of(raw_ns));
  out.add("misses_per_allocation", double(misses) / double(count * trials));
  out.add("trials_ns", subject_ns).add("raw_trials_ns", raw_ns);
}

template <class S>
int bench_main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: %s SCENARIO [key=value...]\n"
                 "scenarios: cycle cycle_threads handoff%s memory_loader memory_offload memory_nlp memory_kv miss\n",
                 argv[0], S::has_streams ? " stream held" : "");
    return 2;
  }
  std::string scenario = argv[1];
  Args args(argc, argv, 2);
  S subject;
  Json out;
  out.add("subject", S::name()).add("scenario", scenario);
  if (scenario == "cycle") {
    cycle(subject, args, out);
  } else if (scenario == "cycle_threads") {
    cycle_threads(subject, args, out);
  } else if (scenario == "handoff") {
    handoff(subject, args, out);
  } else if (scenario == "memory_loader") {
    memory_loader(subject, args, out);
  } else if (scenario == "memory_offload") {
    memory_offload(subject, args, out);
  } else if (scenario == "memory_nlp") {
    memory_nlp(subject, args, out);
  } else if (scenario == "memory_kv") {
    memory_kv(subject, args, out);
  } else if (scenario == "miss") {
    miss_path(subject, args, out);
  } else if constexpr (S::has_streams) {
    if (scenario == "stream") {
      stream_cycle(subject, args, out);
    } else if (scenario == "held") {
      held_stream(subject, args, out);
    } else {
      die("unknown scenario `%s`", scenario.c_str());
    }
  } else {
    die("unknown scenario `%s` for %s (it has no streams)", scenario.c_str(), S::name());
  }
  subject.extra(out);
  out.print();
  // Static destructors (PyTorch's allocator, the driver's unload) are not what
  // is measured; leave without them.
  std::fflush(nullptr);
  _exit(0);
}

}  // namespace bench
