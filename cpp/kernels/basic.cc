// The engine's own kernels: record (keeps a copy of each value seen, per point) and scale (multiplies
// the value by a constant). The easyroutine built-ins are registered by their own files.
#include <mutex>

#include "hooks/hook_kernel.h"
#include "js/errors.h"
#include "tensor/tensor_handle.h"

namespace easyroutine {

namespace {

class RecordKernel : public HookKernel {
 public:
  at::Tensor Run(const at::Tensor& value, const HookPoint& point) override {
    at::Tensor copy = value.detach().clone();
    std::lock_guard<std::mutex> lock(mutex_);
    records_.emplace_back(point.name, std::move(copy));
    return {};
  }

  // [[point, tensor], ...] in the order the values were seen.
  Napi::Value Results(ResultWriter& out) override {
    std::lock_guard<std::mutex> lock(mutex_);
    Napi::Env env = out.Env();
    Napi::Array records = Napi::Array::New(env, records_.size());
    for (size_t i = 0; i < records_.size(); ++i) {
      Napi::Array pair = Napi::Array::New(env, 2);
      pair.Set(0u, records_[i].first);
      pair.Set(1u, out.Tensor(records_[i].second));
      records.Set(static_cast<uint32_t>(i), pair);
    }
    return records;
  }

  void Reset() override {
    std::lock_guard<std::mutex> lock(mutex_);
    records_.clear();
  }

 private:
  std::mutex mutex_;
  std::vector<std::pair<std::string, at::Tensor>> records_;
};

class ScaleKernel : public HookKernel {
 public:
  explicit ScaleKernel(double factor) : factor_(factor) {}
  at::Tensor Run(const at::Tensor& value, const HookPoint&) override { return value * factor_; }

 private:
  double factor_;
};

}  // namespace

EASYROUTINE_REGISTER_KERNEL(record, "record", "keeps a detached copy of every value seen; results() gives [point, tensor] pairs",
                            [](Napi::Env, const Napi::Object&) { return std::make_shared<RecordKernel>(); });

EASYROUTINE_REGISTER_KERNEL(scale, "scale", "multiplies the value by options.factor", [](Napi::Env, const Napi::Object& options) {
  Napi::Value factor = options.Get("factor");
  if (!factor.IsNumber()) throw TypedError(ErrorKind::InvalidArgument, "nativeHook('scale'): options.factor must be a number");
  return std::make_shared<ScaleKernel>(factor.As<Napi::Number>().DoubleValue());
});

}  // namespace easyroutine
