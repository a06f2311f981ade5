/* Batched single-precision matrix product with tf.matMul's semantics (transposes, broadcast batch). */
#ifndef JANUS4O_GEMM_H
#define JANUS4O_GEMM_H

#include <stdint.h>

typedef struct {
  int64_t batch; /* output batch entries */
  int64_t m, n, k;
  int trans_a; /* a entry stored [k, m] instead of [m, k] */
  int trans_b; /* b entry stored [n, k] instead of [k, n] */
  const float *a;
  const float *b;
  float *c; /* [batch, m, n] */
  int accumulate; /* c += product instead of c = product (chunked reductions) */
  const int32_t *a_idx; /* a entry of output entry e (NULL: e) */
  const int32_t *b_idx; /* b entry of output entry e (NULL: e) */
} gemm_args;

/* Returns 0, or -1 when a thread could not allocate its packing buffers (the output is then incomplete). */
int gemm_batched(const gemm_args *g);

/* Selects the micro-kernel by name ("avx512", "avx2", "generic"); returns 0, or -1 if this CPU lacks it. */
int gemm_set_kernel(const char *name);
const char *gemm_kernel_name(void);

#endif
