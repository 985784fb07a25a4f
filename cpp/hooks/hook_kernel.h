// Native hook kernels: C++ code that runs at a hook point with no JS involved per call, and the
// registry that creates them by name. Kernels run on whichever thread runs the forward (the JS
// thread or the model's inference thread), so each guards its own state; the registry is
// thread-safe. Kernel files register themselves with EASYROUTINE_REGISTER_KERNEL.
#pragma once

#include <napi.h>
#include <torch/script.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "graph/hook_points.h"

namespace easyroutine {

// Where a kernel's results go for NativeHook.results(): a new JS handle per tensor.
class ResultWriter {
 public:
  explicit ResultWriter(Napi::Env env) : env_(env) {}
  Napi::Env Env() const { return env_; }
  Napi::Value Tensor(at::Tensor tensor);

 private:
  Napi::Env env_;
};

// A token-wise value as [batch, seq, ...]: a value whose tokens are flattened to [batch * seq, d]
// (OPT's MLP works on it so) is viewed with `batch` rows; any other value is returned as it is.
at::Tensor TokensView(const at::Tensor& value, int64_t batch);

class HookKernel {
 public:
  virtual ~HookKernel() = default;
  // Returns the replacement for `value`, or an undefined tensor to keep it (in-place edits are kept).
  virtual at::Tensor Run(const at::Tensor& value, const HookPoint& point) = 0;
  // What the kernel collected, for JS (on the JS thread), each tensor through `out`. Undefined by default.
  virtual Napi::Value Results(ResultWriter& out);
  // Forgets what was collected.
  virtual void Reset() {}
  // Takes new per-call options (e.g. the positions of the next batch) while keeping what it collected.
  virtual void Configure(Napi::Env env, const Napi::Object& options);
};

// A kernel whose results are tensors in a fixed order (the order of Results(): per-head results in
// head order, records in key order), which a KernelGroup takes into a pack with no JS value made.
class CollectingKernel {
 public:
  virtual ~CollectingKernel() = default;
  // Appends the collected tensors to `out` (nothing before a forward reached the kernel's point).
  virtual void Collect(std::vector<at::Tensor>& out) = 0;
};

// Creates a kernel from the options object JS passed (on the JS thread); throws TypedError on bad options.
using KernelFactory = std::function<std::shared_ptr<HookKernel>(Napi::Env env, const Napi::Object& options)>;

class KernelRegistry {
 public:
  static KernelRegistry& Instance();
  void Register(const std::string& name, const std::string& description, KernelFactory factory);
  // Throws an InvalidArgument TypedError naming the registered kernels when `name` is unknown.
  std::shared_ptr<HookKernel> Create(Napi::Env env, const std::string& name, const Napi::Object& options) const;
  // name -> description
  std::map<std::string, std::string> List() const;

 private:
  struct Entry {
    std::string description;
    KernelFactory factory;
  };
  mutable std::mutex mutex_;
  std::map<std::string, Entry> kernels_;
};

struct KernelRegistrar {
  KernelRegistrar(const std::string& name, const std::string& description, KernelFactory factory) {
    KernelRegistry::Instance().Register(name, description, std::move(factory));
  }
};

#define EASYROUTINE_REGISTER_KERNEL(id, name, description, factory) \
  static const ::easyroutine::KernelRegistrar kKernelRegistrar_##id(name, description, factory)

// The JS handle of a kernel instance: `createKernel(name, options)` in the binding.
class KernelHandle : public Napi::ObjectWrap<KernelHandle> {
 public:
  static Napi::Function Define(Napi::Env env);
  static Napi::Value Create(const Napi::CallbackInfo& info);
  static Napi::Value Names(const Napi::CallbackInfo& info);
  // The kernel behind `value`, or nullptr when it is not a kernel handle.
  static std::shared_ptr<HookKernel> From(Napi::Env env, Napi::Value value);

  explicit KernelHandle(const Napi::CallbackInfo& info);

 private:
  Napi::Value Results(const Napi::CallbackInfo& info);
  Napi::Value Reset(const Napi::CallbackInfo& info);
  Napi::Value Configure(const Napi::CallbackInfo& info);
  Napi::Value Name(const Napi::CallbackInfo& info);

  std::shared_ptr<HookKernel> kernel_;
  std::string name_;
};

}  // namespace easyroutine
