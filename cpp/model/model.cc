#include "model/model.h"

#include <filesystem>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <fstream>
#include <optional>
#include <sstream>

#include <torch/version.h>

#include "graph/hook_points.h"
#include "js/abort_token.h"
#include "js/addon_state.h"
#include "js/errors.h"
#include "js/js_values.h"
#include "model/archive_check.h"
#include "model/ivalue_convert.h"
#include "model/storage_check.h"
#include "runtime/threads.h"
#include "tensor/dtype.h"
#include "tensor/js_memory.h"
#include "tensor/tensor_handle.h"

namespace easyroutine {

namespace {

// Extra files of a TorchScript archive that loading reads: easyroutine's manifest (the architecture
// mapping) and the tokenizer (its file and config), all written by python/easyroutine_export.py.
constexpr const char* kKnownExtraFiles[] = {"easyroutine.json", "tokenizer.json", "tokenizer_config.json"};

std::string DescribeInputs(const std::vector<c10::IValue>& stack) {
  std::ostringstream out;
  for (size_t i = 0; i < stack.size(); ++i) {
    if (i) out << ", ";
    const c10::IValue& v = stack[i];
    if (v.isTensor() && v.toTensor().defined()) {
      const at::Tensor& t = v.toTensor();
      out << DTypeName(t.scalar_type()) << " " << ShapeString(t.sizes());
      if (!t.device().is_cpu()) out << " on " << t.device().str();
    } else {
      out << v.tagKind();
    }
  }
  return out.str();
}

struct FailureInfo {
  ErrorKind kind;
  std::string message;
  std::string detail;
};

// Runs forward with autograd off unless `grad`, through the hooked graph when there are hooks.
// Failures become a Forward error naming the inputs (described only then: a successful forward does
// no string work); a failing hook surfaces as HookFailure, whatever the interpreter wrapped it in.
c10::IValue RunForward(torch::jit::Module& module, const std::vector<c10::IValue>& stack, bool grad, ForwardHooks* hooks) {
  try {
    std::optional<torch::NoGradGuard> noGrad;
    if (!grad) noGrad.emplace();
    if (!hooks) return module.forward(stack);
    ScopedTapSink sink(hooks);
    return hooks->graph().Run(module, stack);
  } catch (const HookFailure&) {
    throw;
  } catch (const c10::Error& e) {
    if (hooks && hooks->failed()) throw HookFailure(hooks->failureMessage());
    throw TypedError(ErrorKind::Forward, "forward(" + DescribeInputs(stack) + ") failed: " + RootCause(e));
  } catch (const TypedError&) {
    throw;
  } catch (const std::exception& e) {
    if (hooks && hooks->failed()) throw HookFailure(hooks->failureMessage());
    throw TypedError(ErrorKind::Forward, "forward(" + DescribeInputs(stack) + ") failed: " + RootCause(std::string(e.what())));
  }
}

// Records the shape each tap site first sees.
class ShapeSink : public TapSink {
 public:
  explicit ShapeSink(size_t sites) : shapes_(sites) {}
  at::Tensor OnTap(int64_t site, const at::Tensor& value) override {
    if (site >= 0 && static_cast<size_t>(site) < shapes_.size() && !shapes_[site]) shapes_[site] = value.sizes().vec();
    return value;
  }
  const std::vector<std::optional<std::vector<int64_t>>>& shapes() const { return shapes_; }

