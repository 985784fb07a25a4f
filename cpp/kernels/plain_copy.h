// Gathers of the extraction kernels done as plain memory copies on CPU.
//
// A small model's extraction is dominated by aten's fixed cost per op (dispatch, TensorIterator,
// autograd view metadata: about a microsecond each on a 2-core VM), not by the bytes it moves: the
// bundled model's extraction of every resid_out and pattern ran ~20 ops per forward (detach, clone,
// a select per head) to copy 100 KB. These paths allocate each result once and copy into it, with no
// op dispatched; on other devices, or for layouts they do not cover, the kernels keep aten's ops.
//
// Guarantees: results are contiguous tensors that do not require grad and share no memory with the
// value (as value.detach().clone() or gather would give), of the value's dtype; the heads of one
// pattern share one allocation (each is a tensor of its own over its part), since a large malloc
// costs about as much as copying the head; the positions are checked by the caller.
#pragma once

#include <torch/script.h>

#include <cstdint>
#include <vector>

namespace easyroutine {

// Whether the plain-copy paths can read `value`: a dense, non-quantized CPU tensor of at least 2
// dimensions whose last dimension is contiguous.
bool PlainCopyable(const at::Tensor& value);

// `rows` holds one row of positions per batch row, or one row for every batch row; `iota`: each row
// is 0 .. n - 1 (known to the caller, which checks the rows once).

// For tokens [B, T, ...]: out[b, i, ...] = tokens[b, rows[b][i], ...], [B, n, ...], or [B, n, prod(...)]
// with `flattenRest`.
at::Tensor GatherTokens(const at::Tensor& tokens, const std::vector<std::vector<int64_t>>& rows, bool iota, bool flattenRest = false);

// For a pattern [B, H, Q, K], per head h of `heads`: out[b, i, j] = pattern[b, h, rows[b][i], rows[b][j]], [B, n, n].
std::vector<at::Tensor> GatherPatternHeads(const at::Tensor& pattern, const std::vector<int64_t>& heads, const std::vector<std::vector<int64_t>>& rows, bool iota);

}  // namespace easyroutine
