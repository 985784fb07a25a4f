#include "runtime/cpu_allocator.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace easyroutine {

namespace {

constexpr size_t kAlignment = 64;

// The byte before the data holds its distance from the start of the block (16 to 64: malloc's blocks
// are 16-byte aligned), so the data pointer alone frees it, as libtorch's raw interface requires.
void FreeData(void* data) {
  if (data == nullptr) return;
  auto* bytes = static_cast<unsigned char*>(data);
  std::free(bytes - bytes[-1]);
}

class AlignedMallocAllocator final : public c10::Allocator {
 public:
  // libtorch before 2.3 declares allocate const and later versions do not: each overrides its own.
  c10::DataPtr allocate(size_t nbytes) const { return Allocate(nbytes); }
  c10::DataPtr allocate(size_t nbytes) { return Allocate(nbytes); }
  c10::DeleterFnPtr raw_deleter() const override { return &FreeData; }
  // Pure virtual since libtorch 2.3 (lazy clones copy through it); a plain method before.
  void copy_data(void* dest, const void* src, std::size_t count) const { std::memcpy(dest, src, count); }

 private:
  static c10::DataPtr Allocate(size_t nbytes) {
    const c10::Device cpu(c10::DeviceType::CPU);
    if (nbytes == 0) return {nullptr, nullptr, &FreeData, cpu};
    TORCH_CHECK(nbytes <= SIZE_MAX - kAlignment, "cannot allocate ", nbytes, " bytes of CPU memory");
    auto* block = static_cast<unsigned char*>(std::malloc(nbytes + kAlignment));
    TORCH_CHECK(block != nullptr, "out of CPU memory: failed to allocate ", nbytes, " bytes");
    const auto address = reinterpret_cast<uintptr_t>(block);
    // the next aligned address after the block's first byte, so the offset byte fits before it
    const size_t offset = kAlignment - (address & (kAlignment - 1));
    unsigned char* data = block + offset;
    data[-1] = static_cast<unsigned char>(offset);
    return {data, data, &FreeData, cpu};
  }
};

}  // namespace

void InstallCpuAllocator() {
  static std::once_flag once;
  // Never destroyed: tensors freed during process exit still reach it.
  static auto* allocator = new AlignedMallocAllocator();
  std::call_once(once, [] { c10::SetCPUAllocator(allocator, /*priority=*/1); });
}

}  // namespace easyroutine
