/*
 * Shared mappings for the intra-node all-reduce (src/distributed/shm.ts). Node cannot mmap, so without this
 * addon every byte a rank shares crosses the kernel twice (pwrite into a /dev/shm segment, pread out of it) and
 * is copied once more into WebAssembly memory to be summed. With it, each segment the group already opened (and
 * checked: owner, mode, size, device and inode) is mapped into every rank once, and the owner of a shard sums its
 * peers' pieces straight out of their mappings in one pass that also writes the result where the peers read it.
 *
 *   map(fd, bytes, writable) -> ArrayBuffer   MAP_SHARED view of an open segment; unmapped when collected
 *   reduce(own, peers, divisor, out)          own[i] = (((p0[i] + p1[i]) + ...) + own[i]) / divisor, and
 *                                             out[i] = own[i] when out is given (float32 arrays of one length)
 *   fence()                                   a full memory barrier: stores into a mapping before a rank posts
 *                                             its arrival counter, loads from peers' after it reads theirs
 *
 * The summation order is the ring's (layout.ts): bit-identical results whichever transport a job uses. Only
 * additions and one division, so the compiler has nothing to contract into a fused multiply-add.
 */
#include <node_api.h>
#include <stdint.h>
#include <sys/mman.h>

#define MAX_PEERS 256
#define BLOCK 2048

static napi_value fail(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static void unmap(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

static napi_value js_map(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3) return fail(env, "map(fd, bytes, writable)");
  int32_t fd;
  double bytes_d;
  bool writable;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) return fail(env, "map: fd must be an open file descriptor");
  if (napi_get_value_double(env, argv[1], &bytes_d) != napi_ok || !(bytes_d > 0) || bytes_d > 9007199254740991.0 || bytes_d != (double)(int64_t)bytes_d) {
    return fail(env, "map: bytes must be a positive integer");
  }
  if (napi_get_value_bool(env, argv[2], &writable) != napi_ok) return fail(env, "map: writable must be a boolean");
  size_t bytes = (size_t)bytes_d;
  void *p = mmap(NULL, bytes, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return fail(env, "map: mmap of the shared-memory segment failed");
  napi_value ab;
  if (napi_create_external_arraybuffer(env, p, bytes, unmap, (void *)(uintptr_t)bytes, &ab) != napi_ok) {
    munmap(p, bytes);
    return fail(env, "map: could not wrap the mapping in an ArrayBuffer");
  }
  return ab;
}

static int float_array(napi_env env, napi_value v, float **data, size_t *len) {
  bool is_ta = false;
  napi_typedarray_type type;
  void *p;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return 0;
  if (napi_get_typedarray_info(env, v, &type, len, &p, NULL, NULL) != napi_ok || type != napi_float32_array) return 0;
  *data = p;
  return 1;
}

static napi_value js_reduce(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4) return fail(env, "reduce(own, peers, divisor, out)");
  float *own;
  size_t n;
  if (!float_array(env, argv[0], &own, &n)) return fail(env, "reduce: own must be a Float32Array");
  uint32_t np;
  bool is_array = false;
  if (napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[1], &np) != napi_ok || np < 1 || np > MAX_PEERS) {
    return fail(env, "reduce: peers must be an array of 1 to 256 Float32Arrays");
  }
  const float *peers[MAX_PEERS];
  for (uint32_t j = 0; j < np; j++) {
    napi_value e;
    float *p;
    size_t len;
    if (napi_get_element(env, argv[1], j, &e) != napi_ok || !float_array(env, e, &p, &len) || len != n) {
      return fail(env, "reduce: every peer must be a Float32Array as long as own");
    }
    peers[j] = p;
  }
  double divisor;
  if (napi_get_value_double(env, argv[2], &divisor) != napi_ok || !(divisor >= 1)) return fail(env, "reduce: divisor must be >= 1");
  napi_valuetype t;
  float *out = NULL;
  if (napi_typeof(env, argv[3], &t) != napi_ok) return fail(env, "reduce: bad out");
  if (t != napi_null && t != napi_undefined) {
    size_t len;
    if (!float_array(env, argv[3], &out, &len) || len != n) return fail(env, "reduce: out must be null or a Float32Array as long as own");
  }
  const float d = (float)divisor;
  const int divide = divisor > 1;
  /* Blocks that stay in L1, each loop a plain stream the compiler vectorises. */
  float acc[BLOCK];
  for (size_t a = 0; a < n; a += BLOCK) {
    const size_t m = n - a < BLOCK ? n - a : BLOCK;
    const float *p0 = peers[0] + a;
    for (size_t i = 0; i < m; i++) acc[i] = p0[i];
    for (uint32_t j = 1; j < np; j++) {
      const float *pj = peers[j] + a;
      for (size_t i = 0; i < m; i++) acc[i] += pj[i];
    }
    float *o = own + a;
    if (divide) {
      for (size_t i = 0; i < m; i++) o[i] = (o[i] + acc[i]) / d;
    } else {
      for (size_t i = 0; i < m; i++) o[i] = o[i] + acc[i];
    }
    if (out) {
      float *w = out + a;
      for (size_t i = 0; i < m; i++) w[i] = o[i];
    }
  }
  return NULL;
}

static napi_value js_fence(napi_env env, napi_callback_info info) {
  (void)env;
  (void)info;
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  return NULL;
}

NAPI_MODULE_INIT() {
  const napi_property_descriptor props[] = {
      {"map", NULL, js_map, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"fence", NULL, js_fence, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"reduce", NULL, js_reduce, NULL, NULL, NULL, napi_default_jsproperty, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
