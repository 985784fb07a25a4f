// The hooks bound to one forward call, and the TapSink that runs them at the taps.
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
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "graph/hooked_graph.h"
#include "graph/tap_op.h"
#include "hooks/hook_kernel.h"
#include "js/abort_token.h"
#include "js/errors.h"
#include "js/threadsafe_function.h"

namespace easyroutine {

class ForwardHooks : public TapSink {
 public:
  // From [{point, fn | kernel, context}, ...] on the JS thread; `caller` names the API in errors.
  // `crossThread`: the forward will run on another thread (closures are then held by references;
  // otherwise the spec array, an argument of the running native call, keeps them alive).
  ForwardHooks(Napi::Env env, const Napi::Array& specs, const std::string& caller, bool crossThread);
  // On the JS thread (it releases JS references), unless Abandon() was called.
  ~ForwardHooks() override;
  ForwardHooks(const ForwardHooks&) = delete;
  ForwardHooks& operator=(const ForwardHooks&) = delete;

  const std::set<std::string>& points() const { return points_; }
  bool hasJsHooks() const { return hasJs_; }
  // Resolves each hook's site in `graph`, which must tap all of points().
  void Bind(std::shared_ptr<const HookedGraph> graph);
  const HookedGraph& graph() const { return *graph_; }

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

 private:
  struct Binding {
    std::string point;
    std::shared_ptr<HookKernel> kernel;
    napi_value functionValue = nullptr;  // same-thread forwards
    napi_value contextValue = nullptr;
    Napi::FunctionReference function;  // cross-thread forwards
    Napi::ObjectReference context;
  };
  struct JsCall;

  at::Tensor CallClosure(Napi::Env env, Binding& binding, const at::Tensor& value);
  at::Tensor CallClosureRemotely(size_t binding, const at::Tensor& value);
  [[noreturn]] void Fail(ErrorKind kind, const std::string& message);

  std::string caller_;
  bool crossThread_;
  Napi::ObjectReference borrowed_;  // the tensor handle lent to closures, re-armed for each call
  std::vector<Binding> bindings_;
  std::set<std::string> points_;
  bool hasJs_ = false;
  std::shared_ptr<const HookedGraph> graph_;
  std::vector<std::vector<size_t>> bySite_;

  napi_env inlineEnv_ = nullptr;
  ThreadSafeFunction* calls_ = nullptr;
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
