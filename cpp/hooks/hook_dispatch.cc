#include "hooks/hook_dispatch.h"

#include <ATen/ThreadLocalState.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "js/js_values.h"
#include "runtime/inference_thread.h"
#include "tensor/dtype.h"
#include "tensor/tensor_handle.h"

namespace easyroutine {

namespace {

std::string Describe(const at::Tensor& t) {
  std::string out = DTypeName(t.scalar_type()) + " " + ShapeString(t.sizes());
  if (!t.device().is_cpu()) out += " on " + t.device().str();
  return out;
}

}  // namespace

// One closure call requested from the forward's thread. Shared by that thread and the JS thread: the
// forward may stop waiting (process exit, environment teardown) while the call is still queued.
struct ForwardHooks::JsCall {
  ForwardHooks* hooks;
  size_t binding;
  at::Tensor value;
  at::ThreadLocalState state;  // captured on the forward's thread

  std::mutex mutex;
  std::condition_variable finished;
  bool done = false;
  std::atomic<bool> doneFlag{false};  // `done`, readable without the lock while spinning
  bool failed = false;
  bool abandoned = false;
  at::Tensor replacement;
};

ForwardHooks::ForwardHooks(Napi::Env env, const Napi::Array& specs, const std::string& caller, bool crossThread)
    : caller_(caller), crossThread_(crossThread) {
  for (uint32_t i = 0; i < specs.Length(); ++i) {
    Napi::Value item = specs.Get(i);
    if (!item.IsObject()) throw TypedError(ErrorKind::InvalidArgument, caller + ": each hook must be an object {point, fn | kernel}");
    Napi::Object spec = item.As<Napi::Object>();
    Napi::Value point = spec.Get("point");
    if (!point.IsString()) throw TypedError(ErrorKind::InvalidArgument, caller + ": a hook's point must be a string");
    Binding binding;
    binding.point = point.As<Napi::String>().Utf8Value();
    Napi::Value fn = spec.Get("fn");
    Napi::Value kernel = spec.Get("kernel");
    if (fn.IsFunction()) {
      Napi::Value context = spec.Get("context");
      if (crossThread) {
        binding.function = Napi::Persistent(fn.As<Napi::Function>());
        if (context.IsObject()) binding.context = Napi::Persistent(context.As<Napi::Object>());
      } else {
        binding.functionValue = fn;
        binding.contextValue = context;
      }
      hasJs_ = true;
    } else if (auto native = KernelHandle::From(env, kernel)) {
      binding.kernel = std::move(native);
    } else {
      throw TypedError(ErrorKind::InvalidArgument, caller + ": the hook on '" + binding.point + "' is neither a function nor a native hook");
    }
    points_.insert(binding.point);
    bindings_.push_back(std::move(binding));
  }
}

ForwardHooks::~ForwardHooks() = default;

void ForwardHooks::Bind(std::shared_ptr<const HookedGraph> graph) {
  graph_ = std::move(graph);
  bySite_.assign(graph_->sites.size(), {});
  for (size_t i = 0; i < bindings_.size(); ++i) bySite_.at(graph_->siteOf.at(bindings_[i].point)).push_back(i);
}

void ForwardHooks::RunJsInline(Napi::Env env) { inlineEnv_ = env; }

void ForwardHooks::RunJsThrough(ThreadSafeFunction* calls, std::shared_ptr<std::atomic<bool>> stopping, AbortFlag abort) {
  calls_ = calls;
  stopping_ = std::move(stopping);
  abort_ = std::move(abort);
}

void ForwardHooks::Fail(ErrorKind kind, const std::string& message) {
  if (!failed_) {
    failed_ = true;
    failureKind_ = kind;
    failureMessage_ = message;
  }
  throw HookFailure(message);
}

at::Tensor ForwardHooks::OnTap(int64_t site, const at::Tensor& value) {
  if (site < 0 || static_cast<size_t>(site) >= bySite_.size()) return value;
  const HookPoint& point = graph_->sites[site];
  at::Tensor current = value;
  for (size_t index : bySite_[site]) {
    if (abort_ && abort_->load()) Fail(ErrorKind::Aborted, caller_ + ": aborted");
    Binding& binding = bindings_[index];
    at::Tensor replacement;
    if (binding.kernel) {
      try {
        replacement = binding.kernel->Run(current, point);
      } catch (const TypedError& e) {
        Fail(e.kind(), "native hook on '" + point.name + "': " + e.what());
      } catch (const c10::Error& e) {
        Fail(ErrorKind::Torch, "native hook on '" + point.name + "': " + RootCause(e));
      }
    } else if (inlineEnv_) {
      replacement = CallClosure(Napi::Env(inlineEnv_), binding, current);
    } else {
      replacement = CallClosureRemotely(index, current);
    }
    if (!replacement.defined()) continue;
    if (replacement.sizes() != current.sizes()) {
      Fail(ErrorKind::Shape, "hook on '" + point.name + "' returned " + Describe(replacement) + "; the value is " + Describe(current));
    }
    if (replacement.scalar_type() != current.scalar_type()) {
      Fail(ErrorKind::DType, "hook on '" + point.name + "' returned " + Describe(replacement) + "; the value is " + Describe(current));
    }
    if (replacement.device() != current.device()) {
      Fail(ErrorKind::Device, "hook on '" + point.name + "' returned " + Describe(replacement) + "; the value is " + Describe(current));
    }
    current = replacement;
  }
  return current;
}

at::Tensor ForwardHooks::CallClosure(Napi::Env env, Binding& binding, const at::Tensor& value) {
  Napi::HandleScope scope(env);
  // The closure borrows the value: the handle is released when the closure returns (the TS wrapper
  // is revoked too), so activations are not pinned until some later GC, and one handle serves every
  // call of the forward (creating one costs microseconds). A closure that wants the value clones it.
  if (borrowed_.IsEmpty()) {
    borrowed_ = Napi::Persistent(TensorHandle::WrapBorrowed(env, value));
  } else {
    TensorHandle::Rearm(borrowed_.Value(), value);
  }
  Napi::Object handle = borrowed_.Value();
  struct Expiry {
    Napi::Object handle;
    const std::string& point;
    ~Expiry() {
      try {
        TensorHandle::Expire(handle, "the value at hook point '" + point + "' is only valid during the hook; clone() it to keep it");
      } catch (...) {
      }
    }
  } expiry{handle, binding.point};
  Napi::Value result;
  try {
    if (crossThread_) {
      Napi::Value context = binding.context.IsEmpty() ? env.Undefined() : binding.context.Value();
      result = binding.function.Value().Call({handle, context});
    } else {
      result = Napi::Function(env, binding.functionValue).Call({handle, Napi::Value(env, binding.contextValue)});
    }
  } catch (const Napi::Error& e) {
    jsError_ = Napi::Error(env, e.Value());  // not a copy: copying unwraps a thrown primitive, which no reference holds
    Fail(ErrorKind::Forward, "hook on '" + binding.point + "' threw");
  }
  if (result.IsUndefined() || result.IsNull()) return {};
  if (!TensorHandle::Is(env, result)) {
    Fail(ErrorKind::InvalidArgument, "hook on '" + binding.point + "' returned a " + std::string(result.IsPromise() ? "Promise" : "non-tensor value") +
                                         "; a hook returns a Tensor to replace the value, or nothing (hooks are synchronous)");
  }
  try {
    return TensorHandle::From(env, result, "hook result");
  } catch (const TypedError& e) {
    // a disposed or expired handle: its own kind, not a failure of the forward's graph
    Fail(e.kind(), "hook on '" + binding.point + "' returned a tensor it cannot use: " + e.what());
  }
}

at::Tensor ForwardHooks::CallClosureRemotely(size_t binding, const at::Tensor& value) {
  auto call = std::make_shared<JsCall>();
  call->hooks = this;
  call->binding = binding;
  call->value = value;
  auto* data = new std::shared_ptr<JsCall>(call);
  if (calls_->Call(data, napi_tsfn_blocking) != napi_ok) {
    delete data;
    Fail(ErrorKind::Disposed, caller_ + ": the JS environment is shutting down; hook on '" + bindings_[binding].point + "' not run");
  }
  // Most closures return within microseconds: spin briefly before sleeping, which saves a thread
  // wake-up per call.
  auto spinUntil = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
  while (!call->doneFlag.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < spinUntil) std::this_thread::yield();
  std::unique_lock<std::mutex> lock(call->mutex);
  while (!call->done) {
    if (InferenceThread::ProcessExiting() || (stopping_ && stopping_->load())) {
      call->abandoned = true;
      lock.unlock();
      Fail(ErrorKind::Disposed, caller_ + ": the JS environment is shutting down; hook on '" + bindings_[binding].point + "' not run");
    }
    call->finished.wait_for(lock, std::chrono::milliseconds(10));
  }
  if (call->failed) throw HookFailure(failureMessage_);
  return call->replacement;
}

void ForwardHooks::CallJs(napi_env rawEnv, napi_value, void*, void* data) {
  std::unique_ptr<std::shared_ptr<JsCall>> holder(static_cast<std::shared_ptr<JsCall>*>(data));
  JsCall& call = **holder;
  if (!rawEnv) {
    // The environment is being torn down. Under the lock, so that the forward's thread cannot give
    // up (and free the hooks) meanwhile.
    std::lock_guard<std::mutex> lock(call.mutex);
    if (call.abandoned) return;
    try {
      call.hooks->Fail(ErrorKind::Disposed, call.hooks->caller_ + ": the JS environment was torn down during the forward");
    } catch (const HookFailure&) {
    }
    call.failed = true;
    call.done = true;
    call.doneFlag.store(true, std::memory_order_release);
    call.finished.notify_all();
    return;
  }
  {
    std::lock_guard<std::mutex> lock(call.mutex);
    if (call.abandoned) return;
  }
  // Not under the lock: the closure may call process.exit(), and the exit handlers then wait for the
  // forward's thread, which must be able to give up.
  ForwardHooks& hooks = *call.hooks;
  at::Tensor replacement;
  bool failed = false;
  try {
    at::ThreadLocalStateGuard guard(call.state);
    replacement = hooks.CallClosure(Napi::Env(rawEnv), hooks.bindings_[call.binding], call.value);
  } catch (const HookFailure&) {
    failed = true;
  } catch (...) {
    try {
      hooks.Fail(ErrorKind::Forward, "hook on '" + hooks.bindings_[call.binding].point + "' failed in the JS bridge");
    } catch (const HookFailure&) {
    }
    failed = true;
  }
  std::lock_guard<std::mutex> lock(call.mutex);
  call.replacement = std::move(replacement);
  call.failed = failed;
  call.done = true;
  call.doneFlag.store(true, std::memory_order_release);
  call.finished.notify_all();
}

Napi::Error ForwardHooks::Failure(Napi::Env env) const {
  if (!jsError_.IsEmpty()) return jsError_;
  return MakeError(env, failureKind_, failureMessage_);
}

void ForwardHooks::Abandon() {
  for (Binding& binding : bindings_) {
    binding.function.SuppressDestruct();
    binding.context.SuppressDestruct();
  }
  borrowed_.SuppressDestruct();
  jsError_.SuppressDestruct();
}

}  // namespace easyroutine