 private:
  std::vector<std::optional<std::vector<int64_t>>> shapes_;
};

// The forward's arguments from the JS array in info[0], converted against the declared signature.
std::vector<c10::IValue> ForwardArguments(Napi::Env env, torch::jit::Module& module, const Napi::CallbackInfo& info, const std::string& caller) {
  if (info.Length() < 1 || !info[0].IsArray()) throw TypedError(ErrorKind::InvalidArgument, caller + ": inputs must be an array");
  return ArgumentsFromJs(env, module.get_method("forward").function().getSchema(), info[0].As<Napi::Array>());
}

std::vector<std::string> StringList(const Napi::Value& value, const char* what) {
  if (!value.IsArray()) throw TypedError(ErrorKind::InvalidArgument, std::string(what) + " must be an array of hook point names");
  Napi::Array array = value.As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value item = array.Get(i);
    if (!item.IsString()) throw TypedError(ErrorKind::InvalidArgument, std::string(what) + " must be an array of hook point names");
    out.push_back(item.As<Napi::String>().Utf8Value());
  }
  return out;
}

// Async forwards must not read JS memory that JS can detach or transfer meanwhile: copy it.
void OwnInputs(c10::IValue& value) {
  if (value.isTensor()) {
    const at::Tensor& t = value.toTensor();
    if (t.defined() && t.has_storage() && JsMemoryReleaser::OwnerOf(t.storage())) value = t.clone();
  } else if (value.isTuple()) {
    std::vector<c10::IValue> items = value.toTupleRef().elements().vec();
    for (auto& item : items) OwnInputs(item);
    value = c10::ivalue::Tuple::create(std::move(items));
  } else if (value.isList()) {
    c10::List<c10::IValue> list = value.toList();
    for (size_t i = 0; i < list.size(); ++i) {
      c10::IValue item = list.get(i);
      OwnInputs(item);
      list.set(i, item);
    }
  } else if (value.isGenericDict()) {
    c10::Dict<c10::IValue, c10::IValue> dict = value.toGenericDict();
    for (auto& entry : dict) {
      c10::IValue item = entry.value();
      OwnInputs(item);
      entry.setValue(item);
    }
  }
}

bool GradOption(const Napi::Value& options) {
  return options.IsObject() && options.As<Napi::Object>().Get("grad").ToBoolean().Value();
}

// options.output === false: the caller needs only what its hooks collected, so no handle is made
// for the output (and an async forward frees it on its own thread).
bool OutputWanted(const Napi::Value& options) {
  return !options.IsObject() || !options.As<Napi::Object>().Get("output").StrictEquals(Napi::Boolean::New(options.Env(), false));
}

}  // namespace

struct ModelHandle::AsyncForward {
  Napi::Promise::Deferred deferred;
  std::shared_ptr<torch::jit::Module> module;
  std::vector<c10::IValue> inputs;
  bool grad;
  bool outputWanted;
  AbortFlag abort;
  std::unique_ptr<ForwardHooks> hooks;
  c10::IValue output;
  std::optional<FailureInfo> failure;
};

Napi::Function ModelHandle::Define(Napi::Env env) {
  return DefineClass(env, "NativeModel",
                     {
                         InstanceMethod<&ModelHandle::Modules>("modules"),
                         InstanceMethod<&ModelHandle::Parameters>("parameters"),
                         InstanceMethod<&ModelHandle::Signature>("signature"),
                         InstanceMethod<&ModelHandle::ExtraFiles>("extraFiles"),
                         InstanceMethod<&ModelHandle::HookPoints>("hookPoints"),
                         InstanceMethod<&ModelHandle::HookPointShapes>("hookPointShapes"),
                         InstanceMethod<&ModelHandle::HookedGraphInfo>("hookedGraph"),
                         InstanceMethod<&ModelHandle::ValidateHookPoints>("validateHookPoints"),
                         InstanceMethod<&ModelHandle::HookSet>("hookSet"),
                         InstanceMethod<&ModelHandle::Forward>("forward"),
                         InstanceMethod<&ModelHandle::ForwardAsync>("forwardAsync"),
                         InstanceMethod<&ModelHandle::SetTraining>("setTraining"),
                         InstanceMethod<&ModelHandle::IsTraining>("isTraining"),
                         InstanceMethod<&ModelHandle::Device>("device"),
                         InstanceMethod<&ModelHandle::Dispose>("dispose"),
                         InstanceMethod<&ModelHandle::IsDisposed>("isDisposed"),
                     });
}

