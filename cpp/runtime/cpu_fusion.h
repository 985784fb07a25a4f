// TorchScript's CPU fuser (NNC, compiling fused groups with LLVM). It is off by default here:
// Debian's libtorch 2.6 hangs inside LLVMCodeGen on the second run of a Llama-like graph (RMSNorm,
// RoPE), in Python as in C++, and turning CPU fusion off avoids it. Users who want it turn it on.
// The setting is libtorch's own, process-wide.
#pragma once

namespace easyroutine {

// Applies the default (off) once per process, so a worker starting later keeps the user's choice.
void ApplyCpuFusionDefault();
void SetCpuFusion(bool enabled);
bool CpuFusionEnabled();

}  // namespace easyroutine
