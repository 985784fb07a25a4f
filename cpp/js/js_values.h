// Small conversions between libtorch values and JS values shared by the bridge's classes.
#pragma once

#include <napi.h>
#include <torch/script.h>

#include <string>

namespace easyroutine {

// [2, 3] as a JS array of numbers.
Napi::Array ShapeArray(Napi::Env env, at::IntArrayRef sizes);
// "[2, 3]" for messages.
std::string ShapeString(at::IntArrayRef sizes);
// A number, or a BigInt beyond 2^53 where a number would lose precision.
Napi::Value Int64ToJs(Napi::Env env, int64_t value);

}  // namespace easyroutine
