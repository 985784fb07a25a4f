// Every tensor a loaded module can reach fits inside its storage. libtorch builds each tensor from a
// storage record (data/N, constants/N) and the sizes, strides and offset its pickle names, without
// comparing them with the record's length: a record shorter than its tensor (a truncated write, or a
// bad merge before the zip was rebuilt, every CRC right) loads, then forwards read past the storage
// (NaN, or a segfault on an empty record) and writes through parameters() corrupt the heap.
#pragma once

#include <string>

#include <torch/script.h>

namespace easyroutine {

// Checks the parameters, buffers and attributes of every submodule (tensors inside lists, tuples,
// dicts and objects too) and the tensor constants of every function in the module's compilation
// unit, against the bytes read into each storage (known for storages on the CPU, made by
// runtime/cpu_allocator: a model for another device is checked by loading it to the CPU first).
// Throws a ModelLoad TypedError naming the tensor, its storage record and both sizes.
void VerifyStorages(const torch::jit::Module& module, const std::string& path);

}  // namespace easyroutine
