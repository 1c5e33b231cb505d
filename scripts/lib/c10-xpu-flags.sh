# Sourced by scripts/check-adapter-compiles and scripts/check-xpu-exports: what
# g++ needs, besides -isystem on the SYCL headers of the intel-sycl-rt wheel
# (scripts/fetch-sycl), to compile a file that reaches c10/xpu/XPUStream.h with
# the headers of a PyPI torch wheel. Those are CPU builds and lack
# c10/xpu/impl/xpu_cmake_macros.h, which an XPU build generates:
# C10_USING_CUSTOM_GENERATED_MACROS skips it, and c10's own generated macros
# are included by hand, so only the XPU ones are missing.
# shellcheck disable=SC2034  # used by the scripts that source this
c10_xpu_flags=(-DC10_USING_CUSTOM_GENERATED_MACROS -include c10/macros/cmake_macros.h -DSYCL_DISABLE_FSYCL_SYCLHPP_WARNING)
