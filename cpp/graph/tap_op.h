// easyroutine::tap(Tensor x, int site) -> Tensor: the op a hooked graph carries at each hook point.
//
// Registered with CONSERVATIVE alias analysis, so Node::hasSideEffects() is true: dead code
// elimination, CSE and constant folding never drop or merge a tap, and returning the input itself is
// legal. Its catch-all kernel is CompositeImplicitAutograd: gradients flow through whatever it returns.
//
// The kernel hands the value to the TapSink installed on the calling thread (the interpreter runs ops
// inline on the thread that runs the forward) and returns what the sink returns; with no sink it
// returns x. The site number indexes the hooked graph's own table of hook points.
#pragma once

#include <torch/script.h>

namespace easyroutine {

class TapSink {
 public:
  virtual ~TapSink() = default;
  virtual at::Tensor OnTap(int64_t site, const at::Tensor& value) = 0;
};

// Installs `sink` on this thread for its lifetime (restoring the previous one after).
class ScopedTapSink {
 public:
  explicit ScopedTapSink(TapSink* sink);
  ~ScopedTapSink();
  ScopedTapSink(const ScopedTapSink&) = delete;
  ScopedTapSink& operator=(const ScopedTapSink&) = delete;

 private:
  TapSink* previous_;
};

c10::Symbol TapSymbol();
// Inserts tap(value, site) at the graph's insertion point; the caller rewires the uses.
torch::jit::Value* InsertTap(torch::jit::Graph& graph, torch::jit::Value* value, int64_t site);

}  // namespace easyroutine
