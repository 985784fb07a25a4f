#include "hooks/hook_set.h"

#include "js/addon_state.h"
#include "js/class_tag.h"
#include "js/errors.h"

namespace easyroutine {

HookBindings::HookBindings(Napi::Env env, const Napi::Array& specs, const std::vector<std::string>& taps, const std::string& caller) {
  for (uint32_t i = 0; i < specs.Length(); ++i) {
    Napi::Value item = specs.Get(i);
    if (!item.IsObject()) throw TypedError(ErrorKind::InvalidArgument, caller + ": each hook must be an object {point, fn | kernel}");
    Napi::Object spec = item.As<Napi::Object>();
    Napi::Value point = spec.Get("point");
    if (!point.IsString()) throw TypedError(ErrorKind::InvalidArgument, caller + ": a hook's point must be a string");
    HookBinding binding;
    binding.point = point.As<Napi::String>().Utf8Value();
    Napi::Value fn = spec.Get("fn");
    if (fn.IsFunction()) {
      binding.function = Napi::Persistent(fn.As<Napi::Function>());
      Napi::Value context = spec.Get("context");
      if (context.IsObject()) binding.context = Napi::Persistent(context.As<Napi::Object>());
      binding.expiry = std::make_shared<const std::string>("the value at hook point '" + binding.point + "' is only valid during the hook; clone() it to keep it");
    } else if (auto native = KernelHandle::From(env, spec.Get("kernel"))) {
      binding.kernel = std::move(native);
    } else {
      throw TypedError(ErrorKind::InvalidArgument, caller + ": the hook on '" + binding.point + "' is neither a function nor a native hook");
    }
    points_.insert(binding.point);
    bindings_.push_back(std::move(binding));
  }
  points_.insert(taps.begin(), taps.end());
}

std::optional<BorrowedTensor> HookBindings::TakeSpare() {
  std::optional<BorrowedTensor> out = std::move(spare_);
  spare_.reset();
  return out;
}

void HookBindings::ReturnSpare(BorrowedTensor borrowed) {
  if (!spare_) spare_ = std::move(borrowed);
}

void HookBindings::Abandon() {
  for (HookBinding& binding : bindings_) {
    binding.function.SuppressDestruct();
    binding.context.SuppressDestruct();
  }
  if (spare_) spare_->handle.SuppressDestruct();
}

Napi::Function HookSetHandle::Define(Napi::Env env) { return DefineClass(env, "NativeHookSet", {}); }

Napi::Object HookSetHandle::New(Napi::Env env, std::shared_ptr<HookBindings> bindings, const void* owner) {
  Napi::Object object = AddonState::Get(env).hookSetConstructor.New({Napi::External<void>::New(env, nullptr)});
  HookSetHandle* self = Unwrap(object);
  self->bindings_ = std::move(bindings);
  self->owner_ = owner;
  return object;
}

HookSetHandle* HookSetHandle::From(Napi::Env env, Napi::Value value) {
  if (!HasTag(value, ClassTag::HookSet)) return nullptr;
  return Unwrap(value.As<Napi::Object>());
}

HookSetHandle::HookSetHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<HookSetHandle>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw MakeError(info.Env(), ErrorKind::InvalidArgument, "NativeHookSet cannot be constructed from JS; forward() makes them");
  }
  TagObject(info.This().As<Napi::Object>(), ClassTag::HookSet);
}

std::shared_ptr<const BoundHooks> HookSetHandle::Bound(HookedGraphCache& cache, const torch::jit::Module& module, uint64_t generation) {
  if (bound_ && generation_ == generation) return bound_;
  auto bound = std::make_shared<BoundHooks>();
  bound->graph = cache.Get(module, bindings_->points());
  bound->bySite.assign(bound->graph->sites.size(), {});
  const auto& bindings = bindings_->bindings();
  for (size_t i = 0; i < bindings.size(); ++i) bound->bySite.at(bound->graph->siteOf.at(bindings[i].point)).push_back(i);
  bound_ = std::move(bound);
  generation_ = generation;
  return bound_;
}

}  // namespace easyroutine
