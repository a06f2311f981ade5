/* The data movement around the convolution products: im2col (patches as rows) and col2im (scatter-add back). */
#ifndef JANUS4O_IM2COL_H
#define JANUS4O_IM2COL_H

#include <stdint.h>

typedef struct {
  int64_t batch, in_h, in_w, in_c; /* x: [batch, in_h, in_w, in_c], NHWC */
  int64_t out_h, out_w;
  int64_t k_h, k_w;
  int64_t stride_h, stride_w, dil_h, dil_w;
  int64_t pad_top, pad_left;
} conv_geom;

/* cols[r, (kh, kw, c)] for output positions n = row0 + r, r < rows (n = (b, oh, ow)); padding taps are 0. */
void im2col_rows(const conv_geom *g, const float *x, float *cols, int64_t row0, int64_t rows);

/* dx = 0, then dx[b, ih, iw, c] += cols[n, (kh, kw, c)] over every tap that lands inside the image. */
void col2im_all(const conv_geom *g, const float *cols, float *dx);

#endif
