// A set of hooks and taps for one model, read from the JS specs once and reused by every forward
// that asks for the same hooks (the TS Model keeps the last few): the points, the JS references, the
// kernels and the hooked graph they need. A forward given one does no per-hook Node-API or string
// work before it runs, which on a small model was most of what a closure hook cost.
//
// Guarantees:
// - The bindings never change after construction: forwards on several threads read them at once.
// - JS references are created and released on the JS thread: the last owner of a HookBindings is a
//   JS finalizer or a ForwardHooks, whose destructor runs there (off it, at process exit, the
//   references are leaked through Abandon(), never touched).
// - A set belongs to the model that made it; its graph is re-fetched when the model's graphs were
//   rebuilt (train()/eval() fold the training flag into them).
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "graph/hooked_graph.h"
#include "hooks/hook_kernel.h"

namespace easyroutine {

class TensorHandle;

// One hook at one point: a native kernel or a JS closure (with the context object it is called with).
struct HookBinding {
  std::string point;
  std::shared_ptr<HookKernel> kernel;
  Napi::FunctionReference function;
  Napi::ObjectReference context;
  // What a closure's borrowed value says once the closure returned; made once, shared by every call.
  std::shared_ptr<const std::string> expiry;
};

// The tensor handle lent to closures, re-armed for each call (creating one costs microseconds).
struct BorrowedTensor {
  Napi::ObjectReference handle;
  TensorHandle* tensor = nullptr;
};

class HookBindings {
 public:
  // From [{point, fn | kernel, context}, ...] and the names of extra taps (points tapped with no
  // hook); `caller` names the API in errors.
  HookBindings(Napi::Env env, const Napi::Array& specs, const std::vector<std::string>& taps, const std::string& caller);
  HookBindings(const HookBindings&) = delete;
  HookBindings& operator=(const HookBindings&) = delete;

  const std::vector<HookBinding>& bindings() const { return bindings_; }
  // Every point the graph must tap: the hooks' and the extra taps.
  const std::set<std::string>& points() const { return points_; }

  // The spare borrowed handle, when a finished forward left one (JS thread only).
  std::optional<BorrowedTensor> TakeSpare();
  void ReturnSpare(BorrowedTensor borrowed);
  // Off the JS thread at process exit: leak every JS reference instead of releasing it.
  void Abandon();

 private:
  std::vector<HookBinding> bindings_;
  std::set<std::string> points_;
  std::optional<BorrowedTensor> spare_;
};

// The hooks resolved against one hooked graph: for each tap site, the bindings that run there.
struct BoundHooks {
  std::shared_ptr<const HookedGraph> graph;
  std::vector<std::vector<size_t>> bySite;
};

// The JS NativeHookSet: a HookBindings, the model it belongs to, and its bound graph.
class HookSetHandle : public Napi::ObjectWrap<HookSetHandle> {
 public:
  static Napi::Function Define(Napi::Env env);
  static Napi::Object New(Napi::Env env, std::shared_ptr<HookBindings> bindings, const void* owner);
  // The set behind `value`, or nullptr when it is not one.
  static HookSetHandle* From(Napi::Env env, Napi::Value value);

  explicit HookSetHandle(const Napi::CallbackInfo& info);

  const std::shared_ptr<HookBindings>& bindings() const { return bindings_; }
  const void* owner() const { return owner_; }
  // The bound graph for the model's graph generation `generation`, resolved through `cache` when the
  // generation changed.
  std::shared_ptr<const BoundHooks> Bound(HookedGraphCache& cache, const torch::jit::Module& module, uint64_t generation);

 private:
  std::shared_ptr<HookBindings> bindings_;
  const void* owner_ = nullptr;
  std::shared_ptr<const BoundHooks> bound_;
  uint64_t generation_ = 0;
};

}  // namespace easyroutine
