/*
 * N-API binding (plain node_api.h, no node-addon-api): the sgemm works in place on the tfjs wasm backend's heap.
 * JS passes the heap (a Uint8Array over the wasm memory) and byte offsets of the operands, which live in that
 * heap already, so no tensor is copied in or out. Every offset and extent is checked against the heap's length:
 * a wrong offset throws a JS error instead of writing outside the wasm memory.
 */
#include <node_api.h>
#include <stdint.h>
#include <string.h>

#include "gemm.h"
#include "im2col.h"
#include "elementwise.h"
#include "pool.h"
#include "kernels.h"

#define CHECK(env, call)                                         \
  do {                                                           \
    if ((call) != napi_ok) {                                     \
      napi_throw_error((env), NULL, "janus4o_native: " #call);   \
      return NULL;                                               \
    }                                                            \
  } while (0)

static napi_value fail(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static int get_i64(napi_env env, napi_value v, int64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return 0;
  if (!(d >= 0 && d <= 9007199254740991.0) || d != (double)(int64_t)d) return 0;
  *out = (int64_t)d;
  return 1;
}

/* An Int32Array argument or null/undefined; *len is its element count. Returns 0 on a wrong type. */
static int get_index(napi_env env, napi_value v, const int32_t **data, size_t *len) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  if (t == napi_null || t == napi_undefined) {
    *data = NULL;
    *len = 0;
    return 1;
  }
  bool is_ta = false;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return 0;
  napi_typedarray_type type;
  void *p;
  if (napi_get_typedarray_info(env, v, &type, len, &p, NULL, NULL) != napi_ok || type != napi_int32_array) return 0;
  *data = p;
  return 1;
}

/* The largest entry an index (or the identity over `batch` entries) selects; -1 for a negative index. */
static int64_t max_entry(const int32_t *idx, int64_t batch) {
  if (!idx) return batch - 1;
  int64_t hi = 0;
  for (int64_t i = 0; i < batch; i++) {
    if (idx[i] < 0) return -1;
    if (idx[i] > hi) hi = idx[i];
  }
  return hi;
}

/* The wasm heap: a Uint8Array over the whole wasm memory. */
static int get_heap(napi_env env, napi_value v, uint8_t **heap, size_t *len) {
  bool is_ta = false;
  napi_typedarray_type type;
  void *p;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, len, &p, NULL, NULL) != napi_ok || type != napi_uint8_array)
    return 0;
  *heap = p;
  return 1;
}

/* gemm(heap, batch, m, n, k, aOff, bOff, cOff, transA, transB, aIdx, bIdx, accumulate) */
static napi_value js_gemm(napi_env env, napi_callback_info info) {
  size_t argc = 13;
  napi_value argv[13];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 13) return fail(env, "gemm: expected 13 arguments");
  size_t heap_len;
  uint8_t *heap;
  if (!get_heap(env, argv[0], &heap, &heap_len)) return fail(env, "gemm: heap must be a Uint8Array");
  int64_t v[7];
  for (int i = 0; i < 7; i++)
    if (!get_i64(env, argv[1 + i], &v[i])) return fail(env, "gemm: sizes and offsets must be non-negative integers");
  const int64_t batch = v[0], m = v[1], n = v[2], k = v[3], a_off = v[4], b_off = v[5], c_off = v[6];
  bool ta, tb, accumulate;
  if (napi_get_value_bool(env, argv[8], &ta) != napi_ok || napi_get_value_bool(env, argv[9], &tb) != napi_ok ||
      napi_get_value_bool(env, argv[12], &accumulate) != napi_ok)
    return fail(env, "gemm: transposes and accumulate must be booleans");
  const int32_t *a_idx, *b_idx;
  size_t a_len, b_len;
  if (!get_index(env, argv[10], &a_idx, &a_len) || !get_index(env, argv[11], &b_idx, &b_len))
    return fail(env, "gemm: aIdx and bIdx must be Int32Array or null");
  if ((a_idx && (int64_t)a_len < batch) || (b_idx && (int64_t)b_len < batch)) return fail(env, "gemm: index shorter than batch");
  if ((a_off | b_off | c_off) & 3) return fail(env, "gemm: offsets must be 4-byte aligned");
  if (batch == 0 || m == 0 || n == 0) return NULL;
  const int64_t a_hi = max_entry(a_idx, batch), b_hi = max_entry(b_idx, batch);
  if (a_hi < 0 || b_hi < 0) return fail(env, "gemm: negative batch index");
  /* Extents in bytes, in double to stay clear of overflow for absurd sizes. */
  const double len = (double)heap_len;
  if ((double)a_off + 4.0 * (double)(a_hi + 1) * (double)m * (double)k > len ||
      (double)b_off + 4.0 * (double)(b_hi + 1) * (double)k * (double)n > len ||
      (double)c_off + 4.0 * (double)batch * (double)m * (double)n > len)
    return fail(env, "gemm: an operand reaches past the end of the heap");
  gemm_args g = {
      .batch = batch, .m = m, .n = n, .k = k, .trans_a = ta, .trans_b = tb,
      .a = (const float *)(heap + a_off),
      .b = (const float *)(heap + b_off),
      .c = (float *)(heap + c_off),
      .accumulate = accumulate,
      .a_idx = a_idx, .b_idx = b_idx,
  };
  if (gemm_batched(&g) != 0) return fail(env, "gemm: out of memory for packing buffers");
  return NULL;
}

