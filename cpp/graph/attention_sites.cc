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

// The softmax's dim and its input's rank where the graph knows it.
struct SoftmaxDim {
  int64_t dim;
  std::optional<int64_t> rank;
};

// nullopt for no softmax, or one whose dim is no constant.
std::optional<SoftmaxDim> SoftmaxDimOf(Node* node) {
  if (!Is(node, "aten::softmax") || node->inputs().size() < 2) return std::nullopt;
  auto dim = ConstantInt(node->input(1));
  if (!dim) return std::nullopt;
  auto type = node->input(0)->type()->cast<c10::TensorType>();
  auto rank = type ? type->dim() : c10::nullopt;
  return SoftmaxDim{*dim, rank ? std::optional<int64_t>(static_cast<int64_t>(*rank)) : std::nullopt};
}

bool IsReshape(const Node* node) { return Is(node, "aten::view") || Is(node, "aten::reshape") || Is(node, "aten::_unsafe_view"); }

// Ops after the softmax whose result is still the pattern, in the same layout: casts, dropout,
// edits that zero cells (a masked_fill of fully masked rows, as the SDPA decomposition and CPM-Ant
// do), and slices (gpt-oss drops the attention sinks' column).
bool KeepsPattern(const Node* node) {
  return IsCastLike(node) || Is(node, "aten::masked_fill") || Is(node, "aten::masked_fill_") || Is(node, "aten::slice");
}

// The subscripts of a two-operand einsum without ellipsis: "bnij,bjnd->ibnd" -> {bnij, bjnd, ibnd}.
struct EinsumSubscripts {
  std::string left, right, out;
};

std::optional<EinsumSubscripts> EinsumOf(const Node* node) {
  if (!Is(node, "aten::einsum")) return std::nullopt;
  auto equation = torch::jit::toIValue(node->input(0));
  if (!equation || !equation->isString()) return std::nullopt;
  std::string text;
  for (char c : equation->toStringRef()) {
    if (c != ' ') text += c;
  }
  auto comma = text.find(',');
  auto arrow = text.find("->");
  if (comma == std::string::npos || arrow == std::string::npos || comma > arrow || text.find('.') != std::string::npos) return std::nullopt;
  EinsumSubscripts subscripts{text.substr(0, comma), text.substr(comma + 1, arrow - comma - 1), text.substr(arrow + 2)};
  if (subscripts.right.find(',') != std::string::npos) return std::nullopt;
  return subscripts;
}

// Which operands of an einsum with V are in the [batch, heads, ...] layout: the pattern
// [batch, heads, q, k] (k contracted with V, q kept), V [batch, heads, k, d], the product [batch, heads, q, d].
struct EinsumLayout {
  bool pattern = false;
  bool values = false;
  bool output = false;
};

EinsumLayout LayoutOf(const EinsumSubscripts& e) {
  EinsumLayout layout;
  const std::string& p = e.left;
  if (p.size() != 4) return layout;
  const char q = p[2];
  const char k = p[3];
  const bool contracted = e.right.find(k) != std::string::npos && e.out.find(k) == std::string::npos;
  const bool queryKept = e.right.find(q) == std::string::npos && e.out.find(q) != std::string::npos;
  layout.pattern = contracted && queryKept;
  if (!layout.pattern || e.right.size() != 4) return layout;
  const char d = e.right[3];
  layout.values = e.right == std::string{p[0], p[1], k, d};
  layout.output = layout.values && e.out == std::string{p[0], p[1], q, d};
  return layout;
}

// The product of the pattern with V, and how the softmax's result reaches it.
struct PatternProduct {
  Node* node = nullptr;      // matmul, bmm or einsum
  Value* pattern = nullptr;  // the value to tap as the pattern: the last one before any reshape
  Value* values = nullptr;   // V as the product reads it
  // reshapes between the softmax and the product: one in Bloom ([batch, heads, q, k] softmax, bmm on
  // [batch * heads, q, k]), two in XGLM (a [batch, heads, q, k] view between two flat ones)
  int reshapes = 0;
  Value* firstReshape = nullptr;  // the first reshape's result
};

