#include "js/class_tag.h"

#include <cstdint>

namespace easyroutine {

namespace {

// One 128-bit tag per class: a fixed upper half for this addon, the class in the lower half.
napi_type_tag TagOf(ClassTag tag) { return napi_type_tag{0x6561737972746e00ULL + static_cast<uint64_t>(tag), 0x9b1f5c2e7a40d813ULL}; }

}  // namespace

void TagObject(const Napi::Object& object, ClassTag tag) {
  const napi_type_tag typeTag = TagOf(tag);
  object.TypeTag(&typeTag);
}

bool HasTag(const Napi::Value& value, ClassTag tag) {
  if (!value.IsObject()) return false;
  const napi_type_tag typeTag = TagOf(tag);
  return value.As<Napi::Object>().CheckTypeTag(&typeTag);
}

}  // namespace easyroutine
