/* Checks that the test runs on the Level Zero loader CTest meant it to:
 * ZE_SOFTWARE_DRIVER_TEST_LOADER holds its major and minor version (1.8 for
 * Debian 12's 1.8.12, which calls itself 1.8.0; 1.20 for 1.20.6 from
 * LD_LIBRARY_PATH), as zelLoaderGetVersions reports it. */
#include <level_zero/ze_api.h>
#include <level_zero/loader/ze_loader.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  const char *expected = getenv("ZE_SOFTWARE_DRIVER_TEST_LOADER");
  zel_component_version_t components[8];
  size_t count = sizeof components / sizeof components[0];
  if (expected == NULL || zeInit(0) != ZE_RESULT_SUCCESS ||
      zelLoaderGetVersions(&count, components) != ZE_RESULT_SUCCESS) {
    fprintf(stderr, "needs ZE_SOFTWARE_DRIVER_TEST_LOADER, zeInit and zelLoaderGetVersions\n");
    return 1;
  }
  for (size_t i = 0; i < count; i++) {
    if (strcmp(components[i].component_name, "loader") == 0) {
      char version[32];
      snprintf(version, sizeof version, "%d.%d", components[i].component_lib_version.major,
               components[i].component_lib_version.minor);
      if (strcmp(version, expected) != 0) {
        fprintf(stderr, "running on loader %s, not %s\n", version, expected);
        return 1;
      }
      printf("loader %s\n", version);
      return 0;
    }
  }
  fprintf(stderr, "the loader does not list itself among its components\n");
  return 1;
}