// load(path, device, training, verifyChecksums)
Napi::Value ModelHandle::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::ModelLoad, "loadModel", [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsString()) throw TypedError(ErrorKind::InvalidArgument, "loadModel: path must be a string");
    std::string path = info[0].As<Napi::String>().Utf8Value();
    std::string deviceName = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "cpu";
    at::Device device = ParseDevice(deviceName);
    bool training = info.Length() > 2 && info[2].ToBoolean().Value();
    bool verify = info.Length() <= 3 || info[3].ToBoolean().Value();

    std::error_code ec;
    auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status)) throw TypedError(ErrorKind::ModelLoad, "loadModel: no such file '" + path + "'");
    if (std::filesystem::is_directory(status)) {
      throw TypedError(ErrorKind::ModelLoad, "loadModel: '" + path + "' is a directory; expected a TorchScript file saved with torch.jit.save");
    }
    std::ifstream file(path, std::ios::binary);
    if (!file) throw TypedError(ErrorKind::ModelLoad, "loadModel: cannot read '" + path + "'");
    char magic[4] = {0, 0, 0, 0};
    file.read(magic, 4);
    if (file.gcount() < 4 || std::string(magic, 4) != std::string("PK\x03\x04", 4)) {
      throw TypedError(ErrorKind::ModelLoad, "loadModel: '" + path +
                                                 "' is not a TorchScript archive (not a zip file); export the model with "
                                                 "torch.jit.trace or torch.jit.script and save it with torch.jit.save");
    }

    if (verify) VerifyArchive(path);

    auto module = std::make_shared<torch::jit::Module>();
    // The extra files easyroutine's exporter writes (torch.jit.save(..., _extra_files=...)); absent
    // ones stay empty.
    torch::jit::ExtraFilesMap extraFiles;
    for (const char* name : kKnownExtraFiles) extraFiles[name] = "";
    try {
      if (device.is_cpu()) {
        *module = torch::jit::load(path, device, extraFiles);
        VerifyStorages(*module, path);
      } else {
        // libtorch copies each storage to the device as it reads it, past the end of a short record:
        // the storages are checked on a CPU load first
        VerifyStorages(torch::jit::load(path, at::Device(at::kCPU)), path);
        *module = torch::jit::load(path, device, extraFiles);
      }
    } catch (const TypedError&) {
      throw;
    } catch (const torch::jit::ErrorReport& e) {
      throw TypedError(ErrorKind::ModelLoad, "loadModel: '" + path + "' is damaged or needs ops this libtorch (" TORCH_VERSION
                                             ") lacks: " + RootCause(CompilationMessage(e)));
    } catch (const c10::Error& e) {
      throw TypedError(ErrorKind::ModelLoad, "loadModel: '" + path + "' is damaged or not a TorchScript model: " + RootCause(e));
    } catch (const std::exception& e) {
      throw TypedError(ErrorKind::ModelLoad, "loadModel: '" + path + "' is damaged or not a TorchScript model: " + RootCause(std::string(e.what())));
    }
    if (!module->find_method("forward")) {
      throw TypedError(ErrorKind::ModelLoad, "loadModel: '" + path + "' has no forward method");
    }
    module->train(training);
    Napi::Object handle = AddonState::Get(env).modelConstructor.New({Napi::External<torch::jit::Module>::New(env, nullptr)});
    ModelHandle* self = Unwrap(handle);
    self->module_ = std::move(module);
    self->device_ = device;
    self->path_ = path;
    for (auto& [name, content] : extraFiles) {
      if (!content.empty()) self->extraFiles_[name] = std::move(content);
    }
    return handle;
  });
}

ModelHandle::ModelHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelHandle>(info), env_(info.Env()) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw MakeError(info.Env(), ErrorKind::InvalidArgument, "NativeModel cannot be constructed from JS; use loadModel()");
  }
}

ModelHandle::~ModelHandle() { ShutDown(); }

