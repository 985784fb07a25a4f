#include "js/abort_token.h"

#include "js/addon_state.h"
#include "js/class_tag.h"

namespace easyroutine {

Napi::Function AbortToken::Define(Napi::Env env) {
  return DefineClass(env, "AbortToken",
                     {InstanceMethod<&AbortToken::Abort>("abort"), InstanceMethod<&AbortToken::Aborted>("aborted")});
}

AbortToken::AbortToken(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AbortToken>(info) { TagObject(info.This().As<Napi::Object>(), ClassTag::AbortToken); }

AbortFlag AbortToken::FlagOf(Napi::Env env, Napi::Value value) {
  if (HasTag(value, ClassTag::AbortToken)) {
    return Unwrap(value.As<Napi::Object>())->flag_;
  }
  return std::make_shared<std::atomic<bool>>(false);
}

Napi::Value AbortToken::Abort(const Napi::CallbackInfo& info) {
  flag_->store(true);
  return info.Env().Undefined();
}

Napi::Value AbortToken::Aborted(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), flag_->load()); }

}  // namespace easyroutine
