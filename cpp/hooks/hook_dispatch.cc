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

ForwardHooks::ForwardHooks(std::shared_ptr<HookBindings> set, std::shared_ptr<const BoundHooks> bound, const std::string& caller)
    : set_(std::move(set)), bound_(std::move(bound)), caller_(caller) {}

ForwardHooks::~ForwardHooks() {
  // the handle serves the next forward of the same set (a fresh one costs microseconds)
  if (borrowed_) set_->ReturnSpare(std::move(*borrowed_));
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
  const auto& bySite = bound_->bySite;
  if (site < 0 || static_cast<size_t>(site) >= bySite.size()) return value;
  const HookPoint& point = bound_->graph->sites[site];
  at::Tensor current = value;
  for (size_t index : bySite[site]) {
    if (abort_ && abort_->load()) Fail(ErrorKind::Aborted, caller_ + ": aborted");
    const HookBinding& binding = set_->bindings()[index];
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

at::Tensor ForwardHooks::CallClosure(Napi::Env env, const HookBinding& binding, const at::Tensor& value) {
  Napi::HandleScope scope(env);
  // The closure borrows the value: the handle is released when the closure returns (the TS wrapper
  // is revoked too), so activations are not pinned until some later GC, and one handle serves every
  // call of the forward. A closure that wants the value clones it.
  if (!borrowed_) borrowed_ = set_->TakeSpare();
  if (!borrowed_) {
    Napi::Object handle = TensorHandle::WrapBorrowed(env, value);
    borrowed_ = BorrowedTensor{Napi::Persistent(handle), TensorHandle::Unwrap(handle)};
  } else {
    borrowed_->tensor->Rearm(value);
  }
  Napi::Object handle = borrowed_->handle.Value();
  struct Expiry {
    TensorHandle* tensor;
    const std::shared_ptr<const std::string>& why;
    ~Expiry() { tensor->Expire(why); }
  } expiry{borrowed_->tensor, binding.expiry};
  Napi::Value result;
  try {
    Napi::Value context = binding.context.IsEmpty() ? env.Undefined() : binding.context.Value();
    result = binding.function.Value().Call({handle, context});
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
  // Handed straight to the JS thread when it is waiting for this forward's next call; else through
  // the thread-safe function, which wakes the event loop.
  posted_ = call;
  int waiting = kJsWaiting;
  if (!jsState_.compare_exchange_strong(waiting, kCallPosted, std::memory_order_acq_rel)) {
    posted_.reset();
    auto* data = new std::shared_ptr<JsCall>(call);
    if (calls_->Call(data, napi_tsfn_blocking) != napi_ok) {
      delete data;
      Fail(ErrorKind::Disposed, caller_ + ": the JS environment is shutting down; hook on '" + set_->bindings()[binding].point + "' not run");
    }
  }
  // Most closures return within microseconds: spin briefly before sleeping, which saves a thread
  // wake-up per call.
  auto spinUntil = std::chrono::steady_clock::now() + kSpin;
  while (!call->doneFlag.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < spinUntil) std::this_thread::yield();
  std::unique_lock<std::mutex> lock(call->mutex);
  while (!call->done) {
    if (InferenceThread::ProcessExiting() || (stopping_ && stopping_->load())) {
      call->abandoned = true;
      lock.unlock();
      Fail(ErrorKind::Disposed, caller_ + ": the JS environment is shutting down; hook on '" + set_->bindings()[binding].point + "' not run");
    }
    call->finished.wait_for(lock, std::chrono::milliseconds(10));
  }
  if (call->failed) throw HookFailure(failureMessage_);
  return call->replacement;
}

void ForwardHooks::ForwardFinished() { forwardDone_.store(true, std::memory_order_release); }

void ForwardHooks::CallJs(napi_env rawEnv, napi_value, void*, void* data) {
  std::unique_ptr<std::shared_ptr<JsCall>> holder(static_cast<std::shared_ptr<JsCall>*>(data));
  std::shared_ptr<JsCall> call = std::move(*holder);
  if (!rawEnv) {
    // The environment is being torn down. Under the lock, so that the forward's thread cannot give
    // up (and free the hooks) meanwhile.
    std::lock_guard<std::mutex> lock(call->mutex);
    if (call->abandoned) return;
    try {
      call->hooks->Fail(ErrorKind::Disposed, call->hooks->caller_ + ": the JS environment was torn down during the forward");
    } catch (const HookFailure&) {
    }
    call->failed = true;
    call->done = true;
    call->doneFlag.store(true, std::memory_order_release);
    call->finished.notify_all();
    return;
  }
  ForwardHooks& hooks = *call->hooks;
  if (!Serve(rawEnv, *call)) return;
  // The forward usually reaches its next hook within microseconds: wait for it here, and run it at
  // once, instead of going back to the event loop, which the next call would have to wake (tens of
  // microseconds on a VM). Waiting stops when the forward ends, or after kSpin without a call.
  for (;;) {
    hooks.jsState_.store(kJsWaiting, std::memory_order_seq_cst);
    auto until = std::chrono::steady_clock::now() + kSpin;
    bool posted = false;
    while (!hooks.forwardDone_.load(std::memory_order_acquire)) {
      if (hooks.jsState_.load(std::memory_order_acquire) == kCallPosted) {
        posted = true;
        break;
      }
      if (std::chrono::steady_clock::now() >= until) break;
      std::this_thread::yield();
    }
    if (!posted) {
      int waiting = kJsWaiting;
      if (hooks.jsState_.compare_exchange_strong(waiting, kJsAway, std::memory_order_acq_rel)) return;
      // a call was posted as the wait ended
    }
    std::shared_ptr<JsCall> next = std::move(hooks.posted_);
    hooks.jsState_.store(kJsAway, std::memory_order_release);
    if (!Serve(rawEnv, *next)) return;
  }
}

// Runs one closure call on the JS thread and tells the forward's thread; false when the forward had
// given up on it.
bool ForwardHooks::Serve(napi_env rawEnv, JsCall& call) {
  {
    std::lock_guard<std::mutex> lock(call.mutex);
    if (call.abandoned) return false;
  }
  // Not under the lock: the closure may call process.exit(), and the exit handlers then wait for the
  // forward's thread, which must be able to give up.
  ForwardHooks& hooks = *call.hooks;
  at::Tensor replacement;
  bool failed = false;
  try {
    at::ThreadLocalStateGuard guard(call.state);
    replacement = hooks.CallClosure(Napi::Env(rawEnv), hooks.set_->bindings()[call.binding], call.value);
  } catch (const HookFailure&) {
    failed = true;
  } catch (...) {
    try {
      hooks.Fail(ErrorKind::Forward, "hook on '" + hooks.set_->bindings()[call.binding].point + "' failed in the JS bridge");
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
  return !failed;
}

Napi::Error ForwardHooks::Failure(Napi::Env env) const {
  if (!jsError_.IsEmpty()) return jsError_;
  return MakeError(env, failureKind_, failureMessage_);
}

void ForwardHooks::Abandon() {
  set_->Abandon();
  if (borrowed_) borrowed_->handle.SuppressDestruct();
  jsError_.SuppressDestruct();
}

}  // namespace easyroutine
