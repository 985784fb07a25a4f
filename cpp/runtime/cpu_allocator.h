// The CPU allocator for tensor memory in this process. libtorch's default allocator takes each block
// with posix_memalign(64), which glibc serves by carving an aligned block out of a larger chunk and
// returning the ends to the heap. In Node the ends are soon taken by small allocations that live
// until the event loop turns (the native side of JS handles: Node runs their finalizers only then), so
// a freed tensor block can no longer be merged back into a chunk large enough for the next aligned
// request of the same size. A loop of forwards that never yields then took fresh pages for every
// output (about 12 KB per forward on the bundled model, a page fault every few kilobytes). This
// allocator asks malloc for the size plus the alignment and aligns inside the block: a freed block
// fits the next request of the same size exactly. Same alignment as libtorch's (64 bytes).
#pragma once

#include <c10/core/Allocator.h>

#include <cstddef>
#include <optional>

namespace easyroutine {

// Makes the allocator libtorch's CPU allocator, once per process (it outlives every environment).
void InstallCpuAllocator();

// The bytes asked for when this allocator made `data`; nullopt for memory from anywhere else (and
// for empty allocations, which have no block).
std::optional<size_t> CpuAllocationBytes(const c10::DataPtr& data);

}  // namespace easyroutine
