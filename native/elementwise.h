/* Elementwise kernels the step profile showed worth moving out of wasm (docs/performance.md). */
#ifndef JANUS4O_ELEMENTWISE_H
#define JANUS4O_ELEMENTWISE_H

#include <stdint.h>

/* y[i] = expf(x[i]) for i < n, split over the pool; x and y may be the same array. */
void elementwise_exp(const float *x, float *y, int64_t n);

#endif
