#include "js/js_values.h"

#include <sstream>

namespace easyroutine {

Napi::Array ShapeArray(Napi::Env env, at::IntArrayRef sizes) {
  Napi::Array out = Napi::Array::New(env, sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) out.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(sizes[i])));
  return out;
}

std::string ShapeString(at::IntArrayRef sizes) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
  out << ']';
  return out.str();
}

Napi::Value Int64ToJs(Napi::Env env, int64_t value) {
  constexpr int64_t kSafe = (int64_t{1} << 53) - 1;
  if (value > kSafe || value < -kSafe) return Napi::BigInt::New(env, value);
  return Napi::Number::New(env, static_cast<double>(value));
}

}  // namespace easyroutine
