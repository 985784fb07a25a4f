#include "graph/tap_op.h"

#include <torch/library.h>

namespace easyroutine {

namespace {

thread_local TapSink* currentSink = nullptr;

at::Tensor Tap(const at::Tensor& value, int64_t site) {
  TapSink* sink = currentSink;
  return sink ? sink->OnTap(site, value) : value;
}

}  // namespace

ScopedTapSink::ScopedTapSink(TapSink* sink) : previous_(currentSink) { currentSink = sink; }
ScopedTapSink::~ScopedTapSink() { currentSink = previous_; }

c10::Symbol TapSymbol() {
  static const c10::Symbol symbol = c10::Symbol::fromQualString("easyroutine::tap");
  return symbol;
}

torch::jit::Value* InsertTap(torch::jit::Graph& graph, torch::jit::Value* value, int64_t site) {
  torch::jit::Value* siteValue = graph.insertConstant(site);
  torch::jit::Node* node = graph.insertNode(graph.create(TapSymbol(), {value, siteValue}));
  node->output()->setType(value->type());
  siteValue->node()->setScope(node->scope());
  return node->output();
}

}  // namespace easyroutine

TORCH_LIBRARY(easyroutine, m) {
  m.def(torch::schema("easyroutine::tap(Tensor x, int site) -> Tensor", c10::AliasAnalysisKind::CONSERVATIVE), &easyroutine::Tap);
}
