/*
 * im2col / col2im for NHWC convolutions. In NHWC the C channels of one tap are contiguous in both x and the
 * patch row, so each tap is one memcpy (or one vectorisable add): the JS versions moved one float at a time.
 * im2col works on a range of rows, so a large convolution can be lowered in chunks that fit in memory.
 */
#include "im2col.h"

#include <string.h>

#include "pool.h"

void im2col_rows(const conv_geom *g, const float *x, float *cols, int64_t row0, int64_t rows) {
  const int64_t C = g->in_c, K = g->k_h * g->k_w * C;
  const int64_t per_image = g->out_h * g->out_w;
  for (int64_t r = 0; r < rows; r++) {
    const int64_t n = row0 + r;
    const int64_t b = n / per_image, rem = n % per_image;
    const int64_t oh = rem / g->out_w, ow = rem % g->out_w;
    float *dst = cols + r * K;
    for (int64_t kh = 0; kh < g->k_h; kh++) {
      const int64_t ih = oh * g->stride_h - g->pad_top + kh * g->dil_h;
      for (int64_t kw = 0; kw < g->k_w; kw++, dst += C) {
        const int64_t iw = ow * g->stride_w - g->pad_left + kw * g->dil_w;
        if (ih < 0 || ih >= g->in_h || iw < 0 || iw >= g->in_w) {
          memset(dst, 0, (size_t)C * sizeof(float));
          continue;
        }
        memcpy(dst, x + ((b * g->in_h + ih) * g->in_w + iw) * C, (size_t)C * sizeof(float));
      }
    }
  }
}

typedef struct {
  const conv_geom *g;
  const float *cols;
  float *dx;
} col2im_job;

/* One task per image: taps of different images never overlap, so images scatter in parallel. */
static void col2im_image(void *ctx, int64_t b) {
  const col2im_job *j = ctx;
  const conv_geom *g = j->g;
  const int64_t C = g->in_c, K = g->k_h * g->k_w * C;
  float *img = j->dx + b * g->in_h * g->in_w * C;
  memset(img, 0, (size_t)(g->in_h * g->in_w * C) * sizeof(float));
  for (int64_t oh = 0; oh < g->out_h; oh++) {
    for (int64_t ow = 0; ow < g->out_w; ow++) {
      const float *src = j->cols + ((b * g->out_h + oh) * g->out_w + ow) * K;
      for (int64_t kh = 0; kh < g->k_h; kh++) {
        const int64_t ih = oh * g->stride_h - g->pad_top + kh * g->dil_h;
        if (ih < 0 || ih >= g->in_h) continue;
        for (int64_t kw = 0; kw < g->k_w; kw++) {
          const int64_t iw = ow * g->stride_w - g->pad_left + kw * g->dil_w;
          if (iw < 0 || iw >= g->in_w) continue;
          float *d = img + (ih * g->in_w + iw) * C;
          const float *s = src + (kh * g->k_w + kw) * C;
          for (int64_t c = 0; c < C; c++) d[c] += s[c];
        }
      }
    }
  }
}

void col2im_all(const conv_geom *g, const float *cols, float *dx) {
  col2im_job j = {g, cols, dx};
  pool_run(col2im_image, &j, g->batch);
}
