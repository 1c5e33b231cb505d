/* fork and exit.
 *   lifecycle_test fork   a child forked after the allocator started gets clear
 *                          errors and frees nothing; forking while another thread
 *                          allocates never deadlocks the child; the parent goes on.
 *   lifecycle_test exit   the process exits with blocks live, cached and pending
 *                          on a stream that never drains, and frees one more block
 *                          from an atexit handler: nothing crashes. */
#define _DEFAULT_SOURCE
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>


static atomic_int stop_churn;

static void *churn(void *unused) {
  (void)unused;
  while (!atomic_load(&stop_churn)) {
    void *data, *ctx;
    if (xpu_host_allocate(4096, &data, &ctx) == XPU_HOST_SUCCESS) xpu_host_free(ctx);
    /* Lets the forking thread run: under valgrind threads take turns, and a
     * thread that never enters the kernel keeps its turn for long. */
    sched_yield();
  }
  return NULL;
}

/* What a forked child must see; exits 0 if it saw it, 1 otherwise. */
static void child(void *parent_ctx) {
  alarm(10); /* a deadlock kills the child, and the parent sees it */
  int ok = 1;
  void *data = (void *)1, *ctx = (void *)1;
  ok &= xpu_host_allocate(64, &data, &ctx) == XPU_HOST_ERROR_FORKED;
  ok &= strstr(xpu_host_last_error_message(), "forked") != NULL;
  ok &= data == (void *)1;
  ok &= xpu_host_free(parent_ctx) == XPU_HOST_ERROR_FORKED;
  ok &= xpu_host_empty_cache() == XPU_HOST_ERROR_FORKED;
  ok &= !CachingHostAllocator_recordEvent(parent_ctx, parent_ctx, (xpu_host_stream){12, 0, 0});
  ok &= getCachingHostAllocator() != NULL;
  xpu_host_stats stats = {sizeof(xpu_host_stats)};
  ok &= xpu_host_get_stats(&stats) == XPU_HOST_SUCCESS && stats.counters.active_requests.current == 0;
  _exit(ok ? 0 : 1);
}

static int run_child(void *parent_ctx) {
  pid_t pid = fork();
  if (pid == 0) child(parent_ctx);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void fork_mode(void) {
  void *data, *ctx;
  CHECK_OK(xpu_host_allocate(4096, &data, &ctx));
  CHECK(run_child(ctx));

  pthread_t thread;
  CHECK(pthread_create(&thread, NULL, churn, NULL) == 0);
  int clean = 0;
  for (int i = 0; i < 50; ++i) clean += run_child(ctx);
  atomic_store(&stop_churn, 1);
  pthread_join(thread, NULL);
  CHECK(clean == 50);

  /* The parent is unaffected. */
  CHECK_OK(xpu_host_free(ctx));
  void *again, *again_ctx;
  CHECK_OK(xpu_host_allocate(4096, &again, &again_ctx));
  CHECK(again_ctx == ctx);
  CHECK_OK(xpu_host_free(again_ctx));
}

static void *late_ctx;
static void free_at_exit(void) { xpu_host_free(late_ctx); }

static void exit_mode(void) {
  xpu_host_stream stream = {12, 0, 3};
  gate_hold(gate_create(), stream); /* never opened */

  for (int i = 0; i < 8; ++i) {
    void *data, *ctx;
    CHECK_OK(xpu_host_allocate(1024 << i, &data, &ctx));
    bool recorded;
    if (i % 2 == 0) CHECK_OK(xpu_host_record_stream(data, ctx, stream, &recorded)); /* pending forever */
    if (i % 4 != 3) CHECK_OK(xpu_host_free(ctx));                                    /* else live */
  }
  void *data;
  CHECK_OK(xpu_host_allocate(100, &data, &late_ctx));
  atexit(free_at_exit);
  exit(report());
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "fork") == 0) fork_mode();
  else if (strcmp(mode, "exit") == 0) exit_mode();
  else {
    fprintf(stderr, "usage: lifecycle_test fork|exit\n");
    return 2;
  }
  return report();
}
