/* Process exit while other threads are inside the allocator: PyTorch data
 * loader workers and training threads are still allocating, recording on
 * streams and emptying the cache when the main thread (or one of them) calls
 * exit(). Whatever each thread is doing, and whatever order the library, the
 * Level Zero loader and the driver are finalised in, the process must end
 * with the status exit() gave, never a crash or a hang.
 *
 * Each round forks a child that starts the allocator, runs four busy threads
 * and exits after a few milliseconds, from the main thread or from a worker;
 * the parent, which never touches the allocator, checks how it ended. */
#define _DEFAULT_SOURCE
#include "check.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { ROUNDS = 24, THREADS = 4 };

static int round_number;

static void sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
  nanosleep(&ts, NULL);
}

static ze_result_t fill(void *data, ze_command_list_handle_t list) {
  static const uint32_t pattern = 0xd00dfeed;
  return zeCommandListAppendMemoryFill(list, data, &pattern, sizeof pattern, 4096, NULL, 0, NULL);
}

static void *busy(void *arg) {
  int index = (int)(intptr_t)arg;
  unsigned seed = (unsigned)(round_number * 31 + index);
  xpu_host_stream stream = {12, 0, index % 2};
  for (long i = 0;; ++i) {
    if (index == 3) {
      xpu_host_empty_cache();
      continue;
    }
    /* Errors are expected once the library is being finalised: they are codes, not crashes. */
    void *data, *ctx;
    size_t size = 4096 + (size_t)(rand_r(&seed) % 60000);
    if (xpu_host_allocate(size, &data, &ctx) != XPU_HOST_SUCCESS) continue;
    memset(data, index, 64);
    bool recorded;
    if (i % 2 == 0 && xpu_host_stream_submit(stream, fill, data) == XPU_HOST_SUCCESS)
      xpu_host_record_stream(data, ctx, stream, &recorded);
    if (index == 2 && i == 200 + round_number * 10 && round_number % 3 == 2) exit(0); /* exit from a worker */
    xpu_host_free(ctx);
  }
  return NULL;
}

static void child(void) {
  alarm(30); /* a hang at exit is a failure the parent sees as SIGALRM */
  if (xpu_host_init() != XPU_HOST_SUCCESS) _exit(2);
  pthread_t threads[THREADS];
  for (int t = 0; t < THREADS; ++t) pthread_create(&threads[t], NULL, busy, (void *)(intptr_t)t);
  sleep_us(2000 + 1000L * (round_number % 8));
  exit(0); /* while the threads are busy */
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "child") == 0) { /* one round, in this process (for a debugger) */
    round_number = atoi(argv[2]);
    child();
  }
  int clean = 0;
  for (round_number = 0; round_number < ROUNDS; ++round_number) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) child();
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok) {
      fprintf(stderr, "round %d: the child ended with %s %d\n", round_number,
              WIFSIGNALED(status) ? "signal" : "status", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    }
    clean += ok;
  }
  CHECK(clean == ROUNDS);
  printf("reliability: exit under load: %d of %d processes exited cleanly while 4 threads were inside the allocator\n", clean,
         ROUNDS);
  return report();
}
