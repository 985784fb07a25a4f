#include "tensor/tensor_handle.h"

#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "js/addon_state.h"
#include "js/class_tag.h"
#include "js/errors.h"
#include "js/js_values.h"
#include "tensor/dtype.h"
#include "tensor/js_memory.h"

namespace easyroutine {

namespace {

bool IsInteger(const Napi::Value& value) {
  if (!value.IsNumber()) return false;
  double d = value.As<Napi::Number>().DoubleValue();
  return std::isfinite(d) && std::floor(d) == d;
}

// A shape from JS: an array of non-negative integers (-1 allowed once when `allowInfer`).
std::vector<int64_t> ParseShape(const Napi::Value& value, bool allowInfer) {
  if (!value.IsArray()) throw TypedError(ErrorKind::Shape, "shape must be an array of non-negative integers");
  auto array = value.As<Napi::Array>();
  std::vector<int64_t> shape(array.Length());
  bool inferred = false;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value dim = array.Get(i);
    if (!IsInteger(dim)) {
      std::string shown = dim.IsNumber() ? dim.ToString().Utf8Value() : "not a number";
      throw TypedError(ErrorKind::Shape, "shape[" + std::to_string(i) + "] is " + shown + "; a shape holds non-negative integers");
    }
    double d = dim.As<Napi::Number>().DoubleValue();
    if (d == -1 && allowInfer && !inferred) {
      inferred = true;
    } else if (d < 0 || d > static_cast<double>(std::numeric_limits<int64_t>::max())) {
      throw TypedError(ErrorKind::Shape, "shape[" + std::to_string(i) + "] = " + std::to_string(static_cast<int64_t>(d)) +
                                             " is out of range" + (allowInfer ? " (only one -1 may be inferred)" : ""));
    }
    shape[i] = static_cast<int64_t>(d);
  }
  return shape;
}

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString()) throw TypedError(ErrorKind::InvalidArgument, std::string(what) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

Napi::Value TypedArrayOver(Napi::Env env, napi_typedarray_type kind, size_t length, Napi::ArrayBuffer buffer, size_t byteOffset) {
  napi_value array;
  NAPI_THROW_IF_FAILED(env, napi_create_typedarray(env, kind, length, buffer, byteOffset, &array), Napi::Value());
  return Napi::Value(env, array);
}

// A fresh TypedArray holding a copy of `tensor` (any device or layout).
Napi::Value CopyToTypedArray(Napi::Env env, const at::Tensor& tensor) {
  napi_typedarray_type kind = TypedArrayKindOf(tensor.scalar_type());
  at::Tensor cpu = tensor.detach().to(at::kCPU).contiguous();
  size_t nbytes = static_cast<size_t>(cpu.numel()) * cpu.element_size();
  Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, nbytes);
  if (nbytes) std::memcpy(buffer.Data(), cpu.data_ptr(), nbytes);
  return TypedArrayOver(env, kind, static_cast<size_t>(cpu.numel()), buffer, 0);
}

Napi::Value ScalarToJs(Napi::Env env, const at::Tensor& scalar) {
  switch (scalar.scalar_type()) {
    case at::kBool: return Napi::Boolean::New(env, scalar.item<bool>());
    case at::kLong: return Int64ToJs(env, scalar.item<int64_t>());
    default:
      if (at::isIntegralType(scalar.scalar_type(), false)) return Napi::Number::New(env, static_cast<double>(scalar.item<int64_t>()));
      return Napi::Number::New(env, scalar.item<double>());
  }
}

