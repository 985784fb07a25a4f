#include "tensor/js_memory.h"

namespace easyroutine {

struct JsMemoryReleaser::Context {
  napi_ref array;
  std::weak_ptr<JsMemoryReleaser> releaser;
};

std::shared_ptr<JsMemoryReleaser> JsMemoryReleaser::Create(Napi::Env env) {
  std::shared_ptr<JsMemoryReleaser> releaser(new JsMemoryReleaser(env));
  releaser->drainer_ = std::make_unique<ThreadSafeFunction>(env, "easyroutine:release-js-memory", releaser.get(),
                                                           &JsMemoryReleaser::Drain);
  return releaser;
}

JsMemoryReleaser::~JsMemoryReleaser() { Close(); }

void JsMemoryReleaser::Close() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closed_) return;
  closed_ = true;
  pending_.clear();  // the environment deletes its own references on teardown
  if (drainer_) drainer_->Release();
}

at::Tensor JsMemoryReleaser::Wrap(Napi::TypedArray array, at::IntArrayRef sizes, at::ScalarType dtype) {
  Napi::ArrayBuffer buffer = array.ArrayBuffer();
  void* data = static_cast<uint8_t*>(buffer.Data()) + array.ByteOffset();
  size_t nbytes = array.ByteLength();
  napi_ref ref;
  NAPI_THROW_IF_FAILED(env_, napi_create_reference(env_, array, 1, &ref), at::Tensor());
  auto* context = new Context{ref, weak_from_this()};
  c10::Storage storage(c10::Storage::use_byte_size_t(), static_cast<int64_t>(nbytes),
                       at::DataPtr(data, context, &JsMemoryReleaser::Delete, at::Device(at::kCPU)),
                       /*allocator=*/nullptr, /*resizable=*/false);
  return at::empty({0}, at::TensorOptions().dtype(dtype)).set_(storage, 0, sizes);
}

napi_ref JsMemoryReleaser::OwnerOf(const c10::Storage& storage) {
  const at::DataPtr& ptr = storage.data_ptr();
  if (ptr.get_deleter() != &JsMemoryReleaser::Delete) return nullptr;
  return static_cast<Context*>(ptr.get_context())->array;
}

void JsMemoryReleaser::Delete(void* raw) {
  std::unique_ptr<Context> context(static_cast<Context*>(raw));
  if (auto releaser = context->releaser.lock()) releaser->Release(context->array);
}

void JsMemoryReleaser::Release(napi_ref ref) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (closed_) return;
  if (std::this_thread::get_id() == jsThread_) {
    lock.unlock();
    napi_delete_reference(env_, ref);
    return;
  }
  pending_.push_back(ref);
  if (pending_.size() == 1) drainer_->Call(nullptr, napi_tsfn_nonblocking);
}

void JsMemoryReleaser::Drain(napi_env env, napi_value, void* raw, void*) {
  if (!env) return;
  auto* self = static_cast<JsMemoryReleaser*>(raw);
  std::vector<napi_ref> refs;
  {
    std::lock_guard<std::mutex> lock(self->mutex_);
    if (self->closed_) return;
    refs.swap(self->pending_);
  }
  for (napi_ref ref : refs) napi_delete_reference(env, ref);
}

}  // namespace easyroutine
