// Pass: finds eager attention in an inlined graph and taps its internals.
//
// Attention is recognised by its data flow, not by names: an aten::softmax over the last dimension
// whose result (through casts, dropout, masked fills, slices, reshapes or taps) is the left operand
// of a matmul or bmm with V, or the first operand of an einsum that contracts that dimension with V
// (XLNet, ProphetNet). The last dimension is the softmax's dim -1, or rank - 1 where the graph knows
// the rank; where it does not, the product says which it is (dim 2 of a bmm operand, dim 3 of a
// matmul's [batch, heads, q, k], the contracted subscript of an einsum). Walking back from the
// softmax input through scaling and masking (in place or not), casts, reshapes and the concatenation
// of attention sinks (gpt-oss: the sink column is not a key) reaches matmul(Q, K^T), or
// baddbmm(bias, Q, K^T) (Bloom). The pattern is the last value before any reshape on the way to V
// (after a slice that drops the sinks' column).
//
// Every site is offered in the documented [batch, heads, ...] layout. Attention written with bmm on
// [batch * heads, seq, d] tensors offers the [batch, heads, seq, d] tensors around its reshapes
// where the graph has them (Bloom); where it has none (BART-like MVP, TrOCR: the softmax itself runs
// on [batch * heads, q, k]), the site is tapped through a reshape to [batch, heads, q, k] whose head
// count is read off the queries' [batch, heads, seq, d] tensor at run time, and reshaped back, so
// an edit is what multiplies V. An einsum site offers only the values whose subscripts are in that
// layout (XLNet's "bnij,bjnd->ibnd" gives scores and pattern, not values or head output). Keys and
// values are taken before any repeat to the query heads (repeat_interleave, or expand + reshape as
// in Hugging Face's repeat_kv), so they have the model's key/value heads.
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
  // bmm attention with no [batch, heads, ...] tensor around these values: they are [batch * heads,
  // ...] and tapped through a reshape whose head count is dimension 1 of `headsFrom`
  std::vector<torch::jit::Value*> flat;
  torch::jit::Value* headsFrom = nullptr;
};

std::vector<AttentionSite> FindAttention(torch::jit::Graph& graph);

// Offers every attention point to the plan and taps the wanted ones. `moduleTypes` maps module
// paths to their type names.
void TapAttention(torch::jit::Graph& graph, SitePlan& plan, const std::map<std::string, std::string>& moduleTypes);

// Inserts tap(value, site) right after `value` is produced and makes every later use read it.
torch::jit::Value* TapValue(torch::jit::Graph& graph, torch::jit::Value* value, int64_t site);

}  // namespace easyroutine
