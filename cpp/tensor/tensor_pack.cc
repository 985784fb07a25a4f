#include "tensor/tensor_pack.h"

#include <string>

#include "js/addon_state.h"
#include "js/errors.h"
#include "tensor/tensor_handle.h"

namespace easyroutine {

Napi::Function TensorPack::Define(Napi::Env env) {
  return DefineClass(env, "NativeTensorPack",
                     {
                         InstanceMethod<&TensorPack::Take>("take"),
                         InstanceMethod<&TensorPack::Release>("release"),
                     });
}

TensorPack* TensorPack::From(Napi::Env env, Napi::Value value) {
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(AddonState::Get(env).tensorPackConstructor.Value())) return nullptr;
  return Unwrap(value.As<Napi::Object>());
}

TensorPack::TensorPack(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorPack>(info), storages_(AddonState::Get(info.Env()).storages) {
  storages_->HandleCreated();
}

TensorPack::~TensorPack() {
  for (at::Tensor& slot : slots_) Empty(slot);
  storages_->HandleFinalized();
}

uint32_t TensorPack::Add(at::Tensor tensor) {
  // counted as external memory like a handle's tensor, so unread results still press on GC
  storages_->Retain(tensor);
  slots_.push_back(std::move(tensor));
  return static_cast<uint32_t>(slots_.size() - 1);
}

void TensorPack::Empty(at::Tensor& slot) {
  if (!slot.defined()) return;
  storages_->Release(slot);
  slot = at::Tensor();
}

at::Tensor& TensorPack::Slot(const Napi::CallbackInfo& info, const char* method) {
  if (info.Length() < 1 || !info[0].IsNumber()) throw TypedError(ErrorKind::InvalidArgument, std::string("TensorPack.") + method + ": expected a slot number");
  double slot = info[0].As<Napi::Number>().DoubleValue();
  if (!(slot >= 0 && slot < static_cast<double>(slots_.size())) || slot != static_cast<double>(static_cast<uint32_t>(slot))) {
    throw TypedError(ErrorKind::InvalidArgument, std::string("TensorPack.") + method + ": slot " + std::to_string(slot) + " is not one of the " + std::to_string(slots_.size()) + " slots");
  }
  return slots_[static_cast<size_t>(slot)];
}

Napi::Value TensorPack::Take(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::InvalidArgument, "TensorPack.take", [&]() -> Napi::Value {
    at::Tensor& slot = Slot(info, "take");
    if (!slot.defined()) throw TypedError(ErrorKind::Disposed, "TensorPack.take: the slot was already taken or released");
    Napi::Object handle = TensorHandle::Wrap(env, slot);
    Empty(slot);
    return handle;
  });
}

Napi::Value TensorPack::Release(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::InvalidArgument, "TensorPack.release", [&]() -> Napi::Value {
    Empty(Slot(info, "release"));
    return env.Undefined();
  });
}

}  // namespace easyroutine
