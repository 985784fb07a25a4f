// The extraction kernels of one HookedModel plan, held together so that a forward takes all their
// results with one call: each kernel's tensors go into a TensorPack, in order, and how many each
// gave into a counts array JS keeps with the group; each kernel is then reset for the next forward.
// No JS value is made per result (one Node-API call costs a tenth of a microsecond, a handle
// several): JS knows what each kernel gives, in which order (CollectingKernel).
//
// Guarantees: take() either fills a pack and every count, or throws before touching a kernel; a pack
// serves again only when no JS object refers to any of its slots.
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

#include "hooks/hook_kernel.h"

namespace easyroutine {

class KernelGroup : public Napi::ObjectWrap<KernelGroup> {
 public:
  static Napi::Function Define(Napi::Env env);

  // new NativeKernelGroup(kernels: NativeKernel[]): each must be a CollectingKernel.
  explicit KernelGroup(const Napi::CallbackInfo& info);

 private:
  // take(last: NativeTensorPack | undefined, counts: Int32Array) -> NativeTensorPack: the kernels'
  // tensors in a pack, counts[i] of kernel i. The pack is `last` (the previous forward's) when none
  // of its slots is in use any more, else a new one.
  Napi::Value Take(const Napi::CallbackInfo& info);

  struct Member {
    std::shared_ptr<HookKernel> kernel;
    CollectingKernel* collecting;  // the same object
  };
  std::vector<Member> members_;
};

}  // namespace easyroutine
