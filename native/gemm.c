/*
 * Blocked, packed sgemm (the Goto/BLIS loop nest): for each NC-wide block of B columns and KC-deep slice of k,
 * B is packed into NR-wide slivers; for each MC-tall block of A rows, A is packed into MR-tall slivers; the
 * micro-kernel then sweeps MR x NR tiles. Transposes cost nothing extra: packing reads either layout through
 * (row, column) strides. Work is split into tiles of the output over (batch entry, row block, column block),
 * each computed start to finish by one thread with its own packing buffers, so the pool needs no barriers.
 */
#define _GNU_SOURCE
#include "gemm.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "pool.h"

#define KC 256
#define MC 144 /* a multiple of every MR (12, 6, 4) */
#define NC 512 /* a multiple of every NR (32, 16) */
/* Below this many multiply-adds a product runs on the calling thread: waking the pool costs tens of us. */
#define PARALLEL_MIN_MACS (1 << 20)

static const ukernel *active_kernel;

int gemm_set_kernel(const char *name) {
  const ukernel *k = ukernel_named(name);
  if (!k) return -1;
  active_kernel = k;
  return 0;
}

static const ukernel *kernel(void) {
  if (!active_kernel) active_kernel = ukernel_best();
  return active_kernel;
}

const char *gemm_kernel_name(void) { return kernel()->name; }

/* Per-thread packing buffers, freed by a key destructor when a pool thread exits. */
typedef struct {
  float *pa;   /* MC x KC */
  float *pb;   /* KC x NC */
  float *pe;   /* KC x NR: one packed edge sliver when B is read in place */
  float *tile; /* MR x NR scratch for partial edge tiles */
} buffers;

static pthread_key_t buffers_key;
static pthread_once_t buffers_once = PTHREAD_ONCE_INIT;

static void free_buffers(void *p) {
  buffers *b = p;
  free(b->pa);
  free(b->pb);
  free(b->pe);
  free(b->tile);
  free(b);
}

static void make_key(void) { pthread_key_create(&buffers_key, free_buffers); }

static float *alloc_floats(size_t n) {
  void *p = NULL;
  return posix_memalign(&p, 64, n * sizeof(float)) == 0 ? p : NULL;
}

static buffers *thread_buffers(void) {
  pthread_once(&buffers_once, make_key);
  buffers *b = pthread_getspecific(buffers_key);
  if (b) return b;
  b = calloc(1, sizeof *b);
  if (!b) return NULL;
  b->pa = alloc_floats((size_t)MC * KC);
  b->pb = alloc_floats((size_t)KC * NC);
  b->pe = alloc_floats((size_t)KC * UKERNEL_MAX_NR);
  b->tile = alloc_floats((size_t)UKERNEL_MAX_MR * UKERNEL_MAX_NR);
  if (!b->pa || !b->pb || !b->pe || !b->tile) {
    free_buffers(b);
    return NULL;
  }
  pthread_setspecific(buffers_key, b);
  return b;
}

/* dst: ceil(rows/mr) slivers, each kc x mr (row index fastest); rows past the end are zero. */
static void pack_a(float *dst, const float *a, int64_t rsa, int64_t csa, int64_t rows, int64_t kc, int mr) {
  for (int64_t r0 = 0; r0 < rows; r0 += mr) {
    const int64_t h = rows - r0 < mr ? rows - r0 : mr;
    const float *src = a + r0 * rsa;
    if (rsa == 1) {
      /* Transposed A: the mr rows of one k step are contiguous. */
      for (int64_t p = 0; p < kc; p++) {
        const float *s = src + p * csa;
        int64_t i = 0;
        for (; i < h; i++) dst[i] = s[i];
        for (; i < mr; i++) dst[i] = 0.0f;
        dst += mr;
      }
    } else {
      /* Row-major A: read each row contiguously, write it interleaved. */
      for (int64_t i = 0; i < h; i++) {
        const float *s = src + i * rsa;
        for (int64_t p = 0; p < kc; p++) dst[p * mr + i] = s[p * csa];
      }
      for (int64_t i = h; i < mr; i++)
        for (int64_t p = 0; p < kc; p++) dst[p * mr + i] = 0.0f;
      dst += kc * mr;
    }
  }
}

