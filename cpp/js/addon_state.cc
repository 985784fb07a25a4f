#include "js/addon_state.h"

namespace easyroutine {

AddonState::AddonState(std::shared_ptr<StorageRegistry> storages, std::shared_ptr<JsMemoryReleaser> jsMemory)
    : storages(std::move(storages)), jsMemory(std::move(jsMemory)), jsThread(std::this_thread::get_id()) {}

AddonState* AddonState::Find(Napi::Env env) { return env.GetInstanceData<AddonState>(); }

AddonState& AddonState::Get(Napi::Env env) {
  AddonState* state = Find(env);
  if (!state) throw TypedError(ErrorKind::InvalidArgument, "easyroutine: the addon is not initialised in this environment");
  return *state;
}

}  // namespace easyroutine
