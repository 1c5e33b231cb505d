# cmake -DBUILD_DIR=<main build> -DSOURCE_DIR=<this folder> -DWORK_DIR=<scratch>
#       -DLIBDIR=<CMAKE_INSTALL_LIBDIR> -DCXX=<compiler> -P run.cmake
#
# Uses the library as a dependent project would: installs the main build into
# a fresh prefix, then builds and runs ctest/consumer/project/consumer.cpp
# against that prefix twice, through find_package (CMake) and through
# pkg-config. The software driver comes from the test's environment.
foreach(variable BUILD_DIR SOURCE_DIR WORK_DIR LIBDIR CXX)
  if(NOT DEFINED ${variable})
    message(FATAL_ERROR "run.cmake needs -D${variable}=...")
  endif()
endforeach()

# run(<what> <command...>): runs the command, failing the test with its output if it fails.
function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${what} failed (${result}):\n${ARGN}\n${output}")
  endif()
  message(STATUS "${what}: ok")
  set(run_output "${output}" PARENT_SCOPE)
endfunction()

set(prefix "${WORK_DIR}/prefix")
file(REMOVE_RECURSE "${WORK_DIR}")
run("cmake --install into ${prefix}" "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}")
foreach(installed include/xpu_caching_host_allocator.h
                  share/xpu_caching_host_allocator/adapter/xpu_host_allocator_adapter.h
                  share/xpu_caching_host_allocator/adapter/xpu_host_allocator_adapter.cpp
                  share/xpu_caching_host_allocator/sycl/xpu_host_allocator_sycl.h
                  share/xpu_caching_host_allocator/sycl/xpu_host_allocator_sycl.cpp)
  if(NOT EXISTS "${prefix}/${installed}")
    message(FATAL_ERROR "cmake --install did not install ${installed}")
  endif()
endforeach()

# The library under its three names, as shared libraries install on Linux.
file(GLOB installed_files "${prefix}/${LIBDIR}/libxpu_caching_host_allocator.so.*.*.*")
list(LENGTH installed_files count)
if(NOT count EQUAL 1)
  message(FATAL_ERROR "cmake --install should install one libxpu_caching_host_allocator.so.MAJOR.MINOR.PATCH, "
                      "not: ${installed_files}")
endif()
foreach(link libxpu_caching_host_allocator.so.0 libxpu_caching_host_allocator.so)
  if(NOT IS_SYMLINK "${prefix}/${LIBDIR}/${link}")
    message(FATAL_ERROR "cmake --install did not install the link ${link}")
  endif()
endforeach()
run("readelf -d the installed library" readelf -d "${installed_files}")
if(NOT run_output MATCHES "Library soname: \\[libxpu_caching_host_allocator\\.so\\.0\\]")
  message(FATAL_ERROR "the installed library's SONAME is not libxpu_caching_host_allocator.so.0:\n${run_output}")
endif()

# find_package(xpu_caching_host_allocator) and the imported target.
run("configure the consumer project with CMAKE_PREFIX_PATH=${prefix}"
    "${CMAKE_COMMAND}" -S "${SOURCE_DIR}/project" -B "${WORK_DIR}/cmake-build"
    "-DCMAKE_PREFIX_PATH=${prefix}" "-DCMAKE_CXX_COMPILER=${CXX}" -DCMAKE_BUILD_TYPE=Debug)
run("build the consumer project" "${CMAKE_COMMAND}" --build "${WORK_DIR}/cmake-build")
run("run the consumer built with find_package" "${WORK_DIR}/cmake-build/consumer")
message("${run_output}")

# pkg-config, as a Makefile or Meson project would use it.
set(ENV{PKG_CONFIG_PATH} "${prefix}/${LIBDIR}/pkgconfig")
find_program(PKG_CONFIG pkg-config REQUIRED)
run("pkg-config --variable=libdir" "${PKG_CONFIG}" --variable=libdir xpu_caching_host_allocator)
string(STRIP "${run_output}" libdir)
# The .pc file finds its prefix relative to itself, so the installed copy must
# name the prefix it was installed into, not the one the build was configured with.
get_filename_component(libdir "${libdir}" REALPATH)
get_filename_component(installed_libdir "${prefix}/${LIBDIR}" REALPATH)
if(NOT libdir STREQUAL installed_libdir)
  message(FATAL_ERROR "the installed .pc file says libdir ${libdir}, not ${installed_libdir}")
endif()
run("pkg-config --cflags --libs" "${PKG_CONFIG}" --cflags --libs xpu_caching_host_allocator)
separate_arguments(flags UNIX_COMMAND "${run_output}")
run("compile the consumer with pkg-config's flags"
    "${CXX}" -std=c++17 "${SOURCE_DIR}/project/consumer.cpp" ${flags} "-Wl,-rpath,${prefix}/${LIBDIR}" -o "${WORK_DIR}/consumer-pkg-config")
run("run the consumer built with pkg-config" "${WORK_DIR}/consumer-pkg-config")
message("${run_output}")
# What the consumers recorded is the SONAME, never the development name.
run("readelf -d the consumer" readelf -d "${WORK_DIR}/consumer-pkg-config")
if(NOT run_output MATCHES "Shared library: \\[libxpu_caching_host_allocator\\.so\\.0\\]")
  message(FATAL_ERROR "the consumer does not need libxpu_caching_host_allocator.so.0:\n${run_output}")
endif()
