# xpu_host_torch_package(<prefix> <torch-dir> <cxx11-abi 0|1>)
#
# Imported targets <prefix>_c10 and <prefix>_torch_cpu for a PyTorch package
# directory <torch-dir> (the `torch` folder of a wheel or of site-packages: it
# holds include/ and lib/), without the CUDA toolkits that the wheel's own
# TorchConfig.cmake insists on. <cxx11-abi> is the wheel's
# _GLIBCXX_USE_CXX11_ABI (docs/ABI.md section 7: 0 for 2.5.1, 1 for 2.8 and later).
function(xpu_host_torch_package prefix torch_dir cxx11_abi)
  if(NOT EXISTS "${torch_dir}/include/c10/core/Allocator.h" OR NOT EXISTS "${torch_dir}/lib/libtorch_cpu.so")
    message(FATAL_ERROR "${torch_dir} is not a PyTorch package directory (no include/c10/core/Allocator.h or lib/libtorch_cpu.so); "
                        "scripts/fetch-torch VERSION prints a directory whose torch/ subfolder is one")
  endif()
  set(includes "${torch_dir}/include;${torch_dir}/include/torch/csrc/api/include")
  add_library(${prefix}_c10 SHARED IMPORTED GLOBAL)
  set_target_properties(${prefix}_c10 PROPERTIES
    IMPORTED_LOCATION "${torch_dir}/lib/libc10.so"
    IMPORTED_NO_SONAME ON
    # PyTorch's headers are not ours to warn about.
    INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${includes}"
    INTERFACE_INCLUDE_DIRECTORIES "${includes}"
    INTERFACE_COMPILE_DEFINITIONS "_GLIBCXX_USE_CXX11_ABI=${cxx11_abi}")
  add_library(${prefix}_torch_cpu SHARED IMPORTED GLOBAL)
  set_target_properties(${prefix}_torch_cpu PROPERTIES
    IMPORTED_LOCATION "${torch_dir}/lib/libtorch_cpu.so"
    IMPORTED_NO_SONAME ON
    INTERFACE_LINK_LIBRARIES ${prefix}_c10)
endfunction()

# xpu_host_torch_adapter(<target> <torch-libraries...>): the adapter as a static
# library compiled against the PyTorch those libraries come from.
function(xpu_host_torch_adapter target)
  set(adapter_dir "${PROJECT_SOURCE_DIR}/adapter")
  add_library(${target} STATIC "${adapter_dir}/xpu_host_allocator_adapter.cpp")
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  target_compile_features(${target} PUBLIC cxx_std_17)
  target_include_directories(${target} PUBLIC "${adapter_dir}")
  target_link_libraries(${target} PUBLIC ${ARGN} xpu_caching_host_allocator::xpu_caching_host_allocator)
endfunction()
