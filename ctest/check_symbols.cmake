# cmake -DLIBRARY=<lib.so> -P check_symbols.cmake: fails unless nm -D shows the six PyTorch symbols defined.
execute_process(COMMAND nm -D --defined-only "${LIBRARY}" OUTPUT_VARIABLE symbols RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "nm -D failed on ${LIBRARY}")
endif()
foreach(symbol
    getCachingHostAllocator
    CachingHostAllocator_recordEvent
    CachingHostAllocator_emptyCache
    _ZN2at3xpu23getCachingHostAllocatorEv
    _ZN2at3xpu32CachingHostAllocator_recordEventEPvS1_N3c103xpu9XPUStreamE
    _ZN2at3xpu31CachingHostAllocator_emptyCacheEv)
  if(NOT symbols MATCHES " T ${symbol}\n")
    message(FATAL_ERROR "${symbol} is not exported by ${LIBRARY}")
  endif()
  message(STATUS "exported: ${symbol}")
endforeach()