/* dst: ceil(cols/nr) slivers, each kc x nr (column index fastest); columns past the end are zero. */
static void pack_b(float *dst, const float *b, int64_t rsb, int64_t csb, int64_t kc, int64_t cols, int nr) {
  for (int64_t c0 = 0; c0 < cols; c0 += nr) {
    const int64_t w = cols - c0 < nr ? cols - c0 : nr;
    const float *src = b + c0 * csb;
    if (csb == 1) {
      for (int64_t p = 0; p < kc; p++) {
        memcpy(dst + p * nr, src + p * rsb, (size_t)w * sizeof(float));
        for (int64_t j = w; j < nr; j++) dst[p * nr + j] = 0.0f;
      }
    } else {
      /* Transposed B: each column is contiguous along k. */
      for (int64_t j = 0; j < w; j++) {
        const float *s = src + j * csb;
        for (int64_t p = 0; p < kc; p++) dst[p * nr + j] = s[p * rsb];
      }
      for (int64_t j = w; j < nr; j++)
        for (int64_t p = 0; p < kc; p++) dst[p * nr + j] = 0.0f;
    }
    dst += kc * nr;
  }
}

typedef struct {
  const float *a;
  int64_t rsa, csa;
  const float *b;
  int64_t rsb, csb;
  float *c;
  int64_t ldc;
  int64_t m, n, k;
  int accumulate;
} block;

/* C[m, n] = A[m, k] B[k, n] for one output tile, on the calling thread. */
static void gemm_block(const ukernel *uk, buffers *tb, const block *x) {
  const int mr = uk->mr, nr = uk->nr;
  /* With few rows, each packed B sliver would be used by one or two micro-kernel calls: packing it costs as much
   * as reading it in place, so row-major B is read where it lies. */
  const int direct_b = x->csb == 1 && x->m <= 4 * mr;
  if (x->k == 0) {
    if (!x->accumulate)
      for (int64_t i = 0; i < x->m; i++) memset(x->c + i * x->ldc, 0, (size_t)x->n * sizeof(float));
    return;
  }
  for (int64_t jc = 0; jc < x->n; jc += NC) {
    const int64_t nc = x->n - jc < NC ? x->n - jc : NC;
    for (int64_t pc = 0; pc < x->k; pc += KC) {
      const int64_t kc = x->k - pc < KC ? x->k - pc : KC;
      const int acc = pc > 0 || x->accumulate;
      const float *bpc = x->b + pc * x->rsb + jc * x->csb;
      if (!direct_b) pack_b(tb->pb, bpc, x->rsb, x->csb, kc, nc, nr);
      for (int64_t ic = 0; ic < x->m; ic += MC) {
        const int64_t mc = x->m - ic < MC ? x->m - ic : MC;
        pack_a(tb->pa, x->a + ic * x->rsa + pc * x->csa, x->rsa, x->csa, mc, kc, mr);
        for (int64_t jr = 0; jr < nc; jr += nr) {
          const int64_t nw = nc - jr < nr ? nc - jr : nr;
          const float *pb;
          int64_t ldb;
          if (!direct_b) {
            pb = tb->pb + (jr / nr) * kc * nr;
            ldb = nr;
          } else if (nw == nr) {
            pb = bpc + jr;
            ldb = x->rsb;
          } else {
            pack_b(tb->pe, bpc + jr, x->rsb, 1, kc, nw, nr);
            pb = tb->pe;
            ldb = nr;
          }
          for (int64_t ir = 0; ir < mc; ir += mr) {
            const int64_t mw = mc - ir < mr ? mc - ir : mr;
            const float *pa = tb->pa + (ir / mr) * kc * mr;
            float *c = x->c + (ic + ir) * x->ldc + jc + jr;
            if (mw == mr && nw == nr) {
              uk->fn(kc, pa, pb, ldb, c, x->ldc, acc);
              continue;
            }
            /* Edge tile: compute the full tile into scratch (packing zero-filled the missing rows and columns). */
            uk->fn(kc, pa, pb, ldb, tb->tile, nr, 0);
            for (int64_t i = 0; i < mw; i++) {
              float *crow = c + i * x->ldc;
              const float *t = tb->tile + i * nr;
              if (acc)
                for (int64_t j = 0; j < nw; j++) crow[j] += t[j];
              else
                memcpy(crow, t, (size_t)nw * sizeof(float));
            }
          }
        }
      }
    }
  }
}