void ModelHandle::ShutDown() {
  stopping_->store(true);
  if (thread_) {
    thread_->Stop();
    thread_->Join();
    thread_.reset();
  }
  if (completions_) completions_->Release();
  if (hookCalls_) hookCalls_->Release();
  if (cleanupRegistered_) {
    napi_remove_env_cleanup_hook(env_, &ModelHandle::OnEnvTeardown, this);
    cleanupRegistered_ = false;
  }
}

void ModelHandle::OnEnvTeardown(void* self) {
  auto* model = static_cast<ModelHandle*>(self);
  model->cleanupRegistered_ = false;  // Node removes a hook once it has run
  model->ShutDown();
}

torch::jit::Module& ModelHandle::Live(const char* method) {
  if (disposed_ || !module_) throw TypedError(ErrorKind::Disposed, std::string("Model.") + method + ": the model was disposed");
  return *module_;
}

Napi::Value ModelHandle::Modules(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Torch, "Model.modules", [&]() -> Napi::Value {
    torch::jit::Module& root = Live("modules");
    Napi::Array out = Napi::Array::New(env);
    uint32_t index = 0;
    auto describe = [&](const std::string& path, const torch::jit::Module& module) {
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("path", path);
      entry.Set("type", ModuleTypeName(module));
      Napi::Array params = Napi::Array::New(env);
      uint32_t p = 0;
      for (const auto& param : module.named_parameters(/*recurse=*/false)) {
        Napi::Object item = Napi::Object::New(env);
        item.Set("name", param.name);
        item.Set("shape", ShapeArray(env, param.value.sizes()));
        params.Set(p++, item);
      }
      entry.Set("parameters", params);
      Napi::Array buffers = Napi::Array::New(env);
      uint32_t b = 0;
      for (const auto& buffer : module.named_buffers(/*recurse=*/false)) {
        Napi::Object item = Napi::Object::New(env);
        item.Set("name", buffer.name);
        item.Set("shape", ShapeArray(env, buffer.value.sizes()));
        buffers.Set(b++, item);
      }
      entry.Set("buffers", buffers);
      out.Set(index++, entry);
    };
    describe("", root);
    for (const auto& child : root.named_modules()) {
      if (!child.name.empty()) describe(child.name, child.value);
    }
    return out;
  });
}

Napi::Value ModelHandle::Parameters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Torch, "Model.parameters", [&]() -> Napi::Value {
    Napi::Array out = Napi::Array::New(env);
    uint32_t i = 0;
    for (const auto& param : Live("parameters").named_parameters(/*recurse=*/true)) {
      Napi::Array pair = Napi::Array::New(env, 2);
      pair.Set(0u, param.name);
      pair.Set(1u, TensorHandle::Wrap(env, param.value));
      out.Set(i++, pair);
    }
    return out;
  });
}

Napi::Value ModelHandle::ExtraFiles(const Napi::CallbackInfo& info) {
  Napi::Object out = Napi::Object::New(info.Env());
  for (const auto& [name, content] : extraFiles_) out.Set(name, Napi::String::New(info.Env(), content));
  return out;
}

Napi::Value ModelHandle::Signature(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Torch, "Model.signature", [&]() -> Napi::Value {
    const c10::FunctionSchema& schema = Live("signature").get_method("forward").function().getSchema();
    return Napi::String::New(env, "forward(" + easyroutine::Signature(schema) + ") -> " + schema.returns()[0].type()->annotation_str());
  });
}

std::unique_ptr<ForwardHooks> ModelHandle::HooksFrom(Napi::Env env, const Napi::Value& options, const char* caller) {
  if (!options.IsObject()) return nullptr;
  Napi::Value value = options.As<Napi::Object>().Get("hookSet");
  if (value.IsUndefined() || value.IsNull()) return nullptr;
  HookSetHandle* set = HookSetHandle::From(env, value);
  if (!set) throw TypedError(ErrorKind::InvalidArgument, std::string(caller) + ": options.hookSet must be a NativeHookSet");
  if (set->owner() != this) throw TypedError(ErrorKind::InvalidArgument, std::string(caller) + ": options.hookSet was made by another model");
  return std::make_unique<ForwardHooks>(set->bindings(), set->Bound(hookedGraphs_, Live(caller), graphGeneration_), caller);
}

