/*
 * Exp: wasm's kernel calls a scalar exp per element (~75 M/s here), and the softmax cross-entropy over the
 * [rows, vocab] image logits runs it on half a million elements twice a step. glibc's expf is correctly
 * rounded in practice and several times faster, and the pool splits the array over the cores.
 */
#include "elementwise.h"

#include <math.h>

#include "pool.h"

/* Elements per task: big enough that a task outweighs the pool's hand-off. */
#define CHUNK 32768

typedef struct {
  const float *x;
  float *y;
  int64_t n;
} exp_job;

static void exp_chunk(void *ctx, int64_t t) {
  const exp_job *j = ctx;
  const int64_t lo = t * CHUNK;
  const int64_t hi = lo + CHUNK < j->n ? lo + CHUNK : j->n;
  for (int64_t i = lo; i < hi; i++) j->y[i] = expf(j->x[i]);
}

void elementwise_exp(const float *x, float *y, int64_t n) {
  exp_job j = {x, y, n};
  pool_run(exp_chunk, &j, (n + CHUNK - 1) / CHUNK);
}
