// Type tags of the addon's classes, for telling what a JS value passed in is. Checking a tag is a
// private-property lookup; InstanceOf, which these checks used before, calls the constructor's
// @@hasInstance through V8's builtins, ~0.7 us each on a VM, and a forward with extraction ran
// several (its hook set, its inputs, each kernel whose results it took).
#pragma once

#include <napi.h>

namespace easyroutine {

enum class ClassTag { Tensor, AbortToken, Kernel, TensorPack, HookSet };

// Marks `object` as an instance of `tag`'s class (once, in the class's constructor).
void TagObject(const Napi::Object& object, ClassTag tag);

// Whether `value` is an object its constructor tagged `tag`.
bool HasTag(const Napi::Value& value, ClassTag tag);

}  // namespace easyroutine