/* Reads the 14 numbers of a conv geometry (im2col.h's order) from an Int32Array; checks they make sense. */
static int get_geom(napi_env env, napi_value v, conv_geom *g) {
  const int32_t *d;
  size_t len;
  if (!get_index(env, v, &d, &len) || !d || len != 14) return 0;
  for (int i = 0; i < 14; i++)
    if (d[i] < 0) return 0;
  *g = (conv_geom){d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13]};
  return g->stride_h > 0 && g->stride_w > 0 && g->dil_h > 0 && g->dil_w > 0;
}

static double geom_x_bytes(const conv_geom *g) { return 4.0 * (double)g->batch * (double)g->in_h * (double)g->in_w * (double)g->in_c; }
static double geom_k(const conv_geom *g) { return (double)g->k_h * (double)g->k_w * (double)g->in_c; }
static double geom_rows(const conv_geom *g) { return (double)g->batch * (double)g->out_h * (double)g->out_w; }

/* im2col(heap, xOff, colsOff, row0, rows, geom): cols[rows, KH*KW*C] for output positions row0 .. row0+rows-1. */
static napi_value js_im2col(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  size_t heap_len;
  uint8_t *heap;
  conv_geom g;
  int64_t v[4];
  if (argc != 6 || !get_heap(env, argv[0], &heap, &heap_len) || !get_geom(env, argv[5], &g)) return fail(env, "im2col: bad arguments");
  for (int i = 0; i < 4; i++)
    if (!get_i64(env, argv[1 + i], &v[i])) return fail(env, "im2col: offsets and rows must be non-negative integers");
  const int64_t x_off = v[0], cols_off = v[1], row0 = v[2], rows = v[3];
  if ((x_off | cols_off) & 3) return fail(env, "im2col: offsets must be 4-byte aligned");
  if ((double)row0 + (double)rows > geom_rows(&g) || (double)x_off + geom_x_bytes(&g) > (double)heap_len ||
      (double)cols_off + 4.0 * (double)rows * geom_k(&g) > (double)heap_len)
    return fail(env, "im2col: an operand reaches past the end of the heap");
  im2col_rows(&g, (const float *)(heap + x_off), (float *)(heap + cols_off), row0, rows);
  return NULL;
}

