// A JS handle over one at::Tensor. The handle owns a reference to the tensor (never its storage's
// resources: other tensors may share them); dispose() drops it early, GC drops it otherwise.
#pragma once

#include <napi.h>
#include <torch/script.h>

#include <memory>

#include "tensor/storage_registry.h"

namespace easyroutine {

class TensorHandle : public Napi::ObjectWrap<TensorHandle> {
 public:
  static Napi::Function Define(Napi::Env env);

  // A new JS handle holding `tensor`.
  static Napi::Object Wrap(Napi::Env env, at::Tensor tensor);
  // A handle lent to JS for the duration of a call (a hook's value): not counted as external memory,
  // since Expire() releases it when the call returns.
  static Napi::Object WrapBorrowed(Napi::Env env, at::Tensor tensor);
  // Releases the tensor of a borrowed handle: later use throws a DisposedError saying `why`.
  void Expire(std::shared_ptr<const std::string> why);
  // Makes a borrowed handle hold `tensor` again (creating handles costs microseconds: hooks reuse one).
  void Rearm(at::Tensor tensor);
  // True when `value` is a handle created by this addon in this environment.
  static bool Is(Napi::Env env, Napi::Value value);
  // The tensor behind `value`; typed errors name `what` when it is not a live handle.
  static const at::Tensor& From(Napi::Env env, Napi::Value value, const std::string& what);

  // Creation from JS memory: `share` wraps it without a copy, else it is copied.
  static Napi::Value FromTypedArray(const Napi::CallbackInfo& info);
  // cat(tensors, dim) / stack(tensors, dim): a new tensor (torch.cat / torch.stack).
  static Napi::Value Cat(const Napi::CallbackInfo& info);
  static Napi::Value Stack(const Napi::CallbackInfo& info);
  static Napi::Value Linear(const Napi::CallbackInfo& info);
  // grad(output, inputs): d output / d input for each input (torch.autograd.grad; nothing accumulates
  // into .grad, so parameters that require grad are left alone).
  static Napi::Value Grad(const Napi::CallbackInfo& info);

  explicit TensorHandle(const Napi::CallbackInfo& info);
  ~TensorHandle() override;

 private:
  const at::Tensor& Live(const char* method) const;
  void Reset();

  Napi::Value Shape(const Napi::CallbackInfo& info);
  Napi::Value Strides(const Napi::CallbackInfo& info);
  Napi::Value DType(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value Numel(const Napi::CallbackInfo& info);
  Napi::Value IsContiguous(const Napi::CallbackInfo& info);
  Napi::Value RequiresGrad(const Napi::CallbackInfo& info);
  Napi::Value Data(const Napi::CallbackInfo& info);
  Napi::Value CopyData(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value ToFloat32Array(const Napi::CallbackInfo& info);
  Napi::Value To(const Napi::CallbackInfo& info);
  Napi::Value Contiguous(const Napi::CallbackInfo& info);
  Napi::Value Clone(const Napi::CallbackInfo& info);
  Napi::Value Reshape(const Napi::CallbackInfo& info);
  Napi::Value View(const Napi::CallbackInfo& info);
  Napi::Value Index(const Napi::CallbackInfo& info);
  Napi::Value Item(const Napi::CallbackInfo& info);
  Napi::Value ToArray(const Napi::CallbackInfo& info);
  Napi::Value SameStorage(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value IsDisposed(const Napi::CallbackInfo& info);

  at::Tensor tensor_;
  bool disposed_ = false;
  std::shared_ptr<const std::string> expired_;  // why the handle was released for its holder, when it was
  std::shared_ptr<StorageRegistry> storages_;
  bool accounted_ = false;  // counted in the registry's external memory (not for borrowed handles)
};

}  // namespace easyroutine