// The product of the softmax's result with V, through ops that keep it the pattern and through
// reshapes (Bloom views [batch, heads, q, k] as [batch * heads, q, k] for bmm).
PatternProduct FindPatternProduct(Value* probabilities) {
  struct Step {
    Value* value;
    Value* pattern;
    int reshapes;
    Value* firstReshape;
  };
  std::vector<Step> frontier{{probabilities, probabilities, 0, nullptr}};
  for (int depth = 0; depth < 8 && !frontier.empty(); ++depth) {
    std::vector<Step> next;
    for (const Step& step : frontier) {
      for (const auto& use : step.value->uses()) {
        Node* user = use.user;
        if (use.offset != 0) continue;
        if (IsMatmul(user)) return {user, step.pattern, user->input(1), step.reshapes, step.firstReshape};
        // einsum(equation, [pattern, V]): the list's first element
        if (user->kind() == c10::prim::ListConstruct && user->inputs().size() == 2 && user->output()->uses().size() == 1) {
          const auto& listUse = user->output()->uses()[0];
          if (listUse.offset == 1 && EinsumOf(listUse.user)) return {listUse.user, step.pattern, user->input(1), step.reshapes, step.firstReshape};
          continue;
        }
        if (KeepsPattern(user)) next.push_back({user->output(), step.reshapes > 0 ? step.pattern : user->output(), step.reshapes, step.firstReshape});
        else if (IsReshape(user)) next.push_back({user->output(), step.pattern, step.reshapes + 1, step.firstReshape ? step.firstReshape : user->output()});
      }
    }
    frontier = std::move(next);
  }
  return {};
}

// Whether the softmax normalises the dimension the product contracts with V.
bool NormalisesContractedDim(const SoftmaxDim& softmax, const PatternProduct& product) {
  if (auto einsum = EinsumOf(product.node)) {
    if (!LayoutOf(*einsum).pattern || product.reshapes > 0) return false;
    return softmax.dim == -1 || softmax.dim == 3;
  }
  if (softmax.dim == -1) return true;
  if (softmax.rank) return softmax.dim == *softmax.rank - 1;
  // no rank in the graph (XLNet): the product's operand says it, when nothing reshaped it on the way
  if (product.reshapes > 0) return false;
  return softmax.dim == (Is(product.node, "aten::bmm") ? 2 : 3);
}

