# Sourced by scripts/bench and scripts/bench-against: what the benchmarks need
# (PyTorch 2.5.1 and 2.15.0, the SYCL runtime with UMF, loader 1.20.6, all
# cached outside the repository), and the build of the benchmark programs.
#
#   $torch_2_5 $torch_2_15 $sycl $loader_1_20   where fetch_bench_dependencies put them

fetch_bench_dependencies() {
  scripts/install-deps
  echo "== fetching PyTorch 2.5.1 and 2.15.0, the SYCL runtime, UMF and loader 1.20.6 (cached outside the repo)"
  torch_2_5=$(scripts/fetch-torch 2.5.1 | tail -n 1)
  torch_2_15=$(scripts/fetch-torch 2.15.0 | tail -n 1)
  sycl=$(scripts/fetch-sycl | tail -n 1) # holds libumf and its headers too
  loader_1_20=$(scripts/fetch-level-zero-loader | tail -n 1)
}

# build_benches SOURCE BUILD CARGO_DIR BUILD_TYPE TARGET...: configures the
# project in SOURCE with its benchmarks into BUILD (cargo's output in
# CARGO_DIR) and builds TARGET...
build_benches() {
  local source=$1 build=$2 cargo_dir=$3 build_type=$4
  shift 4
  echo "== building ($build_type) in $build"
  cmake -S "$source" -B "$build" -DCMAKE_BUILD_TYPE="$build_type" \
    -DXPU_HOST_ALLOCATOR_BUILD_TESTS=OFF -DXPU_HOST_ALLOCATOR_BUILD_BENCHES=ON \
    -DXPU_HOST_ALLOCATOR_CARGO_TARGET_DIR="$cargo_dir" \
    -DXPU_HOST_ALLOCATOR_BENCH_TORCH_2_5_DIR="$torch_2_5" \
    -DXPU_HOST_ALLOCATOR_BENCH_TORCH_2_15_DIR="$torch_2_15" \
    -DXPU_HOST_ALLOCATOR_BENCH_UMF_DIR="$sycl" \
    -DXPU_HOST_ALLOCATOR_SYCL_DIR="$sycl" >/dev/null
  cmake --build "$build" -j2 --target "$@"
}
