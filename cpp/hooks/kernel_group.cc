#include "hooks/kernel_group.h"

#include <string>

#include "js/errors.h"

namespace easyroutine {

Napi::Function KernelGroup::Define(Napi::Env env) { return DefineClass(env, "NativeKernelGroup", {InstanceMethod<&KernelGroup::Take>("take")}); }

KernelGroup::KernelGroup(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KernelGroup>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw MakeError(env, ErrorKind::InvalidArgument, "NativeKernelGroup: expected (kernels: NativeKernel[], counts: Int32Array)");
  }
  Napi::Array kernels = info[0].As<Napi::Array>();
  Napi::Int32Array counts = info[1].As<Napi::Int32Array>();
  if (counts.ElementLength() < kernels.Length()) {
    throw MakeError(env, ErrorKind::InvalidArgument, "NativeKernelGroup: counts has " + std::to_string(counts.ElementLength()) + " entries for " + std::to_string(kernels.Length()) + " kernels");
  }
  for (uint32_t i = 0; i < kernels.Length(); ++i) {
    std::shared_ptr<HookKernel> kernel = KernelHandle::From(env, kernels.Get(i));
    auto* collecting = dynamic_cast<CollectingKernel*>(kernel.get());
    if (!collecting) {
      throw MakeError(env, ErrorKind::InvalidArgument,
                      "NativeKernelGroup: kernels[" + std::to_string(i) + "] is not an extraction kernel whose results are tensors (positions, pattern, project_heads, statistics)");
    }
    members_.push_back({std::move(kernel), collecting});
  }
  countsArray_ = Napi::Persistent(counts);
  counts_ = counts.Data();
}

Napi::Value KernelGroup::Take(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Torch, "NativeKernelGroup.take", [&]() -> Napi::Value {
    if (!last_ || !last_->Unused()) {
      lastPack_ = Napi::Persistent(TensorPack::New(env));
      last_ = TensorPack::Unwrap(lastPack_.Value());
    }
    last_->Clear();
    std::vector<at::Tensor> tensors;
    tensors.reserve(members_.size() * 4);
    for (size_t i = 0; i < members_.size(); ++i) {
      const size_t before = tensors.size();
      members_[i].collecting->Collect(tensors);
      members_[i].kernel->Reset();
      counts_[i] = static_cast<int32_t>(tensors.size() - before);
    }
    last_->AddAll(std::move(tensors));
    return lastPack_.Value();
  });
}

}  // namespace easyroutine