// The scores without the attention sinks concatenated to them as one more column (gpt-oss:
// softmax(cat([scores, sinks], -1) - max(...))): a sink is no key, and the scores keep
// [batch, heads, q, k]. Any other softmax input is the scores itself.
Value* WithoutSinks(Value* softmaxInput) {
  Node* node = softmaxInput->node();
  // the stabilising subtraction of the row maximum, which the softmax would do itself
  if (Is(node, "aten::sub") && Is(node->input(1)->node(), "aten::max") && node->input(1)->node()->input(0) == node->input(0)) node = node->input(0)->node();
  if (!Is(node, "aten::cat") || node->inputs().size() != 2) return softmaxInput;
  auto dim = ConstantInt(node->input(1));
  Node* list = node->input(0)->node();
  if (!dim || *dim != -1 || list->kind() != c10::prim::ListConstruct || list->inputs().size() != 2) return softmaxInput;
  return list->input(0);
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
      auto softmax = SoftmaxDimOf(node);
      if (!softmax) continue;
      PatternProduct product = FindPatternProduct(node->output());
      if (!product.node || !NormalisesContractedDim(*softmax, product)) continue;
      AttentionSite site;
      site.modulePath = ModulePathOf(node).value_or("");
      site.pattern = product.pattern;
      site.scores = WithoutSinks(node->input(0));
      if (auto einsum = EinsumOf(product.node)) {
        // the product's subscripts say which of its operands are [batch, heads, ...]; its queries
        // and keys come from another einsum, whose layout says nothing of heads
        EinsumLayout layout = LayoutOf(*einsum);
        if (layout.values) site.values = BeforeHeadRepeat(product.values);
        if (layout.output) site.headOutput = product.node->output();
        sites.push_back(site);
        continue;
      }
      const bool bmm = Is(product.node, "aten::bmm");
      site.headOutput = bmm ? AfterUnflatten(product.node->output()) : product.node->output();
      site.values = BeforeHeadRepeat(bmm ? BeforeFlatten(product.values) : product.values);
      Node* qk = ScoresMatmul(site.scores);
      Value* qkQueries = nullptr;  // the queries as the scores' product reads them
      if (qk) {
        const size_t first = Is(qk, "aten::baddbmm") ? 1 : 0;
        qkQueries = qk->input(first);
        site.queries = bmm ? BeforeFlatten(qkQueries) : qkQueries;
        Node* transposed = qk->input(first + 1)->node();
        if (IsLastTwoTranspose(transposed)) site.keys = BeforeHeadRepeat(transposed->input(0));
        else if (bmm && IsFlatKeyTranspose(transposed)) site.keys = BeforeHeadRepeat(BeforeFlatten(transposed->input(0)));
      }
      if (bmm) {
        // A bmm multiplies [batch * heads, q, k] by V; each reshape on the way from the softmax
        // turns one layout into the other. An odd count: the softmax ran on [batch, heads, q, k]
        // (Bloom). Two or more: the first reshape's result is the [batch, heads, q, k] pattern (XGLM).
        // None: there is no such tensor, and the pattern is offered through a reshape with the
        // queries' head count (MVP), or not at all when there are no [batch, heads, seq, d] queries.
        const bool softmaxFlat = product.reshapes % 2 == 0;
        if (product.reshapes >= 2) site.pattern = product.firstReshape;
        const bool headsKnown = qkQueries && site.queries != qkQueries;
        if (headsKnown) site.headsFrom = site.queries;
        std::vector<Value**> flat;
        if (softmaxFlat) flat.push_back(&site.scores);
        if (product.reshapes == 0) flat.push_back(&site.pattern);
        if (site.headOutput == product.node->output()) flat.push_back(&site.headOutput);
        for (Value** value : flat) {
          if (headsKnown) site.flat.push_back(*value);
          else *value = nullptr;
        }
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

// A [batch * heads, n, m] value tapped as [batch, heads, n, m]: reshaped with the head count of
// `headsFrom` (dimension 1, read at run time), tapped, and reshaped back for every later use, so the
// hook sees the documented layout and what it returns is what the model goes on with.
void TapAsHeads(torch::jit::Graph& graph, Value* value, Value* headsFrom, int64_t site) {
  Node* producer = value->node();
  torch::jit::WithInsertPoint guard(producer->next());
  const std::string path = ModulePathOf(producer).value_or("");
  auto size = [&](Value* of, int64_t dim) { return graph.insert(c10::aten::size, {of, dim}); };
  Value* heads = size(headsFrom, 1);
  Value* shape = graph.insertNode(graph.createList(c10::IntType::get(), {graph.insertConstant(-1), heads, size(value, 1), size(value, 2)}))->output();
  Value* split = graph.insert(c10::aten::reshape, {value, shape});
  Value* tapped = InsertTap(graph, split, site);
  Value* flatShape = graph.insert(c10::aten::size, {value});
  Value* merged = graph.insert(c10::aten::reshape, {tapped, flatShape});
  for (Node* node = producer->next(); node != merged->node()->next(); node = node->next()) SetModulePath(node, path);
  value->replaceAllUsesAfterNodeWith(merged->node(), merged);
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
      if (!wanted) continue;
      if (std::find(site.flat.begin(), site.flat.end(), value) != site.flat.end()) TapAsHeads(graph, value, site.headsFrom, *wanted);
      else TapValue(graph, value, *wanted);
    }
  }
}

}  // namespace easyroutine