Napi::Value NestedArray(Napi::Env env, const at::Tensor& t) {
  if (t.dim() == 0) return ScalarToJs(env, t);
  int64_t n = t.size(0);
  Napi::Array out = Napi::Array::New(env, static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out.Set(static_cast<uint32_t>(i), NestedArray(env, t.select(0, i)));
  return out;
}

at::indexing::TensorIndex IndexItem(Napi::Env env, const Napi::Value& item, uint32_t position) {
  using namespace at::indexing;
  if (item.IsNull() || item.IsUndefined()) return TensorIndex(None);
  if (item.IsBoolean()) return TensorIndex(item.As<Napi::Boolean>().Value());
  if (IsInteger(item)) return TensorIndex(static_cast<int64_t>(item.As<Napi::Number>().DoubleValue()));
  if (item.IsString() && item.As<Napi::String>().Utf8Value() == "...") return TensorIndex(Ellipsis);
  if (TensorHandle::Is(env, item)) return TensorIndex(TensorHandle::From(env, item, "index tensor"));
  if (item.IsObject() && !item.IsArray()) {
    auto slice = item.As<Napi::Object>();
    auto bound = [&](const char* key, int64_t fallback) -> int64_t {
      Napi::Value v = slice.Get(key);
      if (v.IsUndefined() || v.IsNull()) return fallback;
      if (!IsInteger(v)) {
        throw TypedError(ErrorKind::Index, "index item " + std::to_string(position) + ": slice " + key + " must be an integer");
      }
      return static_cast<int64_t>(v.As<Napi::Number>().DoubleValue());
    };
    int64_t step = bound("step", 1);
    if (step <= 0) throw TypedError(ErrorKind::Index, "index item " + std::to_string(position) + ": slice step must be positive");
    return TensorIndex(Slice(bound("start", 0), bound("stop", std::numeric_limits<int64_t>::max()), step));
  }
  throw TypedError(ErrorKind::Index, "index item " + std::to_string(position) +
                                         " must be an integer, null (new axis), '...', a slice {start, stop, step}, a boolean or a Tensor");
}

}  // namespace

Napi::Function TensorHandle::Define(Napi::Env env) {
  return DefineClass(env, "NativeTensor",
                     {
                         InstanceMethod<&TensorHandle::Shape>("shape"),
                         InstanceMethod<&TensorHandle::Strides>("strides"),
                         InstanceMethod<&TensorHandle::DType>("dtype"),
                         InstanceMethod<&TensorHandle::Device>("device"),
                         InstanceMethod<&TensorHandle::Numel>("numel"),
                         InstanceMethod<&TensorHandle::IsContiguous>("isContiguous"),
                         InstanceMethod<&TensorHandle::RequiresGrad>("requiresGrad"),
                         InstanceMethod<&TensorHandle::Data>("data"),
                         InstanceMethod<&TensorHandle::CopyData>("copyData"),
                         InstanceMethod<&TensorHandle::Write>("write"),
                         InstanceMethod<&TensorHandle::ToFloat32Array>("toFloat32Array"),
                         InstanceMethod<&TensorHandle::To>("to"),
                         InstanceMethod<&TensorHandle::Contiguous>("contiguous"),
                         InstanceMethod<&TensorHandle::Clone>("clone"),
                         InstanceMethod<&TensorHandle::Reshape>("reshape"),
                         InstanceMethod<&TensorHandle::View>("view"),
                         InstanceMethod<&TensorHandle::Index>("index"),
                         InstanceMethod<&TensorHandle::Item>("item"),
                         InstanceMethod<&TensorHandle::ToArray>("toArray"),
                         InstanceMethod<&TensorHandle::SameStorage>("sameStorage"),
                         InstanceMethod<&TensorHandle::Dispose>("dispose"),
                         InstanceMethod<&TensorHandle::IsDisposed>("isDisposed"),
                     });
}

TensorHandle::TensorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorHandle>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal()) {
    throw MakeError(env, ErrorKind::InvalidArgument,
                    "NativeTensor cannot be constructed from JS; use tensor(), fromTypedArray() or a model's outputs");
  }
  tensor_ = *info[0].As<Napi::External<at::Tensor>>().Data();
  TagObject(info.This().As<Napi::Object>(), ClassTag::Tensor);
  storages_ = AddonState::Get(env).storages;
  accounted_ = !(info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value());  // else borrowed
  if (accounted_) storages_->Retain(tensor_);
  storages_->HandleCreated();
}

