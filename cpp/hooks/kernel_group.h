// The extraction kernels of one HookedModel plan, held together so that a forward takes all their
// results with one call: each kernel's tensors go into a TensorPack, in order, and how many each
// gave into the counts array JS handed the group when making it; each kernel is then reset for the
// next forward. No JS value is made per result, and take() reads no argument (one Node-API call
// costs a tenth of a microsecond, a handle several, and every check of an argument some more): JS
// knows what each kernel gives, in which order (CollectingKernel).
//
// Guarantees: take() either fills a pack and every count, or throws before touching a kernel; a pack
// serves again only when no JS object refers to any of its slots.
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

#include "hooks/hook_kernel.h"
#include "tensor/tensor_pack.h"

namespace easyroutine {

class KernelGroup : public Napi::ObjectWrap<KernelGroup> {
 public:
  static Napi::Function Define(Napi::Env env);

  // new NativeKernelGroup(kernels: NativeKernel[], counts: Int32Array): each kernel must be a
  // CollectingKernel; counts has an entry per kernel, and take() writes into it.
  explicit KernelGroup(const Napi::CallbackInfo& info);

 private:
  // take() -> NativeTensorPack: the kernels' tensors in a pack, counts[i] of kernel i. The pack is
  // the previous take's when none of its slots is in use any more, else a new one.
  Napi::Value Take(const Napi::CallbackInfo& info);

  struct Member {
    std::shared_ptr<HookKernel> kernel;
    CollectingKernel* collecting;  // the same object
  };
  std::vector<Member> members_;
  // The reference keeps the array, and so its buffer, alive; JS keeps it private (never transferred).
  Napi::Reference<Napi::Int32Array> countsArray_;
  int32_t* counts_ = nullptr;
  Napi::ObjectReference lastPack_;
  TensorPack* last_ = nullptr;  // lastPack_'s
};

}  // namespace easyroutine