// hookSet(specs, taps) -> NativeHookSet: the hooks [{point, fn | kernel, context}] and the extra taps,
// read once, with unknown points refused (suggesting the closest names).
Napi::Value ModelHandle::HookSet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::InvalidArgument, "Model.forward", [&]() -> Napi::Value {
    torch::jit::Module& module = Live("forward");
    if (info.Length() < 1 || !info[0].IsArray()) throw TypedError(ErrorKind::InvalidArgument, "Model.forward: options.hooks must be an array");
    std::vector<std::string> taps;
    if (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsNull()) taps = StringList(info[1], "Model.forward: options.taps");
    auto bindings = std::make_shared<HookBindings>(env, info[0].As<Napi::Array>(), taps, "Model.forward");
    Napi::Object handle = HookSetHandle::New(env, bindings, this);
    HookSetHandle::Unwrap(handle)->Bound(hookedGraphs_, module, graphGeneration_);  // unknown points throw here
    return handle;
  });
}

// hookPoints() -> [{name, module, type, kind, layer}]
Napi::Value ModelHandle::HookPoints(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Torch, "Model.hookPoints", [&]() -> Napi::Value {
    auto graph = hookedGraphs_.All(Live("hookPoints"));
    Napi::Array out = Napi::Array::New(env, graph->sites.size());
    for (size_t i = 0; i < graph->executionOrder.size(); ++i) {
      const HookPoint& point = graph->sites[graph->executionOrder[i]];
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("name", point.name);
      entry.Set("module", point.modulePath);
      entry.Set("type", point.moduleType);
      entry.Set("kind", point.kind);
      entry.Set("layer", point.layer < 0 ? env.Null() : Napi::Number::New(env, point.layer));
      out.Set(static_cast<uint32_t>(i), entry);
    }
    return out;
  });
}

// hookPointShapes(args) -> [[name, shape | null]]: the shape at every point for these inputs.
Napi::Value ModelHandle::HookPointShapes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Forward, "Model.hookPointShapes", [&]() -> Napi::Value {
    torch::jit::Module& module = Live("hookPointShapes");
    std::vector<c10::IValue> stack = ForwardArguments(env, module, info, "Model.hookPointShapes");
    auto graph = hookedGraphs_.All(module);
    ShapeSink sink(graph->sites.size());
    {
      torch::NoGradGuard noGrad;
      ScopedTapSink scoped(&sink);
      try {
        graph->Run(module, stack);
      } catch (const c10::Error& e) {
        throw TypedError(ErrorKind::Forward, "Model.hookPointShapes: forward(" + DescribeInputs(stack) + ") failed: " + RootCause(e));
      }
    }
    Napi::Array out = Napi::Array::New(env, graph->sites.size());
    for (size_t i = 0; i < graph->sites.size(); ++i) {
      Napi::Array pair = Napi::Array::New(env, 2);
      pair.Set(0u, graph->sites[i].name);
      const auto& shape = sink.shapes()[i];
      pair.Set(1u, shape ? ShapeArray(env, *shape) : env.Null());
      out.Set(static_cast<uint32_t>(i), pair);
    }
    return out;
  });
}

Napi::Value ModelHandle::ValidateHookPoints(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Torch, "Model.validateHookPoints", [&]() -> Napi::Value {
    std::vector<std::string> names = StringList(info.Length() > 0 ? info[0] : env.Undefined(), "hook point names");
    hookedGraphs_.Validate(Live("addHook"), std::set<std::string>(names.begin(), names.end()));
    return env.Undefined();
  });
}

