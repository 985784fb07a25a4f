// Tensors over JS memory without a copy. The tensor's storage holds a napi_ref to the TypedArray, so
// the JS memory lives as long as the storage. Torch may free a storage on any thread, but a napi_ref
// may only be deleted on the JS thread: releases from other threads are queued and drained there
// through an unref'd thread-safe function (it never keeps the process alive).
#pragma once

#include <napi.h>
#include <torch/script.h>

#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "js/threadsafe_function.h"

namespace easyroutine {

class JsMemoryReleaser : public std::enable_shared_from_this<JsMemoryReleaser> {
 public:
  static std::shared_ptr<JsMemoryReleaser> Create(Napi::Env env);
  ~JsMemoryReleaser();

  // A CPU tensor of `sizes` and `dtype` over `array`'s bytes (which the caller checked to match).
  at::Tensor Wrap(Napi::TypedArray array, at::IntArrayRef sizes, at::ScalarType dtype);

  // The TypedArray whose memory backs `storage`, or nullptr when torch owns that memory.
  static napi_ref OwnerOf(const c10::Storage& storage);

  // The environment is going away: later releases must not touch it.
  void Close();

 private:
  explicit JsMemoryReleaser(Napi::Env env) : env_(env), jsThread_(std::this_thread::get_id()) {}
  struct Context;
  static void Delete(void* context);
  static void Drain(napi_env env, napi_value, void* context, void*);
  void Release(napi_ref ref);

  napi_env env_;
  std::thread::id jsThread_;
  std::unique_ptr<ThreadSafeFunction> drainer_;
  std::mutex mutex_;
  bool closed_ = false;
  std::vector<napi_ref> pending_;
};

}  // namespace easyroutine