/* col2im(heap, colsOff, dxOff, geom): dx = scatter-add of cols[B*OH*OW, KH*KW*C]. */
static napi_value js_col2im(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  size_t heap_len;
  uint8_t *heap;
  conv_geom g;
  int64_t cols_off, dx_off;
  if (argc != 4 || !get_heap(env, argv[0], &heap, &heap_len) || !get_geom(env, argv[3], &g) || !get_i64(env, argv[1], &cols_off) ||
      !get_i64(env, argv[2], &dx_off))
    return fail(env, "col2im: bad arguments");
  if ((cols_off | dx_off) & 3) return fail(env, "col2im: offsets must be 4-byte aligned");
  if ((double)dx_off + geom_x_bytes(&g) > (double)heap_len || (double)cols_off + 4.0 * geom_rows(&g) * geom_k(&g) > (double)heap_len)
    return fail(env, "col2im: an operand reaches past the end of the heap");
  col2im_all(&g, (const float *)(heap + cols_off), (float *)(heap + dx_off));
  return NULL;
}

/* exp(heap, xOff, yOff, n): y = exp(x) on n float32 values. */
static napi_value js_exp(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  size_t heap_len;
  uint8_t *heap;
  int64_t x_off, y_off, n;
  if (argc != 4 || !get_heap(env, argv[0], &heap, &heap_len) || !get_i64(env, argv[1], &x_off) || !get_i64(env, argv[2], &y_off) ||
      !get_i64(env, argv[3], &n))
    return fail(env, "exp: bad arguments");
  if ((x_off | y_off) & 3) return fail(env, "exp: offsets must be 4-byte aligned");
  if ((double)x_off + 4.0 * (double)n > (double)heap_len || (double)y_off + 4.0 * (double)n > (double)heap_len)
    return fail(env, "exp: an operand reaches past the end of the heap");
  elementwise_exp((const float *)(heap + x_off), (float *)(heap + y_off), n);
  return NULL;
}

static napi_value js_set_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t n;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1 || napi_get_value_int32(env, argv[0], &n) != napi_ok || n < 1) return fail(env, "setThreads: expected an integer >= 1");
  pool_set_threads(n);
  return NULL;
}

static napi_value js_threads(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  CHECK(env, napi_create_int32(env, pool_threads(), &r));
  return r;
}

static napi_value js_kernel(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  CHECK(env, napi_create_string_utf8(env, gemm_kernel_name(), NAPI_AUTO_LENGTH, &r));
  return r;
}

static napi_value js_set_kernel(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char name[32];
  size_t len;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok) return fail(env, "setKernel: expected a string");
  napi_value r;
  CHECK(env, napi_get_boolean(env, gemm_set_kernel(name) == 0, &r));
  return r;
}

static napi_value js_kernels(napi_env env, napi_callback_info info) {
  (void)info;
  const char *names[3];
  const int n = ukernel_supported(names);
  napi_value arr;
  CHECK(env, napi_create_array_with_length(env, (size_t)n, &arr));
  for (int i = 0; i < n; i++) {
    napi_value s;
    CHECK(env, napi_create_string_utf8(env, names[i], NAPI_AUTO_LENGTH, &s));
    CHECK(env, napi_set_element(env, arr, (uint32_t)i, s));
  }
  return arr;
}

static void cleanup(void *arg) {
  (void)arg;
  pool_shutdown();
}

NAPI_MODULE_INIT() {
  const napi_property_descriptor props[] = {
      {"gemm", NULL, js_gemm, NULL, NULL, NULL, napi_default, NULL},
      {"im2col", NULL, js_im2col, NULL, NULL, NULL, napi_default, NULL},
      {"col2im", NULL, js_col2im, NULL, NULL, NULL, napi_default, NULL},
      {"exp", NULL, js_exp, NULL, NULL, NULL, napi_default, NULL},
      {"setThreads", NULL, js_set_threads, NULL, NULL, NULL, napi_default, NULL},
      {"threads", NULL, js_threads, NULL, NULL, NULL, napi_default, NULL},
      {"kernel", NULL, js_kernel, NULL, NULL, NULL, napi_default, NULL},
      {"setKernel", NULL, js_set_kernel, NULL, NULL, NULL, napi_default, NULL},
      {"kernels", NULL, js_kernels, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  /* Once per process: Node aborts on a second registration of the same hook, and jest loads the addon once
   * per test file into the same process. The pool is process-wide anyway. */
  static int hooked = 0;
  if (!hooked) {
    hooked = 1;
    napi_add_env_cleanup_hook(env, cleanup, NULL);
  }
  return exports;
}
