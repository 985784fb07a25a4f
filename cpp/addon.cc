// The JS bridge: module initialisation and the free functions of the binding. Each class lives in
// its own file; lib/core/binding.ts declares the shape of what is exported here.
#include <napi.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/version.h>

#include "hooks/hook_kernel.h"
#include "hooks/kernel_group.h"
#include "hooks/hook_set.h"
#include "js/abort_token.h"
#include "js/addon_state.h"
#include "js/errors.h"
#include "model/model.h"
#include "runtime/cpu_allocator.h"
#include "runtime/cpu_fusion.h"
#include "runtime/inference_thread.h"
#include "runtime/threads.h"
#include "tensor/js_memory.h"
#include "tensor/storage_registry.h"
#include "tensor/tensor_handle.h"
#include "tensor/tensor_pack.h"

namespace easyroutine {

namespace {

const char* const kErrorClassNames[] = {"InvalidArgumentError", "DTypeError",    "ShapeError",
                                        "TensorIndexError",     "DeviceError",   "DisposedError",
                                        "ModelLoadError",       "ForwardError",  "TorchError",
                                        "AbortError"};
static_assert(sizeof(kErrorClassNames) / sizeof(kErrorClassNames[0]) == static_cast<size_t>(ErrorKind::Count),
              "one JS class per ErrorKind");

// setErrorClasses({InvalidArgumentError, ...}): the classes the addon throws from now on.
Napi::Value SetErrorClasses(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "setErrorClasses expects an object of classes");
  auto classes = info[0].As<Napi::Object>();
  AddonState& state = AddonState::Get(env);
  for (size_t i = 0; i < static_cast<size_t>(ErrorKind::Count); ++i) {
    Napi::Value cls = classes.Get(kErrorClassNames[i]);
    if (!cls.IsFunction()) throw Napi::TypeError::New(env, std::string("setErrorClasses: missing ") + kErrorClassNames[i]);
    state.errorClasses[i] = Napi::Persistent(cls.As<Napi::Function>());
  }
  return env.Undefined();
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double count = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
  if (!(count >= 1 && count <= 1024 && count == static_cast<int>(count))) {
    throw MakeError(env, ErrorKind::InvalidArgument, "setNumThreads: expected an integer from 1 to 1024");
  }
  SetIntraOpThreads(static_cast<int>(count));
  return env.Undefined();
}

Napi::Value SetCpuFusionFromJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBoolean()) throw MakeError(env, ErrorKind::InvalidArgument, "setCpuFusion: expected a boolean");
  SetCpuFusion(info[0].As<Napi::Boolean>().Value());
  return env.Undefined();
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), IntraOpThreads()); }

Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("libtorchVersion", TORCH_VERSION);
  out.Set("cudaBuild", Napi::Boolean::New(env, EASYROUTINE_LIBTORCH_CUDA != 0));
  out.Set("cudaAvailable", Napi::Boolean::New(env, torch::cuda::is_available()));
  out.Set("cudaDeviceCount", Napi::Number::New(env, static_cast<double>(torch::cuda::device_count())));
  out.Set("cpuFusion", Napi::Boolean::New(env, CpuFusionEnabled()));
  int blasThreads = OpenBlasThreads();
  out.Set("openBlasThreads", blasThreads > 0 ? Napi::Value(Napi::Number::New(env, blasThreads)) : env.Null());
  const std::string& policy = OmpWaitPolicyAtLoad();
  out.Set("ompWaitPolicy", policy.empty() ? env.Null() : Napi::Value(Napi::String::New(env, policy)));
#ifdef NODE_API_NO_EXTERNAL_BUFFERS_ALLOWED
  out.Set("externalBuffers", Napi::Boolean::New(env, false));
#else
  out.Set("externalBuffers", Napi::Boolean::New(env, !AddonState::Get(env).storages->externalBuffersRefused()));
#endif
  return out;
}

Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const StorageRegistry& storages = *AddonState::Get(env).storages;
  Napi::Object out = Napi::Object::New(env);
  out.Set("externalBytes", Napi::Number::New(env, static_cast<double>(storages.accountedBytes())));
  out.Set("storages", Napi::Number::New(env, static_cast<double>(storages.storageCount())));
  return out;
}

Napi::Value PrepareForExit(const Napi::CallbackInfo& info) {
  InferenceThread::StopAllForExit();
  return info.Env().Undefined();
}

void DestroyState(Napi::Env, AddonState* state) {
  state->storages->Close();
  state->jsMemory->Close();
  delete state;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallCpuAllocator();
  ApplyCpuFusionDefault();
  OmpWaitPolicyAtLoad();
  auto* state = new AddonState(std::make_shared<StorageRegistry>(env), JsMemoryReleaser::Create(env));
  env.SetInstanceData<AddonState, DestroyState>(state);

  Napi::Function tensor = TensorHandle::Define(env);
  Napi::Function model = ModelHandle::Define(env);
  Napi::Function abortToken = AbortToken::Define(env);
  Napi::Function kernel = KernelHandle::Define(env);
  Napi::Function tensorPack = TensorPack::Define(env);
  Napi::Function hookSet = HookSetHandle::Define(env);
  state->kernelConstructor = Napi::Persistent(kernel);
  state->hookSetConstructor = Napi::Persistent(hookSet);
  state->tensorPackConstructor = Napi::Persistent(tensorPack);
  state->tensorConstructor = Napi::Persistent(tensor);
  state->modelConstructor = Napi::Persistent(model);

  exports.Set("NativeTensor", tensor);
  exports.Set("NativeModel", model);
  exports.Set("AbortToken", abortToken);
  exports.Set("NativeKernel", kernel);
  exports.Set("NativeTensorPack", tensorPack);
  exports.Set("NativeHookSet", hookSet);
  exports.Set("NativeKernelGroup", KernelGroup::Define(env));
  exports.Set("createKernel", Napi::Function::New<KernelHandle::Create>(env, "createKernel"));
  exports.Set("kernelNames", Napi::Function::New<KernelHandle::Names>(env, "kernelNames"));
  exports.Set("setErrorClasses", Napi::Function::New<SetErrorClasses>(env, "setErrorClasses"));
  exports.Set("fromTypedArray", Napi::Function::New<TensorHandle::FromTypedArray>(env, "fromTypedArray"));
  exports.Set("cat", Napi::Function::New<TensorHandle::Cat>(env, "cat"));
  exports.Set("stack", Napi::Function::New<TensorHandle::Stack>(env, "stack"));
  exports.Set("linear", Napi::Function::New<TensorHandle::Linear>(env, "linear"));
  exports.Set("grad", Napi::Function::New<TensorHandle::Grad>(env, "grad"));
  exports.Set("loadModel", Napi::Function::New<ModelHandle::Load>(env, "loadModel"));
  exports.Set("setNumThreads", Napi::Function::New<SetNumThreads>(env, "setNumThreads"));
  exports.Set("setCpuFusion", Napi::Function::New<SetCpuFusionFromJs>(env, "setCpuFusion"));
  exports.Set("getNumThreads", Napi::Function::New<GetNumThreads>(env, "getNumThreads"));
  exports.Set("runtimeInfo", Napi::Function::New<RuntimeInfo>(env, "runtimeInfo"));
  exports.Set("prepareForExit", Napi::Function::New<PrepareForExit>(env, "prepareForExit"));
  exports.Set("memoryStats", Napi::Function::New<MemoryStats>(env, "memoryStats"));
  return exports;
}

}  // namespace

}  // namespace easyroutine

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return easyroutine::Init(env, exports); }

NODE_API_MODULE(easyroutine, InitAddon)