TensorHandle::~TensorHandle() {
  Reset();
  if (storages_) storages_->HandleFinalized();
}

void TensorHandle::Reset() {
  if (accounted_ && storages_ && tensor_.defined()) storages_->Release(tensor_);
  tensor_ = at::Tensor();
}

Napi::Object TensorHandle::Wrap(Napi::Env env, at::Tensor tensor) {
  return AddonState::Get(env).tensorConstructor.New({Napi::External<at::Tensor>::New(env, &tensor)});
}

bool TensorHandle::Is(Napi::Env env, Napi::Value value) {
  return HasTag(value, ClassTag::Tensor);
}

const at::Tensor& TensorHandle::From(Napi::Env env, Napi::Value value, const std::string& what) {
  if (!Is(env, value)) throw TypedError(ErrorKind::InvalidArgument, what + " must be a Tensor");
  return Unwrap(value.As<Napi::Object>())->Live(what.c_str());
}

namespace {

std::vector<at::Tensor> TensorList(Napi::Env env, const Napi::Value& value, const char* what) {
  if (!value.IsArray()) throw TypedError(ErrorKind::InvalidArgument, std::string(what) + ": expected an array of tensors");
  Napi::Array array = value.As<Napi::Array>();
  if (array.Length() == 0) throw TypedError(ErrorKind::InvalidArgument, std::string(what) + ": expected at least one tensor");
  std::vector<at::Tensor> tensors;
  for (uint32_t i = 0; i < array.Length(); ++i) tensors.push_back(TensorHandle::From(env, array.Get(i), std::string(what) + " item " + std::to_string(i)));
  return tensors;
}

int64_t DimArgument(const Napi::CallbackInfo& info) {
  if (info.Length() < 2 || info[1].IsUndefined()) return 0;
  if (!info[1].IsNumber()) throw TypedError(ErrorKind::InvalidArgument, "dim must be an integer");
  return info[1].As<Napi::Number>().Int64Value();
}

}  // namespace

Napi::Value TensorHandle::Cat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Shape, "cat", [&]() -> Napi::Value { return Wrap(env, at::cat(TensorList(env, info[0], "cat"), DimArgument(info))); });
}

Napi::Value TensorHandle::Linear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Shape, "linear", [&]() -> Napi::Value {
    at::Tensor input = From(env, info[0], "linear: input");
    at::Tensor weight = From(env, info[1], "linear: weight");
    const bool hasBias = info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsNull();
    if (input.dim() < 1 || weight.dim() != 2 || input.size(-1) != weight.size(1)) {
      throw TypedError(ErrorKind::Shape, "linear: input " + ShapeString(input.sizes()) + " and weight " + ShapeString(weight.sizes()) + " do not fit: the weight must be [out, in] with in = the input's last dimension");
    }
    return Wrap(env, at::linear(input, weight, hasBias ? c10::optional<at::Tensor>(From(env, info[2], "linear: bias")) : c10::nullopt));
  });
}

Napi::Value TensorHandle::Stack(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Shape, "stack", [&]() -> Napi::Value { return Wrap(env, at::stack(TensorList(env, info[0], "stack"), DimArgument(info))); });
}

