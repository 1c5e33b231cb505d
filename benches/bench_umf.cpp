// Subject "umf-1.2.0": the Unified Memory Framework of PyPI's `umf` 1.2.0, a
// disjoint pool over its Level Zero provider of host memory (what SYCL's
// Unified Runtime pools host USM with), allocating in the Level Zero context
// of the harness's SYCL context.
// UMF has no streams, so only the scenarios without streams run.
//
// The pool keeps UMF's defaults (slabs of at least 64 KiB, sizes up to 2 MiB
// pooled, 4 free slabs kept per bucket), as SYCL uses it for host memory.
// BENCH_UMF_MAX_POOLABLE=BYTES pools larger sizes too (subject name
// "umf-1.2.0-max-poolable-BYTES"). Blocks are aligned to 512 bytes like the others.
#include <umf/memory_pool.h>
#include <umf/memory_provider.h>
#include <umf/pools/pool_disjoint.h>
#include <umf/providers/provider_level_zero.h>

#include <string>
#include <utility>

#include "scenarios.h"

namespace {

#define BENCH_UMF(call)                                                                          \
  do {                                                                                           \
    umf_result_t bench_umf_result_ = (call);                                                     \
    if (bench_umf_result_ != UMF_RESULT_SUCCESS) bench::die("%s returned %d", #call, int(bench_umf_result_)); \
  } while (0)

struct Umf {
  class Block {
   public:
    Block(umf_memory_pool_handle_t pool, void* ptr) : pool_(pool), ptr_(ptr) {}
    Block(Block&& other) noexcept : pool_(other.pool_), ptr_(std::exchange(other.ptr_, nullptr)) {}
    Block& operator=(Block&& other) noexcept {
      std::swap(pool_, other.pool_);
      std::swap(ptr_, other.ptr_);
      return *this;
    }
    ~Block() {
      if (ptr_) umfPoolFree(pool_, ptr_);
    }
    void* get() const { return ptr_; }

   private:
    umf_memory_pool_handle_t pool_;
    void* ptr_;
  };

  static const char* name() {
    static std::string name = std::getenv("BENCH_UMF_MAX_POOLABLE")
                                  ? "umf-1.2.0-max-poolable-" + std::string(std::getenv("BENCH_UMF_MAX_POOLABLE"))
                                  : "umf-1.2.0";
    return name.c_str();
  }
  static constexpr bool has_streams = false;

  Umf() {
    umf_level_zero_memory_provider_params_handle_t params = nullptr;
    BENCH_UMF(umfLevelZeroMemoryProviderParamsCreate(&params));
    BENCH_UMF(umfLevelZeroMemoryProviderParamsSetContext(params, bench::ze().context));
    BENCH_UMF(umfLevelZeroMemoryProviderParamsSetDevice(params, nullptr));
    BENCH_UMF(umfLevelZeroMemoryProviderParamsSetMemoryType(params, UMF_MEMORY_TYPE_HOST));
    BENCH_UMF(umfMemoryProviderCreate(umfLevelZeroMemoryProviderOps(), params, &provider));
    BENCH_UMF(umfLevelZeroMemoryProviderParamsDestroy(params));
    create_pool();
  }

  void create_pool() {
    umf_disjoint_pool_params_handle_t params = nullptr;
    BENCH_UMF(umfDisjointPoolParamsCreate(&params));
    if (const char* max = std::getenv("BENCH_UMF_MAX_POOLABLE"))
      BENCH_UMF(umfDisjointPoolParamsSetMaxPoolableSize(params, std::strtoull(max, nullptr, 0)));
    BENCH_UMF(umfPoolCreate(umfDisjointPoolOps(), provider, params, UMF_POOL_CREATE_FLAG_NONE, &pool));
    BENCH_UMF(umfDisjointPoolParamsDestroy(params));
  }

  Block allocate(std::size_t n) {
    void* p = umfPoolAlignedMalloc(pool, n, bench::kHostAlignment);
    if (!p) bench::die("umfPoolAlignedMalloc(%zu) failed", n);
    return Block(pool, p);
  }
  static void* data(const Block& b) { return b.get(); }

  // UMF has no empty_cache: a new pool starts empty (the miss path).
  void empty_cache() {
    BENCH_UMF(umfPoolDestroy(pool));
    create_pool();
  }

  void extra(bench::Json&) {}

  umf_memory_provider_handle_t provider = nullptr;
  umf_memory_pool_handle_t pool = nullptr;
};

}  // namespace

int main(int argc, char** argv) { return bench::bench_main<Umf>(argc, argv); }
