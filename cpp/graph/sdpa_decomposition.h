// Pass: replaces fused attention (aten::scaled_dot_product_attention, libtorch >= 2.0) by the same
// computation written out (matmul, scale, masks, softmax, matmul), so that its scores and pattern
// exist as values that FindAttention recognises and taps can edit.
//
// Guarantees: the replacement computes what the fused op documents: scale 1/sqrt(E) unless given;
// is_causal keeps the lower triangle aligned top-left (tril of L x S); a bool mask keeps True; a float
// mask is added; a query row whose keys are all masked gives 0 (not the softmax's NaN), as the fused
// op does; enable_gqa repeats keys and values to the query heads; dropout_p > 0 applies dropout
// as the fused op does (whatever the training flag). Only nodes `select` accepts are replaced: fused
// attention is faster, so it is decomposed only where a scores or pattern hook asks for it.
// On libtorch 1.13 the op does not exist and the pass finds nothing.
#pragma once

#include <torch/script.h>

#include <functional>

namespace easyroutine {

bool IsFusedAttention(const torch::jit::Node* node);
// Returns the number of nodes replaced.
int DecomposeFusedAttention(torch::jit::Graph& graph, const std::function<bool(const torch::jit::Node*)>& select);

}  // namespace easyroutine