Napi::Value TensorHandle::Grad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::Torch, "grad", [&]() -> Napi::Value {
    at::Tensor output = From(env, info[0], "grad: output");
    // torch.autograd.grad's grad_outputs: the gradient of a weighted sum of the output's elements
    const bool weighted = info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsNull();
    at::Tensor weights;
    if (weighted) {
      weights = From(env, info[2], "grad: options.gradOutput");
      if (weights.sizes() != output.sizes()) {
        throw TypedError(ErrorKind::Shape, "grad: options.gradOutput is " + ShapeString(weights.sizes()) + "; it must have the output's shape " + ShapeString(output.sizes()));
      }
    } else if (output.numel() != 1) {
      throw TypedError(ErrorKind::Shape, "grad: the output must have one element, got " + ShapeString(output.sizes()) + " (or give options.gradOutput, the weight of each element)");
    }
    if (!output.requires_grad()) throw TypedError(ErrorKind::InvalidArgument, "grad: the output does not depend on anything that requires grad (run the forward with { grad: true })");
    std::vector<at::Tensor> inputs = TensorList(env, info[1], "grad: inputs");
    std::vector<at::Tensor> grads = weighted ? torch::autograd::grad({output}, inputs, {weights.to(output.options())}, /*retain_graph=*/false, /*create_graph=*/false, /*allow_unused=*/true)
                                             : torch::autograd::grad({output.reshape({})}, inputs, {}, /*retain_graph=*/false, /*create_graph=*/false, /*allow_unused=*/true);
    Napi::Array out = Napi::Array::New(env, grads.size());
    for (size_t i = 0; i < grads.size(); ++i) out.Set(static_cast<uint32_t>(i), grads[i].defined() ? Napi::Value(Wrap(env, grads[i])) : env.Null());
    return out;
  });
}

Napi::Object TensorHandle::WrapBorrowed(Napi::Env env, at::Tensor tensor) {
  return AddonState::Get(env).tensorConstructor.New({Napi::External<at::Tensor>::New(env, &tensor), Napi::Boolean::New(env, true)});
}

void TensorHandle::Rearm(at::Tensor tensor) {
  tensor_ = std::move(tensor);
  disposed_ = false;
  expired_.reset();
}

void TensorHandle::Expire(std::shared_ptr<const std::string> why) {
  disposed_ = true;
  expired_ = std::move(why);
  Reset();
}

const at::Tensor& TensorHandle::Live(const char* method) const {
  if (disposed_ && expired_) throw TypedError(ErrorKind::Disposed, std::string("Tensor.") + method + ": " + *expired_);
  if (disposed_) throw TypedError(ErrorKind::Disposed, std::string("Tensor.") + method + ": the tensor was disposed");
  return tensor_;
}


#define TENSOR_METHOD(name, kind, body)                                                          \
  Napi::Value TensorHandle::name(const Napi::CallbackInfo& info) {                              \
    Napi::Env env = info.Env();                                                                  \
    return Guarded(env, ErrorKind::kind, "Tensor." #name, [&]() -> Napi::Value { body });        \
  }

TENSOR_METHOD(Shape, Torch, { return ShapeArray(env, Live("shape").sizes()); })
TENSOR_METHOD(Strides, Torch, { return ShapeArray(env, Live("strides").strides()); })
TENSOR_METHOD(DType, Torch, { return Napi::String::New(env, DTypeName(Live("dtype").scalar_type())); })
TENSOR_METHOD(Device, Torch, { return Napi::String::New(env, DeviceName(Live("device").device())); })
TENSOR_METHOD(Numel, Torch, { return Napi::Number::New(env, static_cast<double>(Live("numel").numel())); })
TENSOR_METHOD(IsContiguous, Torch, { return Napi::Boolean::New(env, Live("isContiguous").is_contiguous()); })
TENSOR_METHOD(RequiresGrad, Torch, { return Napi::Boolean::New(env, Live("requiresGrad").requires_grad()); })

// [TypedArray, shared]: a view over the storage's one ArrayBuffer, or a copy where external buffers
// are refused (Electron's memory cage).
TENSOR_METHOD(Data, DType, {
  const at::Tensor& t = Live("data");
  if (!t.device().is_cpu()) {
    throw TypedError(ErrorKind::Device, "Tensor.data: the tensor is on " + DeviceName(t.device()) +
                                            "; copy it with to('cpu') or read a copy with copyData()");
  }
  if (!t.is_contiguous()) {
    throw TypedError(ErrorKind::Shape, "Tensor.data: the tensor is not contiguous (shape " + ShapeString(t.sizes()) +
                                           "); make a contiguous copy with contiguous() or read a copy with copyData()");
  }
  napi_typedarray_type kind = TypedArrayKindOf(t.scalar_type());
  StorageRegistry::View view = storages_->BufferFor(t);
  size_t offset = view.byteOffset + static_cast<size_t>(t.storage_offset()) * t.element_size();
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(0u, TypedArrayOver(env, kind, static_cast<size_t>(t.numel()), view.buffer, offset));
  result.Set(1u, Napi::Boolean::New(env, view.shared));
  return result;
})

// write(typedArray): copies JS values into a contiguous CPU tensor, the way to write where `data`
// is a copy.
TENSOR_METHOD(Write, DType, {
  const at::Tensor& t = Live("write");
  if (!t.device().is_cpu() || !t.is_contiguous()) {
    throw TypedError(ErrorKind::Device, "Tensor.write needs a contiguous CPU tensor; this one is " +
                                            std::string(t.is_contiguous() ? "" : "non-contiguous ") + "on " + DeviceName(t.device()));
  }
  napi_typedarray_type kind = TypedArrayKindOf(t.scalar_type());
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != kind) {
    throw TypedError(ErrorKind::DType, std::string("Tensor.write expects a ") + TypedArrayName(kind) + " for a " + DTypeName(t.scalar_type()) + " tensor");
  }
  auto array = info[0].As<Napi::TypedArray>();
  if (static_cast<int64_t>(array.ElementLength()) != t.numel()) {
    throw TypedError(ErrorKind::Shape, "Tensor.write: got " + std::to_string(array.ElementLength()) + " values for a tensor of " +
                                           std::to_string(t.numel()) + " elements");
  }
  if (array.ByteLength()) std::memmove(t.data_ptr(), static_cast<uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset(), array.ByteLength());
  return env.Undefined();
})

