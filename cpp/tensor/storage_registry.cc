#include "tensor/storage_registry.h"

#include <cstring>

#include "js/errors.h"
#include "tensor/js_memory.h"

namespace easyroutine {

namespace {
c10::StorageImpl* KeyOf(const at::Tensor& tensor) { return tensor.storage().unsafeGetStorageImpl(); }
bool Tracked(const at::Tensor& tensor) {
  return tensor.defined() && tensor.device().is_cpu() && tensor.has_storage();
}
}  // namespace

// Keeps the storage alive while V8 holds an external ArrayBuffer over it.
struct StorageRegistry::BufferHint {
  c10::Storage storage;
  std::weak_ptr<StorageRegistry> registry;
  uint64_t id;
};

void StorageRegistry::Adjust(int64_t delta, bool storageBytes) {
  if (storageBytes) accountedBytes_ += delta;
  if (!closed_ && delta != 0) {
    int64_t ignored;
    napi_adjust_external_memory(env_, delta, &ignored);
  }
}

int64_t StorageRegistry::BytesOf(const at::Tensor& tensor) { return Tracked(tensor) ? static_cast<int64_t>(tensor.storage().nbytes()) : 0; }

void StorageRegistry::Retain(const at::Tensor& tensor) {
  if (!Tracked(tensor)) return;
  Entry& entry = entries_[KeyOf(tensor)];
  if (entry.handles++ == 0) {
    entry.bytes = static_cast<int64_t>(tensor.storage().nbytes());
    Adjust(entry.bytes);
  }
}

void StorageRegistry::Release(const at::Tensor& tensor) {
  if (!Tracked(tensor)) return;
  auto it = entries_.find(KeyOf(tensor));
  if (it == entries_.end() || it->second.handles == 0) return;
  if (--it->second.handles == 0) {
    Adjust(-it->second.bytes);
    it->second.bytes = 0;
    EraseIfUnused(it);
  }
}

void StorageRegistry::EraseIfUnused(std::unordered_map<c10::StorageImpl*, Entry>::iterator it) {
  if (it->second.handles == 0 && it->second.bufferId == 0) entries_.erase(it);
}

StorageRegistry::View StorageRegistry::BufferFor(const at::Tensor& tensor) {
  const c10::Storage& storage = tensor.storage();
  size_t nbytes = storage.nbytes();
  void* data = storage.data_ptr().get();
  if (nbytes == 0 || data == nullptr) return {Napi::ArrayBuffer::New(env_, 0), 0, true};

  // Memory that came from JS is already an ArrayBuffer: hand back that very buffer.
  if (napi_ref owner = JsMemoryReleaser::OwnerOf(storage)) {
    napi_value value;
    NAPI_THROW_IF_FAILED(env_, napi_get_reference_value(env_, owner, &value), View{});
    Napi::TypedArray array(env_, value);
    return {array.ArrayBuffer(), array.ByteOffset(), true};
  }

  Entry& entry = entries_[KeyOf(tensor)];
  if (entry.bufferId != 0 && !entry.buffer.IsEmpty()) {
    Napi::ArrayBuffer alive = entry.buffer.Value();
    if (!alive.IsEmpty()) return {alive, 0, true};
  }

#ifndef NODE_API_NO_EXTERNAL_BUFFERS_ALLOWED
  if (!externalRefused_) {
    uint64_t id = nextBufferId_++;
    auto* hint = new BufferHint{storage, weak_from_this(), id};
    napi_value value;
    napi_status status = napi_create_external_arraybuffer(env_, data, nbytes, &FinalizeBuffer, hint, &value);
    if (status == napi_ok) {
      Napi::ArrayBuffer buffer(env_, value);
      entry.buffer = Napi::Weak(buffer);
      entry.bufferId = id;
      return {buffer, 0, true};
    }
    delete hint;
    if (status != napi_no_external_buffers_allowed) NAPI_THROW_IF_FAILED(env_, status, View{});
    externalRefused_ = true;
  }
#endif
  EraseIfUnused(entries_.find(KeyOf(tensor)));
  Napi::ArrayBuffer copy = Napi::ArrayBuffer::New(env_, nbytes);
  std::memcpy(copy.Data(), data, nbytes);
  return {copy, 0, false};
}

void StorageRegistry::FinalizeBuffer(napi_env, void*, void* raw) {
  std::unique_ptr<BufferHint> hint(static_cast<BufferHint*>(raw));
  if (auto registry = hint->registry.lock()) {
    registry->BufferFinalized(hint->storage.unsafeGetStorageImpl(), hint->id);
  }
}

void StorageRegistry::BufferFinalized(c10::StorageImpl* key, uint64_t id) {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.bufferId != id) return;
  it->second.bufferId = 0;
  it->second.buffer.Reset();
  EraseIfUnused(it);
}

}  // namespace easyroutine
