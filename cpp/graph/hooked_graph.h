// A model's forward rewritten with taps at a set of hook points, and the per-model cache of them.
//
// Build pipeline (each step a pass with its own guarantees): inline module calls keeping paths and
// tap module boundaries -> constant propagation, peephole, dead code elimination (taps survive) ->
// decompose fused attention where a scores/pattern point inside it is wanted -> find attention and
// tap its internals. The result runs as its own GraphFunction with the original forward's schema,
// reading parameters live from the module.
#pragma once

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/script.h>

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "graph/hook_points.h"

namespace easyroutine {

struct HookedGraph {
  std::shared_ptr<torch::jit::GraphFunction> function;
  std::vector<HookPoint> sites;  // indexed by tap site number
  std::map<std::string, int64_t> siteOf;
  std::vector<int64_t> executionOrder;  // site numbers in the order their first tap runs
  double buildMilliseconds = 0;

  // Runs the hooked forward; `inputs` are the forward's arguments without self.
  c10::IValue Run(const torch::jit::Module& module, const std::vector<c10::IValue>& inputs) const;
};

// Builds the graph for `plan` (SitePlan::All() taps every point). Names the plan requested that no
// pass found are returned in `missing`.
std::shared_ptr<const HookedGraph> BuildHookedGraph(const torch::jit::Module& module, SitePlan plan, std::vector<std::string>* missing);

// Hooked graphs of one model, built on first use per set of points. Thread-safe. Clear() after
// anything that changes folded attributes (train()/eval()).
class HookedGraphCache {
 public:
  // Throws an InvalidArgument TypedError for unknown names, suggesting the closest known ones.
  std::shared_ptr<const HookedGraph> Get(const torch::jit::Module& module, const std::set<std::string>& names);
  // Throws an InvalidArgument TypedError for the first name that is not a hook point of the model.
  void Validate(const torch::jit::Module& module, const std::set<std::string>& names);
  // The graph tapping every point: the list of hook points.
  std::shared_ptr<const HookedGraph> All(const torch::jit::Module& module);
  void Clear();

 private:
  std::mutex mutex_;
  std::shared_ptr<const HookedGraph> all_;
  std::map<std::string, std::shared_ptr<const HookedGraph>> graphs_;
};

// Up to `count` of `candidates` closest to `name` (edit distance), closest first.
std::vector<std::string> ClosestNames(const std::string& name, const std::vector<std::string>& candidates, size_t count = 3);

}  // namespace easyroutine