TENSOR_METHOD(CopyData, DType, { return CopyToTypedArray(env, Live("copyData")); })
TENSOR_METHOD(ToFloat32Array, DType, { return CopyToTypedArray(env, Live("toFloat32Array").to(at::kFloat)); })

// to(device, dtype): either may be null.
TENSOR_METHOD(To, Torch, {
  const at::Tensor& t = Live("to");
  at::Device device = t.device();
  at::ScalarType dtype = t.scalar_type();
  if (info.Length() > 0 && !info[0].IsNull() && !info[0].IsUndefined()) device = ParseDevice(StringArg(info, 0, "device"));
  if (info.Length() > 1 && !info[1].IsNull() && !info[1].IsUndefined()) dtype = ParseDType(StringArg(info, 1, "dtype"));
  return Wrap(env, t.to(device, dtype));
})

TENSOR_METHOD(Contiguous, Torch, { return Wrap(env, Live("contiguous").contiguous()); })
TENSOR_METHOD(Clone, Torch, { return Wrap(env, Live("clone").clone()); })
TENSOR_METHOD(Reshape, Shape, { return Wrap(env, Live("reshape").reshape(ParseShape(info[0], true))); })
TENSOR_METHOD(View, Shape, { return Wrap(env, Live("view").view(ParseShape(info[0], true))); })

TENSOR_METHOD(Index, Index, {
  const at::Tensor& t = Live("index");
  if (info.Length() < 1 || !info[0].IsArray()) throw TypedError(ErrorKind::Index, "Tensor.index expects an array of index items");
  auto items = info[0].As<Napi::Array>();
  std::vector<at::indexing::TensorIndex> indices;
  indices.reserve(items.Length());
  for (uint32_t i = 0; i < items.Length(); ++i) indices.push_back(IndexItem(env, items.Get(i), i));
  return Wrap(env, t.index(indices));
})

TENSOR_METHOD(Item, Shape, {
  const at::Tensor& t = Live("item");
  if (t.numel() != 1) {
    throw TypedError(ErrorKind::Shape, "Tensor.item needs a tensor with exactly one element; this one has shape " + ShapeString(t.sizes()));
  }
  return ScalarToJs(env, t.detach().to(at::kCPU).reshape({}));
})

