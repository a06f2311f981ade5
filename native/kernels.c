/*
 * The micro-kernels, one per instruction set, compiled with __attribute__((target)) so that one binary built
 * with the compiler's default flags (plain x86-64) carries all of them; ukernel_best() picks at run time.
 * Accumulators live in registers: the fixed-size loops are fully unrolled, which GCC and Clang turn into
 * register-resident vectors.
 */
#include "kernels.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define JANUS4O_X86 1
#include <immintrin.h>
#endif

static inline void store_tile(float *c, int64_t ldc, int accumulate, int row, int col, float v) {
  float *p = c + row * ldc + col;
  *p = accumulate ? *p + v : v;
}

#ifdef JANUS4O_X86
/* AVX-512: 12 x 32 tile, 24 zmm accumulators + 2 for B + 1 broadcast of A. */
#define A512_MR 12
#define A512_NR 32
__attribute__((target("avx512f,fma"))) static void ukernel_avx512(int64_t kc, const float *pa, const float *pb, int64_t ldb, float *c,
                                                                 int64_t ldc, int accumulate) {
  __m512 acc0[A512_MR], acc1[A512_MR];
#pragma GCC unroll 12
  for (int i = 0; i < A512_MR; i++) {
    acc0[i] = _mm512_setzero_ps();
    acc1[i] = _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < kc; p++) {
    const __m512 b0 = _mm512_loadu_ps(pb);
    const __m512 b1 = _mm512_loadu_ps(pb + 16);
#pragma GCC unroll 12
    for (int i = 0; i < A512_MR; i++) {
      const __m512 a = _mm512_set1_ps(pa[i]);
      acc0[i] = _mm512_fmadd_ps(a, b0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(a, b1, acc1[i]);
    }
    pa += A512_MR;
    pb += ldb;
  }
#pragma GCC unroll 12
  for (int i = 0; i < A512_MR; i++) {
    float *row = c + i * ldc;
    if (accumulate) {
      acc0[i] = _mm512_add_ps(acc0[i], _mm512_loadu_ps(row));
      acc1[i] = _mm512_add_ps(acc1[i], _mm512_loadu_ps(row + 16));
    }
    _mm512_storeu_ps(row, acc0[i]);
    _mm512_storeu_ps(row + 16, acc1[i]);
  }
}

/* AVX2: 6 x 16 tile, 12 ymm accumulators + 2 for B + 1 broadcast (the 16 ymm registers). */
#define A2_MR 6
#define A2_NR 16
__attribute__((target("avx2,fma"))) static void ukernel_avx2(int64_t kc, const float *pa, const float *pb, int64_t ldb, float *c,
                                                            int64_t ldc, int accumulate) {
  __m256 acc0[A2_MR], acc1[A2_MR];
#pragma GCC unroll 6
  for (int i = 0; i < A2_MR; i++) {
    acc0[i] = _mm256_setzero_ps();
    acc1[i] = _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < kc; p++) {
    const __m256 b0 = _mm256_loadu_ps(pb);
    const __m256 b1 = _mm256_loadu_ps(pb + 8);
#pragma GCC unroll 6
    for (int i = 0; i < A2_MR; i++) {
      const __m256 a = _mm256_broadcast_ss(pa + i);
      acc0[i] = _mm256_fmadd_ps(a, b0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(a, b1, acc1[i]);
    }
    pa += A2_MR;
    pb += ldb;
  }
#pragma GCC unroll 6
  for (int i = 0; i < A2_MR; i++) {
    float *row = c + i * ldc;
    if (accumulate) {
      acc0[i] = _mm256_add_ps(acc0[i], _mm256_loadu_ps(row));
      acc1[i] = _mm256_add_ps(acc1[i], _mm256_loadu_ps(row + 8));
    }
    _mm256_storeu_ps(row, acc0[i]);
    _mm256_storeu_ps(row + 8, acc1[i]);
  }
}
#endif

/* Portable C: 4 x 16 tile in a local array; compilers vectorise the j loop with whatever the target has. */
#define GEN_MR 4
#define GEN_NR 16
static void ukernel_generic(int64_t kc, const float *pa, const float *pb, int64_t ldb, float *c, int64_t ldc, int accumulate) {
  float acc[GEN_MR][GEN_NR];
  memset(acc, 0, sizeof acc);
  for (int64_t p = 0; p < kc; p++) {
    for (int i = 0; i < GEN_MR; i++) {
      const float a = pa[i];
      for (int j = 0; j < GEN_NR; j++) acc[i][j] += a * pb[j];
    }
    pa += GEN_MR;
    pb += ldb;
  }
  for (int i = 0; i < GEN_MR; i++)
    for (int j = 0; j < GEN_NR; j++) store_tile(c, ldc, accumulate, i, j, acc[i][j]);
}

static const ukernel GENERIC = {"generic", GEN_MR, GEN_NR, ukernel_generic};
#ifdef JANUS4O_X86
static const ukernel AVX512 = {"avx512", A512_MR, A512_NR, ukernel_avx512};
static const ukernel AVX2 = {"avx2", A2_MR, A2_NR, ukernel_avx2};

static int has_avx512(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
}
static int has_avx2(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

int ukernel_supported(const char **names) {
  int n = 0;
#ifdef JANUS4O_X86
  if (has_avx512()) names[n++] = AVX512.name;
  if (has_avx2()) names[n++] = AVX2.name;
#endif
  names[n++] = GENERIC.name;
  return n;
}

const ukernel *ukernel_named(const char *name) {
#ifdef JANUS4O_X86
  if (strcmp(name, AVX512.name) == 0) return has_avx512() ? &AVX512 : NULL;
  if (strcmp(name, AVX2.name) == 0) return has_avx2() ? &AVX2 : NULL;
#endif
  if (strcmp(name, GENERIC.name) == 0) return &GENERIC;
  return NULL;
}

const ukernel *ukernel_best(void) {
  const char *names[3];
  ukernel_supported(names);
  return ukernel_named(names[0]);
}
