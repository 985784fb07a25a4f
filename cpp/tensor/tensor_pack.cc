#include "tensor/tensor_pack.h"

#include <string>

#include "js/addon_state.h"
#include "js/class_tag.h"
#include "js/errors.h"
#include "tensor/tensor_handle.h"

namespace easyroutine {

Napi::Function TensorPack::Define(Napi::Env env) {
  return DefineClass(env, "NativeTensorPack",
                     {
                         InstanceMethod<&TensorPack::Take>("take"),
                         InstanceMethod<&TensorPack::Release>("release"),
                         InstanceMethod<&TensorPack::ReleaseRange>("releaseRange"),
                     });
}

TensorPack* TensorPack::From(Napi::Env env, Napi::Value value) {
  if (!HasTag(value, ClassTag::TensorPack)) return nullptr;
  return Unwrap(value.As<Napi::Object>());
}

TensorPack::TensorPack(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorPack>(info), storages_(AddonState::Get(info.Env()).storages) {
  storages_->HandleCreated();
  TagObject(info.This().As<Napi::Object>(), ClassTag::TensorPack);
}

TensorPack::~TensorPack() {
  int64_t freed = 0;
  for (Slot& slot : slots_) freed += Empty(slot);
  storages_->Account(-freed);
  storages_->HandleFinalized();
}

Napi::Object TensorPack::New(Napi::Env env) { return AddonState::Get(env).tensorPackConstructor.New({}); }

bool TensorPack::Unused() const {
  for (const Slot& slot : slots_) {
    if (slot.tensor.defined()) return false;
  }
  return true;
}

void TensorPack::AddAll(std::vector<at::Tensor> tensors) {
  int64_t added = 0;
  for (at::Tensor& tensor : tensors) {
    const int64_t bytes = StorageRegistry::BytesOf(tensor);
    added += bytes;
    slots_.push_back({std::move(tensor), bytes});
  }
  storages_->Account(added);
}

int64_t TensorPack::Empty(Slot& slot) {
  const int64_t bytes = slot.bytes;  // 0 once emptied
  slot.tensor = at::Tensor();
  slot.bytes = 0;
  return bytes;
}

TensorPack::Slot& TensorPack::SlotAt(const Napi::CallbackInfo& info, const char* method) {
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
    Slot& slot = SlotAt(info, "take");
    if (!slot.tensor.defined()) throw TypedError(ErrorKind::Disposed, "TensorPack.take: the slot was already taken or released");
    // the handle counts the storage from now on
    Napi::Object handle = TensorHandle::Wrap(env, slot.tensor);
    storages_->Account(-Empty(slot));
    return handle;
  });
}

Napi::Value TensorPack::Release(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::InvalidArgument, "TensorPack.release", [&]() -> Napi::Value {
    storages_->Account(-Empty(SlotAt(info, "release")));
    return env.Undefined();
  });
}

Napi::Value TensorPack::ReleaseRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::InvalidArgument, "TensorPack.releaseRange", [&]() -> Napi::Value {
    const double start = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
    const double end = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
    if (!(start >= 0 && start <= end && end <= static_cast<double>(slots_.size())) || start != static_cast<double>(static_cast<uint32_t>(start)) ||
        end != static_cast<double>(static_cast<uint32_t>(end))) {
      throw TypedError(ErrorKind::InvalidArgument, "TensorPack.releaseRange: [" + std::to_string(start) + ", " + std::to_string(end) + ") is not a range of the " + std::to_string(slots_.size()) + " slots");
    }
    int64_t freed = 0;
    for (size_t slot = static_cast<size_t>(start); slot < static_cast<size_t>(end); ++slot) freed += Empty(slots_[slot]);
    storages_->Account(-freed);
    return env.Undefined();
  });
}

}  // namespace easyroutine