// hookedGraph(names) -> {graph, buildMilliseconds, sites}: a fresh (uncached) build, for inspection
// and for measuring the build.
Napi::Value ModelHandle::HookedGraphInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Torch, "Model.hookedGraph", [&]() -> Napi::Value {
    torch::jit::Module& module = Live("hookedGraph");
    std::vector<std::string> names = StringList(info.Length() > 0 ? info[0] : env.Undefined(), "Model.hookedGraph: names");
    hookedGraphs_.Validate(module, std::set<std::string>(names.begin(), names.end()));
    std::vector<std::string> missing;
    auto graph = BuildHookedGraph(module, SitePlan::Only(std::set<std::string>(names.begin(), names.end())), &missing);
    Napi::Object out = Napi::Object::New(env);
    out.Set("graph", graph->function->graph()->toString());
    out.Set("buildMilliseconds", graph->buildMilliseconds);
    out.Set("sites", Napi::Number::New(env, static_cast<double>(graph->sites.size())));
    return out;
  });
}

// forward(args, options)
Napi::Value ModelHandle::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Forward, "Model.forward", [&]() -> Napi::Value {
    torch::jit::Module& module = Live("forward");
    std::vector<c10::IValue> stack = ForwardArguments(env, module, info, "Model.forward");
    std::unique_ptr<ForwardHooks> hooks = HooksFrom(env, info[1], "Model.forward");
    if (hooks) hooks->RunJsInline(env);  // closures run right here: this is the JS thread
    c10::IValue output;
    try {
      output = RunForward(module, stack, GradOption(info[1]), hooks.get());
    } catch (const HookFailure&) {
      throw hooks->Failure(env);
    }
    return OutputWanted(info[1]) ? FromIValue(env, output) : env.Null();
  });
}

void ModelHandle::StartThread(Napi::Env env) {
  if (thread_) return;
  completions_ = std::make_unique<ThreadSafeFunction>(env, "easyroutine:forward", this, &ModelHandle::CompleteForward);
  hookCalls_ = std::make_unique<ThreadSafeFunction>(env, "easyroutine:hook", nullptr, &ForwardHooks::CallJs);
  // Registered after the thread-safe function, so at teardown it runs first (hooks run in reverse
  // order) and joins the thread while the function can still be called.
  napi_add_env_cleanup_hook(env, &ModelHandle::OnEnvTeardown, this);
  cleanupRegistered_ = true;
  thread_ = std::make_unique<InferenceThread>();
}

// forwardAsync(args, options, abortToken) -> Promise
Napi::Value ModelHandle::ForwardAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Forward, "Model.forwardAsync", [&]() -> Napi::Value {
    torch::jit::Module& module = Live("forwardAsync");
    std::vector<c10::IValue> stack = ForwardArguments(env, module, info, "Model.forwardAsync");
    for (auto& value : stack) OwnInputs(value);
    StartThread(env);

    std::unique_ptr<ForwardHooks> hooks = HooksFrom(env, info[1], "Model.forwardAsync");
    AbortFlag abort = AbortToken::FlagOf(env, info[2]);
    if (hooks) hooks->RunJsThrough(hookCalls_.get(), stopping_, abort);
    auto* job = new AsyncForward{Napi::Promise::Deferred::New(env), module_, std::move(stack), GradOption(info[1]), OutputWanted(info[1]), abort, std::move(hooks), {}, {}};
    Napi::Promise promise = job->deferred.Promise();
    if (inFlight_++ == 0) {
      Ref();  // the model stays alive while a forward is in flight
      completions_->Ref(env);
    }
    ThreadSafeFunction* completions = completions_.get();
    thread_->Post([job, completions](bool stopping) {
      if (stopping || InferenceThread::ProcessExiting()) {
        job->failure = FailureInfo{ErrorKind::Disposed, "Model.forwardAsync: the model was disposed before this forward started", {}};
      } else if (job->abort->load()) {
        job->failure = FailureInfo{ErrorKind::Aborted, "Model.forwardAsync: aborted", {}};
      } else {
        try {
          ApplyIntraOpThreads();
          job->output = RunForward(*job->module, job->inputs, job->grad, job->hooks.get());
          if (!job->outputWanted) job->output = c10::IValue();
        } catch (const HookFailure&) {
          job->failure = FailureInfo{job->hooks->failureKind(), job->hooks->failureMessage(), {}};
        } catch (const TypedError& e) {
          job->failure = FailureInfo{e.kind(), e.what(), {}};
        } catch (const std::exception& e) {
          job->failure = FailureInfo{ErrorKind::Forward, std::string("Model.forwardAsync: ") + e.what(), {}};
        }
        if (job->hooks) job->hooks->ForwardFinished();
      }
      job->inputs.clear();
      job->module.reset();
      if (InferenceThread::ProcessExiting() || completions->Call(job, napi_tsfn_blocking) != napi_ok) {
        if (job->hooks) job->hooks->Abandon();  // off the JS thread: leak its JS references, never touch them
        delete job;
      }
    });
    return promise;
  });
}

