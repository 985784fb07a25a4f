#include "addon_state.h"

namespace easyroutine {

AddonState::AddonState(Napi::Env env)
    : storages(std::make_shared<StorageRegistry>(env)),
      jsMemory(JsMemoryReleaser::Create(env)),
      jsThread(std::this_thread::get_id()) {}

AddonState* AddonState::Find(Napi::Env env) { return env.GetInstanceData<AddonState>(); }

AddonState& AddonState::Get(Napi::Env env) {
  AddonState* state = Find(env);
  if (!state) throw TypedError(ErrorKind::InvalidArgument, "easyroutine: the addon is not initialised in this environment");
  return *state;
}

}  // namespace easyroutine
