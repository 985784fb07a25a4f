#include "hooks/hook_kernel.h"

#include "js/addon_state.h"
#include "js/class_tag.h"
#include "js/errors.h"
#include "tensor/tensor_handle.h"

namespace easyroutine {

Napi::Value ResultWriter::Tensor(at::Tensor tensor) { return TensorHandle::Wrap(env_, std::move(tensor)); }

Napi::Value HookKernel::Results(ResultWriter& out) { return out.Env().Undefined(); }

void HookKernel::Configure(Napi::Env, const Napi::Object&) { throw TypedError(ErrorKind::InvalidArgument, "this native hook takes no new options"); }

KernelRegistry& KernelRegistry::Instance() {
  static KernelRegistry registry;
  return registry;
}

void KernelRegistry::Register(const std::string& name, const std::string& description, KernelFactory factory) {
  std::lock_guard<std::mutex> lock(mutex_);
  kernels_[name] = Entry{description, std::move(factory)};
}

std::shared_ptr<HookKernel> KernelRegistry::Create(Napi::Env env, const std::string& name, const Napi::Object& options) const {
  KernelFactory factory;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = kernels_.find(name);
    if (found == kernels_.end()) {
      std::string known;
      for (const auto& entry : kernels_) known += (known.empty() ? "'" : ", '") + entry.first + "'";
      throw TypedError(ErrorKind::InvalidArgument, "nativeHook: unknown kernel '" + name + "'; registered kernels: " + known);
    }
    factory = found->second.factory;
  }
  return factory(env, options);
}

std::map<std::string, std::string> KernelRegistry::List() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::map<std::string, std::string> out;
  for (const auto& entry : kernels_) out[entry.first] = entry.second.description;
  return out;
}

Napi::Function KernelHandle::Define(Napi::Env env) {
  return DefineClass(env, "NativeKernel",
                     {
                         InstanceMethod<&KernelHandle::Results>("results"),
                         InstanceMethod<&KernelHandle::Reset>("reset"),
                         InstanceMethod<&KernelHandle::Configure>("configure"),
                         InstanceMethod<&KernelHandle::Name>("name"),
                     });
}

KernelHandle::KernelHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KernelHandle>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw MakeError(info.Env(), ErrorKind::InvalidArgument, "NativeKernel cannot be constructed from JS; use nativeHook()");
  }
  TagObject(info.This().As<Napi::Object>(), ClassTag::Kernel);
}

// createKernel(name, options)
Napi::Value KernelHandle::Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::InvalidArgument, "nativeHook", [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsString()) throw TypedError(ErrorKind::InvalidArgument, "nativeHook: the kernel name must be a string");
    std::string name = info[0].As<Napi::String>().Utf8Value();
    Napi::Object options = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
    auto kernel = KernelRegistry::Instance().Create(env, name, options);
    Napi::Object handle = AddonState::Get(env).kernelConstructor.New({Napi::External<HookKernel>::New(env, nullptr)});
    KernelHandle* self = Unwrap(handle);
    self->kernel_ = std::move(kernel);
    self->name_ = name;
    return handle;
  });
}

Napi::Value KernelHandle::Names(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  for (const auto& [name, description] : KernelRegistry::Instance().List()) out.Set(name, description);
  return out;
}

std::shared_ptr<HookKernel> KernelHandle::From(Napi::Env env, Napi::Value value) {
  if (!HasTag(value, ClassTag::Kernel)) return nullptr;
  return Unwrap(value.As<Napi::Object>())->kernel_;
}

Napi::Value KernelHandle::Results(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Torch, "NativeHook.results", [&] {
    ResultWriter out(env);
    return kernel_->Results(out);
  });
}

Napi::Value KernelHandle::Reset(const Napi::CallbackInfo& info) {
  kernel_->Reset();
  return info.Env().Undefined();
}

Napi::Value KernelHandle::Configure(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::InvalidArgument, "NativeHook.configure", [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsObject()) throw TypedError(ErrorKind::InvalidArgument, "NativeHook.configure: expected an options object");
    kernel_->Configure(env, info[0].As<Napi::Object>());
    return env.Undefined();
  });
}

Napi::Value KernelHandle::Name(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }

at::Tensor TokensView(const at::Tensor& value, int64_t batch) {
  if (value.dim() == 2 && batch > 0 && value.size(0) % batch == 0) return value.view({batch, value.size(0) / batch, value.size(1)});
  return value;
}

}  // namespace easyroutine
