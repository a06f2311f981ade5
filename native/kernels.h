/*
 * sgemm micro-kernels: C[MR x NR] (+)= sum over p < kc of pa[p*MR + i] * pb[p*ldb + j]. pa is a packed sliver of
 * A (MR rows interleaved per k step); pb is either a packed sliver of B (ldb = NR) or B in place when B is
 * row-major (ldb = its row stride), which saves packing B for products with few rows.
 */
#ifndef JANUS4O_KERNELS_H
#define JANUS4O_KERNELS_H

#include <stdint.h>

typedef void (*ukernel_fn)(int64_t kc, const float *pa, const float *pb, int64_t ldb, float *c, int64_t ldc, int accumulate);

typedef struct {
  const char *name; /* "avx512", "avx2", "generic" */
  int mr;
  int nr;
  ukernel_fn fn;
} ukernel;

/* The largest MR and NR of any kernel: sizes the edge-tile scratch buffer. */
#define UKERNEL_MAX_MR 12
#define UKERNEL_MAX_NR 32

/* The best kernel this CPU runs (checked with __builtin_cpu_supports). */
const ukernel *ukernel_best(void);
/* The kernel of that name if this CPU runs it, else NULL. */
const ukernel *ukernel_named(const char *name);
/* Names of every kernel this CPU runs, best first; returns how many (at most 3). */
int ukernel_supported(const char **names);

#endif
