#include "model/storage_check.h"

#include <algorithm>
#include <optional>
#include <unordered_set>

#include "js/errors.h"
#include "model/archive_check.h"
#include "runtime/cpu_allocator.h"

namespace easyroutine {

namespace {

class StorageChecker {
 public:
  explicit StorageChecker(const std::string& path) : path_(path) {}

  void Value(const c10::IValue& value, const std::string& where) {
    if (value.isTensor()) {
      Tensor(value.toTensor(), where);
    } else if (value.isTensorList()) {
      const auto list = value.toTensorList();
      for (size_t i = 0; i < list.size(); ++i) Tensor(list.get(i), where + "[" + std::to_string(i) + "]");
    } else if (value.isList()) {
      const auto list = value.toListRef();
      for (size_t i = 0; i < list.size(); ++i) Value(list[i], where + "[" + std::to_string(i) + "]");
    } else if (value.isTuple()) {
      const auto& elements = value.toTupleRef().elements();
      for (size_t i = 0; i < elements.size(); ++i) Value(elements[i], where + "[" + std::to_string(i) + "]");
    } else if (value.isGenericDict()) {
      size_t i = 0;
      for (const auto& item : value.toGenericDict()) {
        Value(item.key(), where + "{key " + std::to_string(i) + "}");
        Value(item.value(), where + "{value " + std::to_string(i) + "}");
        ++i;
      }
    } else if (value.isObject()) {
      // modules and other script objects; a module graph can share objects, and objects can cycle
      const auto object = value.toObject();
      if (!visited_.insert(object.get()).second) return;
      const auto type = object->type();
      for (size_t slot = 0; slot < object->slots().size(); ++slot) {
        std::string name = slot < type->numAttributes() ? type->getAttributeName(slot) : std::to_string(slot);
        Value(object->getSlot(slot), where.empty() ? name : where + "." + name);
      }
    }
  }

  void Constants(const torch::jit::Block* block, const std::string& function) {
    for (const torch::jit::Node* node : block->nodes()) {
      if (node->kind() == c10::prim::Constant && node->output()->type()->kind() == c10::TypeKind::TensorType) {
        if (auto constant = torch::jit::toIValue(node->output())) Value(*constant, "a tensor constant of " + function);
      }
      for (const torch::jit::Block* inner : node->blocks()) Constants(inner, function);
    }
  }

 private:
  void Tensor(const at::Tensor& tensor, const std::string& where) {
    if (!tensor.defined() || tensor.is_sparse() || !tensor.has_storage()) return;
    const c10::Storage& storage = tensor.storage();
    if (!storage || !storage.device().is_cpu()) return;
    // what the tensor and its storage claim, in bytes from the storage's start
    uint64_t needed = storage.nbytes();
    if (tensor.numel() > 0) {
      if (tensor.storage_offset() < 0) Fail(where, "has a negative storage offset");
      int64_t last = tensor.storage_offset();
      for (int64_t d = 0; d < tensor.dim(); ++d) {
        if (tensor.stride(d) < 0) Fail(where, "has a negative stride");
        last += (tensor.size(d) - 1) * tensor.stride(d);
      }
      needed = std::max<uint64_t>(needed, static_cast<uint64_t>(last + 1) * tensor.element_size());
    }
    if (needed == 0) return;
    // what was read into it: libtorch sizes a storage by what the pickle says and fills it with the
    // record, whatever the record's length, through the CPU allocator, which keeps the length
    const void* data = storage.data_ptr().get();
    std::optional<size_t> held = data == nullptr ? std::optional<size_t>(0) : CpuAllocationBytes(storage.data_ptr());
    if (!held || *held >= needed) return;
    std::string record = FindStorageRecord(path_, static_cast<const uint8_t*>(data), *held);
    Fail(where, "of shape " + c10::str(tensor.sizes()) + " (" + std::string(c10::toString(tensor.scalar_type())) + ") needs " +
                    std::to_string(needed) + " bytes but its storage record" + (record.empty() ? "" : " '" + record + "'") + " holds " +
                    std::to_string(*held) + " (the record was truncated or emptied)");
  }

  [[noreturn]] void Fail(const std::string& where, const std::string& what) const {
    throw TypedError(ErrorKind::ModelLoad, "loadModel: '" + path_ + "' is damaged: " + (where.empty() ? "a tensor" : "'" + where + "'") +
                                               " " + what);
  }

  std::string path_;
  std::unordered_set<const c10::ivalue::Object*> visited_;
};

}  // namespace

void VerifyStorages(const torch::jit::Module& module, const std::string& path) {
  StorageChecker checker(path);
  checker.Value(module._ivalue(), "");
  for (torch::jit::Function* function : module._ivalue()->compilation_unit()->get_functions()) {
    if (auto* graphFunction = torch::jit::tryToGraphFunction(*function)) {
      checker.Constants(graphFunction->graph()->block(), function->qualname().qualifiedName());
    }
  }
}

}  // namespace easyroutine
