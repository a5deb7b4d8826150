{
  "targets": [{
    "target_name": "tslcc_native",
    "sources": ["src/addon.cc", "src/object.cc", "src/buffers.cc", "src/btf.cc", "src/sys.cc"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions"],
    "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wno-missing-field-initializers"],
    "libraries": ["-lbpf", "-lelf", "-lz"]
  }]
}
