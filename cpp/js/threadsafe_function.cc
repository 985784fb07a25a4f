#include "js/threadsafe_function.h"

namespace easyroutine {

ThreadSafeFunction::ThreadSafeFunction(Napi::Env env, const char* name, void* context, napi_threadsafe_function_call_js callJs) {
  napi_value resourceName;
  NAPI_THROW_IF_FAILED_VOID(env, napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resourceName));
  auto* owner = new std::weak_ptr<State>(state_);
  napi_finalize forget = [](napi_env, void* data, void*) {
    std::unique_ptr<std::weak_ptr<State>> weak(static_cast<std::weak_ptr<State>*>(data));
    if (auto state = weak->lock()) {
      std::lock_guard<std::mutex> lock(state->mutex);
      state->function = nullptr;
    }
  };
  napi_threadsafe_function function;
  napi_status status =
      napi_create_threadsafe_function(env, nullptr, nullptr, resourceName, 0, 1, owner, forget, context, callJs, &function);
  if (status != napi_ok) delete owner;
  NAPI_THROW_IF_FAILED_VOID(env, status);
  napi_unref_threadsafe_function(env, function);
  state_->function = function;
}

ThreadSafeFunction::~ThreadSafeFunction() { Release(); }

napi_status ThreadSafeFunction::Call(void* data, napi_threadsafe_function_call_mode mode) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (!state_->function) return napi_closing;
  return napi_call_threadsafe_function(state_->function, data, mode);
}

void ThreadSafeFunction::Ref(napi_env env) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (state_->function) napi_ref_threadsafe_function(env, state_->function);
}

void ThreadSafeFunction::Unref(napi_env env) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (state_->function) napi_unref_threadsafe_function(env, state_->function);
}

void ThreadSafeFunction::Release() {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (state_->function) napi_release_threadsafe_function(state_->function, napi_tsfn_abort);
  state_->function = nullptr;
}

}  // namespace easyroutine
