// The dtype and device vocabulary shared with JS: names, TypedArray kinds, parsing with typed errors.
#pragma once

#include <napi.h>
#include <torch/script.h>

#include <string>

namespace easyroutine {

// "float32", "int64", ... for the ten dtypes JS can hold; torch's own name for any other.
std::string DTypeName(at::ScalarType type);

// Parses a dtype name; throws a DType TypedError listing the accepted names.
at::ScalarType ParseDType(const std::string& name);

// The TypedArray kind that holds `type` (Uint16Array for float16/bfloat16, Uint8Array for bool);
// throws a DType TypedError for dtypes JS cannot hold.
napi_typedarray_type TypedArrayKindOf(at::ScalarType type);

// The dtype a TypedArray of `kind` holds without reinterpretation (Uint16Array has none: float16 and
// bfloat16 both use it, so the caller must name the dtype).
bool DefaultDTypeOf(napi_typedarray_type kind, at::ScalarType* type);
const char* TypedArrayName(napi_typedarray_type kind);

// "cpu", "cuda", "cuda:1"; throws a Device TypedError for malformed names and unavailable devices.
at::Device ParseDevice(const std::string& name);
std::string DeviceName(const at::Device& device);

}  // namespace easyroutine
