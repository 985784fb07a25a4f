{
  "targets": [
    {
      "target_name": "easyroutine",
      "sources": [
        "<!@(node -e \"console.log(require('fs').readdirSync('cpp',{recursive:true}).filter(f=>f.endsWith('.cc')&&!f.startsWith('preload')).map(f=>'cpp/'+f).sort().join(' '))\")"
      ],
      "include_dirs": [
        "cpp",
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node scripts/libtorch.js --gyp include_dirs)"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "<!@(node scripts/libtorch.js --gyp defines)"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["<!@(node scripts/libtorch.js --gyp cxxflags)", "-fexceptions", "-frtti", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "libraries": ["<!@(node scripts/libtorch.js --gyp libraries)"]
    },
    {
      "target_name": "easyroutine_preload",
      "sources": ["cpp/preload/preload.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-fexceptions", "-fvisibility=hidden"],
      "libraries": ["-ldl"]
    }
  ]
}
