/*
 * Persistent worker pool. A job is announced through one 64-bit atomic word, (generation << 32) | tasks not yet
 * claimed; a thread claims a task by decrementing the low half with a compare-and-swap that also checks the
 * generation. A worker that wakes late, after its job finished and the next one started, therefore cannot claim a
 * task of the next job with the previous job's context: its CAS fails on the generation. The job's fn/ctx are
 * read only after a successful claim, when the caller cannot yet have replaced them (it waits for `pending`).
 */
#define _GNU_SOURCE
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* How long an idle worker polls for the next job before sleeping: long enough to bridge the gap between two
 * products of a training step (elementwise kernels in between), short enough not to steal a shared core. */
#define SPIN_NS 200000L

static struct {
  _Atomic uint64_t state;
  _Atomic int64_t pending;
  _Atomic int stop;
  pool_fn fn;
  void *ctx;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_mutex_t run_mu; /* one job at a time; a second caller (another JS thread) runs its job inline */
  pthread_t *workers;
  int nworkers;
} P = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .run_mu = PTHREAD_MUTEX_INITIALIZER};

static uint32_t gen_of(uint64_t s) { return (uint32_t)(s >> 32); }

static long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void run_tasks(uint32_t gen) {
  for (;;) {
    uint64_t s = atomic_load_explicit(&P.state, memory_order_acquire);
    for (;;) {
      if (gen_of(s) != gen || (uint32_t)s == 0) return;
      if (atomic_compare_exchange_weak_explicit(&P.state, &s, s - 1, memory_order_acq_rel, memory_order_acquire)) break;
    }
    int64_t task = (int64_t)(uint32_t)s - 1;
    P.fn(P.ctx, task);
    atomic_fetch_sub_explicit(&P.pending, 1, memory_order_acq_rel);
  }
}

static void *worker_main(void *arg) {
  (void)arg;
  uint32_t seen = gen_of(atomic_load(&P.state));
  for (;;) {
    uint64_t s;
    long started = now_ns();
    int polls = 0;
    for (;;) {
      if (atomic_load_explicit(&P.stop, memory_order_acquire)) return NULL;
      s = atomic_load_explicit(&P.state, memory_order_acquire);
      if (gen_of(s) != seen) break;
      cpu_relax();
      if ((++polls & 255) != 0 || now_ns() - started < SPIN_NS) continue;
      pthread_mutex_lock(&P.mu);
      while (!atomic_load(&P.stop) && gen_of(atomic_load(&P.state)) == seen) pthread_cond_wait(&P.cv, &P.mu);
      pthread_mutex_unlock(&P.mu);
      started = now_ns();
    }
    seen = gen_of(s);
    run_tasks(seen);
  }
}

void pool_run(pool_fn fn, void *ctx, int64_t ntasks) {
  if (ntasks <= 0) return;
  if (P.nworkers == 0 || ntasks == 1 || ntasks > UINT32_MAX || pthread_mutex_trylock(&P.run_mu) != 0) {
    for (int64_t t = 0; t < ntasks; t++) fn(ctx, t);
    return;
  }
  P.fn = fn;
  P.ctx = ctx;
  atomic_store_explicit(&P.pending, ntasks, memory_order_relaxed);
  uint32_t gen = gen_of(atomic_load(&P.state)) + 1;
  atomic_store_explicit(&P.state, ((uint64_t)gen << 32) | (uint32_t)ntasks, memory_order_release);
  /* Under the mutex, so that a worker between its check and its wait cannot miss the wake-up. */
  pthread_mutex_lock(&P.mu);
  pthread_cond_broadcast(&P.cv);
  pthread_mutex_unlock(&P.mu);
  run_tasks(gen);
  /* Only tasks a worker already claimed remain: it is running them, so wait briefly, yielding if it was
   * descheduled (a shared machine). */
  int polls = 0;
  while (atomic_load_explicit(&P.pending, memory_order_acquire) > 0) {
    cpu_relax();
    if (++polls > 4096) sched_yield();
  }
  pthread_mutex_unlock(&P.run_mu);
}

void pool_shutdown(void) {
  pthread_mutex_lock(&P.run_mu);
  if (P.nworkers > 0) {
    atomic_store(&P.stop, 1);
    pthread_mutex_lock(&P.mu);
    pthread_cond_broadcast(&P.cv);
    pthread_mutex_unlock(&P.mu);
    for (int i = 0; i < P.nworkers; i++) pthread_join(P.workers[i], NULL);
    free(P.workers);
    P.workers = NULL;
    P.nworkers = 0;
    atomic_store(&P.stop, 0);
  }
  pthread_mutex_unlock(&P.run_mu);
}

void pool_set_threads(int n) {
  if (n < 1) n = 1;
  if (n > 256) n = 256;
  pool_shutdown();
  pthread_mutex_lock(&P.run_mu);
  P.workers = n > 1 ? calloc((size_t)(n - 1), sizeof(pthread_t)) : NULL;
  int made = 0;
  for (int i = 0; P.workers && i < n - 1; i++) {
    if (pthread_create(&P.workers[i], NULL, worker_main, NULL) != 0) break;
    made++;
  }
  P.nworkers = made;
  pthread_mutex_unlock(&P.run_mu);
}

int pool_threads(void) { return P.nworkers + 1; }
