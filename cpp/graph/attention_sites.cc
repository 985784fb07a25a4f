#include "graph/attention_sites.h"

#include <torch/csrc/jit/ir/ir.h>

#include "graph/module_inliner.h"
#include "graph/sdpa_decomposition.h"
#include "graph/tap_op.h"

namespace easyroutine {

namespace {

using torch::jit::Node;
using torch::jit::Value;

bool Is(const Node* node, const char* qualified) { return node->kind() == c10::Symbol::fromQualString(qualified); }
bool IsMatmul(const Node* node) { return Is(node, "aten::matmul") || Is(node, "aten::bmm"); }
bool IsTensorValue(const Value* value) { return value->type()->kind() == c10::TypeKind::TensorType; }

// Ops a value passes through unchanged in meaning between the pattern and its matmul with V.
bool IsCastLike(const Node* node) {
  return Is(node, "aten::to") || Is(node, "aten::type_as") || Is(node, "aten::dropout") || Is(node, "aten::feature_dropout") ||
         Is(node, "aten::contiguous") || Is(node, "aten::_to_copy") || Is(node, "aten::float") || node->kind() == TapSymbol();
}

std::optional<int64_t> ConstantInt(Value* value) {
  auto constant = torch::jit::toIValue(value);
  if (constant && constant->isInt()) return constant->toInt();
  return std::nullopt;
}

// softmax(x, dim=-1) or over the last dimension of a tensor of known rank.
bool IsLastDimSoftmax(Node* node) {
  if (!Is(node, "aten::softmax") || node->inputs().size() < 2) return false;
  auto dim = ConstantInt(node->input(1));
  if (!dim) return false;
  if (*dim == -1) return true;
  auto type = node->input(0)->type()->cast<c10::TensorType>();
  auto rank = type ? type->dim() : c10::nullopt;
  return rank && *dim == static_cast<int64_t>(*rank) - 1;
}

// The matmul of the pattern with V: the softmax result, through cast-like ops, as its left operand.
Node* PatternMatmul(Value* probabilities, Value** patternOut) {
  std::vector<Value*> frontier{probabilities};
  for (int depth = 0; depth < 8 && !frontier.empty(); ++depth) {
    std::vector<Value*> next;
    for (Value* value : frontier) {
      for (const auto& use : value->uses()) {
        Node* user = use.user;
        if (IsMatmul(user) && use.offset == 0) {
          *patternOut = value;
          return user;
        }
        if (IsCastLike(user) && use.offset == 0) next.push_back(user->output());
      }
    }
    frontier = std::move(next);
  }
  return nullptr;
}

// matmul(Q, K^T) behind the scores: through scaling, masking, casts and soft-capping.
Node* ScoresMatmul(Value* scores, int depth = 0) {
  if (depth > 12) return nullptr;
  Node* node = scores->node();
  if (IsMatmul(node)) return node;
  if (node->kind() == c10::prim::If) {
    // a mask applied in a branch (e.g. decomposed fused attention whose mask dtype is known only at
    // run time): every branch leads back to the same scores
    size_t offset = scores->offset();
    for (torch::jit::Block* block : node->blocks()) {
      if (Node* found = ScoresMatmul(block->outputs()[offset], depth + 1)) return found;
    }
    return nullptr;
  }
  std::vector<size_t> operands;
  if (Is(node, "aten::div") || Is(node, "aten::mul") || Is(node, "aten::add") || Is(node, "aten::sub")) {
    operands = {0, 1};
  } else if (Is(node, "aten::where")) {
    operands = {1, 2};
  } else if (Is(node, "aten::masked_fill") || Is(node, "aten::tanh") || IsCastLike(node)) {
    operands = {0};
  }
  for (size_t i : operands) {
    if (i < node->inputs().size() && IsTensorValue(node->input(i))) {
      if (Node* found = ScoresMatmul(node->input(i), depth + 1)) return found;
    }
  }
  return nullptr;
}

bool IsLastTwoTranspose(Node* node) {
  if (Is(node, "aten::transpose") && node->inputs().size() == 3) {
    auto a = ConstantInt(node->input(1));
    auto b = ConstantInt(node->input(2));
    if (!a || !b) return false;
    if ((*a == -1 && *b == -2) || (*a == -2 && *b == -1)) return true;
    auto type = node->input(0)->type()->cast<c10::TensorType>();
    auto rank = type ? type->dim() : c10::nullopt;
    if (!rank) return (*a == 2 && *b == 3) || (*a == 3 && *b == 2);  // [batch, heads, seq, d]
    auto last = static_cast<int64_t>(*rank) - 1;
    return (*a == last && *b == last - 1) || (*a == last - 1 && *b == last);
  }
  return Is(node, "aten::t");
}

// The value before it was repeated to the number of query heads, else `value`.
Value* BeforeHeadRepeat(Value* value) {
  Node* node = value->node();
  if (Is(node, "aten::repeat_interleave") && IsTensorValue(node->input(0))) return node->input(0);
  // Hugging Face's repeat_kv: x[:, :, None, :, :].expand(b, kv, n_rep, s, d).reshape(b, kv * n_rep, s, d)
  if ((Is(node, "aten::reshape") || Is(node, "aten::view")) && Is(node->input(0)->node(), "aten::expand")) {
    Value* source = node->input(0)->node()->input(0);
    while (Is(source->node(), "aten::unsqueeze") || Is(source->node(), "aten::slice")) source = source->node()->input(0);
    return source;
  }
  return value;
}

}  // namespace

std::vector<AttentionSite> FindAttention(torch::jit::Graph& graph) {
  std::vector<AttentionSite> sites;
  std::function<void(torch::jit::Block*)> visit = [&](torch::jit::Block* block) {
    for (Node* node : block->nodes()) {
      for (torch::jit::Block* sub : node->blocks()) visit(sub);
      if (IsFusedAttention(node)) {
        // left fused: its scores and pattern never exist, its inputs and output do
        AttentionSite site;
        site.modulePath = ModulePathOf(node).value_or("");
        site.queries = node->input(0);
        site.keys = BeforeHeadRepeat(node->input(1));
        site.values = BeforeHeadRepeat(node->input(2));
        site.headOutput = node->output();
        sites.push_back(site);
        continue;
      }
      if (!IsLastDimSoftmax(node)) continue;
      AttentionSite site;
      Node* pv = PatternMatmul(node->output(), &site.pattern);
      if (!pv) continue;
      site.modulePath = ModulePathOf(node).value_or("");
      site.scores = node->input(0);
      site.headOutput = pv->output();
      site.values = BeforeHeadRepeat(pv->input(1));
      if (Node* qk = ScoresMatmul(site.scores)) {
        site.queries = qk->input(0);
        Node* transposed = qk->input(1)->node();
        if (IsLastTwoTranspose(transposed)) site.keys = BeforeHeadRepeat(transposed->input(0));
      }
      sites.push_back(site);
    }
  };
  visit(graph.block());
  return sites;
}

torch::jit::Value* TapValue(torch::jit::Graph& graph, Value* value, int64_t site) {
  Node* producer = value->node();
  bool isParam = producer->kind() == c10::prim::Param;
  torch::jit::WithInsertPoint guard(isParam ? producer->owningBlock()->nodes().front() : producer->next());
  Value* tapped = InsertTap(graph, value, site);
  if (!isParam) SetModulePath(tapped->node(), ModulePathOf(producer).value_or(""));
  value->replaceAllUsesAfterNodeWith(tapped->node(), tapped);
  return tapped;
}

void TapAttention(torch::jit::Graph& graph, SitePlan& plan, const std::map<std::string, std::string>& moduleTypes) {
  std::map<std::string, int> seen;
  for (const AttentionSite& site : FindAttention(graph)) {
    int index = seen[site.modulePath]++;
    auto type = moduleTypes.find(site.modulePath);
    std::string typeName = type == moduleTypes.end() ? std::string() : type->second;
    const std::pair<const char*, Value*> points[] = {{"queries", site.queries}, {"keys", site.keys},       {"values", site.values},
                                                     {"scores", site.scores},   {"pattern", site.pattern}, {"head_output", site.headOutput}};
    for (const auto& [kind, value] : points) {
      if (!value) continue;
      std::string point = index == 0 ? std::string(kind) : std::string(kind) + "." + std::to_string(index);
      auto wanted = plan.Want(HookPoint{HookPointName(site.modulePath, point), site.modulePath, typeName, kind, LayerIndex(site.modulePath)});
      if (wanted) TapValue(graph, value, *wanted);
    }
  }
}

}  // namespace easyroutine
