#include "runtime/cpu_allocator.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>

namespace easyroutine {

namespace {

constexpr size_t kAlignment = 64;

// The 16 bytes before the data hold the size asked for (8 bytes, so a loaded model's storages can be
// checked against the records they were read from: model/storage_check) and, in the last byte, the
// data's distance from the start of the block (16 to 79), so the data pointer alone frees it, as
// libtorch's raw interface requires.
constexpr size_t kHeader = 16;

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
    TORCH_CHECK(nbytes <= SIZE_MAX - kAlignment - kHeader, "cannot allocate ", nbytes, " bytes of CPU memory");
    auto* block = static_cast<unsigned char*>(std::malloc(nbytes + kAlignment + kHeader));
    TORCH_CHECK(block != nullptr, "out of CPU memory: failed to allocate ", nbytes, " bytes");
    const auto address = reinterpret_cast<uintptr_t>(block);
    // the first aligned address with room for the header before it
    const size_t offset = ((address + kHeader + kAlignment - 1) & ~(kAlignment - 1)) - address;
    unsigned char* data = block + offset;
    const uint64_t size = nbytes;
    std::memcpy(data - kHeader, &size, sizeof size);
    data[-1] = static_cast<unsigned char>(offset);
    return {data, data, &FreeData, cpu};
  }
};

}  // namespace

std::optional<size_t> CpuAllocationBytes(const c10::DataPtr& data) {
  if (data.get_deleter() != &FreeData || data.get() == nullptr) return std::nullopt;
  uint64_t size = 0;
  std::memcpy(&size, static_cast<const unsigned char*>(data.get()) - kHeader, sizeof size);
  return static_cast<size_t>(size);
}

void InstallCpuAllocator() {
  static std::once_flag once;
  // Never destroyed: tensors freed during process exit still reach it.
  static auto* allocator = new AlignedMallocAllocator();
  std::call_once(once, [] { c10::SetCPUAllocator(allocator, /*priority=*/1); });
}

}  // namespace easyroutine
