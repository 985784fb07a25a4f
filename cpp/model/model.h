// A loaded TorchScript module. Forward runs either on the calling (JS) thread or, for async calls,
// on the model's own inference thread; results come back through a thread-safe function.
#pragma once

#include <napi.h>
#include <torch/script.h>

#include <map>
#include <memory>
#include <string>

#include "graph/hooked_graph.h"
#include "hooks/hook_dispatch.h"
#include "js/threadsafe_function.h"
#include "runtime/inference_thread.h"

namespace easyroutine {

class ModelHandle : public Napi::ObjectWrap<ModelHandle> {
 public:
  static Napi::Function Define(Napi::Env env);
  // load(path, device, training, verifyChecksums): a new model handle; typed errors for missing,
  // unreadable or damaged files.
  static Napi::Value Load(const Napi::CallbackInfo& info);

  explicit ModelHandle(const Napi::CallbackInfo& info);
  ~ModelHandle() override;

 private:
  struct AsyncForward;
  static void CompleteForward(napi_env env, napi_value, void* context, void* data);
  static void OnEnvTeardown(void* self);

  torch::jit::Module& Live(const char* method);
  void StartThread(Napi::Env env);
  // The hooks of options.hookSet bound to their hooked graph, or nullptr when there are none.
  std::unique_ptr<ForwardHooks> HooksFrom(Napi::Env env, const Napi::Value& options, const char* caller);
  void ShutDown();

  Napi::Value Modules(const Napi::CallbackInfo& info);
  Napi::Value Parameters(const Napi::CallbackInfo& info);
  Napi::Value Signature(const Napi::CallbackInfo& info);
  Napi::Value ExtraFiles(const Napi::CallbackInfo& info);
  Napi::Value HookPoints(const Napi::CallbackInfo& info);
  Napi::Value HookPointShapes(const Napi::CallbackInfo& info);
  Napi::Value HookedGraphInfo(const Napi::CallbackInfo& info);
  Napi::Value ValidateHookPoints(const Napi::CallbackInfo& info);
  Napi::Value HookSet(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value ForwardAsync(const Napi::CallbackInfo& info);
  Napi::Value SetTraining(const Napi::CallbackInfo& info);
  Napi::Value IsTraining(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value IsDisposed(const Napi::CallbackInfo& info);

  std::shared_ptr<torch::jit::Module> module_;
  at::Device device_{at::kCPU};
  std::string path_;
  std::map<std::string, std::string> extraFiles_;
  bool disposed_ = false;

  std::unique_ptr<InferenceThread> thread_;
  std::unique_ptr<ThreadSafeFunction> completions_;  // delivers results to the JS thread
  std::unique_ptr<ThreadSafeFunction> hookCalls_;    // runs JS hooks of async forwards on the JS thread
  // Set at teardown: forwards waiting on a JS hook give up instead of blocking the join.
  std::shared_ptr<std::atomic<bool>> stopping_ = std::make_shared<std::atomic<bool>>(false);
  HookedGraphCache hookedGraphs_;
  uint64_t graphGeneration_ = 0;  // counts rebuilds of hookedGraphs_: hook sets re-bind when it moves
  napi_env env_ = nullptr;
  int inFlight_ = 0;
  bool cleanupRegistered_ = false;
};

}  // namespace easyroutine
