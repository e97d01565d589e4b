{
  # Built by `npm install` (node-gyp rebuild) against the Node headers already on the machine; the addon
  # uses only the C N-API so one build works across Node versions with the same NAPI_VERSION.
  "targets": [
    {
      "target_name": "targetd_native",
      "sources": ["native/targetd_native.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE", "_FILE_OFFSET_BITS=64"],
      "cflags_c": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
