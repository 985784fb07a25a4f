// Pass: finds eager attention in an inlined graph and taps its internals.
//
// Attention is recognised by its data flow, not by names: an aten::softmax over the last dimension
// whose result (through casts, dropout, masked fills, reshapes or taps) is the left operand of a
// matmul or bmm with V. Walking back from the softmax input through scaling and masking (in place or
// not), casts and reshapes reaches matmul(Q, K^T), or baddbmm(bias, Q, K^T) (Bloom). The pattern is
// the value before any reshape on the way to V, so it keeps the softmax's layout. Attention written
// with bmm on [batch * heads, seq, d] reshapes (Bloom) offers the [batch, heads, seq, d] tensors
// around those reshapes, so every site has the documented layout. Keys and values
// are taken before any repeat to the query heads (repeat_interleave, or expand + reshape as in
// Hugging Face's repeat_kv), so they have the model's key/value heads.
//
// Fused attention left in the graph (see graph/sdpa_decomposition.h) is a site too, with only its queries,
// keys, values and head output.
//
// Guarantees: taps are inserted right after the tapped value is produced and every later use reads
// the tap's result, so an edit to the pattern is the value that multiplies V, an edit to the scores
// is what the softmax normalises, and so on. A softmax that does not feed a matmul is left alone.
// Attention internals are named after the module path of the softmax node.
#pragma once

#include <torch/script.h>

#include "graph/hook_points.h"

namespace easyroutine {

struct AttentionSite {
  std::string modulePath;
  torch::jit::Value* queries = nullptr;
  torch::jit::Value* keys = nullptr;
  torch::jit::Value* values = nullptr;
  torch::jit::Value* scores = nullptr;
  torch::jit::Value* pattern = nullptr;
  torch::jit::Value* headOutput = nullptr;
};

std::vector<AttentionSite> FindAttention(torch::jit::Graph& graph);

// Offers every attention point to the plan and taps the wanted ones. `moduleTypes` maps module
// paths to their type names.
void TapAttention(torch::jit::Graph& graph, SitePlan& plan, const std::map<std::string, std::string>& moduleTypes);

// Inserts tap(value, site) right after `value` is produced and makes every later use read it.
torch::jit::Value* TapValue(torch::jit::Graph& graph, torch::jit::Value* value, int64_t site);

}  // namespace easyroutine
