/* The library loaded with dlopen, as Python loads PyTorch's libraries: its
 * thread slot is an initial-exec thread-local (src/caching/thread_slot.rs),
 * which glibc must place in the static TLS it keeps for such libraries. The
 * thread that loaded it and threads started afterwards each allocate and free
 * through it; a freed block is what the next allocation of its size gets on
 * the same thread, so each thread found its own cache (but for the few times
 * another thread, missing its own, took the block meanwhile). Not linked
 * against the library: it is named on the command line. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "xpu_caching_host_allocator.h"

typedef xpu_host_result (*allocate_fn)(size_t, void **, void **);
typedef xpu_host_result (*free_fn)(void *);
typedef const char *(*message_fn)(void);

static allocate_fn allocate;
static free_fn release;
static message_fn last_error;

enum { CYCLES = 10000, THREADS = 3 };

/* Allocates and frees CYCLES times per size; 0 if all but a few allocations
 * got the block freed just before. */
static int cycle(void) {
  static const size_t sizes[] = {4096, 65536, 1 << 20};
  int others = 0;
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; ++s) {
    void *last = NULL;
    for (int i = 0; i < CYCLES; ++i) {
      void *data = NULL, *context = NULL;
      if (allocate(sizes[s], &data, &context) != XPU_HOST_SUCCESS || data == NULL) {
        fprintf(stderr, "allocating %zu bytes failed: %s\n", sizes[s], last_error());
        return 1;
      }
      others += i > 0 && data != last;
      last = data;
      if (release(context) != XPU_HOST_SUCCESS) {
        fprintf(stderr, "freeing failed: %s\n", last_error());
        return 1;
      }
    }
  }
  if (others > 2 * THREADS) {
    fprintf(stderr, "%d of %d allocations did not get the block this thread had just freed\n", others, 3 * CYCLES);
    return 1;
  }
  return 0;
}

static void *thread_main(void *result) {
  *(int *)result = cycle();
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s /path/to/libxpu_caching_host_allocator.so\n", argv[0]);
    return 2;
  }
  void *library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (library == NULL) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 1;
  }
  allocate = (allocate_fn)dlsym(library, "xpu_host_allocate");
  release = (free_fn)dlsym(library, "xpu_host_free");
  last_error = (message_fn)dlsym(library, "xpu_host_last_error_message");
  if (allocate == NULL || release == NULL || last_error == NULL) {
    fprintf(stderr, "dlsym: %s\n", dlerror());
    return 1;
  }
  int failed = cycle();
  pthread_t threads[THREADS];
  int results[THREADS] = {0};
  for (int t = 0; t < THREADS; ++t) failed |= pthread_create(&threads[t], NULL, thread_main, &results[t]);
  for (int t = 0; t < THREADS; ++t) {
    failed |= pthread_join(threads[t], NULL);
    failed |= results[t];
  }
  failed |= cycle();
  printf("dlopen: %d cycles on the loading thread, twice, and on %d threads started after: %s\n", 3 * CYCLES,
         THREADS, failed ? "FAILED" : "ok");
  return failed ? 1 : 0;
}
