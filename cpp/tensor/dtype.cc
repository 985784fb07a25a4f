#include "tensor/dtype.h"

#include <torch/cuda.h>

#include <regex>

#include "js/errors.h"

namespace easyroutine {

namespace {
struct DTypeInfo {
  const char* name;
  at::ScalarType type;
  napi_typedarray_type kind;
};
const DTypeInfo kDTypes[] = {
    {"float32", at::kFloat, napi_float32_array},  {"float64", at::kDouble, napi_float64_array},
    {"float16", at::kHalf, napi_uint16_array},    {"bfloat16", at::kBFloat16, napi_uint16_array},
    {"int64", at::kLong, napi_bigint64_array},    {"int32", at::kInt, napi_int32_array},
    {"int16", at::kShort, napi_int16_array},      {"int8", at::kChar, napi_int8_array},
    {"uint8", at::kByte, napi_uint8_array},       {"bool", at::kBool, napi_uint8_array},
};
const char* kAccepted = "float32, float64, float16, bfloat16, int64, int32, int16, int8, uint8, bool";
}  // namespace

std::string DTypeName(at::ScalarType type) {
  for (const auto& info : kDTypes) {
    if (info.type == type) return info.name;
  }
  std::string name = c10::toString(type);
  for (auto& c : name) c = static_cast<char>(std::tolower(c));
  return name;
}

at::ScalarType ParseDType(const std::string& name) {
  for (const auto& info : kDTypes) {
    if (name == info.name) return info.type;
  }
  throw TypedError(ErrorKind::DType, "unknown dtype '" + name + "'; accepted: " + kAccepted);
}

napi_typedarray_type TypedArrayKindOf(at::ScalarType type) {
  for (const auto& info : kDTypes) {
    if (info.type == type) return info.kind;
  }
  throw TypedError(ErrorKind::DType, "dtype " + DTypeName(type) + " has no TypedArray form; convert with to('float32') first (JS holds " +
                                         kAccepted + ")");
}

bool DefaultDTypeOf(napi_typedarray_type kind, at::ScalarType* type) {
  switch (kind) {
    case napi_float32_array: *type = at::kFloat; return true;
    case napi_float64_array: *type = at::kDouble; return true;
    case napi_bigint64_array: *type = at::kLong; return true;
    case napi_int32_array: *type = at::kInt; return true;
    case napi_int16_array: *type = at::kShort; return true;
    case napi_int8_array: *type = at::kChar; return true;
    case napi_uint8_array:
    case napi_uint8_clamped_array: *type = at::kByte; return true;
    default: return false;
  }
}

const char* TypedArrayName(napi_typedarray_type kind) {
  switch (kind) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
    default: return "TypedArray";
  }
}

at::Device ParseDevice(const std::string& name) {
  static const std::regex kPattern("^(cpu|cuda)(:(0|[1-9][0-9]{0,3}))?$");
  std::smatch match;
  if (!std::regex_match(name, match, kPattern)) {
    throw TypedError(ErrorKind::Device, "unknown device '" + name + "'; accepted: 'cpu', 'cuda', 'cuda:N'");
  }
  if (match[1] == "cpu") {
    if (match[2].matched && match[3] != "0") throw TypedError(ErrorKind::Device, "unknown device '" + name + "'; the CPU is 'cpu'");
    return at::Device(at::kCPU);
  }
  if (!torch::cuda::is_available()) {
    throw TypedError(ErrorKind::Device, "device '" + name + "' requested but CUDA is not available (" +
                                            (EASYROUTINE_LIBTORCH_CUDA ? "no usable GPU or driver found"
                                                                       : "this build's libtorch has no CUDA") +
                                            "); use 'cpu'");
  }
  int index = match[3].matched ? std::stoi(match[3].str()) : 0;
  int count = static_cast<int>(torch::cuda::device_count());
  if (index >= count) {
    throw TypedError(ErrorKind::Device, "device '" + name + "' requested but only " + std::to_string(count) +
                                            " CUDA device(s) exist (cuda:0 .. cuda:" + std::to_string(count - 1) + ")");
  }
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
}

std::string DeviceName(const at::Device& device) { return device.str(); }

}  // namespace easyroutine
