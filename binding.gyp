{
  "targets": [
    {
      "target_name": "janus4o_native",
      "sources": ["native/addon.c", "native/elementwise.c", "native/gemm.c", "native/im2col.c", "native/kernels.c", "native/pool.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_c": ["-std=gnu11", "-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lpthread", "-lm"]
    },
    {
      "target_name": "janus4o_shm",
      "sources": ["native/shm_map.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_c": ["-std=gnu11", "-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
