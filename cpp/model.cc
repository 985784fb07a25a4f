#include "model.h"

#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>

#include <torch/version.h>

#include "abort_token.h"
#include "archive_check.h"
#include "addon_state.h"
#include "dtype.h"
#include "errors.h"
#include "ivalue_convert.h"
#include "js_values.h"
#include "js_memory.h"
#include "tensor_handle.h"
#include "threads.h"

namespace easyroutine {

namespace {

// "__torch__.model.___torch_mangle_3.Block" -> "model.Block"
std::string TypeName(const torch::jit::Module& module) {
  auto name = module.type()->name();
  if (!name) return "Module";
  static const std::regex kNoise("(^__torch__\\.)|(___torch_mangle_[0-9]+\\.)");
  return std::regex_replace(name->qualifiedName(), kNoise, "");
}

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

// Runs forward with autograd off unless `grad`; failures become a Forward error naming the inputs
// (described only then: a successful forward does no string work).
c10::IValue RunForward(torch::jit::Module& module, const std::vector<c10::IValue>& stack, bool grad) {
  try {
    std::optional<torch::NoGradGuard> noGrad;
    if (!grad) noGrad.emplace();
    return module.forward(stack);
  } catch (const c10::Error& e) {
    throw TypedError(ErrorKind::Forward, "forward(" + DescribeInputs(stack) + ") failed: " + RootCause(e));
  } catch (const TypedError&) {
    throw;
  } catch (const std::exception& e) {
    throw TypedError(ErrorKind::Forward, "forward(" + DescribeInputs(stack) + ") failed: " + RootCause(std::string(e.what())));
  }
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

}  // namespace

struct ModelHandle::AsyncForward {
  Napi::Promise::Deferred deferred;
  std::shared_ptr<torch::jit::Module> module;
  std::vector<c10::IValue> inputs;
  bool grad;
  AbortFlag abort;
  c10::IValue output;
  std::optional<FailureInfo> failure;
};

Napi::Function ModelHandle::Define(Napi::Env env) {
  return DefineClass(env, "NativeModel",
                     {
                         InstanceMethod<&ModelHandle::Modules>("modules"),
                         InstanceMethod<&ModelHandle::Parameters>("parameters"),
                         InstanceMethod<&ModelHandle::Signature>("signature"),
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
    try {
      *module = torch::jit::load(path, device);
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
  if (thread_) {
    thread_->Stop();
    thread_->Join();
    thread_.reset();
  }
  if (completions_) completions_->Release();
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
      entry.Set("type", TypeName(module));
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

Napi::Value ModelHandle::Signature(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Torch, "Model.signature", [&]() -> Napi::Value {
    const c10::FunctionSchema& schema = Live("signature").get_method("forward").function().getSchema();
    return Napi::String::New(env, "forward(" + easyroutine::Signature(schema) + ") -> " + schema.returns()[0].type()->annotation_str());
  });
}

// forward(args, options)
Napi::Value ModelHandle::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Forward, "Model.forward", [&]() -> Napi::Value {
    torch::jit::Module& module = Live("forward");
    if (info.Length() < 1 || !info[0].IsArray()) throw TypedError(ErrorKind::InvalidArgument, "Model.forward: inputs must be an array");
    const auto& schema = module.get_method("forward").function().getSchema();
    std::vector<c10::IValue> stack = ArgumentsFromJs(env, schema, info[0].As<Napi::Array>());
    c10::IValue output = RunForward(module, stack, GradOption(info[1]));
    return FromIValue(env, output);
  });
}

void ModelHandle::StartThread(Napi::Env env) {
  if (thread_) return;
  completions_ = std::make_unique<ThreadSafeFunction>(env, "easyroutine:forward", this, &ModelHandle::CompleteForward);
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
    if (info.Length() < 1 || !info[0].IsArray()) throw TypedError(ErrorKind::InvalidArgument, "Model.forwardAsync: inputs must be an array");
    const auto& schema = module.get_method("forward").function().getSchema();
    std::vector<c10::IValue> stack = ArgumentsFromJs(env, schema, info[0].As<Napi::Array>());
    for (auto& value : stack) OwnInputs(value);
    StartThread(env);

    auto* job = new AsyncForward{Napi::Promise::Deferred::New(env), module_, std::move(stack), GradOption(info[1]),
                                 AbortToken::FlagOf(env, info[2]), {}, {}};
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
          job->output = RunForward(*job->module, job->inputs, job->grad);
        } catch (const TypedError& e) {
          job->failure = FailureInfo{e.kind(), e.what(), {}};
        } catch (const std::exception& e) {
          job->failure = FailureInfo{ErrorKind::Forward, std::string("Model.forwardAsync: ") + e.what(), {}};
        }
      }
      job->inputs.clear();
      job->module.reset();
      if (InferenceThread::ProcessExiting() || completions->Call(job, napi_tsfn_blocking) != napi_ok) {
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
      if (job->failure) {
        job->deferred.Reject(MakeError(env, job->failure->kind, job->failure->message, job->failure->detail).Value());
      } else {
        job->deferred.Resolve(Guarded(env, ErrorKind::Torch, "Model.forwardAsync", [&] { return FromIValue(env, job->output); }));
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
    if (thread_) thread_->Stop();
  }
  return info.Env().Undefined();
}

Napi::Value ModelHandle::IsDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposed_); }

}  // namespace easyroutine
