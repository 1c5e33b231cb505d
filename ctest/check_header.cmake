# Regenerates the C header into OUTPUT and fails if it differs from the committed one.
execute_process(COMMAND "${CBINDGEN}" --quiet --config cbindgen.toml --output "${OUTPUT}"
  WORKING_DIRECTORY "${SOURCE_DIR}" RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "cbindgen failed")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" -E compare_files "${OUTPUT}" "${SOURCE_DIR}/include/xpu_caching_host_allocator.h"
  RESULT_VARIABLE differs)
if(differs)
  message(FATAL_ERROR "include/xpu_caching_host_allocator.h is stale: run `cbindgen --config cbindgen.toml --output include/xpu_caching_host_allocator.h` and commit it")
endif()
