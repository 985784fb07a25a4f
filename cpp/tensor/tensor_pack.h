// Tensors that kernels collected, held natively until JS reads one. A forward's results then cost
// one JS object, not one handle per tensor (a handle costs microseconds to make and to collect), and
// a result that is never read is never wrapped. JS takes a slot once (it becomes a handle) or
// releases it; the pack frees what is left when it is collected, or serves the next forward once
// every slot was taken or released.
#pragma once

#include <napi.h>
#include <torch/script.h>

#include <memory>
#include <vector>

#include "tensor/storage_registry.h"

namespace easyroutine {

class TensorPack : public Napi::ObjectWrap<TensorPack> {
 public:
  static Napi::Function Define(Napi::Env env);
  // The pack behind `value`, or nullptr when it is not one.
  static TensorPack* From(Napi::Env env, Napi::Value value);
  // A new, empty pack.
  static Napi::Object New(Napi::Env env);

  explicit TensorPack(const Napi::CallbackInfo& info);
  ~TensorPack() override;

  // Holds `tensors` in new slots, in order. They count as external memory like handles' tensors, so
  // unread results still press on GC: each slot its storage's bytes, told to V8 once for all (a
  // kernel's results are new tensors; were two slots to share a storage, V8 would see it twice until
  // they are read or released).
  void AddAll(std::vector<at::Tensor> tensors);
  // Whether every slot was taken or released: no JS object refers to a slot any more, so the pack
  // can serve again (Clear()) instead of a new one (a JS object, and a finalizer, per forward).
  bool Unused() const;
  void Clear() { slots_.clear(); }

 private:
  struct Slot {
    at::Tensor tensor;
    int64_t bytes = 0;  // counted for V8 while the slot holds the tensor
  };
  Slot& SlotAt(const Napi::CallbackInfo& info, const char* method);
  // Empties `slot`; returns the bytes it had counted, for the caller to tell V8.
  static int64_t Empty(Slot& slot);

  // take(slot): the slot's tensor as a NativeTensor; the slot is emptied.
  Napi::Value Take(const Napi::CallbackInfo& info);
  // release(slot): drops the slot's tensor. Idempotent.
  Napi::Value Release(const Napi::CallbackInfo& info);
  // releaseRange(start, end): release() of slots start .. end - 1, in one call (a cache disposes
  // all its results at once, and they sit in the pack one after the other).
  Napi::Value ReleaseRange(const Napi::CallbackInfo& info);

  std::vector<Slot> slots_;
  std::shared_ptr<StorageRegistry> storages_;
};

}  // namespace easyroutine
