#include "graph/sdpa_decomposition.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/jit.h>

#include "graph/module_inliner.h"

namespace easyroutine {

namespace {

// Written with aten builtins only (torch::jit::compile resolves `torch` to them, so `torch.bool`
// and other dtype names cannot be used: masks are made and told apart without them). The masking and
// GQA branches are resolved by constant propagation when their arguments are constants; the softmax
// and both matmuls stay at the top level, where FindAttention looks for them.
constexpr const char* kDecomposedAttention = R"JIT(
def attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Optional[Tensor], dropout_p: float,
              is_causal: bool, scale: Optional[float], enable_gqa: bool) -> Tensor:
    if enable_gqa:
        repeats = query.size(-3) // key.size(-3)
        key = key.repeat_interleave(repeats, -3)
        value = value.repeat_interleave(repeats, -3)
    if scale is None:
        factor = 1.0 / float(query.size(-1)) ** 0.5
    else:
        factor = scale
    scores = torch.matmul(query, key.transpose(-2, -1)) * factor
    if is_causal:
        keep = torch.ones([query.size(-2), key.size(-2)], device=query.device).tril() > 0.5
        scores = scores.masked_fill(keep.logical_not(), float("-inf"))
    if attn_mask is not None:
        if attn_mask.is_floating_point():
            scores = scores + attn_mask
        else:
            scores = scores.masked_fill(attn_mask.logical_not(), float("-inf"))
    pattern = torch.softmax(scores, -1)
    # a query row whose keys are all masked (left padding) is NaN after the softmax; the fused op
    # gives 0 there, and a NaN would reach every later position through the next layer's matmul
    pattern = pattern.masked_fill((scores == float("-inf")).all(-1, True), 0.0)
    if dropout_p > 0.0:
        pattern = torch.dropout(pattern, dropout_p, True)
    return torch.matmul(pattern, value)
)JIT";

// Compiled once per process; a graph is copied out of it per use.
torch::jit::Graph& DecomposedAttentionGraph() {
  static const std::shared_ptr<torch::jit::CompilationUnit> unit = torch::jit::compile(kDecomposedAttention);
  static const std::shared_ptr<torch::jit::Graph> graph = torch::jit::toGraphFunction(unit->get_function("attention")).graph();
  return *graph;
}

}  // namespace

bool IsFusedAttention(const torch::jit::Node* node) {
  static const c10::Symbol symbol = c10::Symbol::fromQualString("aten::scaled_dot_product_attention");
  return node->kind() == symbol;
}

int DecomposeFusedAttention(torch::jit::Graph& graph, const std::function<bool(const torch::jit::Node*)>& select) {
  std::vector<torch::jit::Node*> targets;
  std::function<void(torch::jit::Block*)> find = [&](torch::jit::Block* block) {
    for (torch::jit::Node* node : block->nodes()) {
      for (torch::jit::Block* sub : node->blocks()) find(sub);
      if (IsFusedAttention(node) && select(node)) targets.push_back(node);
    }
  };
  find(graph.block());
  for (torch::jit::Node* node : targets) {
    // Schemas: 2.0 (q, k, v, attn_mask, dropout_p, is_causal); 2.1 adds scale; 2.5 adds enable_gqa.
    std::vector<torch::jit::Value*> inputs(node->inputs().begin(), node->inputs().end());
    torch::jit::WithInsertPoint guard(node);
    if (inputs.size() < 4) inputs.push_back(graph.insertConstant(c10::IValue()));
    if (inputs.size() < 5) inputs.push_back(graph.insertConstant(0.0));
    if (inputs.size() < 6) inputs.push_back(graph.insertConstant(false));
    if (inputs.size() < 7) inputs.push_back(graph.insertConstant(c10::IValue()));
    if (inputs.size() < 8) inputs.push_back(graph.insertConstant(false));
    std::shared_ptr<torch::jit::Graph> decomposed = DecomposedAttentionGraph().copy();
    SetModulePath(decomposed->block(), ModulePathOf(node).value_or(""));
    auto outputs = torch::jit::insertGraph(graph, *decomposed, inputs);
    node->output()->replaceAllUsesWith(outputs[0]);
    node->destroy();
  }
  return static_cast<int>(targets.size());
}

}  // namespace easyroutine
