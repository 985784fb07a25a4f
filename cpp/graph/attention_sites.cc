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

bool IsReshape(const Node* node) { return Is(node, "aten::view") || Is(node, "aten::reshape") || Is(node, "aten::_unsafe_view"); }

// Ops after the softmax whose result is still the pattern, in the same layout: casts, dropout, and
// edits that zero cells (a masked_fill of fully masked rows, as the SDPA decomposition does).
bool KeepsPattern(const Node* node) { return IsCastLike(node) || Is(node, "aten::masked_fill") || Is(node, "aten::masked_fill_"); }

// The matmul of the pattern with V: the softmax result, through ops that keep it the pattern and
// through reshapes (Bloom views [batch, heads, q, k] as [batch * heads, q, k] for bmm), as its left
// operand. `patternOut` is the last value on that path before a reshape, so the pattern is offered
// in the softmax's layout.
Node* PatternMatmul(Value* probabilities, Value** patternOut) {
  struct Step {
    Value* value;
    Value* pattern;  // the value to tap as the pattern when `value` reaches the matmul
  };
  std::vector<Step> frontier{{probabilities, probabilities}};
  for (int depth = 0; depth < 8 && !frontier.empty(); ++depth) {
    std::vector<Step> next;
    for (const Step& step : frontier) {
      for (const auto& use : step.value->uses()) {
        Node* user = use.user;
        if (IsMatmul(user) && use.offset == 0) {
          *patternOut = step.pattern;
          return user;
        }
        if (use.offset != 0) continue;
        if (KeepsPattern(user)) next.push_back({user->output(), step.pattern == step.value ? user->output() : step.pattern});
        else if (IsReshape(user)) next.push_back({user->output(), step.pattern});
      }
    }
    frontier = std::move(next);
  }
  return nullptr;
}

// matmul(Q, K^T) behind the scores: through scaling, masking, casts, soft-capping and reshapes, in
// place or not (Falcon scales with div_). Bloom's baddbmm(bias, Q, K^T) is such a matmul too; its
// operands are inputs 1 and 2 (see QueryKeyOperands).
Node* ScoresMatmul(Value* scores, int depth = 0) {
  if (depth > 12) return nullptr;
  Node* node = scores->node();
  if (IsMatmul(node) || Is(node, "aten::baddbmm")) return node;
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
  if (Is(node, "aten::div") || Is(node, "aten::mul") || Is(node, "aten::add") || Is(node, "aten::sub") || Is(node, "aten::div_") ||
      Is(node, "aten::mul_") || Is(node, "aten::add_") || Is(node, "aten::sub_")) {
    operands = {0, 1};
  } else if (Is(node, "aten::where")) {
    operands = {1, 2};
  } else if (Is(node, "aten::masked_fill") || Is(node, "aten::masked_fill_") || Is(node, "aten::tanh") || IsCastLike(node) || IsReshape(node)) {
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

// Attention written with bmm (Bloom) works on [batch * heads, seq, d] reshapes of the
// [batch, heads, seq, d] tensors; the sites are those tensors: the input of the reshape that feeds
// the product, and the reshape of the product's result.
Value* BeforeFlatten(Value* value) {
  Node* node = value->node();
  return IsReshape(node) && IsTensorValue(node->input(0)) ? node->input(0) : value;
}

Value* AfterUnflatten(Value* value) {
  Value* reshaped = nullptr;
  for (const auto& use : value->uses()) {
    if (Is(use.user, "aten::size")) continue;  // the sizes the reshape is computed from
    if (reshaped || !IsReshape(use.user) || use.offset != 0) return value;
    reshaped = use.user->output();
  }
  return reshaped ? reshaped : value;
}

// transpose(1, 2) of a [batch * heads, seq, d] reshape: K^T in bmm layout.
bool IsFlatKeyTranspose(Node* node) {
  if (!Is(node, "aten::transpose") || node->inputs().size() != 3 || !IsReshape(node->input(0)->node())) return false;
  auto a = ConstantInt(node->input(1));
  auto b = ConstantInt(node->input(2));
  return a && b && ((*a == 1 && *b == 2) || (*a == 2 && *b == 1));
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
      const bool flat = Is(pv, "aten::bmm");
      site.headOutput = flat ? AfterUnflatten(pv->output()) : pv->output();
      site.values = BeforeHeadRepeat(flat ? BeforeFlatten(pv->input(1)) : pv->input(1));
      if (Node* qk = ScoresMatmul(site.scores)) {
        const size_t first = Is(qk, "aten::baddbmm") ? 1 : 0;
        site.queries = flat ? BeforeFlatten(qk->input(first)) : qk->input(first);
        Node* transposed = qk->input(first + 1)->node();
        if (IsLastTwoTranspose(transposed)) site.keys = BeforeHeadRepeat(transposed->input(0));
        else if (flat && IsFlatKeyTranspose(transposed)) site.keys = BeforeHeadRepeat(BeforeFlatten(transposed->input(0)));
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
