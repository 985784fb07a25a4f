// JS values <-> TorchScript IValues. Inputs are converted against the method's declared schema, so a
// JS array becomes a tuple or a list as the model expects; outputs keep their structure (tuples and
// lists as arrays, string-keyed dicts as objects, other dicts as Maps, tensors as handles).
#pragma once

#include <napi.h>
#include <torch/script.h>

#include <string>
#include <vector>

namespace easyroutine {

// The arguments for `schema` (its `self` excluded) from a JS array of positional values.
std::vector<c10::IValue> ArgumentsFromJs(Napi::Env env, const c10::FunctionSchema& schema, const Napi::Array& args);

c10::IValue ToIValue(Napi::Env env, const Napi::Value& value, const c10::TypePtr& type, const std::string& where);
Napi::Value FromIValue(Napi::Env env, const c10::IValue& value);

// "Tensor input_ids, Tensor? mask=None": the signature as users see it in errors.
std::string Signature(const c10::FunctionSchema& schema);

}  // namespace easyroutine
