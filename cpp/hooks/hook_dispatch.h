// The hooks of one forward call (a HookBindings, shared with other forwards, bound to a graph), and
// the TapSink that runs them at the taps.
//
// At a hook point, hooks run in the order given (the TS layer puts the model's persistent hooks
// first, in the order they were added, then the call's own); each sees the value the previous one
// left, and a returned tensor replaces it (shape, dtype and device must match). A native kernel runs
// on the forward's thread. A JS closure runs on the JS thread: inline when the forward runs there,
// otherwise through a thread-safe function while the forward's thread waits, with that thread's torch
// thread-local state (grad mode, ...) applied around the call. The first hook that fails stops the
// forward, and the forward reports that failure: a throwing closure's own exception.
#pragma once

#include <napi.h>
#include <torch/script.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "graph/hooked_graph.h"
#include "graph/tap_op.h"
#include "hooks/hook_kernel.h"
#include "hooks/hook_set.h"
#include "js/abort_token.h"
#include "js/errors.h"
#include "js/threadsafe_function.h"

namespace easyroutine {

class ForwardHooks : public TapSink {
 public:
  // The hooks of `set`, bound to `bound` (HookSetHandle::Bound); `caller` names the API in errors.
  ForwardHooks(std::shared_ptr<HookBindings> set, std::shared_ptr<const BoundHooks> bound, const std::string& caller);
  // On the JS thread (it releases JS references), unless Abandon() was called.
  ~ForwardHooks() override;
  ForwardHooks(const ForwardHooks&) = delete;
  ForwardHooks& operator=(const ForwardHooks&) = delete;

  const HookedGraph& graph() const { return *bound_->graph; }

  // JS closures run inline: the forward runs on the JS thread.
  void RunJsInline(Napi::Env env);
  // JS closures run through `calls` (whose call_js is CallJs); waiting stops when `stopping` is set
  // or the process exits. `abort` is checked before each hook.
  void RunJsThrough(ThreadSafeFunction* calls, std::shared_ptr<std::atomic<bool>> stopping, AbortFlag abort);

  at::Tensor OnTap(int64_t site, const at::Tensor& value) override;

  // Whether a hook stopped the forward, and with what (JS thread for Failure()).
  bool failed() const { return failed_; }
  ErrorKind failureKind() const { return failureKind_; }
  const std::string& failureMessage() const { return failureMessage_; }
  Napi::Error Failure(Napi::Env env) const;
  // Drops JS references without touching JS: for cleanup off the JS thread when the process exits.
  void Abandon();

  static void CallJs(napi_env env, napi_value, void* context, void* data);
  // From the forward's thread once the graph returned: the JS thread stops waiting for calls.
  void ForwardFinished();

 private:
  struct JsCall;
  // How long either thread spins for the other before sleeping (the forward's thread for a result,
  // the JS thread for the forward's next call).
  static constexpr std::chrono::microseconds kSpin{50};
  // Where the JS thread is, for handing it a call directly.
  enum : int { kJsAway = 0, kJsWaiting = 1, kCallPosted = 2 };

  static bool Serve(napi_env env, JsCall& call);

  at::Tensor CallClosure(Napi::Env env, const HookBinding& binding, const at::Tensor& value);
  at::Tensor CallClosureRemotely(size_t binding, const at::Tensor& value);
  [[noreturn]] void Fail(ErrorKind kind, const std::string& message);

  std::shared_ptr<HookBindings> set_;
  std::shared_ptr<const BoundHooks> bound_;
  std::string caller_;
  std::optional<BorrowedTensor> borrowed_;  // taken from the set's spare on the first closure call

  napi_env inlineEnv_ = nullptr;
  ThreadSafeFunction* calls_ = nullptr;
  std::atomic<int> jsState_{kJsAway};
  std::shared_ptr<JsCall> posted_;  // written by the forward's thread, read by the JS thread after kCallPosted
  std::atomic<bool> forwardDone_{false};
  std::shared_ptr<std::atomic<bool>> stopping_;
  AbortFlag abort_;

  bool failed_ = false;
  ErrorKind failureKind_ = ErrorKind::Forward;
  std::string failureMessage_;
  // What the closure threw, held as node-addon-api caught it: a thrown string or number sits inside a
  // wrapper object (a reference cannot hold a primitive before Node 22), which Value() unwraps.
  Napi::Error jsError_;
};

// Thrown through the interpreter when a hook fails; the forward then reports ForwardHooks' failure.
class HookFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace easyroutine
