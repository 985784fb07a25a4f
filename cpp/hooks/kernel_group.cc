#include "hooks/kernel_group.h"

#include <string>

#include "js/errors.h"
#include "tensor/tensor_pack.h"

namespace easyroutine {

Napi::Function KernelGroup::Define(Napi::Env env) { return DefineClass(env, "NativeKernelGroup", {InstanceMethod<&KernelGroup::Take>("take")}); }

KernelGroup::KernelGroup(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KernelGroup>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throw MakeError(env, ErrorKind::InvalidArgument, "NativeKernelGroup: expected an array of native hooks");
  Napi::Array kernels = info[0].As<Napi::Array>();
  for (uint32_t i = 0; i < kernels.Length(); ++i) {
    std::shared_ptr<HookKernel> kernel = KernelHandle::From(env, kernels.Get(i));
    auto* collecting = dynamic_cast<CollectingKernel*>(kernel.get());
    if (!collecting) {
      throw MakeError(env, ErrorKind::InvalidArgument,
                      "NativeKernelGroup: kernels[" + std::to_string(i) + "] is not an extraction kernel whose results are tensors (positions, pattern, project_heads, statistics)");
    }
    members_.push_back({std::move(kernel), collecting});
  }
}

Napi::Value KernelGroup::Take(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Torch, "NativeKernelGroup.take", [&]() -> Napi::Value {
    const bool hasLast = info.Length() > 0 && !info[0].IsUndefined();
    TensorPack* last = hasLast ? TensorPack::From(env, info[0]) : nullptr;
    if ((hasLast && !last) || info.Length() < 2 || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      throw TypedError(ErrorKind::InvalidArgument, "NativeKernelGroup.take: expected (last: NativeTensorPack | undefined, counts: Int32Array)");
    }
    Napi::Int32Array counts = info[1].As<Napi::Int32Array>();
    if (counts.ElementLength() < members_.size()) {
      throw TypedError(ErrorKind::InvalidArgument, "NativeKernelGroup.take: counts has " + std::to_string(counts.ElementLength()) + " entries for " + std::to_string(members_.size()) + " kernels");
    }
    const bool reuse = last && last->Unused();
    Napi::Object packObject = reuse ? info[0].As<Napi::Object>() : TensorPack::New(env);
    TensorPack* pack = reuse ? last : TensorPack::From(env, packObject);
    pack->Clear();
    std::vector<at::Tensor> tensors;
    tensors.reserve(members_.size() * 4);
    for (size_t i = 0; i < members_.size(); ++i) {
      const size_t before = tensors.size();
      members_[i].collecting->Collect(tensors);
      members_[i].kernel->Reset();
      counts[i] = static_cast<int32_t>(tensors.size() - before);
    }
    pack->AddAll(std::move(tensors));
    return packObject;
  });
}

}  // namespace easyroutine