typedef struct {
  const gemm_args *g;
  const ukernel *uk;
  int64_t mb, nb; /* tile height and width */
  int64_t gm, gn; /* tiles per batch entry along m and n */
  _Atomic int failed;
} job;

static void run_tile(void *ctx, int64_t t) {
  job *j = ctx;
  const gemm_args *g = j->g;
  buffers *tb = thread_buffers();
  if (!tb) {
    j->failed = 1;
    return;
  }
  const int64_t per = j->gm * j->gn;
  const int64_t e = t / per, r = t % per;
  const int64_t m0 = (r / j->gn) * j->mb, n0 = (r % j->gn) * j->nb;
  const int64_t ea = g->a_idx ? g->a_idx[e] : e;
  const int64_t eb = g->b_idx ? g->b_idx[e] : e;
  block x;
  x.rsa = g->trans_a ? 1 : g->k;
  x.csa = g->trans_a ? g->m : 1;
  x.rsb = g->trans_b ? 1 : g->n;
  x.csb = g->trans_b ? g->k : 1;
  x.a = g->a + ea * g->m * g->k + m0 * x.rsa;
  x.b = g->b + eb * g->k * g->n + n0 * x.csb;
  x.ldc = g->n;
  x.c = g->c + e * g->m * g->n + m0 * g->n + n0;
  x.m = g->m - m0 < j->mb ? g->m - m0 : j->mb;
  x.n = g->n - n0 < j->nb ? g->n - n0 : j->nb;
  x.k = g->k;
  x.accumulate = g->accumulate;
  gemm_block(j->uk, tb, &x);
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

int gemm_batched(const gemm_args *g) {
  if (g->batch <= 0 || g->m <= 0 || g->n <= 0) return 0;
  job j = {.g = g, .uk = kernel(), .mb = g->m, .nb = g->n, .gm = 1, .gn = 1, .failed = 0};
  const int threads = pool_threads();
  const double macs = (double)g->batch * (double)g->m * (double)g->n * (double)g->k;
  if (threads > 1 && macs >= PARALLEL_MIN_MACS) {
    /* Enough tiles for dynamic balancing (2 per thread), split along the longer side, in whole micro-tiles. */
    const int64_t want = ceil_div(2 * threads, g->batch);
    if (want > 1) {
      const int mr = j.uk->mr, nr = j.uk->nr;
      if (g->m >= g->n) {
        j.mb = round_up(ceil_div(g->m, want), mr);
        j.gm = ceil_div(g->m, j.mb);
        const int64_t rest = ceil_div(want, j.gm);
        if (rest > 1) j.nb = round_up(ceil_div(g->n, rest), nr);
      } else {
        j.nb = round_up(ceil_div(g->n, want), nr);
        j.gn = ceil_div(g->n, j.nb);
        const int64_t rest = ceil_div(want, j.gn);
        if (rest > 1) j.mb = round_up(ceil_div(g->m, rest), mr);
      }
      j.gm = ceil_div(g->m, j.mb);
      j.gn = ceil_div(g->n, j.nb);
    }
  }
  pool_run(run_tile, &j, g->batch * j.gm * j.gn);
  return j.failed ? -1 : 0;
}
