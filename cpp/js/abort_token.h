// The native side of an AbortSignal: JS flips it from the signal's 'abort' event; work on other
// threads polls it between steps.
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>

namespace easyroutine {

using AbortFlag = std::shared_ptr<std::atomic<bool>>;

class AbortToken : public Napi::ObjectWrap<AbortToken> {
 public:
  static Napi::Function Define(Napi::Env env);
  // The flag behind `value`, or a flag that never fires when `value` is not a token.
  static AbortFlag FlagOf(Napi::Env env, Napi::Value value);

  explicit AbortToken(const Napi::CallbackInfo& info);

 private:
  Napi::Value Abort(const Napi::CallbackInfo& info);
  Napi::Value Aborted(const Napi::CallbackInfo& info);

  AbortFlag flag_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace easyroutine