void ModelHandle::CompleteForward(napi_env rawEnv, napi_value, void* context, void* data) {
  std::unique_ptr<AsyncForward> job(static_cast<AsyncForward*>(data));
  if (!rawEnv) return;  // the environment is being torn down
  Napi::Env env(rawEnv);
  auto* self = static_cast<ModelHandle*>(context);
  // Nothing may escape a call_js callback (it would std::terminate). While a worker is being
  // terminated every Node-API call fails and node-addon-api turns each failure into an exception,
  // including the Reject meant to report the first one; there is nobody left to tell.
  try {
    Napi::HandleScope scope(env);
    try {
      if (job->hooks && job->hooks->failed()) {
        job->deferred.Reject(job->hooks->Failure(env).Value());
      } else if (job->failure) {
        job->deferred.Reject(MakeError(env, job->failure->kind, job->failure->message, job->failure->detail).Value());
      } else {
        job->deferred.Resolve(job->outputWanted ? Guarded(env, ErrorKind::Torch, "Model.forwardAsync", [&] { return FromIValue(env, job->output); }) : env.Null());
      }
    } catch (const Napi::Error& e) {
      job->deferred.Reject(e.Value());
    }
  } catch (...) {
  }
  if (--self->inFlight_ == 0) {
    self->completions_->Unref(rawEnv);
    napi_reference_unref(rawEnv, static_cast<napi_ref>(*self), nullptr);  // Unref() would throw
  }
}

Napi::Value ModelHandle::SetTraining(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Torch, "Model.setTraining", [&]() -> Napi::Value {
    Live(info[0].ToBoolean().Value() ? "train" : "eval").train(info[0].ToBoolean().Value());
    hookedGraphs_.Clear();  // hooked graphs fold the training flags
    ++graphGeneration_;
    return env.Undefined();
  });
}

Napi::Value ModelHandle::IsTraining(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Torch, "Model.training", [&]() -> Napi::Value { return Napi::Boolean::New(env, Live("training").is_training()); });
}

Napi::Value ModelHandle::Device(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), device_.str()); }

// Queued forwards are rejected; a running one finishes. The thread is joined when the handle dies.
Napi::Value ModelHandle::Dispose(const Napi::CallbackInfo& info) {
  if (!disposed_) {
    disposed_ = true;
    module_.reset();
    hookedGraphs_.Clear();
    if (thread_) thread_->Stop();
#ifdef __GLIBC__
    // A model's blocks are freed among smaller ones that live on (JS handles freed by GC in a later
    // tick): glibc keeps such free pages in the middle of its heap, so each load-use-dispose round
    // grew the process by tens of kilobytes. Handing free pages back here keeps rounds flat; it
    // walks the heap's free chunks once: a whole dispose took 0.7 ms (median; 2 ms at most) in a
    // 470 MB process.
    malloc_trim(0);
#endif
  }
  return info.Env().Undefined();
}

Napi::Value ModelHandle::IsDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposed_); }

}  // namespace easyroutine
