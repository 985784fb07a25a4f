// Per-environment bookkeeping of the CPU storages that JS handles hold:
//  - external-memory accounting: V8 is told about each storage's bytes once, however many handles
//    (views, slices, aliases) share it, so GC pressure reflects what handles really keep alive;
//  - one ArrayBuffer per storage: every `data` view of a storage is a TypedArray at an offset into the
//    same ArrayBuffer, never a second external buffer over the same pointer (V8 forbids that).
#pragma once

#include <napi.h>
#include <torch/script.h>

#include <cstdint>
#include <memory>
#include <unordered_map>

namespace easyroutine {

class StorageRegistry : public std::enable_shared_from_this<StorageRegistry> {
 public:
  explicit StorageRegistry(Napi::Env env) : env_(env) {}

  // A JS handle started or stopped holding `tensor`. Only CPU storages are counted.
  void Retain(const at::Tensor& tensor);
  void Release(const at::Tensor& tensor);
  // Bytes a holder other than a handle keeps (a pack's slots), told to V8 as they are.
  void Account(int64_t delta) { Adjust(delta); }
  // What Retain would count for `tensor` alone: its CPU storage's bytes, else 0.
  static int64_t BytesOf(const at::Tensor& tensor);

  struct View {
    Napi::ArrayBuffer buffer;
    size_t byteOffset;  // of the storage's first byte inside `buffer`
    bool shared;        // false: a copy, because this runtime refuses external buffers
  };
  // The ArrayBuffer through which JS sees `tensor`'s storage (CPU only).
  View BufferFor(const at::Tensor& tensor);

  // A JS handle object was created / finalized. Each live handle object is reported to V8 at about
  // what its native parts take (they are freed only when V8 collects it), so that many live handles
  // press on GC like the memory they hold. (A 16 KB cost once stood in for the malloc heap that such
  // parts pinned between tensor buffers; runtime/cpu_allocator.h removes that at its cause, and the large
  // cost made V8 run a full GC every few thousand forwards.)
  void HandleCreated() { Adjust(kHandleCost, false); }
  void HandleFinalized() { Adjust(-kHandleCost, false); }
  static constexpr int64_t kHandleCost = 512;

  // Bytes currently reported to V8 for storages and number of distinct storages held by handles.
  int64_t accountedBytes() const { return accountedBytes_; }
  size_t storageCount() const { return entries_.size(); }
  bool externalBuffersRefused() const { return externalRefused_; }

  // The environment is being torn down: stop calling into it.
  void Close() { closed_ = true; }

 private:
  struct Entry {
    int handles = 0;
    int64_t bytes = 0;
    Napi::Reference<Napi::ArrayBuffer> buffer;  // weak
    uint64_t bufferId = 0;                      // 0: no external buffer alive
  };
  struct BufferHint;
  static void FinalizeBuffer(napi_env env, void* data, void* hint);
  void BufferFinalized(c10::StorageImpl* key, uint64_t id);
  void EraseIfUnused(std::unordered_map<c10::StorageImpl*, Entry>::iterator it);
  void Adjust(int64_t delta, bool storageBytes = true);

  napi_env env_;
  std::unordered_map<c10::StorageImpl*, Entry> entries_;
  int64_t accountedBytes_ = 0;
  uint64_t nextBufferId_ = 1;
  bool externalRefused_ = false;
  bool closed_ = false;
};

}  // namespace easyroutine
