// easyroutine_preload: a second, tiny addon with no libtorch in it, loaded before the main one. It
// loads the libtorch libraries that lib/core/addon-loader.ts found (the user's pip torch, LIBTORCH,
// or Debian's) by absolute path, globally and for good, so that the main addon's dependencies
// (libtorch_cpu.so, libc10.so, ...) resolve to them by soname: a prebuilt binary then needs no
// RUNPATH of the machine that built it. Node's process.dlopen cannot do this: it unloads a library
// that is not an addon.
#include <dlfcn.h>
#include <napi.h>

#include <string>

namespace {

// preload(paths: string[]): void; throws an Error with dlerror()'s message for the first that fails.
Napi::Value Preload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "preload(paths): paths must be an array of strings");
  Napi::Array paths = info[0].As<Napi::Array>();
  for (uint32_t i = 0; i < paths.Length(); ++i) {
    Napi::Value path = paths.Get(i);
    if (!path.IsString()) throw Napi::TypeError::New(env, "preload(paths): paths must be an array of strings");
    const std::string file = path.As<Napi::String>().Utf8Value();
    if (!dlopen(file.c_str(), RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE)) {
      const char* why = dlerror();
      throw Napi::Error::New(env, "cannot load " + file + ": " + (why ? why : "unknown error"));
    }
  }
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("preload", Napi::Function::New(env, Preload, "preload"));
  return exports;
}

}  // namespace

NODE_API_MODULE(easyroutine_preload, Init)
