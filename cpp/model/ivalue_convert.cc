#include "model/ivalue_convert.h"

#include <cmath>

#include "js/errors.h"
#include "js/js_values.h"
#include "tensor/tensor_handle.h"

namespace easyroutine {

namespace {

std::string JsTypeName(Napi::Env env, const Napi::Value& value) {
  if (value.IsNull()) return "null";
  if (value.IsUndefined()) return "undefined";
  if (value.IsArray()) return "an array";
  if (TensorHandle::Is(env, value)) return "a Tensor";
  if (value.IsTypedArray()) return "a TypedArray (wrap it with tensor() first)";
  switch (value.Type()) {
    case napi_number: return "a number";
    case napi_string: return "a string";
    case napi_boolean: return "a boolean";
    case napi_bigint: return "a bigint";
    case napi_function: return "a function";
    case napi_symbol: return "a symbol";
    default: return "an object";
  }
}

[[noreturn]] void Mismatch(Napi::Env env, const std::string& where, const c10::TypePtr& type, const Napi::Value& value) {
  throw TypedError(ErrorKind::InvalidArgument, where + ": expected " + type->annotation_str() + ", got " + JsTypeName(env, value));
}

bool IsSafeBigInt(const Napi::Value& value, int64_t* out) {
  bool lossless = false;
  *out = value.As<Napi::BigInt>().Int64Value(&lossless);
  return lossless;
}

c10::IValue Infer(Napi::Env env, const Napi::Value& value, const std::string& where) {
  if (value.IsNull() || value.IsUndefined()) return c10::IValue();
  if (TensorHandle::Is(env, value)) return TensorHandle::From(env, value, where);
  if (value.IsBoolean()) return value.As<Napi::Boolean>().Value();
  if (value.IsNumber()) {
    double d = value.As<Napi::Number>().DoubleValue();
    if (std::floor(d) == d && std::abs(d) < 9007199254740992.0) return static_cast<int64_t>(d);
    return d;
  }
  if (value.IsString()) return value.As<Napi::String>().Utf8Value();
  throw TypedError(ErrorKind::InvalidArgument, where + ": cannot pass " + JsTypeName(env, value) + " where the model accepts Any");
}

}  // namespace

c10::IValue ToIValue(Napi::Env env, const Napi::Value& value, const c10::TypePtr& type, const std::string& where) {
  switch (type->kind()) {
    case c10::TypeKind::TensorType:
      if (!TensorHandle::Is(env, value)) Mismatch(env, where, type, value);
      return TensorHandle::From(env, value, where);
    case c10::TypeKind::OptionalType:
      if (value.IsNull() || value.IsUndefined()) return c10::IValue();
      return ToIValue(env, value, type->expectRef<c10::OptionalType>().getElementType(), where);
    case c10::TypeKind::NoneType:
      if (!value.IsNull() && !value.IsUndefined()) Mismatch(env, where, type, value);
      return c10::IValue();
    case c10::TypeKind::IntType: {
      int64_t big;
      if (value.IsBigInt() && IsSafeBigInt(value, &big)) return big;
      if (!value.IsNumber()) Mismatch(env, where, type, value);
      double d = value.As<Napi::Number>().DoubleValue();
      if (!std::isfinite(d) || std::floor(d) != d) throw TypedError(ErrorKind::InvalidArgument, where + ": expected an integer, got " + std::to_string(d));
      return static_cast<int64_t>(d);
    }
    case c10::TypeKind::FloatType:
    case c10::TypeKind::NumberType:
      if (!value.IsNumber()) Mismatch(env, where, type, value);
      return value.As<Napi::Number>().DoubleValue();
    case c10::TypeKind::BoolType:
      if (!value.IsBoolean()) Mismatch(env, where, type, value);
      return value.As<Napi::Boolean>().Value();
    case c10::TypeKind::StringType:
      if (!value.IsString()) Mismatch(env, where, type, value);
      return value.As<Napi::String>().Utf8Value();
    case c10::TypeKind::ListType: {
      if (!value.IsArray()) Mismatch(env, where, type, value);
      auto array = value.As<Napi::Array>();
      c10::TypePtr element = type->expectRef<c10::ListType>().getElementType();
      c10::impl::GenericList list(element);
      list.reserve(array.Length());
      for (uint32_t i = 0; i < array.Length(); ++i) {
        list.push_back(ToIValue(env, array.Get(i), element, where + "[" + std::to_string(i) + "]"));
      }
      return list;
    }
    case c10::TypeKind::TupleType: {
      if (!value.IsArray()) Mismatch(env, where, type, value);
      auto array = value.As<Napi::Array>();
      const auto& elements = type->expectRef<c10::TupleType>().elements();
      if (array.Length() != elements.size()) {
        throw TypedError(ErrorKind::InvalidArgument, where + ": expected " + type->annotation_str() + " with " +
                                                         std::to_string(elements.size()) + " elements, got an array of " +
                                                         std::to_string(array.Length()));
      }
      std::vector<c10::IValue> items;
      for (uint32_t i = 0; i < array.Length(); ++i) {
        items.push_back(ToIValue(env, array.Get(i), elements[i], where + "[" + std::to_string(i) + "]"));
      }
      return c10::ivalue::Tuple::create(std::move(items));
    }
    case c10::TypeKind::DictType: {
      if (!value.IsObject() || value.IsArray() || TensorHandle::Is(env, value)) Mismatch(env, where, type, value);
      const auto& dictType = type->expectRef<c10::DictType>();
      if (dictType.getKeyType()->kind() != c10::TypeKind::StringType) {
        throw TypedError(ErrorKind::InvalidArgument, where + ": only string-keyed dicts can be passed from JS, the model wants " + type->annotation_str());
      }
      c10::impl::GenericDict dict(dictType.getKeyType(), dictType.getValueType());
      auto object = value.As<Napi::Object>();
      Napi::Array keys = object.GetPropertyNames();
      for (uint32_t i = 0; i < keys.Length(); ++i) {
        std::string key = keys.Get(i).ToString().Utf8Value();
        dict.insert(key, ToIValue(env, object.Get(key), dictType.getValueType(), where + "." + key));
      }
      return dict;
    }
    case c10::TypeKind::AnyType:
      return Infer(env, value, where);
    default:
      throw TypedError(ErrorKind::InvalidArgument, where + ": the model takes " + type->annotation_str() + ", which cannot be passed from JS");
  }
}

std::vector<c10::IValue> ArgumentsFromJs(Napi::Env env, const c10::FunctionSchema& schema, const Napi::Array& args) {
  const auto& declared = schema.arguments();
  size_t first = (!declared.empty() && declared[0].name() == "self") ? 1 : 0;
  size_t expected = declared.size() - first;
  if (args.Length() > expected) {
    throw TypedError(ErrorKind::InvalidArgument, schema.name() + "(" + Signature(schema) + ") takes " + std::to_string(expected) +
                                                     " argument(s) but got " + std::to_string(args.Length()));
  }
  std::vector<c10::IValue> stack;
  stack.reserve(expected);
  for (size_t i = first; i < declared.size(); ++i) {
    const c10::Argument& arg = declared[i];
    uint32_t position = static_cast<uint32_t>(i - first);
    std::string where = "argument " + std::to_string(position) + " '" + arg.name() + "'";
    if (position < args.Length() && !args.Get(position).IsUndefined()) {
      stack.push_back(ToIValue(env, args.Get(position), arg.type(), where));
    } else if (arg.default_value()) {
      stack.push_back(*arg.default_value());
    } else {
      throw TypedError(ErrorKind::InvalidArgument, schema.name() + "(" + Signature(schema) + ") is missing " + where + " (" +
                                                       arg.type()->annotation_str() + ")");
    }
  }
  return stack;
}

std::string Signature(const c10::FunctionSchema& schema) {
  std::string out;
  for (const auto& arg : schema.arguments()) {
    if (arg.name() == "self") continue;
    if (!out.empty()) out += ", ";
    out += arg.type()->annotation_str() + " " + arg.name();
  }
  return out;
}

Napi::Value FromIValue(Napi::Env env, const c10::IValue& value) {
  if (value.isTensor()) {
    const at::Tensor& t = value.toTensor();
    return t.defined() ? Napi::Value(TensorHandle::Wrap(env, t)) : env.Null();
  }
  if (value.isNone()) return env.Null();
  if (value.isBool()) return Napi::Boolean::New(env, value.toBool());
  if (value.isInt()) return Int64ToJs(env, value.toInt());
  if (value.isDouble()) return Napi::Number::New(env, value.toDouble());
  if (value.isString()) return Napi::String::New(env, value.toStringRef());
  if (value.isDevice()) return Napi::String::New(env, value.toDevice().str());
  if (value.isTuple()) {
    const auto& elements = value.toTupleRef().elements();
    Napi::Array out = Napi::Array::New(env, elements.size());
    for (size_t i = 0; i < elements.size(); ++i) out.Set(static_cast<uint32_t>(i), FromIValue(env, elements[i]));
    return out;
  }
  if (value.isList()) {
    c10::List<c10::IValue> list = value.toList();
    Napi::Array out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) out.Set(static_cast<uint32_t>(i), FromIValue(env, list.get(i)));
    return out;
  }
  if (value.isGenericDict()) {
    c10::Dict<c10::IValue, c10::IValue> dict = value.toGenericDict();
    bool stringKeys = true;
    for (const auto& entry : dict) stringKeys = stringKeys && entry.key().isString();
    if (stringKeys) {
      Napi::Object out = Napi::Object::New(env);
      for (const auto& entry : dict) out.Set(entry.key().toStringRef(), FromIValue(env, entry.value()));
      return out;
    }
    Napi::Function mapClass = env.Global().Get("Map").As<Napi::Function>();
    Napi::Object map = mapClass.New({});
    Napi::Function set = map.Get("set").As<Napi::Function>();
    for (const auto& entry : dict) set.Call(map, {FromIValue(env, entry.key()), FromIValue(env, entry.value())});
    return map;
  }
  throw TypedError(ErrorKind::Torch, "the model returned a " + value.tagKind() + ", which has no JS form");
}

}  // namespace easyroutine
