#include "runtime/cpu_fusion.h"

#include <torch/script.h>

#include <mutex>

// Declared in torch/csrc/jit/codegen/fuser/interface.h, which Debian's libtorch-dev does not ship;
// exported with this signature by libtorch 1.13 and 2.x alike.
namespace torch {
namespace jit {
TORCH_API bool canFuseOnCPU();
TORCH_API void overrideCanFuseOnCPU(bool value);
}  // namespace jit
}  // namespace torch

namespace easyroutine {

void ApplyCpuFusionDefault() {
  static std::once_flag once;
  std::call_once(once, [] { torch::jit::overrideCanFuseOnCPU(false); });
}

void SetCpuFusion(bool enabled) { torch::jit::overrideCanFuseOnCPU(enabled); }

bool CpuFusionEnabled() { return torch::jit::canFuseOnCPU(); }

}  // namespace easyroutine
