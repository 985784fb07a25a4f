// A Node-API thread-safe function with no JS callback, owned by C++ code: worker threads hand data
// to `callJs`, which runs on the JS thread (with a null env when the function is being torn down,
// so the data can be freed). Node finalizes such functions itself at environment teardown, possibly
// before their owner dies; the finalizer marks this wrapper so Release() and Call() never touch a
// function that is gone.
#pragma once

#include <napi.h>

#include <memory>
#include <mutex>

namespace easyroutine {

class ThreadSafeFunction {
 public:
  // Created unref'd: it does not keep the process alive until Ref().
  ThreadSafeFunction(Napi::Env env, const char* name, void* context, napi_threadsafe_function_call_js callJs);
  ~ThreadSafeFunction();  // Release()
  ThreadSafeFunction(const ThreadSafeFunction&) = delete;
  ThreadSafeFunction& operator=(const ThreadSafeFunction&) = delete;

  // From any thread; napi_closing once the function is released or finalized.
  napi_status Call(void* data, napi_threadsafe_function_call_mode mode);
  // On the JS thread: whether pending calls keep the event loop alive.
  void Ref(napi_env env);
  void Unref(napi_env env);
  // Aborts the function; queued data reaches callJs with a null env. Idempotent.
  void Release();

 private:
  struct State {
    std::mutex mutex;
    napi_threadsafe_function function = nullptr;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace easyroutine