TENSOR_METHOD(ToArray, DType, {
  const at::Tensor& t = Live("toArray");
  at::Tensor cpu = t.detach().to(at::kCPU);
  if (cpu.scalar_type() == at::kHalf || cpu.scalar_type() == at::kBFloat16) cpu = cpu.to(at::kFloat);
  TypedArrayKindOf(cpu.scalar_type());  // rejects dtypes JS cannot represent
  return NestedArray(env, cpu);
})

TENSOR_METHOD(SameStorage, Torch, {
  const at::Tensor& t = Live("sameStorage");
  at::Tensor other = From(env, info[0], "sameStorage(other)");  // a copy: g++ 14 misreads a reference here as dangling
  return Napi::Boolean::New(env, t.has_storage() && other.has_storage() && t.storage().is_alias_of(other.storage()));
})

Napi::Value TensorHandle::Dispose(const Napi::CallbackInfo& info) {
  if (!disposed_) {
    disposed_ = true;
    Reset();
  }
  return info.Env().Undefined();
}

Napi::Value TensorHandle::IsDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposed_); }

// fromTypedArray(array, shape, dtype | null, share)
Napi::Value TensorHandle::FromTypedArray(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guarded(env, ErrorKind::InvalidArgument, "tensor", [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsTypedArray()) {
      throw TypedError(ErrorKind::InvalidArgument,
                       "data must be a TypedArray (Float32Array, Float64Array, BigInt64Array, Int32Array, Int16Array, "
                       "Int8Array, Uint8Array, or Uint16Array for float16/bfloat16)");
    }
    auto array = info[0].As<Napi::TypedArray>();
    napi_typedarray_type kind = array.TypedArrayType();
    std::vector<int64_t> shape = ParseShape(info[1], false);
    at::ScalarType dtype;
    bool hasDefault = DefaultDTypeOf(kind, &dtype);
    if (info.Length() > 2 && info[2].IsString()) {
      dtype = ParseDType(info[2].As<Napi::String>().Utf8Value());
      if (TypedArrayKindOf(dtype) != kind && !(kind == napi_uint8_clamped_array && dtype == at::kByte)) {
        throw TypedError(ErrorKind::DType, "dtype '" + DTypeName(dtype) + "' does not match a " + TypedArrayName(kind) +
                                               "; " + DTypeName(dtype) + " data comes in a " + TypedArrayName(TypedArrayKindOf(dtype)));
      }
    } else if (!hasDefault) {
      throw TypedError(ErrorKind::DType, std::string("a ") + TypedArrayName(kind) +
                                             (kind == napi_uint16_array ? " needs an explicit dtype: 'float16' or 'bfloat16'"
                                                                        : " has no torch dtype; accepted arrays: Float32Array, Float64Array, "
                                                                          "BigInt64Array, Int32Array, Int16Array, Int8Array, Uint8Array, Uint16Array"));
    }
    int64_t numel = 1;
    for (int64_t d : shape) {
      if (d != 0 && numel > std::numeric_limits<int64_t>::max() / d) throw TypedError(ErrorKind::Shape, "shape " + ShapeString(shape) + " is too large");
      numel *= d;
    }
    if (static_cast<size_t>(numel) != array.ElementLength()) {
      throw TypedError(ErrorKind::Shape, "shape " + ShapeString(shape) + " holds " + std::to_string(numel) + " elements but the " +
                                             TypedArrayName(kind) + " has " + std::to_string(array.ElementLength()));
    }
    bool share = info.Length() > 3 && info[3].ToBoolean().Value();
    at::Tensor tensor;
    if (share && numel > 0) {
      tensor = AddonState::Get(env).jsMemory->Wrap(array, shape, dtype);
    } else {
      tensor = at::empty(shape, at::TensorOptions().dtype(dtype));
      if (numel) std::memcpy(tensor.data_ptr(), static_cast<uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset(), array.ByteLength());
    }
    return Wrap(env, std::move(tensor));
  });
}

}  // namespace easyroutine
