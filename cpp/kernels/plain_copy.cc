#include "kernels/plain_copy.h"

#include <ATen/EmptyTensor.h>

#include <cstring>

namespace easyroutine {

namespace {

// The first dimension from which `value` is laid out contiguously to its end (dim() when none is).
int64_t ContiguousFrom(const at::Tensor& value) {
  int64_t from = value.dim();
  int64_t expected = 1;
  for (int64_t d = value.dim() - 1; d >= 0; --d) {
    if (value.size(d) != 1 && value.stride(d) != expected) break;
    expected *= value.size(d);
    from = d;
  }
  return from;
}

// Copies the block of dimensions [first, dim) at `src` to `dst`, contiguously; returns the end of
// what it wrote. Dimensions from `contiguousFrom` on are one memcpy.
char* CopyBlock(const char* src, const at::Tensor& value, int64_t first, int64_t contiguousFrom, size_t item, char* dst) {
  if (first >= contiguousFrom) {
    size_t bytes = item;
    for (int64_t d = first; d < value.dim(); ++d) bytes *= static_cast<size_t>(value.size(d));
    std::memcpy(dst, src, bytes);
    return dst + bytes;
  }
  const int64_t stride = value.stride(first) * static_cast<int64_t>(item);
  for (int64_t i = 0; i < value.size(first); ++i) dst = CopyBlock(src + i * stride, value, first + 1, contiguousFrom, item, dst);
  return dst;
}

at::Tensor Empty(at::IntArrayRef sizes, at::ScalarType dtype) { return at::Tensor(at::detail::empty_cpu(sizes, dtype)); }

}  // namespace

bool PlainCopyable(const at::Tensor& value) {
  return value.defined() && value.device().is_cpu() && value.layout() == at::kStrided && !value.is_quantized() && !value.is_conj() && !value.is_neg() &&
         value.dim() >= 2 && (value.size(-1) == 1 || value.stride(-1) == 1);
}

at::Tensor GatherTokens(const at::Tensor& tokens, const std::vector<std::vector<int64_t>>& rows, bool iota, bool flattenRest) {
  const int64_t batch = tokens.size(0);
  const int64_t length = tokens.size(1);
  const int64_t n = static_cast<int64_t>(rows[0].size());
  std::vector<int64_t> sizes = tokens.sizes().vec();
  sizes[1] = n;
  if (flattenRest) {
    int64_t rest = 1;
    for (size_t d = 2; d < sizes.size(); ++d) rest *= sizes[d];
    sizes.resize(2);
    sizes.push_back(rest);
  }
  at::Tensor out = Empty(sizes, tokens.scalar_type());
  const size_t item = tokens.element_size();
  const int64_t contiguousFrom = ContiguousFrom(tokens);
  const char* src = static_cast<const char*>(tokens.data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
  for (int64_t b = 0; b < batch; ++b) {
    const std::vector<int64_t>& row = rows[static_cast<size_t>(b) % rows.size()];
    const char* base = src + b * tokens.stride(0) * static_cast<int64_t>(item);
    if (contiguousFrom <= 1 && iota && n == length) {
      // the whole sequence of this batch row is one block
      dst = CopyBlock(base, tokens, 1, contiguousFrom, item, dst);
      continue;
    }
    for (int64_t p : row) dst = CopyBlock(base + p * tokens.stride(1) * static_cast<int64_t>(item), tokens, 2, contiguousFrom, item, dst);
  }
  return out;
}

std::vector<at::Tensor> GatherPatternHeads(const at::Tensor& pattern, const std::vector<int64_t>& heads, const std::vector<std::vector<int64_t>>& rows, bool iota) {
  const int64_t batch = pattern.size(0);
  const int64_t n = static_cast<int64_t>(rows[0].size());
  const int64_t perHead = batch * n * n;
  at::Tensor all = Empty({static_cast<int64_t>(heads.size()), batch, n, n}, pattern.scalar_type());
  const size_t item = pattern.element_size();
  const int64_t queryStride = pattern.stride(2) * static_cast<int64_t>(item);
  const int64_t keyStride = pattern.stride(3) * static_cast<int64_t>(item);
  const bool keysContiguous = pattern.size(3) == 1 || pattern.stride(3) == 1;
  const bool allKeys = keysContiguous && iota && n == pattern.size(3);
  const bool wholeBlock = allKeys && n == pattern.size(2) && queryStride == pattern.size(3) * static_cast<int64_t>(item);
  char* dst = static_cast<char*>(all.data_ptr());
  for (int64_t head : heads) {
    const char* src = static_cast<const char*>(pattern.data_ptr()) + head * pattern.stride(1) * static_cast<int64_t>(item);
    for (int64_t b = 0; b < batch; ++b) {
      const std::vector<int64_t>& row = rows[static_cast<size_t>(b) % rows.size()];
      const char* base = src + b * pattern.stride(0) * static_cast<int64_t>(item);
      if (wholeBlock) {
        std::memcpy(dst, base, static_cast<size_t>(n * n) * item);
        dst += n * n * static_cast<int64_t>(item);
        continue;
      }
      for (int64_t q : row) {
        const char* query = base + q * queryStride;
        if (allKeys) {
          std::memcpy(dst, query, static_cast<size_t>(n) * item);
          dst += n * static_cast<int64_t>(item);
          continue;
        }
        for (int64_t k : row) {
          std::memcpy(dst, query + k * keyStride, item);
          dst += item;
        }
      }
    }
  }
  // one tensor per head over its part of the allocation, made directly: a select() per head would
  // dispatch an op and attach autograd view metadata
  std::vector<at::Tensor> out;
  out.reserve(heads.size());
  for (size_t h = 0; h < heads.size(); ++h) {
    auto impl = c10::make_intrusive<c10::TensorImpl>(c10::Storage(all.storage()), all.key_set(), all.dtype());
    const int64_t sizes[] = {batch, n, n};
    const int64_t strides[] = {n * n, n, 1};
    impl->set_sizes_and_strides(c10::IntArrayRef(sizes), c10::IntArrayRef(strides));
    impl->set_storage_offset(static_cast<int64_t>(h) * perHead);
    out.emplace_back(std::move(impl));
  }
  return out;
}

}  // namespace easyroutine
