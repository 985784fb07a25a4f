// Everything the addon keeps per Node environment (main thread, each worker_thread, each Electron
// context), held as Node-API instance data: no process-wide JS state, so workers never share handles.
#pragma once

#include <napi.h>

#include <array>
#include <memory>
#include <thread>

#include "js/errors.h"

namespace easyroutine {

// Defined by the tensor layer, which builds on this one; addon.cc, the composition root, creates them.
class StorageRegistry;
class JsMemoryReleaser;

struct AddonState {
  AddonState(std::shared_ptr<StorageRegistry> storages, std::shared_ptr<JsMemoryReleaser> jsMemory);

  // The state of `env`, or nullptr once the environment is being torn down.
  static AddonState* Find(Napi::Env env);
  static AddonState& Get(Napi::Env env);

  Napi::FunctionReference tensorConstructor;
  Napi::FunctionReference modelConstructor;
  Napi::FunctionReference kernelConstructor;
  Napi::FunctionReference tensorPackConstructor;
  Napi::FunctionReference hookSetConstructor;
  std::array<Napi::FunctionReference, static_cast<size_t>(ErrorKind::Count)> errorClasses;

  std::shared_ptr<StorageRegistry> storages;
  std::shared_ptr<JsMemoryReleaser> jsMemory;
  std::thread::id jsThread;
};

}  // namespace easyroutine
